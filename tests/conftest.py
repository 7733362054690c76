"""Shared test set-up: every test starts from the same process-wide state."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _fresh_thread_cap_remarks() -> Iterator[None]:
    """The thread cap remarks once per (source, count) and process; without a reset a
    test that expects the remark fails whenever an earlier test asked for the same count
    (tests/test_errors.py after tests/test_cli_framework.py did, in a full run)."""
    from ecos_fast import _threads

    saved = set(_threads._warned)
    _threads._warned.clear()
    yield
    _threads._warned.clear()
    _threads._warned.update(saved)
