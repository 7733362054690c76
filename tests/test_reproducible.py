"""Exchange files are byte-reproducible: the same inputs write the same bytes (issue 14 item 9).

safetensors keeps the file's ``__metadata__`` in a Rust hash map whose iteration order
is seeded per map, so the same save could write ``{"ecos":…,"sha256":…}`` or
``{"sha256":…,"ecos":…}``: two identical ``sketch`` runs gave files with different
SHA-256. :func:`ecos_fast.exchange._canonical` rewrites the header with sorted keys.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from ecos_fast import Centroids, respond
from ecos_fast.cli import run
from ecos_fast.errors import ExtractorUncheckedWarning
from ecos_fast.exchange import load_centroids, load_response, save_centroids, save_response

pytest.importorskip("safetensors")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _header(path: Path) -> bytes:
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return data[8 : 8 + n]


@pytest.fixture
def centroids() -> Centroids:
    rng = np.random.default_rng(0)
    return Centroids(
        rng.normal(size=(5, 3)).astype(np.float32),
        n_pool=40,
        seed=0,
        extractor_fingerprint="ab" * 32,
    )


def test_identical_saves_write_identical_bytes(tmp_path: Path, centroids: Centroids) -> None:
    # 16 saves: with the hash-map order the chance that all agree was 2**-15.
    paths = [save_centroids(centroids, tmp_path / f"c{i}.safetensors") for i in range(16)]
    assert len({_digest(p) for p in paths}) == 1
    with pytest.warns(ExtractorUncheckedWarning, match="only the centroids carry"):
        response = respond(np.zeros((4, 3)), centroids, math.inf, 1e-5)
    paths = [save_response(response, tmp_path / f"r{i}.safetensors") for i in range(16)]
    assert len({_digest(p) for p in paths}) == 1


def test_header_is_sorted_compact_json_and_still_loads(
    tmp_path: Path, centroids: Centroids
) -> None:
    path = save_centroids(centroids, tmp_path / "c.safetensors")
    header = _header(path)
    assert len(header) % 8 == 0
    doc = json.loads(header)
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert header.rstrip(b" ") == canonical
    assert list(doc) == sorted(doc) and list(doc["__metadata__"]) == sorted(doc["__metadata__"])
    loaded = load_centroids(path)
    assert loaded.fingerprint == centroids.fingerprint
    assert loaded.extractor_fingerprint == centroids.extractor_fingerprint
    with pytest.warns(ExtractorUncheckedWarning, match="only the centroids carry"):
        response = respond(np.zeros((4, 3)), centroids, math.inf, 1e-5)
    again = load_response(save_response(response, tmp_path / "r.safetensors"), centroids=loaded)
    assert again.noisy_counts.tolist() == response.noisy_counts.tolist()


def test_two_identical_sketch_runs_write_identical_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    np.save(tmp_path / "pool.npy", rng.normal(size=(300, 8)).astype(np.float32))
    digests = set()
    for i in range(8):
        out = tmp_path / f"c{i}.safetensors"
        args = ["--quiet", "sketch", str(tmp_path / "pool.npy"), "-o", str(out)]
        assert run([*args, "--clusters", "6", "--seed", "3"]) == 0
        digests.add(_digest(out))
    assert len(digests) == 1
