"""Regressions found by the adversarial probe campaign (scripts/probe_campaign.py, issue 13).

Each test failed before its fix: a bare Python exception, a wrong exit code, or a
refusal the documentation did not give.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ecos_fast
import numpy as np
import pytest
from ecos_fast import reference
from ecos_fast._threads import env_threads
from ecos_fast.errors import EnvironmentSettingError, InvalidInputError


def test_select_random_pool_size_beyond_int64_is_invalid_input() -> None:
    # Was a bare OverflowError ("Python int too large to convert to C long").
    with pytest.raises(InvalidInputError, match="n_samples=10000000000000000000"):
        ecos_fast.select_random(10**19, 2, seed=0)
    sel = ecos_fast.select_random(2**63 - 1, 2, seed=0)  # the largest int64 still works
    assert len(sel) == 2 and int(sel.indices.max()) < 2**63 - 1


def test_select_random_ragged_rows_are_invalid_input() -> None:
    # Was NumPy's ValueError ("inhomogeneous shape").
    with pytest.raises(InvalidInputError, match="different lengths"):
        ecos_fast.select_random([[1.0, 2.0], [3.0]], 1, seed=0)


def test_l2_normalize_accepts_huge_finite_rows() -> None:
    # Was refused (InvalidInputError) before normalising, though the unit rows are fine.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    big = x * np.float32(1e19)
    small = ecos_fast.fit_centroids(x, 4, normalize="l2", seed=0)
    huge = ecos_fast.fit_centroids(big, 4, normalize="l2", seed=0)
    np.testing.assert_allclose(huge.centroids, small.centroids, atol=1e-6)
    # respond (sigma = 0) against a float64 NumPy reference of the unit rows
    unit = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    ref_labels = reference.assign(unit, small.centroids.astype(np.float64))[0]
    truth = np.bincount(ref_labels, minlength=small.n_clusters)
    r = ecos_fast.respond(big, small, float("inf"), 1e-5)
    np.testing.assert_array_equal(r.noisy_counts, truth)
    # NaN/inf are still refused, and without normalisation 1e19 still is.
    bad = big.copy()
    bad[5, 2] = np.inf
    with pytest.raises(InvalidInputError, match="non-finite"):
        ecos_fast.fit_centroids(bad, 4, normalize="l2")
    with pytest.raises(InvalidInputError, match="magnitude above"):
        ecos_fast.fit_centroids(big, 4)


@pytest.mark.parametrize("value", ["abc", "-1", "0", "1e9", "2.5"])
def test_env_threads_invalid_is_environment_setting_error(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECOS_FAST_NUM_THREADS", value)
    with pytest.raises(EnvironmentSettingError, match="ECOS_FAST_NUM_THREADS"):
        env_threads()


def test_env_threads_invalid_exits_2_like_an_option_out_of_range() -> None:
    # Was exit 3 (invalid input); docs/cli.md gives 2 for a setting out of range.
    for value in ("abc", "0"):
        env = dict(os.environ, ECOS_FAST_NUM_THREADS=value)
        proc = subprocess.run(
            [sys.executable, "-m", "ecos_fast", "--json", "info"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, (value, proc.stderr)
        assert '"EnvironmentSettingError"' in proc.stdout
        assert "Traceback" not in proc.stderr


def test_select_random_refuses_rows_without_features() -> None:
    # A (160, 0) pool was accepted (only its length is used) while every other entry
    # point refuses it as empty.
    with pytest.raises(InvalidInputError, match="non-empty"):
        ecos_fast.select_random(np.zeros((160, 0), np.float32), 5, seed=0)


def test_unknown_command_with_json_prints_the_error_object() -> None:
    # An unknown command failed before the group read --json: exit 2 but no JSON.
    proc = subprocess.run(
        [sys.executable, "-m", "ecos_fast", "--json", "frobnicate"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    err = json.loads(proc.stdout)["error"]
    assert err["type"] == "UsageError" and "frobnicate" in err["message"]
    assert err["exit_code"] == 2


def test_probe_campaign_api_part_finds_no_crash_or_silent_wrong() -> None:
    # The Python-API half of scripts/probe_campaign.py (about 620 probes, no
    # subprocesses); the whole campaign with the CLI takes minutes (see its docstring).
    script = Path(__file__).resolve().parents[1] / "scripts" / "probe_campaign.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--no-cli", "--seed", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "crashes: 0; silent wrong: 0; exit-code mismatches: 0" in proc.stdout, proc.stdout
    assert proc.returncode == 0
    tried = int(proc.stdout.split("probes tried: ")[1].split()[0])
    assert tried > 500
