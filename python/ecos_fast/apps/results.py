"""The results writer of the experiment: tables, CSV files and figures of its records.

:func:`ecos_fast.apps.experiment.run_experiment` returns one
:class:`~ecos_fast.apps.experiment.RunRecord` per run; this module summarises them
(mean ± std over seeds, per client domain and averaged), formats the paper-shaped
tables, writes the per-run and summary CSV files and draws the figure.
"""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomically
from .experiment import METHOD_NAMES, METHODS, Communication, RunRecord
from .stats import compare, format_comparisons, metric_value, significant_best

__all__ = [
    "SWEEPS",
    "format_communication",
    "format_param_sweep",
    "format_private_sweep",
    "format_share",
    "format_sweep",
    "format_table",
    "plot",
    "plot_param_sweep",
    "plot_private_sweep",
    "private_size_of",
    "read_csv",
    "report_paths",
    "summarise",
    "sweep_value",
    "write_csv",
    "write_private_sweep_reports",
    "write_reports",
    "write_summary_csv",
    "write_sweep_reports",
]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return float(a.mean()), std


def summarise(
    records: Sequence[RunRecord], epsilon: float | None = None, *, metric: str = "accuracy"
) -> dict[tuple[str, int, str], tuple[float, float, float]]:
    """``(domain or "average", budget, method) -> (mean %, std %, mean total epsilon)``.

    ``metric`` is ``"accuracy"`` or a fraction in ``RunRecord.extra`` (e.g.
    ``"semi_accuracy"``); runs without it are left out.

    ECOS rows are those at ``epsilon`` (default: the first ECOS epsilon seen). The
    average's std is over seeds of the domain-averaged accuracy.
    """
    if epsilon is None:
        ecos = [r.epsilon for r in records if r.method == "ecos"]
        epsilon = ecos[0] if ecos else 0.0
    keep = [
        r
        for r in records
        if (r.method != "ecos" or r.epsilon == epsilon) and math.isfinite(metric_value(r, metric))
    ]
    out: dict[tuple[str, int, str], tuple[float, float, float]] = {}
    groups: dict[tuple[str, int, str], list[RunRecord]] = {}
    for r in keep:
        groups.setdefault((r.domain, r.budget, r.method), []).append(r)
    for key, rs in groups.items():
        m, s = _mean_std([metric_value(r, metric) for r in rs])
        out[key] = (m, s, float(np.mean([r.total_epsilon for r in rs])))
    # average over domains, per seed
    by_bm: dict[tuple[int, str], dict[int, list[float]]] = {}
    eps_bm: dict[tuple[int, str], list[float]] = {}
    for r in keep:
        by_bm.setdefault((r.budget, r.method), {}).setdefault(r.seed, []).append(
            metric_value(r, metric)
        )
        eps_bm.setdefault((r.budget, r.method), []).append(r.total_epsilon)
    for (b, meth), per_seed in by_bm.items():
        m, s = _mean_std([float(np.mean(v)) for v in per_seed.values()])
        out[("average", b, meth)] = (m, s, float(np.mean(eps_bm[(b, meth)])))
    return out


def _fmt_eps(e: float) -> str:
    if math.isinf(e):
        return "∞"
    return f"{e:.2f}"


def format_table(
    records: Sequence[RunRecord],
    *,
    epsilon: float | None = None,
    markdown: bool = True,
    metric: str = "accuracy",
) -> str:
    """The paper-shaped table: per budget, domains x methods, ``mean ± std`` (%).

    Under each budget's table, one line per other method: ECOS's paired wins out of
    the shared runs and the Wilcoxon p-value (:mod:`.stats`). In Markdown a cell is
    bold only when its method has the row's best mean and beats every other method
    of the row with p < 0.05 (:func:`.stats.significant_best`); a best mean alone is
    not bold.
    """
    if epsilon is None:
        ecos = [r.epsilon for r in records if r.method == "ecos"]
        epsilon = ecos[0] if ecos else 0.0
    summ = summarise(records, epsilon, metric=metric)
    methods = [m for m in METHODS if any(r.method == m for r in records)]
    domains = [*list(dict.fromkeys(r.domain for r in records)), "average"]
    budgets = sorted({r.budget for r in records})
    lines: list[str] = []
    for b in budgets:
        eps_cells = []
        for m in methods:
            e = summ.get(("average", b, m), (math.nan, math.nan, 0.0))[2]
            eps_cells.append(f"{METHOD_NAMES[m]} (ε={_fmt_eps(e)})")
        header = [f"B={b}", *eps_cells]
        rows: list[list[str]] = []
        for d in domains:
            cells = [d]
            best = significant_best(
                records,
                methods,
                budget=b,
                domain=None if d == "average" else d,
                metric=metric,
                epsilon=epsilon,
            )
            for m in methods:
                if (d, b, m) not in summ:
                    cells.append("–")
                    continue
                mean, std, _ = summ[(d, b, m)]
                cell = f"{mean:.1f} ± {std:.1f}"
                if markdown and m == best:
                    cell = f"**{cell}**"
                cells.append(cell)
            rows.append(cells)
        if markdown:
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join(["---"] + ["---:"] * len(methods)) + "|")
            lines += ["| " + " | ".join(r) + " |" for r in rows]
        else:
            widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
            lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
            lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.append("")
        budget_records = [r for r in records if r.budget == b]
        paired = format_comparisons(budget_records, metric=metric, epsilon=epsilon)
        if paired:
            if markdown:
                lines += [f"- {line}" for line in paired.splitlines()]
            else:
                lines += paired.splitlines()
            lines.append("")
    return "\n".join(lines)


def format_sweep(records: Sequence[RunRecord]) -> str:
    """Markdown table of ECOS average accuracy against the coverage epsilon, per budget."""
    ecos = [r for r in records if r.method == "ecos"]
    eps = sorted({r.epsilon for r in ecos})
    budgets = sorted({r.budget for r in ecos})
    if len(eps) < 2:
        return ""
    lines = ["| ε (coverage) | " + " | ".join(f"B={b}" for b in budgets) + " |"]
    lines.append("|---|" + "---:|" * len(budgets))
    for e in eps:
        summ = summarise(records, e)
        cells = []
        for b in budgets:
            m, s, _ = summ.get(("average", b, "ecos"), (math.nan, math.nan, 0.0))
            cells.append(f"{m:.1f} ± {s:.1f}")
        lines.append(f"| {_fmt_eps(e)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_communication(comms: Sequence[Communication]) -> str:
    """Markdown table of bytes exchanged and client compute per client domain."""
    lines = [
        (
            "| client | ECOS bytes (R·d down + R up) | upload client data | download pool "
            "| client compute \\|D_p\\|·R·d |"
        ),
        "|---|---:|---:|---:|---:|",
    ]
    for c in comms:
        lines.append(
            f"| {c.domain} | {c.ecos_bytes:.3g} | {c.upload_bytes:.3g} | "
            f"{c.download_bytes:.3g} | {c.client_madds:.3g} |"
        )
    return "\n".join(lines) + "\n"


def _share(record: RunRecord, what: str) -> float:
    if what == "client":
        return record.client_share
    return float(record.extra.get(f"{what}_share", math.nan))


def format_share(
    records: Sequence[RunRecord], epsilon: float | None = None, *, what: str = "client"
) -> str:
    """Markdown table: share (%) of the selection drawn from the client's own domain.

    ``what="junk"``: the share drawn from the pool's junk ("not a digit") rows, for
    presets that have them (``""`` when no run records one).
    """
    if what != "client" and not any(f"{what}_share" in r.extra for r in records):
        return ""
    if epsilon is None:
        ecos = [r.epsilon for r in records if r.method == "ecos"]
        epsilon = ecos[0] if ecos else 0.0
    keep = [
        r
        for r in records
        if r.method != "local"
        and (r.method != "ecos" or r.epsilon == epsilon)
        and math.isfinite(_share(r, what))
    ]
    methods = [m for m in METHODS if m != "local" and any(r.method == m for r in keep)]
    budgets = sorted({r.budget for r in keep})
    domains = list(dict.fromkeys(r.domain for r in keep))
    cols = [f"{METHOD_NAMES[m]} B={b}" for b in budgets for m in methods]
    lines = ["| client | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for d in [*domains, "average"]:
        cells = []
        for b in budgets:
            for m in methods:
                v = [
                    _share(r, what)
                    for r in keep
                    if (r.budget, r.method) == (b, m) and d in (r.domain, "average")
                ]
                cells.append(f"{100 * float(np.mean(v)):.1f}" if v else "–")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: The parameters a sweep can vary, as ``RunRecord.extra`` keys: the table's column
#: label, the figure's axis label, and the baselines ECOS is paired against at each
#: value (Local for the client's private set size, where the crossover is; the pool
#: baselines for the label-query budget of client labeling).
SWEEPS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "private_size": ("private size", "client's private set size", ("local",)),
    "query_budget": ("label queries", "label queries the client answers", ("random", "kcenter")),
}


def sweep_value(record: RunRecord, key: str) -> int | None:
    """The value of the swept parameter ``key`` (see :data:`SWEEPS`) of a run, else ``None``."""
    v = record.extra.get(key)
    return None if v is None else int(v)


def private_size_of(record: RunRecord) -> int | None:
    """The client's private set size of a run of the private-size sweep, else ``None``."""
    return sweep_value(record, "private_size")


def format_param_sweep(
    records: Sequence[RunRecord],
    key: str,
    *,
    epsilon: float | None = None,
    metric: str = "accuracy",
) -> str:
    """Markdown table: average accuracy against the swept parameter ``key``.

    One row per value, one column per budget and method (mean ± std over seeds of the
    domain average), then, per value and budget, the paired comparison of ECOS against
    each baseline :data:`SWEEPS` names for ``key`` (present in the records).
    """
    label, _, versus = SWEEPS[key]
    values = sorted({v for r in records if (v := sweep_value(r, key)) is not None})
    if not values:
        return ""
    methods = [m for m in METHODS if any(r.method == m for r in records)]
    budgets = sorted({r.budget for r in records})
    cols = [f"{METHOD_NAMES[m]} B={b}" for b in budgets for m in methods]
    lines = [f"| {label} | " + " | ".join(cols) + " |", "|---:|" + "---:|" * len(cols)]
    notes: list[str] = []
    for v in values:
        sub = [r for r in records if sweep_value(r, key) == v]
        summ = summarise(sub, epsilon, metric=metric)
        cells = []
        for b in budgets:
            for m in methods:
                mean, std, _ = summ.get(("average", b, m), (math.nan, math.nan, 0.0))
                cells.append(f"{mean:.1f} ± {std:.1f}")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
        for other in [m for m in versus if m in methods and "ecos" in methods]:
            for b in budgets:
                c = compare(sub, "ecos", other, metric=metric, epsilon=epsilon, budget=b)
                notes.append(f"- {label} {v}, B={b}: {c.format()}")
    return "\n".join([*lines, "", *notes]) + "\n"


def format_private_sweep(
    records: Sequence[RunRecord], *, epsilon: float | None = None, metric: str = "accuracy"
) -> str:
    """:func:`format_param_sweep` over the client's private set size, ECOS against
    Local: where ECOS stops winning is the crossover."""
    return format_param_sweep(records, "private_size", epsilon=epsilon, metric=metric)


def plot_param_sweep(
    records: Sequence[RunRecord],
    path: Path,
    title: str,
    key: str,
    *,
    metric: str = "accuracy",
) -> None:
    """Average accuracy against the swept parameter ``key`` (log x), every method per
    budget (Local, budget-independent, once)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = sorted({v for r in records if (v := sweep_value(r, key)) is not None})
    budgets = sorted({r.budget for r in records})
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in [m for m in METHODS if any(r.method == m for r in records)]:
        for b in budgets if m != "local" else budgets[:1]:
            ys, es = [], []
            for v in values:
                summ = summarise([r for r in records if sweep_value(r, key) == v], metric=metric)
                mean, std, _ = summ.get(("average", b, m), (math.nan, math.nan, 0.0))
                ys.append(mean)
                es.append(std)
            name = METHOD_NAMES[m] if m == "local" else f"{METHOD_NAMES[m]} B={b}"
            ax.errorbar(values, ys, yerr=es, marker="o", capsize=2, label=name)
    ax.set_xscale("log")
    ax.set_xticks(values)
    ax.set_xticklabels([str(v) for v in values])
    ax.set_xlabel(SWEEPS[key][1])
    ax.set_ylabel("average test accuracy (%)")
    ax.set_title(textwrap.fill(title, 70), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def plot_private_sweep(
    records: Sequence[RunRecord], path: Path, title: str, *, metric: str = "accuracy"
) -> None:
    """Average accuracy against the private set size (log x), ECOS per budget and Local."""
    plot_param_sweep(records, path, title, "private_size", metric=metric)


def _save_figure(fig: Any, path: Path) -> None:
    """A matplotlib figure as PNG, through the package's one atomic writer."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    write_atomically(path, buf.getvalue())


def read_csv(path: Path) -> list[RunRecord]:
    """Read back what :func:`write_csv` wrote."""
    out: list[RunRecord] = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            out.append(
                RunRecord(
                    app=row["app"],
                    domain=row["domain"],
                    seed=int(row["seed"]),
                    budget=int(row["budget"]),
                    method=row["method"],
                    epsilon=float(row["epsilon"]),
                    total_epsilon=float(row["total_epsilon"]),
                    accuracy=float(row["accuracy"]),
                    n_selected=int(row["n_selected"]),
                    client_share=float(row["client_share"]),
                    seconds=float(row["seconds"]),
                    extra={k: float(v) for k, v in json.loads(row["extra"]).items()},
                )
            )
    return out


def write_csv(records: Sequence[RunRecord], path: Path) -> None:
    """Every run, one row (extra numbers as JSON)."""
    names = [f for f in RunRecord.__dataclass_fields__ if f != "extra"]
    fh = io.StringIO(newline="")
    w = csv.writer(fh)
    w.writerow([*names, "extra"])
    for r in records:
        d = asdict(r)
        w.writerow([d[n] for n in names] + [json.dumps(d["extra"], sort_keys=True)])
    write_atomically(path, fh.getvalue().encode("utf-8"))


def write_summary_csv(records: Sequence[RunRecord], path: Path) -> None:
    """The table's numbers: domain, budget, method, epsilon, mean, std (%)."""
    ecos_eps = sorted({r.epsilon for r in records if r.method == "ecos"}) or [0.0]
    fh = io.StringIO(newline="")
    w = csv.writer(fh)
    w.writerow(["domain", "budget", "method", "epsilon", "total_epsilon", "mean", "std"])
    seen: set[tuple[str, int, str, float]] = set()
    for e in ecos_eps:
        for (d, b, m), (mean, std, te) in sorted(summarise(records, e).items()):
            key = (d, b, m, e if m == "ecos" else 0.0)
            if key in seen:
                continue
            seen.add(key)
            w.writerow([d, b, m, key[3], f"{te:.4g}", f"{mean:.2f}", f"{std:.2f}"])
    write_atomically(path, fh.getvalue().encode("utf-8"))


def plot(records: Sequence[RunRecord], path: Path, title: str) -> None:
    """Grouped bars (domain x method) per budget, plus the epsilon sweep if present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summ = summarise(records)
    methods = [m for m in METHODS if any(r.method == m for r in records)]
    domains = [*list(dict.fromkeys(r.domain for r in records)), "average"]
    budgets = sorted({r.budget for r in records})
    sweep = len({r.epsilon for r in records if r.method == "ecos"}) > 1
    ncols = len(budgets) + (1 if sweep else 0)
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4), squeeze=False)
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(domains))
    for ax, b in zip(axes[0], budgets, strict=False):
        for i, m in enumerate(methods):
            vals = [summ.get((d, b, m), (math.nan, 0.0, 0.0)) for d in domains]
            ax.bar(
                x + i * width,
                [v[0] for v in vals],
                width,
                yerr=[v[1] for v in vals],
                label=METHOD_NAMES[m],
                capsize=2,
            )
        ax.set_xticks(x + width * (len(methods) - 1) / 2)
        ax.set_xticklabels(domains, rotation=30, ha="right")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{title}, B={b}")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    if sweep:
        ax = axes[0][-1]
        eps = sorted({r.epsilon for r in records if r.method == "ecos"})
        xs = [
            e if math.isfinite(e) else 2 * max([v for v in eps if math.isfinite(v)] or [1])
            for e in eps
        ]
        for b in budgets:
            ys = [summarise(records, e).get(("average", b, "ecos"), (math.nan,))[0] for e in eps]
            ax.plot(xs, ys, marker="o", label=f"ECOS B={b}")
            for m in ("random", "kcenter"):
                v = summ.get(("average", b, m))
                if v is not None:
                    ax.axhline(v[0], ls="--", lw=0.8, color="grey")
        ax.set_xscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([_fmt_eps(e) for e in eps])
        ax.set_xlabel("coverage ε (δ=1e-5)")
        ax.set_ylabel("average accuracy (%)")
        ax.set_title("ε sweep (dashed: Random, K-Center)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def report_paths(out_dir: Path, name: str, *, sweep: bool = False) -> dict[str, Path]:
    """The files :func:`write_reports` (``sweep=False``) or :func:`write_sweep_reports`
    writes in ``out_dir``, by kind; ``ecos-fast reproduce`` checks them before any run."""
    kinds = ("markdown", "runs", "png") if sweep else ("markdown", "csv", "runs", "png")
    suffix = {"markdown": ".md", "csv": ".csv", "runs": "-runs.csv", "png": ".png"}
    return {kind: out_dir / f"{name}{suffix[kind]}" for kind in kinds}


def write_reports(
    records: Sequence[RunRecord],
    comms: Sequence[Communication],
    out_dir: Path,
    *,
    name: str,
    title: str,
    header: str = "",
) -> dict[str, Path]:
    """Write ``{name}.md``, ``{name}.csv`` (summary), ``{name}-runs.csv`` and ``{name}.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = report_paths(out_dir, name)
    md = [f"# {title}", ""]
    if header:
        md += [header, ""]
    md += [format_table(records)]
    if any("semi_accuracy" in r.extra for r in records):
        md += [
            "## Semi-supervised: self-training on the unlabeled rest of the pool (%)",
            "",
            format_table(records, metric="semi_accuracy"),
        ]
    sweep = format_sweep(records)
    if sweep:
        md += ["## ε sweep (ECOS, average over domains)", "", sweep]
    md += [
        "## Share of the selection drawn from the client's own domain (%)",
        "",
        format_share(records),
    ]
    junk = format_share(records, what="junk")
    if junk:
        md += ["## Share of the selection drawn from junk, not a digit (%)", "", junk]
    if comms:
        md += ["## Communication and client compute", "", format_communication(comms)]
    write_atomically(paths["markdown"], "\n".join(md).encode("utf-8"))
    write_summary_csv(records, paths["csv"])
    write_csv(records, paths["runs"])
    plot(records, paths["png"], title)
    return paths


def write_sweep_reports(
    records: Sequence[RunRecord],
    out_dir: Path,
    *,
    key: str,
    name: str,
    title: str,
    header: str = "",
) -> dict[str, Path]:
    """Write ``{name}.md`` (the table and the paired comparisons per value),
    ``{name}-runs.csv`` and ``{name}.png`` (accuracy against the swept ``key``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = report_paths(out_dir, name, sweep=True)
    md = [f"# {title}", ""]
    if header:
        md += [header, ""]
    md += [format_param_sweep(records, key)]
    if any("semi_accuracy" in r.extra for r in records):
        md += ["## Semi-supervised", "", format_param_sweep(records, key, metric="semi_accuracy")]
    write_atomically(paths["markdown"], "\n".join(md).encode("utf-8"))
    write_csv(records, paths["runs"])
    plot_param_sweep(records, paths["png"], title, key)
    return paths


def write_private_sweep_reports(
    records: Sequence[RunRecord], out_dir: Path, *, name: str, title: str, header: str = ""
) -> dict[str, Path]:
    """:func:`write_sweep_reports` over the client's private set size (the crossover)."""
    return write_sweep_reports(
        records, out_dir, key="private_size", name=name, title=title, header=header
    )
