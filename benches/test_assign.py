"""Nearest-centroid assignment (labels + squared distance), vs NumPy, faiss, scikit-learn.

ecos-fast ``assign`` (``precision="auto"``; and forced ``"float32"`` and ``"bf16"``, the
bf16 first pass of ``rust/kernels/assign_bf16.rs``, skipped without AVX512_BF16) | NumPy
chunked float32 GEMM + argmin | faiss ``IndexFlatL2.search`` k=1 | scikit-learn
``pairwise_distances_argmin``. Centroids are seeded rows of the pool. Correct = labels equal
to a float64 reference except at near-ties (benches/checks.py); the bf16 row must also equal
the float32 kernel bit for bit, and records the share of rows it re-checked in float32
(measured untimed on the first ``RECHECK_ROWS`` rows).
"""

from __future__ import annotations

import checks
import data
import ecos_fast
import numpy as np
import peers
import pytest
from common import ASSIGN, THREADS, Workload, annotate, features, run, threads
from ecos_fast import _core
from ecos_fast.errors import InvalidInputError

IMPLS = {
    "ecos-fast": lambda x, c, t: ecos_fast.assign(x, c, n_threads=t),
    "ecos-fast f32": lambda x, c, t: ecos_fast.assign(x, c, n_threads=t, precision="float32"),
    "ecos-fast bf16": lambda x, c, t: ecos_fast.assign(x, c, n_threads=t, precision="bf16"),
    "numpy": lambda x, c, t: peers.numpy_assign(x, c),
    "faiss": lambda x, c, t: peers.faiss_assign(x, c),
    "sklearn": lambda x, c, t: peers.sklearn_assign(x, c),
}
NEEDS = {"faiss": "faiss", "sklearn": "sklearn.metrics"}
RECHECK_ROWS = 100_000


def bf16_available() -> bool:
    try:
        _core.assign_bf16_stats(np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32), 1)
    except InvalidInputError:
        return False
    return True


def recheck_info(x: np.ndarray, c: np.ndarray, t: int, labels: np.ndarray) -> dict[str, object]:
    """The bf16 pass's re-check share on a prefix, and whether it equals float32 there."""
    m = min(x.shape[0], RECHECK_ROWS)
    xp = np.ascontiguousarray(x[:m])
    lb, db, st = _core.assign_bf16_stats(xp, c, t)
    l32, d32 = _core.assign(xp, c, t, precision="float32")
    rows = st["rows_rechecked"]
    mean = st["centroids_rechecked"] / rows if rows else 0.0
    panels = st["panels_rechecked"] / rows if rows else 0.0
    return {
        "recheck": (
            f"{100 * rows / m:.1f} % of rows, {mean:.1f} centroids in {panels:.1f} panels each, "
            f"first {m:,} rows"
        ),
        "recheck_rows_share": rows / m,
        "recheck_mean_centroids": mean,
        "equals_float32": bool(
            (lb == l32).all() and db.tobytes() == d32.tobytes() and (labels[:m] == l32).all()
        ),
    }


def centroids(w: Workload) -> np.ndarray:
    x = features(w.n, w.d)
    return np.array(x[data.sample_rows(w.n, w.k, seed=1)])


@pytest.mark.parametrize("t", THREADS, ids=lambda t: f"t{t}")
@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("w", ASSIGN, ids=str)
def test_assign(benchmark, w: Workload, impl: str, t: int) -> None:
    if impl in NEEDS:
        peers.require(NEEDS[impl])
    if impl == "ecos-fast bf16" and not bf16_available():
        pytest.skip("the CPU lacks AVX512_BF16 (or ECOS_FAST_SIMD caps the path)")
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
    result = checks.check_assign(x, c, labels, dist, ref)
    if impl == "ecos-fast bf16":
        info = recheck_info(x, c, t, labels)
        benchmark.extra_info.update(info)
        if not info["equals_float32"]:
            result = {**result, "correct": False, "check": result["check"] + "; NOT float32's"}
    checks.record(benchmark, result)
