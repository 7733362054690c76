"""Ctrl-C and progress in the long kernels (issue 14, item 7).

Before: the core ran k-means with the GIL released and never looked at signals, so
SIGINT acted only once the whole call returned (about 8 s on the issue's pool), and
the ``sketch`` bar sat at ``0/3`` for the whole of k-means. Now the waiting thread
runs Python's signal handlers every 40 ms and the kernel stops within one row block.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import ecos_fast
import numpy as np
import pytest
from ecos_fast import _core
from ecos_fast._cli_output import EXIT_INTERRUPTED, INTERRUPTED_MESSAGE
from ecos_fast._progress import report_progress

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# A kernel that runs far longer than the test waits: tol=0 stops only once no centroid
# moves at all (the old core took 7.5 s for 60,000 x 16 and k=200 here; this is more).
_LONG_KMEANS = textwrap.dedent(
    """
    import sys, time, numpy as np, ecos_fast
    x = np.random.default_rng(0).normal(size=(200_000, 32)).astype(np.float32)
    print("ready", flush=True)
    t = time.perf_counter()
    try:
        ecos_fast.kmeans(x, 500, max_iter=100_000, tol=0.0, n_threads={threads})
    except KeyboardInterrupt:
        print("interrupted", time.perf_counter() - t, flush=True)
        sys.exit(130)
    print("finished", flush=True)
    """
)


# Exit code 130 alone proves the kernel stopped on the signal (a finished run exits 0);
# the bound only catches a stop that waits for the whole call. The latency itself
# (0.06-0.22 s measured, issue 14's target 0.5 s) is a figure of the closing notes, not a
# timed assertion: a shared CI machine under load stretches any wall-clock bound.
LATENCY_BOUND = 3.0


def _sigint_default() -> None:
    """In the child, before Python starts: SIGINT back to its default disposition, so
    Python installs its KeyboardInterrupt handler. A shell that starts a job in the
    background (``make test &``, nohup) hands its children SIGINT *ignored*, and Python
    keeps an ignored SIGINT ignored: the interrupt would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _popen(args: list[str], **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(args, preexec_fn=_sigint_default, **kwargs)  # type: ignore[call-overload]


def _interrupt_after(proc: subprocess.Popen[str], delay: float) -> float:
    """Send SIGINT ``delay`` s after the child says it is ready; the seconds to exit."""
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    assert proc.poll() is None, "the child finished before the interrupt"
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    return time.perf_counter() - sent


@pytest.mark.parametrize("threads", [1, 2])
def test_ctrl_c_stops_kmeans_within_half_a_second(threads: int) -> None:
    """Before: KeyboardInterrupt came only after the whole kmeans call (minutes here)."""
    proc = _popen(
        [sys.executable, "-c", _LONG_KMEANS.format(threads=threads)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    took = _interrupt_after(proc, 1.0)
    out = proc.stdout.read() if proc.stdout else ""
    assert proc.returncode == 130, (out, proc.stderr.read() if proc.stderr else "")
    assert out.startswith("interrupted")
    assert took < LATENCY_BOUND


def test_ctrl_c_stops_kcenter() -> None:
    code = textwrap.dedent(
        """
        import sys, numpy as np, ecos_fast
        x = np.random.default_rng(0).normal(size=(400_000, 64)).astype(np.float32)
        print("ready", flush=True)
        try:
            ecos_fast.kcenter_greedy(x, 399_000, n_threads=2)
        except KeyboardInterrupt:
            sys.exit(130)
        """
    )
    proc = _popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    took = _interrupt_after(proc, 1.0)
    assert proc.returncode == 130
    assert took < LATENCY_BOUND


def test_ctrl_c_stops_assign() -> None:
    """The nearest-centroid pass of respond and select (a long one: 300k rows, 20k centroids)."""
    code = textwrap.dedent(
        """
        import sys, numpy as np, ecos_fast
        rng = np.random.default_rng(0)
        x = rng.normal(size=(300_000, 32)).astype(np.float32)
        c = rng.normal(size=(20_000, 32)).astype(np.float32)
        print("ready", flush=True)
        try:
            ecos_fast.assign(x, c, n_threads=2)
        except KeyboardInterrupt:
            sys.exit(130)
        """
    )
    proc = _popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    took = _interrupt_after(proc, 1.0)
    assert proc.returncode == 130
    assert took < LATENCY_BOUND


def test_sketch_interrupted_exits_130_and_writes_nothing(tmp_path: Path) -> None:
    """``ecos-fast sketch`` under SIGINT: exit 130, the message, no centroid file."""
    pool = tmp_path / "pool.npy"
    rng = np.random.default_rng(1)
    np.save(pool, rng.normal(size=(300_000, 16)).astype(np.float32))
    out = tmp_path / "centroids.safetensors"
    # 1000 clusters: seeding and Lloyd over 256,000 training rows take far longer
    # than the 2 s the test waits, so the run is still in k-means when the signal comes.
    script = textwrap.dedent(
        f"""
        import sys
        from ecos_fast.cli import run
        print("ready", flush=True)
        sys.exit(run(["sketch", {str(pool)!r}, "-o", {str(out)!r}, "-k", "1000",
                      "--max-iter", "1000", "--threads", "2"]))
        """
    )
    proc = _popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=tmp_path,
    )  # fmt: skip
    took = _interrupt_after(proc, 2.0)
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == EXIT_INTERRUPTED == 130, err
    assert INTERRUPTED_MESSAGE in err
    assert "Traceback" not in err
    assert took < LATENCY_BOUND
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool.npy"]  # no file, no temp


def test_progress_reports_every_iteration_and_results_are_unchanged() -> None:
    x = np.random.default_rng(2).normal(size=(30_000, 16)).astype(np.float32)
    plain = ecos_fast.kmeans(x, 40, max_iter=12, tol=0.0, n_threads=2)
    seen: list[tuple[str, int, int]] = []
    with report_progress(lambda what, done, total: seen.append((what, done, total))):
        watched = ecos_fast.kmeans(x, 40, max_iter=12, tol=0.0, n_threads=2)
        sel, radii = ecos_fast.kcenter_greedy(x, 300, n_threads=2)
    np.testing.assert_array_equal(watched.centroids, plain.centroids)
    np.testing.assert_array_equal(watched.labels, plain.labels)
    np.testing.assert_array_equal(watched.inertia_history, plain.inertia_history)
    km = [s for s in seen if s[0] == "k-means"]
    assert km[-1] == ("k-means", plain.n_iter, 12) and plain.n_iter == 12
    assert [d for _, d, _ in km] == sorted({d for _, d, _ in km})  # increasing, no repeats
    kc = [s for s in seen if s[0] == "k-center"]
    assert kc[-1] == ("k-center", 300, 300)
    want_sel, want_radii = ecos_fast.kcenter_greedy(x, 300, n_threads=2)
    np.testing.assert_array_equal(sel, want_sel)
    np.testing.assert_array_equal(radii, want_radii)


def test_a_progress_callback_that_raises_stops_the_kernel() -> None:
    x = np.random.default_rng(3).normal(size=(50_000, 16)).astype(np.float32)

    def stop(done: int) -> None:
        raise RuntimeError(f"stop at {done}")

    t = time.perf_counter()
    with pytest.raises(RuntimeError, match="stop at"):
        _core.kmeans(x, 100, 100_000, 0.0, 0, 2, progress=stop)
    assert time.perf_counter() - t < 5.0  # not the 100,000 iterations


def test_sketch_shows_a_kmeans_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: the bar said sketch 0/3 until k-means was over; now k-means has its own."""
    from ecos_fast import _cli_output
    from ecos_fast.cli import run

    monkeypatch.setattr(_cli_output.State, "progress", property(lambda self: True))
    pool = tmp_path / "pool.npy"
    np.save(pool, np.random.default_rng(4).normal(size=(3000, 8)).astype(np.float32))
    assert run(["sketch", str(pool), "-o", str(tmp_path / "c.safetensors"), "-k", "20"]) == 0
    err = capsys.readouterr().err
    assert "k-means" in err and "sketch" in err


def test_interrupt_constant_is_documented() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    assert "| 130 |" in doc and "Ctrl-C" in doc


def test_the_interrupted_kernel_error_is_a_keyboard_interrupt() -> None:
    with pytest.raises(KeyboardInterrupt, match="interrupted"):
        _core._raise_kernel_error("interrupted", "")


# The within-cluster selection kernels (kcenter_clusters, nearest_in_clusters): before,
# they ran on the plain path and SIGINT waited for the whole K-Center (7.4 s for this
# pool's select with 2 threads). A mixture of 8 tight clusters, every one with a quota.
_SELECT_SETUP = textwrap.dedent(
    """
    import math, sys, numpy as np, ecos_fast
    rng = np.random.default_rng(0)
    means = rng.normal(0, 4, (8, 16))
    pool = (means[rng.integers(0, 8, 100_000)] + rng.normal(0, 1, (100_000, 16))).astype(np.float32)
    private = (means[rng.integers(0, 8, 2000)] + rng.normal(0, 1, (2000, 16))).astype(np.float32)
    """
)


def test_ctrl_c_stops_select_inside_the_within_cluster_kcenter() -> None:
    code = _SELECT_SETUP + textwrap.dedent(
        """
        cents = ecos_fast.fit_centroids(pool, 8, seed=0)
        sk = ecos_fast.Sketch.join(cents, ecos_fast.respond(private, cents, math.inf, 1e-5))
        print("ready", flush=True)
        try:
            ecos_fast.select(pool, sk, 20_000, within="kcenter", n_threads=2)
        except KeyboardInterrupt:
            sys.exit(130)
        print("finished", flush=True)
        """
    )
    proc = _popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        took = _interrupt_after(proc, 1.0)
    finally:
        proc.kill()
    assert proc.returncode == 130, proc.stderr.read() if proc.stderr else ""
    assert took < LATENCY_BOUND


def test_cli_select_interrupted_exits_130_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "sel.npy"
    script = _SELECT_SETUP + textwrap.dedent(
        f"""
        from ecos_fast.cli import run
        np.save("pool.npy", pool)
        np.save("private.npy", private)
        assert run(["-q", "sketch", "pool.npy", "-o", "c.safetensors", "-k", "8"]) == 0
        assert run(["-q", "respond", "c.safetensors", "private.npy", "-o", "r.safetensors",
                    "--epsilon", "1e6"]) == 0
        print("ready", flush=True)
        sys.exit(run(["select", "pool.npy", "c.safetensors", "r.safetensors", "-b", "20000",
                      "--within", "kcenter", "-o", {str(out)!r}, "--threads", "2"]))
        """
    )
    proc = _popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        took = _interrupt_after(proc, 1.0)
    finally:
        proc.kill()
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == EXIT_INTERRUPTED == 130, err
    assert INTERRUPTED_MESSAGE in err
    assert "Traceback" not in err
    assert took < LATENCY_BOUND
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "c.safetensors", "pool.npy", "private.npy", "r.safetensors",
    ]  # fmt: skip


def _clusters(n: int, r: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    labels = rng.integers(0, r, n)
    members = np.argsort(labels, kind="stable").astype(np.int64)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=r))]).astype(np.int64)
    return x, indptr, members


def test_within_cluster_kernels_give_the_same_result_on_the_controlled_path() -> None:
    """A progress callback forces the controlled path: same picks, every step counted."""
    x, indptr, members = _clusters(20_000, 12, 5)
    quotas = np.minimum(np.diff(indptr), 40).astype(np.int64)
    quotas[3] = 0
    first = np.full(12, -1, dtype=np.int64)
    first[5] = members[indptr[5] + 7]
    for threads in (1, 2):
        seen: list[int] = []
        plain = _core.kcenter_clusters(x, indptr, members, quotas, first, threads)
        watched = _core.kcenter_clusters(
            x, indptr, members, quotas, first, threads, progress=seen.append
        )
        np.testing.assert_array_equal(watched, plain)
        assert seen and seen[-1] == int(quotas.sum()) == plain.shape[0]
        d2 = np.random.default_rng(6).random(20_000).astype(np.float32)
        counts = np.arange(12, dtype=np.int64) * 30
        seen = []
        p_ip, p_rows = _core.nearest_in_clusters(d2, indptr, members, counts, threads)
        w_ip, w_rows = _core.nearest_in_clusters(
            d2, indptr, members, counts, threads, progress=seen.append
        )
        np.testing.assert_array_equal(w_ip, p_ip)
        np.testing.assert_array_equal(w_rows, p_rows)
        assert seen and seen[-1] == 12


def test_a_progress_callback_that_raises_stops_kcenter_clusters() -> None:
    x, indptr, members = _clusters(200_000, 4, 7)
    quotas = np.full(4, 40_000, dtype=np.int64)

    def stop(done: int) -> None:
        raise RuntimeError(f"stop at {done}")

    t = time.perf_counter()
    with pytest.raises(RuntimeError, match="stop at"):
        _core.kcenter_clusters(x, indptr, members, quotas, np.full(4, -1), 2, progress=stop)
    assert time.perf_counter() - t < 2.0  # not the 160,000 picks
