"""The stand-alone benchmark scripts run as documented (benches/README.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ecos_fast
import numpy as np
import pytest

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


def test_the_select_bench_times_the_rule_its_numpy_peer_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """benches/test_select.py times ``peers.ecos_select`` against ``peers.numpy_select``
    and checks the selection with ``checks.check_select`` (quotas from the released
    weights). It called ``select`` with the default SURE smoothing, so wherever SURE
    smooths (as on this sketch, and on the full run's pool fitted on a Zen 3 machine) the
    quotas moved and the check failed: the bench timed a different rule than its peer."""
    monkeypatch.setenv("ECOS_BENCH_DIR", str(tmp_path))
    monkeypatch.syspath_prepend(str(BENCHES))
    import checks
    import data
    import peers

    x = np.asarray(data.mixture(20_000, 64))
    cents = ecos_fast.fit_centroids(x, n_clusters=100, seed=0)
    resp = ecos_fast.respond(data.client_samples(2000, 64), cents, 0.58, 1e-5, seed=0)
    sk = ecos_fast.Sketch.join(cents, resp)
    assert ecos_fast.select(x, sk, 300).smoothing_scale > 0  # the default smooths here
    got = peers.ecos_select(x, sk, 300, 1)
    assert got.smoothing_scale == 0.0
    want = peers.numpy_select(x, cents.centroids, sk.weights(), 300)
    np.testing.assert_array_equal(np.asarray(got.quotas), want["quotas"])
    c = cents.centroids
    res = checks.check_select(
        x, c, sk.weights(), 300, got.indices, got.labels, got.quotas, checks.reference_assign(x, c)
    )
    assert res["correct"], res["check"]


def test_run_py_never_reports_a_stale_json_when_pytest_writes_none(tmp_path: Path) -> None:
    # Before the fix, a bad -k expression made pytest exit 4 without a JSON, and run.py
    # wrote a report (with "0 wrong") from the JSON an earlier run had left behind.
    stale = tmp_path / "results-smoke.json"
    stale.write_text(json.dumps({"benchmarks": [], "stale": True}))
    out = tmp_path / "report.md"
    env = {**os.environ, "ECOS_BENCH_DIR": str(tmp_path)}
    args = ["--smoke", "--threads", "1", "--out", str(out), "--", "-k", "kmeans and k=100"]
    res = subprocess.run(
        [sys.executable, str(BENCHES / "run.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode != 0
    assert "no benchmark JSON was written" in res.stderr
    assert not out.exists()
    assert not stale.exists()
