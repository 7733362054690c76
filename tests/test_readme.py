"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_readme_has_python_examples() -> None:
    assert BLOCKS, "README.md lost its Python example"


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code: str) -> None:
    if "import torch" in code:  # the torch recipe; the core examples need no torch
        pytest.importorskip("torch", reason="torch is not installed (extra 'apps')")
    # Our own README, run as documentation tests: exec is the point here.
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
