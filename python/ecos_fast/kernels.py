"""Validated entry points to the Rust kernels.

Each function checks and coerces its inputs (``_validation``: dtype, shape, NaN/inf, and
magnitudes small enough for float32 squared distances), then calls the compiled core
with the GIL released on a pool of ``n_threads`` workers. Results are identical for any
``n_threads``.

While a long call runs, the calling thread runs Python's signal handlers every 40 ms:
Ctrl-C raises ``KeyboardInterrupt`` once the kernel reaches its next check (a block of
192 rows, a k-means++ or K-Center pick). k-means and K-Center also report their steps
to a callback set with :func:`ecos_fast._progress.report_progress` (the CLI's bars).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from . import _core
from ._backend import check_backend, ray_backend
from ._progress import kernel_callback
from ._threads import resolve_threads
from ._validation import as_features, check_kcenter_args, check_kmeans_params
from .clustering import KMeansResult, kmeans_rows

__all__ = ["KMeansResult", "assign", "kcenter_greedy", "kmeans"]


def assign(
    features: Any,
    centroids: Any,
    *,
    n_threads: int | None = None,
    backend: Literal["local", "ray"] = "local",
    precision: Literal["auto", "float32", "bf16"] = "auto",
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Nearest centroid of every row, and the squared distance to it.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        float32 C-contiguous input (including ``np.memmap``) is read without a copy.
    centroids : array-like of shape (n_clusters, n_features)
    n_threads : int, optional
        Worker threads; default ``ECOS_FAST_NUM_THREADS`` or the CPUs available. Counts
        above 4 per available CPU are lowered to that (a ``ThreadsCappedWarning``).
    backend : {"local", "ray"}, default "local"
        ``"ray"``: ``features`` may also be a directory or list of ``.npy`` / Parquet
        shards or a ``ray.data.Dataset``; the shards are assigned on the Ray workers
        (:func:`ecos_fast.ray_backend.assign_sharded`) and the result is the same.
    precision : {"auto", "float32", "bf16"}, default "auto"
        How the nearest centroid is found; the result is the same bit for bit.
        ``"bf16"``: a bf16 first pass bounds every centroid's error from the norms and
        re-checks in float32 only those it cannot rule out; its dot products run on Intel
        AMX tiles (``tdpbf16ps``) where the CPU and OS allow them, else on AVX512_BF16
        ``vdpbf16ps`` (``ECOS_FAST_SIMD=avx512bf16`` forces the latter;
        ``build_info()["bf16_pass"]`` names the engine); ``InvalidInputError`` on a CPU
        without AVX512_BF16. ``"float32"``: the float32
        kernel only. ``"auto"``: bf16 where it measures faster on this core (a one-off
        calibration; ``ecos_fast._core.build_info()["assign_path"]``) and the problem is
        large enough, and past a pilot of 1536 rows only if the float32 re-checks it
        needed on this data leave it cheaper; else float32. The Ray backend always uses
        ``"auto"``.

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
        return ray_backend().assign_sharded(features, centroids)  # type: ignore[no-any-return]
    c = as_features(centroids, "centroids")
    x = as_features(features, "features", n_features=c.shape[1])
    return _core.assign(x, c, resolve_threads(n_threads), precision=precision)


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
        (:func:`ecos_fast.clustering.init_sample_rows`) instead of on all of them. The Ray backend
        needs it (or ``init``) when ``max_points_per_centroid=None``.
    n_threads : int, optional
    backend : {"local", "ray"}, default "local"
        ``"ray"``: ``features`` may also be a directory or list of ``.npy`` / Parquet
        shards or a ``ray.data.Dataset``; see :func:`ecos_fast.ray_backend.kmeans_sharded`. The
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
        return ray_backend().kmeans_sharded(  # type: ignore[no-any-return]
            features, n_clusters, max_iter=max_iter, tol=tol, seed=seed, init=init,
            max_points_per_centroid=max_points_per_centroid, n_local_trials=n_local_trials,
            init_sample=init_sample, n_threads=n_threads,
        )  # fmt: skip
    # Checked while k-means reads it (clustering.kmeans_rows), as fit_centroids does: a
    # memmapped pool is read once for the final assignment, not once more for the check.
    x = as_features(features, "features", finite=False)
    params = check_kmeans_params(
        x.shape[0], x.shape[1], n_clusters, max_iter=max_iter, tol=tol, seed=seed, init=init,
        max_points_per_centroid=max_points_per_centroid, n_local_trials=n_local_trials,
        init_sample=init_sample,
    )  # fmt: skip
    return kmeans_rows(x, params, resolve_threads(n_threads), check_as="features")


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
    a = check_kcenter_args(x.shape[0], budget, first=first, initial=initial, rows=rows)
    progress = kernel_callback("k-center", a.budget)
    return _core.kcenter_greedy(
        x, a.budget, resolve_threads(n_threads), a.first, a.initial, a.rows, progress=progress
    )
