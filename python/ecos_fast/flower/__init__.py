"""ECOS over Flower (``pip install 'ecos-fast[flower]'``; docs/flower.md).

:mod:`ecos_fast.flower._roles` holds the transport-free roles (no flwr import);
:mod:`ecos_fast.flower.apps` the Flower ClientApp and ServerApp, imported lazily so that
``import ecos_fast.flower`` works without flwr.
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
