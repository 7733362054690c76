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

import contextlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

__all__ = ["SWEEP", "command", "main", "make_command"]

#: The coverage epsilons of the sweep (paper: 0.08 ... 1.23, plus no noise).
SWEEP: tuple[float, ...] = (0.1, 0.25, 0.58, 1.2, math.inf)

_TITLES = {
    "labeling": "Selective labeling",
    "compression": "Adaptive model compression",
    "client-labeling": "Automated client labeling",
}


def _floats(text: str) -> tuple[float, ...]:
    if not text.strip():  # --sweep '': no sweep, as the help says
        return ()
    return tuple(math.inf if t.strip() in ("inf", "∞") else float(t) for t in text.split(","))


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split(","))


class _List(click.ParamType):  # type: ignore[type-arg,unused-ignore]  # generic in click 8.2+
    """A comma-separated list of ints or floats ('inf' allowed for floats)."""

    def __init__(self, parse: Callable[[str], tuple[Any, ...]], what: str) -> None:
        self.parse = parse
        self.name = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):  # a default
            return value
        try:
            return self.parse(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of {self.name}", param, ctx)


_INTS = _List(_ints, "integers")
_FLOATS = _List(_floats, "numbers")


class _Clusters(click.ParamType):  # type: ignore[type-arg,unused-ignore]  # generic in click 8.2+
    """R: an integer >= 1, or 'auto' (None: suggested per release)."""

    name = "integer|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        if str(value).strip().lower() == "auto":
            return None
        try:
            r = int(str(value))
        except ValueError:
            self.fail(f"{value!r} is neither an integer nor 'auto'", param, ctx)
        if r < 1:
            self.fail(f"{r} is not >= 1", param, ctx)
        return r


_CLUSTERS = _Clusters()
_NEIGHBOURS = _Clusters()  # the same grammar: an integer >= 1, or 'auto' (None)


def _presets() -> tuple[str, ...]:
    from ecos_fast.datasets.digits import PRESETS

    return tuple(PRESETS)


class _Command(click.Command):
    """A click command that keeps the arguments it was given (for the report header)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta.setdefault("ecos_fast.raw_args", list(args))
        return super().parse_args(ctx, args)


def _check_name(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--name``: a file stem inside ``--out``, checked before any run (a slash used to
    fail only when the reports were written, after every run, or write outside --out)."""
    if value is not None and (value in ("", ".", "..") or any(c in value for c in "/\\\0")):
        raise click.BadParameter(
            f"{value!r} is not a file stem: no slashes, not empty, '.' or '..'"
        )
    return value


def _options(*, sweep_default: bool, semi_default: bool) -> list[Callable[[Any], Any]]:
    """The options shared by ``reproduce`` and ``demo``: those of the former argparse
    parser, with the same names and defaults."""
    from ecos_fast import rule
    from ecos_fast._cli_output import THREADS, output_options

    o = click.option
    return [
        o("--app", default="labeling", show_default=True,
          type=click.Choice(["labeling", "compression", "client-labeling"])),
        o("--domains", default=None, help="comma-separated client domains (default: all)"),
        o("--budgets", type=_INTS, default=(1000, 3000), show_default="1000,3000"),
        o("--seeds", type=_INTS, default=(1, 2, 3), show_default="1,2,3"),
        o("--methods", default="ecos,kcenter,random,local", show_default=True,
          help="subset of ecos,kcenter,random,local"),
        o("--epsilon", type=float, default=0.58, show_default=True, help="ECOS coverage epsilon"),
        o("--delta", type=float, default=1e-5, show_default=True),
        o("--sweep", type=_FLOATS, default=SWEEP if sweep_default else (),
          show_default="0.1,0.25,0.58,1.2,inf" if sweep_default else "none",
          help="extra ECOS epsilons, comma-separated ('inf' allowed); '' for none"),
        o("--no-sweep", is_flag=True, help="skip the epsilon sweep"),
        o("--n-clusters", type=_CLUSTERS, default="100", show_default=True,
          help="R, the number of centroids; 'auto': ecos_fast.suggest_n_clusters of the "
          "client's private size and each release's epsilon"),
        o("--threshold", type=float, default=None,
          help="weights max(v - threshold*sigma, 0) (default: the rule's)"),
        o("--within", default=None, type=click.Choice(list(rule.WITHIN)),
          help="within-cluster routine (default: the rule's)"),
        o("--candidates", type=float, default=None, help="candidate factor of neighbourhood and weighted-strata"),
        o("--weights", default=None, type=click.Choice(list(rule.WEIGHTS)),
          help="cluster weight rule (default: the rule's)"),
        o("--smooth", default=None, type=click.Choice(list(rule.SMOOTH)),
          help="'sure': smooth the noisy counts over the centroids' neighbourhoods at the "
          "bandwidth SURE picks (default: the rule's)"),
        o("--neighbours", type=_NEIGHBOURS, default="1", show_default=True,
          help="the client counts each sample at its k nearest centroids (ecos_fast.respond); "
          "'auto': ecos_fast.suggest_neighbours of its size, each release's epsilon and R"),
        o("--normalize", default="none", show_default=True, type=click.Choice(["none", "l2"])),
        o("--model", default="head", show_default=True,
          type=click.Choice(["head", "linear", "cnn"])),
        o("--semi-supervised/--no-semi-supervised", default=semi_default, show_default=True,
          help="labeling: also self-train on the unlabeled pool, reported beside"),
        o("--knn-epsilon", type=float, default=5.0, show_default=True,
          help="client-labeling: label queries' epsilon"),
        o("--queries", type=int, default=None,
          help="client-labeling: label queries (default: 1000 cap)"),
        o("--evaluate", default="test", show_default=True,
          type=click.Choice(["test", "validation"]),
          help="'validation': evaluate on 30% of the private set held out (for choosing R etc.)"),
        o("--preset", default="default", show_default=True, type=click.Choice(list(_presets()))),
        o("--data-seed", type=int, default=0, show_default=True, help="seed of the rendered data"),
        o("--extractor", default=None, help="feature extractor (default: the preset's)"),
        o("--private-size", type=int, default=None, help="client's private set size"),
        o("--private-sizes", type=_INTS, default=None,
          help="sweep the private set size, e.g. 50,100,300,1000 (accuracy vs size plot)"),
        o("--queries-sweep", type=_INTS, default=None,
          help="client-labeling: sweep the label-query budget, e.g. 250,1000,3000 "
          "(accuracy vs queries plot)"),
        THREADS,
        o("--device", default=None, help="torch device (default: cuda if available)"),
        o("--out", type=click.Path(path_type=Path), default=Path("out"), show_default=True,
          help="output folder"),
        o("--name", default=None, callback=_check_name,
          help="file stem of the reports in --out (default: the app)"),
        output_options,
    ]  # fmt: skip


def make_command(
    verb: str,
    *,
    sweep_default: bool = True,
    semi_default: bool = True,
    name: str | None = None,
    help_text: str | None = None,
    short_help: str | None = None,
) -> click.Command:
    """The click command ``ecos-fast VERB`` (``reproduce`` or ``demo``).

    ``--quiet`` (no progress or per-split log) and ``--json`` (the printed tables go
    to stderr, one JSON object to stdout) are the global options. ``--threads`` is the
    shared option; here it sets the torch CPU threads, and when it is not given torch
    runs on 1 thread, as ``reproduce`` always did (the published tables were made so).
    """

    def callback(**kwargs: Any) -> None:
        from ecos_fast._cli_output import State

        ctx = click.get_current_context()
        state = ctx.ensure_object(State)
        args = SimpleNamespace(**kwargs, quiet=state.quiet)
        argv = ctx.meta.get("ecos_fast.raw_args", [])
        command = " ".join([f"ecos-fast {verb}", *argv])
        ctx.exit(_run_json(state, verb, args, name=name, command=command))

    doc = __doc__ or ""
    cmd: click.Command = _Command(
        verb,
        callback=callback,
        help=help_text or doc.split("\n\n")[0].replace("``", ""),
        short_help=short_help,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    )
    for option in _options(sweep_default=sweep_default, semi_default=semi_default):
        cmd = option(cmd)
    return cmd


def command() -> click.Command:
    """``ecos-fast reproduce``."""
    return make_command(
        "reproduce",
        short_help="The paper's tables: --app labeling|compression|client-labeling.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ecos_fast.apps.reproduce``: ``ecos-fast reproduce`` with ``argv``
    (default ``sys.argv[1:]``); returns its exit status.

    It runs through :func:`ecos_fast._cli_output.run_command`, so every failure gets the command line's
    message and exit code (2 usage, 3 input, ...) rather than a traceback.
    """
    from ecos_fast._cli_output import run_command

    return run_command(
        command(),
        [*(sys.argv[1:] if argv is None else argv)],
        prog_name="python -m ecos_fast.apps.reproduce",
    )


def _run_json(
    state: Any, verb: str, args: SimpleNamespace, *, name: str | None, command: str
) -> int:
    """:func:`_run`; with ``--json`` its printed lines go to stderr and one JSON object
    (the command, the exit status, the files written, the wall time) to stdout."""
    if not state.json:
        return _run(args, name=name, command=command)[0]
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        code, paths = _run(args, name=name, command=command)
    payload = {
        "command": verb,
        "app": args.app,
        "exit_code": code,
        "files": [str(p) for p in paths],
        "seconds": round(time.perf_counter() - start, 3),
    }
    click.echo(json.dumps(payload, indent=2, sort_keys=True))
    return code


def _run(args: SimpleNamespace, *, name: str | None, command: str) -> tuple[int, list[Path]]:
    """The reproduction itself; returns the exit status and the files written."""
    from dataclasses import replace

    from ecos_fast._extras import missing_dependency
    from ecos_fast.datasets import _cache
    from ecos_fast.errors import EcosError

    # Usage errors first, before the heavy imports and any work.
    if args.private_sizes and args.queries_sweep:
        raise click.UsageError("--private-sizes and --queries-sweep cannot be combined")
    if args.queries_sweep and args.app != "client-labeling":
        raise click.UsageError("--queries-sweep needs --app client-labeling")
    ctx = click.get_current_context()
    given = {
        name
        for name in ("knn_epsilon", "queries", "semi_supervised")
        if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)
    }
    other = [f"--{n.replace('_', '-')}" for n in ("knn_epsilon", "queries") if n in given]
    if other and args.app != "client-labeling":  # they would be ignored: say so
        raise click.UsageError(f"{', '.join(other)}: options of --app client-labeling")
    if "semi_supervised" in given and args.semi_supervised and args.app != "labeling":
        raise click.UsageError("--semi-supervised needs --app labeling")

    try:
        # Every application trains torch models and plots its results: without torch
        # or matplotlib, say so before any work.
        import matplotlib  # noqa: F401
        import torch  # noqa: F401

        from . import data
        from .experiment import Communication, ExperimentConfig, RunRecord, run_experiment
        from .results import (
            format_communication,
            format_param_sweep,
            format_share,
            format_sweep,
            format_table,
            report_paths,
            write_reports,
            write_sweep_reports,
        )
    except ModuleNotFoundError as exc:
        err = missing_dependency(exc)
        if err is None:
            raise
        raise err from None

    args.threads = 1 if args.threads is None else args.threads

    sweep = () if args.no_sweep else tuple(args.sweep)
    try:  # every option value checked before any data is rendered or run trained
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
            smooth=args.smooth,
            neighbours=args.neighbours,
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
        sizes = [replace(cfg, private_size=size) for size in args.private_sizes or ()]
        query_runs = [replace(cfg, queries=q) for q in args.queries_sweep or ()]
    except EcosError as exc:  # an option's value: a usage error
        raise click.UsageError(str(exc)) from None
    try:  # the reports' folder, made now rather than after the runs
        Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.UsageError(f"--out {args.out}: cannot create the folder ({exc})") from None
    _cache.ensure_cache_dir()  # likewise the data and feature cache (exit 2 naming it)
    stem = args.name or name or cfg.app
    sweep_key = "private_size" if args.private_sizes else "query_budget"
    if args.private_sizes or args.queries_sweep:
        suffix = "private-size" if args.private_sizes else "queries"
        stem = f"{stem}-{suffix}"
    planned = report_paths(
        Path(args.out), stem, sweep=bool(args.private_sizes or args.queries_sweep)
    )
    for path in planned.values():  # a folder there would lose every run at the end
        if path.is_dir():
            raise click.UsageError(f"--out {args.out}: {path} is a folder; the report goes there")
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    start = time.perf_counter()
    records: list[RunRecord] = []
    comms: list[Communication] = []
    if args.private_sizes:
        for run_cfg in sizes:
            recs, _ = run_experiment(run_cfg, log=log)
            records += recs
    elif args.queries_sweep:
        for q, run_cfg in zip(args.queries_sweep, query_runs, strict=True):
            recs, _ = run_experiment(run_cfg, log=log)
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
    cmd = command
    where = (
        "test split"
        if cfg.evaluate == "test"
        else f"validation split ({cfg.validation_fraction:.0%} of the private set held out)"
    )
    header = (
        f"Command: `{cmd}`  \n"
        f"Accuracy (%) on the client domain's {where}, mean ± std over seeds "
        f"{', '.join(map(str, cfg.seeds))}; ECOS: "
        f"R={'suggest_n_clusters(n, ε, δ)' if cfg.n_clusters is None else cfg.n_clusters}, "
        + ", ".join(f"{k}={v}" for k, v in cfg.selection_options().items())
        + f", normalize={cfg.normalize}, coverage ε={cfg.epsilon}, δ={cfg.delta}, "
        f"neighbours={'suggest_neighbours(n, ε, δ, R)' if cfg.neighbours is None else cfg.neighbours}; "
        f"model={cfg.model} ({data.n_classes(cfg.preset)} classes); "
        f"private set: {cfg.private_size or f'{cfg.private_fraction:.0%} of the client domain'}. "
        f"ε in a column header is the mean composed ε of the client's releases "
        f"(δ={cfg.delta}). Bold: best mean that beats every other method of its row at "
        f"p < 0.05 (paired Wilcoxon over the row's runs). Wall time {elapsed / 60:.1f} min."
    )
    print(title)
    print(header.replace("  \n", "\n"))
    print()
    if args.private_sizes or args.queries_sweep:
        print(format_param_sweep(records, sweep_key, epsilon=cfg.epsilon))
        if cfg.semi_supervised:
            print("Semi-supervised:")
            print(
                format_param_sweep(records, sweep_key, epsilon=cfg.epsilon, metric="semi_accuracy")
            )
        paths = write_sweep_reports(
            records, args.out, key=sweep_key, name=stem, title=title, header=header
        )
        print("wrote " + ", ".join(str(p) for p in paths.values()))
        print(f"finished in {elapsed:.0f} s")
        return 0, list(paths.values())
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
    return 0, list(paths.values())


if __name__ == "__main__":
    raise SystemExit(main())
