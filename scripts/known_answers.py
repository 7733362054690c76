"""Composition of ECOS selections on the synthetic pools whose right answer is known.

For each pool of :mod:`ecos_fast.synthetic`, epsilon and rule option, the share of the
selection in the client's components and in the junk, averaged over seeds (default
100-109: the validation seeds; the tests in tests/test_known_answers.py use 0-2), with
Random's expected share (the pool's) beside it. Prints a Markdown table.

Run::

    .venv/bin/python scripts/known_answers.py --seeds 100 101 102 103 104 105 106 107 108 109
"""

from __future__ import annotations

import argparse
import math
import warnings
from collections.abc import Sequence
from typing import Any

import ecos_fast
import numpy as np
from ecos_fast.errors import LowSignalWarning, NoCoverageError
from ecos_fast.synthetic import compact_inside_broad, far_junk

CASES = {
    # name: (pool, n_clusters, budget, epsilons)
    "compact-inside-broad": (compact_inside_broad, 50, 250, (0.1, 0.58)),
    "far-junk": (far_junk, 100, 500, (0.001, 0.1, 0.58, math.inf)),
}
OPTIONS: dict[str, dict[str, object]] = {
    "defaults": {},
    "threshold 0": {"threshold": 0.0},
    "threshold 0, keep": {"threshold": 0.0, "low_signal": "keep"},
    "within kcenter": {"within": "kcenter"},
    "neighbourhood x2": {"within": "neighbourhood", "candidates": 2.0},
    "neighbourhood x4": {"within": "neighbourhood", "candidates": 4.0},
    "within strata": {"within": "strata"},
    "strata, threshold 1": {"within": "strata", "threshold": 1.0},
    "posterior, threshold 0": {"weights": "posterior", "threshold": 0.0},
    "empirical-bayes, threshold 0": {"weights": "empirical-bayes", "threshold": 0.0},
    "empirical-bayes, threshold 0, keep": {
        "weights": "empirical-bayes",
        "threshold": 0.0,
        "low_signal": "keep",
    },
    # Not a select option: the client's release counts each sample at the
    # suggest_neighbours(n, eps, delta, R) nearest centroids (respond(neighbours=k)).
    "suggested neighbours": {"neighbours": "suggested"},
    "neighbours 4": {"neighbours": 4},
    # The counts as released, not smoothed (the default before smooth="sure").
    "smooth none": {"smooth": "none"},
    "suggested neighbours, smooth none": {"neighbours": "suggested", "smooth": "none"},
}


def _release(p: Any, c: Any, seed: int, eps: float, r: int, k: object) -> Any:
    """The client's release on pool ``p`` (``k == "suggested"``: suggest_neighbours)."""
    if k == "suggested":
        k = ecos_fast.suggest_neighbours(len(p.private), eps, 1e-5, r)
    return ecos_fast.respond(p.private, c, eps, 1e-5, seed=seed + 1000, neighbours=k)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(100, 110)))
    args = ap.parse_args(argv)
    print("| pool | eps | option | client share % (min) | junk share % (max) |")
    print("|---|---:|---|---:|---:|")
    for case, (make, r, budget, epsilons) in CASES.items():
        pools = [make(s, scale=0.5) for s in args.seeds]
        cents = [
            ecos_fast.fit_centroids(p.pool, n_clusters=r, seed=s)
            for p, s in zip(pools, args.seeds, strict=False)
        ]
        for eps in epsilons:
            for name, opts in OPTIONS.items():
                opts = dict(opts)
                k = opts.pop("neighbours", 1)
                resps = [
                    _release(p, c, s, eps, r, k)
                    for p, c, s in zip(pools, cents, args.seeds, strict=False)
                ]
                client, junk = [], []
                for p, c, resp in zip(pools, cents, resps, strict=False):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", LowSignalWarning)
                        try:
                            sel = ecos_fast.select(p.pool, (c, resp), budget, **opts)  # type: ignore[arg-type]
                        except NoCoverageError:
                            continue
                    client.append(p.share_of(sel, p.client_components))
                    if p.junk_components:
                        junk.append(p.share_of(sel, p.junk_components))
                if not client:
                    print(f"| {case} | {eps:g} | {name} | no coverage on every seed | |")
                    continue
                j = f"{100 * np.mean(junk):.1f} ({100 * max(junk):.1f})" if junk else "—"
                print(
                    f"| {case} | {eps:g} | {name} | {100 * np.mean(client):.1f} "
                    f"({100 * min(client):.1f}) | {j} |"
                )
        p0 = pools[0]
        rj = f"{100 * p0.pool_share(p0.junk_components):.1f}" if p0.junk_components else "—"
        print(
            f"| {case} | — | Random (pool share) | {100 * p0.pool_share(p0.client_components):.1f} | {rj} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
