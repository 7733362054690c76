"""Choose the selection rule's defaults on validation data, never on a test split.

Two studies, each over every client domain of a preset, a few seeds and epsilon in
{0.1, 0.58, 8}:

* **threshold study**: ``threshold`` (in noise standard deviations) with the default
  within-cluster routine;
* **candidate study**: the within-cluster routine (``"kcenter"`` over the whole
  cluster, ``"nearest"``, ``"neighbourhood"`` with several candidate factors,
  ``"strata"``) at the default threshold;
* ``--study grid``: threshold x routine crossed;
* ``--study weights``: the weights' estimator (``"noisy"``, ``"posterior"``,
  ``"empirical-bayes"``) x threshold x ``low_signal``, the default routine;
* ``--study neighbours``: the client's release, counting each sample at its k nearest
  centroids (``respond(neighbours=k)``, k in 1, 2, 3, 4, 6, and
  :func:`ecos_fast.suggest_neighbours`), with the rule's defaults; every k sees the
  same noise draw;
* ``--study affinity``: ``within="weighted-strata"`` (candidate factor x the centroids
  a member's affinity reads) beside ``"strata"``, on plain and suggested-k releases,
  the counts smoothed;
* ``--study sketch``: the sketch itself, the number of centroids R x ``normalize``
  (``None`` or ``"l2"``), each fitted afresh, with the rule's defaults; and R from
  :func:`ecos_fast.suggest_n_clusters` for the client's size and each epsilon.

Validation: the client's private set is split once per (client, seed): 70 % is the
private data the client answers with, 30 % is held out and labelled. The score of a
selection is the accuracy, on that held-out 30 %, of a classifier trained on the
oracle-labelled selection (``--scorer knn``: 1-nearest-neighbour, fast; ``--scorer head``:
the application's head), plus the share of the selection drawn from the client's domain. The client domain's test split is never read.

Run (writes ``docs/results/study-<preset>.{csv,md}``)::

    ECOS_FAST_CACHE=.cache/ecos-fast .venv/bin/python scripts/study_selection.py \\
        --preset default --seeds 1 2 --budget 1000
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import ecos_fast
import numpy as np
from ecos_fast.apps.data import client_domains, n_classes, split_features
from ecos_fast.apps.labeling import run_labeling
from ecos_fast.apps.stats import wilcoxon_p
from ecos_fast.errors import BudgetShortfallWarning, LowSignalWarning, NoCoverageError

EPSILONS = (0.1, 0.58, 8.0)
THRESHOLDS = (0.0, 1.0, 2.0, 2.5, 3.0)
ROUTINES: tuple[tuple[str, float], ...] = (
    ("kcenter", 1.0),
    ("nearest", 1.0),
    ("neighbourhood", 1.5),
    ("neighbourhood", 2.0),
    ("neighbourhood", 3.0),
    ("neighbourhood", 4.0),
    ("strata", 1.0),
)
# The joint study: threshold x within-cluster routine (the two studies above vary one
# at a time around the defaults; this crosses them).
GRID_THRESHOLDS = (0.0, 1.0, 2.0)
GRID_ROUTINES: tuple[tuple[str, float], ...] = (
    ("kcenter", 1.0),
    ("neighbourhood", 2.0),
    ("neighbourhood", 4.0),
    ("strata", 1.0),
)
# The sketch study: R x normalize (the default sketch is R=100, normalize=None).
SKETCH_CLUSTERS = (50, 100, 200)
SKETCH_NORMALIZE: tuple[str | None, ...] = (None, "l2")
# The weights study: (weights, threshold, low_signal); the first is the default.
WEIGHT_CONFIGS: tuple[tuple[str, float, str], ...] = (
    ("noisy", 2.0, "spread"),
    ("posterior", 2.0, "spread"),
    ("empirical-bayes", 0.0, "spread"),
    ("empirical-bayes", 0.0, "keep"),
    ("empirical-bayes", 0.5, "spread"),
    ("empirical-bayes", 1.0, "spread"),
)
HOLDOUT = 0.3


def _score(
    split: Any,
    rows: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    seed: int,
    k: int,
    scorer: str,
) -> tuple[float, float]:
    x, y = split.pool_features[rows], split.pool_labels[rows]
    if scorer == "head":
        acc = run_labeling(x, y, val_x, val_y, n_classes=k, seed=seed).accuracy
    else:  # 1-NN: each held-out sample takes the label of its nearest selected row
        nearest, _ = ecos_fast.assign(val_x, x)
        acc = float(np.mean(y[nearest] == val_y))
    client = split.domains.index(split.client_domain)
    return acc, float(np.mean(split.pool_domains[rows] == client))


def _held_out(
    client: str, preset: str, seed: int, private_size: int | None = None
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """The (client, seed) split, the rows of its private set that answer, and the
    held-out 30 % (features, labels) that scores the selections."""
    split = split_features(client, preset, seed, private_size=private_size)
    perm = np.random.default_rng(seed).permutation(split.private_features.shape[0])
    n_val = int(HOLDOUT * perm.size)
    val, priv = perm[:n_val], perm[n_val:]
    return split, priv, split.private_features[val], split.private_labels[val]


def _cases(
    preset: str, seeds: Sequence[int], private_size: int | None = None
) -> Iterator[tuple[str, int, Any, np.ndarray, np.ndarray, np.ndarray]]:
    """Every (client, seed) of the preset with :func:`_held_out`'s split; prints the
    time each took once its scores are in."""
    for client in client_domains(preset):
        for seed in seeds:
            t0 = time.perf_counter()
            yield (client, seed, *_held_out(client, preset, seed, private_size))
            print(f"{client} seed {seed}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)


def _configs(study: str) -> list[tuple[str, float, str, float, str, str]]:
    """(study, threshold, within, candidates, low_signal, weights) to run."""
    from ecos_fast.rule import DEFAULT_CANDIDATES, DEFAULT_THRESHOLD, DEFAULT_WITHIN

    # The rule before this study: threshold 0, K-Center over the whole cluster.
    previous = [("previous", 0.0, "kcenter", 1.0, "keep", "noisy")]
    if study == "grid":
        return [
            ("grid", t, w, c, "spread", "noisy") for t in GRID_THRESHOLDS for w, c in GRID_ROUTINES
        ] + previous
    if study == "weights":
        return [
            ("weights", t, DEFAULT_WITHIN, DEFAULT_CANDIDATES, low, w)
            for w, t, low in WEIGHT_CONFIGS
        ]
    return (
        [
            ("threshold", t, DEFAULT_WITHIN, DEFAULT_CANDIDATES, "spread", "noisy")
            for t in THRESHOLDS
        ]
        # weights="posterior" at thresholds 0 and the default (the label says so).
        + [
            ("posterior", t, DEFAULT_WITHIN, DEFAULT_CANDIDATES, "spread", "posterior")
            for t in (0.0, 2.0)
        ]
        + [("routine", DEFAULT_THRESHOLD, w, c, "spread", "noisy") for w, c in ROUTINES]
        + previous
    )


def _select_quietly(pool: np.ndarray, sketch: Any, budget: int, **opts: Any) -> Any:
    """``ecos_fast.select`` without its shortfall and low-signal warnings (a study scores
    what it gets); None when the release covers no cluster."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetShortfallWarning)
        warnings.simplefilter("ignore", LowSignalWarning)
        try:
            return ecos_fast.select(pool, sketch, budget, **opts)
        except NoCoverageError:
            return None


def run(
    preset: str,
    seeds: Sequence[int],
    budget: int,
    n_clusters: int,
    scorer: str = "knn",
    study: str = "main",
    private_size: int | None = None,
) -> list[dict[str, Any]]:
    """Every (client, seed, epsilon, configuration) score as one row."""
    if study == "sketch":
        return run_sketch(preset, seeds, budget, scorer)
    if study in ("neighbours", "smooth", "affinity"):
        return run_neighbours(preset, seeds, budget, n_clusters, scorer, private_size, study)
    k = n_classes(preset)
    configs = _configs(study)
    out: list[dict[str, Any]] = []
    for client, seed, split, priv, val_x, val_y in _cases(preset, seeds, private_size):
        cents = ecos_fast.fit_centroids(split.pool_features, n_clusters=n_clusters, seed=seed)
        for eps in EPSILONS:
            resp = ecos_fast.respond(
                split.private_features[priv], cents, eps, 1e-5, seed=seed * 7919 + 17
            )
            sketch = ecos_fast.Sketch.join(cents, resp)
            for study, thr, within, cand, low, weights in configs:
                sel = _select_quietly(
                    split.pool_features, sketch, budget,
                    threshold=thr, within=within, candidates=cand,
                    low_signal=low, weights=weights,
                )  # fmt: skip
                if sel is None:
                    continue
                acc, share = _score(split, np.asarray(sel), val_x, val_y, seed, k, scorer)
                out.append(
                    {
                        "study": study, "client": client, "seed": seed, "epsilon": eps,
                        "threshold": thr, "within": within, "candidates": cand,
                        "weights": weights, "low_signal": low, "val_accuracy": acc, "client_share": share, "method": sel.method,
                    }
                )  # fmt: skip
    return out


NEIGHBOURS = (1, 2, 3, 4, 6)
#: The affinity study: (k of the release, within, candidates, AFFINITY_NEIGHBOURS), the
#: counts smoothed (the default); the first of each k is the one the others pair with.
AFFINITY_CONFIGS: tuple[tuple[int | str, str, float, int], ...] = tuple(
    (k, within, cand, aff)
    for k in (1, "suggested")
    for within, cand, aff in (
        ("strata", 1.0, 0), ("weighted-strata", 1.5, 3), ("weighted-strata", 2.0, 3),
        ("weighted-strata", 3.0, 3), ("weighted-strata", 2.0, 2), ("weighted-strata", 2.0, 4),
    )
)  # fmt: skip
#: The smooth study: (k, smooth) with k an int or "suggested".
SMOOTH_CONFIGS: tuple[tuple[int | str, str], ...] = (
    (1, "none"), (1, "sure"), ("suggested", "none"), ("suggested", "sure"),
)  # fmt: skip


def run_neighbours(
    preset: str,
    seeds: Sequence[int],
    budget: int,
    n_clusters: int,
    scorer: str = "knn",
    private_size: int | None = None,
    study: str = "neighbours",
) -> list[dict[str, Any]]:
    """The neighbours study: every (client, seed, epsilon, k) score as one row, the
    selection with the rule's defaults; k fixed, or suggested for the client's size.
    ``study="smooth"``: :data:`SMOOTH_CONFIGS`, ``select(smooth=...)`` beside k.
    ``study="affinity"``: :data:`AFFINITY_CONFIGS`, the within-cluster routine beside k."""
    from ecos_fast import rule

    k_cls = n_classes(preset)
    out: list[dict[str, Any]] = []
    for client, seed, split, priv, val_x, val_y in _cases(preset, seeds, private_size):
        cents = ecos_fast.fit_centroids(split.pool_features, n_clusters=n_clusters, seed=seed)
        for eps in EPSILONS:
            suggested = ecos_fast.suggest_neighbours(priv.size, eps, 1e-5, n_clusters)
            strata = ("strata", 1.0, 0)
            if study == "neighbours":
                configs = [(k, "fixed", "none", *strata) for k in NEIGHBOURS]
                configs.append((suggested, "suggested", "none", *strata))
            elif study == "smooth":
                configs = [
                    (suggested if k == "suggested" else int(k), "suggested" if k == "suggested"
                     else "fixed", smooth, *strata)
                    for k, smooth in SMOOTH_CONFIGS
                ]  # fmt: skip
            else:
                configs = [
                    (suggested if k == "suggested" else int(k), "suggested" if k == "suggested"
                     else "fixed", "sure", within, cand, aff)
                    for k, within, cand, aff in AFFINITY_CONFIGS
                ]  # fmt: skip
            for k, how, smooth, within, cand, aff in configs:
                resp = ecos_fast.respond(
                    split.private_features[priv], cents, eps, 1e-5, seed=seed * 7919 + 17,
                    neighbours=k,
                )  # fmt: skip
                saved = rule.AFFINITY_NEIGHBOURS
                rule.AFFINITY_NEIGHBOURS = aff or saved
                try:
                    sel = _select_quietly(
                        split.pool_features, ecos_fast.Sketch.join(cents, resp), budget,
                        smooth=smooth, within=within, candidates=cand,
                    )  # fmt: skip
                finally:
                    rule.AFFINITY_NEIGHBOURS = saved
                if sel is None:
                    continue
                acc, share = _score(split, np.asarray(sel), val_x, val_y, seed, k_cls, scorer)
                out.append(
                    {
                        "study": study, "client": client, "seed": seed, "epsilon": eps,
                        "neighbours": k, "k_rule": how, "n_private": int(priv.size),
                        "smooth": smooth, "within": within, "candidates": cand,
                        "affinity_neighbours": aff,
                        "val_accuracy": acc, "client_share": share, "method": sel.method,
                    }
                )  # fmt: skip
    return out


def run_sketch(
    preset: str, seeds: Sequence[int], budget: int, scorer: str = "knn"
) -> list[dict[str, Any]]:
    """The sketch study: every (client, seed, epsilon, R, normalize) score as one row,
    the selection with the rule's defaults; the same held-out split as :func:`run`, and
    the score in the features' own space whatever the sketch's transform."""
    k = n_classes(preset)
    out: list[dict[str, Any]] = []
    for client, seed, split, priv, val_x, val_y in _cases(preset, seeds):
        fixed = [(r, norm, "fixed") for r in SKETCH_CLUSTERS for norm in SKETCH_NORMALIZE]
        for r, norm, how in [*fixed, (0, None, "suggested")]:
            cents = None
            if how == "fixed":
                cents = ecos_fast.fit_centroids(
                    split.pool_features, n_clusters=r, seed=seed, normalize=norm
                )
            for eps in EPSILONS:
                if how == "suggested":  # R depends on epsilon: one sketch per epsilon
                    r = ecos_fast.suggest_n_clusters(priv.size, eps, 1e-5)
                    cents = ecos_fast.fit_centroids(split.pool_features, n_clusters=r, seed=seed)
                assert cents is not None
                resp = ecos_fast.respond(
                    split.private_features[priv], cents, eps, 1e-5, seed=seed * 7919 + 17
                )
                sel = _select_quietly(
                    split.pool_features, ecos_fast.Sketch.join(cents, resp), budget
                )
                if sel is None:
                    continue
                acc, share = _score(split, np.asarray(sel), val_x, val_y, seed, k, scorer)
                out.append(
                    {
                        "study": "sketch", "client": client, "seed": seed,
                        "epsilon": eps, "n_clusters": r, "normalize": norm or "none",
                        "r_rule": how,
                        "val_accuracy": acc, "client_share": share, "method": sel.method,
                    }
                )  # fmt: skip
    return out


def _label(r: dict[str, Any]) -> str:
    if r["study"] == "affinity":
        k = "suggested" if r.get("k_rule") == "suggested" else r["neighbours"]
        if r["within"] == "strata":
            return f"neighbours={k}, strata"
        return (
            f"neighbours={k}, weighted-strata x{r['candidates']:g}, "
            f"{r['affinity_neighbours']} nearest"
        )
    if r["study"] == "smooth":
        k = "suggested" if r.get("k_rule") == "suggested" else r["neighbours"]
        return f"neighbours={k}, smooth={r['smooth']}"
    if r["study"] == "neighbours" and r.get("k_rule") == "suggested":
        return "neighbours = suggest_neighbours(n, eps, delta, R)"
    if r["study"] == "neighbours":
        return f"neighbours={r['neighbours']}"
    if r["study"] == "sketch" and r.get("r_rule") == "suggested":
        return "R = suggest_n_clusters(n, eps, delta), normalize=none"
    if r["study"] == "sketch":
        return f"R={r['n_clusters']}, normalize={r['normalize']}"
    if r["study"] == "previous":
        return "previous rule (threshold 0, kcenter)"
    if r["study"] == "posterior":
        return f"posterior, threshold={r['threshold']:g}"
    if r["study"] == "weights":
        return f"{r['weights']}, threshold={r['threshold']:g}, {r['low_signal']}"
    if r["study"] == "threshold":
        return f"threshold={r['threshold']:g}"
    if r["study"] == "grid":
        within = r["within"] if r["within"] != "neighbourhood" else f"nbhd x{r['candidates']:g}"
        return f"threshold={r['threshold']:g}, {within}"
    return r["within"] if r["within"] != "neighbourhood" else f"neighbourhood x{r['candidates']:g}"


def summarise(rows: list[dict[str, Any]]) -> str:
    """Markdown: per study and epsilon, mean validation accuracy and client share, and
    paired wins against the study's best configuration."""
    lines: list[str] = []
    present = {r["study"] for r in rows}
    studies = (
        "threshold", "routine", "grid", "weights", "sketch", "neighbours", "smooth", "affinity",
    )  # fmt: skip
    for study in [s for s in studies if s in present]:
        extra = ("previous", "posterior") if study == "threshold" else ("previous",)
        sub = [r for r in rows if r["study"] in (study, *extra)]
        labels = list(dict.fromkeys(_label(r) for r in sub))
        lines += [
            f"### {study} study (validation accuracy %, client-domain share %)",
            "",
            "| configuration | " + " | ".join(f"eps={e:g}" for e in EPSILONS) + " | mean |",
            "|---|" + "---:|" * (len(EPSILONS) + 1),
        ]
        for lab in labels:
            cells, accs = [], []
            for eps in EPSILONS:
                rs = [r for r in sub if _label(r) == lab and r["epsilon"] == eps]
                if not rs:
                    cells.append("—")
                    continue
                a = 100 * np.mean([r["val_accuracy"] for r in rs])
                s = 100 * np.mean([r["client_share"] for r in rs])
                accs.append(a)
                cells.append(f"{a:.1f} ({s:.0f})")
            lines.append(f"| {lab} | " + " | ".join(cells) + f" | {np.mean(accs):.2f} |")
        lines.append("")
    return "\n".join(lines)


def paired(rows: list[dict[str, Any]], studies: tuple[str, ...], a: str, b: str) -> str:
    """Wins of configuration ``a`` over ``b`` on the same (client, seed, epsilon), and a
    Wilcoxon signed-rank p-value."""
    by: dict[tuple[Any, ...], dict[str, float]] = defaultdict(dict)
    for r in rows:
        if r["study"] in studies:
            by[(r["client"], r["seed"], r["epsilon"])][_label(r)] = r["val_accuracy"]
    d = np.array([v[a] - v[b] for v in by.values() if a in v and b in v])
    if d.size == 0 or not np.any(d):
        return f"{a} vs {b}: no differing pairs"
    p, _ = wilcoxon_p(d)
    return (
        f"{a} vs {b}: wins {int((d > 0).sum())}/{d.size} (ties {int((d == 0).sum())}), "
        f"mean {100 * d.mean():+.2f} points, Wilcoxon p = {p:.3g}"
    )


def _typed(r: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(r)
    for key in ("seed", "n_clusters", "neighbours", "n_private", "affinity_neighbours"):
        if key in r:
            out[key] = int(r[key])
    for key in ("epsilon", "threshold", "candidates", "val_accuracy", "client_share"):
        if key in r:
            out[key] = float(r[key])
    return out


def _grid_block(rows: list[dict[str, Any]]) -> str:
    """Every grid configuration against the defaults, paired on (client, seed, epsilon)."""
    from ecos_fast.rule import DEFAULT_CANDIDATES, DEFAULT_THRESHOLD, DEFAULT_WITHIN

    default = _label(
        {"study": "grid", "threshold": DEFAULT_THRESHOLD, "within": DEFAULT_WITHIN,
         "candidates": DEFAULT_CANDIDATES}
    )  # fmt: skip
    lines = ["### Paired against the defaults (validation accuracy)", ""]
    labels = list(dict.fromkeys(_label(r) for r in rows if r["study"] in ("grid", "previous")))
    for lab in labels:
        if lab != default:
            lines.append(f"- {paired(rows, ('grid', 'previous'), default, lab)}")
    return "\n".join(lines) + "\n"


def _per_eps_block(rows: list[dict[str, Any]], study: str, against: str, base_of: Any) -> str:
    """Each configuration of ``study`` against its baseline ``base_of(label)``, paired on
    (client, seed, epsilon): per epsilon, then over all of them."""
    lines = [f"### Paired against {against} (validation accuracy)", ""]
    for lab in dict.fromkeys(_label(r) for r in rows):
        base = base_of(lab)
        if lab == base:
            continue
        for eps in EPSILONS:
            sub = [r for r in rows if r["epsilon"] == eps]
            lines.append(f"- eps={eps:g}: {paired(sub, (study,), lab, base)}")
        lines.append(f"- all eps: {paired(rows, (study,), lab, base)}")
    return "\n".join(lines) + "\n"


def _paired_block(rows: list[dict[str, Any]]) -> str:
    """Each configuration against the defaults, paired on (client, seed, epsilon)."""
    from ecos_fast.rule import DEFAULT_CANDIDATES, DEFAULT_THRESHOLD, DEFAULT_WITHIN

    if any(r["study"] == "grid" for r in rows):
        return _grid_block(rows)
    if any(r["study"] == "weights" for r in rows):
        w, t, low = WEIGHT_CONFIGS[0]
        default = _label({"study": "weights", "weights": w, "threshold": t, "low_signal": low})
        lines = ["### Paired against the current default weights (validation accuracy)", ""]
        for lab in dict.fromkeys(_label(r) for r in rows):
            if lab != default:
                lines.append(f"- {paired(rows, ('weights',), lab, default)}")
        return "\n".join(lines) + "\n"
    if any(r["study"] == "affinity" for r in rows):
        return _per_eps_block(
            rows, "affinity", "strata on the same release",
            lambda lab: lab.split(", ")[0] + ", strata",
        )  # fmt: skip
    if any(r["study"] in ("neighbours", "smooth") for r in rows):
        study = rows[0]["study"]
        default = _label({"study": study, "neighbours": 1, "smooth": "none"})
        return _per_eps_block(rows, study, "plain counts", lambda _: default)
    if any(r["study"] == "sketch" for r in rows):
        default = _label({"study": "sketch", "n_clusters": 100, "normalize": "none"})
        lines = ["### Paired against the default sketch (validation accuracy)", ""]
        for lab in dict.fromkeys(_label(r) for r in rows):
            if lab != default:
                lines.append(f"- {paired(rows, ('sketch',), default, lab)}")
        return "\n".join(lines) + "\n"
    lines = ["### Paired against the defaults (validation accuracy)", ""]
    default_t = f"threshold={DEFAULT_THRESHOLD:g}"
    default_w = (
        DEFAULT_WITHIN
        if DEFAULT_WITHIN != "neighbourhood"
        else f"neighbourhood x{DEFAULT_CANDIDATES:g}"
    )
    prev = "previous rule (threshold 0, kcenter)"
    for study, default in (("threshold", default_t), ("routine", default_w)):
        labels = list(dict.fromkeys(_label(r) for r in rows if r["study"] == study))
        for lab in labels:
            if lab != default:
                lines.append(f"- {paired(rows, (study,), default, lab)}")
    lines.append(f"- {paired(rows, ('routine', 'previous'), default_w, prev)}")
    for t in (0.0, 2.0):
        post = f"posterior, threshold={t:g}"
        lines.append(f"- {paired(rows, ('threshold', 'posterior'), default_t, post)}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument(
        "--scorer",
        choices=("knn", "head"),
        default="knn",
        help="knn: 1-nearest-neighbour accuracy of the labelled selection (fast); head: the "
        "application's trained head (slow)",
    )
    ap.add_argument(
        "--study",
        choices=("main", "grid", "weights", "sketch", "neighbours", "smooth", "affinity"),
        default="main",
        help="main: the threshold and routine studies around the defaults; grid: threshold "
        "x routine crossed (writes study-grid-<preset>.*); weights: the weights' estimator x "
        "threshold x low_signal (study-weights-<preset>.*); sketch: R x normalize "
        "(writes study-sketch-<preset>.*); neighbours: respond(neighbours=k) "
        "(study-neighbours-<preset>.*); smooth: select(smooth='sure') beside plain and "
        "suggested k (study-smooth-<preset>.*); affinity: within='weighted-strata' beside "
        "strata (study-affinity-<preset>.*)",
    )
    ap.add_argument(
        "--private-size",
        type=int,
        default=None,
        help="the client's private set size (before the 30 %% hold-out); default: the "
        "preset's (adds -n<N> to the file names; an R other than 100 adds -r<R>)",
    )
    ap.add_argument("--out", type=Path, default=Path("docs/results"))
    ap.add_argument(
        "--from-csv", action="store_true", help="re-summarise the CSV of an earlier run"
    )
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"study-{args.preset}" if args.study == "main" else f"study-{args.study}-{args.preset}"
    if args.private_size is not None:
        stem += f"-n{args.private_size}"
    if args.study != "sketch" and args.clusters != 100:
        stem += f"-r{args.clusters}"
    csv_path = args.out / f"{stem}.csv"
    if args.from_csv:
        with csv_path.open(newline="") as f:
            rows = [_typed(r) for r in csv.DictReader(f)]
    else:
        rows = run(
            args.preset, args.seeds, args.budget, args.clusters, args.scorer, args.study,
            args.private_size,
        )  # fmt: skip
        with csv_path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    md = summarise(rows) + "\n" + _paired_block(rows)
    (args.out / f"{stem}.md").write_text(
        f"# Selection study, preset {args.preset!r}, budget {args.budget}, "
        f"R={'50/100/200' if args.study == 'sketch' else args.clusters}, seeds {args.seeds}, "
        f"scorer {args.scorer}"
        + ("" if args.private_size is None else f", private size {args.private_size}")
        + f"\n\n{md}\n"
    )
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
