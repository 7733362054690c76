"""How many threads the Rust kernels use.

Every count (``n_threads=``, ``--threads``, ``ECOS_FAST_NUM_THREADS``) is capped at
:data:`MAX_THREADS_PER_CPU` times the CPUs this process may run on, with one
:class:`~ecos_fast.errors.ThreadsCappedWarning`: results do not depend on the thread
count, and more threads than that only add start-up and hand-off costs (a 99999-thread
request once spawned ~12,900 OS threads and ran for over ten minutes). The compiled
core caps direct ``_core`` calls at the same multiple of
``std::thread::available_parallelism`` and keeps at most four pools alive.
"""

from __future__ import annotations

import numbers
import os
import warnings

from .errors import (
    EnvironmentSettingError,
    InvalidInputError,
    InvalidTypeError,
    ThreadsCappedWarning,
)

__all__ = [
    "ENV_VAR",
    "MAX_THREADS_PER_CPU",
    "available_cpus",
    "cap_threads",
    "claim_cap_message",
    "default_threads",
    "env_count",
    "env_threads",
    "max_threads",
    "resolve_threads",
]

ENV_VAR = "ECOS_FAST_NUM_THREADS"

#: The cap is this many threads per available CPU (``rust/bindings.rs`` uses the same).
MAX_THREADS_PER_CPU = 4

# Counts already warned about: one warning per requested count and process, not one
# per kernel call.
_warned: set[tuple[str, int]] = set()


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask on Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def max_threads() -> int:
    """The largest thread count used: ``MAX_THREADS_PER_CPU`` x :func:`available_cpus`."""
    return MAX_THREADS_PER_CPU * available_cpus()


def claim_cap_message(source: str, value: int) -> str | None:
    """The one-line remark for a count above the cap, the first time this process sees
    that count from that source; None when it fits or was remarked on already.

    The command line prints it as a remark (``--quiet`` silences it); library calls
    get it as a :class:`~ecos_fast.errors.ThreadsCappedWarning`.
    """
    cap = max_threads()
    if value <= cap or (source, value) in _warned:
        return None
    _warned.add((source, value))
    return (
        f"{source}={value} is above {MAX_THREADS_PER_CPU} x {available_cpus()} available "
        f"CPUs; using {cap} threads (results do not depend on the thread count)"
    )


def cap_threads(value: int, source: str = "n_threads") -> int:
    """``value`` lowered to :func:`max_threads`, with one warning per count."""
    message = claim_cap_message(source, value)
    if message is not None:
        warnings.warn(message, ThreadsCappedWarning, stacklevel=3)
    return min(value, max_threads())


def env_threads() -> int | None:
    """``ECOS_FAST_NUM_THREADS`` checked (an int >= 1), uncapped; None when unset.

    A value that is not a whole number of at least 1 (``abc``, ``-1``, ``0``, ``1e9``,
    ``2.5``) is an :class:`~ecos_fast.errors.EnvironmentSettingError` (exit 2 on the
    command line); surrounding whitespace is ignored, as :func:`int` does.
    """
    return env_count(ENV_VAR)


def env_count(var: str) -> int | None:
    """The environment variable ``var`` as a thread count (an int >= 1); None when unset.

    Raises :class:`~ecos_fast.errors.EnvironmentSettingError` naming ``var`` otherwise
    (``ECOS_FAST_NUM_THREADS``; the Ray backend's ``ECOS_FAST_TASK_THREADS``).
    """
    env = os.environ.get(var)
    if not env:
        return None
    try:
        value = int(env)
    except ValueError:
        raise EnvironmentSettingError(
            f"{var}={env!r} is not an integer (a whole number of threads >= 1)"
        ) from None
    if value < 1:
        raise EnvironmentSettingError(f"{var}={value} must be >= 1")
    return value


def default_threads() -> int:
    """``ECOS_FAST_NUM_THREADS`` if set (capped), else the CPUs this process may run on."""
    value = env_threads()
    if value is None:
        return available_cpus()
    return cap_threads(value, ENV_VAR)


def resolve_threads(n_threads: int | None) -> int:
    """Validate an explicit ``n_threads`` (capped) or fall back to :func:`default_threads`."""
    if n_threads is None:
        return default_threads()
    # numbers.Integral, not int: a count read from a NumPy array (np.int64) is an integer
    # too, as for every other integer parameter (_validation.check_int).
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
        raise InvalidTypeError(f"n_threads must be an int, got {type(n_threads).__name__}")
    count = int(n_threads)
    if count < 1:
        raise InvalidInputError(f"n_threads={count} must be >= 1")
    return cap_threads(count)
