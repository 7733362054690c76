"""Smoothing the noisy counts on the cloud (``select(smooth="sure")``,
:mod:`ecos_fast.smoothing`).

Checked against a dense reference (the full smoothing matrix written out in NumPy), the
claim SURE rests on (its average over noise draws is the smoothed counts' mean squared
error against the truth), the two cases the design is for (a client spread thinly over
many clusters gains; a client packed into one cluster keeps its cluster), and the
rule's plumbing (options checked, both backends, any thread count).
"""

from __future__ import annotations

import math
import warnings

import ecos_fast
import numpy as np
import pytest
from ecos_fast.errors import InvalidInputError, LowSignalWarning
from ecos_fast.smoothing import (
    SMOOTH_NEIGHBOURS,
    SMOOTH_SCALES,
    SPIKE_SIGMAS,
    centroid_neighbourhoods,
    smooth_counts,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def _dense_matrix(c: np.ndarray, scale: float, m: int) -> np.ndarray:
    """The row-stochastic smoother written out: row i weights its m nearest centroids
    (by float64 distance, itself first, then ties to the lowest index)."""
    c = c.astype(np.float64)
    r = c.shape[0]
    d2 = ((c[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
    near = [sorted(range(r), key=lambda j, i=i: (j != i, d2[i, j], j))[:m] for i in range(r)]
    h0 = float(np.median([d2[i, near[i][1]] for i in range(r)]))
    s = np.zeros((r, r))
    for i in range(r):
        for j in near[i]:
            s[i, j] = math.exp(-d2[i, j] / (scale * h0))
        s[i] /= s[i].sum()
    return s


def _reference(y: np.ndarray, sigma: float, c: np.ndarray, m: int) -> tuple[float, np.ndarray]:
    r = y.shape[0]
    best_t, best_risk, best_s = 0.0, r * sigma**2, np.eye(r)
    for t in SMOOTH_SCALES:
        s = _dense_matrix(c, t, m)
        risk = float(np.sum((y - s @ y) ** 2) + 2 * sigma**2 * np.trace(s) - r * sigma**2)
        if risk < best_risk:
            best_t, best_risk, best_s = t, risk, s
    if best_t == 0.0:
        return 0.0, y
    excess = np.zeros(r)
    for _ in range(2000):  # the fixed point, by plain iteration
        excess = np.maximum(y - best_s @ (y - excess) - SPIKE_SIGMAS * sigma, 0.0)
    return best_t, best_s @ (y - excess) + excess


@settings(max_examples=60, deadline=None)
@given(
    r=st.integers(2, 40),
    d=st.integers(1, 4),
    sigma=st.floats(0.1, 20.0),
    m=st.integers(2, 20),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_the_dense_reference(r: int, d: int, sigma: float, m: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = rng.normal(0, 1, (r, d))
    y = np.maximum(rng.normal(0, 3, r), 0) * (rng.random(r) < 0.5) + rng.normal(0, sigma, r)
    want_t, want = _reference(y, sigma, c, min(m, r))
    got = smooth_counts(y, sigma, c, n_neighbours=m)
    assert got.scale == want_t
    np.testing.assert_allclose(got.counts, want, rtol=1e-8, atol=1e-8)
    assert got.sure[0.0] == pytest.approx(r * sigma**2)
    assert np.all(got.noise <= 1 + 1e-12) and np.all(got.noise >= 1 / math.sqrt(min(m, r)) - 1e-12)


def test_sure_is_unbiased_for_the_squared_error() -> None:
    """The average of SURE over noise draws equals the average squared error of the
    smoothed counts (the linear smoother, before the spike step), at every bandwidth."""
    rng = np.random.default_rng(3)
    c = rng.normal(0, 1, (60, 3))
    truth = np.where(c[:, 0] > 0, 4.0, 0.0)
    sigma = 5.0
    idx, d2 = centroid_neighbourhoods(c, SMOOTH_NEIGHBOURS)
    h0 = float(np.median(d2[:, 1]))
    sure: dict[float, list[float]] = {t: [] for t in SMOOTH_SCALES}
    err: dict[float, list[float]] = {t: [] for t in SMOOTH_SCALES}
    for _ in range(2000):
        y = truth + rng.normal(0, sigma, truth.shape)
        got = smooth_counts(y, sigma, c)
        for t in SMOOTH_SCALES:
            k = np.exp(-d2 / (t * h0))
            k /= k.sum(axis=1, keepdims=True)
            sure[t].append(got.sure[t])
            err[t].append(float(np.sum((np.einsum("ij,ij->i", k, y[idx]) - truth) ** 2)))
    for t in SMOOTH_SCALES:
        mse = np.mean(err[t])
        # 2000 draws: the means agree to a few percent of the noise's total, 60 * 25.
        assert abs(np.mean(sure[t]) - mse) < 0.05 * 60 * sigma**2, (t, np.mean(sure[t]), mse)


def _line(n_clusters: int = 80) -> np.ndarray:
    return np.arange(n_clusters, dtype=np.float64)[:, None]


def test_a_thinly_spread_client_is_smoothed_and_estimated_better() -> None:
    truth = np.where(np.arange(80) < 40, 2.0, 0.0)  # a quarter of the noise per cluster
    wins = 0
    for seed in range(20):
        y = truth + np.random.default_rng(seed).normal(0, 8.0, 80)
        got = smooth_counts(y, 8.0, _line())
        assert got.scale > 0
        wins += np.sum((got.counts - truth) ** 2) < np.sum((y - truth) ** 2)
    assert wins == 20


def test_a_client_in_one_cluster_keeps_its_cluster() -> None:
    """A spike among untouched clusters under heavy noise: SURE smooths (the noise of
    the other 79 clusters dominates the squared error), but the spike's excess over its
    neighbourhood stays its own, so the weights still go to it, on average over draws
    (a draw whose noise lifts the spike's neighbours together looks like a spread
    client). The linear average alone, at the same bandwidth, spreads the spike."""
    truth = np.zeros(80)
    truth[40] = 150.0
    smooth, plain, linear = [], [], []
    for seed in range(10):
        y = truth + np.random.default_rng(seed).normal(0, 30.0, 80)
        got = smooth_counts(y, 30.0, _line())
        assert got.scale > 0
        for out, est in (
            (smooth, got.counts),
            (plain, y),
            (linear, _dense_matrix(_line(), got.scale, SMOOTH_NEIGHBOURS) @ y),
        ):
            noise = 1.0 if est is y else got.noise
            w = np.maximum(est - 2.0 * 30.0 * noise, 0.0)
            out.append(w[40] / w.sum() if w.sum() > 0 else 0.0)  # fmt: skip
    assert np.mean(smooth) >= 0.8 and np.mean(smooth) >= np.mean(plain) - 0.1, (smooth, plain)
    assert np.mean(linear) < np.mean(smooth) - 0.3, (linear, smooth)


def test_no_noise_or_one_cluster_is_not_smoothed() -> None:
    y = np.array([5.0, 0.0, 3.0])
    assert smooth_counts(y, 0.0, _line(3)).scale == 0.0
    assert smooth_counts(y[:1], 4.0, _line(1)).scale == 0.0
    dup = np.zeros((3, 2))  # every centroid the same: no length scale
    np.testing.assert_array_equal(smooth_counts(y, 4.0, dup).counts, y)


def test_bad_inputs_are_specific_errors() -> None:
    with pytest.raises(InvalidInputError, match="do not match the 3 noisy counts"):
        smooth_counts([1.0, 2.0, 3.0], 1.0, _line(4))
    with pytest.raises(InvalidInputError, match="scales must be finite and > 0"):
        smooth_counts([1.0, 2.0, 3.0], 1.0, _line(3), scales=(0.0,))
    with pytest.raises(InvalidInputError, match="noisy_counts"):
        smooth_counts([1.0, math.nan, 3.0], 1.0, _line(3))


def _spread_client(seed: int = 0) -> tuple[np.ndarray, ecos_fast.Sketch]:
    rng = np.random.default_rng(seed)
    pool = rng.uniform(0, 10, (4000, 2)).astype(np.float32)
    private = rng.uniform(0, 5, (150, 2)).astype(np.float32)  # the left half, thinly
    cents = ecos_fast.fit_centroids(pool, n_clusters=100, seed=seed)
    resp = ecos_fast.respond(private, cents, 0.58, 1e-5, seed=seed + 1)
    return pool, ecos_fast.Sketch.join(cents, resp)


def test_select_smooth_takes_more_of_a_thinly_spread_client() -> None:
    """150 private samples over the left half of a square pool of 100 clusters at
    eps = 0.58: about 3 per touched cluster against noise of 6. Smoothing finds the
    half; the plain counts are mostly noise."""
    gains = []
    for seed in range(3):
        pool, sk = _spread_client(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LowSignalWarning)
            plain = ecos_fast.select(pool, sk, 400, low_signal="keep", smooth="none")
            smooth = ecos_fast.select(pool, sk, 400, low_signal="keep", smooth="sure")
        assert plain.smoothing_scale == 0.0 < smooth.smoothing_scale
        gains.append(np.mean(pool[smooth.indices, 0] < 5) - np.mean(pool[plain.indices, 0] < 5))
    assert np.mean(gains) > 0.1, gains


@pytest.mark.parametrize("weights", ["noisy", "posterior", "empirical-bayes"])
def test_every_estimate_reads_the_smoothed_counts(weights: str) -> None:
    """The weights are the estimate on the smoothed counts, each count with its own
    noise sigma * ||S_i||, less threshold times that noise."""
    from ecos_fast import rule

    pool, sk = _spread_client()
    resp = sk.response
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowSignalWarning)
        sel = ecos_fast.select(
            pool,
            sk,
            300,
            weights=weights,
            threshold=1.0,
            low_signal="keep",  # type: ignore[arg-type]
        )
    sm = smooth_counts(resp.noisy_counts, resp.sigma, sk.centroids.centroids)
    assert sm.scale > 0 and sel.smoothing_scale == sm.scale
    s = resp.sigma * sm.noise
    est = {
        "noisy": sm.counts,
        "posterior": rule.posterior_mean_counts(sm.counts, s),
        "empirical-bayes": rule.empirical_bayes_counts(sm.counts, s),
    }[weights]
    np.testing.assert_allclose(sel.weights, np.maximum(est - 1.0 * s, 0.0))
    np.testing.assert_allclose(sk.weights(1.0, weights, smooth="sure"), sel.weights)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="smooth"):
        ecos_fast.select(pool, sk, 10, smooth="gaussian")  # type: ignore[arg-type]


def test_per_count_sigma_is_checked_and_zero_means_no_noise() -> None:
    from ecos_fast import rule

    m = np.array([3.0, -1.0, 2.0])
    got = rule.posterior_mean_counts(m, np.array([0.0, 1.0, 2.0]))
    assert got[0] == 3.0  # no noise: the count itself
    assert got[1] == pytest.approx(rule.posterior_mean_counts([-1.0], 1.0)[0])
    # One sigma each equals the scalar form.
    np.testing.assert_allclose(
        rule.empirical_bayes_counts(m, np.full(3, 2.0)), rule.empirical_bayes_counts(m, 2.0)
    )
    with pytest.raises(InvalidInputError, match="sigma must be a number >= 0 or 3 of them"):
        rule.cluster_weights(m, np.array([1.0, -1.0, 1.0]))
    with pytest.raises(InvalidInputError, match="sigma must be a number >= 0 or 3 of them"):
        rule.cluster_weights(m, np.array([1.0, 1.0]))


def test_smooth_is_the_same_for_any_thread_count() -> None:
    pool, sk = _spread_client(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowSignalWarning)
        one, two = (
            np.asarray(ecos_fast.select(pool, sk, 300, smooth="sure", n_threads=t)) for t in (1, 2)
        )
    np.testing.assert_array_equal(one, two)


def test_the_gate_of_a_smoothed_release_finds_a_spread_client() -> None:
    """The thinly spread client of the tests above, 8 draws: the counts as released look
    like noise on 7 (the plain gate draws Random's selection), the smoothed ones clear
    their own gate on 4 of those, and each selection that clears it comes from the
    client's half of the pool."""
    found = {"none": 0, "sure": 0}
    for seed in range(8):
        pool, sk = _spread_client(seed)
        for smooth in found:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LowSignalWarning)
                sel = ecos_fast.select(pool, sk, 400, smooth=smooth)  # type: ignore[arg-type]
            if sel.method == "ecos":
                found[smooth] += 1
                assert np.mean(pool[sel.indices, 0] < 5) > 0.85, (seed, smooth)
    assert found["sure"] >= found["none"] + 3, found


def test_the_gate_of_a_smoothed_release_passes_noise_rarely() -> None:
    """Pure-noise releases clear the smoothed gate at about its designed rate (1 -
    GATE_QUANTILE = 0.135 %): none of 100 here (an upper bound of 3 % at 95 %)."""
    from ecos_fast.smoothing import Smoother, smoothed_release_is_noise

    _, sk = _spread_client(0)
    smoother = Smoother(sk.centroids.centroids)
    rng = np.random.default_rng(99)
    passed = sum(
        not smoothed_release_is_noise(smoother, rng.normal(0, 6.0, 100), 6.0, 2.0)[0]
        for _ in range(100)
    )
    assert passed == 0
    # A strong release clears it; no noise is never noise.
    strong = np.zeros(100)
    strong[:5] = 60.0
    assert not smoothed_release_is_noise(smoother, strong + rng.normal(0, 6.0, 100), 6.0, 2.0)[0]
    assert not smoothed_release_is_noise(smoother, strong, 0.0, 2.0)[0]


def test_a_packed_client_the_smoothed_gate_misses_is_kept_by_the_plain_one() -> None:
    """A compact client in one cluster at eps = 0.1 (the known-answer pool, seeds 0 and
    2): its single spike is too little for the smoothed gate, whose noise-only releases
    also have spikes, but the plain gate sees it. Signal when either test finds it."""
    from ecos_fast.smoothing import Smoother, smoothed_release_is_noise
    from ecos_fast.synthetic import compact_inside_broad

    for seed in (0, 2):
        p = compact_inside_broad(seed, scale=0.5)
        cents = ecos_fast.fit_centroids(p.pool, n_clusters=50, seed=seed)
        resp = ecos_fast.respond(p.private, cents, 0.1, 1e-5, seed=seed + 1000)
        smoother = Smoother(cents.centroids)
        assert smoothed_release_is_noise(smoother, resp.noisy_counts, resp.sigma, 2.0)[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LowSignalWarning)
            sel = ecos_fast.select(p.pool, (cents, resp), 250)
        assert sel.method == "ecos" and p.share_of(sel, p.client_components) > 0.7, seed


@settings(max_examples=200, deadline=None)
@given(
    rows=st.integers(1, 12),
    cols=st.integers(1, 30),
    m=st.integers(1, 35),
    levels=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_the_partial_sort_equals_a_stable_argsort(
    rows: int, cols: int, m: int, levels: int, seed: int
) -> None:
    """The neighbourhoods' partition-then-sort picks exactly a stable argsort's first m
    columns, with values drawn from a few levels so that ties are everywhere."""
    from ecos_fast.smoothing import _smallest

    d = np.random.default_rng(seed).integers(0, levels, (rows, cols)).astype(np.float64)
    want = np.argsort(d, axis=1, kind="stable")[:, :m]
    np.testing.assert_array_equal(_smallest(d, m), want)


def test_the_gate_reads_a_given_smoothing_as_it_would_compute_it() -> None:
    """plan_selection hands the gate the release's smoothing it already has; the total
    is the one the gate would compute itself, and the one weights_total gives."""
    from ecos_fast.smoothing import Smoother, smoothed_release_is_noise

    _, sk = _spread_client(3)
    y, s = sk.response.noisy_counts, sk.response.sigma
    smoother = Smoother(sk.centroids.centroids)
    own = smoothed_release_is_noise(smoother, y, s, 2.0)
    given = smoothed_release_is_noise(smoother, y, s, 2.0, smoothing=smoother.smooth(y, s))
    assert own == given
    assert own[1] == pytest.approx(float(smoother.weights_total(y[:, None], s, 2.0)[0]))
