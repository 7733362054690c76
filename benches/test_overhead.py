"""Fixed cost of a call: 1000 x 16 features, 8 centroids (target: < 100 us per call).

ecos-fast's public functions (validation + binding + thread pool) and the raw
``_core`` binding, beside NumPy doing the same small job. pytest-benchmark calibrates
the iterations itself here (these are microseconds).
"""

from __future__ import annotations

import checks
import ecos_fast
import numpy as np
import peers
import pytest
from common import OVERHEAD, THREADS, annotate, features, threads
from ecos_fast import _core

TARGET_US = 100.0
w = OVERHEAD


def inputs() -> tuple[np.ndarray, np.ndarray]:
    x = np.ascontiguousarray(features(w.n, w.d))
    return x, np.ascontiguousarray(x[:: w.n // w.k][: w.k])


CALLS = {
    "assign ecos-fast": lambda x, c, t: ecos_fast.assign(x, c, n_threads=t),
    "assign _core": lambda x, c, t: _core.assign(x, c, t),
    "assign numpy": lambda x, c, t: peers.numpy_assign(x, c),
    "kcenter_greedy ecos-fast (budget 8)": lambda x, c, t: ecos_fast.kcenter_greedy(
        x, 8, n_threads=t
    ),
    "kcenter numpy (budget 8)": lambda x, c, t: peers.numpy_kcenter(x, 8),
}


@pytest.mark.parametrize("t", THREADS, ids=lambda t: f"t{t}")
@pytest.mark.parametrize("call", list(CALLS))
def test_overhead(benchmark, call: str, t: int) -> None:
    x, c = inputs()
    impl = call.split()[1]
    annotate(
        benchmark,
        f"overhead {w.name}",
        impl,
        w,
        t,
        call=call,
        flops=2.0 * w.n * w.k * w.d,
        target_us=TARGET_US,
    )
    fn = CALLS[call]
    with threads(t):
        out = benchmark(fn, x, c, t)
    if call.startswith("assign"):
        checks.record(
            benchmark, checks.check_assign(x, c, out[0], out[1], checks.reference_assign(x, c))
        )
    else:
        picks = out[0] if isinstance(out, tuple) else out
        checks.record(benchmark, checks.check_kcenter(x, picks, peers.numpy_kcenter(x, 8)))
