"""The worker functions Ray runs on the shards, and the driver's fan-out helpers.

Workers are plain functions (tests can call them directly); each reads its shard
with :func:`~ecos_fast.ray_backend.pool.load_shard` and runs the same compiled
kernels as the local backend. The selection rule's per-cluster pieces come from
:mod:`ecos_fast.rule`, so each shard applies exactly the local rule to its rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import _core
from .._validation import as_indices, check_choice
from ..errors import InvalidInputError
from ..rule import cluster_members
from ..transform import NORMALIZE_CHOICES
from .pool import RunStats, ShardedPool, fetch, load_shard, nbytes, ray_module, remote, task_threads

__all__ = [
    "add_parts",
    "assign_refs",
    "bins_total",
    "gather_rows",
]


# --- k-means -----------------------------------------------------------------


def task_max_abs(shard: Any, column: str | None, norm: str | None) -> NDArray[np.float32]:
    """Per-feature max |value| of a shard (sets the fixed-point grid)."""
    return _core.kmeans_max_abs(load_shard(shard, column, norm), task_threads())


def task_moments(
    shard: Any, column: str | None, norm: str | None, scales: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.uint64]]:
    """Fixed-point per-feature sums and sums of squares of a shard."""
    return _core.kmeans_moments(load_shard(shard, column, norm), scales, task_threads())


def task_partial(
    shard: Any,
    column: str | None,
    norm: str | None,
    centroids: NDArray[np.float32],
    scales: NDArray[np.float64],
) -> tuple[
    tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]],
    tuple[NDArray[np.int64], NDArray[np.float32]],
]:
    """One Lloyd step on a shard: (per-cluster sums, counts, inertia bins), (labels, distances).

    Run with ``num_returns=2``: the driver fetches the first (the reduction) and
    leaves the second, 12 bytes a row, in the object store, where
    :func:`task_relocation_rows` reads it if a cluster empties.
    """
    x = load_shard(shard, column, norm)
    sums, counts, bins, labels, dists = _core.kmeans_partial_labelled(
        x, centroids, scales, task_threads()
    )
    return (sums, counts, bins), (labels, dists)


def task_relocation_rows(
    shard: Any,
    column: str | None,
    norm: str | None,
    labelled: tuple[NDArray[np.int64], NDArray[np.float32]],
    offset: int,
    m: int,
) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
    """The shard's ``m`` rows farthest from their centroid (for empty clusters).

    Taken from the iteration's own labels and distances (``task_partial``'s second
    return): no distance is computed again, only the chosen rows are read.
    Returns (distances, global rows, labels, rows), ``_core.kmeans_update``'s ``cand``.
    """
    labels, dists = labelled
    far = _core.kmeans_relocation_order(dists, m)
    return dists[far], far + offset, labels[far], task_gather(shard, column, norm, far)


def bins_total(bins: NDArray[np.int64]) -> float:
    """The kernel's ``bins_total``: smallest exponent first, each term exact, in float64."""
    return float(sum(float(b) * 2.0 ** (e - 150) for e, b in enumerate(bins.tolist()) if b))


def task_assign(
    shard: Any,
    column: str | None,
    norm: str | None,
    centroids: NDArray[np.float32],
    n_clusters: int,
) -> tuple[NDArray[np.int64], NDArray[np.float32], dict[str, NDArray[Any]]]:
    """Labels and distances (kept in the object store) and a small summary: counts,
    nearest member per cluster, and the exact distance bins (``kmeans.rs``'s
    ``dist_bins``, returned by the assign kernel) that add up to the inertia."""
    x = load_shard(shard, column, norm)
    labels, d2, bins = _core.assign(x, centroids, task_threads(), bins=True)
    counts = np.bincount(labels, minlength=n_clusters).astype(np.int64)
    # Per cluster: the member nearest the centroid, ties to the lowest row.
    order = np.lexsort((np.arange(labels.shape[0]), d2, labels))
    firsts = order[np.r_[True, labels[order][1:] != labels[order][:-1]]]
    best_d = np.full(n_clusters, np.inf, dtype=np.float32)
    best_i = np.full(n_clusters, -1, dtype=np.int64)
    best_d[labels[firsts]] = d2[firsts]
    best_i[labels[firsts]] = firsts
    summary: dict[str, NDArray[Any]] = {
        "counts": counts,
        "best_d": best_d,
        "best_i": best_i,
        "bins": bins,
    }
    return labels, d2, summary


def task_gather(
    shard: Any, column: str | None, norm: str | None, local_rows: NDArray[np.int64]
) -> NDArray[np.float32]:
    """The shard's rows ``local_rows``."""
    return np.ascontiguousarray(load_shard(shard, column, norm)[local_rows])


# --- selection ------------------------------------------------------------------


def task_label_counts(
    labels: NDArray[np.int64], local_rows: NDArray[np.int64], n_clusters: int
) -> NDArray[np.int64]:
    """How many of the shard's ``local_rows`` each cluster holds."""
    return np.bincount(labels[local_rows], minlength=n_clusters).astype(np.int64)


def task_cluster_candidates(
    labels: NDArray[np.int64], d2: NDArray[np.float32], counts: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
    """Per cluster, the shard's ``counts[k]`` members nearest the centroid.

    Returns ``(indptr, local_rows, sq_dist)`` in the layout of
    :func:`ecos_fast._core.nearest_in_clusters` (nearest first, ties to the lowest row).
    """
    indptr, members = cluster_members(labels, counts.shape[0])
    out_indptr, rows = _core.nearest_in_clusters(d2, indptr, members, counts, task_threads())
    return out_indptr, rows, np.ascontiguousarray(d2[rows])


def task_members(
    shard: Any,
    column: str | None,
    norm: str | None,
    labels: NDArray[np.int64],
    clusters: NDArray[np.int64],
) -> Any:
    """For each of ``clusters``: this shard's members (local rows, ascending) and features."""
    x = load_shard(shard, column, norm)
    out = []
    for c in clusters.tolist():
        rows = np.flatnonzero(labels == c).astype(np.int64)
        out.append((rows, np.ascontiguousarray(x[rows])))
    return tuple(out) if len(out) > 1 else out[0]


def task_kcenter(
    quota: int,
    first: int,
    offsets: list[int],
    *parts: tuple[NDArray[np.int64], NDArray[np.float32]],
) -> NDArray[np.int64]:
    """Exact K-Center on one cluster gathered from the shards (global row order)."""
    rows = np.concatenate([p[0] + off for p, off in zip(parts, offsets, strict=False)])
    feats = np.concatenate([p[1] for p in parts]) if rows.size else np.zeros((0, 1), np.float32)
    pos = int(np.searchsorted(rows, first))
    sel, _ = _core.kcenter_greedy(feats, quota, task_threads(), pos, None, None)
    return rows[sel]


def task_coreset(
    shard: Any,
    column: str | None,
    norm: str | None,
    labels: NDArray[np.int64],
    d2: NDArray[np.float32],
    clusters: NDArray[np.int64],
    quotas: NDArray[np.int64],
) -> list[tuple[NDArray[np.int64], NDArray[np.float32]]]:
    """Stage 1 of the composable coreset: K-Center per cluster on this shard."""
    x = load_shard(shard, column, norm)
    out = []
    for c, q in zip(clusters.tolist(), quotas.tolist(), strict=False):
        rows = np.flatnonzero(labels == c).astype(np.int64)
        if rows.size == 0:
            out.append((rows, np.zeros((0, x.shape[1]), np.float32)))
            continue
        first = int(rows[np.argmin(d2[rows])])
        sel, _ = _core.kcenter_greedy(x, min(q, rows.size), task_threads(), first, None, rows)
        out.append((sel, np.ascontiguousarray(x[sel])))
    return out


# --- driver-side fan-out ----------------------------------------------------------


def gather_rows(
    pool: ShardedPool,
    rows: Any,
    *,
    normalize: str | None = None,
    stats: RunStats | None = None,
) -> NDArray[np.float32]:
    """The pool rows ``rows`` (sorted ascending, unique), fetched from their shards.

    Parameters
    ----------
    pool : ShardedPool
    rows : array-like of int
        Global row indices, strictly increasing.
    normalize : {None, "l2"}
    stats : RunStats, optional

    Returns
    -------
    ndarray of shape (len(rows), n_features), float32
    """
    check_choice(normalize, "normalize", NORMALIZE_CHOICES)
    r = as_indices(rows, "rows", upper=pool.n_samples)
    if r.size and np.any(np.diff(r) <= 0):
        raise InvalidInputError(
            f"rows must be strictly increasing in [0, {pool.n_samples}); got {r[:5]}..."
        )
    owner = pool.shard_of(r)
    futs = []
    for s in np.unique(owner).tolist():
        local = r[owner == s] - pool.offsets[s]
        futs.append(remote(task_gather).remote(pool.shards[s], pool.column, normalize, local))
    parts = fetch(futs)
    if stats is not None:
        stats.bytes_to_driver += nbytes(parts)
    if not parts:
        return np.zeros((0, pool.n_features), np.float32)
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def add_parts(parts: list[Any]) -> Any:
    """Element-wise sum of equally shaped tuples of integer arrays (exact)."""
    out = [np.array(a, copy=True) for a in parts[0]]
    for p in parts[1:]:
        for o, a in zip(out, p, strict=False):
            o += a
    return tuple(out)


def assign_refs(
    p: ShardedPool, centroids: NDArray[np.float32], normalize: str | None, st: RunStats
) -> list[Any]:
    """One :func:`task_assign` per shard: ``[(labels, d2, summary) refs, ...]``."""
    ray = ray_module()
    c_ref = ray.put(np.ascontiguousarray(centroids, np.float32))
    st.bytes_to_workers += centroids.nbytes
    f = remote(task_assign, num_returns=3)
    return [f.remote(sh, p.column, normalize, c_ref, centroids.shape[0]) for sh in p.shards]
