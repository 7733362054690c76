"""OCR-pretrained feature extractors, the feature cache, and evidence that they work."""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ecos_fast import features
from ecos_fast.datasets import (
    ALL_DOMAINS,
    DOMAINS,
    CacheWarning,
    _cache,
    client_domains,
    load_domain,
    paper_split,
)
from ecos_fast.errors import InvalidInputError, InvalidTypeError

onnx = pytest.importorskip("onnx", reason="the data extras are not installed (deps/pip-data.txt)")
pytest.importorskip("onnxruntime", reason="the data extras are not installed")

TINY = {name: (20, 10) for name in DOMAINS}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_cache.CACHE_ENV, str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def small_features(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]]:
    """ppocr features of every domain's train and test split, ``small`` preset."""
    mp = pytest.MonkeyPatch()
    mp.setenv(_cache.CACHE_ENV, str(tmp_path_factory.mktemp("small-cache")))
    try:
        yield {
            (name, split): features.cached_features(name, split, preset="small")
            for name in DOMAINS
            for split in ("train", "test")
        }
    finally:
        mp.undo()


# ---------------------------------------------------------------- pinned models


@pytest.mark.parametrize("name", features.EXTRACTORS)
def test_pinned_package_and_exposed_tensor_names_exist(name: str) -> None:
    spec = features._SPECS[name]
    distribution = spec.package.replace("_", "-")
    assert importlib.metadata.version(distribution) == spec.version
    model = onnx.load(str(features.model_path(name)))
    assert spec.input_name in {i.name for i in model.graph.input}
    produced = {out for node in model.graph.node for out in node.output}
    for tensor in spec.outputs:
        assert tensor in produced, f"{tensor} is not in {features.model_path(name)}"


def test_pinned_versions_match_deps_file() -> None:
    deps = Path(__file__).parents[1] / "deps"
    pins = {}
    for name in ("pip-data.txt", "pip-data-nodeps.txt"):
        for line in (deps / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if "==" in line:
                package, version = line.split("==")
                pins[package.strip().lower()] = version.strip()
    for spec in features._SPECS.values():
        assert pins[spec.package.replace("_", "-")] == spec.version
    # Installed versions match the pins (tensor names belong to these exact files).
    for package, version in pins.items():
        assert importlib.metadata.version(package) == version, package


# ---------------------------------------------------------------- extraction


@pytest.mark.parametrize("name", features.EXTRACTORS)
def test_extract_shapes_dtype_and_determinism(name: str) -> None:
    images, _ = load_domain("print", "test", n=5, seed=0, cache=False)
    first = features.extract(images, name)
    again = features.extract(images, name)
    extractor = features.get_extractor(name)
    assert first.shape == (5, extractor.dim) and first.dtype == np.float32
    assert np.isfinite(first).all()
    np.testing.assert_allclose(first, again, rtol=1e-5, atol=1e-5)
    # Different images, different features.
    assert not np.allclose(first[0], first[1])


def test_batching_does_not_change_features() -> None:
    images, _ = load_domain("synth", "test", n=7, seed=0, cache=False)
    whole = features.extract(images, batch_size=32)
    one_by_one = features.extract(images, batch_size=1)
    pieces = np.concatenate([features.extract(images[i : i + 1]) for i in range(7)])
    np.testing.assert_allclose(whole, one_by_one, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(whole, pieces, rtol=1e-4, atol=1e-4)


def test_any_image_size_and_empty_input() -> None:
    big = np.random.default_rng(0).integers(0, 256, size=(2, 40, 50, 3), dtype=np.uint8)
    assert features.extract(big).shape == (2, 600)
    assert features.extract(np.zeros((0, 32, 32, 3), np.uint8)).shape == (0, 600)
    assert features.extract(np.zeros((0, 32, 32, 3), np.uint8), "ddddocr").shape == (0, 1024)


def test_progress_bar_runs(capsys: pytest.CaptureFixture[str]) -> None:
    images = np.zeros((3, 32, 32, 3), np.uint8)
    features.extract(images, progress=True, batch_size=2)
    assert "ppocr features" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        ([[0]], InvalidTypeError, "numpy array"),
        (np.zeros((2, 32, 32, 3), np.float32), InvalidTypeError, "dtype uint8"),
        (np.zeros((2, 32, 32), np.uint8), InvalidInputError, r"\(2, 32, 32\)"),
        (np.zeros((2, 32, 32, 4), np.uint8), InvalidInputError, r"\(2, 32, 32, 4\)"),
    ],
)
def test_extract_validates_images(images: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        features.extract(images)  # type: ignore[arg-type]


def test_extract_validates_arguments() -> None:
    images = np.zeros((1, 32, 32, 3), np.uint8)
    with pytest.raises(InvalidInputError, match="extractor='resnet'"):
        features.extract(images, "resnet")
    with pytest.raises(InvalidInputError, match="batch_size=0"):
        features.extract(images, batch_size=0)
    with pytest.raises(InvalidInputError, match="n_threads=0"):
        features.get_extractor(n_threads=0)


def test_resize_matrix_is_an_interpolation() -> None:
    for n_out, n_in in [(48, 32), (64, 32), (32, 32), (20, 50)]:
        matrix = features._resize_matrix(n_out, n_in)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-6)
        assert (matrix >= 0).all()
    np.testing.assert_allclose(features._resize_matrix(32, 32), np.eye(32), atol=1e-7)


# ---------------------------------------------------------------- cache


def test_cached_features_second_call_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    first, labels = features.cached_features("hershey", "test", n=6)
    folder = _cache.cache_dir() / "features"
    assert len(list(folder.glob("hershey-test-n6-seed0-*.ppocr1.4.4-*"))) == 4

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("extracted again instead of reading the cache")

    monkeypatch.setattr(features, "extract", boom)
    second, labels2 = features.cached_features("hershey", "test", n=6)
    assert first.tobytes() == second.tobytes() and np.array_equal(labels, labels2)
    # The key holds the extractor: another extractor is a miss.
    with pytest.raises(AssertionError, match="extracted again"):
        features.cached_features("hershey", "test", n=6, extractor="ddddocr")
    # ... and the seed and size.
    with pytest.raises(AssertionError, match="extracted again"):
        features.cached_features("hershey", "test", n=6, seed=1)
    with pytest.raises(AssertionError, match="extracted again"):
        features.cached_features("hershey", "test", n=5)


def test_corrupt_feature_cache_is_rebuilt() -> None:
    first, _ = features.cached_features("mnist", "test", n=4)
    (path,) = (_cache.cache_dir() / "features").glob("mnist-test-n4-*-f1.npy")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x55
    path.write_bytes(bytes(data))
    with pytest.warns(CacheWarning, match="sha256"):
        again, _ = features.cached_features("mnist", "test", n=4)
    np.testing.assert_allclose(again, first, rtol=1e-5, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        features.cached_features("mnist", "test", n=4)


def test_paper_split_features_matches_the_image_split() -> None:
    kwargs = {"sizes": TINY, "seed": 3, "domains": ("optdigits", "synth", "hand")}
    images = paper_split("synth", **kwargs)  # type: ignore[arg-type]
    feats = features.paper_split_features("synth", **kwargs)  # type: ignore[arg-type]
    assert feats.domains == images.domains and feats.extractor == "ppocr"
    np.testing.assert_array_equal(feats.pool_labels, images.pool_labels)
    np.testing.assert_array_equal(feats.pool_domains, images.pool_domains)
    np.testing.assert_array_equal(feats.private_labels, images.private_labels)
    np.testing.assert_array_equal(feats.test_labels, images.test_labels)
    for got, pixels in [
        (feats.private_features, images.private_images),
        (feats.pool_features, images.pool_images),
        (feats.test_features, images.test_images),
    ]:
        np.testing.assert_allclose(got, features.extract(pixels), rtol=1e-4, atol=1e-4)


def test_warm_cache_reports_timings() -> None:
    timings = features.warm_cache("small", domains=("hershey",))
    assert set(timings) == {"hershey/train", "hershey/test", "total"}
    assert all(t >= 0 for t in timings.values())


# ---------------------------------------------------------------- evidence


def _probe(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> float:
    """Test accuracy of a linear probe (standardised ridge classifier)."""
    from sklearn.linear_model import RidgeClassifier  # type: ignore[import-untyped,unused-ignore]
    from sklearn.pipeline import make_pipeline  # type: ignore[import-untyped,unused-ignore]
    from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped,unused-ignore]

    clf = make_pipeline(StandardScaler(), RidgeClassifier(alpha=100.0))
    return float(clf.fit(x_train, y_train).score(x_test, y_test))


# Measured on the small preset (200 train / 100 test per domain), ppocr, see
# docs/data_section.md: mnist .94, optdigits 1.0, mnistm .75, print 1.0, synth .96,
# hand .97, hershey 1.0; domain id .90. Chance is .10 (digits) and .14 (domains).
_DIGIT_FLOOR = {name: 0.8 for name in DOMAINS} | {"mnistm": 0.45}


@pytest.mark.parametrize("name", DOMAINS)
def test_linear_probe_reads_digits_in_every_domain(
    small_features: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], name: str
) -> None:
    pytest.importorskip("sklearn")
    (x_train, y_train), (x_test, y_test) = (
        small_features[name, "train"],
        small_features[name, "test"],
    )
    assert _probe(x_train, y_train, x_test, y_test) >= _DIGIT_FLOOR[name]


def test_domain_classifier_separates_the_domains(
    small_features: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]],
) -> None:
    pytest.importorskip("sklearn")
    parts = {
        split: (
            np.concatenate([small_features[name, split][0] for name in DOMAINS]),
            np.concatenate(
                [np.full(len(small_features[name, split][0]), i) for i, name in enumerate(DOMAINS)]
            ),
        )
        for split in ("train", "test")
    }
    accuracy = _probe(*parts["train"], *parts["test"])
    assert accuracy >= 0.7


@pytest.mark.slow
def test_ddddocr_linear_probe(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    for name in DOMAINS:
        x_train, y_train = features.cached_features(
            name, "train", preset="small", extractor="ddddocr"
        )
        x_test, y_test = features.cached_features(name, "test", preset="small", extractor="ddddocr")
        assert _probe(x_train, y_train, x_test, y_test) >= _DIGIT_FLOOR[name] - 0.1


# ---------------------------------------------------------------- the hard preset

HARD_TINY = {name: (12, 10) for name in ALL_DOMAINS}


def test_ppocr_det_pools_the_backbone_stages() -> None:
    stages_ex = features.get_extractor("ppocr-det-stages")
    session = stages_ex.session()
    # Only the backbone stages are computed (the neck and head are dropped).
    assert [o.name for o in session.get_outputs()] == list(stages_ex.spec.outputs)
    images, _ = load_domain("deva", "test", n=4, seed=0, preset="hard", cache=False)
    x = stages_ex._prepare(images)
    stages = session.run(list(stages_ex.spec.outputs), {"x": x})
    assert [s.shape[1] for s in stages] == [48, 96, 192, 384]
    assert [s.shape[2] for s in stages] == [16, 8, 4, 2]  # strides 4..32 of a 64x64 input
    feats = features.extract(images, "ppocr-det-stages")
    assert feats.shape == (4, 720)
    np.testing.assert_allclose(feats[:, :48], stages[0].mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats[:, -384:], stages[3].mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    # ppocr-det is the last stage alone.
    last = features.extract(images, "ppocr-det")
    assert last.shape == (4, 384)
    np.testing.assert_allclose(last, feats[:, -384:], rtol=1e-5, atol=1e-6)
    assert [o.name for o in features.get_extractor("ppocr-det").session().get_outputs()] == [
        "p2o.Add.215"
    ]


def test_default_extractor_per_preset() -> None:
    assert features.default_extractor("default") == features.default_extractor("small") == "ppocr"
    assert features.default_extractor("hard") == "ppocr-det"
    with pytest.raises(InvalidInputError, match="preset='x'"):
        features.default_extractor("x")


def test_hard_paper_split_features_matches_the_image_split() -> None:
    kwargs = {"sizes": HARD_TINY, "seed": 1, "private_size": 4}
    images = paper_split("arabic", "hard", **kwargs)  # type: ignore[arg-type]
    feats = features.paper_split_features("arabic", "hard", **kwargs)  # type: ignore[arg-type]
    assert feats.extractor == "ppocr-det" and feats.preset == "hard" and feats.n_classes == 11
    assert feats.domains == images.domains and feats.private_size == 4
    assert feats.private_features.shape == (4, 384)
    assert feats.pool_features.shape == (12 * 12 - 4, 384)
    np.testing.assert_array_equal(feats.pool_labels, images.pool_labels)
    np.testing.assert_array_equal(feats.pool_domains, images.pool_domains)
    assert (feats.pool_labels[feats.pool_domains == feats.domains.index("junk")] == 10).all()
    for got, pixels in [
        (feats.private_features, images.private_images),
        (feats.test_features, images.test_images),
    ]:
        np.testing.assert_allclose(got, features.extract(pixels, "ppocr-det"), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("client", client_domains("hard"))
def test_every_hard_client_domain_gets_a_split(client: str) -> None:
    s = features.paper_split_features(
        client, "hard", 2, data_seed=0, extractor="ppocr", sizes=HARD_TINY, private_size=3
    )
    assert s.client_domain == client and len(s.private_labels) == 3
    assert len(s.test_labels) == 10 and s.pool_features.shape[1] == 600


def test_hard_feature_cache_is_keyed_apart_from_default() -> None:
    hard, _ = features.cached_features("print", "test", n=3, preset="hard", extractor="ppocr")
    default, _ = features.cached_features("print", "test", n=3, preset="default")
    assert not np.allclose(hard, default)
    with pytest.raises(InvalidInputError, match="not in preset 'default'"):
        features.cached_features("cjk", "test")


def test_fingerprint_covers_every_input() -> None:
    base: dict[str, Any] = {"sizes": TINY, "seed": 1, "domains": ("mnist", "hershey")}
    a = features.paper_split_features("mnist", **base)
    assert a.fingerprint() == features.paper_split_features("mnist", **base).fingerprint()
    variants: list[dict[str, Any]] = [
        {"seed": 2},
        {"data_seed": 1},
        {"private_fraction": 0.25},
        {"private_size": 5},
        {"extractor": "ppocr-det"},
        {"sizes": {"mnist": (20, 10), "hershey": (21, 10)}},
        {"domains": ("mnist", "hershey", "print")},
    ]
    seen = {a.fingerprint()}
    for change in variants:
        other = features.paper_split_features("mnist", **(base | change))
        seen.add(other.fingerprint())
    assert len(seen) == len(variants) + 1
    hard = features.paper_split_features("hershey", "hard", **base)
    assert hard.fingerprint() not in seen  # preset and extractor differ
    # The data-level fingerprint moves with the recipe version.
    before = features.data_fingerprint("hard")
    assert before == features.data_fingerprint("hard", "ppocr-det")
    assert before != features.data_fingerprint("hard", "ppocr")
    assert before != features.data_fingerprint("default")


def test_data_fingerprint_moves_with_data_version(monkeypatch: pytest.MonkeyPatch) -> None:
    from ecos_fast.datasets.digits import DATA_VERSION

    before = features.data_fingerprint("default")
    monkeypatch.setattr("ecos_fast.features.DATA_VERSION", DATA_VERSION + 1)
    assert features.data_fingerprint("default") != before


# ---------------------------------------------------------------- one interface


@pytest.mark.parametrize("name", ["ppocr", "ddddocr"])
def test_bundled_extractors_are_feature_extractors(name: str) -> None:
    images, _ = load_domain("print", "test", n=3, seed=0, cache=False)
    extractor = features.get_extractor(name)
    assert isinstance(extractor, features.FeatureExtractor)
    result = features.extract(extractor, images)  # the generic form: Features
    np.testing.assert_allclose(result.array, features.extract(images, name), rtol=1e-5, atol=1e-5)
    assert result.extractor_fingerprint == extractor.fingerprint
    assert len(result.extractor_fingerprint) == 64
    assert features.extract(name, images).extractor_fingerprint == extractor.fingerprint
    other = "ddddocr" if name == "ppocr" else "ppocr"
    assert features.get_extractor(other).fingerprint != extractor.fingerprint
    assert result.extractor["package"] == f"{extractor.spec.package}=={extractor.spec.version}"
