"""Distributed select: the ECOS rule (:mod:`ecos_fast.rule`) over a sharded pool.

The shards are assigned on the workers; the driver adds the per-cluster counts
and hands them, with the client's release, to :func:`ecos_fast.rule.plan_selection`
(the same weights, signal check, fallback and quotas as the local backend). Then,
within each cluster with a quota:

- ``within="nearest"`` / ``"neighbourhood"``: each shard returns its own top-m
  members by (distance, row) for every chosen cluster (``m`` from
  :func:`ecos_fast.rule.candidate_counts`); the driver merges them by (distance,
  global row), which gives the global top m exactly. ``"nearest"`` picks those;
  ``"neighbourhood"`` gathers their features and runs
  :func:`ecos_fast.rule.kcenter_on_candidates` on them, as the local backend
  does on the whole pool: the same picks.
- ``within="strata"`` / ``"weighted-strata"``: the same merge with ``m`` the whole cluster; the driver
  gathers the members (in global row order) and runs
  :func:`ecos_fast.rule.strata_all_clusters`, as the local backend does: the same
  picks. The driver holds the rows of the clusters with a quota.
- ``within="kcenter"`` with ``kcenter="gather"`` (default): each cluster with a
  quota is gathered to one worker (members in global row order) and runs the
  exact K-Center kernel from its global nearest member: the local selection, bit
  for bit. With ``kcenter="coreset"`` each shard runs K-Center on its part of the
  cluster and a second K-Center runs on the union of the shards' picks
  (composable coresets, Malkomes et al. 2015): the covering radius is at most 4 x
  the optimal one of the cluster (each greedy stage is a 2-approximation), it
  moves only the picks, and it depends on the sharding.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import _core
from .._threads import resolve_threads
from .._validation import check_budget, check_choice, check_seed
from ..errors import InvalidInputError, InvalidTypeError
from ..rule import (
    DEFAULT_CANDIDATES,
    DEFAULT_LOW_SIGNAL,
    DEFAULT_SMOOTH,
    DEFAULT_THRESHOLD,
    DEFAULT_WEIGHTS,
    DEFAULT_WITHIN,
    KCENTER_MODES,
    STRATA_ROUTINES,
    Plan,
    Selection,
    candidate_counts,
    check_rule_options,
    ecos_selection,
    fallback_selection,
    kcenter_on_candidates,
    plan_selection,
    random_rows,
    rows_ascending,
    strata_affinity,
    strata_all_clusters,
)
from .pool import RunStats, ShardedPool, fetch, nbytes, ray_module, remote
from .tasks import (
    assign_refs,
    gather_rows,
    task_cluster_candidates,
    task_coreset,
    task_kcenter,
    task_label_counts,
    task_members,
)

__all__ = ["KCENTER_MODES", "select_sharded"]


def select_sharded(
    pool: Any,
    sketch: Any,
    budget: int,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    weights: str = DEFAULT_WEIGHTS,
    within: str = DEFAULT_WITHIN,
    candidates: float = DEFAULT_CANDIDATES,
    fallback: str = "raise",
    low_signal: str = DEFAULT_LOW_SIGNAL,
    smooth: str = DEFAULT_SMOOTH,
    seed: int = 0,
    kcenter: str = "gather",
    column: str | None = None,
    n_threads: int | None = None,
    stats: RunStats | None = None,
    stacklevel: int = 2,
) -> Selection:
    """:func:`ecos_fast.select` over a sharded pool, on Ray.

    Parameters are those of :func:`ecos_fast.select` (``sketch`` a joined
    :class:`ecos_fast.Sketch`) plus ``kcenter`` (``within="kcenter"`` only):
    ``"gather"`` (exact: the local selection) or ``"coreset"`` (per-shard K-Center
    then K-Center on the union; covering radius within 4 x the optimum of each
    cluster). ``fallback="kcenter"`` (global K-Center over the whole pool) is not
    offered here. ``n_threads``: the driver's own K-Center call. ``stacklevel``:
    where the warnings point (2: the caller of this function). The returned
    ``Selection.labels`` is None: labels stay on the workers.
    """
    t0 = time.perf_counter()
    st = stats if stats is not None else RunStats()
    opts = check_rule_options(
        threshold=threshold, weights=weights, within=within, candidates=candidates,
        fallback=fallback, low_signal=low_signal, smooth=smooth,
    )  # fmt: skip
    check_choice(kcenter, "kcenter", KCENTER_MODES)
    threads = resolve_threads(n_threads)
    if kcenter == "coreset" and opts.within != "kcenter":
        raise InvalidInputError(
            f"kcenter='coreset' runs K-Center over whole clusters: it needs within='kcenter', "
            f"got within={opts.within!r}"
        )
    if opts.fallback == "kcenter":
        raise InvalidInputError("fallback='kcenter' is not offered with backend='ray'")
    if not all(hasattr(sketch, a) for a in ("centroids", "response", "n_clusters")):
        # The Sketch type lives above this backend: ecos_fast.select joins a pair first.
        raise InvalidTypeError(
            f"sketch must be a joined ecos_fast.Sketch (ecos_fast.Sketch.join(centroids, "
            f"response)), got {type(sketch).__name__}"
        )
    cents = sketch.centroids
    p = ShardedPool.from_source(pool, column=column)
    st.n_shards = p.n_shards
    if p.n_features != cents.n_features:
        raise InvalidInputError(
            f"pool has n_features={p.n_features} but the centroids have {cents.n_features}"
        )
    n = p.n_samples
    b = check_budget(budget, n)
    s = check_seed(seed)
    norm = cents.normalize
    c = cents.centroids
    r = sketch.n_clusters
    out = assign_refs(p, c, norm, st)
    summaries = fetch([o[2] for o in out])
    st.bytes_to_driver += nbytes(summaries)
    capacity = np.sum(np.stack([sm["counts"] for sm in summaries]), axis=0).astype(np.int64)
    resp = sketch.response
    plan = plan_selection(
        resp.noisy_counts, resp.sigma, capacity, b, opts, stacklevel=stacklevel, centroids=c
    )
    if plan.fallback is not None:
        idx = random_rows(n, b, s)
        sel = fallback_selection(idx, plan, _label_counts(p, out, idx, r, st), None)
        st.wall_s = time.perf_counter() - t0
        return sel
    if opts.within == "kcenter":
        picks = _kcenter_whole_clusters(p, out, summaries, plan, norm, kcenter, st)
    else:
        counts = candidate_counts(plan.quotas, capacity, opts)
        cand_indptr, cand = _merged_candidates(p, out, counts, st)
        if opts.within == "nearest":
            picks = [cand]
        elif opts.within in STRATA_ROUTINES:  # whole clusters, gathered to the driver
            rows = np.unique(cand)
            xs = gather_rows(p, rows, normalize=norm, stats=st)
            by_row = rows_ascending(cand_indptr, cand)  # each cluster's rows ascending, as local
            pos = np.searchsorted(rows, by_row).astype(np.int64)
            aff = strata_affinity(c, plan, opts)
            picks = [
                rows[
                    strata_all_clusters(xs, cand_indptr, pos, plan.quotas, s, threads, affinity=aff)
                ]
            ]
        else:
            rows = np.unique(cand)
            xs = gather_rows(p, rows, normalize=norm, stats=st)
            pos = np.searchsorted(rows, cand).astype(np.int64)
            picks = [rows[kcenter_on_candidates(xs, cand_indptr, pos, plan.quotas, threads)]]
    st.bytes_to_driver += nbytes(picks)
    idx = np.concatenate(picks).astype(np.int64) if picks else np.zeros(0, np.int64)
    sel = ecos_selection(idx, plan, None, stacklevel=stacklevel)
    st.wall_s = time.perf_counter() - t0
    return sel


def _label_counts(
    p: ShardedPool, out: list[Any], idx: NDArray[np.int64], r: int, st: RunStats
) -> NDArray[np.int64]:
    """Per cluster, how many of the global rows ``idx`` it holds (counted on the workers)."""
    owner = p.shard_of(idx)
    f = remote(task_label_counts)
    futs = [
        f.remote(out[s][0], idx[owner == s] - p.offsets[s], r) for s in np.unique(owner).tolist()
    ]
    parts = fetch(futs)
    st.bytes_to_driver += nbytes(parts)
    total = np.zeros(r, dtype=np.int64)
    for part in parts:
        total += part
    return total


def _merged_candidates(
    p: ShardedPool, out: list[Any], counts: NDArray[np.int64], st: RunStats
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The global ``counts[k]`` members of each cluster nearest its centroid.

    Each shard sends its own top ``counts[k]`` (a superset of its share of the
    global top); merging by (distance, global row) gives the global top exactly,
    in the layout of :func:`ecos_fast._core.nearest_in_clusters`.
    """
    ray = ray_module()
    c_ref = ray.put(counts)
    f = remote(task_cluster_candidates)
    parts = fetch([f.remote(o[0], o[1], c_ref) for o in out])
    st.bytes_to_driver += nbytes(parts)
    r = counts.shape[0]
    out_indptr = np.zeros(r + 1, dtype=np.int64)
    chunks = []
    for k in np.flatnonzero(counts > 0).tolist():
        rows = np.concatenate(
            [
                pt[1][pt[0][k] : pt[0][k + 1]] + off
                for pt, off in zip(parts, p.offsets, strict=False)
            ]
        )
        d2 = np.concatenate([pt[2][pt[0][k] : pt[0][k + 1]] for pt in parts])
        top = rows[np.lexsort((rows, d2))[: counts[k]]]
        out_indptr[k + 1] = top.shape[0]
        chunks.append(top)
    np.cumsum(out_indptr, out=out_indptr)
    cand = np.concatenate(chunks).astype(np.int64) if chunks else np.zeros(0, np.int64)
    return out_indptr, cand


def _kcenter_whole_clusters(
    p: ShardedPool,
    out: list[Any],
    summaries: list[dict[str, NDArray[Any]]],
    plan: Plan,
    norm: str | None,
    kcenter: str,
    st: RunStats,
) -> list[NDArray[np.int64]]:
    """``within="kcenter"``: K-Center over each whole cluster (gathered or coreset)."""
    quotas, capacity = plan.quotas, plan.capacity
    r = quotas.shape[0]
    # Global nearest member per cluster: min over shards of (distance, global row).
    first = np.full(r, -1, dtype=np.int64)
    best = np.full(r, np.inf, dtype=np.float32)
    for sm, off in zip(summaries, p.offsets, strict=False):
        bi = sm["best_i"]
        better = (bi >= 0) & (sm["best_d"] < best)
        first[better] = bi[better] + off
        best[better] = sm["best_d"][better]
    chosen = np.flatnonzero(quotas > 0).astype(np.int64)
    if kcenter == "gather":
        # Each shard splits its members of the chosen clusters into one object per
        # cluster; one K-Center task per cluster then reads every shard's part.
        st.bytes_between_workers += int(capacity[chosen].sum()) * (4 * p.n_features + 8)
        f = remote(task_members, num_returns=len(chosen))
        per_shard = []
        for sh, o in zip(p.shards, out, strict=False):
            refs = f.remote(sh, p.column, norm, o[0], chosen)
            per_shard.append(refs if len(chosen) > 1 else [refs])
        tasks = [
            remote(task_kcenter).remote(
                int(quotas[cl]), int(first[cl]), list(p.offsets[:-1]),
                *[per_shard[sh][j] for sh in range(p.n_shards)],
            )
            for j, cl in enumerate(chosen.tolist())
        ]  # fmt: skip
        return list(fetch(tasks))
    f = remote(task_coreset)
    parts = fetch(
        [
            f.remote(sh, p.column, norm, o[0], o[1], chosen, quotas[chosen])
            for sh, o in zip(p.shards, out, strict=False)
        ]
    )
    st.bytes_to_driver += nbytes(parts)
    picks = []
    for j, cl in enumerate(chosen.tolist()):
        rows = np.concatenate([parts[sh][j][0] + p.offsets[sh] for sh in range(p.n_shards)])
        feats = np.concatenate([parts[sh][j][1] for sh in range(p.n_shards)])
        order = np.argsort(rows, kind="stable")
        rows, feats = rows[order], np.ascontiguousarray(feats[order])
        pos = int(np.searchsorted(rows, first[cl]))
        got_c, _ = _core.kcenter_greedy(feats, int(quotas[cl]), 1, pos, None, None)
        picks.append(rows[got_c])
    return picks
