"""Nearest-centroid assignment (labels + squared distance), vs NumPy, faiss, scikit-learn.

ecos-fast ``assign`` | NumPy chunked float32 GEMM + argmin | faiss ``IndexFlatL2.search``
k=1 | scikit-learn ``pairwise_distances_argmin``. Centroids are seeded rows of the pool.
Correct = labels equal to a float64 reference except at near-ties (benches/checks.py).
"""

from __future__ import annotations

import checks
import data
import ecos_fast
import numpy as np
import peers
import pytest
from common import ASSIGN, THREADS, Workload, annotate, features, run, threads

IMPLS = {
    "ecos-fast": lambda x, c, t: ecos_fast.assign(x, c, n_threads=t),
    "numpy": lambda x, c, t: peers.numpy_assign(x, c),
    "faiss": lambda x, c, t: peers.faiss_assign(x, c),
    "sklearn": lambda x, c, t: peers.sklearn_assign(x, c),
}
NEEDS = {"faiss": "faiss", "sklearn": "sklearn.metrics"}


def centroids(w: Workload) -> np.ndarray:
    x = features(w.n, w.d)
    return np.array(x[data.sample_rows(w.n, w.k, seed=1)])


@pytest.mark.parametrize("t", THREADS, ids=lambda t: f"t{t}")
@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("w", ASSIGN, ids=str)
def test_assign(benchmark, w: Workload, impl: str, t: int) -> None:
    if impl in NEEDS:
        peers.require(NEEDS[impl])
    x, c = features(w.n, w.d), centroids(w)
    annotate(
        benchmark,
        f"assign {w.name}",
        impl,
        w,
        t,
        flops=2.0 * w.n * w.k * w.d,
        bytes=4.0 * w.n * w.d,
    )
    fn = IMPLS[impl]
    with threads(t):
        labels, dist = run(benchmark, lambda: fn(x, c, t), rounds=w.rounds)
    ref = data.cached(f"assign_n{w.n}_d{w.d}_k{w.k}", lambda: checks.reference_assign(x, c))
    checks.record(benchmark, checks.check_assign(x, c, labels, dist, ref))
