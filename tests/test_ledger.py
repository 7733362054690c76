"""The client's privacy ledger: composition, refusal, atomicity across processes."""

from __future__ import annotations

import math
import multiprocessing as mp
import sqlite3
from pathlib import Path
from typing import Any

import dp_accounting
import pytest
from dp_accounting import pld, rdp
from ecos_fast.errors import (
    InvalidInputError,
    PrivacyBudgetExceededError,
    PrivacyParameterError,
)
from ecos_fast.ledger import Ledger, Release, compose_epsilon

DELTA = 1e-5


def _events() -> list[Release]:
    return [
        Release("cloud-a", "gaussian", sigma=6.137, sensitivity=1.0, purpose="coverage"),
        Release("cloud-a", "gaussian", sigma=40.0, sensitivity=math.sqrt(2), count=300),
        Release("cloud-a", "laplace", sigma=20.0, sensitivity=1.0),
    ]


def _library_epsilon(accountant: Any, delta: float) -> float:
    accountant.compose(dp_accounting.GaussianDpEvent(6.137))
    accountant.compose(dp_accounting.GaussianDpEvent(40.0 / math.sqrt(2)), 300)
    accountant.compose(dp_accounting.LaplaceDpEvent(20.0))
    return float(accountant.get_epsilon(delta))


@pytest.mark.parametrize(("name", "make"), [("pld", pld.PLDAccountant), ("rdp", rdp.RdpAccountant)])
def test_composition_equals_dp_accounting(tmp_path: Path, name: str, make: Any) -> None:
    expected = _library_epsilon(make(), DELTA)
    assert compose_epsilon(_events(), DELTA, accountant=name) == pytest.approx(expected, rel=1e-9)
    with Ledger(tmp_path / "l.sqlite", delta=DELTA, accountant=name) as ledger:
        for r in _events():
            ledger.spend(r)
        assert ledger.total_epsilon(cloud="cloud-a") == pytest.approx(expected, rel=1e-9)
        assert ledger.total_epsilon() == pytest.approx(expected, rel=1e-9)
        # Another delta: same library answer.
        assert ledger.total_epsilon(1e-6, cloud="cloud-a") == pytest.approx(
            _library_epsilon(make(), 1e-6), rel=1e-9
        )


def test_single_release_matches_calibration() -> None:
    sigma = dp_accounting.get_sigma_gaussian(0.58, DELTA)
    eps = compose_epsilon([Release("c", "gaussian", sigma=sigma)], DELTA)
    # PLD is a pessimistic discretisation of the exact Gaussian curve.
    assert 0.58 <= eps <= 0.59


def test_empty_and_per_cloud_totals(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite") as ledger:
        assert ledger.total_epsilon() == 0.0
        ledger.spend(Release("a", "gaussian", sigma=6.137))
        ledger.spend(Release("b", "gaussian", sigma=6.137))
        one = ledger.total_epsilon(cloud="a")
        assert ledger.total_epsilon(cloud="b") == pytest.approx(one)
        assert ledger.total_epsilon() > one  # both clouds together compose
        assert ledger.clouds() == ["a", "b"]
        rows = ledger.releases("a")
        assert len(rows) == 1 and rows[0].id is not None and rows[0].time.endswith("+00:00")


def test_persists_across_opens(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    with Ledger(path) as ledger:
        ledger.spend(Release("a", "gaussian", sigma=6.137, epsilon=0.58, delta=DELTA))
    with Ledger(path) as ledger:
        (row,) = ledger.releases()
        assert (row.sigma, row.epsilon, row.delta, row.count) == (6.137, 0.58, DELTA, 1)


def test_refusal_names_the_numbers_and_records_nothing(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite", budget_epsilon=0.8, delta=DELTA) as ledger:
        ledger.spend(Release("a", "gaussian", sigma=6.137))  # ~0.58
        current = ledger.total_epsilon(cloud="a")
        request = Release("a", "gaussian", sigma=6.137)
        would_be = ledger.total_epsilon(cloud="a", extra=[request])
        assert would_be > 0.8
        with pytest.raises(PrivacyBudgetExceededError) as info:
            ledger.spend(request)
        msg = str(info.value)
        assert f"{current:.4g}" in msg and f"{would_be:.4g}" in msg and "budget epsilon=0.8" in msg
        assert "requested release epsilon=" in msg
        assert len(ledger.releases()) == 1
        with pytest.raises(PrivacyBudgetExceededError):
            ledger.check(request)
        # Another cloud still has its own budget.
        ledger.spend(Release("b", "gaussian", sigma=6.137))
        # A per-call budget overrides the ledger's.
        assert ledger.check(request, budget_epsilon=2.0) == pytest.approx(would_be)


def test_no_noise_is_infinite_and_refused_under_a_budget(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite", budget_epsilon=100.0) as ledger:
        with pytest.raises(PrivacyBudgetExceededError):
            ledger.spend(Release("a", "gaussian", sigma=0.0))
        assert ledger.releases() == []
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.spend(Release("a", "gaussian", sigma=0.0))
        assert ledger.total_epsilon() == math.inf


def test_reserve_rolls_back_when_the_release_fails(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite") as ledger:
        with (
            pytest.raises(RuntimeError, match="boom"),
            ledger.reserve(Release("a", "gaussian", sigma=6.0)),
        ):
            raise RuntimeError("boom")
        assert ledger.releases() == []
        with ledger.reserve(Release("a", "gaussian", sigma=6.0)) as rec:
            assert rec.id is not None
        assert len(ledger.releases()) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mechanism": "exponential"},
        {"sigma": -1.0},
        {"sigma": math.inf},
        {"sensitivity": 0.0},
    ],
)
def test_invalid_release(kwargs: dict[str, Any]) -> None:
    base: dict[str, Any] = {"cloud": "a", "mechanism": "gaussian", "sigma": 1.0}
    with pytest.raises(PrivacyParameterError):
        Release(**{**base, **kwargs})


def test_invalid_ledger_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        Release("", "gaussian", sigma=1.0)
    with pytest.raises(InvalidInputError):
        Ledger(tmp_path / "l.sqlite", accountant="moments")
    with pytest.raises(PrivacyParameterError):
        Ledger(tmp_path / "l.sqlite", delta=0.0)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(InvalidInputError, match="not a ledger"):
        Ledger(junk)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    Ledger(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(InvalidInputError, match="newer"):
        Ledger(path)


# -- two processes racing for the last of a budget -----------------------------
def _race_worker(path: str, barrier: Any, results: Any) -> None:
    ledger = Ledger(path, budget_epsilon=0.8, delta=DELTA)
    barrier.wait()
    try:
        ledger.spend(Release("a", "gaussian", sigma=6.137, purpose="race"))
        results.put("ok")
    except PrivacyBudgetExceededError:
        results.put("refused")
    finally:
        ledger.close()


def test_two_processes_cannot_both_spend_the_last_of_a_budget(tmp_path: Path) -> None:
    path = str(tmp_path / "l.sqlite")
    with Ledger(path, budget_epsilon=0.8) as ledger:
        ledger.spend(Release("a", "gaussian", sigma=12.0))  # leaves room for one 0.58 release
        base = ledger.total_epsilon(cloud="a")
        one_more = ledger.check(Release("a", "gaussian", sigma=6.137))
        assert one_more <= 0.8
        assert ledger.total_epsilon(extra=[Release("a", "gaussian", sigma=6.137)] * 2) > 0.8
    ctx: Any = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    for _ in range(3):  # several rounds: the ordering differs from run to run
        with Ledger(path) as ledger:
            conn = ledger._conn
            conn.execute("DELETE FROM releases WHERE purpose = 'race'")
            assert ledger.total_epsilon(cloud="a") == pytest.approx(base)
        barrier = ctx.Barrier(2)
        results = ctx.Queue()
        procs = [ctx.Process(target=_race_worker, args=(path, barrier, results)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        outcome = sorted(results.get(timeout=5) for _ in procs)
        assert outcome == ["ok", "refused"]
        with Ledger(path) as ledger:
            assert len(ledger.releases("a")) == 2
            assert ledger.total_epsilon(cloud="a") <= 0.8


def test_respond_with_ledger_records_then_refuses(tmp_path: Path) -> None:
    import ecos_fast
    import numpy as np
    from ecos_fast.ledger import respond_with_ledger

    cents = ecos_fast.Centroids(np.eye(3, dtype=np.float32))
    private = np.eye(3)[[0, 0, 1, 2, 2, 2]]
    with Ledger(tmp_path / "l.sqlite", budget_epsilon=0.8) as ledger:
        got = respond_with_ledger(private, cents, 0.58, DELTA, ledger, cloud="acme", seed=5)
        want = ecos_fast.respond(private, cents, 0.58, DELTA, seed=5)
        np.testing.assert_array_equal(got.noisy_counts, want.noisy_counts)
        (row,) = ledger.releases("acme")
        assert (row.sigma, row.sensitivity, row.epsilon) == (got.sigma, 1.0, 0.58)
        with pytest.raises(PrivacyBudgetExceededError):
            respond_with_ledger(private, cents, 0.58, DELTA, ledger, cloud="acme")
        # Replace-one neighbouring: sensitivity sqrt(2), sigma scaled by it, same epsilon.
        r = respond_with_ledger(
            private, cents, 0.58, DELTA, ledger, cloud="b", relation="replace_one"
        )
        assert ledger.releases("b")[0].sensitivity == pytest.approx(math.sqrt(2))
        assert ledger.total_epsilon(cloud="b") == pytest.approx(
            ledger.total_epsilon(cloud="acme"), abs=0.01
        )
        assert r.sigma == pytest.approx(got.sigma * math.sqrt(2))
        # A failed respond (wrong width) records nothing.
        with pytest.raises(ecos_fast.InvalidInputError):
            respond_with_ledger(np.ones((2, 5)), cents, 0.1, DELTA, ledger, cloud="c")
        assert ledger.releases("c") == []


def test_respond_with_ledger_calibrates_sigma_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger records the very mechanism that is released: one calibration, not two."""
    import ecos_fast
    import numpy as np
    from dp_accounting import gaussian_mechanism
    from ecos_fast.ledger import respond_with_ledger

    calls: list[tuple[float, float]] = []
    real = gaussian_mechanism.get_sigma_gaussian

    def counted(epsilon: float, delta: float, tol: float = 1e-3) -> float:
        calls.append((epsilon, delta))
        return float(real(epsilon, delta, tol=tol))

    monkeypatch.setattr(gaussian_mechanism, "get_sigma_gaussian", counted)
    cents = ecos_fast.Centroids(np.eye(3, dtype=np.float32))
    with Ledger(tmp_path / "l.sqlite", budget_epsilon=5.0) as ledger:
        r = respond_with_ledger(np.eye(3), cents, 0.58, DELTA, ledger, cloud="acme", seed=1)
        assert calls == [(0.58, DELTA)]
        (row,) = ledger.releases("acme")
        assert row.sigma == r.sigma and row.sensitivity == r.sensitivity == 1.0
