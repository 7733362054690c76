"""End-to-end ECOS selection on a memmapped pool, and its peak memory.

Set-up (not timed): ``fit_centroids`` on the pool (cached on disk), a client of
``n_client`` samples from a few of the pool's components, ``respond`` (epsilon=0.58,
delta=1e-5; timed once, recorded as ``respond_s``). Timed: ``ecos_fast.select(pool,
Sketch.join(centroids, response), budget, **peers.PEER_RULE)`` including its own
assignment pass, vs the same rule in NumPy (``peers.numpy_select``: the released
weights, no threshold, gate or smoothing, and K-Center over each whole cluster).
Correct: benches/checks.py check_select (every cluster's picks against the NumPy
running-min K-Center on the same members).

Peak RSS is measured in a fresh process (benches/select_rss.py) so that nothing the
suite touched before counts (at the larger thread count only); target: at most 1.2x
the pool's bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import checks
import data
import ecos_fast
import numpy as np
import peers
import pytest
from common import SELECT, THREADS, annotate, features, run, threads

HERE = Path(__file__).resolve().parent
RSS_TARGET = 1.2


def centroids() -> ecos_fast.Centroids:
    w = SELECT
    path = data.bench_dir() / f"centroids_n{w.n}_d{w.d}.npy"
    if not path.exists():
        c = ecos_fast.fit_centroids(
            features(w.n, w.d), n_clusters=w.extra["n_centroids"], seed=0
        ).centroids
        tmp = path.with_name(path.name + f".tmp{os.getpid()}.npy")
        np.save(tmp, c)
        os.replace(tmp, path)
    return ecos_fast.Centroids(np.load(path))


def sketch(t: int) -> tuple[ecos_fast.Sketch, float]:
    w = SELECT
    cents = centroids()
    private = data.client_samples(w.extra["n_client"], w.d)
    start = time.perf_counter()
    resp = ecos_fast.respond(private, cents, 0.58, 1e-5, seed=0, n_threads=t)
    return ecos_fast.Sketch.join(cents, resp), time.perf_counter() - start


@pytest.mark.parametrize("t", THREADS, ids=lambda t: f"t{t}")
@pytest.mark.parametrize("impl", ["ecos-fast", "numpy"])
def test_select(benchmark, impl: str, t: int) -> None:
    w = SELECT
    x = features(w.n, w.d)
    sk, respond_s = sketch(t)
    weights = sk.weights()
    annotate(
        benchmark,
        f"select {w.name} budget={w.k}",
        impl,
        w,
        t,
        bytes=4.0 * w.n * w.d,
        respond_s=respond_s,
        n_client=w.extra["n_client"],
        n_centroids=w.extra["n_centroids"],
    )
    with threads(t):
        if impl == "ecos-fast":
            # The rule the NumPy peer implements and check_select verifies (peers.PEER_RULE).
            sel = run(benchmark, lambda: peers.ecos_select(x, sk, w.k, t))
            got = {
                "indices": np.asarray(sel.indices),
                "labels": np.asarray(sel.labels),
                "quotas": np.asarray(sel.quotas),
            }
        else:
            got = run(
                benchmark, lambda: peers.numpy_select(x, sk.centroids.centroids, weights, w.k)
            )
    c = sk.centroids.centroids
    ref_assign = data.cached(
        f"assign_n{w.n}_d{w.d}_{sk.centroids.fingerprint[:12]}",
        lambda: checks.reference_assign(x, c),
    )
    benchmark.extra_info["clusters_picked"] = int((got["quotas"] > 0).sum())
    checks.record(
        benchmark,
        checks.check_select(
            x, c, weights, w.k, got["indices"], got["labels"], got["quotas"], ref_assign
        ),
    )


@pytest.mark.parametrize("t", [max(THREADS)], ids=lambda t: f"t{t}")
@pytest.mark.parametrize("impl", ["ecos-fast", "numpy"])
def test_select_peak_rss(benchmark, impl: str, t: int) -> None:
    w = SELECT
    centroids()  # cached for the child process
    annotate(benchmark, f"select peak RSS {w.name} budget={w.k}", impl, w, t, bytes=4.0 * w.n * w.d)
    cmd = [
        sys.executable,
        str(HERE / "select_rss.py"),
        str(w.n),
        str(w.d),
        str(w.extra["n_client"]),
        str(w.k),
        str(t),
        impl,
    ]

    def child() -> dict:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    got = run(benchmark, child)
    ratio = got["rss_peak"] / got["pool_bytes"]
    benchmark.extra_info.update(
        rss_peak=got["rss_peak"],
        rss_before=got["rss_before"],
        pool_bytes=got["pool_bytes"],
        rss_ratio=ratio,
        select_s=got["seconds"],
        rss_target=RSS_TARGET,
        correct=True,  # correctness is checked by test_select; this one measures memory
        check=f"peak RSS {got['rss_peak'] / 2**20:.0f} MiB = {ratio:.2f}x the pool "
        f"({got['pool_bytes'] / 2**20:.0f} MiB; target <= {RSS_TARGET}x)",
    )
