"""Random and global K-Center baselines."""

from __future__ import annotations

import ecos_fast
import numpy as np
import pytest
from ecos_fast import reference
from ecos_fast.errors import BudgetError, InvalidInputError
from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 500), st.data())
def test_random_invariants(n: int, data: st.DataObject) -> None:
    budget = data.draw(st.integers(1, n))
    seed = data.draw(st.integers(0, 2**32))
    sel = ecos_fast.select_random(n, budget, seed=seed)
    idx = np.asarray(sel)
    assert idx.dtype == np.int64 and len(sel) == budget and sel.shortfall == 0
    assert np.unique(idx).size == budget and (np.diff(idx) > 0).all()
    assert idx.min() >= 0 and idx.max() < n
    assert sel.method == "random" and sel.quotas is None
    np.testing.assert_array_equal(idx, ecos_fast.select_random(n, budget, seed=seed).indices)


def test_random_accepts_features_and_seeds_differ() -> None:
    x = np.zeros((1000, 3), dtype=np.float32)
    a = ecos_fast.select_random(x, 50, seed=1).indices
    np.testing.assert_array_equal(a, ecos_fast.select_random(1000, 50, seed=1).indices)
    assert not np.array_equal(a, ecos_fast.select_random(1000, 50, seed=2).indices)
    assert not np.array_equal(
        ecos_fast.select_random(1000, 50, seed=None).indices,
        ecos_fast.select_random(1000, 50, seed=None).indices,
    )


def test_random_is_uniform() -> None:
    # 4000 draws of 1 row out of 20: every row's count within 5 standard deviations.
    hits = np.bincount(
        [ecos_fast.select_random(20, 1, seed=s).indices[0] for s in range(4000)], minlength=20
    )
    expected, sd = 200, np.sqrt(4000 * 0.05 * 0.95)
    assert (np.abs(hits - expected) < 5 * sd).all()


def test_kcenter_matches_reference() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (400, 6)).astype(np.float32)
    sel = ecos_fast.select_kcenter(x, 40)
    np.testing.assert_array_equal(sel.indices, reference.kcenter_greedy(x, 40)[0])
    assert sel.method == "kcenter" and len(sel) == 40
    s2 = ecos_fast.select_kcenter(x, 10, first=17)
    assert s2.indices[0] == 17
    np.testing.assert_array_equal(s2.indices, reference.kcenter_greedy(x, 10, first=17)[0])


def test_errors() -> None:
    x = np.ones((10, 2), dtype=np.float32)
    with pytest.raises(BudgetError, match="budget=11 exceeds the pool size n_samples=10"):
        ecos_fast.select_random(x, 11, seed=0)
    with pytest.raises(BudgetError, match="budget=0"):
        ecos_fast.select_kcenter(x, 0)
    with pytest.raises(InvalidInputError, match="2-D"):
        ecos_fast.select_random(np.ones(5), 1, seed=0)
    with pytest.raises(InvalidInputError, match="n_samples=0"):
        ecos_fast.select_random(0, 1, seed=0)
    with pytest.raises(InvalidInputError, match="non-finite"):
        ecos_fast.select_kcenter(np.full((3, 2), np.nan), 1)
    with pytest.raises(InvalidInputError, match="seed=-1"):
        ecos_fast.select_random(5, 1, seed=-1)
