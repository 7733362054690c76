"""``_core.nearest_in_clusters`` (the neighbourhood rule's candidate sets) against
the NumPy oracle ``reference.nearest_in_clusters``."""

from __future__ import annotations

import numpy as np
import pytest
from ecos_fast import _core, reference
from ecos_fast.errors import InvalidInputError
from hypothesis import given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=100, deadline=None)


@st.composite
def clustered(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A pool of rows with few distinct distances (ties), split into clusters (some
    empty), and counts that are 0, below, at or above each cluster's size."""
    n = draw(st.integers(0, 80))
    r = draw(st.integers(1, 8))
    levels = draw(st.sampled_from([1, 3, 1000]))  # 1 or 3 values: many ties
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    d2 = rng.integers(0, levels, size=n).astype(np.float32) * np.float32(0.25)
    labels = rng.integers(0, r, size=n)
    order = np.argsort(labels, kind="stable")  # members ascending inside each cluster
    members = np.arange(n, dtype=np.int64)[order]
    indptr = np.zeros(r + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(np.bincount(labels, minlength=r))
    counts = np.asarray(draw(st.lists(st.integers(0, 30), min_size=r, max_size=r)), np.int64)
    return d2, indptr, members, counts


@SETTINGS
@given(case=clustered())
def test_matches_the_numpy_oracle_for_any_thread_count(
    case: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    d2, indptr, members, counts = case
    ref_ptr, ref_rows = reference.nearest_in_clusters(d2, indptr, members, counts)
    for t in (1, 2, 3):
        ptr, rows = _core.nearest_in_clusters(d2, indptr, members, counts, t)
        assert ptr.dtype == np.int64 and rows.dtype == np.int64
        np.testing.assert_array_equal(ptr, ref_ptr)
        np.testing.assert_array_equal(rows, ref_rows)
    sizes = np.diff(indptr)
    np.testing.assert_array_equal(np.diff(ref_ptr), np.minimum(counts, sizes))


def test_ties_go_to_the_lowest_row_and_the_nearest_comes_first() -> None:
    d2 = np.array([2.0, 0.5, 0.5, 0.5, 0.0, 7.0], np.float32)
    indptr = np.array([0, 4, 4, 6], np.int64)  # cluster 1 is empty
    members = np.array([0, 1, 2, 3, 4, 5], np.int64)
    counts = np.array([2, 5, 10], np.int64)  # 10 > size: the whole cluster
    ptr, rows = _core.nearest_in_clusters(d2, indptr, members, counts, 2)
    assert ptr.tolist() == [0, 2, 2, 4]
    assert rows.tolist() == [1, 2, 4, 5]
    ptr, rows = _core.nearest_in_clusters(d2, indptr, members, np.zeros(3, np.int64), 2)
    assert ptr.tolist() == [0, 0, 0, 0] and rows.tolist() == []


def test_large_clusters_run_on_the_pool_and_agree() -> None:
    rng = np.random.default_rng(3)
    n, r = 200_000, 7
    d2 = rng.integers(0, 50, size=n).astype(np.float32)
    labels = rng.integers(0, r, size=n)
    members = np.argsort(labels, kind="stable").astype(np.int64)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=r))]).astype(np.int64)
    counts = np.array([0, 1, 100, 5000, 40_000, 10**9, 3], np.int64)
    ref = reference.nearest_in_clusters(d2, indptr, members, counts)
    for t in (1, 2, 3):
        out = _core.nearest_in_clusters(d2, indptr, members, counts, t)
        np.testing.assert_array_equal(out[0], ref[0])
        np.testing.assert_array_equal(out[1], ref[1])


@pytest.mark.parametrize(
    ("indptr", "members", "counts", "match"),
    [
        ([0, 2], [0, 1], [1, 1], "indptr has 2 entries; 2 clusters"),
        ([1, 2], [0, 1], [1], "must start at 0 and end at len"),
        ([0, 1], [0, 1], [1], "must start at 0 and end at len"),
        ([0, 2, 1, 2], [0, 1], [1, 1, 1], "indptr decreases at cluster 1"),
        ([0, 2], [0, 1], [-1], r"counts\[0\]=-1 is negative"),
        ([0, 2], [0, 7], [1], r"holds row 7 outside \[0, n_samples=4\)"),
        ([0, 2], [1, 0], [1], "not strictly increasing"),
        ([0, 2], [1, 1], [1], "not strictly increasing"),
    ],
)
def test_invalid_layouts_are_input_errors_that_state_the_values(
    indptr: list[int], members: list[int], counts: list[int], match: str
) -> None:
    d2 = np.zeros(4, np.float32)
    with pytest.raises(InvalidInputError, match=match):
        _core.nearest_in_clusters(
            d2,
            np.asarray(indptr, np.int64),
            np.asarray(members, np.int64),
            np.asarray(counts, np.int64),
            1,
        )


def test_nan_distances_are_rejected() -> None:
    d2 = np.array([0.0, np.nan], np.float32)
    with pytest.raises(InvalidInputError, match=r"sq_dist\[1\] is NaN"):
        _core.nearest_in_clusters(
            d2, np.array([0, 2], np.int64), np.array([0, 1], np.int64), np.ones(1, np.int64), 1
        )
