"""pytest set-up for benches/: see common.py for the workloads and helpers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import data


@pytest.fixture(scope="session", autouse=True)
def _workload_files() -> None:
    """Write the data files (once per size) before anything is timed."""
    data.ensure(common.data_sizes())
