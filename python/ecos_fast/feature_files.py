"""Feature matrices on disk: one ``.npy`` file, or a folder of ``.npy`` shards.

The command line reads every pool and private feature matrix through
:func:`load_features`; the Ray backend's shard reader uses :func:`open_npy` and
:func:`list_shards` so that both read the same files the same way. Arrays are
memory-mapped (``mmap_mode="r"``, never ``allow_pickle``): a float32 ``.npy``
larger than RAM is read without a copy. Every problem raises
:class:`~ecos_fast.errors.InvalidInputError` naming the file and what is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import InvalidInputError

__all__ = ["list_shards", "load_features", "open_npy"]

PathLike = str | os.PathLike[str]


def open_npy(path: PathLike) -> NDArray[Any]:
    """Memory-map one ``.npy`` file holding a 2-D feature matrix.

    Parameters
    ----------
    path : str or PathLike
        A ``.npy`` file written by :func:`numpy.save`; pickled object arrays are
        refused.

    Returns
    -------
    ndarray of shape (n_samples, n_features)
        A read-only memory map in the file's own dtype (no copy).

    Raises
    ------
    InvalidInputError
        The file is missing or unreadable, not a ``.npy`` array, or not 2-D.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from ecos_fast.feature_files import open_npy
    >>> d = tempfile.mkdtemp()
    >>> np.save(os.path.join(d, "x.npy"), np.ones((4, 3), np.float32))
    >>> x = open_npy(os.path.join(d, "x.npy"))
    >>> x.shape, x.dtype.name, isinstance(x, np.memmap)
    ((4, 3), 'float32', True)
    """
    p = Path(path)
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InvalidInputError(f"{p}: cannot read it as a .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray):
        raise InvalidInputError(f"{p}: holds {type(arr).__name__}, expected one .npy array")
    if arr.ndim != 2:
        raise InvalidInputError(
            f"{p}: features must be 2-D (n_samples, n_features); got shape={arr.shape}"
        )
    return arr


def list_shards(folder: PathLike, suffixes: Sequence[str] = (".npy",)) -> list[Path]:
    """The shard files of a folder, in name order (the order of their rows).

    Parameters
    ----------
    folder : str or PathLike
        A folder; only its regular files whose suffix is in ``suffixes`` count
        (no recursion, so a ``README`` or a sub-folder beside the shards is ignored).
    suffixes : sequence of str, default (".npy",)
        File suffixes, with the dot (the Ray backend also reads ``".parquet"``).

    Returns
    -------
    list of Path
        Sorted by file name: row ``i`` of the pool is row ``i`` of the shards
        concatenated in this order.

    Raises
    ------
    InvalidInputError
        ``folder`` is not a folder, or holds no shard.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from ecos_fast.feature_files import list_shards
    >>> d = tempfile.mkdtemp()
    >>> for name in ("b.npy", "a.npy", "notes.txt"):
    ...     open(os.path.join(d, name), "wb").close()
    >>> [p.name for p in list_shards(d)]
    ['a.npy', 'b.npy']
    """
    p = Path(folder)
    if not p.is_dir():
        raise InvalidInputError(f"{p}: not a folder")
    want = tuple(suffixes)
    shards = sorted(q for q in p.iterdir() if q.suffix in want and q.is_file())
    if not shards:
        raise InvalidInputError(f"{p}: folder holds no {'/'.join(want)} shards")
    return shards


def load_features(path: PathLike, *, progress: bool = False) -> NDArray[Any]:
    """Features from a ``.npy`` file (memory-mapped) or a folder of ``.npy`` shards.

    Parameters
    ----------
    path : str or PathLike
        A ``.npy`` file, read with ``mmap_mode="r"`` (no copy for float32), or a
        folder whose ``*.npy`` files, in name order, are the row blocks of one
        matrix (copied into memory, one shard at a time).
    progress : bool, default False
        Show a per-shard progress bar (stderr).

    Returns
    -------
    ndarray of shape (n_samples, n_features)
        Row ``i`` of the result is row ``i`` of the concatenated shards; selected
        indices refer to this order. Shards of integer or narrow float dtypes
        are gathered as float32.

    Raises
    ------
    InvalidInputError
        Missing or unreadable files, pickled arrays, shards of different widths
        or of non-numeric dtypes.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from ecos_fast.feature_files import load_features
    >>> d = tempfile.mkdtemp()
    >>> np.save(os.path.join(d, "b.npy"), np.ones((2, 3), np.float32))
    >>> np.save(os.path.join(d, "a.npy"), np.zeros((1, 3), np.float32))
    >>> load_features(d).tolist()
    [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """
    p = Path(path)
    if not p.is_dir():
        if not p.exists():
            raise InvalidInputError(f"{p}: no such file or folder")
        return open_npy(p)
    shards = list_shards(p)
    arrays = [open_npy(q) for q in shards]
    if len(arrays) == 1:
        return arrays[0]
    widths = {a.shape[1] for a in arrays}
    if len(widths) != 1:
        detail = ", ".join(f"{q.name}: {a.shape}" for q, a in zip(shards, arrays, strict=True))
        raise InvalidInputError(f"{p}: shards have different n_features ({detail})")
    dtype = np.result_type(*arrays)
    if dtype.kind not in "fiu":
        raise InvalidInputError(f"{p}: shards have dtype {dtype}; expected real numbers")
    if dtype.kind != "f" or dtype.itemsize < 4:
        dtype = np.dtype(np.float32)
    out = np.empty((sum(a.shape[0] for a in arrays), widths.pop()), dtype=dtype)
    it: Any = arrays
    if progress:
        from tqdm import tqdm  # type: ignore[import-untyped]

        it = tqdm(arrays, total=len(arrays), desc="load shards", unit="shard", leave=False)
    row = 0
    for a in it:
        out[row : row + a.shape[0]] = a
        row += a.shape[0]
    return out
