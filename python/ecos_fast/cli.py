"""The ``ecos-fast`` command line: the cloud and the client as two separate roles.

The cloud and the client never share memory or a process: the only things that
pass between them are two exchange files (``ecos_fast.exchange``)::

    cloud$  ecos-fast sketch pool.npy -o centroids.safetensors --clusters 100
    client$ ecos-fast respond centroids.safetensors private.npy -o response.safetensors \\
                --epsilon 0.58 --delta 1e-5 --ledger ledger.sqlite --budget-epsilon 2 --cloud acme
    cloud$  ecos-fast select pool.npy centroids.safetensors response.safetensors \\
                --budget 1000 -o selected.npy --summary summary.json

Exit codes (also in ``ecos-fast --help`` and ``docs/cli.md``):

====  ==================================================================
0     success
1     internal error (a bug: please report it with the traceback)
2     usage error (unknown option, missing argument, bad option value), or
      a missing optional dependency (the message has the pip install line)
3     invalid input or a failed signature check (unreadable features, a
      corrupted or mismatched exchange file, one --verify-key refuses, a
      budget larger than the pool, ...)
4     privacy budget exhausted, or a release without noise offered to a
      ledger: the ledger refused the release
5     the privacy ledger cannot be used (locked past the busy timeout,
      corrupt, not a ledger, missing folder, read-only)
130   interrupted (Ctrl-C, SIGINT): a running kernel stops at its next check
      (a row block, a pick); no output file is left half-written
====  ==================================================================
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, NoReturn, cast

import click
import numpy as np

from ._cli_output import (
    COLUMN,
    EXIT_BUDGET,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_LEDGER,
    EXIT_OK,
    EXIT_USAGE,
    THREADS,
    State,
    check_index_output,
    check_outputs_apart,
    communication,
    describe_centroids,
    describe_response,
    describe_selection,
    finite_or_none,
    output_options,
    run_command,
    save_indices,
    sha256_file,
    steps,
    write_json,
)
from ._threads import default_threads
from .errors import (
    EcosWarning,
    ExchangeFileError,
    ExtractorUncheckedWarning,
    InvalidInputError,
    NoNoiseReleaseError,
)
from .feature_files import load_features

__all__ = [
    "EXIT_BUDGET",
    "EXIT_INPUT",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_LEDGER",
    "EXIT_OK",
    "EXIT_USAGE",
    "cli",
    "main",
    "run",
]

_EXIT_HELP = """\b
Exit codes:
  0  success
  1  internal error (a bug; please report it)
  2  usage error (unknown option, missing argument, bad value), or an optional
     dependency to install (pip install 'ecos-fast[extra]')
  3  invalid input or a failed signature check (features, exchange files, keys)
  4  privacy budget exhausted, or no noise with --ledger (the ledger refused)
  5  the ledger file cannot be used (locked, corrupt, not a ledger, read-only)
  130 interrupted (Ctrl-C); no partial output file is left
"""


class _Number(click.FloatRange):
    """A float option in a range that also refuses NaN (which compares false with every
    bound, so ``click.FloatRange`` lets it through) and, with ``finite=True``, ±inf:
    a usage error, exit 2, like any other value out of range."""

    def __init__(self, *args: Any, finite: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.finite = finite

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if math.isnan(rv) or (self.finite and math.isinf(rv)):
            kind = "a finite number" if self.finite else "a number (not NaN)"
            self.fail(f"{value!r} is not {kind}", param, ctx)
        return rv


# -- the command group ---------------------------------------------------------
class _Group(click.Group):
    """The verbs. ``demo``, ``reproduce`` (``ecos_fast.apps.reproduce``) and
    ``features`` (``ecos_fast._features_cli``) are click commands built by their modules
    when first asked for, so the other verbs start without importing them."""

    _lazy: ClassVar[dict[str, str]] = {
        "demo": "ecos_fast.demo",
        "reproduce": "ecos_fast.apps.reproduce",
        "features": "ecos_fast._features_cli",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and cmd_name in self._lazy:
            import importlib

            cmd = importlib.import_module(self._lazy[cmd_name]).command()
            self.add_command(cmd, cmd_name)
        return cmd


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=_EXIT_HELP,
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars, no remarks on stderr.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object on stdout (for scripts)."
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Worker threads for the verb that follows (same as its own --threads; "
    "default: ECOS_FAST_NUM_THREADS, else the CPUs available).",
)
@click.version_option(package_name="ecos-fast", prog_name="ecos-fast")
@click.pass_context
def cli(ctx: click.Context, quiet: bool, as_json: bool, threads: int | None) -> None:
    """ECOS: select cloud training data for a client without uploading its data.

    \b
    Cloud:   ecos-fast sketch POOL -o centroids.safetensors
    Client:  ecos-fast respond centroids.safetensors PRIVATE -o response.safetensors
             --epsilon E --delta D --ledger ledger.sqlite --budget-epsilon B
    Cloud:   ecos-fast select POOL centroids.safetensors response.safetensors
             --budget N -o selected.npy

    Features are .npy files (memory-mapped), Parquet files (--column names the
    feature column of a table that holds others), or folders of .npy/.parquet shards.
    """
    state = ctx.ensure_object(State)
    state.quiet = state.quiet or quiet
    state.json = state.json or as_json
    state.threads = threads if threads is not None else state.threads


# -- signatures: who wrote an exchange file -------------------------------------
_Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _key_option(flag: str, help_text: str) -> _Decorator:
    return click.option(
        flag,
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help=help_text,
    )


_SIGN_KEY = _key_option(
    "--sign-key",
    "Sign the written file with this private key (from `ecos-fast keygen`); the peer "
    "checks it with --verify-key and the .pub file.",
)


def _verify_key(what: str, whose: str) -> _Decorator:
    return _key_option(
        "--verify-key",
        f"Require {what} to be signed by this public key ({whose} .pub file), else exit 3. "
        "Without it an unsigned file is accepted with a remark: its checksum catches "
        "accidents, not edits.",
    )


def _signer(sign_key: Path | None) -> Any:
    """The private key, loaded before any work is done (a bad key fails first)."""
    from .signing import load_signing_key

    return None if sign_key is None else load_signing_key(sign_key)


def _verifier(verify_key: Path | None) -> Any:
    from .signing import load_verify_key

    return None if verify_key is None else load_verify_key(verify_key)


def _origin(state: State, path: Path, verifier: Any) -> dict[str, Any]:
    """After ``path`` loaded: its signer, and a one-line remark when it was not verified."""
    from .exchange import signature_of
    from .signing import describe

    signer = signature_of(path)
    if verifier is None:
        if signer is None:
            state.note(
                f"note: {path} is not signed: its checksum catches accidents, not edits by "
                "whoever handled it (--verify-key requires a signature)"
            )
        else:
            state.note(
                f"note: {path} is signed by {describe(signer)}, not verified (no --verify-key)"
            )
    return {"signed_by": signer, "verified": verifier is not None}


def _signed_by(signer: Any) -> str | None:
    from .signing import public_key_hex

    return None if signer is None else public_key_hex(signer)


_EXTRACTOR_FP = click.option(
    "--extractor-fingerprint",
    "extractor_fp",
    default=None,
    metavar="HEX",
    help="Fingerprint of the model that made the features (ecos_fast.features.extract); "
    "default: the one in the features' extractor.json sidecar, if there is one.",
)


def _extractor_fp(features: Path, given: str | None) -> tuple[str | None, str | None]:
    """The extractor fingerprint of a features path (option or sidecar) and its source."""
    from .errors import SketchMismatchError
    from .features import read_fingerprint, sidecar_path

    if given is not None and (len(given) != 64 or set(given) - set("0123456789abcdef")):
        raise click.BadParameter(
            f"{given!r} is not 64 lowercase hex digits", param_hint="'--extractor-fingerprint'"
        )
    carried = read_fingerprint(features)
    if given is not None:
        if carried is not None and carried != given:
            raise SketchMismatchError(
                f"--extractor-fingerprint {given[:16]}… but {sidecar_path(features)} says the "
                f"features come from extractor {carried[:16]}…"
            )
        return given, "--extractor-fingerprint"
    return carried, None if carried is None else str(sidecar_path(features))


# -- sketch (cloud) ------------------------------------------------------------
@cli.command()
@click.argument("pool", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Centroid file to write.",
)
@click.option(
    "--clusters",
    "-k",
    type=click.IntRange(min=1),
    default=None,
    show_default="100",
    help="R, the number of centroids (or --for-client).",
)
@click.option(
    "--for-client",
    "for_client",
    type=(
        click.IntRange(min=1),
        click.FloatRange(min=0, min_open=True),
        click.FloatRange(0, 1, min_open=True, max_open=True),
    ),
    default=None,
    metavar="N EPSILON DELTA",
    help="Choose R for a client of N private samples that will answer at (EPSILON, "
    "DELTA): ecos_fast.suggest_n_clusters, at most the pool size.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--max-iter", type=click.IntRange(min=1), default=25, show_default=True)
@click.option(
    "--normalize",
    type=click.Choice(["none", "l2"]),
    default="none",
    show_default=True,
    help="Feature transform before k-means; recorded in the file, applied by both roles.",
)
@COLUMN
@_SIGN_KEY
@_EXTRACTOR_FP
@THREADS
@output_options
@click.pass_obj
def sketch(
    state: State,
    pool: Path,
    column: str | None,
    output: Path,
    clusters: int | None,
    for_client: tuple[int, float, float] | None,
    seed: int,
    max_iter: int,
    normalize: str,
    threads: int | None,
    sign_key: Path | None,
    extractor_fp: str | None,
) -> None:
    """Cloud: k-means on the pool features, write the centroid file for the client.

    The centroids come from public data only: sending them costs no privacy. The
    extractor fingerprint (--extractor-fingerprint, or POOL's extractor.json
    sidecar) is recorded in the file, and the client's respond checks its own
    against it.
    """
    check_outputs_apart({"POOL": pool, "--sign-key": sign_key}, {"-o": output})
    from .exchange import save_centroids
    from .protocol import fit_centroids
    from .rule import suggest_n_clusters

    if clusters is not None and for_client is not None:
        raise click.UsageError("give --clusters or --for-client, not both")
    if for_client is not None:  # checked before the pool is read
        clusters = suggest_n_clusters(*for_client)
    signer = _signer(sign_key)
    extractor, extractor_source = _extractor_fp(pool, extractor_fp)
    with steps(state, 3, "sketch") as bar:
        x = load_features(pool, column=column, progress=state.progress)
        bar.update()
        if clusters is None:
            clusters = 100
        elif for_client is not None:
            clusters = min(clusters, int(x.shape[0]))
        cents = fit_centroids(
            x,
            clusters,
            seed=seed,
            max_iter=max_iter,
            normalize=None if normalize == "none" else "l2",
            n_threads=threads,
            extractor_fingerprint=extractor,
        )
        bar.update()
        save_centroids(cents, output, sign_key=signer)
        bar.update()
    size = output.stat().st_size
    state.result(
        {
            "command": "sketch",
            "output": str(output),
            "n_pool": cents.n_pool,
            "n_clusters": cents.n_clusters,
            "n_features": cents.n_features,
            "normalize": cents.normalize,
            "seed": seed,
            "fingerprint": cents.fingerprint,
            "extractor_fingerprint": extractor,
            "file_bytes": size,
            "signed_by": _signed_by(signer),
        },
        [
            (
                f"wrote {output}: {cents.n_clusters} centroids x {cents.n_features} features "
                f"from {cents.n_pool} pool rows ({size} bytes)"
            ),
            f"fingerprint {cents.fingerprint}",
            *(
                []
                if extractor is None
                else [f"extractor fingerprint {extractor} (from {extractor_source})"]
            ),
            *([] if signer is None else [f"signed by {_signed_by(signer)}"]),
        ],
    )


# -- respond (client) ----------------------------------------------------------
@cli.command()
@click.argument("centroids", type=click.Path(path_type=Path))
@click.argument("private", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Response file to write.",
)
@click.option(
    "--epsilon",
    type=_Number(min=0, min_open=True),
    required=True,
    help="Privacy parameter of this release, > 0 ('inf': no noise, no privacy).",
)
@click.option(
    "--delta",
    type=_Number(min=0, max=1, min_open=True, max_open=True),
    default=1e-5,
    show_default=True,
)
@click.option(
    "--relation",
    type=click.Choice(["add_remove", "replace_one"]),
    default="add_remove",
    show_default=True,
    help="Neighbouring relation: sensitivity 1 (add/remove) or sqrt(2) (replace one).",
)
@click.option(
    "--ledger",
    "ledger_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Privacy ledger (SQLite) recording every release; created if missing.",
)
@click.option(
    "--budget-epsilon",
    type=_Number(min=0),
    default=None,
    help="Refuse (exit 4) if the composed epsilon for this cloud would exceed this.",
)
@click.option(
    "--budget-delta",
    type=_Number(min=0, max=1, min_open=True, max_open=True),
    default=1e-5,
    show_default=True,
    help="The delta at which the ledger composes and enforces the budget.",
)
@click.option(
    "--cloud",
    default="default",
    show_default=True,
    help="Name of the cloud receiving the release; the ledger composes per cloud name.",
)
@click.option(
    "--accountant",
    type=click.Choice(["pld", "rdp"]),
    default="pld",
    show_default=True,
    help="dp-accounting accountant composing the ledger's releases.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=None,
    help="Seed the noise (reproducible tests only: whoever knows it can remove the noise).",
)
@click.option(
    "--neighbours",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Count each private sample at its k nearest centroids, 1/sqrt(k) at each "
    "(same sensitivity and noise; more signal for small clients or small epsilon).",
)
@COLUMN
@_SIGN_KEY
@_verify_key("the centroid file", "the cloud's")
@_EXTRACTOR_FP
@THREADS
@output_options
@click.pass_obj
def respond(
    state: State,
    centroids: Path,
    private: Path,
    column: str | None,
    output: Path,
    epsilon: float,
    delta: float,
    relation: str,
    ledger_path: Path | None,
    budget_epsilon: float | None,
    budget_delta: float,
    cloud: str,
    accountant: str,
    seed: int | None,
    neighbours: int,
    threads: int | None,
    sign_key: Path | None,
    verify_key: Path | None,
    extractor_fp: str | None,
) -> None:
    """Client: noisy centroid-coverage counts of the private features.

    If the centroids carry an extractor fingerprint and PRIVATE does too
    (--extractor-fingerprint, or its extractor.json sidecar), they must be equal,
    else exit 3 before anything is released; otherwise a remark says that
    nothing was checked.

    With --ledger, the release is checked against --budget-epsilon and recorded
    in one transaction before the noise is drawn; the response file is written
    only after the ledger has committed.

    Privacy: the response file is (epsilon, delta)-differentially private with
    respect to PRIVATE (Gaussian mechanism, L2 sensitivity 1 under add/remove-one);
    releases to the same cloud compose, and the ledger accounts them.
    """
    check_outputs_apart(
        {"CENTROIDS": centroids, "PRIVATE": private, "--sign-key": sign_key,
         "--verify-key": verify_key},
        {"-o": output, "--ledger": ledger_path},
    )  # fmt: skip
    from .exchange import load_centroids, save_response
    from .ledger import Ledger, respond_with_ledger
    from .protocol import check_neighbours
    from .protocol import respond as respond_api

    if budget_epsilon is not None and ledger_path is None:
        raise click.UsageError("--budget-epsilon needs --ledger PATH")
    if ledger_path is None:  # the ledger's options would be ignored: say so, not exit 0
        ctx = click.get_current_context()
        given = [
            f"--{name.replace('_', '-')}"
            for name in ("budget_delta", "cloud", "accountant")
            if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        ]
        if given:
            raise click.UsageError(f"{', '.join(given)}: the ledger's options need --ledger PATH")
    if ledger_path is not None and math.isinf(epsilon):
        raise NoNoiseReleaseError(
            f"--epsilon {epsilon} means no noise: the exact counts would be released; "
            f"the ledger {ledger_path} refuses such a release, with or without "
            "--budget-epsilon (drop --ledger for an upper-bound experiment)"
        )
    signer, verifier = _signer(sign_key), _verifier(verify_key)  # before the ledger is touched
    with steps(state, 4, "respond") as bar:
        cents = load_centroids(centroids, verify_key=verifier)
        origin = _origin(state, centroids, verifier)
        x = _load_private(state, private, cents, column)
        # Before the ledger file is opened.
        check_neighbours(
            neighbours, cents.n_clusters, what="--neighbours {k}", limit="the {n} centroids"
        )
        extractor_checked = _check_client_extractor(state, cents, private, extractor_fp)
        bar.update()
        rel = cast(Literal["add_remove", "replace_one"], relation)
        with warnings.catch_warnings():  # the remark above already said it, once
            warnings.simplefilter("ignore", ExtractorUncheckedWarning)
            if ledger_path is None:
                state.note("note: no --ledger given: this release is not accounted anywhere")
                response = respond_api(
                    x, cents, epsilon, delta, relation=rel, seed=seed, n_threads=threads,
                    neighbours=neighbours,
                )  # fmt: skip
                bar.update(2)
                total = None
            else:
                with Ledger(
                    ledger_path,
                    budget_epsilon=budget_epsilon,
                    delta=budget_delta,
                    accountant=accountant,
                ) as ledger:
                    bar.update()
                    # Check, record and commit before the answer leaves the process.
                    response = respond_with_ledger(
                        x,
                        cents,
                        epsilon,
                        delta,
                        ledger,
                        cloud=cloud,
                        relation=rel,
                        seed=seed,
                        n_threads=threads,
                        neighbours=neighbours,
                    )
                    bar.update()
                    total = ledger.last_total  # composed once, at the check
        save_response(response, output, sign_key=signer)
        bar.update()
    size = output.stat().st_size
    payload: dict[str, Any] = {
        "command": "respond",
        "output": str(output),
        "n_clusters": response.n_clusters,
        "n_private": int(x.shape[0]),
        "epsilon": finite_or_none(response.epsilon),
        "delta": response.delta,
        "sigma": response.sigma,
        "sensitivity": response.sensitivity,
        "relation": response.relation,
        "neighbours": response.neighbours,
        "centroids_fingerprint": response.centroids_fingerprint,
        "extractor_checked": extractor_checked,
        "centroids_signed_by": origin["signed_by"],
        "centroids_verified": origin["verified"],
        "signed_by": _signed_by(signer),
        "file_bytes": size,
        "ledger": None if ledger_path is None else str(ledger_path),
        "cloud": cloud,
        "total_epsilon": None if total is None else finite_or_none(total),
        "budget_epsilon": budget_epsilon,
        "budget_delta": budget_delta,
        "budget_relation": None if ledger_path is None else rel,
    }
    human = [
        (
            f"wrote {output}: {response.n_clusters} noisy counts of {x.shape[0]} private rows "
            f"(epsilon={response.epsilon:.4g}, delta={response.delta:.3g}, "
            f"sigma={response.sigma:.4g}; {size} bytes)"
        )
    ]
    if total is not None:
        budget = "no budget" if budget_epsilon is None else f"budget {budget_epsilon:.4g}"
        human.append(
            f"ledger {ledger_path}: total epsilon to cloud {cloud!r} is {total:.4g} at "
            f"delta={budget_delta:.3g} under {rel} neighbouring ({budget})"
        )
    state.result(payload, human)


def _load_private(state: State, path: Path, cents: Any, column: str | None) -> Any:
    """Private features from ``path``, as wide as the centroids (else the file is named)."""
    x = load_features(path, column=column, progress=state.progress)
    if x.shape[1] != cents.n_features:
        raise InvalidInputError(
            f"{path}: n_features={x.shape[1]} but the centroids have n_features={cents.n_features}"
        )
    return x


def _check_client_extractor(
    state: State, cents: Any, private: Path, extractor_fp: str | None
) -> bool:
    """The client's extractor against the centroids' (exit 3 on a mismatch), or a remark."""
    from .features import sidecar_path
    from .protocol import check_extractor

    client, _ = _extractor_fp(private, extractor_fp)
    cloud = cents.extractor_fingerprint
    if cloud is not None and client is not None:
        return check_extractor(cents, client)  # raises SketchMismatchError when they differ
    if cloud is None and client is None:
        why = "neither the centroids nor the private features carry an extractor fingerprint"
    elif cloud is None:
        why = "the centroids carry no extractor fingerprint"
    else:
        why = f"no {sidecar_path(private)} and no --extractor-fingerprint was given"
    state.note(f"note: extractor not checked: {why}")
    return False


# -- select (cloud) ------------------------------------------------------------
@cli.command()
@click.argument("pool", type=click.Path(path_type=Path))
@click.argument("centroids", type=click.Path(path_type=Path), required=False)
@click.argument("response", type=click.Path(path_type=Path), required=False)
@click.option("--budget", "-b", type=click.IntRange(min=1), required=True, help="Rows to select.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    callback=check_index_output,
    help="Selected pool row indices: .npy (int64), .txt (one per line) or .csv "
    "(header 'index', one per line); another extension is a usage error.",
)
@click.option(
    "--method",
    type=click.Choice(["ecos", "random", "kcenter"]),
    default="ecos",
    show_default=True,
    help="ecos needs CENTROIDS and RESPONSE; the baselines use neither.",
)
@click.option(
    "--threshold",
    type=_Number(min=0, finite=True),
    default=None,
    help="Cluster weights are max(estimate - threshold * sigma, 0); in units of sigma "
    "[default: ecos_fast.rule.DEFAULT_THRESHOLD].",
)
@click.option(
    "--low-signal",
    "low_signal",
    type=click.Choice(["spread", "keep"]),
    default=None,
    help="When the weights are no more than noise would give: spread the budget uniformly "
    "(the selection is Random's draw), or keep the weights [default: spread].",
)
@click.option(
    "--weights",
    type=click.Choice(["noisy", "posterior", "empirical-bayes"]),
    default=None,
    help="Estimate of each cluster's count: the noisy count, its posterior mean under "
    "the Gaussian noise with a flat prior on counts >= 0 (posterior), or with a prior "
    "fitted to the whole release (empirical-bayes). [default: the library's]",
)
@click.option(
    "--within",
    type=click.Choice(["neighbourhood", "kcenter", "nearest", "strata", "weighted-strata"]),
    default=None,
    help="Inside each cluster: K-Center over the members nearest the centroid "
    "(neighbourhood), over the whole cluster (kcenter), the nearest members, picks "
    "spread over k-means strata in proportion to their size (strata), or those strata "
    "over the members whose nearest centroids carry the most weight (weighted-strata). "
    "[default: the library's]",
)
@click.option(
    "--candidates",
    type=_Number(min=1, finite=True),
    default=None,
    help="--within neighbourhood or weighted-strata: the candidate set is this many "
    "times the quota. "
    "[default: the library's]",
)
@click.option(
    "--fallback",
    type=click.Choice(["raise", "random", "kcenter"]),
    default="raise",
    show_default=True,
    help="When every weight is zero: fail (exit 3), or select by a baseline.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seeds --method random, --fallback random and --within strata.",
)
@click.option(
    "--summary",
    "summary_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the summary (quotas, counts, bytes) as JSON to this file.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write a report (.html or .png; needs matplotlib).",
)
@click.option(
    "--true-counts-from",
    "true_from",
    type=click.Path(path_type=Path),
    default=None,
    help="Simulation only: private features whose true coverage the report shows.",
)
@_verify_key("the response", "the client's")
@THREADS
@output_options
@click.option(
    "--smooth",
    type=click.Choice(["none", "sure"]),
    default=None,
    help="sure: average each noisy count with its nearest centroids' at the bandwidth "
    "with the smallest Stein's unbiased risk estimate (post-processing, no privacy "
    "cost); none: the counts as released [default: the library's].",
)
@COLUMN
@click.pass_obj
def select(
    state: State,
    pool: Path,
    column: str | None,
    centroids: Path | None,
    response: Path | None,
    budget: int,
    output: Path,
    method: str,
    threshold: float | None,
    low_signal: str | None,
    weights: str | None,
    smooth: str | None,
    within: str | None,
    candidates: float | None,
    fallback: str,
    seed: int,
    summary_path: Path | None,
    report_path: Path | None,
    true_from: Path | None,
    threads: int | None,
    verify_key: Path | None,
) -> None:
    """Cloud: choose BUDGET pool rows for the client from its response.

    Uses only the client's (already private) response: by post-processing the
    selection costs no further privacy.
    """
    check_outputs_apart(
        {"POOL": pool, "CENTROIDS": centroids, "RESPONSE": response,
         "--true-counts-from": true_from, "--verify-key": verify_key},
        {"-o": output, "--summary": summary_path, "--report": report_path},
    )  # fmt: skip
    from . import baselines, selection
    from .exchange import load_centroids, load_response
    from .protocol import Sketch
    from .rule import (
        DEFAULT_CANDIDATES,
        DEFAULT_LOW_SIGNAL,
        DEFAULT_SMOOTH,
        DEFAULT_THRESHOLD,
        DEFAULT_WEIGHTS,
        DEFAULT_WITHIN,
        Smooth,
        Weights,
        Within,
    )

    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    low_signal = DEFAULT_LOW_SIGNAL if low_signal is None else low_signal
    weights = DEFAULT_WEIGHTS if weights is None else weights
    smooth = DEFAULT_SMOOTH if smooth is None else smooth
    within = DEFAULT_WITHIN if within is None else within
    candidates = DEFAULT_CANDIDATES if candidates is None else candidates

    if method == "ecos" and (centroids is None or response is None):
        raise click.UsageError("--method ecos needs CENTROIDS and RESPONSE")
    if method != "ecos":  # the rule's options would be ignored: say so, not exit 0
        ctx = click.get_current_context()
        rule_options = ("threshold", "low_signal", "weights", "smooth", "within", "candidates")
        given = [
            f"--{name.replace('_', '-')}"
            for name in (*rule_options, "fallback")
            if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        ]
        if given:
            raise click.UsageError(
                f"{', '.join(given)}: options of --method ecos's rule, not of --method {method}"
            )
    if response is not None and centroids is None:
        raise click.UsageError("RESPONSE needs CENTROIDS")
    if report_path is not None:
        if report_path.suffix.lower() not in (".html", ".htm", ".png"):
            raise click.UsageError(f"--report {report_path}: the name must end in .html or .png")
        from .report import require_matplotlib

        require_matplotlib()
    if true_from is not None and report_path is None:
        raise click.UsageError("--true-counts-from needs --report (it is drawn there only)")
    if true_from is not None and centroids is None:
        raise click.UsageError("--true-counts-from needs CENTROIDS")
    if verify_key is not None and response is None:
        raise click.UsageError("--verify-key checks RESPONSE, and none was given")
    verifier = _verifier(verify_key)
    with steps(state, 3, "select") as bar:
        cents = None if centroids is None else load_centroids(centroids)
        true_counts = None  # checked before anything is selected or written
        if true_from is not None and cents is not None:
            from .report import true_coverage

            true_counts = true_coverage(
                cents, _load_private(state, true_from, cents, column), n_threads=threads
            )
        resp = (
            None
            if response is None
            else load_response(response, centroids=cents, verify_key=verifier)
        )
        origin = None if response is None else _origin(state, response, verifier)
        sk = None if cents is None or resp is None else Sketch.join(cents, resp)
        x = load_features(pool, column=column, progress=state.progress)
        bar.update()
        if method == "ecos" and sk is not None:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", EcosWarning)
                sel = selection.select(
                    x,
                    sk,
                    budget,
                    threshold=threshold,
                    weights=cast(Weights, weights),
                    within=cast(Within, within),
                    candidates=candidates,
                    fallback=cast(Literal["raise", "random", "kcenter"], fallback),
                    low_signal=cast(Literal["spread", "keep"], low_signal),
                    smooth=cast(Smooth, smooth),
                    seed=seed,
                    n_threads=threads,
                )
            for w in caught:
                state.note(f"warning: {w.message}")
        elif method == "random":
            sel = baselines.select_random(x, budget, seed=seed)
        elif method == "kcenter":
            feats = x if cents is None else cents.transform(x, "pool")
            sel = baselines.select_kcenter(feats, budget, n_threads=threads)
        else:  # unreachable: click checks the choice, and ecos's files above
            raise click.UsageError(f"--method {method} cannot run with these arguments")
        bar.update()
        indices = np.asarray(sel.indices, dtype=np.int64)
        save_indices(output, indices)
        bar.update()

    comm = communication(centroids, response, cents)
    quotas = None if sel.quotas is None else np.asarray(sel.quotas)
    payload: dict[str, Any] = {
        "command": "select",
        "output": str(output),
        "method": sel.method,
        "budget": budget,
        "n_selected": sel.n_selected,
        "shortfall": sel.shortfall,
        "n_samples": int(x.shape[0]),
        "n_clusters": None if cents is None else cents.n_clusters,
        "quotas": quotas,
        "weights": None if sel.weights is None else np.asarray(sel.weights),
        "noisy_counts": None if resp is None else np.asarray(resp.noisy_counts),
        "epsilon": None if resp is None else finite_or_none(resp.epsilon),
        "delta": None if resp is None else resp.delta,
        "sigma": None if resp is None else resp.sigma,
        "threshold": threshold,
        "weights_from": weights if method == "ecos" else None,
        "within": within if method == "ecos" else None,
        "smooth": smooth if method == "ecos" else None,
        "smoothing_scale": sel.smoothing_scale if method == "ecos" else None,
        "candidates": candidates if method == "ecos" else None,
        "communication": comm,
        "indices_sha256": hashlib.sha256(indices.astype("<i8").tobytes()).hexdigest(),
        "response_signed_by": None if origin is None else origin["signed_by"],
        "response_verified": None if origin is None else origin["verified"],
    }
    if summary_path is not None:
        write_json(summary_path, payload)
    if report_path is not None:
        from .report import write_report

        feats = x if cents is None else cents.transform(x, "pool")
        write_report(
            report_path,
            feats,
            indices,
            summary=payload,
            noisy_counts=None if resp is None else np.asarray(resp.noisy_counts),
            true_counts=true_counts,
            quotas=quotas,
            seed=seed,
        )
        payload["report"] = str(report_path)
    human = describe_selection(payload, summary_path)
    state.result(payload, human)


# -- keygen --------------------------------------------------------------------
@cli.command()
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--force", is_flag=True, help="Replace existing key files.")
@output_options
@click.pass_obj
def keygen(state: State, path: Path, force: bool) -> None:
    """Either role: make an Ed25519 key pair to sign exchange files.

    PATH gets the private key (mode 0600: keep it secret; pass it to --sign-key),
    PATH.pub the public key (give it to the peer, who passes it to --verify-key).
    Existing files are not replaced without --force (exit 3).
    """
    from .signing import generate_key, load_verify_key, public_key_hex

    private, public = generate_key(path, overwrite=force)
    key = public_key_hex(load_verify_key(public))
    state.result(
        {"command": "keygen", "private_key": str(private), "public_key": str(public), "key": key},
        [
            f"wrote {private}: private key (mode 0600; keep it secret; --sign-key)",
            f"wrote {public}: public key {key} (give it to the peer; --verify-key)",
        ],
    )


# -- inspect -------------------------------------------------------------------
@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--centroids",
    type=click.Path(path_type=Path),
    default=None,
    help="For a response: also check that it answers these centroids.",
)
@_verify_key("FILE", "its writer's")
@output_options
@click.pass_obj
def inspect(state: State, file: Path, centroids: Path | None, verify_key: Path | None) -> None:
    """Show and verify a centroid or response file (exit 3 if it is invalid)."""
    from .exchange import file_kind, load_centroids, load_response

    verifier = _verifier(verify_key)

    if not file.exists():
        raise ExchangeFileError(f"{file}: no such file")
    kind = file_kind(file)
    payload: dict[str, Any] = {
        "command": "inspect",
        "file": str(file),
        "kind": kind,
        "valid": True,
        "file_bytes": file.stat().st_size,
        "sha256": sha256_file(file),
    }
    if kind == "centroids":
        if centroids is not None:  # it would check nothing: say so rather than exit 0
            raise click.UsageError(f"--centroids is for a response FILE; {file} is a centroid file")
        fields, human = describe_centroids(file, load_centroids(file, verify_key=verifier))
    else:
        cents = None if centroids is None else load_centroids(centroids)
        loaded = load_response(file, centroids=cents, verify_key=verifier)
        fields, human = describe_response(file, loaded, cents)
    origin = _origin(state, file, verifier)
    fields.update(signed_by=origin["signed_by"], signature_verified=origin["verified"])
    if origin["verified"]:
        human.append(f"  signature verified: signed by {origin['signed_by']}")
    payload.update(fields)
    state.result(payload, human)


# -- info ----------------------------------------------------------------------
@cli.command()
@output_options
@click.pass_obj
def info(state: State) -> None:
    """Version, compiled core build, threads and SIMD path."""
    from . import __version__, _core

    build = dict(_core.build_info())
    payload = {
        "command": "info",
        "version": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "threads": default_threads(),
        "core": build,
    }
    human = [
        f"ecos-fast {__version__} (Python {payload['python']}, NumPy {np.__version__})",
        f"threads: {payload['threads']} (ECOS_FAST_NUM_THREADS or the CPUs available)",
        *(f"core {k}: {v}" for k, v in sorted(build.items())),
    ]
    state.result(payload, human)


# -- ledger --------------------------------------------------------------------
@cli.command("ledger")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--cloud", default=None, help="Only this cloud (default: every cloud, and all).")
@click.option(
    "--delta",
    type=_Number(min=0, max=1, min_open=True, max_open=True),
    default=1e-5,
    show_default=True,
)
@click.option("--accountant", type=click.Choice(["pld", "rdp"]), default="pld", show_default=True)
@click.option(
    "--relation",
    type=click.Choice(["add_remove", "replace_one"]),
    default=None,
    help="Neighbouring relation the totals hold for (default: the one every listed "
    "release was recorded under; required when they differ).",
)
@output_options
@click.pass_obj
def ledger_cmd(
    state: State,
    path: Path,
    cloud: str | None,
    delta: float,
    accountant: str,
    relation: str | None,
) -> None:
    """Client: list the releases in a ledger and their composed epsilon.

    Reads the file only (an old ledger is listed as it is, not migrated).
    """
    from .ledger import Ledger

    if not path.exists():
        raise InvalidInputError(f"{path}: no such ledger")
    with Ledger(path, delta=delta, accountant=accountant, read_only=True) as ledger:
        rows = ledger.releases(cloud)
        kinds = sorted({r.relation for r in rows})
        if relation is None and len(kinds) > 1:
            raise click.UsageError(
                f"{path}: the releases were recorded under both neighbouring relations "
                "(add_remove and replace_one); pass --relation add_remove or "
                "--relation replace_one to say which the totals must hold for"
            )
        rel = relation if relation is not None else (kinds[0] if kinds else "add_remove")
        clouds = [cloud] if cloud is not None else ledger.clouds()
        per_cloud = {c: ledger.total_epsilon(cloud=c, relation=rel) for c in clouds}
        everything = ledger.total_epsilon(relation=rel) if cloud is None else per_cloud[cloud]
    payload = {
        "command": "ledger",
        "ledger": str(path),
        "delta": delta,
        "accountant": accountant,
        "relation": rel,
        "total_epsilon": finite_or_none(everything),
        "clouds": {c: finite_or_none(e) for c, e in per_cloud.items()},
        "releases": [dataclasses.asdict(r) for r in rows],
    }
    human = [
        f"{path}: {len(rows)} releases; epsilon at delta={delta:.3g} under {rel} "
        f"neighbouring ({accountant})"
    ]
    human += [f"  cloud {c!r}: {e:.4g}" for c, e in per_cloud.items()]
    if cloud is None and len(per_cloud) > 1:
        human.append(f"  all clouds together: {everything:.4g}")
    state.result(payload, human)


# -- demo, reproduce, features: built when first asked for (see _Group) ---------


# -- entry points --------------------------------------------------------------
def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Examples
    --------
    >>> from ecos_fast.cli import run
    >>> run(["--quiet", "info"])
    0
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:  # click < 8.2 exits 0 here, click >= 8.2 exits 2: one answer for both
        ctx = click.Context(cli, info_name="ecos-fast", **cli.context_settings)
        click.echo(cli.get_help(ctx), err=True)
        return EXIT_USAGE
    return run_command(cli, args, prog_name="ecos-fast")


def main() -> NoReturn:
    """The ``ecos-fast`` console script."""
    sys.exit(run())


if __name__ == "__main__":
    main()
