"""Peak resident memory of one end-to-end selection, in a fresh process.

Usage: python benches/select_rss.py N D N_CLIENT BUDGET THREADS [ecos-fast|numpy]

Reads the memmapped pool and the centroids cached by test_select.py, runs ``respond``
on the client's samples and then ``select`` (or the NumPy version), and prints one
JSON line: the peak RSS (``VmHWM``) before and after the selection, in bytes, and the
pool size. The peak counts the pool's file-backed pages the process touched, so reading the
whole pool once already costs 1.0x its bytes.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import data
import numpy as np


def maxrss() -> int:
    """Peak resident set of this process image, in bytes.

    ``VmHWM`` from /proc/self/status, not ``getrusage``: Linux carries ``ru_maxrss``
    over from the parent through fork and exec, so a child of a big pytest process
    would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def main() -> None:
    n, d, n_client, budget, threads = (int(a) for a in sys.argv[1:6])
    impl = sys.argv[6] if len(sys.argv) > 6 else "ecos-fast"
    import ecos_fast
    import peers

    pool = data.mixture(n, d)
    cents = ecos_fast.Centroids(np.load(data.bench_dir() / f"centroids_n{n}_d{d}.npy"))
    private = data.client_samples(n_client, d)
    resp = ecos_fast.respond(private, cents, 0.58, 1e-5, seed=0, n_threads=threads)
    del private
    before = maxrss()
    t = time.perf_counter()
    if impl == "numpy":
        with peers.limit_threads(threads):
            got = peers.numpy_select(
                pool, cents.centroids, ecos_fast.Sketch.join(cents, resp).weights(), budget
            )
        n_sel = len(got["indices"])
    else:
        sel = peers.ecos_select(pool, ecos_fast.Sketch.join(cents, resp), budget, threads)
        n_sel = sel.n_selected
    seconds = time.perf_counter() - t
    print(
        json.dumps(
            {
                "rss_before": before,
                "rss_peak": maxrss(),
                "pool_bytes": pool.nbytes,
                "seconds": seconds,
                "n_selected": n_sel,
                "impl": impl,
                "epsilon": 0.58,
                "finite": math.isfinite(seconds),
            }
        )
    )


if __name__ == "__main__":
    main()
