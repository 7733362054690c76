"""``ecos-fast reproduce --app {labeling,compression,client-labeling}``: the paper's tables.

Runs :func:`ecos_fast.apps.experiment.run_experiment` with every client domain of the
offline Digit-Five proxy in turn, budgets 1000 and 3000, seeds 1, 2, 3 and the methods
ECOS, K-Center, Random and Local, plus an ECOS epsilon sweep
(0.1, 0.25, 0.58, 1.2, inf), then prints the table with the paired statistics (wins
out of N, Wilcoxon p) and writes Markdown, CSV and PNG under ``--out`` (default
``./out/``). Selective labeling also reports self-training on the unlabeled pool
beside the supervised numbers (``--no-semi-supervised`` to skip it).

``--preset hard`` runs the hard benchmark (far-away scripts, junk in the pool,
held-out test fonts, its own extractor); ``--private-size N`` fixes the client's
private set size and ``--private-sizes 50,100,300,1000`` sweeps it (then the report is
accuracy against the private size, ECOS against Local: the crossover).
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


def _presets() -> tuple[str, ...]:
    from ecos_fast.datasets.digits import PRESETS

    return tuple(PRESETS)


def build_parser(
    prog: str = "ecos-fast reproduce", *, sweep_default: bool = True, semi_default: bool = True
) -> argparse.ArgumentParser:
    """The options shared by ``reproduce`` and ``demo``."""
    from ecos_fast import rule

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
        "--threshold",
        type=float,
        default=None,
        help="weights max(v - threshold*sigma, 0) (default: the rule's)",
    )
    p.add_argument(
        "--within",
        default=None,
        choices=rule.WITHIN,
        help="within-cluster routine (default: the rule's)",
    )
    p.add_argument("--candidates", type=float, default=None, help="neighbourhood candidate factor")
    p.add_argument(
        "--weights",
        default=None,
        choices=rule.WEIGHTS,
        help="cluster weight rule (default: the rule's)",
    )
    p.add_argument("--normalize", default="none", choices=("none", "l2"))
    p.add_argument("--model", default="head", choices=("head", "linear", "cnn"))
    p.add_argument(
        "--semi-supervised",
        action=argparse.BooleanOptionalAction,
        default=semi_default,
        help="labeling: also self-train on the unlabeled pool, reported beside",
    )
    p.add_argument(
        "--knn-epsilon", type=float, default=5.0, help="client-labeling: label queries' epsilon"
    )
    p.add_argument(
        "--queries",
        type=int,
        default=None,
        help="client-labeling: label queries (default: 1000 cap)",
    )
    p.add_argument(
        "--evaluate",
        default="test",
        choices=("test", "validation"),
        help="'validation': evaluate on 30%% of the private set held out (for choosing R etc.)",
    )
    p.add_argument("--preset", default="default", choices=_presets())
    p.add_argument("--data-seed", type=int, default=0, help="seed of the rendered data")
    p.add_argument("--extractor", default=None, help="feature extractor (default: the preset's)")
    p.add_argument("--private-size", type=int, default=None, help="client's private set size")
    p.add_argument(
        "--private-sizes",
        type=_ints,
        default=None,
        help="sweep the private set size, e.g. 50,100,300,1000 (accuracy vs size plot)",
    )
    p.add_argument(
        "--queries-sweep",
        type=_ints,
        default=None,
        help="client-labeling: sweep the label-query budget, e.g. 250,1000,3000 "
        "(accuracy vs queries plot)",
    )
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
    semi_default: bool = True,
    name: str | None = None,
    command: str | None = None,
) -> int:
    """Run one application's reproduction; returns the exit status."""
    from dataclasses import replace

    from . import data
    from .experiment import Communication, ExperimentConfig, RunRecord, run_experiment
    from .results import (
        format_communication,
        format_param_sweep,
        format_share,
        format_sweep,
        format_table,
        write_reports,
        write_sweep_reports,
    )

    args = build_parser(prog, sweep_default=sweep_default, semi_default=semi_default).parse_args(
        argv
    )
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
        within=args.within,
        candidates=args.candidates,
        weights=args.weights,
        normalize=None if args.normalize == "none" else args.normalize,
        model=args.model,
        semi_supervised=bool(args.semi_supervised) and args.app == "labeling",
        knn_epsilon=args.knn_epsilon,
        queries=args.queries,
        preset=args.preset,
        data_seed=args.data_seed,
        extractor=args.extractor,
        private_size=args.private_size,
        evaluate=args.evaluate,
        n_threads=args.threads,
        device=args.device,
        progress=False if args.quiet else None,
    )
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    start = time.perf_counter()
    records: list[RunRecord] = []
    comms: list[Communication] = []
    if args.private_sizes and args.queries_sweep:
        print("error: --private-sizes and --queries-sweep cannot be combined", file=sys.stderr)
        return 2
    if args.queries_sweep and cfg.app != "client-labeling":
        print("error: --queries-sweep needs --app client-labeling", file=sys.stderr)
        return 2
    sweep_key = "private_size" if args.private_sizes else "query_budget"
    if args.private_sizes:
        for size in args.private_sizes:
            recs, _ = run_experiment(replace(cfg, private_size=size), log=log)
            records += recs
    elif args.queries_sweep:
        for q in args.queries_sweep:
            recs, _ = run_experiment(replace(cfg, queries=q), log=log)
            # Tag every run (Local too, which sends no queries) with the query budget.
            records += [replace(r, extra={**r.extra, "query_budget": float(q)}) for r in recs]
    else:
        records, comms = run_experiment(cfg, log=log)
    elapsed = time.perf_counter() - start
    extractor = cfg.extractor or data.default_extractor(cfg.preset)
    preset = "" if cfg.preset == "default" else f", {cfg.preset} preset"
    title = (
        f"{_TITLES[cfg.app]} on the offline Digit-Five proxy{preset} "
        f"(OCR-pretrained {extractor} features)"
    )
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
        f"{', '.join(map(str, cfg.seeds))}; ECOS: R={cfg.n_clusters}, "
        + ", ".join(f"{k}={v}" for k, v in cfg.selection_options().items())
        + f", normalize={cfg.normalize}, coverage ε={cfg.epsilon}, δ={cfg.delta}; "
        f"model={cfg.model} ({data.n_classes(cfg.preset)} classes); "
        f"private set: {cfg.private_size or f'{cfg.private_fraction:.0%} of the client domain'}. "
        f"ε in a column header is the mean composed ε of the client's releases "
        f"(δ={cfg.delta}). Bold: best mean that beats every other method of its row at "
        f"p < 0.05 (paired Wilcoxon over the row's runs). Wall time {elapsed / 60:.1f} min."
    )
    print(title)
    print(header.replace("  \n", "\n"))
    print()
    stem = args.name or name or cfg.app
    if args.private_sizes or args.queries_sweep:
        print(format_param_sweep(records, sweep_key, epsilon=cfg.epsilon))
        if cfg.semi_supervised:
            print("Semi-supervised:")
            print(
                format_param_sweep(records, sweep_key, epsilon=cfg.epsilon, metric="semi_accuracy")
            )
        suffix = "private-size" if sweep_key == "private_size" else "queries"
        paths = write_sweep_reports(
            records, args.out, key=sweep_key, name=f"{stem}-{suffix}", title=title, header=header
        )
        print("wrote " + ", ".join(str(p) for p in paths.values()))
        print(f"finished in {elapsed:.0f} s")
        return 0
    print(format_table(records, epsilon=cfg.epsilon, markdown=False))
    if cfg.semi_supervised:
        print("Semi-supervised (self-training on the unlabeled rest of the pool):")
        print(format_table(records, epsilon=cfg.epsilon, markdown=False, metric="semi_accuracy"))
    print("Share of the selection from the client's domain (%):")
    print(format_share(records, cfg.epsilon))
    junk = format_share(records, cfg.epsilon, what="junk")
    if junk:
        print("Share of the selection from junk, not a digit (%):")
        print(junk)
    sw = format_sweep(records)
    if sw:
        print("ε sweep (ECOS average accuracy):")
        print(sw)
    print("Communication (bytes) and client compute:")
    print(format_communication(comms))
    paths = write_reports(records, comms, args.out, name=stem, title=title, header=header)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    print(f"finished in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
