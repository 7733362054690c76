"""Ed25519-signed exchange files: keys, what the signature covers, and the forgery of issue 13.

The checksum is keyless: whoever edits a file can recompute it (finding 7). These tests
show that the edit is accepted without a verify key (documented) and refused with one.
"""

from __future__ import annotations

import hashlib
import json
import math
import stat
from pathlib import Path
from typing import Any

import ecos_fast
import numpy as np
import pytest
from ecos_fast.cli import EXIT_INPUT, EXIT_OK, EXIT_USAGE, run
from ecos_fast.errors import ExchangeFileError, KeyFileError, SignatureError
from ecos_fast.exchange import signature_of
from ecos_fast.signing import generate_key, load_signing_key, public_key_hex
from safetensors.numpy import save

RNG = np.random.default_rng(5)
POOL = np.concatenate([RNG.normal(m, 1.0, (100, 4)) for m in (0.0, 8.0)]).astype(np.float32)
PRIVATE = RNG.normal(8.0, 1.0, (60, 4)).astype(np.float32)
CENTS = ecos_fast.fit_centroids(POOL, 5, seed=0)
RESP = ecos_fast.respond(PRIVATE, CENTS, 1.0, 1e-5, seed=3)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    cloud, cloud_pub = generate_key(d / "cloud")
    client, client_pub = generate_key(d / "client")
    return {"cloud": cloud, "cloud.pub": cloud_pub, "client": client, "client.pub": client_pub}


def header_of(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    return out


def rewrite(
    path: Path, counts: np.ndarray, meta_edit: dict[str, Any], *, keep_signature: bool
) -> Path:
    """The issue's forgery: new counts (and metadata), a *recomputed* SHA-256."""
    st_meta = header_of(path.read_bytes())["__metadata__"]
    meta = {**json.loads(st_meta["ecos"]), **meta_edit}
    meta_json = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    h = hashlib.sha256(meta_json.encode())
    h.update(np.ascontiguousarray(counts, dtype="<f8").tobytes())
    new_meta = {"ecos": meta_json, "sha256": h.hexdigest()}
    if keep_signature:
        new_meta["signature"] = st_meta["signature"]
    path.write_bytes(save({"noisy_counts": counts.astype("<f8")}, metadata=new_meta))
    return path


# -- keys ------------------------------------------------------------------------------
def test_keygen_writes_a_private_0600_and_a_public_key(tmp_path: Path) -> None:
    assert run(["-q", "keygen", str(tmp_path / "k")]) == EXIT_OK
    private, public = tmp_path / "k", tmp_path / "k.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    before = private.read_bytes()
    assert run(["-q", "keygen", str(tmp_path / "k")]) == EXIT_INPUT  # never clobbered
    assert private.read_bytes() == before
    assert run(["-q", "keygen", "--force", str(tmp_path / "k")]) == EXIT_OK
    assert private.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k", "k.pub"]  # no temp files
    assert run(["-q", "keygen", str(tmp_path / "missing" / "k")]) == EXIT_INPUT


@pytest.mark.parametrize("force", [False, True])
def test_keygen_writes_nothing_when_either_key_file_cannot_be(
    force: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: with PATH.pub a folder, --force wrote the private key and then failed on
    the public one ('k: cannot write the key file: Is a directory'), leaving a private
    key whose public half was never written; PATH '' named '.' ('Device or resource
    busy' with --force)."""
    (tmp_path / "k.pub").mkdir()
    flag = ["--force"] if force else []
    assert run(["-q", "keygen", *flag, str(tmp_path / "k")]) == EXIT_INPUT
    assert f"{tmp_path / 'k.pub'}: is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.pub"]
    assert run(["-q", "keygen", *flag, ""]) == EXIT_INPUT  # click reads '' as '.'
    assert ".: is a folder" in capsys.readouterr().err
    with pytest.raises(KeyFileError, match="no file name"):
        generate_key("", overwrite=force)


def test_keygen_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--json", "keygen", str(tmp_path / "k")]) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["key"] == public_key_hex(load_signing_key(tmp_path / "k"))
    assert out["public_key"] == str(tmp_path / "k.pub")


def test_wrong_kind_of_key_file_is_a_key_file_error(tmp_path: Path, keys: dict[str, Path]) -> None:
    junk = tmp_path / "junk"
    junk.write_text("not a key")
    c = tmp_path / "c.safetensors"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"sign_key": keys["cloud.pub"]}, "holds a public key"),
        ({"sign_key": junk}, "not an unencrypted PEM private key"),
        ({"sign_key": tmp_path / "missing"}, "cannot read the key file"),
        ({"sign_key": 42}, "not int"),
    ]
    for kwargs, match in cases:
        with pytest.raises(KeyFileError, match=match):
            ecos_fast.save_centroids(CENTS, c, **kwargs)
    assert not c.exists()
    ecos_fast.save_centroids(CENTS, c, sign_key=keys["cloud"])
    for key, match in [(keys["cloud"], "holds a private key"), (junk, "not a PEM public key")]:
        with pytest.raises(KeyFileError, match=match):
            ecos_fast.load_centroids(c, verify_key=key)


# -- the Python API ----------------------------------------------------------------------
def test_signed_round_trip_and_who_signed(tmp_path: Path, keys: dict[str, Path]) -> None:
    c = ecos_fast.save_centroids(CENTS, tmp_path / "c.safetensors", sign_key=keys["cloud"])
    r = ecos_fast.save_response(RESP, tmp_path / "r.safetensors", sign_key=keys["client"])
    back = ecos_fast.load_centroids(c, verify_key=keys["cloud.pub"])
    np.testing.assert_array_equal(back.centroids, CENTS.centroids)
    resp = ecos_fast.load_response(r, centroids=back, verify_key=keys["client.pub"])
    np.testing.assert_array_equal(resp.noisy_counts, RESP.noisy_counts)
    # A key object works as well as a file; a signed file loads without a key too.
    key = load_signing_key(keys["cloud"])
    ecos_fast.load_centroids(c, verify_key=key.public_key())
    ecos_fast.load_centroids(c)
    assert signature_of(c) == public_key_hex(key)
    doc = json.loads(header_of(c.read_bytes())["__metadata__"]["signature"])
    assert doc["scheme"] == "ed25519-v1" and len(doc["signature"]) == 128
    # The client's key did not sign the centroids.
    with pytest.raises(
        SignatureError, match=r"signed by key ed25519:\w{16}, not by the verify key"
    ):
        ecos_fast.load_centroids(c, verify_key=keys["client.pub"])


def test_unsigned_files_keep_the_old_layout_and_need_no_key(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    c = ecos_fast.save_centroids(CENTS, tmp_path / "c.safetensors")
    # Exactly the two metadata strings readers before signing accept.
    assert set(header_of(c.read_bytes())["__metadata__"]) == {"ecos", "sha256"}
    assert signature_of(c) is None
    ecos_fast.load_centroids(c)
    with pytest.raises(SignatureError, match="not signed, but a verify key"):
        ecos_fast.load_centroids(c, verify_key=keys["cloud.pub"])


def test_the_signature_covers_every_byte(tmp_path: Path, keys: dict[str, Path]) -> None:
    signed = ecos_fast.save_response(RESP, tmp_path / "r.safetensors", sign_key=keys["client"])
    blob = signed.read_bytes()
    n_header = int.from_bytes(blob[:8], "little")
    p = tmp_path / "flipped.safetensors"
    for pos in range(len(blob)):  # one flipped bit at every byte: length, header, payload
        bad = bytearray(blob)
        bad[pos] ^= 1 << (pos % 8)
        p.write_bytes(bytes(bad))
        with pytest.raises(ExchangeFileError):
            ecos_fast.load_response(p, verify_key=keys["client.pub"])
        if pos >= 8 + n_header:  # the payload: the signature, not the checksum, refuses it
            with pytest.raises(SignatureError, match="does not match the file"):
                ecos_fast.load_response(p, verify_key=keys["client.pub"])


def test_signature_digits_planted_twice_are_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    r = ecos_fast.save_response(RESP, tmp_path / "r.safetensors", sign_key=keys["client"])
    digits = json.loads(header_of(r.read_bytes())["__metadata__"]["signature"])["signature"]
    rewrite(r, RESP.noisy_counts, {"producer": digits}, keep_signature=True)
    with pytest.raises(SignatureError, match="exactly once"):
        ecos_fast.load_response(r, verify_key=keys["client.pub"])


def test_malformed_signature_field_is_refused_even_without_a_key(tmp_path: Path) -> None:
    r = ecos_fast.save_response(RESP, tmp_path / "r.safetensors")
    st_meta = header_of(r.read_bytes())["__metadata__"]
    for field, match in [
        ("[1]", "malformed signature"),
        (json.dumps({"public_key": "0" * 64, "scheme": "rsa", "signature": "0" * 128}), "scheme"),
        (json.dumps({"public_key": "x", "scheme": "ed25519-v1", "signature": "0"}), "hex digits"),
    ]:
        r.write_bytes(
            save({"noisy_counts": RESP.noisy_counts}, metadata={**st_meta, "signature": field})
        )
        with pytest.raises(SignatureError, match=match):
            ecos_fast.load_response(r)


# -- finding 7: the forgery, through the CLI -----------------------------------------------
@pytest.fixture
def exchange(tmp_path: Path, keys: dict[str, Path]) -> dict[str, Path]:
    paths = {
        "pool": tmp_path / "pool.npy",
        "private": tmp_path / "private.npy",
        "centroids": tmp_path / "c.safetensors",
        "response": tmp_path / "r.safetensors",
    }
    np.save(paths["pool"], POOL)
    np.save(paths["private"], PRIVATE)
    assert run(["-q", "sketch", str(paths["pool"]), "-o", str(paths["centroids"]), "-k", "5",
                "--sign-key", str(keys["cloud"])]) == EXIT_OK  # fmt: skip
    assert run(["-q", "respond", str(paths["centroids"]), str(paths["private"]), "-o",
                str(paths["response"]), "--epsilon", "1", "--seed", "1",
                "--verify-key", str(keys["cloud.pub"]),
                "--sign-key", str(keys["client"])]) == EXIT_OK  # fmt: skip
    return paths


def _select(exchange: dict[str, Path], *extra: str, response: Path | None = None) -> list[str]:
    out = exchange["pool"].parent / "sel.npy"
    r = exchange["response"] if response is None else response
    return ["select", str(exchange["pool"]), str(exchange["centroids"]), str(r), "-b", "50",
            "-o", str(out), *extra]  # fmt: skip


@pytest.mark.parametrize("keep_signature", [True, False])
@pytest.mark.parametrize("forgery", ["counts", "eps-inf"])
def test_issue_forgery_accepted_without_a_key_refused_with_one(
    exchange: dict[str, Path],
    keys: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    forgery: str,
    keep_signature: bool,
) -> None:
    r = exchange["response"]
    counts = np.zeros(5)
    counts[0] = 500.0  # all 50 picks from one cluster
    edit = {"epsilon": "inf", "sigma": 0.0, "mechanism": "none"} if forgery == "eps-inf" else {}
    rewrite(r, counts, edit, keep_signature=keep_signature)
    capsys.readouterr()
    # Without --verify-key the recomputed checksum passes: documented, and remarked on.
    assert run(_select(exchange)) == EXIT_OK
    err = capsys.readouterr().err
    remark = "is signed by ed25519:" if keep_signature else "is not signed"
    assert sum(remark in line for line in err.splitlines()) == 1
    # With the client's public key the forgery is refused, exit 3.
    assert (
        run(["--json", *_select(exchange, "--verify-key", str(keys["client.pub"]))]) == EXIT_INPUT
    )
    out = capsys.readouterr()
    error = json.loads(out.out)["error"]
    assert error["type"] == "SignatureError" and error["exit_code"] == EXIT_INPUT
    want = "does not match the file" if keep_signature else "not signed"
    assert want in error["message"]


def test_signed_exchange_end_to_end(
    exchange: dict[str, Path], keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert run(["--json", *_select(exchange, "--verify-key", str(keys["client.pub"]))]) == EXIT_OK
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert summary["response_verified"] is True
    assert summary["response_signed_by"] == public_key_hex(load_signing_key(keys["client"]))
    assert "not signed" not in out.err and "not verified" not in out.err
    # The wrong key, an unsigned response, --verify-key without a response.
    assert run(["-q", *_select(exchange, "--verify-key", str(keys["cloud.pub"]))]) == EXIT_INPUT
    plain = ecos_fast.save_response(RESP, exchange["pool"].parent / "plain.safetensors")
    bad = _select(exchange, "--verify-key", str(keys["client.pub"]), response=plain)
    assert run(["-q", *bad]) == EXIT_INPUT
    baseline = ["-q", "select", str(exchange["pool"]), "--method", "random", "-b", "5", "-o",
                str(exchange["pool"].parent / "b.npy"), "--verify-key", str(keys["client.pub"])]  # fmt: skip
    assert run(baseline) == EXIT_USAGE


def test_respond_verifies_the_centroids_and_inspect_reports_the_signer(
    exchange: dict[str, Path], keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = exchange["pool"].parent / "r2.safetensors"
    args = ["respond", str(exchange["centroids"]), str(exchange["private"]), "-o", str(out),
            "--epsilon", "1"]  # fmt: skip
    capsys.readouterr()
    assert run(["--json", *args, "--verify-key", str(keys["cloud.pub"])]) == EXIT_OK
    payload = json.loads(capsys.readouterr().out)
    assert payload["centroids_verified"] is True and payload["signed_by"] is None
    assert run(["-q", *args, "--verify-key", str(keys["client.pub"])]) == EXIT_INPUT
    # Tampered centroids (every coordinate moved, checksum recomputed, signature kept).
    c = exchange["centroids"]
    st_meta = header_of(c.read_bytes())["__metadata__"]
    arr = ecos_fast.load_centroids(c).centroids + 1
    meta = json.loads(st_meta["ecos"])
    meta["fingerprint"] = ecos_fast.Centroids(arr).fingerprint
    meta_json = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    h = hashlib.sha256(meta_json.encode())
    h.update(arr.tobytes())
    c.write_bytes(save({"centroids": arr}, metadata={**st_meta, "ecos": meta_json,
                                                     "sha256": h.hexdigest()}))  # fmt: skip
    assert run(["-q", *args, "--verify-key", str(keys["cloud.pub"])]) == EXIT_INPUT
    assert run(["-q", *args]) == EXIT_OK  # no key: accepted, as documented
    # inspect: the claimed signer, verified or not.
    assert run(["--json", "inspect", str(exchange["response"])]) == EXIT_OK
    captured = capsys.readouterr()
    shown = json.loads(captured.out)
    assert shown["signed_by"] is not None and shown["signature_verified"] is False
    assert "not verified" in captured.err
    verify = ["--json", "inspect", str(exchange["response"]), "--verify-key",
              str(keys["client.pub"])]  # fmt: skip
    assert run(verify) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["signature_verified"] is True


def test_a_bad_sign_key_fails_before_the_ledger_records_anything(
    exchange: dict[str, Path], keys: dict[str, Path]
) -> None:
    ledger = exchange["pool"].parent / "ledger.sqlite"
    out = exchange["pool"].parent / "r3.safetensors"
    args = ["-q", "respond", str(exchange["centroids"]), str(exchange["private"]), "-o", str(out),
            "--epsilon", "1", "--ledger", str(ledger), "--sign-key", str(keys["client.pub"])]  # fmt: skip
    assert run(args) == EXIT_INPUT
    assert not ledger.exists() and not out.exists()


def test_signing_costs_little(tmp_path: Path, keys: dict[str, Path]) -> None:
    """A signed file is the unsigned one plus one ~230-byte metadata string."""
    plain = ecos_fast.save_response(RESP, tmp_path / "p.safetensors").stat().st_size
    signed = ecos_fast.save_response(RESP, tmp_path / "s.safetensors", sign_key=keys["client"])
    assert 0 < signed.stat().st_size - plain < 300
    assert math.isclose(ecos_fast.load_response(signed).sigma, RESP.sigma)
