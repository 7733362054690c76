"""The stand-alone benchmark scripts run as documented (benches/README.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHES = Path(__file__).resolve().parent.parent / "benches"


def _run(script: str, *args: str, tmp_path: Path) -> str:
    env = {**os.environ, "ECOS_BENCH_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, str(BENCHES / script), *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def test_kcenter_scale_without_a_baseline(tmp_path: Path) -> None:
    # BASELINE_PICKS=0 skips the NumPy baseline: its fields are null (this crashed with
    # a ZeroDivisionError before).
    res = json.loads(_run("kcenter_scale.py", "mix:3000:16", "20", "0", "1", tmp_path=tmp_path))
    assert res["numpy_picks_timed"] == 0
    assert res["speedup"] is None and res["numpy_cpu_ms_per_pick"] is None
    assert res["budget"] == 20 and res["fast_s"] >= 0


def test_kcenter_scale_with_a_baseline_agrees_on_the_prefix(tmp_path: Path) -> None:
    res = json.loads(_run("kcenter_scale.py", "mix:3000:16", "20", "5", "2", tmp_path=tmp_path))
    assert res["same_picks_prefix"] is True
    assert res["speedup"] > 0


def test_kcenter_profile_and_scaling_check_report_identical_results(tmp_path: Path) -> None:
    prof = _run("kcenter_profile.py", "3000", "20", "1", tmp_path=tmp_path)
    assert "picks identical in every run: yes" in prof
    check = _run("scaling_check.py", "3000", "1", tmp_path=tmp_path)
    assert check.count("| yes |") == 2
