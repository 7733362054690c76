"""Flower apps for ECOS: a ClientApp per client, a ServerApp for the cloud (issue 15).

One round is one Flower ``query`` message per client: its content holds the centroid file
bytes (``RecordDict({"ecos": ConfigRecord({"centroids": <bytes>})})``, the exchange file
format), the reply holds the response file bytes under ``"response"``. A client that
refuses (budget exhausted, extractor mismatch, bad centroids) replies with a Flower
:class:`flwr.app.Error` and releases nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from ..errors import (
    EcosError,
    ExchangeFileError,
    InvalidInputError,
    PrivacyBudgetExceededError,
    SketchMismatchError,
)
from ..exchange import save_centroids, save_response
from ..protocol import Centroids, Response, Sketch
from ._roles import ClientConfig, accept, answer, centroids_to_bytes, union_response

try:
    from flwr.app import ConfigRecord, Context, Error, Message, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
except ModuleNotFoundError as exc:  # pragma: no cover - exercised without the extra
    from ..errors import MissingDependencyError

    raise MissingDependencyError(
        "ecos_fast.flower needs flwr, which is not installed: pip install 'ecos-fast[flower]'"
    ) from exc

__all__ = [
    "ERROR_BAD_CENTROIDS",
    "ERROR_BUDGET",
    "ERROR_EXTRACTOR",
    "ERROR_OTHER",
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
ERROR_OTHER = 4099

RECORD = "ecos"


class FederationError(EcosError, RuntimeError):
    """Fewer clients than ``min_clients`` answered usable responses."""


def _refusal(exc: BaseException) -> Error:
    if isinstance(exc, PrivacyBudgetExceededError):
        code = ERROR_BUDGET
    elif isinstance(exc, SketchMismatchError):
        code = ERROR_EXTRACTOR
    elif isinstance(exc, ExchangeFileError):
        code = ERROR_BAD_CENTROIDS
    else:
        code = ERROR_OTHER
    return Error(code=code, reason=f"{type(exc).__name__}: {exc}")


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
            log.warning("refused: %s", exc)
            return Message(_refusal(exc), reply_to=msg)
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
        Seconds to wait for the nodes to connect, and for the replies.
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


@dataclass
class RoundResult:
    """What the server app produced: selections by node id (or ``"union"``), drops, sizes."""

    selections: dict[str, np.ndarray] = field(default_factory=dict)
    responses: dict[str, Response] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    bytes_sent: int = 0
    bytes_received: int = 0
    seconds: float = 0.0
    #: Wall seconds of each step: sketch, waiting for nodes, send and receive, select.
    timings: dict[str, float] = field(default_factory=dict)


class GridLike(Protocol):
    """What a round needs of Flower's :class:`flwr.serverapp.Grid` (tests pass a stand-in)."""

    def get_node_ids(self) -> Iterable[int]: ...

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]: ...


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


def run_round(grid: GridLike, cfg: ServerConfig, result: RoundResult) -> RoundResult:
    """One ECOS round over ``grid``: sketch, send, collect, select; fills ``result``."""
    from ..protocol import fit_centroids
    from ..selection import select

    t0 = time.perf_counter()
    x = _load_pool(cfg.pool)
    cents = cfg.centroids or fit_centroids(
        x, cfg.clusters, seed=cfg.seed, backend=cfg.backend, init_sample=cfg.init_sample
    )
    payload = centroids_to_bytes(cents)
    t1 = time.perf_counter()
    nodes = _wait_for_nodes(grid, cfg.min_clients, cfg.timeout)
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
    replies = {
        m.metadata.src_node_id: m for m in grid.send_and_receive(messages, timeout=cfg.timeout)
    }
    t3 = time.perf_counter()
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
                if isinstance(data, (bytes, bytearray)):
                    result.bytes_received += len(data)
                result.responses[key] = accept(data, cents)
            except SketchMismatchError as exc:
                result.dropped[key] = f"answers other centroids: {exc}"
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
    elif cfg.mode == "per_client":
        groups = dict(result.responses)
    else:
        raise InvalidInputError(f"mode={cfg.mode!r}; expected 'per_client' or 'federation'")
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
        for key, resp in result.responses.items():  # what each client released, for audit
            save_response(resp, out / f"response_{key}.safetensors")
        save_centroids(cents, out / "centroids.safetensors")
        summary = {
            "mode": cfg.mode,
            "selected": {k: int(v.size) for k, v in result.selections.items()},
            "dropped": result.dropped,
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
