"""Greedy K-Center: the pruned Rust kernel against the float64 brute-force oracle.

The oracle is ``reference.kcenter_greedy`` (float64, brute force). On small-integer
data every squared distance is exact in float32, so picks must match exactly. On
random float data the float32 kernel and the float64 oracle may order two candidates
whose distances agree to ~1e-7 differently; the picks are compared up to the first
difference, and that difference must be such a near-tie (see ``_assert_matches``).

Everything the kernel promises beyond the oracle is checked bit for bit: pruned ==
brute force (``prune=False`` runs the same code without skipping), and any thread
count gives the same picks and radii.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import ecos_fast
import numpy as np
import pytest
from ecos_fast import _core
from ecos_fast import reference as ref
from ecos_fast.errors import BudgetError, InvalidInputError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _mixture(
    rng: np.random.Generator, n: int, d: int, k: int = 12, scale: float = 1.0
) -> np.ndarray:
    """Clustered float32 data (unequal spreads): the case pruning is for."""
    means = rng.normal(0.0, 8.0, size=(k, d))
    spread = np.exp(rng.uniform(np.log(0.2), np.log(2.0), size=k))
    comp = rng.integers(0, k, size=n)
    x = means[comp] + rng.normal(size=(n, d)) * spread[comp, None]
    return (x * scale).astype(np.float32)


def _min_dist64(x: np.ndarray, centers: list[int], row: int) -> float:
    diff = x[centers].astype(np.float64) - x[row].astype(np.float64)
    return float(np.sqrt((diff**2).sum(axis=1).min()))


def _assert_matches(
    x: np.ndarray,
    budget: int,
    *,
    exact: bool,
    first: int | None = None,
    initial: np.ndarray | None = None,
    rows: np.ndarray | None = None,
) -> None:
    sel, radii = ecos_fast.kcenter_greedy(
        x, budget, first=first, initial=initial, rows=rows, n_threads=2
    )
    want, want_radii = ref.kcenter_greedy(x, budget, first=first, initial=initial, rows=rows)
    assert sel.dtype == np.int64 and radii.dtype == np.float32
    assert sel.shape == (budget,) and radii.shape == (budget,)
    assert len(set(sel.tolist())) == budget
    if initial is not None:
        assert not set(sel.tolist()) & set(np.asarray(initial).tolist())
    if rows is not None:
        assert set(sel.tolist()) <= set(np.asarray(rows).tolist())
    # Radii can only shrink: distances only decrease and the candidate set only shrinks.
    assert np.all(np.diff(radii) <= 0)
    if exact:
        np.testing.assert_array_equal(sel, want)
        np.testing.assert_allclose(radii, want_radii, rtol=1e-6, atol=0)
        return
    diff = np.flatnonzero(sel != want)
    upto = budget if diff.size == 0 else int(diff[0])
    np.testing.assert_allclose(radii[:upto], want_radii[:upto], rtol=2e-5, atol=1e-6)
    if diff.size:
        # A different pick is only allowed at a near-tie: in float64, the kernel's pick
        # must be (almost) as far from the centers so far as the oracle's pick, which
        # is the true maximum. Relative 1e-5 is far above float32 distance rounding for
        # these sizes (~d·6e-8) and far below the gaps between genuine candidates.
        centers = list(np.asarray(initial if initial is not None else [], dtype=np.int64))
        centers += sel[:upto].tolist()
        got_d = _min_dist64(x, centers, int(sel[upto]))
        want_d = _min_dist64(x, centers, int(want[upto]))
        assert got_d == pytest.approx(want_d, rel=1e-5, abs=1e-6)


@st.composite
def problems(draw: st.DrawFn) -> dict:
    """A data set plus a valid call: shapes, duplicates, integer ties, rows, initial, first."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(1, 70))
    d = draw(st.integers(1, 9))
    kind = draw(st.sampled_from(["int", "float", "dup_int", "dup_float", "const"]))
    if kind in ("int", "dup_int"):
        # Small integers: every squared distance is exact in float32 and float64.
        x = rng.integers(-3, 4, size=(n, d)).astype(np.float32)
    elif kind == "const":
        x = np.full((n, d), 1.5, dtype=np.float32)
    else:
        x = rng.normal(size=(n, d)).astype(np.float32)
    if kind.startswith("dup"):
        # Many identical rows: distinct values drawn from a few prototypes.
        n_proto = draw(st.integers(1, max(1, n // 3)))
        x = x[rng.integers(0, n_proto, size=n)]
    rows = None
    if draw(st.booleans()):
        size = draw(st.integers(1, n))
        rows = rng.permutation(n)[:size].astype(np.int64)  # unsorted on purpose
    cand = np.arange(n) if rows is None else rows
    initial = None
    if draw(st.booleans()):
        size = draw(st.integers(0, min(n, 5)))
        initial = rng.permutation(n)[:size].astype(np.int64)
    n_avail = len(cand) - (0 if initial is None else int(np.isin(initial, cand).sum()))
    if n_avail == 0:
        initial = None
        n_avail = len(cand)
    first = None
    if draw(st.booleans()):
        first = int(rng.choice(cand))
    budget = draw(st.integers(1, n_avail))
    return {
        "x": x,
        "budget": budget,
        "first": first,
        "initial": initial,
        "rows": rows,
        "exact": kind != "float" and kind != "dup_float",
    }


@SETTINGS
@given(problems())
def test_matches_reference(p: dict) -> None:
    _assert_matches(
        p["x"],
        p["budget"],
        exact=p["exact"],
        first=p["first"],
        initial=p["initial"],
        rows=p["rows"],
    )


@SETTINGS
@given(problems())
def test_pruned_equals_brute_force_bitwise(p: dict) -> None:
    x, b = p["x"], p["budget"]
    initial = p["initial"] if p["initial"] is not None and p["initial"].size else None
    first = None if initial is not None else p["first"]
    args = (x, b, 2, first, initial, p["rows"])
    sel, radii = _core.kcenter_greedy(*args, prune=True)
    sel_bf, radii_bf = _core.kcenter_greedy(*args, prune=False)
    np.testing.assert_array_equal(sel, sel_bf)
    assert radii.tobytes() == radii_bf.tobytes()


@pytest.mark.parametrize("scale", [1.0, 1e-19, 1e-6, 1e6, 1e17])
def test_pruned_equals_brute_force_at_extreme_scales(scale: float) -> None:
    # Tiny scales push squared distances into the subnormal range, huge ones toward
    # overflow: the skip test's margin must stay safe at both ends.
    rng = np.random.default_rng(7)
    x = _mixture(rng, 3000, 17, scale=scale)
    sel, radii, stats = _core.kcenter_greedy_stats(x, 150, 2, prune=True)
    sel_bf, radii_bf, stats_bf = _core.kcenter_greedy_stats(x, 150, 2, prune=False)
    np.testing.assert_array_equal(sel, sel_bf)
    assert radii.tobytes() == radii_bf.tobytes()
    assert stats_bf["distance_evals"] == stats_bf["brute_force_evals"]
    if scale == 1.0:
        assert stats["distance_evals"] < 0.5 * stats["brute_force_evals"]


def test_clustered_float_data_matches_reference_and_prunes() -> None:
    rng = np.random.default_rng(3)
    x = _mixture(rng, 4000, 32, k=20)
    _assert_matches(x, 250, exact=False)
    _, _, stats = _core.kcenter_greedy_stats(x, 250, 2)
    assert stats["distance_evals"] < 0.5 * stats["brute_force_evals"]


def test_thread_count_does_not_change_results() -> None:
    # Several CHUNK-sized pieces per group so the work really splits across threads.
    rng = np.random.default_rng(11)
    x = _mixture(rng, 9000, 24)
    x[100:400] = x[50]  # duplicates: ties at distance 0
    rows = rng.permutation(9000)[:8000].astype(np.int64)
    initial = rows[:3].copy()
    out = [_core.kcenter_greedy(x, 400, t, None, initial, rows) for t in (1, 2, 3)]
    for sel, radii in out[1:]:
        np.testing.assert_array_equal(sel, out[0][0])
        assert radii.tobytes() == out[0][1].tobytes()


def test_default_first_is_lowest_candidate_row() -> None:
    x = np.arange(10, dtype=np.float32)[:, None]
    sel, _ = ecos_fast.kcenter_greedy(x, 2, rows=np.array([7, 3, 5]))
    assert sel.tolist() == [3, 7]


def test_duplicates_are_never_picked_twice() -> None:
    x = np.zeros((6, 3), dtype=np.float32)
    sel, radii = ecos_fast.kcenter_greedy(x, 6)
    assert sel.tolist() == [0, 1, 2, 3, 4, 5]
    assert radii.tolist() == [0.0] * 6
    sel, _ = ecos_fast.kcenter_greedy(x, 3, initial=np.array([1, 4]))
    assert sel.tolist() == [0, 2, 3]


@pytest.mark.parametrize("n,d", [(1, 1), (2, 1), (5, 1), (7, 3)])
def test_budget_one_and_budget_all(n: int, d: int) -> None:
    rng = np.random.default_rng(n * 10 + d)
    x = rng.integers(-5, 6, size=(n, d)).astype(np.float32)
    for b in (1, n):
        _assert_matches(x, b, exact=True)
    sel, radii = ecos_fast.kcenter_greedy(x, n)
    assert sorted(sel.tolist()) == list(range(n)) and radii[-1] == 0.0


def test_high_dimension_tail_lanes() -> None:
    # d not a multiple of the 32 accumulator lanes, and d > lanes.
    rng = np.random.default_rng(5)
    x = rng.integers(-2, 3, size=(300, 77)).astype(np.float32)
    _assert_matches(x, 60, exact=True)


def _clusters(rng: np.random.Generator, n: int, r: int) -> tuple:
    labels = rng.integers(0, r, size=n)
    members = np.concatenate([np.flatnonzero(labels == c) for c in range(r)]).astype(np.int64)
    counts = np.bincount(labels, minlength=r)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    quotas = np.array([rng.integers(0, c + 1) for c in counts], dtype=np.int64)
    first = np.array(
        [
            -1
            if (c % 3 == 0 or counts[c] == 0)
            else int(rng.choice(members[indptr[c] : indptr[c + 1]]))
            for c in range(r)
        ],
        dtype=np.int64,
    )
    return indptr, members, quotas, first


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_cluster_equals_greedy_per_cluster(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = _mixture(rng, 3000, 12)
    x[:40] = x[40]  # duplicates inside some cluster
    indptr, members, quotas, first = _clusters(rng, 3000, 9)
    got = _core.kcenter_clusters(x, indptr, members, quotas, first, 2)
    want = []
    for c in range(len(quotas)):
        if quotas[c] == 0:
            continue
        rows = members[indptr[c] : indptr[c + 1]]
        f = None if first[c] < 0 else int(first[c])
        want.append(ecos_fast.kcenter_greedy(x, int(quotas[c]), first=f, rows=rows)[0])
    np.testing.assert_array_equal(got, np.concatenate(want) if want else np.zeros(0, np.int64))
    for t in (1, 3):
        np.testing.assert_array_equal(
            got, _core.kcenter_clusters(x, indptr, members, quotas, first, t)
        )


def test_per_cluster_small_matches_reference() -> None:
    rng = np.random.default_rng(9)
    x = rng.integers(-3, 4, size=(200, 4)).astype(np.float32)
    indptr, members, quotas, first = _clusters(rng, 200, 5)
    got = _core.kcenter_clusters(x, indptr, members, quotas, first, 2)
    want = []
    for c in range(len(quotas)):
        rows = members[indptr[c] : indptr[c + 1]]
        if quotas[c]:
            f = None if first[c] < 0 else int(first[c])
            want.extend(ref.kcenter_greedy(x, int(quotas[c]), first=f, rows=rows)[0].tolist())
    assert got.tolist() == want


def test_validation_errors() -> None:
    x = np.zeros((5, 2), dtype=np.float32)
    with pytest.raises(BudgetError, match="budget=0"):
        ecos_fast.kcenter_greedy(x, 0)
    with pytest.raises(BudgetError, match="budget=6"):
        ecos_fast.kcenter_greedy(x, 6)
    with pytest.raises(BudgetError, match=r"budget=3 exceeds the 2 candidate rows \(rows, less"):
        ecos_fast.kcenter_greedy(x, 3, rows=np.array([0, 1, 2]), initial=np.array([2]))
    # Before: "exceeds the pool size n_samples=0" for a pool of 5 rows.
    with pytest.raises(BudgetError, match="budget=1 exceeds the 0 candidate rows"):
        ecos_fast.kcenter_greedy(x, 1, initial=np.arange(5))
    with pytest.raises(InvalidInputError, match="rows"):
        ecos_fast.kcenter_greedy(x, 1, rows=np.array([0, 5]))
    with pytest.raises(InvalidInputError, match="rows"):
        ecos_fast.kcenter_greedy(x, 1, rows=np.array([-1, 2]))
    with pytest.raises(InvalidInputError, match="first=4"):
        ecos_fast.kcenter_greedy(x, 1, first=4, rows=np.array([0, 1]))
    with pytest.raises(InvalidInputError, match="initial"):
        ecos_fast.kcenter_greedy(x, 1, initial=np.array([9]))
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InvalidInputError, match="non-finite"):
        ecos_fast.kcenter_greedy(bad, 1)
    for err in (BudgetError, InvalidInputError):
        assert issubclass(err, ValueError)


def test_core_rechecks_without_panicking() -> None:
    x = np.zeros((5, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="budget=6"):
        _core.kcenter_greedy(x, 6, 1)
    with pytest.raises(ValueError, match="outside"):
        _core.kcenter_greedy(x, 1, 1, None, None, np.array([0, 7]))
    with pytest.raises(ValueError, match="twice"):
        _core.kcenter_greedy(x, 1, 1, None, None, np.array([1, 1]))
    with pytest.raises(ValueError, match="first=3"):
        _core.kcenter_greedy(x, 1, 1, 3, None, np.array([0, 1]))
    with pytest.raises(ValueError, match="indptr"):
        _core.kcenter_clusters(
            x, np.array([0, 9]), np.array([0, 1]), np.array([1]), np.array([-1]), 1
        )


@st.composite
def lazy_problems(draw: st.DrawFn) -> dict:
    """Data where the lazy refresh does real work: clusters in a low-dimensional
    subspace plus noise (bounds concentrate), duplicates, tiny or huge scales, d from 1
    to 140 (below, at and past the 64-lane SIMD blocks, with and without a tail), and
    budgets up to most of the rows (tiny groups, pending lists over their
    cap, refreshed whole)."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(2, 600))
    d = draw(st.one_of(st.integers(1, 40), st.integers(60, 140)))
    k = draw(st.integers(1, 8))
    latent = draw(st.integers(1, 4))
    basis = rng.normal(size=(latent, d))
    means = rng.normal(0.0, 6.0, size=(k, latent)) @ basis
    comp = rng.integers(0, k, size=n)
    noise = draw(st.sampled_from([0.0, 1e-3, 0.3, 1.0]))
    x = means[comp] + (rng.normal(size=(n, latent)) @ basis) + noise * rng.normal(size=(n, d))
    if draw(st.booleans()):
        n_dup = draw(st.integers(1, max(1, n // 2)))
        x[rng.integers(0, n, size=n_dup)] = x[rng.integers(0, n)]
    scale = draw(st.sampled_from([1.0, 1e-21, 1e-6, 1e15]))
    x = (x * scale).astype(np.float32)
    initial = None
    if draw(st.booleans()):
        initial = rng.permutation(n)[: draw(st.integers(1, min(n - 1, 6)))].astype(np.int64)
    n_avail = n - (0 if initial is None else initial.size)
    budget = draw(st.integers(1, n_avail))
    first = None if initial is not None or not draw(st.booleans()) else int(rng.integers(n))
    return {"x": x, "budget": budget, "first": first, "initial": initial}


@SETTINGS
@given(lazy_problems())
def test_lazy_refresh_equals_brute_force_bitwise_any_threads(p: dict) -> None:
    args = (p["x"], p["budget"])
    kw = {"first": p["first"], "initial": p["initial"]}
    sel_bf, radii_bf, st_bf = _core.kcenter_greedy_stats(*args, 2, prune=False, **kw)
    assert st_bf["distance_evals"] == st_bf["brute_force_evals"]
    for t in (1, 2, 3):
        sel, radii = _core.kcenter_greedy(*args, t, prune=True, **kw)
        np.testing.assert_array_equal(sel, sel_bf)
        assert radii.tobytes() == radii_bf.tobytes()


def test_lazy_refresh_reads_few_rows_in_concentrated_clusters() -> None:
    # Wide clusters in 256 dimensions: point-to-center distances concentrate, so the
    # triangle inequality alone rarely skips a member of the cluster being covered;
    # the lazy refresh reads only the rows whose bound reaches the covering radius.
    rng = np.random.default_rng(21)
    x = _mixture(rng, 6000, 256, k=8)
    sel, radii, stats = _core.kcenter_greedy_stats(x, 300, 2)
    sel_bf, radii_bf, _ = _core.kcenter_greedy_stats(x, 300, 2, prune=False)
    np.testing.assert_array_equal(sel, sel_bf)
    assert radii.tobytes() == radii_bf.tobytes()
    assert stats["rows_read"] < 0.05 * stats["brute_force_evals"]
    _assert_matches(x, 300, exact=False)


def test_many_picks_small_groups_equal_brute_force() -> None:
    # Budget close to n: groups of a few members whose pending lists exceed their cap
    # and are refreshed whole; duplicates tie at distance 0.
    rng = np.random.default_rng(4)
    x = _mixture(rng, 1500, 6, k=5)
    x[:200] = x[200]
    for b in (1400, 1500):
        sel_bf, radii_bf = _core.kcenter_greedy(x, b, 2, prune=False)
        for t in (1, 3):
            sel, radii = _core.kcenter_greedy(x, b, t)
            np.testing.assert_array_equal(sel, sel_bf)
            assert radii.tobytes() == radii_bf.tobytes()


def test_large_groups_with_holes_equal_brute_force() -> None:
    # Few wide clusters: groups of thousands of members span many chunks, members
    # leave them as holes round after round, and groups are compacted; picks and radii
    # must still be brute force's, bit for bit, for any thread count.
    rng = np.random.default_rng(9)
    x = _mixture(rng, 12_000, 70, k=3)
    sel_bf, radii_bf = _core.kcenter_greedy(x, 400, 2, prune=False)
    for t in (1, 3):
        sel, radii = _core.kcenter_greedy(x, 400, t)
        np.testing.assert_array_equal(sel, sel_bf)
        assert radii.tobytes() == radii_bf.tobytes()


def test_phase_timers_exist_only_in_a_profile_build() -> None:
    # The wall-clock timers sit behind the `profile` cargo feature (off by default): the
    # shipped loop reads no clock, and the stats say which build this is.
    x = np.arange(60, dtype=np.float32).reshape(20, 3)
    _, _, stats = _core.kcenter_greedy_stats(x, 5, 1)
    timers = _core.build_info()["kcenter_timers"]
    assert timers in {"on", "off"}
    assert ("ns_total" in stats) == (timers == "on")
    assert stats["rounds"] >= 1 and stats["brute_force_evals"] > 0


_SIMD_CHILD = """
import json, sys, numpy as np
from ecos_fast import _core
rng = np.random.default_rng(5)
out = {"simd": _core.build_info()["kcenter_simd"]}
for d in (3, 64, 100, 128):
    x = (rng.normal(size=(3000, d)) * rng.uniform(0.2, 3.0, size=(3000, 1))).astype(np.float32)
    sel, radii = _core.kcenter_greedy(x, 120, 2)
    out[str(d)] = [sel.tolist(), radii.view(np.uint32).tolist()]
print(json.dumps(out))
"""


def test_every_simd_path_gives_bit_identical_picks() -> None:
    # The path is chosen once per process, so each capped path runs in a child; every
    # path sums the same 64 lanes in the same order, so picks and radii agree bit for
    # bit (d = 64 and 128 fold in registers, 3 and 100 go through the scalar tail).
    runs = {}
    for cap in ("", "avx2", "portable"):
        env = {**os.environ, "ECOS_FAST_SIMD": cap}
        out = subprocess.run(
            [sys.executable, "-c", _SIMD_CHILD], env=env, capture_output=True, text=True, check=True
        )
        res = json.loads(out.stdout)
        runs[res.pop("simd")] = res
    assert "portable" in runs
    first = next(iter(runs.values()))
    for path, res in runs.items():
        assert res == first, path


_EXEC_CHILD = """
import json, sys, numpy as np
from ecos_fast import _core
rng = np.random.default_rng(8)
means = rng.normal(0.0, 6.0, size=(6, 48))
x = (means[rng.integers(0, 6, 20_000)] + rng.normal(size=(20_000, 48))).astype(np.float32)
out = {}
for t in (1, 2, 3):
    sel, radii, stats = _core.kcenter_greedy_stats(x, 400, t)
    out[t] = [sel.tolist(), radii.view(np.uint32).tolist(), stats["distance_evals"]]
sel, radii = _core.kcenter_greedy(x, 400, 2, prune=False)
out["brute"] = [sel.tolist(), radii.view(np.uint32).tolist()]
print(json.dumps(out))
"""


def test_every_way_of_running_the_passes_gives_the_same_picks() -> None:
    # On two or more threads the traversal's passes run on a team of persistent
    # workers (small passes inline); ECOS_FAST_KCENTER_EXEC=eager splits every pass,
    # however small, and =rayon runs each as a rayon fork/join. The mode is read once
    # per process, so each runs in a child: every mode and thread count gives brute
    # force's picks and radii bit for bit, and the same distance count (each unit's
    # work does not depend on the thread that ran it).
    runs = {}
    for mode in ("", "eager", "rayon"):
        env = {**os.environ, "ECOS_FAST_KCENTER_EXEC": mode}
        out = subprocess.run(
            [sys.executable, "-c", _EXEC_CHILD], env=env, capture_output=True, text=True, check=True
        )
        runs[mode] = json.loads(out.stdout)
    want = runs[""]["brute"]
    evals = runs[""]["1"][2]
    for mode, res in runs.items():
        assert res["brute"] == want, mode
        for t in ("1", "2", "3"):
            assert res[t][:2] == want, (mode, t)
            assert res[t][2] == evals, (mode, t)
