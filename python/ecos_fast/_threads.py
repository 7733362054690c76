"""How many threads the Rust kernels use."""

from __future__ import annotations

import os

from .errors import InvalidInputError, InvalidTypeError

ENV_VAR = "ECOS_FAST_NUM_THREADS"


def default_threads() -> int:
    """``ECOS_FAST_NUM_THREADS`` if set, else the CPUs this process may run on."""
    env = os.environ.get(ENV_VAR)
    if env:
        try:
            value = int(env)
        except ValueError:
            raise InvalidInputError(f"{ENV_VAR}={env!r} is not an integer") from None
        if value < 1:
            raise InvalidInputError(f"{ENV_VAR}={value} must be >= 1")
        return value
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_threads(n_threads: int | None) -> int:
    """Validate an explicit ``n_threads`` or fall back to :func:`default_threads`."""
    if n_threads is None:
        return default_threads()
    if isinstance(n_threads, bool) or not isinstance(n_threads, int):
        raise InvalidTypeError(f"n_threads must be an int, got {type(n_threads).__name__}")
    if n_threads < 1:
        raise InvalidInputError(f"n_threads={n_threads} must be >= 1")
    return n_threads
