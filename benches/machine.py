"""What the machine can do: CPU, SIMD flags, FMA peak, bf16 vs FMA multiply-add rates,
NumPy sgemm, library versions.

The FMA peak comes from ``fma_peak.c`` compiled at run time with the system C compiler
(``gcc -O3 -pthread``; the AVX-512 and AVX2 paths are chosen per function with
``target`` attributes, so the binary also runs, and reports "unsupported", elsewhere).
Each figure is the best of a few short runs: neighbours on a shared machine only ever
make a run slower.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SIMD_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "asimd",
    "sve",
)
PEERS = (
    "numpy",
    "faiss-cpu",
    "scikit-learn",
    "scikit-learn-intelex",
    "daal",
    "threadpoolctl",
    "pytest-benchmark",
)


def cpu_info() -> dict[str, Any]:
    model, family, flags = "unknown", None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model == "unknown":
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
            elif key == "cpu family" and family is None:
                family = value.strip()
    except OSError:
        model = platform.processor() or "unknown"
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "model": model,
        "cpu_family": family,
        "cores": cores,
        "memory_gib": mem_gib,
        "simd": [f for f in SIMD_FLAGS if f in flags],
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def versions() -> dict[str, str]:
    out = {}
    for name in PEERS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def build_info() -> dict[str, str]:
    from ecos_fast import _core

    return {str(k): str(v) for k, v in _core.build_info().items()}


def blas_info() -> list[dict[str, Any]]:
    """threadpoolctl's view of the BLAS/OpenMP libraries loaded (after importing peers)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    for mod in ("faiss", "sklearn.cluster"):
        try:
            __import__(mod)
        except ImportError:
            pass
    keep = ("user_api", "internal_api", "prefix", "version", "architecture", "threading_layer")
    return [{k: i.get(k) for k in keep} for i in threadpool_info()]


def fma_peak(n_threads: int, seconds: float = 0.4, repeats: int = 3) -> dict[str, float | None]:
    """GFLOP/s of the FMA loop for AVX-512 and AVX2 at ``n_threads`` (None: unavailable).

    ``avx512``/``avx2``: per second of each thread's own CPU time, summed over threads,
    so neighbours on a shared machine do not lower it; ``*_wall``: per wall-clock
    second, what this run got."""
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    out: dict[str, float | None] = {"avx512": None, "avx2": None}  # plus *_wall
    if cc is None or platform.machine() not in ("x86_64", "AMD64"):
        return out
    exe = Path(os.environ.get("ECOS_BENCH_DIR", "/tmp/ecos-bench")) / "fma_peak"
    exe.parent.mkdir(parents=True, exist_ok=True)
    src = HERE / "fma_peak.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        res = subprocess.run(
            [cc, "-O3", "-pthread", "-o", str(exe), str(src)],
            check=False,
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            return out
    for key, width in (("avx512", "512"), ("avx2", "256")):
        best = wall = None
        for _ in range(repeats):
            res = subprocess.run(
                [str(exe), str(n_threads), width, str(seconds)],
                check=False,
                capture_output=True,
                text=True,
            )
            try:
                cpu_rate, wall_rate = (float(v) for v in res.stdout.split())
            except ValueError:
                break  # "unsupported"
            best = cpu_rate if best is None else max(best, cpu_rate)
            wall = wall_rate if wall is None else max(wall, wall_rate)
        out[key] = best
        out[f"{key}_wall"] = wall
    return out


def bf16_peak(seconds: float = 0.3, repeats: int = 3) -> dict[str, float] | None:
    """One thread's multiply-add rates (1e9/s of its CPU time) of ``vfmadd231ps`` zmm and
    ``vdpbf16ps`` zmm (``bf16_peak.c``), best of ``repeats``; None without AVX512_BF16 or
    a C compiler. Says whether the assignment's bf16 first pass can pay on this core (the
    compiled core makes the same measurement: ``build_info()["bf16_calibration"]``)."""
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if cc is None or platform.machine() not in ("x86_64", "AMD64"):
        return None
    exe = Path(os.environ.get("ECOS_BENCH_DIR", "/tmp/ecos-bench")) / "bf16_peak"
    exe.parent.mkdir(parents=True, exist_ok=True)
    src = HERE / "bf16_peak.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        res = subprocess.run(
            [cc, "-O3", "-o", str(exe), str(src)], check=False, capture_output=True, text=True
        )
        if res.returncode != 0:
            return None
    f32_best = bf16_best = 0.0
    for _ in range(repeats):
        res = subprocess.run([str(exe), str(seconds)], check=False, capture_output=True, text=True)
        try:
            f32, bf16 = (float(v) for v in res.stdout.split())
        except ValueError:
            return None  # "unsupported"
        f32_best, bf16_best = max(f32_best, f32), max(bf16_best, bf16)
    return {"f32_gmadds": f32_best, "bf16_gmadds": bf16_best}


def sgemm_gflops(n_threads: int, size: int = 4096, repeats: int = 3) -> float:
    """NumPy float32 ``a @ b`` (size x size) GFLOP/s, best of ``repeats``, BLAS capped."""
    from contextlib import nullcontext

    try:
        from threadpoolctl import threadpool_limits

        ctx: Any = threadpool_limits(limits=n_threads, user_api="blas")
    except ImportError:
        ctx = nullcontext()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    best = 0.0
    with ctx:
        a @ b  # warm-up: thread start, page faults
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            best = max(best, 2.0 * size**3 / (time.perf_counter() - t) / 1e9)
    return best


def loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def describe(threads: list[int], quick: bool = False) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": cpu_info(),
        "build_info": build_info(),
        "versions": versions(),
        "blas": blas_info(),
        "loadavg_start": loadavg(),
        "fma_peak": {},
        "sgemm": {},
        "bf16_peak": bf16_peak(seconds=0.1 if quick else 0.3),
    }
    for t in threads:
        info["fma_peak"][t] = fma_peak(t, seconds=0.1 if quick else 0.5)
        info["sgemm"][t] = sgemm_gflops(t, size=1024 if quick else 4096)
    return info
