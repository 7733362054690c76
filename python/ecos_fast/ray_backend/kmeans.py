"""Distributed k-means and assignment over a sharded pool (exact).

Lloyd on every row: each shard returns its per-cluster feature sums in fixed
point (int64, one rounding per value to a per-feature grid set from the global
max |value| and row count), its counts and its inertia in exact per-exponent
bins. Integer addition is associative, so the driver's sum equals the local
kernel's, which uses the same integer sums (faiss's distributed k-means has the
same additive structure, in floating point). Empty clusters take the globally
farthest rows: each shard sends its top ``n_empty + n_clusters`` rows by
(distance desc, global row asc) and the driver merges them with the local rule.

With ``max_points_per_centroid`` set, the seeded training sample (the rows the
local backend draws, :func:`ecos_fast.clustering.training_sample_rows`) is
gathered to the driver and clustered there by the local run
(:func:`ecos_fast.clustering.kmeans_rows`); workers then run the final
assignment. k-means++ seeding runs on the driver over the seeded
``init_sample`` rows gathered from the shards.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import _core
from .._threads import resolve_threads
from .._validation import KMeansParams, as_features, check_choice, check_kmeans_params
from ..clustering import KMeansResult, init_sample_rows, kmeans_rows, on_every_row
from ..clustering import training_sample_rows as _training_rows
from ..errors import InvalidInputError
from ..transform import NORMALIZE_CHOICES
from .pool import RunStats, ShardedPool, fetch, nbytes, ray_module, remote
from .tasks import (
    add_parts,
    assign_refs,
    bins_total,
    gather_rows,
    task_max_abs,
    task_moments,
    task_partial,
    task_relocation_rows,
)

__all__ = ["assign_sharded", "kmeans_sharded"]


def kmeans_sharded(
    pool: Any,
    n_clusters: int,
    *,
    max_iter: int = 25,
    tol: float = 1e-4,
    seed: int = 0,
    init: Any = None,
    max_points_per_centroid: int | None = 256,
    n_local_trials: int = 1,
    init_sample: int | None = None,
    normalize: str | None = None,
    return_labels: bool = True,
    column: str | None = None,
    n_threads: int | None = None,
    stats: RunStats | None = None,
) -> KMeansResult:
    """:func:`ecos_fast.kmeans` over a sharded pool, on Ray.

    Same parameters and result as :func:`ecos_fast.kmeans` (``backend="local"``),
    which it equals bit for bit: centroids, labels, inertia history and ``n_iter``.
    ``pool`` is anything :meth:`ShardedPool.from_source` takes. A pool of at most
    ``n_clusters * max_points_per_centroid`` rows is gathered to the driver whole
    and clustered there, as the local backend trains on every row. With
    ``max_points_per_centroid=None`` (Lloyd on every row, on the workers) the
    seeding needs ``init`` or ``init_sample``: k-means++ over every row would take
    ``n_clusters`` passes over the pool.

    Parameters
    ----------
    return_labels : bool, default True
        Fetch every row's label to the driver (8 bytes per row); ``False``
        leaves ``labels`` as an empty array.
    normalize : {None, "l2"}
        Applied to each shard as it is read (:func:`ecos_fast.fit_centroids`).
    n_threads : int, optional
        Threads of the driver's own kernel calls (the sample k-means, the k-means++
        seeding); checked first, whichever path runs.
    stats : RunStats, optional
        Filled with what was measured.
    """
    t0 = time.perf_counter()
    st = stats if stats is not None else RunStats()
    check_choice(normalize, "normalize", NORMALIZE_CHOICES)
    threads = resolve_threads(n_threads)
    p = ShardedPool.from_source(pool, column=column)
    st.n_shards = p.n_shards
    n = p.n_samples
    params = check_kmeans_params(
        n, p.n_features, n_clusters, max_iter=max_iter, tol=tol, seed=seed, init=init,
        max_points_per_centroid=max_points_per_centroid, n_local_trials=n_local_trials,
        init_sample=init_sample,
    )  # fmt: skip
    sample = _training_rows(n, params)
    if sample is not None:
        # Default path: the local backend trains on this same seeded sample.
        xs = gather_rows(p, sample, normalize=normalize, stats=st)
        km = kmeans_rows(xs, on_every_row(params), threads)
        # The history covers the training assignments only, as the local backend's.
        centroids, n_iter = km.centroids, km.n_iter
        history = list(km.inertia_history[:n_iter])
        final_inertia = False
    elif params.max_train is not None:
        # A pool no larger than the training cap: the local backend trains on every
        # row, so every row is gathered and clustered by the same local run.
        xs = gather_rows(p, np.arange(n, dtype=np.int64), normalize=normalize, stats=st)
        km = kmeans_rows(xs, params, threads)
        centroids, n_iter = km.centroids, km.n_iter
        history = list(km.inertia_history)
        final_inertia = False
    else:
        centroids = _init_centroids(p, params, normalize, threads, st)
        centroids, history, n_iter = _lloyd(p, centroids, params, normalize, st)
        final_inertia = True
    labels, bins = _final_assign(p, centroids, normalize, return_labels, st)
    if final_inertia:
        history.append(bins_total(bins))
    st.wall_s = time.perf_counter() - t0
    return KMeansResult(
        np.asarray(centroids, dtype=np.float32), labels, np.asarray(history), int(n_iter)
    )


def _init_centroids(
    p: ShardedPool, params: KMeansParams, normalize: str | None, threads: int, st: RunStats
) -> NDArray[np.float32]:
    if params.init is not None:
        return params.init
    if params.init_sample is None:
        raise InvalidInputError(
            "backend='ray' with max_points_per_centroid=None seeds k-means++ on a gathered "
            "sample: pass init_sample=<rows> (the local backend then draws the same rows) or init="
        )
    k, s = params.n_clusters, params.seed
    rows = init_sample_rows(p.n_samples, params.init_sample, s, k)
    xs = gather_rows(p, rows, normalize=normalize, stats=st)
    return _core.kmeans_plusplus(xs, k, s, threads, params.n_local_trials)


def _lloyd(
    p: ShardedPool,
    centroids: NDArray[np.float32],
    params: KMeansParams,
    normalize: str | None,
    st: RunStats,
) -> tuple[NDArray[np.float32], list[float], int]:
    ray = ray_module()
    n, k = p.n_samples, centroids.shape[0]
    col = p.column
    maxabs = np.max(
        np.stack(fetch([remote(task_max_abs).remote(sh, col, normalize) for sh in p.shards])),
        axis=0,
    )
    scales = _core.kmeans_scales(np.ascontiguousarray(maxabs, np.float32), n)
    sc_ref = ray.put(scales)
    st.bytes_to_driver += maxabs.nbytes * p.n_shards
    tol_abs = 0.0  # tol = 0 stops on a zero shift only: no pass for the variance
    if params.tol > 0:
        mom = fetch([remote(task_moments).remote(sh, col, normalize, sc_ref) for sh in p.shards])
        st.bytes_to_driver += nbytes(mom)
        # i128 sums of squares travel as (hi, lo) words; add them as Python ints.
        q = np.sum(np.stack([m[0] for m in mom]), axis=0)
        q2 = [sum((int(m[1][j]) << 64) | int(m[2][j]) for m in mom) for j in range(p.n_features)]
        hi = np.array([v >> 64 for v in q2], dtype=np.int64)
        lo = np.array([v & ((1 << 64) - 1) for v in q2], dtype=np.uint64)
        tol_abs = params.tol * _core.kmeans_mean_variance(q, hi, lo, n, scales)
    history: list[float] = []
    n_iter = 0
    for _ in range(params.max_iter):
        ti = time.perf_counter()
        c_ref = ray.put(centroids)
        st.bytes_to_workers += centroids.nbytes
        # Each shard's labels and distances stay in the object store (12 bytes a
        # row) and are read again only if a cluster empties.
        refs = [
            remote(task_partial, num_returns=2).remote(sh, col, normalize, c_ref, sc_ref)
            for sh in p.shards
        ]
        parts = fetch([r[0] for r in refs])
        st.bytes_to_driver += nbytes(parts)
        st.lloyd_bytes_to_driver += nbytes(parts)
        st.distance_passes += 1
        tr = time.perf_counter()
        sums, counts, bins = add_parts(parts)
        st.driver_reduce_s += time.perf_counter() - tr
        cand = None
        n_empty = int((counts == 0).sum())
        if n_empty and int(counts.sum()) >= k:
            m = n_empty + k
            f = remote(task_relocation_rows)
            got = fetch(
                [
                    f.remote(sh, col, normalize, r[1], off, m)
                    for sh, r, off in zip(p.shards, refs, p.offsets[:-1], strict=True)
                ]
            )
            st.bytes_to_driver += nbytes(got)
            st.lloyd_bytes_to_driver += nbytes(got)
            cand = tuple(
                np.ascontiguousarray(np.concatenate([g[i] for g in got])) for i in range(4)
            )
        del refs
        tr = time.perf_counter()
        new, shift, inertia, _, _ = _core.kmeans_update(sums, counts, bins, centroids, scales, cand)  # type: ignore[arg-type]
        st.driver_reduce_s += time.perf_counter() - tr
        history.append(float(inertia))
        n_iter += 1
        centroids = new
        st.per_iteration_s.append(time.perf_counter() - ti)
        if shift <= tol_abs:
            break
    st.iterations += n_iter
    return centroids, history, n_iter


def _final_assign(
    p: ShardedPool,
    centroids: NDArray[np.float32],
    normalize: str | None,
    return_labels: bool,
    st: RunStats,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Every row's label (fetched when asked) and the inertia bins of the assignment."""
    out = assign_refs(p, centroids, normalize, st)
    summaries = fetch([o[2] for o in out])
    st.bytes_to_driver += nbytes(summaries)
    bins = add_parts([(sm["bins"],) for sm in summaries])[0]
    labels = np.zeros(0, np.int64)
    if return_labels:
        labs = fetch([o[0] for o in out])
        st.bytes_to_driver += nbytes(labs)
        labels = np.concatenate(labs).astype(np.int64)
    return labels, bins


def assign_sharded(
    pool: Any,
    centroids: Any,
    *,
    normalize: str | None = None,
    column: str | None = None,
    stats: RunStats | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """:func:`ecos_fast.assign` over a sharded pool, on Ray (labels, squared distances).

    Both arrays are fetched to the driver (12 bytes per row); equal to the local result.
    """
    st = stats if stats is not None else RunStats()
    check_choice(normalize, "normalize", NORMALIZE_CHOICES)
    p = ShardedPool.from_source(pool, column=column)
    c = as_features(centroids, "centroids", n_features=p.n_features)
    out = assign_refs(p, c, normalize, st)
    labs = fetch([o[0] for o in out])
    d2 = fetch([o[1] for o in out])
    st.bytes_to_driver += nbytes(labs) + nbytes(d2)
    st.n_shards = p.n_shards
    return np.concatenate(labs).astype(np.int64), np.concatenate(d2).astype(np.float32)
