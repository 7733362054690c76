"""One CLI framework (issue 14, item 6): every verb is a click command of ``ecos-fast``.

Before: ``reproduce`` and the features CLI parsed their own arguments with argparse,
so ``--json``/``--quiet`` were not global there, ``demo --help`` listed no options,
``--threads`` defaulted to 1 in one place and to the CPUs in another, a wheel without
torch crashed with a ``ModuleNotFoundError`` traceback (exit 1) pointing to a file the
wheel does not ship, and ``select -o sel.csv`` wrote NPY bytes into a ``.csv``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import numpy as np
import pytest
from ecos_fast import _cli_output
from ecos_fast.apps import reproduce
from ecos_fast.cli import EXIT_USAGE, cli, run

THREADED = ["sketch", "respond", "select", "demo", "reproduce"]


def _command(*path: str) -> click.Command:
    ctx = click.Context(cli)
    cmd: Any = cli
    for name in path:
        cmd = cmd.get_command(ctx, name)
        assert cmd is not None, name
    return cmd  # type: ignore[no-any-return]


def _option(cmd: click.Command, flag: str) -> click.Option:
    for p in cmd.params:
        if isinstance(p, click.Option) and flag in p.opts:
            return p
    raise AssertionError(f"{cmd.name} has no {flag}")


def test_demo_help_lists_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--preset", "--budgets", "--seeds", "--methods", "--out", "--threads", "--json"):
        assert flag in out, flag


@pytest.mark.parametrize(
    "path", [(v,) for v in THREADED] + [("features", "warm-cache"), ("features", "probe")]
)
def test_every_verb_shares_threads_json_quiet(path: tuple[str, ...]) -> None:
    cmd = _command(*path)
    threads = _option(cmd, "--threads")
    assert threads.default is None  # one default: ECOS_FAST_NUM_THREADS, else the CPUs
    assert threads.help == _option(_command("sketch"), "--threads").help
    assert _option(cmd, "--json").is_flag and _option(cmd, "--quiet").is_flag


def _capture_run(monkeypatch: pytest.MonkeyPatch) -> list[tuple[SimpleNamespace, str]]:
    """Replace the experiment itself: record what ``reproduce`` would run."""
    calls: list[tuple[SimpleNamespace, str]] = []

    def fake(args: SimpleNamespace, *, name: str | None, command: str) -> tuple[int, list[Path]]:
        calls.append((args, command))
        print("table")
        return 0, [Path("out/labeling.md")]

    monkeypatch.setattr(reproduce, "_run", fake)
    return calls


def test_reproduce_parses_as_the_argparse_front_did(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _capture_run(monkeypatch)
    assert run(["reproduce"]) == 0
    args, command = calls[-1]
    # The former parser's defaults, option by option.
    want = dict(
        app="labeling", domains=None, budgets=(1000, 3000), seeds=(1, 2, 3),
        methods="ecos,kcenter,random,local", epsilon=0.58, delta=1e-5,
        sweep=reproduce.SWEEP, no_sweep=False, n_clusters=100, threshold=None, within=None,
        candidates=None, weights=None, smooth=None, neighbours=1, normalize="none", model="head",
        semi_supervised=True,
        knn_epsilon=5.0, queries=None, evaluate="test", preset="default", data_seed=0,
        extractor=None, private_size=None, private_sizes=None, queries_sweep=None,
        threads=None, device=None, out=Path("out"), name=None, quiet=False,
    )  # fmt: skip
    assert vars(args) == want
    assert command == "ecos-fast reproduce"
    argv = [
        "--app", "client-labeling", "--queries-sweep", "250,1000", "--budgets", "40",
        "--sweep", "0.1,inf", "--no-semi-supervised", "--threads", "2", "--out", "o",
    ]  # fmt: skip
    assert run(["-q", "reproduce", *argv]) == 0
    args, command = calls[-1]
    assert args.queries_sweep == (250, 1000) and args.budgets == (40,)
    assert args.sweep == (0.1, float("inf")) and args.semi_supervised is False
    assert args.threads == 2 and args.out == Path("o") and args.quiet is True
    assert command == "ecos-fast reproduce " + " ".join(argv)  # the report header's line
    assert reproduce.main(["--private-sizes", "50,100"]) == 0
    assert calls[-1][0].private_sizes == (50, 100)
    assert calls[-1][1] == "ecos-fast reproduce --private-sizes 50,100"


def test_demo_keeps_its_own_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from ecos_fast import demo

    calls = _capture_run(monkeypatch)
    assert run(["demo", "--budgets", "40"]) == 0
    args, command = calls[-1]
    assert args.sweep == () and args.semi_supervised is False and args.app == "labeling"
    assert command == "ecos-fast demo --budgets 40"
    assert demo.main(["--seeds", "1"]) == 0
    assert calls[-1][1] == "ecos-fast demo --seeds 1"


def test_reproduce_json_prints_one_object(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _capture_run(monkeypatch)
    assert run(["--json", "reproduce", "--budgets", "40"]) == 0
    captured = capsys.readouterr()
    got = json.loads(captured.out)
    assert got["command"] == "reproduce" and got["files"] == ["out/labeling.md"]
    assert "table" in captured.err  # the printed tables moved to stderr


def test_reproduce_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["reproduce", "--budgets", "a,b"]) == EXIT_USAGE
    assert "comma-separated list of integers" in capsys.readouterr().err
    assert reproduce.main(["--app", "bogus"]) == EXIT_USAGE


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "-1"], "seeds=-1 must be"),
        (["--data-seed", "-1"], "data_seed=-1 must be"),
        (["--sweep", "0.5,-1"], "epsilon=-1.0 must be > 0"),
        (["--app", "client-labeling", "--knn-epsilon", "0"], "epsilon=0.0 must be > 0"),
        (["--private-sizes", "50,0"], "private_size=0 must be >= 1"),
        (["--app", "client-labeling", "--queries-sweep", "250,0"], "queries=0 must be >= 1"),
        (["--app", "client-labeling", "--queries", "0"], "queries=0 must be >= 1"),
        # Options of one application given to another were ignored (exit 0).
        (["--knn-epsilon", "3"], "--knn-epsilon: options of --app client-labeling"),
        (["--app", "compression", "--queries", "9"], "--queries: options of --app client-labeling"),
        (["--app", "compression", "--semi-supervised"], "--semi-supervised needs --app labeling"),
        (["--budgets", "0"], "budgets=(0,) must be positive ints"),
        (["--threshold", "-1"], "threshold=-1.0 must be a finite number >= 0"),
        (["--candidates", "0.5"], "candidates=0.5 must be"),
        # This one was refused before, but ecos-fast exited 0: click's main returns
        # ctx.exit(2)'s code without standalone mode, and run() dropped it.
        (
            ["--private-sizes", "50", "--queries-sweep", "9", "--app", "client-labeling"],
            "cannot be combined",
        ),
        # These reached the runs: a torch RuntimeError (exit 1) or an error after the
        # data was rendered, or (duplicates) runs counted twice in the paired statistics.
        (["--device", "bogus"], "device='bogus' is not a torch device"),
        (["--device", "cuda:7"], "device='cuda:7'"),
        (["--domains", "nope"], "domain 'nope' is not a client domain of the default preset"),
        (["--domains", ","], "domain '' is not a client domain"),
        (["--methods", ","], "methods must not be empty"),
        (["--seeds", "1,1"], "seeds=(1, 1) holds duplicates"),
        (["--budgets", "40,40"], "budgets=(40, 40) holds duplicates"),
        (["--extractor", "nope"], "extractor='nope' is not one of"),
    ],
)
def test_reproduce_option_values_are_usage_errors_before_any_work(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    """Before: --seeds -1, --sweep -1, --knn-epsilon 0, a 0 in --private-sizes or
    --queries-sweep and --queries 0 were accepted and failed minutes later, after the
    data had been rendered and runs trained (--private-sizes 50,0 after every run at
    50); --budgets 0 and --threshold -1 exited 3, not 2."""
    from ecos_fast.apps import experiment

    def no_work(*_a: object, **_k: object) -> None:
        raise AssertionError("the experiment started")

    monkeypatch.setattr(experiment, "run_experiment", no_work)
    assert run(["-q", "reproduce", *argv]) == EXIT_USAGE
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["warm-cache", "probe"])
def test_features_negative_data_seed_is_a_usage_error(
    verb: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: exit 3 with 'seed=-1 must be >= 0', not naming the option."""
    assert run(["-q", "features", verb, "--data-seed", "-1"]) == EXIT_USAGE
    assert "--data-seed" in capsys.readouterr().err


def test_reproduce_usage_error_with_json_prints_the_error_object(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: the JSON object had exit_code 2 but no error, only stderr said why."""
    import json

    assert run(["--json", "reproduce", "--seeds", "-1"]) == EXIT_USAGE
    out = json.loads(capsys.readouterr().out)
    assert out["error"]["exit_code"] == EXIT_USAGE
    assert "seeds=-1 must be" in out["error"]["message"]


def test_reproduce_output_folder_is_made_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: an --out that cannot be created failed when the reports were written,
    after every run had been trained."""
    from ecos_fast.apps import experiment

    def no_work(*_a: object, **_k: object) -> None:
        raise AssertionError("the experiment started")

    monkeypatch.setattr(experiment, "run_experiment", no_work)
    (tmp_path / "file").write_text("x")
    assert run(["-q", "reproduce", "--out", str(tmp_path / "file" / "out")]) == EXIT_USAGE
    assert "--out" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("demo.md", ["demo"]),
        ("labeling-runs.csv", ["reproduce"]),
        ("labeling-private-size.png", ["reproduce", "--private-sizes", "50,100"]),
        ("mine.csv", ["reproduce", "--name", "mine"]),
    ],
)
def test_reproduce_report_names_that_are_folders_fail_before_any_work(
    name: str, argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Before: every run was trained, then writing the report over the folder failed
    ('[Errno 21] Is a directory', exit 3) and none of the results was kept."""
    from ecos_fast.apps import experiment

    def no_work(*_a: object, **_k: object) -> None:
        raise AssertionError("the experiment started")

    monkeypatch.setattr(experiment, "run_experiment", no_work)
    (tmp_path / name).mkdir()
    assert run(["-q", *argv, "--out", str(tmp_path)]) == EXIT_USAGE
    assert f"{tmp_path / name} is a folder" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["a/b", "", ".", "..", "../up", "a\x00b"])
def test_reproduce_name_must_be_a_plain_file_stem(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Before: --name a/b trained every run, then failed writing out/a/b.md (no folder
    a, exit 3, nothing kept); --name ../up wrote the reports outside --out."""
    from ecos_fast.apps import experiment

    def no_work(*_a: object, **_k: object) -> None:
        raise AssertionError("the experiment started")

    monkeypatch.setattr(experiment, "run_experiment", no_work)
    assert run(["-q", "reproduce", "--name", name, "--out", str(tmp_path)]) == EXIT_USAGE
    assert "--name" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


_NO_MODULE = textwrap.dedent(
    """
    import sys
    sys.modules[{module!r}] = None  # as if it were not installed
    from ecos_fast.cli import run
    sys.exit(run({argv!r}))
    """
)


@pytest.mark.parametrize(
    ("module", "argv", "extra"),
    [
        ("torch", ["demo", "--preset", "small", "--budgets", "40"], "apps"),
        ("torch", ["reproduce", "--app", "compression"], "apps"),
        ("torch", ["--json", "reproduce"], "apps"),
        # Before: every run was trained, then the first figure failed (nothing written).
        (
            "matplotlib",
            [
                "demo",
                "--preset",
                "small",
                "--budgets",
                "40",
                "--seeds",
                "1",
                "--domains",
                "hershey",
                "--n-clusters",
                "10",
            ],
            "report",
        ),
    ],
)
def test_a_missing_optional_dependency_exits_2_with_the_pip_line(
    tmp_path: Path, module: str, argv: list[str], extra: str
) -> None:
    """Before: a ModuleNotFoundError traceback, exit 1, and 'deps/pip-data.txt'."""
    proc = subprocess.run(
        [sys.executable, "-c", _NO_MODULE.format(module=module, argv=argv)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "ECOS_FAST_NUM_THREADS": "2"},
    )  # fmt: skip
    assert proc.returncode == EXIT_USAGE, proc.stderr
    line = f"pip install 'ecos-fast[{extra}]'"
    assert line in proc.stderr
    assert "Traceback" not in proc.stderr and "deps/" not in proc.stderr
    if "--json" in argv:
        err = json.loads(proc.stdout)["error"]
        assert err["exit_code"] == EXIT_USAGE and line in err["message"]
    assert not (tmp_path / "out").exists()


def test_select_report_without_matplotlib_exits_2_with_the_pip_line(
    exchange: dict[str, Path],
) -> None:
    tmp = exchange["pool"].parent
    argv = ["select", str(exchange["pool"]), "--method", "random", "-b", "5",
            "-o", str(tmp / "s.npy"), "--report", str(tmp / "r.png")]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", _NO_MODULE.format(module="matplotlib", argv=argv)],
        capture_output=True, text=True, cwd=tmp, timeout=120,
    )  # fmt: skip
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "pip install 'ecos-fast[report]'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp / "s.npy").exists() and not (tmp / "r.png").exists()


def test_every_extra_named_exists_in_pyproject() -> None:
    import tomllib
    from ecos_fast._extras import EXTRAS

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    for module, (extra, _) in EXTRAS.items():
        assert extra in extras, (module, extra)


# -- select -o: the extension says the format -----------------------------------------
@pytest.fixture
def exchange(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    pool = np.concatenate([rng.normal(m, 1.0, (200, 5)) for m in (0.0, 6.0)]).astype(np.float32)
    paths = {k: tmp_path / n for k, n in (("pool", "pool.npy"), ("c", "c.safetensors"))}
    np.save(paths["pool"], pool)
    assert run(["-q", "sketch", str(paths["pool"]), "-o", str(paths["c"]), "-k", "4"]) == 0
    return paths


@pytest.mark.parametrize("name", ["sel.npy", "sel.txt", "sel.csv", "SEL.CSV"])
def test_select_writes_the_format_its_name_says(exchange: dict[str, Path], name: str) -> None:
    out = exchange["pool"].parent / name
    base = ["-q", "select", str(exchange["pool"]), "--method", "random", "-b", "25"]
    assert run([*base, "-o", str(out), "--seed", "3"]) == 0
    ref = exchange["pool"].parent / "ref.npy"
    assert run([*base, "-o", str(ref), "--seed", "3"]) == 0
    want = np.load(ref)
    if name.endswith(".npy"):
        np.testing.assert_array_equal(np.load(out), want)
        return
    lines = out.read_text(encoding="ascii").splitlines()
    if name.lower().endswith(".csv"):
        assert lines[0] == "index"
        lines = lines[1:]
    assert [int(v) for v in lines] == want.tolist()
    assert not out.read_bytes().startswith(b"\x93NUMPY")


@pytest.mark.parametrize("name", ["sel.json", "sel", "sel.npz"])
def test_select_refuses_an_output_name_it_cannot_honour(
    exchange: dict[str, Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = exchange["pool"].parent / name
    argv = ["select", str(exchange["pool"]), "--method", "random", "-b", "5", "-o", str(out)]
    assert run(argv) == EXIT_USAGE
    assert ".npy, .txt, .csv" in capsys.readouterr().err
    assert not out.exists()


def test_index_formats_are_the_documented_ones() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    assert set(_cli_output.INDEX_FORMATS) == {".npy", ".txt", ".csv"}
    assert "a header line `index`" in doc


def test_threads_before_the_verb_is_the_verbs_threads(
    exchange: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """``ecos-fast --threads N VERB`` reaches the verb (here: through the cap's remark)."""
    out = exchange["pool"].parent / "c2.safetensors"
    argv = ["sketch", str(exchange["pool"]), "-o", str(out), "-k", "4"]
    assert run(["--threads", "99999", *argv]) == 0
    assert "--threads=99999 is above" in capsys.readouterr().err
    assert run(["--threads", "1", *argv]) == 0
    assert "is above" not in capsys.readouterr().err


def test_package_warnings_are_remarks_not_python_tracebacks() -> None:
    """Before: `ECOS_FAST_NUM_THREADS=99999 ecos-fast info` printed Python's raw warning
    (`.../cli.py:938: ThreadsCappedWarning: ...` and the source line), also under
    --quiet, and --json's messages left it out. Now it is a `warning:` remark."""
    env = {**os.environ, "ECOS_FAST_NUM_THREADS": "99999"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ecos_fast.cli", *args],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    plain = cli("info")
    assert plain.returncode == 0
    assert plain.stderr.startswith("warning: ECOS_FAST_NUM_THREADS=99999 is above")
    assert "ThreadsCappedWarning" not in plain.stderr and "cli.py" not in plain.stderr
    assert cli("-q", "info").stderr == ""
    payload = json.loads(cli("--json", "info").stdout)
    assert any("ECOS_FAST_NUM_THREADS=99999 is above" in m for m in payload["messages"])


def test_a_missing_model_wheel_exits_2_with_its_own_pip_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The package's own ModuleNotFoundErrors (they name the pip line) are exit 2 too."""
    from ecos_fast import features

    def missing(*args: Any, **kwargs: Any) -> None:
        raise ModuleNotFoundError("the ppocr extractor needs rapidocr: pip install --no-deps x")

    monkeypatch.setattr(features, "warm_cache", missing)
    assert run(["features", "warm-cache"]) == EXIT_USAGE
    assert "error: the ppocr extractor needs rapidocr: pip install" in capsys.readouterr().err
    with pytest.raises(ModuleNotFoundError):  # one that says nothing: a bug, not hidden
        monkeypatch.setattr(features, "warm_cache", lambda *a, **k: __import__("no_such_mod"))
        run(["features", "warm-cache"])
