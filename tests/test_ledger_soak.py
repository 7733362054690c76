"""Soak: concurrent ``ecos-fast respond`` processes against one ledger with many prior rows.

Every process is a real ``ecos-fast`` subprocess, started at once; they contend for
the ledger's write lock. The run must finish, keep every row, and let through
exactly the releases that fit the budget (counted with dp-accounting directly),
refusing the others with exit code 4 and no response file.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import dp_accounting
import ecos_fast
import numpy as np
import pytest
from dp_accounting import pld
from ecos_fast.ledger import Ledger
from ecos_fast.privacy import calibrate_gaussian_sigma

DELTA = 1e-5
EPSILON = 0.5  # each new release
ROOT2 = math.sqrt(2.0)
EXE = Path(sys.executable).with_name("ecos-fast")

# The prior releases cycle through three kinds (mechanism gaussian, cloud "acme"):
# (sigma, sensitivity, count, relation, other_sensitivity, its add/remove sensitivity).
KINDS = [
    (300.0, 1.0, 1, "add_remove", ROOT2, 1.0),  # coverage, add/remove
    (400.0 * ROOT2, ROOT2, 1, "replace_one", 1.0, 1.0),  # coverage, replace-one
    (900.0, ROOT2, 10, "add_remove", None, ROOT2),  # ten private-kNN queries
]


def _prefill(path: Path, n_rows: int) -> list[tuple[float, int]]:
    """Record ``n_rows`` prior releases; return their (add/remove multiplier, count)s."""
    Ledger(path).close()
    rows, events = [], []
    for i in range(n_rows):
        sigma, sens, count, relation, other, sens_ar = KINDS[i % len(KINDS)]
        rows.append((sigma, sens, count, relation, other))
        events.append((sigma / sens_ar, count))
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO releases (cloud, time, mechanism, sigma, sensitivity, count, purpose, "
        "relation, other_sensitivity) "
        "VALUES ('acme', '2026-01-01T00:00:00+00:00', 'gaussian', ?, ?, ?, 'prior', ?, ?)",
        rows,
    )
    conn.commit()
    conn.close()
    return events


def _direct(events: list[tuple[float, int]], new: int, sigma_new: float) -> float:
    """dp-accounting's PLD accountant on the prior events plus ``new`` releases."""
    acc = pld.PLDAccountant()
    totals: dict[float, int] = {}
    for z, count in events:
        totals[z] = totals.get(z, 0) + count
    for z, count in totals.items():
        acc.compose(dp_accounting.GaussianDpEvent(z), count)
    if new:
        acc.compose(dp_accounting.GaussianDpEvent(sigma_new), new)
    return float(acc.get_epsilon(DELTA))


def _soak(tmp_path: Path, n_procs: int, n_prior: int, n_affordable: int) -> None:
    rng = np.random.default_rng(0)
    cents = ecos_fast.fit_centroids(rng.normal(size=(80, 4)).astype(np.float32), 4, seed=0)
    centroids = tmp_path / "centroids.safetensors"
    ecos_fast.save_centroids(cents, centroids)
    private = tmp_path / "private.npy"
    np.save(private, rng.normal(size=(30, 4)).astype(np.float32))
    ledger = tmp_path / "ledger.sqlite"
    events = _prefill(ledger, n_prior)

    sigma_new = calibrate_gaussian_sigma(EPSILON, DELTA)
    ladder = [_direct(events, k, sigma_new) for k in (n_affordable, n_affordable + 1)]
    budget = (ladder[0] + ladder[1]) / 2  # exactly n_affordable more releases fit
    assert ladder[0] + 0.02 < budget < ladder[1] - 0.02

    outputs = [tmp_path / f"response-{i}.safetensors" for i in range(n_procs)]
    env = {**os.environ, "ECOS_FAST_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [
                str(EXE),
                "--json",
                "respond",
                str(centroids),
                str(private),
                "-o",
                str(out),
                "--epsilon",
                str(EPSILON),
                "--delta",
                str(DELTA),
                "--ledger",
                str(ledger),
                "--budget-epsilon",
                repr(budget),
                "--cloud",
                "acme",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for out in outputs
    ]
    results = [(p.wait(timeout=900), *p.communicate()) for p in procs]

    codes = [rc for rc, _, _ in results]
    for rc, _, err in results:
        assert rc in (0, 4) and "Traceback" not in err, err
    assert codes.count(0) == n_affordable, codes
    for (rc, out, _), path in zip(results, outputs, strict=True):
        assert path.exists() == (rc == 0)
        payload = json.loads(out)
        if rc == 0:
            assert payload["total_epsilon"] <= budget
        else:
            assert payload["error"]["type"] == "PrivacyBudgetExceededError"

    with Ledger(ledger, read_only=True) as led:
        rows = led.releases()
        assert len(rows) == n_prior + n_affordable  # no row lost, none extra
        assert len({r.id for r in rows}) == len(rows)
        assert [r.purpose for r in rows[n_prior:]] == ["coverage"] * n_affordable
        total = led.total_epsilon(cloud="acme", relation="add_remove")
    assert total == pytest.approx(ladder[0], rel=1e-6)
    assert total <= budget


def test_four_concurrent_responds_against_50_prior_releases(tmp_path: Path) -> None:
    _soak(tmp_path, n_procs=4, n_prior=50, n_affordable=2)


@pytest.mark.slow
def test_sixteen_concurrent_responds_against_500_prior_releases(tmp_path: Path) -> None:
    _soak(tmp_path, n_procs=16, n_prior=500, n_affordable=5)
