"""Feature matrices on disk: .npy (memory-mapped), Parquet, folders and lists of shards.

Every cloud-side function takes such a path (issue 14, item 3: `select("pool.npy", ...)`
failed on a `<U8` dtype, and Parquet worked only with backend="ray").
"""

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
        (lambda d: d, r"folder holds no \.npy/\.parquet shards"),
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
    with pytest.raises(InvalidInputError, match="features must be real numbers"):
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


# --- every cloud-side function takes a path (issue 14, item 3) -----------------------


def _pool() -> np.ndarray:
    rng = np.random.default_rng(0)
    groups = [rng.normal(m, 1.0, (60, 4)) for m in (0.0, 8.0, 16.0)]
    return np.concatenate(groups).astype(np.float32)


def _fixed_list_table(x: np.ndarray) -> object:
    pa = pytest.importorskip("pyarrow")
    flat = pa.array(np.ascontiguousarray(x).ravel())
    return pa.table({"features": pa.FixedSizeListArray.from_arrays(flat, x.shape[1])})


def _sources(tmp_path: Path, x: np.ndarray) -> dict[str, object]:
    """The same pool as every kind of path the loader takes."""
    pq = pytest.importorskip("pyarrow.parquet")
    np.save(tmp_path / "pool.npy", x)
    pq.write_table(_fixed_list_table(x), tmp_path / "pool.parquet")
    shards = tmp_path / "shards"
    shards.mkdir()
    np.save(shards / "part-0.npy", x[:70])
    pq.write_table(_fixed_list_table(x[70:130]), shards / "part-1.parquet")
    np.save(shards / "part-2.npy", x[130:])
    listed = [tmp_path / "b.npy", str(tmp_path / "a.npy")]  # a list keeps its own order
    np.save(listed[0], x[100:])
    np.save(listed[1], x[:100])
    return {
        "str": str(tmp_path / "pool.npy"),
        "path": tmp_path / "pool.npy",
        "parquet": tmp_path / "pool.parquet",
        "folder": shards,
        "list": listed,
    }


def test_every_cloud_side_function_takes_a_path(tmp_path: Path) -> None:
    import math

    import ecos_fast

    x = _pool()
    cents = ecos_fast.fit_centroids(x, n_clusters=3, seed=0)
    resp = ecos_fast.respond(x[60:120], cents, math.inf, 1e-5, seed=0)
    sketch = ecos_fast.Sketch.join(cents, resp)
    want = {
        "select": ecos_fast.select(x, sketch, 20).indices,
        "fit": cents.centroids,
        "kmeans": ecos_fast.kmeans(x, 3, seed=0).centroids,
        "assign": ecos_fast.assign(x, cents.centroids)[0],
        "kcenter": ecos_fast.select_kcenter(x, 7).indices,
        "greedy": ecos_fast.kcenter_greedy(x, 7)[0],
        "random": ecos_fast.select_random(x, 7, seed=1).indices,
    }
    for kind, src in _sources(tmp_path, x).items():
        got = {
            "select": ecos_fast.select(src, sketch, 20).indices,
            "fit": ecos_fast.fit_centroids(src, n_clusters=3, seed=0).centroids,
            "kmeans": ecos_fast.kmeans(src, 3, seed=0).centroids,
            "assign": ecos_fast.assign(src, cents.centroids)[0],
            "kcenter": ecos_fast.select_kcenter(src, 7).indices,
            "greedy": ecos_fast.kcenter_greedy(src, 7)[0],
            "random": ecos_fast.select_random(src, 7, seed=1).indices,
        }
        if kind == "list":  # rows 100.. first: the same pool in another row order
            perm = np.r_[100:180, 0:100]
            np.testing.assert_array_equal(got["assign"], want["assign"][perm], err_msg=kind)
            continue
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{kind}: {name}")


def test_a_npy_path_is_mapped_and_a_fixed_list_parquet_is_viewed(tmp_path: Path) -> None:
    from ecos_fast._validation import as_features

    x = _pool()
    src = _sources(tmp_path, x)
    mapped = as_features(src["str"])
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable  # no copy
    viewed = load_features(src["parquet"])
    assert not viewed.flags.owndata and not viewed.flags.writeable  # Arrow's buffer
    assert viewed.dtype == np.float32 and viewed.flags.c_contiguous
    np.testing.assert_array_equal(viewed, x)
    assert as_features(src["parquet"]).base is not None  # handed on without a copy
    np.testing.assert_array_equal(load_features(src["folder"]), x)


def test_parquet_layouts(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    x = _pool()[:10]
    # One numeric column per feature, plain (variable-size) lists, several row groups.
    pq.write_table(pa.table({f"f{j}": x[:, j] for j in range(4)}), tmp_path / "cols.parquet")
    pq.write_table(pa.table({"v": pa.array(x.tolist())}), tmp_path / "lists.parquet")
    pq.write_table(_fixed_list_table(x), tmp_path / "groups.parquet", row_group_size=3)
    for name in ("cols", "lists", "groups"):
        got = load_features(tmp_path / f"{name}.parquet")
        assert got.dtype == np.float32, name
        np.testing.assert_array_equal(got, x, err_msg=name)
    both = pa.table({"id": pa.array(range(10)), "emb": _fixed_list_table(x).column(0)})
    pq.write_table(both, tmp_path / "two.parquet")
    np.testing.assert_array_equal(load_features(tmp_path / "two.parquet", column="emb"), x)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.npy", r"missing\.npy: no such file or folder"),
        (lambda d: _save(d / "s.npy", np.array([["a", "b"]])), r"s\.npy: holds dtype <U1"),
        (lambda d: _save(d / "b.npy", np.ones((2, 2), bool)), r"b\.npy: holds dtype bool"),
        (lambda d: [_save(d / "a.npy", np.ones((2, 2), np.float32)), d / "gone.npy"],
         r"gone\.npy: no such file"),
        (lambda d: [_save(d / "a.npy", np.ones((2, 2), np.float32)),
                    _save(d / "w.npy", np.ones((2, 3), np.float32))],
         r"2 shards: shards have different n_features \(a\.npy: \(2, 2\), w\.npy: \(2, 3\)\)"),
        (lambda d: [d], "a folder in a list of shards"),
        (lambda d: _write(d / "t.parquet", b"PAR1 not parquet"), r"t\.parquet: cannot read it"),
    ],
)  # fmt: skip
def test_bad_paths_name_the_file(tmp_path: Path, make: object, message: str) -> None:
    import ecos_fast
    from ecos_fast.errors import FeatureFileError

    src = make(tmp_path)  # type: ignore[operator]
    if str(src).endswith(".parquet"):
        pytest.importorskip("pyarrow")
    with pytest.raises(FeatureFileError, match=message):
        ecos_fast.select_kcenter(src, 1)
    with pytest.raises(FeatureFileError, match=message):
        ecos_fast.select_random(src, 1, seed=0)


def test_bad_parquet_columns(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from ecos_fast.errors import FeatureFileError

    cases = {
        "text": (pa.table({"f": pa.array(["a", "b"])}), "has type string"),
        "ragged": (pa.table({"v": pa.array([[1.0, 2.0], [3.0]])}), "different lengths"),
        "nulls": (pa.table({"v": pa.array([[1.0], None])}), "holds 1 nulls"),
        "strings": (pa.table({"v": pa.array([["a"], ["b"]])}), "lists of string"),
    }
    for name, (table, message) in cases.items():
        pq.write_table(table, tmp_path / f"{name}.parquet")
        with pytest.raises(FeatureFileError, match=message):
            load_features(tmp_path / f"{name}.parquet")
    with pytest.raises(FeatureFileError, match="no column 'x'"):
        load_features(tmp_path / "text.parquet", column="x")


def test_the_cli_reads_parquet_through_the_same_loader(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    from ecos_fast.cli import run
    from ecos_fast.exchange import load_centroids

    x = _pool()
    pq.write_table(_fixed_list_table(x), tmp_path / "pool.parquet")
    out = tmp_path / "c.safetensors"
    assert run(["--quiet", "sketch", str(tmp_path / "pool.parquet"), "-o", str(out),
                "--clusters", "3", "--seed", "0"]) == 0  # fmt: skip
    assert load_centroids(out).n_clusters == 3
    assert run(["--quiet", "sketch", str(tmp_path / "nope.parquet"), "-o", str(out)]) == 3


def test_a_column_for_npy_files_is_an_error(tmp_path: Path) -> None:
    """Before: column= (and --column) was ignored for .npy features, as if it had been
    read; a folder that also holds Parquet shards still takes it."""
    np.save(tmp_path / "a.npy", np.ones((3, 2), np.float32))
    for source in (tmp_path / "a.npy", tmp_path, [tmp_path / "a.npy"]):
        with pytest.raises(InvalidInputError, match="column='f' names a Parquet column"):
            load_features(source, column="f")
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"f": pa.array([[0.0, 1.0]], pa.list_(pa.float32(), 2)), "id": [7]})
    pq.write_table(table, tmp_path / "b.parquet")
    assert load_features(tmp_path, column="f").shape == (4, 2)
