"""The transport-free roles of ecos_fast.flower (no flwr needed): bytes in, bytes out."""

from __future__ import annotations

import math
from pathlib import Path

import ecos_fast
import numpy as np
import pytest
from ecos_fast.errors import ExchangeFileError, InvalidInputError, SketchMismatchError
from ecos_fast.flower import (
    ClientConfig,
    accept,
    answer,
    centroids_from_bytes,
    centroids_to_bytes,
    response_to_bytes,
    union_response,
)


def _cents(n: int = 3) -> ecos_fast.Centroids:
    return ecos_fast.Centroids(np.eye(n, dtype=np.float32) * 5, n_pool=10, seed=0)


def test_bytes_round_trip_and_garbage() -> None:
    c = _cents()
    assert centroids_from_bytes(centroids_to_bytes(c)).fingerprint == c.fingerprint
    with pytest.raises(ExchangeFileError):
        centroids_from_bytes(b"junk")
    with pytest.raises(ExchangeFileError, match="expected the exchange file's bytes"):
        centroids_from_bytes("not bytes")
    r = ecos_fast.respond(np.eye(3) * 5, c, 1.0, 1e-5, seed=0)
    assert np.array_equal(accept(response_to_bytes(r), c).noisy_counts, r.noisy_counts)
    with pytest.raises(SketchMismatchError):
        accept(response_to_bytes(r), _cents(4))
    with pytest.raises(ExchangeFileError):
        accept(centroids_to_bytes(c), c)  # a centroid file is not a response


def test_union_sums_counts_and_noise_and_refuses_mixed_inputs() -> None:
    c = _cents()
    r1 = ecos_fast.respond(np.eye(3) * 5, c, 1.0, 1e-5, seed=1)
    r2 = ecos_fast.respond(np.eye(3) * 5, c, 0.5, 1e-6, seed=2)
    u = union_response([r1, r2])
    assert np.allclose(u.noisy_counts, r1.noisy_counts + r2.noisy_counts)
    assert math.isclose(u.sigma, math.hypot(r1.sigma, r2.sigma))
    assert (u.epsilon, u.delta) == (1.0, 1e-5)
    other = ecos_fast.respond(np.eye(4) * 5, _cents(4), 1.0, 1e-5, seed=0)
    with pytest.raises(InvalidInputError, match="different centroids"):
        union_response([r1, other])
    replace = ecos_fast.respond(np.eye(3) * 5, c, 1.0, 1e-5, relation="replace_one", seed=0)
    with pytest.raises(InvalidInputError, match="different relations"):
        union_response([r1, replace])
    with pytest.raises(InvalidInputError, match="at least one"):
        union_response([])
    soft = ecos_fast.respond(np.eye(3) * 5, c, 1.0, 1e-5, seed=3, neighbours=2)
    with pytest.raises(InvalidInputError, match="different numbers of neighbours"):
        union_response([r1, soft])
    assert union_response([soft, soft]).neighbours == 2


def test_the_clients_answer_counts_at_its_configured_neighbours(tmp_path: Path) -> None:
    c = _cents()
    np.save(tmp_path / "private.npy", (np.eye(3) * 5).astype(np.float32))
    cfg = ClientConfig(
        tmp_path / "private.npy", tmp_path / "ledger.sqlite", 1.0, 1e-5, 2.0, seed=4, neighbours=2
    )
    got = accept(answer(centroids_to_bytes(c), cfg), c)
    want = ecos_fast.respond(np.eye(3) * 5, c, 1.0, 1e-5, seed=4, neighbours=2)
    assert got.neighbours == 2
    assert np.array_equal(got.noisy_counts, want.noisy_counts)
