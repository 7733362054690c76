"""``ecos-fast reproduce --app {labeling,compression,client-labeling}``: the paper's tables.

Runs :func:`ecos_fast.apps.experiment.run_experiment` with every client domain of the
offline Digit-Five proxy in turn, budgets 1000 and 3000, seeds 1, 2, 3 and the methods
ECOS, K-Center, Random and Local, plus an ECOS epsilon sweep
(0.1, 0.25, 0.58, 1.2, inf), then prints the table and writes Markdown, CSV and PNG
under ``--out`` (default ``./out/``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["SWEEP", "build_parser", "main"]

#: The coverage epsilons of the sweep (paper: 0.08 ... 1.23, plus no noise).
SWEEP: tuple[float, ...] = (0.1, 0.25, 0.58, 1.2, math.inf)

_TITLES = {
    "labeling": "Selective labeling",
    "compression": "Adaptive model compression",
    "client-labeling": "Automated client labeling",
}


def _floats(text: str) -> tuple[float, ...]:
    return tuple(math.inf if t.strip() in ("inf", "∞") else float(t) for t in text.split(","))


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split(","))


def build_parser(
    prog: str = "ecos-fast reproduce", *, sweep_default: bool = True
) -> argparse.ArgumentParser:
    """The options shared by ``reproduce`` and ``demo``."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--app", default="labeling", choices=("labeling", "compression", "client-labeling")
    )
    p.add_argument("--domains", default=None, help="comma-separated client domains (default: all)")
    p.add_argument("--budgets", type=_ints, default=(1000, 3000))
    p.add_argument("--seeds", type=_ints, default=(1, 2, 3))
    p.add_argument(
        "--methods", default="ecos,kcenter,random,local", help="subset of ecos,kcenter,random,local"
    )
    p.add_argument("--epsilon", type=float, default=0.58, help="ECOS coverage epsilon")
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument(
        "--sweep",
        type=_floats,
        default=SWEEP if sweep_default else (),
        help="extra ECOS epsilons, comma-separated ('inf' allowed); '' for none",
    )
    p.add_argument("--no-sweep", action="store_true", help="skip the epsilon sweep")
    p.add_argument("--n-clusters", type=int, default=100, help="R, the number of centroids")
    p.add_argument(
        "--threshold", type=float, default=0.0, help="weights max(v - threshold*sigma, 0)"
    )
    p.add_argument("--normalize", default="none", choices=("none", "l2"))
    p.add_argument("--model", default="head", choices=("head", "linear", "cnn"))
    p.add_argument("--semi-supervised", action="store_true", help="labeling: add self-training")
    p.add_argument(
        "--knn-epsilon", type=float, default=5.0, help="client-labeling: label queries' epsilon"
    )
    p.add_argument(
        "--evaluate",
        default="test",
        choices=("test", "validation"),
        help="'validation': evaluate on 30%% of the private set held out (for choosing R etc.)",
    )
    p.add_argument("--preset", default="default", choices=("default", "small"))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--out", type=Path, default=Path("out"), help="output folder")
    p.add_argument("--name", default=None, help="file stem of the reports (default: the app)")
    p.add_argument("--quiet", action="store_true", help="no progress or per-split log")
    return p


def main(
    argv: Sequence[str] | None = None,
    *,
    prog: str = "ecos-fast reproduce",
    sweep_default: bool = True,
    name: str | None = None,
    command: str | None = None,
) -> int:
    """Run one application's reproduction; returns the exit status."""
    from .experiment import ExperimentConfig, run_experiment
    from .results import format_communication, format_sweep, format_table, write_reports

    args = build_parser(prog, sweep_default=sweep_default).parse_args(argv)
    sweep = () if args.no_sweep else tuple(args.sweep)
    cfg = ExperimentConfig(
        app=args.app,
        domains=tuple(args.domains.split(",")) if args.domains else (),
        budgets=tuple(args.budgets),
        seeds=tuple(args.seeds),
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        epsilon=args.epsilon,
        sweep_epsilons=sweep,
        delta=args.delta,
        n_clusters=args.n_clusters,
        threshold=args.threshold,
        normalize=None if args.normalize == "none" else args.normalize,
        model=args.model,
        semi_supervised=args.semi_supervised,
        knn_epsilon=args.knn_epsilon,
        preset=args.preset,
        evaluate=args.evaluate,
        n_threads=args.threads,
        device=args.device,
        progress=False if args.quiet else None,
    )
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    start = time.perf_counter()
    records, comms = run_experiment(cfg, log=log)
    elapsed = time.perf_counter() - start
    title = f"{_TITLES[cfg.app]} on the offline Digit-Five proxy (OCR-pretrained PP-OCRv4 features)"
    cmd = command or " ".join(
        ["ecos-fast", prog.split()[-1], *(argv if argv is not None else sys.argv[1:])]
    )
    where = (
        "test split"
        if cfg.evaluate == "test"
        else f"validation split ({cfg.validation_fraction:.0%} of the private set held out)"
    )
    header = (
        f"Command: `{cmd}`  \n"
        f"Accuracy (%) on the client domain's {where}, mean ± std over seeds "
        f"{', '.join(map(str, cfg.seeds))}; ECOS: R={cfg.n_clusters}, threshold={cfg.threshold}, "
        f"normalize={cfg.normalize}, coverage ε={cfg.epsilon}, δ={cfg.delta}; "
        f"model={cfg.model}. ε in a column header is the mean composed ε of the client's "
        f"releases (δ={cfg.delta}). Wall time {elapsed / 60:.1f} min."
    )
    print(title)
    print(header.replace("  \n", "\n"))
    print()
    print(format_table(records, epsilon=cfg.epsilon, markdown=False))
    sw = format_sweep(records)
    if sw:
        print("ε sweep (ECOS average accuracy):")
        print(sw)
    print("Communication (bytes) and client compute:")
    print(format_communication(comms))
    paths = write_reports(
        records, comms, args.out, name=args.name or name or cfg.app, title=title, header=header
    )
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    print(f"finished in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
