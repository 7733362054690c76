"""The one way ecos-fast writes a file: atomically, and never through a planted link.

Every file the package writes (exchange files, ``select -o`` / ``--summary`` /
``--report``, key files, the data and feature caches, the applications' tables
and figures) goes through :func:`write_atomically` or :func:`atomic_writer`:

1. ``tempfile.mkstemp`` in the target's folder: an unpredictable name opened with
   ``O_CREAT | O_EXCL`` (and ``O_NOFOLLOW`` where the platform has it), so a file
   or symbolic link planted at any name in that folder is never opened, written or
   truncated (the old writers used a fixed ``.NAME.tmp``, which a planted symlink
   redirected onto its target);
2. the data written, flushed and ``fsync``-ed;
3. ``os.replace`` onto the target (or ``os.link`` when ``overwrite=False``, which
   fails if the target exists): readers see the old file or the new one, never a
   partial write. A target that is itself a symbolic link is replaced by the new
   file; the link's destination is not written;
4. the folder ``fsync``-ed so that the rename survives a crash (best effort);
5. on any failure the temporary file is removed and the target is left as it was.

New files get the permissions a plain ``open`` would give (``0o666`` less the
umask) unless ``mode`` says otherwise (``0o600`` for a private key).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_writer", "write_atomically"]

PathLike = str | os.PathLike[str]

# A temporary name must fit in NAME_MAX (255) with mkstemp's random part and suffix.
_PREFIX_CHARS = 100


def _umask() -> int:
    """The process umask, read without changing it where the platform allows."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)  # no /proc: read it by setting it (briefly)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not possible on every platform or file system
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_writer(
    path: PathLike, *, mode: int | None = None, overwrite: bool = True
) -> Iterator[BinaryIO]:
    """A binary file object whose contents replace ``path`` when the block exits cleanly.

    Parameters
    ----------
    path : str or PathLike
        The target; its folder must exist.
    mode : int, optional
        Permission bits of the new file (default ``0o666`` less the umask).
    overwrite : bool, default True
        If False, the file is put in place with ``os.link``, which raises
        :class:`FileExistsError` when ``path`` exists (and writes nothing).

    Yields
    ------
    BinaryIO
        Write to it; it is flushed, fsync-ed and renamed onto ``path`` on a clean
        exit. If the block raises, the temporary file is removed, ``path`` is left
        as it was, and the exception propagates.

    Examples
    --------
    >>> import os, tempfile
    >>> from ecos_fast.atomic import atomic_writer
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with atomic_writer(os.path.join(d, "f.txt")) as f:
    ...         _ = f.write(b"line 1\\n")
    ...     os.listdir(d)
    ['f.txt']
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    # mkstemp: O_CREAT | O_EXCL | O_NOFOLLOW, a random name, mode 0o600.
    try:
        fd, tmp = tempfile.mkstemp(
            dir=folder, prefix=f".{target.name[:_PREFIX_CHARS]}.", suffix=".tmp"
        )
    except (FileNotFoundError, NotADirectoryError) as exc:
        # mkstemp's own message names the random temporary file, which the user never
        # asked for; name the folder and the file they did ask for instead.
        if isinstance(exc, FileNotFoundError):
            what = f"the folder {str(folder)!r} does not exist"
        else:  # a file, or a path under one ("the folder '/etc/passwd' is not a folder")
            what = f"{str(folder)!r} is not a folder"
        raise type(exc)(
            exc.errno,
            f"cannot write {target.name!r}: {what}",
            str(target),
        ) from None
    try:
        os.fchmod(fd, (0o666 & ~_umask()) if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            fd = -1  # owned by f now
            yield f
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)  # FileExistsError if the target exists
            os.unlink(tmp)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def write_atomically(
    path: PathLike,
    data: bytes | bytearray | memoryview,
    *,
    mode: int | None = None,
    overwrite: bool = True,
) -> Path:
    """Replace ``path`` by ``data`` atomically (see the module docstring for the steps).

    Parameters
    ----------
    path : str or PathLike
    data : bytes-like
    mode : int, optional
        Permission bits of the new file (default ``0o666`` less the umask).
    overwrite : bool, default True
        If False, raise :class:`FileExistsError` (writing nothing) when ``path`` exists.

    Returns
    -------
    Path

    Examples
    --------
    >>> import os, tempfile
    >>> from ecos_fast.atomic import write_atomically
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_atomically(os.path.join(d, "f"), b"new")
    ...     p.read_bytes(), os.listdir(d)
    (b'new', ['f'])
    """
    with atomic_writer(path, mode=mode, overwrite=overwrite) as f:
        f.write(data)
    return Path(path)
