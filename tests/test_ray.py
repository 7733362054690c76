"""The Ray backend against the local one, on a real local Ray cluster.

A session fixture starts Ray (``ray.init(num_cpus=2)``: a head node with its own
raylet, object store and worker processes) and shuts it down after. The pool is
200,000 x 16 float32 rows split into 8 ``.npy`` shards (and re-split other ways):
every result must equal the local backend's bit for bit.
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ecos_fast
import numpy as np
import pytest
from ecos_fast import ray_backend
from ecos_fast.errors import FeatureFileError, InvalidInputError, InvalidTypeError

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'ecos-fast[ray]')")
# Ray Data's own context warns about its deprecated options when first built.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

N, D, K, SHARDS = 200_000, 16, 32, 8


@pytest.fixture(scope="session")
def cluster() -> Iterator[Any]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        object_store_memory=400 * 1024 * 1024,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def pool() -> np.ndarray:
    rng = np.random.default_rng(0)
    means = rng.normal(scale=5.0, size=(40, D))
    which = rng.integers(0, 40, size=N)
    return (means[which] + rng.normal(size=(N, D))).astype(np.float32)


def write_shards(x: np.ndarray, root: Path, cuts: list[int], fmt: str = "npy") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, (a, b) in enumerate(itertools.pairwise(cuts)):
        if fmt == "npy":
            np.save(root / f"part-{i:03d}.npy", x[a:b])
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            flat = pa.array(x[a:b].reshape(-1))
            col = pa.FixedSizeListArray.from_arrays(flat, x.shape[1])
            pq.write_table(pa.table({"features": col}), root / f"part-{i:03d}.parquet")
    return root


@pytest.fixture(scope="session")
def shards(pool: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cuts = np.linspace(0, N, SHARDS + 1).astype(int).tolist()
    return write_shards(pool, tmp_path_factory.mktemp("pool8"), cuts)


@pytest.fixture(scope="session")
def other_shards(pool: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Uneven, including a one-row shard.
    return write_shards(pool, tmp_path_factory.mktemp("pool3"), [0, 1, 123_457, N])


def same_kmeans(a: ecos_fast.KMeansResult, b: ecos_fast.KMeansResult) -> None:
    assert a.centroids.tobytes() == b.centroids.tobytes()
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.n_iter == b.n_iter
    assert a.inertia_history.tobytes() == b.inertia_history.tobytes()


def test_sharded_pool_reads_directories_lists_and_arrays(
    cluster: Any, shards: Path, pool: np.ndarray
) -> None:
    p = ray_backend.ShardedPool.from_source(shards)
    assert p.n_shards == SHARDS and p.n_samples == N and p.n_features == D
    files = sorted(str(f) for f in shards.iterdir())
    assert ray_backend.ShardedPool.from_source(files).offsets == p.offsets
    rows = np.array([0, 5, 24_999, 25_000, 199_999])
    np.testing.assert_array_equal(ray_backend.gather_rows(p, rows), pool[rows])
    a = ray_backend.ShardedPool.from_source(pool, n_shards=5)
    assert a.n_shards == 5 and a.offsets[-1] == N


def test_lloyd_on_every_row_equals_local_for_any_sharding(
    cluster: Any, pool: np.ndarray, shards: Path, other_shards: Path
) -> None:
    kw: dict[str, Any] = {
        "seed": 3,
        "max_points_per_centroid": None,
        "init_sample": 4096,
        "max_iter": 8,
    }
    local = ecos_fast.kmeans(pool, K, **kw)
    stats = ray_backend.RunStats()
    same_kmeans(local, ray_backend.kmeans_sharded(shards, K, stats=stats, **kw))
    assert stats.iterations == local.n_iter and stats.n_shards == SHARDS
    same_kmeans(local, ecos_fast.kmeans(other_shards, K, backend="ray", **kw))
    same_kmeans(
        local,
        ray_backend.kmeans_sharded(ray_backend.ShardedPool.from_source(pool, n_shards=5), K, **kw),
    )


def test_sample_path_equals_local(cluster: Any, pool: np.ndarray, shards: Path) -> None:
    local = ecos_fast.kmeans(pool, K, seed=7, max_points_per_centroid=64)
    same_kmeans(
        local, ecos_fast.kmeans(shards, K, seed=7, max_points_per_centroid=64, backend="ray")
    )


def test_empty_clusters_relocate_across_shards_like_local(
    cluster: Any, pool: np.ndarray, other_shards: Path
) -> None:
    # Duplicate initial centroids: ties go to the lowest index, so the copies
    # start empty and take the globally farthest rows, from any shard.
    init = np.repeat(pool[[10, 70_000, 150_000, 199_000]], 3, axis=0)
    kw: dict[str, Any] = {"init": init, "max_points_per_centroid": None, "max_iter": 4, "tol": 0.0}
    local = ecos_fast.kmeans(pool, 12, **kw)
    assert np.bincount(local.labels, minlength=12).min() > 0
    st = ray_backend.RunStats()
    same_kmeans(local, ray_backend.kmeans_sharded(other_shards, 12, stats=st, **kw))
    # The relocation reads the iteration's own distances: no second distance pass.
    assert st.iterations == 4 and st.distance_passes == 4


def test_fit_centroids_and_assign_equal_local(cluster: Any, pool: np.ndarray, shards: Path) -> None:
    for normalize in (None, "l2"):
        loc = ecos_fast.fit_centroids(pool, K, seed=1, normalize=normalize)
        rc = ecos_fast.fit_centroids(shards, K, seed=1, normalize=normalize, backend="ray")
        assert rc.fingerprint == loc.fingerprint and rc.n_pool == N and rc.labels is None
    lab, d2 = ecos_fast.assign(shards, loc.centroids, backend="ray")
    want = ecos_fast.assign(pool, loc.centroids)
    np.testing.assert_array_equal(lab, want[0])
    assert d2.tobytes() == want[1].tobytes()


def test_features_on_disk_are_read_from_their_files(
    cluster: Any, pool: np.ndarray, tmp_path: Path
) -> None:
    """Before: Features went down the array path, read whole on the driver and put in
    the object store as 8 parts; now the workers read the file, as its path."""
    from ecos_fast.features import Features, load

    path = Features("c" * 64, {}, *pool.shape, _array=pool).save(tmp_path / "pool.npy")
    feats = load(path)
    p = ray_backend.ShardedPool.from_source(feats)
    assert p.n_shards == 1 and p.offsets == (0, N)
    assert ray_backend.ShardedPool.from_source(feats).offsets == (
        ray_backend.ShardedPool.from_source(path).offsets
    )
    rc = ecos_fast.fit_centroids(feats, K, seed=1, backend="ray")
    loc = ecos_fast.fit_centroids(pool, K, seed=1)
    assert rc.extractor_fingerprint == "c" * 64
    np.testing.assert_array_equal(rc.centroids, loc.centroids)
    cents = ecos_fast.fit_centroids(feats, K, seed=1)
    private = pool[:3000][ecos_fast.assign(pool[:3000], cents.centroids)[0] % 5 == 0]
    tagged = Features("c" * 64, {}, *private.shape, _array=private)
    sk = ecos_fast.Sketch.join(cents, ecos_fast.respond(tagged, cents, math.inf, 1e-5))
    got = ecos_fast.select(feats, sk, 500, backend="ray")
    np.testing.assert_array_equal(got.indices, ecos_fast.select(pool, sk, 500).indices)


@pytest.fixture(scope="session")
def sketch(pool: np.ndarray) -> ecos_fast.Sketch:
    cents = ecos_fast.fit_centroids(pool, K, seed=1)
    rng = np.random.default_rng(1)
    private = pool[rng.choice(N, 3000, replace=False)]
    private = private[ecos_fast.assign(private, cents.centroids)[0] % 5 == 0]  # a few clusters
    return ecos_fast.Sketch.join(cents, ecos_fast.respond(private, cents, math.inf, 1e-5))


def test_select_gather_equals_local_for_any_sharding_and_input(
    cluster: Any,
    pool: np.ndarray,
    shards: Path,
    other_shards: Path,
    sketch: ecos_fast.Sketch,
    tmp_path: Path,
) -> None:
    local = ecos_fast.select(pool, sketch, 2000)
    parquet = write_shards(pool, tmp_path / "pq", [0, 50_000, 150_000, N], fmt="parquet")
    ds = ray.data.from_numpy(pool).repartition(6)
    for source in (shards, other_shards, parquet, ds):
        got = ecos_fast.select(source, sketch, 2000, backend="ray")
        np.testing.assert_array_equal(got.indices, local.indices)
        np.testing.assert_array_equal(got.quotas, local.quotas)
        assert got.method == "ecos" and got.labels is None


@pytest.mark.parametrize(
    "within", ["neighbourhood", "nearest", "kcenter", "strata", "weighted-strata"]
)
def test_select_within_equals_local_for_one_and_many_shards(
    cluster: Any,
    pool: np.ndarray,
    shards: Path,
    other_shards: Path,
    sketch: ecos_fast.Sketch,
    tmp_path_factory: pytest.TempPathFactory,
    within: str,
) -> None:
    one = tmp_path_factory.getbasetemp() / "pool1"
    if not one.exists():
        write_shards(pool, one, [0, N])
    kw: dict[str, Any] = {"within": within, "candidates": 3.0}
    local = ecos_fast.select(pool, sketch, 1500, **kw)
    for source in (one, shards, other_shards):
        got = ecos_fast.select(source, sketch, 1500, backend="ray", **kw)
        np.testing.assert_array_equal(got.indices, local.indices)
        np.testing.assert_array_equal(got.quotas, local.quotas)


@pytest.mark.parametrize(
    ("weights", "threshold", "smooth", "epsilon"),
    [
        ("posterior", 1.0, "none", 1.0),
        ("empirical-bayes", 0.0, "none", 1.0),
        ("noisy", 2.0, "sure", 0.3),
    ],
)
def test_select_noisy_weights_equal_local(
    cluster: Any,
    pool: np.ndarray,
    other_shards: Path,
    sketch: ecos_fast.Sketch,
    weights: str,
    threshold: float,
    smooth: str,
    epsilon: float,
) -> None:
    cents = sketch.centroids
    head = pool[:20_000]
    private = head[ecos_fast.assign(head, cents.centroids)[0] % 5 == 0]
    if smooth == "sure":  # a release weak enough for SURE to smooth
        private = private[::20]
    noisy = ecos_fast.Sketch.join(cents, ecos_fast.respond(private, cents, epsilon, 1e-5, seed=0))
    kw: dict[str, Any] = {"weights": weights, "threshold": threshold, "smooth": smooth}
    local = ecos_fast.select(pool, noisy, 800, **kw)
    got = ecos_fast.select(other_shards, noisy, 800, backend="ray", **kw)
    np.testing.assert_array_equal(got.indices, local.indices)
    np.testing.assert_array_equal(got.weights, local.weights)
    if smooth == "sure":  # the smoothing took place: the weights are not the plain ones
        plain = ecos_fast.select(
            pool, noisy, 800, weights=weights, threshold=threshold, smooth="none"
        )
        assert not np.array_equal(plain.weights, local.weights)


def test_select_coreset_is_a_valid_bounded_selection(
    cluster: Any, pool: np.ndarray, shards: Path, sketch: ecos_fast.Sketch
) -> None:
    local = ecos_fast.select(pool, sketch, 600, within="kcenter")
    got = ecos_fast.select(shards, sketch, 600, backend="ray", within="kcenter", kcenter="coreset")
    np.testing.assert_array_equal(got.quotas, local.quotas)
    assert len(np.unique(got.indices)) == 600
    labels = ecos_fast.assign(pool, sketch.centroids.centroids)[0]
    assert np.array_equal(np.bincount(labels[got.indices], minlength=K), got.quotas)

    # Per cluster: covering radius <= 4 OPT <= 4 x the local greedy radius.
    def radius(members: np.ndarray, idx: np.ndarray) -> float:
        d = ((members[:, None, :] - pool[idx][None, :, :]) ** 2).sum(-1).min(1)
        return float(np.sqrt(d.max()))

    for c in np.flatnonzero(got.quotas > 0)[:3]:
        members = pool[labels == c].astype(np.float64)
        r_loc = radius(members, local.indices[labels[local.indices] == c])
        r_got = radius(members, got.indices[labels[got.indices] == c])
        assert r_got <= 4 * r_loc + 1e-6


def test_fallback_and_no_coverage_are_the_local_ones(
    cluster: Any, pool: np.ndarray, shards: Path, sketch: ecos_fast.Sketch
) -> None:
    cents = sketch.centroids
    nothing = ecos_fast.Response(
        noisy_counts=np.full(K, -1.0), epsilon=math.inf, delta=1e-5, sigma=0.0,
        sensitivity=1.0, relation="add_remove", mechanism="none",
        centroids_fingerprint=cents.fingerprint,
    )  # fmt: skip
    sk = ecos_fast.Sketch.join(cents, nothing)
    local = ecos_fast.select(pool, sk, 50, fallback="random", seed=3)
    got = ecos_fast.select(shards, sk, 50, fallback="random", seed=3, backend="ray")
    assert got.method == local.method == "ecos-fallback-random"
    np.testing.assert_array_equal(got.indices, local.indices)
    # The Ray fallback used to return quotas=None; it records the picks per cluster.
    assert got.quotas is not None and local.quotas is not None
    np.testing.assert_array_equal(got.quotas, local.quotas)
    np.testing.assert_array_equal(got.weights, local.weights)
    with pytest.raises(ecos_fast.NoCoverageError) as want:
        ecos_fast.select(pool, sk, 50)
    with pytest.raises(ecos_fast.NoCoverageError) as have:
        ecos_fast.select(shards, sk, 50, backend="ray")
    assert str(have.value) == str(want.value)


def test_errors_are_explicit(cluster: Any, shards: Path, sketch: ecos_fast.Sketch) -> None:
    with pytest.raises(InvalidInputError, match="init_sample"):
        ray_backend.kmeans_sharded(shards, K, max_points_per_centroid=None)
    with pytest.raises(InvalidTypeError, match="labels"):
        ecos_fast.select(shards, sketch, 10, backend="ray", labels=np.zeros(N, np.int64))
    with pytest.raises(InvalidInputError, match="backend"):
        ecos_fast.kmeans(np.zeros((4, 2), np.float32), 1, backend="spark")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="within='kcenter'"):
        ecos_fast.select(shards, sketch, 10, backend="ray", kcenter="coreset")
    with pytest.raises(InvalidInputError, match=r"no \.npy"):
        ray_backend.ShardedPool.from_source(shards.parent)


def test_local_backend_never_imports_ray() -> None:
    code = (
        "import sys, numpy as np, ecos_fast\n"
        "x = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)\n"
        "c = ecos_fast.fit_centroids(x, 3)\n"
        "ecos_fast.kmeans(x, 3, init_sample=50, max_points_per_centroid=None)\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


SMALL = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)


def test_default_kmeans_on_a_small_pool_equals_local(cluster: Any, tmp_path: Path) -> None:
    """Before: a pool of at most n_clusters x 256 rows asked for init_sample=."""
    np.save(tmp_path / "a.npy", SMALL)
    np.save(tmp_path / "b.npy", SMALL[::-1])
    x = np.concatenate([SMALL, SMALL[::-1]])
    same_kmeans(
        ecos_fast.kmeans(x, 3, seed=2), ecos_fast.kmeans(tmp_path, 3, seed=2, backend="ray")
    )
    same_kmeans(
        ecos_fast.kmeans(x, 3, init_sample=50),
        ecos_fast.kmeans(tmp_path, 3, init_sample=50, backend="ray"),
    )
    loc = ecos_fast.fit_centroids(x, 3)
    assert ecos_fast.fit_centroids(tmp_path, 3, backend="ray").fingerprint == loc.fingerprint


def test_zero_row_npy_shards_are_skipped(cluster: Any, tmp_path: Path) -> None:
    """Before: every call on the folder failed with "pool shard is empty"."""
    np.save(tmp_path / "a.npy", SMALL[:100])
    np.save(tmp_path / "b.npy", SMALL[:0])
    np.save(tmp_path / "c.npy", SMALL[100:])
    p = ray_backend.ShardedPool.from_source(tmp_path)
    assert p.n_shards == 2 and p.offsets == (0, 100, 300)
    lab, d2 = ecos_fast.assign(tmp_path, SMALL[:3], backend="ray")
    want = ecos_fast.assign(tmp_path, SMALL[:3])
    np.testing.assert_array_equal(lab, want[0])
    assert d2.tobytes() == want[1].tobytes()


def test_small_arrays_take_at_most_one_shard_a_row(cluster: Any) -> None:
    """Before: fewer than 8 rows failed on n_shards=8, which the caller never passed."""
    lab, _ = ecos_fast.assign(SMALL[:5], SMALL[:2], backend="ray")
    np.testing.assert_array_equal(lab, ecos_fast.assign(SMALL[:5], SMALL[:2])[0])
    assert ray_backend.ShardedPool.from_source(SMALL[:5]).n_shards == 5
    with pytest.raises(InvalidInputError, match="n_shards=6"):
        ray_backend.ShardedPool.from_source(SMALL[:5], n_shards=6)


def test_dataset_scalar_columns_keep_their_order(cluster: Any, tmp_path: Path) -> None:
    """Before: the columns of a Dataset were read sorted by name (a before b)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"b": SMALL[:, 0], "a": SMALL[:, 1]}), tmp_path / "p.parquet")
    want = ecos_fast.feature_files.load_features(tmp_path)
    for src in (tmp_path, ray.data.read_parquet(str(tmp_path))):
        p = ray_backend.ShardedPool.from_source(src)
        assert ray_backend.gather_rows(p, np.arange(300)).tobytes() == want.tobytes()


@pytest.mark.parametrize(
    ("values", "kind", "match"),
    [
        ([[1.0], [2.0, 3.0, 4.0]], "float32", "different lengths"),
        ([[1.0, 2.0], None], "float32", "nulls"),
        ([["1.5", "2"], ["3", "4"]], "string", "lists of string"),
    ],
)
def test_parquet_shards_are_checked_like_local(
    cluster: Any, tmp_path: Path, values: list[Any], kind: str, match: str
) -> None:
    """Before: ragged rows were re-cut into equal rows, nulls dropped, strings parsed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"f": pa.array(values, pa.list_(getattr(pa, kind)()))}), tmp_path / "p.parquet"
    )
    with pytest.raises(FeatureFileError, match=match):
        ecos_fast.feature_files.load_features(tmp_path)
    with pytest.raises(FeatureFileError, match=match):
        ray_backend.gather_rows(ray_backend.ShardedPool.from_source(tmp_path), [0, 1])


def _parquet(path: Path, x: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = pa.array(x.reshape(-1))
    pq.write_table(pa.table({"f": pa.FixedSizeListArray.from_arrays(flat, x.shape[1])}), path)


def test_shards_of_different_widths_are_refused_when_the_pool_is_built(
    cluster: Any, tmp_path: Path
) -> None:
    """Before: only the first Parquet file's width was read; a raw ValueError came later."""
    _parquet(tmp_path / "a.parquet", SMALL[:100])
    _parquet(tmp_path / "b.parquet", SMALL[100:, :3])
    with pytest.raises(FeatureFileError, match="different n_features") as want:
        ecos_fast.feature_files.load_features(tmp_path)
    with pytest.raises(FeatureFileError, match="different n_features") as have:
        ray_backend.ShardedPool.from_source(tmp_path)
    assert str(have.value) == str(want.value)
    np.save(tmp_path / "c.npy", SMALL[:10, :3])
    with pytest.raises(FeatureFileError, match=r"a\.parquet: \(100, 4\), b\.parquet: \(200, 3\)"):
        ray_backend.ShardedPool.from_source(tmp_path)


@pytest.mark.parametrize("case", ["column", "no rows", "corrupt", "no columns"])
def test_bad_parquet_shards_are_feature_file_errors_naming_the_file(
    cluster: Any, tmp_path: Path, case: str
) -> None:
    """Before: KeyError, a reshape ValueError, ArrowInvalid, a concatenate ValueError."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    column = "nope" if case == "column" else None
    if case == "corrupt":
        np.save(tmp_path / "a.npy", SMALL)
        path.write_text("junk")
    elif case == "no columns":
        pq.write_table(pa.table({}), path)
    else:
        _parquet(path, SMALL[:0] if case == "no rows" else SMALL)
    with pytest.raises(FeatureFileError, match=r"p\.parquet") as want:
        ecos_fast.feature_files.load_features(tmp_path, column=column)
    with pytest.raises(FeatureFileError, match=r"p\.parquet") as have:
        ray_backend.ShardedPool.from_source(tmp_path, column=column)
    assert str(have.value) == str(want.value)


def test_a_bad_value_on_a_worker_is_the_project_error_naming_the_shard(
    cluster: Any, tmp_path: Path
) -> None:
    """Before: a RayTaskError (a coloured worker traceback) saying only "at row 7"."""
    np.save(tmp_path / "a.npy", SMALL)
    bad = SMALL.copy()
    bad[7, 0] = np.nan
    np.save(tmp_path / "b.npy", bad)
    with pytest.raises(InvalidInputError) as err:
        ecos_fast.assign(tmp_path, SMALL[:3], backend="ray")
    assert type(err.value) is InvalidInputError
    assert str(err.value).startswith(f"pool shard {tmp_path / 'b.npy'} holds a non-finite value")
    assert "at row 7;" in str(err.value)


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("string", "column 's' has type string"),
        ("bool", "column 'b' has type bool"),
        ("empty", "the dataset holds no rows"),
        ("column", "no column 'nope'"),
        ("ragged", "different lengths"),
    ],
)
def test_dataset_rows_are_checked_like_parquet(cluster: Any, case: str, match: str) -> None:
    """Before: strings parsed as floats, bools read as 1.0, and raw Ray/KeyError/TypeError."""
    column = "nope" if case == "column" else None
    if case == "string":
        ds = ray.data.from_items([{"a": 1.0, "s": "2.5"}] * 4)
    elif case == "bool":
        ds = ray.data.from_items([{"a": 1.0, "b": True}] * 4)
    elif case == "empty":
        ds = ray.data.from_numpy(SMALL).limit(0)
    elif case == "ragged":
        ds = ray.data.from_items([{"f": [1.0]}, {"f": [2.0, 3.0]}], override_num_blocks=1)
    else:
        ds = ray.data.from_numpy(SMALL)
    with pytest.raises(InvalidInputError, match=match):
        ray_backend.ShardedPool.from_source(ds, column=column)


def test_normalize_is_checked_on_the_ray_entry_points(cluster: Any, tmp_path: Path) -> None:
    """Before: normalize="L2" or "l3" ran with no normalisation at all."""
    np.save(tmp_path / "a.npy", SMALL)
    with pytest.raises(InvalidInputError, match="normalize='L2' must be one of"):
        ray_backend.assign_sharded(tmp_path, SMALL[:3], normalize="L2")
    with pytest.raises(InvalidInputError, match="normalize='l3' must be one of"):
        ray_backend.kmeans_sharded(tmp_path, 3, normalize="l3")
    with pytest.raises(InvalidInputError, match="normalize='l3' must be one of"):
        ray_backend.gather_rows(ray_backend.ShardedPool.from_source(tmp_path), [0], normalize="l3")


@pytest.mark.parametrize(
    ("rows", "error", "match"),
    [
        ([0.9, 1.9], InvalidTypeError, "expected integers"),
        ([[1, 2]], InvalidInputError, "must be 1-D"),
        (["a"], InvalidTypeError, "expected integers"),
        ([0, 300], InvalidInputError, r"outside \[0, 300\)"),
    ],
)
def test_gather_rows_checks_its_indices_as_local(
    cluster: Any, tmp_path: Path, rows: Any, error: type, match: str
) -> None:
    """Before: [0.9, 1.9] was truncated to rows 0 and 1; the others raw ValueErrors."""
    np.save(tmp_path / "a.npy", SMALL)
    p = ray_backend.ShardedPool.from_source(tmp_path)
    with pytest.raises(error, match=match):
        ray_backend.gather_rows(p, rows)


@pytest.mark.parametrize("n_threads", [0, -5])
def test_n_threads_is_checked_on_every_ray_path(
    cluster: Any, tmp_path: Path, n_threads: int
) -> None:
    """Before: n_threads=0 / -5 ran (k-means with init_sample, select within="nearest")."""
    np.save(tmp_path / "a.npy", SMALL)
    match = f"n_threads={n_threads} must be >= 1"
    with pytest.raises(InvalidInputError, match=match):
        ecos_fast.kmeans(
            SMALL, 3, n_threads=n_threads, max_points_per_centroid=None, init_sample=50
        )
    with pytest.raises(InvalidInputError, match=match):
        ecos_fast.kmeans(
            tmp_path, 3, backend="ray", n_threads=n_threads,
            max_points_per_centroid=None, init_sample=50,
        )  # fmt: skip
    c = ecos_fast.Centroids(SMALL[:3])
    sk = ecos_fast.Sketch.join(c, ecos_fast.respond(SMALL[:50], c, math.inf, 1e-5))
    with pytest.raises(InvalidInputError, match=match):
        ecos_fast.select(tmp_path, sk, 10, backend="ray", within="nearest", n_threads=n_threads)


@pytest.mark.parametrize("value", ["abc", "-2", "0"])
def test_task_threads_setting_is_checked_on_the_driver(
    cluster: Any, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Before: a raw RayTaskError(ValueError/OverflowError/...) from the workers."""
    from ecos_fast.errors import EnvironmentSettingError

    monkeypatch.setenv("ECOS_FAST_TASK_THREADS", value)
    with pytest.raises(EnvironmentSettingError, match="ECOS_FAST_TASK_THREADS"):
        ecos_fast.assign(SMALL, SMALL[:2], backend="ray")


def test_select_sharded_refuses_a_sketch_that_is_not_joined(cluster: Any) -> None:
    """Before: AttributeError "'tuple' object has no attribute 'centroids'"."""
    c = ecos_fast.Centroids(SMALL[:3])
    resp = ecos_fast.respond(SMALL[:50], c, math.inf, 1e-5)
    with pytest.raises(InvalidTypeError, match=r"Sketch\.join"):
        ray_backend.select_sharded(SMALL, (c, resp), 10)  # type: ignore[arg-type]


def test_a_column_for_npy_shards_is_refused_as_local(cluster: Any, tmp_path: Path) -> None:
    """Before: from_source(folder_of_npy, column="f") ignored the column (exit 0 for a
    user who thought a Parquet column had been read); local load_features refuses it."""
    x = np.ones((6, 3), np.float32)
    np.save(tmp_path / "a.npy", x)
    for source in (tmp_path, [str(tmp_path / "a.npy")]):
        with pytest.raises(ecos_fast.InvalidInputError, match="names a Parquet column"):
            ray_backend.ShardedPool.from_source(source, column="f")
