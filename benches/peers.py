"""What users would otherwise run: the baselines ecos-fast is timed against.

Every function takes float32 ``(n_samples, n_features)`` features (often a memmap)
and returns results in the same form as the ecos-fast call it is compared with.
Thread counts are set by :func:`limit_threads` around the call, never inside it.
Optional peers (faiss, scikit-learn, scikit-learn-intelex) are imported lazily:
:func:`require` skips the calling benchmark when one is not installed.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from ecos_fast import reference

CHUNK = 16_384  # rows per GEMM block: the N x k block stays in L2/L3 for k <= 1000


def require(module: str) -> Any:
    """Import ``module`` or skip the benchmark (peers are optional outside CI)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.skip(f"{module} is not installed (pip install -r requirements/bench.txt)")


_OPTIONAL = ("faiss", "sklearn.cluster", "sklearn.metrics", "sklearnex.cluster", "daal4py")


def preload() -> None:
    """Import the optional peers that are installed, so that threadpoolctl sees (and
    caps) the OpenMP/BLAS libraries they bring; it only sees libraries already loaded."""
    for name in _OPTIONAL:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


@contextlib.contextmanager
def limit_threads(n_threads: int) -> Iterator[None]:
    """Cap BLAS and OpenMP pools (NumPy, scikit-learn, faiss) and oneDAL at ``n_threads``."""
    preload()
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=n_threads))
        except ImportError:  # NumPy then uses all cores; the report shows threadpoolctl missing
            pass
        try:
            import faiss

            before = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(n_threads)
            stack.callback(faiss.omp_set_num_threads, before)
        except ImportError:
            pass
        try:
            import daal4py

            before_d = daal4py.num_threads()
            daal4py.daalinit(n_threads)
            stack.callback(daal4py.daalinit, before_d)
        except ImportError:
            pass
        yield


# --- nearest-centroid assignment --------------------------------------------------


def numpy_assign(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chunked float32 GEMM + argmin (the usual NumPy way)."""
    n = x.shape[0]
    c = np.ascontiguousarray(c, dtype=np.float32)
    c_sq = np.einsum("kd,kd->k", c, c)
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float32)
    for s in range(0, n, CHUNK):
        xb = np.asarray(x[s : s + CHUNK])
        g = xb @ c.T
        g *= -2.0
        g += c_sq
        lab = np.argmin(g, axis=1)
        labels[s : s + CHUNK] = lab
        dist[s : s + CHUNK] = np.maximum(
            g[np.arange(len(lab)), lab] + np.einsum("nd,nd->n", xb, xb), 0.0
        )
    return labels, dist


def faiss_assign(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """faiss ``IndexFlatL2(d).search(x, 1)``."""
    faiss = require("faiss")
    index = faiss.IndexFlatL2(c.shape[1])
    index.add(np.ascontiguousarray(c, dtype=np.float32))
    dist, labels = index.search(np.ascontiguousarray(x), 1)
    return labels[:, 0].astype(np.int64), dist[:, 0]


def sklearn_assign(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, None]:
    """scikit-learn ``pairwise_distances_argmin`` (labels only)."""
    metrics = require("sklearn.metrics")
    return metrics.pairwise_distances_argmin(x, c).astype(np.int64), None


# --- k-means (Lloyd from given centroids) -----------------------------------------


def numpy_lloyd(x: np.ndarray, init: np.ndarray, n_iter: int) -> np.ndarray:
    """Plain NumPy Lloyd in float32: chunked GEMM + argmin + ``np.add.at`` per chunk
    (chunk sums in float32, the total in float64).

    Empty clusters are relocated as scikit-learn does (and
    ``reference.kmeans_lloyd_relocating`` specifies): each takes the row farthest
    from its centroid whose cluster keeps a member. Returns the final centroids.
    """
    c = np.array(init, dtype=np.float32)
    k, d = c.shape
    n = x.shape[0]
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float32)
    for _ in range(n_iter):
        c_sq = np.einsum("kd,kd->k", c, c)
        sums = np.zeros((k, d), dtype=np.float64)
        counts = np.zeros(k, dtype=np.int64)
        for s in range(0, n, CHUNK):
            xb = np.asarray(x[s : s + CHUNK])
            g = xb @ c.T
            g *= -2.0
            g += c_sq
            lab = np.argmin(g, axis=1)
            labels[s : s + CHUNK] = lab
            dist[s : s + CHUNK] = g[np.arange(len(lab)), lab] + np.einsum("nd,nd->n", xb, xb)
            part = np.zeros((k, d), dtype=np.float32)  # float32 add.at has a fast path
            np.add.at(part, lab, xb)
            sums += part
            counts += np.bincount(lab, minlength=k)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            order = np.lexsort((np.arange(n), -dist))  # farthest first, ties to the lowest row
            pos = 0
            for e in empty:
                while pos < n:
                    i = int(order[pos])
                    pos += 1
                    if counts[labels[i]] > 1:
                        row = np.asarray(x[i], dtype=np.float64)
                        sums[labels[i]] -= row
                        counts[labels[i]] -= 1
                        sums[e], counts[e], labels[i] = row, 1, e
                        break
        nz = counts > 0
        c[nz] = (sums[nz] / counts[nz, None]).astype(np.float32)
    return c


def faiss_kmeans(x: np.ndarray, init: np.ndarray, n_iter: int) -> np.ndarray:
    """``faiss.Kmeans`` on all rows (no subsampling) from ``init``."""
    faiss = require("faiss")
    k, d = init.shape
    km = faiss.Kmeans(
        d,
        k,
        niter=n_iter,
        verbose=False,
        seed=0,
        max_points_per_centroid=x.shape[0] // k + 1,
        min_points_per_centroid=1,
    )
    km.train(np.ascontiguousarray(x), init_centroids=np.ascontiguousarray(init))
    return np.asarray(km.centroids)


def sklearn_kmeans(x: np.ndarray, init: np.ndarray, n_iter: int) -> np.ndarray:
    """scikit-learn ``KMeans(algorithm="lloyd", n_init=1, init=init, tol=0)``."""
    cluster = require("sklearn.cluster")
    km = cluster.KMeans(
        n_clusters=init.shape[0],
        init=init,
        n_init=1,
        max_iter=n_iter,
        tol=0.0,
        algorithm="lloyd",
        random_state=0,
    )
    km.fit(x)
    sklearn_kmeans.last_n_iter = int(km.n_iter_)  # type: ignore[attr-defined]
    return np.asarray(km.cluster_centers_, dtype=np.float32)


class _BackendLog(logging.Handler):
    """Catches sklearnex's 'running accelerated version' / 'fallback' log lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def sklearnex_kmeans(x: np.ndarray, init: np.ndarray, n_iter: int) -> np.ndarray:
    """scikit-learn-intelex ``KMeans`` (oneDAL), same arguments as :func:`sklearn_kmeans`."""
    cluster = require("sklearnex.cluster")
    log = logging.getLogger("sklearnex")
    handler = _BackendLog()
    old = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        km = cluster.KMeans(
            n_clusters=init.shape[0],
            init=init,
            n_init=1,
            max_iter=n_iter,
            tol=0.0,
            algorithm="lloyd",
            random_state=0,
        )
        km.fit(x)
    finally:
        log.removeHandler(handler)
        log.setLevel(old)
    text = " ".join(handler.lines).lower()
    sklearnex_kmeans.backend = (  # type: ignore[attr-defined]
        "fallback to scikit-learn"
        if "fallback" in text
        else "oneDAL"
        if "accelerated" in text
        else "unknown"
    )
    sklearnex_kmeans.last_n_iter = int(km.n_iter_)  # type: ignore[attr-defined]
    return np.asarray(km.cluster_centers_, dtype=np.float32)


# --- greedy K-Center --------------------------------------------------------------


def numpy_kcenter(x: np.ndarray, budget: int) -> np.ndarray:
    """NumPy running-min K-Center (Google active-learning style), first pick row 0."""
    return reference.kcenter_running_min(x, budget, first=0)


# --- end-to-end selection -----------------------------------------------------------


#: ``ecos_fast.select`` options that run the rule :func:`numpy_select` implements (and
#: benches/checks.py ``check_select`` verifies): weights ``max(noisy count, 0)`` as
#: released (``Sketch.weights()``: no threshold, no noise gate, no smoothing) and
#: K-Center over each whole cluster. The defaults differ on every one of these: a
#: 2-sigma threshold, the noise gate, SURE smoothing and ``within="strata"``.
PEER_RULE: dict[str, Any] = {
    "threshold": 0.0,
    "low_signal": "keep",
    "smooth": "none",
    "within": "kcenter",
}


def ecos_select(x: Any, sketch: Any, budget: int, n_threads: int) -> Any:
    """``ecos_fast.select`` with :data:`PEER_RULE`: the call timed against
    :func:`numpy_select`."""
    import ecos_fast

    return ecos_fast.select(x, sketch, budget, n_threads=n_threads, **PEER_RULE)


def numpy_select(
    x: np.ndarray, centroids: np.ndarray, weights: np.ndarray, budget: int
) -> dict[str, np.ndarray]:
    """The ECOS selection rule written the NumPy way: chunked GEMM assignment, then a
    running-min K-Center inside each weighted cluster (its rows gathered), starting
    from the member nearest the centroid. Quotas from ``ecos_fast.allocate_quotas``
    (pure Python, the same rule). Returns indices (cluster order, then pick order),
    labels and quotas."""
    from ecos_fast import allocate_quotas

    r = centroids.shape[0]
    labels, d2 = numpy_assign(x, centroids)
    capacity = np.bincount(labels, minlength=r)
    quotas = allocate_quotas(weights, capacity, budget)
    order = np.argsort(labels, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(capacity)])
    out = []
    for k in np.flatnonzero(quotas > 0):
        rows = order[indptr[k] : indptr[k + 1]]
        first = int(np.argmin(d2[rows]))
        local = reference.kcenter_running_min(np.asarray(x[rows]), int(quotas[k]), first=first)
        out.append(rows[local])
    indices = np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
    return {"indices": indices.astype(np.int64), "labels": labels, "quotas": quotas}
