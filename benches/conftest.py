"""pytest set-up for benches/: see common.py for the workloads and helpers."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import data


@pytest.fixture(scope="session", autouse=True)
def _workload_files() -> None:
    """Write the data files (once per size) before anything is timed."""
    data.ensure(common.data_sizes())


# OpenBLAS worker threads busy-wait for ~0.1 s after each multi-threaded NumPy BLAS call
# (the previous benchmark's baseline or correctness check). A 2-thread ecos-fast call
# started inside that window shares the two cores with them: measured here, 250k x 512
# vs 100 took 130-150 ms right after a BLAS call against 97-103 ms after a 0.1-0.25 s
# pause (or with BLAS capped at one thread). Every full-size benchmark, baselines
# included, starts after such a pause.
_BLAS_SPIN_PAUSE_S = 0.25


@pytest.fixture(autouse=True)
def _let_blas_threads_park() -> None:
    if common.FULL:
        time.sleep(_BLAS_SPIN_PAUSE_S)
