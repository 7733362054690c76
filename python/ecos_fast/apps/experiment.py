"""The paper's experiment loop: client domain x seed x budget x method.

For every client domain and seed, :func:`ecos_fast.features.paper_split_features`
gives the private half of the client domain, the pool (the other half plus every
other domain) and the client's test split, as cached OCR-pretrained features. Then:

* **ECOS** goes through the real protocol: :func:`ecos_fast.fit_centroids` on the pool
  (R centroids), :func:`ecos_fast.respond` on the private features (Gaussian noise at
  ``epsilon``, ``delta``), :func:`ecos_fast.select` on the joined sketch;
* **Random** is :func:`ecos_fast.select_random`, **K-Center** is
  :func:`ecos_fast.select_kcenter` (greedy farthest-first: the first ``b`` picks of a
  run with a larger budget are exactly the run with budget ``b``, so it runs once per
  split with the largest budget and is cut);
* **Local** trains on the client's own labeled private set (budget-independent).

Each selection then feeds one application (:mod:`.labeling`, :mod:`.compression`,
:mod:`.client_labeling`). The coverage noise and the private-kNN noise are seeded from
the run's seed so experiments can be repeated; outside experiments, leave them to OS
entropy. Tables, CSV files and figures of the records are written by :mod:`.results`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ecos_fast._validation import check_delta, check_epsilon, check_seed, check_torch_device
from ecos_fast.errors import InvalidInputError

__all__ = [
    "APPS",
    "METHODS",
    "METHOD_NAMES",
    "Communication",
    "ExperimentConfig",
    "RunRecord",
    "communication",
    "run_experiment",
    "selection_key",
]

APPS: tuple[str, ...] = ("labeling", "compression", "client-labeling")
METHODS: tuple[str, ...] = ("ecos", "kcenter", "random", "local")
METHOD_NAMES: dict[str, str] = {
    "ecos": "ECOS",
    "kcenter": "K-Center",
    "random": "Random",
    "local": "Local",
}
#: Bytes of one 32x32 RGB uint8 image (what uploading or downloading raw data costs).
IMAGE_BYTES = 32 * 32 * 3


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one reproduction run depends on.

    Attributes
    ----------
    app : {"labeling", "compression", "client-labeling"}
    domains : tuple of str
        Client domains to run (each in turn); default every client domain of the
        preset (:func:`ecos_fast.apps.data.client_domains`).
    budgets : tuple of int
    seeds : tuple of int
    methods : tuple of str
        Subset of :data:`METHODS`.
    epsilon : float
        Coverage-release epsilon of the main ECOS runs (paper: 0.58).
    sweep_epsilons : tuple of float
        Extra ECOS runs at these epsilons (the epsilon sweep); empty: none.
    delta : float
    n_clusters : int or None
        R, the number of centroids (paper's setting: ~100); None: for each release,
        :func:`ecos_fast.suggest_n_clusters` of the client's private size and its ε.
    threshold : float or None
        Cluster weights ``max(noisy_count - threshold * sigma, 0)``; ``None``: the
        selection rule's default (:data:`ecos_fast.rule.DEFAULT_THRESHOLD`).
    within : str or None
        Within-cluster routine of :func:`ecos_fast.select`; ``None``: the default.
    candidates : float or None
        Candidate factor of the ``"neighbourhood"`` routine; ``None``: the default.
    weights : str or None
        Cluster weight rule of :func:`ecos_fast.select`; ``None``: the default.
    smooth : str or None
        ``smooth`` of :func:`ecos_fast.select` (``"sure"``: the noisy counts smoothed
        over the centroids' neighbourhoods); ``None``: the default.
    neighbours : int or None
        The client counts each private sample at its ``neighbours`` nearest centroids
        (:func:`ecos_fast.respond`); 1: plain counts; None: for each release,
        :func:`ecos_fast.suggest_neighbours` of the client's private size, its ε and R.
    normalize : {None, "l2"}
        Feature transform of the centroid sketch.
    model : {"head", "linear", "cnn"}
        Classifier of labeling / client-labeling (``"cnn"`` trains on the images).
    semi_supervised : bool
        Labeling only: besides each supervised run, self-training with confident
        pseudo-labels on the unlabeled rest of the pool (``extra["semi_accuracy"]``),
        for every method (Local: its private set plus the same unlabeled pool rows).
    semi_unlabeled : int
        Unlabeled pool rows drawn (seeded) for self-training.
    semi_rounds : int
        Pseudo-labelling rounds.
    semi_threshold : float
        Softmax confidence a pseudo-label needs.
    knn_epsilon : float
        Client-labeling: epsilon of the kNN label queries together.
    queries : int or None
        Client-labeling: label queries sent (a seeded subsample of the selection);
        ``None``: :func:`ecos_fast.apps.client_labeling.default_queries`.
    preset : str
        Data preset (``"default"``, ``"small"``, ``"hard"`` where the data layer has
        it); ``sizes`` overrides per domain.
    sizes : dict or None
    data_seed : int
        Seed of the rendered data (the domains' images), not of the split.
    extractor : str or None
        Feature extractor; ``None``: the preset's default.
    private_fraction : float
        Share of the client domain's training rows that form its private set.
    private_size : int or None
        The client's private set size instead of ``private_fraction``.
    train_epochs : int or None
        Override the training epochs (tests).
    train_min_steps : int or None
        Override the minimum number of optimiser steps (tests).
    evaluate : {"test", "validation"}
        ``"validation"`` holds out ``validation_fraction`` of the private set as the
        evaluation split (the client keeps the rest); use it to choose R, the threshold
        and the normalisation without looking at the test split.
    validation_fraction : float
    n_threads : int or None
        torch threads (default 1: small heads train fastest single-threaded).
    device : str or None
    progress : bool or None
    """

    app: str = "labeling"
    domains: tuple[str, ...] = ()
    budgets: tuple[int, ...] = (1000, 3000)
    seeds: tuple[int, ...] = (1, 2, 3)
    methods: tuple[str, ...] = METHODS
    epsilon: float = 0.58
    sweep_epsilons: tuple[float, ...] = ()
    delta: float = 1e-5
    n_clusters: int | None = 100
    threshold: float | None = None
    within: str | None = None
    candidates: float | None = None
    weights: str | None = None
    smooth: str | None = None
    neighbours: int | None = 1
    normalize: str | None = None
    model: str = "head"
    semi_supervised: bool = False
    semi_unlabeled: int = 5000
    semi_rounds: int = 2
    semi_threshold: float = 0.95
    knn_epsilon: float = 5.0
    queries: int | None = None
    preset: str = "default"
    sizes: dict[str, tuple[int, int]] | None = None
    data_seed: int = 0
    extractor: str | None = None
    private_fraction: float = 0.5
    private_size: int | None = None
    train_epochs: int | None = None
    train_min_steps: int | None = None
    evaluate: str = "test"
    validation_fraction: float = 0.3
    n_threads: int | None = 1
    device: str | None = None
    progress: bool | None = None

    def __post_init__(self) -> None:
        if self.app not in APPS:
            raise InvalidInputError(f"app={self.app!r} is not one of {', '.join(APPS)}")
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise InvalidInputError(f"methods {bad} are not among {', '.join(METHODS)}")
        if not self.budgets or min(self.budgets) < 1:
            raise InvalidInputError(f"budgets={self.budgets} must be positive ints")
        if not self.seeds:
            raise InvalidInputError("seeds must not be empty")
        if self.evaluate not in ("test", "validation"):
            raise InvalidInputError(f"evaluate={self.evaluate!r} must be 'test' or 'validation'")
        if self.evaluate == "validation" and self.model == "cnn":
            raise InvalidInputError("evaluate='validation' works on features only, not model='cnn'")
        if not 0.0 < self.private_fraction < 1.0:
            raise InvalidInputError(f"private_fraction={self.private_fraction} must be in (0, 1)")
        if self.semi_unlabeled < 0 or self.semi_rounds < 1:
            raise InvalidInputError(
                f"semi_unlabeled={self.semi_unlabeled} must be >= 0 and "
                f"semi_rounds={self.semi_rounds} >= 1"
            )
        if self.private_size is not None and self.private_size < 1:
            raise InvalidInputError(f"private_size={self.private_size} must be >= 1")
        k = self.neighbours
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise InvalidInputError(f"neighbours={k!r} must be an int >= 1 (None: suggested)")
        if self.n_clusters is not None and self.n_clusters < 1:
            raise InvalidInputError(f"n_clusters={self.n_clusters} must be >= 1 (None: suggested)")
        # Everything a run would refuse later, refused here, before any data is rendered.
        for seed in self.seeds:
            check_seed(seed, "seeds")
        check_seed(self.data_seed, "data_seed")
        for eps in (self.epsilon, *self.sweep_epsilons, self.knn_epsilon):
            check_epsilon(eps)
        check_delta(self.delta)
        if self.queries is not None and self.queries < 1:
            raise InvalidInputError(f"queries={self.queries} must be >= 1 (None: the default)")
        from ecos_fast.rule import check_rule_options

        check_rule_options(**self.selection_options())
        if not self.methods:
            raise InvalidInputError(f"methods must not be empty (any of {', '.join(METHODS)})")
        if self.domains:
            from . import data

            valid = data.client_domains(self.preset)
            for d in self.domains:
                if d not in valid:
                    raise InvalidInputError(
                        f"domain {d!r} is not a client domain of the {self.preset} preset "
                        f"({', '.join(valid)})"
                    )
        for name, values in (("seeds", self.seeds), ("budgets", self.budgets),
                             ("domains", self.domains)):  # fmt: skip
            if len(set(values)) != len(values):
                # A paired run counted twice would inflate the wins and the test.
                raise InvalidInputError(f"{name}={values} holds duplicates")
        if self.extractor is not None:
            from ecos_fast.features import check_extractor

            check_extractor(self.extractor)
        if self.device is not None:
            check_torch_device(self.device)

    def clusters_for(self, n_private: int, epsilon: float) -> int:
        """R of the release at ``epsilon`` for a client of ``n_private`` samples:
        :attr:`n_clusters`, or when None :func:`ecos_fast.suggest_n_clusters` (at the
        rule's threshold, or :attr:`threshold`)."""
        if self.n_clusters is not None:
            return self.n_clusters
        from ecos_fast import suggest_n_clusters

        return suggest_n_clusters(
            n_private, epsilon, self.delta, threshold=self.selection_options()["threshold"]
        )

    def neighbours_for(self, n_private: int, epsilon: float, n_clusters: int) -> int:
        """The client's ``neighbours`` for the release at ``epsilon`` over ``n_clusters``
        centroids: :attr:`neighbours`, or when None :func:`ecos_fast.suggest_neighbours`
        (the experiment knows the client's size; a real client would pass a rough one)."""
        if self.neighbours is not None:
            return self.neighbours
        from ecos_fast import suggest_neighbours

        return suggest_neighbours(n_private, epsilon, self.delta, n_clusters)

    def selection_options(self) -> dict[str, Any]:
        """The options of :func:`ecos_fast.select`, the rule's defaults filled in."""
        from ecos_fast import rule

        return {
            "threshold": rule.DEFAULT_THRESHOLD if self.threshold is None else self.threshold,
            "weights": rule.DEFAULT_WEIGHTS if self.weights is None else self.weights,
            "within": rule.DEFAULT_WITHIN if self.within is None else self.within,
            "candidates": rule.DEFAULT_CANDIDATES if self.candidates is None else self.candidates,
            "smooth": rule.DEFAULT_SMOOTH if self.smooth is None else self.smooth,
        }


@dataclass(frozen=True)
class RunRecord:
    """One (domain, seed, budget, method[, epsilon]) run.

    ``epsilon`` is the coverage-release epsilon of an ECOS run (``inf``: no noise; 0
    for the baselines); ``total_epsilon`` is every release of the run composed
    (coverage plus kNN queries for client-labeling).
    """

    app: str
    domain: str
    seed: int
    budget: int
    method: str
    epsilon: float
    total_epsilon: float
    accuracy: float
    n_selected: int
    client_share: float
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Communication:
    """Bytes exchanged and client compute for one client domain."""

    domain: str
    n_private: int
    n_pool: int
    n_clusters: int
    n_features: int

    @property
    def ecos_bytes(self) -> int:
        """Centroids down (float32) plus noisy counts up (float64)."""
        return 4 * self.n_clusters * self.n_features + 8 * self.n_clusters

    @property
    def upload_bytes(self) -> int:
        """Uploading the private images (32x32x3 uint8)."""
        return IMAGE_BYTES * self.n_private

    @property
    def download_bytes(self) -> int:
        """Downloading the pool's images."""
        return IMAGE_BYTES * self.n_pool

    @property
    def client_madds(self) -> int:
        """ECOS client compute, ``|D_p| * R * d`` multiply-adds."""
        return self.n_private * self.n_clusters * self.n_features


def communication(
    domain: str, n_private: int, n_pool: int, n_clusters: int, n_features: int
) -> Communication:
    """Build a :class:`Communication` (see its properties)."""
    return Communication(domain, n_private, n_pool, n_clusters, n_features)


# ---------------------------------------------------------------- the loop


def _train_config(cfg: ExperimentConfig) -> Any:
    from .training import TrainConfig

    tc = TrainConfig(n_threads=cfg.n_threads, device=cfg.device, progress=False)
    if cfg.train_epochs is not None:
        tc = tc.with_(epochs=cfg.train_epochs)
    if cfg.train_min_steps is not None:
        tc = tc.with_(min_steps=cfg.train_min_steps)
    return tc


def _stable_seed(*parts: object) -> int:
    """A seed from strings and ints, stable across runs (unlike ``hash``)."""
    import hashlib

    h = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:4], "little")


def run_experiment(
    cfg: ExperimentConfig,
    *,
    log: Callable[[str], None] | None = None,
) -> tuple[list[RunRecord], list[Communication]]:
    """Run every (domain, seed, budget, method) of ``cfg``.

    Returns
    -------
    records : list of RunRecord
    communication : list of Communication
        One per client domain (its first seed).
    """
    from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]

    import ecos_fast

    from . import data
    from .training import progress_enabled

    domains = cfg.domains or data.client_domains(cfg.preset)
    options = cfg.selection_options()
    tc = _train_config(cfg)
    records: list[RunRecord] = []
    comms: list[Communication] = []
    eps_list = [cfg.epsilon, *[e for e in cfg.sweep_epsilons if e != cfg.epsilon]]
    n_ecos = len(eps_list) if "ecos" in cfg.methods else 0
    n_base = len([m for m in cfg.methods if m != "ecos"])
    total = len(domains) * len(cfg.seeds) * len(cfg.budgets) * (n_ecos + n_base)
    bar = tqdm(total=total, desc=cfg.app, disable=not progress_enabled(cfg.progress))
    say = log or (lambda _msg: None)
    for domain in domains:
        for seed in cfg.seeds:
            t0 = time.perf_counter()
            # The same rows for the features and (model="cnn") the images.
            same_rows: dict[str, Any] = {
                "data_seed": cfg.data_seed,
                "private_fraction": cfg.private_fraction,
                "private_size": cfg.private_size,
                "sizes": cfg.sizes,
            }
            split = data.split_features(
                domain, cfg.preset, seed, extractor=cfg.extractor, **same_rows
            )
            if cfg.evaluate == "validation":
                split = _validation_split(split, cfg.validation_fraction, seed)
            images = None
            if cfg.model == "cnn":
                images = data.split_images(domain, cfg.preset, seed, **same_rows)
            pool = split.pool_features
            client_id = split.domains.index(domain)
            n_private = len(split.private_labels)
            r_of = {e: min(cfg.clusters_for(n_private, e), len(pool)) for e in eps_list}
            if seed == cfg.seeds[0]:
                comms.append(
                    communication(
                        domain, n_private, len(split.pool_labels), r_of[cfg.epsilon], pool.shape[1]
                    )
                )
            say(
                f"{domain} seed={seed}: private={len(split.private_labels)} "
                f"pool={len(split.pool_labels)} test={len(split.test_labels)} "
                f"(loaded in {time.perf_counter() - t0:.1f} s)"
            )
            budgets = [min(b, len(pool)) for b in cfg.budgets]
            ctx = _RunContext(cfg, tc, split, images, client_id, seed)

            if "ecos" in cfg.methods:
                fitted: dict[int, tuple[Any, float]] = {}
                for eps in eps_list:
                    r = r_of[eps]
                    if r not in fitted:  # one sketch per R, shared by the releases using it
                        t1 = time.perf_counter()
                        c = _cached_centroids(pool, split, cfg, seed, r)
                        fitted[r] = (c, time.perf_counter() - t1)
                    cents, fit_s = fitted[r]
                    fit_s /= sum(1 for e in eps_list if r_of[e] == r)
                    t1 = time.perf_counter()
                    led = ctx.new_ledger()
                    resp = ctx.respond(cents, eps, led)
                    for budget in budgets:
                        sel = ecos_fast.select(
                            pool,
                            ecos_fast.Sketch.join(cents, resp),
                            budget,
                            **options,
                            labels=cents.labels,
                            fallback="random",
                            seed=seed,
                        )
                        idx = np.asarray(sel.indices, dtype=np.int64)
                        sel_s = time.perf_counter() - t1 + fit_s
                        records.append(ctx.run("ecos", budget, idx, eps, sel_s, response=resp))
                        bar.update(1)
                        t1 = time.perf_counter()
                    led.close()
            if "random" in cfg.methods:
                for budget in budgets:
                    t1 = time.perf_counter()
                    sel = ecos_fast.select_random(
                        len(pool), budget, seed=_stable_seed(seed, budget)
                    )
                    idx = np.asarray(sel.indices, dtype=np.int64)
                    records.append(ctx.run("random", budget, idx, 0.0, time.perf_counter() - t1))
                    bar.update(1)
            if "kcenter" in cfg.methods:
                t1 = time.perf_counter()
                first = int(np.random.default_rng(seed).integers(len(pool)))
                order = _cached_kcenter(pool, split, cfg, seed, max(budgets), first)
                kc_s = time.perf_counter() - t1
                for budget in budgets:
                    records.append(ctx.run("kcenter", budget, order[:budget], 0.0, kc_s))
                    bar.update(1)
            if "local" in cfg.methods:
                local = ctx.run("local", 0, np.zeros(0, dtype=np.int64), 0.0, 0.0)
                for budget in budgets:
                    records.append(_with_budget(local, budget))
                    bar.update(1)
            done = [r for r in records if r.domain == domain and r.seed == seed]
            say(
                "  "
                + ", ".join(
                    f"{r.method}@{r.budget}"
                    + ("" if r.method != "ecos" else f"/eps={r.epsilon:g}")
                    + f"={100 * r.accuracy:.1f}"
                    for r in done
                )
            )
    bar.close()
    return records, comms


def selection_key(split: Any, cfg: ExperimentConfig, seed: int, what: str, **params: object) -> str:
    """Cache key of a selection artefact (pool centroids, a K-Center order).

    The hash covers everything that decides the pool's rows and their features: the
    package version, the preset, the domains, the size overrides and the split's
    actual sizes, the data seed, the split seed, the private fraction and size, the
    extractor with its model and feature-recipe versions, and the data fingerprint
    (:func:`ecos_fast.apps.data.data_fingerprint`: ``DATA_VERSION``, fonts,
    library versions); then the artefact's name and its own parameters ``params``
    (R and the normalisation for centroids, the first pick for K-Center). The
    artefacts are computed from the public pool alone, so the privacy and selection
    settings (epsilon, delta, threshold, within-cluster routine, candidates, weights)
    do not change them and are not part of their keys: the epsilon sweep and every
    application reuse one k-means fit. The pool does not depend on ``cfg.evaluate``
    either (validation only splits the private set).

    Returns
    -------
    str
        ``"{client}-s{seed}-{what}-{hash}"``, safe as a cache file name.

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> z = np.zeros((3, 2), np.float32)
    >>> split = SimpleNamespace(client_domain="mnist", domains=("mnist",), data_seed=0,
    ...     extractor="ppocr", private_labels=z[:1, 0], pool_labels=z[:, 0],
    ...     test_labels=z[:2, 0])
    >>> a = selection_key(split, ExperimentConfig(), 1, "kmeans", n_clusters=10)
    >>> a == selection_key(split, ExperimentConfig(data_seed=1), 1, "kmeans", n_clusters=10)
    False
    """
    import hashlib
    import json

    import ecos_fast

    from . import data

    payload = {
        "package": ecos_fast.__version__,
        "preset": cfg.preset,
        "client": split.client_domain,
        "domains": list(split.domains),
        "sizes": None if cfg.sizes is None else sorted(cfg.sizes.items()),
        "n": [len(split.private_labels), len(split.pool_labels), len(split.test_labels)],
        "data_seed": int(split.data_seed),
        "cfg_data_seed": cfg.data_seed,
        "seed": seed,
        "private_fraction": cfg.private_fraction,
        "private_size": cfg.private_size,
        "extractor": data.extractor_version(split.extractor),
        "data": data.data_fingerprint(cfg.preset, split.extractor, data_seed=split.data_seed),
        # The data layer's own fingerprint of the split where it has one.
        "split": split.fingerprint() if hasattr(split, "fingerprint") else None,
        "what": what,
        "params": sorted((k, repr(v)) for k, v in params.items()),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    return f"{split.client_domain}-s{seed}-{what}-{digest}"


def _cached_centroids(
    pool: NDArray[Any], split: Any, cfg: ExperimentConfig, seed: int, n_clusters: int
) -> Any:
    """:func:`ecos_fast.fit_centroids` on the pool, kept on disk beside the features.

    The pool of a (client domain, seed) is the same for every application, budget and
    epsilon, so its k-means sketch is fitted once and reused by the demo and every
    ``reproduce --app``; only public pool data is stored.
    """
    import ecos_fast
    from ecos_fast.datasets import _cache

    key = selection_key(
        split,
        cfg,
        seed,
        f"kmeans-R{n_clusters}",
        n_clusters=n_clusters,
        normalize=cfg.normalize,
    )
    c = _cache.load_array("selection", key, dtype=np.float32, shape=(n_clusters, None))
    lab = _cache.load_array("selection", key + ".labels", dtype=np.int64, shape=(len(pool),))
    if c is not None and lab is not None:
        return ecos_fast.Centroids(
            c, n_pool=len(pool), seed=seed, normalize=cfg.normalize, labels=lab
        )
    cents = ecos_fast.fit_centroids(
        pool,
        n_clusters,
        seed=seed,
        normalize=cfg.normalize,  # type: ignore[arg-type]
    )
    _cache.save_array("selection", key, np.asarray(cents.centroids))
    _cache.save_array("selection", key + ".labels", np.asarray(cents.labels))
    return cents


def _cached_kcenter(
    pool: NDArray[Any], split: Any, cfg: ExperimentConfig, seed: int, budget: int, first: int
) -> NDArray[np.int64]:
    """Global greedy K-Center order (first ``budget`` picks), kept on disk."""
    import ecos_fast
    from ecos_fast.datasets import _cache

    key = selection_key(split, cfg, seed, "kcenter", first=first)
    order = _cache.load_array("selection", key, dtype=np.int64, shape=(None,))
    if order is not None and len(order) >= budget:
        return order[:budget]
    order = np.asarray(ecos_fast.select_kcenter(pool, budget, first=first).indices, np.int64)
    _cache.save_array("selection", key, order)
    return order


def _validation_split(split: Any, fraction: float, seed: int) -> Any:
    """Hold out ``fraction`` of the private set as the evaluation split (test unused)."""
    from dataclasses import replace

    n = len(split.private_labels)
    order = np.random.default_rng(_stable_seed("validation", seed)).permutation(n)
    n_val = max(1, round(fraction * n))
    val, keep = np.sort(order[:n_val]), np.sort(order[n_val:])
    return replace(
        split,
        private_features=split.private_features[keep],
        private_labels=split.private_labels[keep],
        test_features=split.private_features[val],
        test_labels=split.private_labels[val],
    )


def _with_budget(rec: RunRecord, budget: int) -> RunRecord:
    d = asdict(rec)
    d["budget"] = budget
    return RunRecord(**d)


class _RunContext:
    """Shared state of one (domain, seed): data, teacher, and the application call."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        tc: Any,
        split: Any,
        images: Any,
        client_id: int,
        seed: int,
    ) -> None:
        self.cfg = cfg
        self.tc = tc
        self.split = split
        self.images = images
        self.client_id = client_id
        self.seed = seed
        self._teacher: Any = None
        from . import data

        # 11 classes when the pool holds junk: the oracle labels it 10, "not a digit".
        self.n_classes = data.n_classes(cfg.preset)
        self.junk_id = split.domains.index("junk") if "junk" in split.domains else None

    # -- privacy -------------------------------------------------------------
    def new_ledger(self) -> Any:
        from ecos_fast.ledger import Ledger

        return Ledger(":memory:", delta=self.cfg.delta)

    def respond(self, cents: Any, eps: float, ledger: Any) -> Any:
        """The client's coverage response, recorded in ``ledger`` (unless eps = inf)."""
        import ecos_fast

        noise_seed = _stable_seed("coverage", self.split.client_domain, self.seed, eps)
        k = self.cfg.neighbours_for(len(self.split.private_features), eps, cents.n_clusters)
        if math.isinf(eps):
            return ecos_fast.respond(
                self.split.private_features, cents, eps, self.cfg.delta, seed=noise_seed,
                neighbours=k,
            )  # fmt: skip
        from ecos_fast.ledger import respond_with_ledger

        return respond_with_ledger(
            self.split.private_features,
            cents,
            eps,
            self.cfg.delta,
            ledger,
            cloud="cloud",
            seed=noise_seed,
            neighbours=k,
        )

    # -- inputs ---------------------------------------------------------------
    def _pool_inputs(self, idx: NDArray[np.int64]) -> NDArray[Any]:
        if self.images is not None:
            return np.asarray(self.images.pool_images[idx])
        return np.asarray(self.split.pool_features[idx])

    def _private_inputs(self) -> NDArray[Any]:
        if self.images is not None:
            return np.asarray(self.images.private_images)
        return np.asarray(self.split.private_features)

    def _test_inputs(self) -> NDArray[Any]:
        if self.images is not None:
            return np.asarray(self.images.test_images)
        return np.asarray(self.split.test_features)

    def teacher(self) -> Any:
        if self._teacher is None:
            from .compression import TEACHER_CONFIG, train_teacher

            tc = TEACHER_CONFIG.with_(
                n_threads=self.cfg.n_threads, device=self.cfg.device, progress=self.cfg.progress
            )
            if self.cfg.train_epochs is not None:
                tc = tc.with_(epochs=self.cfg.train_epochs, min_steps=self.tc.min_steps)
            self._teacher = train_teacher(
                self.split.pool_features,
                self.split.pool_labels,
                n_classes=self.n_classes,
                config=tc,
                seed=self.seed,
            )
        return self._teacher

    def _semi(
        self,
        train_x: NDArray[Any],
        train_y: NDArray[Any],
        idx: NDArray[np.int64],
        train_seed: int,
    ) -> float:
        """Test accuracy of self-training on the labelled set plus the unlabelled pool.

        The unlabelled rows are the pool rows outside the selection ``idx`` (their
        labels are never read), subsampled to ``cfg.semi_unlabeled`` with a seeded
        draw; ``cfg.semi_rounds`` rounds of confidence-thresholded pseudo-labelling
        (:func:`ecos_fast.apps.training.train_semi_supervised`).
        """
        from .labeling import run_labeling

        cfg, split = self.cfg, self.split
        rest = np.setdiff1d(np.arange(len(split.pool_labels), dtype=np.int64), idx)
        rng = np.random.default_rng(_stable_seed("semi", split.client_domain, self.seed))
        n_unl = min(cfg.semi_unlabeled, rest.size)
        unl = np.sort(rng.choice(rest, n_unl, replace=False)) if n_unl else rest[:0]
        res = run_labeling(
            train_x,
            train_y,
            self._test_inputs(),
            split.test_labels,
            model=cfg.model,
            n_classes=self.n_classes,
            config=self.tc,
            seed=train_seed,
            unlabeled_x=self._pool_inputs(unl),
            pseudo_threshold=cfg.semi_threshold,
            rounds=cfg.semi_rounds,
        )
        return res.accuracy

    # -- one run ----------------------------------------------------------------
    def run(
        self,
        method: str,
        budget: int,
        idx: NDArray[np.int64],
        eps: float,
        select_s: float,
        *,
        response: Any = None,
    ) -> RunRecord:
        from .client_labeling import label_selection
        from .compression import run_compression
        from .labeling import AppResult, run_labeling

        cfg, split = self.cfg, self.split
        t0 = time.perf_counter()
        local = method == "local"
        train_seed = _stable_seed("train", split.client_domain, self.seed, budget)
        total_eps = 0.0 if method != "ecos" else eps
        if local:
            # The client trains on its own labeled data: nothing leaves it.
            if cfg.app == "compression":
                from .training import train_classifier

                stu = train_classifier(
                    split.private_features,
                    split.private_labels,
                    model="linear",
                    n_classes=self.n_classes,
                    config=self.tc,
                    seed=train_seed,
                )
                res = AppResult(
                    stu.accuracy(split.test_features, split.test_labels),
                    len(split.private_labels),
                    extra={"student_bytes": float(stu.size_bytes)},
                )
            else:
                res = run_labeling(
                    self._private_inputs(),
                    split.private_labels,
                    self._test_inputs(),
                    split.test_labels,
                    model=cfg.model,
                    n_classes=self.n_classes,
                    config=self.tc,
                    seed=train_seed,
                )
                if cfg.semi_supervised and cfg.app == "labeling":
                    res.extra["semi_accuracy"] = self._semi(
                        self._private_inputs(), split.private_labels, idx, train_seed
                    )
        elif cfg.app == "labeling":
            res = run_labeling(
                self._pool_inputs(idx),
                split.pool_labels[idx],  # the oracle
                self._test_inputs(),
                split.test_labels,
                model=cfg.model,
                n_classes=self.n_classes,
                config=self.tc,
                seed=train_seed,
            )
            if cfg.semi_supervised:
                res.extra["semi_accuracy"] = self._semi(
                    self._pool_inputs(idx), split.pool_labels[idx], idx, train_seed
                )
        elif cfg.app == "compression":
            res = run_compression(
                self.teacher(),
                split.pool_features[idx],
                split.test_features,
                split.test_labels,
                config=self.tc,
                seed=train_seed,
            )
        else:  # client-labeling
            from ecos_fast.ledger import Ledger, Release

            # Each budget is a separate experiment: a fresh ledger holding this run's
            # coverage release (shared by the budgets of one epsilon) and its kNN queries.
            led = Ledger(":memory:", delta=cfg.delta)
            if response is not None and response.sigma > 0:
                led.spend(
                    Release(
                        "cloud",
                        "gaussian",
                        sigma=response.sigma,
                        sensitivity=response.sensitivity,
                        purpose="coverage",
                    )
                )
            out = label_selection(
                split.private_features,
                split.private_labels,
                split.pool_features,
                idx,
                queries=cfg.queries,
                epsilon=cfg.knn_epsilon,
                delta=cfg.delta,
                n_classes=self.n_classes,
                ledger=led,
                cloud="cloud",
                seed=_stable_seed("knn", split.client_domain, self.seed, budget, eps),
                true_labels=split.pool_labels,
            )
            kl = out.knn
            total_eps = kl.epsilon if not math.isinf(eps) else math.inf
            led.close()
            res = run_labeling(
                self._pool_inputs(out.queried),
                out.labels,
                self._test_inputs(),
                split.test_labels,
                model=cfg.model,
                n_classes=self.n_classes,
                config=self.tc,
                seed=train_seed,
            )
            res.extra.update(
                {
                    "label_accuracy": kl.label_accuracy or 0.0,
                    "knn_sigma": kl.sigma,
                    "k": kl.k,
                    "queries": float(out.n_queries),
                }
            )
        share = (
            float((split.pool_domains[idx] == self.client_id).mean()) if idx.size else float("nan")
        )
        if self.junk_id is not None and idx.size:
            res.extra["junk_share"] = float((split.pool_domains[idx] == self.junk_id).mean())
        if cfg.private_size is not None:
            res.extra["private_size"] = float(len(split.private_labels))
        if response is not None and cfg.neighbours != 1:
            res.extra["neighbours"] = float(response.neighbours)
        return RunRecord(
            app=cfg.app,
            domain=split.client_domain,
            seed=self.seed,
            budget=budget,
            method=method,
            epsilon=eps if method == "ecos" else 0.0,
            total_epsilon=total_eps,
            accuracy=res.accuracy,
            n_selected=int(idx.size) if not local else len(split.private_labels),
            client_share=share,
            seconds=select_s + time.perf_counter() - t0,
            extra=dict(res.extra),
        )
