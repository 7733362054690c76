"""Smoothing the client's noisy counts over the centroids' neighbourhoods, on the cloud.

A client whose data fills a region of many clusters gives each of them a small count,
and at a small ε or for a small client that count is below the noise. Averaging each
noisy count with those of the centroids near it keeps such a signal (the neighbours
carry about the same count) and divides the noise; it blurs a client packed into one
or two clusters. Which of the two a release is, the cloud can tell from the release
itself: :func:`smooth_counts` tries a range of bandwidths and keeps the one with the
smallest Stein's unbiased risk estimate (SURE) of the smoothed counts' squared error
against the true counts, which needs only the noisy counts, the known noise ``sigma``
and the public centroids. It is post-processing of the released counts, so it costs no
privacy; with no noise (ε = ∞) SURE always keeps the counts as they are.

The smoother: every centroid ``i`` averages the counts of its ``SMOOTH_NEIGHBOURS``
nearest centroids ``j`` (itself included) with weights ``exp(-d2(i, j) / h)``,
normalised to sum to 1, where ``h = scale * h0`` and ``h0`` is the median over the
centroids of the squared distance to the nearest other centroid (float64 distances,
ties to the lowest index, so the result does not depend on the thread count). For the
linear smoother ``S``, ``SURE = ||y - S y||^2 + 2 sigma^2 tr(S) - R sigma^2``; the
identity (no smoothing) has ``SURE = R sigma^2``. A smoothed count has noise of
standard deviation ``sigma * ||S_i||_2``; the rule's threshold is in those units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._validation import as_vector, check_nonneg_float
from .errors import InvalidInputError

__all__ = [
    "SMOOTH",
    "SMOOTH_NEIGHBOURS",
    "SMOOTH_SCALES",
    "Smoothing",
    "centroid_neighbourhoods",
    "smooth_counts",
]

#: ``select(smooth=...)``: ``"none"`` uses the noisy counts as released, ``"sure"``
#: smooths them at the bandwidth SURE picks (:func:`smooth_counts`).
SMOOTH = ("none", "sure")
#: Centroids each count is averaged over, itself included.
SMOOTH_NEIGHBOURS = 16
#: Bandwidths tried, in units of the median squared distance between neighbouring
#: centroids (the identity, no smoothing, is always a candidate too).
SMOOTH_SCALES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: A count more than this many sigma above its smoothed value keeps the excess.
SPIKE_SIGMAS = 2.0
#: Rounds of the spike step at most (it converges geometrically, in a few).
SPIKE_ITERATIONS = 200
#: Distances held per block of :func:`centroid_neighbourhoods` (float64, 32 MiB).
_BLOCK_VALUES = 1 << 22


@dataclass(frozen=True)
class Smoothing:
    """What :func:`smooth_counts` chose.

    Attributes
    ----------
    counts : ndarray of shape (n_clusters,), float64
        The smoothed counts (the noisy counts when ``scale`` is 0).
    noise : ndarray of shape (n_clusters,), float64
        Each smoothed count's noise standard deviation over ``sigma``: ``||S_i||_2``
        (1 without smoothing).
    scale : float
        The bandwidth chosen, in units of ``h0``; 0 means no smoothing.
    sure : dict of float to float
        SURE at every bandwidth tried (0.0: the identity).
    """

    counts: NDArray[np.float64]
    noise: NDArray[np.float64]
    scale: float
    sure: dict[float, float]


def centroid_neighbourhoods(
    centroids: NDArray[Any], n_neighbours: int
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Each centroid's ``n_neighbours`` nearest centroids (itself first) and their
    squared distances, in float64, ties to the lowest index.

    >>> import numpy as np
    >>> idx, d2 = centroid_neighbourhoods(np.array([[0.0], [1.0], [3.0]]), 2)
    >>> idx.tolist(), d2.tolist()
    ([[0, 1], [1, 0], [2, 1]], [[0.0, 1.0], [0.0, 1.0], [0.0, 4.0]])
    """
    c = np.asarray(centroids, dtype=np.float64)
    r = c.shape[0]
    m = min(int(n_neighbours), r)
    sq = np.einsum("ij,ij->i", c, c)
    idx = np.empty((r, m), dtype=np.int64)
    dist = np.empty((r, m), dtype=np.float64)
    block = max(1, _BLOCK_VALUES // max(r, 1))
    for a in range(0, r, block):
        cb = c[a : a + block]
        d2 = sq[a : a + block, None] - 2.0 * (cb @ c.T) + sq[None, :]
        np.maximum(d2, 0.0, out=d2)
        rows = np.arange(cb.shape[0])
        d2[rows, a + rows] = -1.0  # itself first, whatever a duplicate centroid does
        order = np.argsort(d2, axis=1, kind="stable")[:, :m]
        idx[a : a + block] = order
        dist[a : a + block] = np.take_along_axis(d2, order, axis=1)
        dist[a : a + block, 0] = 0.0
    return idx, dist


def smooth_counts(
    noisy_counts: Any,
    sigma: float,
    centroids: NDArray[Any],
    *,
    scales: tuple[float, ...] = SMOOTH_SCALES,
    n_neighbours: int = SMOOTH_NEIGHBOURS,
) -> Smoothing:
    """The noisy counts smoothed over the centroids' neighbourhoods at the bandwidth
    with the smallest SURE (see the module docstring).

    Parameters
    ----------
    noisy_counts : array-like of shape (n_clusters,)
    sigma : float
        The release's noise standard deviation (0: no noise, no smoothing).
    centroids : array-like of shape (n_clusters, n_features)
        The sketch's centroids, public.
    scales : tuple of float
        Bandwidths to try, in units of ``h0``, each > 0.
    n_neighbours : int
        Centroids per average, itself included.

    Returns
    -------
    Smoothing

    Examples
    --------
    A client spread evenly over a line of 40 clusters, under noise four times its
    count: SURE smooths, and the smoothed counts are closer to the truth.

    >>> import numpy as np
    >>> c = np.arange(80, dtype=np.float64)[:, None]
    >>> truth = np.where(np.arange(80) < 40, 2.0, 0.0)
    >>> y = truth + np.random.default_rng(0).normal(0, 8.0, 80)
    >>> s = smooth_counts(y, 8.0, c)
    >>> s.scale > 0, bool(np.sum((s.counts - truth) ** 2) < np.sum((y - truth) ** 2))
    (True, True)
    >>> smooth_counts(y, 0.0, c).scale  # no noise: nothing to smooth
    0.0
    """
    y = as_vector(noisy_counts, "noisy_counts")
    s = check_nonneg_float(sigma, "sigma")
    c = np.asarray(centroids)
    r = y.shape[0]
    if c.ndim != 2 or c.shape[0] != r:
        raise InvalidInputError(f"centroids of shape {c.shape} do not match the {r} noisy counts")
    for t in scales:
        if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
            raise InvalidInputError(f"smoothing scales must be finite and > 0, got {t!r}")
    ident = Smoothing(y.copy(), np.ones(r), 0.0, {0.0: float(r * s * s)})
    if s == 0.0 or r < 2 or not scales:
        return ident
    idx, d2 = centroid_neighbourhoods(c, n_neighbours)
    positive = d2[:, 1][d2[:, 1] > 0]
    if positive.size == 0:  # every centroid duplicated: no scale to smooth over
        return ident
    h0 = float(np.median(d2[:, 1])) or float(np.median(positive))
    sure = {0.0: float(r * s * s)}
    best = ident
    for t in scales:
        k = np.exp(-d2 / (t * h0))
        k /= k.sum(axis=1, keepdims=True)
        sm = np.einsum("ij,ij->i", k, y[idx])
        # tr(S) is the sum of the self-weights, the first column.
        sure[float(t)] = float(np.sum((y - sm) ** 2) + 2.0 * s * s * k[:, 0].sum() - r * s * s)
        if sure[float(t)] < sure[best.scale]:
            best = Smoothing(sm, np.sqrt(np.einsum("ij,ij->i", k, k)), float(t), {})
            best_k = k
    if best.scale == 0.0:
        return Smoothing(best.counts, best.noise, 0.0, sure)
    # A cluster standing out of its smoothed neighbourhood by more than
    # SPIKE_SIGMAS noise standard deviations keeps that excess as its own; only the
    # rest is averaged, so a client packed into one cluster is not spread over its
    # neighbours.
    # Iterated to the fixed point ``e = max(y - S (y - e) - SPIKE_SIGMAS sigma, 0)``: a
    # Huber-type robust average, in which a count contributes to its neighbours' at
    # most SPIKE_SIGMAS sigma above their own smoothed level.
    excess = np.zeros(r)
    for _ in range(SPIKE_ITERATIONS):
        base = np.einsum("ij,ij->i", best_k, (y - excess)[idx])
        new = np.maximum(y - base - SPIKE_SIGMAS * s, 0.0)
        done = bool(np.max(np.abs(new - excess)) <= 1e-12 * (1.0 + float(np.max(np.abs(y)))))
        excess = new
        if done:
            break
    counts = np.einsum("ij,ij->i", best_k, (y - excess)[idx]) + excess
    return Smoothing(counts, best.noise, best.scale, sure)
