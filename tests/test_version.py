"""The version lives in one place, Cargo.toml; everything else reads it."""

from __future__ import annotations

import re
from pathlib import Path

import ecos_fast
from ecos_fast import _core

ROOT = Path(__file__).resolve().parent.parent


def _cargo_version() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    package = text.split("[package]", 1)[1].split("\n[", 1)[0]
    match = re.search(r'^version\s*=\s*"([^"]+)"', package, re.MULTILINE)
    assert match, "Cargo.toml [package] has no version"
    return match.group(1)


def test_the_package_the_core_and_cargo_agree() -> None:
    assert ecos_fast.__version__ == _core.__version__ == _cargo_version()
    assert _core.build_info()["version"] == _core.__version__


def test_pyproject_takes_the_version_from_cargo() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^dynamic\s*=\s*\[[^\]]*"version"', project, re.MULTILINE)
    assert not re.search(r"^version\s*=", project, re.MULTILINE)
