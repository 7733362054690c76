"""Scale-out measurement: the Ray backend on 1, 2 and 4 simulated machines.

Each "machine" is a separate Ray node on loopback (its own raylet, object store
and worker process, 1 CPU), started with ``ray.cluster_utils.Cluster`` beside a
head node with 0 CPUs that holds only the driver: the same processes ``ray start
--head`` / ``ray start --address`` launch, stopped by this script only (no
``ray stop``, which would end every Ray process on the host). The pool is
``n x d`` float32 in 16 ``.npy`` shards on local disk (each node memory-maps
the shards its tasks get).

Per configuration it reports, for distributed Lloyd iterations (k clusters):
wall time per iteration, rows/s in total and per worker, the driver's reduce +
update time per iteration, and bytes moved per iteration (centroids to each node,
partial sums back); then one ECOS ``select`` (assignment pass + exact per-cluster
K-Center). Every Ray result is checked against the local backend's.

On a machine with fewer cores than workers the workers share cores: read the
per-worker throughput and the reduce cost, not a speed-up.

Usage::

    .venv/bin/python benches/scaleout.py [--n 2000000] [--d 128] [--k 100] [--workers 1 2 4]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def make_pool(root: Path, n: int, d: int, shards: int, seed: int = 0) -> Path:
    """``shards`` .npy files of clustered float32 rows (written once, then reused)."""
    root = root / f"pool_{n}x{d}_{shards}"
    if (root / "done").exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(256, d)).astype(np.float32)
    cuts = np.linspace(0, n, shards + 1).astype(int)
    for i in range(shards):
        m = int(cuts[i + 1] - cuts[i])
        x = np.lib.format.open_memmap(
            root / f"part-{i:03d}.npy", mode="w+", dtype=np.float32, shape=(m, d)
        )
        for s in range(0, m, 1 << 16):
            e = min(m, s + (1 << 16))
            x[s:e] = means[rng.integers(0, 256, e - s)] + rng.normal(size=(e - s, d)).astype(
                np.float32
            )
        x.flush()
        del x
    (root / "done").touch()
    return root


def load_all(root: Path) -> np.ndarray:
    parts = [np.load(p, mmap_mode="r") for p in sorted(root.glob("*.npy"))]
    return np.ascontiguousarray(np.concatenate(parts))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--data", default="/tmp/ecos-scaleout")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    import ecos_fast
    import ray
    from ecos_fast import ray_backend
    from ray.cluster_utils import Cluster

    t = time.perf_counter()
    root = make_pool(Path(args.data), args.n, args.d, args.shards)
    print(
        f"pool {args.n} x {args.d} in {args.shards} shards: {root} ({time.perf_counter() - t:.1f} s)"
    )
    x = load_all(root)
    kw = {
        "seed": 0,
        "max_points_per_centroid": None,
        "init_sample": args.k * 64,
        "max_iter": args.iters,
        "tol": 0.0,
    }
    rows: list[dict[str, object]] = []

    # Local baseline on this machine, same seeding and iterations: per-iteration
    # time from the difference of an `iters` run and a 1-iteration run.
    from ecos_fast import _core
    from ecos_fast.clustering import init_sample_rows

    init = _core.kmeans_plusplus(x[init_sample_rows(args.n, args.k * 64, 0, args.k)], args.k, 0, 2)
    lk = {"init": init, "max_points_per_centroid": None, "tol": 0.0}
    for threads in sorted({1, os.cpu_count() or 1}):
        ts: dict[int, float] = {}
        for iters in (1, args.iters):
            best = math.inf
            for _ in range(2):
                t = time.perf_counter()
                ecos_fast.kmeans(x, args.k, max_iter=iters, n_threads=threads, **lk)
                best = min(best, time.perf_counter() - t)
            ts[iters] = best
        per = (ts[args.iters] - ts[1]) / (args.iters - 1)
        print(f"local, {threads} thread(s): {per:.3f} s per Lloyd iteration")
        rows.append(
            {"config": f"local, {threads} thread(s)", "lloyd_iter_s": per,
             "rows_per_s": args.n / per, "rows_per_s_per_worker": args.n / per / threads,
             "driver_reduce_ms_per_iter": 0.0, "measured_bytes_to_driver_per_iter": 0.0,
             "select_s": float("nan")}
        )  # fmt: skip
    local = ecos_fast.kmeans(x, args.k, **kw)

    rng = np.random.default_rng(1)
    cents = ecos_fast.fit_centroids(x, args.k, seed=0)
    private = x[rng.choice(args.n, 5000, replace=False)]
    private = private[ecos_fast.assign(private, cents.centroids)[0] % 10 == 0]
    sketch = ecos_fast.Sketch.join(cents, ecos_fast.respond(private, cents, math.inf, 1e-5))
    t = time.perf_counter()
    sel_local = ecos_fast.select(x, sketch, args.budget)
    select_local_s = time.perf_counter() - t
    rows[-1]["select_s"] = select_local_s

    for w in args.workers:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 0, "include_dashboard": False},
        )
        for _ in range(w):
            cluster.add_node(num_cpus=1, object_store_memory=300 * 1024 * 1024)
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        try:
            nodes = [nd for nd in ray.nodes() if nd["Alive"]]
            # Warm-up: start the worker processes and import ecos_fast in them.
            ray_backend.kmeans_sharded(
                root, args.k, max_iter=1, **{k: v for k, v in kw.items() if k != "max_iter"}
            )
            st = ray_backend.RunStats()
            t = time.perf_counter()
            res = ray_backend.kmeans_sharded(root, args.k, stats=st, **kw)
            total = time.perf_counter() - t
            assert res.centroids.tobytes() == local.centroids.tobytes(), "Ray != local"
            it = np.array(st.per_iteration_s)
            per_iter = float(np.median(it))
            reduce_per_iter = st.driver_reduce_s / st.iterations
            partial_bytes = args.shards * (args.k * args.d * 8 + args.k * 8 + 256 * 8)
            bcast_bytes = args.k * args.d * 4 * w  # one copy of the centroids per node
            t = time.perf_counter()
            sel = ecos_fast.select(root, sketch, args.budget, backend="ray")
            select_s = time.perf_counter() - t
            assert np.array_equal(sel.indices, sel_local.indices), "Ray select != local"
            sst2 = ray_backend.RunStats()
            ray_backend.select_sharded(root, sketch, args.budget, stats=sst2)
            row = {
                "config": f"ray {w} worker node(s)",
                "nodes": len(nodes),
                "lloyd_iter_s": per_iter,
                "rows_per_s": args.n / per_iter,
                "rows_per_s_per_worker": args.n / per_iter / w,
                "driver_reduce_ms_per_iter": reduce_per_iter * 1e3,
                "bytes_per_iter_to_driver": partial_bytes,
                "bytes_per_iter_to_nodes": bcast_bytes,
                "measured_bytes_to_driver_per_iter": st.lloyd_bytes_to_driver / st.iterations,
                "total_s": total,
                "select_s": select_s,
                "select_bytes_to_driver": sst2.bytes_to_driver,
                "select_bytes_between_workers": sst2.bytes_between_workers,
                "select_local_s": select_local_s,
            }
            rows.append(row)
            print(json.dumps(row, indent=None, default=float))
        finally:
            ray.shutdown()
            cluster.shutdown()

    print()
    print(
        "| config | Lloyd s/iter | rows/s | rows/s per worker | driver reduce ms/iter | "
        "bytes to driver/iter | select s |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "lloyd_iter_s" not in r:
            continue
        print(
            f"| {r['config']} | {r['lloyd_iter_s']:.3f} | {r['rows_per_s']:.3g} | "
            f"{r['rows_per_s_per_worker']:.3g} | {r['driver_reduce_ms_per_iter']:.2f} | "
            f"{r['measured_bytes_to_driver_per_iter'] / 1e6:.2f} MB | {r['select_s']:.2f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
