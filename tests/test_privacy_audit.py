"""The empirical privacy audit (issue 13): lower bounds on epsilon from the real releases.

The default run audits a small seeded configuration (the coverage release under both
neighbouring relations and one private-kNN query); ``-m slow`` audits a larger one.
A mechanism with a tenth of the calibrated sigma must fail. Sizes are the ones
``scripts/audit_power.py`` measured (docs/method.md, "Privacy audit").
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from ecos_fast.apps import client_labeling as cl
from ecos_fast.audit import (
    audit,
    audit_coverage,
    audit_private_knn,
    clopper_pearson_upper,
    epsilon_lower_bound,
)
from ecos_fast.errors import EcosError, InvalidInputError, PrivacyParameterError
from ecos_fast.privacy import calibrate_gaussian_sigma
from scipy.stats import binomtest

DELTA = 1e-5
EPSILON = 0.58  # the project's default release

# (n_trials, n_select) per data set: what the default run and -m slow audit.
COVERAGE_DEFAULT, COVERAGE_SLOW = (4000, 2000), (40_000, 10_000)
KNN_DEFAULT, KNN_SLOW = (100_000, 20_000), (1_000_000, 200_000)


# ------------------------------------------------------------- the statistics


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (9, 10), (0, 1000), (17, 4000)])
def test_clopper_pearson_upper_matches_scipys_exact_interval(k: int, n: int) -> None:
    # A two-sided exact interval at 1 - 2a has the one-sided level-a upper bound as its top.
    want = binomtest(k, n).proportion_ci(confidence_level=0.9, method="exact").high
    assert float(clopper_pearson_upper(k, n, 0.05)) == pytest.approx(want, rel=1e-9)
    assert float(clopper_pearson_upper(n, n, 0.05)) == 1.0


def test_epsilon_lower_bound_is_the_hypothesis_testing_bound() -> None:
    fp, fn, n = 12, 3100, 10_000
    fpr = float(clopper_pearson_upper(fp, n, 0.025))
    fnr = float(clopper_pearson_upper(fn, n, 0.025))
    want = max(math.log((1 - DELTA - fnr) / fpr), math.log((1 - DELTA - fpr) / fnr), 0.0)
    assert float(epsilon_lower_bound(fp, fn, n, n, DELTA, 0.05)) == pytest.approx(want)
    # Symmetric in the two data sets, and nothing from a test no better than chance.
    assert float(epsilon_lower_bound(fn, fp, n, n, DELTA)) == pytest.approx(want)
    assert float(epsilon_lower_bound(5000, 5000, n, n, DELTA)) == 0.0
    assert float(epsilon_lower_bound(0, n, n, n, DELTA)) == 0.0


def test_audit_of_an_exact_gaussian_bounds_its_epsilon_from_below() -> None:
    # sigma calibrated for epsilon = 1 (sensitivity 1): the bound stays below 1 but sees
    # a good part of it; a tenth of sigma (true epsilon far above 1) is caught.
    sigma = calibrate_gaussian_sigma(1.0, DELTA)

    def gaussian(scale: float):  # type: ignore[no-untyped-def]
        return lambda side, n, rng: side + rng.normal(0.0, scale, n)

    ok = audit(gaussian(sigma), epsilon=1.0, delta=DELTA, n_trials=200_000, seed=1)
    assert 0.3 < ok.epsilon_lower <= 1.0 and ok.passed
    bad = audit(gaussian(sigma / 10), epsilon=1.0, delta=DELTA, n_trials=20_000, seed=1)
    assert bad.epsilon_lower > 1.0 and not bad.passed


def test_audit_arguments_are_checked() -> None:
    def ok(side: int, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(side, 1.0, n)

    with pytest.raises(InvalidInputError, match="n_trials=0"):
        audit(ok, epsilon=1.0, delta=DELTA, n_trials=0)
    with pytest.raises(InvalidInputError, match=r"alpha=1\.5"):
        audit(ok, epsilon=1.0, delta=DELTA, alpha=1.5)
    with pytest.raises(InvalidInputError, match="epsilon=inf"):
        audit(ok, epsilon=math.inf, delta=DELTA)
    with pytest.raises(InvalidInputError, match="samplers is empty"):
        audit([], epsilon=1.0, delta=DELTA)
    with pytest.raises(InvalidInputError, match="must return 10 finite scores"):
        audit(lambda side, n, rng: np.zeros(n + 1), epsilon=1.0, delta=DELTA, n_trials=20)
    with pytest.raises(PrivacyParameterError):
        audit(ok, epsilon=1.0, delta=2.0)
    with pytest.raises(EcosError, match="sigma_factor=0"):
        audit_coverage(1.0, DELTA, sigma_factor=0.0)
    with pytest.raises(EcosError, match="margin=0"):
        audit_private_knn(1.0, DELTA, margins=[0])


# ------------------------------------------------------------ the two releases


class _RecordingLedger:
    """Takes the release without dp-accounting's PLD composition (seconds at sigma=1.5)."""

    def __init__(self) -> None:
        self.spent: list[object] = []

    def spend(self, release: object) -> None:
        self.spent.append(release)

    def total_epsilon(self, cloud: str, relation: str | None = None) -> float:
        return math.nan


def test_the_knn_audit_runs_what_private_knn_label_releases() -> None:
    # audit_private_knn draws knn_votes + gnmax directly (the ledger's PLD accounting
    # of a million queries is not what is audited); they are what private_knn_label
    # releases, noise draw for noise draw.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = rng.integers(0, 3, 60)
    q = rng.normal(size=(6, 4)).astype(np.float32)
    got = cl.private_knn_label(
        x, y, q, sigma=1.5, k=9, n_classes=3, seed=11, ledger=_RecordingLedger()
    )
    votes = cl.knn_votes(x, y, q, k=9, n_classes=3)
    np.testing.assert_array_equal(got.labels, cl.gnmax(votes, 1.5, np.random.default_rng(11)))


@pytest.mark.parametrize("relation", ["add_remove", "replace_one"])
def test_coverage_release_passes_the_audit(relation: str) -> None:
    n, s = COVERAGE_DEFAULT
    r = audit_coverage(EPSILON, DELTA, relation, n_trials=n, n_select=s, seed=0)
    assert r.passed, r
    assert r.n_trials == n and r.epsilon_lower <= EPSILON


@pytest.mark.parametrize("relation", ["add_remove", "replace_one"])
def test_coverage_at_two_neighbours_passes_the_audit_and_a_tenth_of_sigma_fails(
    relation: str,
) -> None:
    n, s = COVERAGE_DEFAULT
    r = audit_coverage(EPSILON, DELTA, relation, n_trials=n, n_select=s, seed=0, neighbours=2)
    assert r.passed and r.epsilon_lower <= EPSILON, r
    assert "neighbours=2" in r.name
    bad = audit_coverage(
        EPSILON, DELTA, relation, n_trials=500, seed=0, sigma_factor=0.1, neighbours=2
    )
    assert not bad.passed and bad.epsilon_lower > EPSILON, bad


@pytest.mark.parametrize("epsilon", [EPSILON, 5.0])
def test_one_private_knn_query_passes_the_audit(epsilon: float) -> None:
    n, s = KNN_DEFAULT
    r = audit_private_knn(epsilon, DELTA, n_trials=n, n_select=s, seed=0)
    assert r.passed, r
    assert r.epsilon_lower > 0.25 * epsilon  # the audit sees a real part of the claim


@pytest.mark.parametrize("kind", ["add_remove", "replace_one", "knn"])
def test_a_tenth_of_the_calibrated_sigma_fails_the_audit(kind: str) -> None:
    if kind == "knn":
        r = audit_private_knn(EPSILON, DELTA, n_trials=2000, seed=0, sigma_factor=0.1)
    else:
        r = audit_coverage(EPSILON, DELTA, kind, n_trials=500, seed=0, sigma_factor=0.1)
    assert not r.passed and r.epsilon_lower > EPSILON, r


# ------------------------------------------------------------------ -m slow


@pytest.mark.slow
@pytest.mark.parametrize("relation", ["add_remove", "replace_one"])
def test_coverage_release_passes_the_large_audit(relation: str) -> None:
    n, s = COVERAGE_SLOW
    r = audit_coverage(EPSILON, DELTA, relation, n_trials=n, n_select=s, seed=0)
    assert r.passed, r


@pytest.mark.slow
@pytest.mark.parametrize("epsilon", [EPSILON, 2.0, 5.0])
def test_one_private_knn_query_passes_the_large_audit(epsilon: float) -> None:
    n, s = KNN_SLOW
    r = audit_private_knn(epsilon, DELTA, n_trials=n, n_select=s, seed=0)
    assert r.passed, r
    assert r.epsilon_lower > 0.5 * epsilon


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "factor"), [("add_remove", 0.5), ("replace_one", 0.4), ("knn", 0.5)]
)
def test_the_large_audit_detects_the_breakage_measured_in_docs(kind: str, factor: float) -> None:
    # The smallest breakage the slow size detected in every seed (docs/method.md).
    if kind == "knn":
        n, s = KNN_SLOW
        r = audit_private_knn(EPSILON, DELTA, n_trials=n, n_select=s, seed=0, sigma_factor=factor)
    else:
        n, s = COVERAGE_SLOW
        r = audit_coverage(
            EPSILON, DELTA, kind, n_trials=n, n_select=s, seed=0, sigma_factor=factor
        )
    assert not r.passed, r
