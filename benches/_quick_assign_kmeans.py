"""Quick ratios for assignment and k-means at the anchor shapes (2 threads).

Not the benchmark suite: a one-off check. Data are generated once into /tmp
and memory-mapped. Usage: python benches/_quick_assign_kmeans.py [assign|kmeans|pp|all]
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
import ecos_fast
import numpy as np
from ecos_fast import _core
from threadpoolctl import threadpool_info, threadpool_limits

T = 2
PEAK = 230.0


def data(n: int, d: int, seed: int = 0) -> np.ndarray:
    path = f"/tmp/k1_x_{n}x{d}.npy"
    if not os.path.exists(path):
        rng = np.random.default_rng(seed)
        means = rng.normal(scale=4.0, size=(64, d)).astype(np.float32)
        x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
        for s in range(0, n, 65536):
            m = min(65536, n - s)
            x[s : s + m] = means[rng.integers(0, 64, m)] + rng.normal(size=(m, d)).astype(
                np.float32
            )
        x.flush()
        del x
    return np.load(path, mmap_mode="r")


def best(f, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def numpy_assign(x: np.ndarray, c: np.ndarray, chunk: int = 16384):
    cn = (c * c).sum(1)
    lab = np.empty(len(x), np.int64)
    dist = np.empty(len(x), np.float32)
    for s in range(0, len(x), chunk):
        xb = np.asarray(x[s : s + chunk])
        g = xb @ c.T
        g *= -2
        g += cn
        lab[s : s + chunk] = a = g.argmin(1)
        dist[s : s + chunk] = g[np.arange(len(a)), a] + (xb * xb).sum(1)
    return lab, dist


def bench_assign(n: int, d: int, k: int, reps: int) -> None:
    x = data(n, d)
    xr = np.ascontiguousarray(x)  # peers get RAM-resident data; so do we
    c = np.ascontiguousarray(xr[np.random.default_rng(1).choice(n, k, replace=False)])
    fl = 2.0 * n * d * k / 1e9
    res = {}
    ours = ecos_fast.assign(xr, c, n_threads=T)
    res["ecos_fast"] = best(lambda: ecos_fast.assign(xr, c, n_threads=T), reps)
    with threadpool_limits(T):
        lab_np, _ = numpy_assign(xr, c)
        res["numpy"] = best(lambda: numpy_assign(xr, c), reps)
    agree = {"numpy": float((lab_np == ours[0]).mean())}
    try:
        import faiss

        faiss.omp_set_num_threads(T)
        idx = faiss.IndexFlatL2(d)
        idx.add(c)
        _, fl_lab = idx.search(xr, 1)
        res["faiss"] = best(lambda: idx.search(xr, 1), reps)
        agree["faiss"] = float((fl_lab[:, 0] == ours[0]).mean())
    except ImportError:
        pass
    print(f"assign {n}x{d} k={k} ({fl:.1f} GFLOP), simd={_core.build_info()['simd']}")
    for name, t in res.items():
        print(
            f"  {name:10s} {t:7.3f} s  {fl / t:6.1f} GFLOP/s ({100 * fl / t / PEAK:4.1f}% peak)"
            f"  ecos_fast speed-up x{t / res['ecos_fast']:.2f}"
        )
    print(f"  label agreement with ecos_fast: {agree}")


def bench_kmeans(n: int, d: int, k: int, iters: int, sk: bool) -> None:
    x = np.ascontiguousarray(data(n, d))
    init = np.ascontiguousarray(x[np.random.default_rng(2).choice(n, k, replace=False)])
    res = {}
    t = time.perf_counter()
    km = ecos_fast.kmeans(
        x, k, init=init, max_iter=iters, tol=0.0, max_points_per_centroid=None, n_threads=T
    )
    # iters Lloyd iterations + the final full assignment.
    res["ecos_fast"] = (time.perf_counter() - t) / (iters + 1)
    inert = {"ecos_fast": km.inertia}
    try:
        import faiss

        faiss.omp_set_num_threads(T)
        f = faiss.Kmeans(d, k, niter=iters, max_points_per_centroid=10**9, seed=1)
        t = time.perf_counter()
        f.train(x, init_centroids=init)
        res["faiss"] = (time.perf_counter() - t) / iters
        inert["faiss"] = float(f.obj[-1])
    except ImportError:
        pass
    if sk:
        from sklearn.cluster import KMeans

        with threadpool_limits(T):
            m = KMeans(k, init=init, n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd")
            t = time.perf_counter()
            m.fit(x)
            res["sklearn"] = (time.perf_counter() - t) / iters
            inert["sklearn"] = float(m.inertia_)
    fl = 2.0 * n * d * k / 1e9
    print(f"kmeans {n}x{d} k={k}, s/iter (ecos_fast iters={km.n_iter}):")
    for name, s in res.items():
        print(
            f"  {name:10s} {s:7.3f} s/iter  ({fl / s:6.1f} GFLOP/s)  ecos_fast speed-up x{s / res['ecos_fast']:.2f}"
        )
    print(f"  final inertia: {inert}")


def bench_pp(n: int, d: int, k: int) -> None:
    x = np.ascontiguousarray(data(n, d))
    t = time.perf_counter()
    _core.kmeans(x, k, 1, 0.0, 0, T, None, 1, None)
    with_seeding = time.perf_counter() - t
    t = time.perf_counter()
    _core.kmeans(x, k, 1, 0.0, 0, T, np.ascontiguousarray(x[:k]), 1, None)
    seeding = with_seeding - (time.perf_counter() - t)
    brute = n * d * 4 * (k - 1) / 1e9
    print(
        f"k-means++ seeding {n}x{d} k={k}: {seeding:.2f} s "
        f"({seeding / (k - 1) * 1e3:.1f} ms/centre; a brute-force pass per centre "
        f"would stream {brute:.0f} GB)"
    )


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    blas = [(i["internal_api"], i.get("architecture")) for i in threadpool_info()]
    print(f"threads={T}, BLAS={blas}")
    if what in ("assign", "all"):
        bench_assign(200_000, 128, 100, 5)
        bench_assign(1_000_000, 512, 1000, 1)
    if what in ("kmeans", "all"):
        bench_kmeans(200_000, 512, 100, 5, sk=True)
        bench_kmeans(1_000_000, 128, 1000, 3, sk=False)
    if what in ("pp", "all"):
        bench_pp(200_000, 512, 1000)
