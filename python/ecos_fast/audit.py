"""Empirical privacy audit: a statistical lower bound on a release's epsilon.

A black-box test in the spirit of DP-Auditorium and Google's differential-privacy
stochastic tester. Run a release many times on two neighbouring data sets ``D0`` and
``D1``, reduce every output to a score, and test "the output came from ``D1``" by a
threshold on that score. If the release is (epsilon, delta)-DP, every test's false
positive rate ``FPR = P_D0(score > t)`` and false negative rate ``FNR = P_D1(score <= t)``
obey (Kairouz, Oh & Viswanath 2015)::

    FPR + exp(epsilon) * FNR >= 1 - delta  and  FNR + exp(epsilon) * FPR >= 1 - delta,

so ``epsilon >= log((1 - delta - FNR) / FPR)`` and ``log((1 - delta - FPR) / FNR)``.
With one-sided Clopper-Pearson upper bounds on both rates (level ``alpha / 2`` each,
so both hold together with probability at least ``1 - alpha``) the larger of the two
logs is a lower bound on the true epsilon at confidence ``1 - alpha``. An audit
*fails* when that lower bound passes the claimed epsilon: the release is then not
(epsilon, delta)-DP, except with probability ``alpha``.

The threshold (and the candidate pair of data sets, where there are several) is
chosen on ``n_select`` runs per side and the bound is computed on ``n_trials`` fresh
runs at that one threshold, so choosing among many thresholds costs no confidence
(Jagielski, Ullman & Oprea 2020). A passed audit is evidence, not proof: it bounds
epsilon from below only as far as the chosen pairs and ``n_trials`` reach (with
``n_trials`` runs no rate below about ``1 / n_trials`` is seen, so an epsilon whose
violation lives in the far tail goes unseen). The table in ``docs/method.md`` gives
the bounds at the default and the slow test sizes.

:func:`audit` takes any release as a sampler; :func:`audit_coverage` and
:func:`audit_private_knn` audit the two releases of ecos-fast through their real
code paths (:func:`ecos_fast.respond`; :func:`ecos_fast.apps.client_labeling.knn_votes`
and :func:`~ecos_fast.apps.client_labeling.gnmax`, the two steps of
:func:`~ecos_fast.apps.client_labeling.private_knn_label`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._validation import check_delta, check_epsilon, check_int
from .errors import InvalidInputError

__all__ = [
    "AuditResult",
    "Sampler",
    "audit",
    "audit_coverage",
    "audit_private_knn",
    "clopper_pearson_upper",
    "epsilon_lower_bound",
]

#: ``sampler(side, n, rng)`` returns the scores of ``n`` independent runs of the
#: release on data set ``side`` (0 or 1) as a 1-D float array; a higher score should
#: point to data set 1 (the audit also tests the other direction).
Sampler = Callable[[int, int, np.random.Generator], NDArray[np.float64]]

# Thresholds tried on the selection runs: quantiles of the pooled scores.
_N_THRESHOLDS = 200


def clopper_pearson_upper(successes: Any, trials: Any, alpha: float) -> NDArray[np.float64]:
    """One-sided Clopper-Pearson upper confidence bound on a binomial rate.

    Parameters
    ----------
    successes, trials : int or array-like of int
        ``0 <= successes <= trials``, ``trials >= 1``.
    alpha : float
        In (0, 1): the bound is below the true rate with probability at most
        ``alpha``.

    Returns
    -------
    ndarray of float64
        ``Beta(1 - alpha; successes + 1, trials - successes)`` quantile, 1 where
        ``successes == trials``.

    Examples
    --------
    >>> from ecos_fast.audit import clopper_pearson_upper
    >>> round(float(clopper_pearson_upper(0, 100, 0.05)), 4)  # the "rule of three"
    0.0295
    >>> float(clopper_pearson_upper(7, 7, 0.05))
    1.0
    """
    from scipy.special import betaincinv  # type: ignore[import-untyped,unused-ignore]  # lazy: SciPy

    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if not 0 < alpha < 1:
        raise InvalidInputError(f"alpha={alpha} must lie in (0, 1)")
    if np.any(n < 1) or np.any(k < 0) or np.any(k > n):
        raise InvalidInputError("need 0 <= successes <= trials and trials >= 1")
    kk, nn = np.broadcast_arrays(k, n)
    out = np.ones(kk.shape, dtype=np.float64)
    part = kk < nn
    out[part] = betaincinv(kk[part] + 1.0, nn[part] - kk[part], 1.0 - alpha)
    return out


def epsilon_lower_bound(
    false_positives: Any,
    false_negatives: Any,
    n0: int,
    n1: int,
    delta: float,
    alpha: float = 0.05,
) -> NDArray[np.float64]:
    """Epsilon lower bound at ``delta`` from the error counts of threshold tests.

    Parameters
    ----------
    false_positives : int or array-like of int
        Runs on data set 0 (of ``n0``) that the test assigned to data set 1.
    false_negatives : int or array-like of int
        Runs on data set 1 (of ``n1``) that the test assigned to data set 0.
    n0, n1 : int
    delta : float
        The claimed delta, in (0, 1).
    alpha : float, default 0.05
        The bound holds with probability at least ``1 - alpha`` (``alpha / 2`` to
        each rate's Clopper-Pearson bound).

    Returns
    -------
    ndarray of float64
        ``max(0, log((1 - delta - FNR_hi) / FPR_hi), log((1 - delta - FPR_hi) / FNR_hi))``
        per test, with ``FPR_hi`` and ``FNR_hi`` the upper confidence bounds.

    Examples
    --------
    >>> from ecos_fast.audit import epsilon_lower_bound
    >>> round(float(epsilon_lower_bound(10, 5000, 10000, 10000, 1e-5)), 3)
    5.586
    >>> float(epsilon_lower_bound(5000, 5000, 10000, 10000, 1e-5))  # a coin flip: nothing
    0.0
    """
    d = check_delta(delta)
    fpr = clopper_pearson_upper(false_positives, n0, alpha / 2)
    fnr = clopper_pearson_upper(false_negatives, n1, alpha / 2)
    # Both upper bounds are > 0 for finite counts; a numerator of 0 gives log(0) = -inf.
    with np.errstate(divide="ignore"):
        a = np.log(np.maximum(1.0 - d - fnr, 0.0) / fpr)
        b = np.log(np.maximum(1.0 - d - fpr, 0.0) / fnr)
    out: NDArray[np.float64] = np.maximum(np.maximum(a, b), 0.0)
    return out


def _errors(s0: NDArray[np.float64], s1: NDArray[np.float64], t: NDArray[np.float64]) -> Any:
    """False positives and negatives of the tests "score > t means data set 1"."""
    a0, a1 = np.sort(s0), np.sort(s1)
    fp = a0.size - np.searchsorted(a0, t, side="right")
    fn = np.searchsorted(a1, t, side="right")
    return fp, fn


@dataclass(frozen=True)
class AuditResult:
    """What an audit found.

    Attributes
    ----------
    name : str
    epsilon : float
        The claimed epsilon.
    delta : float
    epsilon_lower : float
        Lower bound on the release's epsilon at ``delta``, holding with probability
        at least ``confidence``.
    confidence : float
        ``1 - alpha``.
    n_trials : int
        Runs per data set behind ``epsilon_lower``.
    n_select : int
        Runs per data set (per candidate) spent choosing the test.
    candidate : int
        Index of the chosen neighbouring pair among the sampler's candidates.
    threshold : float
        The test: "score > threshold" says data set 1.
    fpr, fnr : float
        Observed error rates of that test on the ``n_trials`` runs.
    fpr_upper, fnr_upper : float
        Their Clopper-Pearson upper bounds (level ``alpha / 2`` each).
    """

    name: str
    epsilon: float
    delta: float
    epsilon_lower: float
    confidence: float
    n_trials: int
    n_select: int
    candidate: int
    threshold: float
    fpr: float
    fnr: float
    fpr_upper: float
    fnr_upper: float

    @property
    def passed(self) -> bool:
        """True when the lower bound stays at or below the claimed epsilon."""
        return self.epsilon_lower <= self.epsilon


def _check_count(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InvalidInputError(f"{name}={value!r} must be an integer >= {low}")
    return int(value)


def audit(
    samplers: Sampler | Sequence[Sampler],
    *,
    epsilon: float,
    delta: float,
    n_trials: int = 10_000,
    n_select: int | None = None,
    alpha: float = 0.05,
    seed: int = 0,
    name: str = "release",
) -> AuditResult:
    """Audit a release: lower-bound its epsilon from runs on neighbouring data sets.

    Parameters
    ----------
    samplers : Sampler or sequence of Sampler
        One per candidate pair of neighbouring data sets (see :data:`Sampler`).
    epsilon : float
        The claimed epsilon, in (0, inf).
    delta : float
        The claimed delta, in (0, 1).
    n_trials : int, default 10000
        Fresh runs per data set behind the bound (on the chosen candidate).
    n_select : int, optional
        Runs per data set and candidate used to choose the candidate and threshold;
        default ``n_trials // 2``.
    alpha : float, default 0.05
        The bound holds with probability at least ``1 - alpha``.
    seed : int, default 0
        Seeds every run (the audit is reproducible).
    name : str, default "release"

    Returns
    -------
    AuditResult

    Examples
    --------
    A Gaussian mechanism of sensitivity 1 calibrated for epsilon = 1, and a broken one
    with a tenth of the noise:

    >>> import numpy as np
    >>> from ecos_fast import calibrate_gaussian_sigma
    >>> from ecos_fast.audit import audit
    >>> sigma = calibrate_gaussian_sigma(1.0, 1e-5)
    >>> def gaussian(scale):
    ...     return lambda side, n, rng: side + rng.normal(0.0, scale, n)
    >>> audit(gaussian(sigma), epsilon=1.0, delta=1e-5, n_trials=20000).passed
    True
    >>> audit(gaussian(sigma / 10), epsilon=1.0, delta=1e-5, n_trials=20000).passed
    False
    """
    eps = check_epsilon(epsilon)
    if math.isinf(eps):
        raise InvalidInputError("epsilon=inf claims no privacy: there is nothing to audit")
    d = check_delta(delta)
    if not 0 < alpha < 1:
        raise InvalidInputError(f"alpha={alpha} must lie in (0, 1)")
    n_t = _check_count(n_trials, "n_trials", 1)
    n_s = max(1, n_t // 2) if n_select is None else _check_count(n_select, "n_select", 1)
    cands = [samplers] if callable(samplers) else list(samplers)
    if not cands:
        raise InvalidInputError("samplers is empty: give at least one neighbouring pair")
    seeds = np.random.SeedSequence(seed).spawn(2 * len(cands) + 2)

    def draw(sampler: Sampler, side: int, n: int, ss: np.random.SeedSequence) -> Any:
        out = np.asarray(sampler(side, n, np.random.default_rng(ss)), dtype=np.float64)
        if out.shape != (n,) or not np.all(np.isfinite(out)):
            raise InvalidInputError(
                f"a sampler must return {n} finite scores; got shape={out.shape}"
            )
        return out

    best = (-1.0, 0, 0.0)  # (selection bound, candidate, threshold)
    for i, sampler in enumerate(cands):
        s0 = draw(sampler, 0, n_s, seeds[2 * i])
        s1 = draw(sampler, 1, n_s, seeds[2 * i + 1])
        pooled = np.concatenate([s0, s1])
        t = np.unique(np.quantile(pooled, np.linspace(0.0, 1.0, _N_THRESHOLDS + 1)))
        fp, fn = _errors(s0, s1, t)
        bound = epsilon_lower_bound(fp, fn, n_s, n_s, d, alpha)
        j = int(np.argmax(bound))
        if bound[j] > best[0]:
            best = (float(bound[j]), i, float(t[j]))
    _, i, thr = best
    s0 = draw(cands[i], 0, n_t, seeds[-2])
    s1 = draw(cands[i], 1, n_t, seeds[-1])
    fp, fn = _errors(s0, s1, np.array([thr]))
    lower = float(epsilon_lower_bound(fp, fn, n_t, n_t, d, alpha)[0])
    return AuditResult(
        name=name,
        epsilon=eps,
        delta=d,
        epsilon_lower=lower,
        confidence=1.0 - alpha,
        n_trials=n_t,
        n_select=n_s,
        candidate=i,
        threshold=thr,
        fpr=float(fp[0]) / n_t,
        fnr=float(fn[0]) / n_t,
        fpr_upper=float(clopper_pearson_upper(fp[0], n_t, alpha / 2)),
        fnr_upper=float(clopper_pearson_upper(fn[0], n_t, alpha / 2)),
    )


def audit_coverage(
    epsilon: float,
    delta: float,
    relation: str = "add_remove",
    *,
    n_trials: int = 10_000,
    n_select: int | None = None,
    alpha: float = 0.05,
    seed: int = 0,
    sigma_factor: float = 1.0,
    neighbours: int = 1,
) -> AuditResult:
    """Audit the Centroid Coverage release (:func:`ecos_fast.respond`) itself.

    Neighbouring private sets in the worst case for the counts: under
    ``"add_remove"``, ``D1`` is ``D0`` plus one sample in cluster 1 (one count moves by
    one); under ``"replace_one"``, one sample of ``D0`` moves from cluster 0 to cluster
    1 (two counts move). Every run is one call of :func:`ecos_fast.respond` with its
    own seed; the score is the released counts projected on ``counts(D1) -
    counts(D0)`` (the likelihood-ratio statistic of a Gaussian release).

    Parameters
    ----------
    epsilon, delta : float
        What the release claims; ``sigma`` is calibrated from them as in ``respond``.
    relation : {"add_remove", "replace_one"}
    n_trials, n_select, alpha, seed
        See :func:`audit`.
    sigma_factor : float, default 1.0
        Multiplies the calibrated ``sigma``. Values below 1 break the mechanism on
        purpose, to measure what breakage the audit detects; never use them to
        release anything.
    neighbours : int, default 1
        ``respond(neighbours=...)``: with more than one, the centroids are four
        points on a line, and the added (or moved) sample sits at one end of it and
        the removed one at the other, its vector spread over its ``neighbours``
        nearest (at most 4; the replace-one change is the largest possible, sqrt(2),
        for 2).

    Returns
    -------
    AuditResult

    Examples
    --------
    >>> from ecos_fast.audit import audit_coverage
    >>> audit_coverage(1.0, 1e-5, n_trials=1000).passed
    True
    >>> audit_coverage(1.0, 1e-5, n_trials=1000, sigma_factor=0.1).passed
    False
    """
    from .privacy import GaussianMechanism
    from .protocol import Centroids, respond

    mech = GaussianMechanism(epsilon, delta, relation)  # type: ignore[arg-type]
    if not (math.isfinite(sigma_factor) and sigma_factor > 0):
        raise InvalidInputError(f"sigma_factor={sigma_factor} must be finite and > 0")
    if sigma_factor != 1.0:
        mech = dataclasses.replace(mech)
        object.__setattr__(mech, "sigma", mech.sigma * sigma_factor)  # broken on purpose
    k = check_int(neighbours, "neighbours", low=1)
    points = [[0.0, 0.0], [10.0, 10.0]] if k == 1 else [[10.0 * i, 10.0 * i] for i in range(4)]
    if k > len(points):
        raise InvalidInputError(f"neighbours={k} exceeds the audit's {len(points)} centroids")
    cents = Centroids(np.array(points, dtype=np.float32))
    base = np.array([[0, 1], [1, 0], [0.5, 0.5], [9, 9], [10, 9]], dtype=np.float32)
    # The sample added (or moved): near centroid 1, or with neighbours at the far end of
    # the line, so that (for neighbours=2) its vector and the removed one's are disjoint
    # and the replace-one change has the largest norm, sqrt(2).
    near_1 = np.array([[9.5, 10.0] if k == 1 else [29.5, 30.0]], dtype=np.float32)
    if relation == "add_remove":
        sets = (base, np.concatenate([base, near_1]))
    else:
        sets = (base, np.concatenate([base[1:], near_1]))
    exact = [respond(x, cents, math.inf, delta, neighbours=k).noisy_counts for x in sets]
    direction = exact[1] - exact[0]

    def sampler(side: int, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
        seeds = rng.integers(0, 2**63 - 1, size=n)
        out = np.empty(n, dtype=np.float64)
        for r, s in enumerate(seeds):
            res = respond(
                sets[side], cents, epsilon, delta, relation=mech.relation, mechanism=mech,
                seed=int(s), n_threads=1, neighbours=k,
            )  # fmt: skip
            out[r] = float(res.noisy_counts @ direction)
        return out

    return audit(
        sampler,
        epsilon=epsilon,
        delta=delta,
        n_trials=n_trials,
        n_select=n_select,
        alpha=alpha,
        seed=seed,
        name=f"coverage/{relation}" + ("" if k == 1 else f"/neighbours={k}"),
    )


def _knn_pair(margin: int) -> tuple[Any, Any, Any, Any, NDArray[np.float32]]:
    """Private sets whose vote histograms at the query are [m, 0] and [m - 1, 1].

    ``D0``: ``margin`` class-0 samples at distinct small angles from the query (its
    ``k = margin`` neighbours) and two class-1 samples facing away; ``D1`` adds one
    class-1 sample on the query, which displaces the k-th neighbour (class 0).
    """
    angles = 0.5 * np.arange(1, margin + 1) / margin
    near = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    far = np.array([[-1.0, 0.0], [-1.0, 0.1]])
    x0 = np.concatenate([near, far]).astype(np.float32)
    y0 = np.array([0] * margin + [1, 1])
    x1 = np.concatenate([x0, [[1.0, 0.0]]]).astype(np.float32)
    y1 = np.concatenate([y0, [1]])
    return x0, y0, x1, y1, np.array([[1.0, 0.0]], dtype=np.float32)


def audit_private_knn(
    epsilon: float,
    delta: float,
    *,
    n_trials: int = 100_000,
    n_select: int | None = None,
    alpha: float = 0.05,
    seed: int = 0,
    sigma_factor: float = 1.0,
    margins: Sequence[int] | None = None,
) -> AuditResult:
    """Audit one private-kNN label query (the vote release of client labeling).

    One query, ``sigma = calibrate_knn_sigma(1, epsilon, delta)``. Each candidate is a
    pair of private sets under add/remove whose vote histograms at the query are
    ``[m, 0]`` and ``[m - 1, 1]`` (``k = m``: the added class-1 sample displaces the
    k-th neighbour); the released output is the noisy argmax and the score is "the
    label is 1". A larger margin ``m`` puts the test further in the noise's tail, where
    the likelihood ratio is larger but the rates are harder to see; the audit tries
    ``margins`` and keeps the best (by default 1 to about the margin the claimed
    ``sigma`` flips with probability ``1 / n_trials``). Each run is a query of
    :func:`~ecos_fast.apps.client_labeling.knn_votes` followed by
    :func:`~ecos_fast.apps.client_labeling.gnmax`, exactly what
    :func:`~ecos_fast.apps.client_labeling.private_knn_label` releases (without its
    ledger, whose accounting is not what is audited); the ``n`` runs of a batch are
    ``n`` queries of one call, whose noise is drawn independently per query.

    Parameters
    ----------
    epsilon, delta : float
        What one query claims.
    n_trials, n_select, alpha, seed
        See :func:`audit`.
    sigma_factor : float, default 1.0
        Multiplies the calibrated ``sigma`` (below 1: broken on purpose).
    margins : sequence of int, optional
        Vote margins ``m >= 1`` to try.

    Returns
    -------
    AuditResult
        ``candidate`` indexes ``margins``.

    Examples
    --------
    >>> from ecos_fast.audit import audit_private_knn
    >>> audit_private_knn(5.0, 1e-5, n_trials=20000).passed
    True
    >>> audit_private_knn(5.0, 1e-5, n_trials=20000, sigma_factor=0.1).passed
    False
    """
    from scipy.special import ndtri  # type: ignore[import-untyped,unused-ignore]  # lazy: SciPy

    from .apps.client_labeling import calibrate_knn_sigma, gnmax, knn_votes

    check_epsilon(epsilon)
    check_delta(delta)
    if not (math.isfinite(sigma_factor) and sigma_factor > 0):
        raise InvalidInputError(f"sigma_factor={sigma_factor} must be finite and > 0")
    sigma = calibrate_knn_sigma(1, epsilon, delta) * sigma_factor
    if margins is None:
        # The noise on the vote difference has std sigma * sqrt(2).
        claimed = calibrate_knn_sigma(1, epsilon, delta) * math.sqrt(2.0)
        top = max(2, math.ceil(claimed * -ndtri(1.0 / max(n_trials, 2))) + 2)
        margins = sorted({int(m) for m in np.geomspace(1, top, 12).round()})
    ms = [_check_count(m, "margin", 1) for m in margins]

    def make(m: int) -> Sampler:
        x0, y0, x1, y1, query = _knn_pair(m)
        votes = [knn_votes(x, y, query, k=m, n_classes=2)[0] for x, y in ((x0, y0), (x1, y1))]

        def sampler(side: int, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
            labels = gnmax(np.repeat(votes[side][None, :], n, axis=0), sigma, rng)
            out: NDArray[np.float64] = (labels == 1).astype(np.float64)
            return out

        return sampler

    result = audit(
        [make(m) for m in ms],
        epsilon=epsilon,
        delta=delta,
        n_trials=n_trials,
        n_select=n_select,
        alpha=alpha,
        seed=seed,
        name="private-knn",
    )
    return result
