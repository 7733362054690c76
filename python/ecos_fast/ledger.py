"""The client's privacy ledger: every release it made, composed with dp-accounting.

A client that answers several rounds (or many private-kNN label queries) loses
privacy with every answer. This module keeps a small SQLite file on the client's
side that records each release to each cloud, composes them with Google's
``dp-accounting`` (PLD accountant by default, RDP as an option) and refuses a new
release that would push the composed total past the configured budget.

The check and the record happen in one ``BEGIN IMMEDIATE`` transaction, before
the noise is drawn: two processes sharing one ledger file cannot both spend the
last of a budget (SQLite serialises writers; the second waits, then sees the
first's row).

Notes
-----
**Privacy guarantee.** For the releases recorded against one cloud, the ledger
reports ``total_epsilon(delta)``: the whole sequence of releases is
``(total_epsilon, delta)``-differentially private with respect to the client's
private data set, under the neighbouring relation implied by the recorded
``sensitivity`` (add/remove-one: 1 for coverage counts; replace-one: sqrt(2)),
assuming each recorded release really was a Gaussian (or Laplace) mechanism with
the recorded ``sigma`` and ``sensitivity`` and that the noise was fresh.
Composition is adaptive (each release may depend on earlier answers). The PLD
accountant's answer is a certified upper bound (pessimistic discretisation);
the RDP accountant's bound is looser. Clouds that may collude must share one
``cloud`` name, since the guarantee is per cloud name; pass ``cloud=None`` to
:meth:`Ledger.total_epsilon` for the total over every cloud.

The guarantee holds only while every release goes through the ledger: a client
that releases without recording, deletes the file, or edits it loses it.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

import dp_accounting
from dp_accounting import pld, rdp

from ._validation import check_delta, check_int
from .errors import InvalidInputError, PrivacyBudgetExceededError, PrivacyParameterError

if TYPE_CHECKING:
    from .protocol import Centroids, Response

__all__ = [
    "ACCOUNTANTS",
    "MECHANISMS",
    "Ledger",
    "Release",
    "compose_epsilon",
    "respond_with_ledger",
]

Accountant = Literal["pld", "rdp"]
Mechanism = Literal["gaussian", "laplace"]
ACCOUNTANTS: tuple[str, ...] = ("pld", "rdp")
MECHANISMS: tuple[str, ...] = ("gaussian", "laplace")

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
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
CREATE INDEX IF NOT EXISTS releases_cloud ON releases (cloud);
"""


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
        ``math.inf`` is not allowed; ``0`` means no noise (infinite ε).
    sensitivity : float
        L2 (Gaussian) or L1 (Laplace) sensitivity of the released quantity under the
        neighbouring relation in use (1 for coverage counts under add/remove-one).
    epsilon, delta : float or None
        The release's own calibration target, kept for the record only; composition
        uses ``sigma / sensitivity``.
    count : int
        Number of identical releases (e.g. private-kNN GNMax label queries).
    purpose : str
        Free text ("coverage", "knn-labels", ...).
    time : str
        UTC ISO-8601 time it was recorded (set by the ledger).
    id : int or None
        Row id in the ledger (set by the ledger).
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
        sens = float(self.sensitivity)
        if not (math.isfinite(sens) and sens > 0):
            raise PrivacyParameterError(f"sensitivity={self.sensitivity} must be finite and > 0")
        check_int(self.count, "count", low=1)

    @property
    def noise_multiplier(self) -> float:
        """``sigma / sensitivity``: what the accountant composes."""
        return float(self.sigma) / float(self.sensitivity)

    def dp_event(self) -> dp_accounting.DpEvent:
        """This release as a ``dp_accounting`` event (``count`` self-compositions)."""
        if self.sigma == 0:
            single: dp_accounting.DpEvent = dp_accounting.NonPrivateDpEvent()
        elif self.mechanism == "gaussian":
            single = dp_accounting.GaussianDpEvent(self.noise_multiplier)
        else:
            single = dp_accounting.LaplaceDpEvent(self.noise_multiplier)
        if self.count == 1:
            return single
        return dp_accounting.SelfComposedDpEvent(single, self.count)


def _make_accountant(accountant: str) -> dp_accounting.PrivacyAccountant:
    if accountant == "pld":
        return pld.PLDAccountant()
    if accountant == "rdp":
        return rdp.RdpAccountant()
    raise InvalidInputError(f"accountant={accountant!r} is not one of {', '.join(ACCOUNTANTS)}")


def compose_epsilon(releases: Iterable[Release], delta: float, *, accountant: str = "pld") -> float:
    """ε of the composition of ``releases`` at ``delta``, by a dp-accounting accountant.

    Parameters
    ----------
    releases : iterable of Release
    delta : float
        In (0, 1).
    accountant : {"pld", "rdp"}, default "pld"
        ``pld.PLDAccountant`` (tight numerical composition) or ``rdp.RdpAccountant``.

    Returns
    -------
    float
        0.0 for no releases; ``math.inf`` when a release had no noise.

    Examples
    --------
    >>> from ecos_fast.ledger import Release, compose_epsilon
    >>> r = Release("cloud-a", "gaussian", sigma=6.137, sensitivity=1.0)
    >>> round(compose_epsilon([r], 1e-5), 2)
    0.58
    """
    d = check_delta(delta)
    acc = _make_accountant(accountant)
    empty = True
    for r in releases:
        acc.compose(r.dp_event())
        empty = False
    if empty:
        return 0.0
    eps = float(acc.get_epsilon(d))
    return eps if eps >= 0 else 0.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class Ledger:
    """A per-client SQLite ledger of releases, with a composed privacy budget.

    Parameters
    ----------
    path : str or os.PathLike
        The ledger file; created (with its tables) when missing.
    budget_epsilon : float, optional
        Refuse any release that would make the composed ε (at ``delta``) for its
        cloud exceed this. ``None``: record without a limit.
    delta : float, default 1e-5
        The δ at which totals are reported and the budget is enforced.
    accountant : {"pld", "rdp"}, default "pld"
    timeout : float, default 60.0
        Seconds to wait for another process holding the ledger's write lock.

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
        timeout: float = 60.0,
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
        self.path = os.fspath(path)
        self.budget_epsilon = budget_epsilon
        self.delta = check_delta(delta)
        self.accountant = accountant
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
        self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        try:
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise InvalidInputError(f"{self.path} is not a ledger file: {exc}") from None

    def _init_schema(self) -> None:
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version > _SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than this ecos-fast ({_SCHEMA_VERSION})"
            )
        if version == _SCHEMA_VERSION:
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    self._conn.execute(stmt)
            self._conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            self._conn.execute("COMMIT")
        except BaseException:
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
        return self._read(cloud)

    def _read(self, cloud: str | None) -> list[Release]:
        cols = "id, cloud, time, mechanism, sigma, sensitivity, epsilon, delta, count, purpose"
        if cloud is None:
            rows = self._conn.execute(f"SELECT {cols} FROM releases ORDER BY id").fetchall()
        else:
            rows = self._conn.execute(
                f"SELECT {cols} FROM releases WHERE cloud = ? ORDER BY id", (cloud,)
            ).fetchall()
        return [
            Release(
                id=int(r[0]),
                cloud=str(r[1]),
                time=str(r[2]),
                mechanism=str(r[3]),
                sigma=float(r[4]),
                sensitivity=float(r[5]),
                epsilon=None if r[6] is None else float(r[6]),
                delta=None if r[7] is None else float(r[7]),
                count=int(r[8]),
                purpose=str(r[9]),
            )
            for r in rows
        ]

    def clouds(self) -> list[str]:
        """Names of the clouds that received at least one release."""
        rows = self._conn.execute("SELECT DISTINCT cloud FROM releases ORDER BY cloud")
        return [str(r[0]) for r in rows]

    def total_epsilon(
        self,
        delta: float | None = None,
        *,
        cloud: str | None = None,
        extra: Sequence[Release] = (),
    ) -> float:
        """Composed ε at ``delta`` (default: the ledger's) of the recorded releases.

        Parameters
        ----------
        delta : float, optional
        cloud : str, optional
            Only this cloud's releases; ``None`` composes every release in the file.
        extra : sequence of Release
            Hypothetical further releases to include (nothing is recorded).
        """
        d = self.delta if delta is None else check_delta(delta)
        return compose_epsilon([*self._read(cloud), *extra], d, accountant=self.accountant)

    # -- spending --------------------------------------------------------------
    def _refuse_if_over(self, release: Release, budget: float | None) -> tuple[float, float]:
        """(current, new total) for ``release``'s cloud; raises past ``budget``."""
        past = self._read(release.cloud)
        current = compose_epsilon(past, self.delta, accountant=self.accountant)
        total = compose_epsilon([*past, release], self.delta, accountant=self.accountant)
        if budget is not None and total > budget:
            alone = compose_epsilon([release], self.delta, accountant=self.accountant)
            raise PrivacyBudgetExceededError(
                f"privacy budget exhausted for cloud {release.cloud!r}: current "
                f"epsilon={current:.4g}, requested release epsilon={alone:.4g} "
                f"(sigma={release.sigma:.4g}, sensitivity={release.sensitivity:.4g}, "
                f"count={release.count}), composed total would be epsilon={total:.4g} > "
                f"budget epsilon={budget:.4g} at delta={self.delta:.3g} "
                f"({self.accountant} accountant, ledger {self.path})"
            )
        return current, total

    def check(self, release: Release, *, budget_epsilon: float | None = None) -> float:
        """The composed ε if ``release`` were added; raise if it exceeds the budget.

        Records nothing; use :meth:`spend` or :meth:`reserve` to check and record
        atomically (a check followed by a separate spend can race).

        Raises
        ------
        PrivacyBudgetExceededError
            When the total would exceed ``budget_epsilon`` (default: the ledger's).
        """
        budget = self.budget_epsilon if budget_epsilon is None else budget_epsilon
        return self._refuse_if_over(release, budget)[1]

    @contextmanager
    def reserve(
        self, release: Release, *, budget_epsilon: float | None = None
    ) -> Iterator[Release]:
        """Check and record ``release`` in one transaction that commits on exit.

        The write lock is held for the whole ``with`` block, and the row is
        committed only if the block finishes without an exception. Compute the
        noisy answer inside the block; write it where the cloud can see it only
        after the block has exited (committed).

        Raises
        ------
        PrivacyBudgetExceededError
            Before the block runs, when the total would exceed the budget.

        Notes
        -----
        Records the release before it happens: a crash after the commit but
        before the release over-counts (safe); the reverse cannot happen.
        """
        budget = self.budget_epsilon if budget_epsilon is None else budget_epsilon
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._refuse_if_over(release, budget)
            stamp = _now()
            cur = conn.execute(
                "INSERT INTO releases (cloud, time, mechanism, sigma, sensitivity, epsilon, "
                "delta, count, purpose) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                ),
            )
            # The stored record is the request plus what the database assigned.
            recorded = replace(release, time=stamp, id=cur.lastrowid)
            yield recorded
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def spend(self, release: Release, *, budget_epsilon: float | None = None) -> Release:
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
        """
        with self.reserve(release, budget_epsilon=budget_epsilon) as recorded:
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
) -> Response:
    """Client: :func:`ecos_fast.respond`, checked against and recorded in ``ledger``.

    σ is calibrated once, from (``epsilon``, ``delta``, the relation's
    sensitivity), before any noise is drawn, and that same
    :class:`~ecos_fast.privacy.GaussianMechanism` is recorded and released; the release is checked against the budget and
    recorded in one transaction, the noisy counts are computed inside it, and
    the transaction commits before the response is returned. If the budget would
    be exceeded nothing is computed or recorded.

    Parameters
    ----------
    private_features : array-like of shape (n_samples, n_features)
    centroids : Centroids
    epsilon, delta : float
        As for :func:`ecos_fast.respond`.
    ledger : Ledger
    cloud : str, default "default"
        Who receives the response; the budget applies per cloud name.
    relation : {"add_remove", "replace_one"}, default "add_remove"
    budget_epsilon : float, optional
        Overrides the ledger's budget for this call.
    seed : int, optional
        Noise seed (reproducible tests only).
    n_threads : int, optional

    Returns
    -------
    Response

    Raises
    ------
    PrivacyBudgetExceededError
        The composed ε for ``cloud`` would exceed the budget.

    Notes
    -----
    The response is (epsilon, delta)-DP with respect to ``private_features``
    (see :func:`ecos_fast.respond`); together with every earlier release in the
    ledger to ``cloud`` it is (``ledger.total_epsilon(cloud=cloud)``, δ)-DP.
    ``epsilon=math.inf`` (no noise) has infinite ε and is refused under any budget.

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
    from .privacy import GaussianMechanism
    from .protocol import respond

    # Calibrated once: the ledger records, and respond draws noise with, this sigma.
    mech = GaussianMechanism(epsilon, delta, relation)
    release = Release(
        cloud=cloud,
        mechanism="gaussian",
        sigma=mech.sigma,
        sensitivity=mech.sensitivity,
        epsilon=mech.epsilon if math.isfinite(mech.epsilon) else None,
        delta=mech.delta,
        purpose="coverage",
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
        )
