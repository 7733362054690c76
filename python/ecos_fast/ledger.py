"""The client's privacy ledger: every release it made, composed with dp-accounting.

A client that answers several rounds (or many private-kNN label queries) loses
privacy with every answer. This module keeps a small SQLite file on the client's
side that records each release to each cloud, composes them with Google's
``dp-accounting`` (PLD accountant by default, RDP as an option) and refuses a new
release that would push the composed total past the configured budget.

Each budget check reads the cloud's rows, groups identical ones (same mechanism,
σ and sensitivity under the relation asked) into one ``SelfComposedDpEvent`` and
composes the groups once. The check and the record happen in one short
``BEGIN IMMEDIATE`` transaction, before the noise is drawn: two processes sharing
one ledger file cannot both spend the last of a budget (SQLite serialises
writers; the second waits up to ``timeout`` seconds, then sees the first's row).
The noisy answer is computed after that transaction has committed; if computing
it fails, the row is deleted again.

Notes
-----
**Privacy guarantee.** For the releases recorded against one cloud, the ledger
reports ``total_epsilon(delta, relation=...)``: the whole sequence of releases is
``(total_epsilon, delta)``-differentially private with respect to the client's
private data set under that neighbouring relation, assuming each recorded release
really was a Gaussian (or Laplace) mechanism with the recorded ``sigma`` and
sensitivity and that the noise was fresh. Every row records the relation its
``sensitivity`` holds under (``add_remove``: add or remove one sample;
``replace_one``: replace one sample) and, when known, its sensitivity under the
other relation (``other_sensitivity``; coverage counts: 1 and sqrt(2)). A row is
converted to the relation asked with that number; without it, add/remove to
replace-one doubles the sensitivity (a replacement is a removal plus an addition:
triangle inequality), and replace-one to add/remove is refused
(:class:`~ecos_fast.errors.LedgerRelationError`): no general bound exists.
Composition is adaptive (each release may depend on earlier answers). The PLD
accountant's answer is a certified upper bound (pessimistic discretisation); the
RDP accountant's bound is looser. Clouds that may collude must share one
``cloud`` name, since the guarantee is per cloud name; pass ``cloud=None`` to
:meth:`Ledger.total_epsilon` for the total over every cloud.

The guarantee holds only while every release goes through the ledger: a client
that releases without recording, deletes the file, or edits it loses it. A
release without noise (σ = 0, ε = ∞) is refused by every ledger
(:class:`~ecos_fast.errors.NoNoiseReleaseError`).

Files written by ecos-fast before the relation was recorded (schema version 1)
are read with ``relation="add_remove"`` and no ``other_sensitivity``, and are
migrated to version 2 in place when opened for writing. That default is safe:
such rows hold sensitivity 1 (add/remove coverage or private kNN, sqrt(2)) or
sqrt(2) (replace-one coverage, whose add/remove sensitivity is 1), never less
than the true add/remove sensitivity.

Every failure of the file itself (locked past the timeout, corrupt, not a ledger,
missing table or column, values of the wrong type, missing folder, read-only) is
a :class:`~ecos_fast.errors.LedgerError` naming the file; no ``sqlite3`` exception
leaves this module.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dp_accounting
from dp_accounting import pld, rdp

from ._validation import check_delta, check_int
from .errors import (
    EcosError,
    InvalidInputError,
    LedgerError,
    LedgerRelationError,
    NoNoiseReleaseError,
    PrivacyBudgetExceededError,
    PrivacyParameterError,
)

if TYPE_CHECKING:
    from .protocol import Centroids, Response

__all__ = [
    "ACCOUNTANTS",
    "DEFAULT_TIMEOUT",
    "MECHANISMS",
    "RELATIONS",
    "Ledger",
    "Release",
    "compose_epsilon",
    "respond_with_ledger",
]

Accountant = Literal["pld", "rdp"]
Mechanism = Literal["gaussian", "laplace"]
ACCOUNTANTS: tuple[str, ...] = ("pld", "rdp")
MECHANISMS: tuple[str, ...] = ("gaussian", "laplace")
#: The neighbouring relations a release can be recorded under.
RELATIONS: tuple[str, ...] = ("add_remove", "replace_one")
#: Seconds a check waits for another process holding the ledger's write lock.
DEFAULT_TIMEOUT = 30.0

_SCHEMA_VERSION = 2
_COLUMNS = (
    "id, cloud, time, mechanism, sigma, sensitivity, epsilon, delta, count, purpose, "
    "relation, other_sensitivity"
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    cloud             TEXT    NOT NULL,
    time              TEXT    NOT NULL,
    mechanism         TEXT    NOT NULL,
    sigma             REAL    NOT NULL,
    sensitivity       REAL    NOT NULL,
    epsilon           REAL,
    delta             REAL,
    count             INTEGER NOT NULL,
    purpose           TEXT    NOT NULL DEFAULT '',
    relation          TEXT    NOT NULL DEFAULT 'add_remove',
    other_sensitivity REAL
);
CREATE INDEX IF NOT EXISTS releases_cloud ON releases (cloud);
"""
# Version 1 had no relation: its rows read as add/remove (see the module notes).
_MIGRATE_FROM_1 = (
    "ALTER TABLE releases ADD COLUMN relation TEXT NOT NULL DEFAULT 'add_remove'",
    "ALTER TABLE releases ADD COLUMN other_sensitivity REAL",
)
_COLUMNS_V1 = (
    "id, cloud, time, mechanism, sigma, sensitivity, epsilon, delta, count, purpose, "
    "'add_remove', NULL"
)


@dataclass(frozen=True)
class Release:
    """One recorded release (or ``count`` identical ones) to one cloud.

    Attributes
    ----------
    cloud : str
        Name or id of the cloud that received it.
    mechanism : {"gaussian", "laplace"}
    sigma : float
        Noise scale: the Gaussian's standard deviation or the Laplace scale ``b``.
        ``math.inf`` is not allowed; ``0`` means no noise (infinite ε; no ledger
        records it).
    sensitivity : float
        L2 (Gaussian) or L1 (Laplace) sensitivity of the released quantity under
        ``relation`` (1 for coverage counts under add/remove-one).
    epsilon, delta : float or None
        The release's own calibration target, kept for the record only; composition
        uses ``sigma`` and the sensitivity.
    count : int
        Number of identical releases (e.g. private-kNN GNMax label queries).
    purpose : str
        Free text ("coverage", "knn-labels", ...).
    time : str
        UTC ISO-8601 time it was recorded (set by the ledger).
    id : int or None
        Row id in the ledger (set by the ledger).
    relation : {"add_remove", "replace_one"}, default "add_remove"
        The neighbouring relation ``sensitivity`` holds under.
    other_sensitivity : float or None
        The sensitivity of the same quantity under the other relation, when known
        (coverage counts: sqrt(2) under replace-one, 1 under add/remove). ``None``:
        add/remove converts to replace-one with twice ``sensitivity``; replace-one
        cannot be converted to add/remove.
    """

    cloud: str
    mechanism: str
    sigma: float
    sensitivity: float = 1.0
    epsilon: float | None = None
    delta: float | None = None
    count: int = 1
    purpose: str = ""
    time: str = ""
    id: int | None = None
    relation: str = "add_remove"
    other_sensitivity: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.cloud, str) or not self.cloud:
            raise InvalidInputError(f"cloud={self.cloud!r} must be a non-empty string")
        if self.mechanism not in MECHANISMS:
            raise PrivacyParameterError(
                f"mechanism={self.mechanism!r} is not one of {', '.join(MECHANISMS)}"
            )
        sigma = float(self.sigma)
        if math.isnan(sigma) or sigma < 0 or math.isinf(sigma):
            raise PrivacyParameterError(f"sigma={self.sigma} must be a finite number >= 0")
        for name in ("sensitivity", "other_sensitivity"):
            value = getattr(self, name)
            if value is None and name == "other_sensitivity":
                continue
            sens = float(value)
            if not (math.isfinite(sens) and sens > 0):
                raise PrivacyParameterError(f"{name}={value} must be finite and > 0")
        if self.relation not in RELATIONS:
            raise PrivacyParameterError(
                f"relation={self.relation!r} is not one of {', '.join(RELATIONS)}"
            )
        check_int(self.count, "count", low=1)

    def sensitivity_under(self, relation: str) -> float:
        """This release's sensitivity under ``relation``.

        Raises
        ------
        LedgerRelationError
            ``relation="add_remove"`` for a replace-one release whose add/remove
            sensitivity is not recorded.
        """
        if relation == self.relation:
            return float(self.sensitivity)
        if relation not in RELATIONS:
            raise PrivacyParameterError(
                f"relation={relation!r} is not one of {', '.join(RELATIONS)}"
            )
        if self.other_sensitivity is not None:
            return float(self.other_sensitivity)
        if relation == "replace_one":
            # Replacing one sample = removing it and adding another: at most twice.
            return 2.0 * float(self.sensitivity)
        raise LedgerRelationError(
            f"a release to cloud {self.cloud!r} (row id={self.id}, purpose "
            f"{self.purpose or 'none'!r}) was recorded under replace_one with no "
            "add_remove sensitivity: an add_remove epsilon cannot be derived from it; "
            "ask for relation='replace_one'"
        )

    @property
    def noise_multiplier(self) -> float:
        """``sigma / sensitivity`` under the recorded relation."""
        return float(self.sigma) / float(self.sensitivity)

    def dp_event(self, relation: str | None = None) -> dp_accounting.DpEvent:
        """This release as a ``dp_accounting`` event (``count`` self-compositions)
        under ``relation`` (default: the recorded one)."""
        sens = self.sensitivity_under(self.relation if relation is None else relation)
        single = _single_event(self.mechanism, float(self.sigma), sens)
        if self.count == 1:
            return single
        return dp_accounting.SelfComposedDpEvent(single, self.count)


def _single_event(mechanism: str, sigma: float, sensitivity: float) -> dp_accounting.DpEvent:
    if sigma == 0:
        return dp_accounting.NonPrivateDpEvent()
    if mechanism == "gaussian":
        return dp_accounting.GaussianDpEvent(sigma / sensitivity)
    return dp_accounting.LaplaceDpEvent(sigma / sensitivity)


def _make_accountant(accountant: str) -> dp_accounting.PrivacyAccountant:
    if accountant == "pld":
        return pld.PLDAccountant()
    if accountant == "rdp":
        return rdp.RdpAccountant()
    raise InvalidInputError(f"accountant={accountant!r} is not one of {', '.join(ACCOUNTANTS)}")


def _common_relation(releases: Sequence[Release]) -> str:
    kinds = sorted({r.relation for r in releases})
    if len(kinds) > 1:
        raise LedgerRelationError(
            "the releases were recorded under both neighbouring relations (add_remove and "
            "replace_one): name the relation the total must hold for "
            "(relation='add_remove' or 'replace_one')"
        )
    return kinds[0] if kinds else "add_remove"


def compose_epsilon(
    releases: Iterable[Release],
    delta: float,
    *,
    accountant: str = "pld",
    relation: str | None = None,
) -> float:
    """ε of the composition of ``releases`` at ``delta``, by a dp-accounting accountant.

    Identical releases (same mechanism, σ and sensitivity under ``relation``) are
    grouped into one ``SelfComposedDpEvent`` and every group is composed once, so
    the cost grows with the number of distinct kinds, not of rows.

    Parameters
    ----------
    releases : iterable of Release
    delta : float
        In (0, 1).
    accountant : {"pld", "rdp"}, default "pld"
        ``pld.PLDAccountant`` (tight numerical composition) or ``rdp.RdpAccountant``.
    relation : {"add_remove", "replace_one"}, optional
        The neighbouring relation the answer holds for. Default: the relation all
        ``releases`` were recorded under.

    Returns
    -------
    float
        0.0 for no releases; ``math.inf`` when a release had no noise.

    Raises
    ------
    LedgerRelationError
        ``relation`` not given and the releases mix relations, or a release
        cannot be converted to ``relation``.

    Examples
    --------
    >>> from ecos_fast.ledger import Release, compose_epsilon
    >>> r = Release("cloud-a", "gaussian", sigma=6.137, sensitivity=1.0)
    >>> round(compose_epsilon([r], 1e-5), 2)
    0.58
    >>> round(compose_epsilon([r, r], 1e-5), 2)
    0.85
    """
    d = check_delta(delta)
    rows = list(releases)
    rel = _common_relation(rows) if relation is None else relation
    if rel not in RELATIONS:
        raise PrivacyParameterError(f"relation={rel!r} is not one of {', '.join(RELATIONS)}")
    groups: dict[tuple[str, float, float], int] = {}
    for r in rows:
        key = (r.mechanism, float(r.sigma), r.sensitivity_under(rel))
        groups[key] = groups.get(key, 0) + int(r.count)
    if not groups:
        return 0.0
    if any(sigma == 0 for _, sigma, _ in groups):
        return math.inf
    acc = _make_accountant(accountant)
    for (mechanism, sigma, sens), count in groups.items():
        single = _single_event(mechanism, sigma, sens)
        acc.compose(single if count == 1 else dp_accounting.SelfComposedDpEvent(single, count))
    eps = float(acc.get_epsilon(d))
    return eps if eps >= 0 else 0.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _describe(exc: sqlite3.Error, timeout: float) -> str:
    """A sentence for what SQLite reported."""
    text = str(exc)
    low = text.lower()
    if "locked" in low or "busy" in low:
        return (
            f"it is locked: another process held its write lock for more than {timeout:g} s "
            f"(sqlite: {text})"
        )
    if "readonly" in low or "read-only" in low:
        return f"it is read-only, so the release cannot be recorded (sqlite: {text})"
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return f"it is not a ledger file, or it is corrupt (sqlite: {text})"
    if "no such table" in low or "no such column" in low:
        return f"it is not a ledger file of this ecos-fast: a table or column is missing (sqlite: {text})"
    if "unable to open" in low:
        return f"it cannot be opened (sqlite: {text})"
    return f"sqlite reported: {text}"


class Ledger:
    """A per-client SQLite ledger of releases, with a composed privacy budget.

    Parameters
    ----------
    path : str or os.PathLike
        The ledger file; created (with its tables) when missing, unless
        ``read_only``. Its folder must exist.
    budget_epsilon : float, optional
        Refuse any release that would make the composed ε (at ``delta``) for its
        cloud exceed this. ``None``: record without a limit (a release without
        noise is still refused).
    delta : float, default 1e-5
        The δ at which totals are reported and the budget is enforced.
    accountant : {"pld", "rdp"}, default "pld"
    timeout : float, default 30.0
        Seconds to wait for another process holding the ledger's write lock (the
        SQLite busy timeout); past it, :class:`~ecos_fast.errors.LedgerError`.
    read_only : bool, default False
        Open for reading only: nothing is created or migrated, and recording raises
        :class:`~ecos_fast.errors.LedgerError`.

    Attributes
    ----------
    last_total : float or None
        The composed ε of the last release recorded through this object, for its
        cloud and under its budget relation, with that release included.

    Raises
    ------
    LedgerError
        The file cannot be opened as a ledger (see the module notes).

    Notes
    -----
    See the module docstring for the privacy guarantee. :meth:`spend` and
    :meth:`reserve` check and record inside one ``BEGIN IMMEDIATE`` transaction,
    so concurrent processes sharing the file compose correctly: of two releases
    that each fit the remaining budget but not together, exactly one succeeds.
    Record *before* the noisy values leave the process (``reserve``), never after.
    SQLite locking needs a local file system (not NFS).

    Examples
    --------
    >>> import tempfile, os
    >>> from ecos_fast.ledger import Ledger, Release
    >>> path = os.path.join(tempfile.mkdtemp(), "ledger.sqlite")
    >>> with Ledger(path, budget_epsilon=1.0, delta=1e-5) as ledger:
    ...     _ = ledger.spend(Release("cloud-a", "gaussian", sigma=6.137))
    ...     round(ledger.total_epsilon(cloud="cloud-a"), 2)
    0.58
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        budget_epsilon: float | None = None,
        delta: float = 1e-5,
        accountant: str = "pld",
        timeout: float = DEFAULT_TIMEOUT,
        read_only: bool = False,
    ) -> None:
        if budget_epsilon is not None:
            b = float(budget_epsilon)
            if math.isnan(b) or b < 0:
                raise PrivacyParameterError(f"budget_epsilon={budget_epsilon} must be >= 0")
            budget_epsilon = b
        if accountant not in ACCOUNTANTS:
            raise InvalidInputError(
                f"accountant={accountant!r} is not one of {', '.join(ACCOUNTANTS)}"
            )
        t = float(timeout)
        if not (math.isfinite(t) and t >= 0):
            raise InvalidInputError(f"timeout={timeout} must be a finite number of seconds >= 0")
        self.path = os.fspath(path)
        self.budget_epsilon = budget_epsilon
        self.delta = check_delta(delta)
        self.accountant = accountant
        self.timeout = t
        self.read_only = bool(read_only)
        self.last_total: float | None = None
        self._columns = _COLUMNS
        memory = self.path == ":memory:"
        if not memory:
            folder = Path(self.path).absolute().parent
            if not folder.is_dir():
                raise LedgerError(f"ledger {self.path}: its folder {folder} does not exist")
            if Path(self.path).is_dir():
                raise LedgerError(f"ledger {self.path}: it is a folder, not a ledger file")
            if self.read_only and not Path(self.path).is_file():
                raise LedgerError(f"ledger {self.path}: no such file")
        try:
            if self.read_only and not memory:
                uri = Path(self.path).absolute().as_uri() + "?mode=ro"
                conn = sqlite3.connect(uri, timeout=t, isolation_level=None, uri=True)
            else:
                # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
                conn = sqlite3.connect(self.path, timeout=t, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error("opening", exc) from None
        self._conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {round(t * 1000)}")
            self._init_schema()
        except sqlite3.Error as exc:
            conn.close()
            raise self._error("opening", exc) from None
        except LedgerError:
            conn.close()
            raise

    def _error(self, doing: str, exc: sqlite3.Error) -> LedgerError:
        return LedgerError(
            f"ledger {self.path}: {doing} failed: {_describe(exc, self.timeout)}; "
            "nothing was released"
        )

    @contextmanager
    def _sqlite(self, doing: str) -> Iterator[None]:
        """Turn any sqlite3 error in the block into a LedgerError."""
        try:
            yield
        except sqlite3.Error as exc:
            raise self._error(doing, exc) from None

    def _version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _check_tables(self) -> None:
        names = {str(r[0]) for r in self._conn.execute("SELECT name FROM sqlite_master")}
        if "releases" not in names:
            raise LedgerError(
                f"ledger {self.path}: it is not a ledger file of this ecos-fast: "
                "its table 'releases' is missing"
            )
        have = {str(r[1]) for r in self._conn.execute("PRAGMA table_info(releases)")}
        # The plain names among the selected columns (v1 selects two literals instead).
        want = {c.strip() for c in self._columns.split(",")} - {"'add_remove'", "NULL"}
        missing = sorted(want - have)
        if missing:
            raise LedgerError(
                f"ledger {self.path}: it is not a ledger file of this ecos-fast: "
                f"table 'releases' lacks the columns {', '.join(missing)}"
            )

    def _refuse_other_tables(self) -> None:
        """A version-0 file must hold no tables: it is empty, or another database."""
        tables = [
            str(r[0])
            for r in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        if tables:
            raise LedgerError(
                f"ledger {self.path}: it is not a ledger file: it is an SQLite database "
                f"holding other tables ({', '.join(sorted(tables))})"
            )

    def _init_schema(self) -> None:
        version = self._version()
        if version > _SCHEMA_VERSION:
            raise LedgerError(
                f"ledger {self.path}: its schema version {version} is newer than this "
                f"ecos-fast's ({_SCHEMA_VERSION}); upgrade ecos-fast"
            )
        if version == _SCHEMA_VERSION:
            self._check_tables()
            return
        if self.read_only:
            if version == 0:
                self._refuse_other_tables()
                raise LedgerError(f"ledger {self.path}: it is an empty file, not a ledger")
            self._columns = _COLUMNS_V1  # read as documented, do not migrate
            self._check_tables()
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._version()  # another process may have got there first
            if version == 0:
                # Inside the lock: a process creating the ledger meanwhile is not "other".
                self._refuse_other_tables()
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        self._conn.execute(stmt)
            elif version == 1:
                self._columns = _COLUMNS_V1
                self._check_tables()
                self._columns = _COLUMNS
                for stmt in _MIGRATE_FROM_1:
                    self._conn.execute(stmt)
            if version < _SCHEMA_VERSION:
                self._conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            self._check_tables()
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    # -- context management ----------------------------------------------------
    def close(self) -> None:
        """Close the connection to the file."""
        self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------
    def releases(self, cloud: str | None = None) -> list[Release]:
        """Every recorded release, oldest first (only ``cloud``'s when given)."""
        with self._sqlite("reading"):
            return self._read(cloud)

    def _read(self, cloud: str | None) -> list[Release]:
        # Every row is validated, also when only one cloud's are asked for: the corrupt
        # field of a row may be its cloud name, which would hide a release to ``cloud``
        # from the composition (an under-count). A broken file is refused as a whole.
        rows = self._conn.execute(f"SELECT {self._columns} FROM releases ORDER BY id").fetchall()
        out = []
        for r in rows:
            try:
                if not all(isinstance(r[i], (int, float)) for i in (0, 4, 5, 8)):
                    raise TypeError("id, sigma, sensitivity and count must be numbers")
                if not all(isinstance(r[i], str) for i in (1, 2, 3, 9, 10)):
                    raise TypeError("cloud, time, mechanism, purpose and relation must be text")
                for i in (6, 7, 11):
                    if r[i] is not None and not isinstance(r[i], (int, float)):
                        raise TypeError("epsilon, delta and other_sensitivity must be numbers")
                if float(r[8]) != int(r[8]):
                    raise TypeError("count must be an integer")
                out.append(
                    Release(
                        id=int(r[0]),
                        cloud=r[1],
                        time=r[2],
                        mechanism=r[3],
                        sigma=float(r[4]),
                        sensitivity=float(r[5]),
                        epsilon=None if r[6] is None else float(r[6]),
                        delta=None if r[7] is None else float(r[7]),
                        count=int(r[8]),
                        purpose=r[9],
                        relation=r[10],
                        other_sensitivity=None if r[11] is None else float(r[11]),
                    )
                )
            except (TypeError, ValueError, EcosError) as exc:
                raise LedgerError(
                    f"ledger {self.path}: row id={r[0]!r} is not a valid release ({exc}); "
                    "the file was edited or is corrupt"
                ) from None
        return out if cloud is None else [r for r in out if r.cloud == cloud]

    def clouds(self) -> list[str]:
        """Names of the clouds that received at least one release."""
        with self._sqlite("reading"):
            rows = self._conn.execute("SELECT DISTINCT cloud FROM releases ORDER BY cloud")
            return [str(r[0]) for r in rows]

    def relations(self, cloud: str | None = None) -> list[str]:
        """The neighbouring relations the releases (``cloud``'s when given) were recorded under."""
        return sorted({r.relation for r in self.releases(cloud)})

    def total_epsilon(
        self,
        delta: float | None = None,
        *,
        cloud: str | None = None,
        extra: Sequence[Release] = (),
        relation: str | None = None,
    ) -> float:
        """Composed ε at ``delta`` (default: the ledger's) of the recorded releases.

        Parameters
        ----------
        delta : float, optional
        cloud : str, optional
            Only this cloud's releases; ``None`` composes every release in the file.
        extra : sequence of Release
            Hypothetical further releases to include (nothing is recorded).
        relation : {"add_remove", "replace_one"}, optional
            The neighbouring relation the total holds for; default: the one every
            release was recorded under.

        Raises
        ------
        LedgerRelationError
            ``relation`` not given and the releases mix relations, or a release
            cannot be converted to ``relation``.
        """
        d = self.delta if delta is None else check_delta(delta)
        rows = [*self.releases(cloud), *extra]
        return compose_epsilon(rows, d, accountant=self.accountant, relation=relation)

    # -- spending --------------------------------------------------------------
    def _refusal(
        self, past: list[Release], release: Release, budget: float, total: float, rel: str
    ) -> PrivacyBudgetExceededError:
        current = compose_epsilon(past, self.delta, accountant=self.accountant, relation=rel)
        alone = compose_epsilon([release], self.delta, accountant=self.accountant, relation=rel)
        return PrivacyBudgetExceededError(
            f"privacy budget exhausted for cloud {release.cloud!r}: current "
            f"epsilon={current:.4g}, requested release epsilon={alone:.4g} "
            f"(sigma={release.sigma:.4g}, sensitivity={release.sensitivity_under(rel):.4g}, "
            f"count={release.count}), composed total would be epsilon={total:.4g} > "
            f"budget epsilon={budget:.4g} at delta={self.delta:.3g} under {rel} "
            f"neighbouring ({self.accountant} accountant, ledger {self.path})"
        )

    def _refuse_no_noise(self, release: Release) -> None:
        if release.sigma == 0:
            raise NoNoiseReleaseError(
                f"a release with no noise (sigma=0, epsilon=inf) to cloud {release.cloud!r} "
                f"is refused by the ledger {self.path}: it reveals the exact values and its "
                "privacy loss is infinite; release without a ledger only in experiments"
            )

    def check(
        self,
        release: Release,
        *,
        budget_epsilon: float | None = None,
        relation: str | None = None,
    ) -> float:
        """The composed ε if ``release`` were added; raise if it exceeds the budget.

        Records nothing; use :meth:`spend` or :meth:`reserve` to check and record
        atomically (a check followed by a separate spend can race).

        Parameters
        ----------
        release : Release
        budget_epsilon : float, optional
            Default: the ledger's.
        relation : {"add_remove", "replace_one"}, optional
            The relation the budget is enforced under; default ``release.relation``.

        Raises
        ------
        PrivacyBudgetExceededError
            When the total would exceed ``budget_epsilon`` (default: the ledger's).
        NoNoiseReleaseError
            ``release`` has no noise.
        """
        self._refuse_no_noise(release)
        budget = self.budget_epsilon if budget_epsilon is None else budget_epsilon
        rel = release.relation if relation is None else relation
        past = self.releases(release.cloud)
        total = compose_epsilon(
            [*past, release], self.delta, accountant=self.accountant, relation=rel
        )
        if budget is not None and total > budget:
            raise self._refusal(past, release, budget, total, rel)
        return total

    @contextmanager
    def reserve(
        self,
        release: Release,
        *,
        budget_epsilon: float | None = None,
        relation: str | None = None,
    ) -> Iterator[Release]:
        """Check and record ``release`` in one short transaction, then run the block.

        The write lock is held only while the cloud's rows are read, composed once
        with the new release and the row is inserted and committed; the block runs
        after that, without the lock. If the block raises, the row is deleted
        again. Compute the noisy answer inside the block; write it where the
        cloud can see it only after the block has exited.

        Parameters
        ----------
        release : Release
        budget_epsilon : float, optional
            Default: the ledger's.
        relation : {"add_remove", "replace_one"}, optional
            The relation the budget is enforced under; default ``release.relation``.

        Raises
        ------
        PrivacyBudgetExceededError
            Before the block runs, when the total would exceed the budget.
        NoNoiseReleaseError
            ``release`` has no noise (whatever the budget).
        LedgerRelationError
            A recorded release cannot be converted to the budget's relation.
        LedgerError
            The file is locked past the timeout, read-only or broken.

        Notes
        -----
        Records the release before it happens: a crash after the commit but
        before the release over-counts (safe); the reverse cannot happen. While
        the block runs, other processes count the row (they may be refused for
        a release that then fails here: safe).
        """
        self._refuse_no_noise(release)
        budget = self.budget_epsilon if budget_epsilon is None else budget_epsilon
        rel = release.relation if relation is None else relation
        if rel not in RELATIONS:
            raise PrivacyParameterError(f"relation={rel!r} is not one of {', '.join(RELATIONS)}")
        conn = self._conn
        with self._sqlite("recording the release"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                past = self._read(release.cloud)
                total = compose_epsilon(
                    [*past, release], self.delta, accountant=self.accountant, relation=rel
                )
                over: float | None = budget if budget is not None and total > budget else None
                if over is None:
                    stamp = _now()
                    cur = conn.execute(
                        f"INSERT INTO releases ({_COLUMNS.removeprefix('id, ')}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            release.cloud,
                            stamp,
                            release.mechanism,
                            float(release.sigma),
                            float(release.sensitivity),
                            None if release.epsilon is None else float(release.epsilon),
                            None if release.delta is None else float(release.delta),
                            int(release.count),
                            release.purpose,
                            release.relation,
                            None
                            if release.other_sensitivity is None
                            else float(release.other_sensitivity),
                        ),
                    )
                    row_id = cur.lastrowid
                    conn.execute("COMMIT")
                else:
                    conn.execute("ROLLBACK")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        if over is not None:  # composed outside the lock: only the message needs these
            raise self._refusal(past, release, over, total, rel)
        self.last_total = total
        # The stored record is the request plus what the database assigned.
        recorded = replace(release, time=stamp, id=row_id)
        try:
            yield recorded
        except BaseException:
            self._unrecord(row_id)
            raise

    def _unrecord(self, row_id: int | None) -> None:
        """Delete a row whose release failed; keep it (over-count, safe) if that fails."""
        try:
            self._conn.execute("DELETE FROM releases WHERE id = ?", (row_id,))
        except sqlite3.Error:
            pass  # the original exception matters more; a kept row only over-counts

    def spend(
        self,
        release: Release,
        *,
        budget_epsilon: float | None = None,
        relation: str | None = None,
    ) -> Release:
        """Check ``release`` against the budget and record it, atomically.

        Returns
        -------
        Release
            The recorded row (with ``id`` and ``time``).

        Raises
        ------
        PrivacyBudgetExceededError
            When the composed total for the release's cloud would exceed the budget;
            nothing is recorded then.
        NoNoiseReleaseError
            ``release`` has no noise.
        """
        with self.reserve(release, budget_epsilon=budget_epsilon, relation=relation) as recorded:
            return recorded


def respond_with_ledger(
    private_features: Any,
    centroids: Centroids,
    epsilon: float,
    delta: float,
    ledger: Ledger,
    *,
    cloud: str = "default",
    relation: Literal["add_remove", "replace_one"] = "add_remove",
    budget_epsilon: float | None = None,
    seed: int | None = None,
    n_threads: int | None = None,
    neighbours: int = 1,
) -> Response:
    """Client: :func:`ecos_fast.respond`, checked against and recorded in ``ledger``.

    σ is calibrated once, from (``epsilon``, ``delta``, the relation's
    sensitivity), before any noise is drawn, and that same
    :class:`~ecos_fast.privacy.GaussianMechanism` is recorded and released. The
    release is checked against the budget (under ``relation``) and recorded in one
    short transaction; the noisy counts are computed after it has committed, and
    if that fails the row is deleted again. If the budget would be exceeded
    nothing is computed or recorded.

    Parameters
    ----------
    private_features : array-like of shape (n_samples, n_features)
    centroids : Centroids
    epsilon, delta : float
        As for :func:`ecos_fast.respond`; ``epsilon=math.inf`` is refused.
    ledger : Ledger
    cloud : str, default "default"
        Who receives the response; the budget applies per cloud name.
    relation : {"add_remove", "replace_one"}, default "add_remove"
        The neighbouring relation of this release, recorded with it; the budget
        is enforced for it (earlier releases are converted to it).
    budget_epsilon : float, optional
        Overrides the ledger's budget for this call.
    seed : int, optional
        Noise seed (reproducible tests only).
    n_threads : int, optional
    neighbours : int, default 1
        As for :func:`ecos_fast.respond` (the sensitivity, hence the cost, is the same).

    Returns
    -------
    Response

    Raises
    ------
    PrivacyBudgetExceededError
        The composed ε for ``cloud`` would exceed the budget.
    NoNoiseReleaseError
        ``epsilon`` is infinite (no noise), with or without a budget.

    Notes
    -----
    The response is (epsilon, delta)-DP with respect to ``private_features``
    under ``relation`` (see :func:`ecos_fast.respond`); together with every
    earlier release in the ledger to ``cloud`` it is
    (``ledger.total_epsilon(cloud=cloud, relation=relation)``, δ)-DP under it.

    Examples
    --------
    >>> import os, tempfile, numpy as np, ecos_fast
    >>> from ecos_fast.ledger import Ledger, respond_with_ledger
    >>> cents = ecos_fast.Centroids(np.eye(2, dtype=np.float32))
    >>> path = os.path.join(tempfile.mkdtemp(), "ledger.sqlite")
    >>> with Ledger(path, budget_epsilon=1.0) as ledger:
    ...     r = respond_with_ledger(np.eye(2), cents, 0.58, 1e-5, ledger, cloud="acme")
    ...     round(ledger.total_epsilon(cloud="acme"), 2)
    0.58
    """
    from .privacy import GaussianMechanism, sensitivity_for
    from .protocol import check_neighbours, respond

    check_neighbours(neighbours, centroids.n_clusters)  # before anything is recorded
    # Calibrated once: the ledger records, and respond draws noise with, this sigma.
    mech = GaussianMechanism(epsilon, delta, relation)
    if mech.sigma == 0:
        raise NoNoiseReleaseError(
            f"epsilon={epsilon} means no noise (sigma=0): the exact counts would be released "
            f"to cloud {cloud!r}; the ledger {ledger.path} refuses such a release, with or "
            "without a budget (release without a ledger only in experiments)"
        )
    other = "replace_one" if relation == "add_remove" else "add_remove"
    release = Release(
        cloud=cloud,
        mechanism="gaussian",
        sigma=mech.sigma,
        sensitivity=mech.sensitivity,
        epsilon=mech.epsilon,
        delta=mech.delta,
        purpose="coverage",
        relation=relation,
        # Coverage counts: one sample moves one count (add/remove) or two (replace).
        other_sensitivity=sensitivity_for(other),
    )
    with ledger.reserve(release, budget_epsilon=budget_epsilon):
        return respond(
            private_features,
            centroids,
            epsilon,
            delta,
            relation=relation,
            mechanism=mech,
            seed=seed,
            n_threads=n_threads,
            neighbours=neighbours,
        )
