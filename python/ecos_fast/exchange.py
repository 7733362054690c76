"""Files that cross the trust boundary: centroids (cloud → client) and responses (back).

Format: one ``.safetensors`` file (no pickle, no code) holding one tensor, and
two metadata strings: ``"ecos"``, a JSON document validated against
``schemas/<kind>.schema.json``, and ``"sha256"``, the SHA-256 of that JSON's
bytes followed by the tensor's bytes (detects truncation and bit flips
anywhere in the metadata or payload).

Every load checks, before anything large is allocated: the file size (against
``max_bytes``), the declared header size (at most 1 MiB), then the JSON schema
name and version, the checksum, shapes, dtypes, finiteness and the privacy
parameters; problems raise :class:`ExchangeFileError` naming the file and what
is wrong. Writes are atomic (temporary file in the same folder, fsync,
``os.replace``). ``safetensors`` and ``jsonschema`` are imported lazily.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ._core import __version__
from .errors import EcosError, ExchangeFileError, SketchMismatchError
from .privacy import calibrate_gaussian_sigma
from .protocol import SCHEMA_VERSION, Centroids, Response

__all__ = [
    "MAX_CENTROIDS_BYTES",
    "MAX_RESPONSE_BYTES",
    "file_kind",
    "load_centroids",
    "load_response",
    "save_centroids",
    "save_response",
    "write_atomically",
]

#: Default cap on a centroids file's size (2 GiB).
MAX_CENTROIDS_BYTES = 2 << 30
#: Default cap on a response file's size (256 MiB: up to ~33M clusters).
MAX_RESPONSE_BYTES = 256 << 20
_MAX_HEADER_BYTES = 1 << 20
_PRODUCER = f"ecos-fast {__version__}"  # Cargo's version, compiled into the core
_KINDS = {"centroids": "centroids", "response": "noisy_counts"}
# A recorded sigma may exceed the calibrated one (more noise), never fall below it.
_SIGMA_RTOL = 1e-9

PathLike = str | os.PathLike[str]


@cache
def _schema(kind: str) -> dict[str, Any]:
    text = resources.files("ecos_fast").joinpath(f"schemas/{kind}.schema.json").read_text()
    out: dict[str, Any] = json.loads(text)
    return out


def _checksum(meta_json: str, payload: NDArray[Any]) -> str:
    h = hashlib.sha256(meta_json.encode("utf-8"))
    h.update(np.ascontiguousarray(payload).tobytes())
    return h.hexdigest()


def write_atomically(path: PathLike, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically (temporary file, fsync, ``os.replace``).

    Readers see the old file or the new one, never a partial write; on any
    failure the temporary file is removed and ``path`` is left as it was.

    Examples
    --------
    >>> import os, tempfile
    >>> from ecos_fast.exchange import write_atomically
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_atomically(os.path.join(d, "f"), b"new")
    ...     open(os.path.join(d, "f"), "rb").read(), os.listdir(d)
    (b'new', ['f'])
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # persist the rename (best effort; not on Windows)
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _save(path: PathLike, kind: str, meta: dict[str, Any], payload: NDArray[Any]) -> Path:
    from safetensors.numpy import save

    p = Path(path)
    meta_json = json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False)
    data = save(
        {_KINDS[kind]: np.ascontiguousarray(payload)},
        metadata={"ecos": meta_json, "sha256": _checksum(meta_json, payload)},
    )
    write_atomically(p, data)
    return p


def _fail(path: Path, kind: str, what: str) -> ExchangeFileError:
    return ExchangeFileError(f"{path}: not a valid ecos-fast {kind} file: {what}")


def _parse_header(data: bytes, p: Path, kind: str) -> tuple[dict[str, str], dict[str, Any]]:
    """The safetensors metadata and its ``ecos`` document from a file's first bytes.

    The one header parser (and the one header size limit) for loading and for
    :func:`file_kind`; ``data`` must start at the file's first byte.
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
        header = json.loads(data[8 : 8 + n_header].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(p, kind, f"header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _fail(p, kind, "header is not a JSON object")
    st_meta = header.get("__metadata__")
    if (
        not isinstance(st_meta, dict)
        or set(st_meta) != {"ecos", "sha256"}
        or not all(isinstance(v, str) for v in st_meta.values())
    ):
        raise _fail(p, kind, "metadata must hold exactly the strings 'ecos' and 'sha256'")
    try:
        meta = json.loads(st_meta["ecos"])
    except ValueError as exc:
        raise _fail(p, kind, f"metadata 'ecos' is not valid JSON ({exc})") from None
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
    try:
        with open(p, "rb") as f:
            data = f.read(8 + _MAX_HEADER_BYTES)
    except OSError as exc:
        raise ExchangeFileError(f"{p}: cannot read the exchange file: {exc.strerror}") from None
    _, meta = _parse_header(data, p, "exchange")
    schema = meta.get("schema")
    if schema == "ecos-fast/centroids":
        return "centroids"
    if schema == "ecos-fast/response":
        return "response"
    raise _fail(
        p, "exchange", f"schema={schema!r}, expected 'ecos-fast/centroids' or 'ecos-fast/response'"
    )


def _load(path: PathLike, kind: str, max_bytes: int) -> tuple[Path, dict[str, Any], NDArray[Any]]:
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
    with open(p, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _fail(p, kind, f"grew past max_bytes={max_bytes} while being read")
    st_meta, meta = _parse_header(data, p, kind)
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
        raise _fail(p, kind, "sha256 checksum mismatch (the file is corrupted or was altered)")

    import jsonschema

    try:
        jsonschema.validate(meta, _schema(kind), cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(x) for x in exc.absolute_path) or "(root)"
        raise _fail(p, kind, f"metadata {where}: {exc.message}") from None
    if not np.isfinite(arr).all():
        raise _fail(p, kind, f"{name} holds NaN or inf")
    return p, meta, arr


def save_centroids(centroids: Centroids, path: PathLike) -> Path:
    """Write centroids for the client, atomically.

    Parameters
    ----------
    centroids : Centroids
        Its ``labels`` (pool assignments) are not written.
    path : str or PathLike
        Destination, conventionally ``*.safetensors``; replaced atomically.

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
    return _save(path, "centroids", meta, centroids.centroids.astype("<f4"))


def load_centroids(path: PathLike, *, max_bytes: int = MAX_CENTROIDS_BYTES) -> Centroids:
    """Read and verify centroids written by :func:`save_centroids`.

    Parameters
    ----------
    path : str or PathLike
    max_bytes : int, default 2 GiB
        Files larger than this are refused before reading.

    Returns
    -------
    Centroids
        ``labels`` is None.

    Raises
    ------
    ExchangeFileError
        The file is missing, too large, truncated, corrupted, of another schema
        or version, or inconsistent (shapes, dtype, non-finite values, fingerprint).

    Examples
    --------
    >>> import numpy as np, tempfile, os, ecos_fast
    >>> c = ecos_fast.Centroids(np.eye(2, dtype=np.float32), normalize="l2")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = ecos_fast.save_centroids(c, os.path.join(d, "c.safetensors"))
    ...     ecos_fast.load_centroids(p).normalize
    'l2'
    """
    p, meta, arr = _load(path, "centroids", max_bytes)
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
        )
    except SketchMismatchError as exc:
        raise _fail(p, "centroids", f"fingerprint does not match the data: {exc}") from None
    except EcosError as exc:
        raise _fail(p, "centroids", str(exc)) from None


def save_response(response: Response, path: PathLike) -> Path:
    """Write a client response for the cloud, atomically.

    Parameters
    ----------
    response : Response
    path : str or PathLike
        Destination, conventionally ``*.safetensors``; replaced atomically.

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
    return _save(path, "response", meta, response.noisy_counts.astype("<f8"))


def load_response(
    path: PathLike, *, centroids: Centroids | None = None, max_bytes: int = MAX_RESPONSE_BYTES
) -> Response:
    """Read and verify a client response written by :func:`save_response`.

    Parameters
    ----------
    path : str or PathLike
    centroids : Centroids, optional
        If given, the response must answer them (fingerprint and size), else
        :class:`SketchMismatchError`.
    max_bytes : int, default 256 MiB

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
    p, meta, arr = _load(path, "response", max_bytes)
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
        )
        need = calibrate_gaussian_sigma(eps, resp.delta, resp.sensitivity)
    except EcosError as exc:
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
