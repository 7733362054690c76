"""The finiteness check every input goes through: the compiled parallel scan against
NumPy's ``isfinite``, and the error it raises."""

from __future__ import annotations

from pathlib import Path

import ecos_fast
import numpy as np
import pytest
from ecos_fast import _core
from ecos_fast._validation import check_finite
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
        InvalidInputError, match=r"non-finite value \(np.float32\(nan\)\) at row 2217"
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

    def counting(a: np.ndarray, name: str) -> None:
        seen.append((name, a.shape))
        real(a, name)

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
