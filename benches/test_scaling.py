"""Scaling in n and in threads: ecos-fast alone, n in SCALING_N, 1 vs 2 threads.

``assign`` against ``k`` centroids and ``kcenter_greedy`` with ``budget`` picks on the
first n rows of the d=512 pool. One untimed call (it maps the memmapped rows), then five
rounds each (median): the 2-thread speed-up is a ratio of two medians, so it needs more
rounds than a ratio against a baseline. RESULTS.md shows the time per row (flat = linear
in n) and the 2-thread speed-up. Correct: as in test_assign / test_kcenter, against a float64
assignment and, for K-Center, the radii chain and the final covering radius.
"""

from __future__ import annotations

import hashlib

import checks
import data
import ecos_fast
import numpy as np
import pytest
from common import SCALING, SCALING_N, THREADS, Workload, annotate, features, run, threads

D, K, BUDGET = SCALING["d"], SCALING["k"], SCALING["budget"]


@pytest.mark.parametrize("t", THREADS, ids=lambda t: f"t{t}")
@pytest.mark.parametrize("n", SCALING_N, ids=lambda n: f"n={n}")
def test_scaling_assign(benchmark, n: int, t: int) -> None:
    w = Workload(f"n={n}", n, D, K)
    x = features(n, D)
    c = np.array(x[data.sample_rows(n, K, seed=3)])
    annotate(
        benchmark,
        f"scaling assign d={D} k={K}",
        "ecos-fast",
        w,
        t,
        flops=2.0 * n * K * D,
        bytes=4.0 * n * D,
    )
    with threads(t):
        labels, dist = run(
            benchmark, lambda: ecos_fast.assign(x, c, n_threads=t), rounds=5, warmup=1
        )
    ref = data.cached(f"scal_assign_n{n}_d{D}_k{K}", lambda: checks.reference_assign(x, c))
    checks.record(benchmark, checks.check_assign(x, c, labels, dist, ref))


@pytest.mark.parametrize("t", THREADS, ids=lambda t: f"t{t}")
@pytest.mark.parametrize("n", SCALING_N, ids=lambda n: f"n={n}")
def test_scaling_kcenter(benchmark, n: int, t: int) -> None:
    w = Workload(f"n={n}", n, D, BUDGET)
    x = features(n, D)
    annotate(
        benchmark,
        f"scaling kcenter d={D} budget={BUDGET}",
        "ecos-fast",
        w,
        t,
        flops=2.0 * n * D * BUDGET,
        bytes=4.0 * n * D * BUDGET,
    )
    with threads(t):
        picks, radii = run(
            benchmark,
            lambda: ecos_fast.kcenter_greedy(x, BUDGET, n_threads=t),
            rounds=5,
            warmup=1,
        )
    digest = hashlib.sha1(np.ascontiguousarray(picks).tobytes()).hexdigest()[:16]
    cover = data.cached(
        f"cover_n{n}_d{D}_{digest}", lambda: {"r": np.array(checks.covering_radius(x, picks))}
    )
    # The chain of radii and the final covering radius pin the picks down without a
    # slow reference run at every n; pick 0 must be row 0.
    checks.record(
        benchmark,
        checks.check_kcenter(
            x, picks, np.zeros(1, np.int64), radii, float(cover["r"]), ref_name="row 0"
        ),
    )
