"""Passes over pools that may not fit in RAM: row blocks, read-ahead hints, and checks
made while the rows are read.

A pool memory-mapped from disk (``np.memmap``, ``np.load(..., mmap_mode="r")``, a
``.npy`` path) is read in row blocks of about :data:`BLOCK_BYTES`, in order. Before a
block is worked on, the next one is announced to the kernel (``madvise(MADV_WILLNEED)``),
so the disk reads it while the CPUs work on the current one; rows gathered at random
(a training sample, K-Center candidates) are announced all at once, so their reads are
queued together instead of one page fault at a time. Hints never change a result.

Validation rides along: :func:`check_block` runs the finiteness and magnitude check of
``_validation.check_finite`` on a block just before a kernel reads the same block, so a
pool on disk is read from the disk once per pass, not once for the check and again for
the work. A bad value raises the error the up-front check would have raised (same
class, same first row).

A row-wise transform (``normalize="l2"``) of a mapped pool is applied the same way, a
block or a gather at a time (:class:`Transformed`), so it costs no copy of the pool.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _core, _validation
from ._threads import resolve_threads

__all__ = [
    "BLOCK_BYTES",
    "Transformed",
    "as_array",
    "assign_checked",
    "check_block",
    "gather_rows",
    "is_mapped",
    "row_blocks",
    "will_need",
    "will_need_rows",
]

#: Bytes of pool rows per block: large enough that each kernel call keeps every thread
#: busy and the read-ahead ahead of it, small enough (against RAM) that a block read for
#: the check is still in the page cache when the kernel reads it.
BLOCK_BYTES = 128 << 20

_MADV_WILLNEED = 3
_PAGE = mmap.PAGESIZE
_libc: Any = None


def _madvise() -> Any:
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fn = lib.madvise
            fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            fn.restype = ctypes.c_int
            _libc = fn
        except (OSError, AttributeError):  # not Linux/glibc: no hints
            _libc = False
    return _libc


class Transformed:
    """A mapped pool ``raw`` read through a row-wise transform ``fn``, never copied whole.

    ``fn`` maps a C-contiguous float32 block of rows to their transformed rows (a new
    array; each output row depends only on its input row, as ``l2_normalize``'s), so a
    block, a gather or the whole matrix gives every row the same values. The passes
    here (:func:`blocks`, :func:`gather_rows`, :func:`assign_checked`) apply it as they
    read; a kernel that needs the whole matrix takes :func:`as_array` (the one copy).

    Examples
    --------
    >>> import numpy as np
    >>> from ecos_fast._stream import Transformed, as_array, gather_rows
    >>> t = Transformed(np.arange(6, dtype=np.float32).reshape(3, 2), lambda b: 2 * b)
    >>> t.shape, gather_rows(t, np.array([2])).tolist(), as_array(t)[0].tolist()
    ((3, 2), [[8.0, 10.0]], [0.0, 2.0])
    """

    __slots__ = ("fn", "raw")

    def __init__(
        self, raw: NDArray[np.float32], fn: Callable[[NDArray[np.float32]], NDArray[np.float32]]
    ) -> None:
        self.raw = raw
        self.fn = fn

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.raw.shape)


#: A pool as the passes here take it: an array (in memory or mapped) or a mapped pool
#: under a row-wise transform.
Rows = NDArray[np.float32] | Transformed


def as_array(x: Rows) -> NDArray[np.float32]:
    """``x`` as one array: itself, or a :class:`Transformed` pool transformed block by
    block into a new in-memory array (for the kernels that need every row at once)."""
    if not isinstance(x, Transformed):
        return x
    out = np.empty(x.shape, dtype=np.float32)
    for start, blk in blocks(x):
        out[start : start + blk.shape[0]] = blk
    return out


def is_mapped(a: Rows) -> bool:
    """Whether ``a``'s memory belongs to a memory-mapped file (``np.memmap`` or a view of
    one), or ``a`` is a :class:`Transformed` mapped pool.

    >>> import numpy as np
    >>> from ecos_fast._stream import is_mapped
    >>> is_mapped(np.zeros((2, 2)))
    False
    """
    if isinstance(a, Transformed):
        return True
    b: Any = a
    while b is not None:
        if isinstance(b, (np.memmap, mmap.mmap)):
            return True
        b = getattr(b, "base", None)
    return False


def _advise(addr: int, nbytes: int) -> None:
    fn = _madvise()
    if not fn or nbytes <= 0:
        return
    start = addr - addr % _PAGE
    fn(start, addr + nbytes - start, _MADV_WILLNEED)  # advice only: failures are ignored


def will_need(block: NDArray[Any]) -> None:
    """Ask the kernel to start reading a C-contiguous mapped ``block`` (returns at once)."""
    if block.size and is_mapped(block):
        _advise(block.ctypes.data, block.nbytes)


def will_need_rows(x: Rows, rows: NDArray[np.int64]) -> None:
    """:func:`will_need` for the rows ``rows`` of a mapped C-contiguous matrix ``x``;
    runs of consecutive rows are announced as one range."""
    if isinstance(x, Transformed):
        x = x.raw
    if rows.size == 0 or not is_mapped(x) or not _madvise():
        return
    r = np.unique(rows)
    row_bytes = x.strides[0]
    cut = np.flatnonzero(np.diff(r) != 1)
    first = r[np.concatenate(([0], cut + 1))].tolist()
    last = r[np.concatenate((cut, [r.shape[0] - 1]))].tolist()
    base = x.ctypes.data
    for a, b in zip(first, last, strict=True):
        _advise(base + a * row_bytes, (b - a + 1) * row_bytes)


def gather_rows(x: NDArray[Any] | Transformed, rows: NDArray[np.int64]) -> NDArray[Any]:
    """``x[rows]`` as a new C-contiguous array, the rows' reads queued first when mapped
    (and transformed, for a :class:`Transformed` pool)."""
    if isinstance(x, Transformed):
        return x.fn(gather_rows(x.raw, rows))
    will_need_rows(x, rows)
    return np.ascontiguousarray(x[rows])


def row_blocks(n_samples: int, row_bytes: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive row blocks of about :data:`BLOCK_BYTES`.

    >>> from ecos_fast._stream import row_blocks
    >>> list(row_blocks(5, 64 << 20))
    [(0, 2), (2, 4), (4, 5)]
    """
    step = max(1, BLOCK_BYTES // max(1, row_bytes))
    for start in range(0, n_samples, step):
        yield start, min(start + step, n_samples)


def blocks(x: Rows) -> Iterator[tuple[int, NDArray[Any]]]:
    """``(start, x[start:stop])`` over :func:`row_blocks` (each block transformed, for a
    :class:`Transformed` pool).

    For a mapped ``x``, a helper thread announces each next block (:func:`will_need`)
    while the caller works on the current one: ``madvise(MADV_WILLNEED)`` returns only
    once the reads are queued, which on a slow disk is most of the read, so it is made
    off the caller's thread (ctypes releases the GIL) to overlap the disk with the
    kernels. The thread only gives hints; it ends with the pass.
    """
    if isinstance(x, Transformed):
        for start, blk in blocks(x.raw):
            yield start, x.fn(np.ascontiguousarray(blk))
        return
    spans = list(row_blocks(x.shape[0], x.strides[0] if x.ndim else x.itemsize))
    if not spans or not is_mapped(x) or not _madvise():
        for start, stop in spans:
            yield start, x[start:stop]
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ecos-fast-readahead")
    try:
        pool.submit(will_need, x[spans[0][0] : spans[0][1]]).result()
        for i, (start, stop) in enumerate(spans):
            if i + 1 < len(spans):
                pool.submit(will_need, x[spans[i + 1][0] : spans[i + 1][1]])
            yield start, x[start:stop]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def check_block(block: NDArray[np.float32], whole: Rows, name: str, max_abs: float | None) -> None:
    """``_validation.check_finite`` of one C-contiguous float32 block of ``whole``.

    Blocks are checked in row order, so the first block with a bad value holds the
    pool's first bad row; the error is then the one ``check_finite(whole, ...)`` raises
    (same message, same row: it is re-run on ``whole`` to say so).
    """
    if block.size == 0:
        return
    if _core.first_non_finite(block, resolve_threads(None), max_abs) is not None:
        _validation.check_finite(
            whole.raw if isinstance(whole, Transformed) else whole, name, max_abs=max_abs
        )


def assign_checked(
    x: Rows,
    centroids: NDArray[np.float32],
    n_threads: int,
    *,
    name: str | None = None,
    max_abs: float | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.int64]]:
    """Nearest centroid, squared distance and the exact distance bins of every row of
    ``x``, in one pass of row blocks; with ``name``, each block is first checked
    (:func:`check_block` against ``max_abs``).

    The labels and distances are the compiled assignment's on the whole matrix, bit for
    bit (each row's result depends only on the row and the centroids), and so are the
    bins (integer sums).
    """
    n = x.shape[0]
    labels = np.empty(n, dtype=np.int64)
    dists = np.empty(n, dtype=np.float32)
    bins = np.zeros(256, dtype=np.int64)
    for start, blk in blocks(x):
        if name is not None:
            check_block(blk, x, name, max_abs)
        lab, d2, b = _core.assign(blk, centroids, n_threads, bins=True)
        labels[start : start + lab.shape[0]] = lab
        dists[start : start + lab.shape[0]] = d2
        bins += b
    return labels, dists, bins
