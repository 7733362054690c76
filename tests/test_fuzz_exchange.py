"""Fuzzing the exchange readers: mutated valid files give success or an EcosError, nothing else.

Each example starts from a valid centroid or response file (signed or not) and applies a
few mutations drawn by hypothesis: bit flips, truncation, insertions, deletions,
overwrites, a changed header length, and edits of the JSON header itself (a metadata
value replaced by another JSON value, a tensor's dtype or shape changed, the checksum
recomputed so that the edit reaches the checks behind it, nesting added). The mutated
bytes go to ``load_centroids``, ``load_response`` (with and without centroids, with and
without a verify key), ``file_kind``, ``signature_of`` and ``ecos-fast inspect``: the
readers may accept the file or raise an :class:`EcosError` (the CLI: exit 0 or 3); any
other exception is a bug.

The default run is small and derandomized (80 fixed examples, a few seconds);
``-m slow`` runs a larger budget.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import ecos_fast
import numpy as np
import pytest
from ecos_fast.cli import EXIT_INPUT, EXIT_OK, run
from ecos_fast.errors import EcosError
from ecos_fast.exchange import file_kind, signature_of
from ecos_fast.signing import generate_key
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

RNG = np.random.default_rng(7)
CENTS = ecos_fast.Centroids(RNG.normal(0, 2, (4, 3)).astype(np.float32), n_pool=50, seed=1)
RESP = ecos_fast.respond(RNG.normal(0, 2, (30, 3)).astype(np.float32), CENTS, 0.8, 1e-5, seed=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("corpus")
    key, pub = generate_key(d / "key")
    files = {
        "centroids": ecos_fast.save_centroids(CENTS, d / "c.safetensors"),
        "response": ecos_fast.save_response(RESP, d / "r.safetensors"),
        "centroids-signed": ecos_fast.save_centroids(CENTS, d / "cs.safetensors", sign_key=key),
        "response-signed": ecos_fast.save_response(RESP, d / "rs.safetensors", sign_key=key),
    }
    return {"blobs": {k: p.read_bytes() for k, p in files.items()}, "pub": pub}


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)  # json.dumps would write NaN as a bare token: tried below
    | st.text(max_size=20)
    | st.sampled_from(["inf", "-inf", "nan", "float64", "float32", "l2", "gaussian", "none"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def _split(blob: bytes) -> tuple[dict[str, Any], bytes] | None:
    n = int.from_bytes(blob[:8], "little")
    try:
        header = json.loads(blob[8 : 8 + n])
    except ValueError:
        return None
    return (header, blob[8 + n :]) if isinstance(header, dict) else None


def _join(header: dict[str, Any], payload: bytes) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    return len(text).to_bytes(8, "little") + text + payload


def _ecos_doc(st_meta: Any) -> dict[str, Any] | None:
    """The ``ecos`` document of a (possibly already mutated) header, when it still parses."""
    if not isinstance(st_meta, dict) or not isinstance(st_meta.get("ecos"), str):
        return None
    try:
        doc = json.loads(st_meta["ecos"])
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


@st.composite
def header_edit(draw: st.DrawFn, blob: bytes) -> bytes:
    """Edit the parsed header and re-serialize it with a correct length prefix."""
    parts = _split(blob)
    if parts is None:
        return blob
    header, payload = parts
    st_meta = header.get("__metadata__")
    tensors = [k for k in header if k != "__metadata__"]
    what = draw(st.sampled_from(["ecos", "ecos-raw", "tensor", "metadata", "nest", "nan"]))
    meta = _ecos_doc(st_meta)
    if what in ("ecos", "nan") and isinstance(st_meta, dict) and meta is not None:
        key = draw(st.sampled_from([*sorted(meta), "extra"]))
        if what == "nan":
            text = json.dumps({**meta, key: float("nan")})  # NaN / Infinity tokens
        else:
            text = json.dumps({**meta, key: draw(json_values)})
        st_meta["ecos"] = text
        if draw(st.booleans()):  # a valid checksum: the edit reaches the checks behind it
            h = hashlib.sha256(text.encode())
            h.update(payload)
            st_meta["sha256"] = h.hexdigest()
    elif what == "ecos-raw" and isinstance(st_meta, dict):
        st_meta[draw(st.sampled_from(["ecos", "sha256", "signature"]))] = draw(
            st.text(max_size=40) | json_values.map(json.dumps)
        )
    elif what == "tensor" and tensors:
        info = header[tensors[0]]
        field = draw(st.sampled_from(["dtype", "shape", "data_offsets", "name"]))
        if field == "name":
            header[draw(st.text(max_size=8))] = header.pop(tensors[0])
        elif isinstance(info, dict):
            info[field] = draw(
                json_values
                | st.sampled_from(["F16", "F64", "I64", "BOOL", "U8"])
                | st.lists(st.integers(-2, 2**40), max_size=3)
            )
    elif what == "metadata":
        header["__metadata__"] = draw(json_values)
    else:  # nest something a few levels, up to well past the bound
        depth = draw(st.integers(1, 200))
        value: Any = draw(json_values)
        for _ in range(depth):
            value = [value]
        header[draw(st.sampled_from(["__metadata__", *tensors, "x"]))] = value
    return _join(header, payload)


@st.composite
def mutated(draw: st.DrawFn, blobs: dict[str, bytes]) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(sorted(blobs)))
    blob = bytearray(blobs[kind])
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite",
                                   "length", "header", "header"]))  # fmt: skip
        n = len(blob)
        if op == "header":
            blob = bytearray(draw(header_edit(bytes(blob))))
        elif n == 0:
            blob = bytearray(draw(st.binary(max_size=16)))
        elif op == "flip":
            pos = draw(st.integers(0, n - 1))
            blob[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del blob[draw(st.integers(0, n - 1)) :]
        elif op == "insert":
            pos = draw(st.integers(0, n))
            blob[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            pos = draw(st.integers(0, n - 1))
            del blob[pos : pos + draw(st.integers(1, 16))]
        elif op == "overwrite":
            pos = draw(st.integers(0, n - 1))
            chunk = draw(st.binary(min_size=1, max_size=16))
            blob[pos : pos + len(chunk)] = chunk
        else:  # the declared header length
            length = draw(st.integers(0, 2**64 - 1) | st.integers(0, n))
            blob[:8] = length.to_bytes(8, "little")
    return kind, bytes(blob)


def _only_ecos_errors(fn: Any, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except EcosError:
        pass


def check_readers(path: Path, pub: Path) -> None:
    """Every reader of an exchange file: success or an EcosError; the CLI: exit 0 or 3."""
    _only_ecos_errors(ecos_fast.load_centroids, path)
    _only_ecos_errors(ecos_fast.load_centroids, path, verify_key=pub)
    _only_ecos_errors(ecos_fast.load_response, path)
    _only_ecos_errors(ecos_fast.load_response, path, centroids=CENTS, verify_key=pub)
    _only_ecos_errors(file_kind, path)
    _only_ecos_errors(signature_of, path)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(["--json", "inspect", str(path)])
    assert code in (EXIT_OK, EXIT_INPUT), (code, err.getvalue())
    if code == EXIT_INPUT:
        assert json.loads(out.getvalue())["error"]["exit_code"] == EXIT_INPUT


def _fuzz(tmp_path: Path, corpus: dict[str, Any], data: st.DataObject) -> None:
    kind, blob = data.draw(mutated(corpus["blobs"]))
    p = tmp_path / f"fuzz-{kind}.safetensors"
    p.write_bytes(blob)
    check_readers(p, corpus["pub"])


_HC = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]


@settings(max_examples=80, derandomize=True, deadline=None, suppress_health_check=_HC)
@given(data=st.data())
def test_mutated_files_give_success_or_an_ecos_error(
    tmp_path: Path, corpus: dict[str, Any], data: st.DataObject
) -> None:
    _fuzz(tmp_path, corpus, data)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=_HC)
@given(data=st.data())
def test_mutated_files_give_success_or_an_ecos_error_large(
    tmp_path: Path, corpus: dict[str, Any], data: st.DataObject
) -> None:
    _fuzz(tmp_path, corpus, data)


def test_the_valid_corpus_loads(corpus: dict[str, Any], tmp_path: Path) -> None:
    """The starting points are valid, so the mutations are what the readers refuse."""
    for kind, blob in corpus["blobs"].items():
        p = tmp_path / f"{kind}.safetensors"
        p.write_bytes(blob)
        if kind.startswith("centroids"):
            ecos_fast.load_centroids(p)
        else:
            ecos_fast.load_response(p, centroids=CENTS)
        if kind.endswith("signed"):
            assert signature_of(p) is not None
        assert run(["-q", "inspect", str(p)]) == EXIT_OK


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x00" * 8,
        (2).to_bytes(8, "little") + b"{}",
        (100_000).to_bytes(8, "little") + b"[" * 100_000,
        (100_000).to_bytes(8, "little") + b"{" * 100_000,
        (7).to_bytes(8, "little") + b'"\xff\xfe"xx',
    ],
)
def test_hand_picked_headers(tmp_path: Path, corpus: dict[str, Any], blob: bytes) -> None:
    p = tmp_path / "x.safetensors"
    p.write_bytes(blob)
    check_readers(p, corpus["pub"])
