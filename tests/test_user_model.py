"""Features from the user's own model (issue 14 item 2): torch and ONNX extractors, the
extractor fingerprint, and its check between the cloud's centroids and the client.

A small CNN defined here plays the user's model: the cloud extracts its pool with it, the
client its private data; a client that used another model is refused.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from ecos_fast import features, fit_centroids, respond, save_centroids
from ecos_fast.cli import run
from ecos_fast.errors import (
    ExtractorUncheckedWarning,
    InvalidInputError,
    InvalidTypeError,
    SketchMismatchError,
)
from ecos_fast.exchange import load_centroids

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset  # noqa: E402


class SmallCNN(nn.Module):
    """The user's model: two conv layers, batch norm, global pooling -> 8 features."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, 8, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (n, 8, 1, 1): extract flattens it to (n, 8)


def images(n: int, shift: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g) + shift


class Pairs(Dataset):  # type: ignore[type-arg]
    """A map-style Dataset of (image, label) pairs, as users write them."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], i % 3


class Stream(IterableDataset):  # type: ignore[type-arg]
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __iter__(self):  # type: ignore[no-untyped-def]
        yield from self.x


@pytest.fixture(scope="module")
def model() -> SmallCNN:
    net = SmallCNN(0)
    net.body[1].running_mean += 0.1  # buffers are weights too
    return net


def test_both_roles_extract_with_the_users_cnn_and_the_round_checks(model: SmallCNN) -> None:
    pool = torch.cat([images(200, 0.0, 1), images(200, 3.0, 2)])
    private = images(60, 3.0, 3)
    cloud = features.extract(model, pool, batch_size=64)
    client = features.extract(model, Pairs(private), batch_size=16)  # (image, label) items
    assert cloud.shape == (400, 8) and client.shape == (60, 8)
    assert np.asarray(cloud).dtype == np.float32
    assert cloud.extractor_fingerprint == client.extractor_fingerprint
    # Rows are model(x) flattened, in data order.
    with torch.inference_mode():
        direct = model.eval()(private).reshape(60, -1).numpy()
    np.testing.assert_allclose(client.array, direct, rtol=1e-5, atol=1e-6)

    cents = fit_centroids(cloud, n_clusters=4, seed=0)
    assert cents.extractor_fingerprint == cloud.extractor_fingerprint
    response = respond(client, cents, math.inf, 1e-5)
    assert response.noisy_counts.sum() == 60

    # A client that used another model (other weights) is refused before any release.
    other = features.extract(SmallCNN(1), private)
    assert other.extractor_fingerprint != cloud.extractor_fingerprint
    with pytest.raises(SketchMismatchError, match="same model"):
        respond(other, cents, 1.0, 1e-5)
    # Plain arrays still work, with a remark that nothing was checked.
    with pytest.warns(ExtractorUncheckedWarning, match="only the centroids carry"):
        respond(np.asarray(client), cents, math.inf, 1e-5)


def test_a_mismatched_client_spends_nothing_in_its_ledger(tmp_path: Path, model: SmallCNN) -> None:
    from ecos_fast.ledger import Ledger, respond_with_ledger

    cloud = features.extract(model, images(100, 0.0, 1))
    cents = fit_centroids(cloud, n_clusters=3, seed=0)
    other = features.extract(SmallCNN(1), images(20, 0.0, 2))
    with Ledger(tmp_path / "ledger.sqlite", budget_epsilon=5.0) as ledger:
        with pytest.raises(SketchMismatchError):
            respond_with_ledger(other, cents, 1.0, 1e-5, ledger, cloud="acme")
        assert ledger.total_epsilon(cloud="acme") == 0.0


def test_fingerprint_hashes_weights_buffers_and_preprocessing(model: SmallCNN) -> None:
    x = images(5, 0.0, 0)
    fp = features.TorchExtractor(model).fingerprint
    copy = SmallCNN(7)
    copy.load_state_dict(model.state_dict())
    assert features.TorchExtractor(copy).fingerprint == fp  # same weights, another object
    copy.body[1].running_var[0] += 1e-3  # one buffer entry
    assert features.TorchExtractor(copy).fingerprint != fp
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        copy.body[3].weight[0, 0, 0, 0] += 1e-6  # one weight
    assert features.TorchExtractor(copy).fingerprint != fp
    resized = features.extract(model, x, preprocessing={"resize": 8, "mean": 0.5})
    assert resized.extractor_fingerprint != fp
    again = features.extract(model, x, preprocessing={"mean": 0.5, "resize": 8})  # key order
    assert again.extractor_fingerprint == resized.extractor_fingerprint
    assert features.extract(model, x, preprocessing="Normalize(0.5)").extractor_fingerprint != fp
    with pytest.raises(InvalidInputError, match="memory address"):
        features.extract(model, x, preprocessing=object())


def test_batching_input_kinds_and_training_flag(model: SmallCNN) -> None:
    x = images(37, 1.0, 4)
    whole = features.extract(model, x, batch_size=64).array
    for data in (x.numpy(), x.numpy().astype(np.float64), TensorDataset(x), Stream(x)):
        got = features.extract(model, data, batch_size=5).array
        np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-6)
    loader = DataLoader(TensorDataset(x, torch.zeros(37)), batch_size=10, shuffle=False)
    np.testing.assert_allclose(features.extract(model, loader).array, whole, rtol=1e-5, atol=1e-6)
    with pytest.raises(InvalidInputError, match="shuffle"):
        features.extract(model, DataLoader(TensorDataset(x), batch_size=4, shuffle=True))
    model.train()
    features.extract(model, x)
    assert model.training  # restored; eval() only while extracting
    model.eval()


def test_progress_bar_names_the_model(model: SmallCNN, capsys: pytest.CaptureFixture[str]) -> None:
    features.extract(model, images(9, 0.0, 0), batch_size=4, progress=True)
    assert "SmallCNN features" in capsys.readouterr().err
    features.extract(model, images(9, 0.0, 0), progress=False)
    assert "SmallCNN features" not in capsys.readouterr().err


def test_bad_arguments_are_specific_errors(model: SmallCNN) -> None:
    x = images(4, 0.0, 0)
    with pytest.raises(InvalidTypeError, match="model must be"):
        features.extract(42, x)
    with pytest.raises(InvalidInputError, match="batch_size=0"):
        features.extract(model, x, batch_size=0)
    with pytest.raises(InvalidInputError, match="no rows"):
        features.extract(model, x[:0])
    with pytest.raises(InvalidInputError, match="neither a bundled extractor"):
        features.extract("model.pt", x)
    with pytest.raises(InvalidInputError, match="does not apply to the bundled"):
        features.extract("ppocr", np.zeros((1, 8, 8, 3), np.uint8), preprocessing="x")
    with pytest.raises(InvalidInputError, match="given to the extractor's constructor"):
        features.extract(features.TorchExtractor(model), x, preprocessing="x")
    with pytest.raises(InvalidTypeError, match="one tensor"):
        features.extract(nn.LSTM(8, 4), torch.zeros(3, 2, 8))  # returns a tuple

    class Broken(nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return t.flatten(1) * math.nan

    with pytest.raises(InvalidInputError, match="NaN/inf"):
        features.extract(Broken(), x)
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="no CUDA device"):
            features.extract(model, x, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_gives_the_cpu_features_and_fingerprint() -> None:
    net = SmallCNN(0)
    x = images(300, 0.0, 6)
    cpu = features.extract(net, x, batch_size=64)
    gpu = features.extract(net, TensorDataset(x), batch_size=64, device="cuda")
    assert gpu.extractor_fingerprint == cpu.extractor_fingerprint
    np.testing.assert_allclose(gpu.array, cpu.array, rtol=1e-3, atol=1e-4)


def test_out_dir_writes_shards_and_a_sidecar(tmp_path: Path, model: SmallCNN) -> None:
    x = images(23, 0.0, 5)
    memory = features.extract(model, x)
    disk = features.extract(model, x, out_dir=tmp_path / "pool", shard_rows=10, batch_size=4)
    names = sorted(p.name for p in (tmp_path / "pool").iterdir())
    assert names == [
        "extractor.json", "features-00000.npy", "features-00001.npy", "features-00002.npy"
    ]  # fmt: skip
    assert [np.load(tmp_path / "pool" / n).shape[0] for n in names[1:]] == [10, 10, 3]
    assert disk.path == tmp_path / "pool" and disk.shape == (23, 8)
    np.testing.assert_array_equal(disk.array, memory.array)
    loaded = features.load(tmp_path / "pool")
    assert loaded.extractor_fingerprint == memory.extractor_fingerprint
    np.testing.assert_array_equal(np.asarray(loaded), memory.array)
    side = json.loads((tmp_path / "pool" / "extractor.json").read_text())
    assert side["n_samples"] == 23 and side["extractor"]["kind"] == "torch"
    # The folder must be empty of shards: rows are read in name order.
    with pytest.raises(InvalidInputError, match="already holds"):
        features.extract(model, x, out_dir=tmp_path / "pool")
    # A stale sidecar (a shard removed afterwards) is refused, not trusted.
    (tmp_path / "pool" / "features-00002.npy").unlink()
    with pytest.raises(InvalidInputError, match="stale"):
        features.read_fingerprint(tmp_path / "pool")
    # Features.save: one .npy and its sidecar beside it.
    saved = memory.save(tmp_path / "one.npy")
    assert features.read_fingerprint(saved) == memory.extractor_fingerprint
    assert (tmp_path / "one.extractor.json").exists()
    assert features.read_fingerprint(tmp_path / "pool-without-sidecar.npy") is None


def _linear_onnx(path: Path, weight: np.ndarray) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, weight.shape[1]])],
        [numpy_helper.from_array(weight.astype(np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_onnx_file_is_an_extractor_too(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 4))
    path = _linear_onnx(tmp_path / "m.onnx", w)
    x = rng.normal(size=(11, 6))  # float64: cast to float32
    got = features.extract(path, x, batch_size=4)
    np.testing.assert_allclose(got.array, np.maximum(x @ w, 0), rtol=1e-5, atol=1e-5)
    # An intermediate tensor as features, and the fingerprint covers which one.
    pre = features.extract(str(path), x, output="h") if False else None
    del pre
    hidden = features.extract(features.OnnxExtractor(path, output="h"), x)
    np.testing.assert_allclose(hidden.array, x @ w, rtol=1e-5, atol=1e-5)
    assert hidden.extractor_fingerprint != got.extractor_fingerprint
    named = features.OnnxExtractor(path, output="y")  # the default output, named
    assert (
        named.fingerprint == features.OnnxExtractor(path).fingerprint == got.extractor_fingerprint
    )
    same = features.extract(_linear_onnx(tmp_path / "copy.onnx", w), torch.from_numpy(x))
    assert same.extractor_fingerprint == got.extractor_fingerprint  # the bytes, not the name
    other = features.extract(_linear_onnx(tmp_path / "o.onnx", w + 1e-3), x)
    assert other.extractor_fingerprint != got.extractor_fingerprint


def test_cli_reads_the_sidecar_on_both_sides(
    tmp_path: Path, model: SmallCNN, capsys: pytest.CaptureFixture[str]
) -> None:
    features.extract(
        model, torch.cat([images(150, 0, 1), images(150, 3, 2)]), out_dir=tmp_path / "pool"
    )
    features.extract(model, images(40, 3, 3)).save(tmp_path / "private.npy")
    features.extract(SmallCNN(1), images(40, 3, 3)).save(tmp_path / "other.npy")
    np.save(tmp_path / "plain.npy", features.load(tmp_path / "private.npy").array)
    c = str(tmp_path / "c.safetensors")
    assert run(["sketch", str(tmp_path / "pool"), "-o", c, "-k", "4"]) == 0
    out = capsys.readouterr().out
    fp = features.read_fingerprint(tmp_path / "pool")
    assert f"extractor fingerprint {fp}" in out
    assert load_centroids(c).extractor_fingerprint == fp

    def respond_cli(private: str, *extra: str) -> int:
        r = str(tmp_path / "r.safetensors")
        return run(["--json", "respond", c, str(tmp_path / private), "-o", r, "--epsilon", "1",
                    *extra])  # fmt: skip

    assert respond_cli("private.npy") == 0
    assert json.loads(capsys.readouterr().out)["extractor_checked"] is True
    ledger = tmp_path / "ledger.sqlite"
    assert respond_cli("other.npy", "--ledger", str(ledger), "--budget-epsilon", "5") == 3
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"]["type"] == "SketchMismatchError"
    assert "same model" in captured.err
    assert not ledger.exists()  # refused before the ledger was opened: nothing spent
    assert run(["--json", "inspect", c]) == 0
    assert json.loads(capsys.readouterr().out)["extractor_fingerprint"] == fp
    assert respond_cli("plain.npy") == 0  # a plain array: one remark, nothing checked
    captured = capsys.readouterr()
    assert json.loads(captured.out)["extractor_checked"] is False
    assert captured.err.count("extractor not checked") == 1
    assert respond_cli("plain.npy", "--extractor-fingerprint", "0" * 64) == 3
    capsys.readouterr()
    assert respond_cli("plain.npy", "--extractor-fingerprint", "xyz") == 2


def test_centroids_without_extractor_fingerprint_stay_as_before(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    cents = fit_centroids(x, n_clusters=3, seed=0)
    assert cents.extractor_fingerprint is None
    path = save_centroids(cents, tmp_path / "c.safetensors")
    assert b"extractor_fingerprint" not in path.read_bytes()
    assert load_centroids(path).extractor_fingerprint is None
    with pytest.raises(InvalidInputError, match="64 lowercase hex"):
        fit_centroids(x, n_clusters=3, extractor_fingerprint="abc")


def test_torch_fingerprint_is_the_documented_hash(model: SmallCNN) -> None:
    """A reference implementation: a change of the digest would split old and new peers."""
    import hashlib

    h = hashlib.sha256(b"ecos-fast/extractor/v1|torch\0")
    state = model.state_dict()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous().reshape(-1)
        head = f"{key}|{t.dtype}|{tuple(state[key].shape)}".encode()
        for part in (head, t.view(torch.uint8).numpy().tobytes()):
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)
    h.update(b"\0preprocessing\0" + b"resize 8")
    assert features.TorchExtractor(model, preprocessing="resize 8").fingerprint == h.hexdigest()


@pytest.mark.slow
def test_ray_backend_reads_features_shards_and_records_the_fingerprint(
    tmp_path: Path, model: SmallCNN
) -> None:
    ray = pytest.importorskip("ray")
    disk = features.extract(model, images(300, 0.0, 8), out_dir=tmp_path / "pool", shard_rows=70)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        sharded = fit_centroids(disk, n_clusters=4, seed=0, init_sample=300, backend="ray")
    finally:
        ray.shutdown()
    local = fit_centroids(disk, n_clusters=4, seed=0, init_sample=300)
    assert sharded.extractor_fingerprint == disk.extractor_fingerprint
    np.testing.assert_array_equal(sharded.centroids, local.centroids)  # bit for bit
