"""Old build vs new build of the compiled core, alternating in one process.

Usage::

    git worktree add /tmp/old <COMMIT>
    (cd /tmp/old && /work/main/.venv/bin/maturin build --release -o /tmp/oldwheel)
    mkdir -p /tmp/oldcore && unzip -o -q /tmp/oldwheel/*.whl -d /tmp/oldcore
    .venv/bin/python benches/compare_builds.py /tmp/oldcore/ecos_fast/_core.abi3.so [ROUNDS [NAME...]]
    git worktree remove /tmp/old

Loads the old ``_core`` shared object beside the installed one (``ecos_fast._core``)
under another module name, then times each workload with the old and the new core in
turn, ``ROUNDS`` times (default 5), on the same seeded float32 mixture (benches/data.py)
and 2 threads, and prints a Markdown table of the medians and the ratios old / new of
the wall and the process CPU times (> 1: the new build is faster; on a loaded machine
the CPU time is the steadier of the two). ``NAME`` words keep only the workloads whose
name contains one of them (e.g. ``assign``). Each workload's outputs must agree bit for bit between
the builds (labels, distances, centroids, picks); the table says so. A refactor that
moves code should show ratios of 1 within the machine's noise.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from ecos_fast import _core

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data
import machine

THREADS = 2


def load_old(path: str) -> ModuleType:
    """The old core from its shared object; the module name's last part must be
    ``_core`` so that Python finds its ``PyInit__core``."""
    name = "ecos_fast_old_build._core"
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    if spec is None:
        raise SystemExit(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def workloads() -> list[tuple[str, Callable[[ModuleType], Any]]]:
    x128 = np.ascontiguousarray(data.mixture(200_000, 128))
    x512 = np.ascontiguousarray(data.mixture(200_000, 512))
    rng = np.random.default_rng(0)
    c100 = x128[rng.choice(len(x128), 100, replace=False)].copy()
    c1000 = x512[rng.choice(len(x512), 1000, replace=False)].copy()
    init = x128[rng.choice(len(x128), 100, replace=False)].copy()
    c512_100 = x512[rng.choice(len(x512), 100, replace=False)].copy()
    return [
        ("assign 200k x 128 vs 100", lambda m: m.assign(x128, c100, THREADS)),
        ("assign 200k x 512 vs 1000", lambda m: m.assign(x512, c1000, THREADS)),
        ("assign 200k x 512 vs 100", lambda m: m.assign(x512, c512_100, THREADS)),
        (
            "kmeans 200k x 128, k=100, 5 iterations",
            # tol=0: every run does all 5 Lloyd iterations.
            lambda m: m.kmeans(x128, 100, 5, 0.0, 0, THREADS, init=init),
        ),
        (
            "kmeans 200k x 512, k=100, 5 iterations",
            lambda m: m.kmeans(x512, 100, 5, 0.0, 0, THREADS, init=c512_100),
        ),
        ("kcenter 1000 from 200k x 512", lambda m: m.kcenter_greedy(x512, 1000, THREADS)),
    ]


def same(a: Any, b: Any) -> bool:
    """Bit-identical outputs (tuples of arrays and scalars)."""
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(u, v) for u, v in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return bool(a == b)


def run(old_path: str, rounds: int, only: list[str] | None = None) -> str:
    old = load_old(old_path)
    cores = {"old": old, "new": _core}
    rows = []
    for name, call in workloads():
        if only and not any(o in name for o in only):
            continue
        identical = same(call(old), call(_core))  # also the untimed warm-up
        times: dict[str, list[float]] = {"old": [], "new": []}
        cpu_times: dict[str, list[float]] = {"old": [], "new": []}
        for r in range(rounds):
            # Alternate which build goes first, so a drift in load hits both.
            for key in ("old", "new") if r % 2 == 0 else ("new", "old"):
                t, c = time.perf_counter(), time.process_time()
                call(cores[key])
                times[key].append(time.perf_counter() - t)
                cpu_times[key].append(time.process_time() - c)
        med = {k: statistics.median(v) for k, v in times.items()}
        cpu = {k: statistics.median(v) for k, v in cpu_times.items()}
        rows.append(
            f"| {name} | {med['old'] * 1e3:.1f} ms | {med['new'] * 1e3:.1f} ms | "
            f"{med['old'] / med['new']:.3f} | {cpu['old'] / cpu['new']:.3f} | "
            f"{'yes' if identical else 'NO'} |"
        )
    cpu = machine.cpu_info()
    info = _core.build_info()
    head = (
        f"Old core `{old_path}` vs new (installed) core, {THREADS} threads, median of "
        f"{rounds} alternating rounds each; {cpu['model']} family {cpu['cpu_family']}, "
        f"{cpu['cores']} cores; SIMD path {info['simd']} (old: {old.build_info()['simd']}); "
        f"load {machine.loadavg()}."
    )
    return "\n".join(
        [
            head,
            "",
            "| workload | old | new | old / new (wall) | old / new (CPU time) | identical output |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    print(run(sys.argv[1], rounds, sys.argv[3:] or None))


if __name__ == "__main__":
    main()
