"""Paired statistics of the experiment (:mod:`ecos_fast.apps.stats`).

Checked against SciPy on a fixed example, against a brute-force enumeration of the
exact signed-rank distribution, and on the case the README once got wrong: a best mean
that won few paired runs must not be bold.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from ecos_fast.apps.experiment import RunRecord
from ecos_fast.apps.results import format_table
from ecos_fast.apps.stats import compare, paired_differences, significant_best, wilcoxon_p

scipy_stats = pytest.importorskip("scipy.stats")

DOMAINS = ("mnist", "optdigits", "mnistm", "print", "synth", "hand", "hershey")


def _run(method: str, domain: str, seed: int, budget: int, acc: float) -> RunRecord:
    eps = 0.58 if method == "ecos" else 0.0
    return RunRecord("labeling", domain, seed, budget, method, eps, eps, acc, budget, 0.1, 1.0)


def _exact_two_sided(d: np.ndarray) -> float:
    """Exact Wilcoxon p by enumerating all 2^n sign patterns (no ties, no zeros)."""
    ranks = np.argsort(np.argsort(np.abs(d))) + 1
    t_obs = int(ranks[d > 0].sum())
    n = len(d)
    stats = [
        sum(r for r, s in zip(ranks, signs, strict=True) if s)
        for signs in itertools.product([0, 1], repeat=n)
    ]
    total = n * (n + 1) / 2
    extreme = min(t_obs, total - t_obs)
    count = sum(1 for t in stats if t <= extreme or t >= total - extreme)
    return float(count) / 2.0**n


def test_wilcoxon_matches_scipy_and_brute_force() -> None:
    a = np.array([95.1, 96.3, 94.0, 97.2, 93.5, 96.0, 95.5, 94.4, 96.6])
    b = np.array([94.0, 96.5, 92.1, 95.0, 93.5, 93.1, 95.0, 90.0, 96.0])
    recs = [_run("ecos", "mnist", s, 100, x / 100) for s, x in enumerate(a)]
    recs += [_run("random", "mnist", s, 100, x / 100) for s, x in enumerate(b)]
    c = compare(recs, "ecos", "random")
    d = np.round(a - b, 9)
    assert (c.n, c.wins, c.ties, c.losses) == (9, 7, 1, 1)
    assert c.mean_difference == pytest.approx(float(d.mean()))
    expect = scipy_stats.wilcoxon(d, zero_method="wilcox").pvalue
    assert c.p_value == pytest.approx(expect, rel=1e-12)
    assert "1 zero difference dropped" in c.note
    # Without ties or zeros: the exact distribution, enumerated by hand.
    nz = d[d != 0]
    assert len(np.unique(np.abs(nz))) == nz.size
    assert wilcoxon_p(nz)[0] == pytest.approx(_exact_two_sided(nz), rel=1e-9)


def test_all_zero_differences_give_p_one_and_empty_gives_nan() -> None:
    assert wilcoxon_p(np.zeros(5)) == (1.0, "all 5 differences are zero")
    p, note = wilcoxon_p(np.zeros(0))
    assert math.isnan(p) and note == "no shared runs"


def test_pairs_are_matched_by_domain_seed_and_budget() -> None:
    recs = [
        _run("ecos", "mnist", 1, 100, 0.9),
        _run("ecos", "mnist", 2, 100, 0.8),
        _run("ecos", "synth", 1, 100, 0.7),  # no Random run to pair with
        _run("random", "mnist", 2, 100, 0.5),
        _run("random", "mnist", 1, 100, 0.6),
        _run("random", "mnist", 1, 200, 0.1),  # other budget
    ]
    d = paired_differences(recs, "ecos", "random", budget=100)
    assert np.allclose(d, [30.0, 30.0])
    # ECOS rows at another epsilon (the sweep) are not paired with the main ones.
    swept = RunRecord("labeling", "mnist", 1, 100, "ecos", 8.0, 8.0, 0.0, 100, 0.1, 1.0)
    assert np.allclose(paired_differences([*recs, swept], "ecos", "random", budget=100), 30.0)


def _few_wins_best_mean() -> list[RunRecord]:
    """ECOS has the best mean on every row but wins only 5 of 21 paired runs."""
    recs: list[RunRecord] = []
    for i, (dom, seed) in enumerate(itertools.product(DOMAINS, (1, 2, 3))):
        kc = 0.75 + 0.001 * i
        ecos = kc + (0.08 if i % 4 == 0 and i < 20 else -0.005)
        recs += [_run("ecos", dom, seed, 3000, ecos), _run("kcenter", dom, seed, 3000, kc)]
    return recs


def test_best_mean_that_is_not_significant_is_not_bold() -> None:
    recs = _few_wins_best_mean()
    c = compare(recs, "ecos", "kcenter")
    assert c.wins == 5 and c.n == 21 and c.mean_difference > 0
    assert not c.significant()
    assert significant_best(recs, ["ecos", "kcenter"], budget=3000) is None
    table = format_table(recs)
    assert "**" not in table
    assert "ECOS vs K-Center: wins 5/21" in table


def test_significant_winner_is_bold_only_on_the_average_row() -> None:
    recs = []
    for i, (dom, seed) in enumerate(itertools.product(DOMAINS, (1, 2, 3))):
        base = 0.8 + 0.001 * i
        recs += [_run("ecos", dom, seed, 1000, base + 0.02 + 0.0001 * i)]
        recs += [_run("random", dom, seed, 1000, base)]
    assert significant_best(recs, ["ecos", "random"], budget=1000) == "ecos"
    # Three seeds per domain: the smallest two-sided p is 0.25, never significant.
    assert significant_best(recs, ["ecos", "random"], budget=1000, domain="mnist") is None
    table = format_table(recs)
    bold = [line for line in table.splitlines() if "**" in line]
    assert len(bold) == 1 and bold[0].startswith("| average")
    assert "significant at 5 %" in table
