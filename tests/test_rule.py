"""The ECOS rule's pieces (ecos_fast.rule) on tiny hand-made pools with known answers."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import ecos_fast
import numpy as np
import pytest
from ecos_fast import _core, reference, rule
from ecos_fast.errors import EcosWarning, InvalidInputError, LowSignalWarning
from hypothesis import given, settings
from hypothesis import strategies as st


def exact_sketch(centroids: list[list[float]], counts: list[float]) -> ecos_fast.Sketch:
    """A noiseless release (epsilon = inf) with the given counts."""
    cents = ecos_fast.Centroids(np.asarray(centroids, np.float32))
    resp = ecos_fast.Response(
        noisy_counts=np.asarray(counts, np.float64), epsilon=math.inf, delta=1e-5, sigma=0.0,
        sensitivity=1.0, relation="add_remove", mechanism="none",
        centroids_fingerprint=cents.fingerprint,
    )  # fmt: skip
    return ecos_fast.Sketch.join(cents, resp)


# One cluster around 0 (rows 0-5) and one around 10 (rows 6-8), in one dimension.
POOL = np.array([[0.1], [0.5], [-0.2], [3.0], [-4.0], [0.3], [10.1], [10.3], [9.0]], np.float32)
SKETCH = exact_sketch([[0.0], [10.0]], [5.0, 0.0])


def test_nearest_takes_the_quota_nearest_the_centroid() -> None:
    sel = ecos_fast.select(POOL, SKETCH, 3, within="nearest")
    # |x|: row 0 (0.1), row 2 (0.2), row 5 (0.3), then row 1 (0.5): nearest first.
    assert sel.indices.tolist() == [0, 2, 5]
    assert sel.quotas is not None and sel.quotas.tolist() == [3, 0]


def test_neighbourhood_is_kcenter_inside_the_candidate_set() -> None:
    # quota 2, candidates 2: the 4 nearest members {0, 2, 5, 1}; K-Center starts at
    # the nearest (row 0, 0.1) and takes the candidate farthest from it (row 1, 0.5).
    sel = ecos_fast.select(POOL, SKETCH, 2, within="neighbourhood", candidates=2.0)
    assert sel.indices.tolist() == [0, 1]
    # Over the whole cluster K-Center walks to the edge instead (row 4, -4.0).
    whole = ecos_fast.select(POOL, SKETCH, 2, within="kcenter")
    assert whole.indices.tolist() == [0, 4]
    # ceil(1.5 * 2) = 3 candidates {0, 2, 5}: row 2 (-0.2) is the farthest from row 0.
    three = ecos_fast.select(POOL, SKETCH, 2, within="neighbourhood", candidates=1.5)
    assert three.indices.tolist() == [0, 2]


def test_strata_give_each_dense_part_picks_in_proportion() -> None:
    # Cluster 0: six rows near 0.3 (rows 0-5) and three near 5.2 (rows 6-8). A quota
    # of 4 makes 2 strata, of 6 and 3 rows: picks 4 * 6/9 = 2.7 and 1.3 -> 3 and 1 (the
    # larger remainder). The first stratum's centre is 0.317: its nearest members are
    # 0.3, 0.25, 0.5 (rows 3, 2, 4); the second's is 5.167: 5.2 (row 7).
    pool = np.array(
        [[0.0], [0.1], [0.25], [0.3], [0.5], [0.75], [5.0], [5.2], [5.3], [10.0]], np.float32
    )
    sk = exact_sketch([[1.0], [10.0]], [5.0, 0.0])
    sel = ecos_fast.select(pool, sk, 4, within="strata")
    assert sel.indices.tolist() == [3, 7, 2, 4]  # every stratum's nearest, then the next
    assert sel.quotas is not None and sel.quotas.tolist() == [4, 0]
    # Farthest-first from the member nearest the centroid 1.0 (0.75) walks to the edges.
    assert ecos_fast.select(pool, sk, 4, within="kcenter").indices.tolist() == [5, 8, 0, 6]
    # A quota that fills the cluster takes it whole.
    assert sorted(ecos_fast.select(pool, sk, 9, within="strata").indices.tolist()) == list(range(9))


def _shared_cluster() -> tuple[np.ndarray, ecos_fast.Sketch]:
    """Cluster 0 (centroid at the origin) shared by two domains: 20 rows at x < 0 (the
    client's side, next to centroids 1-3 that the client weighs) and 20 at x > 0 (next
    to centroids 4-6, which it does not), 5 rows at each other centroid."""
    sides = [(-10.0, 0.0), (-7.0, 7.0), (-7.0, -7.0), (10.0, 0.0), (7.0, 7.0), (7.0, -7.0)]
    xs = np.linspace(0.5, 4.0, 20)
    shared = [[sign * x, 0.3 * (-1) ** i] for sign in (-1, 1) for i, x in enumerate(xs)]
    others = [[a + 0.2 * j, b] for a, b in sides for j in range(5)]
    pool = np.asarray(shared + others, np.float32)
    return pool, exact_sketch([[0.0, 0.0], *map(list, sides)], [20, 5, 5, 5, 0, 0, 0])


def test_weighted_strata_take_the_clients_side_of_a_shared_cluster() -> None:
    pool, sk = _shared_cluster()
    # Weights 20, 5, 5, 5 of a budget of 14: quotas 8, 2, 2, 2.
    sel = ecos_fast.select(pool, sk, 14, within="weighted-strata", smooth="none")
    assert sel.quotas is not None and sel.quotas.tolist() == [8, 2, 2, 2, 0, 0, 0]
    mine = [i for i in sel.indices.tolist() if i < 40]
    assert len(mine) == 8 and all(pool[i, 0] < 0 for i in mine)  # all on the client's side
    # Plain strata spread the 8 over the whole cluster: half of them on the other side.
    plain = ecos_fast.select(pool, sk, 14, within="strata", smooth="none")
    assert sum(pool[i, 0] > 0 for i in plain.indices.tolist() if i < 40) >= 3
    # A member's 3 nearest centroids are its own and two of its side's: affinity 10 on
    # the client's side, 20 / 3 on the other; ties go to the nearest the origin.
    c = sk.centroids.centroids
    pos = rule.affinity_candidates(pool[:40], c, np.array([20.0, 5, 5, 5, 0, 0, 0]), 0, 16)
    assert pos.tolist() == list(range(16))


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 40),
    r=st.integers(1, 9),
    d=st.integers(1, 4),
    frac=st.floats(0.0, 1.5),
    seed=st.integers(0, 2**31 - 1),
)
def test_affinity_candidates_match_a_sort_of_the_members(
    m: int, r: int, d: int, frac: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    # Small integer coordinates and weights: many tied distances and affinities.
    xm = rng.integers(-3, 4, (m, d)).astype(np.float32)
    c = rng.integers(-3, 4, (r, d)).astype(np.float32)
    w = rng.integers(0, 3, r).astype(np.float64)
    own, n = int(rng.integers(r)), int(frac * m)
    got = rule.affinity_candidates(xm, c, w, own, n)
    x64, c64 = xm.astype(np.float64), c.astype(np.float64)
    d2 = ((x64[:, None, :] - c64[None]) ** 2).sum(-1)
    k = min(rule.AFFINITY_NEIGHBOURS, r)
    aff = [w[np.argsort(d2[i], kind="stable")[:k]].mean() for i in range(m)]
    want = sorted(sorted(range(m), key=lambda i: (-aff[i], d2[i, own], i))[:n])
    assert got.tolist() == (want if n < m else list(range(m)))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 60),
    d=st.integers(1, 5),
    frac=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**32 - 1),
    data_seed=st.integers(0, 1000),
)
def test_stratified_picks_match_a_numpy_oracle(
    n: int, d: int, frac: float, seed: int, data_seed: int
) -> None:
    rng = np.random.default_rng(data_seed)
    xm = rng.normal(0, 1, (n, d)).astype(np.float32)
    xm[rng.integers(0, n, n // 4)] *= 8  # a few outliers
    q = max(1, min(n - 1, int(frac * n)))
    got = rule.stratified_picks(xm, q, seed, 1)
    assert got.size == q and np.unique(got).size == q
    for t in (2, 3):  # any thread count: the same picks
        np.testing.assert_array_equal(rule.stratified_picks(xm, q, seed, t), got)
    check_against_oracle(xm, q, seed, got)


def check_against_oracle(xm: np.ndarray, q: int, seed: int, got: np.ndarray) -> int:
    """The oracle of ``stratified_picks``: the same strata (``ecos_fast.kmeans``, itself
    tested against its reference, on the rule's training sample), picks per stratum by
    the rule's allocation, each stratum's nearest members in float64 distance order,
    ties to the lowest row. Returns how many strata were compared member for member."""
    n = xm.shape[0]
    k = -(-q // rule.STRATUM_PICKS)
    per = max(rule.STRATA_TRAIN_PER, -(-rule.STRATA_TRAIN_MIN // k))
    cent = ecos_fast.kmeans(xm, k, seed=seed, max_points_per_centroid=per).centroids
    c64 = cent.astype(np.float64)
    d2 = ((xm.astype(np.float64)[:, None, :] - c64[None]) ** 2).sum(-1)
    lab = np.argmin(d2, axis=1)
    own = d2[np.arange(n), lab]
    if k > 1 and not np.all(np.sort(d2, axis=1)[:, 1] - own > 1e-4 * (1 + own)):
        return 0  # a float32 near-tie between two strata: the kernel's label may differ
    sizes = np.bincount(lab, minlength=k)
    alloc = ecos_fast.allocate_quotas(sizes.astype(float), sizes, q)
    picked = set(got.tolist())
    compared = 0
    for j in range(k):
        rows = np.flatnonzero(lab == j)
        ranked = rows[np.lexsort((rows, own[rows]))]
        mine = picked & set(rows.tolist())
        assert len(mine) == alloc[j]
        a = int(alloc[j])
        cut = own[ranked]
        if 0 < a < rows.size and cut[a] - cut[a - 1] < 1e-5 * (1 + cut[a]):
            continue  # a float32 near-tie at the stratum's cut: either member is right
        assert mine == set(ranked[:a].tolist())
        compared += 1
    return compared


def _picks_from_centres(xm: np.ndarray, cent: np.ndarray, q: int) -> list[int]:
    """The strata picks for given centres, with the float32 kernel's own labels."""
    lab, d2 = ecos_fast.assign(xm, cent)
    sizes = np.bincount(lab, minlength=cent.shape[0])
    alloc = ecos_fast.allocate_quotas(sizes.astype(float), sizes, q)
    out: list[int] = []
    for j in range(cent.shape[0]):
        rows = np.flatnonzero(lab == j)
        out += rows[np.lexsort((rows, d2[rows]))][: alloc[j]].tolist()
    return sorted(out)


def test_strata_of_a_large_cluster_train_on_a_sample() -> None:
    # 20,000 rows, quota 200: 100 strata, trained on max(4096, 32 * 100) = 4,096 sampled
    # rows (41 per stratum), then every row assigned.
    rng = np.random.default_rng(3)
    xm = (rng.normal(0, 1, (20_000, 3)) * rng.uniform(0.2, 3, 3)).astype(np.float32)
    got = rule.stratified_picks(xm, 200, 11, 2)
    assert got.size == 200 and np.unique(got).size == 200
    sampled = ecos_fast.kmeans(xm, 100, seed=11, max_points_per_centroid=41).centroids
    full = ecos_fast.kmeans(xm, 100, seed=11, max_points_per_centroid=None).centroids
    assert sorted(got.tolist()) == _picks_from_centres(xm, sampled, 200)
    assert sorted(got.tolist()) != _picks_from_centres(xm, full, 200)  # the sample matters


@pytest.fixture(scope="module")
def mixture() -> tuple[np.ndarray, ecos_fast.Sketch]:
    rng = np.random.default_rng(5)
    means = rng.normal(0, 8, (6, 4))
    pool = (means[rng.integers(0, 6, 3000)] + rng.normal(0, 2, (3000, 4))).astype(np.float32)
    cents = ecos_fast.fit_centroids(pool, 12, seed=0)
    private = (means[2] + rng.normal(0, 2, (400, 4))).astype(np.float32)
    return pool, ecos_fast.Sketch.join(cents, ecos_fast.respond(private, cents, math.inf, 1e-5))


def per_cluster(sel: ecos_fast.Selection) -> dict[int, list[int]]:
    assert sel.labels is not None
    out: dict[int, list[int]] = {}
    for i in sel.indices.tolist():
        out.setdefault(int(sel.labels[i]), []).append(i)
    return out


def test_neighbourhood_limits(mixture: tuple[np.ndarray, ecos_fast.Sketch]) -> None:
    pool, sk = mixture
    nearest = ecos_fast.select(pool, sk, 200, within="nearest")
    one = ecos_fast.select(pool, sk, 200, within="neighbourhood", candidates=1.0)
    # candidates=1: the candidate set is the quota itself; K-Center only reorders it.
    assert one.quotas is not None and nearest.quotas is not None
    np.testing.assert_array_equal(one.quotas, nearest.quotas)
    a, b = per_cluster(one), per_cluster(nearest)
    assert a.keys() == b.keys() and all(sorted(a[k]) == sorted(b[k]) for k in a)
    # A huge factor: the candidate set is the whole cluster, so it is K-Center, exactly.
    huge = ecos_fast.select(pool, sk, 200, within="neighbourhood", candidates=1e12)
    kc = ecos_fast.select(pool, sk, 200, within="kcenter")
    np.testing.assert_array_equal(huge.indices, kc.indices)


def test_picks_lie_in_the_candidate_set(mixture: tuple[np.ndarray, ecos_fast.Sketch]) -> None:
    pool, sk = mixture
    cand = 2.5
    sel = ecos_fast.select(pool, sk, 300, within="neighbourhood", candidates=cand)
    c = sk.centroids.centroids.astype(np.float64)
    labels, d2 = ecos_fast.assign(pool, sk.centroids.centroids)
    assert sel.quotas is not None and int(sel.quotas.sum()) == 300
    for k, picks in per_cluster(sel).items():
        rows = np.flatnonzero(labels == k)
        m = math.ceil(cand * int(sel.quotas[k]))
        near = set(rows[np.lexsort((rows, d2[rows]))[:m]].tolist())
        assert set(picks) <= near and len(picks) == sel.quotas[k]
        # The first pick is the member nearest the centroid.
        dist = ((pool[rows].astype(np.float64) - c[k]) ** 2).sum(1)
        assert picks[0] == rows[np.argmin(dist)]


@pytest.mark.parametrize("within", rule.WITHIN)
def test_the_same_picks_for_any_thread_count_and_with_labels(
    mixture: tuple[np.ndarray, ecos_fast.Sketch], within: str
) -> None:
    pool, sk = mixture
    runs = [
        ecos_fast.select(pool, sk, 250, within=within, n_threads=t)  # type: ignore[arg-type]
        for t in (1, 2, 3)
    ]
    for r in runs[1:]:
        np.testing.assert_array_equal(r.indices, runs[0].indices)
    labels = ecos_fast.assign(pool, sk.centroids.centroids)[0]
    lab = ecos_fast.select(pool, sk, 250, within=within, labels=labels)  # type: ignore[arg-type]
    np.testing.assert_array_equal(lab.quotas, runs[0].quotas)
    # The own-centroid distances come from the same kernel: the same picks.
    np.testing.assert_array_equal(lab.indices, runs[0].indices)


def test_nearest_in_clusters_against_brute_force() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 7, 500)
    d2 = rng.integers(0, 20, 500).astype(np.float32)  # many ties: they go to the lowest row
    indptr, members = rule.cluster_members(labels, 7)
    counts = rng.integers(0, 90, 7)
    for out_indptr, out in (
        _core.nearest_in_clusters(d2, indptr, members, counts, 2),
        reference.nearest_in_clusters(d2, indptr, members, counts),
    ):
        for k in range(7):
            rows = np.flatnonzero(labels == k)
            want = sorted(rows.tolist(), key=lambda i: (d2[i], i))[: counts[k]]
            assert out[out_indptr[k] : out_indptr[k + 1]].tolist() == want


@pytest.mark.parametrize("m", [-25.0, -6.0, 0.0, 3.0, 40.0])
def test_posterior_weight_is_the_truncated_gaussian_mean(m: float) -> None:
    sigma = 6.137
    v = np.linspace(0.0, max(m, 0.0) + 40 * sigma, 400_001)
    dens = np.exp(-0.5 * ((v - m) / sigma) ** 2)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # noqa: NPY201 (numpy < 2)
    want = float(trapezoid(v * dens, v) / trapezoid(dens, v))
    got = float(rule.posterior_mean_counts([m], sigma)[0])
    assert got == pytest.approx(want, rel=1e-6)
    # Combined with the threshold: the same estimate minus threshold * sigma, floored.
    w = rule.cluster_weights([m], sigma, threshold=0.5, weights="posterior")[0]
    assert w == pytest.approx(max(want - 0.5 * sigma, 0.0), rel=1e-6, abs=1e-12)


@pytest.mark.parametrize(
    ("weights", "estimate"),
    [("posterior", rule.posterior_mean_counts), ("empirical-bayes", rule.empirical_bayes_counts)],
)
def test_estimated_weights_reach_select(
    mixture: tuple[np.ndarray, ecos_fast.Sketch], weights: Any, estimate: Any
) -> None:
    pool, sk = mixture
    resp = ecos_fast.respond(np.repeat(pool[:1], 50, axis=0), sk.centroids, 2.0, 1e-5, seed=4)
    noisy = ecos_fast.Sketch.join(sk.centroids, resp)
    # The estimate on the counts as released (test_smoothing.py: on smoothed counts).
    sel = ecos_fast.select(pool, noisy, 100, weights=weights, threshold=0.0, smooth="none")
    want = estimate(resp.noisy_counts, resp.sigma)
    assert sel.weights is not None
    if weights == "posterior":  # the flat prior gives every cluster some weight
        assert (sel.weights > 0).all()
    np.testing.assert_allclose(sel.weights, want)
    np.testing.assert_allclose(noisy.weights(weights=weights), want)


def test_low_signal_warning(mixture: tuple[np.ndarray, ecos_fast.Sketch]) -> None:
    pool, sk = mixture
    small = pool[:40]
    resp = ecos_fast.respond(small, sk.centroids, 0.01, 1e-5, seed=0)
    with pytest.warns(LowSignalWarning, match=r"sigma\*sqrt\(R\)=.*sqrt\(12\)") as rec:
        ecos_fast.select(pool, (sk.centroids, resp), 50, fallback="random")
    assert rec[0].filename == __file__  # the warning points at the caller's line
    msg = str(rec[0].message)
    assert f"{float(resp.noisy_counts.sum()):.4g}" in msg and "fewer clusters" in msg
    assert "larger epsilon" in msg and issubclass(LowSignalWarning, EcosWarning)
    exact = ecos_fast.respond(small, sk.centroids, math.inf, 1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LowSignalWarning)
        ecos_fast.select(pool, (sk.centroids, exact), 50)


def test_low_signal_warning_names_the_largest_r_that_clears_the_bar() -> None:
    counts = [30.0] + [0.0] * 99  # total 30, sigma 5: 3 * 5 * sqrt(R) <= 30 for R <= 4
    with pytest.warns(LowSignalWarning, match=r"R <= 4 keeps this total above 3") as rec:
        assert rule.warn_if_low_signal(counts, 5.0, stacklevel=1)
    assert "ratio 0.6," in str(rec[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LowSignalWarning)
        assert not rule.warn_if_low_signal([30.0, 0.0, 0.0, 0.0], 5.0, stacklevel=1)
    with pytest.warns(LowSignalWarning, match="far fewer clusters"):
        rule.warn_if_low_signal([-3.0, 1.0], 5.0, stacklevel=1)


def test_options_are_checked(mixture: tuple[np.ndarray, ecos_fast.Sketch]) -> None:
    pool, sk = mixture
    with pytest.raises(InvalidInputError, match=r"candidates=0\.5 must be a finite number >= 1"):
        ecos_fast.select(pool, sk, 10, candidates=0.5)
    with pytest.raises(InvalidInputError, match="within='edge'"):
        ecos_fast.select(pool, sk, 10, within="edge")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="weights='mean'"):
        ecos_fast.select(pool, sk, 10, weights="mean")  # type: ignore[arg-type]


def test_defaults_live_in_the_rule_module() -> None:
    import inspect

    params = inspect.signature(ecos_fast.select).parameters
    assert params["threshold"].default == rule.DEFAULT_THRESHOLD
    assert params["within"].default == rule.DEFAULT_WITHIN
    assert params["candidates"].default == rule.DEFAULT_CANDIDATES
    assert params["weights"].default == rule.DEFAULT_WEIGHTS
    assert params["smooth"].default == rule.DEFAULT_SMOOTH


def test_the_cli_passes_the_options_through(
    mixture: tuple[np.ndarray, ecos_fast.Sketch], tmp_path: Path
) -> None:
    from ecos_fast.cli import run

    pool, exact = mixture
    # A noisy release, so that every option changes the selection.
    resp = ecos_fast.respond(pool[:300], exact.centroids, 0.3, 1e-5, seed=2)
    sk = ecos_fast.Sketch.join(exact.centroids, resp)
    np.save(tmp_path / "pool.npy", pool)
    ecos_fast.save_centroids(sk.centroids, tmp_path / "c.safetensors")
    ecos_fast.save_response(sk.response, tmp_path / "r.safetensors")
    # Each case: CLI options and the select() keywords they must become. The base of
    # each case is the same keywords without its last option, so that option matters.
    nb = {"within": "neighbourhood"}
    other_smooth = "none" if rule.DEFAULT_SMOOTH == "sure" else "sure"
    cases: list[tuple[list[str], dict[str, Any], dict[str, Any]]] = [
        (["--within", "nearest"], {"within": "nearest"}, {}),
        (["--within", "neighbourhood"], nb, {}),
        (["--within", "kcenter"], {"within": "kcenter"}, {}),
        (["--within", "neighbourhood", "--candidates", "3.0"], {**nb, "candidates": 3.0}, nb),
        (["--weights", "posterior"], {"weights": "posterior"}, {}),
        (["--smooth", other_smooth], {"smooth": other_smooth}, {}),
        (["--seed", "5"], {"seed": 5}, {}),  # seeds the strata of the default routine
    ]
    args = [str(tmp_path / n) for n in ("pool.npy", "c.safetensors", "r.safetensors")]
    out = tmp_path / "sel.npy"
    assert run(["-q", "select", *args, "--budget", "120", "-o", str(out)]) == 0
    np.testing.assert_array_equal(np.load(out), ecos_fast.select(pool, sk, 120).indices)
    for cli_extra, kw, base_kw in cases:
        # Past the defaults, a low threshold: there every option changes the selection.
        code = run(["-q", "select", *args, "--budget", "120", "-o", str(out),
                    "--threshold", "0.5", *cli_extra])  # fmt: skip
        assert code == 0
        want = ecos_fast.select(pool, sk, 120, threshold=0.5, **kw)
        base = ecos_fast.select(pool, sk, 120, threshold=0.5, **base_kw).indices
        assert not np.array_equal(want.indices, base), cli_extra  # the option matters
        np.testing.assert_array_equal(np.load(out), want.indices)
    bad = run(["-q", "select", *args, "--budget", "5", "-o", str(out), "--candidates", "0.5"])
    assert bad == 2  # a usage error, from click's range check


def test_strata_with_labels_still_checks_every_row(
    mixture: tuple[np.ndarray, ecos_fast.Sketch],
) -> None:
    # With labels= the strata routine measures no distance to the own centroid, so the
    # pass that would have checked the features is replaced by the check alone.
    pool, sk = mixture
    bad = pool.copy()
    bad[7, 1] = np.nan
    labels = ecos_fast.assign(pool, sk.centroids.centroids)[0]
    with pytest.raises(InvalidInputError, match=r"non-finite value .* at row 7"):
        ecos_fast.select(bad, sk, 100, within="strata", labels=labels)
    got = ecos_fast.select(pool, sk, 100, within="strata", labels=labels)
    np.testing.assert_array_equal(got.indices, ecos_fast.select(pool, sk, 100).indices)


# --- suggest_n_clusters ------------------------------------------------------------------


def test_suggest_n_clusters_is_what_the_client_can_light_up() -> None:
    from ecos_fast.privacy import GaussianMechanism

    for n, eps in [(300, 0.58), (875, 0.58), (2450, 0.1), (505, 2.0)]:
        sigma = GaussianMechanism(eps, 1e-5).sigma
        want = min(
            rule.SUGGEST_MAX_CLUSTERS, max(rule.SUGGEST_MIN_CLUSTERS, round(n / (2 * sigma)))
        )
        assert ecos_fast.suggest_n_clusters(n, eps, 1e-5) == want
    # replace_one doubles the noise variance: fewer clusters.
    a = ecos_fast.suggest_n_clusters(2000, 0.58, 1e-5)
    b = ecos_fast.suggest_n_clusters(2000, 0.58, 1e-5, relation="replace_one")
    assert b < a and b == round(2000 / (2 * GaussianMechanism(0.58, 1e-5, "replace_one").sigma))
    assert ecos_fast.suggest_n_clusters(10**6, 8.0, 1e-5) == rule.SUGGEST_MAX_CLUSTERS
    assert ecos_fast.suggest_n_clusters(1, 0.1, 1e-5) == rule.SUGGEST_MIN_CLUSTERS
    assert ecos_fast.suggest_n_clusters(50, math.inf, 1e-5, max_clusters=64) == 64
    assert ecos_fast.suggest_n_clusters(50, 1.0, 1e-5, threshold=0.0) == 200
    assert ecos_fast.suggest_n_clusters(300, 0.58, 1e-5, min_clusters=30) == 30
    assert ecos_fast.suggest_n_clusters(300, 0.58, 1e-5, min_clusters=1) == 24


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 10**6),
    eps=st.floats(0.05, 20.0),
    more=st.integers(0, 10**5),
    factor=st.floats(1.0, 5.0),
)
def test_suggest_n_clusters_grows_with_the_client_and_epsilon(
    n: int, eps: float, more: int, factor: float
) -> None:
    r = ecos_fast.suggest_n_clusters(n, eps, 1e-5)
    assert rule.SUGGEST_MIN_CLUSTERS <= r <= rule.SUGGEST_MAX_CLUSTERS
    assert ecos_fast.suggest_n_clusters(n + more, eps, 1e-5) >= r
    assert ecos_fast.suggest_n_clusters(n, min(eps * factor, 20.0), 1e-5) >= r


@pytest.mark.parametrize(
    ("kw", "err"),
    [
        ({"n_private": 0}, InvalidInputError),
        ({"n_private": 2.5}, ecos_fast.InvalidTypeError),
        ({"epsilon": 0.0}, ecos_fast.PrivacyParameterError),
        ({"delta": 1.0}, ecos_fast.PrivacyParameterError),
        ({"min_clusters": 0}, InvalidInputError),
        ({"min_clusters": 50, "max_clusters": 20}, InvalidInputError),
        ({"threshold": -1.0}, InvalidInputError),
        ({"relation": "nope"}, ecos_fast.PrivacyParameterError),
    ],
)
def test_suggest_n_clusters_refuses_bad_input(kw: dict[str, Any], err: type) -> None:
    args: dict[str, Any] = {"n_private": 300, "epsilon": 0.58, "delta": 1e-5, **kw}
    with pytest.raises(err):
        ecos_fast.suggest_n_clusters(**args)


def test_empirical_bayes_without_noise_is_the_release() -> None:
    np.testing.assert_array_equal(
        rule.empirical_bayes_counts([3.0, -1.0, 0.0], 0.0), [3.0, 0.0, 0.0]
    )


def test_empirical_bayes_matches_the_oracle_posterior_mean() -> None:
    # True counts from a known two-point prior: 0 (80 %) or 20 (20 %), sigma = 5. With
    # many clusters the fitted prior approaches the true one, so the weights approach
    # the posterior mean under the true prior, computed here in closed form.
    rng = np.random.default_rng(3)
    sigma, r = 5.0, 4000
    v = np.where(rng.random(r) < 0.2, 20.0, 0.0)
    m = v + rng.normal(0.0, sigma, r)
    l0 = 0.8 * np.exp(-0.5 * (m / sigma) ** 2)
    l1 = 0.2 * np.exp(-0.5 * ((m - 20.0) / sigma) ** 2)
    oracle = 20.0 * l1 / (l0 + l1)
    got = rule.empirical_bayes_counts(m, sigma)
    assert np.abs(got - oracle).mean() < 0.5, np.abs(got - oracle).mean()
    # ... and it beats both the release and the flat-prior posterior mean on the error.
    err = np.abs(got - v).mean()
    assert err < np.abs(np.maximum(m, 0) - v).mean()
    assert err < np.abs(rule.posterior_mean_counts(m, sigma) - v).mean()


def test_empirical_bayes_shrinks_untouched_clusters_and_keeps_clear_ones() -> None:
    rng = np.random.default_rng(5)
    sigma = 6.137  # epsilon = 0.58, delta = 1e-5
    v = np.zeros(100)
    v[:10] = 40.0
    m = v + rng.normal(0.0, sigma, 100)
    w = rule.empirical_bayes_counts(m, sigma)
    # Noise alone gives the 90 untouched clusters about 90 * 0.4 * sigma of max(m, 0).
    assert w[10:].sum() < 0.25 * np.maximum(m[10:], 0).sum(), (w[10:].sum(), m[10:])
    np.testing.assert_allclose(w[:10], 40.0, atol=3 * sigma)
    # A release far from every other (no underflow to 0/0) keeps its value.
    far = rule.empirical_bayes_counts([1e6, 0.0, 1.0], 1.0)
    assert np.isfinite(far).all() and far[0] == pytest.approx(1e6, rel=1e-3)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-50, 200, allow_nan=False), min_size=1, max_size=60),
    st.floats(0.1, 40.0),
    st.randoms(use_true_random=False),
)
def test_empirical_bayes_is_monotone_bounded_and_order_free(
    m: list[float], sigma: float, rnd: Any
) -> None:
    x = np.asarray(m)
    w = rule.empirical_bayes_counts(x, sigma)
    assert w.dtype == np.float64 and w.shape == x.shape
    assert (w >= 0).all() and (w <= max(x.max(), 0) + 4 * sigma + 1e-9).all()
    # A posterior mean under any prior is nondecreasing in the release.
    order = np.argsort(x, kind="stable")
    assert (np.diff(w[order]) >= -1e-9 * (1 + w.max())).all()
    # The fitted prior does not depend on the clusters' order.
    perm = list(range(x.size))
    rnd.shuffle(perm)
    np.testing.assert_allclose(
        rule.empirical_bayes_counts(x[perm], sigma), w[perm], rtol=1e-9, atol=1e-9
    )


@pytest.mark.parametrize("bad", [[1.0, float("nan")], [1.0, float("inf")], [[1.0]]])
def test_empirical_bayes_rejects_bad_releases(bad: Any) -> None:
    # An empty release gives no weights, as for the other estimators.
    assert rule.empirical_bayes_counts([], 1.0).shape == (0,)
    with pytest.raises(InvalidInputError):
        rule.empirical_bayes_counts(bad, 1.0)
    with pytest.raises(InvalidInputError):
        rule.empirical_bayes_counts([1.0], -1.0)


def test_signal_check_does_not_depend_on_the_weights_threshold() -> None:
    # 396 untouched clusters and 4 holding 8 samples each, sigma = 1. Tested at 0 sigma,
    # the positive noise of the 396 (about 158 +- 12) swamps the 32 samples; at 2 sigma
    # the four stand out. The check runs at LOW_SIGNAL_THRESHOLD whatever the weights'
    # threshold, so threshold=0 keeps the weights (it spread them before).
    rng = np.random.default_rng(11)
    counts = rng.normal(0.0, 1.0, 400)
    counts[:4] += 8.0
    capacity = np.full(400, 50, dtype=np.int64)
    for thr in (0.0, rule.DEFAULT_THRESHOLD):
        for weights in rule.WEIGHTS:
            opts = rule.check_rule_options(threshold=thr, weights=weights, smooth="none")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LowSignalWarning)
                plan = rule.plan_selection(counts, 1.0, capacity, 100, opts, stacklevel=1)
            assert not plan.low_signal, (thr, weights)
    # Noise alone is still caught at threshold 0.
    opts = rule.check_rule_options(threshold=0.0, smooth="none")
    with pytest.warns(LowSignalWarning):
        plan = rule.plan_selection(counts[4:], 1.0, capacity[4:], 100, opts, stacklevel=1)
    assert plan.low_signal
