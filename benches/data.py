"""Benchmark workloads: seeded float32 Gaussian mixtures, cached as ``.npy`` and memmapped.

The pool is 64 in-distribution components of unequal sizes (Dirichlet weights) and
unequal spreads, plus a few far-away "out-of-distribution" components (0.5 % of the
rows) so that proximity matters, as in ECOS's cloud pools.

Rows are i.i.d. and generated in fixed chunks of ``CHUNK`` rows, each from its own
seeded stream, so a file of ``n`` rows is exactly the first ``n`` rows of any larger
file with the same ``(n_features, seed)``. :func:`mixture` therefore serves a prefix
of the largest file already on disk instead of writing a new one: the 200k x 512
workloads read the first 200k rows of the 1M x 512 pool.

Files live in ``$ECOS_BENCH_DIR`` (default ``/tmp/ecos-bench``); they are written to a
temporary name and renamed, so an interrupted run never leaves a truncated file.
Results that are expensive to recompute (float64 reference labels) are cached beside
them by :func:`cached`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

VERSION = 1  # bump when the generator changes, so stale files are not reused
CHUNK = 65_536
N_COMPONENTS = 64
N_OOD = 4
OOD_FRACTION = 0.005

_NAME = re.compile(r"mix_v(\d+)_d(\d+)_s(\d+)_n(\d+)\.npy$")


def bench_dir() -> Path:
    """The cache folder (created on first use)."""
    path = Path(os.environ.get("ECOS_BENCH_DIR", "/tmp/ecos-bench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def components(
    n_features: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Means (float32), per-component spreads, weights and an is-OOD mask."""
    rng = np.random.default_rng([seed, n_features, 0xC0])
    k = N_COMPONENTS + N_OOD
    means = rng.standard_normal((k, n_features)).astype(np.float32)
    # OOD components sit ~5x farther from the origin than the in-distribution ones.
    means[N_COMPONENTS:] *= 5.0
    spreads = np.exp(rng.uniform(np.log(0.15), np.log(0.6), size=k)).astype(np.float32)
    w_in = rng.dirichlet(np.full(N_COMPONENTS, 0.7)) * (1.0 - OOD_FRACTION)
    w_ood = rng.dirichlet(np.ones(N_OOD)) * OOD_FRACTION
    weights = np.concatenate([w_in, w_ood])
    is_ood = np.arange(k) >= N_COMPONENTS
    return means, spreads, weights / weights.sum(), is_ood


def _chunk(c: int, n_features: int, seed: int, means, spreads, weights) -> np.ndarray:
    rng = np.random.default_rng([seed, n_features, c])
    labels = rng.choice(len(weights), size=CHUNK, p=weights)
    z = rng.standard_normal((CHUNK, n_features), dtype=np.float32)
    z *= spreads[labels, None]
    z += means[labels]
    return z


def _path(n_samples: int, n_features: int, seed: int) -> Path:
    return bench_dir() / f"mix_v{VERSION}_d{n_features}_s{seed}_n{n_samples}.npy"


def _largest_on_disk(n_features: int, seed: int) -> tuple[int, Path] | None:
    best = None
    for p in bench_dir().glob(f"mix_v{VERSION}_d{n_features}_s{seed}_n*.npy"):
        m = _NAME.search(p.name)
        if m and (best is None or int(m.group(4)) > best[0]):
            best = (int(m.group(4)), p)
    return best


def generate(n_samples: int, n_features: int, seed: int = 0) -> Path:
    """Write the ``n_samples x n_features`` file (if missing) and return its path."""
    path = _path(n_samples, n_features, seed)
    if path.exists():
        return path
    means, spreads, weights, _ = components(n_features, seed)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_samples, n_features))
    for c, start in enumerate(range(0, n_samples, CHUNK)):
        stop = min(start + CHUNK, n_samples)
        out[start:stop] = _chunk(c, n_features, seed, means, spreads, weights)[: stop - start]
    out.flush()
    del out
    os.replace(tmp, path)
    return path


def mixture(n_samples: int, n_features: int, seed: int = 0) -> np.memmap:
    """The first ``n_samples`` rows of the mixture, read-only through ``np.memmap``."""
    found = _largest_on_disk(n_features, seed)
    path = found[1] if found and found[0] >= n_samples else generate(n_samples, n_features, seed)
    full = np.load(path, mmap_mode="r")
    return full[:n_samples]


def ensure(sizes: dict[int, int], seed: int = 0) -> None:
    """Generate, once, the largest file each ``n_features`` needs (``{d: n_max}``)."""
    for d, n in sizes.items():
        found = _largest_on_disk(d, seed)
        if not found or found[0] < n:
            generate(n, d, seed)


def sample_rows(n_samples: int, size: int, seed: int) -> np.ndarray:
    """Sorted distinct row indices, seeded (initial centroids, client samples)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_samples, size=size, replace=False))


def cached(key: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``compute()`` once per key; arrays stored in ``<bench_dir>/ref_<key>.npz``."""
    path = bench_dir() / f"ref_v{VERSION}_{key}.npz"
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    result = compute()
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **result)
    os.replace(tmp, path)
    return result


def client_samples(
    n_samples: int, n_features: int, seed: int = 0, n_components: int = 6
) -> np.ndarray:
    """A client's private features: the pool's mixture restricted to a few components.

    ``n_components`` in-distribution components (the client's domain) plus one of the
    out-of-distribution ones, so the selection must find both.
    """
    means, spreads, _, is_ood = components(n_features, seed)
    rng = np.random.default_rng([seed, n_features, 0xC1])
    chosen = np.concatenate(
        [
            rng.choice(np.flatnonzero(~is_ood), size=n_components, replace=False),
            rng.choice(np.flatnonzero(is_ood), size=1),
        ]
    )
    labels = rng.choice(chosen, size=n_samples)
    z = rng.standard_normal((n_samples, n_features), dtype=np.float32)
    z *= spreads[labels, None]
    z += means[labels]
    return z
