"""On-disk array cache shared by the data sets and the feature extractors.

Each array is one ``.npy`` file with a ``.sha256`` file beside it. Loading reads the
bytes, checks the checksum and parses them with ``allow_pickle=False``; a missing,
truncated, tampered or unreadable entry is reported as a :class:`CacheWarning` and
treated as a miss, so the caller rebuilds and overwrites it. Writes go through
:func:`ecos_fast.atomic.write_atomically` (a fresh temporary file in the same folder,
fsync, rename), so a reader never sees half a file and concurrent writers of the same
entry are harmless.

The cache folder is ``$ECOS_FAST_CACHE`` if set, else ``$XDG_CACHE_HOME/ecos-fast``,
else ``~/.cache/ecos-fast``.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..atomic import write_atomically
from ..errors import EnvironmentSettingError

__all__ = [
    "CACHE_ENV",
    "CacheWarning",
    "cache_dir",
    "ensure_cache_dir",
    "load_array",
    "save_array",
]

#: Environment variable that overrides the cache folder.
CACHE_ENV = "ECOS_FAST_CACHE"

_KEY = re.compile(r"^[A-Za-z0-9._+-]+$")


class CacheWarning(UserWarning):
    """A cache entry was unreadable or failed its checksum and is being rebuilt."""


def cache_dir() -> Path:
    """The cache folder (not created until something is written).

    Examples
    --------
    >>> isinstance(cache_dir(), Path)
    True
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ecos-fast"


def _unusable(folder: Path, exc: OSError) -> EnvironmentSettingError:
    if os.environ.get(CACHE_ENV):
        source = f"${CACHE_ENV}"
    elif os.environ.get("XDG_CACHE_HOME"):
        source = "$XDG_CACHE_HOME/ecos-fast"
    else:
        source = "the default, ~/.cache/ecos-fast"
    if folder.exists() and not folder.is_dir():
        reason = "it is a file, not a folder"
    else:
        reason = f"{exc.strerror or exc}{f' ({exc.filename})' if exc.filename else ''}"
    return EnvironmentSettingError(
        f"the cache folder {folder} ({source}) cannot be used: {reason}; "
        f"set {CACHE_ENV} to a folder ecos-fast may write"
    )


def ensure_cache_dir() -> Path:
    """Make the cache folder now, so that one which cannot be used (a file, a path under
    a file, no permission) fails before any image is rendered or feature extracted.

    Raises
    ------
    EnvironmentSettingError
        Naming the folder and the setting that chose it (the command line exits 2).
    """
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unusable(folder, exc) from None
    return folder


def _path(kind: str, key: str) -> Path:
    if not _KEY.match(key) or not _KEY.match(kind):
        raise ValueError(f"cache key {kind}/{key!r} may hold only [A-Za-z0-9._+-]")
    return cache_dir() / kind / f"{key}.npy"


def save_array(kind: str, key: str, array: NDArray[Any]) -> Path:
    """Write ``array`` to ``<cache>/<kind>/<key>.npy`` with its sha256 beside it."""
    path = _path(kind, key)
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for target, payload in ((path, data), (path.with_suffix(".sha256"), digest.encode())):
            write_atomically(target, payload)  # the package's one atomic writer
    except OSError as exc:  # a full disk too: name the cache, not a bare errno
        raise _unusable(cache_dir(), exc) from None
    return path


def load_array(
    kind: str,
    key: str,
    *,
    dtype: np.dtype[Any] | type[Any],
    shape: tuple[int | None, ...],
) -> NDArray[Any] | None:
    """Read a cached array, or ``None`` when it is absent or fails a check.

    ``shape`` holds the expected length of each axis, ``None`` where any length goes.
    """
    path = _path(kind, key)
    checksum = path.with_suffix(".sha256")
    if not path.exists():
        return None
    problem = None
    try:
        data = path.read_bytes()
        expected = checksum.read_text().strip() if checksum.exists() else ""
        if hashlib.sha256(data).hexdigest() != expected:
            problem = "its sha256 does not match the checksum stored beside it"
        else:
            array: NDArray[Any] = np.load(io.BytesIO(data), allow_pickle=False)
            if array.dtype != np.dtype(dtype):
                problem = f"dtype {array.dtype} is not {np.dtype(dtype)}"
            elif array.ndim != len(shape) or any(
                want is not None and got != want
                for got, want in zip(array.shape, shape, strict=True)
            ):
                problem = f"shape {array.shape} does not match {shape}"
            else:
                return array
    except (OSError, ValueError) as exc:
        problem = f"it cannot be read ({exc})"
    warnings.warn(f"cache entry {path} is corrupt: {problem}; rebuilding it", CacheWarning, 2)
    return None
