"""Scale-out backend: the cloud-side steps on a pool that outgrows one machine, on Ray.

The pool is a list of *shards* in a fixed order (row ``i`` of the pool is row
``i - offset[s]`` of shard ``s``): ``.npy`` files (memory-mapped by the worker),
Parquet files, the blocks of a Ray Dataset, or an in-memory array split into
blocks and put in the object store. Every worker runs the same Rust kernels as
the local backend on its shards (``ecos_fast._core``); the driver only reduces.

Exactness (the result is the local backend's, bit for bit, for any number of
workers and any sharding):

- **k-means (Lloyd on every row).** Each shard returns its per-cluster feature
  sums in fixed point (int64, one rounding per value to a per-feature grid set
  from the global max |value| and row count), its counts and its inertia in
  exact per-exponent bins. Integer addition is associative, so the driver's sum
  equals the local kernel's, which uses the same integer sums (faiss's
  distributed k-means has the same additive structure, in floating point).
  Empty clusters take the globally farthest rows: each shard sends its top
  ``n_empty + n_clusters`` rows by (distance desc, global row asc) and the
  driver merges them with the same rule as the local kernel.
- **k-means (default, on a sample).** With ``max_points_per_centroid`` set, the
  seeded training sample (the same rows as the local backend draws) is gathered
  to the driver and clustered there with the local kernel; workers then run the
  final assignment.
- **Seeding.** k-means++ runs on the driver over a seeded sample gathered from
  the shards (``init_sample`` rows; the local backend draws the same rows).
- **Selection.** Quotas come from the global per-cluster counts; each cluster's
  first pick is the member nearest its centroid (global minimum of (distance,
  row)). With ``kcenter="gather"`` (default) each cluster with a quota is gathered
  to one worker (members in global row order) and runs the exact K-Center
  kernel: the local selection, bit for bit. With ``kcenter="coreset"`` each shard
  runs K-Center on its part of the cluster and a second K-Center runs on the union
  of the shards' picks (composable coresets, Malkomes et al. 2015): the covering
  radius is at most 4 x the optimal one of the cluster (each greedy stage is a
  2-approximation), it moves only the picks, and it depends on the sharding
  (not on the number of workers).

Ray is imported lazily: ``import ecos_fast`` never imports it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from . import _core
from ._threads import resolve_threads
from ._validation import as_features, check_choice, check_int, check_seed
from .errors import InvalidInputError, InvalidTypeError

__all__ = [
    "BACKENDS",
    "RunStats",
    "ShardedPool",
    "assign",
    "gather_rows",
    "kmeans",
    "select",
]

Backend = Literal["local", "ray"]
BACKENDS: tuple[str, ...] = ("local", "ray")
KCENTER_MODES = ("gather", "coreset")
_SUFFIXES = (".npy", ".parquet")


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


def _nbytes(obj: Any) -> int:
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(_nbytes(o) for o in obj.values())
    return 8


# --- shards -------------------------------------------------------------------


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - exercised only without ray
        raise ImportError(
            "backend='ray' needs Ray: pip install 'ecos-fast[ray]' (ray[data]==2.60.0)"
        ) from exc
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    return ray


def _matrix_from_table(table: Any, column: str | None, name: str) -> NDArray[np.float32]:
    """A pyarrow Table as a float32 matrix: one list/tensor column, or numeric columns."""
    import pyarrow as pa

    cols = [column] if column is not None else list(table.column_names)
    if len(cols) == 1:
        col = table.column(cols[0]).combine_chunks()
        if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
            flat = np.asarray(col.flatten().to_numpy(zero_copy_only=False))
            return np.ascontiguousarray(flat.reshape(len(col), -1), dtype=np.float32)
        if hasattr(col, "to_numpy_ndarray"):  # Ray's / Arrow's tensor extension types
            arr = np.asarray(col.to_numpy_ndarray())
            return np.ascontiguousarray(arr.reshape(len(col), -1), dtype=np.float32)
    mats = [np.asarray(table.column(c).to_numpy(zero_copy_only=False)) for c in cols]
    if any(m.ndim != 1 or m.dtype.kind not in "fiu" for m in mats):
        raise InvalidTypeError(
            f"{name}: columns {cols} are not numeric scalars or one list column; "
            f"pass column= naming the feature column"
        )
    return np.ascontiguousarray(np.column_stack(mats), dtype=np.float32)


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
        _MAPS[key] = np.load(path, mmap_mode="r")
    return _MAPS[key]


def _load(shard: Any, column: str | None, normalize: str | None) -> NDArray[np.float32]:
    """A shard's rows as a float32 matrix (memory-mapped for ``.npy``)."""
    if isinstance(shard, np.ndarray):
        x = shard
    elif isinstance(shard, str) and shard.endswith(".npy"):
        x = _mapped(shard)
    elif isinstance(shard, str) and shard.endswith(".parquet"):
        import pyarrow.parquet as pq

        x = _matrix_from_table(pq.read_table(shard), column, shard)
    else:
        raise InvalidTypeError(f"cannot read shard {shard!r}")
    x = as_features(x, "pool shard")
    if normalize == "l2":
        from .protocol import _l2_normalize

        x = _l2_normalize(x)
    return x


def _shard_rows(shard: Any) -> tuple[int, int]:
    """(rows, features) of a file shard without reading its data."""
    if shard.endswith(".npy"):
        a = np.load(shard, mmap_mode="r")
        if a.ndim != 2:
            raise InvalidInputError(f"{shard} holds shape={a.shape}; expected 2-D")
        return int(a.shape[0]), int(a.shape[1])
    import pyarrow.parquet as pq

    md = pq.read_metadata(shard)
    return int(md.num_rows), -1


class _ToMatrix:
    """Ray Data batch function: one ``features`` column of float32 rows."""

    def __init__(self, column: str | None) -> None:
        self.column = column

    def __call__(self, batch: dict[str, NDArray[Any]]) -> dict[str, NDArray[np.float32]]:
        cols = [self.column] if self.column is not None else sorted(batch)
        mats = [np.asarray(batch[c]) for c in cols]
        if len(mats) == 1 and mats[0].ndim >= 2:
            m = mats[0].reshape(mats[0].shape[0], -1)
        else:
            m = np.column_stack(mats)
        return {"features": np.ascontiguousarray(m, dtype=np.float32)}


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

    @classmethod
    def from_source(
        cls, source: Any, *, column: str | None = None, n_shards: int | None = None
    ) -> ShardedPool:
        """Shards from a directory, a list of paths, a Ray Dataset or an array.

        Parameters
        ----------
        source : str, Path, sequence of paths, ray.data.Dataset, ndarray or ShardedPool
            A directory is read as its ``*.npy`` and ``*.parquet`` files in name
            order; a list keeps its order. A Dataset is materialised in order and
            its blocks become shards. An array is split into ``n_shards`` blocks
            (default 8) and put in the object store.
        column : str, optional
            Feature column of Parquet files / Dataset rows.
        n_shards : int, optional
            Only for arrays.

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> from ecos_fast.scaleout import ShardedPool
        >>> d = tempfile.mkdtemp()
        >>> for i in range(3):
        ...     np.save(os.path.join(d, f"part-{i}.npy"), np.zeros((4, 2), np.float32))
        >>> p = ShardedPool.from_source(d)
        >>> p.n_shards, p.n_samples, p.offsets
        (3, 12, (0, 4, 8, 12))
        """
        if isinstance(source, ShardedPool):
            return source
        if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
            files = sorted(
                str(p) for p in Path(source).iterdir() if p.suffix in _SUFFIXES and p.is_file()
            )
            if not files:
                raise InvalidInputError(f"directory {str(source)!r} holds no .npy/.parquet shard")
            return cls._from_paths(files, column)
        if isinstance(source, (str, os.PathLike)):
            return cls._from_paths([str(source)], column)
        if (
            isinstance(source, Sequence)
            and source
            and all(isinstance(s, (str, os.PathLike)) for s in source)
        ):
            return cls._from_paths([str(s) for s in source], column)
        if type(source).__name__ in ("Dataset", "MaterializedDataset") and hasattr(
            source, "map_batches"
        ):
            return cls._from_dataset(source, column)
        if isinstance(source, np.ndarray) or hasattr(source, "__array__"):
            x = as_features(source, "pool")
            s = check_int(8 if n_shards is None else n_shards, "n_shards", low=1, high=x.shape[0])
            ray = _ray()
            bounds = np.linspace(0, x.shape[0], s + 1).astype(np.int64)
            refs = tuple(ray.put(x[bounds[i] : bounds[i + 1]]) for i in range(s))
            return cls(refs, tuple(int(b) for b in bounds), int(x.shape[1]))
        raise InvalidTypeError(
            f"pool must be a directory, a list of .npy/.parquet paths, a ray.data.Dataset or "
            f"an array; got {type(source).__name__}"
        )

    @classmethod
    def _from_paths(cls, paths: list[str], column: str | None) -> ShardedPool:
        bad = [p for p in paths if not p.endswith(_SUFFIXES)]
        if bad:
            raise InvalidInputError(f"shards must be .npy or .parquet files; got {bad[:3]}")
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise InvalidInputError(f"shard files not found: {missing[:3]}")
        sizes = [_shard_rows(p) for p in paths]
        dims = {d for _, d in sizes if d >= 0}
        if any(d < 0 for _, d in sizes):  # Parquet: read one row group's worth to learn d
            first = next(p for p, (_, d) in zip(paths, sizes) if d < 0)
            dims.add(int(_load(first, column, None).shape[1]))
        if len(dims) != 1:
            raise InvalidInputError(f"shards disagree on n_features: {sorted(dims)}")
        offsets = tuple(int(v) for v in np.concatenate([[0], np.cumsum([n for n, _ in sizes])]))
        if offsets[-1] == 0:
            raise InvalidInputError("the shards hold no rows")
        return cls(tuple(paths), offsets, dims.pop(), column)

    @classmethod
    def _from_dataset(cls, ds: Any, column: str | None) -> ShardedPool:
        ray = _ray()
        ctx = ray.data.DataContext.get_current()
        prev = ctx.execution_options.preserve_order
        ctx.execution_options.preserve_order = True  # blocks keep the dataset's row order
        prev_bars = ctx.enable_progress_bars
        ctx.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        try:
            mat = ds.map_batches(
                _ToMatrix(column), batch_format="numpy", zero_copy_batch=True
            ).materialize()
            refs = mat.to_numpy_refs(column="features")
        finally:
            ctx.execution_options.preserve_order = prev
            ctx.enable_progress_bars = prev_bars
        shapes = ray.get([_remote(_shape).remote(r) for r in refs])
        keep = [(r, s) for r, s in zip(refs, shapes) if s[0] > 0]
        if not keep:
            raise InvalidInputError("the dataset holds no rows")
        dims = {s[1] for _, s in keep}
        if len(dims) != 1:
            raise InvalidInputError(f"dataset blocks disagree on n_features: {sorted(dims)}")
        offsets = tuple(int(v) for v in np.concatenate([[0], np.cumsum([s[0] for _, s in keep])]))
        return cls(tuple(r for r, _ in keep), offsets, dims.pop(), None)


# --- worker functions (run by Ray; plain functions, so tests can call them too) -


def _shape(x: NDArray[np.float32]) -> tuple[int, int]:
    return int(x.shape[0]), int(x.shape[1]) if x.ndim == 2 else -1


def _w_stats(shard: Any, column: str | None, norm: str | None) -> NDArray[np.float32]:
    x = _load(shard, column, norm)
    return _core.kmeans_max_abs(x, _task_threads())


def _w_moments(
    shard: Any, column: str | None, norm: str | None, scales: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.uint64]]:
    return _core.kmeans_moments(_load(shard, column, norm), scales, _task_threads())


def _w_partial(
    shard: Any,
    column: str | None,
    norm: str | None,
    centroids: NDArray[np.float32],
    scales: NDArray[np.float64],
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    return _core.kmeans_partial(_load(shard, column, norm), centroids, scales, _task_threads())


def _w_candidates(
    shard: Any,
    column: str | None,
    norm: str | None,
    centroids: NDArray[np.float32],
    offset: int,
    m: int,
) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
    x = _load(shard, column, norm)
    return _core.kmeans_candidates(x, centroids, offset, m, _task_threads())


def _w_gather(
    shard: Any, column: str | None, norm: str | None, local_rows: NDArray[np.int64]
) -> NDArray[np.float32]:
    return np.ascontiguousarray(_load(shard, column, norm)[local_rows])


def _w_assign(
    shard: Any,
    column: str | None,
    norm: str | None,
    centroids: NDArray[np.float32],
    n_clusters: int,
) -> tuple[NDArray[np.int64], NDArray[np.float32], dict[str, NDArray[Any]]]:
    """Labels and distances (kept in the object store) and a small summary."""
    x = _load(shard, column, norm)
    labels, d2 = _core.assign(x, centroids, _task_threads())
    counts = np.bincount(labels, minlength=n_clusters).astype(np.int64)
    # Per cluster: the member nearest the centroid, ties to the lowest row.
    order = np.lexsort((np.arange(labels.shape[0]), d2, labels))
    firsts = order[np.r_[True, labels[order][1:] != labels[order][:-1]]]
    best_d = np.full(n_clusters, np.inf, dtype=np.float32)
    best_i = np.full(n_clusters, -1, dtype=np.int64)
    best_d[labels[firsts]] = d2[firsts]
    best_i[labels[firsts]] = firsts
    summary: dict[str, NDArray[Any]] = {
        "counts": counts,
        "best_d": best_d,
        "best_i": best_i,
        "bins": _dist_bins(d2),
    }
    return labels, d2, summary


def _dist_bins(d2: NDArray[np.float32]) -> NDArray[np.int64]:
    """Exact per-exponent bins of non-negative float32 values.

    The layout of the kernel's ``dist_bins`` (``rust/kernels/kmeans.rs``): bin
    ``e`` (biased exponent, denormals in bin 1) holds the sum of the 24-bit
    significands of the values with that exponent, in units of ``2^(e - 150)``.
    """
    bits = np.abs(d2).view(np.uint32)
    e = (bits >> 23).astype(np.int64)
    m = (bits & 0x7FFFFF).astype(np.int64)
    m = np.where(e > 0, m | (1 << 23), m)
    out = np.zeros(256, np.int64)
    np.add.at(out, np.maximum(e, 1), m)
    return out


def _bins_total(bins: NDArray[np.int64]) -> float:
    """The kernel's ``bins_total``: smallest exponent first, each term exact, in float64."""
    return float(sum(float(b) * 2.0 ** (e - 150) for e, b in enumerate(bins.tolist()) if b))


def _w_members(
    shard: Any,
    column: str | None,
    norm: str | None,
    labels: NDArray[np.int64],
    clusters: NDArray[np.int64],
) -> Any:
    """For each of ``clusters``: this shard's members (local rows, ascending) and features."""
    x = _load(shard, column, norm)
    out = []
    for c in clusters.tolist():
        rows = np.flatnonzero(labels == c).astype(np.int64)
        out.append((rows, np.ascontiguousarray(x[rows])))
    return tuple(out) if len(out) > 1 else out[0]


def _w_kcenter(
    quota: int,
    first: int,
    offsets: list[int],
    *parts: tuple[NDArray[np.int64], NDArray[np.float32]],
) -> NDArray[np.int64]:
    """Exact K-Center on one cluster gathered from the shards (global row order)."""
    rows = np.concatenate([p[0] + off for p, off in zip(parts, offsets)])
    feats = np.concatenate([p[1] for p in parts]) if rows.size else np.zeros((0, 1), np.float32)
    pos = int(np.searchsorted(rows, first))
    sel, _ = _core.kcenter_greedy(feats, quota, _task_threads(), pos, None, None)
    return rows[sel]


def _w_coreset(
    shard: Any,
    column: str | None,
    norm: str | None,
    labels: NDArray[np.int64],
    d2: NDArray[np.float32],
    clusters: NDArray[np.int64],
    quotas: NDArray[np.int64],
) -> list[tuple[NDArray[np.int64], NDArray[np.float32]]]:
    """Stage 1 of the composable coreset: K-Center per cluster on this shard."""
    x = _load(shard, column, norm)
    out = []
    for c, q in zip(clusters.tolist(), quotas.tolist()):
        rows = np.flatnonzero(labels == c).astype(np.int64)
        if rows.size == 0:
            out.append((rows, np.zeros((0, x.shape[1]), np.float32)))
            continue
        first = int(rows[np.argmin(d2[rows])])
        sel, _ = _core.kcenter_greedy(x, min(q, rows.size), _task_threads(), first, None, rows)
        out.append((sel, np.ascontiguousarray(x[sel])))
    return out


_THREADS_ENV = "ECOS_FAST_TASK_THREADS"


def _task_threads() -> int:
    return int(os.environ.get(_THREADS_ENV, "1"))


_REMOTES: dict[str, Any] = {}


def _remote(fn: Any, **options: Any) -> Any:
    """``ray.remote(fn)`` made once per function and options."""
    key = f"{fn.__name__}|{sorted(options.items())}"
    if key not in _REMOTES:
        _REMOTES[key] = _ray().remote(**({"num_cpus": 1} | options))(fn)
    return _REMOTES[key]


# --- driver -------------------------------------------------------------------


def _shard_of(pool: ShardedPool, rows: NDArray[np.int64]) -> NDArray[np.int64]:
    return np.searchsorted(np.asarray(pool.offsets), rows, side="right") - 1


def gather_rows(
    pool: ShardedPool,
    rows: Any,
    *,
    normalize: str | None = None,
    stats: RunStats | None = None,
) -> NDArray[np.float32]:
    """The pool rows ``rows`` (sorted ascending, unique), fetched from their shards.

    Parameters
    ----------
    pool : ShardedPool
    rows : array-like of int
        Global row indices, strictly increasing.
    normalize : {None, "l2"}
    stats : RunStats, optional

    Returns
    -------
    ndarray of shape (len(rows), n_features), float32
    """
    r = np.asarray(rows, dtype=np.int64)
    if r.size and (np.any(np.diff(r) <= 0) or r[0] < 0 or r[-1] >= pool.n_samples):
        raise InvalidInputError(
            f"rows must be strictly increasing in [0, {pool.n_samples}); got {r[:5]}..."
        )
    ray = _ray()
    owner = _shard_of(pool, r)
    futs = []
    for s in np.unique(owner).tolist():
        local = r[owner == s] - pool.offsets[s]
        futs.append(_remote(_w_gather).remote(pool.shards[s], pool.column, normalize, local))
    parts = ray.get(futs)
    if stats is not None:
        stats.bytes_to_driver += _nbytes(parts)
    if not parts:
        return np.zeros((0, pool.n_features), np.float32)
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def _add(parts: list[Any]) -> Any:
    """Element-wise sum of equally shaped tuples of integer arrays (exact)."""
    out = [np.array(a, copy=True) for a in parts[0]]
    for p in parts[1:]:
        for o, a in zip(out, p):
            o += a
    return tuple(out)


def kmeans(
    pool: Any,
    n_clusters: int,
    *,
    max_iter: int = 25,
    tol: float = 1e-4,
    seed: int = 0,
    init: Any = None,
    max_points_per_centroid: int | None = 256,
    n_local_trials: int = 1,
    init_sample: int | None = None,
    normalize: str | None = None,
    return_labels: bool = True,
    column: str | None = None,
    n_threads: int | None = None,
    stats: RunStats | None = None,
) -> Any:
    """:func:`ecos_fast.kmeans` over a sharded pool, on Ray.

    Same parameters and result as :func:`ecos_fast.kmeans` (``backend="local"``),
    which it equals bit for bit: centroids, labels, inertia history and ``n_iter``.
    ``pool`` is anything :meth:`ShardedPool.from_source` takes. With
    ``max_points_per_centroid=None`` (Lloyd on every row, on the workers) the
    seeding needs ``init`` or ``init_sample``: k-means++ over every row would take
    ``n_clusters`` passes over the pool.

    Parameters
    ----------
    return_labels : bool, default True
        Fetch every row's label to the driver (8 bytes per row); ``False``
        leaves ``labels`` as an empty array.
    normalize : {None, "l2"}
        Applied to each shard as it is read (:func:`ecos_fast.fit_centroids`).
    n_threads : int, optional
        Threads of the driver's own kernel calls (the sample k-means).
    stats : RunStats, optional
        Filled with what was measured.
    """
    from . import kernels

    t0 = time.perf_counter()
    st = stats if stats is not None else RunStats()
    p = ShardedPool.from_source(pool, column=column)
    st.n_shards = p.n_shards
    n = p.n_samples
    k = check_int(n_clusters, "n_clusters", low=1, high=n)
    iters = check_int(max_iter, "max_iter", low=1)
    s = check_seed(seed)
    t = float(tol)
    if not np.isfinite(t) or t < 0:
        raise InvalidInputError(f"tol={tol} must be a finite number >= 0")
    cap = None
    if max_points_per_centroid is not None:
        cap = check_int(max_points_per_centroid, "max_points_per_centroid", low=1) * k
    if cap is not None and n > cap:
        # Default path: the local backend trains on this same seeded sample.
        sample = np.sort(np.random.default_rng(s).choice(n, size=cap, replace=False))
        xs = gather_rows(p, sample, normalize=normalize, stats=st)
        km = kernels.kmeans(
            xs, k, max_iter=iters, tol=t, seed=s, init=init, max_points_per_centroid=None,
            n_local_trials=n_local_trials, init_sample=init_sample, n_threads=n_threads,
        )  # fmt: skip
        # The history covers the training assignments only, as the local backend's.
        centroids, n_iter = km.centroids, km.n_iter
        history = list(km.inertia_history[:n_iter])
        final_inertia = False
    else:
        centroids = _init_centroids(p, k, s, init, init_sample, n_local_trials, normalize, st)
        centroids, history, n_iter = _lloyd(p, centroids, iters, t, normalize, st)
        final_inertia = True
    labels, bins = _final_assign(p, centroids, normalize, return_labels, st)
    if final_inertia:
        history.append(_bins_total(bins))
    st.wall_s = time.perf_counter() - t0
    return kernels.KMeansResult(
        np.asarray(centroids, dtype=np.float32), labels, np.asarray(history), int(n_iter)
    )


def _init_centroids(
    p: ShardedPool,
    k: int,
    s: int,
    init: Any,
    init_sample: int | None,
    trials: int,
    normalize: str | None,
    st: RunStats,
) -> NDArray[np.float32]:
    from . import kernels

    if init is not None:
        c = as_features(init, "init", n_features=p.n_features)
        if c.shape[0] != k:
            raise InvalidInputError(f"init has {c.shape[0]} rows but n_clusters={k}")
        return c
    if init_sample is None:
        raise InvalidInputError(
            "backend='ray' with max_points_per_centroid=None seeds k-means++ on a gathered "
            "sample: pass init_sample=<rows> (the local backend then draws the same rows) or init="
        )
    rows = kernels.init_sample_rows(p.n_samples, init_sample, s, k)
    xs = gather_rows(p, rows, normalize=normalize, stats=st)
    trials = check_int(trials, "n_local_trials", low=1)
    return _core.kmeans_plusplus(xs, k, s, resolve_threads(None), trials)


def _lloyd(
    p: ShardedPool,
    centroids: NDArray[np.float32],
    iters: int,
    tol: float,
    normalize: str | None,
    st: RunStats,
) -> tuple[NDArray[np.float32], list[float], int]:
    ray = _ray()
    n, k = p.n_samples, centroids.shape[0]
    col = p.column
    maxabs = np.max(
        np.stack(ray.get([_remote(_w_stats).remote(sh, col, normalize) for sh in p.shards])),
        axis=0,
    )
    scales = _core.kmeans_scales(np.ascontiguousarray(maxabs, np.float32), n)
    sc_ref = ray.put(scales)
    mom = ray.get([_remote(_w_moments).remote(sh, col, normalize, sc_ref) for sh in p.shards])
    st.bytes_to_driver += _nbytes(mom) + maxabs.nbytes * p.n_shards
    # i128 sums of squares travel as (hi, lo) words; add them as Python ints.
    q = np.sum(np.stack([m[0] for m in mom]), axis=0)
    q2 = [sum((int(m[1][j]) << 64) | int(m[2][j]) for m in mom) for j in range(p.n_features)]
    hi = np.array([v >> 64 for v in q2], dtype=np.int64)
    lo = np.array([v & ((1 << 64) - 1) for v in q2], dtype=np.uint64)
    tol_abs = tol * _core.kmeans_mean_variance(q, hi, lo, n, scales)
    history: list[float] = []
    n_iter = 0
    for _ in range(iters):
        ti = time.perf_counter()
        c_ref = ray.put(centroids)
        st.bytes_to_workers += centroids.nbytes
        parts = ray.get(
            [_remote(_w_partial).remote(sh, col, normalize, c_ref, sc_ref) for sh in p.shards]
        )
        st.bytes_to_driver += _nbytes(parts)
        st.lloyd_bytes_to_driver += _nbytes(parts)
        tr = time.perf_counter()
        sums, counts, bins = _add(parts)
        st.driver_reduce_s += time.perf_counter() - tr
        cand = None
        n_empty = int((counts == 0).sum())
        if n_empty and int(counts.sum()) >= k:
            m = n_empty + k
            got = ray.get(
                [
                    _remote(_w_candidates).remote(sh, col, normalize, c_ref, off, m)
                    for sh, off in zip(p.shards, p.offsets)
                ]
            )
            st.bytes_to_driver += _nbytes(got)
            st.lloyd_bytes_to_driver += _nbytes(got)
            cand = tuple(
                np.ascontiguousarray(np.concatenate([g[i] for g in got])) for i in range(4)
            )
        tr = time.perf_counter()
        new, shift, inertia, _, _ = _core.kmeans_update(sums, counts, bins, centroids, scales, cand)  # type: ignore[arg-type]
        st.driver_reduce_s += time.perf_counter() - tr
        history.append(float(inertia))
        n_iter += 1
        centroids = new
        st.per_iteration_s.append(time.perf_counter() - ti)
        if shift <= tol_abs:
            break
    st.iterations += n_iter
    return centroids, history, n_iter


def _final_assign(
    p: ShardedPool,
    centroids: NDArray[np.float32],
    normalize: str | None,
    return_labels: bool,
    st: RunStats,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Every row's label (fetched when asked) and the inertia bins of the assignment."""
    ray = _ray()
    out = _assign_refs(p, centroids, normalize, st)
    summaries = ray.get([o[2] for o in out])
    st.bytes_to_driver += _nbytes(summaries)
    bins = _add([(sm["bins"],) for sm in summaries])[0]
    labels = np.zeros(0, np.int64)
    if return_labels:
        labs = ray.get([o[0] for o in out])
        st.bytes_to_driver += _nbytes(labs)
        labels = np.concatenate(labs).astype(np.int64)
    return labels, bins


def _assign_refs(
    p: ShardedPool, centroids: NDArray[np.float32], normalize: str | None, st: RunStats
) -> list[Any]:
    ray = _ray()
    c_ref = ray.put(np.ascontiguousarray(centroids, np.float32))
    st.bytes_to_workers += centroids.nbytes
    f = _remote(_w_assign, num_returns=3)
    return [f.remote(sh, p.column, normalize, c_ref, centroids.shape[0]) for sh in p.shards]


def assign(
    pool: Any,
    centroids: Any,
    *,
    normalize: str | None = None,
    column: str | None = None,
    stats: RunStats | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """:func:`ecos_fast.assign` over a sharded pool, on Ray (labels, squared distances).

    Both arrays are fetched to the driver (12 bytes per row); equal to the local result.
    """
    st = stats if stats is not None else RunStats()
    p = ShardedPool.from_source(pool, column=column)
    c = as_features(centroids, "centroids", n_features=p.n_features)
    ray = _ray()
    out = _assign_refs(p, c, normalize, st)
    labs = ray.get([o[0] for o in out])
    d2 = ray.get([o[1] for o in out])
    st.bytes_to_driver += _nbytes(labs) + _nbytes(d2)
    st.n_shards = p.n_shards
    return np.concatenate(labs).astype(np.int64), np.concatenate(d2).astype(np.float32)


def select(
    pool: Any,
    sketch: Any,
    budget: int,
    *,
    threshold: float = 0.0,
    fallback: str = "raise",
    seed: int = 0,
    kcenter: Literal["gather", "coreset"] = "gather",
    column: str | None = None,
    stats: RunStats | None = None,
) -> Any:
    """:func:`ecos_fast.select` over a sharded pool, on Ray.

    Parameters are those of :func:`ecos_fast.select` plus ``kcenter``:
    ``"gather"`` (exact: the local selection) or ``"coreset"`` (per-shard K-Center
    then K-Center on the union; covering radius within 4 x the optimum of each
    cluster). ``fallback="kcenter"`` (global K-Center over the whole pool) is not
    offered here. The returned ``Selection.labels`` is None: labels stay on the workers.
    """

    from ._validation import check_budget, check_nonneg_float
    from .baselines import select_random
    from .errors import NoCoverageError
    from .quotas import allocate_quotas
    from .selection import FALLBACKS, Selection, _as_sketch, ecos_selection

    t0 = time.perf_counter()
    st = stats if stats is not None else RunStats()
    sk = _as_sketch(sketch)
    p = ShardedPool.from_source(pool, column=column)
    st.n_shards = p.n_shards
    if p.n_features != sk.centroids.n_features:
        raise InvalidInputError(
            f"pool has n_features={p.n_features} but the centroids have {sk.centroids.n_features}"
        )
    n = p.n_samples
    b = check_budget(budget, n)
    thr = check_nonneg_float(threshold, "threshold")
    check_choice(fallback, "fallback", FALLBACKS)
    check_choice(kcenter, "kcenter", KCENTER_MODES)
    s = check_seed(seed)
    if fallback == "kcenter":
        raise InvalidInputError("fallback='kcenter' is not offered with backend='ray'")
    norm = sk.centroids.normalize
    c = sk.centroids.centroids
    r = sk.n_clusters
    ray = _ray()
    out = _assign_refs(p, c, norm, st)
    summaries = ray.get([o[2] for o in out])
    st.bytes_to_driver += _nbytes(summaries)
    capacity = np.sum(np.stack([sm["counts"] for sm in summaries]), axis=0).astype(np.int64)
    # Global nearest member per cluster: min over shards of (distance, global row).
    first = np.full(r, -1, dtype=np.int64)
    best = np.full(r, np.inf, dtype=np.float32)
    for sm, off in zip(summaries, p.offsets):
        bi = sm["best_i"]
        better = (bi >= 0) & (sm["best_d"] < best)
        first[better] = bi[better] + off
        best[better] = sm["best_d"][better]
    w = sk.weights(thr)
    covered = int(capacity[w > 0].sum())
    if covered == 0:
        if fallback == "raise":
            raise NoCoverageError(
                f"no pool row lies in a cluster with positive weight (n_clusters={r}, "
                f"n_samples={n}, budget={b}); pass fallback='random' to select anyway"
            )
        idx = select_random(n, b, seed=s).indices
        return Selection(idx, b, quotas=None, labels=None, weights=w, method="ecos-fallback-random")
    quotas = allocate_quotas(w, capacity, b)
    chosen = np.flatnonzero(quotas > 0).astype(np.int64)
    if kcenter == "gather":
        # Each shard splits its members of the chosen clusters into one object per
        # cluster; one K-Center task per cluster then reads every shard's part.
        st.bytes_between_workers += int(capacity[chosen].sum()) * (4 * p.n_features + 8)
        f = _remote(_w_members, num_returns=len(chosen))
        per_shard = []
        for sh, o in zip(p.shards, out):
            refs = f.remote(sh, p.column, norm, o[0], chosen)
            per_shard.append(refs if len(chosen) > 1 else [refs])
        tasks = [
            _remote(_w_kcenter).remote(
                int(quotas[cl]), int(first[cl]), list(p.offsets[:-1]),
                *[per_shard[sh][j] for sh in range(p.n_shards)],
            )
            for j, cl in enumerate(chosen.tolist())
        ]  # fmt: skip
        picks = ray.get(tasks)
    else:
        f = _remote(_w_coreset)
        parts = ray.get(
            [
                f.remote(sh, p.column, norm, o[0], o[1], chosen, quotas[chosen])
                for sh, o in zip(p.shards, out)
            ]
        )
        st.bytes_to_driver += _nbytes(parts)
        picks = []
        for j, cl in enumerate(chosen.tolist()):
            rows = np.concatenate([parts[sh][j][0] + p.offsets[sh] for sh in range(p.n_shards)])
            feats = np.concatenate([parts[sh][j][1] for sh in range(p.n_shards)])
            order = np.argsort(rows, kind="stable")
            rows, feats = rows[order], np.ascontiguousarray(feats[order])
            pos = int(np.searchsorted(rows, first[cl]))
            got_c, _ = _core.kcenter_greedy(feats, int(quotas[cl]), 1, pos, None, None)
            picks.append(rows[got_c])
    st.bytes_to_driver += _nbytes(picks)
    idx = np.concatenate(picks).astype(np.int64) if picks else np.zeros(0, np.int64)
    sel = ecos_selection(idx, b, quotas, None, w, covered, stacklevel=3)
    st.wall_s = time.perf_counter() - t0
    return sel
