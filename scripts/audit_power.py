"""What the empirical privacy audit sees: epsilon lower bounds and the smallest breakage it detects.

For each release (coverage add/remove, coverage replace-one, one private-kNN query) and
size, prints the audit's epsilon lower bound for the calibrated mechanism against the
claimed epsilon, then scans sigma factors (the calibrated sigma times 0.9, 0.8, ...)
and reports, per factor, in how many of ``--seeds`` seeds the audit failed (lower
bound above the claimed epsilon). The "smallest breakage detected" is the largest
factor that failed in every seed.

    .venv/bin/python scripts/audit_power.py --size default
    .venv/bin/python scripts/audit_power.py --size slow --seeds 3
"""

from __future__ import annotations

import argparse
import time

from ecos_fast.audit import audit_coverage, audit_private_knn

# (n_trials, n_select) per size; the same as tests/test_privacy_audit.py.
SIZES = {
    "default": {"coverage": (4000, 2000), "knn": (100_000, 20_000)},
    "slow": {"coverage": (40_000, 10_000), "knn": (1_000_000, 200_000)},
}
FACTORS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)


def run(kind: str, epsilon: float, size: str, seed: int, factor: float = 1.0) -> float:
    delta = 1e-5
    if kind == "knn":
        n, s = SIZES[size]["knn"]
        r = audit_private_knn(
            epsilon, delta, n_trials=n, n_select=s, seed=seed, sigma_factor=factor
        )
    else:
        n, s = SIZES[size]["coverage"]
        r = audit_coverage(
            epsilon, delta, kind, n_trials=n, n_select=s, seed=seed, sigma_factor=factor
        )
    return r.epsilon_lower


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="default")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epsilon", type=float, nargs="+", default=[0.58, 2.0])
    ap.add_argument("--kinds", nargs="+", default=["add_remove", "replace_one", "knn"])
    ap.add_argument("--factors", type=float, nargs="+", default=list(FACTORS))
    args = ap.parse_args()
    for kind in args.kinds:
        for eps in args.epsilon:
            t0 = time.perf_counter()
            lbs = [run(kind, eps, args.size, seed) for seed in range(args.seeds)]
            line = (
                f"{kind:12s} size={args.size} eps={eps}: lower bounds "
                f"{' '.join(f'{v:.3f}' for v in lbs)} (max {max(lbs):.3f})"
            )
            print(line, flush=True)
            smallest = None
            for f in args.factors:
                hits = sum(run(kind, eps, args.size, seed, f) > eps for seed in range(args.seeds))
                print(f"    sigma x {f}: failed {hits}/{args.seeds}", flush=True)
                if hits == args.seeds:
                    smallest = f
                    break
            print(
                f"    smallest breakage detected in every seed: sigma x {smallest} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
