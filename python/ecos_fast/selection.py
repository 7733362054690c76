"""Cloud, step 3: proximal and diverse selection from the pool ("our rule").

Every pool row goes to its nearest centroid; cluster weights come from the
client's noisy counts (:func:`ecos_fast.rule.cluster_weights`); the budget is
split by :func:`ecos_fast.allocate_quotas`; inside each cluster the members
nearest the centroid form a candidate set and greedy K-Center (farthest-first,
from the member nearest the centroid) removes the redundant ones. The rule
itself lives in :mod:`ecos_fast.rule`, shared with the Ray backend; this module
validates, assigns the pool on this machine, or hands the call to the backend.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from . import _stream, _validation
from ._backend import check_backend, ray_backend
from ._stream import assign_checked
from ._threads import resolve_threads
from ._validation import (
    as_features,
    as_labels,
    check_budget,
    check_seed,
    feature_limit,
)
from .baselines import select_kcenter
from .errors import InvalidTypeError
from .protocol import Centroids, Response, Sketch
from .rule import (
    DEFAULT_CANDIDATES,
    DEFAULT_LOW_SIGNAL,
    DEFAULT_SMOOTH,
    DEFAULT_THRESHOLD,
    DEFAULT_WEIGHTS,
    DEFAULT_WITHIN,
    KCENTER_MODES,
    STRATA_ROUTINES,
    LowSignal,
    Selection,
    Smooth,
    Weights,
    Within,
    check_rule_options,
    ecos_selection,
    fallback_selection,
    own_centroid_sq_dist,
    plan_selection,
    random_rows,
    select_within,
)

__all__ = ["Selection", "select"]


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


def select(
    features: Any,
    sketch: Sketch | tuple[Centroids, Response],
    budget: int,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    weights: Weights = DEFAULT_WEIGHTS,
    within: Within = DEFAULT_WITHIN,
    candidates: float = DEFAULT_CANDIDATES,
    fallback: Literal["raise", "random", "kcenter"] = "raise",
    low_signal: LowSignal = DEFAULT_LOW_SIGNAL,
    smooth: Smooth = DEFAULT_SMOOTH,
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
    threshold : float, default rule.DEFAULT_THRESHOLD (2.0)
        In units of the release's ``sigma``: cluster weights are
        ``max(estimate - threshold * sigma, 0)``.
    weights : {"noisy", "posterior", "empirical-bayes"}, default rule.DEFAULT_WEIGHTS ("noisy")
        The estimate of each cluster's count: the noisy count itself, its
        posterior mean under the Gaussian noise with a flat prior on counts >= 0
        (:func:`ecos_fast.rule.posterior_mean_counts`), or its posterior mean under
        a prior fitted to the whole release (:func:`ecos_fast.rule.empirical_bayes_counts`;
        use it with ``threshold=0``: it shrinks untouched clusters itself).
    within : {"neighbourhood", "kcenter", "nearest", "strata", "weighted-strata"}, default rule.DEFAULT_WITHIN
        How a cluster's quota ``q`` is picked. ``"neighbourhood"``: its
        ``ceil(candidates * q)`` members nearest the centroid, then greedy
        K-Center inside them from the nearest one; ``"kcenter"``: greedy K-Center
        over the whole cluster from the member nearest the centroid;
        ``"nearest"``: the ``q`` members nearest the centroid; ``"strata"``:
        ``ceil(q / 2)`` k-means strata of the cluster, each given picks in
        proportion to its size, its members nearest the stratum's centre
        (:func:`ecos_fast.rule.stratified_picks`); ``"weighted-strata"``: the
        strata of its ``ceil(candidates * q)`` members whose nearest centroids
        carry the most weight (:func:`ecos_fast.rule.affinity_candidates`).
    candidates : float, default rule.DEFAULT_CANDIDATES (2.0)
        The candidate factor of ``"neighbourhood"`` and ``"weighted-strata"``, >= 1
        (``"neighbourhood"`` at 1: ``"nearest"``; large: ``"kcenter"``, ``"strata"``).
    fallback : {"raise", "random", "kcenter"}, default "raise"
        What to do when every weight is zero: raise :class:`NoCoverageError`, or
        select uniformly at random / by global K-Center instead (recorded in
        ``Selection.method``).
    low_signal : {"spread", "keep"}, default rule.DEFAULT_LOW_SIGNAL ("spread")
        When the noisy counts less ``2 * sigma`` (``rule.LOW_SIGNAL_THRESHOLD``,
        whatever ``threshold`` and ``weights`` are), floored at 0, sum to no more than
        noise alone would give (within three standard deviations,
        :func:`ecos_fast.rule.noise_only_mass`),
        ``"spread"`` draws the selection uniformly at random (Random's draw for
        ``seed``; ``Selection.method`` is ``"ecos-low-signal-random"``) instead of
        spending it on the few clusters that noise lifted; a :class:`LowSignalWarning`
        says so. ``"keep"`` uses the weights anyway.
    smooth : {"none", "sure"}, default rule.DEFAULT_SMOOTH ("sure")
        ``"sure"``: average each noisy count with those of its nearest centroids at
        the bandwidth with the smallest Stein's unbiased risk estimate
        (:func:`ecos_fast.smoothing.smooth_counts`; no smoothing is a candidate, and
        the one chosen without noise); every ``weights`` estimate then reads the
        smoothed counts, each with its own noise standard deviation (``threshold``
        is in those units). It gains where the client fills many clusters and each
        count is below the noise (a small client, a small ε); it is post-processing,
        so it costs no privacy. ``"none"``: the counts as released.
    labels : array-like of shape (n_samples,), optional
        Every pool row's nearest centroid, e.g. ``centroids.labels`` from
        :func:`fit_centroids` on the same features; skips the assignment pass.
    seed : int, default 0
        Seeds the Random draws (``fallback="random"`` and a low-signal release) and
        the strata of ``within="strata"``.
    n_threads : int, optional
    backend : {"local", "ray"}, default "local"
        ``"ray"``: ``features`` may also be a directory or list of ``.npy`` / Parquet
        shards or a ``ray.data.Dataset``; assignment and K-Center run on the Ray
        workers (:func:`ecos_fast.ray_backend.select_sharded`). ``labels`` must be
        None and ``Selection.labels`` is None (labels stay on the workers).
    kcenter : {"gather", "coreset"}, default "gather"
        Ray with ``within="kcenter"`` only. ``"gather"``: each cluster with a quota
        is gathered to one worker; the selection equals the local one exactly.
        ``"coreset"``: K-Center per shard, then on the union of the shards' picks;
        covering radius within 4x the optimum of each cluster, and it depends on the
        sharding. Every other ``within`` equals the local selection exactly on Ray.

    Returns
    -------
    Selection
        ``quotas`` sum to ``n_selected``. If the weighted clusters hold fewer
        than ``budget`` rows, all of them are returned, ``shortfall`` says how
        many are missing and a :class:`BudgetShortfallWarning` is issued. A
        :class:`LowSignalWarning` is issued when the noisy total is below
        ``3 * sigma * sqrt(n_clusters)`` (the selection is then close to random).

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
    check_backend(backend)
    _validation.check_choice(kcenter, "kcenter", KCENTER_MODES)
    opts = check_rule_options(
        threshold=threshold, weights=weights, within=within, candidates=candidates,
        fallback=fallback, low_signal=low_signal, smooth=smooth,
    )  # fmt: skip
    sk = _as_sketch(sketch)
    if backend == "ray":
        if labels is not None:
            raise InvalidTypeError("labels= is not taken with backend='ray'")
        return ray_backend().select_sharded(  # type: ignore[no-any-return]
            features, sk, budget, threshold=opts.threshold, weights=opts.weights,
            within=opts.within, candidates=opts.candidates, fallback=opts.fallback,
            low_signal=opts.low_signal, smooth=opts.smooth, seed=seed, kcenter=kcenter, n_threads=n_threads, stacklevel=3,
        )  # fmt: skip
    cents = sk.centroids
    # Without a transform the features are checked inside the first pass that reads them
    # (the assignment, or with labels the distances to the own centroids): a pool on disk
    # is read once, not once more for the check. A pool on disk under normalize="l2" is
    # checked by every pass, as each block is normalized; a pass that reads no features
    # (strata or a Random fallback, with labels given) is then the check alone.
    x: _stream.Rows
    if cents.normalize is None:
        x = as_features(features, "features", n_features=cents.n_features, finite=False)
    else:
        x = cents._transform_rows(features, "features")  # a pool on disk: never copied
    in_pass = cents.normalize is None  # checked by the passes here, not by the transform
    unchecked = in_pass or isinstance(x, _stream.Transformed)
    n = x.shape[0]
    b = check_budget(budget, n)
    s = check_seed(seed)
    threads = resolve_threads(n_threads)
    c = cents.centroids
    r = sk.n_clusters
    limit = feature_limit(x.shape[1])

    def check_all() -> None:
        if isinstance(x, _stream.Transformed):
            _validation.check_finite(x.raw, "features")  # under l2: NaN/inf only
        else:
            _validation.check_finite(x, "features", max_abs=limit)

    if labels is None:
        lab, sq_dist, _ = assign_checked(
            x, c, threads, name="features" if in_pass else None, max_abs=limit
        )
        unchecked = False
    else:
        lab, sq_dist = as_labels(labels, "labels", n_samples=n, n_clusters=r), None
    capacity = np.bincount(lab, minlength=r).astype(np.int64)
    resp = sk.response
    plan = plan_selection(
        resp.noisy_counts, resp.sigma, capacity, b, opts, stacklevel=2, centroids=c
    )
    if plan.fallback is not None:
        if unchecked:
            check_all()
        idx = (
            random_rows(n, b, s)
            if plan.fallback == "random"
            else select_kcenter(_stream.as_array(x), b, n_threads=threads).indices
        )
        return fallback_selection(idx, plan, np.bincount(lab[idx], minlength=r), lab)
    if opts.within in STRATA_ROUTINES:  # no distance to the own centroid
        if unchecked:
            check_all()
    elif sq_dist is None:
        sq_dist = own_centroid_sq_dist(
            x, c, lab, plan.quotas > 0, threads, check_as="features" if in_pass else None
        )
    idx = select_within(x, c, lab, sq_dist, plan, opts, threads, seed=s)
    return ecos_selection(idx, plan, lab, stacklevel=2)
