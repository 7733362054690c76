"""ecos-fast: train for a client without uploading its data (ECOS, NeurIPS 2022)."""

from __future__ import annotations

from .kernels import KMeansResult, assign, kcenter_greedy, kmeans

__version__ = "0.1.0"

__all__ = ["KMeansResult", "__version__", "assign", "kcenter_greedy", "kmeans"]
