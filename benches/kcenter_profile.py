"""Where greedy K-Center's time goes, per phase, at 1 and 2 threads.

Usage: python benches/kcenter_profile.py [N] [BUDGET] [REPEATS]   (default 1000000 3000 3)

Runs ``_core.kcenter_greedy_stats`` on the first N rows of the benchmark suite's seeded
512-d mixture (benches/data.py, memmapped from $ECOS_BENCH_DIR), alternating 1 and 2
threads REPEATS times, and prints a Markdown table of the median wall time of each phase
the kernel times itself (``ns_*`` in its stats, see rust/kernels/kcenter/state.rs
``Stats``), with the speed-up the second thread brings to each. The phases that run
serially, and the parallel ones whose rounds are too small to split, are what keeps the
whole call from a 2x speed-up. Every run must pick the same rows (checked).

The phase timers exist only in a core built with the ``profile`` cargo feature (off by
default, so the shipped loop reads no clock)::

    .venv/bin/maturin develop --release -q -F profile

Without it the script still runs, checks the picks and prints the counters, and says
that the per-phase table needs that build.

On two threads the passes run on the kernel's team of persistent workers;
``ECOS_FAST_KCENTER_EXEC=rayon`` runs each pass as a rayon fork/join instead (how the
kernel ran before the team), so one build shows what the team saves. The header says
which ran.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

import numpy as np
from ecos_fast import _core

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data
import machine

REBUILD = ".venv/bin/maturin develop --release -q -F profile"

PHASES = [
    ("ns_scan", "choose chunks, list stale members", "parallel"),
    ("ns_refresh", "refresh stale members (distances)", "parallel"),
    ("ns_apply", "stamp, punch holes, summarize chunks", "parallel"),
    ("ns_merge", "merge chunk results, move the movers", "serial"),
    ("ns_add", "add a center (center-center distances)", "parallel + serial queueing"),
    ("other", "top bound, remove the pick, set-up", "serial"),
]


def timers_built() -> bool:
    """Whether the compiled core measures K-Center's phases (the ``profile`` feature)."""
    return _core.build_info().get("kcenter_timers") == "on"


def executor() -> str:
    """Where the kernel runs its parallel passes at 2 threads (``ECOS_FAST_KCENTER_EXEC``)."""
    mode = os.environ.get("ECOS_FAST_KCENTER_EXEC", "")
    if mode == "rayon":
        return "rayon fork/join"
    if mode == "eager":
        return "the worker team, every pass split"
    return "the worker team"


def run(n: int, budget: int, repeats: int) -> str:
    x = data.mixture(n, 512)
    _core.kcenter_greedy(x, 10, 2, None, None, None)  # warm the page cache and pools
    timed = timers_built()
    runs: dict[int, list[dict[str, int]]] = {1: [], 2: []}
    picks: list[np.ndarray] = []
    for _ in range(repeats):
        for t in (1, 2):
            sel, _, stats = _core.kcenter_greedy_stats(x, budget, t)
            stats = dict(stats)
            if timed:
                stats["other"] = stats["ns_total"] - sum(stats[p] for p, _, _ in PHASES[:-1])
            runs[t].append(stats)
            picks.append(sel)
    same = all(np.array_equal(p, picks[0]) for p in picks)

    def med(t: int, key: str) -> float:
        return statistics.median(r[key] for r in runs[t]) / 1e9

    cpu = machine.cpu_info()
    head = (
        f"K-Center phases, {n:,} x 512, budget {budget:,}: median of {repeats} runs per thread "
        f"count, alternating 1 and 2 threads ({cpu['model']} family {cpu['cpu_family']}, "
        f"{cpu['cores']} cores, load {machine.loadavg()}; passes on {executor()}); picks "
        f"identical in every run: {'yes' if same else 'NO'}."
    )
    lines = [head, ""]
    if timed:
        lines += [
            "| phase | runs | 1 thread | 2 threads | speed-up | share of 2-thread time |",
            "|---|---|---|---|---|---|",
        ]
    else:
        lines.append(
            "No per-phase times: this core was built without the `profile` cargo feature "
            f"(`_core.build_info()['kcenter_timers']` is off). Rebuild with `{REBUILD}`."
        )
    total2 = med(2, "ns_total") if timed else 0.0
    for key, label, kind in [*PHASES, ("ns_total", "whole call", "")] if timed else []:
        a, b = med(1, key), med(2, key)
        ratio = f"{a / b:.2f}x" if b > 0 else "-"
        share = f"{b / total2:.0%}" if key != "ns_total" else "100%"
        name = f"**{label}**" if key == "ns_total" else label
        lines.append(f"| {name} | {kind} | {a:.3f} s | {b:.3f} s | {ratio} | {share} |")
    r = runs[2][0]
    counts = (
        f"Rounds: {r['rounds']:,} ({r['rounds'] / budget:.2f} per pick); rows read: "
        f"{r['rows_read']:,}; distances: {r['distance_evals']:,} "
        f"({r['distance_evals'] / r['brute_force_evals']:.1%} of brute force)."
    )
    lines += ["", counts]
    if not same:
        raise SystemExit("\n".join(lines) + "\nERROR: picks differ between runs")
    return "\n".join(lines)


def main() -> None:
    args = [int(a) for a in sys.argv[1:]]
    n, budget, repeats = (args + [1_000_000, 3000, 3][len(args) :])[:3]
    print(run(n, budget, repeats))


if __name__ == "__main__":
    main()
