"""k-means pieces both backends share: the result type, the seeded row draws and the
single-machine run.

The Ray backend (:mod:`ecos_fast.ray_backend`) draws the same training sample and
the same seeding rows as the local backend with :func:`training_sample_rows` and
:func:`init_sample_rows`, and clusters a gathered sample with :func:`kmeans_rows`,
so both return the same centroids bit for bit. Inputs are checked by the callers
(``_validation.check_kmeans_params``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from . import _core, _stream, _validation
from ._progress import kernel_callback
from ._validation import KMeansParams, check_int, check_seed, feature_limit

__all__ = ["KMeansResult", "init_sample_rows", "kmeans_rows", "training_sample_rows"]


@dataclass(frozen=True)
class KMeansResult:
    """What :func:`ecos_fast.kmeans` returns.

    Attributes
    ----------
    centroids : ndarray of shape (n_clusters, n_features), float32
    labels : ndarray of shape (n_samples,), int64
        Nearest centroid of every row (all rows, also when training subsampled).
    inertia_history : ndarray of shape (n_iter + 1,) or (n_iter,), float64
        Sum of squared distances of the training rows at each assignment; it
        never increases (up to float32 rounding). Length ``n_iter + 1`` when
        training on every row (the last entry is the final centroids'),
        ``n_iter`` when training on a subsample.
    n_iter : int
        Lloyd iterations run.
    """

    centroids: NDArray[np.float32]
    labels: NDArray[np.int64]
    inertia_history: NDArray[np.float64]
    n_iter: int

    @property
    def inertia(self) -> float:
        """The final inertia."""
        return float(self.inertia_history[-1])


def training_sample_rows(n_samples: int, params: KMeansParams) -> NDArray[np.int64] | None:
    """The seeded training subsample, or None to train on every row.

    ``params.max_train`` rows drawn uniformly without replacement with
    ``numpy.random.default_rng(seed)``, sorted; None when the pool is not larger.

    Examples
    --------
    >>> from ecos_fast._validation import KMeansParams
    >>> from ecos_fast.clustering import training_sample_rows
    >>> p = KMeansParams(2, 10, 0.0, 0, None, 4, 1, None)
    >>> training_sample_rows(10, p).shape, training_sample_rows(4, p)
    ((4,), None)
    """
    cap = params.max_train
    if cap is None or n_samples <= cap:
        return None
    rng = np.random.default_rng(params.seed)
    return np.sort(rng.choice(n_samples, size=cap, replace=False)).astype(np.int64)


def init_sample_rows(
    n_train: int, init_sample: int, seed: int, n_clusters: int
) -> NDArray[np.int64]:
    """The training rows k-means++ seeds on when ``init_sample`` is given.

    A seeded uniform sample without replacement (``numpy.random.default_rng([seed, 1])``),
    sorted; every row when ``init_sample >= n_train``. Both backends use it.

    Parameters
    ----------
    n_train : int
    init_sample : int
        In [n_clusters, ...].
    seed : int
    n_clusters : int

    Returns
    -------
    ndarray of shape (min(init_sample, n_train),), int64

    Examples
    --------
    >>> from ecos_fast.clustering import init_sample_rows
    >>> init_sample_rows(10, 4, 0, 2).shape, init_sample_rows(3, 4, 0, 2).tolist()
    ((4,), [0, 1, 2])
    """
    m = check_int(init_sample, "init_sample", low=n_clusters)
    if m >= n_train:
        return np.arange(n_train, dtype=np.int64)
    rng = np.random.default_rng([check_seed(seed), 1])
    return np.sort(rng.choice(n_train, size=m, replace=False)).astype(np.int64)


def kmeans_rows(
    x: _stream.Rows,
    params: KMeansParams,
    n_threads: int,
    *,
    check_as: str | None = None,
) -> KMeansResult:
    """k-means of features ``x`` on one machine (the compiled core).

    Trains on :func:`training_sample_rows` when ``params.max_train`` is below the
    pool size, seeds k-means++ on :func:`init_sample_rows` when
    ``params.init_sample`` is given (and ``params.init`` is not), then assigns
    every row once.

    ``x`` has been checked for NaN/inf and magnitude, unless ``check_as`` names it:
    then every row is checked (against :func:`~ecos_fast._validation.feature_limit`)
    as it is first read, with the errors of ``check_finite`` naming ``check_as``.

    A memory-mapped ``x`` (:func:`ecos_fast._stream.is_mapped`), or one to check, is
    read in row blocks (:mod:`ecos_fast._stream`): the training sample is gathered
    (its reads queued together), clustered in memory, and the final assignment is one
    pass of blocks with the check fused into it; Lloyd on every row
    (``max_train=None``) is one pass per iteration, plus one for the per-feature
    maxima (with the check) and one for the final assignment, the variance that
    scales ``tol`` being summed in the first iteration's pass. The result is the
    in-memory kernel's, bit for bit (the sharded reductions of the Ray backend). A
    :class:`ecos_fast._stream.Transformed` pool (``normalize="l2"`` on disk) is read
    the same way, each block transformed as it is read.

    Examples
    --------
    >>> import numpy as np
    >>> from ecos_fast._validation import KMeansParams
    >>> from ecos_fast.clustering import kmeans_rows
    >>> x = np.array([[0], [0.1], [5], [5.1]], np.float32)
    >>> km = kmeans_rows(x, KMeansParams(2, 10, 0.0, 0, None, None, 1, None), 1)
    >>> sorted(km.labels.tolist()), km.n_iter >= 1
    ([0, 0, 1, 1], True)
    """
    n = x.shape[0]
    p = params
    sample = training_sample_rows(n, p)
    if check_as is not None or isinstance(x, _stream.Transformed) or _stream.is_mapped(x):
        if sample is not None:
            return _kmeans_on_sample(x, sample, p, n_threads, check_as)
        if isinstance(x, _stream.Transformed) or _stream.is_mapped(x):
            return _lloyd_streamed(x, p, n_threads, check_as)
        _validation.check_finite(x, check_as or "features", max_abs=feature_limit(x.shape[1]))
    init_c = p.init
    if init_c is None and p.init_sample is not None:
        n_train = n if sample is None else sample.shape[0]
        rows = init_sample_rows(n_train, p.init_sample, p.seed, p.n_clusters)
        if rows.shape[0] < n_train:  # else: the usual seeding on every training row
            rows = rows if sample is None else sample[rows]
            init_c = _core.kmeans_plusplus(
                x[rows], p.n_clusters, p.seed, n_threads, p.n_local_trials
            )
    progress = kernel_callback("k-means", p.max_iter)
    c, labels, inertia, n_iter = _core.kmeans(
        x, p.n_clusters, p.max_iter, p.tol, p.seed, n_threads, init_c, p.n_local_trials, sample,
        progress,
    )  # fmt: skip
    return KMeansResult(c, labels, inertia, int(n_iter))


def on_every_row(params: KMeansParams) -> KMeansParams:
    """``params`` with no training subsample (for a sample already drawn)."""
    return replace(params, max_train=None)


def _bins_total(bins: NDArray[np.int64]) -> float:
    """The kernel's exact inertia from its exponent bins (smallest exponent first)."""
    return float(sum(float(b) * 2.0 ** (e - 150) for e, b in enumerate(bins.tolist()) if b))


def _kmeans_on_sample(
    x: _stream.Rows,
    sample: NDArray[np.int64],
    p: KMeansParams,
    n_threads: int,
    check_as: str | None,
) -> KMeansResult:
    """Lloyd on the gathered ``sample`` rows, then one checked pass assigning every row.

    What the compiled kernel does with ``sample=``, in the same order of arithmetic:
    it gathers the rows too and clusters them alone (the Ray backend relies on it).
    """
    limit = feature_limit(x.shape[1])
    xs = _stream.gather_rows(x, sample)
    if check_as is not None:
        _stream.check_block(xs, x, check_as, limit)
    km = kmeans_rows(xs, on_every_row(p), n_threads)
    labels, _, _ = _stream.assign_checked(x, km.centroids, n_threads, name=check_as, max_abs=limit)
    # The history covers the training assignments only, as with sample= in the kernel.
    return KMeansResult(km.centroids, labels, km.inertia_history[: km.n_iter], km.n_iter)


def _lloyd_streamed(
    x: _stream.Rows, p: KMeansParams, n_threads: int, check_as: str | None
) -> KMeansResult:
    """Lloyd on every row of a mapped pool, in row blocks (one pass per iteration).

    Each block is a shard of the Ray backend's exact reduction: per-feature maxima set
    the fixed-point scales, each iteration adds the blocks' integer sums, counts and
    inertia bins and keeps every row's label and distance (12 bytes a row), empty
    clusters take the farthest rows by those distances (the few rows gathered from
    ``x``, no second pass), and ``_core.kmeans_update`` moves the centroids, so the
    result equals the in-memory kernel's bit for bit.
    """
    n, d = x.shape
    k = p.n_clusters
    limit = feature_limit(d)
    maxabs = np.zeros(d, dtype=np.float32)
    for _, blk in _stream.blocks(x):  # pass 1: the check and the per-feature maxima
        if check_as is not None:
            _stream.check_block(blk, x, check_as, limit)
        np.maximum(maxabs, _core.kmeans_max_abs(blk, n_threads), out=maxabs)
    scales = _core.kmeans_scales(maxabs, n)
    centroids = p.init
    if centroids is None:
        rows = None if p.init_sample is None else init_sample_rows(n, p.init_sample, p.seed, k)
        if rows is not None and rows.shape[0] < n:
            seed_rows = _stream.gather_rows(x, rows)
        else:  # k-means++ over every row: up to n_clusters passes, as in memory
            seed_rows = _stream.as_array(x)
        centroids = _core.kmeans_plusplus(seed_rows, k, p.seed, n_threads, p.n_local_trials)
    progress = kernel_callback("k-means", p.max_iter)
    tol_abs = 0.0
    history: list[float] = []
    n_iter = 0
    labels = np.empty(n, dtype=np.int64)  # this iteration's assignment, for relocations
    dists = np.empty(n, dtype=np.float32)
    for it in range(p.max_iter):
        sums = np.zeros((k, d), dtype=np.int64)
        counts = np.zeros(k, dtype=np.int64)
        bins = np.zeros(256, dtype=np.int64)
        q = np.zeros(d, dtype=np.int64)
        q2 = [0] * d
        for start, blk in _stream.blocks(x):
            if it == 0 and p.tol > 0:  # the variance that scales tol, in the same pass
                m, hi, lo = _core.kmeans_moments(blk, scales, n_threads)
                q += m
                q2 = [v + ((int(h) << 64) | int(lo_)) for v, h, lo_ in zip(q2, hi, lo, strict=True)]
            s_, c_, b_, l_, d_ = _core.kmeans_partial_labelled(blk, centroids, scales, n_threads)
            sums += s_
            counts += c_
            bins += b_
            labels[start : start + l_.shape[0]] = l_
            dists[start : start + l_.shape[0]] = d_
        if it == 0 and p.tol > 0:
            hi_w = np.array([v >> 64 for v in q2], dtype=np.int64)
            lo_w = np.array([v & ((1 << 64) - 1) for v in q2], dtype=np.uint64)
            tol_abs = p.tol * _core.kmeans_mean_variance(q, hi_w, lo_w, n, scales)
        cand = None
        n_empty = int((counts == 0).sum())
        if n_empty:  # the farthest rows, from this pass's distances: no second read
            far = _core.kmeans_relocation_order(dists, n_empty + k)
            cand = (dists[far], far, labels[far], _stream.gather_rows(x, far))
        new, shift, inertia, _, _ = _core.kmeans_update(sums, counts, bins, centroids, scales, cand)
        history.append(float(inertia))
        n_iter += 1
        centroids = new
        if progress is not None:
            progress(n_iter)
        if shift <= tol_abs:
            break
    del labels, dists
    labels, _, bins = _stream.assign_checked(x, centroids, n_threads)
    history.append(_bins_total(bins))
    return KMeansResult(
        np.asarray(centroids, dtype=np.float32), labels, np.asarray(history), int(n_iter)
    )
