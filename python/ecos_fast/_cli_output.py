"""What the ``ecos-fast`` commands print and write, apart from the exchange files.

One :class:`State` per run carries ``--quiet`` / ``--json``: every command ends
with one :meth:`State.result` (a JSON object on stdout, or readable lines), side
remarks go to stderr through :meth:`State.note`, and progress bars appear only
on a terminal. The command's own output files (selected indices, summaries) are
written atomically, like the exchange files.

:func:`run_command` runs a click command (the ``ecos-fast`` group, or one verb for the
``python -m`` entry points) and turns every failure into a message and an exit code
(:func:`exit_code_of`); :func:`check_outputs_apart` keeps a verb from writing over its
own inputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click
import numpy as np
from numpy.typing import NDArray

from ._extras import missing_dependency
from .atomic import write_atomically
from .errors import (
    EcosError,
    EcosWarning,
    EnvironmentSettingError,
    LedgerError,
    MissingDependencyError,
    PrivacyBudgetExceededError,
    PrivacyParameterError,
    code_for,
)

if TYPE_CHECKING:
    from .protocol import Centroids, Response

__all__ = [
    "COLUMN",
    "EXIT_BUDGET",
    "EXIT_CODES",
    "EXIT_INPUT",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_LEDGER",
    "EXIT_OK",
    "EXIT_USAGE",
    "INDEX_FORMATS",
    "INTERRUPTED_MESSAGE",
    "THREADS",
    "State",
    "check_index_output",
    "check_outputs_apart",
    "communication",
    "describe_centroids",
    "describe_response",
    "describe_selection",
    "error_json",
    "exit_code_of",
    "finite_or_none",
    "json_default",
    "output_options",
    "run_command",
    "save_indices",
    "save_npy",
    "sha256_file",
    "steps",
    "warnings_as_remarks",
    "write_json",
]


EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_BUDGET = 4
EXIT_LEDGER = 5
EXIT_INTERRUPTED = 130

INTERRUPTED_MESSAGE = (
    "interrupted (Ctrl-C): stopped; no file was left half-written "
    "(an output not finished was not written)"
)


@dataclass
class State:
    """Global options, shared by every verb through ``click``'s ``ctx.obj``."""

    quiet: bool = False
    json: bool = False
    #: The group's ``--threads`` (``ecos-fast --threads N VERB``); a verb's own wins.
    threads: int | None = None
    messages: list[str] = field(default_factory=list)

    @property
    def progress(self) -> bool:
        """Progress bars only for a person watching a terminal."""
        return not self.quiet and not self.json and sys.stderr.isatty()

    def note(self, message: str) -> None:
        """A side remark for a person (stderr); silenced by ``--quiet``."""
        self.messages.append(message)
        if not self.quiet:
            click.echo(message, err=True)

    def result(self, payload: dict[str, Any], human: Sequence[str]) -> None:
        """The verb's result: JSON on stdout with ``--json``, else readable lines."""
        if self.json:
            if self.messages:
                payload = {**payload, "messages": list(self.messages)}
            click.echo(json.dumps(payload, indent=2, sort_keys=True, default=json_default))
        elif not self.quiet:
            for line in human:
                click.echo(line)


def error_json(state: State, kind: str, message: str, code: int) -> int:
    """With ``--json``, print the error as one JSON object; return ``code``."""
    if state.json:
        click.echo(
            json.dumps({"error": {"type": kind, "message": message, "exit_code": code}}, indent=2)
        )
    return code


def json_default(obj: Any) -> Any:
    """``json.dumps``'s fallback for NumPy arrays and scalars and paths."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def finite_or_none(x: float) -> float | None:
    """JSON has no inf: report it as null (the human output says 'inf')."""
    return x if math.isfinite(x) else None


@contextmanager
def steps(state: State, total: int, desc: str) -> Iterator[Any]:
    """A step-level progress bar on a TTY, a no-op object otherwise.

    On a TTY the kernels run inside also get a bar each (``ecos_fast._progress``):
    k-means counts its Lloyd iterations (to ``--max-iter``; it may stop sooner when it
    converges), K-Center its picks.
    """
    if not state.progress:

        class _Null:
            def update(self, n: int = 1) -> None:
                pass

            def set_postfix_str(self, s: str) -> None:
                pass

        yield _Null()
        return
    from tqdm import tqdm  # type: ignore[import-untyped]

    from ._progress import report_progress

    bar = tqdm(total=total, desc=desc, unit="step", leave=False, file=sys.stderr)
    # One more bar per kernel (k-means iterations, K-Center picks), under the steps.
    kernel_bars: dict[str, Any] = {}

    def on_kernel(what: str, done: int, total: int) -> None:
        kb = kernel_bars.get(what)
        if kb is None or kb.n > done:  # a new run of the same kernel
            if kb is not None:
                kb.close()
            kb = kernel_bars[what] = tqdm(
                total=total, desc=what, unit="step", leave=False, file=sys.stderr, position=1
            )
        kb.update(done - kb.n)

    try:
        with report_progress(on_kernel):
            yield bar
    finally:
        for kb in kernel_bars.values():
            kb.close()
        bar.close()


def _set_flag(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        setattr(ctx.ensure_object(State), str(param.name), True)


def output_options(f: Any) -> Any:
    """``--quiet`` and ``--json`` after the verb too (``ecos-fast info --json``)."""
    f = click.option(
        "--json",
        "json",
        is_flag=True,
        expose_value=False,
        callback=_set_flag,
        help="Print one JSON object on stdout (for scripts).",
    )(f)
    return click.option(
        "--quiet",
        "-q",
        "quiet",
        is_flag=True,
        expose_value=False,
        callback=_set_flag,
        help="No progress bars, no remarks on stderr.",
    )(f)


def _cap_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """``--threads`` (or ``ECOS_FAST_NUM_THREADS``) above the cap: one remark, the cap."""
    from ._threads import ENV_VAR, claim_cap_message, env_threads, max_threads

    if value is None:
        value = ctx.ensure_object(State).threads
    source, n = ("--threads", value) if value is not None else (ENV_VAR, env_threads())
    if n is None:
        return None
    message = claim_cap_message(source, n)
    if message is not None:
        ctx.ensure_object(State).note(f"warning: {message}")
    return value if value is None else min(value, max_threads())


THREADS = click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    callback=_cap_threads,
    help="Worker threads (default: ECOS_FAST_NUM_THREADS, else the CPUs available; "
    "at most 4 per available CPU).",
)


COLUMN = click.option(
    "--column",
    metavar="NAME",
    default=None,
    help="Parquet features: the column that holds them (default: the only column if it "
    "holds lists, else every column, one feature each).",
)


def communication(
    centroids: Path | None, response: Path | None, cents: Any
) -> dict[str, int | None]:
    """Bytes of the two exchange files, and of the numbers they carry."""
    down = None if centroids is None else centroids.stat().st_size
    up = None if response is None else response.stat().st_size
    return {
        "download_bytes": down,
        "upload_bytes": up,
        "total_bytes": (down or 0) + (up or 0),
        # The numbers themselves: R*d float32 down, R float64 up.
        "download_payload_bytes": None
        if cents is None
        else cents.n_clusters * cents.n_features * 4,
        "upload_payload_bytes": None if response is None or cents is None else cents.n_clusters * 8,
    }


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)  # also through a link
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_outputs_apart(
    inputs: Mapping[str, Path | None], outputs: Mapping[str, Path | None]
) -> None:
    """Before any work: no output is an input (the same file, also through a link) or a
    ``.npy``/``.parquet`` file inside an input folder (the pool would gain a shard), and
    no two outputs are one file. Writing any of them would destroy what it replaced."""
    outs = [(name, path) for name, path in outputs.items() if path is not None]
    for i, (name, out) in enumerate(outs):
        for in_name, src in inputs.items():
            if src is None:
                continue
            if _same_file(out, src):
                raise click.UsageError(
                    f"{name} {out} is also {in_name}: writing it would destroy the input"
                )
            shard = out.suffix in (".npy", ".parquet")  # a folder's such files are its rows
            if shard and src.is_dir() and out.resolve().is_relative_to(src.resolve()):
                raise click.UsageError(
                    f"{name} {out} is inside {in_name} {src}: writing it there would destroy "
                    "the input (it would become one of the folder's shards)"
                )
        for other, path in outs[i + 1 :]:
            if _same_file(out, path):
                raise click.UsageError(
                    f"{other} {path} is also {name}: writing one would destroy the other"
                )


def save_npy(path: Path, array: NDArray[Any]) -> None:
    """Write ``array`` as ``.npy`` (no pickle), atomically."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    write_atomically(path, buf.getvalue())


#: What ``select -o`` writes, by the name's extension (any case).
INDEX_FORMATS = {
    ".npy": "NPY, int64, no pickle (numpy.load)",
    ".txt": "text, one row index per line",
    ".csv": "CSV with the header line 'index', then one row index per line",
}


def check_index_output(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    """``-o``'s callback: the extension says the format; another one is a usage error."""
    if value.suffix.lower() not in INDEX_FORMATS:
        names = ", ".join(INDEX_FORMATS)
        raise click.BadParameter(
            f"{str(value)!r}: the name says what is written; use one ending in {names}",
            ctx=ctx,
            param=param,
        )
    return value


def save_indices(path: Path, indices: NDArray[np.int64]) -> None:
    """Write selected row indices in the format of ``path``'s extension, atomically."""
    kind = path.suffix.lower()
    if kind == ".npy":
        save_npy(path, indices)
        return
    lines = [str(int(i)) for i in indices]
    if kind == ".csv":
        lines.insert(0, "index")
    elif kind != ".txt":
        raise ValueError(f"{path}: no index format for {kind!r}")  # check_index_output first
    write_atomically(path, ("\n".join(lines) + "\n").encode("ascii"))


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented, key-sorted JSON, atomically."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=json_default) + "\n"
    write_atomically(path, text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def describe_centroids(path: Path, c: Centroids) -> tuple[dict[str, Any], list[str]]:
    """``inspect``'s fields and lines for a verified centroids file."""
    fields = {
        "n_clusters": c.n_clusters,
        "n_features": c.n_features,
        "n_pool": c.n_pool,
        "seed": c.seed,
        "normalize": c.normalize,
        "fingerprint": c.fingerprint,
        "extractor_fingerprint": c.extractor_fingerprint,
    }
    human = [
        f"{path}: valid centroids file",
        (
            f"  {c.n_clusters} centroids x {c.n_features} features (float32), "
            f"from {c.n_pool} pool rows, seed {c.seed}, normalize {c.normalize}"
        ),
        f"  fingerprint {c.fingerprint}",
        f"  extractor fingerprint {c.extractor_fingerprint or 'none recorded'}",
    ]
    return fields, human


def describe_response(
    path: Path, r: Response, matched: Centroids | None
) -> tuple[dict[str, Any], list[str]]:
    """``inspect``'s fields and lines for a verified response (``matched``: it answers them)."""
    total = float(np.asarray(r.noisy_counts).sum())
    fields = {
        "n_clusters": r.n_clusters,
        "epsilon": finite_or_none(r.epsilon),
        "delta": r.delta,
        "sigma": r.sigma,
        "sensitivity": r.sensitivity,
        "relation": r.relation,
        "mechanism": r.mechanism,
        "centroids_fingerprint": r.centroids_fingerprint,
        "noisy_counts_sum": total,
        "matches_centroids": None if matched is None else True,
    }
    human = [
        f"{path}: valid response file",
        (
            f"  {r.n_clusters} noisy counts (sum {total:.1f}); mechanism {r.mechanism}, "
            f"epsilon={r.epsilon:.4g}, delta={r.delta:.3g}, sigma={r.sigma:.4g}, "
            f"sensitivity={r.sensitivity:.4g} ({r.relation})"
        ),
        f"  answers centroids {r.centroids_fingerprint}"
        + ("" if matched is None else " (matches the given centroids)"),
    ]
    return fields, human


def describe_selection(payload: dict[str, Any], summary: Path | None) -> list[str]:
    """``select``'s readable lines, from its JSON payload."""
    human = [
        f"wrote {payload['output']}: {payload['n_selected']} of budget {payload['budget']} "
        f"pool rows by {payload['method']}"
        + (f" (shortfall {payload['shortfall']})" if payload["shortfall"] else "")
    ]
    quotas = payload["quotas"]
    if quotas is not None:
        nz = int((quotas > 0).sum())
        human.append(f"quotas: {nz} of {quotas.shape[0]} clusters used, largest {quotas.max()}")
    comm = payload["communication"]
    if comm["total_bytes"]:
        human.append(
            f"communication: {comm['download_bytes']} bytes to the client, "
            f"{comm['upload_bytes']} bytes back ({comm['total_bytes']} in all)"
        )
    if summary is not None:
        human.append(f"summary: {summary}")
    if "report" in payload:
        human.append(f"report: {payload['report']}")
    return human


# -- running a command: exit codes and error handling ---------------------------
#: Error class -> exit status, first match wins (see the table in ``--help``).
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (LedgerError, EXIT_LEDGER),
    (PrivacyBudgetExceededError, EXIT_BUDGET),
    # Privacy parameters reach the CLI only as options (--epsilon, --delta, ...; a
    # response file's own are ExchangeFileError): one out of range is a usage error.
    (PrivacyParameterError, EXIT_USAGE),
    # An optional dependency to install (the message has the pip line).
    (MissingDependencyError, EXIT_USAGE),
    # ECOS_FAST_NUM_THREADS=abc / -1 / 0, an unusable cache folder: a setting, like an option.
    (EnvironmentSettingError, EXIT_USAGE),
    (EcosError, EXIT_INPUT),
)


def exit_code_of(exc: BaseException) -> int:
    """The exit status of an error raised under a verb (see the table in ``--help``)."""
    return code_for(exc, EXIT_CODES, EXIT_INTERNAL)


@contextlib.contextmanager
def warnings_as_remarks(state: State) -> Iterator[None]:
    """ecos-fast's own warnings, raised anywhere under a verb, as ``warning: ...`` remarks.

    Python's default display prints the warning's source file and line (``cli.py:938:
    ThreadsCappedWarning: ...`` plus the code line) on stderr, ignores ``--quiet`` and
    leaves it out of ``--json``'s ``messages``. Other libraries' warnings keep Python's
    display.
    """
    with warnings.catch_warnings():  # restores showwarning on exit
        shown = warnings.showwarning

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            if issubclass(category, EcosWarning):
                state.note(f"warning: {message}")
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def run_command(command: click.Command, args: Sequence[str], *, prog_name: str) -> int:
    """Run ``command`` (the ``ecos-fast`` group, or one verb for ``python -m``) on
    ``args``; return its exit status. Every failure becomes a message on stderr (and
    with ``--json`` one JSON object) and an exit code from the table in ``--help``:
    a traceback (exit 1) only for a bug."""
    args = list(args)
    state = State()
    try:
        with warnings_as_remarks(state):
            # Without standalone mode, click returns ctx.exit(code)'s code instead of
            # raising Exit (reproduce and demo end that way): it is the exit status.
            code = command.main(args=args, prog_name=prog_name, obj=state, standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool) and code != EXIT_OK:
            return code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        # Ctrl-C (SIGINT): the kernels stop at their next check (ecos_fast._progress);
        # every file is written atomically, so none is left half-written.
        message = INTERRUPTED_MESSAGE
        click.echo(message, err=True)
        return error_json(state, "KeyboardInterrupt", message, EXIT_INTERRUPTED)
    except ModuleNotFoundError as exc:
        missing = missing_dependency(exc)
        if missing is None:
            raise
        click.echo(f"error: {missing}", err=True)
        return error_json(state, type(missing).__name__, str(missing), EXIT_USAGE)
    except click.UsageError as exc:
        exc.show()
        # An unknown command fails before the group's callback has read --json.
        state.json = state.json or "--json" in args
        return error_json(state, "UsageError", exc.format_message(), EXIT_USAGE)
    except click.ClickException as exc:
        exc.show()
        return error_json(state, type(exc).__name__, exc.format_message(), EXIT_INTERNAL)
    except (EcosError, OSError) as exc:
        code = EXIT_INPUT if isinstance(exc, OSError) else exit_code_of(exc)
        click.echo(f"error: {exc}", err=True)
        return error_json(state, type(exc).__name__, str(exc), code)
    return EXIT_OK
