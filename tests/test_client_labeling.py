"""Client labeling with a query budget separate from the selection budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ecos_fast.apps import client_labeling as cl
from ecos_fast.errors import (
    InvalidInputError,
    LedgerRelationError,
    NoNoiseReleaseError,
    PrivacyBudgetExceededError,
)
from ecos_fast.ledger import Ledger, Release, compose_epsilon
from hypothesis import given, settings
from hypothesis import strategies as st

DELTA = 1e-5


def _data(n_pool: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, size=(4, 8))
    yp = np.arange(200) % 4
    private = (centres[yp] + rng.normal(size=(200, 8))).astype(np.float32)
    ypool = rng.integers(0, 4, n_pool)
    pool = (centres[ypool] + rng.normal(size=(n_pool, 8))).astype(np.float32)
    return private, yp, pool, ypool


def _label(budget: int, queries: int | None, ledger: Ledger, seed: int = 0) -> cl.SelectionLabels:
    private, yp, pool, ypool = _data()
    selected = np.random.default_rng(budget).permutation(len(pool))[:budget]
    return cl.label_selection(
        private, yp, pool, selected, queries=queries, epsilon=2.0, delta=DELTA,
        n_classes=4, ledger=ledger, seed=seed, true_labels=ypool,
    )  # fmt: skip


def test_privacy_composition_counts_queries_not_budget() -> None:
    out = {}
    for budget, queries in ((300, 100), (2000, 100), (2000, 400)):
        with Ledger(":memory:", delta=DELTA) as ledger:
            got = _label(budget, queries, ledger)
            (row,) = ledger.releases("cloud")
            out[budget, queries] = (row.count, row.sigma, ledger.total_epsilon(cloud="cloud"))
            assert got.n_queries == queries == row.count
            assert len(got.unlabeled) == budget - queries
            assert got.knn.epsilon == pytest.approx(cl.knn_epsilon(queries, row.sigma, DELTA))
    # Six times the selection at the same query count: the same release, the same epsilon.
    assert out[300, 100] == out[2000, 100]
    assert out[300, 100][2] == pytest.approx(2.0, rel=0.02)  # calibrated for 100 queries
    # Four times the queries at the same budget: more noise to keep the same total epsilon.
    assert out[2000, 400][0] == 400 and out[2000, 400][1] == pytest.approx(2 * out[2000, 100][1])


def test_more_budget_at_fixed_queries_keeps_the_labelling_noise() -> None:
    sigmas, accuracies = [], []
    for budget in (200, 1000, 3000):
        with Ledger(":memory:", delta=DELTA) as ledger:
            got = _label(budget, 150, ledger)
        sigmas.append(got.knn.sigma)
        accuracies.append(got.knn.label_accuracy)
    assert sigmas == [cl.calibrate_knn_sigma(150, 2.0, DELTA)] * 3
    # Whereas one query per selected sample (the old coupling) gets noisier with budget.
    with Ledger(":memory:", delta=DELTA) as ledger:
        coupled = _label(3000, 3000, ledger)
    assert coupled.knn.sigma == pytest.approx(sigmas[0] * math.sqrt(3000 / 150))
    assert coupled.knn.label_accuracy is not None
    assert min(a for a in accuracies if a is not None) > coupled.knn.label_accuracy


def test_default_queries_and_the_split_of_the_selection() -> None:
    assert (cl.default_queries(250), cl.default_queries(5000)) == (250, cl.DEFAULT_QUERIES)
    for budget, want in ((300, 300), (1500, cl.DEFAULT_QUERIES)):
        with Ledger(":memory:", delta=DELTA) as ledger:
            got = _label(budget, None, ledger)
            assert got.n_queries == want == ledger.releases()[0].count
    with Ledger(":memory:", delta=DELTA) as ledger:
        a = _label(500, 120, ledger, seed=3)
        b = _label(500, 120, ledger, seed=3)
    selected = np.random.default_rng(500).permutation(3000)[:500]
    # Queried and unlabeled partition the selection, each in selection order.
    assert sorted([*a.queried, *a.unlabeled]) == sorted(selected)
    pos = {int(v): i for i, v in enumerate(selected)}
    for part in (a.queried, a.unlabeled):
        assert all(np.diff([pos[int(v)] for v in part]) > 0)
    np.testing.assert_array_equal(a.queried, b.queried)  # seeded
    np.testing.assert_array_equal(a.labels, b.labels)
    with Ledger(":memory:", delta=DELTA) as ledger:
        whole = _label(80, 500, ledger)  # a shortfall: the whole selection is queried
        assert whole.n_queries == 80 and whole.unlabeled.size == 0
        assert ledger.releases()[0].count == 80


def test_accounting_composes_the_coverage_release_with_the_queries_made() -> None:
    with Ledger(":memory:", delta=DELTA) as ledger:
        cover = Release("cloud", "gaussian", sigma=6.137, sensitivity=1.0, purpose="coverage")
        ledger.spend(cover)
        got = _label(2000, 200, ledger)
        knn = Release("cloud", "gaussian", sigma=got.knn.sigma, sensitivity=cl.KNN_SENSITIVITY,
                      count=200)  # fmt: skip
        assert got.knn.epsilon == pytest.approx(compose_epsilon([cover, knn], DELTA), rel=1e-9)
    with Ledger(":memory:", delta=DELTA, budget_epsilon=1.0) as ledger:
        with pytest.raises(PrivacyBudgetExceededError):
            _label(2000, 200, ledger)  # epsilon=2 > budget 1: refused, nothing recorded
        assert ledger.releases() == []


@pytest.mark.parametrize(
    ("selected", "queries", "match"),
    [
        (np.arange(10), 0, "queries=0 must be >= 1"),
        (np.array([], dtype=np.int64), None, "non-empty 1-D"),
        (np.arange(10.0), None, "dtype=float64"),
        (np.array([0, 5, 5]), None, "repeats 1 indices"),
        (np.array([0, 3000]), None, r"outside \[0, n_pool=3000\)"),
    ],
)
def test_bad_arguments(selected: np.ndarray, queries: int | None, match: str) -> None:
    private, yp, pool, _ = _data()
    with pytest.raises(InvalidInputError, match=match):
        cl.label_selection(private, yp, pool, selected, queries=queries, n_classes=4, seed=0)


def test_knn_errors_are_specific() -> None:
    private, yp, pool, _ = _data()
    with pytest.raises(InvalidInputError, match=r"same n_features"):
        cl.knn_votes(private, yp, pool[:, :5], k=3, n_classes=4)
    with pytest.raises(InvalidInputError, match=r"private_labels has shape \(199,\)"):
        cl.knn_votes(private, yp[:-1], pool, k=3, n_classes=4)
    with pytest.raises(InvalidInputError, match=r"k=201 must lie in \[1, n_private=200\]"):
        cl.knn_votes(private, yp, pool, k=201, n_classes=4)
    with pytest.raises(InvalidInputError, match=r"n_classes=3\); got \[0, 3\]"):
        cl.knn_votes(private, yp, pool, k=3, n_classes=3)
    with pytest.raises(InvalidInputError, match="n_queries=0"):
        cl.calibrate_knn_sigma(0, 5.0, DELTA)


def test_noiseless_label_queries_are_refused_by_a_callers_ledger(tmp_path) -> None:
    # Before: sigma=0 with the caller's ledger skipped the ledger and released the
    # exact votes' argmax, recording nothing (issue 13, finding 4, for the kNN queries).
    private, yp, pool, _ = _data()
    led = Ledger(tmp_path / "l.sqlite", delta=DELTA)
    with pytest.raises(NoNoiseReleaseError, match="infinite"):
        cl.private_knn_label(
            private, yp, pool[:20], n_classes=4, epsilon=math.inf, delta=DELTA, ledger=led
        )
    assert led.total_epsilon() == 0.0
    led.close()
    # Without a ledger the noiseless upper bound still runs.
    out = cl.private_knn_label(private, yp, pool[:20], n_classes=4, epsilon=math.inf, delta=DELTA)
    assert out.sigma == 0.0 and math.isinf(out.epsilon)


def test_label_queries_on_a_ledger_that_mixes_relations(tmp_path) -> None:
    # Before: the queries were recorded, then the total raised LedgerRelationError on a
    # ledger holding a replace-one release (the default total needs one relation).
    private, yp, pool, _ = _data()
    led = Ledger(tmp_path / "l.sqlite", delta=DELTA)
    led.spend(
        Release(
            "cloud", "gaussian", sigma=5.0, sensitivity=2**0.5, relation="replace_one",
            other_sensitivity=1.0,
        )
    )  # fmt: skip
    out = cl.private_knn_label(
        private, yp, pool[:20], n_classes=4, epsilon=5.0, delta=DELTA, ledger=led, cloud="cloud"
    )
    assert out.epsilon == pytest.approx(led.total_epsilon(cloud="cloud", relation="add_remove"))
    assert out.epsilon > 5.0
    # A replace-one release whose add/remove sensitivity is unknown: refused before any
    # query is answered or recorded.
    led.spend(Release("cloud", "gaussian", sigma=5.0, sensitivity=2**0.5, relation="replace_one"))
    rows = len(led.releases())
    with pytest.raises(LedgerRelationError):
        cl.private_knn_label(
            private, yp, pool[:20], n_classes=4, epsilon=5.0, delta=DELTA, ledger=led, cloud="cloud"
        )
    assert len(led.releases()) == rows
    led.close()


# ------------------------------------------------ the tie rule (issue 13, finding 10)


def _tied_rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three copies of the query, then 100 copies of one other row (50 of each label)."""
    query = np.random.default_rng(1).normal(size=(1, 6)).astype(np.float32)
    other = query + np.float32(0.5) * np.eye(6, dtype=np.float32)[:1]
    x = np.concatenate([np.tile(query, (3, 1)), np.tile(other, (100, 1))])
    y = np.array([1, 1, 1] + [0] * 50 + [1] * 50)
    return x, y, query


def test_tied_similarities_give_one_histogram_in_every_row_order() -> None:
    x, y, q = _tied_rows()
    orders = [
        np.arange(len(y)),
        np.arange(len(y))[::-1],
        np.random.default_rng(7).permutation(len(y)),
    ]
    got = [cl.knn_votes(x[o], y[o], q, k=50, n_classes=2) for o in orders]
    # The 3 copies of the query, then 47 of the 100 tied rows, label 0 first. Before the
    # tie rule the 47 depended on the row order ([47, 3], [0, 50], [24, 26]).
    for g in got:
        np.testing.assert_array_equal(g, [[47, 3]])


def _exact_reference(
    p: np.ndarray, yp: np.ndarray, q: np.ndarray, k: int, n_classes: int
) -> np.ndarray:
    """Stable sort on (-similarity, label) with exact int64 dot products."""

    def fixed(a: np.ndarray) -> np.ndarray:
        u = a.astype(np.float32) / np.maximum(
            np.linalg.norm(a.astype(np.float32), axis=1, keepdims=True), 1e-12
        )
        return np.rint(u.astype(np.float64) * 2.0**24).astype(np.int64)

    sim = fixed(q) @ fixed(p).T  # integer matmul: exact, no BLAS
    out = np.zeros((len(q), n_classes), dtype=np.int64)
    for i, row in enumerate(sim):
        top = np.lexsort((np.arange(len(yp)), yp, -row))[:k]
        out[i] = np.bincount(yp[top], minlength=n_classes)
    return out


@settings(max_examples=60, deadline=None)
@given(
    n_distinct=st.integers(1, 6),
    copies=st.integers(1, 8),
    k_frac=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**16),
)
def test_votes_follow_the_tie_rule_and_one_sample_moves_at_most_one_vote(
    n_distinct: int, copies: int, k_frac: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(-2, 3, size=(n_distinct, 3)).astype(np.float32)  # small grid: many ties
    p = np.repeat(base, copies, axis=0)
    yp = rng.integers(0, 3, size=len(p))
    q = rng.integers(-2, 3, size=(4, 3)).astype(np.float32)
    k = max(1, round(k_frac * len(p)))
    votes = cl.knn_votes(p, yp, q, k=k, n_classes=3)
    np.testing.assert_array_equal(votes, _exact_reference(p, yp, q, k, 3))
    perm = rng.permutation(len(p))
    np.testing.assert_array_equal(cl.knn_votes(p[perm], yp[perm], q, k=k, n_classes=3), votes)
    # Add one sample anywhere (a copy of an existing one: a tie): one vote moves at most,
    # so the histogram's L2 change is at most sqrt(2) (KNN_SENSITIVITY).
    pos = int(rng.integers(0, len(p) + 1))
    new = p[int(rng.integers(len(p)))]
    p1 = np.insert(p, pos, new, axis=0)
    y1 = np.insert(yp, pos, int(rng.integers(0, 3)))
    diff = cl.knn_votes(p1, y1, q, k=k, n_classes=3) - votes
    assert (np.abs(diff).sum(axis=1) <= 2).all()
    assert (np.linalg.norm(diff, axis=1) <= cl.KNN_SENSITIVITY + 1e-12).all()
