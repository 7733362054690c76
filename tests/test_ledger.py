"""The client's privacy ledger: composition, refusal, atomicity across processes."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import sqlite3
from pathlib import Path
from typing import Any

import dp_accounting
import pytest
from dp_accounting import pld, rdp
from ecos_fast.errors import (
    InvalidInputError,
    LedgerError,
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
    with pytest.raises(LedgerError, match="not a ledger"):
        Ledger(junk)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    Ledger(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(LedgerError, match="newer"):
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


def test_a_ledger_created_meanwhile_by_another_process_is_not_another_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes opening a new file at once: the second reads version 0 before the
    first commits its tables, then sees them; that must not read as a foreign database."""
    path = tmp_path / "l.sqlite"
    Ledger(path).close()  # the other process won: tables made, version 2
    real = Ledger._version
    calls: list[int] = []

    def stale_first(self: Ledger) -> int:
        calls.append(1)
        return 0 if len(calls) == 1 else real(self)

    monkeypatch.setattr(Ledger, "_version", stale_first)
    with Ledger(path) as ledger:
        ledger.spend(Release("a", "gaussian", sigma=30.0))
    monkeypatch.undo()
    with Ledger(path) as ledger:
        assert len(ledger.releases()) == 1


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


# -- helpers for the tests below -------------------------------------------------
_OLD_SCHEMA = """
CREATE TABLE releases (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    cloud       TEXT    NOT NULL,
    time        TEXT    NOT NULL,
    mechanism   TEXT    NOT NULL,
    sigma       REAL    NOT NULL,
    sensitivity REAL    NOT NULL,
    epsilon     REAL,
    delta       REAL,
    count       INTEGER NOT NULL,
    purpose     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX releases_cloud ON releases (cloud);
PRAGMA user_version = 1;
"""


def _prefill(path: Path, rows: list[tuple[str, float, float, int]]) -> None:
    """Append (cloud, sigma, sensitivity, count) Gaussian rows in plain SQL (fast)."""
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO releases (cloud, time, mechanism, sigma, sensitivity, count, purpose) "
        "VALUES (?, '2026-01-01T00:00:00+00:00', 'gaussian', ?, ?, ?, 'prefill')",
        rows,
    )
    conn.commit()
    conn.close()


def _direct_epsilon(multipliers: list[float], delta: float, make: Any = pld.PLDAccountant) -> float:
    """The oracle: dp_accounting composing one Gaussian event per release, ungrouped."""
    acc = make()
    for z in multipliers:
        acc.compose(dp_accounting.GaussianDpEvent(z))
    return float(acc.get_epsilon(delta))


@pytest.fixture
def exchange(tmp_path: Path) -> tuple[Path, Path]:
    """A centroid file and a private feature file for the CLI tests."""
    import ecos_fast
    import numpy as np

    rng = np.random.default_rng(0)
    cents = ecos_fast.fit_centroids(rng.normal(size=(60, 4)).astype(np.float32), 3, seed=0)
    c = tmp_path / "centroids.safetensors"
    ecos_fast.save_centroids(cents, c)
    p = tmp_path / "private.npy"
    np.save(p, rng.normal(size=(20, 4)).astype(np.float32))
    return c, p


def _cli(*args: Any) -> int:
    from ecos_fast.cli import run

    return run([str(a) for a in args])


# -- finding 2: one grouped composition per check, a short lock, clear errors -----
def test_each_check_composes_once_from_grouped_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ecos_fast.ledger as ledger_mod

    path = tmp_path / "l.sqlite"
    Ledger(path).close()
    _prefill(path, [("a", 30.0 if i % 2 else 12.0, 1.0, 1) for i in range(20)])
    made: list[list[Any]] = []
    real = ledger_mod._make_accountant

    def counting(name: str) -> Any:
        acc = real(name)
        events: list[Any] = []
        made.append(events)
        orig = acc.compose

        def compose(event: Any, count: int = 1) -> Any:
            events.append((event, count))
            return orig(event, count)

        acc.compose = compose  # type: ignore[method-assign]
        return acc

    monkeypatch.setattr(ledger_mod, "_make_accountant", counting)
    with Ledger(path, budget_epsilon=50.0) as ledger:
        ledger.spend(Release("a", "gaussian", sigma=12.0))
    # One accountant, one composition per distinct (sigma, sensitivity) group: 2, not 41.
    assert len(made) == 1 and len(made[0]) == 2
    counts = sorted(e.count for e, _ in made[0])
    assert counts == [10, 11]
    monkeypatch.undo()
    with Ledger(path) as ledger:
        acc = pld.PLDAccountant()
        acc.compose(dp_accounting.GaussianDpEvent(12.0), 11)
        acc.compose(dp_accounting.GaussianDpEvent(30.0), 10)
        assert ledger.total_epsilon(cloud="a") == pytest.approx(acc.get_epsilon(DELTA), rel=1e-6)


@pytest.mark.parametrize(("name", "make"), [("pld", pld.PLDAccountant), ("rdp", rdp.RdpAccountant)])
def test_grouped_epsilon_equals_ungrouped_composition(name: str, make: Any) -> None:
    kinds = [(6.137, 1.0), (40.0, math.sqrt(2)), (17.0, 1.0)]
    rows = [Release("a", "gaussian", sigma=s, sensitivity=d) for s, d in kinds * 5]
    want = _direct_epsilon([s / d for s, d in kinds * 5], DELTA, make)
    assert compose_epsilon(rows, DELTA, accountant=name) == pytest.approx(want, rel=1e-6)


def test_write_lock_is_released_while_the_answer_is_computed(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    with Ledger(path, budget_epsilon=5.0) as ledger:
        with ledger.reserve(Release("a", "gaussian", sigma=6.0)) as rec:
            # Another process can take the write lock while this block runs ...
            other = sqlite3.connect(path, timeout=0.2, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            (n,) = other.execute("SELECT COUNT(*) FROM releases").fetchone()
            other.execute("ROLLBACK")
            other.close()
            assert n == 1  # ... and already sees the recorded row.
        assert [r.id for r in ledger.releases()] == [rec.id]
        # A block that fails takes its row back out.
        with (
            pytest.raises(RuntimeError, match="boom"),
            ledger.reserve(Release("a", "gaussian", sigma=6.0)),
        ):
            raise RuntimeError("boom")
        assert [r.id for r in ledger.releases()] == [rec.id]


def test_busy_timeout_and_a_locked_ledger_is_a_ledger_error(tmp_path: Path) -> None:
    import time

    from ecos_fast.errors import LedgerError

    path = tmp_path / "l.sqlite"
    with Ledger(path) as ledger:
        assert ledger._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Ledger(path, timeout=0.3) as ledger:
            t = time.perf_counter()
            with pytest.raises(LedgerError, match="locked"):
                ledger.spend(Release("a", "gaussian", sigma=6.0))
            assert time.perf_counter() - t >= 0.25  # it waited for the lock first
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Ledger(path) as ledger:
        assert ledger.releases() == []


def _break_ledger(path: Path, how: str) -> Path:
    """Make ``path`` (or what is returned) a ledger broken in one way."""
    if how == "missing_folder":
        return path.parent / "no-such-folder" / "l.sqlite"
    if how == "directory":
        path.mkdir()
        return path
    if how == "garbage":
        path.write_bytes(b"this is not a database" * 100)
        return path
    if how == "other_database":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.commit()
        conn.close()
        return path
    Ledger(path).close()
    _prefill(path, [("acme", 30.0, 1.0, 1)] * 300)
    conn = sqlite3.connect(path)
    if how == "missing_table":
        conn.execute("DROP TABLE releases")
    elif how == "wrong_types":
        conn.execute("UPDATE releases SET sigma = 'abc' WHERE id = 7")
    elif how == "wrong_types_other_cloud":
        # A corrupt row is never "another cloud's business": its cloud name may be the
        # corrupted field, hiding a release to this cloud from the composition.
        conn.execute("UPDATE releases SET cloud = 'acne', sigma = 'abc' WHERE id = 7")
    elif how == "bad_values":
        conn.execute("UPDATE releases SET count = -3 WHERE id = 7")
    conn.commit()
    conn.close()
    if how == "malformed":
        data = bytearray(path.read_bytes())
        data[4096:] = b"\xa5" * (len(data) - 4096)  # every page after the first
        path.write_bytes(bytes(data))
    return path


BROKEN = [
    "missing_folder",
    "directory",
    "garbage",
    "other_database",
    "missing_table",
    "wrong_types",
    "wrong_types_other_cloud",
    "bad_values",
    "malformed",
]


@pytest.mark.parametrize("how", BROKEN)
def test_every_broken_ledger_is_a_ledger_error(tmp_path: Path, how: str) -> None:
    from ecos_fast.errors import LedgerError

    path = _break_ledger(tmp_path / "l.sqlite", how)
    with pytest.raises(LedgerError, match=str(path.name)):
        with Ledger(path, budget_epsilon=5.0) as ledger:
            ledger.spend(Release("acme", "gaussian", sigma=30.0))


@pytest.mark.parametrize("how", BROKEN)
def test_every_broken_ledger_exits_5_without_a_traceback(
    tmp_path: Path, exchange: tuple[Path, Path], capsys: pytest.CaptureFixture[str], how: str
) -> None:
    from ecos_fast.cli import EXIT_LEDGER, EXIT_USAGE

    cents, private = exchange
    path = _break_ledger(tmp_path / "l.sqlite", how)
    out = tmp_path / "r.safetensors"
    rc = _cli("respond", cents, private, "-o", out, "--epsilon", 0.5, "--ledger", path,
              "--budget-epsilon", 5, "--cloud", "acme")  # fmt: skip
    err = capsys.readouterr().err
    assert not out.exists() and "Traceback" not in err
    if how == "directory":  # click's own check of --ledger: a usage error
        assert rc == EXIT_USAGE and "is a directory" in err
        return
    assert rc == EXIT_LEDGER, err
    last = err.strip().splitlines()[-1]  # after any remark, one line: the error
    assert last.startswith("error: ledger ") and str(path.name) in last
    if path.exists():
        assert _cli("-q", "ledger", path) == EXIT_LEDGER
        assert "Traceback" not in capsys.readouterr().err


def test_read_only_ledger_is_a_ledger_error(
    tmp_path: Path, exchange: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from ecos_fast.cli import EXIT_LEDGER
    from ecos_fast.errors import LedgerError

    path = tmp_path / "l.sqlite"
    with Ledger(path) as ledger:
        ledger.spend(Release("acme", "gaussian", sigma=30.0))
    with Ledger(path, read_only=True) as ledger:  # reading works ...
        assert len(ledger.releases()) == 1
        with pytest.raises(LedgerError, match="read-only"):  # ... recording does not
            ledger.spend(Release("acme", "gaussian", sigma=30.0))
    path.chmod(0o444)
    try:
        if os.access(path, os.W_OK):
            pytest.skip("running as root: file permissions do not make the file read-only")
        cents, private = exchange
        rc = _cli("respond", cents, private, "-o", tmp_path / "r.safetensors",
                  "--epsilon", 0.5, "--ledger", path)  # fmt: skip
        err = capsys.readouterr().err
        assert rc == EXIT_LEDGER and "read-only" in err and "Traceback" not in err
        assert _cli("-q", "ledger", path) == 0  # listing needs no write access
    finally:
        path.chmod(0o644)


# -- finding 4: no noise is refused by any ledger ------------------------------------
def test_no_noise_is_refused_by_any_ledger(
    tmp_path: Path, exchange: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import ecos_fast
    import numpy as np
    from ecos_fast.cli import EXIT_BUDGET
    from ecos_fast.errors import NoNoiseReleaseError
    from ecos_fast.ledger import respond_with_ledger

    path = tmp_path / "l.sqlite"
    c = ecos_fast.Centroids(np.eye(3, dtype=np.float32))
    for budget in (None, 1e9):
        with Ledger(path, budget_epsilon=budget) as ledger:
            with pytest.raises(NoNoiseReleaseError, match="no noise"):
                respond_with_ledger(np.eye(3), c, math.inf, DELTA, ledger)
            with pytest.raises(NoNoiseReleaseError):
                ledger.spend(Release("a", "gaussian", sigma=0.0))
            assert ledger.releases() == []
    assert issubclass(NoNoiseReleaseError, PrivacyBudgetExceededError)
    cents, private = exchange
    out = tmp_path / "r.safetensors"
    assert _cli("respond", cents, private, "-o", out, "--epsilon", "inf", "--ledger", path) == (
        EXIT_BUDGET
    )
    assert "no noise" in capsys.readouterr().err and not out.exists()
    # Without a ledger the exact counts are still available for experiments.
    assert _cli("-q", "respond", cents, private, "-o", out, "--epsilon", "inf") == 0
    # compose_epsilon itself still says what no noise costs.
    assert compose_epsilon([Release("a", "gaussian", sigma=0.0)], DELTA) == math.inf


# -- finding 9: the neighbouring relation of every release ---------------------------
def test_mixed_relations_report_the_epsilon_of_the_relation_asked(tmp_path: Path) -> None:
    import ecos_fast
    import numpy as np
    from ecos_fast.errors import LedgerRelationError
    from ecos_fast.ledger import respond_with_ledger

    c = ecos_fast.Centroids(np.eye(3, dtype=np.float32))
    x = np.eye(3)
    # The example: 0.58 add/remove, then 0.58 replace-one, budget 1.0.
    with Ledger(tmp_path / "b.sqlite", budget_epsilon=1.0) as ledger:
        first = respond_with_ledger(x, c, 0.58, DELTA, ledger, cloud="acme")
        with pytest.raises(PrivacyBudgetExceededError, match="replace_one"):
            respond_with_ledger(x, c, 0.58, DELTA, ledger, cloud="acme", relation="replace_one")
        assert len(ledger.releases()) == 1
    with Ledger(tmp_path / "l.sqlite") as ledger:
        respond_with_ledger(x, c, 0.58, DELTA, ledger, cloud="acme")
        second = respond_with_ledger(
            x, c, 0.58, DELTA, ledger, cloud="acme", relation="replace_one"
        )
        rows = ledger.releases("acme")
        assert [r.relation for r in rows] == ["add_remove", "replace_one"]
        s1, s2 = first.sigma, second.sigma
        r2 = math.sqrt(2)
        replace_one = ledger.total_epsilon(relation="replace_one")
        assert replace_one == pytest.approx(_direct_epsilon([s1 / r2, s2 / r2], DELTA), rel=1e-6)
        assert replace_one == pytest.approx(1.058, abs=0.005)  # not 0.847
        add_remove = ledger.total_epsilon(relation="add_remove")
        assert add_remove == pytest.approx(_direct_epsilon([s1, s2], DELTA), rel=1e-6)
        with pytest.raises(LedgerRelationError, match="relation"):
            ledger.total_epsilon()  # mixed: no silent choice


def test_relation_conversion_without_a_known_other_sensitivity(tmp_path: Path) -> None:
    from ecos_fast.errors import LedgerRelationError

    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.spend(Release("a", "gaussian", sigma=20.0, sensitivity=1.5))
        # add/remove -> replace-one: replace = remove + add, so at most twice the sensitivity.
        assert ledger.total_epsilon(relation="replace_one") == pytest.approx(
            _direct_epsilon([20.0 / 3.0], DELTA), rel=1e-6
        )
        assert ledger.total_epsilon() == ledger.total_epsilon(relation="add_remove")
        ledger.spend(Release("b", "gaussian", sigma=20.0, sensitivity=2.0, relation="replace_one"))
        # replace-one -> add/remove has no general bound: refused, never guessed.
        with pytest.raises(LedgerRelationError, match="add_remove"):
            ledger.total_epsilon(cloud="b", relation="add_remove")
        with pytest.raises(LedgerRelationError):
            ledger.spend(Release("b", "gaussian", sigma=20.0))  # an add/remove budget check
        assert len(ledger.releases("b")) == 1
        assert ledger.total_epsilon(cloud="b") == pytest.approx(_direct_epsilon([10.0], DELTA))
    with pytest.raises(PrivacyParameterError):
        Release("a", "gaussian", sigma=1.0, relation="swap")


def test_cli_ledger_takes_and_prints_the_relation(
    tmp_path: Path, exchange: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from ecos_fast.cli import EXIT_USAGE

    cents, private = exchange
    path = tmp_path / "l.sqlite"
    for rel in ("add_remove", "replace_one"):
        assert _cli("-q", "respond", cents, private, "-o", tmp_path / "r.safetensors",
                    "--epsilon", 0.58, "--ledger", path, "--relation", rel,
                    "--cloud", "acme") == 0  # fmt: skip
    capsys.readouterr()
    assert _cli("ledger", path) == EXIT_USAGE  # mixed: the user must say which
    assert "--relation" in capsys.readouterr().err
    assert _cli("--json", "ledger", path, "--relation", "replace_one") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["relation"] == "replace_one"
    assert out["clouds"]["acme"] == pytest.approx(1.058, abs=0.005)
    assert [r["relation"] for r in out["releases"]] == ["add_remove", "replace_one"]
    assert _cli("ledger", path, "--relation", "add_remove") == 0
    assert "add_remove" in capsys.readouterr().out


def test_old_ledger_files_are_read_as_add_remove_and_migrated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(_OLD_SCHEMA)
    conn.close()
    _prefill(path, [("acme", 8.679, math.sqrt(2), 1)])
    # Listing does not write: the old file stays as it was.
    assert _cli("-q", "ledger", path) == 0
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1
    with Ledger(path, read_only=True) as ledger:
        (row,) = ledger.releases()
        assert (row.relation, row.other_sensitivity) == ("add_remove", None)
    with Ledger(path) as ledger:  # opened for writing: migrated in place
        ledger.spend(Release("acme", "gaussian", sigma=30.0))
        assert [r.relation for r in ledger.releases()] == ["add_remove"] * 2
        # The documented default is safe: sqrt(2) under add/remove over-counts coverage.
        assert ledger.total_epsilon(cloud="acme") == pytest.approx(
            _direct_epsilon([8.679 / math.sqrt(2), 30.0], DELTA), rel=1e-6
        )
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2
