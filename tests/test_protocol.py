"""The protocol end to end: fit_centroids -> respond -> select, on Gaussian mixtures."""

from __future__ import annotations

import math
import warnings

import ecos_fast
import numpy as np
import pytest
from ecos_fast import reference, rule
from ecos_fast.errors import (
    BudgetError,
    BudgetShortfallWarning,
    InvalidInputError,
    InvalidTypeError,
    LowSignalWarning,
    NoCoverageError,
    SketchMismatchError,
)
from ecos_fast.rule import (
    DEFAULT_CANDIDATES,
    DEFAULT_SMOOTH,
    DEFAULT_THRESHOLD,
    DEFAULT_WITHIN,
    Within,
)

N_COMP, PER_COMP, D = 8, 150, 8


def mixture(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool of 8 far-apart components; the client's data comes from component 3."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 30, (N_COMP, D))
    comp = np.repeat(np.arange(N_COMP), PER_COMP)
    pool = (means[comp] + rng.normal(0, 1, (comp.size, D))).astype(np.float32)
    private = (means[3] + rng.normal(0, 1, (200, D))).astype(np.float32)
    return pool, comp, private


@pytest.fixture(scope="module")
def setup() -> tuple[np.ndarray, np.ndarray, np.ndarray, ecos_fast.Centroids]:
    pool, comp, private = mixture()
    cents = ecos_fast.fit_centroids(pool, n_clusters=16, seed=0)
    return pool, comp, private, cents


def reference_select(
    pool: np.ndarray,
    cents: ecos_fast.Centroids,
    weights: np.ndarray,
    budget: int,
    within: str = "kcenter",
    candidates: float = 4.0,
) -> np.ndarray:
    """The selection rule of docs/method.md in plain NumPy (float64).

    ``within="kcenter"``: K-Center over the whole cluster from its member nearest the
    centroid; ``"neighbourhood"``: over the ``ceil(candidates * quota)`` nearest members;
    ``"strata"``: ``ceil(quota / 2)`` strata (centres from ``ecos_fast.kmeans``, itself
    tested against its reference), picks by stratum size, each stratum's nearest;
    ``"weighted-strata"``: the same strata over the ``ceil(candidates * quota)`` members
    whose ``rule.AFFINITY_NEIGHBOURS`` nearest centroids have the highest mean weight.
    """
    c = cents.centroids
    labels, d2 = reference.assign(pool, c)
    cap = np.bincount(labels, minlength=c.shape[0])
    quotas = ecos_fast.allocate_quotas(weights, cap, budget)
    out = []
    for k in range(c.shape[0]):
        if quotas[k] == 0:
            continue
        rows = np.flatnonzero(labels == k)
        if within == "weighted-strata":
            rows = _reference_affinity(pool, rows, c, weights, k, math.ceil(candidates * quotas[k]))
        if within in ("strata", "weighted-strata"):
            out.append(_reference_strata(pool, rows, int(quotas[k]), rule.stratum_seed(0, k)))
            continue
        first = int(rows[np.argmin(d2[rows])])
        if within == "neighbourhood":
            m = min(rows.size, math.ceil(candidates * int(quotas[k])))
            rows = np.sort(rows[np.lexsort((rows, d2[rows]))[:m]])
        out.append(reference.kcenter_greedy(pool, int(quotas[k]), first=first, rows=rows)[0])
    return np.concatenate(out)


def _reference_affinity(
    pool: np.ndarray, rows: np.ndarray, c: np.ndarray, w: np.ndarray, own: int, n: int
) -> np.ndarray:
    """The ``n`` rows of highest mean weight over their nearest centroids (float64,
    a stable argsort), ties to the nearest the own centroid, then the lowest row."""
    if n >= rows.size:
        return rows
    x, cc = pool[rows].astype(np.float64), c.astype(np.float64)
    d2 = ((x[:, None, :] - cc[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(d2, axis=1, kind="stable")[:, : rule.AFFINITY_NEIGHBOURS]
    affinity = w[nearest].mean(1)
    order = sorted(range(rows.size), key=lambda i: (-affinity[i], d2[i, own], rows[i]))
    return np.sort(rows[order[:n]])


def _reference_strata(pool: np.ndarray, rows: np.ndarray, q: int, seed: int) -> np.ndarray:
    if q >= rows.size:
        return rows
    k = math.ceil(q / rule.STRATUM_PICKS)
    xm = np.ascontiguousarray(pool[rows])
    cent = ecos_fast.kmeans(xm, k, seed=seed).centroids
    lab, d2 = reference.assign(xm, cent)
    sizes = np.bincount(lab, minlength=k)
    alloc = ecos_fast.allocate_quotas(sizes.astype(np.float64), sizes, q)
    picks = []  # (rank in its stratum, distance, position)
    for j in range(k):
        mine = np.flatnonzero(lab == j)
        mine = mine[np.lexsort((mine, d2[mine]))][: alloc[j]]
        picks += [(r, float(d2[i]), int(i)) for r, i in enumerate(mine)]
    return rows[np.array([i for *_, i in sorted(picks)], dtype=np.int64)]


def test_centroids(setup: tuple) -> None:
    pool, _, _, cents = setup
    assert cents.centroids.shape == (16, D) and cents.centroids.dtype == np.float32
    assert not cents.centroids.flags.writeable
    assert (cents.n_pool, cents.seed, cents.normalize, cents.schema_version) == (
        pool.shape[0], 0, None, ecos_fast.SCHEMA_VERSION,
    )  # fmt: skip
    assert cents.fingerprint == ecos_fast.protocol.centroid_fingerprint(cents.centroids)
    np.testing.assert_array_equal(cents.labels, reference.assign(pool, cents.centroids)[0])
    again = ecos_fast.fit_centroids(pool, n_clusters=16, seed=0)
    assert again.fingerprint == cents.fingerprint
    with pytest.raises(SketchMismatchError, match="does not match"):
        ecos_fast.Centroids(cents.centroids, fingerprint="0" * 64)
    with pytest.raises(InvalidInputError, match="labels has 3 entries but n_pool=10"):
        ecos_fast.Centroids(cents.centroids, n_pool=10, labels=np.zeros(3, dtype=np.int64))
    with pytest.raises(InvalidInputError, match=r"outside \[0, 16\)"):
        ecos_fast.Centroids(cents.centroids, labels=np.array([0, 16]))


def test_end_to_end_matches_reference(setup: tuple) -> None:
    pool, _, private, cents = setup
    resp = ecos_fast.respond(private, cents, 1.0, 1e-5, seed=0)
    sketch = ecos_fast.Sketch.join(cents, resp)
    sel = ecos_fast.select(pool, sketch, 120)
    idx = np.asarray(sel)
    assert idx.dtype == np.int64 and len(sel) == sel.n_selected == 120
    assert sel.budget == 120 and sel.shortfall == 0 and sel.method == "ecos"
    assert np.unique(idx).size == idx.size and idx.min() >= 0 and idx.max() < pool.shape[0]
    assert sel.quotas is not None and int(sel.quotas.sum()) == sel.n_selected
    assert list(sel) == idx.tolist()
    # Cluster order, then pick order.
    assert sel.labels is not None and (np.diff(sel.labels[idx]) >= 0).all()
    w = sketch.weights(DEFAULT_THRESHOLD, smooth=DEFAULT_SMOOTH)  # smoothing: test_smoothing.py
    want = reference_select(pool, cents, w, 120, DEFAULT_WITHIN, DEFAULT_CANDIDATES)
    np.testing.assert_array_equal(idx, want)  # the default routine
    cases: tuple[tuple[Within, float], ...] = (
        ("kcenter", 4.0), ("neighbourhood", 1.5), ("neighbourhood", 2.0), ("strata", 1.0),
        ("weighted-strata", 2.0), ("weighted-strata", 1.2),
    )  # fmt: skip
    for within, cand in cases:
        got = ecos_fast.select(pool, sketch, 120, within=within, candidates=cand)
        want = reference_select(pool, cents, w, 120, within, cand)
        np.testing.assert_array_equal(np.asarray(got), want)


def test_ecos_beats_random_on_the_clients_component(setup: tuple) -> None:
    pool, comp, private, cents = setup
    resp = ecos_fast.respond(private, cents, 0.58, 1e-5, seed=1)
    sel = ecos_fast.select(pool, (cents, resp), 100)
    ecos_share = np.mean(comp[np.asarray(sel)] == 3)
    rand_share = np.mean(comp[np.asarray(ecos_fast.select_random(pool, 100, seed=0))] == 3)
    kc_share = np.mean(comp[np.asarray(ecos_fast.select_kcenter(pool, 100))] == 3)
    assert ecos_share >= 0.8
    assert ecos_share > rand_share + 0.5 and ecos_share > kc_share + 0.5


def test_labels_threads_and_pair_forms_agree(setup: tuple) -> None:
    pool, _, private, cents = setup
    resp = ecos_fast.respond(private, cents, 2.0, 1e-5, seed=2)
    base = ecos_fast.select(pool, ecos_fast.Sketch.join(cents, resp), 90, n_threads=1)
    for sel in (
        ecos_fast.select(pool, (cents, resp), 90, n_threads=2),
        ecos_fast.select(pool, (resp, cents), 90),
        ecos_fast.select(pool, (cents, resp), 90, labels=cents.labels),
    ):
        np.testing.assert_array_equal(np.asarray(sel), np.asarray(base))
        np.testing.assert_array_equal(sel.quotas, base.quotas)


def test_threshold_drops_noise_clusters(setup: tuple) -> None:
    pool, comp, private, cents = setup
    resp = ecos_fast.respond(private, cents, 0.58, 1e-5, seed=3)
    sk = ecos_fast.Sketch.join(cents, resp)
    w0, w3 = sk.weights(0.0), sk.weights(3.0)
    assert (w3 <= w0).all() and np.count_nonzero(w3) <= np.count_nonzero(w0)
    np.testing.assert_allclose(w3, np.maximum(resp.noisy_counts - 3 * resp.sigma, 0))
    sel = ecos_fast.select(pool, sk, 50, threshold=3.0)
    assert sel.quotas is not None and ((sel.quotas > 0) <= (w3 > 0)).all()
    plain = ecos_fast.select(pool, sk, 50)
    assert np.mean(comp[np.asarray(sel)] == 3) >= np.mean(comp[np.asarray(plain)] == 3)


def test_l2_normalize_is_applied_on_both_sides(setup: tuple) -> None:
    pool, comp, private, _ = setup
    cents = ecos_fast.fit_centroids(pool, n_clusters=16, seed=0, normalize="l2")
    assert cents.normalize == "l2"
    unit = pool / np.linalg.norm(pool, axis=1, keepdims=True)
    np.testing.assert_array_equal(cents.labels, reference.assign(unit, cents.centroids)[0])
    resp = ecos_fast.respond(private, cents, math.inf, 1e-5)
    true = np.bincount(
        reference.assign(private / np.linalg.norm(private, axis=1, keepdims=True),
                         cents.centroids)[0], minlength=16,
    )  # fmt: skip
    np.testing.assert_array_equal(resp.noisy_counts, true)
    sel = ecos_fast.select(pool, (cents, resp), 60)
    assert np.mean(comp[np.asarray(sel)] == 3) >= 0.9
    with pytest.raises(InvalidInputError, match="normalize='l1'"):
        ecos_fast.fit_centroids(pool, 4, normalize="l1")  # type: ignore[arg-type]


def _sketch_with_counts(cents: ecos_fast.Centroids, counts: np.ndarray) -> ecos_fast.Sketch:
    resp = ecos_fast.Response(
        noisy_counts=counts, epsilon=math.inf, delta=1e-5, sigma=0.0, sensitivity=1.0,
        relation="add_remove", mechanism="none", centroids_fingerprint=cents.fingerprint,
    )  # fmt: skip
    return ecos_fast.Sketch.join(cents, resp)


def test_shortfall_warns_and_reports(setup: tuple) -> None:
    pool, _, _, cents = setup
    counts = np.zeros(16)
    counts[[2, 5]] = [10.0, 1.0]
    cap = np.bincount(cents.labels, minlength=16)
    have = int(cap[2] + cap[5])
    with pytest.warns(BudgetShortfallWarning, match=f"shortfall={500 - have}") as rec:
        sel = ecos_fast.select(pool, _sketch_with_counts(cents, counts), 500)
    # The warning points at the user's call, not into the package.
    assert [w.filename for w in rec] == [__file__]
    assert sel.n_selected == have and sel.shortfall == 500 - have
    assert sel.quotas is not None and sel.quotas.tolist() == [
        int(cap[k]) if k in (2, 5) else 0 for k in range(16)
    ]
    assert (
        sorted(np.asarray(sel).tolist()) == np.flatnonzero(np.isin(cents.labels, [2, 5])).tolist()
    )


def test_no_warning_when_budget_fits(setup: tuple) -> None:
    pool, _, private, cents = setup
    resp = ecos_fast.respond(private, cents, math.inf, 1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a BudgetShortfallWarning would fail here
        sel = ecos_fast.select(pool, (cents, resp), 10)
    assert sel.n_selected == 10 and sel.shortfall == 0


def test_no_coverage_raises_or_falls_back(setup: tuple) -> None:
    pool, _, _, cents = setup
    sk = _sketch_with_counts(cents, np.full(16, -3.0))
    with pytest.raises(NoCoverageError, match=r"largest noisy count is -3.*n_clusters=16"):
        ecos_fast.select(pool, sk, 20, low_signal="keep")
    # A positive count that the threshold removes.
    resp = ecos_fast.respond(pool[:1], cents, 1.0, 1e-5, seed=0)
    with pytest.raises(NoCoverageError, match="threshold"):
        ecos_fast.select(pool, (cents, resp), 20, threshold=1e6, low_signal="keep")
    rnd = ecos_fast.select(pool, sk, 20, fallback="random", seed=4, low_signal="keep")
    assert rnd.method == "ecos-fallback-random" and rnd.n_selected == 20
    np.testing.assert_array_equal(rnd.indices, ecos_fast.select_random(pool, 20, seed=4).indices)
    kc = ecos_fast.select(pool, sk, 20, fallback="kcenter", low_signal="keep")
    assert kc.method == "ecos-fallback-kcenter"
    np.testing.assert_array_equal(kc.indices, ecos_fast.select_kcenter(pool, 20).indices)
    for s in (rnd, kc):
        assert s.quotas is not None and int(s.quotas.sum()) == 20
        assert np.unique(s.indices).size == 20


def test_noise_only_weights_make_the_selection_randoms(setup: tuple) -> None:
    """With noise in the release, all-zero (or noise-sized) weights do not prove the
    client matches nothing: by default the selection is Random's draw for the seed.
    (Before: quotas by cluster size, then each cluster's central members: a biased
    draw that scored below Random for the hard preset's 50-sample clients.)"""
    pool, _, _, cents = setup
    resp = ecos_fast.respond(pool[:1], cents, 0.01, 1e-5, seed=0)  # sigma = 244
    sk = ecos_fast.Sketch.join(cents, resp)
    for seed in (0, 5):
        with pytest.warns(LowSignalWarning, match="sigma"):
            sel = ecos_fast.select(pool, sk, 200, seed=seed)
        assert sel.method == "ecos-low-signal-random" and sel.n_selected == 200
        np.testing.assert_array_equal(
            np.sort(sel.indices), np.sort(ecos_fast.select_random(pool, 200, seed=seed).indices)
        )
        assert sel.quotas is not None and int(sel.quotas.sum()) == 200


def test_sketch_mismatch(setup: tuple) -> None:
    pool, _, private, cents = setup
    other = ecos_fast.fit_centroids(pool, n_clusters=16, seed=1)
    resp = ecos_fast.respond(private, other, 1.0, 1e-5, seed=0)
    with pytest.raises(SketchMismatchError, match="answers centroids"):
        ecos_fast.Sketch.join(cents, resp)
    with pytest.raises(SketchMismatchError):
        ecos_fast.select(pool, (cents, resp), 10)
    small = ecos_fast.fit_centroids(pool, n_clusters=4, seed=0)
    resp4 = ecos_fast.respond(private, small, 1.0, 1e-5, seed=0)
    with pytest.raises(SketchMismatchError, match="4 counts but the centroids have n_clusters=16"):
        ecos_fast.Sketch.join(cents, resp4)
    with pytest.raises(InvalidTypeError, match="Sketch"):
        ecos_fast.select(pool, resp, 10)  # type: ignore[arg-type]


def test_select_rejects_bad_input(setup: tuple) -> None:
    pool, _, private, cents = setup
    resp = ecos_fast.respond(private, cents, 1.0, 1e-5, seed=0)
    sk = ecos_fast.Sketch.join(cents, resp)
    n = pool.shape[0]
    with pytest.raises(BudgetError, match="budget=0"):
        ecos_fast.select(pool, sk, 0)
    with pytest.raises(BudgetError, match=f"budget={n + 1} exceeds the pool size n_samples={n}"):
        ecos_fast.select(pool, sk, n + 1)
    with pytest.raises(InvalidTypeError, match="budget must be an int"):
        ecos_fast.select(pool, sk, 10.0)  # type: ignore[arg-type]
    bad = pool.copy()
    bad[7, 2] = np.inf
    with pytest.raises(InvalidInputError, match=r"non-finite.*row 7"):
        ecos_fast.select(bad, sk, 10)
    with pytest.raises(InvalidInputError, match=f"n_features={D + 1} but n_features={D}"):
        ecos_fast.select(np.ones((10, D + 1)), sk, 5)
    with pytest.raises(InvalidInputError, match="empty"):
        ecos_fast.select(np.ones((0, D)), sk, 1)
    with pytest.raises(InvalidInputError, match="ndim=3"):
        ecos_fast.select(pool[None], sk, 1)
    with pytest.raises(InvalidTypeError, match="dtype"):
        ecos_fast.select(pool.astype(str), sk, 1)
    with pytest.raises(InvalidInputError, match=r"threshold=-1\.0"):
        ecos_fast.select(pool, sk, 10, threshold=-1.0)
    with pytest.raises(InvalidInputError, match="fallback='maybe'"):
        ecos_fast.select(pool, sk, 10, fallback="maybe")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="labels has 5 entries"):
        ecos_fast.select(pool, sk, 10, labels=np.zeros(5, dtype=np.int64))
    with pytest.raises(InvalidInputError, match=r"outside \[0, 16\)"):
        ecos_fast.select(pool, sk, 10, labels=np.full(n, 16))
    with pytest.raises(InvalidInputError, match="n_clusters=0"):
        ecos_fast.fit_centroids(pool, n_clusters=0)
    with pytest.raises(InvalidInputError, match="empty"):
        ecos_fast.fit_centroids(np.ones((0, 3)), n_clusters=1)
    with pytest.raises(InvalidInputError, match="non-finite"):
        ecos_fast.fit_centroids(bad, n_clusters=4)


def test_selection_is_frozen(setup: tuple) -> None:
    sel = ecos_fast.Selection(np.array([3, 1]), 2)
    with pytest.raises(AttributeError):
        sel.budget = 5  # type: ignore[misc]
    assert not sel.indices.flags.writeable
    assert np.asarray(sel, dtype=np.int32).dtype == np.int32


def test_import_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, ecos_fast; "
        "print(sorted(m for m in ('dp_accounting', 'scipy', 'safetensors', 'jsonschema', 'torch')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
