"""Seeded Gaussian-mixture features for the K-Center benchmark, written once as .npy.

64 components of unequal sizes (Dirichlet weights) and spreads (log-uniform),
plus 4 small far-away components, float32. Written in blocks so that the 1M x 512
matrix (2 GB) never needs a second copy in memory.

Usage: python benches/kcenter_data.py N D PATH [SEED]
"""

from __future__ import annotations

import sys

import numpy as np
from numpy.lib.format import open_memmap


def generate(n: int, d: int, path: str, seed: int = 0, block: int = 65536) -> None:
    rng = np.random.default_rng(seed)
    k = 64
    means = rng.normal(0.0, 4.0, size=(k, d)).astype(np.float32)
    spreads = np.exp(rng.uniform(np.log(0.3), np.log(3.0), size=k)).astype(np.float32)
    far = rng.normal(0.0, 40.0, size=(4, d)).astype(np.float32)
    means = np.concatenate([means, far])
    spreads = np.concatenate([spreads, np.full(4, 0.5, np.float32)])
    w = rng.dirichlet(np.full(k, 0.7))
    w = np.concatenate([w * 0.998, np.full(4, 0.0005)])
    out = open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for start in range(0, n, block):
        m = min(block, n - start)
        comp = rng.choice(len(w), size=m, p=w)
        x = rng.standard_normal((m, d), dtype=np.float32)
        x *= spreads[comp, None]
        x += means[comp]
        out[start : start + m] = x
    out.flush()


if __name__ == "__main__":
    generate(
        int(sys.argv[1]),
        int(sys.argv[2]),
        sys.argv[3],
        int(sys.argv[4]) if len(sys.argv) > 4 else 0,
    )
