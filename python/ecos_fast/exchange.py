"""Files that cross the trust boundary: centroids (cloud → client) and responses (back).

Format: one ``.safetensors`` file (no pickle, no code) holding one tensor, and
two or three metadata strings: ``"ecos"``, a JSON document validated against
``schemas/<kind>.schema.json``; ``"sha256"``, the SHA-256 of that JSON's bytes
followed by the tensor's bytes; and, in a signed file only, ``"signature"``.

What protects what:

- The **checksum** detects accidents: truncation, bit flips, one file mixed up
  with another. It needs no key, so whoever edits a file (the peer, or anyone on
  the way) can recompute it: it is *not* tamper detection.
- The optional **Ed25519 signature** (``sign_key=`` when saving, ``verify_key=``
  when loading; keys from :mod:`ecos_fast.signing`) detects a change by anyone
  without the private key, checksum recomputed or not. It covers every byte of
  the file (the 8-byte header length, the whole header, the payload) except the
  128 hex digits of the signature itself: the writer signs the file with those
  digits set to ``"0"`` and then writes them in. ``"signature"`` holds the JSON
  ``{"public_key": <64 hex>, "scheme": "ed25519-v1", "signature": <128 hex>}``.
  With ``verify_key`` a file must be signed, by that key; without it a signed
  file is read like an unsigned one (its signature is not checked).

Unsigned files are what earlier versions wrote, and every version reads them;
readers older than signing refuse a signed file (they accept exactly the two
strings ``ecos`` and ``sha256``). The scheme string versions the signature.

Every load checks, before anything large is allocated: the file size (against
``max_bytes``), the declared header size (at most 1 MiB), the JSON nesting (at
most :data:`MAX_JSON_DEPTH` levels, so a crafted header cannot exhaust the
interpreter's recursion), the signature when ``verify_key`` is given, then the
JSON schema name and version, the checksum, shapes, dtypes, finiteness and the
privacy parameters; problems raise :class:`ExchangeFileError`
(:class:`SignatureError` for signatures) naming the file and what is wrong.
Writes go through :func:`ecos_fast.atomic.write_atomically` (a fresh ``O_EXCL``
temporary file in the same folder, fsync, ``os.replace``). ``safetensors``,
``jsonschema`` and ``cryptography`` are imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ._core import __version__
from .atomic import write_atomically
from .errors import EcosError, ExchangeFileError, SignatureError, SketchMismatchError
from .privacy import calibrate_gaussian_sigma
from .protocol import SCHEMA_VERSION, Centroids, Response
from .signing import SCHEME, SIGNATURE_HEX_CHARS

__all__ = [
    "MAX_CENTROIDS_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_RESPONSE_BYTES",
    "file_kind",
    "load_centroids",
    "load_response",
    "save_centroids",
    "save_response",
    "signature_of",
    "write_atomically",  # re-exported from ecos_fast.atomic
]

#: Default cap on a centroids file's size (2 GiB).
MAX_CENTROIDS_BYTES = 2 << 30
#: Default cap on a response file's size (256 MiB: up to ~33M clusters).
MAX_RESPONSE_BYTES = 256 << 20
_MAX_HEADER_BYTES = 1 << 20
#: The deepest JSON nesting a header may have (a real one has 3 levels). Deeper
#: headers are refused before anything else reads them: 100,000 nested ``[``
#: used to raise ``RecursionError`` out of the loaders.
MAX_JSON_DEPTH = 32
_PRODUCER = f"ecos-fast {__version__}"  # Cargo's version, compiled into the core
_KINDS = {"centroids": "centroids", "response": "noisy_counts"}
# A recorded sigma may exceed the calibrated one (more noise), never fall below it.
_SIGMA_RTOL = 1e-9

PathLike = str | os.PathLike[str]
# What a signer writes first where the signature goes, and signs (see the module docstring).
_SIG_PLACEHOLDER = b"0" * SIGNATURE_HEX_CHARS
_HEX_SIGNATURE = re.compile(rf"[0-9a-f]{{{SIGNATURE_HEX_CHARS}}}")
_HEX_KEY = re.compile(r"[0-9a-f]{64}")


@cache
def _schema(kind: str) -> dict[str, Any]:
    text = resources.files("ecos_fast").joinpath(f"schemas/{kind}.schema.json").read_text()
    out: dict[str, Any] = json.loads(text)
    return out


def _checksum(meta_json: str, payload: NDArray[Any]) -> str:
    h = hashlib.sha256(meta_json.encode("utf-8"))
    h.update(np.ascontiguousarray(payload).tobytes())
    return h.hexdigest()


def _canonical(data: bytes) -> bytes:
    """safetensors bytes with the header's JSON in one canonical form.

    safetensors keeps ``__metadata__`` in a hash map whose order changes from process to
    process, so two identical saves could differ byte for byte (and in SHA-256). The
    header is rewritten with sorted keys and compact separators, space-padded to a
    multiple of 8 bytes as safetensors pads it; the tensor bytes are unchanged. Files
    carry no timestamp, so the same inputs give the same file.
    """
    n_header = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n_header])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n_header :]


def _signature_field(public_key: str, value: str) -> str:
    doc = {"public_key": public_key, "scheme": SCHEME, "signature": value}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def _placeholder_at(data: bytes) -> int:
    """Where the one run of placeholder digits starts in a file's header, else -1."""
    header = data[8 : 8 + int.from_bytes(data[:8], "little")]
    at = header.find(_SIG_PLACEHOLDER)
    if at < 0 or header.count(_SIG_PLACEHOLDER) != 1 or b"0" + _SIG_PLACEHOLDER in header:
        return -1
    if _SIG_PLACEHOLDER + b"0" in header:
        return -1
    return 8 + at


def _save(
    path: PathLike,
    kind: str,
    meta: dict[str, Any],
    payload: NDArray[Any],
    sign_key: Any = None,
) -> Path:
    from safetensors.numpy import save

    p = Path(path)
    meta_json = json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False)
    st_meta = {"ecos": meta_json, "sha256": _checksum(meta_json, payload)}
    key = None
    if sign_key is not None:
        from .signing import load_signing_key, public_key_hex

        key = load_signing_key(sign_key)
        st_meta["signature"] = _signature_field(public_key_hex(key), _SIG_PLACEHOLDER.decode())
    data = _canonical(save({_KINDS[kind]: np.ascontiguousarray(payload)}, metadata=st_meta))
    if key is not None:
        from .signing import sign

        at = _placeholder_at(data)
        if at < 0:  # only if the metadata itself held 128 zeros in a row
            raise ExchangeFileError(f"{p}: cannot sign: the header holds the placeholder twice")
        # Sign every byte with the placeholder in place, then write the signature over it.
        data = data[:at] + sign(data, key).encode("ascii") + data[at + SIGNATURE_HEX_CHARS :]
    write_atomically(p, data)
    return p


def _fail(path: Path, kind: str, what: str) -> ExchangeFileError:
    return ExchangeFileError(f"{path}: not a valid ecos-fast {kind} file: {what}")


def _too_deep(doc: Any, limit: int) -> bool:
    """Whether JSON ``doc`` nests containers more than ``limit`` deep (no recursion)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children)
    return False


def _loads(text: str, p: Path, kind: str, what: str) -> Any:
    """``json.loads`` of untrusted text, nesting bounded by :data:`MAX_JSON_DEPTH`.

    The one way this module parses JSON from a file: every failure, a nesting deep
    enough to exhaust the interpreter's recursion included, is an ExchangeFileError.
    """
    try:
        doc = json.loads(text)
    except RecursionError:
        raise _fail(p, kind, f"{what} is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise _fail(p, kind, f"{what} is not valid JSON ({exc})") from None
    if _too_deep(doc, MAX_JSON_DEPTH):
        raise _fail(p, kind, f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
    return doc


def _parse_header(data: bytes, p: Path, kind: str) -> tuple[dict[str, str], dict[str, Any]]:
    """The safetensors metadata and its ``ecos`` document from a file's first bytes.

    The one header parser (and the one header size limit, and the one JSON nesting
    bound) for loading, for :func:`file_kind` and for :func:`signature_of`; ``data``
    must start at the file's first byte.
    """
    if len(data) < 8:
        raise _fail(p, kind, f"truncated: {len(data)} bytes, fewer than the 8-byte header")
    n_header = int.from_bytes(data[:8], "little")
    if n_header > _MAX_HEADER_BYTES:
        raise _fail(p, kind, f"declares a {n_header}-byte header (limit {_MAX_HEADER_BYTES} bytes)")
    if 8 + n_header > len(data):
        raise _fail(
            p,
            kind,
            f"truncated: declares a {n_header}-byte header but only {len(data) - 8} bytes follow",
        )
    try:
        text = data[8 : 8 + n_header].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(p, kind, f"header is not valid JSON ({exc})") from None
    header = _loads(text, p, kind, "header")
    if not isinstance(header, dict):
        raise _fail(p, kind, "header is not a JSON object")
    st_meta = header.get("__metadata__")
    if (
        not isinstance(st_meta, dict)
        or set(st_meta) - {"signature"} != {"ecos", "sha256"}
        or not all(isinstance(v, str) for v in st_meta.values())
    ):
        raise _fail(
            p,
            kind,
            "metadata must hold exactly the strings 'ecos' and 'sha256' (and 'signature' "
            "in a signed file)",
        )
    meta = _loads(st_meta["ecos"], p, kind, "metadata 'ecos'")
    if not isinstance(meta, dict):
        raise _fail(p, kind, "metadata 'ecos' is not a JSON object")
    return st_meta, meta


def file_kind(path: PathLike) -> Literal["centroids", "response"]:
    """Which exchange file this is, from its header alone (no payload is read).

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    {"centroids", "response"}
        Read from the schema name in the header; the file is not verified (use
        :func:`load_centroids` / :func:`load_response` for that).

    Raises
    ------
    ExchangeFileError
        Missing or unreadable, a header over 1 MiB, truncated, not safetensors,
        or without ecos-fast metadata of a known schema.

    Examples
    --------
    >>> import numpy as np, tempfile, os, ecos_fast
    >>> from ecos_fast.exchange import file_kind
    >>> c = ecos_fast.Centroids(np.eye(2, dtype=np.float32))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     file_kind(ecos_fast.save_centroids(c, os.path.join(d, "c.safetensors")))
    'centroids'
    """
    p = Path(path)
    _, meta = _parse_header(_read_header(p), p, "exchange")
    schema = meta.get("schema")
    if schema == "ecos-fast/centroids":
        return "centroids"
    if schema == "ecos-fast/response":
        return "response"
    raise _fail(
        p, "exchange", f"schema={schema!r}, expected 'ecos-fast/centroids' or 'ecos-fast/response'"
    )


def _signature_doc(st_meta: dict[str, str], p: Path, kind: str) -> dict[str, str] | None:
    """A signed file's ``signature`` document, checked for shape; None when unsigned."""
    if "signature" not in st_meta:
        return None
    doc = _loads(st_meta["signature"], p, kind, "metadata 'signature'")
    if (
        not isinstance(doc, dict)
        or set(doc) != {"public_key", "scheme", "signature"}
        or not all(isinstance(v, str) for v in doc.values())
    ):
        raise SignatureError(
            f"{p}: malformed signature: expected the strings 'public_key', 'scheme' and 'signature'"
        )
    if doc["scheme"] != SCHEME:
        raise SignatureError(
            f"{p}: signature scheme {doc['scheme']!r}; this ecos-fast verifies {SCHEME!r}"
        )
    if not _HEX_KEY.fullmatch(doc["public_key"]) or not _HEX_SIGNATURE.fullmatch(doc["signature"]):
        raise SignatureError(
            f"{p}: malformed signature: public_key must be 64 and signature "
            f"{SIGNATURE_HEX_CHARS} lowercase hex digits"
        )
    return doc


def _verify_signature(
    data: bytes, st_meta: dict[str, str], p: Path, kind: str, verify_key: Any
) -> None:
    """Refuse ``data`` unless it carries ``verify_key``'s signature over all its bytes."""
    from .signing import describe, load_verify_key, public_key_hex, verify

    key = load_verify_key(verify_key)
    doc = _signature_doc(st_meta, p, kind)
    if doc is None:
        raise SignatureError(
            f"{p}: the {kind} file is not signed, but a verify key ({describe(key)}) was given"
        )
    if doc["public_key"] != public_key_hex(key):
        raise SignatureError(
            f"{p}: signed by key {describe(doc['public_key'])}, not by the verify key "
            f"{describe(key)}"
        )
    header = data[8 : 8 + int.from_bytes(data[:8], "little")]
    digits = doc["signature"].encode("ascii")
    if header.count(digits) != 1:
        raise SignatureError(f"{p}: the signature must appear exactly once in the header")
    at = 8 + header.index(digits)
    signed = data[:at] + _SIG_PLACEHOLDER + data[at + SIGNATURE_HEX_CHARS :]
    if not verify(signed, doc["signature"], key):
        raise SignatureError(
            f"{p}: the Ed25519 signature by {describe(key)} does not match the file: its "
            "bytes changed after signing"
        )


def signature_of(path: PathLike) -> str | None:
    """The public key (64 hex digits) a file says it is signed by, or None if unsigned.

    The claim is *not* verified: use ``verify_key=`` on :func:`load_centroids` /
    :func:`load_response` for that. Reads the header only, through the same parser.

    Raises
    ------
    ExchangeFileError
        As :func:`file_kind`; :class:`SignatureError` for a malformed signature.

    Examples
    --------
    >>> import numpy as np, tempfile, os, ecos_fast
    >>> from ecos_fast.exchange import signature_of
    >>> from ecos_fast.signing import generate_key
    >>> c = ecos_fast.Centroids(np.eye(2, dtype=np.float32))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     key, pub = generate_key(os.path.join(d, "cloud"))
    ...     plain = ecos_fast.save_centroids(c, os.path.join(d, "plain.safetensors"))
    ...     signed = ecos_fast.save_centroids(c, os.path.join(d, "c.safetensors"), sign_key=key)
    ...     signature_of(plain), len(signature_of(signed))
    (None, 64)
    """
    p = Path(path)
    st_meta, _ = _parse_header(_read_header(p), p, "exchange")
    doc = _signature_doc(st_meta, p, "exchange")
    return None if doc is None else doc["public_key"]


def _read_header(p: Path) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read(8 + _MAX_HEADER_BYTES)
    except OSError as exc:
        raise ExchangeFileError(f"{p}: cannot read the exchange file: {exc.strerror}") from None


def _load(
    path: PathLike, kind: str, max_bytes: int, verify_key: Any = None
) -> tuple[Path, dict[str, Any], NDArray[Any]]:
    """Read, bound-check and verify a file; return (path, metadata, the one tensor)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise ExchangeFileError(f"{p}: cannot read the {kind} file: {exc.strerror}") from None
    if not p.is_file():
        raise _fail(p, kind, "not a regular file")
    if st.st_size > max_bytes:
        raise _fail(p, kind, f"{st.st_size} bytes exceeds max_bytes={max_bytes}")
    try:
        with open(p, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise ExchangeFileError(f"{p}: cannot read the {kind} file: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise _fail(p, kind, f"grew past max_bytes={max_bytes} while being read")
    st_meta, meta = _parse_header(data, p, kind)
    # Authenticate before anything else reads the contents.
    if verify_key is not None:
        _verify_signature(data, st_meta, p, kind, verify_key)
    else:
        _signature_doc(st_meta, p, kind)  # a signature present must be well formed
    want_schema = f"ecos-fast/{kind}"
    if meta.get("schema") != want_schema:
        raise _fail(p, kind, f"schema={meta.get('schema')!r}, expected {want_schema!r}")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise _fail(
            p,
            kind,
            f"schema_version={meta.get('schema_version')!r}; this ecos-fast reads "
            f"version {SCHEMA_VERSION}",
        )

    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        tensors = load(data)
    except (SafetensorError, ValueError, TypeError, OverflowError) as exc:
        raise _fail(p, kind, f"safetensors could not read it ({exc})") from None
    name = _KINDS[kind]
    if set(tensors) != {name}:
        raise _fail(p, kind, f"holds tensors {sorted(tensors)}, expected exactly [{name!r}]")
    arr = tensors[name]
    if _checksum(st_meta["ecos"], arr) != st_meta["sha256"]:
        raise _fail(
            p,
            kind,
            "sha256 checksum mismatch (the file is corrupted, or was changed without "
            "recomputing the checksum; only a signature detects a change that recomputes it)",
        )

    import jsonschema

    try:
        jsonschema.validate(meta, _schema(kind), cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(x) for x in exc.absolute_path) or "(root)"
        raise _fail(p, kind, f"metadata {where}: {exc.message}") from None
    if not np.isfinite(arr).all():
        raise _fail(p, kind, f"{name} holds NaN or inf")
    return p, meta, arr


def save_centroids(centroids: Centroids, path: PathLike, *, sign_key: Any = None) -> Path:
    """Write centroids for the client, atomically.

    Parameters
    ----------
    centroids : Centroids
        Its ``labels`` (pool assignments) are not written.
    path : str or PathLike
        Destination, conventionally ``*.safetensors``; replaced atomically.
    sign_key : str, PathLike or Ed25519PrivateKey, optional
        Sign the file with this private key (a file from ``ecos-fast keygen`` /
        :func:`ecos_fast.signing.generate_key`): the signature covers every byte of
        header and payload, so the peer can check with ``verify_key`` that nobody
        without the key changed it.

    Returns
    -------
    Path

    Examples
    --------
    >>> import numpy as np, tempfile, os, ecos_fast
    >>> c = ecos_fast.Centroids(np.eye(3, dtype=np.float32), n_pool=10, seed=0)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = ecos_fast.save_centroids(c, os.path.join(d, "c.safetensors"))
    ...     ecos_fast.load_centroids(p).fingerprint == c.fingerprint
    True
    """
    if not isinstance(centroids, Centroids):
        raise ExchangeFileError(f"expected an ecos_fast.Centroids, got {type(centroids).__name__}")
    meta = {
        "schema": "ecos-fast/centroids",
        "schema_version": SCHEMA_VERSION,
        "n_clusters": centroids.n_clusters,
        "n_features": centroids.n_features,
        "dtype": "float32",
        "fingerprint": centroids.fingerprint,
        "n_pool": centroids.n_pool,
        "seed": centroids.seed,
        "normalize": centroids.normalize,
        "producer": _PRODUCER,
    }
    if centroids.extractor_fingerprint is not None:  # absent, not null: plain files unchanged
        meta["extractor_fingerprint"] = centroids.extractor_fingerprint
    return _save(path, "centroids", meta, centroids.centroids.astype("<f4"), sign_key)


def load_centroids(
    path: PathLike, *, max_bytes: int = MAX_CENTROIDS_BYTES, verify_key: Any = None
) -> Centroids:
    """Read and verify centroids written by :func:`save_centroids`.

    Parameters
    ----------
    path : str or PathLike
    max_bytes : int, default 2 GiB
        Files larger than this are refused before reading.
    verify_key : str, PathLike or Ed25519PublicKey, optional
        Require a signature by this public key (the signer's ``.pub`` file) over
        every byte of the file, else :class:`SignatureError`. Without it the file is
        accepted signed or not, and only its checksum is checked, which detects
        accidents but not a peer who edits the file and recomputes the checksum.

    Returns
    -------
    Centroids
        ``labels`` is None.

    Raises
    ------
    ExchangeFileError
        The file is missing, too large, truncated, corrupted, of another schema
        or version, or inconsistent (shapes, dtype, non-finite values, fingerprint).
    SignatureError
        With ``verify_key``: the file is unsigned, signed by another key, or changed
        since it was signed.
    KeyFileError
        ``verify_key`` cannot be read as an Ed25519 public key.

    Examples
    --------
    >>> import numpy as np, tempfile, os, ecos_fast
    >>> c = ecos_fast.Centroids(np.eye(2, dtype=np.float32), normalize="l2")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = ecos_fast.save_centroids(c, os.path.join(d, "c.safetensors"))
    ...     ecos_fast.load_centroids(p).normalize
    'l2'
    """
    p, meta, arr = _load(path, "centroids", max_bytes, verify_key)
    want = (meta["n_clusters"], meta["n_features"])
    if arr.dtype != np.float32 or arr.shape != want:
        raise _fail(
            p,
            "centroids",
            f"tensor is {arr.dtype} {tuple(arr.shape)}, metadata says float32 {want}",
        )
    try:
        return Centroids(
            arr,
            fingerprint=meta["fingerprint"],
            n_pool=meta["n_pool"],
            seed=meta["seed"],
            normalize=meta["normalize"],
            extractor_fingerprint=meta.get("extractor_fingerprint"),
        )
    except SketchMismatchError as exc:
        raise _fail(p, "centroids", f"fingerprint does not match the data: {exc}") from None
    except EcosError as exc:
        raise _fail(p, "centroids", str(exc)) from None


def save_response(response: Response, path: PathLike, *, sign_key: Any = None) -> Path:
    """Write a client response for the cloud, atomically.

    Parameters
    ----------
    response : Response
    path : str or PathLike
        Destination, conventionally ``*.safetensors``; replaced atomically.
    sign_key : str, PathLike or Ed25519PrivateKey, optional
        Sign the file with this private key (a file from ``ecos-fast keygen`` /
        :func:`ecos_fast.signing.generate_key`): the signature covers every byte of
        header and payload, so the peer can check with ``verify_key`` that nobody
        without the key changed it.

    Returns
    -------
    Path

    Notes
    -----
    Writes only what :func:`respond` released (noisy counts and public
    parameters), so the file has the response's (epsilon, delta)-DP guarantee.

    Examples
    --------
    >>> import math, numpy as np, tempfile, os, ecos_fast
    >>> c = ecos_fast.Centroids(np.eye(2, dtype=np.float32))
    >>> r = ecos_fast.respond(np.eye(2), c, 1.0, 1e-5, seed=0)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = ecos_fast.save_response(r, os.path.join(d, "r.safetensors"))
    ...     ecos_fast.load_response(p, centroids=c).sigma == r.sigma
    True
    """
    if not isinstance(response, Response):
        raise ExchangeFileError(f"expected an ecos_fast.Response, got {type(response).__name__}")
    meta = {
        "schema": "ecos-fast/response",
        "schema_version": SCHEMA_VERSION,
        "n_clusters": response.n_clusters,
        "dtype": "float64",
        "epsilon": "inf" if math.isinf(response.epsilon) else response.epsilon,
        "delta": response.delta,
        "sigma": response.sigma,
        "sensitivity": response.sensitivity,
        "relation": response.relation,
        "mechanism": response.mechanism,
        "centroids_fingerprint": response.centroids_fingerprint,
        "producer": _PRODUCER,
    }
    if response.neighbours != 1:  # plain counts keep the layout files had before the field
        meta["neighbours"] = response.neighbours
    return _save(path, "response", meta, response.noisy_counts.astype("<f8"), sign_key)


def load_response(
    path: PathLike,
    *,
    centroids: Centroids | None = None,
    max_bytes: int = MAX_RESPONSE_BYTES,
    verify_key: Any = None,
) -> Response:
    """Read and verify a client response written by :func:`save_response`.

    Parameters
    ----------
    path : str or PathLike
    centroids : Centroids, optional
        If given, the response must answer them (fingerprint and size), else
        :class:`SketchMismatchError`.
    max_bytes : int, default 256 MiB
    verify_key : str, PathLike or Ed25519PublicKey, optional
        Require a signature by this public key (the signer's ``.pub`` file) over
        every byte of the file, else :class:`SignatureError`. Without it the file is
        accepted signed or not, and only its checksum is checked, which detects
        accidents but not a peer who edits the file and recomputes the checksum.

    Returns
    -------
    Response

    Raises
    ------
    ExchangeFileError
        As :func:`load_centroids`; also when epsilon/delta/sigma/sensitivity are
        out of range or inconsistent (sigma below what (epsilon, delta) requires).
    SketchMismatchError
        The response answers other centroids.
    SignatureError, KeyFileError
        As :func:`load_centroids`.

    Examples
    --------
    >>> import math, numpy as np, tempfile, os, ecos_fast
    >>> c = ecos_fast.Centroids(np.eye(2, dtype=np.float32))
    >>> r = ecos_fast.respond(np.eye(2), c, math.inf, 1e-5)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = ecos_fast.save_response(r, os.path.join(d, "r.safetensors"))
    ...     ecos_fast.load_response(p).noisy_counts.tolist()
    [1.0, 1.0]
    """
    p, meta, arr = _load(path, "response", max_bytes, verify_key)
    if arr.dtype != np.float64 or arr.shape != (meta["n_clusters"],):
        raise _fail(
            p,
            "response",
            f"tensor is {arr.dtype} {tuple(arr.shape)}, metadata says float64 "
            f"({meta['n_clusters']},)",
        )
    eps = math.inf if meta["epsilon"] == "inf" else float(meta["epsilon"])
    try:
        resp = Response(
            noisy_counts=arr,
            epsilon=eps,
            delta=meta["delta"],
            sigma=meta["sigma"],
            sensitivity=meta["sensitivity"],
            relation=meta["relation"],
            mechanism=meta["mechanism"],
            centroids_fingerprint=meta["centroids_fingerprint"],
            neighbours=meta.get("neighbours", 1),
        )
        need = calibrate_gaussian_sigma(eps, resp.delta, resp.sensitivity)
    except (EcosError, ValueError, ArithmeticError) as exc:  # SciPy's root finder included
        raise _fail(p, "response", str(exc)) from None
    if resp.sigma < need * (1 - _SIGMA_RTOL):
        raise _fail(
            p,
            "response",
            f"sigma={resp.sigma} is below the sigma={need} that epsilon={eps}, "
            f"delta={resp.delta}, sensitivity={resp.sensitivity} require",
        )
    if centroids is not None:
        if resp.n_clusters != centroids.n_clusters:
            raise SketchMismatchError(
                f"{p}: the response has {resp.n_clusters} counts but the centroids have "
                f"n_clusters={centroids.n_clusters}"
            )
        if resp.centroids_fingerprint != centroids.fingerprint:
            raise SketchMismatchError(
                f"{p}: the response answers centroids {resp.centroids_fingerprint} but "
                f"these centroids are {centroids.fingerprint}"
            )
    return resp
