"""Validated entry points to the Rust kernels.

Each function checks and coerces its inputs (``_validation``), then calls the
compiled core with the GIL released on a pool of ``n_threads`` workers.
Results are identical for any ``n_threads``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from . import _core
from ._threads import resolve_threads
from ._validation import as_features, as_indices, check_choice, check_int, check_seed
from .errors import InvalidInputError


def check_backend(backend: Any) -> str:
    """``backend`` checked: ``"local"`` or ``"ray"``."""
    check_choice(backend, "backend", ("local", "ray"))
    return str(backend)


__all__ = ["KMeansResult", "assign", "init_sample_rows", "kcenter_greedy", "kmeans"]


def assign(
    features: Any,
    centroids: Any,
    *,
    n_threads: int | None = None,
    backend: Literal["local", "ray"] = "local",
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Nearest centroid of every row, and the squared distance to it.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        float32 C-contiguous input (including ``np.memmap``) is read without a copy.
    centroids : array-like of shape (n_clusters, n_features)
    n_threads : int, optional
        Worker threads; default ``ECOS_FAST_NUM_THREADS`` or the CPUs available.
    backend : {"local", "ray"}, default "local"
        ``"ray"``: ``features`` may also be a directory or list of ``.npy`` / Parquet
        shards or a ``ray.data.Dataset``; the shards are assigned on the Ray workers
        (:func:`ecos_fast.scaleout.assign`) and the result is the same.

    Returns
    -------
    labels : ndarray of shape (n_samples,), int64
        Index of the nearest centroid; ties go to the lowest index.
    sq_distances : ndarray of shape (n_samples,), float32

    Examples
    --------
    >>> import numpy as np, ecos_fast
    >>> x = np.array([[0, 0], [9, 9], [1, 0]], dtype=np.float32)
    >>> c = np.array([[0, 0], [10, 10]], dtype=np.float32)
    >>> labels, d2 = ecos_fast.assign(x, c)
    >>> labels.tolist(), d2.tolist()
    ([0, 1, 0], [0.0, 2.0, 1.0])
    """
    if check_backend(backend) == "ray":
        from . import scaleout

        return scaleout.assign(features, centroids)
    c = as_features(centroids, "centroids")
    x = as_features(features, "features", n_features=c.shape[1])
    return _core.assign(x, c, resolve_threads(n_threads))


@dataclass(frozen=True)
class KMeansResult:
    """What :func:`kmeans` returns.

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


def kmeans(
    features: Any,
    n_clusters: int,
    *,
    max_iter: int = 25,
    tol: float = 1e-4,
    seed: int = 0,
    init: Any = None,
    max_points_per_centroid: int | None = 256,
    n_local_trials: int = 1,
    init_sample: int | None = None,
    n_threads: int | None = None,
    backend: Literal["local", "ray"] = "local",
) -> KMeansResult:
    """k-means: k-means++ seeding (or ``init``), then Lloyd iterations.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    n_clusters : int
        In [1, n_samples].
    max_iter : int, default 25
    tol : float, default 1e-4
        Stop when the total squared centroid shift falls below ``tol`` times the
        mean per-feature variance (scikit-learn's convention).
    seed : int, default 0
        Seeds k-means++ and the training subsample.
    init : array-like of shape (n_clusters, n_features), optional
        Initial centroids; skips k-means++.
    max_points_per_centroid : int or None, default 256
        Train on a seeded subsample of ``n_clusters * max_points_per_centroid`` rows
        when the pool is larger (faiss's default), then assign every row once.
        ``None`` trains on all rows.
    n_local_trials : int, default 1
        Candidates tried per k-means++ step (greedy k-means++ when > 1).
    init_sample : int, optional
        Seed k-means++ on a seeded sample of at most this many training rows
        (:func:`init_sample_rows`) instead of on all of them. The Ray backend
        needs it (or ``init``) when ``max_points_per_centroid=None``.
    n_threads : int, optional
    backend : {"local", "ray"}, default "local"
        ``"ray"``: ``features`` may also be a directory or list of ``.npy`` / Parquet
        shards or a ``ray.data.Dataset``; see :func:`ecos_fast.scaleout.kmeans`. The
        result is the local one, bit for bit.

    Notes
    -----
    The centroid update sums each cluster's members in fixed point (one rounding
    per value to a per-feature grid finer than float32 for up to 2^40 rows), so
    the result does not depend on the thread count or on how the rows are split
    into shards.

    Examples
    --------
    >>> import numpy as np, ecos_fast
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (50, 2))])
    >>> km = ecos_fast.kmeans(x.astype(np.float32), 2, seed=1)
    >>> sorted(np.bincount(km.labels).tolist())
    [50, 50]
    """
    if check_backend(backend) == "ray":
        from . import scaleout

        return scaleout.kmeans(  # type: ignore[no-any-return]
            features, n_clusters, max_iter=max_iter, tol=tol, seed=seed, init=init,
            max_points_per_centroid=max_points_per_centroid, n_local_trials=n_local_trials,
            init_sample=init_sample, n_threads=n_threads,
        )  # fmt: skip
    x = as_features(features, "features")
    n = x.shape[0]
    k = check_int(n_clusters, "n_clusters", low=1, high=n)
    iters = check_int(max_iter, "max_iter", low=1)
    trials = check_int(n_local_trials, "n_local_trials", low=1)
    s = check_seed(seed)
    t = float(tol)
    if not np.isfinite(t) or t < 0:
        raise InvalidInputError(f"tol={tol} must be a finite number >= 0")
    init_c = None if init is None else as_features(init, "init", n_features=x.shape[1])
    if init_c is not None and init_c.shape[0] != k:
        raise InvalidInputError(f"init has {init_c.shape[0]} rows but n_clusters={k}")
    sample = None
    if max_points_per_centroid is not None:
        cap = check_int(max_points_per_centroid, "max_points_per_centroid", low=1) * k
        if n > cap:
            rng = np.random.default_rng(s)
            sample = np.sort(rng.choice(n, size=cap, replace=False)).astype(np.int64)
    if init_c is None and init_sample is not None:
        n_train = n if sample is None else sample.shape[0]
        rows = init_sample_rows(n_train, init_sample, s, k)
        if rows.shape[0] < n_train:  # else: the usual seeding on every training row
            rows = rows if sample is None else sample[rows]
            init_c = _core.kmeans_plusplus(x[rows], k, s, resolve_threads(n_threads), trials)
    c, labels, inertia, n_iter = _core.kmeans(
        x, k, iters, t, s, resolve_threads(n_threads), init_c, trials, sample
    )
    return KMeansResult(c, labels, inertia, int(n_iter))


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
    >>> from ecos_fast.kernels import init_sample_rows
    >>> init_sample_rows(10, 4, 0, 2).shape, init_sample_rows(3, 4, 0, 2).tolist()
    ((4,), [0, 1, 2])
    """
    m = check_int(init_sample, "init_sample", low=n_clusters)
    if m >= n_train:
        return np.arange(n_train, dtype=np.int64)
    rng = np.random.default_rng([check_seed(seed), 1])
    return np.sort(rng.choice(n_train, size=m, replace=False)).astype(np.int64)


def kcenter_greedy(
    features: Any,
    budget: int,
    *,
    first: int | None = None,
    initial: Any = None,
    rows: Any = None,
    n_threads: int | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Greedy K-Center (farthest-first traversal), exact.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    budget : int
        Picks to make, in [1, number of candidate rows not in ``initial``].
    first : int, optional
        The first pick (a candidate row). Default: the lowest candidate row.
        Ignored when ``initial`` is given.
    initial : array-like of int, optional
        Rows already selected: they act as centers from the start and are never
        returned (nor picked again, even when duplicates tie at distance 0).
    rows : array-like of int, optional
        Restrict the run to these rows (default: all rows).
    n_threads : int, optional

    Returns
    -------
    selected : ndarray of shape (budget,), int64
        Row indices in pick order. Each pick is the candidate farthest from its
        nearest center; ties go to the lowest row index.
    radii : ndarray of shape (budget,), float32
        Covering radius (Euclidean) of the unpicked candidates after each pick.

    Notes
    -----
    Exact: the picks are those of brute-force farthest-first in float32 (one running
    min-distance vector). Each candidate keeps an upper bound (its distance to the
    nearest center applied to it so far); new centers are applied lazily, only to the
    candidates whose bound could make them the next pick, and whole groups or single
    points are skipped when the triangle inequality proves a new center cannot be
    closer (with a margin that covers float32 rounding); a distance stops early once
    its partial sum proves the same. Memory is O(n_samples) (about 12-30 bytes per
    row) plus a copy of the center rows; the result does not depend on ``n_threads``.

    Examples
    --------
    >>> import numpy as np, ecos_fast
    >>> x = np.array([[0.0], [1.0], [10.0], [4.0]], dtype=np.float32)
    >>> sel, radii = ecos_fast.kcenter_greedy(x, 3)
    >>> sel.tolist(), radii.tolist()
    ([0, 2, 3], [10.0, 4.0, 1.0])
    """
    x = as_features(features, "features")
    n = x.shape[0]
    rows_a = None if rows is None else as_indices(rows, "rows", upper=n, allow_empty=False)
    n_cand = n if rows_a is None else rows_a.shape[0]
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        from .errors import InvalidTypeError

        raise InvalidTypeError(f"budget must be an int, got {type(budget).__name__}")
    from ._validation import check_budget

    init_a = None if initial is None else as_indices(initial, "initial", upper=n)
    if init_a is not None and init_a.size:
        # Already-selected rows are centers, never picks: they leave the candidates.
        n_cand -= int(np.isin(init_a, rows_a).sum()) if rows_a is not None else init_a.size
    b = check_budget(budget, n_cand)
    f = None
    if first is not None and (init_a is None or init_a.size == 0):
        f = check_int(first, "first", low=0, high=n - 1)
        if rows_a is not None and f not in set(rows_a.tolist()):
            raise InvalidInputError(f"first={f} is not one of the candidate rows")
    return _core.kcenter_greedy(x, b, resolve_threads(n_threads), f, init_a, rows_a)
