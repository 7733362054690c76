"""Type stubs for the compiled core (checked by ``mypy.stubtest``).

Prior validation of data is assumed: users call the validated wrappers in
``ecos_fast.kernels``; the package's own modules call the core only with inputs
already checked by ``ecos_fast._validation``.
"""

from collections.abc import Callable
from typing import Literal, overload

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "__version__",
    "_raise_kernel_error",
    "assign",
    "assign_bf16_stats",
    "build_info",
    "first_non_finite",
    "kcenter_clusters",
    "kcenter_greedy",
    "kcenter_greedy_stats",
    "kmeans",
    "kmeans_max_abs",
    "kmeans_mean_variance",
    "kmeans_moments",
    "kmeans_partial",
    "kmeans_partial_labelled",
    "kmeans_plusplus",
    "kmeans_relocation_order",
    "kmeans_scales",
    "kmeans_update",
    "nearest_in_clusters",
]

__version__: str

@overload
def assign(
    features: NDArray[np.float32],
    centroids: NDArray[np.float32],
    n_threads: int,
    bins: Literal[False] = False,
    precision: Literal["auto", "float32", "bf16"] = "auto",
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """``precision``: ``"auto"`` takes the bf16 first pass (``rust/kernels/assign_bf16.rs``)
    where ``build_info()["assign_path"]`` says so, ``"float32"`` never, ``"bf16"`` always
    (an ``InvalidInputError`` without AVX512_BF16). The results are the same bit for bit.
    """

@overload
def assign(
    features: NDArray[np.float32],
    centroids: NDArray[np.float32],
    n_threads: int,
    bins: Literal[True],
    precision: Literal["auto", "float32", "bf16"] = "auto",
) -> tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.int64]]:
    """``bins=True`` also returns the exact per-exponent bins of the squared distances.

    int64[256]: bin ``e`` (biased float32 exponent, subnormals in bin 1) holds the sum of
    the 24-bit significands of the distances with that exponent, in units of
    ``2^(e - 150)``; the same code as the k-means inertia (``rust/kernels/kmeans.rs``
    ``dist_bins``), so bins added over shards give the single-machine inertia exactly.
    """

def assign_bf16_stats(
    features: NDArray[np.float32],
    centroids: NDArray[np.float32],
    n_threads: int,
    first_pass: Literal["amx", "avx512bf16"] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float32], dict[str, int]]:
    """``assign`` through the bf16 first pass (forced), and what it re-checked in float32.

    The counts: ``rows``, ``rows_rechecked`` (two or more candidates), ``centroids_rechecked``
    (summed over those rows), ``rows_full`` (bounds overflowed: every centroid re-checked),
    ``panels_rechecked`` (the 32- or 16-centroid panels holding their candidates),
    ``halves_rechecked`` (the 16-centroid halves of those computed in float32).
    ``first_pass``: the engine of the bf16 dot products, ``"amx"`` (Intel AMX tiles) or
    ``"avx512bf16"`` (``vdpbf16ps``); ``None``: the one ``precision="bf16"`` uses
    (``build_info()["bf16_pass"]``). ``InvalidInputError`` where the CPU lacks AVX512_BF16
    (or AMX, for ``"amx"``) or ``ECOS_FAST_SIMD`` caps it.
    """

def first_non_finite(
    values: NDArray[np.float32], n_threads: int, max_abs: float | None = None
) -> int | None:
    """Flat index of the first NaN/inf (or, with ``max_abs``, |value| > max_abs), or None."""

def _raise_kernel_error(kind: str, message: str) -> None:
    """Raise what the Rust ``KernelError`` variant ``kind`` maps to (tests only)."""

def kmeans(
    features: NDArray[np.float32],
    n_clusters: int,
    max_iter: int,
    tol: float,
    seed: int,
    n_threads: int,
    init: NDArray[np.float32] | None = None,
    n_local_trials: int = 1,
    sample: NDArray[np.int64] | None = None,
    progress: Callable[[int], object] | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.float64], int]: ...
def kmeans_plusplus(
    features: NDArray[np.float32],
    n_clusters: int,
    seed: int,
    n_threads: int,
    n_local_trials: int = 1,
) -> NDArray[np.float32]: ...
def kmeans_max_abs(features: NDArray[np.float32], n_threads: int) -> NDArray[np.float32]: ...
def kmeans_scales(max_abs: NDArray[np.float32], n_total: int) -> NDArray[np.float64]: ...
def kmeans_moments(
    features: NDArray[np.float32], scales: NDArray[np.float64], n_threads: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.uint64]]: ...
def kmeans_mean_variance(
    sum_q: NDArray[np.int64],
    sum_q2_hi: NDArray[np.int64],
    sum_q2_lo: NDArray[np.uint64],
    n_total: int,
    scales: NDArray[np.float64],
) -> float: ...
def kmeans_partial(
    features: NDArray[np.float32],
    centroids: NDArray[np.float32],
    scales: NDArray[np.float64],
    n_threads: int,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]: ...
def kmeans_partial_labelled(
    features: NDArray[np.float32],
    centroids: NDArray[np.float32],
    scales: NDArray[np.float64],
    n_threads: int,
) -> tuple[
    NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]
]: ...
def kmeans_relocation_order(dists: NDArray[np.float32], m: int) -> NDArray[np.int64]: ...
def kmeans_update(
    sums: NDArray[np.int64],
    counts: NDArray[np.int64],
    bins: NDArray[np.int64],
    old: NDArray[np.float32],
    scales: NDArray[np.float64],
    cand: tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]
    | None = None,
) -> tuple[NDArray[np.float32], float, float, NDArray[np.int64], NDArray[np.int64]]: ...
def kcenter_greedy(
    features: NDArray[np.float32],
    budget: int,
    n_threads: int,
    first: int | None = None,
    initial: NDArray[np.int64] | None = None,
    rows: NDArray[np.int64] | None = None,
    prune: bool = True,
    progress: Callable[[int], object] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]: ...
def kcenter_greedy_stats(
    features: NDArray[np.float32],
    budget: int,
    n_threads: int,
    first: int | None = None,
    initial: NDArray[np.int64] | None = None,
    rows: NDArray[np.int64] | None = None,
    prune: bool = True,
) -> tuple[NDArray[np.int64], NDArray[np.float32], dict[str, int]]: ...
def kcenter_clusters(
    features: NDArray[np.float32],
    indptr: NDArray[np.int64],
    members: NDArray[np.int64],
    quotas: NDArray[np.int64],
    first: NDArray[np.int64],
    n_threads: int,
    progress: Callable[[int], object] | None = None,
) -> NDArray[np.int64]: ...
def nearest_in_clusters(
    sq_dist: NDArray[np.float32],
    indptr: NDArray[np.int64],
    members: NDArray[np.int64],
    counts: NDArray[np.int64],
    n_threads: int,
    progress: Callable[[int], object] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Per cluster, the ``min(counts[k], size_k)`` members nearest the centroid.

    Cluster ``k`` holds rows ``members[indptr[k]:indptr[k + 1]]`` (strictly increasing;
    ``indptr`` starts at 0, never decreases and ends at ``len(members)``), ``counts``
    are ``>= 0``. Returns ``(out_indptr, out_members)`` in the same layout, each
    cluster's rows in ascending ``(sq_dist[row], row)`` order: the first is the member
    nearest the centroid, ties to the lowest row. The same for any ``n_threads``.
    Ctrl-C (or ``progress(clusters_done)`` raising) stops it between clusters.
    Oracle: ``ecos_fast.reference.nearest_in_clusters``.
    """

def build_info() -> dict[str, str]: ...
