"""Measure one ECOS round over Flower's simulation engine against the file-based CLI round.

    .venv/bin/python scripts/flower_round.py --clusters 100 --workdir /tmp/flower-round

The pool is the docs/cli.md worked example's (3 groups x 2000 rows x 32 features); two
clients of 300 rows each. Prints the CLI round's time (sketch + respond + select, in process,
for each client) and file sizes, then the Flower round's server-side time (sketch, send,
collect, select: ServerApp main, from round.json) and the payload bytes each way, and the
whole run_simulation wall time (Ray start-up included).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--workdir", type=Path, required=True)
    a = ap.parse_args()
    root = a.workdir
    rng = np.random.default_rng(0)
    (root / "cloud").mkdir(parents=True, exist_ok=True)
    pool = np.concatenate([rng.normal(m, 1.0, (2000, 32)) for m in (0, 6, 12)])
    np.save(root / "cloud" / "pool.npy", pool.astype(np.float32))
    for i, m in enumerate((6, 12)):
        (root / f"client{i}").mkdir(exist_ok=True)
        x = rng.normal(m, 1.0, (300, 32)).astype(np.float32)
        np.save(root / f"client{i}" / "private.npy", x)

    from ecos_fast.cli import run

    c = root / "cloud" / "centroids.safetensors"
    t0 = time.perf_counter()
    pool_path = str(root / "cloud" / "pool.npy")
    assert run(["-q", "sketch", pool_path, "-o", str(c), "-k", str(a.clusters)]) == 0
    for i in range(2):
        d = root / f"client{i}"
        r = d / "response.safetensors"
        args = ["-q", "respond", str(c), str(d / "private.npy"), "-o", str(r)]
        args += ["--epsilon", "0.58", "--delta", "1e-5", "--ledger", str(d / "cli.sqlite")]
        assert run([*args, "--budget-epsilon", "2", "--cloud", "acme"]) == 0
        sel = root / "cloud" / f"selected{i}.npy"
        args = ["-q", "select", pool_path, str(c), str(r), "--budget", str(a.budget)]
        assert run([*args, "-o", str(sel)]) == 0
    cli_s = time.perf_counter() - t0
    r_size = (root / "client0" / "response.safetensors").stat().st_size
    print(
        f"file-based CLI round, 2 clients: {cli_s:.2f} s; centroids {c.stat().st_size} bytes "
        f"to each client, response {r_size} bytes back"
    )

    from ecos_fast.flower import ClientConfig
    from ecos_fast.flower.apps import ServerConfig, make_client_app, make_server_app
    from flwr.simulation import run_simulation

    def config(ctx: object) -> ClientConfig:
        i = int(ctx.node_config["partition-id"])  # type: ignore[attr-defined]
        d = root / f"client{i}"
        return ClientConfig(d / "private.npy", d / "flower.sqlite", 0.58, 1e-5, 2.0, cloud="acme")

    out = root / "flower-out"
    server = ServerConfig(pool_path, a.clusters, a.budget, min_clients=2, timeout=300, output=out)
    t0 = time.perf_counter()
    run_simulation(
        make_server_app(server),
        make_client_app(config),
        num_supernodes=2,
        backend_config={"client_resources": {"num_cpus": 1}},
    )
    wall = time.perf_counter() - t0
    summary = json.loads((out / "round.json").read_text())
    print(
        f"Flower simulation round, 2 clients: ServerApp {summary['seconds']:.2f} s "
        f"({', '.join(f'{k} {v:.2f} s' for k, v in summary['timings'].items())}) "
        f"(run_simulation wall {wall:.1f} s with Ray start-up); payload "
        f"{summary['bytes_sent']} bytes sent, {summary['bytes_received']} bytes received"
    )


if __name__ == "__main__":
    main()
