"""allocate_quotas: budget split in proportion to weights, capped at cluster size."""

from __future__ import annotations

import numpy as np
import pytest
from ecos_fast import allocate_quotas
from ecos_fast.errors import InvalidInputError, InvalidTypeError
from hypothesis import given, settings
from hypothesis import strategies as st


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    r = draw(st.integers(1, 12))
    w = draw(
        st.lists(
            st.one_of(
                st.just(0.0),
                st.sampled_from([1.0, 2.0, 3.0]),  # ties
                st.floats(1e-6, 1e6, allow_nan=False, allow_infinity=False),
            ),
            min_size=r,
            max_size=r,
        )
    )
    cap = draw(st.lists(st.integers(0, 40), min_size=r, max_size=r))
    budget = draw(st.integers(0, 300))
    return np.array(w), np.array(cap, dtype=np.int64), budget


@settings(max_examples=300, deadline=None)
@given(problems())
def test_invariants(p: tuple[np.ndarray, np.ndarray, int]) -> None:
    w, cap, budget = p
    q = allocate_quotas(w, cap, budget)
    assert q.dtype == np.int64 and q.shape == w.shape
    weighted = w > 0
    assert int(q.sum()) == min(budget, int(cap[weighted].sum()))
    assert (q >= 0).all() and (q <= cap).all()
    assert (q[~weighted] == 0).all()
    np.testing.assert_array_equal(q, allocate_quotas(w, cap, budget))  # deterministic
    # Water-filling proportionality: an unsaturated cluster i holds at least its
    # share, so no cluster j exceeds it by more than rounding:
    # (q_j - 1) / w_j < (q_i + 1) / w_i.
    unsat = np.flatnonzero(weighted & (q < cap))
    for i in unsat:
        for j in np.flatnonzero(weighted):
            assert (q[j] - 1) * w[i] < (q[i] + 1) * w[j] * (1 + 1e-12)
    # Monotone: a strictly larger weight never gets less, unless capped.
    for i in np.flatnonzero(weighted):
        for j in np.flatnonzero(weighted):
            if w[i] > w[j]:
                assert q[i] >= min(q[j], cap[i])


@settings(max_examples=100, deadline=None)
@given(problems(), st.sampled_from([0.25, 2.0, 1024.0]))
def test_scale_invariant(p: tuple[np.ndarray, np.ndarray, int], scale: float) -> None:
    w, cap, budget = p
    np.testing.assert_array_equal(
        allocate_quotas(w, cap, budget), allocate_quotas(w * scale, cap, budget)
    )


def test_examples() -> None:
    assert allocate_quotas([1.0, 1.0, 2.0], [10, 10, 10], 8).tolist() == [2, 2, 4]
    assert allocate_quotas([1.0, 1.0, 1.0], [10, 10, 10], 4).tolist() == [2, 1, 1]
    assert allocate_quotas([1.0, 0.0, 8.0], [10, 10, 2], 8).tolist() == [6, 0, 2]
    # Largest remainder: shares 3.6 / 1.2 / 1.2 -> 4, 1, 1.
    assert allocate_quotas([3.0, 1.0, 1.0], [9, 9, 9], 6).tolist() == [4, 1, 1]
    # Capacity runs out: every weighted cluster is emptied, zero-weight ones untouched.
    assert allocate_quotas([1.0, 0.0, 1.0], [2, 50, 3], 100).tolist() == [2, 0, 3]
    # Two rounds of overflow: 10 over weights 1,1,1 with caps 1, 2, 100.
    assert allocate_quotas([1.0, 1.0, 1.0], [1, 2, 100], 10).tolist() == [1, 2, 7]
    assert allocate_quotas([0.0, 0.0], [5, 5], 3).tolist() == [0, 0]
    assert allocate_quotas([1.0, 2.0], [5, 5], 0).tolist() == [0, 0]


def test_large_r_is_fast_and_exact() -> None:
    rng = np.random.default_rng(0)
    w = np.maximum(rng.normal(50, 40, 5000), 0)
    cap = rng.integers(0, 300, 5000)
    q = allocate_quotas(w, cap, 100_000)
    assert q.sum() == min(100_000, cap[w > 0].sum())


@pytest.mark.parametrize(
    ("w", "cap", "budget", "exc", "match"),
    [
        ([1.0, -1.0], [1, 1], 1, InvalidInputError, "weights must be >= 0; found -1.0"),
        ([1.0, np.nan], [1, 1], 1, InvalidInputError, "non-finite"),
        ([1.0, 1.0], [1, 1, 1], 1, InvalidInputError, "shape"),
        ([1.0, 1.0], [1, -2], 1, InvalidInputError, "capacity must be >= 0; found -2"),
        ([1.0, 1.0], [1.5, 2.0], 1, InvalidTypeError, "capacity has dtype float64"),
        ([1.0, 1.0], [1, 1], -1, InvalidInputError, "budget=-1"),
        ([[1.0]], [[1]], 1, InvalidInputError, "1-D"),
    ],
)
def test_errors(w: object, cap: object, budget: int, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        allocate_quotas(w, cap, budget)
