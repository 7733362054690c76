"""The ``ecos-fast`` command line: two roles, exchange files, exit codes, JSON output."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import ecos_fast
import numpy as np
import pytest
from ecos_fast.cli import (
    EXIT_BUDGET,
    EXIT_INPUT,
    EXIT_OK,
    EXIT_USAGE,
    run,
)
from ecos_fast.feature_files import load_features
from ecos_fast.ledger import Ledger

K, SEED, NOISE_SEED, BUDGET, EPS, DELTA = 6, 3, 11, 40, 0.58, 1e-5


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    pool = np.concatenate([rng.normal(m, 1.0, (200, 5)) for m in (0.0, 6.0, 12.0)])
    private = rng.normal(6.0, 1.0, (80, 5))
    return pool.astype(np.float32), private.astype(np.float32)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Pool and private features, centroids and a response made through the CLI."""
    pool, private = _data()
    paths = {
        "pool": tmp_path / "pool.npy",
        "private": tmp_path / "private.npy",
        "centroids": tmp_path / "centroids.safetensors",
        "response": tmp_path / "response.safetensors",
    }
    np.save(paths["pool"], pool)
    np.save(paths["private"], private)
    assert _run("-q", "sketch", paths["pool"], "-o", paths["centroids"], "-k", K) == 0
    assert (
        _run(
            "-q",
            "respond",
            paths["centroids"],
            paths["private"],
            "-o",
            paths["response"],
            "--epsilon",
            EPS,
            "--seed",
            NOISE_SEED,
        )
        == 0
    )
    return paths


def _run(*args: Any) -> int:
    return run([str(a) for a in args])


def _cli_subprocess(cwd: Path, *args: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ECOS_FAST_NUM_THREADS": "2"}
    return subprocess.run(
        [sys.executable, "-m", "ecos_fast.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- the protocol through the command line alone ---------------------------------
def test_two_roles_in_separate_folders_match_the_python_api(tmp_path: Path) -> None:
    pool, private = _data()
    cloud, client = tmp_path / "cloud", tmp_path / "client"
    cloud.mkdir()
    client.mkdir()
    np.save(cloud / "pool.npy", pool)
    np.save(client / "private.npy", private)

    r = _cli_subprocess(
        cloud, "--json", "sketch", "pool.npy", "-o", "centroids.safetensors", "-k", K,
        "--seed", SEED,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n_clusters"] == K
    shutil.copy(cloud / "centroids.safetensors", client / "centroids.safetensors")

    r = _cli_subprocess(
        client, "--json", "respond", "centroids.safetensors", "private.npy",
        "-o", "response.safetensors", "--epsilon", EPS, "--delta", DELTA, "--seed", NOISE_SEED,
        "--ledger", "ledger.sqlite", "--budget-epsilon", 1.0, "--cloud", "acme",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["total_epsilon"] == pytest.approx(EPS, abs=0.01)
    shutil.copy(client / "response.safetensors", cloud / "response.safetensors")

    r = _cli_subprocess(
        cloud, "--json", "select", "pool.npy", "centroids.safetensors", "response.safetensors",
        "--budget", BUDGET, "-o", "selected.npy", "--summary", "summary.json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    # stdout also carries the remarks (here: the response is not signed), the file does not.
    assert any("is not signed" in m for m in summary.pop("messages"))
    assert summary == json.loads((cloud / "summary.json").read_text())

    # The same round through the Python API, same seeds.
    cents = ecos_fast.fit_centroids(pool, K, seed=SEED)
    resp = ecos_fast.respond(private, cents, EPS, DELTA, seed=NOISE_SEED)
    sel = ecos_fast.select(pool, ecos_fast.Sketch.join(cents, resp), BUDGET)

    got_c = ecos_fast.load_centroids(cloud / "centroids.safetensors")
    np.testing.assert_array_equal(got_c.centroids, cents.centroids)
    got_r = ecos_fast.load_response(cloud / "response.safetensors", centroids=got_c)
    np.testing.assert_array_equal(got_r.noisy_counts, resp.noisy_counts)
    np.testing.assert_array_equal(np.load(cloud / "selected.npy"), sel.indices)
    assert summary["quotas"] == np.asarray(sel.quotas).tolist()
    assert summary["n_selected"] == BUDGET == len(sel)
    comm = summary["communication"]
    assert comm["download_bytes"] == (cloud / "centroids.safetensors").stat().st_size
    assert comm["upload_bytes"] == (cloud / "response.safetensors").stat().st_size
    assert comm["download_payload_bytes"] == K * 5 * 4
    assert comm["upload_payload_bytes"] == K * 8
    # Nothing private left the client's folder except the response.
    assert sorted(p.name for p in cloud.iterdir()) == [
        "centroids.safetensors", "pool.npy", "response.safetensors", "selected.npy",
        "summary.json",
    ]  # fmt: skip
    with Ledger(client / "ledger.sqlite") as ledger:
        (row,) = ledger.releases("acme")
        assert row.sigma == resp.sigma and row.epsilon == EPS and row.purpose == "coverage"


@pytest.mark.parametrize("method", ["random", "kcenter"])
def test_baselines_match_the_python_api(
    files: dict[str, Path], tmp_path: Path, method: str
) -> None:
    out = tmp_path / f"{method}.npy"
    assert _run("-q", "select", files["pool"], "--method", method, "-b", 25, "-o", out) == 0
    pool, _ = _data()
    want = (
        ecos_fast.select_random(pool, 25, seed=0)
        if method == "random"
        else ecos_fast.select_kcenter(pool, 25)
    )
    np.testing.assert_array_equal(np.load(out), want.indices)


def test_shard_folder_equals_one_file(files: dict[str, Path], tmp_path: Path) -> None:
    pool, _ = _data()
    shards = tmp_path / "shards"
    shards.mkdir()
    for i, part in enumerate(np.array_split(pool, 3)):
        np.save(shards / f"part-{i:03d}.npy", part)
    np.testing.assert_array_equal(load_features(shards), pool)
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    common = [files["centroids"], files["response"], "-b", BUDGET]
    assert _run("-q", "select", files["pool"], *common, "-o", a) == 0
    assert _run("-q", "select", shards, *common, "-o", b) == 0
    np.testing.assert_array_equal(np.load(a), np.load(b))
    c1, c2 = tmp_path / "c1.safetensors", tmp_path / "c2.safetensors"
    assert _run("-q", "sketch", files["pool"], "-o", c1, "-k", K) == 0
    assert _run("-q", "sketch", shards, "-o", c2, "-k", K) == 0
    assert ecos_fast.load_centroids(c1).fingerprint == ecos_fast.load_centroids(c2).fingerprint


def test_parquet_with_other_columns_is_read_through_column(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Feature tables usually carry ids or labels beside the features. Before, the CLI
    could not name the feature column (no --column: exit 2), and the error told the
    user to 'pass column=', which only the Python API takes."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")

    def table(path: Path, x: np.ndarray) -> Path:
        pq.write_table(
            pa.table(
                {"id": np.arange(len(x)), "features": pa.array(x.tolist(), pa.list_(pa.float32()))}
            ),
            path,
        )
        return path

    pool = table(tmp_path / "pool.parquet", np.load(files["pool"]))
    private = table(tmp_path / "private.parquet", np.load(files["private"]))
    cents, resp = tmp_path / "c.safetensors", tmp_path / "r.safetensors"
    assert _run("-q", "sketch", pool, "-o", cents, "-k", K) == EXIT_INPUT
    assert "--column on the command line" in capsys.readouterr().err
    assert _run("-q", "sketch", pool, "--column", "features", "-o", cents, "-k", K) == 0
    assert _run("-q", "respond", cents, private, "--column", "features", "-o", resp,
                "--epsilon", EPS, "--seed", NOISE_SEED) == 0  # fmt: skip
    out, ref = tmp_path / "s.npy", tmp_path / "ref.npy"
    assert _run("-q", "select", pool, cents, resp, "--column", "features", "-b", 12, "-o", out) == 0
    # The same as from the .npy files.
    assert _run("-q", "select", files["pool"], files["centroids"], files["response"], "-b", 12,
                "-o", ref) == 0  # fmt: skip
    np.testing.assert_array_equal(np.load(out), np.load(ref))
    assert _run("-q", "sketch", pool, "--column", "nope", "-o", cents, "-k", K) == EXIT_INPUT
    assert "no column 'nope'" in capsys.readouterr().err


def test_bad_shards(tmp_path: Path) -> None:
    d = tmp_path / "shards"
    d.mkdir()
    assert _run("-q", "sketch", d, "-o", tmp_path / "c.safetensors") == EXIT_INPUT  # empty
    np.save(d / "a.npy", np.zeros((3, 2), np.float32))
    np.save(d / "b.npy", np.zeros((3, 4), np.float32))
    assert _run("-q", "sketch", d, "-o", tmp_path / "c.safetensors") == EXIT_INPUT
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    assert _run("-q", "sketch", tmp_path / "obj.npy", "-o", tmp_path / "c.safetensors") == 3


# -- exit codes ----------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        [],  # no verb
        ["frobnicate"],
        ["sketch"],  # missing POOL
        ["sketch", "pool.npy"],  # missing -o
        ["sketch", "pool.npy", "-o", "c.safetensors", "--clusters", "0"],
        ["sketch", "pool.npy", "-o", ".", "--clusters", "2"],  # -o names a folder
        ["respond", "c", "p", "-o", ".", "--epsilon", "1"],
        ["respond", "c", "p", "-o", "r", "--epsilon", "-1"],
        ["respond", "c", "p", "-o", "r", "--epsilon", "1", "--delta", "1.5"],
        ["respond", "c", "p", "-o", "r", "--epsilon", "1", "--budget-epsilon", "2"],
        # Before: ignored without --ledger, exit 0.
        ["respond", "c", "p", "-o", "r", "--epsilon", "1", "--budget-delta", "1e-3"],
        ["respond", "c", "p", "-o", "r", "--epsilon", "1", "--cloud", "acme"],
        ["respond", "c", "p", "-o", "r", "--epsilon", "1", "--accountant", "rdp"],
        ["select", "pool.npy", "-b", "5", "-o", "s.npy"],  # ecos without files
        ["select", "pool.npy", "-b", "5", "-o", "s.npy", "--method", "magic"],
        ["select", "pool.npy", "--method", "random", "-b", "5", "-o", "s.npy", "--report", "r.pdf"],
    ],
)
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(args) == EXIT_USAGE
    if args:
        assert "Usage" in capsys.readouterr().err or args == ["frobnicate"]


def _flip_last_byte(src: Path, dst: Path) -> Path:
    data = bytearray(src.read_bytes())
    data[-1] ^= 0x01
    dst.write_bytes(bytes(data))
    return dst


def test_tampered_response_exits_3(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _flip_last_byte(files["response"], tmp_path / "tampered.safetensors")
    rc = _run("select", files["pool"], files["centroids"], bad, "-b", 10, "-o", tmp_path / "s.npy")
    assert rc == EXIT_INPUT
    assert "checksum" in capsys.readouterr().err
    assert not (tmp_path / "s.npy").exists()
    # Truncated.
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(files["response"].read_bytes()[:100])
    rc = _run("select", files["pool"], files["centroids"], cut, "-b", 10, "-o", tmp_path / "s.npy")
    assert rc == EXIT_INPUT


def test_response_to_other_centroids_exits_3(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.safetensors"
    assert _run("-q", "sketch", files["pool"], "-o", other, "-k", K, "--seed", 99) == 0
    rc = _run("select", files["pool"], other, files["response"], "-b", 10, "-o", tmp_path / "s.npy")
    assert rc == EXIT_INPUT
    assert "answers centroids" in capsys.readouterr().err


def test_other_input_errors_exit_3(files: dict[str, Path], tmp_path: Path) -> None:
    s = tmp_path / "s.npy"
    common = [files["centroids"], files["response"], "-o", s]
    assert _run("-q", "select", files["pool"], *common, "-b", 10**6) == EXIT_INPUT  # > pool
    assert _run("-q", "select", tmp_path / "missing.npy", *common, "-b", 5) == EXIT_INPUT
    wrong_width = tmp_path / "wide.npy"
    np.save(wrong_width, np.zeros((10, 7), np.float32))
    rc = _run(
        "-q", "respond", files["centroids"], wrong_width, "-o", tmp_path / "r.safetensors",
        "--epsilon", 1,
    )  # fmt: skip
    assert rc == EXIT_INPUT
    # A centroid file where a response is expected.
    assert _run("-q", "select", files["pool"], files["centroids"], files["centroids"],
                "-b", 5, "-o", s) == EXIT_INPUT  # fmt: skip


def test_exhausted_budget_exits_4_and_writes_nothing(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = tmp_path / "ledger.sqlite"

    def respond(out: Path) -> int:
        return _run(
            "respond", files["centroids"], files["private"], "-o", out, "--epsilon", EPS,
            "--ledger", ledger, "--budget-epsilon", 0.8, "--cloud", "acme",
        )  # fmt: skip

    assert respond(tmp_path / "r1.safetensors") == EXIT_OK
    capsys.readouterr()
    assert respond(tmp_path / "r2.safetensors") == EXIT_BUDGET
    err = capsys.readouterr().err
    assert "privacy budget exhausted" in err and "budget epsilon=0.8" in err
    assert not (tmp_path / "r2.safetensors").exists()
    with Ledger(ledger) as led:
        assert len(led.releases()) == 1
    # Another cloud name has its own budget; no noise at all is never within a budget.
    assert _run("-q", "respond", files["centroids"], files["private"], "-o",
                tmp_path / "r3.safetensors", "--epsilon", "inf", "--ledger", ledger,
                "--budget-epsilon", 100, "--cloud", "other") == EXIT_BUDGET  # fmt: skip
    # The JSON error object names the exit code.
    assert _run("--json", "respond", files["centroids"], files["private"], "-o",
                tmp_path / "r4.safetensors", "--epsilon", EPS, "--ledger", ledger,
                "--budget-epsilon", 0.8, "--cloud", "acme") == EXIT_BUDGET  # fmt: skip
    err_obj = json.loads(capsys.readouterr().out)["error"]
    assert err_obj["type"] == "PrivacyBudgetExceededError" and err_obj["exit_code"] == 4


# -- inspect, info, ledger, --json -------------------------------------------------
def test_inspect_good_files(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("--json", "inspect", files["centroids"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert (c["kind"], c["valid"], c["n_clusters"], c["n_features"]) == ("centroids", True, K, 5)
    rc = _run("inspect", files["response"], "--centroids", files["centroids"], "--json")
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    assert r["kind"] == "response" and r["matches_centroids"] is True
    assert r["epsilon"] == EPS and r["centroids_fingerprint"] == c["fingerprint"]
    assert _run("inspect", files["response"]) == 0
    assert "valid response file" in capsys.readouterr().out


def test_inspect_bad_files(files: dict[str, Path], tmp_path: Path) -> None:
    bad = _flip_last_byte(files["centroids"], tmp_path / "bad.safetensors")
    assert _run("-q", "inspect", bad) == EXIT_INPUT
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 64)
    assert _run("-q", "inspect", junk) == EXIT_INPUT
    assert _run("-q", "inspect", tmp_path / "missing") == EXIT_INPUT
    other = tmp_path / "other.safetensors"
    assert _run("-q", "sketch", files["pool"], "-o", other, "-k", K, "--seed", 99) == 0
    assert _run("-q", "inspect", files["response"], "--centroids", other) == EXIT_INPUT


def test_inspect_centroids_option_on_a_centroid_file_is_a_usage_error(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `inspect CENTROIDS --centroids X` ignored X (any file, even a response)
    and exited 0, as if a match had been checked."""
    common = ["--centroids", files["response"]]
    assert _run("-q", "inspect", files["centroids"], *common) == EXIT_USAGE
    assert "--centroids" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["random", "kcenter"])
@pytest.mark.parametrize(
    "option",
    [["--threshold", "3"], ["--within", "nearest"], ["--weights", "posterior"],
     ["--low-signal", "keep"], ["--smooth", "sure"], ["--candidates", "2"],
     ["--fallback", "random"]],
)  # fmt: skip
def test_ecos_rule_options_with_a_baseline_method_are_usage_errors(
    method: str, option: list[str], files: dict[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Before: `select --method random --threshold 3` (or --within, ...) ignored the
    option and exited 0."""
    out = tmp_path / "s.npy"
    argv = ["-q", "select", files["pool"], "--method", method, "-b", BUDGET, "-o", out]
    assert _run(*argv, *option) == EXIT_USAGE
    assert option[0] in capsys.readouterr().err and not out.exists()
    assert _run(*argv) == 0


def _same_file_cases(f: dict[str, Path]) -> list[tuple[list[Any], str]]:
    c, r, pool, priv = f["centroids"], f["response"], f["pool"], f["private"]
    resp = ["respond", c, priv, "--epsilon", EPS]
    sel = ["select", pool, c, r, "-b", BUDGET]
    link = pool.parent / "link.npy"
    link.symlink_to(pool)
    shards = pool.parent / "shards"
    shards.mkdir()
    np.save(shards / "a.npy", np.load(pool))
    return [
        (["sketch", pool, "-k", K, "-o", pool], "POOL"),  # replaced by the centroid file
        (["sketch", pool, "-k", K, "-o", pool.parent / "k", "--sign-key", pool.parent / "k"],
         "--sign-key"),
        ([*resp, "-o", c], "CENTROIDS"),
        ([*resp, "-o", f["pool"].parent / "./private.npy"], "PRIVATE"),
        ([*resp, "-o", pool.parent / "l.sqlite", "--ledger", pool.parent / "l.sqlite"],
         "--ledger"),
        ([*sel, "-o", pool], "POOL"),
        ([*sel, "-o", link], "POOL"),  # the same file through a link
        (["select", shards, c, r, "-b", BUDGET, "-o", shards / "s.npy"], "inside POOL"),
        ([*sel, "-o", pool.parent / "s.npy", "--summary", r], "RESPONSE"),
        ([*sel, "-o", pool.parent / "s.npy", "--summary", pool.parent / "s.npy"], "-o"),
    ]  # fmt: skip


def test_an_output_that_is_an_input_is_a_usage_error_and_nothing_is_written(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `sketch pool.npy -o pool.npy` replaced the pool with the centroid file,
    and `respond C P -o C` the centroids with the response, both with exit 0; `select
    -o` could overwrite the pool, and an output inside a pool folder became a shard."""
    for argv, what in _same_file_cases(files):
        before = {p: p.read_bytes() for p in files["pool"].parent.rglob("*") if p.is_file()}
        assert _run("-q", *argv) == EXIT_USAGE, argv
        err = capsys.readouterr().err
        assert what in err and "would destroy" in err, (argv, err)
        after = {p: p.read_bytes() for p in files["pool"].parent.rglob("*") if p.is_file()}
        assert after == before, argv
    # Beside a pool folder's shards, a file that is not one is harmless.
    shards = files["pool"].parent / "shards"
    assert _run("-q", "sketch", shards, "-k", K, "-o", shards / "c.safetensors") == 0


def test_json_output_of_every_verb(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = tmp_path / "l.sqlite"
    calls: list[list[Any]] = [
        ["info"],
        ["sketch", files["pool"], "-o", tmp_path / "c.safetensors", "-k", 3],
        ["respond", files["centroids"], files["private"], "-o", tmp_path / "r.safetensors",
         "--epsilon", 2, "--ledger", ledger],
        ["select", files["pool"], files["centroids"], files["response"], "-b", 9,
         "-o", tmp_path / "s.npy"],
        ["inspect", files["response"]],
        ["ledger", ledger],
    ]  # fmt: skip
    for call in calls:
        assert _run("--json", *call) == 0, call
        out = json.loads(capsys.readouterr().out)
        assert out["command"] == call[0]
    # --json also works after the verb.
    assert _run("info", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"] == ecos_fast.__version__ and "profile" in info["core"]
    assert info["threads"] >= 1


def test_ledger_verb_and_no_ledger_note(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = tmp_path / "l.sqlite"
    for cloud in ("a", "a", "b"):
        assert _run("-q", "respond", files["centroids"], files["private"], "-o",
                    tmp_path / "r.safetensors", "--epsilon", 1, "--ledger", ledger,
                    "--cloud", cloud) == 0  # fmt: skip
    assert _run("--json", "ledger", ledger) == 0
    out = json.loads(capsys.readouterr().out)
    with Ledger(ledger) as led:
        assert out["clouds"]["a"] == pytest.approx(led.total_epsilon(cloud="a"))
        assert out["total_epsilon"] == pytest.approx(led.total_epsilon())
    assert len(out["releases"]) == 3
    assert _run("-q", "ledger", tmp_path / "none.sqlite") == EXIT_INPUT
    # Without a ledger the client is told the release is not accounted.
    assert _run("respond", files["centroids"], files["private"], "-o",
                tmp_path / "r.safetensors", "--epsilon", 1) == 0  # fmt: skip
    assert "not accounted" in capsys.readouterr().err


def test_quiet_prints_nothing(files: dict[str, Path], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert _run("-q", "select", files["pool"], files["centroids"], files["response"],
                "-b", 9, "-o", tmp_path / "s.npy") == 0  # fmt: skip
    assert capsys.readouterr() == ("", "")


def test_no_coverage_exits_3_unless_a_fallback(files: dict[str, Path], tmp_path: Path) -> None:
    far = tmp_path / "far.npy"
    np.save(far, np.full((30, 5), 1e4, np.float32))
    resp = tmp_path / "far.safetensors"
    # The far rows all land on one centroid; a huge threshold zeroes every weight.
    # Seeded releases: which side of the signal check a release falls on is a property of
    # its noise draw (unseeded, the noise-sized one below had signal in about 1 run of 700).
    assert _run("-q", "respond", files["centroids"], far, "-o", resp, "--epsilon", 1,
                "--seed", 1) == 0  # fmt: skip
    common = [files["pool"], files["centroids"], resp, "-b", 5, "-o", tmp_path / "s.npy"]
    keep = ["--threshold", 1e6, "--low-signal", "keep"]
    assert _run("-q", "select", *common, *keep) == EXIT_INPUT
    assert _run("-q", "select", *common, *keep, "--fallback", "random") == 0
    # The release has signal (30 rows in one cluster at epsilon 1), so the signal check,
    # which does not depend on --threshold, does not spread it: still no coverage.
    assert _run("-q", "select", *common, "--threshold", 1e6) == EXIT_INPUT
    # A noise-sized release spreads the budget instead (Random's draw), whatever the
    # threshold.
    noise = tmp_path / "noise.safetensors"
    assert _run("-q", "respond", files["centroids"], far, "-o", noise, "--epsilon", 0.001,
                "--seed", 2) == 0  # fmt: skip
    quiet = [files["pool"], files["centroids"], noise, "-b", 5, "-o", tmp_path / "s.npy"]
    assert _run("-q", "select", *quiet, "--threshold", 1e6) == 0


@pytest.mark.parametrize("suffix", [".html", ".png"])
def test_report(files: dict[str, Path], tmp_path: Path, suffix: str) -> None:
    pytest.importorskip("matplotlib")
    report = tmp_path / f"report{suffix}"
    assert _run("-q", "select", files["pool"], files["centroids"], files["response"], "-b", 12,
                "-o", tmp_path / "s.npy", "--report", report,
                "--true-counts-from", files["private"]) == 0  # fmt: skip
    data = report.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG")
    else:
        assert b"data:image/png;base64," in data and b"n_selected" in data


def test_true_counts_are_checked_before_anything_is_written(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: without --report the option was ignored (exit 0), and with it a file of
    the wrong width failed (exit 3) only after the selection had been written."""
    pytest.importorskip("matplotlib")
    out, report = tmp_path / "s.npy", tmp_path / "r.html"
    wide = tmp_path / "wide.npy"
    np.save(wide, np.zeros((5, np.load(files["private"]).shape[1] + 1), np.float32))
    args = ["-q", "select", files["pool"], files["centroids"], files["response"], "-b", 12]
    assert _run(*args, "-o", out, "--true-counts-from", files["private"]) == EXIT_USAGE
    assert "--true-counts-from needs --report" in capsys.readouterr().err
    assert _run(*args, "-o", out, "--report", report, "--true-counts-from", wide) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "n_features" in err and "wide.npy" in err and "Traceback" not in err
    assert not out.exists() and not report.exists()
    assert _run("-q", "select", files["pool"], "--method", "random", "-b", 12, "-o", out,
                "--report", report, "--true-counts-from", files["private"]) == EXIT_USAGE  # fmt: skip
    assert "--true-counts-from needs CENTROIDS" in capsys.readouterr().err
    assert not out.exists()


def test_covering_radius_curve_matches_kcenter_radii() -> None:
    from ecos_fast.report import covering_radius_curve

    pool, _ = _data()
    sel, radii = ecos_fast.kcenter_greedy(pool, 30)
    # kcenter's radii are over the unpicked rows; picked rows are at distance 0.
    curve = covering_radius_curve(pool, pool[sel])
    np.testing.assert_allclose(curve, radii, rtol=1e-4)
    assert math.isclose(curve[-1], float(radii[-1]), rel_tol=1e-4)


# -- reproduce: the applications' verb ---------------------------------------------
def test_reproduce_verb_reaches_the_applications(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    ok = _cli_subprocess(tmp_path, "reproduce", "--help")
    assert ok.returncode == 0, ok.stderr
    assert "--app" in ok.stdout and "client-labeling" in ok.stdout
    bad = _cli_subprocess(tmp_path, "reproduce", "--app", "bogus")
    assert bad.returncode == 2
    assert "bogus" in bad.stderr


def test_select_outputs_are_replaced_atomically(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, summary = tmp_path / "sel" / "s.npy", tmp_path / "sel" / "s.json"
    out.parent.mkdir()
    common = [files["centroids"], files["response"], "-b", BUDGET, "-o", out]
    assert _run("-q", "select", files["pool"], *common, "--summary", summary) == 0
    first, inode = np.load(out), out.stat().st_ino
    assert json.loads(summary.read_text())["n_selected"] == len(first) == BUDGET
    assert _run("-q", "select", files["pool"], *common) == 0
    assert out.stat().st_ino != inode  # a rename over the old file, not a rewrite in place
    assert sorted(p.name for p in out.parent.iterdir()) == ["s.json", "s.npy"]

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    assert _run("-q", "select", files["pool"], *common, "-b", 7) == EXIT_INPUT
    np.testing.assert_array_equal(np.load(out), first)  # the old selection is intact
    assert sorted(p.name for p in out.parent.iterdir()) == ["s.json", "s.npy"]  # no temp file


def test_missing_output_folder_is_named_not_the_temp_file(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `select -o missing/s.npy` failed with mkstemp's message, which names a
    random `.s.npy.abc123.tmp` the user never asked for, not the missing folder."""
    out = tmp_path / "missing" / "s.npy"
    common = [files["centroids"], files["response"], "-b", BUDGET, "-o", out]
    assert _run("-q", "select", files["pool"], *common) == EXIT_INPUT
    err = capsys.readouterr().err
    assert f"the folder {str(out.parent)!r} does not exist" in err and ".tmp" not in err
    (tmp_path / "file").write_text("x")
    common[-1] = tmp_path / "file" / "s.npy"
    assert _run("-q", "select", files["pool"], *common) == EXIT_INPUT
    # Not "the folder '.../file' is not a folder", which contradicted itself.
    err = capsys.readouterr().err
    assert f"{str(tmp_path / 'file')!r} is not a folder" in err and "the folder" not in err


def test_true_coverage_is_what_the_response_estimates() -> None:
    from ecos_fast import reference
    from ecos_fast.report import true_coverage

    pool, private = _data()
    for normalize in (None, "l2"):
        cents = ecos_fast.fit_centroids(pool, K, seed=SEED, normalize=normalize)
        got = true_coverage(cents, private)
        x = cents.transform(private, "private")
        want = np.bincount(reference.assign(x, cents.centroids)[0], minlength=K)
        np.testing.assert_array_equal(got, want)
        exact = ecos_fast.respond(private, cents, math.inf, 1e-5)  # no noise: the true counts
        np.testing.assert_array_equal(got, exact.noisy_counts)


def test_sketch_for_client_chooses_r(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--for-client N EPSILON DELTA: R = suggest_n_clusters(N, EPSILON, DELTA), at most
    the pool size; with --clusters too it is a usage error."""
    from ecos_fast import load_centroids, suggest_n_clusters

    pool, _ = _data()
    np.save(tmp_path / "pool.npy", pool)
    out = tmp_path / "c.safetensors"
    capsys.readouterr()
    assert _run("--json", "sketch", tmp_path / "pool.npy", "-o", out,
                "--for-client", 875, 0.58, 1e-5) == EXIT_OK  # fmt: skip
    want = suggest_n_clusters(875, 0.58, 1e-5)
    assert json.loads(capsys.readouterr().out)["n_clusters"] == want == 71
    assert load_centroids(out).n_clusters == want
    # A large client at a large epsilon (suggested: 200) and a pool of 50 rows: 50.
    np.save(tmp_path / "tiny.npy", pool[:50])
    assert _run("-q", "sketch", tmp_path / "tiny.npy", "-o", out,
                "--for-client", 10**5, 8.0, 1e-5) == EXIT_OK  # fmt: skip
    assert load_centroids(out).n_clusters == 50
    # Without either option: R = 100.
    np.save(tmp_path / "big.npy", np.concatenate([pool, pool + 0.5]))
    assert _run("-q", "sketch", tmp_path / "big.npy", "-o", out) == EXIT_OK
    assert load_centroids(out).n_clusters == 100
    for bad in (["-k", 5, "--for-client", 300, 0.58, 1e-5], ["--for-client", 300, 0, 1e-5],
                ["--for-client", 300, 0.58, 1.5], ["--for-client", 0, 0.58, 1e-5]):  # fmt: skip
        assert _run("-q", "sketch", tmp_path / "pool.npy", "-o", out, *bad) == EXIT_USAGE


def test_respond_neighbours(files: dict[str, Path], tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "soft.safetensors"
    base = ["respond", files["centroids"], files["private"], "-o", out, "--epsilon", EPS]
    assert _run("--json", *base, "--seed", NOISE_SEED, "--neighbours", 3) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["neighbours"] == 3
    got = ecos_fast.load_response(out)
    cents = ecos_fast.load_centroids(files["centroids"])
    want = ecos_fast.respond(
        np.load(files["private"]), cents, EPS, DELTA, seed=NOISE_SEED, neighbours=3
    )
    assert got.neighbours == 3
    np.testing.assert_array_equal(got.noisy_counts, want.noisy_counts)
    # More neighbours than centroids: exit 3 before the ledger records anything.
    out.unlink()
    ledger = tmp_path / "ledger.sqlite"
    code = _run(*base, "--neighbours", K + 1, "--ledger", ledger)
    assert code == EXIT_INPUT
    assert f"--neighbours {K + 1} exceeds the {K} centroids" in capsys.readouterr().err
    assert not out.exists() and not ledger.exists()
    assert _run(*base, "--neighbours", 0) == EXIT_USAGE


def test_select_smooth_reaches_the_rule_and_the_summary(
    files: dict[str, Path], tmp_path: Path
) -> None:
    common = [files["pool"], files["centroids"], files["response"], "-b", 9]
    picked = {}
    for smooth in ("none", "sure"):
        out, summary = tmp_path / f"{smooth}.npy", tmp_path / f"{smooth}.json"
        assert _run("-q", "select", *common, "-o", out, "--summary", summary,
                    "--smooth", smooth) == 0  # fmt: skip
        got = json.loads(summary.read_text())
        assert got["smooth"] == smooth and (got["smoothing_scale"] == 0.0) == (smooth == "none")
        picked[smooth] = np.load(out)
    pool = np.load(files["pool"])
    cents = ecos_fast.load_centroids(files["centroids"])
    resp = ecos_fast.load_response(files["response"], centroids=cents)
    want = ecos_fast.select(pool, (cents, resp), 9, smooth="sure")
    np.testing.assert_array_equal(picked["sure"], np.asarray(want))
    assert _run("-q", "select", *common, "-o", tmp_path / "s.npy", "--smooth", "x") == EXIT_USAGE


def test_select_offers_every_within_routine_of_the_rule(
    files: dict[str, Path], tmp_path: Path
) -> None:
    from ecos_fast import rule
    from ecos_fast.cli import select

    within = next(p for p in select.params if p.name == "within")
    assert list(within.type.choices) == list(rule.WITHIN)  # type: ignore[attr-defined]
    out = tmp_path / "w.npy"
    common = [files["pool"], files["centroids"], files["response"], "-b", 9]
    assert _run("-q", "select", *common, "-o", out, "--within", "weighted-strata") == 0
    cents = ecos_fast.load_centroids(files["centroids"])
    resp = ecos_fast.load_response(files["response"], centroids=cents)
    want = ecos_fast.select(np.load(files["pool"]), (cents, resp), 9, within="weighted-strata")
    np.testing.assert_array_equal(np.load(out), np.asarray(want))
