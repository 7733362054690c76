"""Pure-NumPy reference implementations: the oracles and the baseline.

Every Rust kernel in ``ecos_fast._core`` is checked against a function here
(``tests/``) and benchmarked against it (``benches/``). These are written for
clarity, not speed; they use float64 arithmetic so that they are the more
accurate side of every comparison. Ties always go to the lowest index.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "assign",
    "kcenter_greedy",
    "kcenter_running_min",
    "kmeans_lloyd",
    "kmeans_lloyd_relocating",
    "nearest_in_clusters",
    "sq_distances",
]


def sq_distances(
    features: NDArray[np.floating], centroids: NDArray[np.floating]
) -> NDArray[np.float64]:
    """Dense squared Euclidean distances of shape (n_samples, n_clusters), in float64."""
    x = np.asarray(features, dtype=np.float64)
    c = np.asarray(centroids, dtype=np.float64)
    diff = x[:, None, :] - c[None, :, :]
    out: NDArray[np.float64] = np.einsum("nkd,nkd->nk", diff, diff)
    return out


def assign(
    features: NDArray[np.floating], centroids: NDArray[np.floating], chunk: int = 4096
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Nearest centroid (lowest index on ties) and its squared distance, chunked."""
    n = features.shape[0]
    labels = np.empty(n, dtype=np.int64)
    dists = np.empty(n, dtype=np.float64)
    for start in range(0, n, chunk):
        d2 = sq_distances(features[start : start + chunk], centroids)
        lab = np.argmin(d2, axis=1)  # argmin returns the first minimum
        labels[start : start + chunk] = lab
        dists[start : start + chunk] = d2[np.arange(d2.shape[0]), lab]
    return labels, dists


def kmeans_lloyd(
    features: NDArray[np.floating], init: NDArray[np.floating], max_iter: int
) -> tuple[NDArray[np.float64], NDArray[np.int64], list[float]]:
    """Plain Lloyd iterations from given centroids (no tolerance stop).

    Empty clusters keep their previous centroid here; the Rust kernel relocates
    them, so compare the two only on data where no cluster empties.
    Returns (centroids, labels, inertia per iteration).
    """
    x = np.asarray(features, dtype=np.float64)
    c = np.asarray(init, dtype=np.float64).copy()
    inertia = []
    labels = np.zeros(x.shape[0], dtype=np.int64)
    for _ in range(max_iter):
        labels, d = assign(x, c)
        inertia.append(float(d.sum()))
        for j in range(c.shape[0]):
            members = x[labels == j]
            if len(members):
                c[j] = members.mean(axis=0)
    return c, labels, inertia


def kmeans_lloyd_relocating(
    features: NDArray[np.floating], init: NDArray[np.floating], max_iter: int
) -> tuple[NDArray[np.float64], NDArray[np.int64], list[float]]:
    """Lloyd iterations from given centroids that relocate empty clusters.

    Like scikit-learn's ``_relocate_empty_clusters``: after each assignment,
    every empty cluster (in index order) takes the next row in order of
    decreasing distance to its centroid (ties to the lowest row) whose cluster
    keeps at least one member; that row moves to the empty cluster before the
    means are taken. No tolerance stop. Returns (centroids, labels, inertia per
    iteration).
    """
    x = np.asarray(features, dtype=np.float64)
    c = np.asarray(init, dtype=np.float64).copy()
    k = c.shape[0]
    inertia = []
    labels = np.zeros(x.shape[0], dtype=np.int64)
    for _ in range(max_iter):
        labels, d = assign(x, c)
        inertia.append(float(d.sum()))
        counts = np.bincount(labels, minlength=k)
        order = np.lexsort((np.arange(len(d)), -d))  # distance descending, then row
        pos = 0
        for e in np.flatnonzero(counts == 0):
            while pos < len(order):
                i = order[pos]
                pos += 1
                if counts[labels[i]] > 1:
                    counts[labels[i]] -= 1
                    counts[e] = 1
                    labels[i] = e
                    break
        for j in range(k):
            members = x[labels == j]
            if len(members):
                c[j] = members.mean(axis=0)
    return c, labels, inertia


def kcenter_greedy(
    features: NDArray[np.floating],
    budget: int,
    first: int | None = None,
    initial: NDArray[np.int64] | None = None,
    rows: NDArray[np.int64] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Brute-force farthest-first traversal.

    Candidates are ``rows`` (all rows when None). ``initial`` rows count as
    centers already chosen and are never picked (they leave the candidates).
    Without ``initial``, the first pick is ``first``
    (default: the first candidate). Each later pick is the unpicked candidate
    whose distance to its nearest center is largest, ties to the lowest row
    index. Returns the picks and the covering radius (Euclidean) over the
    unpicked candidates after each pick (0 when none remain).
    """
    x = np.asarray(features, dtype=np.float64)
    cand = np.arange(x.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    order = np.argsort(cand, kind="stable")  # scan in row order so ties go to the lowest row
    cand = cand[order]
    xc = x[cand]
    mind = np.full(len(cand), np.inf)
    picked = np.zeros(len(cand), dtype=bool)
    init = [] if initial is None else list(np.asarray(initial, dtype=np.int64))
    picked[np.isin(cand, init)] = True  # already selected: centers, never picks
    for i in init:
        mind = np.minimum(mind, ((xc - x[i]) ** 2).sum(axis=1))
    sel, radii = [], []
    for step in range(budget):
        if step == 0 and not init:
            pos = 0 if first is None else int(np.flatnonzero(cand == first)[0])
        else:
            masked = np.where(picked, -np.inf, mind)
            pos = int(np.argmax(masked))  # first maximum = lowest row
        picked[pos] = True
        sel.append(int(cand[pos]))
        mind = np.minimum(mind, ((xc - xc[pos]) ** 2).sum(axis=1))
        rest = mind[~picked]
        radii.append(float(np.sqrt(rest.max())) if rest.size else 0.0)
    return np.asarray(sel, dtype=np.int64), np.asarray(radii)


def kcenter_running_min(
    features: NDArray[np.float32], budget: int, first: int = 0
) -> NDArray[np.int64]:
    """The usual NumPy baseline (Google active-learning style): float32, one
    running min-distance vector, one fused distance pass per pick.

    This is what users write by hand; it is the speed baseline, not the oracle.
    """
    x = np.ascontiguousarray(features, dtype=np.float32)
    sq = np.einsum("nd,nd->n", x, x)
    sel = [first]
    mind = sq - 2.0 * (x @ x[first]) + sq[first]
    for _ in range(budget - 1):
        mind[sel[-1]] = -np.inf
        nxt = int(np.argmax(mind))
        sel.append(nxt)
        np.minimum(mind, sq - 2.0 * (x @ x[nxt]) + sq[nxt], out=mind)
    return np.asarray(sel, dtype=np.int64)


def nearest_in_clusters(
    sq_dist: NDArray[np.floating],
    indptr: NDArray[np.integer],
    members: NDArray[np.integer],
    counts: NDArray[np.integer],
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Per cluster, the ``min(counts[k], size_k)`` members nearest the centroid.

    Cluster ``k`` holds rows ``members[indptr[k]:indptr[k + 1]]``. Its kept rows are
    the ones with the smallest ``(sq_dist[row], row)`` pairs, listed in that order (the
    nearest first, ties to the lowest row). The oracle of
    ``ecos_fast._core.nearest_in_clusters``.

    Parameters
    ----------
    sq_dist : ndarray of shape (n_samples,)
        Squared distance of every row to its cluster's centroid.
    indptr : ndarray of shape (n_clusters + 1,)
    members : ndarray of shape (indptr[-1],)
    counts : ndarray of shape (n_clusters,)
        Rows to keep per cluster, ``>= 0``.

    Returns
    -------
    out_indptr : ndarray of shape (n_clusters + 1,), int64
    out_members : ndarray of shape (out_indptr[-1],), int64

    Examples
    --------
    >>> import numpy as np
    >>> d2 = np.array([3.0, 1.0, 1.0, 0.0, 5.0])
    >>> ip, rows = nearest_in_clusters(d2, np.array([0, 4, 5]), np.arange(5), np.array([2, 3]))
    >>> ip.tolist(), rows.tolist()
    ([0, 2, 3], [3, 1, 4])
    """
    d = np.asarray(sq_dist)
    ptr = np.asarray(indptr, dtype=np.int64)
    mem = np.asarray(members, dtype=np.int64)
    kept: list[NDArray[np.int64]] = []
    out_indptr = np.zeros(len(ptr), dtype=np.int64)
    for k in range(len(ptr) - 1):
        rows = mem[ptr[k] : ptr[k + 1]]
        order = np.lexsort((rows, d[rows]))  # by distance, then row
        kept.append(rows[order[: min(int(counts[k]), len(rows))]])
        out_indptr[k + 1] = out_indptr[k] + len(kept[-1])
    out = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    return out_indptr, out.astype(np.int64)
