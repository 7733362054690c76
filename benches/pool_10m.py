"""Pools beyond RAM (issue 16): the whole cloud side on a 10,000,000 x 512 memmapped pool.

Stand-alone, not part of ``make test`` or ``make bench`` (it writes and reads 20 GB)::

    .venv/bin/python benches/pool_10m.py generate            # writes the pool (20 GB), ~2 min
    .venv/bin/python benches/pool_10m.py run                 # the bench; writes benches/RESULTS-10m.md
    .venv/bin/python benches/pool_10m.py clean               # deletes the pool

Options (both commands): ``--dir`` (default ``$ECOS_POOL10M_DIR`` or ``/work/pool10m``,
outside the repository), ``--n`` rows (default 10,000,000), ``--d`` features (512).
``run`` also takes ``--clusters`` (100), ``--budget`` (10,000), ``--prefix`` (1,000,000:
the in-RAM equality check), ``--full-iters`` (2: Lloyd iterations of the full-pool
k-means), ``--skip-full`` and ``--out``.

The pool is ``benches/data.py``'s seeded Gaussian mixture, written chunk by chunk
(never held in RAM), so its first rows equal ``data.mixture``'s files.

What ``run`` measures, in one process and in this order (see benches/README.md):

1. the pool's pages are dropped from the page cache (``posix_fadvise(DONTNEED)`` on the
   pool file only, so nobody else's cache is touched), then one sequential read: a
   NumPy block sum over the memmap, in blocks of 64 MiB. This is the yardstick.
2. the pool's pages are dropped again, then the cloud side end to end, as a user calls
   it: ``fit_centroids`` (k-means on the default subsample of 256 rows per centroid,
   then one assignment of every row), the client's ``respond`` (its own 2,000 rows),
   ``select`` for the budget, and ``write_report``. Each step's wall time, the bytes
   this process read from the disk (``/proc/self/io`` ``read_bytes``; "passes" = bytes /
   file size) and the peak anonymous memory (``RssAnon`` from ``/proc/self/status``,
   sampled every 20 ms by a thread; ``VmHWM`` would count the pool's file pages).
3. the same pipeline on the first ``--prefix`` rows twice, once memmapped and once
   copied into RAM (``np.array``), with the same seeds: the selections must be equal.
4. k-means on the whole pool (``max_points_per_centroid=None``, ``init_sample`` = the
   default subsample size, ``max_iter=--full-iters``, ``tol=0``): wall time per Lloyd
   iteration from the progress callback, passes and RssAnon.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import data

DEFAULT_DIR = Path(os.environ.get("ECOS_POOL10M_DIR", "/work/pool10m"))
READ_BLOCK = 64 << 20


def pool_path(root: Path, n: int, d: int) -> Path:
    return root / f"mix_v{data.VERSION}_d{d}_s0_n{n}.npy"


# --- generate ----------------------------------------------------------------------------


def generate(root: Path, n: int, d: int) -> Path:
    """Write the ``n x d`` mixture as ``.npy`` chunk by chunk, keeping the page cache clean."""
    path = pool_path(root, n, d)
    if path.exists():
        print(f"{path} exists")
        return path
    root.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    # The header (and a sparse file of the right size) from open_memmap; rows appended by write().
    hdr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, d))
    offset = hdr.offset
    del hdr
    means, spreads, weights, _ = data.components(d, 0)
    t0 = time.perf_counter()
    with open(tmp, "r+b") as f:
        f.seek(offset)
        fd = f.fileno()
        flushed = offset
        for c, start in enumerate(range(0, n, data.CHUNK)):
            stop = min(start + data.CHUNK, n)
            block = data._chunk(c, d, 0, means, spreads, weights)[: stop - start]
            f.write(np.ascontiguousarray(block, dtype="<f4").tobytes())
            pos = f.tell()
            if pos - flushed >= 1 << 30 or stop == n:
                f.flush()
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                flushed = pos
                print(f"  {stop:,} / {n:,} rows, {time.perf_counter() - t0:.0f} s", flush=True)
    os.replace(tmp, path)
    print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t0:.0f} s")
    return path


# --- measuring ----------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def read_bytes() -> int:
    """Bytes this process has caused to be read from storage (``/proc/self/io``)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    return -1


class AnonPeak:
    """Peak ``RssAnon`` (anonymous resident memory: heap, arrays; not the pool's file
    pages) sampled every ``interval`` seconds by a daemon thread; :meth:`lap` returns
    the peak since the previous lap.

    A sample read before a lap but stored after it belongs to the previous step: the
    sampler drops it (``lap`` bumps a generation the sampler checks under a lock), so
    a sample taken just before a large array was freed cannot become the next step's
    "peak"."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak = self.overall = _status_kib("RssAnon")
        self._gen = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """One reading, counted for the current lap only if no lap began meanwhile."""
        gen = self._gen
        v = _status_kib("RssAnon")
        with self._lock:
            self.overall = max(self.overall, v)
            if gen == self._gen:
                self.peak = max(self.peak, v)

    def lap(self) -> int:
        with self._lock:
            v = max(self.peak, _status_kib("RssAnon"))
            self.overall = max(self.overall, v)
            self._gen += 1
            self.peak = _status_kib("RssAnon")
        return v * 1024

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def cached_bytes(path: Path) -> int | None:
    """Bytes of ``path`` in the page cache (util-linux ``fincore``), or None."""
    try:
        out = subprocess.run(
            ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
        return int(out[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def evict(path: Path) -> None:
    """Drop ``path``'s clean pages from the page cache (pages still mapped stay: callers
    drop their memmaps first). Touches no other file's cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def try_drop_caches() -> str:
    try:
        subprocess.run(["sync"], check=True, timeout=120)
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return "allowed (sync; echo 1 > /proc/sys/vm/drop_caches succeeded)"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"refused ({type(exc).__name__}: {exc})"


class Step:
    """Wall time, disk bytes read and peak RssAnon of one step."""

    def __init__(self, name: str, anon: AnonPeak, file_bytes: int, log: list[dict[str, Any]]):
        self.name, self.anon, self.file_bytes, self.log = name, anon, file_bytes, log

    def __enter__(self) -> Step:
        self.anon.lap()
        self.r0, self.t0 = read_bytes(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.t0
        rb = read_bytes() - self.r0
        row = {
            "step": self.name,
            "seconds": wall,
            "read_gb": rb / 1e9,
            "passes": rb / self.file_bytes,
            "rss_anon_mb": self.anon.lap() / 2**20,
            "load": loadavg(),
        }
        self.log.append(row)
        print(json.dumps(row), flush=True)


def block_sum(pool: np.ndarray) -> float:
    """One sequential read: the float32 sum of every 64 MiB block of the memmap."""
    rows = max(1, READ_BLOCK // (pool.shape[1] * pool.itemsize))
    total = 0.0
    for s in range(0, pool.shape[0], rows):
        total += float(pool[s : s + rows].sum(dtype=np.float32))
    return total


def cloud_side(
    ecos_fast: Any,
    pool: np.ndarray,
    private: np.ndarray,
    n_clusters: int,
    budget: int,
    report: Path,
    mk: Any = None,
) -> dict[str, Any]:
    """The cloud side as a user calls it (the client's respond included, on its own rows)."""
    from ecos_fast.report import write_report

    ctx = mk if mk is not None else (lambda name: contextlib.nullcontext())
    with ctx(
        f"sketch: fit_centroids (k-means on {256 * n_clusters:,} sampled rows, then assign all)"
    ):
        cents = ecos_fast.fit_centroids(pool, n_clusters=n_clusters, seed=0)
    with ctx("client: respond (2,000 private rows)"):
        resp = ecos_fast.respond(private, cents, 0.58, 1e-5, seed=0)
    with ctx(f"select (budget {budget:,})"):
        # The sketch's labels (documented: "skips the assignment pass"); the pool is still
        # read once, to check it and to measure the chosen clusters' rows.
        sel = ecos_fast.select(
            pool, ecos_fast.Sketch.join(cents, resp), budget, labels=cents.labels
        )
    with ctx("report (write_report, html)"):
        summary = {
            "method": sel.method, "budget": budget, "n_selected": sel.n_selected,
            "epsilon": resp.epsilon, "delta": resp.delta, "sigma": resp.sigma,
            "threshold": 2.0,
        }  # fmt: skip
        write_report(
            report, pool, sel.indices, summary=summary,
            noisy_counts=resp.noisy_counts, quotas=sel.quotas,
        )  # fmt: skip
    return {"centroids": cents, "response": resp, "selection": sel}


def run(a: argparse.Namespace) -> None:
    import ecos_fast
    from ecos_fast._progress import report_progress

    path = pool_path(a.dir, a.n, a.d)
    if not path.exists():
        sys.exit(f"{path} is missing: run `python benches/pool_10m.py generate` first")
    file_bytes = path.stat().st_size
    info: dict[str, Any] = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "cpu": platform.processor() or "",
        "build": ecos_fast._core.build_info(),
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "pool": str(path),
        "pool_gb": file_bytes / 1e9,
        "load_start": loadavg(),
    }
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            info["cpu"] = line.split(":", 1)[1].strip()
            break
    info["drop_caches"] = try_drop_caches() if a.drop_caches else "not tried (--drop-caches)"
    log: list[dict[str, Any]] = []
    anon = AnonPeak()
    mk = lambda name: Step(name, anon, file_bytes, log)  # noqa: E731
    private = data.client_samples(2000, a.d)
    report_dir = Path(os.environ.get("TMPDIR", "/tmp")) / "pool10m-report"
    report_dir.mkdir(exist_ok=True)

    # 1. the yardstick: one sequential read of the file, cold.
    evict(path)
    info["cached_before_read"] = cached_bytes(path)
    pool = np.load(path, mmap_mode="r")
    with mk("sequential read: NumPy block sum (64 MiB blocks)"):
        block_sum(pool)
    del pool
    read_s = log[-1]["seconds"]

    # 2. the cloud side end to end, cold.
    evict(path)
    info["cached_before_e2e"] = cached_bytes(path)
    anon_before = anon.lap()
    t0, r0 = time.perf_counter(), read_bytes()
    pool = np.load(path, mmap_mode="r")
    out = cloud_side(
        ecos_fast, pool, private, a.clusters, a.budget, report_dir / "r10m.html", mk=mk
    )
    wall = time.perf_counter() - t0
    client_s = next(r["seconds"] for r in log if r["step"].startswith("client"))
    e2e = {
        "seconds": wall - client_s,  # the cloud's steps: the client's respond runs elsewhere
        "client_seconds": client_s,
        "read_gb": (read_bytes() - r0) / 1e9,
        "passes": (read_bytes() - r0) / file_bytes,
        "rss_anon_peak_mb": max(r["rss_anon_mb"] for r in log[1:]),
        "rss_anon_before_mb": anon_before / 2**20,
        "ratio_to_read": (wall - client_s) / read_s,
        "n_selected": out["selection"].n_selected,
        "method": out["selection"].method,
        "load": loadavg(),
    }
    # The CPU side of the same work: the sketch's assignment on rows already in RAM, now.
    rows_ram = np.array(pool[: 1 << 18])
    c = out["centroids"].centroids
    t = time.perf_counter()
    ecos_fast.assign(rows_ram, c)
    gflops = 2.0 * rows_ram.shape[0] * c.shape[0] * a.d / (time.perf_counter() - t) / 1e9
    e2e["assign_gflops_in_ram"] = gflops
    e2e["assign_all_compute_s"] = 2.0 * a.n * c.shape[0] * a.d / gflops / 1e9
    print(json.dumps({"end_to_end": e2e}), flush=True)
    del pool, out, rows_ram

    # 3. the in-RAM equality check on a prefix (memmapped vs np.array copy, same seeds).
    pool = np.load(path, mmap_mode="r")
    pre = pool[: a.prefix]
    with mk(f"prefix {a.prefix:,}: cloud side on the memmap"):
        got_mm = cloud_side(ecos_fast, pre, private, a.clusters, a.budget, report_dir / "p_mm.html")
    ram = np.array(pre)
    with mk(f"prefix {a.prefix:,}: cloud side in RAM (np.array copy)"):
        got_ram = cloud_side(
            ecos_fast, ram, private, a.clusters, a.budget, report_dir / "p_ram.html"
        )
    with mk(f"prefix {a.prefix:,}: select in RAM without labels= (its own assignment)"):
        sk = ecos_fast.Sketch.join(got_ram["centroids"], got_ram["response"])
        own = ecos_fast.select(ram, sk, a.budget)
    prefix = {
        "rows": a.prefix,
        "select_without_labels_equal": bool(
            np.array_equal(own.indices, got_ram["selection"].indices)
        ),
        "centroids_equal": bool(
            np.array_equal(got_mm["centroids"].centroids, got_ram["centroids"].centroids)
        ),
        "labels_equal": bool(
            np.array_equal(got_mm["centroids"].labels, got_ram["centroids"].labels)
        ),
        "selection_equal": bool(
            np.array_equal(got_mm["selection"].indices, got_ram["selection"].indices)
        ),
        "n_selected": got_mm["selection"].n_selected,
    }
    print(json.dumps({"prefix": prefix}), flush=True)
    del pre, ram, got_mm, got_ram, pool

    # 4. k-means on every row (max_points_per_centroid=None), streamed, cold.
    full: dict[str, Any] = {"skipped": bool(a.skip_full)}
    if not a.skip_full:
        evict(path)
        pool = np.load(path, mmap_mode="r")
        marks: list[tuple[int, float, int]] = []

        def hook(what: str, done: int, total: int) -> None:
            if not marks or marks[-1][0] != done:
                marks.append((done, time.perf_counter(), read_bytes()))

        t0, r0 = time.perf_counter(), read_bytes()
        with mk(f"k-means on all {a.n:,} rows ({a.full_iters} Lloyd iterations)"):
            with report_progress(hook):
                km = ecos_fast.fit_centroids(
                    pool, n_clusters=a.clusters, seed=0, max_points_per_centroid=None,
                    init_sample=256 * a.clusters, max_iter=a.full_iters,
                )  # fmt: skip
        t_end, r_end = time.perf_counter(), read_bytes()
        prev_t, prev_r = t0, r0
        iters = []
        for done, t, r in marks:
            iters.append(
                {"iteration": done, "seconds": t - prev_t, "passes": (r - prev_r) / file_bytes}
            )
            prev_t, prev_r = t, r
        full = {
            "iterations": iters,
            "final_assign_s": t_end - prev_t,
            "final_assign_passes": (r_end - prev_r) / file_bytes,
            "seconds": t_end - t0,
            "passes": (r_end - r0) / file_bytes,
            "rss_anon_mb": log[-1]["rss_anon_mb"],
            "n_clusters_nonempty": int(np.unique(km.labels).size),
            "load": loadavg(),
        }
        print(json.dumps({"full_kmeans": full}), flush=True)
        del pool, km
    anon.stop()
    info["load_end"] = loadavg()
    info["rss_anon_overall_mb"] = anon.overall / 1024
    result = {"info": info, "steps": log, "end_to_end": e2e, "prefix": prefix, "full_kmeans": full}
    (report_dir / "pool10m.json").write_text(json.dumps(result, indent=1, default=str))
    if a.out:
        Path(a.out).write_text(markdown(result, a))
        print(f"wrote {a.out}")


def markdown(res: dict[str, Any], a: argparse.Namespace) -> str:
    i, e, p, f = res["info"], res["end_to_end"], res["prefix"], res["full_kmeans"]
    read = res["steps"][0]
    ok_ratio = e["ratio_to_read"] <= 2.5
    ok_mem = e["rss_anon_peak_mb"] <= 1.5 * 1024
    ok_eq = (
        p["selection_equal"]
        and p["centroids_equal"]
        and p["labels_equal"]
        and p["select_without_labels_equal"]
    )
    lines = [
        f"## 10,000,000 x 512 memmapped pool, end to end (issue 16), {i['date_utc']} UTC",
        "",
        f"`benches/pool_10m.py run` on {i['cpu']}, {i['cores']} cores, {i['memory_gib']} GiB RAM, "
        f"SIMD path `{i['build'].get('simd')}`; pool {i['pool_gb']:.2f} GB of float32 "
        f"({a.n:,} x {a.d}) read through `np.memmap`; R = {a.clusters}, budget {a.budget:,}. "
        f"Load average {i['load_start']} at the start, {i['load_end']} at the end (shared machine). "
        f"Each timed phase starts with the pool's pages dropped from the page cache "
        f"(`posix_fadvise(DONTNEED)` on the pool file; fincore: "
        f"{i['cached_before_read']} and {i['cached_before_e2e']} bytes cached before the read and "
        f"the end-to-end run); `drop_caches`: {i['drop_caches']}. Passes = bytes this process read "
        f"from the disk (`/proc/self/io`) / file size; RssAnon = peak anonymous resident memory "
        f"(sampled every 20 ms; file pages of the pool not counted).",
        "",
        "| step | seconds | read from disk (GB) | passes | peak RssAnon (MB) | load |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in res["steps"]:
        lines.append(
            f"| {r['step']} | {r['seconds']:.1f} | {r['read_gb']:.2f} | {r['passes']:.2f} | "
            f"{r['rss_anon_mb']:.0f} | {r['load']} |"
        )
    lines += [
        "",
        f"- **End to end, cloud side** (sketch + select + report; the client's respond, "
        f"{e['client_seconds']:.1f} s, not counted): {e['seconds']:.1f} s = "
        f"**{e['ratio_to_read']:.2f}x** the sequential read ({read['seconds']:.1f} s, "
        f"{i['pool_gb'] / read['seconds']:.2f} GB/s) — target <= 2.5x: "
        f"{'met' if ok_ratio else 'NOT met'}; {e['passes']:.2f} passes over the file; "
        f"peak RssAnon **{e['rss_anon_peak_mb']:.0f} MB** (before: {e['rss_anon_before_mb']:.0f} MB) "
        f"— target <= 1.5 GB: {'met' if ok_mem else 'NOT met'}; {e['n_selected']:,} rows selected "
        f"({e['method']}). Compute yardstick, same run: `assign` of 262,144 rows already in "
        f"RAM against the R centroids ran at {e['assign_gflops_in_ram']:.0f} GFLOP/s, so the "
        f"sketch's one assignment of all rows ({2 * a.n * a.clusters * a.d / 1e12:.2f} TFLOP) "
        f"needs {e['assign_all_compute_s']:.0f} s of CPU at this load, whatever the disk does.",
        f"- **Prefix check** ({p['rows']:,} rows, memmap vs in-RAM copy, same seeds): centroids "
        f"{'equal' if p['centroids_equal'] else 'DIFFER'}, labels "
        f"{'equal' if p['labels_equal'] else 'DIFFER'}, selection "
        f"{'equal' if p['selection_equal'] else 'DIFFERS'} ({p['n_selected']:,} rows), and "
        f"{'equal' if p['select_without_labels_equal'] else 'NOT equal'} to `select` "
        f"without `labels=` (its own assignment) — "
        f"{'correct' if ok_eq else 'WRONG'}.",
    ]
    if not f.get("skipped"):
        its = "; ".join(
            f"iteration {it['iteration']}: {it['seconds']:.1f} s, {it['passes']:.2f} passes"
            for it in f["iterations"]
        )
        lines.append(
            f"- **k-means on every row** (`max_points_per_centroid=None`, R = {a.clusters}, "
            f"k-means++ on {256 * a.clusters:,} sampled rows, {a.full_iters} Lloyd iterations): "
            f"{f['seconds']:.1f} s, {f['passes']:.2f} passes, peak RssAnon {f['rss_anon_mb']:.0f} MB; "
            f"{its} (iteration 1 includes the checked max-|value| pass and the seeding); final "
            f"assignment {f['final_assign_s']:.1f} s, {f['final_assign_passes']:.2f} passes; "
            f"{f['n_clusters_nonempty']} non-empty clusters."
        )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("cmd", choices=["generate", "run", "clean"])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--budget", type=int, default=10_000)
    ap.add_argument("--prefix", type=int, default=1_000_000)
    ap.add_argument("--full-iters", type=int, default=2)
    ap.add_argument("--skip-full", action="store_true")
    ap.add_argument(
        "--drop-caches", action="store_true", help="also try the global drop_caches once"
    )
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "RESULTS-10m.md"))
    a = ap.parse_args()
    if a.cmd == "generate":
        generate(a.dir, a.n, a.d)
    elif a.cmd == "clean":
        path = pool_path(a.dir, a.n, a.d)
        path.unlink(missing_ok=True)
        print(f"removed {path}")
    else:
        run(a)


if __name__ == "__main__":
    main()
