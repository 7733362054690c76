"""The ECOS selection rule, written once for both backends ("our rule").

The local backend (:func:`ecos_fast.select`) and the Ray backend
(:mod:`ecos_fast.ray_backend`) differ only in where the pool rows live; every
decision is made here:

1. **Weights** (:func:`cluster_weights`): from the client's noisy counts ``m``,
   either ``"noisy"``: ``max(m - threshold * sigma, 0)``, or ``"posterior"``: the
   posterior mean of the true count under the Gaussian noise ``N(0, sigma^2)`` and
   a flat prior on counts >= 0, ``m + sigma * phi(m / sigma) / Phi(m / sigma)``,
   or ``"empirical-bayes"``: the posterior mean under a prior fitted to the whole
   release (:func:`empirical_bayes_counts`); the estimate less ``threshold *
   sigma``, floored at 0. ``threshold`` is in units of sigma. With ``smooth="sure"``
   (the default) the noisy counts are first averaged over
   each centroid's nearest centroids at the bandwidth with the smallest Stein's
   unbiased risk estimate (:func:`ecos_fast.smoothing.smooth_counts`; none is a
   candidate); the estimate then reads the smoothed counts, each with its own noise
   standard deviation (the threshold is in those units).
2. **Signal check** (:func:`warn_if_low_signal`): :class:`LowSignalWarning` when
   the noisy total is below ``3 * sigma * sqrt(R)`` (the noise of the total), or
   when the noisy counts less ``LOW_SIGNAL_THRESHOLD`` sigma are no more than noise
   alone gives (then ``low_signal="spread"`` makes the selection Random's draw).
   With smoothing, the test is on the smoothed counts less ``LOW_SIGNAL_THRESHOLD``
   times their own noise, against the same total over simulated noise-only releases
   (:func:`ecos_fast.smoothing.smoothed_release_is_noise`), run when the plain test
   finds no signal: the release has signal when either test finds it.
3. **Coverage and fallback** (:func:`plan_selection`): when no pool row lies in
   a cluster of positive weight, raise :class:`NoCoverageError` or fall back to
   Random / global K-Center.
4. **Quotas**: :func:`ecos_fast.allocate_quotas` over the clusters' capacities.
5. **Within each cluster** (``within``): ``"neighbourhood"`` takes the
   ``ceil(candidates * quota)`` members nearest the centroid, then greedy
   K-Center inside that set from the member nearest the centroid (the paper's
   weighted neighbour sampling, then redundancy removal); ``"kcenter"`` runs
   K-Center over the whole cluster; ``"nearest"`` takes the ``quota`` nearest
   members; ``"strata"`` splits the cluster into ``ceil(quota / STRATUM_PICKS)``
   k-means strata and gives each stratum picks in proportion to its size, its
   members nearest the stratum's centre (:func:`stratified_picks`);
   ``"weighted-strata"`` first keeps the ``ceil(candidates * quota)`` members whose
   nearest centroids carry the most weight (:func:`affinity_candidates`: inside a
   cluster the client shares with another domain, the members on the client's side),
   then draws the strata from those. Nearness is
   the squared distance to the centre, ties to the lowest row, so every backend
   and thread count picks the same rows.
6. **Shortfall** (:func:`ecos_selection`): :class:`BudgetShortfallWarning`
   when the weighted clusters hold fewer rows than the budget.

The defaults are module constants (``DEFAULT_*``), chosen on validation data only
(``scripts/study_selection.py``: held-out private samples of both data presets,
never a test split; and synthetic pools on seeds other than the tests'); the study
and its numbers are in ``docs/results.md``.
"""

from __future__ import annotations

import math
import numbers
import operator
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import NDArray

from . import _core, _stream
from ._validation import (
    _from_torch,
    as_vector,
    check_choice,
    check_int,
    check_kmeans_params,
    check_nonneg_float,
    check_real,
    check_seed,
    feature_limit,
)
from .clustering import kmeans_rows
from .errors import (
    BudgetShortfallWarning,
    InvalidInputError,
    InvalidTypeError,
    LowSignalWarning,
    NoCoverageError,
    SelectionIndexError,
)
from .privacy import GaussianMechanism, Relation
from .quotas import allocate_quotas
from .smoothing import (
    GATE_DRAWS,
    GATE_QUANTILE,
    SMOOTH,
    Smoother,
    nearest_centroids,
    smoothed_release_is_noise,
)

__all__ = [
    "AFFINITY_NEIGHBOURS",
    "DEFAULT_CANDIDATES",
    "DEFAULT_LOW_SIGNAL",
    "DEFAULT_SMOOTH",
    "DEFAULT_THRESHOLD",
    "DEFAULT_WEIGHTS",
    "DEFAULT_WITHIN",
    "FALLBACKS",
    "KCENTER_MODES",
    "LOW_SIGNALS",
    "LOW_SIGNAL_THRESHOLD",
    "SMOOTH",
    "STRATA_ROUTINES",
    "STRATA_TRAIN_MIN",
    "STRATA_TRAIN_PER",
    "STRATUM_PICKS",
    "SUGGEST_MAX_NEIGHBOURS",
    "SUGGEST_NEIGHBOURS_SIGNAL",
    "WEIGHTS",
    "WITHIN",
    "Plan",
    "RuleOptions",
    "Selection",
    "affinity_candidates",
    "candidate_counts",
    "check_rule_options",
    "cluster_members",
    "cluster_weights",
    "ecos_selection",
    "empirical_bayes_counts",
    "kcenter_on_candidates",
    "noise_only_mass",
    "own_centroid_sq_dist",
    "plan_selection",
    "posterior_mean_counts",
    "random_rows",
    "rows_ascending",
    "select_within",
    "strata_affinity",
    "strata_all_clusters",
    "stratified_picks",
    "stratum_seed",
    "suggest_n_clusters",
    "suggest_neighbours",
    "warn_if_low_signal",
    "weights_are_noise",
]

Weights = Literal["noisy", "posterior", "empirical-bayes"]
Within = Literal["neighbourhood", "kcenter", "nearest", "strata", "weighted-strata"]
LowSignal = Literal["spread", "keep"]

#: Cluster weights subtract ``threshold * sigma``: 2 was best on the hard preset's
#: validation splits and tied with 0 on the default one (docs/results.md).
DEFAULT_THRESHOLD = 2.0
#: ``"noisy"`` or ``"posterior"`` (the flat-prior posterior mean gives weight to
#: every untouched cluster, so it buys junk; docs/results.md).
DEFAULT_WEIGHTS: Weights = "noisy"
#: Within-cluster routine: proportional stratified sampling over k-means strata. It
#: beat neighbourhood sampling (the paper's neighbour sampling, then redundancy removal)
#: and whole-cluster K-Center on both presets' validation splits, and keeps >= 75 % of
#: the synthetic compact client (docs/results.md).
DEFAULT_WITHIN: Within = "strata"
#: ``select(kcenter=...)``: how the Ray backend runs K-Center over whole clusters.
KCENTER_MODES: tuple[str, ...] = ("gather", "coreset")
#: Candidate factor of ``within="neighbourhood"``: 1.5-4 tie on the presets' validation
#: splits; above 2 the compact-inside-broad pool loses the client's component.
DEFAULT_CANDIDATES = 2.0

#: ``select(smooth=...)``: smooth the noisy counts over the centroids' neighbourhoods
#: at the bandwidth SURE picks (:mod:`ecos_fast.smoothing`), or use them as released.
#: ``"sure"`` won or tied in every cell of both presets' validation splits (+4.8
#: points for 300-sample clients on the hard preset at epsilon = 0.58, +3.4 on the
#: default preset at epsilon = 0.1) and keeps the synthetic known answers
#: (docs/results.md, *Smoothing the counts on the cloud*).
Smooth = Literal["none", "sure"]
DEFAULT_SMOOTH: Smooth = "sure"

#: What to do when the weights are no more than noise alone would give (see
#: :func:`noise_only_mass`): ``"spread"`` the budget uniformly over the pool (the
#: selection is Random's draw for the same seed), or ``"keep"`` the weights anyway.
DEFAULT_LOW_SIGNAL: LowSignal = "spread"

FALLBACKS = ("raise", "random", "kcenter")
LOW_SIGNALS = ("spread", "keep")
WEIGHTS = ("noisy", "posterior", "empirical-bayes")
WITHIN = ("neighbourhood", "kcenter", "nearest", "strata", "weighted-strata")
#: The routines that stratify whole clusters (:func:`strata_all_clusters`): they read
#: every member of a cluster with a quota, and no distance to the own centroid.
STRATA_ROUTINES = ("strata", "weighted-strata")
#: ``within="strata"``: a cluster with quota ``q`` is split into ``ceil(q /
#: STRATUM_PICKS)`` k-means strata (2 beat 4 on the hard preset's validation splits
#: and tied on the default one; 1, one pick per stratum, loses the synthetic
#: compact client; docs/results.md).
STRATUM_PICKS = 2
#: ``within="weighted-strata"``: a member's affinity is the mean weight of its
#: ``AFFINITY_NEIGHBOURS`` nearest centroids (its own usually first). 2, 3 and 4 were
#: within a point of each other on both presets' validation splits, none significantly
#: (docs/results.md); 1 is the cluster's own weight, no ranking at all.
AFFINITY_NEIGHBOURS = 3
#: The strata's k-means trains on every member of a cluster of up to
#: ``STRATA_TRAIN_MIN`` rows, and on a seeded sample of ``max(STRATA_TRAIN_MIN,
#: STRATA_TRAIN_PER * n_strata)`` members of a larger one (then assigns all of them),
#: so a 100,000-row cluster with 500 strata costs about one assignment, not 25.
STRATA_TRAIN_MIN = 4096
STRATA_TRAIN_PER = 32
# The noisy total must clear this many standard deviations of its noise.
LOW_SIGNAL_SIGMAS = 3.0
#: ``low_signal="spread"`` tests the noisy counts less this many sigma (floored at 0)
#: against what noise alone gives, whatever the weights' estimator and threshold.
LOW_SIGNAL_THRESHOLD = 2.0


@dataclass(frozen=True, eq=False)
class Selection(Sequence[int]):
    """Pool rows chosen for the cloud to train on: a read-only sequence of row indices.

    A :class:`collections.abc.Sequence` of Python ints, so it goes wherever numpy or
    torch take indices: ``pool[selection]``, ``np.asarray(selection)`` (a read-only
    int64 view, no copy), ``torch.as_tensor(selection)``, ``tensor[selection]``,
    ``torch.utils.data.Subset(dataset, selection)`` (also with DataLoader workers:
    it pickles), ``SubsetRandomSampler(selection)``. ``selection[i]`` is an int
    (any ``__index__`` type: numpy or 0-d torch integers too); a slice, an
    integer array or a boolean mask gives an int64 ndarray (a read-only view for
    a slice, numpy's convention rather than a smaller ``Selection``: quotas and
    weights describe the whole selection). :meth:`to_torch` gives a tensor that
    owns writable memory.

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
        ``"ecos"``, ``"ecos-low-signal-random"``, ``"ecos-fallback-random"``,
        ``"ecos-fallback-kcenter"``, ``"random"`` or ``"kcenter"``.
    smoothing_scale : float
        The bandwidth ``smooth="sure"`` chose for the counts, in units of the median
        squared distance between neighbouring centroids
        (:func:`ecos_fast.smoothing.smooth_counts`); 0.0: the counts as released.

    Examples
    --------
    >>> import numpy as np
    >>> from ecos_fast import Selection
    >>> sel = Selection(np.array([4, 0, 2]), budget=3, method="random")
    >>> sel[0], sel[-1], sel[1:].tolist(), list(sel), 2 in sel
    (4, 2, [0, 2], [4, 0, 2], True)
    >>> pool = np.arange(10) * 10
    >>> pool[sel].tolist()
    [40, 0, 20]
    >>> np.asarray(sel).flags.writeable
    False
    """

    indices: NDArray[np.int64]
    budget: int
    quotas: NDArray[np.int64] | None = None
    labels: NDArray[np.int64] | None = None
    weights: NDArray[np.float64] | None = None
    method: str = "ecos"
    smoothing_scale: float = 0.0

    def __post_init__(self) -> None:
        for name in ("indices", "quotas", "labels", "weights"):
            a = getattr(self, name)
            if a is not None:
                a = np.array(a, copy=True)
                a.flags.writeable = False
                object.__setattr__(self, name, a)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild through __init__ so that an unpickled copy (DataLoader workers,
        # copy.deepcopy) gets read-only arrays again; plain pickling would not.
        return (type(self), tuple(getattr(self, f.name) for f in fields(self)))

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

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return False
        return bool((self.indices == int(value)).any())

    # Sequence's own signature wants a Sequence back for a slice; an ndarray view is
    # what numpy and torch users index with next, and it costs no copy.
    @overload  # type: ignore[override]
    def __getitem__(self, key: int | np.integer[Any]) -> int: ...

    @overload
    def __getitem__(self, key: slice | Sequence[int] | NDArray[Any]) -> NDArray[np.int64]: ...

    def __getitem__(self, key: Any) -> int | NDArray[np.int64]:
        if type(key) is int:  # first and cheap: torch reads sequences an int at a time
            try:
                return int(self.indices.item(key))
            except IndexError:
                n = self.n_selected
                raise SelectionIndexError(
                    f"index {key} is out of range for a Selection of {n} rows"
                ) from None
        if isinstance(key, slice):
            return self.indices[key]
        if key is None or isinstance(key, (bool, np.bool_, str, bytes)):
            raise InvalidTypeError(
                f"Selection indices must be integers, slices or integer arrays; got {key!r}"
            )
        n = self.n_selected
        if getattr(key, "ndim", None) == 0 or not hasattr(key, "__len__"):
            try:
                i = operator.index(key)
            except TypeError:
                raise InvalidTypeError(
                    f"Selection indices must be integers, slices or integer arrays; "
                    f"got {type(key).__name__} {key!r}"
                ) from None
            if not -n <= i < n:
                raise SelectionIndexError(f"index {i} is out of range for a Selection of {n} rows")
            return int(self.indices[i])
        a: NDArray[Any] = np.asarray(_from_torch(key, "Selection index"))
        if a.dtype.kind == "b" and a.shape == (n,):
            mask: NDArray[np.int64] = self.indices[a]
            return mask
        if a.size == 0 and a.ndim == 1:  # [] reads as float64
            return self.indices[:0].copy()
        if a.dtype.kind not in "iu":
            raise InvalidTypeError(
                f"Selection indices must be integers, slices or integer arrays; "
                f"got an array of dtype {a.dtype} and shape {a.shape}"
            )
        if a.size and (int(a.min()) < -n or int(a.max()) >= n):
            raise SelectionIndexError(
                f"indices in [{int(a.min())}, {int(a.max())}] are out of range for a "
                f"Selection of {n} rows"
            )
        out: NDArray[np.int64] = self.indices[a]
        return out

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> NDArray[Any]:
        # numpy >= 2 passes copy= (True: always copy; False: never; None: if needed);
        # numpy 1.x passes dtype only. Without a copy it is the read-only indices.
        if dtype is not None and np.dtype(dtype) != self.indices.dtype:
            if copy is False:
                raise InvalidInputError(
                    f"cannot view the int64 Selection as {np.dtype(dtype)} with copy=False"
                )
            return self.indices.astype(dtype)
        return self.indices.copy() if copy else self.indices

    def __dlpack__(self, **kwargs: Any) -> Any:
        # torch.as_tensor(selection) and torch.from_dlpack take this path (one memcpy)
        # instead of reading the sequence an int at a time. It exports a fresh copy:
        # DLPack consumers may write, and the indices must stay read-only.
        return self.indices.copy().__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)  # kDLCPU, device 0

    def to_torch(self, device: Any = None) -> Any:
        """The indices as a torch int64 tensor that owns writable memory.

        Parameters
        ----------
        device : torch.device or str, optional
            Where to put the tensor (default: the CPU).

        Returns
        -------
        torch.Tensor of shape (n_selected,), int64
            A copy: writing to it never changes the selection.
        """
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - torch is in the test venv
            raise ImportError(
                "Selection.to_torch needs torch: pip install 'ecos-fast[apps]'"
            ) from exc
        out = torch.empty(self.n_selected, dtype=torch.int64)
        out.numpy()[:] = self.indices
        return out if device is None else out.to(device)


@dataclass(frozen=True)
class RuleOptions:
    """The rule's checked options (see :func:`ecos_fast.select`)."""

    threshold: float = DEFAULT_THRESHOLD
    weights: str = DEFAULT_WEIGHTS
    within: str = DEFAULT_WITHIN
    candidates: float = DEFAULT_CANDIDATES
    fallback: str = "raise"
    low_signal: str = DEFAULT_LOW_SIGNAL
    smooth: str = DEFAULT_SMOOTH


def check_rule_options(
    *,
    threshold: Any = DEFAULT_THRESHOLD,
    weights: Any = DEFAULT_WEIGHTS,
    within: Any = DEFAULT_WITHIN,
    candidates: Any = DEFAULT_CANDIDATES,
    fallback: Any = "raise",
    low_signal: Any = DEFAULT_LOW_SIGNAL,
    smooth: Any = DEFAULT_SMOOTH,
) -> RuleOptions:
    """The rule's options checked, with messages that state the values.

    Examples
    --------
    >>> from ecos_fast.rule import check_rule_options
    >>> check_rule_options(threshold=2, within="nearest").within
    'nearest'
    """
    return RuleOptions(
        threshold=check_nonneg_float(threshold, "threshold"),
        weights=str(check_choice(weights, "weights", WEIGHTS)),
        within=str(check_choice(within, "within", WITHIN)),
        candidates=check_real(candidates, "candidates", low=1.0),
        fallback=str(check_choice(fallback, "fallback", FALLBACKS)),
        low_signal=str(check_choice(low_signal, "low_signal", LOW_SIGNALS)),
        smooth=str(check_choice(smooth, "smooth", SMOOTH)),
    )


def _erfcx(t: NDArray[np.float64]) -> NDArray[np.float64]:
    """``exp(t^2) * erfc(t)``, without overflow for large ``t``."""
    try:
        from scipy.special import erfcx  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - scipy ships with dp-accounting
        out = np.empty_like(t)
        for i, v in enumerate(t.tolist()):
            if v < 25.0:
                out[i] = math.exp(v * v) * math.erfc(v)
            else:  # asymptotic series; relative error < 1e-12 here
                u = 1.0 / (2.0 * v * v)
                out[i] = (1.0 - u + 3.0 * u * u - 15.0 * u**3) / (v * math.sqrt(math.pi))
        return out
    return np.asarray(erfcx(t), dtype=np.float64)


def posterior_mean_counts(
    noisy_counts: Any, sigma: float | NDArray[np.float64]
) -> NDArray[np.float64]:
    """Posterior mean of each true count given its noisy release.

    With noise ``N(0, sigma^2)`` and a flat prior on the true count ``v >= 0``, the
    posterior of ``v`` given the release ``m`` is ``N(m, sigma^2)`` truncated to
    ``v >= 0``, whose mean is ``m + sigma * phi(m / sigma) / Phi(m / sigma)`` (always
    > 0). Computed as ``m + sigma * sqrt(2 / pi) / erfcx(-m / (sigma * sqrt(2)))``,
    stable for very negative ``m``. ``sigma == 0`` (no noise): ``max(m, 0)``.

    Parameters
    ----------
    noisy_counts : array-like of shape (n_clusters,)
    sigma : float or array-like of shape (n_clusters,)
        >= 0; an array gives each count its own noise (smoothed counts).

    Returns
    -------
    ndarray of shape (n_clusters,), float64

    Examples
    --------
    >>> from ecos_fast.rule import posterior_mean_counts
    >>> [round(v, 4) for v in posterior_mean_counts([0.0, 10.0, -10.0], 1.0).tolist()]
    [0.7979, 10.0, 0.0981]
    >>> posterior_mean_counts([3.0, -1.0], 0.0).tolist()
    [3.0, 0.0]
    """
    m = as_vector(noisy_counts, "noisy_counts")
    s = _sigmas(sigma, m.shape[0])
    safe = np.where(s > 0, s, 1.0)
    post = m + safe * math.sqrt(2.0 / math.pi) / _erfcx(-(m / safe) / math.sqrt(2.0))
    return np.where(s > 0, post, np.maximum(m, 0.0))


def _sigmas(sigma: Any, n: int) -> NDArray[np.float64]:
    """``sigma`` as ``n`` per-count noise standard deviations (a float: all equal)."""
    if np.ndim(sigma) == 0:
        return np.full(n, check_nonneg_float(sigma, "sigma"))
    s = as_vector(sigma, "sigma")
    if s.shape[0] != n or bool((s < 0).any()):
        raise InvalidInputError(
            f"sigma must be a number >= 0 or {n} of them, got shape {s.shape} "
            f"(min {float(s.min()) if s.size else float('nan'):.4g})"
        )
    return s


#: :func:`empirical_bayes_counts`: the prior's support is ``EB_LINEAR_POINTS`` evenly
#: spaced counts from 0 to ``EB_LINEAR_SIGMAS * sigma`` (a quarter sigma apart, where
#: telling 0 from a few samples matters), then ``EB_GEOMETRIC_POINTS`` geometrically
#: spaced ones up to the largest release plus 4 sigma (a few percent apart, where
#: the release is its own estimate). EM stops after ``EB_MAX_ITER`` iterations or
#: once no prior mass moves by more than ``EB_TOL``.
EB_LINEAR_POINTS = 81
EB_LINEAR_SIGMAS = 20.0
EB_GEOMETRIC_POINTS = 120
EB_MAX_ITER = 500
EB_TOL = 1e-7


def _eb_grid(top: float, sigma: float) -> NDArray[np.float64]:
    lin_top = min(top, EB_LINEAR_SIGMAS * sigma)
    lin = np.linspace(0.0, lin_top, EB_LINEAR_POINTS)
    if top <= lin_top:
        return lin
    return np.concatenate([lin, np.geomspace(lin_top, top, EB_GEOMETRIC_POINTS)[1:]])


def empirical_bayes_counts(
    noisy_counts: Any, sigma: float | NDArray[np.float64]
) -> NDArray[np.float64]:
    """Posterior mean of each true count under a prior fitted to the release itself.

    Every cluster's release is ``m_j = v_j + N(0, sigma^2)``. The prior on the true
    counts ``v >= 0`` is not assumed but estimated from all ``m`` together: the
    nonparametric maximum-likelihood estimate (Kiefer and Wolfowitz 1956), a
    distribution on a grid of counts from 0 to ``max(m) + 4 sigma`` (``EB_*``),
    fitted by EM (Laird 1978). The weight of cluster ``j`` is then its posterior mean
    ``E[v_j | m_j]`` under that prior (Robbins' empirical Bayes). When most clusters
    hold nothing, the fitted prior puts most of its mass at 0 and a cluster whose
    release is one or two sigma above 0 is shrunk almost to 0, while a cluster that
    stands out keeps nearly its release: a threshold that adapts to how many clusters
    the client touches and how much, where ``max(m - t sigma, 0)`` uses one fixed
    ``t``. Post-processing of the release alone, so it costs no privacy.
    ``sigma == 0`` (no noise): ``max(m, 0)``.

    Deterministic (fixed grid, fixed iteration rule), float64; O(200 x n_clusters)
    per EM iteration (5,000 clusters: about a second).

    Parameters
    ----------
    noisy_counts : array-like of shape (n_clusters,)
    sigma : float or array-like of shape (n_clusters,)
        >= 0; an array gives each release its own noise in the likelihood (smoothed
        counts; the grid is spaced by the smallest one).

    Returns
    -------
    ndarray of shape (n_clusters,), float64, each in ``[0, max(m) + 4 max(sigma)]``.

    Examples
    --------
    Ten clusters the client never touched and two it did, released with sigma = 3:

    >>> import numpy as np
    >>> from ecos_fast.rule import empirical_bayes_counts
    >>> m = np.array([-2.1, 1.5, 3.0, -4.2, 0.7, 2.2, -1.0, 4.1, -0.3, 1.1, 30.0, 41.0])
    >>> w = empirical_bayes_counts(m, 3.0)
    >>> bool(w[:10].max() < 1.0), [round(v) for v in w[10:]]
    (True, [30, 41])
    >>> empirical_bayes_counts([3.0, -1.0], 0.0).tolist()
    [3.0, 0.0]
    """
    m = as_vector(noisy_counts, "noisy_counts")
    sv = _sigmas(sigma, m.shape[0])
    if m.size == 0 or not bool((sv > 0).all()):
        if bool((sv > 0).any()):
            raise InvalidInputError("empirical-bayes needs every sigma > 0, or all 0")
        return np.maximum(m, 0.0)
    s = float(sv.min())
    grid = _eb_grid(max(float(m.max()), 0.0) + 4.0 * float(sv.max()), s)
    # Likelihood of each release under each grid count, scaled per row (log-sum-exp)
    # so a release far from every grid point does not underflow to all zeros.
    log_lik = -0.5 * ((m[:, None] - grid[None, :]) / sv[:, None]) ** 2
    lik = np.exp(log_lik - log_lik.max(axis=1, keepdims=True))
    prior = np.full(grid.size, 1.0 / grid.size)
    for _ in range(EB_MAX_ITER):
        post = lik * prior
        post /= post.sum(axis=1, keepdims=True)
        new = post.mean(axis=0)
        moved = float(np.abs(new - prior).max())
        prior = new
        if moved < EB_TOL:
            break
    post = lik * prior
    post /= post.sum(axis=1, keepdims=True)
    return np.asarray(post @ grid, dtype=np.float64)


def cluster_weights(
    noisy_counts: Any,
    sigma: float | NDArray[np.float64],
    threshold: float = DEFAULT_THRESHOLD,
    weights: str = DEFAULT_WEIGHTS,
) -> NDArray[np.float64]:
    """Cluster weights from the client's noisy counts.

    Parameters
    ----------
    noisy_counts : array-like of shape (n_clusters,)
    sigma : float or array-like of shape (n_clusters,)
        Noise standard deviation of the release (0: no noise), or of each count
        (smoothed counts, :func:`ecos_fast.smoothing.smooth_counts`).
    threshold : float, default DEFAULT_THRESHOLD
        In units of ``sigma``: ``threshold * sigma`` is subtracted from each estimate.
    weights : {"noisy", "posterior", "empirical-bayes"}, default DEFAULT_WEIGHTS
        The estimate: the noisy count itself, :func:`posterior_mean_counts` (flat
        prior) or :func:`empirical_bayes_counts` (prior fitted to the release).

    Returns
    -------
    ndarray of shape (n_clusters,), float64
        ``max(estimate - threshold * sigma, 0)``.

    Examples
    --------
    >>> from ecos_fast.rule import cluster_weights
    >>> cluster_weights([5.0, 1.0, -2.0], 1.0, threshold=2).tolist()
    [3.0, 0.0, 0.0]
    >>> [round(w, 3) for w in cluster_weights([5.0, -2.0], 1.0, threshold=0, weights="posterior").tolist()]
    [5.0, 0.373]
    """
    thr = check_nonneg_float(threshold, "threshold")
    check_choice(weights, "weights", WEIGHTS)
    m = as_vector(noisy_counts, "noisy_counts")
    s = _sigmas(sigma, m.shape[0])
    if weights == "posterior":
        est = posterior_mean_counts(m, s)
    elif weights == "empirical-bayes":
        est = empirical_bayes_counts(m, s)
    else:
        est = m
    return np.maximum(est - thr * s, 0.0)


#: :func:`suggest_n_clusters`'s default range, the range of R the validation study
#: measured (docs/results.md, *The sketch*). Below 50 it is worse: n / (2 sigma) of
#: 8-40 at epsilon = 0.1 scored 1.7-3.0 points below R = 50 on both presets.
SUGGEST_MIN_CLUSTERS = 50
SUGGEST_MAX_CLUSTERS = 200


def suggest_n_clusters(
    n_private: int,
    epsilon: float,
    delta: float,
    *,
    relation: Relation = "add_remove",
    threshold: float = DEFAULT_THRESHOLD,
    min_clusters: int = SUGGEST_MIN_CLUSTERS,
    max_clusters: int = SUGGEST_MAX_CLUSTERS,
) -> int:
    """The number of centroids R for a client of ``n_private`` samples at (ε, δ).

    A cluster's weight is its noisy count less ``threshold * sigma``, so a cluster
    needs about ``threshold * sigma`` of the client's samples to count at all: the
    client can light up at most ``n_private / (threshold * sigma)`` clusters. This is
    that number, rounded and clipped to ``[min_clusters, max_clusters]`` (``epsilon =
    inf``, no noise: ``max_clusters``). Fewer clusters than that waste resolution;
    more spread the client's samples below the threshold. On both presets'
    validation splits it beat the fixed R = 100 (docs/results.md, *The sketch*).

    The cloud fixes R before the client answers, so it needs the client's size and
    ε: both are the client's to tell (the size is not protected by the release; a
    client that keeps it private can send a rough one, which costs only resolution).

    Parameters
    ----------
    n_private : int
        The client's number of private samples, >= 1.
    epsilon, delta : float
        The release's privacy parameters (as for :func:`ecos_fast.respond`).
    relation : {"add_remove", "replace_one"}
    threshold : float
        The selection's threshold in noise standard deviations (the rule's default).
    min_clusters, max_clusters : int
        The range of the answer, 1 <= min_clusters <= max_clusters.

    Returns
    -------
    int

    Examples
    --------
    >>> from ecos_fast import suggest_n_clusters
    >>> suggest_n_clusters(875, 0.58, 1e-5), suggest_n_clusters(2450, 0.58, 1e-5)
    (71, 200)
    >>> suggest_n_clusters(300, 0.58, 1e-5), suggest_n_clusters(300, float("inf"), 1e-5)
    (50, 200)
    >>> suggest_n_clusters(300, 0.58, 1e-5, min_clusters=1)
    24
    """
    n = check_int(n_private, "n_private", low=1)
    lo = check_int(min_clusters, "min_clusters", low=1)
    hi = check_int(max_clusters, "max_clusters", low=lo)
    t = check_nonneg_float(threshold, "threshold")
    sigma = GaussianMechanism(epsilon, delta, relation).sigma
    if sigma == 0.0 or t == 0.0:
        return hi
    return int(min(hi, max(lo, round(n / (t * sigma)))))


#: :func:`suggest_neighbours`: k is about this many noise standard deviations per
#: cluster over the client's mean count per cluster, ``n / R`` (chosen on the
#: validation splits, docs/results.md, *Counting at several neighbours*: 1.0-2.0 all
#: gained there; 1.5 is the middle).
SUGGEST_NEIGHBOURS_SIGNAL = 1.5
#: :func:`suggest_neighbours`'s largest answer (the study measured k <= 6).
SUGGEST_MAX_NEIGHBOURS = 8


def suggest_neighbours(
    n_private: int,
    epsilon: float,
    delta: float,
    n_clusters: int,
    *,
    relation: Relation = "add_remove",
    max_neighbours: int = SUGGEST_MAX_NEIGHBOURS,
) -> int:
    """How many nearest centroids a client of ``n_private`` samples should count each
    sample at (``ecos_fast.respond(neighbours=...)``) for a release at (ε, δ) over
    ``n_clusters`` centroids.

    Counting at k neighbours multiplies the signal inside the client's region by
    about √k and blurs it over k clusters. That pays when the plain counts are weak
    against the noise, that is when the mean count per cluster ``s = n / (sigma R)``
    (in noise standard deviations) is small, and costs resolution when it is large.
    The answer is ``round(SUGGEST_NEIGHBOURS_SIGNAL / s)``, clipped to ``[1,
    min(max_neighbours, n_clusters)]``; 1 (plain counts) without noise.

    The client should pass a rough, public size rather than its exact one: ``k``
    travels in the response, so a ``k`` computed from the exact size would tell the
    cloud which step of this rule that size falls in (the noisy counts themselves
    protect it).

    Parameters
    ----------
    n_private : int
        The client's (rough) number of private samples, >= 1.
    epsilon, delta : float
        The release's privacy parameters (as for :func:`ecos_fast.respond`).
    n_clusters : int
        R, the number of centroids of the sketch, >= 1.
    relation : {"add_remove", "replace_one"}
    max_neighbours : int
        The largest answer, >= 1.

    Returns
    -------
    int

    Examples
    --------
    >>> from ecos_fast import suggest_neighbours
    >>> suggest_neighbours(300, 0.58, 1e-5, 100), suggest_neighbours(2000, 0.58, 1e-5, 100)
    (3, 1)
    >>> suggest_neighbours(2000, 0.1, 1e-5, 100), suggest_neighbours(300, float("inf"), 1e-5, 100)
    (2, 1)
    """
    n = check_int(n_private, "n_private", low=1)
    r = check_int(n_clusters, "n_clusters", low=1)
    hi = min(check_int(max_neighbours, "max_neighbours", low=1), r)
    sigma = GaussianMechanism(epsilon, delta, relation).sigma
    if sigma == 0.0:
        return 1
    return int(min(hi, max(1, round(SUGGEST_NEIGHBOURS_SIGNAL * sigma * r / n))))


def warn_if_low_signal(noisy_counts: Any, sigma: float, *, stacklevel: int) -> bool:
    """Issue :class:`LowSignalWarning` when the release carries almost no signal.

    The noisy total ``T`` has noise of standard deviation ``sigma * sqrt(R)``; the
    warning fires when ``T < 3 * sigma * sqrt(R)``: ``T`` is within three noise
    standard deviations of zero, or below zero, which includes every case where the
    noise exceeds the total (``T / (sigma * sqrt(R)) < 1``). Never with
    ``sigma == 0``. Returns whether it fired. The message names the largest R that
    would clear the bar for this total and sigma, ``(T / (3 * sigma))^2``: a client
    of ``n`` samples released with noise ``sigma`` supports about
    ``(n / (3 * sigma))^2`` clusters.

    Examples
    --------
    >>> import warnings
    >>> from ecos_fast.rule import warn_if_low_signal
    >>> warn_if_low_signal([100.0, 50.0], 1.0, stacklevel=2)
    False
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     warn_if_low_signal([3.0, -1.0, 2.0, 0.5], 50.0, stacklevel=2)
    True
    """
    m = as_vector(noisy_counts, "noisy_counts")
    if sigma <= 0:
        return False
    r = m.shape[0]
    total = float(m.sum())
    noise = float(sigma) * math.sqrt(r)
    if total >= LOW_SIGNAL_SIGMAS * noise:
        return False
    r_max = math.floor((total / (LOW_SIGNAL_SIGMAS * float(sigma))) ** 2) if total > 0 else 0
    fewer = (
        f"fewer clusters (R <= {r_max} keeps this total above {LOW_SIGNAL_SIGMAS:g} noise "
        f"standard deviations)"
        if r_max >= 1
        else "far fewer clusters (a smaller R)"
    )
    warnings.warn(
        f"the client's release carries almost no signal: the noisy total is {total:.4g} "
        f"against noise of standard deviation sigma*sqrt(R)={sigma:.4g}*sqrt({r})="
        f"{noise:.4g} (ratio {total / noise:.3g}, below {LOW_SIGNAL_SIGMAS:g}); the "
        f"selection is close to random. Use {fewer} or a larger epsilon",
        LowSignalWarning,
        stacklevel=stacklevel + 1,
    )
    return True


def noise_only_mass(n_clusters: int, sigma: float, threshold: float) -> tuple[float, float]:
    """Mean and standard deviation of the total weight that noise alone would produce.

    A cluster the client never touched has noisy count ``sigma * Z`` with ``Z``
    standard normal, so its weight is ``sigma * max(Z - t, 0)`` at threshold ``t``.
    Over ``R`` such clusters the total has mean ``R * sigma * psi1(t)`` and variance
    ``R * sigma^2 * (psi2(t) - psi1(t)^2)``, with ``psi1(t) = phi(t) - t * Q(t)`` and
    ``psi2(t) = (1 + t^2) * Q(t) - t * phi(t)`` (``phi`` the normal density, ``Q`` its
    upper tail). When the weights' total is within three standard deviations of this
    mean, they are indistinguishable from noise (for ``weights="noisy"``).

    Examples
    --------
    >>> from ecos_fast.rule import noise_only_mass
    >>> [round(v, 3) for v in noise_only_mass(100, 1.0, 0.0)]  # R * E[max(Z, 0)] = 39.894
    [39.894, 5.838]
    >>> noise_only_mass(100, 0.0, 2.0)
    (0.0, 0.0)
    """
    t = check_nonneg_float(threshold, "threshold")
    s = check_nonneg_float(sigma, "sigma")
    phi = math.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)
    q = 0.5 * math.erfc(t / math.sqrt(2.0))
    psi1 = phi - t * q
    psi2 = (1.0 + t * t) * q - t * phi
    return n_clusters * s * psi1, s * math.sqrt(n_clusters * max(psi2 - psi1 * psi1, 0.0))


def weights_are_noise(w: NDArray[np.float64], sigma: float, threshold: float) -> bool:
    """Whether the total of thresholded noisy-count weights ``w`` is within three
    standard deviations of what noise alone gives (:func:`noise_only_mass`)."""
    if sigma <= 0:
        return False
    mean, sd = noise_only_mass(int(w.shape[0]), sigma, threshold)
    return float(w.sum()) <= mean + LOW_SIGNAL_SIGMAS * sd


@dataclass(frozen=True)
class Plan:
    """What the rule decided before any row is picked.

    Attributes
    ----------
    budget : int
    weights : ndarray of shape (n_clusters,), float64
    capacity : ndarray of shape (n_clusters,), int64
        Pool rows per cluster.
    covered : int
        Pool rows in the clusters of positive weight.
    quotas : ndarray of shape (n_clusters,), int64
        All zero when falling back.
    fallback : {None, "random", "kcenter"}
    low_signal : bool
        The release carried no more than noise would give and ``low_signal="spread"``:
        the fallback is Random (``Selection.method`` ``"ecos-low-signal-random"``).
    smoothing_scale : float
        The bandwidth ``smooth="sure"`` chose (:class:`ecos_fast.smoothing.Smoothing`);
        0: the noisy counts as released.
    """

    budget: int
    weights: NDArray[np.float64]
    capacity: NDArray[np.int64]
    covered: int
    quotas: NDArray[np.int64]
    fallback: str | None
    low_signal: bool = False
    smoothing_scale: float = 0.0


def plan_selection(
    noisy_counts: Any,
    sigma: float,
    capacity: NDArray[np.int64],
    budget: int,
    opts: RuleOptions,
    *,
    stacklevel: int,
    centroids: NDArray[Any] | None = None,
) -> Plan:
    """Weights, coverage, fallback and quotas for a checked ``budget``.

    ``centroids`` (the sketch's) are needed with ``opts.smooth="sure"``: the weights are
    then the smoothed counts less ``threshold`` times each smoothed count's own noise
    standard deviation (:func:`ecos_fast.smoothing.smooth_counts`).

    Warns (:func:`warn_if_low_signal`) at ``stacklevel`` above the caller, and raises
    :class:`NoCoverageError` when nothing is covered and ``opts.fallback == "raise"``.
    """
    counts = as_vector(noisy_counts, "noisy_counts")
    est: NDArray[np.float64] = counts
    est_sigma: float | NDArray[np.float64] = sigma
    scale = 0.0
    smoother = None
    if opts.smooth == "sure":
        if centroids is None:
            raise InvalidInputError("smooth='sure' needs the sketch's centroids")
        smoother = Smoother(centroids)
        sm = smoother.smooth(counts, sigma)
        # Without smoothing chosen: the counts themselves, each with noise sigma.
        est, est_sigma, scale = sm.counts, sigma * sm.noise, sm.scale
    w = cluster_weights(est, est_sigma, opts.threshold, opts.weights)
    # The signal test looks at the clusters standing LOW_SIGNAL_THRESHOLD sigma above
    # 0, whatever the weights' estimator and threshold (the default weights are these);
    # with smoothing, at the smoothed counts, against simulated noise-only releases.
    spread, why, smoothed_signal = False, "", False
    if opts.low_signal == "spread" and sigma > 0:
        noisy = cluster_weights(counts, sigma, LOW_SIGNAL_THRESHOLD, "noisy")
        mean, sd = noise_only_mass(int(counts.shape[0]), sigma, LOW_SIGNAL_THRESHOLD)
        plain_noise = weights_are_noise(noisy, sigma, LOW_SIGNAL_THRESHOLD)
        spread = plain_noise
        why = (
            f"the noisy counts less {LOW_SIGNAL_THRESHOLD:g}*sigma="
            f"{LOW_SIGNAL_THRESHOLD:g}*{sigma:.4g} sum to {float(noisy.sum()):.4g}, within "
            f"{LOW_SIGNAL_SIGMAS:g} standard deviations of what noise alone gives "
            f"({mean:.4g} +- {sd:.4g})"
        )
        if smoother is not None and plain_noise:
            # Signal if either test finds it: the plain one sees a client packed into a
            # few clusters, the smoothed one a client spread thinly over many.
            spread, total, bar = smoothed_release_is_noise(
                smoother, counts, sigma, LOW_SIGNAL_THRESHOLD, smoothing=sm
            )
            why += (
                f", and smoothed, less {LOW_SIGNAL_THRESHOLD:g} times their own noise, they "
                f"sum to {total:.4g}, no more than {bar:.4g}, which noise alone exceeds in "
                f"{100 * (1 - GATE_QUANTILE):.3g} % of {GATE_DRAWS} simulated releases"
            )
            smoothed_signal = not spread
    # The total's test is not repeated when the smoothed release cleared its own: the
    # selection is then not close to random, whatever the raw total says.
    warned = not smoothed_signal and warn_if_low_signal(counts, sigma, stacklevel=stacklevel + 1)
    if spread:
        if not warned:
            warnings.warn(
                f"the client's release carries almost no signal: {why}; the selection is "
                f"drawn uniformly at random (what Random would pick). Use fewer clusters or "
                f"a larger epsilon, or low_signal='keep'",
                LowSignalWarning,
                stacklevel=stacklevel + 1,
            )
        # No signal: the selection is Random's. Spreading quotas by cluster size and
        # then taking each cluster's central members (the within-cluster routine) is a
        # biased draw that measured below Random (the hard preset's 50-sample clients).
        w = capacity.astype(np.float64)
        n = int(capacity.sum())
        return Plan(budget, w, capacity, n, np.zeros_like(capacity), "random", low_signal=True)
    covered = int(capacity[w > 0].sum())
    if covered == 0:
        if opts.fallback == "raise":
            raise _no_coverage(counts, sigma, w, opts, int(capacity.sum()), budget)
        return Plan(budget, w, capacity, 0, np.zeros_like(capacity), opts.fallback, False, scale)
    quotas = allocate_quotas(w, capacity, budget)
    return Plan(budget, w, capacity, covered, quotas, None, False, scale)


def _no_coverage(
    counts: NDArray[np.float64],
    sigma: float,
    w: NDArray[np.float64],
    opts: RuleOptions,
    n: int,
    budget: int,
) -> NoCoverageError:
    thr = opts.threshold
    why = (
        f"every cluster weight is zero: the largest noisy count is "
        f"{float(counts.max()):.4g} and threshold*sigma={thr}*{sigma:.4g}"
        f"={thr * sigma:.4g}"
        if not (w > 0).any()
        else f"the {int((w > 0).sum())} clusters with positive weight hold no pool row"
    )
    return NoCoverageError(
        f"{why} (n_clusters={counts.shape[0]}, n_samples={n}, budget={budget}); the "
        f"client's data matches nothing in the pool. Pass fallback='random' or 'kcenter' "
        f"to select anyway"
    )


def random_rows(n_samples: int, budget: int, seed: int | None) -> NDArray[np.int64]:
    """``budget`` distinct rows of ``range(n_samples)``, uniformly, sorted.

    The draw of :func:`ecos_fast.select_random` and of ``fallback="random"`` on
    every backend: ``numpy.random.default_rng(seed).choice(n, budget, replace=False)``.

    Examples
    --------
    >>> from ecos_fast.rule import random_rows
    >>> r = random_rows(100, 5, 0)
    >>> r.shape, bool((r[1:] > r[:-1]).all())
    ((5,), True)
    """
    rng = np.random.default_rng(None if seed is None else check_seed(seed))
    return np.sort(rng.choice(n_samples, size=budget, replace=False)).astype(np.int64)


def fallback_selection(
    idx: NDArray[np.int64],
    plan: Plan,
    quotas: NDArray[np.int64],
    labels: NDArray[np.int64] | None,
) -> Selection:
    """The :class:`Selection` of a fallback; ``quotas`` counts the picks per cluster."""
    return Selection(
        idx,
        plan.budget,
        quotas=quotas,
        labels=labels,
        weights=plan.weights,
        method="ecos-low-signal-random" if plan.low_signal else f"ecos-fallback-{plan.fallback}",
        smoothing_scale=plan.smoothing_scale,
    )


def ecos_selection(
    idx: NDArray[np.int64],
    plan: Plan,
    labels: NDArray[np.int64] | None,
    *,
    stacklevel: int,
) -> Selection:
    """The ECOS :class:`Selection`, with a :class:`BudgetShortfallWarning` when the
    covered clusters hold fewer rows than the budget; ``stacklevel`` counts from the
    caller."""
    sel = Selection(
        idx, plan.budget, quotas=plan.quotas, labels=labels, weights=plan.weights,
        method="ecos", smoothing_scale=plan.smoothing_scale,
    )  # fmt: skip
    if sel.shortfall > 0:
        warnings.warn(
            f"selected {sel.n_selected} of budget={plan.budget}: the "
            f"{int((plan.weights > 0).sum())} clusters with positive weight hold only "
            f"{plan.covered} pool rows (shortfall={sel.shortfall})",
            BudgetShortfallWarning,
            stacklevel=stacklevel + 1,
        )
    return sel


# --- within each cluster ---------------------------------------------------------


def cluster_members(
    labels: NDArray[np.int64], n_clusters: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Rows grouped by cluster: ``members[indptr[k]:indptr[k + 1]]`` are cluster
    ``k``'s rows, ascending.

    Examples
    --------
    >>> import numpy as np
    >>> from ecos_fast.rule import cluster_members
    >>> indptr, members = cluster_members(np.array([1, 0, 1, 1]), 3)
    >>> indptr.tolist(), members.tolist()
    ([0, 1, 4, 4], [1, 0, 2, 3])
    """
    members = np.argsort(labels, kind="stable").astype(np.int64)
    indptr = np.zeros(n_clusters + 1, dtype=np.int64)
    np.cumsum(np.bincount(labels, minlength=n_clusters), out=indptr[1:])
    return indptr, members


def candidate_counts(
    quotas: NDArray[np.int64], capacity: NDArray[np.int64], opts: RuleOptions
) -> NDArray[np.int64]:
    """Members nearest the centroid that each cluster's routine looks at.

    ``"nearest"``: the quota; ``"neighbourhood"``: ``min(capacity, ceil(candidates *
    quota))``; ``"kcenter"`` and the :data:`STRATA_ROUTINES`: the whole cluster. Zero
    where the quota is zero.

    Examples
    --------
    >>> import numpy as np
    >>> from ecos_fast.rule import RuleOptions, candidate_counts
    >>> q, cap = np.array([2, 0, 3]), np.array([10, 5, 7])
    >>> candidate_counts(q, cap, RuleOptions(within="neighbourhood", candidates=2.5)).tolist()
    [5, 0, 7]
    """
    if opts.within == "nearest":
        return quotas.astype(np.int64)
    if opts.within == "kcenter" or opts.within in STRATA_ROUTINES:
        return np.where(quotas > 0, capacity, 0).astype(np.int64)
    want = np.ceil(opts.candidates * quotas.astype(np.float64))
    return np.minimum(want, capacity.astype(np.float64)).astype(np.int64)


def rows_ascending(indptr: NDArray[np.int64], members: NDArray[np.int64]) -> NDArray[np.int64]:
    """``members`` with each cluster's segment ``indptr[k]:indptr[k + 1]`` sorted by row
    (the order the whole-cluster routines see, whatever order the candidates came in)."""
    seg = np.repeat(np.arange(indptr.shape[0] - 1, dtype=np.int64), np.diff(indptr))
    return members[np.lexsort((members, seg))]


def kcenter_in_clusters(
    x: _stream.Rows,
    indptr: NDArray[np.int64],
    members: NDArray[np.int64],
    quotas: NDArray[np.int64],
    first: NDArray[np.int64],
    n_threads: int,
) -> NDArray[np.int64]:
    """``_core.kcenter_clusters`` on the rows of ``x``; a :class:`ecos_fast._stream.
    Transformed` pool hands the kernel only the rows it reads (the members of clusters
    with a quota), gathered and transformed, renumbered in row order so that every tie
    still goes to the lowest row: the same picks as on the whole transformed pool."""
    if not isinstance(x, _stream.Transformed):
        return _core.kcenter_clusters(x, indptr, members, quotas, first, n_threads)
    used = np.repeat(quotas > 0, np.diff(indptr))
    rows = np.unique(members[used])
    if rows.size == 0:
        return np.zeros(0, dtype=np.int64)
    xs = _stream.gather_rows(x, rows)
    local = np.searchsorted(rows, members).astype(np.int64)
    local[~used] = 0  # clusters without a quota are not read
    first_local = np.where(first >= 0, np.searchsorted(rows, first), -1).astype(np.int64)
    picks = _core.kcenter_clusters(xs, indptr, local, quotas, first_local, n_threads)
    return rows[picks].astype(np.int64)


def kcenter_on_candidates(
    x: _stream.Rows,
    cand_indptr: NDArray[np.int64],
    cand_members: NDArray[np.int64],
    quotas: NDArray[np.int64],
    n_threads: int,
) -> NDArray[np.int64]:
    """Greedy K-Center inside each cluster's candidate set (exact, in the compiled core).

    ``cand_members`` per cluster nearest first (``_core.nearest_in_clusters``'s
    layout): the first candidate is the first pick; the set is handed on in row
    order, so ties go to the lowest row as with the whole cluster. Returns the picks
    in cluster order, pick order inside a cluster.
    """
    r = quotas.shape[0]
    _stream.will_need_rows(x, cand_members)  # a pool on disk: queue the candidates' reads
    sizes = np.diff(cand_indptr)
    first = np.full(r, -1, dtype=np.int64)
    has = (quotas > 0) & (sizes > 0)
    first[has] = cand_members[cand_indptr[:-1][has]]
    by_row = rows_ascending(cand_indptr, cand_members)
    return kcenter_in_clusters(x, cand_indptr, by_row, quotas, first, n_threads)


def own_centroid_sq_dist(
    x: _stream.Rows,
    centroids: NDArray[np.float32],
    labels: NDArray[np.int64],
    chosen: NDArray[np.bool_],
    n_threads: int,
    *,
    check_as: str | None = None,
) -> NDArray[np.float32]:
    """Squared distance of every row of a ``chosen`` cluster to its own centroid (the
    values a full assignment gives: the assign kernel against that one centroid); the
    other rows hold +inf.

    One sweep of row blocks (:func:`ecos_fast._stream.blocks`, in file order even for a
    pool on disk): inside a block, each chosen cluster's rows are copied out and
    measured together. With ``check_as``, every block is first checked for NaN/inf and
    magnitude (``_validation.check_finite``'s errors, naming ``check_as``), so the check
    costs no pass of its own.
    """
    d2 = np.full(x.shape[0], np.inf, dtype=np.float32)
    limit = feature_limit(x.shape[1])
    for start, blk in _stream.blocks(x):
        if check_as is not None:
            _stream.check_block(blk, x, check_as, limit)
        lab = labels[start : start + blk.shape[0]]
        rows = np.flatnonzero(chosen[lab])
        if rows.size == 0:
            continue
        rows = rows[np.argsort(lab[rows], kind="stable")]
        ks, first = np.unique(lab[rows], return_index=True)
        ends = np.append(first[1:], rows.size)
        for k, a, b in zip(ks.tolist(), first.tolist(), ends.tolist(), strict=True):
            sub = rows[a:b]
            c = np.ascontiguousarray(centroids[k : k + 1])
            d2[start + sub] = _core.assign(np.ascontiguousarray(blk[sub]), c, n_threads)[1]
    return d2


def stratum_seed(seed: int, cluster: int) -> int:
    """The k-means seed of ``cluster``'s strata: distinct per cluster, fixed by ``seed``."""
    return int(np.random.SeedSequence([seed, cluster]).generate_state(1, np.uint64)[0])


def stratified_picks(
    xm: NDArray[np.float32], quota: int, seed: int, n_threads: int
) -> NDArray[np.int64]:
    """``quota`` rows of one cluster's members ``xm``, by proportional stratified sampling.

    The members are split into ``ceil(quota / STRATUM_PICKS)`` strata by k-means
    (:func:`ecos_fast.kmeans`, k-means++ seeded with ``seed``, trained on at most
    ``max(STRATA_TRAIN_MIN, STRATA_TRAIN_PER * n_strata)`` sampled members); each stratum gets picks
    in proportion to its size (:func:`ecos_fast.allocate_quotas`), its members nearest
    the stratum's centre (ties to the lowest row). A dense part of the cluster gets
    picks in proportion to its rows, spread over it; a sparse outlier at the edge gets
    few (farthest-first takes every outlier first). Returns positions into ``xm``,
    every stratum's nearest member first, then every stratum's second, and so on.

    Examples
    --------
    >>> import numpy as np
    >>> from ecos_fast.rule import stratified_picks
    >>> xm = np.array([[0], [1], [2], [6], [20], [21], [23]], np.float32)
    >>> # 2 strata, {0, 1, 2, 6} (centre 2.25) and {20, 21, 23} (centre 21.3): 2 picks and 1
    >>> stratified_picks(xm, 3, seed=0, n_threads=1).tolist()
    [2, 5, 1]
    """
    m = int(xm.shape[0])
    if quota >= m:
        return np.arange(m, dtype=np.int64)
    n_strata = max(1, math.ceil(quota / STRATUM_PICKS))
    per = max(STRATA_TRAIN_PER, math.ceil(STRATA_TRAIN_MIN / n_strata))
    params = check_kmeans_params(
        m, int(xm.shape[1]), n_strata, max_iter=25, tol=1e-4, seed=seed, init=None,
        max_points_per_centroid=per, n_local_trials=1, init_sample=None,
    )  # fmt: skip
    km = kmeans_rows(xm, params, n_threads)  # ecos_fast.kmeans's own path, defaults
    strata, d2 = _core.assign(xm, km.centroids, n_threads)
    sizes = np.bincount(strata, minlength=n_strata).astype(np.int64)
    alloc = allocate_quotas(sizes.astype(np.float64), sizes, quota)
    pos = np.arange(m, dtype=np.int64)
    order = np.lexsort((pos, d2, strata))  # by stratum, nearest its centre first
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    rank = np.empty(m, dtype=np.int64)
    rank[order] = pos - np.repeat(starts, sizes)
    take = np.flatnonzero(rank < alloc[strata])
    return take[np.lexsort((take, d2[take], rank[take]))].astype(np.int64)


def affinity_candidates(
    xm: NDArray[np.float32],
    centroids: NDArray[np.float32],
    weights: NDArray[np.float64],
    cluster: int,
    n_candidates: int,
) -> NDArray[np.int64]:
    """The ``n_candidates`` members of one cluster (rows ``xm``) with the highest
    affinity, as ascending positions into ``xm``.

    A member's affinity is the mean of ``weights`` over its
    :data:`AFFINITY_NEIGHBOURS` nearest centroids
    (:func:`ecos_fast.smoothing.nearest_centroids`: exact float64, ties to the lowest
    index): post-processing of the release, so no privacy cost. Ties go to the member
    nearest the cluster's own centroid (float64), then to the lowest position. A
    cluster the client shares with another domain has the client's side next to
    other weighted centroids and the other domain's side next to unweighted ones;
    the weights alone cannot tell members of one cluster apart.

    Examples
    --------
    >>> import numpy as np
    >>> from ecos_fast.rule import affinity_candidates
    >>> cents = np.array([[0, 0], [-10, 0], [-9, 4], [10, 0], [9, 4]], np.float32)
    >>> xm = np.array([[-2, 0], [-1, 0], [1, 0], [2, 0], [3, 0]], np.float32)  # cluster 0
    >>> # The client weighs the right-hand centroids 3 and 4, not 1 and 2: members at x > 0
    >>> # have affinity (5 + 5 + 5) / 3, those at x < 0 5 / 3; ties to the nearest the centre.
    >>> affinity_candidates(xm, cents, np.array([5.0, 0, 0, 5, 5]), 0, 2).tolist()
    [2, 3]
    """
    m = int(xm.shape[0])
    if n_candidates >= m:
        return np.arange(m, dtype=np.int64)
    k = min(AFFINITY_NEIGHBOURS, int(centroids.shape[0]))
    affinity = np.asarray(weights, dtype=np.float64)[nearest_centroids(xm, centroids, k)].mean(1)
    diff = xm.astype(np.float64) - centroids[cluster].astype(np.float64)
    own = np.einsum("ij,ij->i", diff, diff)
    order = np.lexsort((np.arange(m), own, -affinity))
    return np.sort(order[:n_candidates]).astype(np.int64)


def strata_all_clusters(
    x: _stream.Rows,
    indptr: NDArray[np.int64],
    members: NDArray[np.int64],
    quotas: NDArray[np.int64],
    seed: int,
    n_threads: int,
    *,
    affinity: tuple[NDArray[np.float32], NDArray[np.float64], float] | None = None,
) -> NDArray[np.int64]:
    """:func:`stratified_picks` in every cluster with a quota; ``members[indptr[k]:
    indptr[k + 1]]`` are cluster ``k``'s rows of ``x``, ascending. Returns rows of ``x``
    in cluster order.

    ``affinity=(centroids, weights, candidates)`` (``within="weighted-strata"``): the
    strata are drawn from each cluster's ``ceil(candidates * quota)`` members of
    highest affinity (:func:`affinity_candidates`) instead of all of them."""
    _stream.will_need_rows(x, members[np.repeat(quotas > 0, np.diff(indptr))])
    out = []
    for k in np.flatnonzero(quotas > 0).tolist():
        rows = members[indptr[k] : indptr[k + 1]]
        xm = np.ascontiguousarray(_stream.gather_rows(x, rows), dtype=np.float32)
        q = int(quotas[k])
        if affinity is not None:
            cents, weights, factor = affinity
            keep = affinity_candidates(xm, cents, weights, k, math.ceil(factor * q))
            rows, xm = rows[keep], np.ascontiguousarray(xm[keep])
        out.append(rows[stratified_picks(xm, q, stratum_seed(seed, k), n_threads)])
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def strata_affinity(
    centroids: NDArray[np.float32], plan: Plan, opts: RuleOptions
) -> tuple[NDArray[np.float32], NDArray[np.float64], float] | None:
    """:func:`strata_all_clusters`'s ``affinity`` argument for ``opts.within``."""
    if opts.within != "weighted-strata":
        return None
    return centroids, plan.weights, opts.candidates


def select_within(
    x: _stream.Rows,
    centroids: NDArray[np.float32],
    labels: NDArray[np.int64],
    sq_dist: NDArray[np.float32] | None,
    plan: Plan,
    opts: RuleOptions,
    n_threads: int,
    seed: int = 0,
) -> NDArray[np.int64]:
    """The picks of every cluster with a quota, on one machine (cluster order).

    ``sq_dist`` is every row's squared distance to its own centroid (from the
    assignment); None computes it for the chosen clusters' members. ``seed`` seeds
    the strata of ``within="strata"``.
    """
    quotas = plan.quotas
    if opts.within in STRATA_ROUTINES:
        indptr, members = cluster_members(labels, quotas.shape[0])
        return strata_all_clusters(
            x,
            indptr,
            members,
            quotas,
            seed,
            n_threads,
            affinity=strata_affinity(centroids, plan, opts),
        )
    if sq_dist is None:
        sq_dist = own_centroid_sq_dist(x, centroids, labels, quotas > 0, n_threads)
    indptr, members = cluster_members(labels, quotas.shape[0])
    if opts.within == "kcenter":  # the whole cluster: only its nearest member is needed
        _, first_rows = _core.nearest_in_clusters(
            sq_dist, indptr, members, (quotas > 0).astype(np.int64), n_threads
        )
        first = np.full(quotas.shape[0], -1, dtype=np.int64)
        first[quotas > 0] = first_rows  # a quota never exceeds the capacity
        return kcenter_in_clusters(x, indptr, members, quotas, first, n_threads)
    counts = candidate_counts(quotas, plan.capacity, opts)
    cand_indptr, cand = _core.nearest_in_clusters(sq_dist, indptr, members, counts, n_threads)
    if opts.within == "nearest":
        return cand
    return kcenter_on_candidates(x, cand_indptr, cand, quotas, n_threads)
