"""Feature matrices on disk: ``.npy`` files, Parquet files, and folders or lists of shards.

Every public cloud-side function (``select``, ``fit_centroids``, ``kmeans``,
``assign``, ``kcenter_greedy``, the baselines; also ``respond`` on the client)
and every command of the CLI read a path through :func:`load_features`: the
one loader, so the API and the CLI read the same files the same way. The Ray
backend's shard reader uses :func:`open_npy`, :func:`list_shards`,
:func:`read_parquet` (:func:`table_to_matrix`), :func:`parquet_shape` and
:func:`check_widths`.

What is copied:

- one ``.npy`` file is memory-mapped (``mmap_mode="r"``, never ``allow_pickle``):
  a float32 file larger than RAM is read without a copy (other dtypes are
  converted to float32 by the caller, a copy);
- one Parquet file is decoded by Arrow (Parquet is encoded and compressed on
  disk, so it cannot be mapped); a feature column of fixed-size float32 lists in
  one chunk is then viewed without a copy, anything else (several row groups,
  plain lists, one column per feature) is copied once into a float32 matrix;
- several shards (a folder, or a list of paths) are concatenated into one new
  matrix, shard by shard: a copy of the whole pool in memory. For pools larger
  than RAM write one ``.npy`` file (or use ``backend="ray"``, which reads the
  shards where they are).

Every problem raises :class:`~ecos_fast.errors.FeatureFileError` (an
:class:`~ecos_fast.errors.InvalidInputError`) naming the file and what is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import FeatureFileError

__all__ = [
    "SUFFIXES",
    "check_column_has_parquet",
    "check_widths",
    "is_feature_source",
    "list_shards",
    "load_features",
    "open_npy",
    "parquet_shape",
    "read_parquet",
    "table_to_matrix",
]

PathLike = str | os.PathLike[str]
#: The shard files a folder is read as.
SUFFIXES = (".npy", ".parquet")


def is_feature_source(x: Any) -> bool:
    """Whether ``x`` names features on disk: a path, or a non-empty list/tuple of paths.

    Examples
    --------
    >>> from pathlib import Path
    >>> from ecos_fast.feature_files import is_feature_source
    >>> is_feature_source("pool.npy"), is_feature_source([Path("a.npy"), "b.npy"])
    (True, True)
    >>> is_feature_source([[1.0, 2.0]]), is_feature_source([])
    (False, False)
    """
    if isinstance(x, (str, os.PathLike)):
        return True
    return (
        isinstance(x, (list, tuple))
        and len(x) > 0
        and all(isinstance(s, (str, os.PathLike)) for s in x)
    )


def _check_dtype(arr: NDArray[Any], where: object) -> None:
    if arr.dtype.kind not in "fiu":
        raise FeatureFileError(
            f"{where}: holds dtype {arr.dtype}; features must be real numbers (float32 preferred)"
        )


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
    FeatureFileError
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
        raise FeatureFileError(f"{p}: cannot read it as a .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray):
        raise FeatureFileError(f"{p}: holds {type(arr).__name__}, expected one .npy array")
    if arr.ndim != 2:
        raise FeatureFileError(
            f"{p}: features must be 2-D (n_samples, n_features); got shape={arr.shape}"
        )
    _check_dtype(arr, p)
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
    FeatureFileError
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
        raise FeatureFileError(f"{p}: not a folder")
    want = tuple(suffixes)
    shards = sorted(q for q in p.iterdir() if q.suffix in want and q.is_file())
    if not shards:
        raise FeatureFileError(f"{p}: folder holds no {'/'.join(want)} shards")
    return shards


def table_to_matrix(table: Any, column: str | None, name: object) -> NDArray[Any]:
    """A pyarrow Table as a 2-D matrix: one list column, or numeric scalar columns.

    Parameters
    ----------
    table : pyarrow.Table
    column : str or None
        The feature column. None: the table's only column if it holds lists (or
        tensors), else every column, in order, one feature each.
    name : object
        Names the source in error messages.

    Returns
    -------
    ndarray of shape (n_rows, n_features)
        A zero-copy, read-only view of Arrow's buffer when the column is a
        fixed-size list of a numeric type in one chunk without nulls; otherwise a
        new float32 matrix.

    Raises
    ------
    FeatureFileError
        No such column, nulls, rows of different lengths, or non-numeric values.
    """
    import pyarrow as pa

    if column is not None and column not in table.column_names:
        raise FeatureFileError(f"{name}: no column {column!r}; columns are {table.column_names}")
    cols = [column] if column is not None else list(table.column_names)
    if not cols:
        raise FeatureFileError(f"{name}: the table has no columns")
    if len(cols) == 1:
        col = table.column(cols[0])
        typ = col.type
        fixed = pa.types.is_fixed_size_list(typ)
        if fixed or pa.types.is_list(typ) or pa.types.is_large_list(typ):
            if col.null_count:
                raise FeatureFileError(f"{name}: column {cols[0]!r} holds {col.null_count} nulls")
            vtype = typ.value_type
            if not (pa.types.is_floating(vtype) or pa.types.is_integer(vtype)):
                raise FeatureFileError(
                    f"{name}: column {cols[0]!r} holds lists of {vtype}; features must be "
                    f"real numbers (float32 preferred)"
                )
            if fixed and col.num_chunks == 1:
                chunk = col.chunk(0)
                values = chunk.flatten()  # honours the chunk's offset; no copy
                if values.null_count == 0:
                    view = np.asarray(values.to_numpy(zero_copy_only=True))
                    return view.reshape(len(chunk), typ.list_size)
            if not fixed:
                lengths = np.concatenate(
                    [np.asarray(c.value_lengths().to_numpy()) for c in col.chunks]
                )
                if lengths.size and lengths.min() != lengths.max():
                    raise FeatureFileError(
                        f"{name}: rows of column {cols[0]!r} have different lengths "
                        f"({int(lengths.min())} to {int(lengths.max())})"
                    )
            parts = [np.asarray(c.flatten().to_numpy(zero_copy_only=False)) for c in col.chunks]
            flat = np.concatenate(parts) if parts else np.zeros(0, np.float32)
            width = flat.size // max(1, table.num_rows)
            out = np.empty((table.num_rows, width), dtype=np.float32)
            out.reshape(-1)[:] = flat
            return out
        chunks = col.chunks
        if chunks and all(hasattr(c, "to_numpy_ndarray") for c in chunks):
            # Ray's / Arrow's tensor extension types (the arrays, not the ChunkedArray,
            # convert themselves)
            arr = np.concatenate([np.asarray(c.to_numpy_ndarray()) for c in chunks])
            return np.ascontiguousarray(arr.reshape(len(col), -1), dtype=np.float32)
    mats = []
    for c in cols:
        col = table.column(c)
        if col.null_count:
            raise FeatureFileError(f"{name}: column {c!r} holds {col.null_count} nulls")
        m = np.asarray(col.to_numpy())  # a ChunkedArray: pyarrow < 13 takes no keywords
        if m.ndim != 1 or m.dtype.kind not in "fiu":
            raise FeatureFileError(
                f"{name}: column {c!r} has type {col.type}; features must be one list "
                f"column or numeric scalar columns (name the feature column: column= in Python, "
                f"--column on the command line)"
            )
        mats.append(m)
    out = np.empty((table.num_rows, len(mats)), dtype=np.float32)
    for j, m in enumerate(mats):
        out[:, j] = m
    return out


def read_parquet(path: PathLike, column: str | None = None) -> NDArray[Any]:
    """One Parquet file as a 2-D feature matrix (see :func:`table_to_matrix`).

    Needs pyarrow (``pip install 'ecos-fast[parquet]'``).

    Examples
    --------
    >>> import numpy as np, pyarrow as pa, pyarrow.parquet as pq, tempfile, os
    >>> from ecos_fast.feature_files import read_parquet
    >>> path = os.path.join(tempfile.mkdtemp(), "x.parquet")
    >>> x = np.arange(6, dtype=np.float32).reshape(3, 2)
    >>> pq.write_table(pa.table({"f": pa.FixedSizeListArray.from_arrays(x.ravel(), 2)}), path)
    >>> read_parquet(path).tolist()
    [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    """
    p = Path(path)
    x = table_to_matrix(_parquet_read(p, lambda f: f.read()), column, p)
    if x.shape[0] == 0:
        raise FeatureFileError(f"{p}: holds no rows")
    return x


def _parquet_read(p: Path, read: Any) -> Any:
    """``read(pyarrow.parquet.ParquetFile)`` with pyarrow's errors as FeatureFileErrors."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(
            f"{p}: reading Parquet needs pyarrow: pip install 'ecos-fast[parquet]'"
        ) from exc
    if not p.is_file():
        raise FeatureFileError(f"{p}: no such file")
    try:
        return read(pq.ParquetFile(p, memory_map=True))
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise FeatureFileError(f"{p}: cannot read it as a Parquet file ({exc})") from None


def parquet_shape(path: PathLike, column: str | None = None) -> tuple[int, int]:
    """(rows, n_features) of a Parquet file, from its metadata and one row group.

    The row group goes through :func:`table_to_matrix` (so a missing column or a
    non-numeric one is found without reading the whole file); the other row groups
    are checked when the file is read. Raises :class:`FeatureFileError` as
    :func:`read_parquet` does (unreadable file, bad column, no rows).
    """
    p = Path(path)

    def first_rows(f: Any) -> tuple[int, Any]:
        groups = [i for i in range(f.num_row_groups) if f.metadata.row_group(i).num_rows]
        table = f.read_row_group(groups[0]) if groups else f.schema_arrow.empty_table()
        return int(f.metadata.num_rows), table

    rows, table = _parquet_read(p, first_rows)
    width = int(table_to_matrix(table, column, p).shape[1])
    if rows == 0:
        raise FeatureFileError(f"{p}: holds no rows")
    return rows, width


def check_widths(name: object, shapes: Sequence[tuple[PathLike, tuple[int, ...]]]) -> int:
    """The one ``n_features`` of shards given as (path, shape) pairs, in order.

    Raises
    ------
    FeatureFileError
        The shards have different widths (the message lists every shard's shape).
    """
    widths = {s[1] for _, s in shapes}
    if len(widths) != 1:
        detail = ", ".join(f"{Path(q).name}: {s}" for q, s in shapes)
        raise FeatureFileError(f"{name}: shards have different n_features ({detail})")
    return int(widths.pop())


def _read_one(p: Path, column: str | None) -> NDArray[Any]:
    if p.suffix == ".parquet":
        return read_parquet(p, column)
    return open_npy(p)


def check_column_has_parquet(name: str, files: Sequence[Path], column: str | None) -> None:
    """``column`` names a Parquet column: with only ``.npy`` files it would be ignored."""
    if column is not None and not any(q.suffix == ".parquet" for q in files):
        raise FeatureFileError(
            f"column={column!r} names a Parquet column, but {name} holds only .npy "
            "features (drop column= / --column)"
        )


def _shard_paths(source: Any) -> tuple[str, list[Path]]:
    """(name for messages, the shard files) of a folder or a list of paths."""
    if isinstance(source, (str, os.PathLike)):
        return str(source), list_shards(source, SUFFIXES)
    paths = [Path(s) for s in source]
    for q in paths:
        if q.is_dir():
            raise FeatureFileError(f"{q}: a folder in a list of shards; list its files instead")
        if not q.is_file():
            raise FeatureFileError(f"{q}: no such file")
    return f"{len(paths)} shards", paths


def load_features(
    source: PathLike | Sequence[PathLike], *, column: str | None = None, progress: bool = False
) -> NDArray[Any]:
    """Features from a ``.npy`` or Parquet file, or from a folder or list of shards.

    Parameters
    ----------
    source : str, PathLike, or sequence of them
        A ``.npy`` file, read with ``mmap_mode="r"`` (no copy for float32); a
        ``.parquet`` file (read through Arrow, see :func:`table_to_matrix`); a
        folder whose ``*.npy`` and ``*.parquet`` files, in name order, are the row
        blocks of one matrix; or a list of such files, in the list's order.
        Several shards are copied into one new matrix, one shard at a time.
    column : str, optional
        The feature column of Parquet files (default: see :func:`table_to_matrix`).
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
    FeatureFileError
        Missing or unreadable files, pickled arrays, non-numeric dtypes, or
        shards of different widths.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from ecos_fast.feature_files import load_features
    >>> d = tempfile.mkdtemp()
    >>> np.save(os.path.join(d, "b.npy"), np.ones((2, 3), np.float32))
    >>> np.save(os.path.join(d, "a.npy"), np.zeros((1, 3), np.float32))
    >>> load_features(d).tolist()
    [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    >>> load_features([os.path.join(d, "b.npy"), os.path.join(d, "a.npy")]).shape
    (3, 3)
    """
    if not is_feature_source(source):
        raise FeatureFileError(
            f"features on disk must be a path or a list of paths; got {type(source).__name__}"
        )
    if isinstance(source, (str, os.PathLike)) and not Path(source).is_dir():
        p = Path(source)
        if not p.exists():
            raise FeatureFileError(f"{p}: no such file or folder")
        check_column_has_parquet(str(p), [p], column)
        return _read_one(p, column)
    name, shards = _shard_paths(source)
    check_column_has_parquet(name, shards, column)
    arrays = [_read_one(q, column) for q in shards]
    if len(arrays) == 1:
        return arrays[0]
    width = check_widths(name, [(q, a.shape) for q, a in zip(shards, arrays, strict=True)])
    dtype = np.result_type(*arrays)
    if dtype.kind != "f" or dtype.itemsize < 4:
        dtype = np.dtype(np.float32)
    out = np.empty((sum(a.shape[0] for a in arrays), width), dtype=dtype)
    it: Any = arrays
    if progress:
        from tqdm import tqdm  # type: ignore[import-untyped]

        it = tqdm(arrays, total=len(arrays), desc="load shards", unit="shard", leave=False)
    row = 0
    for a in it:
        out[row : row + a.shape[0]] = a
        row += a.shape[0]
    return out
