"""Synthetic pools whose right answer is known, for testing and studying selection.

Each pool is a mixture of Gaussian *components*; the client's private data is drawn
from some of them (``client_components``), so the share of a selection that lands in
those components measures proximity directly, without training anything. Two shapes
reproduce the failure modes of within-cluster K-Center and of noise-driven weights:

* :func:`compact_inside_broad`: the client's compact component sits inside a broad
  component of another domain, so both share clusters. Farthest-first over a whole
  cluster walks out into the broad domain; neighbourhood sampling stays near the
  centroid.
* :func:`far_junk`: the client's two compact components, other domains, and a broad
  out-of-distribution junk component far away on which k-means spends many centroids.
  With noisy counts, clusters the client never touched get weight by chance.

Everything is float32 and seeded; the same ``seed`` gives the same pool.

Examples
--------
>>> from ecos_fast.synthetic import compact_inside_broad
>>> p = compact_inside_broad(seed=0, scale=0.1)
>>> p.pool.shape, p.private.shape, p.client_components
((2900, 16), (30, 16), (1,))
>>> round(p.pool_share(p.client_components), 4)  # what Random gets on average
0.0345
>>> p.share_of([0, 2000, 2001], p.client_components)  # rows 2000.. are the client's
0.6666666666666666
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._validation import as_indices, check_int, check_seed
from .errors import InvalidInputError

__all__ = ["SyntheticPool", "compact_inside_broad", "far_junk"]


@dataclass(frozen=True)
class SyntheticPool:
    """A pool, the client's private data, and which mixture component each row came from.

    Attributes
    ----------
    pool : ndarray of shape (n_pool, n_features), float32
    component : ndarray of shape (n_pool,), int64
        The component of every pool row.
    private : ndarray of shape (n_private, n_features), float32
        The client's data, drawn from ``client_components`` (not in the pool).
    client_components : tuple of int
    junk_components : tuple of int
        Out-of-distribution components (empty when the pool has none).
    names : tuple of str
        One name per component.
    """

    pool: NDArray[np.float32]
    component: NDArray[np.int64]
    private: NDArray[np.float32]
    client_components: tuple[int, ...]
    junk_components: tuple[int, ...]
    names: tuple[str, ...]

    def share_of(self, indices: Any, components: Sequence[int]) -> float:
        """Fraction of the selected pool rows ``indices`` that lie in ``components``."""
        idx = as_indices(
            np.asarray(indices), "indices", upper=self.pool.shape[0], allow_empty=False
        )
        return float(np.isin(self.component[idx], np.asarray(components)).mean())

    def pool_share(self, components: Sequence[int]) -> float:
        """Fraction of the whole pool in ``components`` (what Random gets on average)."""
        return float(np.isin(self.component, np.asarray(components)).mean())


def _sizes(scale: float, sizes: Sequence[int]) -> list[int]:
    if not isinstance(scale, (int, float)) or not 0.0 < float(scale) <= 100.0:
        raise InvalidInputError(f"scale={scale!r} must be in (0, 100]")
    return [max(1, round(s * float(scale))) for s in sizes]


def _build(
    rng: np.random.Generator,
    specs: Sequence[tuple[str, NDArray[np.float64], float, int]],
    n_features: int,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    parts = [rng.normal(mean, std, (n, n_features)) for _, mean, std, n in specs]
    comp = np.concatenate([np.full(n, i, np.int64) for i, (_, _, _, n) in enumerate(specs)])
    return np.concatenate(parts).astype(np.float32), comp


def compact_inside_broad(
    seed: int = 0, *, scale: float = 1.0, n_features: int = 16, n_private: int | None = None
) -> SyntheticPool:
    """A compact client component inside a broad component of another domain.

    Component 0 is broad (std 3, 20,000 rows at ``scale=1``), component 1 the client's
    compact one (std 0.3, offset 1.5 from the broad one's centre, 1,000 rows), and two
    further domains sit far away (std 1, 4,000 rows each). The private set (300 rows
    at ``scale=1``) is drawn from component 1's distribution.

    Parameters
    ----------
    seed : int, default 0
    scale : float, default 1.0
        Multiplies every size (tests use small pools).
    n_features : int, default 16
    n_private : int, optional
        Private set size; default ``300 * scale``.

    Returns
    -------
    SyntheticPool
    """
    rng = np.random.default_rng(check_seed(seed))
    d = check_int(n_features, "n_features", low=2)
    n_broad, n_client, n_far, n_priv = _sizes(scale, (20_000, 1_000, 4_000, 300))
    if n_private is not None:
        n_priv = check_int(n_private, "n_private", low=1)
    zero = np.zeros(d)
    offset = np.zeros(d)
    offset[0] = 1.5
    far = np.zeros(d)
    far[1] = 40.0
    specs = [
        ("broad", zero, 3.0, n_broad),
        ("client", offset, 0.3, n_client),
        ("far-a", far, 1.0, n_far),
        ("far-b", -far, 1.0, n_far),
    ]
    pool, comp = _build(rng, specs, d)
    private = rng.normal(offset, 0.3, (n_priv, d)).astype(np.float32)
    return SyntheticPool(pool, comp, private, (1,), (), tuple(s[0] for s in specs))


def far_junk(
    seed: int = 0, *, scale: float = 1.0, n_features: int = 16, n_private: int | None = None
) -> SyntheticPool:
    """Two compact client components, two other domains, and broad junk far away.

    Components 0 and 1 are the client's (std 1, 3,000 rows each at ``scale=1``),
    components 2 and 3 other domains (std 1, 3,000 rows each), and component 4 is
    out-of-distribution junk: 24,000 rows with std 8 centred far from the rest, so
    k-means spends many centroids on it. The private set (2,000 rows at ``scale=1``)
    is drawn half from each client component's distribution.

    Parameters
    ----------
    seed : int, default 0
    scale : float, default 1.0
    n_features : int, default 16
    n_private : int, optional
        Private set size; default ``2000 * scale``.

    Returns
    -------
    SyntheticPool
    """
    rng = np.random.default_rng(check_seed(seed))
    d = check_int(n_features, "n_features", low=2)
    n_dom, n_junk, n_priv = _sizes(scale, (3_000, 24_000, 2_000))
    if n_private is not None:
        n_priv = check_int(n_private, "n_private", low=1)
    centres = np.zeros((5, d))
    for i in range(4):
        centres[i, i] = 12.0
    centres[4, 0] = centres[4, 1] = -60.0
    specs = [
        ("client-a", centres[0], 1.0, n_dom),
        ("client-b", centres[1], 1.0, n_dom),
        ("other-a", centres[2], 1.0, n_dom),
        ("other-b", centres[3], 1.0, n_dom),
        ("junk", centres[4], 8.0, n_junk),
    ]
    pool, comp = _build(rng, specs, d)
    half = n_priv // 2
    private = np.concatenate(
        [
            rng.normal(centres[0], 1.0, (half, d)),
            rng.normal(centres[1], 1.0, (n_priv - half, d)),
        ]
    ).astype(np.float32)
    return SyntheticPool(pool, comp, private, (0, 1), (4,), tuple(s[0] for s in specs))
