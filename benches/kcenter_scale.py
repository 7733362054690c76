"""K-Center at scale: the pruned Rust kernel vs the NumPy running-min baseline.

Usage: python benches/kcenter_scale.py FEATURES BUDGET BASELINE_PICKS [N_THREADS]

FEATURES is a float32 ``.npy`` file (memmapped) or ``mix:N:D`` for the first N rows of
the benchmark suite's seeded mixture (benches/data.py, cached under $ECOS_BENCH_DIR).

Runs the full budget with ecos_fast (timed, with its distance counters and the peak of
its extra anonymous memory, sampled every 5 ms), and the NumPy baseline
(``reference.kcenter_running_min``) for BASELINE_PICKS picks, timed and extrapolated
linearly to BUDGET; checks that both pick the same rows over that prefix (same first
row, 0). BASELINE_PICKS=0 skips the baseline.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

import ecos_fast
import numpy as np
from ecos_fast import _core
from ecos_fast import reference as ref


def _cpu() -> float:
    """CPU seconds of this process (all threads): robust when the machine is shared."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss_anon_kb() -> int:
    """Anonymous resident memory (the memmapped pool is file-backed, not counted)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


class _PeakAnon:
    """Peak of RssAnon while the block runs, sampled by a background thread."""

    def __enter__(self) -> None:
        self.base = self.peak = _rss_anon_kb()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_anon_kb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_anon_kb())


def _features(spec: str) -> np.ndarray:
    if spec.startswith("mix:"):
        sys.path.insert(0, str(Path(__file__).parent))
        import data

        _, n, d = spec.split(":")
        return data.mixture(int(n), int(d))
    return np.load(spec, mmap_mode="r")


def main() -> None:
    spec, budget, base_picks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    n_threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    x = _features(spec)
    n, d = x.shape
    info = _core.build_info()
    load_before = os.getloadavg()[0]
    mem = _PeakAnon()
    with mem:
        t0, c0 = time.perf_counter(), _cpu()
        sel, radii, stats = _core.kcenter_greedy_stats(x, budget, n_threads, 0)
        t_fast, c_fast = time.perf_counter() - t0, _cpu() - c0
    base_picks = max(0, base_picks)
    try:
        import threadpoolctl

        blas = [
            {k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for p in threadpoolctl.threadpool_info()
        ]
    except ImportError:
        blas = "threadpoolctl not installed"
    if base_picks:
        t0, c0 = time.perf_counter(), _cpu()
        base = ref.kcenter_running_min(x, base_picks, first=0)
        t_base, c_base = time.perf_counter() - t0, _cpu() - c0
        same = bool(np.array_equal(sel[:base_picks], base))
        first_diff = None if same else int(np.flatnonzero(sel[:base_picks] != base)[0])
    else:
        t_base = c_base = float("nan")
        same, first_diff = None, None
    # Without a timed baseline (BASELINE_PICKS=0) its fields are null, not NaN.
    baseline: dict[str, float | None] = dict.fromkeys(
        [
            "numpy_ms_per_pick",
            "numpy_s_extrapolated",
            "speedup",
            "numpy_cpu_ms_per_pick",
            "speedup_cpu_time",
        ]
    )
    if base_picks:
        per_pick, cpu_per_pick = t_base / base_picks, c_base / base_picks
        baseline = {
            "numpy_ms_per_pick": round(1e3 * per_pick, 3),
            "numpy_s_extrapolated": round(per_pick * budget, 1),
            "speedup": round(per_pick * budget / t_fast, 2),
            "numpy_cpu_ms_per_pick": round(1e3 * cpu_per_pick, 2),
            "speedup_cpu_time": round(cpu_per_pick * budget / c_fast, 2),
        }
    out = {
        "n": n,
        "d": d,
        "budget": budget,
        "n_threads": n_threads,
        "kcenter_exec": os.environ.get("ECOS_FAST_KCENTER_EXEC") or "team",
        "kcenter_simd": info["kcenter_simd"],
        "fast_s": round(t_fast, 3),
        "fast_ms_per_pick": round(1e3 * t_fast / budget, 3),
        "numpy_picks_timed": base_picks,
        "fast_cpu_s": round(c_fast, 2),
        **baseline,
        "load_avg_1min_before": load_before,
        "load_avg_1min_after": os.getloadavg()[0],
        "same_picks_prefix": same,
        "first_diff": first_diff,
        "distance_evals": stats["distance_evals"],
        "brute_force_evals": stats["brute_force_evals"],
        "skipped_fraction": round(1 - stats["distance_evals"] / stats["brute_force_evals"], 4),
        "coords_read_fraction": round(stats["coords_read"] / (stats["brute_force_evals"] * d), 4),
        "moved_fraction": round(stats["moved"] / stats["brute_force_evals"], 5),
        "rows_read_fraction": round(stats["rows_read"] / stats["brute_force_evals"], 5),
        "refresh_rounds": stats["rounds"],
        "peak_extra_anon_mb": round((mem.peak - mem.base) / 1024, 1),
        "pool_mb": round(x.nbytes / 2**20, 1),
        "final_radius": float(radii[-1]),
        "numpy_blas": blas,
        "ecos_fast": ecos_fast.__version__,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
