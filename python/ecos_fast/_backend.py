"""The one place a public function hands its work to a backend.

``backend="local"`` runs in this process on the compiled core; ``backend="ray"``
goes to :mod:`ecos_fast.ray_backend`, imported only then (so ``import ecos_fast``
never imports Ray). The import points down: the Ray backend imports nothing above
the rule (:mod:`ecos_fast.rule`) and the validation layer.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ._validation import check_choice

__all__ = ["BACKENDS", "check_backend", "ray_backend"]

BACKENDS: tuple[str, ...] = ("local", "ray")


def check_backend(backend: Any) -> str:
    """``backend`` checked: ``"local"`` or ``"ray"``.

    Examples
    --------
    >>> from ecos_fast._backend import check_backend
    >>> check_backend("ray")
    'ray'
    """
    check_choice(backend, "backend", BACKENDS)
    return str(backend)


def ray_backend() -> ModuleType:
    """The Ray backend package (imported on first use)."""
    from . import ray_backend as rb

    return rb
