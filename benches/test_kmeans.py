"""k-means: Lloyd iterations from the same initial centroids, on the same points.

ecos-fast ``kmeans(init=..., tol=0, max_points_per_centroid=None)`` | NumPy Lloyd
(chunked GEMM + argmin + ``np.add.at``, empty clusters relocated as scikit-learn does) | ``faiss.Kmeans`` (no subsampling) |
scikit-learn ``KMeans(algorithm="lloyd", n_init=1)`` | scikit-learn-intelex ``KMeans``.
Every implementation trains on all rows for ``iters`` iterations; the time also covers
what each does besides (ecos-fast and scikit-learn label every row once more at the
end). Correct = inertia of the returned centroids within tolerance of the NumPy run
(which runs first, and whose centroids are cached as the reference).
"""

from __future__ import annotations

import checks
import data
import ecos_fast
import numpy as np
import peers
import pytest
from common import KMEANS, THREADS, Workload, annotate, features, run, threads


def _ecos(x: np.ndarray, init: np.ndarray, iters: int, t: int) -> np.ndarray:
    km = ecos_fast.kmeans(
        x,
        init.shape[0],
        max_iter=iters,
        tol=0.0,
        init=init,
        max_points_per_centroid=None,
        n_threads=t,
    )
    _ecos.last_n_iter = km.n_iter  # type: ignore[attr-defined]
    return km.centroids


IMPLS = {
    "numpy": lambda x, c, i, t: peers.numpy_lloyd(x, c, i),
    "ecos-fast": _ecos,
    "faiss": lambda x, c, i, t: peers.faiss_kmeans(x, c, i),
    "sklearn": lambda x, c, i, t: peers.sklearn_kmeans(x, c, i),
    "sklearnex": lambda x, c, i, t: peers.sklearnex_kmeans(x, c, i),
}
NEEDS = {"faiss": "faiss", "sklearn": "sklearn.cluster", "sklearnex": "sklearnex.cluster"}
N_ITER_OF = {
    "ecos-fast": _ecos,
    "sklearn": peers.sklearn_kmeans,
    "sklearnex": peers.sklearnex_kmeans,
}


def init_centroids(w: Workload) -> np.ndarray:
    x = features(w.n, w.d)
    return np.array(x[data.sample_rows(w.n, w.k, seed=2)])


@pytest.mark.parametrize("t", THREADS, ids=lambda t: f"t{t}")
@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("w", KMEANS, ids=str)
def test_kmeans(benchmark, w: Workload, impl: str, t: int) -> None:
    if impl in NEEDS:
        peers.require(NEEDS[impl])
    x, init = features(w.n, w.d), init_centroids(w)
    annotate(
        benchmark,
        f"kmeans {w.name} {w.iters} iter",
        impl,
        w,
        t,
        iters=w.iters,
        flops=2.0 * w.n * w.k * w.d * w.iters,
        bytes=4.0 * w.n * w.d * w.iters,
    )
    fn = IMPLS[impl]
    with threads(t):
        cents = run(benchmark, lambda: fn(x, init, w.iters, t), rounds=w.rounds)
    if impl in N_ITER_OF:
        benchmark.extra_info["n_iter"] = getattr(N_ITER_OF[impl], "last_n_iter", None)
    if impl == "sklearnex":
        benchmark.extra_info["backend"] = getattr(peers.sklearnex_kmeans, "backend", None)
    key = f"kmeans_reloc_n{w.n}_d{w.d}_k{w.k}_i{w.iters}"
    ref = data.cached(
        key,
        lambda: {
            "inertia": np.array(
                checks.inertia(x, cents if impl == "numpy" else peers.numpy_lloyd(x, init, w.iters))
            )
        },
    )
    rule = "faiss splits the largest cluster when one empties" if impl == "faiss" else ""
    checks.record(
        benchmark, checks.check_kmeans(x, cents, float(ref["inertia"]), other_empty_rule=rule)
    )
