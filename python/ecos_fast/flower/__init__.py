"""ECOS over Flower (``pip install 'ecos-fast[flower]'``; docs/flower.md).

:mod:`ecos_fast.flower._roles` holds the transport-free roles (no flwr import), re-exported
here, so ``import ecos_fast.flower`` works without flwr; :mod:`ecos_fast.flower.apps` (the
Flower ClientApp and ServerApp) and :mod:`ecos_fast.flower.deploy` (components for
``flwr run``) need it and raise :class:`~ecos_fast.errors.MissingDependencyError` without it.
"""

from __future__ import annotations

from ._roles import (
    ClientConfig,
    accept,
    answer,
    centroids_from_bytes,
    centroids_to_bytes,
    response_from_bytes,
    response_to_bytes,
    union_response,
)

__all__ = [
    "ClientConfig",
    "accept",
    "answer",
    "centroids_from_bytes",
    "centroids_to_bytes",
    "response_from_bytes",
    "response_to_bytes",
    "union_response",
]
