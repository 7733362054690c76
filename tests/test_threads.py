"""Thread pools: sizing, fork safety, GIL release."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
import warnings

import ecos_fast
import numpy as np
import pytest
from ecos_fast._threads import ENV_VAR, default_threads, resolve_threads
from ecos_fast.errors import InvalidInputError, InvalidTypeError


def _data(n: int = 2000, d: int = 8, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(k, d)).astype(np.float32)


def test_env_var_sets_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "3")
    assert default_threads() == 3
    monkeypatch.setenv(ENV_VAR, "0")
    with pytest.raises(InvalidInputError, match="ECOS_FAST_NUM_THREADS=0"):
        default_threads()
    monkeypatch.setenv(ENV_VAR, "two")
    with pytest.raises(InvalidInputError, match="not an integer"):
        default_threads()


def test_default_is_allowed_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert default_threads() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_thread_count(bad: int) -> None:
    with pytest.raises(InvalidInputError, match=f"n_threads={bad}"):
        resolve_threads(bad)


def test_thread_count_type() -> None:
    with pytest.raises(InvalidTypeError):
        resolve_threads(2.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError):
        resolve_threads(True)


def test_numpy_integer_thread_count() -> None:
    """Before: n_threads=np.int64(2) (e.g. read from a config array) was refused with
    InvalidTypeError, although every other integer parameter takes NumPy integers."""
    assert resolve_threads(np.int64(2)) == 2  # type: ignore[arg-type]
    assert type(resolve_threads(np.int32(1))) is int  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="n_threads=0"):
        resolve_threads(np.int64(0))  # type: ignore[arg-type]
    labels, _ = ecos_fast.assign(*_data(), n_threads=np.int64(2))  # type: ignore[arg-type]
    assert labels.shape == (_data()[0].shape[0],)


# Large enough (n·k·d >= 2^23 multiply-adds) to run on the thread pool; _data()'s
# default is small and runs on the calling thread.
_LARGE = {"n": 40_000, "d": 64, "k": 8}


def _child_assign(q: mp.Queue[object]) -> None:
    small, _ = ecos_fast.assign(*_data(), n_threads=2)
    large, _ = ecos_fast.assign(*_data(**_LARGE), n_threads=2)
    q.put([small.tolist(), large.tolist()])


def test_usable_after_fork() -> None:
    """A forked child (torch DataLoader worker, multiprocessing) must not deadlock
    on the parent's thread pool, whose worker threads do not exist in the child, nor
    on the parent thread's inline pool (small calls), which the child inherits."""
    small, _ = ecos_fast.assign(*_data(), n_threads=2)  # the parent's inline pool
    large, _ = ecos_fast.assign(*_data(**_LARGE), n_threads=2)  # and its 2-thread pool
    ctx = mp.get_context("fork")
    q: mp.Queue[object] = ctx.Queue()
    p = ctx.Process(target=_child_assign, args=(q,))
    p.start()
    # Read before joining: the child exits only once its queue's pipe is drained.
    got = q.get(timeout=60)
    p.join(timeout=60)
    assert p.exitcode == 0, "the forked child hung or crashed"
    assert got == [small.tolist(), large.tolist()]


_THREADS_CHILD = """
import json, os, numpy as np, ecos_fast
def thread_name(tid):
    try:
        with open(f"/proc/self/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:  # the thread exited between listdir and open: it is not alive
        return ""
def pool_threads():
    return sum(thread_name(t).startswith("ecos-fast-") for t in os.listdir("/proc/self/task"))
rng = np.random.default_rng(0)
x = rng.normal(size=(1000, 16)).astype(np.float32)
ecos_fast.assign(x, x[:8], n_threads=2)
ecos_fast.kcenter_greedy(x, 8, n_threads=2)
after_small = pool_threads()
xl = rng.normal(size=(40_000, 64)).astype(np.float32)
ecos_fast.assign(xl, xl[:8], n_threads=2)
print(json.dumps([after_small, pool_threads()]))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_small_calls_run_on_the_calling_thread() -> None:
    """A call of a few microseconds' work must not hand off to pool threads and wait
    for them to wake (that hand-off alone cost ~50-100 us, see benches/RESULTS.md);
    a large call does use the pool."""
    out = subprocess.run(
        [sys.executable, "-c", _THREADS_CHILD], capture_output=True, text=True, check=True
    )
    after_small, after_large = json.loads(out.stdout)
    assert after_small == 0
    assert after_large == 2


def test_gil_released_during_kernels() -> None:
    """While a long kernel runs in one Python thread, another Python thread runs."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300_000, 64)).astype(np.float32)
    c = rng.normal(size=(256, 64)).astype(np.float32)
    ticks = 0
    done = threading.Event()

    def worker() -> None:
        ecos_fast.assign(x, c, n_threads=1)
        done.set()

    t = threading.Thread(target=worker)
    start = time.perf_counter()
    t.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    t.join()
    elapsed = time.perf_counter() - start
    # With the GIL held for the whole call, the loop above could not run at all.
    assert elapsed > 0.02, "the kernel finished too quickly to tell; grow the input"
    assert ticks >= 5


# -- the cap on thread counts (issue 13, finding 1) -----------------------------------

_CAP_CHILD = """
import json, os, time, warnings, numpy as np, ecos_fast
from ecos_fast._threads import max_threads
def thread_name(tid):
    try:
        with open(f"/proc/self/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:  # the thread exited between listdir and open: it is not alive
        return ""
def pool_threads():
    return sum(thread_name(t).startswith("ecos-fast-") for t in os.listdir("/proc/self/task"))
x = np.random.default_rng(0).normal(size=(6000, 32)).astype(np.float32)
want, _ = ecos_fast.kcenter_greedy(x, 50, n_threads=1)
start = time.perf_counter()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    got, _ = ecos_fast.kcenter_greedy(x, 50, n_threads=99999)
    ecos_fast.kcenter_greedy(x, 50, n_threads=99999)  # warned once, not per call
print(json.dumps({"seconds": time.perf_counter() - start, "threads": pool_threads(),
                  "cap": max_threads(), "same": got.tolist() == want.tolist(),
                  "warnings": [f"{type(w.message).__name__}: {w.message}" for w in caught]}))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_huge_thread_count_is_capped() -> None:
    """Before: n_threads=99999 built a 99999-thread pool (~12,900 OS threads before the
    machine gave out) and ran for over ten minutes."""
    out = subprocess.run(
        [sys.executable, "-c", _CAP_CHILD], capture_output=True, text=True, timeout=120,
        check=True,
    )  # fmt: skip
    got = json.loads(out.stdout)
    assert got["same"]
    assert got["threads"] <= got["cap"] == 4 * len(os.sched_getaffinity(0))
    assert got["seconds"] < 30
    assert len(got["warnings"]) == 1
    assert got["warnings"][0].startswith("ThreadsCappedWarning: n_threads=99999 is above 4 x")


def test_cap_applies_to_every_source(monkeypatch: pytest.MonkeyPatch) -> None:
    from ecos_fast import _threads
    from ecos_fast.errors import ThreadsCappedWarning

    monkeypatch.setattr(_threads, "_warned", set())
    cap = _threads.max_threads()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThreadsCappedWarning)
        assert resolve_threads(cap) == cap  # at the cap: no warning
    with pytest.warns(ThreadsCappedWarning, match=f"n_threads={cap + 1} is above"):
        assert resolve_threads(cap + 1) == cap
    monkeypatch.setenv(ENV_VAR, "99999")
    with pytest.warns(ThreadsCappedWarning, match=f"{ENV_VAR}=99999 is above"):
        assert default_threads() == cap
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThreadsCappedWarning)
        assert resolve_threads(None) == cap  # the same count is remarked on once


_POOLS_CHILD = """
import json, os, time, numpy as np, ecos_fast
from ecos_fast._threads import max_threads
def thread_name(tid):
    try:
        with open(f"/proc/self/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:  # the thread exited between listdir and open: it is not alive
        return ""
def pool_threads():
    return sum(thread_name(t).startswith("ecos-fast-") for t in os.listdir("/proc/self/task"))
rng = np.random.default_rng(0)
x = rng.normal(size=(40_000, 64)).astype(np.float32)  # large enough to use the pool
counts = list(range(2, max_threads() + 1))
for n in counts:
    ecos_fast.assign(x, x[:8], n_threads=n)
deadline = time.time() + 10
while pool_threads() > sum(counts[-4:]) and time.time() < deadline:
    time.sleep(0.05)  # evicted pools' workers exit asynchronously
print(json.dumps({"counts": counts, "threads": pool_threads()}))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
@pytest.mark.skipif(4 * len(os.sched_getaffinity(0)) < 6, reason="too few CPUs for 5 pools")
def test_pool_cache_keeps_at_most_four_pools() -> None:
    """Before: a pool per distinct count, never freed (2+3+...+cap threads alive)."""
    out = subprocess.run(
        [sys.executable, "-c", _POOLS_CHILD], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert len(got["counts"]) > 4
    assert got["threads"] <= sum(got["counts"][-4:]) < sum(got["counts"])
