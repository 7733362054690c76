"""Type stubs for the compiled core (checked by ``mypy.stubtest``).

Prior validation of data is assumed: call the wrappers in ``ecos_fast.kernels``.
"""

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "assign",
    "build_info",
    "kcenter_clusters",
    "kcenter_greedy",
    "kcenter_greedy_stats",
    "kmeans",
]

def assign(
    features: NDArray[np.float32], centroids: NDArray[np.float32], n_threads: int
) -> tuple[NDArray[np.int64], NDArray[np.float32]]: ...
def kmeans(
    features: NDArray[np.float32],
    n_clusters: int,
    max_iter: int,
    tol: float,
    seed: int,
    n_threads: int,
    init: NDArray[np.float32] | None = None,
    n_local_trials: int = 1,
    sample: NDArray[np.int64] | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.float64], int]: ...
def kcenter_greedy(
    features: NDArray[np.float32],
    budget: int,
    n_threads: int,
    first: int | None = None,
    initial: NDArray[np.int64] | None = None,
    rows: NDArray[np.int64] | None = None,
    prune: bool = True,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]: ...
def kcenter_greedy_stats(
    features: NDArray[np.float32],
    budget: int,
    n_threads: int,
    first: int | None = None,
    initial: NDArray[np.int64] | None = None,
    rows: NDArray[np.int64] | None = None,
    prune: bool = True,
) -> tuple[NDArray[np.int64], NDArray[np.float32], dict[str, int]]: ...
def kcenter_clusters(
    features: NDArray[np.float32],
    indptr: NDArray[np.int64],
    members: NDArray[np.int64],
    quotas: NDArray[np.int64],
    first: NDArray[np.int64],
    n_threads: int,
) -> NDArray[np.int64]: ...
def build_info() -> dict[str, str]: ...
