"""Workload sizes and helpers shared by the benchmark suite (pytest-benchmark).

Sizes come from ``ECOS_BENCH_MODE`` (``smoke``, the default, or ``full``; set by
``benches/run.py``), thread counts from ``ECOS_BENCH_THREADS`` (default ``1,2``).
Every benchmark is one test parametrised over implementation, workload and thread
count, grouped by workload, and stores in ``benchmark.extra_info``:

    impl, workload, threads, flops, bytes, iterations,
    scale        reported time = measured time x scale (extrapolated runs)
    extrapolated whether ``scale`` != 1
    correct      the result checked against the reference (benches/checks.py)
    check        what was compared, in one line

``benches/run.py`` turns the JSON into ``benches/RESULTS.md``.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import data
import numpy as np
import peers

MODE = os.environ.get("ECOS_BENCH_MODE", "smoke")
if MODE not in ("smoke", "full"):
    raise RuntimeError(f"ECOS_BENCH_MODE={MODE!r} must be 'smoke' or 'full'")
FULL = MODE == "full"
THREADS = [int(t) for t in os.environ.get("ECOS_BENCH_THREADS", "1,2").split(",") if t]


@dataclass(frozen=True)
class Workload:
    name: str
    n: int
    d: int
    k: int = 0  # centroids (assignment, k-means) or budget (K-Center)
    iters: int = 1  # Lloyd iterations
    rounds: int = 1  # pedantic rounds for every implementation
    prefix: int | None = None  # K-Center: picks the slow NumPy baseline times
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:  # the test id
        return self.name


def _n(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n >= 1000 else str(n)


if FULL:
    ASSIGN = [
        Workload("1Mx512 k=1000", 1_000_000, 512, 1000),
        Workload("200kx128 k=100", 200_000, 128, 100, rounds=5),
    ]
    KMEANS = [
        Workload("1Mx128 k=1000", 1_000_000, 128, 1000, iters=10),
        Workload("200kx512 k=1000", 200_000, 512, 1000, iters=10),
        Workload("200kx512 k=100", 200_000, 512, 100, iters=10),
    ]
    KCENTER = [
        Workload("1Mx512 budget=3000", 1_000_000, 512, 3000, prefix=200),
        Workload("200kx512 budget=1000", 200_000, 512, 1000),
    ]
    SELECT = Workload(
        "1Mx512 pool", 1_000_000, 512, 3000, extra={"n_client": 10_000, "n_centroids": 100}
    )
    SCALING_N = [250_000, 500_000, 1_000_000, 2_000_000]
    SCALING = {"d": 512, "k": 100, "budget": 1000}
else:
    ASSIGN = [
        Workload("20kx64 k=50", 20_000, 64, 50, rounds=3),
        Workload("5kx32 k=10", 5_000, 32, 10, rounds=3),
    ]
    KMEANS = [
        Workload("20kx32 k=50", 20_000, 32, 50, iters=3),
        Workload("5kx64 k=20", 5_000, 64, 20, iters=3),
    ]
    KCENTER = [
        Workload("20kx64 budget=100", 20_000, 64, 100, prefix=30),
        Workload("5kx64 budget=50", 5_000, 64, 50),
    ]
    SELECT = Workload("20kx64 pool", 20_000, 64, 100, extra={"n_client": 500, "n_centroids": 10})
    SCALING_N = [2_500, 5_000, 10_000, 20_000]
    SCALING = {"d": 64, "k": 20, "budget": 50}
OVERHEAD = Workload("1000x16 k=8", 1000, 16, 8)


def data_sizes() -> dict[int, int]:
    """The largest n each n_features needs, so one file per d is written."""
    need: dict[int, int] = {}
    for w in [*ASSIGN, *KMEANS, *KCENTER, SELECT, OVERHEAD]:
        need[w.d] = max(need.get(w.d, 0), w.n)
    need[SCALING["d"]] = max(need.get(SCALING["d"], 0), max(SCALING_N))
    return need


@functools.cache
def features(n: int, d: int) -> np.memmap:
    """The memmapped pool prefix, paged in (so no timing pays for first-touch reads).

    Cached: every benchmark on the same (n, d) shares one mapping."""
    x = data.mixture(n, d)
    for s in range(0, n, 1 << 16):
        np.asarray(x[s : s + (1 << 16), :1]).sum()  # touches one line per row
    return x


@contextlib.contextmanager
def threads(n_threads: int) -> Iterator[None]:
    with peers.limit_threads(n_threads):
        yield


def run(benchmark: Any, fn: Callable[[], Any], *, rounds: int = 1, warmup: int = 0) -> Any:
    """Time ``fn`` ``rounds`` times after ``warmup`` untimed calls (default none: big
    cases are minutes each)."""
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=warmup)


def annotate(
    benchmark: Any, group: str, impl: str, w: Workload, n_threads: int, **info: Any
) -> None:
    benchmark.group = group
    benchmark.extra_info.update(
        {
            "impl": impl,
            "workload": w.name,
            "threads": n_threads,
            "n": w.n,
            "d": w.d,
            "k": w.k,
            "scale": 1.0,
            "loadavg_1min": os.getloadavg()[0],
            "extrapolated": False,
            "mode": MODE,
            **info,
        }
    )
