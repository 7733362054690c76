"""The sharded pool: Ray start-up, shard readers and :class:`ShardedPool`.

A pool is a list of *shards* in a fixed order (row ``i`` of the pool is row
``i - offset[s]`` of shard ``s``): ``.npy`` files (memory-mapped by the worker,
through :mod:`ecos_fast.feature_files`), Parquet files, the blocks of a Ray
Dataset, or an in-memory array split into blocks and put in the object store.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._threads import env_count
from .._validation import as_features, check_int
from ..errors import EcosError, InvalidInputError, InvalidTypeError
from ..feature_files import (
    check_column_has_parquet,
    check_widths,
    list_shards,
    open_npy,
    parquet_shape,
    read_parquet,
    table_to_matrix,
)
from ..transform import apply_normalize

__all__ = ["RunStats", "ShardedPool", "fetch", "load_shard", "ray_module", "remote", "task_threads"]

SUFFIXES = (".npy", ".parquet")
_THREADS_ENV = "ECOS_FAST_TASK_THREADS"


@dataclass
class RunStats:
    """What a scale-out call measured (filled in when passed as ``stats=``).

    Attributes
    ----------
    n_shards : int
    iterations : int
        Lloyd iterations run on the workers (0 when clustering a gathered sample).
    bytes_to_workers : int
        Bytes the driver put in the object store for the workers (centroids,
        scales, labels requests); one copy per call, whatever the number of nodes.
    bytes_to_driver : int
        Bytes of the results the driver fetched from the workers.
    driver_reduce_s : float
        Driver time spent adding partial results and updating centroids.
    wall_s : float
    per_iteration_s : list of float
        Wall time of each distributed Lloyd iteration.
    lloyd_bytes_to_driver : int
        Of ``bytes_to_driver``, what the Lloyd iterations fetched (partial sums,
        counts, inertia bins, relocation candidates).
    bytes_between_workers : int
        Bytes moved from shard tasks to other tasks (``select(kcenter="gather")``:
        the members of every cluster with a quota).
    distance_passes : int
        Passes over the shards that computed row-to-centroid distances during the
        Lloyd iterations: one per iteration (an iteration that empties a cluster
        picks the replacement rows from the distances it already has).
    """

    n_shards: int = 0
    iterations: int = 0
    bytes_to_workers: int = 0
    bytes_to_driver: int = 0
    driver_reduce_s: float = 0.0
    wall_s: float = 0.0
    per_iteration_s: list[float] = field(default_factory=list)
    lloyd_bytes_to_driver: int = 0
    bytes_between_workers: int = 0
    distance_passes: int = 0


def nbytes(obj: Any) -> int:
    """Bytes of the arrays in ``obj`` (nested tuples, lists, dicts); 8 per scalar."""
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, (tuple, list)):
        return sum(nbytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(nbytes(o) for o in obj.values())
    return 8


def ray_module() -> Any:
    """The ``ray`` module, started locally if no cluster is connected.

    ``ECOS_FAST_TASK_THREADS`` is checked here, on the driver, before any task is sent.
    """
    task_threads()
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - exercised only without ray
        raise ImportError(
            "backend='ray' needs Ray: pip install 'ecos-fast[ray]' (ray[data]==2.60.0)"
        ) from exc
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    return ray


def _project_error(exc: BaseException) -> EcosError | None:
    """The ecos-fast error a task raised, out of Ray's wrappers (None if it is not one).

    A ``RayTaskError`` holds the task's own exception as ``.cause`` (and is made an
    instance of its class, as a wrapper); Ray Data chains it as ``__cause__``.
    """
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        cause = getattr(e, "cause", None)
        if isinstance(cause, BaseException):
            e = cause
        elif isinstance(e, EcosError):
            return e
        else:
            e = e.__cause__
    return None


def fetch(refs: Any) -> Any:
    """``ray.get(refs)``; an ecos-fast error raised by a task is raised as itself."""
    ray = ray_module()
    try:
        return ray.get(refs)
    except Exception as exc:
        err = _project_error(exc)
        if err is None:
            raise
        raise err from None


_REMOTES: dict[str, Any] = {}


def remote(fn: Any, **options: Any) -> Any:
    """``ray.remote(fn)`` made once per function and options (one CPU by default)."""
    key = f"{fn.__module__}.{fn.__name__}|{sorted(options.items())}"
    if key not in _REMOTES:
        _REMOTES[key] = ray_module().remote(**({"num_cpus": 1} | options))(fn)
    return _REMOTES[key]


def task_threads() -> int:
    """Threads of a worker task's kernel calls (``ECOS_FAST_TASK_THREADS``, default 1).

    A value that is not a whole number >= 1 is an EnvironmentSettingError naming it.
    """
    value = env_count(_THREADS_ENV)
    return 1 if value is None else value


_MAPS: dict[tuple[str, int, int], NDArray[Any]] = {}


def _mapped(path: str) -> NDArray[Any]:
    """A ``.npy`` shard memory-mapped once per worker process.

    Workers are long-lived: keeping the map open means later iterations touch
    pages that are already mapped (no page faults, no copy); the memory is the
    OS page cache, shared by every process on the node.
    """
    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size)
    if key not in _MAPS:
        for old in [k for k in _MAPS if k[0] == path]:
            del _MAPS[old]
        _MAPS[key] = open_npy(path)
    return _MAPS[key]


def load_shard(shard: Any, column: str | None, normalize: str | None) -> NDArray[np.float32]:
    """A shard's rows as a float32 matrix (memory-mapped for ``.npy``), transformed.

    Errors name the shard's file (rows are counted from the shard's first row).
    """
    if isinstance(shard, np.ndarray):
        x = shard
    elif isinstance(shard, str) and shard.endswith(".npy"):
        x = _mapped(shard)
    elif isinstance(shard, str) and shard.endswith(".parquet"):
        x = read_parquet(shard, column)  # the local reader, with its checks
    else:
        raise InvalidTypeError(f"cannot read shard {shard!r}")
    name = f"pool shard {shard}" if isinstance(shard, str) else "pool shard"
    return apply_normalize(as_features(x, name), normalize)


def _shard_rows(shard: str, column: str | None) -> tuple[int, int]:
    """(rows, features) of a file shard without reading all of its data."""
    if shard.endswith(".npy"):
        a = open_npy(shard)
        return int(a.shape[0]), int(a.shape[1])
    return parquet_shape(shard, column)


def _shape(x: NDArray[np.float32]) -> tuple[int, int]:
    return int(x.shape[0]), int(x.shape[1]) if x.ndim == 2 else -1


def _block_matrix(table: Any, column: str | None) -> NDArray[np.float32]:
    """A Dataset block (an Arrow table) as float32 rows, read by
    :func:`ecos_fast.feature_files.table_to_matrix`: the Parquet reader's checks, in
    the table's column order. A block without rows is an empty matrix."""
    if table.num_rows == 0:
        return np.zeros((0, 0), np.float32)
    return np.ascontiguousarray(table_to_matrix(table, column, "dataset"), dtype=np.float32)


def _on_disk_features(source: Any) -> bool:
    """Whether ``source`` is :class:`ecos_fast.features.Features` backed by files (the
    workers then read the files themselves, not a copy sent from the driver)."""
    # Not imported here (features imports the protocol, which imports this backend
    # lazily): a Features object exists only once its module has been imported.
    features = sys.modules.get("ecos_fast.features")
    return (
        features is not None and isinstance(source, features.Features) and source.path is not None
    )


@dataclass(frozen=True)
class ShardedPool:
    """A pool as an ordered list of shards with global row offsets.

    Attributes
    ----------
    shards : tuple
        Each a path (``.npy`` / ``.parquet``) or a Ray ObjectRef of a float32 matrix.
    offsets : tuple of int
        ``offsets[s]`` is the global index of shard ``s``'s first row;
        ``offsets[-1]`` is ``n_samples``.
    n_features : int
    column : str or None
        Feature column of Parquet shards (None: the only list column, or all
        numeric columns in order).
    """

    shards: tuple[Any, ...]
    offsets: tuple[int, ...]
    n_features: int
    column: str | None = None

    @property
    def n_samples(self) -> int:
        """Rows in the pool."""
        return int(self.offsets[-1])

    @property
    def n_shards(self) -> int:
        """Number of shards."""
        return len(self.shards)

    def shard_of(self, rows: NDArray[np.int64]) -> NDArray[np.int64]:
        """The shard holding each of the global ``rows``."""
        return np.searchsorted(np.asarray(self.offsets), rows, side="right") - 1

    @classmethod
    def from_source(
        cls, source: Any, *, column: str | None = None, n_shards: int | None = None
    ) -> ShardedPool:
        """Shards from a directory, a list of paths, a Ray Dataset or an array.

        Parameters
        ----------
        source : str, Path, sequence of paths, ray.data.Dataset, Features, ndarray or ShardedPool
            A directory is read as its ``*.npy`` and ``*.parquet`` files in name
            order; a list keeps its order. A Dataset is materialised in order and
            its blocks become shards. :class:`ecos_fast.features.Features` read from
            disk (:func:`ecos_fast.features.load`, ``extract(out_dir=...)``) are read
            from their files, each worker its own shards, as their path is. A
            zero-row ``.npy`` file is skipped. An array (or in-memory Features) is split into ``n_shards`` blocks (default
            8, or one a row for fewer rows) and put in the object store.
        column : str, optional
            Feature column of Parquet files / Dataset rows.
        n_shards : int, optional
            Only for arrays.

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> from ecos_fast.ray_backend import ShardedPool
        >>> d = tempfile.mkdtemp()
        >>> for i in range(3):
        ...     np.save(os.path.join(d, f"part-{i}.npy"), np.zeros((4, 2), np.float32))
        >>> p = ShardedPool.from_source(d)
        >>> p.n_shards, p.n_samples, p.offsets
        (3, 12, (0, 4, 8, 12))
        """
        if isinstance(source, ShardedPool):
            return source
        if _on_disk_features(source):
            return cls.from_source(source.path, column=column)
        if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
            return cls._from_paths(
                [str(p) for p in list_shards(source, SUFFIXES)], column, str(source)
            )
        if isinstance(source, (str, os.PathLike)):
            return cls._from_paths([str(source)], column, str(source))
        if (
            isinstance(source, Sequence)
            and source
            and all(isinstance(s, (str, os.PathLike)) for s in source)
        ):
            return cls._from_paths([str(s) for s in source], column, f"{len(source)} shards")
        if type(source).__name__ in ("Dataset", "MaterializedDataset") and hasattr(
            source, "map_batches"
        ):
            return cls._from_dataset(source, column)
        if isinstance(source, np.ndarray) or hasattr(source, "__array__"):
            x = as_features(source, "pool")
            s = check_int(
                min(8, x.shape[0]) if n_shards is None else n_shards,
                "n_shards",
                low=1,
                high=x.shape[0],
            )
            ray = ray_module()
            bounds = np.linspace(0, x.shape[0], s + 1).astype(np.int64)
            refs = tuple(ray.put(x[bounds[i] : bounds[i + 1]]) for i in range(s))
            return cls(refs, tuple(int(b) for b in bounds), int(x.shape[1]))
        raise InvalidTypeError(
            f"pool must be a directory, a list of .npy/.parquet paths, a ray.data.Dataset or "
            f"an array; got {type(source).__name__}"
        )

    @classmethod
    def _from_paths(cls, paths: list[str], column: str | None, name: str) -> ShardedPool:
        bad = [p for p in paths if not p.endswith(SUFFIXES)]
        if bad:
            raise InvalidInputError(f"shards must be .npy or .parquet files; got {bad[:3]}")
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise InvalidInputError(f"shard files not found: {missing[:3]}")
        check_column_has_parquet(name, [Path(p) for p in paths], column)
        sizes = [_shard_rows(p, column) for p in paths]
        width = check_widths(name, list(zip(paths, sizes, strict=True)))
        # A zero-row shard adds no rows (the local reader concatenates it as nothing).
        kept = [(p, sz) for p, sz in zip(paths, sizes, strict=True) if sz[0] != 0]
        if not kept:
            raise InvalidInputError("the shards hold no rows")
        paths, sizes = [p for p, _ in kept], [sz for _, sz in kept]
        offsets = tuple(int(v) for v in np.concatenate([[0], np.cumsum([n for n, _ in sizes])]))
        return cls(tuple(paths), offsets, width, column)

    @classmethod
    def _from_dataset(cls, ds: Any, column: str | None) -> ShardedPool:
        ray = ray_module()
        ctx = ray.data.DataContext.get_current()
        prev = ctx.execution_options.preserve_order
        ctx.execution_options.preserve_order = True  # blocks keep the dataset's row order
        prev_bars = ctx.enable_progress_bars
        ctx.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        try:
            tables = ds.materialize().to_arrow_refs()
        finally:
            ctx.execution_options.preserve_order = prev
            ctx.enable_progress_bars = prev_bars
        # Plain tasks, not map_batches: Ray Data drops a UDF's own exception (its
        # UserCodeException carries only the text), a task's comes back through fetch.
        refs = [remote(_block_matrix).remote(t, column) for t in tables]
        shapes = fetch([remote(_shape).remote(r) for r in refs])
        keep = [(r, s) for r, s in zip(refs, shapes, strict=False) if s[0] > 0]
        if not keep:
            raise InvalidInputError("the dataset holds no rows")
        dims = {s[1] for _, s in keep}
        if len(dims) != 1:
            raise InvalidInputError(f"dataset blocks disagree on n_features: {sorted(dims)}")
        offsets = tuple(int(v) for v in np.concatenate([[0], np.cumsum([s[0] for _, s in keep])]))
        return cls(tuple(r for r, _ in keep), offsets, dims.pop(), None)
