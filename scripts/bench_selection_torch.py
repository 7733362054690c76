"""Time a 1M-row Selection used as a torch/numpy index (the README quotes it).

Run: .venv/bin/python scripts/bench_selection_torch.py   (needs torch; best of 3)
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from ecos_fast import Selection


def best(f: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main(n: int = 1_000_000) -> None:
    sel = Selection(np.arange(n)[::-1].copy(), budget=n)
    data = torch.arange(n)
    cases: dict[str, Callable[[], object]] = {
        "np.asarray(sel)": lambda: np.asarray(sel),
        "torch.as_tensor(sel)": lambda: torch.as_tensor(sel),
        "sel.to_torch()": sel.to_torch,
        "tensor[sel]": lambda: data[sel],
        "tensor[sel.to_torch()]": lambda: data[sel.to_torch()],
    }
    for name, f in cases.items():
        print(f"{name:24s} {best(f) * 1e3:10.2f} ms")


if __name__ == "__main__":
    main()
