"""Correctness checks recorded beside every timing (``benchmark.extra_info``).

Each check returns a dict with ``correct`` (True, False, or None for "not comparable")
and ``check`` (one line saying what was compared and what was found); :func:`record` copies it into ``extra_info``.

- Assignment: labels equal to a float64 reference except at near-ties, i.e. rows
  where the exact float64 distances to the two centroids differ by at most
  ``TIE_RTOL * (|x|^2 + |c|^2)`` (the rounding a float32 GEMM can make);
  returned squared distances within the same tolerance on a row sample.
- k-means: the inertia of the returned centroids (recomputed here, the same way for
  every implementation) within ``INERTIA_RTOL`` of the NumPy Lloyd run from the same
  initial centroids for the same iterations (which relocates empty clusters as
  scikit-learn does). faiss splits the largest cluster instead, so once a cluster
  empties it follows another trajectory: within 5 % it is reported "not comparable"
  (``correct`` None), beyond that wrong.
- K-Center: picks equal to the NumPy running-min picks until the first difference,
  which must be a near-tie (exact float64 distances of both candidates to the
  earlier picks agree within ``TIE_RTOL``); every returned radius equals the exact
  distance of the next pick to the earlier picks; and the final covering radius
  over all rows matches the last returned radius.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TIE_RTOL = 1e-5
INERTIA_RTOL = 1e-3
NOT_COMPARABLE_RTOL = 0.05
RADIUS_RTOL = 1e-3
CHUNK = 16_384


def record(benchmark: Any, result: dict[str, Any]) -> None:
    benchmark.extra_info.update(result)


def _sqnorm64(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return np.einsum("nd,nd->n", a, a)


def exact_sq(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Row-wise exact squared distances ``|x_i - c_i|^2`` in float64."""
    diff = np.asarray(x, dtype=np.float64) - np.asarray(c, dtype=np.float64)
    return np.einsum("nd,nd->n", diff, diff)


def reference_assign(x: np.ndarray, c: np.ndarray) -> dict[str, np.ndarray]:
    """Nearest centroid in float64 (chunked GEMM; ties to the lowest index)."""
    c64 = np.asarray(c, dtype=np.float64)
    c_sq = np.einsum("kd,kd->k", c64, c64)
    labels = np.empty(x.shape[0], dtype=np.int64)
    d2 = np.empty(x.shape[0], dtype=np.float64)
    for s in range(0, x.shape[0], CHUNK):
        xb = np.asarray(x[s : s + CHUNK], dtype=np.float64)
        g = xb @ c64.T
        g *= -2.0
        g += c_sq
        lab = np.argmin(g, axis=1)
        labels[s : s + CHUNK] = lab
        d2[s : s + CHUNK] = g[np.arange(len(lab)), lab] + np.einsum("nd,nd->n", xb, xb)
    return {"labels": labels, "d2": np.maximum(d2, 0.0)}


def check_assign(
    x: np.ndarray,
    c: np.ndarray,
    labels: np.ndarray,
    sq_dist: np.ndarray | None,
    ref: dict[str, np.ndarray],
) -> dict[str, Any]:
    labels = np.asarray(labels).reshape(-1)
    n, k = x.shape[0], c.shape[0]
    if labels.shape != (n,) or labels.min(initial=0) < 0 or labels.max(initial=0) >= k:
        return {"correct": False, "check": "labels have the wrong shape or range"}
    mism = np.flatnonzero(labels != ref["labels"])
    bad = 0
    if mism.size:
        xm = np.asarray(x[mism], dtype=np.float64)
        d_got = exact_sq(xm, c[labels[mism]])
        d_ref = exact_sq(xm, c[ref["labels"][mism]])
        scale = _sqnorm64(xm) + _sqnorm64(c[labels[mism]])
        bad = int(np.count_nonzero(d_got - d_ref > TIE_RTOL * scale))
    text = f"labels: {n - mism.size}/{n} equal to float64 reference, {mism.size - bad} near-ties"
    if bad:
        text += f", {bad} WRONG"
    dist_ok = True
    if sq_dist is not None:
        rows = np.unique(np.random.default_rng(0).integers(0, n, size=min(n, 10_000)))
        xs = np.asarray(x[rows], dtype=np.float64)
        exact = exact_sq(xs, c[labels[rows]])
        scale = _sqnorm64(xs) + _sqnorm64(c[labels[rows]])
        err = np.abs(np.asarray(sq_dist, dtype=np.float64).reshape(-1)[rows] - exact) / scale
        dist_ok = bool(err.max(initial=0.0) <= TIE_RTOL)
        text += f"; distances max rel. err {err.max(initial=0.0):.1e}"
    return {
        "correct": bad == 0 and dist_ok,
        "check": text,
        "label_mismatches": int(mism.size),
        "wrong_labels": bad,
    }


def inertia(x: np.ndarray, c: np.ndarray) -> float:
    """Sum over rows of the squared distance to the nearest of ``c`` (float32 GEMM,
    float64 sum); the same code for every implementation."""
    c = np.ascontiguousarray(c, dtype=np.float32)
    c_sq = np.einsum("kd,kd->k", c, c)
    total = 0.0
    for s in range(0, x.shape[0], CHUNK):
        xb = np.asarray(x[s : s + CHUNK])
        g = xb @ c.T
        g *= -2.0
        g += c_sq
        total += float(
            np.maximum(g.min(axis=1) + np.einsum("nd,nd->n", xb, xb), 0.0).sum(dtype=np.float64)
        )
    return total


def check_kmeans(
    x: np.ndarray, centroids: np.ndarray, ref_inertia: float, *, other_empty_rule: str = ""
) -> dict[str, Any]:
    """``other_empty_rule``: set for implementations that treat empty clusters their own
    way (faiss splits the largest cluster instead of relocating a far row). Their
    trajectory leaves the reference's as soon as a cluster empties, so beyond the
    tolerance (but within ``NOT_COMPARABLE_RTOL``) the result is recorded as not
    comparable (``correct`` None) rather than wrong."""
    centroids = np.asarray(centroids)
    if not np.all(np.isfinite(centroids)):
        return {"correct": False, "check": "non-finite centroids"}
    got = inertia(x, centroids)
    rel = (got - ref_inertia) / ref_inertia
    correct: bool | None = bool(abs(rel) <= INERTIA_RTOL)
    text = (
        f"inertia {got:.6g} vs same-init NumPy Lloyd {ref_inertia:.6g} "
        f"(rel. diff {rel:+.1e}, tol {INERTIA_RTOL:.0e})"
    )
    if not correct and other_empty_rule and abs(rel) <= NOT_COMPARABLE_RTOL:
        correct = None
        text += f"; not comparable: {other_empty_rule}"
    return {"correct": correct, "check": text, "inertia": got, "inertia_rel_diff": rel}


def _min_dist_to(
    x: np.ndarray, rows: np.ndarray, centers: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact float64 squared distance of each of ``rows`` to its nearest of ``centers``,
    and ``|x|^2 + |nearest|^2`` (the scale of float32 rounding in that distance)."""
    xr = np.asarray(x[rows], dtype=np.float64)
    cs = np.asarray(x[centers], dtype=np.float64)
    d = np.stack([exact_sq(np.broadcast_to(r, cs.shape), cs) for r in xr])
    near = d.argmin(axis=1)
    return d.min(axis=1), _sqnorm64(xr) + _sqnorm64(cs[near])


def check_kcenter(
    x: np.ndarray,
    picks: np.ndarray,
    ref_picks: np.ndarray,
    radii: np.ndarray | None = None,
    covering_radius: float | None = None,
    ref_name: str = "NumPy running-min",
) -> dict[str, Any]:
    """See the module docstring. ``covering_radius``: max over all rows of the distance
    to the nearest pick, computed by the caller (:func:`covering_radius`)."""
    picks = np.asarray(picks, dtype=np.int64)
    ref_picks = np.asarray(ref_picks, dtype=np.int64)
    n = x.shape[0]
    if picks.min(initial=0) < 0 or picks.max(initial=0) >= n or len(np.unique(picks)) != len(picks):
        return {"correct": False, "check": "picks out of range or repeated"}
    m = min(len(picks), len(ref_picks))
    diff = np.flatnonzero(picks[:m] != ref_picks[:m])
    ok = True
    if diff.size == 0:
        text = f"picks: first {m} equal to {ref_name}"
    else:
        j = int(diff[0])
        if j == 0:
            return {"correct": False, "check": f"first pick {picks[0]} != {ref_picks[0]}"}
        both = np.array([picks[j], ref_picks[j]])
        d, scales = _min_dist_to(x, both, picks[:j])
        scale = float(scales.max())
        tie = abs(d[0] - d[1]) <= TIE_RTOL * scale
        ok = bool(tie)
        text = (
            f"picks: first {j} equal to {ref_name}, pick {j} differs "
            f"({'near-tie' if tie else 'NOT a near-tie'}: "
            f"d2 {d[0]:.7g} vs {d[1]:.7g})"
        )
    if radii is not None and len(picks) > 1:
        radii = np.asarray(radii, dtype=np.float64)
        # The radius after pick j-1 is the distance of pick j (the farthest row) to
        # picks[:j]: check it for every pick, exactly, from the picks alone.
        p = np.asarray(x[picks], dtype=np.float64)
        sq = _sqnorm64(p)
        dm = sq[:, None] - 2.0 * (p @ p.T) + sq[None, :]
        dm[np.triu_indices(len(picks))] = np.inf
        step = np.sqrt(np.maximum(dm.min(axis=1)[1:], 0.0))
        rel = np.abs(step - radii[:-1]) / np.maximum(step, 1e-12)
        chain_ok = bool(rel.max() <= RADIUS_RTOL)
        ok = ok and chain_ok
        text += f"; radii = next pick's distance (max rel. err {rel.max():.1e})"
        if covering_radius is not None:
            rel_c = abs(covering_radius - radii[-1]) / max(covering_radius, 1e-12)
            ok = ok and bool(rel_c <= RADIUS_RTOL)
            text += f"; final covering radius {covering_radius:.5g} (rel. err {rel_c:.1e})"
    return {
        "correct": ok,
        "check": text,
        "checked_picks": int(m if diff.size == 0 else diff[0] + 1),
    }


def covering_radius(x: np.ndarray, picks: np.ndarray) -> float:
    """max over unpicked rows of the distance to the nearest pick (float32 GEMM)."""
    c = np.ascontiguousarray(x[np.sort(picks)], dtype=np.float32)
    c_sq = np.einsum("kd,kd->k", c, c)
    picked = np.zeros(x.shape[0], dtype=bool)
    picked[picks] = True
    worst = 0.0
    for s in range(0, x.shape[0], CHUNK):
        xb = np.asarray(x[s : s + CHUNK])
        g = xb @ c.T
        g *= -2.0
        g += c_sq
        d = g.min(axis=1) + np.einsum("nd,nd->n", xb, xb)
        d[picked[s : s + CHUNK]] = 0.0
        worst = max(worst, float(d.max(initial=0.0)))
    return float(np.sqrt(max(worst, 0.0)))


def check_select(
    x: np.ndarray,
    centroids: np.ndarray,
    weights: np.ndarray,
    budget: int,
    indices: np.ndarray,
    labels: np.ndarray,
    quotas: np.ndarray,
    ref_assign: dict[str, np.ndarray],
) -> dict[str, Any]:
    """An ECOS selection, checked step by step: labels right up to near-ties (float64
    reference), quotas as ``allocate_quotas`` gives for those labels, every pick in its
    cluster, each cluster's first pick its member nearest the centroid (exact float64,
    up to a near-tie), and each cluster's picks equal to the NumPy running-min K-Center
    run on the same members from the same first pick (up to a near-tie)."""
    from ecos_fast import allocate_quotas, reference

    indices = np.asarray(indices, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    r = centroids.shape[0]
    lab = check_assign(x, centroids, labels, None, ref_assign)
    if not lab["correct"]:
        return {"correct": False, "check": "select " + lab["check"]}
    problems = []
    expect = allocate_quotas(weights, np.bincount(labels, minlength=r), budget)
    if not np.array_equal(quotas, expect):
        problems.append("quotas differ from allocate_quotas")
    if len(np.unique(indices)) != len(indices) or int(quotas.sum()) != len(indices):
        problems.append("indices repeated or not summing to the quotas")
    got_lab = labels[indices]
    if not np.array_equal(np.bincount(got_lab, minlength=r), quotas):
        problems.append("picks per cluster differ from the quotas")
    first_ties = pick_ties = 0
    clusters = np.flatnonzero(quotas > 0)
    for k in clusters:
        rows = np.flatnonzero(labels == k)
        mine = np.searchsorted(rows, indices[got_lab == k])
        xr = np.asarray(x[rows])
        c = np.asarray(centroids[k], dtype=np.float64)
        d_c = np.concatenate(
            [exact_sq(xr[s : s + CHUNK], c[None]) for s in range(0, len(rows), CHUNK)]
        )
        nearest = int(np.argmin(d_c))
        if mine[0] != nearest:
            scale = float(_sqnorm64(xr[[mine[0], nearest]]).max() + _sqnorm64(c[None])[0])
            if d_c[mine[0]] - d_c[nearest] > TIE_RTOL * scale:
                problems.append(f"cluster {k}: first pick is not the member nearest the centroid")
            first_ties += 1
        theirs = reference.kcenter_running_min(xr, int(quotas[k]), first=int(mine[0]))
        res = check_kcenter(xr, mine, theirs)
        if not res["correct"]:
            problems.append(f"cluster {k}: {res['check']}")
        elif "near-tie" in res["check"]:
            pick_ties += 1
    text = (
        f"select: {lab['check']}; quotas ok; {len(clusters)} clusters picked, each checked "
        f"against NumPy running-min on its members ({pick_ties} end at a near-tie; "
        f"{first_ties} first picks are near-ties for the nearest member)"
    )
    if problems:
        text += "; " + "; ".join(problems)
    return {"correct": not problems, "check": text}
