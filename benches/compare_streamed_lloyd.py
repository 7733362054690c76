"""An older streamed-Lloyd driver against the installed one, on the same compiled core.

Usage::

    git show <COMMIT>:python/ecos_fast/clustering.py > /tmp/old_clustering.py
    .venv/bin/python benches/compare_streamed_lloyd.py /tmp/old_clustering.py [ROUNDS [K...]]

``ecos_fast.clustering.kmeans_rows`` of the old file and of the installed package run in
turn, ``ROUNDS`` times (default 3), on the memory-mapped benchmark pools (benches/data.py,
as the k-means benchmarks use them: the streamed path), 10 Lloyd iterations from the same
initial centroids, ``tol = 0``, 2 threads. Prints the machine, then a Markdown row per
shape: the wall medians, old / new of the wall and CPU times (> 1: the new driver is
faster), and whether centroids, labels and inertia history are identical. ``K`` words keep
only the shapes with that many clusters. Use it for driver (Python) changes; for changes
of the compiled core use ``compare_builds.py``.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data
import machine
from common import features
from ecos_fast import clustering
from ecos_fast._validation import check_kmeans_params

SHAPES = [(200_000, 512, 100), (200_000, 512, 1000), (1_000_000, 128, 1000)]
THREADS = 2


def load_old(path: str) -> object:
    name = "ecos_fast.old_clustering"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    old = load_old(argv[0])
    rounds = int(argv[1]) if len(argv) > 1 else 3
    keep = {int(a) for a in argv[2:]}
    print(machine.cpu_info(), machine.build_info()["simd"], "load", machine.loadavg())
    print("| shape | old | new | old / new wall | old / new CPU | identical |")
    print("|---|---|---|---|---|---|")
    for n, d, k in SHAPES:
        if keep and k not in keep:
            continue
        x = features(n, d)
        init = np.array(x[data.sample_rows(n, k, seed=2)])
        p = check_kmeans_params(
            n, d, k, max_iter=10, tol=0.0, seed=0, init=init, max_points_per_centroid=None,
            n_local_trials=1, init_sample=None,
        )  # fmt: skip
        wall: dict[str, list[float]] = {"old": [], "new": []}
        cpu: dict[str, list[float]] = {"old": [], "new": []}
        out = {}
        for _ in range(rounds):
            for name, mod in (("old", old), ("new", clustering)):
                w0, c0 = time.perf_counter(), time.process_time()
                out[name] = mod.kmeans_rows(x, p, THREADS, check_as="features")  # type: ignore[attr-defined]
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
        same = all(
            np.array_equal(getattr(out["old"], f), getattr(out["new"], f))
            for f in ("centroids", "labels", "inertia_history")
        )
        wo, wn = statistics.median(wall["old"]), statistics.median(wall["new"])
        co, cn = statistics.median(cpu["old"]), statistics.median(cpu["new"])
        print(
            f"| k-means {n // 1000}k×{d}, k = {k}, 10 iterations | {wo:.3f} s | {wn:.3f} s "
            f"| {wo / wn:.3f}× | {co / cn:.3f}× | {same} |",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
