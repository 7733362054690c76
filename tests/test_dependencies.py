"""Dependencies a library can live with (issue 14, item 4).

pyproject.toml gives compatible ranges (no exact pins: `click==8.5.1` made installing next to
`click==8.1.7` a ResolutionImpossible); the exact pins live in requirements/*.txt only;
requirements/lowest.txt holds each range's lower bound, which `make test-lowest` installs and
runs the core tests on.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
packaging_requirements = pytest.importorskip("packaging.requirements")
from packaging.utils import canonicalize_name  # noqa: E402
from packaging.version import Version  # noqa: E402

Requirement = packaging_requirements.Requirement
ROOT = Path(__file__).resolve().parent.parent


def _project() -> dict[str, list[str]]:
    """Every requirement of pyproject.toml: the runtime ones, then each extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {"dependencies": project["dependencies"], **project["optional-dependencies"]}


def _ranges() -> dict[str, Requirement]:
    """Runtime and extra requirements by canonical name (an extra's repeat must agree)."""
    out: dict[str, Requirement] = {}
    for reqs in _project().values():
        for line in reqs:
            req = Requirement(line)
            name = canonicalize_name(req.name)
            assert name not in out or out[name].specifier == req.specifier, line
            out[name] = req
    return out


def _pins(path: Path, seen: set[Path] | None = None) -> dict[str, Version]:
    """name -> version of every `name==version` line, following `-r` includes."""
    seen = set() if seen is None else seen
    pins: dict[str, Version] = {}
    if path in seen:
        return pins
    seen.add(path)
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r"):
            pins.update(_pins((path.parent / line[2:].strip()).resolve(), seen))
        elif line and not line.startswith("-"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{path.name}: {raw!r} is not an exact pin"
            pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


def test_no_exact_pins_and_no_upper_bounds_in_pyproject() -> None:
    for group, reqs in _project().items():
        for line in reqs:
            for spec in Requirement(line).specifier:
                assert spec.operator not in ("==", "===", "~=", "<", "<="), (group, line)


def test_click_8_1_7_and_tqdm_4_66_0_satisfy_the_ranges() -> None:
    ranges = _ranges()
    assert Version("8.1.7") in ranges["click"].specifier
    assert Version("4.66.0") in ranges["tqdm"].specifier
    # ...and the versions the issue found pinned still do.
    assert Version("8.5.1") in ranges["click"].specifier
    assert Version("4.70.1") in ranges["tqdm"].specifier


def test_every_runtime_dependency_and_extra_has_a_lower_bound() -> None:
    for name, req in _ranges().items():
        assert any(s.operator == ">=" for s in req.specifier), name


def test_the_lowest_pins_are_the_lower_bounds() -> None:
    # What `make test-lowest` installs is exactly the bottom of each range it covers, and
    # it covers every runtime dependency.
    ranges = _ranges()
    lowest = _pins(ROOT / "requirements" / "lowest.txt")
    runtime = {canonicalize_name(Requirement(r).name) for r in _project()["dependencies"]}
    assert runtime <= set(lowest), sorted(runtime - set(lowest))
    runner = {canonicalize_name(Requirement(r).name) for r in _project()["dev"]}
    for name, version in lowest.items():
        if name in runner:  # the test runner: not what the ranges promise users
            continue
        (low,) = [Version(s.version) for s in ranges[name].specifier if s.operator == ">="]
        assert version == low, f"{name}: lowest.txt pins {version}, pyproject says >={low}"
    assert lowest["click"] == Version("8.1.7") and lowest["tqdm"] == Version("4.66.0")


def test_the_locked_pins_satisfy_the_ranges() -> None:
    ranges = _ranges()
    pins = _pins(ROOT / "requirements" / "pinned.txt")
    assert {"numpy", "click", "tqdm", "torch"} <= set(pins)
    for name, version in pins.items():
        if name in ranges:
            assert version in ranges[name].specifier, f"{name}=={version} vs {ranges[name]}"


def test_make_test_lowest_runs_in_ci() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\s*$", ci, re.M) and re.search(r"^make test-lowest\b", ci, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert "requirements/lowest.txt" in makefile and re.search(r"^test-lowest:", makefile, re.M)


def test_the_installed_versions_are_in_range_and_the_lowest_pass_runs_the_floors() -> None:
    from importlib.metadata import version

    ranges = _ranges()
    runtime = [canonicalize_name(Requirement(r).name) for r in _project()["dependencies"]]
    for name in runtime:
        assert Version(version(name)) in ranges[name].specifier, (name, version(name))
    if os.environ.get("ECOS_FAST_LOWEST") == "1":  # set by `make test-lowest`
        for name, pinned in _pins(ROOT / "requirements" / "lowest.txt").items():
            assert Version(version(name)) == pinned, (name, version(name), pinned)


def test_click_and_tqdm_drive_the_cli_with_progress_bars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The progress bars (tqdm) appear only on a terminal; pretend stderr is one, so that
    # the lowest pass runs them on tqdm 4.66.0 under click 8.1.7.
    import numpy as np
    from ecos_fast._cli_output import State
    from ecos_fast.cli import run

    monkeypatch.setattr(State, "progress", property(lambda self: not self.quiet))
    rng = np.random.default_rng(0)
    shards = tmp_path / "pool"
    shards.mkdir()
    for i in range(2):
        np.save(shards / f"p{i}.npy", rng.normal(size=(50, 3)).astype(np.float32))
    out = tmp_path / "c.safetensors"
    args = ["sketch", str(shards), "-o", str(out), "--clusters", "3", "--seed", "0"]
    assert run(args) == 0 and out.is_file()
    err = capsys.readouterr().err
    assert "sketch" in err and "step" in err, err  # the tqdm step bar was drawn
