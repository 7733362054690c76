"""k-means (k-means++ seeding, Lloyd with empty-cluster relocation) against the
float64 NumPy oracles in ``reference`` and against its own invariants."""

from __future__ import annotations

import ecos_fast
import numpy as np
import pytest
from ecos_fast import _core, reference
from ecos_fast.errors import InvalidInputError, InvalidTypeError
from hypothesis import given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=50, deadline=None)


def blobs(n: int, d: int, centers: int, seed: int, spread: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=10.0, size=(centers, d))
    which = rng.integers(0, centers, size=n)
    return (means[which] + spread * rng.normal(size=(n, d))).astype(np.float32)


def assert_non_increasing(history: np.ndarray) -> None:
    # Exact arithmetic never increases it; allow float32 centroid rounding.
    prev, nxt = history[:-1], history[1:]
    assert np.all(nxt <= prev * (1 + 1e-5) + 1e-6), history


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, int, int]:
    n = draw(st.integers(1, 300))
    d = draw(st.integers(1, 12))
    k = draw(st.integers(1, min(n, 25)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["normal", "ints", "dups"]))
    if kind == "normal":
        x = rng.normal(size=(n, d))
    elif kind == "ints":
        x = rng.integers(-3, 4, size=(n, d))
    else:  # few distinct rows, many duplicates
        x = rng.normal(size=(max(1, n // 5), d))[rng.integers(0, max(1, n // 5), size=n)]
    return x.astype(np.float32), k, seed


@SETTINGS
@given(problems())
def test_invariants(problem: tuple[np.ndarray, int, int]) -> None:
    x, k, seed = problem
    km = ecos_fast.kmeans(x, k, seed=seed, max_iter=8, max_points_per_centroid=None)
    assert km.centroids.shape == (k, x.shape[1]) and km.centroids.dtype == np.float32
    assert km.labels.shape == (x.shape[0],) and km.labels.dtype == np.int64
    assert 1 <= km.n_iter <= 8
    assert len(km.inertia_history) == km.n_iter + 1
    assert_non_increasing(km.inertia_history)
    # Labels are the nearest final centroid, and the inertia is theirs.
    labels, d2 = ecos_fast.assign(x, km.centroids)
    np.testing.assert_array_equal(km.labels, labels)
    np.testing.assert_allclose(km.inertia, d2.astype(np.float64).sum(), rtol=1e-6, atol=1e-6)


@SETTINGS
@given(st.integers(1, 30), st.integers(0, 2**32 - 1), st.sampled_from([1, 4]))
def test_seeding_picks_every_distinct_row(k: int, seed: int, trials: int) -> None:
    # k distinct points, each repeated: k-means++ never picks a row at distance
    # 0 from a chosen centre while the potential is positive, so it must find
    # all of them and the first assignment already has zero inertia.
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(k, 3)).astype(np.float32)
    x = pts[rng.permutation(np.repeat(np.arange(k), 4))]
    km = ecos_fast.kmeans(
        x, k, seed=seed, max_iter=2, n_local_trials=trials, max_points_per_centroid=None
    )
    assert km.inertia_history[0] == 0.0
    assert sorted(map(tuple, km.centroids.tolist())) == sorted(map(tuple, pts.tolist()))


def test_matches_reference_lloyd_from_given_init() -> None:
    x = blobs(3000, 10, 12, seed=1, spread=2.0)
    init = x[:12].copy()
    iters = 6
    c_ref, lab_ref, inertia_ref = reference.kmeans_lloyd(x, init, iters)
    assert np.bincount(lab_ref, minlength=12).min() > 0  # no empty clusters on this data
    km = ecos_fast.kmeans(x, 12, init=init, max_iter=iters, tol=0.0, max_points_per_centroid=None)
    assert km.n_iter == iters
    np.testing.assert_allclose(km.centroids, c_ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(km.inertia_history[:iters], inertia_ref, rtol=1e-5)
    # Final labels: the nearest final centroids; equal to the oracle's wherever clear.
    lab_final, _ = reference.assign(x, c_ref)
    assert (km.labels == lab_final).mean() > 0.999


def test_empty_clusters_are_relocated_like_the_reference() -> None:
    # Duplicate initial centroids: clusters 1, 3 and 4 start empty (ties go to
    # the lowest index), and take the farthest rows.
    x = blobs(600, 4, 5, seed=2)
    init = np.stack([x[0], x[0], x[100], x[100], x[100]])
    assert np.bincount(reference.assign(x, init)[0], minlength=5).tolist().count(0) == 3
    c_ref, _, inertia_ref = reference.kmeans_lloyd_relocating(x, init, 5)
    km = ecos_fast.kmeans(x, 5, init=init, max_iter=5, tol=0.0, max_points_per_centroid=None)
    assert np.bincount(km.labels, minlength=5).min() > 0
    np.testing.assert_allclose(km.centroids, c_ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(km.inertia_history[:5], inertia_ref, rtol=1e-5)
    assert_non_increasing(km.inertia_history)


def test_identical_for_any_thread_count_and_seeded() -> None:
    x = blobs(5000, 9, 20, seed=3, spread=3.0)
    runs = [
        ecos_fast.kmeans(x, 20, seed=5, n_local_trials=3, max_points_per_centroid=None, n_threads=t)
        for t in (1, 2, 3)
    ]
    for r in runs[1:]:
        assert r.centroids.tobytes() == runs[0].centroids.tobytes()
        np.testing.assert_array_equal(r.labels, runs[0].labels)
        assert r.inertia_history.tobytes() == runs[0].inertia_history.tobytes()
        assert r.n_iter == runs[0].n_iter
    other = ecos_fast.kmeans(x, 20, seed=6, n_local_trials=3, max_points_per_centroid=None)
    assert other.centroids.tobytes() != runs[0].centroids.tobytes()


def test_subsample_trains_on_the_sample_then_assigns_every_row() -> None:
    x = blobs(4000, 6, 8, seed=4, spread=2.0)
    k, cap, seed = 8, 50, 9
    km = ecos_fast.kmeans(x, k, seed=seed, max_iter=10, max_points_per_centroid=cap)
    # The wrapper's sample (documented: seeded by `seed`), trained on alone.
    sample = np.sort(np.random.default_rng(seed).choice(len(x), size=k * cap, replace=False))
    alone = ecos_fast.kmeans(x[sample], k, seed=seed, max_iter=10, max_points_per_centroid=None)
    assert km.centroids.tobytes() == alone.centroids.tobytes()
    assert km.n_iter == alone.n_iter
    # History covers the training assignments only; labels cover every row.
    assert len(km.inertia_history) == km.n_iter
    labels, _ = ecos_fast.assign(x, km.centroids)
    np.testing.assert_array_equal(km.labels, labels)


def test_k1_gives_the_mean_and_k_equals_n_gives_zero_inertia() -> None:
    x = blobs(200, 5, 3, seed=5)
    km1 = ecos_fast.kmeans(x, 1, max_points_per_centroid=None)
    np.testing.assert_allclose(km1.centroids[0], x.astype(np.float64).mean(axis=0), atol=1e-5)
    assert km1.n_iter <= 2
    kmn = ecos_fast.kmeans(x[:40], 40, max_points_per_centroid=None)
    assert kmn.inertia == 0.0
    assert sorted(kmn.labels.tolist()) == list(range(40))


def test_tol_stops_early() -> None:
    x = blobs(2000, 4, 6, seed=6, spread=1.0)
    assert ecos_fast.kmeans(x, 6, tol=1e9, max_points_per_centroid=None).n_iter == 1
    km = ecos_fast.kmeans(x, 6, tol=1e-4, max_iter=300, max_points_per_centroid=None)
    assert km.n_iter < 300


def test_greedy_seeding_lowers_the_seeding_potential_on_average() -> None:
    # Greedy k-means++ keeps the best of several candidates per step, so its
    # first-assignment inertia should beat plain k-means++ over a few seeds.
    x = blobs(1500, 8, 30, seed=7, spread=1.0)
    plain = [
        ecos_fast.kmeans(x, 30, seed=s, max_iter=1, max_points_per_centroid=None).inertia_history[0]
        for s in range(5)
    ]
    greedy = [
        ecos_fast.kmeans(
            x, 30, seed=s, max_iter=1, n_local_trials=6, max_points_per_centroid=None
        ).inertia_history[0]
        for s in range(5)
    ]
    assert np.mean(greedy) < np.mean(plain)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"n_clusters": 0}, InvalidInputError),
        ({"n_clusters": 101}, InvalidInputError),
        ({"n_clusters": 2.0}, InvalidTypeError),
        ({"n_clusters": 3, "max_iter": 0}, InvalidInputError),
        ({"n_clusters": 3, "tol": -1.0}, InvalidInputError),
        ({"n_clusters": 3, "tol": float("nan")}, InvalidInputError),
        ({"n_clusters": 3, "seed": -1}, InvalidInputError),
        ({"n_clusters": 3, "n_local_trials": 0}, InvalidInputError),
        ({"n_clusters": 3, "init": np.zeros((2, 4), np.float32)}, InvalidInputError),
        ({"n_clusters": 3, "init": np.zeros((3, 5), np.float32)}, InvalidInputError),
        ({"n_clusters": 3, "max_points_per_centroid": 0}, InvalidInputError),
    ],
)
def test_invalid_parameters_are_refused(kwargs: dict, error: type[Exception]) -> None:
    x = np.zeros((100, 4), np.float32)
    with pytest.raises(error):
        ecos_fast.kmeans(x, **kwargs)


@pytest.mark.parametrize(
    ("features", "error"),
    [
        (np.array([[np.nan, 1.0], [0.0, 0.0]], np.float32), InvalidInputError),
        (np.zeros(5, np.float32), InvalidInputError),
        (np.zeros((5, 2), np.complex128), InvalidTypeError),
        (np.zeros((5, 2), object), InvalidTypeError),
        (np.zeros((0, 2), np.float32), InvalidInputError),
    ],
)
def test_invalid_features_are_refused(features: np.ndarray, error: type[Exception]) -> None:
    with pytest.raises(error):
        ecos_fast.kmeans(features, 1)


def test_core_rechecks_sample_and_init() -> None:
    x = np.zeros((10, 2), np.float32)
    with pytest.raises(ValueError, match="outside"):
        _core.kmeans(x, 2, 3, 0.0, 0, 1, None, 1, np.array([0, 10], np.int64))
    with pytest.raises(ValueError, match="n_clusters"):
        _core.kmeans(x, 3, 3, 0.0, 0, 1, None, 1, np.array([0, 1], np.int64))
    with pytest.raises(ValueError, match="init"):
        _core.kmeans(x, 2, 3, 0.0, 0, 1, np.zeros((3, 2), np.float32), 1, None)


def test_huge_counts_are_refused_not_overflowed_or_aborted() -> None:
    """Before: max_iter or n_local_trials of 10**30 failed pyo3's conversion with a bare
    OverflowError, and n_local_trials=10**9 asked the core for a trials x n_samples
    candidate buffer (240 GB for 60 rows), which aborts the process when refused."""
    x = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32)
    with pytest.raises(InvalidInputError, match="max_iter="):
        ecos_fast.kmeans(x, 2, max_iter=10**30)
    for trials in (61, 10**9, 10**30):
        with pytest.raises(InvalidInputError, match="n_local_trials="):
            ecos_fast.kmeans(x, 2, n_local_trials=trials)
    # The core's own check, without Python's in front.
    with pytest.raises(InvalidInputError, match="n_local_trials=1000000000 exceeds"):
        _core.kmeans_plusplus(x, 2, 0, 1, 10**9)
    assert ecos_fast.kmeans(x, 2, n_local_trials=60).centroids.shape == (2, 3)


@SETTINGS
@given(
    st.integers(0, 400),
    st.integers(0, 450),
    st.sampled_from(["normal", "few", "zeros"]),
    st.integers(0, 2**32 - 1),
)
def test_relocation_order_is_distance_descending_then_row(
    n: int, m: int, kind: str, seed: int
) -> None:
    """The farthest rows an empty cluster may take, against a NumPy sort: by squared
    distance descending, ties to the lowest row, min(m, n) of them (many ties in
    ``few`` and ``zeros``)."""
    rng = np.random.default_rng(seed)
    if kind == "normal":
        d = rng.random(n).astype(np.float32)
    elif kind == "few":
        d = rng.integers(0, 4, n).astype(np.float32)
    else:
        d = np.zeros(n, np.float32)
    got = _core.kmeans_relocation_order(d, m)
    want = np.lexsort((np.arange(n), -d.astype(np.float64)))[: min(m, n)]
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


def test_streamed_partials_give_the_kernels_labels_and_distances() -> None:
    """``kmeans_partial_labelled``: the sums of ``kmeans_partial`` and the assignment of
    ``assign``, bit for bit."""
    x = blobs(3000, 7, 5, seed=4)
    c = x[:9].copy()
    scales = _core.kmeans_scales(_core.kmeans_max_abs(x, 2), x.shape[0])
    s, cnt, b, lab, dist = _core.kmeans_partial_labelled(x, c, scales, 2)
    s0, cnt0, b0 = _core.kmeans_partial(x, c, scales, 2)
    lab0, dist0 = _core.assign(x, c, 2)
    for a, e in ((s, s0), (cnt, cnt0), (b, b0), (lab, lab0), (dist, dist0)):
        np.testing.assert_array_equal(a, e)
    assert cnt.sum() == x.shape[0] and np.bincount(lab, minlength=9).tolist() == cnt.tolist()
