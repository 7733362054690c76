"""docs/cli.md's worked example is run, and its sample output compared, by this test.

The example's ``bash`` block (between the ``worked-example`` markers) is executed step by
step in a temporary folder: ``mkdir``, ``cd``, ``cp``, the ``python - <<'EOF'`` data
script and every ``ecos-fast`` command (in process, through :func:`ecos_fast.cli.run`).
The ``#  `` lines after a command are its expected stdout, line for line; a line ending
in ``…`` must be a prefix of the real one. The error sample after the block is the
stderr of a third ``respond``. So the page cannot go stale: a change in the output
fails here. To refresh the page after an intended change::

    ECOS_FAST_UPDATE_DOCS=1 .venv/bin/python -m pytest -q tests/test_docs_samples.py

which rewrites the ``#  `` lines with what the commands print (keeping ``…``
abbreviations) and then fails once, so that the change is reviewed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ecos_fast.cli import run

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
BEGIN, END = "<!-- worked-example:begin -->", "<!-- worked-example:end -->"
PREFIX = "#  "


def _block(text: str) -> tuple[int, int]:
    """Line numbers (start, stop) of the worked example's bash block, fences excluded."""
    lines = text.splitlines()
    begin = lines.index(BEGIN)
    start = lines.index("```bash", begin) + 1
    stop = lines.index("```", start)
    assert stop < lines.index(END), "the worked example's block must sit between the markers"
    return start, stop


def _steps(lines: list[str]) -> list[tuple[str, list[int], int]]:
    """(command, indices of its expected-output lines, index of its last line)."""
    steps: list[tuple[str, list[int], int]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if line.startswith(PREFIX.rstrip()):
            assert steps, f"output line {line!r} before any command"
            steps[-1][1].append(i)
            i += 1
            continue
        command = line
        if "<<'EOF'" in line:  # keep the heredoc body with its command
            body = []
            i += 1
            while lines[i] != "EOF":
                body.append(lines[i])
                i += 1
            command += "\n" + "\n".join(body)
        while command.endswith("\\"):
            i += 1
            command = command[:-1] + " " + lines[i].strip()
        steps.append((command, [], i))
        i += 1
    return steps


def _execute(command: str, cwd: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    """Run one step in ``cwd``; return the new working folder and the step's stdout."""
    head = command.split("\n", 1)[0]
    words = shlex.split(head, comments=True)
    if words[0] == "mkdir":
        for name in words[1:]:
            (cwd / name).mkdir()
        return cwd, ""
    if words[0] == "cd":
        return (cwd / words[1]).resolve(), ""
    if words[0] == "cp":
        shutil.copy(cwd / words[1], cwd / words[2])
        return cwd, ""
    if words[:2] == ["python", "-"]:
        script = command.split("\n", 1)[1]
        subprocess.run([sys.executable, "-c", script], cwd=cwd, check=True)
        return cwd, ""
    assert words[0] == "ecos-fast", f"the worked example runs an unknown command: {head}"
    capsys.readouterr()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        code = run(words[1:])
    finally:
        os.chdir(old)
    out = capsys.readouterr().out
    assert code == 0, f"{head} exited {code}"
    return cwd, out


def _matches(doc_line: str, real: str) -> bool:
    if doc_line.endswith("…"):
        return len(doc_line) > 8 and real.startswith(doc_line[:-1])
    return doc_line == real


def test_worked_example_output_is_what_the_commands_print(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = DOC.read_text(encoding="utf-8")
    lines = text.splitlines()
    start, stop = _block(text)
    block = lines[start:stop]
    cwd = tmp_path
    real_output: dict[int, list[str]] = {}  # last line of a command -> its doc lines
    mismatches = []
    steps = _steps(block)
    for command, expected, last in steps:
        cwd, out = _execute(command, cwd, capsys)
        if not expected:
            continue
        real = out.splitlines()
        shown = [block[i][len(PREFIX) :] for i in expected]
        if len(real) != len(shown) or not all(map(_matches, shown, real)):
            mismatches.append((command.split("\n")[0], shown, real))
        real_output[last] = [
            PREFIX + (shown[k] if k < len(shown) and _matches(shown[k], line) else line)
            for k, line in enumerate(real)
        ]

    # The error sample: a third respond to the same cloud is refused (exit 4).
    respond = next(c for c, _, _ in steps if c.startswith("ecos-fast respond"))
    os.chdir(cwd.parent / "client")
    try:
        assert run(shlex.split(respond, comments=True)[1:]) == 0  # the second still fits
        capsys.readouterr()
        assert run(shlex.split(respond, comments=True)[1:]) == 4
    finally:
        os.chdir(tmp_path)
    err = capsys.readouterr().err
    refusal = next(line for line in err.splitlines() if line.startswith("error:"))
    sample = re.search(r"so the client refuses it.*?\n```\n(.*?)\n```", text, re.S)
    assert sample is not None, "docs/cli.md lost the refusal sample"
    if " ".join(sample.group(1).split()) != refusal:
        mismatches.append(("third respond (stderr)", [sample.group(1)], [refusal]))

    if mismatches and os.environ.get("ECOS_FAST_UPDATE_DOCS") == "1":
        outputs = {i for _, expected, _ in steps for i in expected}
        new_block: list[str] = []
        for i, line in enumerate(block):
            if i not in outputs:
                new_block.append(line)
            new_block.extend(real_output.get(i, []))
        lines[start:stop] = new_block
        wrapped = "\n".join(textwrap.wrap(refusal, 100, break_on_hyphens=False))
        new_text = "\n".join(lines) + "\n"
        new_text = new_text.replace(sample.group(1), wrapped)
        DOC.write_text(new_text, encoding="utf-8")
        pytest.fail("docs/cli.md rewritten from the commands' output: review the diff")
    assert not mismatches, "docs/cli.md's worked example is stale:\n" + "\n".join(
        f"{cmd}\n  doc:  {shown}\n  real: {real}" for cmd, shown, real in mismatches
    )
