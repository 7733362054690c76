"""Greedy K-Center (farthest-first), vs the NumPy running-min baseline.

ecos-fast ``kcenter_greedy`` | ``reference.kcenter_running_min`` (Google active-learning
style: one running min-distance vector, one GEMV per pick). Both start from row 0.
Where the workload sets ``prefix``, NumPy times only its first ``prefix`` picks and the
total is extrapolated linearly (``scale = budget / prefix``; every pick costs the same
full pass), marked as extrapolated. Correct = picks equal to NumPy's up to near-ties,
radii consistent with the picks, final covering radius right (benches/checks.py).
"""

from __future__ import annotations

import hashlib

import checks
import data
import ecos_fast
import numpy as np
import peers
import pytest
from common import KCENTER, THREADS, Workload, annotate, features, run, threads
from ecos_fast import _core

IMPLS = ["numpy", "ecos-fast"]  # NumPy first: its picks are the cached reference


def reference_picks(w: Workload, x: np.ndarray, picks: np.ndarray | None = None) -> np.ndarray:
    m = w.prefix or w.k
    ref = data.cached(
        f"kcenter_n{w.n}_d{w.d}_b{m}",
        lambda: {"picks": picks if picks is not None else peers.numpy_kcenter(x, m)},
    )
    return ref["picks"]


def covering(w: Workload, x: np.ndarray, picks: np.ndarray) -> float:
    digest = hashlib.sha1(np.ascontiguousarray(picks).tobytes()).hexdigest()[:16]
    got = data.cached(
        f"cover_n{w.n}_d{w.d}_{digest}", lambda: {"r": np.array(checks.covering_radius(x, picks))}
    )
    return float(got["r"])


@pytest.mark.parametrize("t", THREADS, ids=lambda t: f"t{t}")
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("w", KCENTER, ids=str)
def test_kcenter(benchmark, w: Workload, impl: str, t: int) -> None:
    x = features(w.n, w.d)
    picks_run = w.prefix if impl == "numpy" and w.prefix else w.k
    annotate(
        benchmark,
        f"kcenter {w.name}",
        impl,
        w,
        t,
        flops=2.0 * w.n * w.d * w.k,
        bytes=4.0 * w.n * w.d * w.k,
        picks_timed=picks_run,
        scale=w.k / picks_run,
        extrapolated=picks_run != w.k,
    )
    with threads(t):
        if impl == "numpy":
            picks = run(benchmark, lambda: peers.numpy_kcenter(x, picks_run), rounds=w.rounds)
            radii = None
        else:
            picks, radii = run(
                benchmark, lambda: ecos_fast.kcenter_greedy(x, w.k, n_threads=t), rounds=w.rounds
            )
    ref = reference_picks(w, x, picks if impl == "numpy" else None)
    cover = covering(w, x, picks) if radii is not None else None
    checks.record(benchmark, checks.check_kcenter(x, picks, ref, radii, cover))
    if impl == "ecos-fast" and t == max(THREADS):
        record_pruning(benchmark, x, w, t, picks)


def record_pruning(benchmark, x: np.ndarray, w: Workload, t: int, picks: np.ndarray) -> None:
    """How much work the pruned kernel skipped (one more, untimed run with counters)."""
    stats_fn = getattr(_core, "kcenter_greedy_stats", None)
    if stats_fn is None:
        return
    again, _, st = stats_fn(x, w.k, t)
    if not np.array_equal(again, picks):
        benchmark.extra_info.update(correct=False, check="kcenter_greedy_stats picks differ")
        return
    dist = st["distance_evals"] / max(st["brute_force_evals"], 1)
    coords = st["coords_read"] / max(st["brute_force_evals"] * w.d, 1)
    benchmark.extra_info["pruning"] = (
        f"{100 * dist:.1f} % of brute-force distances evaluated, {100 * coords:.1f} % of "
        "their coordinates read"
    )
