"""Feature matrices on disk: one memory-mapped .npy file or a folder of .npy shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ecos_fast.errors import InvalidInputError
from ecos_fast.feature_files import list_shards, load_features, open_npy


def test_one_file_is_memory_mapped_without_a_copy(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "x.npy", x)
    got = load_features(tmp_path / "x.npy")
    assert isinstance(got, np.memmap) and got.dtype == np.float32 and not got.flags.writeable
    np.testing.assert_array_equal(got, x)


def test_shards_are_rows_in_name_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    for name, part in zip(("p2.npy", "p0.npy", "p1.npy"), (x[7:], x[:3], x[3:7]), strict=True):
        np.save(tmp_path / name, part)
    (tmp_path / "README").write_text("not a shard")
    (tmp_path / "sub.npy").mkdir()  # a folder named like a shard is not one
    assert [p.name for p in list_shards(tmp_path)] == ["p0.npy", "p1.npy", "p2.npy"]
    np.testing.assert_array_equal(load_features(tmp_path), x)


def test_integer_and_half_shards_are_gathered_as_float32(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.ones((2, 3), np.int16))
    np.save(tmp_path / "b.npy", np.full((1, 3), 0.5, np.float16))
    got = load_features(tmp_path)
    assert got.dtype == np.float32
    assert got.tolist() == [[1.0] * 3, [1.0] * 3, [0.5] * 3]
    np.save(tmp_path / "c.npy", np.zeros((1, 3), np.float64))
    assert load_features(tmp_path).dtype == np.float64  # wide floats are kept


def test_suffixes_choose_the_shards(tmp_path: Path) -> None:
    for name in ("a.npy", "b.parquet", "c.csv"):
        (tmp_path / name).write_bytes(b"")
    got = list_shards(tmp_path, (".npy", ".parquet"))
    assert [p.name for p in got] == ["a.npy", "b.parquet"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.npy", "no such file or folder"),
        (lambda d: d, r"folder holds no \.npy shards"),
        (lambda d: _write(d / "t.npy", b"not an array"), "cannot read it as a .npy array"),
        (lambda d: _save(d / "o.npy", np.array([{"a": 1}], dtype=object)), "cannot read"),
        (lambda d: _save(d / "v.npy", np.zeros(5, np.float32)), r"must be 2-D .* shape=\(5,\)"),
    ],
)
def test_bad_files_raise_invalid_input(tmp_path: Path, make: object, message: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(InvalidInputError, match=message):
        load_features(path)


def test_bad_shard_folders(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((3, 2), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((3, 4), np.float32))
    with pytest.raises(InvalidInputError, match=r"different n_features \(a\.npy: \(3, 2\)"):
        load_features(tmp_path)
    np.save(tmp_path / "b.npy", np.zeros((3, 2), np.complex64))
    with pytest.raises(InvalidInputError, match="expected real numbers"):
        load_features(tmp_path)
    with pytest.raises(InvalidInputError, match="not a folder"):
        list_shards(tmp_path / "a.npy")
    with pytest.raises(InvalidInputError, match=r"shape=\(3, 2, 1\)"):
        open_npy(_save(tmp_path / "c.npy", np.zeros((3, 2, 1), np.float32)))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _save(path: Path, arr: np.ndarray) -> Path:
    np.save(path, arr, allow_pickle=True)
    return path
