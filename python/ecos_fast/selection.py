"""Cloud, step 3: proximal and diverse selection from the pool ("our rule").

Every pool row goes to its nearest centroid; cluster weights are the client's
noisy counts minus ``threshold * sigma`` (floored at 0); the budget is split
by :func:`ecos_fast.allocate_quotas`; inside each cluster greedy K-Center
(farthest-first) picks the quota, starting from the member nearest the
centroid. The clusters run in parallel in the Rust core.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from . import _core
from ._threads import resolve_threads
from ._validation import as_labels, check_budget, check_choice, check_nonneg_float, check_seed
from .errors import BudgetShortfallWarning, InvalidTypeError, NoCoverageError
from .protocol import Centroids, Response, Sketch
from .quotas import allocate_quotas

__all__ = ["Selection", "select"]

FALLBACKS = ("raise", "random", "kcenter")
# Rows per block when computing distances to the own centroid (bounded memory).
_DIST_CHUNK = 1 << 16


@dataclass(frozen=True, eq=False)
class Selection:
    """Pool rows chosen for the cloud to train on.

    Behaves like its ``indices``: ``np.asarray(selection)``, ``len(selection)``
    and iteration all give the selected row indices.

    Attributes
    ----------
    indices : ndarray of shape (n_selected,), int64
        Unique pool rows. For ECOS: cluster order, then pick order inside a
        cluster. Read-only.
    budget : int
        Samples asked for.
    quotas : ndarray of shape (n_clusters,), int64, or None
        Rows taken from each cluster (sums to ``n_selected``); None for the
        baselines, which know no clusters.
    labels : ndarray of shape (n_samples,), int64, or None
        Nearest centroid of every pool row.
    weights : ndarray of shape (n_clusters,), float64, or None
        Cluster weights used for the quotas.
    method : str
        ``"ecos"``, ``"ecos-fallback-random"``, ``"ecos-fallback-kcenter"``,
        ``"random"`` or ``"kcenter"``.
    """

    indices: NDArray[np.int64]
    budget: int
    quotas: NDArray[np.int64] | None = None
    labels: NDArray[np.int64] | None = None
    weights: NDArray[np.float64] | None = None
    method: str = "ecos"

    def __post_init__(self) -> None:
        for name in ("indices", "quotas", "labels", "weights"):
            a = getattr(self, name)
            if a is not None:
                a = np.array(a, copy=True)
                a.flags.writeable = False
                object.__setattr__(self, name, a)

    @property
    def n_selected(self) -> int:
        """Number of rows selected."""
        return int(self.indices.shape[0])

    @property
    def shortfall(self) -> int:
        """``budget - n_selected`` (> 0 only when the weighted clusters ran out)."""
        return self.budget - self.n_selected

    def __len__(self) -> int:
        return self.n_selected

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices.tolist())

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> NDArray[Any]:
        out = self.indices if dtype is None else self.indices.astype(dtype)
        return np.array(out, copy=True) if copy else out


def _as_sketch(sketch: Any) -> Sketch:
    if isinstance(sketch, Sketch):
        return sketch
    if isinstance(sketch, tuple) and len(sketch) == 2:
        a, b = sketch
        if isinstance(a, Response) and isinstance(b, Centroids):
            a, b = b, a
        return Sketch.join(a, b)
    raise InvalidTypeError(
        f"sketch must be an ecos_fast.Sketch or a (Centroids, Response) pair, "
        f"got {type(sketch).__name__}"
    )


def _nearest_members(
    x: NDArray[np.float32],
    centroids: NDArray[np.float32],
    members: NDArray[np.int64],
    indptr: NDArray[np.int64],
    quotas: NDArray[np.int64],
    sq_dist: NDArray[np.float32] | None,
) -> NDArray[np.int64]:
    """For each cluster with a quota, its member nearest the centroid (else -1).

    Members are in increasing row order, so ``argmin`` breaks ties to the
    lowest row.
    """
    first = np.full(quotas.shape[0], -1, dtype=np.int64)
    for k in np.flatnonzero(quotas > 0):
        rows = members[indptr[k] : indptr[k + 1]]
        if sq_dist is not None:
            d2 = sq_dist[rows]
        else:
            c = centroids[k].astype(np.float64)
            d2 = np.empty(rows.shape[0], dtype=np.float64)
            for s in range(0, rows.shape[0], _DIST_CHUNK):
                diff = x[rows[s : s + _DIST_CHUNK]].astype(np.float64) - c
                d2[s : s + _DIST_CHUNK] = np.einsum("ij,ij->i", diff, diff)
        first[k] = rows[int(np.argmin(d2))]
    return first


def select(
    features: Any,
    sketch: Sketch | tuple[Centroids, Response],
    budget: int,
    *,
    threshold: float = 0.0,
    fallback: Literal["raise", "random", "kcenter"] = "raise",
    labels: Any = None,
    seed: int = 0,
    n_threads: int | None = None,
    backend: Literal["local", "ray"] = "local",
    kcenter: Literal["gather", "coreset"] = "gather",
) -> Selection:
    """Cloud, step 3: choose ``budget`` pool rows proximal to the client, and diverse.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        The pool features (as given to :func:`fit_centroids`; its ``normalize``
        is applied again here).
    sketch : Sketch or (Centroids, Response)
        The cloud's centroids joined with the client's response; a pair is
        joined with :meth:`Sketch.join` (fingerprint and size checked).
    budget : int
        In [1, n_samples].
    threshold : float, default 0.0
        Cluster weights are ``max(noisy_count - threshold * sigma, 0)``.
    fallback : {"raise", "random", "kcenter"}, default "raise"
        What to do when every weight is zero: raise :class:`NoCoverageError`, or
        select uniformly at random / by global K-Center instead (recorded in
        ``Selection.method``).
    labels : array-like of shape (n_samples,), optional
        Every pool row's nearest centroid, e.g. ``centroids.labels`` from
        :func:`fit_centroids` on the same features; skips the assignment pass.
    seed : int, default 0
        Seeds ``fallback="random"`` only.
    n_threads : int, optional
    backend : {"local", "ray"}, default "local"
        ``"ray"``: ``features`` may also be a directory or list of ``.npy`` / Parquet
        shards or a ``ray.data.Dataset``; assignment and K-Center run on the Ray
        workers (:func:`ecos_fast.scaleout.select`). ``labels`` must be None and
        ``Selection.labels`` is None (labels stay on the workers).
    kcenter : {"gather", "coreset"}, default "gather"
        Ray only. ``"gather"``: each cluster with a quota is gathered to one worker;
        the selection equals the local one exactly. ``"coreset"``: K-Center per shard,
        then on the union of the shards' picks; covering radius within 4x the
        optimum of each cluster, and it depends on the sharding.

    Returns
    -------
    Selection
        ``quotas`` sum to ``n_selected``. If the weighted clusters hold fewer
        than ``budget`` rows, all of them are returned, ``shortfall`` says how
        many are missing and a :class:`BudgetShortfallWarning` is issued.

    Notes
    -----
    Uses only the client's response, which is already differentially private:
    by post-processing, the selection has the same (epsilon, delta) guarantee
    with respect to the client's private data, and costs no further privacy.

    Examples
    --------
    >>> import math, numpy as np, ecos_fast
    >>> rng = np.random.default_rng(0)
    >>> pool = np.concatenate([rng.normal(0, 1, (100, 2)), rng.normal(20, 1, (100, 2))])
    >>> pool = pool.astype(np.float32)
    >>> cents = ecos_fast.fit_centroids(pool, n_clusters=2, seed=0)
    >>> private = rng.normal(20, 1, (30, 2))
    >>> resp = ecos_fast.respond(private, cents, math.inf, 1e-5)
    >>> sel = ecos_fast.select(pool, ecos_fast.Sketch.join(cents, resp), 10)
    >>> len(sel), bool((np.asarray(sel) >= 100).all())
    (10, True)
    """
    check_choice(backend, "backend", ("local", "ray"))
    if backend == "ray":
        if labels is not None:
            raise InvalidTypeError("labels= is not taken with backend='ray'")
        from . import scaleout

        return scaleout.select(  # type: ignore[no-any-return]
            features, sketch, budget, threshold=threshold, fallback=fallback, seed=seed,
            kcenter=kcenter,
        )  # fmt: skip
    sk = _as_sketch(sketch)
    x = sk.centroids.transform(features, "features")
    n = x.shape[0]
    b = check_budget(budget, n)
    thr = check_nonneg_float(threshold, "threshold")
    check_choice(fallback, "fallback", FALLBACKS)
    s = check_seed(seed)
    threads = resolve_threads(n_threads)
    c = sk.centroids.centroids
    r = sk.n_clusters

    sq_dist: NDArray[np.float32] | None
    if labels is None:
        lab, sq_dist = _core.assign(x, c, threads)
    else:
        lab, sq_dist = as_labels(labels, "labels", n_samples=n, n_clusters=r), None
    w = sk.weights(thr)
    capacity = np.bincount(lab, minlength=r).astype(np.int64)

    covered = int(capacity[w > 0].sum())
    if covered == 0:
        counts = np.asarray(sk.response.noisy_counts)
        if fallback == "raise":
            why = (
                f"every cluster weight is zero: the largest noisy count is "
                f"{float(counts.max()):.4g} and threshold*sigma={thr}*{sk.response.sigma:.4g}"
                f"={thr * sk.response.sigma:.4g}"
                if not (w > 0).any()
                else f"the {int((w > 0).sum())} clusters with positive weight hold no pool row"
            )
            raise NoCoverageError(
                f"{why} (n_clusters={r}, n_samples={n}, budget={b}); the client's data "
                f"matches nothing in the pool. Pass fallback='random' or 'kcenter' to "
                f"select anyway"
            )
        from .baselines import select_kcenter, select_random

        base = (
            select_random(n, b, seed=s)
            if fallback == "random"
            else select_kcenter(x, b, n_threads=threads)
        )
        idx = base.indices
        return Selection(
            idx,
            b,
            quotas=np.bincount(lab[idx], minlength=r).astype(np.int64),
            labels=lab,
            weights=w,
            method=f"ecos-fallback-{fallback}",
        )

    quotas = allocate_quotas(w, capacity, b)
    members = np.argsort(lab, kind="stable").astype(np.int64)
    indptr = np.zeros(r + 1, dtype=np.int64)
    np.cumsum(capacity, out=indptr[1:])
    first = _nearest_members(x, c, members, indptr, quotas, sq_dist)
    idx = _core.kcenter_clusters(x, indptr, members, quotas, first, threads)
    return ecos_selection(idx, b, quotas, lab, w, covered, stacklevel=3)


def ecos_selection(
    idx: NDArray[np.int64],
    budget: int,
    quotas: NDArray[np.int64],
    labels: NDArray[np.int64] | None,
    weights: NDArray[np.float64],
    covered: int,
    *,
    stacklevel: int,
) -> Selection:
    """The ECOS :class:`Selection` (local or Ray backend), with a
    :class:`BudgetShortfallWarning` when the covered clusters hold fewer rows than the
    budget; ``stacklevel`` points the warning at the user's call."""
    sel = Selection(idx, budget, quotas=quotas, labels=labels, weights=weights, method="ecos")
    if sel.shortfall > 0:
        warnings.warn(
            f"selected {sel.n_selected} of budget={budget}: the {int((weights > 0).sum())} "
            f"clusters with positive weight hold only {covered} pool rows "
            f"(shortfall={sel.shortfall})",
            BudgetShortfallWarning,
            stacklevel=stacklevel,
        )
    return sel
