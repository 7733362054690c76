"""ECOS over Flower (issue 15): the client and server apps, the failures, the simulation engine,
and real processes on loopback.

The apps are driven three ways: through an in-process stand-in for Flower's Grid (fast, every
failure a federation brings), through Flower's simulation engine (Ray, a subprocess), and
through a SuperLink and two SuperNodes the tests start (``--insecure``; with TLS and node
authentication under ``-m slow``). Each must select exactly what the file-based command-line
round trip selects.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr", reason="flwr is not installed: pip install 'ecos-fast[flower]'")

import ecos_fast
from ecos_fast._cli_output import exit_code_of
from ecos_fast.cli import EXIT_INPUT
from ecos_fast.cli import run as cli_run
from ecos_fast.errors import FederationError
from ecos_fast.exchange import load_centroids, load_response
from ecos_fast.flower import (
    ClientConfig,
    accept,
    centroids_to_bytes,
    response_to_bytes,
    union_response,
)
from ecos_fast.flower.apps import (
    ERROR_BUDGET,
    ERROR_EXTRACTOR,
    ERROR_SIGNATURE,
    RoundResult,
    ServerConfig,
    make_client_app,
    run_round,
)
from ecos_fast.flower.deploy import app_project
from ecos_fast.ledger import Ledger
from ecos_fast.signing import generate_key, load_verify_key, public_key_hex
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

CLUSTERS, BUDGET, EPS, DELTA = 12, 60, 0.58, 1e-5
SEEDS = (7, 8)


@pytest.fixture(autouse=True)
def _task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    # Flower builds messages only inside a task (a SuperNode or ServerApp process sets it).
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


def _make_world(root: Path) -> dict[str, Any]:
    """A 900 x 8 pool of three groups in ``cloud/``; two clients like groups 2 and 3."""
    rng = np.random.default_rng(0)
    pool = np.concatenate([rng.normal(m, 1.0, (300, 8)) for m in (0, 6, 12)]).astype(np.float32)
    (root / "cloud").mkdir()
    np.save(root / "cloud" / "pool.npy", pool)
    clients = []
    for i, mean in enumerate((6, 12)):
        d = root / f"client{i}"
        d.mkdir()
        np.save(d / "private.npy", rng.normal(mean, 1.0, (120, 8)).astype(np.float32))
        clients.append(d)
    return {"root": root, "pool": root / "cloud" / "pool.npy", "clients": clients}


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    return _make_world(tmp_path)


def _config(d: Path, seed: int, **kw: Any) -> ClientConfig:
    args: dict[str, Any] = {"cloud": "acme", "seed": seed, "budget_epsilon": 2.0, **kw}
    ledger = args.pop("ledger", d / "ledger.sqlite")
    features = args.pop("features", d / "private.npy")
    return ClientConfig(features, ledger, EPS, DELTA, **args)


class FakeGrid:
    """Flower's Grid, in process: each node id runs a ClientApp; ``silent`` nodes never reply."""

    def __init__(self, apps: dict[int, ClientApp], silent: Iterable[int] = ()) -> None:
        self.apps, self.silent = apps, set(silent)
        self.pending: dict[str, Message] = {}

    def get_node_ids(self) -> list[int]:
        return list(self.apps)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for m in messages:  # as Flower's Grid does: the message id is its object id
            m.metadata.__dict__["_message_id"] = m.object_id
            self.pending[m.metadata.message_id] = m
            ids.append(m.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterator[Message]:
        for mid in list(message_ids):
            m = self.pending.get(mid)
            node = None if m is None else m.metadata.dst_node_id
            if m is None or node in self.silent:
                continue
            del self.pending[mid]
            ctx = Context(run_id=1, node_id=node, node_config={}, state=RecordDict(), run_config={})
            yield self.apps[node](m, ctx)


def _client_app(cfg: ClientConfig) -> ClientApp:
    return make_client_app(lambda ctx: cfg)


def _fixed_app(payload: bytes) -> ClientApp:
    app = ClientApp()

    @app.query()
    def _q(msg: Message, context: Context) -> Message:
        return Message(RecordDict({"ecos": ConfigRecord({"response": payload})}), reply_to=msg)

    return app


def _cli_round(world: dict[str, Any]) -> list[np.ndarray]:
    """The file-based round: sketch, copy, respond, copy, select; one selection per client."""
    root, out = world["root"], []
    cents = root / "cloud" / "centroids.safetensors"
    sketch = ["sketch", str(world["pool"]), "-o", str(cents), "--clusters", str(CLUSTERS)]
    assert cli_run([*sketch, "--seed", "0"]) == 0
    for i, (d, seed) in enumerate(zip(world["clients"], SEEDS, strict=True)):
        resp = root / f"cli_response{i}.safetensors"
        args = ["respond", str(cents), str(d / "private.npy"), "-o", str(resp)]
        args += ["--epsilon", str(EPS), "--delta", str(DELTA), "--seed", str(seed)]
        args += ["--ledger", str(root / f"cli_ledger{i}.sqlite"), "--budget-epsilon", "2"]
        assert cli_run([*args, "--cloud", "acme"]) == 0
        sel = root / f"cli_selected{i}.npy"
        args = ["select", str(world["pool"]), str(cents), str(resp), "--budget", str(BUDGET)]
        assert cli_run([*args, "-o", str(sel), "--seed", "0"]) == 0
        out.append(np.load(sel))
    return out


def _server(world: dict[str, Any], **kw: Any) -> ServerConfig:
    kw.setdefault("timeout", 5)
    kw.setdefault("budget", BUDGET)
    return ServerConfig(world["pool"], CLUSTERS, seed=0, **kw)


def _query(cents: ecos_fast.Centroids, **kw: Any) -> Message:
    payload = centroids_to_bytes(cents, **kw)
    return Message(
        RecordDict({"ecos": ConfigRecord({"centroids": payload})}),
        dst_node_id=1,
        message_type="query",
    )


def _ctx() -> Context:
    return Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})


def test_per_client_round_equals_the_file_based_cli_round_index_for_index(
    world: dict[str, Any],
) -> None:
    apps = {
        10 + i: _client_app(_config(d, s))
        for i, (d, s) in enumerate(zip(world["clients"], SEEDS, strict=True))
    }
    res = run_round(FakeGrid(apps), _server(world, min_clients=2), RoundResult())
    assert res.dropped == {}
    expected = _cli_round(world)
    for i in range(2):
        assert np.array_equal(res.selections[str(10 + i)], expected[i])
    assert not np.array_equal(expected[0], expected[1])  # two different clients
    # The client's ledger recorded the release before it left.
    with Ledger(world["clients"][0] / "ledger.sqlite") as ledger:
        assert len(ledger.releases(cloud="acme")) == 1
    assert res.bytes_sent > 0 and res.bytes_received > 0


def test_federation_selects_once_from_the_summed_noisy_counts(world: dict[str, Any]) -> None:
    apps = {
        10 + i: _client_app(_config(d, s))
        for i, (d, s) in enumerate(zip(world["clients"], SEEDS, strict=True))
    }
    out = world["root"] / "out"
    res = run_round(
        FakeGrid(apps), _server(world, mode="federation", min_clients=2, output=out), RoundResult()
    )
    assert list(res.selections) == ["union"]
    r0, r1 = res.responses["10"], res.responses["11"]
    cents = load_centroids(out / "centroids.safetensors")
    union = union_response([r0, r1])
    assert np.allclose(union.noisy_counts, r0.noisy_counts + r1.noisy_counts)
    assert math.isclose(union.sigma, math.hypot(r0.sigma, r1.sigma))
    want = ecos_fast.select(
        np.load(world["pool"]), ecos_fast.Sketch.join(cents, union), BUDGET, seed=0
    )
    assert np.array_equal(res.selections["union"], np.asarray(want.indices))
    assert np.array_equal(np.load(out / "selected_union.npy"), res.selections["union"])
    # The union covers both clients' groups (pool rows 300..599 and 600..899).
    sel = res.selections["union"]
    assert ((sel >= 300) & (sel < 600)).sum() > 0 and (sel >= 600).sum() > 0
    assert load_response(out / "response_10.safetensors", centroids=cents).sigma == r0.sigma


def test_silent_garbage_and_other_centroids_clients_are_dropped_with_a_reason(
    world: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    d, seed = world["clients"][0], SEEDS[0]
    other = ecos_fast.Centroids(np.eye(8, dtype=np.float32)[: CLUSTERS % 8 + 1])
    other_resp = ecos_fast.respond(np.eye(8), other, 1.0, 1e-5, seed=0)
    apps = {
        1: make_client_app(lambda ctx: _config(d, seed)),
        2: _fixed_app(b"not a safetensors file"),
        3: _fixed_app(response_to_bytes(other_resp)),
        4: make_client_app(lambda ctx: _config(world["clients"][1], SEEDS[1])),
    }
    cfg = _server(world, min_clients=1, timeout=0.5)
    res = run_round(FakeGrid(apps, silent=[4]), cfg, RoundResult())
    assert set(res.selections) == {"1"}
    assert set(res.dropped) == {"2", "3", "4"}
    assert res.dropped["2"].startswith("garbage reply")
    assert res.dropped["3"].startswith("answers other centroids")
    assert res.dropped["4"].startswith("no reply within")
    assert "client 3 dropped: answers other centroids" in caplog.text
    # The silent client never ran: it released nothing.
    assert not (world["clients"][1] / "ledger.sqlite").exists()
    with pytest.raises(FederationError, match="min_clients=2"):
        run_round(
            FakeGrid(apps, silent=[4]), _server(world, min_clients=2, timeout=0.5), RoundResult()
        )


def test_federation_error_lives_in_errors_and_apps_still_exports_it() -> None:
    """Before: FederationError was defined in ecos_fast.flower.apps only."""
    from ecos_fast.flower import apps

    assert apps.FederationError is FederationError is ecos_fast.FederationError
    assert issubclass(FederationError, ecos_fast.EcosError)
    assert exit_code_of(FederationError("1 usable responses but min_clients=2")) == EXIT_INPUT


def test_a_client_whose_budget_is_spent_refuses_with_a_flower_error_and_releases_nothing(
    world: dict[str, Any],
) -> None:
    d = world["clients"][0]
    cfg = _config(d, 1, budget_epsilon=0.7)  # room for one answer at 0.58, not two
    app = make_client_app(lambda ctx: cfg)
    cents = ecos_fast.fit_centroids(np.load(world["pool"]), CLUSTERS, seed=0)
    msg = _query(cents)
    first = app(msg, _ctx())
    assert not first.has_error()
    second = app(msg, _ctx())
    assert second.has_error() and second.error.code == ERROR_BUDGET
    assert second.error.reason is not None and "budget" in second.error.reason
    assert not second.has_content()
    with Ledger(d / "ledger.sqlite") as ledger:
        assert len(ledger.releases(cloud="acme")) == 1


def test_a_spent_client_is_dropped_by_the_server(world: dict[str, Any]) -> None:
    d = world["clients"][0]
    cfg = _config(d, 1, budget_epsilon=0.5)  # less than one answer
    res = run_round(
        FakeGrid(
            {
                1: make_client_app(lambda ctx: cfg),
                2: make_client_app(lambda ctx: _config(world["clients"][1], 2)),
            }
        ),
        _server(world),
        RoundResult(),
    )
    assert set(res.selections) == {"2"}
    assert res.dropped["1"].startswith(f"refused (code {ERROR_BUDGET})")


def test_an_extractor_mismatch_is_refused_before_the_ledger_is_touched(
    world: dict[str, Any],
) -> None:
    d = world["clients"][0]
    cents = ecos_fast.fit_centroids(
        np.load(world["pool"]), CLUSTERS, seed=0, extractor_fingerprint="a" * 64
    )
    cfg = _config(d, 1, extractor_fingerprint="b" * 64)
    res = run_round(
        FakeGrid({1: make_client_app(lambda ctx: cfg)}),
        _server(world, centroids=cents, min_clients=0),
        RoundResult(),
    )
    assert res.dropped["1"].startswith(f"refused (code {ERROR_EXTRACTOR})")
    assert not (d / "ledger.sqlite").exists()


def test_the_features_sidecar_names_the_client_extractor_as_for_the_cli(
    world: dict[str, Any],
) -> None:
    """Before: a features file's extractor.json sidecar was ignored by the client app, so
    features of another extractor were answered (the CLI's respond refuses them)."""
    from ecos_fast.features import Features

    d = world["clients"][0]
    rows = np.load(d / "private.npy")
    Features("b" * 64, {}, *rows.shape, _array=rows).save(d / "tagged.npy")
    cents = ecos_fast.fit_centroids(
        np.load(world["pool"]), CLUSTERS, seed=0, extractor_fingerprint="a" * 64
    )
    app = _client_app(_config(d, 1, features=d / "tagged.npy"))
    reply = app(_query(cents), _ctx())
    assert reply.has_error() and reply.error.code == ERROR_EXTRACTOR
    assert not (d / "ledger.sqlite").exists()
    good = ecos_fast.fit_centroids(
        np.load(world["pool"]), CLUSTERS, seed=0, extractor_fingerprint="b" * 64
    )
    assert not app(_query(good), _ctx()).has_error()


# -- signatures: the cloud signs its centroids, the clients theirs ------------------------


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    (tmp_path / "keys").mkdir()
    return {n: generate_key(tmp_path / "keys" / n) for n in ("cloud", "c0", "c1", "stranger")}


def test_a_client_with_the_cloud_key_answers_signed_centroids_and_refuses_others(
    world: dict[str, Any], keys: dict[str, tuple[Path, Path]]
) -> None:
    d = world["clients"][0]
    cents = ecos_fast.fit_centroids(np.load(world["pool"]), CLUSTERS, seed=0)
    app = _client_app(_config(d, 1, cloud_key=keys["cloud"][1]))
    for msg in (_query(cents), _query(cents, sign_key=keys["stranger"][0])):
        reply = app(msg, _ctx())  # unsigned, then signed by another key
        assert reply.has_error() and reply.error.code == ERROR_SIGNATURE, reply.error
        assert not (d / "ledger.sqlite").exists()
    assert not app(_query(cents, sign_key=keys["cloud"][0]), _ctx()).has_error()
    with Ledger(d / "ledger.sqlite") as ledger:
        assert len(ledger.releases(cloud="acme")) == 1


def test_the_server_signs_and_accepts_only_replies_signed_by_a_known_client_key(
    world: dict[str, Any], keys: dict[str, tuple[Path, Path]]
) -> None:
    c0, c1 = world["clients"]
    cloud_pub = keys["cloud"][1]
    apps = {
        1: _client_app(_config(c0, 1, cloud_key=cloud_pub, sign_key=keys["c0"][0])),
        2: _client_app(_config(c1, 2, cloud_key=cloud_pub, sign_key=keys["stranger"][0])),
        3: _client_app(_config(c1, 3, cloud_key=cloud_pub, ledger=c1 / "l3.sqlite")),
    }
    out = world["root"] / "out"
    cfg = _server(
        world,
        sign_key=keys["cloud"][0],
        client_keys=[keys["c0"][1], keys["c1"][1]],
        output=out,
    )
    res = run_round(FakeGrid(apps), cfg, RoundResult())
    assert set(res.selections) == {"1"}
    assert res.signers == {"1": public_key_hex(load_verify_key(keys["c0"][1]))}
    assert res.dropped["2"].startswith("bad signature") and res.dropped["3"].startswith("bad sig")
    # The files in output are the bytes that travelled, signatures included.
    load_centroids(out / "centroids.safetensors", verify_key=cloud_pub)
    load_response(out / "response_1.safetensors", verify_key=keys["c0"][1])


def test_the_deployment_reads_keys_images_and_extractor_from_flowers_configs() -> None:
    """What a SuperNode's --node-config and the app's run config give the apps."""
    from ecos_fast.flower.deploy import client_config, server_config

    base = {"ledger": "l.sqlite", "epsilon": 0.5, "delta": 1e-6, "budget-epsilon": 3.0}
    node = {**base, "images": "img.npy", "extractor": "ppocr", "cloud-key": "cloud.pub"}
    ctx = Context(run_id=1, node_id=1, node_config=node, state=RecordDict(), run_config={})
    cfg = client_config(ctx)
    assert (cfg.features, cfg.images, cfg.extractor) == (None, "img.npy", "ppocr")
    assert (cfg.cloud_key, cfg.sign_key, cfg.extractor_fingerprint) == ("cloud.pub", None, None)
    assert (cfg.epsilon, cfg.delta, cfg.budget_epsilon, cfg.cloud) == (0.5, 1e-6, 3.0, "default")
    assert cfg.neighbours == 1
    ctx.node_config = {**base, "features": "f.npy", "sign-key": "me", "neighbours": 3}
    cfg = client_config(ctx)
    assert (cfg.features, cfg.images, cfg.sign_key, cfg.neighbours) == ("f.npy", None, "me", 3)
    ctx.node_config = base
    with pytest.raises(ecos_fast.InvalidInputError, match="'features'"):
        client_config(ctx)
    # A value of the wrong kind is an InvalidInputError naming the key, not a ValueError.
    for key, bad, want in [("neighbours", "many", "an integer"), ("neighbours", 2.5, "an integer"),
                           ("epsilon", "x", "a number"), ("seed", True, "an integer")]:  # fmt: skip
        ctx.node_config = {**base, "features": "f.npy", key: bad}
        with pytest.raises(ecos_fast.InvalidInputError, match=f"'{key}' is {bad!r}, not {want}"):
            client_config(ctx)
    run = {"pool": "p.npy", "clusters": 4, "budget": 9, "sign-key": "cloud"}
    ctx.run_config = {**run, "client-keys": " a.pub, b.pub ,"}
    srv = server_config(ctx)
    assert (srv.sign_key, list(srv.client_keys), srv.mode) == (
        "cloud",
        ["a.pub", "b.pub"],
        "per_client",
    )
    ctx.run_config = {**run, "sign-key": "", "client-keys": ""}
    srv = server_config(ctx)
    assert (srv.sign_key, list(srv.client_keys)) == (None, [])
    ctx.run_config = {**run, "budget": "lots"}
    with pytest.raises(ecos_fast.InvalidInputError, match="'budget' is 'lots', not an integer"):
        server_config(ctx)


def test_app_project_is_read_back_by_server_config(tmp_path: Path) -> None:
    """The project app_project writes (used by the loopback tests and the bench script)
    is a valid TOML file whose run config server_config turns into the same round."""
    import tomllib
    from ecos_fast.flower.deploy import server_config

    odd = tmp_path / 'a "quoted" dir\\x'  # quotes and a backslash survive TOML quoting
    path = app_project(
        tmp_path / "app", pool=odd / "pool.npy", clusters=7, budget=30, output=odd / "out",
        mode="federation", min_clients=2, timeout=12.5, sign_key=odd / "k",
        client_keys=["a.pub", odd / "b.pub"],
    )  # fmt: skip
    doc = tomllib.loads(path.read_text())
    comp = doc["tool"]["flwr"]["app"]["components"]
    assert comp == {
        "serverapp": "ecos_fast.flower.deploy:server_app",
        "clientapp": "ecos_fast.flower.deploy:client_app",
    }
    ctx = Context(
        run_id=1, node_id=1, node_config={}, state=RecordDict(),
        run_config=doc["tool"]["flwr"]["app"]["config"],
    )  # fmt: skip
    srv = server_config(ctx)
    assert (srv.pool, srv.clusters, srv.budget, srv.mode) == (
        str(odd / "pool.npy"), 7, 30, "federation",
    )  # fmt: skip
    assert (srv.min_clients, srv.timeout, srv.output) == (2, 12.5, str(odd / "out"))
    assert (srv.sign_key, list(srv.client_keys)) == (str(odd / "k"), ["a.pub", str(odd / "b.pub")])


# -- features computed by the client with the extractor the cloud names -------------------


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Tiny RGB image sets: a pool of 30 and a private set of 10 (the offline extractor)."""
    pytest.importorskip("onnxruntime", reason="the data extras are not installed")
    from ecos_fast import features

    try:
        features.model_path("ppocr")
    except ModuleNotFoundError as exc:  # the offline extractor's wheel (deps/pip-data-nodeps.txt)
        pytest.skip(str(exc))

    rng = np.random.default_rng(3)
    pool = rng.integers(0, 256, (30, 24, 24, 3), dtype=np.uint8)
    private = np.concatenate([pool[:5], 255 - pool[:5]])
    path = tmp_path_factory.mktemp("images") / "images.npy"
    np.save(path, private)
    pool_features = features.extract("ppocr", pool)
    cents = ecos_fast.fit_centroids(pool_features, 4, seed=0)
    assert cents.extractor_fingerprint == features.get_extractor("ppocr").fingerprint
    return {"path": path, "private": private, "centroids": cents}


@pytest.mark.parametrize("extractor", [None, "ppocr"], ids=["named-by-cloud", "configured"])
def test_a_client_computes_its_features_with_the_extractor_the_centroids_name(
    images: dict[str, Any], tmp_path: Path, extractor: str | None
) -> None:
    from ecos_fast import features

    cents = images["centroids"]
    cfg = ClientConfig(
        None, tmp_path / "ledger.sqlite", EPS, DELTA, 2.0, cloud="acme", seed=5,
        images=images["path"], extractor=extractor,
    )  # fmt: skip
    reply = _client_app(cfg)(_query(cents), _ctx())
    assert not reply.has_error(), reply.error
    got = accept(reply.content["ecos"]["response"], cents)
    want = ecos_fast.respond(
        features.extract("ppocr", images["private"]), cents, EPS, DELTA, seed=5
    )
    assert np.array_equal(got.noisy_counts, want.noisy_counts)


@pytest.mark.parametrize(
    ("cloud_fp", "extractor", "match"),
    [
        ("ppocr-det", "ppocr", "extractor"),  # the client's extractor is not the cloud's
        ("a" * 64, None, "none of the bundled extractors"),  # the cloud names an unknown one
        (None, None, "name no extractor"),  # the cloud names none
        # Before: answered (an ExtractorUncheckedWarning only) although nothing checked
        # that the cloud's features came from the client's extractor.
        (None, "ppocr", "name no extractor"),  # the cloud names none, the client one
    ],
)
def test_an_extractor_the_centroids_do_not_name_is_refused_before_anything_is_computed(
    images: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    cloud_fp: str | None,
    extractor: str | None,
    match: str,
) -> None:
    from ecos_fast import features

    if cloud_fp == "ppocr-det":
        cloud_fp = features.get_extractor("ppocr-det").fingerprint
    cents = ecos_fast.Centroids(images["centroids"].centroids, extractor_fingerprint=cloud_fp)

    def no_extraction(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("features were computed for centroids the client refuses")

    monkeypatch.setattr(features, "extract", no_extraction)
    cfg = ClientConfig(
        None, tmp_path / "ledger.sqlite", EPS, DELTA, 2.0, images=images["path"],
        extractor=extractor,
    )  # fmt: skip
    reply = _client_app(cfg)(_query(cents), _ctx())
    assert reply.has_error() and reply.error.code == ERROR_EXTRACTOR, reply.error
    assert match in caplog.text  # the why stays in the client's log
    assert not (tmp_path / "ledger.sqlite").exists()


SIMULATION = """
import sys
from pathlib import Path
from flwr.simulation import run_simulation
from ecos_fast.flower import ClientConfig
from ecos_fast.flower.apps import ServerConfig, make_client_app, make_server_app

root = Path(sys.argv[1])
def config(ctx):
    i = int(ctx.node_config["partition-id"])
    d = root / f"client{i}"
    return ClientConfig(d / "private.npy", d / "ledger.sqlite", EPS, DELTA, 2.0, cloud="acme", seed=SEEDS[i])
server = ServerConfig(root / "cloud" / "pool.npy", CLUSTERS, BUDGET, seed=0, min_clients=2, timeout=240, output=root / "out")
run_simulation(make_server_app(server), make_client_app(config), num_supernodes=2,
               backend_config={"client_resources": {"num_cpus": 1}})
"""


def test_flower_simulation_engine_round_equals_the_cli_round(world: dict[str, Any]) -> None:
    root = world["root"]
    script = root / "sim.py"
    consts = (
        f"EPS, DELTA, CLUSTERS, BUDGET, SEEDS = {EPS}, {DELTA}, {CLUSTERS}, {BUDGET}, {SEEDS}\n"
    )
    script.write_text(consts + textwrap.dedent(SIMULATION))
    proc = subprocess.run(
        [sys.executable, str(script), str(root)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _same_as_cli(world, root / "out")


def _same_as_cli(
    world: dict[str, Any], out: Path, expected: list[np.ndarray] | None = None
) -> None:
    """Every selection in ``out`` equals the CLI round's for the client that answered it."""
    root = world["root"]
    expected = _cli_round(world) if expected is None else expected
    cli_counts = [
        load_response(root / f"cli_response{i}.safetensors").noisy_counts for i in range(2)
    ]
    cents = load_centroids(out / "centroids.safetensors")
    got = sorted(out.glob("selected_*.npy"))
    assert len(got) == 2
    matched = set()
    for path in got:
        node = path.stem.removeprefix("selected_")
        resp = load_response(out / f"response_{node}.safetensors", centroids=cents)
        # Which client answered: its noisy counts equal the CLI's response of that seed.
        (i,) = [i for i in range(2) if np.array_equal(resp.noisy_counts, cli_counts[i])]
        assert np.array_equal(np.load(path), expected[i])
        matched.add(i)
    assert matched == {0, 1}


def _certificates(folder: Path) -> dict[str, Path]:
    """A test CA and a server certificate for 127.0.0.1 / localhost signed by it (PEM)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ecos test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    # Should the test process die without running its finalizers (SIGKILL), the kernel
    # sends each process it started SIGTERM (Linux's PR_SET_PDEATHSIG = 1).
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _node_keys(folder: Path) -> tuple[Path, Path]:
    """A SuperNode authentication key pair: EC P-384, OpenSSH format (as Flower 1.42 reads)."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    private, public = folder / "node_auth", folder / "node_auth.pub"
    private.write_bytes(
        key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.OpenSSH, ser.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(ser.Encoding.OpenSSH, ser.PublicFormat.OpenSSH)
    )
    return private, public


class Federation:
    """A SuperLink and SuperNodes on loopback, each process in its own session and folder.

    Every process is started in a new session (its own process group, which holds the
    ``flwr-serverapp`` / ``flwr-clientapp`` children it spawns); :meth:`stop` ends every
    group, and the kernel ends the processes should the test process die first.
    """

    def __init__(self, root: Path, tls: dict[str, Path] | None = None) -> None:
        self.root, self.tls = root, tls
        self.port = _free_port()
        self.procs: list[subprocess.Popen[bytes]] = []
        home = root / "flwr-home"  # Flower's own state, never the user's ~/.flwr
        home.mkdir()
        conn = f'root-certificates = "{tls["ca"]}"' if tls else "insecure = true"
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "loop"\n\n[superlink.loop]\n'
            f'address = "127.0.0.1:{self.port}"\n{conn}\n'
        )
        self.bindir = Path(sys.executable).parent
        self.env = {
            **os.environ,
            "FLWR_HOME": str(home),
            "PATH": str(self.bindir) + os.pathsep + os.environ["PATH"],
            # SuperExec's poll for a new ServerApp/ClientApp task (default 1 s).
            "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2",
        }

    def start(self, cmd: list[str], cwd: Path, log: str) -> Path:
        path = cwd / log
        with path.open("wb") as fh:
            self.procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=cwd,
                    env=self.env,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                )
            )
        return path

    def superlink(self, folder: Path, *extra: str) -> Path:
        if self.tls:
            tls = ["--ssl-certfile", str(self.tls["cert"]), "--ssl-keyfile", str(self.tls["key"])]
            tls += ["--ssl-ca-certfile", str(self.tls["ca"])]
        else:
            tls = ["--insecure"]
        cmd = ["flower-superlink", *tls, "--database", ":flwr-in-memory:", *extra]
        cmd += ["--disable-runtime-dependency-installation"]
        return self.start([*cmd, "--host", "127.0.0.1", "--port", str(self.port)], folder, "sl.log")

    def supernode(self, folder: Path, node_config: str, *extra: str, log: str = "sn.log") -> Path:
        tls = ["--root-certificates", str(self.tls["ca"])] if self.tls else ["--insecure"]
        cmd = ["flower-supernode", *tls, "--superlink", f"127.0.0.1:{self.port}", *extra]
        cmd += ["--port", str(_free_port()), "--node-config", node_config]
        return self.start(cmd, folder, log)

    def flwr(self, *args: str, timeout: float = 120) -> str:
        proc = subprocess.run(
            [str(self.bindir / "flwr"), *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def wait_for(self, path: Path, text: str, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if text in path.read_text(errors="replace"):
                return
            dead = [p.args for p in self.procs if p.poll() is not None]
            assert not dead, f"{dead} exited:\n{path.read_text(errors='replace')[-2000:]}"
            time.sleep(0.1)
        pytest.fail(f"{path}: no {text!r} after {seconds} s:\n{path.read_text()[-2000:]}")

    def run_round(self, app: Path, out: Path, *run_config: str, seconds: float = 180) -> None:
        """``flwr run`` (it returns once the run is submitted), then wait for round.json."""
        args = ["run", str(app)] + [a for rc in run_config for a in ("--run-config", rc)]
        self.flwr(*args)
        end = time.monotonic() + seconds
        while not (out / "round.json").exists():
            if time.monotonic() > end:
                pytest.fail(
                    f"no round.json:\n{(self.root / 'cloud' / 'sl.log').read_text()[-3000:]}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        for p in self.procs:  # each started in its own session: its group holds its children
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3  # then SIGKILL: a test needs no graceful goodbye
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for p in self.procs:  # nothing left in any group we started
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)

    def alive(self, seconds: float = 10) -> list[int]:
        """Process groups started here that still have a member after ``seconds``.

        A group's last members (SIGKILLed ClientApp processes) may take a moment to go.
        """
        end = time.monotonic() + seconds
        while True:
            left = []
            for p in self.procs:
                try:
                    os.killpg(p.pid, 0)
                except ProcessLookupError:
                    continue
                left.append(p.pid)
            if not left or time.monotonic() > end:
                return left
            time.sleep(0.1)


def _node_config(d: Path, seed: int, **extra: str) -> str:
    pairs = {
        "features": f'"{d / "private.npy"}"',
        "ledger": f'"{d / "ledger.sqlite"}"',
        "epsilon": str(EPS),
        "delta": str(DELTA),
        "budget-epsilon": "2.0",
        "cloud": '"acme"',
        "seed": str(seed),
        **{k: f'"{v}"' for k, v in extra.items()},
    }
    return " ".join(f"{k}={v}" for k, v in pairs.items())


@contextlib.contextmanager
def _federation(root: Path, world: dict[str, Any], tls: bool) -> Iterator[dict[str, Any]]:
    """The cloud (a SuperLink, an app project, its signing key) and two clients' SuperNodes.

    The cloud signs its centroids, each client checks them with the cloud's public key and
    signs its response, the cloud accepts only the clients' keys. With ``tls``, the
    SuperLink also serves a CA-signed certificate and admits only the SuperNodes whose
    authentication keys were registered (``--enable-supernode-auth``); a third SuperNode
    with an unregistered key is turned away.
    """
    cloud = root / "cloud"
    certs = _certificates(cloud) if tls else None
    fed = Federation(root, certs)
    try:
        cloud_key, cloud_pub = generate_key(cloud / "cloud_sign")
        client_keys = [generate_key(d / "sign") for d in world["clients"]]
        app = root / "app"
        out = cloud / "out"
        app_project(
            app, pool=world["pool"], clusters=CLUSTERS, budget=BUDGET, output=out,
            min_clients=2, timeout=120.0, sign_key=cloud_key,
            client_keys=[p for _, p in client_keys],
        )  # fmt: skip
        link = fed.superlink(cloud, *(["--enable-supernode-auth"] if tls else []))
        auth: list[list[str]] = [[], []]
        if tls:  # the cloud registers each client's node key before its SuperNode starts
            fed.wait_for(link, "Uvicorn running on https://", 60)
            for i, d in enumerate(world["clients"]):
                private, public = _node_keys(d)
                fed.flwr("supernode", "register", str(public))
                auth[i] = ["--auth-supernode-private-key", str(private)]
        logs = []
        for i, (d, seed) in enumerate(zip(world["clients"], SEEDS, strict=True)):
            config = _node_config(
                d, seed, **{"cloud-key": cloud_pub, "sign-key": client_keys[i][0]}
            )
            logs.append(fed.supernode(d, config, *auth[i], log=f"sn{i}.log"))
        # The SuperNodes retry until the SuperLink is up: all three start at once, and the
        # file-based round they are compared with runs meanwhile.
        expected = _cli_round(world)
        fed.wait_for(link, "Uvicorn running on", 60)
        for log in logs:
            fed.wait_for(log, "SuperNode ID", 60)
        yield {"fed": fed, "app": app, "out": out, "expected": expected, "link": link,
               "signers": sorted(public_key_hex(load_verify_key(p)) for _, p in client_keys)}  # fmt: skip
    finally:
        fed.stop()
    assert fed.alive() == [], "a process group the test started outlived it"


@pytest.fixture(scope="module")
def loopback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One insecure SuperLink and two SuperNodes for this module's loopback tests."""
    root = tmp_path_factory.mktemp("loopback")
    world = _make_world(root)
    with _federation(root, world, tls=False) as state:
        yield {**state, "world": world}


def _releases(client: Path) -> int:
    if not (client / "ledger.sqlite").exists():
        return 0
    with Ledger(client / "ledger.sqlite") as ledger:
        return len(ledger.releases(cloud="acme"))


def _check_per_client_round(state: dict[str, Any], before: list[int]) -> None:
    out, world = state["out"], state["world"]
    _same_as_cli(world, out, state["expected"])
    summary = json.loads((out / "round.json").read_text())
    assert summary["dropped"] == {} and sorted(summary["signers"].values()) == state["signers"]
    load_centroids(
        out / "centroids.safetensors", verify_key=world["root"] / "cloud" / "cloud_sign.pub"
    )
    # Each client's ledger, in its own folder, recorded one more release.
    assert [_releases(d) for d in world["clients"]] == [n + 1 for n in before]


def test_loopback_superlink_and_two_supernodes_equal_the_cli_round(
    loopback: dict[str, Any],
) -> None:
    before = [_releases(d) for d in loopback["world"]["clients"]]
    loopback["fed"].run_round(loopback["app"], loopback["out"])
    _check_per_client_round(loopback, before)


@pytest.mark.slow  # a second flwr run on the same processes: 33-45 s more at load 7-9 here
def test_loopback_federation_mode_selects_once_for_the_union(loopback: dict[str, Any]) -> None:
    out = loopback["world"]["root"] / "cloud" / "out_union"
    clients = loopback["world"]["clients"]
    before = [_releases(d) for d in clients]
    loopback["fed"].run_round(loopback["app"], out, 'mode="federation"', f'output="{out}"')
    cents = load_centroids(out / "centroids.safetensors")
    responses = [load_response(p, centroids=cents) for p in sorted(out.glob("response_*"))]
    assert len(responses) == 2
    want = ecos_fast.select(
        np.load(loopback["world"]["pool"]),
        ecos_fast.Sketch.join(cents, union_response(responses)),
        BUDGET,
        seed=0,
    )
    assert np.array_equal(np.load(out / "selected_union.npy"), np.asarray(want.indices))
    # One more release each, composed in its own ledger with the ones before.
    assert [_releases(d) for d in clients] == [n + 1 for n in before]


@pytest.mark.slow  # a TLS SuperLink, 2 registrations, 3 SuperNodes: 70-82 s at load 7-9
def test_tls_and_node_authentication_loopback_round_equals_the_cli_round(
    world: dict[str, Any],
) -> None:
    root = world["root"]
    with _federation(root, world, tls=True) as state:
        fed = state["fed"]
        assert "Uvicorn running on https://127.0.0.1" in state["link"].read_text()
        # A SuperNode whose key the cloud did not register is refused and gives up.
        stranger = root / "stranger"
        stranger.mkdir()
        private, _ = _node_keys(stranger)
        log = fed.supernode(
            stranger, _node_config(world["clients"][0], 1), "--auth-supernode-private-key",
            str(private), "--max-retries", "0", log="sn.log",
        )  # fmt: skip
        end = time.monotonic() + 60
        while fed.procs[-1].poll() is None and time.monotonic() < end:
            time.sleep(0.1)
        assert fed.procs[-1].poll() not in (None, 0), log.read_text()[-2000:]
        assert "Failed to activate SuperNode" in log.read_text()
        fed.run_round(state["app"], state["out"])
        _check_per_client_round({**state, "world": world}, [0, 0])


RAY_ROUND = """
import os, sys
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
from pathlib import Path
import numpy as np
import ray
from flwr.supercore.task_identity import TaskIdentity
TaskIdentity._run_id = TaskIdentity._task_id = TaskIdentity._node_id = 1
sys.path.insert(0, sys.argv[2])
from test_flower import FakeGrid, _client_app, _config
from ecos_fast.flower.apps import RoundResult, ServerConfig, run_round

root = Path(sys.argv[1])
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
try:
    for backend in ("local", "ray"):  # fresh ledgers each time: the same releases
        d = root / backend
        d.mkdir()
        apps = {10 + i: _client_app(_config(root / f"client{i}", s, ledger=d / f"l{i}.sqlite"))
                for i, s in enumerate(SEEDS)}
        cfg = ServerConfig(root / "cloud" / "pool.npy", CLUSTERS, BUDGET, seed=0, timeout=5,
                           min_clients=2, backend=backend, init_sample=300, output=d)
        run_round(FakeGrid(apps), cfg, RoundResult())
finally:
    ray.shutdown()
"""


@pytest.mark.slow  # starts Ray (about 20 s here)
def test_a_round_on_the_ray_backend_equals_the_local_one(world: dict[str, Any]) -> None:
    root = world["root"]
    script = root / "ray_round.py"
    consts = f"CLUSTERS, BUDGET, SEEDS = {CLUSTERS}, {BUDGET}, {SEEDS}\n"
    script.write_text(consts + textwrap.dedent(RAY_ROUND))
    here = str(Path(__file__).resolve().parent)
    cmd = [sys.executable, str(script), str(root), here]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Ray k-means needs init_sample, which the CLI's sketch does not set: compare with the
    # local backend given the same init_sample, node for node and index for index.
    local = sorted((root / "local").glob("selected_*.npy"))
    assert len(local) == 2
    for path in local:
        assert np.array_equal(np.load(path), np.load(root / "ray" / path.name)), path.name
    a = load_centroids(root / "local" / "centroids.safetensors")
    assert a.fingerprint == load_centroids(root / "ray" / "centroids.safetensors").fingerprint


def test_a_refusal_reason_carries_no_private_number_and_no_local_path(
    world: dict[str, Any], keys: dict[str, tuple[Path, Path]], caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the reason sent to the server was the client's exception message: the
    private row count (a wrong-width centroid file: "shape (120, 8)"), the composed
    epsilon and the budget, and the ledger, features and key paths."""
    d = world["clients"][0]
    cents = ecos_fast.fit_centroids(np.load(world["pool"]), CLUSTERS, seed=0)
    narrow = ecos_fast.Centroids(np.eye(4, dtype=np.float32))
    spent = _config(d, 1, budget_epsilon=0.7)
    _client_app(spent)(_query(cents), _ctx())  # 0.58 of 0.7 spent: the next is refused
    cases = [
        (_client_app(_config(d, 1)), _query(narrow), ERROR_EXTRACTOR),
        (_client_app(spent), _query(cents), ERROR_BUDGET),
        (_client_app(_config(d, 1, cloud_key=keys["cloud"][1])), _query(cents), ERROR_SIGNATURE),
        (_client_app(_config(d, 1, features=d / "gone.npy")), _query(cents), 4099),
    ]
    reasons = []
    for app, msg, code in cases:
        reply = app(msg, _ctx())
        assert reply.has_error() and reply.error.code == code, reply.error
        reasons.append(reply.error.reason)
    for reason in reasons:
        assert reason
        for secret in ("120", "(120", "0.58", "0.7", str(world["root"]), "ledger", "gone.npy"):
            assert secret not in reason, (secret, reason)
    assert "budget" in reasons[1] and "width" in reasons[0] and "signed" in reasons[2]
    # The full message stays on the client, in its log.
    assert "(120, 8)" in caplog.text and "gone.npy" in caplog.text


def test_a_bad_sign_key_is_refused_before_the_ledger_is_charged(world: dict[str, Any]) -> None:
    """Before: the release was recorded in the ledger, then the missing key file failed
    the signing: budget spent, nothing released."""
    from ecos_fast.flower import answer

    d = world["clients"][0]
    cents = ecos_fast.fit_centroids(np.load(world["pool"]), CLUSTERS, seed=0)
    with pytest.raises(ecos_fast.KeyFileError, match="missing"):
        answer(centroids_to_bytes(cents), _config(d, 1, sign_key=d / "missing"))
    assert _releases(d) == 0


def test_a_client_config_that_cannot_enforce_its_budget_is_refused(tmp_path: Path) -> None:
    """Before: ledger=":memory:" opened a fresh ledger per query (30 queries at budget 2.0
    all answered), budget_epsilon=None answered without limit, and ledger=5 or None
    failed later with os.fspath's bare TypeError."""
    from ecos_fast.flower.deploy import client_config

    x = np.eye(8)
    for ledger in (":memory:", ""):
        with pytest.raises(ecos_fast.InvalidInputError, match="ledger"):
            ClientConfig(x, ledger, EPS, DELTA, 2.0)
    for ledger in (5, None):
        with pytest.raises(ecos_fast.InvalidTypeError, match="ledger"):
            ClientConfig(x, ledger, EPS, DELTA, 2.0)  # type: ignore[arg-type]
    with pytest.raises(ecos_fast.InvalidInputError, match="budget_epsilon"):
        ClientConfig(x, tmp_path / "l.sqlite", EPS, DELTA, None)  # type: ignore[arg-type]
    node = {"features": "f.npy", "ledger": ":memory:", "epsilon": EPS, "delta": DELTA}
    ctx = Context(run_id=1, node_id=1, node_config={**node, "budget-epsilon": 2.0},
                  state=RecordDict(), run_config={})  # fmt: skip
    with pytest.raises(ecos_fast.InvalidInputError, match="ledger"):
        client_config(ctx)


class _CountingGrid(FakeGrid):
    """A FakeGrid that counts what the server pushed."""

    pushed = 0

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        messages = list(messages)
        self.pushed += len(messages)
        return super().push_messages(messages)


def _assert_refused_before_sending(
    world: dict[str, Any], error: type[Exception], match: str, **kw: Any
) -> None:
    apps = {
        10 + i: _client_app(_config(d, s))
        for i, (d, s) in enumerate(zip(world["clients"], SEEDS, strict=True))
    }
    grid = _CountingGrid(apps)
    with pytest.raises(error, match=match):
        run_round(grid, _server(world, **kw), RoundResult())
    assert grid.pushed == 0
    assert [_releases(d) for d in world["clients"]] == [0, 0]


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"mode": "bogus"}, ecos_fast.InvalidInputError, "mode='bogus'"),
        ({"backend": "bogus"}, ecos_fast.InvalidInputError, "backend='bogus'"),
        ({"budget": 0}, ecos_fast.BudgetError, "budget=0"),
        ({"budget": -5}, ecos_fast.BudgetError, "budget=-5"),
        ({"budget": 10**6}, ecos_fast.BudgetError, "exceeds the pool size"),
        ({"budget": "20"}, ecos_fast.InvalidTypeError, "budget"),
        ({"budget": 2.5}, ecos_fast.InvalidTypeError, "budget"),
        ({"select_kwargs": {"bogus": 1}}, ecos_fast.InvalidInputError, "select_kwargs.*'bogus'"),
        ({"select_kwargs": {"seed": 1}}, ecos_fast.InvalidInputError, "select_kwargs.*'seed'"),
        ({"min_clients": -1}, ecos_fast.InvalidInputError, "min_clients=-1"),
        ({"min_clients": 5, "timeout": 0.2}, FederationError, "2 nodes connected.*min_clients=5"),
        ({"centroids": "width"}, ecos_fast.InvalidInputError, "centroids have n_features=4"),
        ({"output": "file"}, ecos_fast.InvalidInputError, "output=.*not a folder"),
        ({"output": "under-file"}, ecos_fast.InvalidInputError, "output=.*not a folder"),
    ],
    ids=lambda v: str(v)[:40] if isinstance(v, dict) else "",
)
def test_a_bad_server_config_is_refused_before_any_client_is_queried(
    world: dict[str, Any], kw: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Before: each of these was found only after every client had released and paid
    (or, for min_clients, after they were queried): bogus mode or budget at selection,
    select_kwargs as a bare TypeError, an output file as FileExistsError or
    NotADirectoryError."""
    if kw.get("centroids") == "width":
        kw["centroids"] = ecos_fast.Centroids(np.eye(4, dtype=np.float32))
    if kw.get("output") == "file":
        kw["output"] = world["pool"]
    elif kw.get("output") == "under-file":
        kw["output"] = world["pool"] / "sub"
    _assert_refused_before_sending(world, error, match, **kw)


def test_client_keys_are_loaded_before_the_round_and_a_single_path_is_refused(
    world: dict[str, Any], keys: dict[str, tuple[Path, Path]]
) -> None:
    """Before: a missing key file among client_keys made every signed reply a 'garbage
    reply' (only SignatureError was caught; the first bad key aborted the search), after
    the clients had paid; client_keys='c.pub' iterated its characters."""
    missing, good = world["root"] / "missing.pub", keys["c0"][1]
    for client_keys in ([missing, good], [good, missing]):
        _assert_refused_before_sending(
            world, ecos_fast.KeyFileError, "missing.pub", client_keys=client_keys
        )
    for single in (str(good), good):
        with pytest.raises(ecos_fast.InvalidTypeError, match="client_keys"):
            _server(world, client_keys=single)


@pytest.mark.parametrize("timeout", [math.nan, math.inf, -1.0])
def test_a_non_finite_or_negative_timeout_is_refused_everywhere(
    world: dict[str, Any], tmp_path: Path, timeout: float
) -> None:
    """Before: timeout=nan hung the round for ever (time.monotonic() > nan is never true),
    and deploy.server_config and app_project took nan or negative timeouts."""
    from ecos_fast.flower.deploy import server_config

    with pytest.raises(ecos_fast.InvalidInputError, match="timeout"):
        _server(world, timeout=timeout)
    run = {"pool": "p.npy", "clusters": 4, "budget": 9, "timeout": timeout}
    ctx = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config=run)
    with pytest.raises(ecos_fast.InvalidInputError, match="timeout"):
        server_config(ctx)
    with pytest.raises(ecos_fast.InvalidInputError, match="timeout"):
        app_project(tmp_path, pool="p.npy", clusters=4, budget=9, timeout=timeout)
    assert not (tmp_path / "pyproject.toml").exists()


def test_an_infinite_or_huge_integer_config_value_is_an_error_naming_its_key(
    world: dict[str, Any],
) -> None:
    """Before: inf in an integer key raised a bare OverflowError (escaping the ClientApp's
    handler instead of a 4099 refusal), and exact integers above 2**53 were refused as
    'not an integer'."""
    from ecos_fast.flower import deploy

    run = {"pool": "p.npy", "clusters": 4, "budget": 9}
    for key in ("clusters", "budget", "min-clients", "seed", "init-sample"):
        ctx = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(),
                      run_config={**run, key: math.inf})  # fmt: skip
        with pytest.raises(ecos_fast.InvalidInputError, match=f"'{key}' is inf, not an integer"):
            deploy.server_config(ctx)
    big = 2**53 + 1
    ctx = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(),
                  run_config={**run, "seed": big, "clusters": str(big)})  # fmt: skip
    srv = deploy.server_config(ctx)
    assert (srv.seed, srv.clusters) == (big, big)
    d = world["clients"][0]
    node = {"features": str(d / "private.npy"), "ledger": str(d / "ledger.sqlite"),
            "epsilon": EPS, "delta": DELTA, "budget-epsilon": 2.0, "cloud": "acme"}  # fmt: skip
    ctx = Context(run_id=1, node_id=1, node_config={**node, "seed": big}, state=RecordDict(),
                  run_config={})  # fmt: skip
    assert deploy.client_config(ctx).seed == big
    ctx.node_config = {**node, "epsilon": 10**400}
    with pytest.raises(ecos_fast.InvalidInputError, match="'epsilon'"):
        deploy.client_config(ctx)
    cents = ecos_fast.fit_centroids(np.load(world["pool"]), CLUSTERS, seed=0)
    for key in ("seed", "neighbours"):
        ctx.node_config = {**node, key: math.inf}
        reply = deploy.client_app(_query(cents), ctx)  # a refusal, not an escaped exception
        assert reply.has_error() and reply.error.code == 4099
    assert _releases(d) == 0


def test_federation_counts_a_replayed_reply_or_a_signer_once(
    world: dict[str, Any], keys: dict[str, tuple[Path, Path]]
) -> None:
    """Before: two nodes sending the same response bytes were both summed into the union."""
    cents = ecos_fast.fit_centroids(np.load(world["pool"]), CLUSTERS, seed=0)
    c0, c1 = world["clients"]
    resp = ecos_fast.respond(np.load(c0 / "private.npy"), cents, EPS, DELTA, seed=0)
    payload = response_to_bytes(resp)
    cfg = _server(world, centroids=cents, mode="federation", timeout=2)
    res = run_round(FakeGrid({1: _fixed_app(payload), 2: _fixed_app(payload)}), cfg, RoundResult())
    assert list(res.responses) == ["1"]
    assert res.dropped["2"].startswith("duplicate reply: the same bytes as node 1's")
    assert math.isclose(union_response(list(res.responses.values())).sigma, resp.sigma)
    # One client's key behind two nodes (two ledgers, two releases): counted once.
    sign = keys["c0"][0]
    apps = {
        1: _client_app(_config(c0, 1, sign_key=sign)),
        2: _client_app(_config(c1, 2, sign_key=sign)),
    }
    cfg = _server(world, centroids=cents, mode="federation", client_keys=[keys["c0"][1]])
    res = run_round(FakeGrid(apps), cfg, RoundResult())
    assert list(res.responses) == ["1"]
    assert res.dropped["2"].startswith("duplicate signer: the key that signed node 1's reply")


def test_the_node_config_refuses_unknown_keys_and_reads_the_relation(
    world: dict[str, Any], keys: dict[str, tuple[Path, Path]]
) -> None:
    """Before: unknown node-config keys were ignored, so cloud_key (ClientConfig's
    spelling of cloud-key) left the client answering unsigned centroids, and relation
    was never read."""
    from ecos_fast.flower import deploy

    d = world["clients"][0]
    node = {"features": str(d / "private.npy"), "ledger": str(d / "ledger.sqlite"),
            "epsilon": EPS, "delta": DELTA, "budget-epsilon": 2.0, "cloud": "acme"}  # fmt: skip
    ctx = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    ctx.node_config = {**node, "cloud_key": str(keys["cloud"][1])}
    with pytest.raises(ecos_fast.InvalidInputError, match=r"'cloud_key'.*'cloud-key'"):
        deploy.client_config(ctx)
    cents = ecos_fast.fit_centroids(np.load(world["pool"]), CLUSTERS, seed=0)
    reply = deploy.client_app(_query(cents), ctx)
    assert reply.has_error() and reply.error.code == 4099
    assert _releases(d) == 0
    ctx.node_config = {**node, "relation": "bogus"}
    with pytest.raises(ecos_fast.InvalidInputError, match="relation='bogus'"):
        deploy.client_config(ctx)
    # Flower's own keys (simulation) are allowed; relation is read.
    ctx.node_config = {**node, "relation": "replace_one", "partition-id": 0, "num-partitions": 2}
    assert deploy.client_config(ctx).relation == "replace_one"


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"clusters": 2.7}, ecos_fast.InvalidTypeError, "clusters"),
        ({"budget": True}, ecos_fast.InvalidTypeError, "budget"),
        ({"budget": 0}, ecos_fast.BudgetError, "budget=0"),
        ({"seed": -1}, ecos_fast.InvalidInputError, "seed=-1"),
        ({"min_clients": 1.5}, ecos_fast.InvalidTypeError, "min_clients"),
        ({"mode": "bogus"}, ecos_fast.InvalidInputError, "mode='bogus'"),
        ({"client_keys": ["a.pub", "b,c.pub"]}, ecos_fast.InvalidInputError, "comma"),
        ({"client_keys": "a.pub"}, ecos_fast.InvalidTypeError, "client_keys"),
    ],
    ids=lambda v: str(v)[:30] if isinstance(v, dict) else "",
)
def test_app_project_refuses_what_it_would_rewrite(
    tmp_path: Path, kw: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Before: clusters=2.7 was written as 2, budget=True as 1, a client key path with a
    comma became two keys and mode='bogus' was written as it was."""
    args: dict[str, Any] = {"pool": "p.npy", "clusters": 4, "budget": 9, **kw}
    with pytest.raises(error, match=match):
        app_project(tmp_path, **args)
    assert not (tmp_path / "pyproject.toml").exists()


def test_accept_and_union_response_refuse_the_wrong_types_naming_the_argument(
    world: dict[str, Any],
) -> None:
    """Before: accept(reply, "x") raised a bare AttributeError and accept(reply, None)
    skipped the centroid check; union_response([bytes]) and ([r, None]) raised
    AttributeError and union_response(a generator) TypeError."""
    cents = ecos_fast.fit_centroids(np.load(world["pool"]), CLUSTERS, seed=0)
    r = ecos_fast.respond(np.load(world["clients"][0] / "private.npy"), cents, EPS, DELTA, seed=0)
    rb = response_to_bytes(r)
    for bad in ("x", None, rb):
        with pytest.raises(ecos_fast.InvalidTypeError, match="centroids"):
            accept(rb, bad)  # type: ignore[arg-type]
    for bad_list, where in (([rb], r"responses\[0\]"), ([r, None], r"responses\[1\]")):
        with pytest.raises(ecos_fast.InvalidTypeError, match=where):
            union_response(bad_list)  # type: ignore[arg-type]
    for not_a_list in (None, "ab", rb):
        with pytest.raises(ecos_fast.InvalidTypeError, match="responses"):
            union_response(not_a_list)  # type: ignore[arg-type]
    r2 = ecos_fast.respond(np.load(world["clients"][1] / "private.npy"), cents, EPS, DELTA, seed=1)
    union = union_response(x for x in (r, r2))  # any iterable
    assert np.allclose(union.noisy_counts, r.noisy_counts + r2.noisy_counts)


def test_message_errors_name_the_message_not_a_deleted_temporary_file(
    keys: dict[str, tuple[Path, Path]],
) -> None:
    """Before: they named /tmp/ecos-flower-XXXX/centroids.safetensors, gone once raised."""
    from ecos_fast.flower import centroids_from_bytes, response_from_bytes

    cents = ecos_fast.Centroids(np.eye(3, dtype=np.float32))
    calls = [
        (lambda: centroids_from_bytes(b"junk"), ecos_fast.ExchangeFileError, "centroid message"),
        (
            lambda: centroids_from_bytes(centroids_to_bytes(cents), verify_key=keys["cloud"][1]),
            ecos_fast.SignatureError,
            "centroid message",
        ),
        (lambda: response_from_bytes(b"junk"), ecos_fast.ExchangeFileError, "response message"),
        (lambda: accept(b"junk", cents), ecos_fast.ExchangeFileError, "response message"),
    ]
    for call, error, name in calls:
        with pytest.raises(error) as info:
            call()
        assert str(info.value).startswith(f"{name}: "), str(info.value)
        assert "ecos-flower-" not in str(info.value) and ".safetensors" not in str(info.value)
