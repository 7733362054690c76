"""Pair two ``reproduce`` runs of one method, run by run, and test the difference.

Each ``*-runs.csv`` (written by ``ecos-fast reproduce``) holds one row per (domain, seed,
budget, method, epsilon). This script matches the rows of ``--method`` (default ecos)
on (domain, seed, budget, epsilon) and prints, per (budget, epsilon) and over all of
them, the mean accuracy of each run, the mean difference A - B, A's wins out of the
pairs, and a Wilcoxon signed-rank p-value (``ecos_fast.apps.stats.wilcoxon_p``).

    .venv/bin/python scripts/pair_runs.py docs/results/sketch-rauto-hard-runs.csv \\
        docs/results/sketch-r100-hard-runs.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ecos_fast.apps.stats import wilcoxon_p

Key = tuple[str, str, int, float, float]


def _private_size(row: dict[str, str]) -> float:
    """The run's private set size (a ``--private-sizes`` sweep), NaN when not recorded."""
    extra = json.loads(row.get("extra") or "{}")
    return float(extra.get("private_size", math.nan))


def load(path: Path, method: str, with_eps: bool = True) -> dict[Key, tuple[float, float]]:
    """(accuracy, client share) of every run of ``method``, by (domain, seed, budget, eps,
    private size): a private-size sweep has one run per size of each (domain, seed, ...).
    ``with_eps=False`` keys every run at eps NaN (pairing ECOS with a baseline, whose
    runs record no release)."""
    out: dict[Key, tuple[float, float]] = {}
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            if r["method"] != method:
                continue
            eps = float(r["epsilon"]) if with_eps else math.nan
            key = (r["domain"], r["seed"], int(r["budget"]), eps, _private_size(r))
            if key in out:
                raise SystemExit(f"{path}: two runs of {method} share the key {key}")
            out[key] = (float(r["accuracy"]), float(r["client_share"]))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="runs CSV of configuration A")
    ap.add_argument("b", type=Path, help="runs CSV of configuration B")
    ap.add_argument("--method", default="ecos")
    ap.add_argument(
        "--method-b",
        default=None,
        help="B's method when it is not A's (e.g. local): runs pair on domain, seed, "
        "budget and private size, whatever their epsilon",
    )
    args = ap.parse_args(argv)
    same = args.method_b is None or args.method_b == args.method
    method_b = args.method if same else args.method_b
    a, b = load(args.a, args.method, same), load(args.b, method_b, same)

    # NaN != NaN: compare eps and the sizes through their text so unrecorded ones pair up.
    def text(k: Key) -> tuple[object, ...]:
        return (*k[:3], str(k[3]), str(k[4]))

    b_by = {text(k): k for k in b}
    pairs = {k: b_by[text(k)] for k in a if text(k) in b_by}
    b = {k: b[pairs[k]] for k in pairs}
    keys = sorted(pairs, key=lambda k: (k[4], k[2], k[3], k[0], k[1]))
    if not keys:
        print("no runs in common")
        return 1
    what = args.method if same else f"{args.method} (A) and {method_b} (B)"
    print(f"{len(keys)} paired runs of {what}: A = {args.a.name}, B = {args.b.name}")
    groups: dict[str, list[Key]] = {}
    for k in keys:
        size = "" if math.isnan(k[4]) else f"N={k[4]:g}, "
        eps = "" if math.isnan(k[3]) else f", eps={k[3]:g}"
        groups.setdefault(f"{size}B={k[2]}{eps}", []).append(k)
    groups["all"] = keys
    for name, ks in groups.items():
        d = np.array([a[k][0] - b[k][0] for k in ks])
        p = wilcoxon_p(d)[0] if np.any(d) else 1.0
        ma, mb = (100 * np.mean([run[k][0] for k in ks]) for run in (a, b))
        sa, sb = (100 * np.mean([run[k][1] for k in ks]) for run in (a, b))
        print(
            f"{name}: A {ma:.1f} vs B {mb:.1f}, A - B {100 * d.mean():+.2f} points, A wins "
            f"{int((d > 0).sum())}/{d.size} (ties {int((d == 0).sum())}), Wilcoxon p = {p:.3g}"
            + (f"; client-domain share {sa:.0f} % vs {sb:.0f} %" if same else "")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
