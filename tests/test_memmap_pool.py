"""Pools on disk (issue 16): a memmapped pool gives the in-RAM results, read in one sweep
per pass, with bounded extra memory.

The pools here are small files under ``tmp_path``; ``_stream.BLOCK_BYTES`` is lowered so
that every pass runs over many blocks (the 10M x 512 run is ``benches/pool_10m.py``).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ecos_fast
import numpy as np
import pytest
from ecos_fast import _core, _stream
from ecos_fast._validation import feature_limit
from ecos_fast.errors import InvalidInputError


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_stream, "BLOCK_BYTES", 1 << 20)


def _pool(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 4, (12, d)).astype(np.float32)
    lab = rng.integers(0, 12, n)
    return (means[lab] + rng.normal(0, 1, (n, d)).astype(np.float32)).astype(np.float32)


def _on_disk(tmp_path: Path, x: np.ndarray, name: str = "pool.npy") -> np.memmap:
    path = tmp_path / name
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")
    assert isinstance(mm, np.memmap)
    return mm


@pytest.fixture(scope="module")
def pool_200k(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.memmap]:
    x = _pool(200_000, 64)
    path = tmp_path_factory.mktemp("pool") / "pool.npy"
    np.save(path, x)
    return x, np.load(path, mmap_mode="r")


def _private(x: np.ndarray, n: int = 400) -> np.ndarray:
    rng = np.random.default_rng(7)
    # Near a few pool rows of two groups: the selection has clusters to prefer.
    rows = rng.choice(x.shape[0], size=n)
    near = x[rows] + rng.normal(0, 0.1, (n, x.shape[1])).astype(np.float32)
    return np.ascontiguousarray(near[np.argsort(x[rows, 0])[: n // 2]])


@pytest.mark.parametrize(
    "within", ["strata", "weighted-strata", "neighbourhood", "kcenter", "nearest"]
)
def test_memmap_gives_the_in_ram_sketch_and_selection(
    pool_200k: tuple[np.ndarray, np.memmap], within: str
) -> None:
    x, mm = pool_200k
    a = ecos_fast.fit_centroids(x, n_clusters=24, seed=3)
    b = ecos_fast.fit_centroids(mm, n_clusters=24, seed=3)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.fingerprint == b.fingerprint
    # The plain kernel on the in-RAM pool is the reference for both.
    ref = ecos_fast.kmeans(x, 24, seed=3)
    np.testing.assert_array_equal(ref.centroids, b.centroids)
    np.testing.assert_array_equal(ref.labels, b.labels)
    resp = ecos_fast.respond(_private(x), a, 2.0, 1e-5, seed=0)
    sk = ecos_fast.Sketch.join(b, resp)
    sel_ram = ecos_fast.select(x, sk, 3000, within=within)
    sel_mm = ecos_fast.select(mm, sk, 3000, within=within)
    with_labels = ecos_fast.select(mm, sk, 3000, within=within, labels=b.labels)
    np.testing.assert_array_equal(sel_ram.indices, sel_mm.indices)
    np.testing.assert_array_equal(sel_ram.indices, with_labels.indices)
    np.testing.assert_array_equal(sel_ram.labels, sel_mm.labels)
    assert sel_mm.n_selected == 3000


@pytest.mark.parametrize("init_sample", [5000, None])
def test_full_pool_kmeans_streamed_equals_in_memory(
    tmp_path: Path, init_sample: int | None
) -> None:
    x = _pool(30_000, 24, seed=1)
    mm = _on_disk(tmp_path, x)
    kw: dict[str, Any] = dict(max_points_per_centroid=None, init_sample=init_sample, max_iter=6)
    ref = ecos_fast.kmeans(x, 16, seed=2, **kw)
    got = ecos_fast.kmeans(mm, 16, seed=2, **kw)
    np.testing.assert_array_equal(ref.centroids, got.centroids)
    np.testing.assert_array_equal(ref.labels, got.labels)
    np.testing.assert_array_equal(ref.inertia_history, got.inertia_history)
    assert ref.n_iter == got.n_iter
    fit = ecos_fast.fit_centroids(mm, n_clusters=16, seed=2, **kw)
    np.testing.assert_array_equal(fit.centroids, ref.centroids)


def test_full_pool_kmeans_streamed_relocates_empty_clusters_like_in_memory(tmp_path: Path) -> None:
    x = _pool(20_000, 8, seed=4)
    mm = _on_disk(tmp_path, x)
    init = x[:6].copy()
    init[4] = 1e6  # far from every row: empty after the first assignment
    init[5] = init[4]
    for tol in (0.0, 1e-4):
        ref = ecos_fast.kmeans(x, 6, init=init, max_points_per_centroid=None, tol=tol)
        got = ecos_fast.kmeans(mm, 6, init=init, max_points_per_centroid=None, tol=tol)
        np.testing.assert_array_equal(ref.centroids, got.centroids)
        np.testing.assert_array_equal(ref.labels, got.labels)
        np.testing.assert_array_equal(ref.inertia_history, got.inertia_history)
        assert np.unique(got.labels).size == 6


@pytest.mark.parametrize(
    ("value", "match"),
    [(np.nan, "non-finite value"), (np.inf, "non-finite value"), (1e30, "magnitude above")],
)
@pytest.mark.parametrize("row", [3, 17_000, 29_999])
def test_bad_values_are_found_in_the_fused_pass(
    tmp_path: Path, value: float, match: str, row: int
) -> None:
    x = _pool(30_000, 16, seed=5)
    x[row, 5] = value
    if row + 1 < x.shape[0]:
        x[row + 1, 2] = value  # a later one too: the first is named
    mm = _on_disk(tmp_path, x)
    for pool in (x, mm):
        with pytest.raises(InvalidInputError, match=rf"pool_features holds .* at row {row}\b.*"):
            ecos_fast.fit_centroids(pool, n_clusters=4)
        with pytest.raises(InvalidInputError, match=match):
            ecos_fast.fit_centroids(
                pool, n_clusters=4, max_points_per_centroid=None, init_sample=500
            )
    good = _pool(30_000, 16, seed=5)
    cents = ecos_fast.fit_centroids(good, n_clusters=4)
    resp = ecos_fast.respond(good[:300], cents, math.inf, 1e-5)
    with pytest.raises(InvalidInputError, match=rf"features holds .* at row {row}\b"):
        ecos_fast.select(mm, ecos_fast.Sketch.join(cents, resp), 100)
    assert feature_limit(16) < 1e30


# --- one sweep per pass ------------------------------------------------------------------


class _Spy:
    """Records, for every kernel call, the row range of ``pool`` it was handed."""

    def __init__(self, pool: np.ndarray) -> None:
        self.lo = pool.ctypes.data
        self.row = pool.strides[0]
        self.hi = self.lo + pool.shape[0] * self.row
        self.calls: list[tuple[str, int, int]] = []

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def spy(*args: Any, **kwargs: Any) -> Any:
            a = args[0]
            if isinstance(a, np.ndarray) and a.ndim == 2 and a.size:
                addr = a.ctypes.data
                if self.lo <= addr < self.hi:
                    start = (addr - self.lo) // self.row
                    self.calls.append((name, start, start + a.shape[0]))
            return fn(*args, **kwargs)

        return spy

    def sweeps(self) -> int:
        """How many in-order sweeps the recorded ranges make. A block (at most
        ``_stream.BLOCK_BYTES``) handed to several kernels in a row, as the check and then
        the work, counts once: it is still in the page cache the second time. A larger
        range handed twice (the whole pool checked, then the whole pool assigned) is two
        reads from the disk when the pool exceeds RAM, so it counts twice."""
        spans: list[tuple[int, int]] = []
        for _, a, b in self.calls:
            small = (b - a) * self.row <= _stream.BLOCK_BYTES
            if not spans or spans[-1] != (a, b) or not small:
                spans.append((a, b))
        n = 1 if spans else 0
        for (_, b0), (a1, _) in itertools.pairwise(spans):
            if a1 < b0:
                n += 1
        return n


@pytest.fixture
def spy_kernels(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[np.ndarray], _Spy]]:
    def make(pool: np.ndarray) -> _Spy:
        s = _Spy(pool)
        for name in ("first_non_finite", "assign", "kmeans", "kmeans_max_abs", "kmeans_partial",
                     "kmeans_partial_labelled", "kmeans_moments",
                     "kmeans_plusplus"):  # fmt: skip
            monkeypatch.setattr(_core, name, s.wrap(name, getattr(_core, name)))
        return s

    yield make


def test_fit_centroids_reads_the_pool_in_one_sweep(
    pool_200k: tuple[np.ndarray, np.memmap], spy_kernels: Callable[[np.ndarray], _Spy]
) -> None:
    _, mm = pool_200k
    spy = spy_kernels(mm)
    cents = ecos_fast.fit_centroids(mm, n_clusters=24, seed=3)
    # Before: a whole-pool check, then the kernel's whole-pool assignment (two sweeps).
    assert spy.sweeps() == 1, spy.calls[:4]
    assert {c[0] for c in spy.calls} == {"first_non_finite", "assign"}
    assert spy.calls[-1][2] == mm.shape[0] and cents.labels is not None


def test_public_kmeans_reads_the_pool_in_one_sweep(
    pool_200k: tuple[np.ndarray, np.memmap], spy_kernels: Callable[[np.ndarray], _Spy]
) -> None:
    x, mm = pool_200k
    spy = spy_kernels(mm)
    km = ecos_fast.kmeans(mm, 24, seed=3)
    # Before: as_features checked the whole pool up front, then the final assignment
    # read it again (two sweeps); now the check is fused into that assignment.
    assert spy.sweeps() == 1, spy.calls[:4]
    ref = ecos_fast.kmeans(np.array(x), 24, seed=3)
    np.testing.assert_array_equal(km.centroids, ref.centroids)
    np.testing.assert_array_equal(km.labels, ref.labels)
    bad = np.array(x[:30_000])
    bad[777, 3] = np.nan
    with pytest.raises(InvalidInputError, match=r"features holds .* at row 777\b"):
        ecos_fast.kmeans(bad, 4)


def test_select_reads_the_pool_in_one_sweep(
    pool_200k: tuple[np.ndarray, np.memmap], spy_kernels: Callable[[np.ndarray], _Spy]
) -> None:
    x, mm = pool_200k
    cents = ecos_fast.fit_centroids(x, n_clusters=24, seed=3)
    resp = ecos_fast.respond(_private(x), cents, 2.0, 1e-5, seed=0)
    spy = spy_kernels(mm)
    ecos_fast.select(mm, ecos_fast.Sketch.join(cents, resp), 3000)
    assert spy.sweeps() == 1, spy.calls[:4]
    # Every block is checked just before it is assigned.
    names = [c[0] for c in spy.calls]
    assert names[:2] == ["first_non_finite", "assign"] and names.count("assign") > 10


def test_full_pool_kmeans_makes_one_sweep_per_iteration(
    tmp_path: Path, spy_kernels: Callable[[np.ndarray], _Spy]
) -> None:
    x = _pool(40_000, 32, seed=6)
    mm = _on_disk(tmp_path, x)
    spy = spy_kernels(mm)
    km = ecos_fast.fit_centroids(
        mm, n_clusters=8, max_points_per_centroid=None, init_sample=2000, max_iter=3
    )
    # max-|value| with the check, one per Lloyd iteration (tol's variance summed in the
    # first), the final assignment.
    assert spy.sweeps() == 1 + 3 + 1
    assert km.labels is not None


def test_relocating_empty_clusters_reads_the_pool_no_second_time(
    tmp_path: Path, spy_kernels: Callable[[np.ndarray], _Spy]
) -> None:
    """An iteration that empties clusters takes the farthest rows from its own pass's
    distances. Before, it swept the pool once more to recompute them (4 sweeps for 2
    iterations here, not 3 + 1)."""
    x = _pool(100_000, 8, seed=11)  # 4 blocks of 1 MiB
    for row, shift in ((5, 40.0), (40_000, 45.0), (99_000, 50.0), (70_001, 50.0)):
        x[row] += shift  # the farthest rows, in three blocks (two at the same distance)
    mm = _on_disk(tmp_path, x)
    init = x[:6].copy()
    init[3:] = 1e6  # far from every row: three clusters empty after the first assignment
    kw: dict[str, Any] = {"init": init, "max_points_per_centroid": None, "max_iter": 2}
    ref = ecos_fast.kmeans(x, 6, **kw)
    spy = spy_kernels(mm)
    got = ecos_fast.kmeans(mm, 6, **kw)
    # max-|value| with the check, two Lloyd iterations, the final assignment.
    assert spy.sweeps() == 1 + 2 + 1, spy.calls
    np.testing.assert_array_equal(ref.centroids, got.centroids)
    np.testing.assert_array_equal(ref.labels, got.labels)
    np.testing.assert_array_equal(ref.inertia_history, got.inertia_history)
    assert np.unique(got.labels).size == 6


def test_tol_zero_sums_no_variance(
    pool_200k: tuple[np.ndarray, np.memmap], spy_kernels: Callable[[np.ndarray], _Spy]
) -> None:
    """tol = 0 stops on a zero shift only, so the variance that scales tol is not summed
    (scikit-learn skips it too); the result is the same as with it summed."""
    x, mm = pool_200k
    kw: dict[str, Any] = {"max_points_per_centroid": None, "init_sample": 2000, "max_iter": 2}
    spy = spy_kernels(mm)
    got = ecos_fast.kmeans(mm, 8, tol=0.0, **kw)
    assert "kmeans_moments" not in {c[0] for c in spy.calls}
    ecos_fast.kmeans(mm, 8, tol=1e-4, **kw)
    assert "kmeans_moments" in {c[0] for c in spy.calls}
    ref = ecos_fast.kmeans(np.array(x), 8, tol=0.0, **kw)
    np.testing.assert_array_equal(ref.centroids, got.centroids)
    np.testing.assert_array_equal(ref.labels, got.labels)


# --- memory ------------------------------------------------------------------------------


def test_select_on_a_memmap_allocates_no_copy_of_the_pool(tmp_path: Path) -> None:
    """NumPy-side allocations (tracemalloc sees every ndarray buffer) stay O(n_samples):
    at most 64 bytes a row plus 16 MiB, against 512 bytes a row of pool."""
    n, d = 200_000, 128
    x = _pool(n, d, seed=8)
    mm = _on_disk(tmp_path, x)
    cents = ecos_fast.fit_centroids(x[:20_000], n_clusters=24, seed=0)
    resp = ecos_fast.respond(_private(x[:20_000]), cents, 2.0, 1e-5, seed=0)
    sk = ecos_fast.Sketch.join(cents, resp)
    del x
    bound = 64 * n + (16 << 20)
    assert mm.nbytes > 3 * bound
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        sel = ecos_fast.select(mm, sk, 2000)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert sel.n_selected == 2000
    assert peak <= bound, (peak, bound)


def test_stream_helpers(tmp_path: Path) -> None:
    x = _pool(1000, 4)
    mm = _on_disk(tmp_path, x)
    assert _stream.is_mapped(mm) and _stream.is_mapped(mm[10:20]) and not _stream.is_mapped(x)
    rows = np.array([5, 6, 7, 100, 999, 6], dtype=np.int64)
    np.testing.assert_array_equal(_stream.gather_rows(mm, rows), x[rows])
    spans = list(_stream.row_blocks(1000, 1 << 18))
    assert spans[0] == (0, 4) and spans[-1][1] == 1000
    starts = [s for s, _ in _stream.blocks(mm)]
    assert starts == sorted(starts) and starts[0] == 0
    lab, d2, bins = _stream.assign_checked(mm, x[:3].copy(), 1)
    ref_l, ref_d, ref_b = _core.assign(x, x[:3].copy(), 1, bins=True)
    np.testing.assert_array_equal(lab, ref_l)
    np.testing.assert_array_equal(d2, ref_d)
    np.testing.assert_array_equal(bins, ref_b)


def test_the_10m_bench_script_runs_at_toy_size(tmp_path: Path) -> None:
    """benches/pool_10m.py as documented in benches/README.md, on a 40k x 16 pool."""
    script = Path(__file__).resolve().parents[1] / "benches" / "pool_10m.py"
    size = ["--dir", str(tmp_path), "--n", "40000", "--d", "16"]
    env = {**os.environ, "TMPDIR": str(tmp_path), "ECOS_FAST_NUM_THREADS": "1"}

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(script), *args, *size],
            capture_output=True, text=True, env=env, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    run("generate")
    out = tmp_path / "R.md"
    run("run", "--clusters", "8", "--budget", "300", "--prefix", "20000", "--out", str(out))
    res = json.loads((tmp_path / "pool10m-report" / "pool10m.json").read_text())
    assert all(v is True for k, v in res["prefix"].items() if k.endswith("_equal"))
    assert res["end_to_end"]["n_selected"] == 300
    assert len(res["full_kmeans"]["iterations"]) == 2
    text = out.read_text()
    assert "— correct." in text and "| sequential read" in text
    run("clean")
    assert not list(tmp_path.glob("mix_*.npy"))


def test_the_10m_bench_drops_a_memory_sample_read_before_a_lap(monkeypatch: Any) -> None:
    """A RssAnon reading taken while the previous step still held a large array must not
    become the next step's peak when the sampler stores it after that step's lap."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benches"))
    import pool_10m

    now = {"kib": 2_000_000}  # the previous step holds 2 GB
    monkeypatch.setattr(pool_10m, "_status_kib", lambda field: now["kib"])
    anon = pool_10m.AnonPeak(interval=3600)  # its thread never samples by itself
    try:
        anon.lap()
        laps: list[int] = []
        raced = []

        def racing_read(field: str) -> int:
            v = now["kib"]  # the sampler reads 2 GB ...
            if not raced:  # ... the step frees them and the next one begins ...
                raced.append(True)
                now["kib"] = 100
                laps.append(anon.lap())
            return v  # ... and the sampler stores its reading only now

        monkeypatch.setattr(pool_10m, "_status_kib", racing_read)
        anon.sample()
        assert laps == [2_000_000 * 1024]  # the freeing step's own peak
        assert anon.lap() == 100 * 1024  # the next step's peak: not the stale 2 GB
        assert anon.overall == 2_000_000
    finally:
        anon.stop()


# --- normalize="l2" on a pool on disk ----------------------------------------------------


@pytest.mark.parametrize(
    ("within", "fallback", "threshold"),
    [
        ("strata", "random", 0.0),
        ("neighbourhood", "random", 0.0),
        ("kcenter", "random", 0.0),
        ("nearest", "random", 0.0),
        ("strata", "kcenter", 1e9),  # no cluster passes: the K-Center fallback
    ],
)
def test_l2_memmap_gives_the_in_ram_sketch_and_selection(
    pool_200k: tuple[np.ndarray, np.memmap], within: str, fallback: str, threshold: float
) -> None:
    """A pool on disk under normalize="l2" is normalized block by block as it is read;
    every row gets the values of the in-RAM copy, so sketch and selection are equal."""
    x, mm = pool_200k
    x = x * np.linspace(0.5, 3.0, x.shape[0], dtype=np.float32)[:, None]  # unequal norms
    mm = _on_disk(Path(os.path.dirname(mm.filename)), x, "scaled.npy")
    a = ecos_fast.fit_centroids(x, n_clusters=24, seed=3, normalize="l2")
    b = ecos_fast.fit_centroids(mm, n_clusters=24, seed=3, normalize="l2")
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_array_equal(a.labels, b.labels)
    resp = ecos_fast.respond(_private(x), a, 2.0, 1e-5, seed=0)
    sk = ecos_fast.Sketch.join(b, resp)
    kw: dict[str, Any] = dict(within=within, fallback=fallback, threshold=threshold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fallback case warns that nothing passed
        sel_ram = ecos_fast.select(x, sk, 3000, **kw)
        sel_mm = ecos_fast.select(mm, sk, 3000, **kw)
        with_labels = ecos_fast.select(mm, sk, 3000, labels=b.labels, **kw)
    np.testing.assert_array_equal(sel_ram.indices, sel_mm.indices)
    np.testing.assert_array_equal(sel_ram.indices, with_labels.indices)
    np.testing.assert_array_equal(sel_ram.labels, sel_mm.labels)
    assert sel_mm.n_selected == 3000


def test_l2_full_pool_kmeans_streamed_equals_in_memory(tmp_path: Path) -> None:
    x = _pool(30_000, 24, seed=1) * 7.0
    mm = _on_disk(tmp_path, x)
    kw: dict[str, Any] = dict(max_points_per_centroid=None, max_iter=4, normalize="l2")
    for init_sample in (5000, None):
        ref = ecos_fast.fit_centroids(x, 16, seed=2, init_sample=init_sample, **kw)
        got = ecos_fast.fit_centroids(mm, 16, seed=2, init_sample=init_sample, **kw)
        np.testing.assert_array_equal(ref.centroids, got.centroids)
        np.testing.assert_array_equal(ref.labels, got.labels)


def test_l2_select_on_a_memmap_allocates_no_copy_of_the_pool(tmp_path: Path) -> None:
    """Before: normalize="l2" copied the whole normalized pool into memory first (a
    peak of the pool's size and more). The bound is the one without a transform plus
    8 MiB: a cluster's gathered rows are held twice for a moment, read and normalized."""
    n, d = 200_000, 128
    x = _pool(n, d, seed=8)
    mm = _on_disk(tmp_path, x)
    cents = ecos_fast.fit_centroids(x[:20_000], n_clusters=24, seed=0, normalize="l2")
    resp = ecos_fast.respond(_private(x[:20_000]), cents, 2.0, 1e-5, seed=0)
    sk = ecos_fast.Sketch.join(cents, resp)
    ref = ecos_fast.select(x, sk, 2000).indices
    del x
    bound = 64 * n + (24 << 20)
    assert mm.nbytes > 2.5 * bound
    for step in ("fit", "select"):
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            if step == "fit":
                got = ecos_fast.fit_centroids(mm, n_clusters=24, seed=0, normalize="l2")
                assert got.labels is not None
            else:
                sel = ecos_fast.select(mm, sk, 2000)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert peak <= bound, (step, peak, bound)
    np.testing.assert_array_equal(sel.indices, ref)


@pytest.mark.parametrize("row", [3, 29_999])
def test_l2_bad_values_on_a_memmap_are_found_as_read(tmp_path: Path, row: int) -> None:
    x = _pool(30_000, 16, seed=5)
    x[row, 5] = np.nan
    mm = _on_disk(tmp_path, x)
    for kw in ({}, {"max_points_per_centroid": None, "init_sample": 500}):
        with pytest.raises(InvalidInputError, match=rf"pool_features holds .* at row {row}\b"):
            ecos_fast.fit_centroids(mm, n_clusters=4, normalize="l2", **kw)
    good = _pool(30_000, 16, seed=5)
    cents = ecos_fast.fit_centroids(good, n_clusters=4, normalize="l2")
    resp = ecos_fast.respond(good[:300], cents, math.inf, 1e-5)
    sk = ecos_fast.Sketch.join(cents, resp)
    with pytest.raises(InvalidInputError, match=rf"features holds .* at row {row}\b"):
        ecos_fast.select(mm, sk, 100)
    # Huge finite rows are fine under l2 (norms in float64), as in memory.
    big = good * np.float32(1e19)
    mb = _on_disk(tmp_path, big, "big.npy")
    np.testing.assert_array_equal(
        ecos_fast.select(mb, ecos_fast.Sketch.join(cents, resp), 100).indices,
        ecos_fast.select(big, ecos_fast.Sketch.join(cents, resp), 100).indices,
    )


def test_transformed_rows_helpers(tmp_path: Path) -> None:
    x = _pool(1000, 4) * 3.0
    mm = _on_disk(tmp_path, x)
    t = ecos_fast.Centroids(np.eye(4, dtype=np.float32), normalize="l2")._transform_rows(mm)
    assert isinstance(t, _stream.Transformed) and _stream.is_mapped(t) and t.shape == x.shape
    ref = ecos_fast.transform.l2_normalize(x)
    rows = np.array([5, 6, 999, 6], dtype=np.int64)
    np.testing.assert_array_equal(_stream.gather_rows(t, rows), ref[rows])
    np.testing.assert_array_equal(_stream.as_array(t), ref)
    np.testing.assert_array_equal(np.concatenate([b for _, b in _stream.blocks(t)]), ref)
    # In memory, or without a transform, the array itself comes back.
    assert isinstance(
        ecos_fast.Centroids(np.eye(4, dtype=np.float32), normalize="l2")._transform_rows(x),
        np.ndarray,
    )


def test_l2_memmap_with_labels_checks_rows_no_pass_reads(tmp_path: Path) -> None:
    """With labels given, strata and the Random fallback read no features of the rows in
    clusters they leave out; a bad row there must still be refused (before: under
    normalize="l2" on disk nothing checked them and the selection went through)."""
    rng = np.random.default_rng(3)
    a = rng.normal(0, 1, (3000, 8)) + np.r_[10.0, np.zeros(7)]
    b = rng.normal(0, 1, (3000, 8)) + np.r_[0.0, 10.0, np.zeros(6)]
    x = np.concatenate([a, b]).astype(np.float32)
    cents = ecos_fast.fit_centroids(x, n_clusters=2, seed=0, normalize="l2")
    lab = cents.labels
    assert lab is not None
    far = int(np.flatnonzero(lab == lab[-1])[10])  # a row of b's cluster
    bad = x.copy()
    bad[far, 4] = np.nan
    mm = _on_disk(tmp_path, bad)
    private = x[:400]  # a's cluster only: b's gets no quota
    for eps, kw in ((math.inf, {}), (0.5, {"threshold": 1e6, "fallback": "random"})):
        sk = ecos_fast.Sketch.join(cents, ecos_fast.respond(private, cents, eps, 1e-5, seed=1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            good = ecos_fast.select(x, sk, 50, labels=lab, **kw)
            assert far not in set(good.indices.tolist())
            with pytest.raises(InvalidInputError, match=rf"features holds .* at row {far}\b"):
                ecos_fast.select(mm, sk, 50, labels=lab, **kw)
