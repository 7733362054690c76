"""The bf16 first pass of ``assign`` (``rust/kernels/assign_bf16.rs``) against the float32
kernel and the float64 NumPy oracle (``reference.sq_distances``).

The pass bounds each centroid's bf16 score error from the norms and re-checks in float32
every centroid the bound cannot rule out, recomputing the float32 kernel's own scores; so
its labels and distances must be the float32 kernel's bit for bit (a stronger promise than
"equal outside near-ties", which is checked against float64 as well). Skipped where the CPU
lacks AVX512_BF16. Every check runs on each engine of the first pass that this machine has
(``first_pass``: ``"avx512bf16"``, ``vdpbf16ps``; ``"amx"``, Intel AMX tiles), skipping the
others with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import ecos_fast
import numpy as np
import pytest
from ecos_fast import _core, reference
from ecos_fast._validation import feature_limit
from ecos_fast.errors import InvalidInputError
from hypothesis import given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=40, deadline=None)
# Near-tie tolerance against float64: the float32 expansion's rounding, relative to the
# norms around the kernels' shift (the centroids' mean rounded to integers).
TIE_RTOL = 1e-5


def _has_bf16() -> bool:
    try:
        _core.assign_bf16_stats(np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32), 1)
    except InvalidInputError:
        return False
    return True


needs_bf16 = pytest.mark.skipif(
    not _has_bf16(), reason="the CPU lacks AVX512_BF16 (or ECOS_FAST_SIMD caps the path)"
)


def _has_pass(name: str) -> bool:
    z = np.zeros((1, 1), np.float32)
    try:
        _core.assign_bf16_stats(z, z, 1, first_pass=name)
    except InvalidInputError:
        return False
    return True


_WHY_NOT = {
    "avx512bf16": "the CPU lacks AVX512_BF16 (or ECOS_FAST_SIMD caps the path)",
    "amx": "no usable AMX-BF16 here (cpuid, the OS tile permission, or ECOS_FAST_SIMD)",
}
# Each engine of the bf16 first pass, skipped (with the reason) where it cannot run.
first_passes = pytest.mark.parametrize(
    "first_pass",
    [
        pytest.param(p, marks=pytest.mark.skipif(not _has_pass(p), reason=why))
        for p, why in _WHY_NOT.items()
    ],
)


def both_paths(
    x: np.ndarray, c: np.ndarray, n_threads: int = 1, first_pass: str | None = None
) -> dict[str, int]:
    """Run the float32 kernel and the bf16 pass (with engine ``first_pass``, and with the
    default one through ``assign``); assert identical results; return the bf16 pass's
    re-check counts."""
    l32, d32 = _core.assign(x, c, n_threads, precision="float32")
    lb, db, stats = _core.assign_bf16_stats(x, c, n_threads, first_pass=first_pass)
    np.testing.assert_array_equal(lb, l32)
    assert db.tobytes() == d32.tobytes()
    lp, dp = _core.assign(x, c, n_threads, precision="bf16")
    np.testing.assert_array_equal(lp, l32)
    assert dp.tobytes() == d32.tobytes()
    assert stats["rows"] == x.shape[0]
    assert 0 <= stats["rows_rechecked"] <= x.shape[0]
    assert stats["centroids_rechecked"] >= 2 * stats["rows_rechecked"]
    return stats


def assert_clear_labels_match_float64(x: np.ndarray, c: np.ndarray, labels: np.ndarray) -> None:
    d2 = reference.sq_distances(x, c)
    best = d2.min(axis=1)
    # The kernels shift by the centroids' mean rounded to integers (assign.rs,
    # centroid_shift), so their rounding scales with the norms around that point: with
    # the exact mean, small-scale near-duplicates fail this oracle on the float32 kernel.
    mu = np.round(c.astype(np.float64).mean(axis=0))
    scale = ((x - mu) ** 2).sum(axis=1) + ((c - mu) ** 2).sum(axis=1).max()
    margin = TIE_RTOL * scale + 1e-30
    chosen = d2[np.arange(len(x)), labels]
    assert np.all(chosen - best <= margin)
    if c.shape[0] > 1:
        second = np.partition(d2, 1, axis=1)[:, 1]
        clear = second - best > margin
        np.testing.assert_array_equal(labels[clear], np.argmin(d2, axis=1)[clear])


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    d = draw(st.sampled_from([1, 2, 3, 8, 31, 32, 33, 64, 127, 513]))
    k = draw(st.sampled_from([1, 2, 3, 17, 33, 100, 1000]))
    n = draw(st.integers(1, 250))
    seed = draw(st.integers(0, 2**32 - 1))
    offset = draw(st.sampled_from([0.0, 3.0, 1000.0, 1e6]))
    scale = draw(st.sampled_from([1e-3, 1.0, 50.0, 1e5]))
    rng = np.random.default_rng(seed)
    x = (offset + scale * rng.normal(size=(n, d))).astype(np.float32)
    kind = draw(st.sampled_from(["rows", "fresh", "near-duplicates", "integers"]))
    if kind == "rows":  # centroids drawn from the rows: duplicates and zero distances
        c = x[rng.integers(0, n, size=k)].copy()
    elif kind == "fresh":
        c = (offset + scale * rng.normal(size=(k, d))).astype(np.float32)
    elif kind == "near-duplicates":  # a few centres, each copied with ulp-sized nudges
        base = (offset + scale * rng.normal(size=(max(1, k // 8), d))).astype(np.float32)
        c = base[rng.integers(0, len(base), size=k)]
        c = (c * (1 + rng.integers(-3, 4, size=c.shape) * 2e-7)).astype(np.float32)
    else:  # integer data: exact ties that must go to the lowest index
        x = np.round(x / max(scale, 1.0)).astype(np.float32)
        c = x[rng.integers(0, n, size=k)].copy()
    return x, c


@needs_bf16
@first_passes
@SETTINGS
@given(problem=problems(), n_threads=st.sampled_from([1, 2, 3]))
def test_bf16_pass_equals_the_float32_kernel(
    first_pass: str, problem: tuple[np.ndarray, np.ndarray], n_threads: int
) -> None:
    x, c = problem
    both_paths(x, c, n_threads, first_pass)
    labels, _ = _core.assign(x, c, 1, precision="bf16")
    assert_clear_labels_match_float64(x, c, labels)


@needs_bf16
@first_passes
@pytest.mark.parametrize("d", [1, 3, 31, 33, 127, 513])
@pytest.mark.parametrize("k", [1, 2, 17, 1000])
def test_odd_widths_and_cluster_counts(d: int, k: int, first_pass: str) -> None:
    rng = np.random.default_rng(d * 7919 + k)
    n = 301 if k < 1000 else 61  # not a multiple of 12, 16 or 32 rows
    x = (rng.normal(size=(n, d)) + 2.5).astype(np.float32)
    c = x[rng.integers(0, n, size=k)] + rng.normal(0, 0.3, size=(k, d)).astype(np.float32)
    both_paths(x, c, 1, first_pass)
    assert_clear_labels_match_float64(x, c, _core.assign(x, c, 1, precision="bf16")[0])


@needs_bf16
@first_passes
@pytest.mark.parametrize("d", [3, 33, 127])
def test_huge_norms_within_the_validation_limit(d: int, first_pass: str) -> None:
    # Squared distances near 1e15 and values far from the origin (the shift by the
    # centroids' mean, then the bound, must still hold), up to half of feature_limit.
    rng = np.random.default_rng(d)
    spread = np.sqrt(1e15 / d)
    x = (rng.normal(size=(400, d)) * spread).astype(np.float32)
    c = (rng.normal(size=(50, d)) * spread).astype(np.float32)
    both_paths(x, c, 1, first_pass)
    far = np.float32(feature_limit(d) / 2)
    xf = np.clip(x + far * 0.9, -far, far).astype(np.float32)
    cf = np.clip(c + far * 0.9, -far, far).astype(np.float32)
    both_paths(xf, cf, 1, first_pass)
    labels, d2 = ecos_fast.assign(x, c, precision="bf16")
    assert np.all(np.isfinite(d2))
    assert_clear_labels_match_float64(x, c, labels)


@needs_bf16
@first_passes
def test_near_duplicate_centroids_are_all_rechecked_and_decided_in_float32(
    first_pass: str,
) -> None:
    rng = np.random.default_rng(1)
    d = 64
    base = rng.normal(size=d).astype(np.float32)
    # 20 copies of one centroid, 1-3 ulps apart: bf16 cannot tell them apart.
    c = np.stack([np.nextafter(base, np.float32(np.inf) * (1 if j % 2 else -1)) for j in range(20)])
    for j in range(20):
        for _ in range(j % 3):
            c[j] = np.nextafter(c[j], np.float32(np.inf))
    x = (base + rng.normal(0, 1e-3, size=(150, d))).astype(np.float32)
    stats = both_paths(x, c, 1, first_pass)
    assert stats["rows_rechecked"] == 150
    assert stats["centroids_rechecked"] >= 150 * 2


@needs_bf16
@first_passes
def test_clear_problems_recheck_few_rows(first_pass: str) -> None:
    # Well separated centroids: the bound rules out all but one for most rows.
    rng = np.random.default_rng(2)
    c = (rng.normal(size=(64, 128)) * 3).astype(np.float32)
    x = (c[rng.integers(0, 64, size=3000)] + rng.normal(0, 0.3, size=(3000, 128))).astype(
        np.float32
    )
    stats = both_paths(x, c, 1, first_pass)
    assert stats["rows_rechecked"] < 0.05 * 3000


@needs_bf16
@first_passes
def test_identical_for_any_thread_count(first_pass: str) -> None:
    rng = np.random.default_rng(7)
    x = (rng.normal(size=(2011, 37)) + 2.5).astype(np.float32)
    c = x[rng.integers(0, 2011, size=75)] + rng.normal(0, 0.2, size=(75, 37)).astype(np.float32)
    runs = [_core.assign_bf16_stats(x, c, t, first_pass=first_pass) for t in (1, 2, 3)]
    for labels, d2, stats in runs[1:]:
        np.testing.assert_array_equal(labels, runs[0][0])
        assert d2.tobytes() == runs[0][1].tobytes()
        assert stats == runs[0][2]


def test_unknown_precision_is_an_error_naming_the_values() -> None:
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(InvalidInputError, match=r'precision="fp8".*"auto", "float32", "bf16"'):
        _core.assign(x, x[:1], 1, precision="fp8")


def test_build_info_reports_the_assignment_path() -> None:
    info = _core.build_info()
    assert info["assign_path"] in {"amx", "avx512bf16", "avx512f", "avx2+fma", "portable"}
    if info["assign_path"] in {"amx", "avx512bf16"}:
        assert info["simd"] == "avx512f"
        assert info["assign_path"] == info["bf16_pass"]
    assert info["bf16_pass"] in {"amx", "avx512bf16", "none"}
    # Where AMX is usable, precision="bf16" runs it (unless ECOS_FAST_SIMD says otherwise).
    if _has_pass("amx") and os.environ.get("ECOS_FAST_SIMD", "") in {"", "amx"}:
        assert info["bf16_pass"] == "amx"
        assert info["amx"] == "usable"
        assert "tdpbf16ps (AMX)" in info["bf16_calibration"]
    assert "bf16_calibration" in info


def test_an_unknown_first_pass_is_an_error() -> None:
    z = np.zeros((2, 2), np.float32)
    with pytest.raises(InvalidInputError, match=r'first_pass="fp8".*"amx", "avx512bf16"'):
        _core.assign_bf16_stats(z, z, 1, first_pass="fp8")


_CHILD = """
import json, numpy as np
from ecos_fast import _core
from ecos_fast.errors import InvalidInputError
x = np.random.default_rng(0).normal(size=(300, 70)).astype(np.float32)
c = x[:80].copy()
try:
    _core.assign(x, c, 1, precision="bf16")
    forced = None
except InvalidInputError as exc:
    forced = str(exc)
a = _core.assign(x, c, 1)
f = _core.assign(x, c, 1, precision="float32")
info = _core.build_info()
print(json.dumps({"path": info["assign_path"], "cal": info["bf16_calibration"], "forced": forced,
                  "pass": info["bf16_pass"],
                  "same": bool((a[0] == f[0]).all() and a[1].tobytes() == f[1].tobytes())}))
"""


def _child(cap: str) -> dict[str, object]:
    env = {**os.environ, "ECOS_FAST_SIMD": cap}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_a_cap_below_avx512bf16_turns_the_pass_off() -> None:
    res = _child("avx512f")
    assert res["path"] not in {"avx512bf16", "amx"}
    assert res["pass"] == "none"
    assert res["forced"] is not None and "AVX512_BF16" in str(res["forced"])
    assert res["same"]


@needs_bf16
def test_the_avx512bf16_cap_forces_the_pass() -> None:
    # `avx512bf16` means the vdpbf16ps engine, even where AMX is usable.
    res = _child("avx512bf16")
    assert res["path"] == "avx512bf16"
    assert res["pass"] == "avx512bf16"
    assert res["forced"] is None
    assert res["same"]


@pytest.mark.skipif(not _has_pass("amx"), reason=_WHY_NOT["amx"])
def test_the_amx_cap_forces_the_amx_pass() -> None:
    res = _child("amx")
    assert res["path"] == "amx"
    assert res["pass"] == "amx"
    assert res["forced"] is None
    assert res["same"]
