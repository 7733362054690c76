"""The three applications end to end on tiny configurations, and their invariants.

Checks invariants, never golden numbers: accuracy above chance on easy splits,
epsilon reported and growing with the number of kNN queries, the ledger refusing an
over-budget release, ECOS taking a larger share of client-domain samples than Random
when the pool holds far-away domains, seeded training reproducible on CPU, and
``import ecos_fast`` not importing torch.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ecos_fast
from ecos_fast.apps import client_labeling as cl
from ecos_fast.apps.compression import run_compression, train_teacher
from ecos_fast.apps.experiment import ExperimentConfig, run_experiment
from ecos_fast.apps.labeling import run_labeling
from ecos_fast.apps.results import format_table, summarise, write_reports
from ecos_fast.apps.training import TrainConfig, train_classifier
from ecos_fast.errors import PrivacyBudgetExceededError

FAST = TrainConfig(epochs=5, min_steps=60, n_threads=1, device="cpu", progress=False)
DOMAINS = ("mnist", "optdigits", "mnistm", "print", "synth", "hand", "hershey")
TINY = {d: (40, 30) for d in DOMAINS}


def _blobs(
    n: int, n_classes: int, d: int, seed: int, shift: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    centres = np.random.default_rng(123).normal(0, 3, size=(n_classes, d))
    x = centres[y] + rng.normal(0, 1, size=(n, d)) + shift
    return x.astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep test features out of the user's cache unless the Makefile set one."""
    import os

    if "ECOS_FAST_CACHE" not in os.environ:
        os.environ["ECOS_FAST_CACHE"] = str(tmp_path_factory.mktemp("cache"))


# ---------------------------------------------------------------- training


def test_import_does_not_pull_torch() -> None:
    code = "import sys, ecos_fast; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_training_is_reproducible_on_cpu() -> None:
    x, y = _blobs(300, 4, 16, seed=0)
    a = train_classifier(x, y, n_classes=4, config=FAST, seed=7)
    b = train_classifier(x, y, n_classes=4, config=FAST, seed=7)
    c = train_classifier(x, y, n_classes=4, config=FAST, seed=8)
    assert np.array_equal(a.logits(x), b.logits(x))
    assert not np.array_equal(a.logits(x), c.logits(x))


def test_labeling_beats_chance_and_cnn_runs() -> None:
    x, y = _blobs(400, 5, 12, seed=1)
    xt, yt = _blobs(200, 5, 12, seed=2)
    r = run_labeling(x, y, xt, yt, n_classes=5, config=FAST, seed=0)
    assert r.accuracy > 0.6 and r.n_train == 400
    semi = run_labeling(x[:50], y[:50], xt, yt, n_classes=5, config=FAST, unlabeled_x=x[50:])
    assert semi.accuracy > 0.6
    # The CNN trains on images: class = which quadrant is bright.
    rng = np.random.default_rng(0)
    yi = np.arange(200) % 4
    imgs = rng.integers(0, 40, size=(200, 32, 32, 3)).astype(np.uint8)
    for i, c in enumerate(yi):
        r0, c0 = divmod(int(c), 2)
        imgs[i, 16 * r0 : 16 * r0 + 16, 16 * c0 : 16 * c0 + 16] = 220
    cnn = run_labeling(
        imgs[:150], yi[:150], imgs[150:], yi[150:], model="cnn", n_classes=4, config=FAST
    )
    assert cnn.accuracy > 0.5


def test_compression_student_is_smaller_and_learns() -> None:
    x, y = _blobs(600, 5, 12, seed=3)
    xt, yt = _blobs(200, 5, 12, seed=4)
    teacher = train_teacher(x, y, n_classes=5, config=FAST, seed=0)
    r = run_compression(teacher, x[:150], xt, yt, config=FAST.with_(min_steps=300), seed=0)
    assert r.accuracy > 0.6
    assert r.extra["student_bytes"] < r.extra["teacher_bytes"] / 10


# ---------------------------------------------------------------- private kNN


def test_knn_votes_sum_to_k_and_match_bruteforce() -> None:
    p, yp = _blobs(120, 3, 6, seed=5)
    q, _ = _blobs(30, 3, 6, seed=6)
    votes = cl.knn_votes(p, yp, q, k=7, n_classes=3)
    assert votes.shape == (30, 3) and (votes.sum(axis=1) == 7).all()
    pn = p / np.linalg.norm(p, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    top = np.argsort(-(qn @ pn.T), axis=1, kind="stable")[:, :7]
    expect = np.stack([np.bincount(yp[t], minlength=3) for t in top])
    assert np.array_equal(votes, expect)


def test_epsilon_grows_with_queries() -> None:
    eps = [cl.knn_epsilon(n, 40.0, 1e-5) for n in (10, 100, 1000)]
    assert 0 < eps[0] < eps[1] < eps[2]
    p, yp = _blobs(200, 4, 8, seed=7)
    q, yq = _blobs(100, 4, 8, seed=8)
    few = cl.private_knn_label(p, yp, q[:10], sigma=5.0, seed=0, n_classes=4)
    many = cl.private_knn_label(p, yp, q, sigma=5.0, seed=0, n_classes=4, true_labels=yq)
    assert math.isfinite(few.epsilon) and few.epsilon < many.epsilon
    assert many.label_accuracy is not None and many.label_accuracy > 0.5


def test_calibrated_sigma_meets_target_epsilon() -> None:
    for n, target in ((100, 2.0), (3000, 5.0)):
        sigma = cl.calibrate_knn_sigma(n, target, 1e-5)
        assert cl.knn_epsilon(n, sigma, 1e-5) == pytest.approx(target, rel=0.02)


def test_ledger_refuses_over_budget_release() -> None:
    from ecos_fast.ledger import Ledger

    p, yp = _blobs(100, 2, 4, seed=9)
    with Ledger(":memory:", budget_epsilon=1.0, delta=1e-5) as ledger:
        with pytest.raises(PrivacyBudgetExceededError):
            cl.private_knn_label(p, yp, p[:50], sigma=2.0, n_classes=2, ledger=ledger, seed=0)
        assert ledger.releases() == []  # nothing recorded, nothing released


# ---------------------------------------------------------------- selection


def test_ecos_prefers_client_domain_over_random() -> None:
    """A pool with far-away domains: ECOS takes more client-domain rows than Random."""
    client, _ = _blobs(300, 3, 8, seed=10)
    near, _ = _blobs(300, 3, 8, seed=11)  # the client's domain inside the pool
    far = [_blobs(300, 3, 8, seed=12 + i, shift=40.0 * (i + 1))[0] for i in range(3)]
    pool = np.concatenate([near, *far]).astype(np.float32)
    is_client = np.r_[np.ones(300, bool), np.zeros(900, bool)]
    cents = ecos_fast.fit_centroids(pool, 20, seed=0)
    resp = ecos_fast.respond(client, cents, 0.58, 1e-5, seed=0)
    sel = ecos_fast.select(pool, ecos_fast.Sketch.join(cents, resp), 100, labels=cents.labels)
    rnd = ecos_fast.select_random(len(pool), 100, seed=0)
    assert is_client[np.asarray(sel)].mean() > 2 * is_client[np.asarray(rnd)].mean()


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize("app", ["labeling", "compression", "client-labeling"])
def test_tiny_experiment_end_to_end(app: str, tmp_path: Path) -> None:
    cfg = ExperimentConfig(
        app=app,
        domains=("synth",),
        budgets=(30, 60),
        seeds=(1,),
        n_clusters=10,
        # 20 private rows over R=10 clusters: the rule's default 2-sigma threshold would
        # leave fewer covered pool rows than the budget (a shortfall, reported as such);
        # threshold 0 keeps this a test of the loop at the budgets it asks for.
        threshold=0.0,
        sweep_epsilons=(math.inf,),
        knn_epsilon=20.0,
        sizes=TINY,
        train_epochs=5,
        train_min_steps=60,
        progress=False,
    )
    records, comms = run_experiment(cfg)
    methods = {(r.method, r.budget) for r in records}
    assert {"ecos", "kcenter", "random", "local"} <= {m for m, _ in methods}
    for r in records:
        assert 0.0 <= r.accuracy <= 1.0
        if r.method != "local":
            assert r.n_selected == r.budget
    # Above chance (10 classes) on the easy rendered domain, with oracle or teacher labels.
    summ = summarise(records, 0.58)
    if app != "client-labeling":
        assert summ[("average", 60, "ecos")][0] > 20.0
    # epsilon: baselines release nothing in labeling; ECOS reports its composed epsilon.
    ecos = [r for r in records if r.method == "ecos" and r.epsilon == 0.58]
    if app == "client-labeling":
        assert all(20.0 < r.total_epsilon < 20.0 + 0.58 for r in ecos)
        # Each budget is its own experiment: its epsilon must not include the queries
        # of the other budgets (a shared ledger once reported 1000 + 3000 queries).
        eps = [r.total_epsilon for r in ecos]
        assert max(eps) == pytest.approx(min(eps), rel=1e-6)
        rnd = [r for r in records if r.method == "random"]
        assert all(0 < r.total_epsilon <= 20.0 * 1.02 for r in rnd)
    else:
        assert all(r.total_epsilon == pytest.approx(0.58) for r in ecos)
    assert comms[0].ecos_bytes < comms[0].upload_bytes < comms[0].download_bytes
    paths = write_reports(records, comms, tmp_path, name=app, title=app)
    assert all(p.exists() and p.stat().st_size > 0 for p in paths.values())
    assert "ECOS" in format_table(records)


def test_demo_main_writes_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ecos_fast.apps.experiment import run_experiment as _  # noqa: F401
    from ecos_fast.demo import main

    # the preset "small" keeps this fast; one client domain, tiny budgets.
    code = main(
        [
            "--preset",
            "small",
            "--domains",
            "hershey",
            "--budgets",
            "40",
            "--seeds",
            "1",
            "--n-clusters",
            "10",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "ECOS" in out and "K-Center" in out and "Local" in out
    assert (tmp_path / "demo.md").exists() and (tmp_path / "demo.png").exists()


# ---------------------------------------------------------------- selection cache key


def _key_split(**changes: object) -> object:
    from types import SimpleNamespace

    base: dict[str, object] = {
        "client_domain": "mnist",
        "domains": DOMAINS,
        "data_seed": 0,
        "extractor": "ppocr",
        "private_labels": np.zeros(10),
        "pool_labels": np.zeros(100),
        "test_labels": np.zeros(20),
    }
    base.update(changes)
    return SimpleNamespace(**base)


def _keys(split: object, cfg: ExperimentConfig, seed: int = 1) -> tuple[str, str]:
    from ecos_fast.apps.experiment import selection_key

    return (
        selection_key(split, cfg, seed, "kmeans-R10", n_clusters=10, normalize=None),
        selection_key(split, cfg, seed, "kcenter", first=3),
    )


@pytest.mark.parametrize(
    ("what", "split_changes", "cfg_changes", "seed"),
    [
        ("preset", {}, {"preset": "small"}, 1),
        ("domains", {"domains": DOMAINS[:-1]}, {}, 1),
        ("sizes", {}, {"sizes": TINY}, 1),
        ("split sizes", {"pool_labels": np.zeros(101)}, {}, 1),
        ("data seed of the split", {"data_seed": 1}, {}, 1),
        ("data seed of the config", {}, {"data_seed": 1}, 1),
        ("split seed", {}, {}, 2),
        ("private fraction", {}, {"private_fraction": 0.3}, 1),
        ("private size", {}, {"private_size": 100}, 1),
        ("extractor", {"extractor": "ddddocr"}, {}, 1),
        ("client", {"client_domain": "synth"}, {}, 1),
    ],
)
def test_selection_key_changes_with_every_data_input(
    what: str, split_changes: dict[str, object], cfg_changes: dict[str, object], seed: int
) -> None:
    """A stale sketch or K-Center order must never be reused after a data change."""
    base = _keys(_key_split(), ExperimentConfig())
    changed = _keys(_key_split(**split_changes), ExperimentConfig(**cfg_changes), seed)  # type: ignore[arg-type]
    assert base[0] != changed[0] and base[1] != changed[1], what


@pytest.mark.parametrize(
    ("module", "name", "value"),
    [
        ("ecos_fast.datasets.digits", "DATA_VERSION", 999),
        ("ecos_fast.datasets.fonts", "font_fingerprint", lambda: "other-fonts"),
        ("ecos_fast.features", "FEATURE_VERSION", 999),
        ("ecos_fast", "__version__", "9.9.9"),
    ],
)
def test_selection_key_changes_with_data_and_code_versions(
    module: str, name: str, value: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    base = _keys(_key_split(), ExperimentConfig())
    monkeypatch.setattr(importlib.import_module(module), name, value)
    changed = _keys(_key_split(), ExperimentConfig())
    assert base[0] != changed[0] and base[1] != changed[1], name


def test_selection_key_holds_each_artefacts_parameters() -> None:
    from ecos_fast.apps.experiment import selection_key

    split, cfg = _key_split(), ExperimentConfig()
    km = selection_key(split, cfg, 1, "kmeans-R10", n_clusters=10, normalize=None)
    assert km != selection_key(split, cfg, 1, "kmeans-R10", n_clusters=10, normalize="l2")
    assert km != selection_key(split, cfg, 1, "kmeans-R20", n_clusters=20, normalize=None)
    kc = selection_key(split, cfg, 1, "kcenter", first=3)
    assert kc != selection_key(split, cfg, 1, "kcenter", first=4)
    # The artefacts come from the public pool only: the privacy and selection settings
    # do not change them, so the epsilon sweep reuses one k-means fit.
    other = ExperimentConfig(epsilon=0.1, delta=1e-6, threshold=2.0, within="kcenter")
    assert km == selection_key(split, other, 1, "kmeans-R10", n_clusters=10, normalize=None)
    assert (
        selection_key(split, ExperimentConfig(evaluate="validation"), 1, "kcenter", first=3) == kc
    )


# ---------------------------------------------------------------- semi-supervised, presets


def test_self_training_rounds_are_seeded_and_use_the_unlabeled_rows() -> None:
    x, y = _blobs(1200, 4, 10, seed=20)
    xt, yt = _blobs(300, 4, 10, seed=21)
    kw = {"n_classes": 4, "config": FAST, "unlabeled_x": x[40:], "rounds": 2}
    a = run_labeling(x[:40], y[:40], xt, yt, seed=3, **kw)  # type: ignore[arg-type]
    b = run_labeling(x[:40], y[:40], xt, yt, seed=3, **kw)  # type: ignore[arg-type]
    assert a.accuracy == b.accuracy > 0.6
    assert a.n_train == 40


def test_semi_supervised_and_private_size_in_the_experiment(tmp_path: Path) -> None:
    """Every method gets a self-training accuracy beside its supervised one."""
    cfg = ExperimentConfig(
        app="labeling",
        domains=("synth",),
        budgets=(30,),
        seeds=(1,),
        n_clusters=10,
        sizes=TINY,
        private_size=15,
        semi_supervised=True,
        semi_unlabeled=100,
        train_epochs=5,
        train_min_steps=60,
        progress=False,
    )
    records, comms = run_experiment(cfg)
    assert {r.method for r in records} == {"ecos", "kcenter", "random", "local"}
    for r in records:
        assert 0.0 <= r.extra["semi_accuracy"] <= 1.0
        assert r.extra["private_size"] == 15
        assert "junk_share" not in r.extra  # the default preset has no junk
    assert next(r for r in records if r.method == "local").n_selected == 15
    assert comms[0].n_private == 15
    semi = format_table(records, metric="semi_accuracy")
    assert "ECOS vs Random: wins" in semi
    paths = write_reports(records, comms, tmp_path, name="semi", title="semi")
    assert "Semi-supervised" in paths["markdown"].read_text()


def test_reproduce_private_size_sweep_writes_the_crossover(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ecos_fast.apps.reproduce import main

    code = main(
        [
            "--preset", "small", "--domains", "hershey", "--budgets", "40", "--seeds", "1",
            "--n-clusters", "10", "--methods", "ecos,local", "--private-sizes", "20,60",
            "--no-semi-supervised", "--no-sweep", "--out", str(tmp_path), "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "| 20 |" in out and "| 60 |" in out
    assert "private size 20, B=40: ECOS vs Local: wins" in out
    assert (tmp_path / "labeling-private-size.png").stat().st_size > 0
    runs = (tmp_path / "labeling-private-size-runs.csv").read_text()
    assert runs.count("\n") == 1 + 2 * 2  # header + (ecos, local) x 2 sizes


def test_hard_preset_heads_have_a_junk_class(tmp_path: Path) -> None:
    """Hard preset: 11 classes (10 = "not a digit"), and the junk share is reported."""
    from ecos_fast.apps import data
    from ecos_fast.datasets.digits import PRESETS

    if "hard" not in PRESETS:
        pytest.skip("the data layer has no hard preset yet")
    domains = data.preset_domains("hard")
    assert "junk" in domains and "junk" not in data.client_domains("hard")
    assert data.n_classes("hard") == 11
    cfg = ExperimentConfig(
        app="labeling",
        preset="hard",
        domains=(data.client_domains("hard")[-1],),
        budgets=(40,),
        seeds=(1,),
        n_clusters=10,
        sizes={d: (40, 20) for d in domains},
        methods=("ecos", "random", "local"),
        train_epochs=5,
        train_min_steps=60,
        progress=False,
    )
    records, comms = run_experiment(cfg)
    for r in records:
        assert 0.0 <= r.accuracy <= 1.0
        if r.method != "local":
            assert 0.0 <= r.extra["junk_share"] <= 1.0
    md = write_reports(records, comms, tmp_path, name="hard", title="hard")["markdown"]
    assert "from junk" in md.read_text()


def test_image_split_matches_the_feature_split_row_for_row() -> None:
    """``model="cnn"`` trains on images: they must be the feature split's rows."""
    from ecos_fast.apps import data

    kw = {"data_seed": 0, "private_size": 12, "sizes": TINY}
    feats = data.split_features("hand", "default", 2, **kw)  # type: ignore[arg-type]
    imgs = data.split_images("hand", "default", 2, **kw)  # type: ignore[arg-type]
    assert len(feats.private_labels) == len(imgs.private_labels) == 12
    assert np.array_equal(feats.private_labels, imgs.private_labels)
    assert np.array_equal(feats.pool_labels, imgs.pool_labels)
    assert np.array_equal(feats.pool_domains, imgs.pool_domains)


def test_suggested_clusters_per_release(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--n-clusters auto: each release's sketch has ecos_fast.suggest_n_clusters of the
    client's size and that release's epsilon (one fit per distinct R)."""
    import ecos_fast
    from ecos_fast.apps import experiment
    from ecos_fast.apps.reproduce import main

    cfg = ExperimentConfig(n_clusters=None, threshold=1.0)
    assert cfg.clusters_for(900, 0.58) == ecos_fast.suggest_n_clusters(
        900, 0.58, 1e-5, threshold=1.0
    )
    assert ExperimentConfig(n_clusters=7).clusters_for(900, 0.58) == 7
    with pytest.raises(ecos_fast.InvalidInputError, match="n_clusters=0"):
        ExperimentConfig(n_clusters=0)
    fits: list[int] = []
    real = experiment._cached_centroids

    def spy(pool: Any, split: Any, cfg: Any, seed: int, n_clusters: int) -> Any:
        fits.append(n_clusters)
        return real(pool, split, cfg, seed, n_clusters)

    monkeypatch.setattr(experiment, "_cached_centroids", spy)
    code = main(
        [
            "--preset", "small", "--domains", "hershey", "--budgets", "40", "--seeds", "1",
            "--n-clusters", "auto", "--methods", "ecos", "--private-size", "60",
            "--sweep", "8,inf", "--no-semi-supervised", "--out", str(tmp_path), "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    want = {ecos_fast.suggest_n_clusters(60, e, 1e-5) for e in (0.58, 8.0, math.inf)}
    assert sorted(fits) == sorted(want) == [50, 200]  # the floor at 0.58 and 8, inf: 200
    assert "R=suggest_n_clusters(n, ε, δ)" in capsys.readouterr().out
    for bad in ("0", "many"):
        assert main(["--n-clusters", bad, "--out", str(tmp_path), "--quiet"]) == 2


def test_neighbours_reach_the_clients_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--neighbours k: every ECOS release of the run counts at k neighbours."""
    import ecos_fast
    from ecos_fast import ledger
    from ecos_fast.apps.reproduce import main

    for bad in (0, True, 2.0):
        with pytest.raises(ecos_fast.InvalidInputError, match="neighbours"):
            ExperimentConfig(neighbours=bad)  # type: ignore[arg-type]
    seen: list[int] = []
    real = ledger.respond_with_ledger

    def spy(*args: Any, **kw: Any) -> Any:
        resp = real(*args, **kw)
        seen.append(resp.neighbours)
        return resp

    monkeypatch.setattr(ledger, "respond_with_ledger", spy)
    code = main(
        [
            "--preset", "small", "--domains", "hershey", "--budgets", "40", "--seeds", "1",
            "--n-clusters", "12", "--methods", "ecos", "--private-size", "60", "--neighbours", "3",
            "--no-sweep", "--no-semi-supervised", "--out", str(tmp_path), "--quiet",
        ]
    )  # fmt: skip
    assert code == 0 and seen == [3]
    assert main(["--neighbours", "0", "--out", str(tmp_path), "--quiet"]) == 2
    # auto: suggest_neighbours of the client's size, the release's epsilon and R.
    cfg = ExperimentConfig(neighbours=None)
    assert cfg.neighbours_for(60, 0.58, 12) == ecos_fast.suggest_neighbours(60, 0.58, 1e-5, 12)
    assert cfg.neighbours_for(60, 0.58, 12) > 1 == ExperimentConfig().neighbours_for(60, 0.58, 12)


def test_smooth_reaches_the_clouds_selection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--smooth X: every ECOS selection of the run reads the counts that way."""
    import ecos_fast
    from ecos_fast import rule
    from ecos_fast.apps.reproduce import main

    seen: list[str] = []
    real = ecos_fast.select

    def spy(*args: Any, **kw: Any) -> Any:
        seen.append(kw["smooth"])
        return real(*args, **kw)

    monkeypatch.setattr(ecos_fast, "select", spy)
    other = "none" if rule.DEFAULT_SMOOTH == "sure" else "sure"
    for flag, want in (([], rule.DEFAULT_SMOOTH), (["--smooth", other], other)):
        seen.clear()
        code = main(
            [
                "--preset", "small", "--domains", "hershey", "--budgets", "40", "--seeds", "1",
                "--n-clusters", "12", "--methods", "ecos", "--private-size", "60", *flag,
                "--no-sweep", "--no-semi-supervised", "--out", str(tmp_path), "--quiet",
            ]
        )  # fmt: skip
        assert code == 0 and seen == [want]
    assert main(["--smooth", "gaussian", "--out", str(tmp_path), "--quiet"]) == 2
