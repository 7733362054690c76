"""The finiteness check every input goes through: the compiled parallel scan against
NumPy's ``isfinite``, and the error it raises."""

from __future__ import annotations

from pathlib import Path

import ecos_fast
import numpy as np
import pytest
from ecos_fast import _core
from ecos_fast._validation import check_finite, feature_limit
from ecos_fast.errors import InvalidInputError
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


def _first_bad(a: np.ndarray) -> int | None:
    bad = np.flatnonzero(~np.isfinite(a))
    return int(bad[0]) if bad.size else None


@settings(max_examples=200, deadline=None)
@given(
    a=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=3, max_side=40),
        elements=st.floats(width=32, allow_nan=True, allow_infinity=True),
    ),
    threads=st.integers(1, 3),
)
def test_first_non_finite_matches_numpy(a: np.ndarray, threads: int) -> None:
    assert _core.first_non_finite(a, threads) == _first_bad(a)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_offenders_at_chunk_edges_of_a_large_array(bad: float) -> None:
    # 65,536 values per task: offenders on both sides of the task boundaries, with a
    # later offender that must not hide the first, for every thread count.
    x = np.ones((5_000, 100), np.float32)
    for flat in [0, 65_535, 65_536, 131_071, 499_999]:
        y = x.copy()
        y.flat[flat] = bad
        y.flat[-1] = np.nan
        for threads in (1, 2, 3):
            assert _core.first_non_finite(y, threads) == flat


def test_error_names_the_row_for_memmapped_input(tmp_path: Path) -> None:
    x = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=(3000, 64))
    x[:] = 1.0
    x[2217, 5] = np.nan
    x.flush()
    pool = np.load(tmp_path / "x.npy", mmap_mode="r")
    with pytest.raises(
        InvalidInputError, match=r"non-finite value \((np.float32\()?nan\)?\) at row 2217"
    ):
        ecos_fast.assign(pool, np.zeros((2, 64), np.float32))


def test_non_float32_and_strided_input_still_checked() -> None:
    # Other dtypes and layouts take the chunked NumPy path.
    a = np.ones((10, 4), np.float64)
    a[6, 2] = np.inf
    with pytest.raises(InvalidInputError, match="at row 6"):
        check_finite(a, "x")
    b = np.ones((10, 8), np.float32)[:, ::2].copy(order="F")
    b[4, 1] = np.nan
    with pytest.raises(InvalidInputError, match="at row 4"):
        check_finite(b, "x")
    check_finite(np.ones((10, 8), np.float32)[:, ::2], "x")


def test_each_public_call_scans_its_input_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # fit_centroids, respond and select_kcenter check their input and then call the
    # kernels on it: the finiteness pass (a full read of a pool that may be GBs) must
    # not run a second time inside the kernel wrapper.
    from ecos_fast import _validation

    seen: list[tuple[str, tuple[int, ...]]] = []
    real = _validation.check_finite

    def counting(a: np.ndarray, name: str, **kw: float | None) -> None:
        seen.append((name, a.shape))
        real(a, name, **kw)

    monkeypatch.setattr(_validation, "check_finite", counting)
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(600, 8)).astype(np.float32)
    private = rng.normal(size=(90, 8)).astype(np.float32)

    cents = ecos_fast.fit_centroids(pool, 5, seed=0)
    assert [s for _, s in seen].count(pool.shape) == 1
    seen.clear()
    ecos_fast.respond(private, cents, epsilon=1.0, delta=1e-5, seed=0)
    assert [s for _, s in seen].count(private.shape) == 1
    seen.clear()
    ecos_fast.select_kcenter(pool, 10)
    assert [s for _, s in seen].count(pool.shape) == 1


# -- finite but too large for float32 distances (issue 13, finding 6) ----------------


@settings(max_examples=200, deadline=None)
@given(
    a=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=2, max_side=40),
        elements=st.floats(width=32, allow_nan=True, allow_infinity=True),
    ),
    limit=st.floats(0, 2.0**127, width=32),
    threads=st.integers(1, 3),
)
def test_range_scan_matches_numpy(a: np.ndarray, limit: float, threads: int) -> None:
    bad = np.flatnonzero(~(np.abs(a) <= np.float32(limit)))
    want = int(bad[0]) if bad.size else None
    assert _core.first_non_finite(a, threads, limit) == want


def _huge_pool(scale: float = 1e19) -> np.ndarray:
    # Two groups far apart, at a scale whose squared distances overflow float32.
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-1, 0.1, (40, 4)), rng.normal(1, 0.1, (40, 4))])
    return (x * scale).astype(np.float32)


def test_features_near_1e19_are_refused_everywhere() -> None:
    """Before: 1e19 passed the finiteness check, the squared distances overflowed and
    assign, kmeans, K-Center, respond and select returned inf distances and wrong
    labels, radii and counts without a word."""
    huge = _huge_pool()
    fine = _huge_pool(1.0)
    cents = ecos_fast.fit_centroids(fine, 2, seed=0)
    resp = ecos_fast.respond(fine, cents, epsilon=float("inf"), delta=1e-5)
    match = r"magnitude above .* float32 squared distances finite for n_features=4"
    calls = {
        "assign": lambda: ecos_fast.assign(huge, fine[:2]),
        "assign centroids": lambda: ecos_fast.assign(fine, huge[:2]),
        "kmeans": lambda: ecos_fast.kmeans(huge, 2),
        "kcenter": lambda: ecos_fast.kcenter_greedy(huge, 3),
        "fit_centroids": lambda: ecos_fast.fit_centroids(huge, 2),
        "respond": lambda: ecos_fast.respond(huge, cents, epsilon=1.0, delta=1e-5, seed=0),
        "select": lambda: ecos_fast.select(huge, ecos_fast.Sketch.join(cents, resp), 5),
        "select_kcenter": lambda: ecos_fast.select_kcenter(huge, 5),
    }
    for name, call in calls.items():
        with pytest.raises(InvalidInputError, match=match):
            call()
        assert name  # the loop names the call in a failure's traceback


def test_float64_path_checks_the_range_too() -> None:
    a = np.ones((10, 4), np.float64)
    a[7, 1] = -1e19
    with pytest.raises(InvalidInputError, match="at row 7, of magnitude above"):
        check_finite(a, "x", max_abs=feature_limit(4))
    check_finite(a, "x")  # finite, and no limit asked for


def test_just_below_the_limit_distances_stay_finite_and_right() -> None:
    # The largest accepted magnitude: squared distances finite, labels those of float64.
    d = 8
    m = feature_limit(d) * 0.999
    rng = np.random.default_rng(1)
    x = (rng.uniform(-1, 1, (300, d)) * m).astype(np.float32)
    c = (rng.uniform(-1, 1, (5, d)) * m).astype(np.float32)
    labels, d2 = ecos_fast.assign(x, c)
    assert np.isfinite(d2).all()
    exact = ((x.astype(np.float64)[:, None, :] - c.astype(np.float64)[None]) ** 2).sum(-1)
    best = exact.min(axis=1)
    # Within float32 rounding of the best (ties aside, the same label).
    assert np.all(exact[np.arange(len(x)), labels] <= best * (1 + 1e-5))
    _, radii = ecos_fast.kcenter_greedy(x, 4)
    assert np.isfinite(radii).all()


def test_rust_refuses_overflowed_distances_itself() -> None:
    # Direct core calls (no Python validation) still do not return inf silently.
    huge = _huge_pool()
    with pytest.raises(InvalidInputError, match=r"squared distance .* is inf"):
        _core.assign(huge, huge[:2].copy(), 1)
    with pytest.raises(InvalidInputError, match=r"covering radius .* is inf"):
        _core.kcenter_greedy(huge, 3, 1)
    with pytest.raises(InvalidInputError, match="max_abs=-1"):
        _core.first_non_finite(huge, 1, -1.0)


def test_masked_arrays_with_masked_values_are_refused() -> None:
    """Before, np.asarray dropped the mask: the hidden values were clustered and selected."""
    x = np.ma.masked_array(np.ones((6, 2), np.float32), mask=False)
    assert ecos_fast.kmeans(x, 2, seed=0).centroids.shape == (2, 2)  # nothing masked: fine
    x[2, 1] = np.ma.masked
    for call in (lambda: ecos_fast.kmeans(x, 2), lambda: ecos_fast.kcenter_greedy(x, 2)):
        with pytest.raises(InvalidInputError, match=r"features is a masked array with 1 masked"):
            call()


def test_local_select_checks_kcenter() -> None:
    """Before: kcenter was checked only with backend="ray"; locally "abc" was accepted."""
    x = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
    c = ecos_fast.Centroids(x[:3])
    sk = ecos_fast.Sketch.join(c, ecos_fast.respond(x[:50], c, float("inf"), 1e-5))
    with pytest.raises(InvalidInputError, match="kcenter='abc' must be one of"):
        ecos_fast.select(x, sk, 10, kcenter="abc")  # type: ignore[arg-type]
