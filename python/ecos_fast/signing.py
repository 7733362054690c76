"""Ed25519 keys and signatures for the exchange files: who wrote a file, not only that it is intact.

The SHA-256 checksum inside every exchange file catches accidents (truncation, bit
flips, a wrong file); it cannot catch a peer or a party in the middle who edits the
file and recomputes the hash, because the hash needs no key. A signature does: only
the holder of the private key can make one that the matching public key accepts.

Keys (``ecos-fast keygen PATH``, :func:`generate_key`): ``PATH`` holds the private
key (PKCS#8 PEM, unencrypted, mode ``0o600``: keep it secret), ``PATH.pub`` the
public key (SubjectPublicKeyInfo PEM: give it to the peer who verifies). The
cloud signs its centroids and the client verifies them with the cloud's public
key; the client signs its responses and the cloud verifies them with the client's.

What a signature does *not* give: it says nothing about whether the signer's noise
was calibrated honestly (``load_response`` still checks σ against (ε, δ)), it does
not hide the file's contents, and it is worth only as much as the way the public
key reached the verifier (exchange the ``.pub`` files over a channel you trust).

``cryptography`` is imported only when a key is used.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import write_atomically
from .errors import KeyFileError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "SCHEME",
    "SIGNATURE_HEX_CHARS",
    "describe",
    "generate_key",
    "load_signing_key",
    "load_verify_key",
    "public_key_hex",
    "sign",
    "verify",
]

#: The signature scheme and its version, recorded in every signed file.
SCHEME = "ed25519-v1"
#: An Ed25519 signature is 64 bytes: 128 lowercase hex digits.
SIGNATURE_HEX_CHARS = 128
# What is signed starts with this, so that no other message a key signs can pass
# for an exchange file.
_DOMAIN = b"ecos-fast exchange file, " + SCHEME.encode() + b"\x00"
_MAX_KEY_FILE_BYTES = 16 << 10

PathLike = str | os.PathLike[str]


def _read_key_file(path: PathLike) -> bytes:
    p = Path(path)
    try:
        with open(p, "rb") as f:
            data = f.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(f"{p}: cannot read the key file: {exc.strerror}") from None
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{p}: over {_MAX_KEY_FILE_BYTES} bytes: not a key file")
    return data


def generate_key(path: PathLike, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Make a new Ed25519 key pair: the private key at ``path``, the public one at ``path.pub``.

    Parameters
    ----------
    path : str or PathLike
        Where the private key goes (mode ``0o600``); ``path`` + ``".pub"`` gets the
        public key (the permissions a plain file gets).
    overwrite : bool, default False
        Replace existing key files. Without it an existing file is an error and
        nothing is written.

    Returns
    -------
    (Path, Path)
        The private and the public key file.

    Raises
    ------
    KeyFileError
        A key file exists already (and ``overwrite`` is False).

    Examples
    --------
    >>> import os, stat, tempfile
    >>> from ecos_fast.signing import generate_key
    >>> with tempfile.TemporaryDirectory() as d:
    ...     private, public = generate_key(os.path.join(d, "cloud"))
    ...     oct(stat.S_IMODE(private.stat().st_mode)), public.name
    ('0o600', 'cloud.pub')
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not os.fspath(path):
        raise KeyFileError("the key path is empty: no file name to write the private key to")
    private_path = Path(path)
    public_path = Path(f"{private_path}.pub")
    for p in (private_path, public_path):  # checked before either half is written
        if p.is_dir():
            raise KeyFileError(f"{p}: is a folder; name a file for the key")
    if not overwrite:
        for p in (private_path, public_path):
            if os.path.lexists(p):
                raise KeyFileError(
                    f"{p}: exists already; pass overwrite=True (--force) to replace it"
                )
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    target = private_path
    try:
        write_atomically(private_path, private_pem, mode=0o600, overwrite=overwrite)
        target = public_path
        write_atomically(public_path, public_pem, overwrite=overwrite)
    except OSError as exc:
        if target is public_path and not overwrite:
            private_path.unlink(missing_ok=True)  # no private key without its public half
        if isinstance(exc, FileExistsError):  # appeared since the check above
            raise KeyFileError(f"{target}: exists already") from None
        # a missing or read-only folder, a full disk
        raise KeyFileError(f"{target}: cannot write the key file: {exc.strerror}") from None
    return private_path, public_path


def load_signing_key(key: PathLike | Ed25519PrivateKey) -> Ed25519PrivateKey:
    """An Ed25519 private key, from a key file written by :func:`generate_key` or as is.

    Raises
    ------
    KeyFileError
        Unreadable, not PEM, encrypted, or not an Ed25519 private key.

    Examples
    --------
    >>> import os, tempfile
    >>> from ecos_fast.signing import generate_key, load_signing_key, public_key_hex
    >>> with tempfile.TemporaryDirectory() as d:
    ...     private, _ = generate_key(os.path.join(d, "k"))
    ...     len(public_key_hex(load_signing_key(private)))
    64
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if isinstance(key, Ed25519PrivateKey):
        return key
    if not isinstance(key, (str, os.PathLike)):
        raise KeyFileError(
            f"a signing key must be a key file path or an Ed25519PrivateKey, not "
            f"{type(key).__name__}"
        )
    data = _read_key_file(key)
    if b"PUBLIC KEY" in data and b"PRIVATE KEY" not in data:
        raise KeyFileError(f"{key}: holds a public key; signing needs the private key file")
    loaded = _load_pem(
        key, lambda: serialization.load_pem_private_key(data, password=None),
        "an unencrypted PEM private key", "private",
    )  # fmt: skip
    if not isinstance(loaded, Ed25519PrivateKey):
        raise KeyFileError(f"{key}: a {type(loaded).__name__}, not an Ed25519 private key")
    return loaded


def _load_pem(key: Any, load: Callable[[], Any], what: str, kind: str) -> Any:
    """``load()`` (one of cryptography's PEM loaders), its failures as KeyFileError."""
    try:
        return load()
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{key}: not {what} ({exc})") from None
    except Exception as exc:  # cryptography's UnsupportedAlgorithm and kin
        raise KeyFileError(f"{key}: cannot load the {kind} key ({exc})") from None


def load_verify_key(key: PathLike | Ed25519PublicKey) -> Ed25519PublicKey:
    """An Ed25519 public key, from a ``.pub`` file written by :func:`generate_key` or as is.

    Raises
    ------
    KeyFileError
        Unreadable, not PEM, a private key, or not an Ed25519 public key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if isinstance(key, Ed25519PublicKey):
        return key
    if not isinstance(key, (str, os.PathLike)):
        raise KeyFileError(
            f"a verify key must be a .pub file path or an Ed25519PublicKey, not "
            f"{type(key).__name__}"
        )
    data = _read_key_file(key)
    if b"PRIVATE KEY" in data:
        raise KeyFileError(
            f"{key}: holds a private key; verify with the public key file (.pub), and keep "
            "the private key secret"
        )
    loaded = _load_pem(
        key, lambda: serialization.load_pem_public_key(data), "a PEM public key", "public"
    )
    if not isinstance(loaded, Ed25519PublicKey):
        raise KeyFileError(f"{key}: a {type(loaded).__name__}, not an Ed25519 public key")
    return loaded


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw 32-byte public key as 64 hex digits (what a signed file records)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def sign(message: bytes, key: Ed25519PrivateKey) -> str:
    """The Ed25519 signature of the domain-separated ``message``, as 128 hex digits."""
    return key.sign(_DOMAIN + message).hex()


def verify(message: bytes, signature_hex: str, key: Ed25519PublicKey) -> bool:
    """Whether ``signature_hex`` is ``key``'s signature of ``message`` (domain-separated)."""
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(bytes.fromhex(signature_hex), _DOMAIN + message)
    except (InvalidSignature, ValueError):
        return False
    return True


def describe(key: Any) -> str:
    """A short name for a public key in messages: ``ed25519:`` and its first 16 hex digits."""
    hex_key = key if isinstance(key, str) else public_key_hex(key)
    return f"ed25519:{hex_key[:16]}"
