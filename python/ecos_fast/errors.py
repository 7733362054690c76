"""Every exception ecos-fast raises on purpose, declared once.

They subclass ``ValueError``/``TypeError`` so that code catching the builtin
kinds keeps working; catch :class:`EcosError` to catch them all.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BudgetError",
    "BudgetShortfallWarning",
    "EcosError",
    "EcosWarning",
    "EnvironmentSettingError",
    "ExchangeFileError",
    "ExtractorUncheckedWarning",
    "FeatureFileError",
    "FederationError",
    "InvalidInputError",
    "InvalidTypeError",
    "KeyFileError",
    "LedgerError",
    "LedgerRelationError",
    "LowSignalWarning",
    "MissingDependencyError",
    "NoCoverageError",
    "NoNoiseReleaseError",
    "PrivacyBudgetExceededError",
    "PrivacyParameterError",
    "SelectionIndexError",
    "SignatureError",
    "SketchMismatchError",
    "ThreadPoolError",
    "ThreadsCappedWarning",
]


class EcosError(Exception):
    """Base class of every error raised by ecos-fast."""


class InvalidInputError(EcosError, ValueError):
    """An array has the wrong shape, is empty, or holds NaN/inf."""


class InvalidTypeError(EcosError, TypeError):
    """An argument has a type or dtype that cannot be converted safely."""


class BudgetError(EcosError, ValueError):
    """The selection budget is not in [1, n_samples]."""


class PrivacyParameterError(EcosError, ValueError):
    """epsilon, delta or sensitivity is out of range."""


class ExchangeFileError(EcosError, ValueError):
    """An exchange file (centroids or client response) is unreadable, truncated, corrupted,
    malformed or inconsistent.

    Its SHA-256 checksum detects accidents (truncation, bit flips, a wrong file); it
    needs no key, so whoever edits a file can recompute it. Only a signature checked
    with a ``verify_key`` (:class:`SignatureError`) detects deliberate changes.
    """


class SketchMismatchError(ExchangeFileError):
    """A client response does not answer these centroids (fingerprint or shape mismatch)."""


class PrivacyBudgetExceededError(EcosError, RuntimeError):
    """A release would push the client's total privacy loss past its budget."""


class NoCoverageError(EcosError, ValueError):
    """Every cluster weight is zero: the client's data matches nothing in the pool."""


class EcosWarning(UserWarning):
    """Base class of every warning issued by ecos-fast."""


class BudgetShortfallWarning(EcosWarning):
    """A selection returned fewer samples than the budget (the weighted clusters ran out).

    The shortfall is also recorded in ``Selection.shortfall``.
    """


class LowSignalWarning(EcosWarning):
    """The client's release carries almost no signal: the noisy total is within a few
    noise standard deviations (``sigma * sqrt(n_clusters)``) of zero.

    The selection is then close to random. Fewer clusters (a smaller ``n_clusters``)
    or a larger ``epsilon`` raise the signal.
    """


class SignatureError(ExchangeFileError):
    """An exchange file's Ed25519 signature is missing (when a verify key is given),
    malformed, by another key, or does not match the file's bytes."""


class KeyFileError(EcosError, ValueError):
    """A signing or verification key file is missing, unreadable, exists already
    (``keygen``), or does not hold an Ed25519 key of the right kind."""


class FeatureFileError(InvalidInputError):
    """A feature file, shard folder or shard list cannot be read as one float matrix:
    missing, unreadable, pickled, not 2-D, of a non-numeric dtype, or shards that
    disagree on ``n_features``. The message names the file."""


class SelectionIndexError(EcosError, IndexError):
    """An index into a :class:`~ecos_fast.Selection` is out of range."""


class ThreadPoolError(EcosError, RuntimeError):
    """The compiled core could not start its worker threads (the system refused to
    create them, e.g. a process or thread limit); fewer ``n_threads`` may work."""


class ThreadsCappedWarning(EcosWarning):
    """A thread count (``n_threads``, ``--threads`` or ``ECOS_FAST_NUM_THREADS``) above
    :data:`ecos_fast._threads.MAX_THREADS_PER_CPU` times the CPUs available was lowered
    to that cap. Results do not depend on the thread count; only the speed does."""


class ExtractorUncheckedWarning(EcosWarning):
    """Only one side of the exchange carries an extractor fingerprint, so nothing checked
    that the client's features come from the model (and preprocessing) the pool's did.

    Features from :func:`ecos_fast.features.extract` carry one; plain arrays do not.
    """


class LedgerError(EcosError, RuntimeError):
    """The privacy ledger file cannot be used: locked by another process for longer than
    the busy timeout, in a folder that does not exist, read-only when a release must be
    recorded, corrupt, not a ledger (another file or database, a missing table or
    column, values of the wrong type), or of a newer schema. The message names the file
    and what SQLite reported; nothing was released."""


class LedgerRelationError(EcosError, ValueError):
    """The ledger cannot state epsilon for the neighbouring relation asked: its releases
    were recorded under both relations and none was named, or a replace-one release
    has no known sensitivity under add/remove (there is no general conversion)."""


class NoNoiseReleaseError(PrivacyBudgetExceededError):
    """A release without noise (``epsilon = inf``, ``sigma = 0``) was offered to a privacy
    ledger. Its privacy loss is infinite, so every ledger refuses it, with or without a
    budget; without a ledger such a release is possible (upper-bound experiments)."""


class MissingDependencyError(EcosError, ImportError):
    """A feature needs an optional dependency that is not installed (torch, onnxruntime,
    matplotlib, Ray, pyarrow, ...). The message names the module and the exact
    ``pip install 'ecos-fast[extra]'`` line; the command line exits 2."""


class EnvironmentSettingError(InvalidInputError):
    """An environment variable read by ecos-fast holds a value that is not allowed:
    ``ECOS_FAST_NUM_THREADS`` not an integer, or below 1; the cache folder
    (``ECOS_FAST_CACHE``, else ``XDG_CACHE_HOME``) a file, or a folder that cannot be
    made or written. Like an option out of range, the command line exits 2 (a usage
    error)."""


class FederationError(EcosError, RuntimeError):
    """A federated round (:mod:`ecos_fast.flower`) got fewer usable client responses than
    its ``min_clients``: clients that did not answer in time, refused, or answered garbage
    or other centroids were dropped (each with its reason in the message), and too few were
    left to select for. Nothing was selected. Like any other invalid input, exit code 3
    were it to reach the command line."""


def code_for(
    exc: BaseException, table: Sequence[tuple[type[BaseException], int]], default: int
) -> int:
    """(Internal: not in ``__all__``, which lists the errors users catch.)

    The code of the first ``(error class, code)`` row of ``table`` that ``exc`` is an
    instance of, else ``default``: the one mapping from errors to codes, shared by the
    command line's exit codes and the Flower client's refusal codes (list subclasses
    before their bases).

    Examples
    --------
    >>> code_for(SignatureError("x"), [(SignatureError, 4), (ExchangeFileError, 3)], 1)
    4
    >>> code_for(KeyError("x"), [(EcosError, 3)], 1)
    1
    """
    return next((code for kind, code in table if isinstance(exc, kind)), default)
