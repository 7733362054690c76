"""Nearest-centroid assignment against the float64 NumPy oracle (``reference.assign``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ecos_fast
import numpy as np
import pytest
from ecos_fast import _core, reference
from ecos_fast.errors import InvalidInputError, InvalidTypeError
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

SETTINGS = settings(max_examples=50, deadline=None)


def assert_labels_match_where_clear(
    x: np.ndarray, c: np.ndarray, labels: np.ndarray, rtol: float = 1e-5
) -> None:
    """Labels equal the oracle's wherever its best and second-best distances
    differ by more than the float32 expansion's rounding error (scaled by the
    norms around the centroids' mean); elsewhere the chosen centroid is within
    that margin of the best."""
    d2 = reference.sq_distances(x, c)
    best = d2.min(axis=1)
    chosen = d2[np.arange(len(x)), labels]
    mu = c.astype(np.float64).mean(axis=0)
    scale = ((x - mu) ** 2).sum(axis=1) + ((c - mu) ** 2).sum(axis=1).max()
    margin = rtol * scale + 1e-30
    assert np.all(chosen - best <= margin), np.max(chosen - best - margin)
    if c.shape[0] > 1:
        second = np.partition(d2, 1, axis=1)[:, 1]
        clear = second - best > margin
        ref_labels = np.argmin(d2, axis=1)
        np.testing.assert_array_equal(labels[clear], ref_labels[clear])


small_ints = st.integers(min_value=-4, max_value=4)


@st.composite
def int_problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 60))
    d = draw(st.integers(1, 9))
    k = draw(st.integers(1, 40))
    x = draw(hnp.arrays(np.float32, (n, d), elements=small_ints.map(float)))
    c = draw(hnp.arrays(np.float32, (k, d), elements=small_ints.map(float)))
    return x, c


@SETTINGS
@given(int_problems())
def test_small_integer_data_matches_exactly(problem: tuple[np.ndarray, np.ndarray]) -> None:
    # Integer-valued data: every f32 operation is exact, so ties are exact ties
    # and must go to the lowest centroid index, and distances are exact.
    x, c = problem
    labels, d2 = ecos_fast.assign(x, c)
    ref_labels, ref_d2 = reference.assign(x, c)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_array_equal(d2, ref_d2.astype(np.float32))
    assert labels.dtype == np.int64 and d2.dtype == np.float32


@st.composite
def float_problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 400))
    d = draw(st.integers(1, 70))
    k = draw(st.integers(1, 80))
    seed = draw(st.integers(0, 2**32 - 1))
    offset = draw(st.sampled_from([0.0, 3.0, 1000.0]))
    scale = draw(st.sampled_from([1e-3, 1.0, 50.0]))
    rng = np.random.default_rng(seed)
    x = (offset + scale * rng.normal(size=(n, d))).astype(np.float32)
    if draw(st.booleans()):  # centroids drawn from the rows: duplicates and zero distances
        c = x[rng.integers(0, n, size=k)].copy()
    else:
        c = (offset + scale * rng.normal(size=(k, d))).astype(np.float32)
    return x, c


@SETTINGS
@given(float_problems())
def test_random_float_data(problem: tuple[np.ndarray, np.ndarray]) -> None:
    x, c = problem
    labels, d2 = ecos_fast.assign(x, c)
    assert_labels_match_where_clear(x, c, labels)
    # The returned distance is recomputed directly for the chosen centroid.
    exact = ((x.astype(np.float64) - c[labels].astype(np.float64)) ** 2).sum(axis=1)
    np.testing.assert_allclose(d2, exact, rtol=1e-5, atol=1e-30)
    assert np.all(d2 >= 0)


def test_ties_go_to_lowest_index() -> None:
    x = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]], dtype=np.float32)
    c = np.array([[2.0, 0.0], [0.0, 0.0], [0.0, 0.0], [-2.0, 0.0], [5.0, 5.0]], np.float32)
    labels, d2 = ecos_fast.assign(x, c)
    # Row 0 ties centroids 1 and 2 (duplicates); row 1 ties 0, 1 and 2 at distance 1.
    assert labels.tolist() == [1, 0, 4]
    assert d2.tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize(("n", "d", "k"), [(1, 1, 1), (5, 1, 5), (7, 3, 1), (50, 4, 50)])
def test_edge_shapes(n: int, d: int, k: int) -> None:
    rng = np.random.default_rng(n * 100 + d * 10 + k)
    x = rng.integers(-3, 4, size=(n, d)).astype(np.float32)
    c = x[:k].copy() if k <= n else rng.integers(-3, 4, size=(k, d)).astype(np.float32)
    labels, d2 = ecos_fast.assign(x, c)
    ref_labels, ref_d2 = reference.assign(x, c)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_array_equal(d2, ref_d2.astype(np.float32))


def test_k_equals_n_assigns_each_row_to_itself() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    labels, d2 = ecos_fast.assign(x, x)
    np.testing.assert_array_equal(labels, np.arange(300))
    np.testing.assert_array_equal(d2, np.zeros(300, np.float32))


def test_identical_for_any_thread_count() -> None:
    rng = np.random.default_rng(7)
    # Several row blocks, a partial last block, several centroid panels plus padding.
    x = (rng.normal(size=(2011, 37)) + 2.5).astype(np.float32)
    c = rng.normal(size=(75, 37)).astype(np.float32)
    runs = [ecos_fast.assign(x, c, n_threads=t) for t in (1, 2, 3)]
    for labels, d2 in runs[1:]:
        np.testing.assert_array_equal(labels, runs[0][0])
        assert d2.tobytes() == runs[0][1].tobytes()


def test_memmap_input_is_read_in_place(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(1000, 24)).astype(np.float32)
    c = rng.normal(size=(13, 24)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    got = ecos_fast.assign(xm, c, n_threads=2)
    want = ecos_fast.assign(x, c, n_threads=2)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_float64_and_fortran_input_are_converted() -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(-5, 6, size=(100, 6)).astype(np.float64)
    c = rng.integers(-5, 6, size=(9, 6)).astype(np.float64)
    labels, d2 = ecos_fast.assign(np.asfortranarray(x), c)
    ref_labels, ref_d2 = reference.assign(x, c)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_array_equal(d2, ref_d2.astype(np.float32))


def test_simd_path_is_reported() -> None:
    assert _core.build_info()["simd"] in {"avx512f", "avx2+fma", "portable"}


_SUBPROCESS = """
import json, numpy as np, ecos_fast
from ecos_fast import _core, reference
rng = np.random.default_rng(0)
x = rng.integers(-4, 5, size=(500, 19)).astype(np.float32)
c = rng.integers(-4, 5, size=(41, 19)).astype(np.float32)
labels, d2 = ecos_fast.assign(x, c)
rl, rd = reference.assign(x, c)
print(json.dumps({"simd": _core.build_info()["simd"],
                  "labels_ok": bool((labels == rl).all()),
                  "dists_ok": bool((d2 == rd.astype(np.float32)).all())}))
"""


@pytest.mark.parametrize("cap", ["avx2", "portable"])
def test_every_simd_path_is_exact_on_integer_data(cap: str) -> None:
    # The path is chosen once per process, so each capped path runs in a child.
    env = {**os.environ, "ECOS_FAST_SIMD": cap}
    out = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS], env=env, capture_output=True, text=True, check=True
    )
    res = json.loads(out.stdout)
    if cap == "avx2" and res["simd"] == "portable":
        pytest.skip("CPU lacks AVX2+FMA")
    assert res["simd"] == ("avx2+fma" if cap == "avx2" else "portable")
    assert res["labels_ok"] and res["dists_ok"]


def _dist_bins_numpy(d2: np.ndarray) -> np.ndarray:
    """The NumPy bins ``scaleout._dist_bins`` used before the kernel returned them."""
    bits = np.abs(d2).view(np.uint32)
    e = (bits >> 23).astype(np.int64)
    m = (bits & 0x7FFFFF).astype(np.int64)
    m = np.where(e > 0, m | (1 << 23), m)
    out = np.zeros(256, np.int64)
    np.add.at(out, np.maximum(e, 1), m)
    return out


_WIDE = st.floats(-(2.0**50), 2.0**50, width=32, allow_subnormal=True)


@SETTINGS
@given(
    n=st.integers(1, 300),
    k=st.integers(1, 9),
    d=st.integers(1, 20),
    scale=st.sampled_from([1e-22, 1e-3, 1.0, 1e6, 1e12]),
    seed=st.integers(0, 2**32 - 1),
    special=hnp.arrays(np.float32, (4, 3), elements=_WIDE),
    n_threads=st.sampled_from([1, 2, 3]),
)
def test_assign_bins_match_the_numpy_bins(
    n: int, k: int, d: int, scale: float, seed: int, special: np.ndarray, n_threads: int
) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, d)) * scale).astype(np.float32)
    x[: min(n, 4), : min(d, 3)] = special[: min(n, 4), : min(d, 3)]
    c = x[rng.integers(0, n, size=k)].copy()
    labels, d2, bins = _core.assign(x, c, n_threads, bins=True)
    assert bins.dtype == np.int64 and bins.shape == (256,)
    np.testing.assert_array_equal(bins, _dist_bins_numpy(d2))
    plain_labels, plain_d2 = _core.assign(x, c, n_threads)
    np.testing.assert_array_equal(labels, plain_labels)
    assert d2.tobytes() == plain_d2.tobytes()


def test_assign_bins_hold_subnormal_and_zero_distances() -> None:
    # 1e-20² and 3e-20² are subnormal float32 (bin 1, with the significand as is).
    x = np.array([[0.0], [1e-20], [3e-20], [2.0]], np.float32)
    c = np.zeros((1, 1), np.float32)
    _, d2, bins = _core.assign(x, c, 1, bins=True)
    assert 0 < d2[1] < np.finfo(np.float32).tiny
    np.testing.assert_array_equal(bins, _dist_bins_numpy(d2))
    assert bins[1] == int(d2[1:3].view(np.uint32).astype(np.int64).sum())
    assert bins[(np.float32(4.0).view(np.uint32) >> 23)] == 1 << 23


_BAD_CAP = """
import json, numpy as np, ecos_fast
from ecos_fast import _core
from ecos_fast.errors import InvalidInputError
x = np.zeros((10, 3), np.float32)
calls = {
    "assign": lambda: ecos_fast.assign(x, x[:2]),
    "kmeans": lambda: ecos_fast.kmeans(x, 2, seed=0),
    "kcenter": lambda: ecos_fast.kcenter_greedy(x, 2),
    "build_info": _core.build_info,
}
out = {}
for name, call in calls.items():
    try:
        call()
        out[name] = None
    except InvalidInputError as exc:
        out[name] = str(exc)
print(json.dumps(out))
"""


@pytest.mark.parametrize("cap", ["avx3", "AVX2", "sse"])
def test_an_unknown_simd_cap_is_an_error_naming_the_allowed_values(cap: str) -> None:
    # Before simd.rs, an unknown ECOS_FAST_SIMD was silently ignored (the widest path ran).
    env = {**os.environ, "ECOS_FAST_SIMD": cap}
    out = subprocess.run(
        [sys.executable, "-c", _BAD_CAP], env=env, capture_output=True, text=True, check=True
    )
    res = json.loads(out.stdout)
    for name, msg in res.items():
        assert msg is not None, f"{name} ran with ECOS_FAST_SIMD={cap!r}"
        assert f"ECOS_FAST_SIMD={cap!r}".replace("'", '"') in msg, msg
        for allowed in ("avx512f", "avx2", "portable"):
            assert f'"{allowed}"' in msg, msg


@pytest.mark.parametrize(
    ("features", "centroids", "error"),
    [
        (np.array([[np.nan, 0.0]], np.float32), np.zeros((1, 2), np.float32), InvalidInputError),
        (np.zeros((3, 2), np.float32), np.array([[np.inf, 0.0]], np.float32), InvalidInputError),
        (np.zeros(3, np.float32), np.zeros((1, 1), np.float32), InvalidInputError),
        (np.zeros((2, 2, 2), np.float32), np.zeros((1, 2), np.float32), InvalidInputError),
        (np.zeros((3, 2), np.complex64), np.zeros((1, 2), np.float32), InvalidTypeError),
        (np.zeros((3, 2), object), np.zeros((1, 2), np.float32), InvalidTypeError),
        (np.zeros((3, 2), np.float32), np.zeros((1, 3), np.float32), InvalidInputError),
        (np.zeros((0, 2), np.float32), np.zeros((1, 2), np.float32), InvalidInputError),
        (np.zeros((3, 0), np.float32), np.zeros((1, 0), np.float32), InvalidInputError),
        (np.zeros((3, 2), np.float32), np.zeros((0, 2), np.float32), InvalidInputError),
    ],
)
def test_invalid_inputs_are_refused(
    features: np.ndarray, centroids: np.ndarray, error: type[Exception]
) -> None:
    with pytest.raises(error):
        ecos_fast.assign(features, centroids)


def test_core_rechecks_shapes() -> None:
    # Bypassing the wrapper must still give an error, never a crash.
    with pytest.raises(ValueError, match="n_features"):
        _core.assign(np.zeros((3, 2), np.float32), np.zeros((1, 3), np.float32), 1)
    with pytest.raises(ValueError, match="n_threads"):
        _core.assign(np.zeros((3, 2), np.float32), np.zeros((1, 2), np.float32), 0)
