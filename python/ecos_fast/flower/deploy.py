"""Flower app components for a deployment (``flwr run``): configured from Flower's configs.

A Flower app project names them in its ``pyproject.toml``::

    [tool.flwr.app.components]
    serverapp = "ecos_fast.flower.deploy:server_app"
    clientapp = "ecos_fast.flower.deploy:client_app"

The cloud's settings come from the run config (``[tool.flwr.app.config]`` or
``flwr run --run-config``): ``pool``, ``clusters``, ``budget``, ``seed``, ``mode``,
``min-clients``, ``timeout``, ``output``, ``backend``, ``init-sample``, and to sign
``sign-key`` (the cloud's private key) and ``client-keys`` (the clients' public keys,
comma-separated: replies must be signed by one). Each client's come from its SuperNode's
``--node-config``: ``features`` (or ``images`` and optionally ``extractor``), ``ledger``,
``epsilon``, ``delta``, ``budget-epsilon``, ``cloud`` and optionally
``extractor-fingerprint``, ``cloud-key`` (the cloud's public key: the centroids must be
signed by it), ``sign-key`` (the client's private key), ``neighbours``, ``relation``
(``add_remove`` or ``replace_one``) and ``seed`` (tests only) — the client's privacy is set
on the client's machine, never by the server. Any other key is refused (Flower's own
``partition-id`` and ``num-partitions`` aside): a misspelt ``cloud-key`` must not leave the
client answering unsigned centroids.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

from .._extras import install_line
from ._roles import ClientConfig

try:
    from flwr.app import Context
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
except ModuleNotFoundError as exc:  # pragma: no cover - exercised without the extra
    from ..errors import MissingDependencyError

    raise MissingDependencyError(
        f"ecos_fast.flower needs flwr, which is not installed: {install_line('flower')}"
    ) from exc

from .apps import RoundResult, ServerConfig, make_client_app, run_round

__all__ = ["app_project", "client_app", "client_config", "server_app", "server_config"]


def _get(cfg: dict[str, Any], key: str, default: Any = None) -> Any:
    if key in cfg:
        return cfg[key]
    if default is None:
        from ..errors import InvalidInputError

        raise InvalidInputError(f"the Flower config has no {key!r}")
    return default


def _as_int(value: Any) -> int:
    """``value`` as an exact int: an int, an integral finite float, or such a string."""
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            value = float(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    raise ValueError


def _number(cfg: dict[str, Any], key: str, kind: type, default: Any = None) -> Any:
    """``cfg[key]`` (or ``default``) as ``kind`` (int or float); a value that is not one
    (inf for an int, a number too large for a float) is an
    :class:`~ecos_fast.errors.InvalidInputError` naming the key, not a ValueError or
    OverflowError. Integers are exact (no round trip through a float)."""
    value = _get(cfg, key, default)
    try:
        if isinstance(value, bool):
            raise ValueError
        out = _as_int(value) if kind is int else kind(value)
    except (TypeError, ValueError, OverflowError):
        from ..errors import InvalidInputError

        want = "an integer" if kind is int else "a number"
        raise InvalidInputError(f"the Flower config's {key!r} is {value!r}, not {want}") from None
    return out


def _optional(cfg: dict[str, Any], key: str) -> str | None:
    value = cfg.get(key)
    return None if value in (None, "") else str(value)


#: The node config's keys, and Flower's own (the simulation engine sets them).
NODE_CONFIG_KEYS = frozenset(
    {"features", "images", "extractor", "ledger", "epsilon", "delta", "budget-epsilon"}
    | {"cloud", "extractor-fingerprint", "cloud-key", "sign-key", "seed", "neighbours"}
    | {"relation"}
)
FLOWER_NODE_CONFIG_KEYS = frozenset({"partition-id", "num-partitions"})


def _check_node_keys(c: dict[str, Any]) -> None:
    """An unknown key is refused: a misspelt ``cloud-key`` would answer unsigned centroids."""
    import difflib

    from ..errors import InvalidInputError

    known = NODE_CONFIG_KEYS | FLOWER_NODE_CONFIG_KEYS
    unknown = sorted(str(k) for k in c if k not in known)
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k.replace("_", "-"), sorted(known), n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise InvalidInputError(
            f"the node config has unknown key(s) {', '.join(hints)}; known: "
            f"{', '.join(sorted(NODE_CONFIG_KEYS))}"
        )


def client_config(context: Context) -> ClientConfig:
    """This SuperNode's :class:`ClientConfig`, from ``context.node_config``.

    Unknown keys are refused (Flower's own ``partition-id`` and ``num-partitions`` aside).
    """
    from .._validation import check_choice

    c = context.node_config
    _check_node_keys(c)
    relation = check_choice(
        str(_get(c, "relation", "add_remove")), "relation", ("add_remove", "replace_one")
    )
    seed = c.get("seed")
    images = _optional(c, "images")
    return ClientConfig(
        features=None if images is not None and "features" not in c else str(_get(c, "features")),
        images=images,
        extractor=_optional(c, "extractor"),
        cloud_key=_optional(c, "cloud-key"),
        sign_key=_optional(c, "sign-key"),
        ledger=str(_get(c, "ledger")),
        epsilon=_number(c, "epsilon", float),
        delta=_number(c, "delta", float),
        budget_epsilon=_number(c, "budget-epsilon", float),
        cloud=str(_get(c, "cloud", "default")),
        extractor_fingerprint=_optional(c, "extractor-fingerprint"),
        seed=None if seed is None else _number(c, "seed", int),
        neighbours=_number(c, "neighbours", int, 1),
        relation=relation,
    )


def app_project(
    folder: str | Path,
    *,
    pool: str | Path,
    clusters: int,
    budget: int,
    output: str | Path | None = None,
    seed: int = 0,
    mode: Literal["per_client", "federation"] = "per_client",
    min_clients: int = 1,
    timeout: float = 60.0,
    sign_key: str | Path | None = None,
    client_keys: Sequence[str | Path] = (),
    name: str = "ecosround",
) -> Path:
    """Write the Flower app project that ``flwr run folder`` starts; return its pyproject.

    The project holds only a ``pyproject.toml``: its components are this module's
    ``server_app`` and ``client_app`` (the app's code is ecos-fast itself) and its run
    config the cloud's round, read back by :func:`server_config`. Each client's settings
    stay on its SuperNode (``--node-config``), never in this file.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     text = app_project(d, pool="pool.npy", clusters=100, budget=1000).read_text()
    >>> 'serverapp = "ecos_fast.flower.deploy:server_app"' in text, "clusters = 100" in text
    (True, True)
    """

    import os
    import sys

    from .._validation import check_budget, check_choice, check_int, check_nonneg_float, check_seed
    from ..errors import InvalidInputError, InvalidTypeError

    # Written as given or refused: nothing is rounded, coerced or split on the way.
    check_int(clusters, "clusters", low=1)
    check_budget(budget, sys.maxsize)
    check_seed(seed)
    check_int(min_clients, "min_clients", low=0)
    check_nonneg_float(timeout, "timeout")
    check_choice(mode, "mode", ("per_client", "federation"))
    if isinstance(client_keys, (str, bytes, os.PathLike)):
        raise InvalidTypeError(
            f"client_keys must be a list of public key paths, got {type(client_keys).__name__} "
            f"{client_keys!r}; for one key, [{client_keys!r}]"
        )
    for k in client_keys:
        if "," in str(k):
            raise InvalidInputError(
                f"client_keys holds {str(k)!r}, a path with a comma: the run config's "
                "client-keys is comma-separated, so it would be read back as two keys"
            )

    def q(value: str | Path) -> str:  # a TOML basic string (JSON's escapes are TOML's)
        return json.dumps(str(value))

    config = [
        f"pool = {q(pool)}",
        f"clusters = {int(clusters)}",
        f"budget = {int(budget)}",
        f"seed = {int(seed)}",
        f"mode = {q(mode)}",
        f"min-clients = {int(min_clients)}",
        f"timeout = {float(timeout)!r}",
    ]
    if output is not None:
        config.append(f"output = {q(output)}")
    if sign_key is not None:
        config.append(f"sign-key = {q(sign_key)}")
    if client_keys:
        config.append(f"client-keys = {q(','.join(str(k) for k in client_keys))}")
    text = "\n".join(
        [
            "[build-system]",
            'requires = ["hatchling"]',
            'build-backend = "hatchling.build"',
            "",
            "[project]",
            f"name = {q(name)}",
            'version = "1.0.0"',
            'description = "ECOS round over Flower (ecos_fast.flower)"',
            'license = "Apache-2.0"',
            "dependencies = []",
            "",
            "[tool.flwr.app]",
            'publisher = "ecos"',
            "",
            "[tool.flwr.app.components]",
            'serverapp = "ecos_fast.flower.deploy:server_app"',
            'clientapp = "ecos_fast.flower.deploy:client_app"',
            "",
            "[tool.flwr.app.config]",
            *config,
            "",
        ]
    )
    path = Path(folder) / "pyproject.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def server_config(context: Context) -> ServerConfig:
    """The round's :class:`ServerConfig`, from ``context.run_config``."""
    c = context.run_config
    output = c.get("output")
    return ServerConfig(
        pool=str(_get(c, "pool")),
        clusters=_number(c, "clusters", int),
        budget=_number(c, "budget", int),
        seed=_number(c, "seed", int, 0),
        mode=cast(Literal["per_client", "federation"], str(_get(c, "mode", "per_client"))),
        min_clients=_number(c, "min-clients", int, 1),
        timeout=_number(c, "timeout", float, 60.0),
        output=None if output in (None, "") else str(output),
        backend=cast(Literal["local", "ray"], str(_get(c, "backend", "local"))),
        init_sample=None if c.get("init-sample") is None else _number(c, "init-sample", int),
        sign_key=_optional(c, "sign-key"),
        client_keys=[k.strip() for k in str(c.get("client-keys") or "").split(",") if k.strip()],
    )


client_app: ClientApp = make_client_app(client_config)
server_app = ServerApp()


@server_app.main()
def _main(grid: Grid, context: Context) -> None:
    run_round(grid, server_config(context), RoundResult())
