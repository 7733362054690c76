"""Flower apps for ECOS: a ClientApp per client, a ServerApp for the cloud (issue 15).

One round is one Flower ``query`` message per client: its content holds the centroid file
bytes (``RecordDict({"ecos": ConfigRecord({"centroids": <bytes>})})``, the exchange file
format), the reply holds the response file bytes under ``"response"``. A client that
refuses (budget exhausted, extractor mismatch, bad or badly signed centroids) replies with
a Flower :class:`flwr.app.Error` and releases nothing.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from .._extras import install_line
from ..atomic import write_atomically
from ..errors import (
    EcosError,
    ExchangeFileError,
    FederationError,
    InvalidInputError,
    InvalidTypeError,
    PrivacyBudgetExceededError,
    SignatureError,
    SketchMismatchError,
    code_for,
)
from ..protocol import Centroids, Response, Sketch
from ._roles import ClientConfig, accept, answer, centroids_to_bytes, union_response

try:
    from flwr.app import ConfigRecord, Context, Error, Message, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
except ModuleNotFoundError as exc:  # pragma: no cover - exercised without the extra
    from ..errors import MissingDependencyError

    raise MissingDependencyError(
        f"ecos_fast.flower needs flwr, which is not installed: {install_line('flower')}"
    ) from exc

__all__ = [
    "ERROR_BAD_CENTROIDS",
    "ERROR_BUDGET",
    "ERROR_EXTRACTOR",
    "ERROR_OTHER",
    "ERROR_SIGNATURE",
    "REFUSAL_REASONS",
    "FederationError",
    "GridLike",
    "RoundResult",
    "ServerConfig",
    "make_client_app",
    "make_server_app",
    "run_round",
]

log = logging.getLogger("ecos_fast.flower")

#: Error codes of a client's refusal (Flower's Error.code).
ERROR_BUDGET = 4001
ERROR_EXTRACTOR = 4002
ERROR_BAD_CENTROIDS = 4003
ERROR_SIGNATURE = 4004
ERROR_OTHER = 4099

RECORD = "ecos"
#: Seconds between two polls for the replies (Flower's own send_and_receive waits 3 s).
POLL_SECONDS = 0.25

# FederationError lives in ecos_fast.errors; importing it from here keeps working.


#: The reason sent with each refusal code: fixed and data-independent. The exception's own
#: message may hold private numbers (the private features' shape, the composed epsilon, the
#: budget) and local paths, so it stays on the client (logged there).
REFUSAL_REASONS = {
    ERROR_BUDGET: "this client's privacy budget refuses the release",
    ERROR_EXTRACTOR: (
        "the centroids do not match this client's features (their extractor or their width)"
    ),
    ERROR_BAD_CENTROIDS: "the centroid message is not a valid centroid file",
    ERROR_SIGNATURE: "the centroids are not signed by the cloud key this client trusts",
    ERROR_OTHER: "this client cannot answer (the reason is in the client's log)",
}


#: Error class -> refusal code, first match wins (SketchMismatchError before its base).
_REFUSAL_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (PrivacyBudgetExceededError, ERROR_BUDGET),
    (SignatureError, ERROR_SIGNATURE),
    (SketchMismatchError, ERROR_EXTRACTOR),
    (ExchangeFileError, ERROR_BAD_CENTROIDS),
)


def _refusal(exc: BaseException) -> Error:
    """The Flower error reply for ``exc``: its code and the code's fixed reason only."""
    code = code_for(exc, _REFUSAL_CODES, ERROR_OTHER)
    return Error(code=code, reason=REFUSAL_REASONS[code])


def make_client_app(config_for: Callable[[Context], ClientConfig]) -> ClientApp:
    """A ClientApp answering ECOS queries; ``config_for(context)`` gives this node's config.

    In simulation ``context.node_config["partition-id"]`` tells the nodes apart; on a real
    SuperNode, pass ``--node-config`` and read it there.
    """
    app = ClientApp()

    @app.query()
    def _query(msg: Message, context: Context) -> Message:
        try:
            cents = msg.content[RECORD]["centroids"]
            data = answer(cents, config_for(context))
        except (EcosError, KeyError, TypeError) as exc:
            error = _refusal(exc)  # the full message stays here, in the client's log
            log.warning("refused (code %s): %s: %s", error.code, type(exc).__name__, exc)
            return Message(error, reply_to=msg)
        return Message(RecordDict({RECORD: ConfigRecord({"response": data})}), reply_to=msg)

    return app


@dataclass
class ServerConfig:
    """The cloud's round.

    Attributes
    ----------
    pool : path or array-like
        The public pool features.
    clusters, seed : int
        For :func:`ecos_fast.fit_centroids` (the same as ``ecos-fast sketch``).
    budget : int
        Rows to select (per client, or once for the federation).
    mode : {"per_client", "federation"}
    min_clients : int
        Clients to wait for, and usable responses needed; fewer raise FederationError.
    timeout : float
        Seconds to wait for the nodes to connect, and for the replies: finite, >= 0.
    output : path, optional
        Folder for ``selected_<node>.npy`` (or ``selected_union.npy``), each accepted
        ``response_<node>.safetensors``, the ``centroids.safetensors`` sent, and ``round.json``.
    select_kwargs : dict
        More keyword arguments for :func:`ecos_fast.select`.
    centroids : Centroids, optional
        Use these instead of sketching the pool.
    backend : {"local", "ray"}
        Where the sketch and the selection run (``backend`` of :func:`ecos_fast.fit_centroids`
        and :func:`ecos_fast.select`). Ray's k-means seeds on a gathered sample, so it
        needs ``init_sample``; with the same ``init_sample`` both backends give the same
        centroids and selections.
    init_sample : int, optional
        ``init_sample`` of :func:`ecos_fast.fit_centroids` (the CLI's ``sketch`` uses None).
    sign_key : path or Ed25519PrivateKey, optional
        The cloud's private key: the centroid bytes sent are signed with it (clients
        that hold the public key refuse anything else).
    client_keys : sequence of paths or Ed25519PublicKeys, optional
        The clients' public keys: a reply must be signed by one of them, else it is
        dropped (``not signed by a known client key``). A list even for one key (a str
        is refused); every key is loaded before the round (KeyFileError).
    """

    pool: Any
    clusters: int
    budget: int
    seed: int = 0
    mode: Literal["per_client", "federation"] = "per_client"
    min_clients: int = 1
    timeout: float = 60.0
    output: str | Path | None = None
    select_kwargs: dict[str, Any] = field(default_factory=dict)
    centroids: Centroids | None = None
    backend: Literal["local", "ray"] = "local"
    init_sample: int | None = None
    sign_key: Any = None
    client_keys: Sequence[Any] = ()

    def __post_init__(self) -> None:
        _check_server_config(self)


#: select()'s options a round's select_kwargs may set (run_round sets seed and backend).
def _select_options() -> frozenset[str]:
    import inspect

    from ..selection import select

    params = inspect.signature(select).parameters.values()
    kw_only = (p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)
    return frozenset(kw_only) - {"seed", "backend"}


def _check_server_config(cfg: ServerConfig) -> None:
    """What needs no pool, no file and no client: refused before anything is computed."""
    from .._validation import (
        check_budget,
        check_choice,
        check_int,
        check_nonneg_float,
        check_seed,
    )

    check_nonneg_float(cfg.timeout, "timeout")  # nan would wait for ever
    check_choice(cfg.mode, "mode", ("per_client", "federation"))
    check_choice(cfg.backend, "backend", ("local", "ray"))
    check_int(cfg.clusters, "clusters", low=1)
    check_budget(cfg.budget, sys.maxsize)  # its type and sign; the pool size in run_round
    check_seed(cfg.seed)
    check_int(cfg.min_clients, "min_clients", low=0)
    if cfg.init_sample is not None:
        check_int(cfg.init_sample, "init_sample", low=1)
    if not isinstance(cfg.select_kwargs, Mapping):
        raise InvalidTypeError(
            f"select_kwargs must be a dict of ecos_fast.select options, got "
            f"{type(cfg.select_kwargs).__name__}"
        )
    allowed = _select_options()
    unknown = sorted(str(k) for k in cfg.select_kwargs if k not in allowed)
    if unknown:
        raise InvalidInputError(
            f"select_kwargs has {', '.join(map(repr, unknown))}, not options of "
            f"ecos_fast.select that a round may set (one of {', '.join(sorted(allowed))}; "
            "seed and backend are the config's own)"
        )
    keys = cfg.client_keys
    if isinstance(keys, (str, bytes, os.PathLike)) or not isinstance(keys, Iterable):
        raise InvalidTypeError(
            f"client_keys must be a list of the clients' public keys (paths or "
            f"Ed25519PublicKeys), got {type(keys).__name__} {keys!r}; for one key, [{keys!r}]"
        )
    if cfg.centroids is not None and not isinstance(cfg.centroids, Centroids):
        raise InvalidTypeError(
            f"centroids must be Centroids or None, got {type(cfg.centroids).__name__}"
        )


def _check_output(output: str | Path) -> None:
    """``output`` is a folder, or can be made one: no file in the way, writable."""
    out = Path(output)
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                what = "is" if p == out else f"is under {p}, which is"
                raise InvalidInputError(f"output={str(output)!r} {what} a file, not a folder")
            if not os.access(p, os.W_OK | os.X_OK):
                raise InvalidInputError(
                    f"output={str(output)!r}: the folder {p} is not writable here"
                )
            return


def _check_against_pool(cfg: ServerConfig, x: np.ndarray) -> None:
    """What depends on the pool and the files: refused before any client is queried."""
    from .._validation import check_budget, check_int

    n = int(x.shape[0]) if x.ndim >= 1 else 0
    check_budget(cfg.budget, n)
    if cfg.centroids is None:
        check_int(cfg.clusters, "clusters", low=1, high=n)
    elif x.ndim == 2 and cfg.centroids.n_features != x.shape[1]:
        raise InvalidInputError(
            f"the centroids have n_features={cfg.centroids.n_features} but the pool has "
            f"n_features={x.shape[1]}"
        )
    if cfg.output is not None:
        _check_output(cfg.output)


@dataclass
class RoundResult:
    """What the server app produced: selections by node id (or ``"union"``), drops, sizes."""

    selections: dict[str, np.ndarray] = field(default_factory=dict)
    responses: dict[str, Response] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    #: With ``client_keys``: the public key (hex) that signed each accepted response.
    signers: dict[str, str] = field(default_factory=dict)
    bytes_sent: int = 0
    bytes_received: int = 0
    seconds: float = 0.0
    #: Wall seconds of each step: sketch, waiting for nodes, send and receive, select.
    timings: dict[str, float] = field(default_factory=dict)


class GridLike(Protocol):
    """What a round needs of Flower's :class:`flwr.serverapp.Grid` (tests pass a stand-in)."""

    def get_node_ids(self) -> Iterable[int]: ...

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]: ...

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]: ...


def _load_pool(pool: Any) -> np.ndarray:
    if isinstance(pool, (str, Path)):
        from ..feature_files import load_features

        return np.asarray(load_features(pool))
    return np.asarray(pool)


def _wait_for_nodes(grid: GridLike, n: int, timeout: float) -> list[int]:
    end = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= n or time.monotonic() > end:
            return nodes
        time.sleep(0.2)


def _send_and_receive(
    grid: GridLike, messages: list[Message], timeout: float
) -> dict[int, Message]:
    """Push, then poll every :data:`POLL_SECONDS` until every node replied or ``timeout``.

    Flower's ``Grid.send_and_receive`` sleeps 3 s between polls; a round is one message
    per node, so its replies are worth fetching as soon as they are there.
    """
    pushed = zip(grid.push_messages(messages), messages, strict=True)
    # By the message each reply answers: Flower's own error replies (a reply lost on the
    # way) come from the SuperLink's node id, not the client's.
    node_of = {mid: m.metadata.dst_node_id for mid, m in pushed if mid}
    ids = set(node_of)
    end = time.monotonic() + timeout
    replies: dict[int, Message] = {}
    while ids:
        for m in grid.pull_messages(sorted(ids)):
            mid = m.metadata.reply_to_message_id
            if mid in ids:
                ids.discard(mid)
                replies[node_of[mid]] = m
        if not ids or time.monotonic() > end:
            break
        time.sleep(POLL_SECONDS)
    return replies


def _accept_signed(
    data: object, cents: Centroids, keys: Sequence[Any]
) -> tuple[Response, str | None]:
    """The reply as a Response and, with ``keys``, the hex public key among them that signed it."""
    if not keys:
        return accept(data, cents), None
    from ..signing import public_key_hex

    for key in keys:  # loaded before the round: only a signature can fail here
        try:
            return accept(data, cents, verify_key=key), public_key_hex(key)
        except SignatureError:
            continue
    raise SignatureError(f"not signed by a known client key (one of {len(keys)})")


def _duplicate_of(
    data: bytes, resp: Response, signer: str | None, released: dict[str, bytes], result: RoundResult
) -> str | None:
    """Why this reply repeats one accepted before (same bytes, counts or signer), or None."""
    for other, other_data in released.items():
        if other_data == data:
            return f"duplicate reply: the same bytes as node {other}'s (a replay); counted once"
        if np.array_equal(result.responses[other].noisy_counts, resp.noisy_counts):
            return f"duplicate reply: the same noisy counts as node {other}'s; counted once"
        if signer is not None and result.signers.get(other) == signer:
            return (
                f"duplicate signer: the key that signed node {other}'s reply signed this one "
                "too (one client behind two nodes); counted once"
            )
    return None


def run_round(grid: GridLike, cfg: ServerConfig, result: RoundResult) -> RoundResult:
    """One ECOS round over ``grid``: sketch, send, collect, select; fills ``result``."""
    from ..protocol import fit_centroids
    from ..selection import select

    t0 = time.perf_counter()
    _check_server_config(cfg)  # again: a ServerConfig's fields may change after it is built
    x = _load_pool(cfg.pool)
    _check_against_pool(cfg, x)
    from ..signing import load_verify_key

    client_keys = [load_verify_key(k) for k in cfg.client_keys]  # a bad one: KeyFileError now
    cents = cfg.centroids or fit_centroids(
        x, cfg.clusters, seed=cfg.seed, backend=cfg.backend, init_sample=cfg.init_sample
    )
    payload = centroids_to_bytes(cents, sign_key=cfg.sign_key)
    t1 = time.perf_counter()
    nodes = _wait_for_nodes(grid, cfg.min_clients, cfg.timeout)
    if len(nodes) < cfg.min_clients:  # nobody is asked to release what cannot be used
        raise FederationError(
            f"{len(nodes)} nodes connected within {cfg.timeout} s but "
            f"min_clients={cfg.min_clients}; no client was queried"
        )
    t2 = time.perf_counter()
    messages = [
        Message(
            RecordDict({RECORD: ConfigRecord({"centroids": payload})}),
            dst_node_id=node,
            message_type="query",
        )
        for node in nodes
    ]
    result.bytes_sent = len(payload) * len(nodes)
    replies = _send_and_receive(grid, messages, cfg.timeout)
    t3 = time.perf_counter()
    released: dict[str, bytes] = {}
    for node in nodes:
        key = str(node)
        reply = replies.get(node)
        if reply is None:
            result.dropped[key] = f"no reply within {cfg.timeout} s"
        elif reply.has_error():
            result.dropped[key] = f"refused (code {reply.error.code}): {reply.error.reason}"
        else:
            try:
                data = reply.content[RECORD]["response"]
                if not isinstance(data, (bytes, bytearray)):
                    raise ExchangeFileError(
                        f"the reply holds {type(data).__name__}, not the response file's bytes"
                    )
                result.bytes_received += len(data)
                resp, signer = _accept_signed(data, cents, client_keys)
                if cfg.mode == "federation":  # a sum: each release may count once only
                    twin = _duplicate_of(bytes(data), resp, signer, released, result)
                    if twin is not None:
                        result.dropped[key] = twin
                        log.warning("client %s dropped: %s", key, twin)
                        continue
                result.responses[key] = resp
                released[key] = bytes(data)
                if signer is not None:
                    result.signers[key] = signer
            except SketchMismatchError as exc:
                result.dropped[key] = f"answers other centroids: {exc}"
            except SignatureError as exc:
                result.dropped[key] = f"bad signature: {exc}"
            except (EcosError, KeyError, TypeError) as exc:
                result.dropped[key] = f"garbage reply: {type(exc).__name__}: {exc}"
        if key in result.dropped:
            log.warning("client %s dropped: %s", key, result.dropped[key])
    if len(result.responses) < cfg.min_clients:
        raise FederationError(
            f"{len(result.responses)} usable responses but min_clients={cfg.min_clients}; "
            f"dropped: {result.dropped}"
        )
    if cfg.mode == "federation":
        union = union_response(list(result.responses.values()))
        groups = {"union": union}
    else:
        groups = dict(result.responses)
    for key, resp in groups.items():
        sel = select(
            x,
            Sketch.join(cents, resp),
            cfg.budget,
            seed=cfg.seed,
            backend=cfg.backend,
            **cfg.select_kwargs,
        )
        result.selections[key] = np.asarray(sel.indices)
    t4 = time.perf_counter()
    result.seconds = t4 - t0
    result.timings = {"sketch": t1 - t0, "nodes": t2 - t1, "exchange": t3 - t2, "select": t4 - t3}
    if cfg.output is not None:
        out = Path(cfg.output)
        out.mkdir(parents=True, exist_ok=True)
        for key, idx in result.selections.items():
            np.save(out / f"selected_{key}.npy", idx)
        for key, data in released.items():  # what each client released, byte for byte
            write_atomically(out / f"response_{key}.safetensors", data)
        write_atomically(out / "centroids.safetensors", payload)  # what was sent
        summary = {
            "mode": cfg.mode,
            "selected": {k: int(v.size) for k, v in result.selections.items()},
            "dropped": result.dropped,
            "signers": result.signers,
            "bytes_sent": result.bytes_sent,
            "bytes_received": result.bytes_received,
            "seconds": result.seconds,
            "timings": result.timings,
        }
        (out / "round.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return result


def make_server_app(cfg: ServerConfig, result: RoundResult | None = None) -> ServerApp:
    """A ServerApp running one ECOS round with ``cfg``; ``result`` is filled in place."""
    app = ServerApp()
    holder = RoundResult() if result is None else result

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        run_round(grid, cfg, holder)

    return app
