"""Coverage counts at several neighbours (``respond(neighbours=k)``): each private
sample adds 1/sqrt(k) to each of its k nearest centroids.

Checked against a plain reference (direct float64 distances, Python's sort), the
privacy claim behind it (one sample's vector has L2 norm 1; two samples' vectors differ
by at most sqrt(2), so the sensitivities and sigma are those of plain counts), and the
noise (the same seed draws the same noise whatever k).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import ecos_fast
import numpy as np
import pytest
from ecos_fast.errors import BudgetShortfallWarning, InvalidInputError, LowSignalWarning
from ecos_fast.protocol import coverage_counts
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays


def _reference(x: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros(c.shape[0])
    for row in x.astype(np.float64):
        d = ((row[None, :] - c.astype(np.float64)) ** 2).sum(axis=1)
        for j in sorted(range(c.shape[0]), key=lambda j: (d[j], j))[:k]:
            out[j] += 1 / math.sqrt(k)
    return out


# Small integer coordinates: every distance is exact in both computations, so ties are
# real ties (and frequent), broken to the lowest index by both.
_coords = st.integers(-4, 4).map(float)


@settings(max_examples=120, deadline=None)
@given(
    x=arrays(np.float32, st.tuples(st.integers(1, 30), st.just(3)), elements=_coords),
    c=arrays(np.float32, st.tuples(st.integers(1, 9), st.just(3)), elements=_coords),
    k=st.integers(1, 9),
)
def test_coverage_counts_equal_the_reference(x: np.ndarray, c: np.ndarray, k: int) -> None:
    k = min(k, c.shape[0])
    got = coverage_counts(x, c, k, 1)
    assert np.allclose(got, _reference(x, c, k), rtol=0, atol=1e-12)
    assert math.isclose(got.sum(), x.shape[0] * math.sqrt(k), rel_tol=1e-12)


@settings(max_examples=80, deadline=None)
@given(
    a=arrays(np.float32, (1, 5), elements=st.floats(-10, 10, width=32)),
    b=arrays(np.float32, (1, 5), elements=st.floats(-10, 10, width=32)),
    k=st.integers(1, 12),
)
def test_one_sample_moves_the_counts_by_at_most_the_plain_sensitivity(
    a: np.ndarray, b: np.ndarray, k: int
) -> None:
    c = np.random.default_rng(0).normal(0, 4, (12, 5)).astype(np.float32)
    va, vb = coverage_counts(a, c, k, 1), coverage_counts(b, c, k, 1)
    assert math.isclose(np.linalg.norm(va), 1.0, rel_tol=1e-12)  # add/remove: 1
    assert np.linalg.norm(va - vb) <= math.sqrt(2) + 1e-12  # replace one: sqrt(2)


def test_plain_counts_are_the_assignment_kernels_and_the_noise_does_not_depend_on_k() -> None:
    rng = np.random.default_rng(5)
    c = rng.normal(0, 3, (20, 8)).astype(np.float32)
    x = rng.normal(0, 3, (300, 8)).astype(np.float32)
    cents = ecos_fast.Centroids(c)
    labels, _ = ecos_fast.assign(x, c)
    exact = ecos_fast.respond(x, cents, math.inf, 1e-5)
    assert np.array_equal(exact.noisy_counts, np.bincount(labels, minlength=20))
    noise = {}
    for k in (1, 3, 20):
        r = ecos_fast.respond(x, cents, 0.58, 1e-5, seed=9, neighbours=k)
        assert r.neighbours == k
        assert math.isclose(r.sigma, ecos_fast.calibrate_gaussian_sigma(0.58, 1e-5))
        noise[k] = r.noisy_counts - coverage_counts(x, c, k, 1)
    assert np.allclose(noise[1], noise[3]) and np.allclose(noise[1], noise[20])
    # k = R: every sample counts everywhere, so the counts carry only the client's size.
    flat = coverage_counts(x, c, 20, 1)
    assert np.allclose(flat, 300 / math.sqrt(20))


def test_bad_neighbours_are_refused_before_any_noise() -> None:
    cents = ecos_fast.Centroids(np.eye(3, dtype=np.float32))
    x = np.eye(3, dtype=np.float32)
    with pytest.raises(InvalidInputError, match="neighbours=4 exceeds n_clusters=3"):
        ecos_fast.respond(x, cents, 1.0, 1e-5, neighbours=4)
    with pytest.raises(InvalidInputError, match="neighbours"):
        ecos_fast.respond(x, cents, 1.0, 1e-5, neighbours=0)
    with pytest.raises(ecos_fast.errors.InvalidTypeError, match="neighbours"):
        ecos_fast.respond(x, cents, 1.0, 1e-5, neighbours=2.0)  # type: ignore[arg-type]


def test_more_neighbours_lift_a_small_spread_client_out_of_the_noise() -> None:
    """Known answer: a client of 120 samples spread over 30 of 120 clusters (4 per
    cluster, sigma ~6 at epsilon 0.58) is below a 2-sigma threshold nearly everywhere
    with plain counts; counted at its 4 nearest centroids, its region gathers about
    twice the signal, and more of the selection comes from it."""
    rng = np.random.default_rng(11)
    # Pool: 120 well-separated blobs on a line of blob centres; the client's region
    # is 30 adjacent blobs, and its samples sit between neighbouring blob centres.
    centres = np.zeros((120, 4), np.float32)
    centres[:, 0] = np.arange(120) * 3.0
    pool = np.repeat(centres, 50, axis=0) + rng.normal(0, 0.3, (6000, 4)).astype(np.float32)
    cents = ecos_fast.Centroids(centres)
    private = centres[rng.integers(40, 70, 120)] + rng.normal(0, 1.0, (120, 4)).astype(np.float32)
    region = (pool[:, 0] >= 40 * 3.0 - 1.5) & (pool[:, 0] <= 69 * 3.0 + 1.5)
    shares = {}
    for k in (1, 4):
        got = []
        for seed in range(8):
            resp = ecos_fast.respond(private, cents, 0.58, 1e-5, seed=seed, neighbours=k)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LowSignalWarning)
                warnings.simplefilter("ignore", BudgetShortfallWarning)
                sel = ecos_fast.select(pool, ecos_fast.Sketch.join(cents, resp), 300, seed=seed)
            got.append(region[np.asarray(sel)].mean())
        shares[k] = float(np.mean(got))
    # Random's share is the region's 25 % of the pool; plain counts measured 26 %, k = 4 70 %.
    assert shares[4] > max(0.5, shares[1] + 0.25), shares


def test_suggest_neighbours_follows_the_signal_per_cluster() -> None:
    sigma = ecos_fast.calibrate_gaussian_sigma(0.58, 1e-5)
    for n, r in [(300, 100), (210, 100), (2000, 100), (50, 400), (10**6, 100)]:
        want = min(8, r, max(1, round(1.5 * sigma * r / n)))
        assert ecos_fast.suggest_neighbours(n, 0.58, 1e-5, r) == want
    # Monotone: fewer samples, smaller epsilon or more clusters never ask for fewer.
    ks = [ecos_fast.suggest_neighbours(n, 0.58, 1e-5, 100) for n in range(50, 3000, 50)]
    assert ks == sorted(ks, reverse=True)
    assert ecos_fast.suggest_neighbours(300, math.inf, 1e-5, 100) == 1
    assert ecos_fast.suggest_neighbours(10, 0.1, 1e-5, 3) == 3  # capped at R
    assert ecos_fast.suggest_neighbours(10, 0.1, 1e-5, 100, max_neighbours=5) == 5
    for bad in ({"n_private": 0}, {"n_clusters": 0}, {"max_neighbours": 0}):
        args = {"n_private": 300, "epsilon": 0.58, "delta": 1e-5, "n_clusters": 100, **bad}
        with pytest.raises(InvalidInputError):
            ecos_fast.suggest_neighbours(**args)  # type: ignore[arg-type]
    with pytest.raises(ecos_fast.errors.PrivacyParameterError):
        ecos_fast.suggest_neighbours(300, 0.0, 1e-5, 100)


def test_blocks_of_rows_give_the_counts_of_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    from ecos_fast import smoothing

    rng = np.random.default_rng(3)
    c = rng.normal(0, 2, (7, 4)).astype(np.float32)
    x = rng.normal(0, 2, (50, 4)).astype(np.float32)
    whole = coverage_counts(x, c, 3, 1)
    monkeypatch.setattr(smoothing, "_BLOCK_VALUES", 7 * 4)  # 4 rows per block
    assert np.array_equal(coverage_counts(x, c, 3, 1), whole)
    monkeypatch.setattr(smoothing, "_BLOCK_VALUES", 1)  # one row per block
    assert np.array_equal(coverage_counts(x, c, 3, 1), whole)


def test_the_ledger_records_nothing_for_a_bad_neighbours(tmp_path: Any) -> None:
    from ecos_fast.ledger import Ledger, respond_with_ledger

    cents = ecos_fast.Centroids(np.eye(3, dtype=np.float32))
    with Ledger(str(tmp_path / "l.sqlite"), budget_epsilon=5.0) as ledger:
        with pytest.raises(InvalidInputError, match="neighbours=4 exceeds n_clusters=3"):
            respond_with_ledger(np.eye(3), cents, 1.0, 1e-5, ledger, neighbours=4)
        assert ledger.releases() == []
        r = respond_with_ledger(np.eye(3), cents, 1.0, 1e-5, ledger, neighbours=2, seed=0)
        assert r.neighbours == 2 and len(ledger.releases()) == 1
