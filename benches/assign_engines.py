"""The bf16 first pass's two engines against the float32 kernel and NumPy, interleaved.

One run, one process: assign ``N`` rows of benches' 1M x 512 mixture (``data.mixture``)
against 1000 centroids (seeded rows of the pool, as benches/test_assign.py), and time in
rounds, each round running every implementation once in a rotated order, so that a
neighbour's load on a shared machine falls on all of them alike:

- ``float32``: ``ecos_fast.assign(precision="float32")`` (the project's AVX-512 kernel)
- ``amx``: the bf16 first pass on Intel AMX tiles (``assign_bf16_stats(first_pass="amx")``)
- ``vdpbf16ps``: the bf16 first pass on AVX512_BF16 (``first_pass="avx512bf16"``)
- ``numpy``: chunked float32 GEMM + argmin (``peers.numpy_assign``)
- ``auto``: ``ecos_fast.assign()`` as users call it (calibration, pilot, then its choice)

``--data separated`` swaps the mixture for the bf16 pass's floor: 1000 centres drawn
5 * N(0, I) as the centroids, each row one centre plus 0.1 * N(0, I), so the float32 gap
(about 25,600) dwarfs the bf16 bound (tens) and almost no row needs a float32 re-check.
What bf16 costs there is the first pass alone: conversion, bf16 tiles and epilogue.

Each engine's labels and distances must equal float32's bit for bit; NumPy's label
agreement with float32 is reported (it differs at float32 near-ties). Prints a JSON line
per timing and a summary: median seconds, ratios of medians, re-check shares.

    PYTHONPATH=python python benches/assign_engines.py [--n 1000000] [--rounds 3] [--threads 2]
        [--data mixture|separated]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import data  # benches/ is the script's folder, so on sys.path
import ecos_fast
import numpy as np
import peers
from ecos_fast import _core
from ecos_fast.errors import InvalidInputError


def separated(n: int, d: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows within 0.1 * sqrt(d) of one of ``k`` centres 5 * sqrt(2d) apart: no near-ties."""
    rng = np.random.default_rng(7)
    c = (5.0 * rng.standard_normal((k, d))).astype(np.float32)
    x = np.empty((n, d), np.float32)
    step = 100_000
    for s in range(0, n, step):
        e = min(n, s + step)
        lab = rng.integers(0, k, e - s)
        x[s:e] = c[lab] + 0.1 * rng.standard_normal((e - s, d), dtype=np.float32)
    return x, c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", choices=("mixture", "separated"), default="mixture")
    args = ap.parse_args()
    n, d, k, t = args.n, args.d, args.k, args.threads
    if args.data == "mixture":
        pool = data.mixture(max(n, 1_000_000), d)
        x = np.ascontiguousarray(pool[:n])
        c = np.array(pool[data.sample_rows(1_000_000, k, seed=1)])
    else:
        x, c = separated(n, d, k)
    print(
        json.dumps(
            {
                "build_info": _core.build_info(),
                "data": args.data,
                "n": n,
                "d": d,
                "k": k,
                "threads": t,
            }
        )
    )

    def engine(name: str):
        def run():
            lab, dist, st = _core.assign_bf16_stats(x, c, t, first_pass=name)
            return lab, dist, st

        return run

    impls = {
        "float32": lambda: (*ecos_fast.assign(x, c, n_threads=t, precision="float32"), None),
        "amx": engine("amx"),
        "vdpbf16ps": engine("avx512bf16"),
        "numpy": lambda: (*peers.numpy_assign(x, c), None),
        "auto": lambda: (*ecos_fast.assign(x, c, n_threads=t), None),
    }
    z = np.zeros((1, 1), np.float32)
    for name, fp in (("amx", "amx"), ("vdpbf16ps", "avx512bf16")):
        try:
            _core.assign_bf16_stats(z, z, 1, first_pass=fp)
        except InvalidInputError as exc:
            print(json.dumps({"skip": name, "why": str(exc)}))
            del impls[name]
    names = list(impls)
    times: dict[str, list[float]] = {m: [] for m in names}
    results: dict[str, tuple] = {}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for m in order:
            t0 = time.perf_counter()
            out = impls[m]()
            s = time.perf_counter() - t0
            times[m].append(s)
            results.setdefault(m, out)
            print(json.dumps({"round": r, "impl": m, "seconds": round(s, 3)}), flush=True)
    l32, d32, _ = results["float32"]
    summary: dict[str, dict[str, object]] = {}
    med = {m: statistics.median(v) for m, v in times.items()}
    for m in names:
        lab, dist, st = results[m]
        row: dict[str, object] = {
            "median_s": round(med[m], 3),
            "min_s": round(min(times[m]), 3),
            "all_s": [round(v, 3) for v in times[m]],
            "float32_over_this": round(med["float32"] / med[m], 3),
            "numpy_over_this": round(med["numpy"] / med[m], 3) if "numpy" in med else None,
            "labels_equal_float32": float(np.mean(lab == l32)),
        }
        if st is not None:
            row["distances_equal_float32"] = bool(dist.tobytes() == d32.tobytes())
            row["rows_rechecked_share"] = st["rows_rechecked"] / st["rows"]
            rr = max(st["rows_rechecked"], 1)
            row["centroids_per_rechecked_row"] = round(st["centroids_rechecked"] / rr, 2)
            row["panels_per_row"] = round(st["panels_rechecked"] / st["rows"], 2)
            row["rows_full"] = st["rows_full"]
        summary[m] = row
    print(json.dumps({"summary": summary}, indent=1))


if __name__ == "__main__":
    main()
