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
    "GATE_DRAWS",
    "GATE_QUANTILE",
    "GATE_SEED",
    "SMOOTH",
    "SMOOTH_NEIGHBOURS",
    "SMOOTH_SCALES",
    "Smoother",
    "Smoothing",
    "centroid_neighbourhoods",
    "nearest_centroids",
    "smooth_counts",
    "smoothed_release_is_noise",
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
#: The noise gate of smoothed releases (:func:`smoothed_release_is_noise`): pure-noise
#: releases simulated, their seed, and the quantile of their weights' total the release
#: must exceed (the one-sided 3-sigma level of the plain gate's normal approximation).
GATE_DRAWS = 2000
GATE_SEED = 0
GATE_QUANTILE = 0.99865
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


def _smallest(d2: NDArray[np.float64], m: int) -> NDArray[np.int64]:
    """Per row, the columns of the ``m`` smallest values in ascending order, ties to the
    lowest column: what a stable argsort's first ``m`` columns are, without sorting all
    of them (a partition, then a sort of the ``m``; a row whose ``m``-th value is tied
    beyond the ``m`` is sorted whole)."""
    n = d2.shape[1]
    if m >= n:
        return np.argsort(d2, axis=1, kind="stable")
    part = np.argpartition(d2, m - 1, axis=1)[:, :m]
    vals = np.take_along_axis(d2, part, axis=1)
    kth = vals.max(axis=1, keepdims=True)
    # The partition holds every value below the m-th and some of those equal to it; the
    # rows with more equal values than places are where "lowest column" must decide.
    ambiguous = (d2 <= kth).sum(axis=1) > m
    for row in np.nonzero(ambiguous)[0]:
        part[row] = np.argsort(d2[row], kind="stable")[:m]
        vals[row] = d2[row, part[row]]
    order = np.lexsort((part, vals), axis=-1)
    return np.asarray(np.take_along_axis(part, order, axis=1), dtype=np.int64)


def nearest_centroids(x: NDArray[Any], centroids: NDArray[Any], k: int) -> NDArray[np.int64]:
    """Each row's ``k`` nearest centroids, nearest first: exact float64 squared distances
    (block by block), ties to the lowest index, as a stable argsort of each row.

    >>> import numpy as np
    >>> c = np.array([[0.0], [1.0], [3.0]])
    >>> nearest_centroids(np.array([[0.4], [2.0]]), c, 2).tolist()
    [[0, 1], [1, 2]]
    """
    c = np.asarray(centroids, dtype=np.float64)
    r = c.shape[0]
    c_sq = np.einsum("ij,ij->i", c, c)
    out = np.empty((x.shape[0], min(int(k), r)), dtype=np.int64)
    block = max(1, _BLOCK_VALUES // max(r, 1))
    for a in range(0, x.shape[0], block):
        xb = np.asarray(x[a : a + block], dtype=np.float64)
        d2 = np.einsum("ij,ij->i", xb, xb)[:, None] - 2.0 * (xb @ c.T) + c_sq[None, :]
        out[a : a + block] = _smallest(d2, out.shape[1])
    return out


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
        order = _smallest(d2, m)
        idx[a : a + block] = order
        dist[a : a + block] = np.take_along_axis(d2, order, axis=1)
        dist[a : a + block, 0] = 0.0
    return idx, dist


class Smoother:
    """The smoothing matrices of one sketch's centroids at every bandwidth, built once
    (they depend on the public centroids only) and applied to one release or to many
    at once (the noise-only releases of :meth:`noise_only_totals`).

    Parameters
    ----------
    centroids : array-like of shape (n_clusters, n_features)
    scales : tuple of float
        Bandwidths to try, in units of ``h0``, each finite and > 0.
    n_neighbours : int
        Centroids per average, itself included.
    """

    def __init__(
        self,
        centroids: NDArray[Any],
        scales: tuple[float, ...] = SMOOTH_SCALES,
        n_neighbours: int = SMOOTH_NEIGHBOURS,
    ) -> None:
        for t in scales:
            if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
                raise InvalidInputError(f"smoothing scales must be finite and > 0, got {t!r}")
        c = np.asarray(centroids)
        if c.ndim != 2:
            raise InvalidInputError(f"centroids must be 2-d, got shape {c.shape}")
        self.n_clusters = int(c.shape[0])
        self.scales: tuple[float, ...] = ()
        self.kernels: list[NDArray[np.float64]] = []
        self.noise: list[NDArray[np.float64]] = []
        if self.n_clusters < 2 or not scales:
            return
        self.idx, d2 = centroid_neighbourhoods(c, n_neighbours)
        positive = d2[:, 1][d2[:, 1] > 0]
        if positive.size == 0:  # every centroid duplicated: no scale to smooth over
            return
        h0 = float(np.median(d2[:, 1])) or float(np.median(positive))
        self.scales = tuple(float(t) for t in scales)
        for t in self.scales:
            k = np.exp(-d2 / (t * h0))
            k /= k.sum(axis=1, keepdims=True)
            self.kernels.append(k)
            self.noise.append(np.sqrt(np.einsum("ij,ij->i", k, k)))

    def _average(self, k: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
        """``S y`` for one release (n_clusters,) or many (n_clusters, n_releases)."""
        if y.ndim == 1:
            return np.asarray(np.einsum("ij,ij->i", k, y[self.idx]), dtype=np.float64)
        return np.asarray(np.einsum("ij,ijm->im", k, y[self.idx]), dtype=np.float64)

    def _despike(
        self, k: NDArray[np.float64], y: NDArray[np.float64], sigma: float
    ) -> NDArray[np.float64]:
        """The spike step at kernel ``k``: the fixed point ``e = max(y - S (y - e) -
        SPIKE_SIGMAS sigma, 0)``, then ``S (y - e) + e``."""
        excess = np.zeros_like(y)
        tol = 1e-12 * (1.0 + float(np.max(np.abs(y))))
        for _ in range(SPIKE_ITERATIONS):
            new = np.maximum(y - self._average(k, y - excess) - SPIKE_SIGMAS * sigma, 0.0)
            done = bool(np.max(np.abs(new - excess)) <= tol)
            excess = new
            if done:
                break
        return self._average(k, y - excess) + excess

    def sure(self, y: NDArray[np.float64], sigma: float) -> NDArray[np.float64]:
        """SURE of every candidate for every release: shape (1 + n_scales, ...), the
        identity first (``R sigma^2``)."""
        r = self.n_clusters
        rows = [np.full(y.shape[1:], float(r * sigma * sigma))]
        for k in self.kernels:
            d = y - self._average(k, y)
            # tr(S) is the sum of the self-weights, the first column.
            rows.append(np.sum(d * d, axis=0) + 2.0 * sigma * sigma * k[:, 0].sum() - r * sigma**2)
        return np.array(rows)

    def smooth(self, noisy_counts: Any, sigma: float) -> Smoothing:
        """:func:`smooth_counts` of one release."""
        y = as_vector(noisy_counts, "noisy_counts")
        s = check_nonneg_float(sigma, "sigma")
        if y.shape[0] != self.n_clusters:
            raise InvalidInputError(
                f"centroids of shape ({self.n_clusters}, ...) do not match the "
                f"{y.shape[0]} noisy counts"
            )
        ident = Smoothing(y.copy(), np.ones(y.shape[0]), 0.0, {0.0: float(y.shape[0] * s * s)})
        if s == 0.0 or not self.scales:
            return ident
        risks = self.sure(y, s)
        sure = {
            0.0: float(risks[0]),
            **{t: float(v) for t, v in zip(self.scales, risks[1:], strict=True)},
        }
        # The first smallest: the identity, then the smallest bandwidth, wins a tie.
        best = int(np.argmin(risks))
        if best == 0:
            return Smoothing(ident.counts, ident.noise, 0.0, sure)
        k = self.kernels[best - 1]
        return Smoothing(self._despike(k, y, s), self.noise[best - 1], self.scales[best - 1], sure)

    def weights_total(
        self, y: NDArray[np.float64], sigma: float, threshold: float
    ) -> NDArray[np.float64]:
        """For releases ``y`` (n_clusters, n_releases): the total of the thresholded
        smoothed counts, ``sum_i max(smoothed_i - threshold sigma ||S_i||, 0)``, each at
        its own SURE choice."""
        risks = self.sure(y, sigma)
        best = np.argmin(risks, axis=0)
        out = np.maximum(y - threshold * sigma, 0.0).sum(axis=0)  # the identity's
        for j, (k, noise) in enumerate(zip(self.kernels, self.noise, strict=True), start=1):
            cols = np.nonzero(best == j)[0]
            if cols.size:
                sm = self._despike(k, y[:, cols], sigma)
                out[cols] = np.maximum(sm - threshold * sigma * noise[:, None], 0.0).sum(axis=0)
        return np.asarray(out, dtype=np.float64)

    def noise_only_totals(
        self, sigma: float, threshold: float, n_draws: int = GATE_DRAWS, seed: int = GATE_SEED
    ) -> NDArray[np.float64]:
        """:meth:`weights_total` of ``n_draws`` releases of pure noise ``N(0, sigma^2)``
        (a fixed seed: the same draws on every backend and thread count)."""
        rng = np.random.default_rng(seed)
        r = self.n_clusters
        block = (
            max(1, _BLOCK_VALUES // max(r * max(self.idx.shape[1], 1), 1))
            if self.scales
            else n_draws
        )
        out = []
        for a in range(0, n_draws, block):
            m = min(block, n_draws - a)
            out.append(self.weights_total(rng.normal(0.0, sigma, (r, m)), sigma, threshold))
        return np.concatenate(out)


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
    return Smoother(centroids, scales, n_neighbours).smooth(noisy_counts, sigma)


def smoothed_release_is_noise(
    smoother: Smoother,
    noisy_counts: Any,
    sigma: float,
    threshold: float,
    *,
    smoothing: Smoothing | None = None,
) -> tuple[bool, float, float]:
    """Whether the smoothed release carries no more than noise would: its weights'
    total (:meth:`Smoother.weights_total` at ``threshold``) is at most the
    ``GATE_QUANTILE`` quantile of the same total over ``GATE_DRAWS`` releases of pure
    noise through the same smoothing (simulated: smoothing correlates the counts, so
    the total has no closed form). ``smoothing``: the release's own
    :meth:`Smoother.smooth`, when the caller has it (not computed again). Returns (is
    noise, the total, the bar); never noise with ``sigma == 0``."""
    y = as_vector(noisy_counts, "noisy_counts")
    if sigma <= 0:
        return False, float(np.maximum(y, 0.0).sum()), 0.0
    if smoothing is None:
        smoothing = smoother.smooth(y, sigma)
    total = float(np.maximum(smoothing.counts - threshold * sigma * smoothing.noise, 0.0).sum())
    bar = float(np.quantile(smoother.noise_only_totals(sigma, threshold), GATE_QUANTILE))
    return total <= bar, total, bar
