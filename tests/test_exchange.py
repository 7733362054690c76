"""Centroids and responses across the trust boundary: round trips and corrupted files."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import ecos_fast
import numpy as np
import pytest
from ecos_fast.errors import ExchangeFileError, SketchMismatchError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save

RNG = np.random.default_rng(0)
CENTS = ecos_fast.Centroids(RNG.normal(0, 3, (6, 4)).astype(np.float32), n_pool=100, seed=3)
PRIVATE = RNG.normal(0, 3, (40, 4)).astype(np.float32)
RESP = ecos_fast.respond(PRIVATE, CENTS, 0.58, 1e-5, seed=1)


def forge(path: Path, tensor_name: str, arr: np.ndarray, meta: dict[str, Any]) -> Path:
    """Write a file in the exchange layout with a *valid* checksum (tests validation beyond it)."""
    meta_json = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    h = hashlib.sha256(meta_json.encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    path.write_bytes(
        save({tensor_name: arr}, metadata={"ecos": meta_json, "sha256": h.hexdigest()})
    )
    return path


def meta_of(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    out: dict[str, Any] = json.loads(json.loads(data[8 : 8 + n])["__metadata__"]["ecos"])
    return out


def test_centroids_round_trip(tmp_path: Path) -> None:
    for c in (CENTS, ecos_fast.Centroids(np.eye(3, dtype=np.float32), normalize="l2")):
        p = ecos_fast.save_centroids(c, tmp_path / "c.safetensors")
        back = ecos_fast.load_centroids(p)
        np.testing.assert_array_equal(back.centroids, c.centroids)
        assert (back.fingerprint, back.n_pool, back.seed, back.normalize) == (
            c.fingerprint, c.n_pool, c.seed, c.normalize,
        )  # fmt: skip
        assert back.labels is None
    assert [f.name for f in tmp_path.iterdir()] == ["c.safetensors"]  # no temp files left


def test_labels_are_not_written(tmp_path: Path) -> None:
    pool = RNG.normal(0, 1, (60, 4)).astype(np.float32)
    c = ecos_fast.fit_centroids(pool, 3)
    p = ecos_fast.save_centroids(c, tmp_path / "c.safetensors")
    assert "labels" not in meta_of(p) and p.stat().st_size < 2000


@pytest.mark.parametrize(
    ("epsilon", "relation"), [(0.58, "add_remove"), (2.0, "replace_one"), (math.inf, "add_remove")]
)
def test_response_round_trip(tmp_path: Path, epsilon: float, relation: str) -> None:
    r = ecos_fast.respond(PRIVATE, CENTS, epsilon, 1e-6, relation=relation, seed=2)  # type: ignore[arg-type]
    p = ecos_fast.save_response(r, tmp_path / "r.safetensors")
    back = ecos_fast.load_response(p, centroids=CENTS)
    np.testing.assert_array_equal(back.noisy_counts, r.noisy_counts)
    for f in ("epsilon", "delta", "sigma", "sensitivity", "relation", "mechanism",
              "centroids_fingerprint", "schema_version"):  # fmt: skip
        assert getattr(back, f) == getattr(r, f)
    ecos_fast.Sketch.join(ecos_fast.load_centroids(
        ecos_fast.save_centroids(CENTS, tmp_path / "c.safetensors")), back)  # fmt: skip


def test_overwrite_is_atomic_replace(tmp_path: Path) -> None:
    p = tmp_path / "r.safetensors"
    ecos_fast.save_response(RESP, p)
    inode = p.stat().st_ino
    ecos_fast.save_response(RESP, p)
    assert p.stat().st_ino != inode  # replaced by rename, not rewritten in place
    assert sorted(f.name for f in tmp_path.iterdir()) == ["r.safetensors"]


@pytest.fixture(scope="module")
def good_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("good")
    return {
        "centroids": ecos_fast.save_centroids(CENTS, d / "c.safetensors").read_bytes(),
        "response": ecos_fast.save_response(RESP, d / "r.safetensors").read_bytes(),
    }


def _load(kind: str, path: Path) -> object:
    if kind == "centroids":
        return ecos_fast.load_centroids(path)
    return ecos_fast.load_response(path, centroids=CENTS)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(kind=st.sampled_from(["centroids", "response"]), data=st.data())
def test_truncation_anywhere_is_a_clear_error(
    tmp_path: Path, good_files: dict[str, bytes], kind: str, data: st.DataObject
) -> None:
    blob = good_files[kind]
    cut = data.draw(st.integers(0, len(blob) - 1))
    p = tmp_path / f"cut-{kind}.safetensors"
    p.write_bytes(blob[:cut])
    with pytest.raises(ExchangeFileError, match=str(p)):
        _load(kind, p)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(kind=st.sampled_from(["centroids", "response"]), data=st.data())
def test_any_bit_flip_is_a_clear_error(
    tmp_path: Path, good_files: dict[str, bytes], kind: str, data: st.DataObject
) -> None:
    blob = bytearray(good_files[kind])
    pos = data.draw(st.integers(0, len(blob) - 1))
    blob[pos] ^= 1 << data.draw(st.integers(0, 7))
    p = tmp_path / f"flip-{kind}.safetensors"
    p.write_bytes(bytes(blob))
    with pytest.raises(ExchangeFileError, match=str(p)):
        _load(kind, p)


def test_bit_flip_in_payload_names_the_checksum(
    tmp_path: Path, good_files: dict[str, bytes]
) -> None:
    blob = bytearray(good_files["centroids"])
    blob[-3] ^= 0x10
    p = tmp_path / "c.safetensors"
    p.write_bytes(bytes(blob))
    with pytest.raises(ExchangeFileError, match="checksum mismatch"):
        ecos_fast.load_centroids(p)


def test_huge_declared_header_is_refused_without_allocating(tmp_path: Path) -> None:
    p = tmp_path / "huge.safetensors"
    p.write_bytes((2**62).to_bytes(8, "little") + b"{}" * 10)
    with pytest.raises(ExchangeFileError, match=r"declares a 4611686018427387904-byte header"):
        ecos_fast.load_centroids(p)
    p.write_bytes((1000).to_bytes(8, "little") + b"{}")
    with pytest.raises(ExchangeFileError, match="truncated"):
        ecos_fast.load_centroids(p)


def test_file_size_cap_missing_file_and_directory(tmp_path: Path) -> None:
    p = ecos_fast.save_centroids(CENTS, tmp_path / "c.safetensors")
    with pytest.raises(ExchangeFileError, match="exceeds max_bytes=64"):
        ecos_fast.load_centroids(p, max_bytes=64)
    with pytest.raises(ExchangeFileError, match="cannot read"):
        ecos_fast.load_centroids(tmp_path / "missing.safetensors")
    with pytest.raises(ExchangeFileError, match="not a regular file"):
        ecos_fast.load_centroids(tmp_path)
    (tmp_path / "tiny").write_bytes(b"abc")
    with pytest.raises(ExchangeFileError, match="truncated: 3 bytes"):
        ecos_fast.load_centroids(tmp_path / "tiny")


def test_validation_beyond_the_checksum(tmp_path: Path) -> None:
    cm = meta_of(ecos_fast.save_centroids(CENTS, tmp_path / "c.safetensors"))
    rm = meta_of(ecos_fast.save_response(RESP, tmp_path / "r.safetensors"))
    c, v = CENTS.centroids.copy(), RESP.noisy_counts.copy()
    nan_c = c.copy()
    nan_c[1, 2] = np.nan
    p = tmp_path / "x.safetensors"
    cases_c: list[tuple[str, np.ndarray, dict[str, Any], str]] = [
        ("centroids", c, {**cm, "schema_version": 2}, "schema_version=2"),
        ("centroids", c, {**cm, "schema": "ecos-fast/response"}, "expected 'ecos-fast/centroids'"),
        ("centroids", c[:5], cm, r"float32 \(6, 4\)"),
        ("centroids", c.astype(np.float64), cm, "float64"),
        ("centroids", nan_c, {**cm, "fingerprint": "0" * 64}, "NaN or inf"),
        ("centroids", c, {**cm, "fingerprint": "0" * 64}, "fingerprint does not match"),
        ("centroids", c, {**cm, "normalize": "l3"}, "normalize"),
        ("centroids", c, {**cm, "extra": 1}, "Additional properties"),
        ("other", c, cm, "expected exactly \\['centroids'\\]"),
    ]
    for name, arr, meta, match in cases_c:
        forge(p, name, arr, meta)
        with pytest.raises(ExchangeFileError, match=match):
            ecos_fast.load_centroids(p)
    cases_r: list[tuple[np.ndarray, dict[str, Any], str]] = [
        (v, {**rm, "schema_version": 0}, "schema_version=0"),
        (v, {**rm, "epsilon": 0}, "epsilon"),
        (v, {**rm, "epsilon": -1.0}, "epsilon"),
        (v, {**rm, "delta": 1.5}, "delta"),
        (v, {**rm, "sigma": -1.0}, "sigma"),
        (v, {**rm, "sigma": RESP.sigma / 2}, "is below the sigma="),
        (v, {**rm, "relation": "replace_one"}, "sensitivity=1.0 but relation='replace_one'"),
        (v, {**rm, "mechanism": "none"}, "mechanism='none'"),
        (v[:3], rm, r"float64 \(6,\)"),
        (v.astype(np.float32), rm, "float32"),
        (np.where(np.arange(6) == 2, np.inf, v), rm, "NaN or inf"),
        (v, {**rm, "neighbours": 0}, "neighbours"),
        (v, {**rm, "neighbours": 7}, "neighbours=7 exceeds the 6 counts"),
        (v, {**rm, "neighbours": 2.5}, "neighbours"),
        (v, {**rm, "neighbours": True}, "neighbours"),
    ]
    for arr, meta, match in cases_r:
        forge(p, "noisy_counts", arr, meta)
        with pytest.raises(ExchangeFileError, match=match):
            ecos_fast.load_response(p)


def test_response_for_other_centroids(tmp_path: Path) -> None:
    p = ecos_fast.save_response(RESP, tmp_path / "r.safetensors")
    other = ecos_fast.Centroids(CENTS.centroids + 1)
    with pytest.raises(SketchMismatchError, match=f"{p}: the response answers centroids"):
        ecos_fast.load_response(p, centroids=other)
    bigger = ecos_fast.Centroids(np.zeros((7, 4), dtype=np.float32))
    with pytest.raises(SketchMismatchError, match="6 counts but the centroids have n_clusters=7"):
        ecos_fast.load_response(p, centroids=bigger)
    assert issubclass(SketchMismatchError, ExchangeFileError)


def test_save_rejects_wrong_objects(tmp_path: Path) -> None:
    with pytest.raises(ExchangeFileError, match="Centroids"):
        ecos_fast.save_centroids(CENTS.centroids, tmp_path / "c")  # type: ignore[arg-type]
    with pytest.raises(ExchangeFileError, match="Response"):
        ecos_fast.save_response(CENTS, tmp_path / "r")  # type: ignore[arg-type]
    assert not os.listdir(tmp_path)


def test_file_kind_reads_only_the_header(tmp_path: Path) -> None:
    from ecos_fast.exchange import file_kind

    c = ecos_fast.save_centroids(CENTS, tmp_path / "c.safetensors")
    r = ecos_fast.save_response(RESP, tmp_path / "r.safetensors")
    assert (file_kind(c), file_kind(r)) == ("centroids", "response")
    # A payload byte flipped: the kind is still read (verifying is load_*'s job).
    data = bytearray(c.read_bytes())
    data[-1] ^= 1
    (tmp_path / "flip").write_bytes(bytes(data))
    assert file_kind(tmp_path / "flip") == "centroids"
    # The same limit and messages as loading, through the same parser.
    (tmp_path / "huge").write_bytes((2**62).to_bytes(8, "little") + b"{}")
    with pytest.raises(ExchangeFileError, match="declares a 4611686018427387904-byte header"):
        file_kind(tmp_path / "huge")
    (tmp_path / "tiny").write_bytes(b"abc")
    with pytest.raises(ExchangeFileError, match="truncated: 3 bytes"):
        file_kind(tmp_path / "tiny")
    (tmp_path / "zeros").write_bytes(b"\x00" * 64)
    with pytest.raises(ExchangeFileError, match="header is not valid JSON"):
        file_kind(tmp_path / "zeros")
    other = forge(tmp_path / "o", "centroids", CENTS.centroids, {"schema": "acme/thing"})
    with pytest.raises(ExchangeFileError, match="schema='acme/thing', expected"):
        file_kind(other)
    with pytest.raises(ExchangeFileError, match="cannot read the exchange file"):
        file_kind(tmp_path / "missing")


def test_producer_is_the_package_version(tmp_path: Path) -> None:
    for p in (
        ecos_fast.save_centroids(CENTS, tmp_path / "c.safetensors"),
        ecos_fast.save_response(RESP, tmp_path / "r.safetensors"),
    ):
        assert meta_of(p)["producer"] == f"ecos-fast {ecos_fast.__version__}"


# -- finding 3: a header nested past any sane depth is a clear error -----------------
def _header_file(path: Path, header: bytes) -> Path:
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    return path


def _nested_ecos_file(path: Path, depth: int) -> Path:
    """Valid outer JSON whose ``ecos`` metadata string is ``depth`` nested arrays."""
    ecos = "[" * depth + "]" * depth
    header = json.dumps({"__metadata__": {"ecos": ecos, "sha256": "0" * 64}}).encode()
    return _header_file(path, header)


@pytest.mark.parametrize("where", ["header", "ecos"])
@pytest.mark.parametrize("reader", ["centroids", "response", "file_kind"])
def test_deeply_nested_json_is_an_exchange_file_error(
    tmp_path: Path, where: str, reader: str
) -> None:
    from ecos_fast.exchange import file_kind

    p = tmp_path / "nested.safetensors"
    if where == "header":  # the probe: 100,000 '[' (RecursionError before)
        _header_file(p, b"[" * 100_000)
    else:
        _nested_ecos_file(p, 100_000)
    read = {"centroids": ecos_fast.load_centroids, "response": ecos_fast.load_response}
    with pytest.raises(ExchangeFileError, match=f"{p}.*nested"):
        read.get(reader, file_kind)(p)


def test_nesting_is_bounded_below_what_the_interpreter_could_parse(tmp_path: Path) -> None:
    from ecos_fast.exchange import MAX_JSON_DEPTH, file_kind

    # Parses without RecursionError, yet deeper than any header needs: refused by the bound.
    p = _nested_ecos_file(tmp_path / "deep.safetensors", MAX_JSON_DEPTH + 1)
    with pytest.raises(ExchangeFileError, match=f"nested deeper than {MAX_JSON_DEPTH}"):
        file_kind(p)
    value: Any = []
    for _ in range(MAX_JSON_DEPTH):
        value = [value]  # the header object, then MAX_JSON_DEPTH + 1 lists
    _header_file(
        p, json.dumps({"__metadata__": {"ecos": "{}", "sha256": "0"}, "x": value}).encode()
    )
    with pytest.raises(ExchangeFileError, match="nested deeper"):
        ecos_fast.load_centroids(p)


@pytest.mark.parametrize("command", ["inspect", "respond", "select"])
def test_cli_nested_header_exits_3_with_a_json_error(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ecos_fast.cli import EXIT_INPUT, run

    bad = _header_file(tmp_path / "nested.safetensors", b"[" * 100_000)
    good_c = ecos_fast.save_centroids(CENTS, tmp_path / "c.safetensors")
    feats = tmp_path / "x.npy"
    np.save(feats, PRIVATE)
    args = {
        "inspect": ["inspect", bad],
        "respond": ["respond", bad, feats, "-o", tmp_path / "r.safetensors", "--epsilon", 1],
        "select": ["select", feats, good_c, bad, "-b", 5, "-o", tmp_path / "s.npy"],
    }[command]
    capsys.readouterr()
    assert run(["--json", *map(str, args)]) == EXIT_INPUT
    out = capsys.readouterr()
    err = json.loads(out.out)["error"]
    assert err["type"] == "ExchangeFileError" and err["exit_code"] == EXIT_INPUT
    assert "nested" in err["message"] and "Traceback" not in out.err


# -- finding 5: one atomic writer, never through a planted link ----------------------
def _plant(folder: Path, name: str) -> Path:
    """A symlink at the old writers' predictable temporary name, pointing at a victim."""
    victim = folder / "victim.txt"
    victim.write_text("precious")
    (folder / f".{name}.tmp").symlink_to(victim)
    return victim


def test_report_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from ecos_fast.report import write_report

    pool = RNG.normal(0, 1, (50, 4)).astype(np.float32)
    for name in ("report.html",):  # .png goes through the same writer
        victim = _plant(tmp_path, name)
        write_report(tmp_path / name, pool, np.arange(5), summary={"method": "random"})
        assert victim.read_text() == "precious"  # the link's target is untouched
        assert (tmp_path / f".{name}.tmp").is_symlink()  # and the link was not used
        assert (tmp_path / name).stat().st_size > 1000
        victim.unlink()
        (tmp_path / f".{name}.tmp").unlink()


def test_cli_writers_do_not_follow_planted_symlinks(tmp_path: Path) -> None:
    from ecos_fast.cli import run

    feats = tmp_path / "pool.npy"
    np.save(feats, RNG.normal(0, 1, (60, 4)).astype(np.float32))
    targets = {"s.npy": tmp_path / "a", "s.json": tmp_path / "b", "c.safetensors": tmp_path / "c"}
    victims = []
    for name, folder in targets.items():
        folder.mkdir()
        victims.append(_plant(folder, name))
    out, summary, cents = (targets[n] / n for n in targets)
    select = ["-q", "select", feats, "--method", "random", "-b", 5, "-o", out, "--summary", summary]
    assert run([str(a) for a in select]) == 0
    assert run([str(a) for a in ["-q", "sketch", feats, "-o", cents, "-k", 3]]) == 0
    assert [v.read_text() for v in victims] == ["precious"] * 3
    assert np.load(out).shape == (5,) and json.loads(summary.read_text())["n_selected"] == 5


def test_a_failing_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecos_fast.atomic import atomic_writer, write_atomically

    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="mid-write"), atomic_writer(target) as f:
        f.write(b"half of the new")
        raise RuntimeError("mid-write")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    for write in (
        lambda p: write_atomically(p, b"new"),
        lambda p: ecos_fast.save_centroids(CENTS, p),
    ):
        with pytest.raises(OSError, match="No space"):
            write(target)
        assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_report_failing_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("matplotlib")
    from ecos_fast.report import write_report

    target = tmp_path / "r.html"
    target.write_text("old report")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)  # the old writer never fsynced, so never saw it
    pool = RNG.normal(0, 1, (30, 4)).astype(np.float32)
    with pytest.raises(OSError, match="No space"):
        write_report(target, pool, np.arange(3), summary={})
    assert target.read_text() == "old report" and os.listdir(tmp_path) == ["r.html"]


def test_atomic_writes_permissions_and_no_clobber(tmp_path: Path) -> None:
    from ecos_fast.atomic import write_atomically

    umask = os.umask(0o027)
    try:
        p = ecos_fast.save_centroids(CENTS, tmp_path / "c.safetensors")
        assert p.stat().st_mode & 0o777 == 0o640  # as a plain open() would make it
        assert write_atomically(tmp_path / "k", b"s", mode=0o600).stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(umask)
    with pytest.raises(FileExistsError):
        write_atomically(tmp_path / "k", b"other", overwrite=False)
    assert (tmp_path / "k").read_bytes() == b"s"
    assert sorted(os.listdir(tmp_path)) == ["c.safetensors", "k"]
    # A target that is a symlink is replaced by the file; the link's target is not written.
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "link").symlink_to(victim)
    write_atomically(tmp_path / "link", b"new")
    assert victim.read_text() == "precious" and not (tmp_path / "link").is_symlink()


def test_neighbours_round_trip_and_plain_counts_keep_the_old_layout(tmp_path: Path) -> None:
    soft = ecos_fast.respond(PRIVATE, CENTS, 0.58, 1e-5, seed=1, neighbours=3)
    p = ecos_fast.save_response(soft, tmp_path / "soft.safetensors")
    back = ecos_fast.load_response(p, centroids=CENTS)
    assert back.neighbours == 3 and meta_of(p)["neighbours"] == 3
    assert np.array_equal(back.noisy_counts, soft.noisy_counts)
    # Plain counts write no such key: their files are what earlier versions wrote and read.
    plain = ecos_fast.save_response(RESP, tmp_path / "plain.safetensors")
    assert "neighbours" not in meta_of(plain)
    assert ecos_fast.load_response(plain).neighbours == 1
