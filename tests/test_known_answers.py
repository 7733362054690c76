"""Known-answer tests of the selection rule on synthetic pools (ecos_fast.synthetic).

The pools are mixtures whose components are known, so the share of a selection in
the client's components measures proximity without training anything. The defaults
were chosen on other seeds (100-109, docs/results.md "threshold study"); these tests
use seeds 0-2. Targets (issue 12, averages over the three seeds): >= 75 % of the picks
from the client's compact component at eps=0.58 when it sits inside a broad one (here
on every seed); <= 2 % junk at eps=0.1; within
3 points of Random's composition at eps=0.001; only the client's components at eps=inf.
"""

from __future__ import annotations

import math
import warnings

import ecos_fast
import numpy as np
import pytest
from ecos_fast.errors import LowSignalWarning
from ecos_fast.synthetic import SyntheticPool, compact_inside_broad, far_junk

SEEDS = (0, 1, 2)


def _select(
    p: SyntheticPool, eps: float, n_clusters: int, budget: int, seed: int, **options: object
) -> np.ndarray:
    cents = ecos_fast.fit_centroids(p.pool, n_clusters=n_clusters, seed=seed)
    resp = ecos_fast.respond(p.private, cents, eps, 1e-5, seed=seed + 1000)
    sketch = ecos_fast.Sketch.join(cents, resp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowSignalWarning)
        return np.asarray(ecos_fast.select(p.pool, sketch, budget, **options))


@pytest.fixture(scope="module")
def cib() -> list[SyntheticPool]:
    return [compact_inside_broad(s, scale=0.5) for s in SEEDS]


@pytest.fixture(scope="module")
def junk() -> list[SyntheticPool]:
    return [far_junk(s, scale=0.5) for s in SEEDS]


@pytest.mark.parametrize("within", [None, "neighbourhood", "strata", "weighted-strata"])
def test_compact_client_inside_broad_domain(cib: list[SyntheticPool], within: str | None) -> None:
    opts = {} if within is None else {"within": within}  # None: the default routine
    shares = [
        p.share_of(_select(p, 0.58, 50, 250, s, **opts), p.client_components)
        for p, s in zip(cib, SEEDS, strict=False)
    ]
    assert min(shares) >= 0.75, shares
    # Farthest-first over the whole cluster walks out into the broad domain (the bug).
    walk = [
        p.share_of(_select(p, 0.58, 50, 250, s, within="kcenter"), p.client_components)
        for p, s in zip(cib, SEEDS, strict=False)
    ]
    assert np.mean(shares) > np.mean(walk) + 0.15, (shares, walk)


def test_noise_buys_no_junk_at_small_epsilon(junk: list[SyntheticPool]) -> None:
    shares = [
        p.share_of(_select(p, 0.1, 100, 500, s), p.junk_components)
        for p, s in zip(junk, SEEDS, strict=False)
    ]
    # The target is on the average of the three seeds; on validation seeds 100-109 the
    # default threshold gave 1.3 % on average and 5.2 % at worst (docs/results.md).
    assert np.mean(shares) <= 0.02 and max(shares) <= 0.06, shares
    # With threshold 0 every cluster whose noise came out positive gets a quota.
    naive = [
        p.share_of(_select(p, 0.1, 100, 500, s, threshold=0.0), p.junk_components)
        for p, s in zip(junk, SEEDS, strict=False)
    ]
    assert np.mean(naive) > 0.2, naive


def test_no_signal_degrades_to_randoms_composition(junk: list[SyntheticPool]) -> None:
    for p, s in zip(junk, SEEDS, strict=False):
        cents = ecos_fast.fit_centroids(p.pool, n_clusters=100, seed=s)
        resp = ecos_fast.respond(p.private, cents, 0.001, 1e-5, seed=s + 1000)
        with pytest.warns(LowSignalWarning, match="sigma"):
            sel = ecos_fast.select(p.pool, ecos_fast.Sketch.join(cents, resp), 500)
        for comps in (p.client_components, p.junk_components):
            assert abs(p.share_of(sel, comps) - p.pool_share(comps)) <= 0.03, (s, comps)


def test_no_noise_picks_only_the_clients_components(junk: list[SyntheticPool]) -> None:
    for p, s in zip(junk, SEEDS, strict=False):
        picked = _select(p, math.inf, 100, 500, s)
        assert p.share_of(picked, p.client_components) == 1.0


def test_strong_signal_issues_no_low_signal_warning(junk: list[SyntheticPool]) -> None:
    p = junk[0]
    cents = ecos_fast.fit_centroids(p.pool, n_clusters=100, seed=0)
    resp = ecos_fast.respond(p.private, cents, 0.58, 1e-5, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LowSignalWarning)
        ecos_fast.select(p.pool, ecos_fast.Sketch.join(cents, resp), 500)


@pytest.mark.parametrize("smooth", ["none", "sure"])
def test_known_answers_hold_with_and_without_smoothing(
    cib: list[SyntheticPool], junk: list[SyntheticPool], smooth: str
) -> None:
    """The targets above, for both ways of reading the counts (select(smooth=...)):
    smoothing must not hand a compact client's budget to its broad neighbours, buy
    junk, or move a noise-free release off the client's components."""
    zipped = list(zip(SEEDS, cib, junk, strict=True))
    compact = [
        p.share_of(_select(p, 0.58, 50, 250, s, smooth=smooth), p.client_components)
        for s, p, _ in zipped
    ]
    assert min(compact) >= 0.75, compact
    junk_share = [
        j.share_of(_select(j, 0.1, 100, 500, s, smooth=smooth), j.junk_components)
        for s, _, j in zipped
    ]
    assert np.mean(junk_share) <= 0.02, junk_share
    for s, _, j in zipped:
        assert (
            j.share_of(_select(j, math.inf, 100, 500, s, smooth=smooth), j.client_components) == 1.0
        )
