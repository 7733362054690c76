"""Application (c): automated client labeling by private kNN (PATE GNMax / Private-kNN).

The cloud sends the client the features of its selected, unlabeled samples. For each
query the client finds the ``k`` nearest labeled private samples (cosine similarity,
i.e. Euclidean distance after L2 normalisation), counts their labels into a vote
histogram, adds ``N(0, sigma^2)`` to every count and returns only the noisy argmax
(Papernot et al. 2018, GNMax; Zhu et al. 2020, Private-kNN). The cloud trains a
classifier on the pseudo-labels.

Privacy accounting
------------------
Under add/remove-one neighbouring, one private sample changes a query's top-``k`` set
by at most one member, so one vote moves from one class to another: the histogram's
L2 sensitivity is ``sqrt(2)``. That needs one fixed order of the private samples that
adding or removing a sample does not reshuffle; :func:`knn_votes` uses (similarity
descending, label ascending, row index ascending), with similarities computed exactly,
so the histogram depends on the set of (features, label) pairs and not on row order
(see "Tie rule" in :func:`knn_votes`). Each query is then a Gaussian mechanism with noise
multiplier ``sigma / sqrt(2)``; the noisy argmax is post-processing. All queries, and
the ECOS coverage release that preceded them, compose; they are recorded in a
:class:`ecos_fast.ledger.Ledger` and composed by dp-accounting's PLD accountant
(data-independent analysis: no smooth-sensitivity or subsampling amplification, so
the reported epsilon is an upper bound that a data-dependent PATE analysis would cut).
The ledger refuses (raises :class:`ecos_fast.errors.PrivacyBudgetExceededError`)
before any noise is drawn when the composed total would pass ``budget_epsilon``.

Query budget
------------
A fixed epsilon split over more queries means noisier labels (``sigma`` grows as
``sqrt(n_queries)``), so the number of queries is its own budget, separate from
the selection budget: :func:`label_selection` sends ``queries`` of the selected
samples (a seeded uniform subsample, so the labelled set keeps the selection's
make-up in expectation) and returns the rest of the selection as unlabeled.
Only the queries made are calibrated, recorded and composed; more selection at
a fixed ``queries`` changes neither the noise nor the epsilon.

``sigma`` is calibrated so that the ``n_queries`` label queries alone are
``(epsilon, delta)``-DP: the composition of ``T`` Gaussian mechanisms of multiplier
``z`` is exactly the Gaussian mechanism of multiplier ``z / sqrt(T)`` (Dong, Roth &
Su 2019), so dp-accounting's exact analytic-Gaussian calibration is applied to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ecos_fast.errors import InvalidInputError, NoNoiseReleaseError

__all__ = [
    "DEFAULT_QUERIES",
    "KNN_SENSITIVITY",
    "KnnLabels",
    "SelectionLabels",
    "calibrate_knn_sigma",
    "default_k",
    "default_queries",
    "gnmax",
    "knn_epsilon",
    "knn_votes",
    "label_selection",
    "private_knn_label",
]

#: L2 sensitivity of one query's vote histogram under add/remove-one.
KNN_SENSITIVITY = math.sqrt(2.0)

#: Default cap on the label queries of one selection (see :func:`default_queries`).
DEFAULT_QUERIES = 1000


def _unit(x: NDArray[Any]) -> NDArray[np.float32]:
    a = np.ascontiguousarray(x, dtype=np.float32)
    norm = np.linalg.norm(a, axis=1, keepdims=True)
    out: NDArray[np.float32] = a / np.maximum(norm, np.float32(1e-12))
    return out


#: Fixed-point bits of the unit vectors whose dot products are the kNN similarities.
#: Coordinates of a unit vector lie in [-1, 1], so the integers are at most 2**24 in
#: magnitude, every product at most 2**48 and (Cauchy-Schwarz) every partial sum of
#: absolute products at most 2**48 + 2**24 * sqrt(n_features) + n_features / 4, below
#: 2**53 for any n_features < 2**56: float64 holds every intermediate exactly.
_SIM_BITS = 24


def _fixed_point(unit: NDArray[np.float32]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = np.rint(unit.astype(np.float64) * float(2**_SIM_BITS))
    return out


def default_k(n_private: int, n_classes: int, fraction: float = 1.0) -> int:
    """``k`` = ``fraction`` of the mean class size of the private set (at least 1).

    Our rule: with ``k`` equal to the mean class size, the neighbours of a query can
    all come from its own class, and the vote margin (which must beat the GNMax noise)
    grows with ``k``. The fraction 1.0 was chosen on the cloud's labeled pool samples of
    each client domain (label accuracy of the noisy votes at epsilon=5 for 3000
    queries, fractions 0.1-2.0; 1.0 was best or within 1 point), never on a test split.

    Examples
    --------
    >>> default_k(3500, 10), default_k(718, 10), default_k(5, 10)
    (350, 72, 1)
    """
    return max(1, round(fraction * n_private / n_classes))


def knn_votes(
    private_features: NDArray[Any],
    private_labels: NDArray[Any],
    query_features: NDArray[Any],
    *,
    k: int,
    n_classes: int = 10,
    chunk: int = 1024,
) -> NDArray[np.int64]:
    """Label histogram of the ``k`` most cosine-similar private samples of every query.

    Parameters
    ----------
    private_features : ndarray of shape (n_private, n_features)
    private_labels : ndarray of shape (n_private,), int in [0, n_classes)
    query_features : ndarray of shape (n_queries, n_features)
    k : int
        In [1, n_private].
    n_classes : int, default 10
    chunk : int, default 1024
        Queries per block (memory: ``chunk * n_private`` floats).

    Returns
    -------
    ndarray of shape (n_queries, n_classes), int64
        Rows sum to ``k``.

    Notes
    -----
    Tie rule: the ``k`` neighbours are the first ``k`` private samples in the order
    (similarity descending, label ascending, row index ascending), a stable sort on
    (-similarity, label). Among samples tied in similarity at the k-th place, the
    lowest labels are counted first; samples tied in both similarity and label are
    interchangeable in the histogram, so the lowest-index rule among them never shows
    and the histogram is the same for every row order of the same private set.

    The similarities are exact: the unit vectors are rounded to a fixed-point grid of
    ``2**-24`` (:data:`_SIM_BITS`) and multiplied in float64, where every product and
    partial sum is an integer below ``2**53``. A sample's similarity is thus a function
    of that sample and the query only, whatever the row order, BLAS blocking or thread
    count, and ties are exact ties.

    Why this keeps the L2 sensitivity ``sqrt(2)``: the order is one total preorder on
    samples, fixed by their own (similarity, label), so adding a sample inserts it in
    the order without moving the others; the top ``k`` gain it and lose the sample that
    was k-th (one vote moves between two classes), removing one is the reverse, and
    replacing one swaps at most one member in and one out. Under a rule that depends on
    row positions or on the other rows (``argpartition``'s, before), one added row could
    change which of many tied samples are counted, and the histogram by more than one
    vote.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[1, 0], [1, 0.1], [0, 1]], dtype=np.float32)
    >>> knn_votes(p, np.array([0, 0, 1]), np.array([[1, 0.05]]), k=2, n_classes=2).tolist()
    [[2, 0]]

    Four copies of one row, two of each label, ``k = 3``: the tie is broken towards the
    lower label, in any row order.

    >>> same = np.ones((4, 2), dtype=np.float32)
    >>> knn_votes(same, np.array([1, 0, 1, 0]), same[:1], k=3, n_classes=2).tolist()
    [[2, 1]]
    """
    p = _unit(private_features)
    q = _unit(query_features)
    y = np.asarray(private_labels)
    if p.ndim != 2 or q.ndim != 2 or p.shape[1] != q.shape[1]:
        raise InvalidInputError(
            f"private_features {p.shape} and query_features {q.shape} must be 2-D "
            "with the same n_features"
        )
    if y.shape != (p.shape[0],):
        raise InvalidInputError(f"private_labels has shape {y.shape}, expected ({p.shape[0]},)")
    if not 1 <= k <= p.shape[0]:
        raise InvalidInputError(f"k={k} must lie in [1, n_private={p.shape[0]}]")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise InvalidInputError(
            f"private_labels must lie in [0, n_classes={n_classes}); got [{y.min()}, {y.max()}]"
        )
    pf, qf = _fixed_point(p), _fixed_point(q)
    members = [np.flatnonzero(y == c) for c in range(n_classes)]
    n = p.shape[0]
    votes = np.zeros((q.shape[0], n_classes), dtype=np.int64)
    for s in range(0, q.shape[0], chunk):
        sim = qf[s : s + chunk] @ pf.T  # exact integers (see _SIM_BITS)
        kth = np.partition(sim, n - k, axis=1)[:, n - k : n - k + 1]  # k-th largest
        above, tied = sim > kth, sim == kth
        # Every sample above the k-th similarity counts; the places left go to the
        # samples tied with it, lowest label first (the tie rule in the Notes).
        need = k - above.sum(axis=1)
        for c, cols in enumerate(members):
            take = np.minimum(tied[:, cols].sum(axis=1), need)
            votes[s : s + chunk, c] = above[:, cols].sum(axis=1) + take
            need -= take
    return votes


def gnmax(votes: NDArray[Any], sigma: float, rng: np.random.Generator) -> NDArray[np.int64]:
    """Noisy argmax: ``argmax(votes + N(0, sigma^2))`` row by row (ties: lowest class).

    Examples
    --------
    >>> import numpy as np
    >>> gnmax(np.array([[5, 0], [0, 5]]), 0.0, np.random.default_rng(0)).tolist()
    [0, 1]
    """
    v = np.asarray(votes, dtype=np.float64)
    if sigma > 0:
        v = v + rng.normal(0.0, sigma, size=v.shape)
    out: NDArray[np.int64] = v.argmax(axis=1).astype(np.int64)
    return out


def calibrate_knn_sigma(n_queries: int, epsilon: float, delta: float) -> float:
    """Noise scale making ``n_queries`` GNMax kNN answers jointly ``(epsilon, delta)``-DP.

    Examples
    --------
    >>> s1, s2 = calibrate_knn_sigma(1000, 5.0, 1e-5), calibrate_knn_sigma(3000, 5.0, 1e-5)
    >>> 30 < s1 < s2
    True
    """
    from ecos_fast.privacy import calibrate_gaussian_sigma

    if n_queries < 1:
        raise InvalidInputError(f"n_queries={n_queries} must be >= 1")
    if math.isinf(epsilon):
        return 0.0
    # T compositions of multiplier z == one Gaussian of multiplier z / sqrt(T).
    single = calibrate_gaussian_sigma(epsilon, delta, 1.0)
    return single * math.sqrt(n_queries) * KNN_SENSITIVITY


def knn_epsilon(
    n_queries: int,
    sigma: float,
    delta: float = 1e-5,
    *,
    prior: Any = (),
    accountant: str = "pld",
) -> float:
    """Composed epsilon of ``n_queries`` kNN answers at noise ``sigma`` (plus ``prior``).

    Parameters
    ----------
    n_queries : int
    sigma : float
        Noise scale; 0 means no privacy (``inf``).
    delta : float, default 1e-5
    prior : sequence of ecos_fast.ledger.Release
        Earlier releases of the same client to compose with (e.g. its coverage counts).
    accountant : {"pld", "rdp"}

    Examples
    --------
    >>> knn_epsilon(100, 40.0) < knn_epsilon(1000, 40.0)
    True
    """
    from ecos_fast.ledger import Release, compose_epsilon

    releases = list(prior)
    if n_queries > 0:
        if sigma == 0:
            return math.inf
        releases.append(
            Release(
                "cloud",
                "gaussian",
                sigma=sigma,
                sensitivity=KNN_SENSITIVITY,
                count=n_queries,
                purpose="knn-labels",
            )
        )
    return compose_epsilon(releases, delta, accountant=accountant)


@dataclass(frozen=True)
class KnnLabels:
    """What :func:`private_knn_label` returns.

    Attributes
    ----------
    labels : ndarray of shape (n_queries,), int64
        The noisy-argmax labels the client released.
    sigma : float
        Noise scale used.
    k : int
    epsilon : float
        Composed epsilon at ``delta`` of every release recorded in the ledger for this
        cloud (prior ones included).
    delta : float
    label_accuracy : float or None
        Agreement with the true labels, when the experiment passed them (never used
        for training).
    """

    labels: NDArray[np.int64]
    sigma: float
    k: int
    epsilon: float
    delta: float
    label_accuracy: float | None = None


def private_knn_label(
    private_features: NDArray[Any],
    private_labels: NDArray[Any],
    query_features: NDArray[Any],
    *,
    epsilon: float = 5.0,
    delta: float = 1e-5,
    sigma: float | None = None,
    k: int | None = None,
    n_classes: int = 10,
    ledger: Any = None,
    cloud: str = "cloud",
    seed: int | None = None,
    true_labels: NDArray[Any] | None = None,
) -> KnnLabels:
    """Client side of automated labeling: GNMax answers to ``n_queries`` kNN queries.

    Parameters
    ----------
    private_features : ndarray of shape (n_private, n_features)
    private_labels : ndarray of shape (n_private,)
    query_features : ndarray of shape (n_queries, n_features)
        Features of the cloud's selected samples.
    epsilon : float, default 5.0
        Privacy budget of the label queries together (``math.inf``: no noise); used to
        calibrate ``sigma`` unless ``sigma`` is given.
    delta : float, default 1e-5
    sigma : float, optional
        Noise scale; overrides the calibration.
    k : int, optional
        Neighbours; default :func:`default_k`.
    n_classes : int, default 10
    ledger : ecos_fast.ledger.Ledger, optional
        The client's ledger: the queries are recorded (and refused when over its
        budget) *before* noise is drawn. Default: a fresh in-memory ledger.
    cloud : str, default "cloud"
        Name under which the ledger records the release.
    seed : int, optional
        Noise seed; default OS entropy. Fix it only for reproducible experiments.
    true_labels : ndarray, optional
        Ground truth of the queries (experiments only), to report label accuracy.

    Returns
    -------
    KnnLabels

    Notes
    -----
    Privacy: with ``sigma`` calibrated as in :func:`calibrate_knn_sigma`, the released
    labels are ``(epsilon, delta)``-DP w.r.t. the private set under add/remove-one
    (sensitivity sqrt(2) per query); the composed total with the ledger's earlier
    releases is reported in ``KnnLabels.epsilon``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(400) % 2
    >>> x = rng.normal(size=(400, 8)).astype(np.float32) + 4 * np.eye(8)[y]
    >>> out = private_knn_label(x, y, x[:50], epsilon=8.0, seed=0, true_labels=y[:50])
    >>> out.label_accuracy > 0.9, out.epsilon < 8.01
    (True, True)
    """
    from ecos_fast.ledger import Ledger, Release

    n_private = int(np.asarray(private_labels).shape[0])
    n_queries = int(np.asarray(query_features).shape[0])
    kk = default_k(n_private, n_classes) if k is None else int(k)
    kk = min(kk, n_private)
    if sigma is None:
        sigma = calibrate_knn_sigma(max(n_queries, 1), epsilon, delta)
    own = ledger is None
    if not own and n_queries and sigma == 0:
        # Like every noiseless release: a ledger refuses it, budget or not.
        raise NoNoiseReleaseError(
            f"{n_queries} label queries without noise (sigma=0, epsilon={epsilon}) cannot "
            f"be recorded in a privacy ledger: their privacy loss is infinite. Give a finite "
            f"epsilon, or run without a ledger (an upper-bound experiment)"
        )
    led = Ledger(":memory:", delta=delta) if own else ledger
    try:
        if n_queries and sigma > 0:
            led.spend(
                Release(
                    cloud,
                    "gaussian",
                    sigma=sigma,
                    sensitivity=KNN_SENSITIVITY,
                    epsilon=None if math.isinf(epsilon) else epsilon,
                    delta=delta,
                    count=n_queries,
                    purpose="knn-labels",
                    # One private sample added, removed or replaced moves at most two
                    # votes of a query (one neighbour in, one out): sqrt(2) either way.
                    relation="add_remove",
                    other_sensitivity=KNN_SENSITIVITY,
                )
            )
        votes = knn_votes(
            private_features, private_labels, query_features, k=kk, n_classes=n_classes
        )
        labels = gnmax(votes, sigma, np.random.default_rng(seed))
        # The queries were admitted under add/remove (their relation), so the ledger's
        # add/remove total exists even when it holds replace-one releases too.
        total = (
            math.inf
            if sigma == 0 and n_queries
            else float(led.total_epsilon(cloud=cloud, relation="add_remove"))
        )
    finally:
        if own:
            led.close()
    acc = None
    if true_labels is not None and n_queries:
        acc = float((labels == np.asarray(true_labels)).mean())
    return KnnLabels(
        labels=labels, sigma=float(sigma), k=kk, epsilon=total, delta=delta, label_accuracy=acc
    )


def default_queries(n_selected: int) -> int:
    """Label queries sent by default for a selection of ``n_selected`` samples.

    ``min(n_selected, DEFAULT_QUERIES)`` with ``DEFAULT_QUERIES = 1000``. Why 1000:
    at the applications' label budget (epsilon = 5, delta = 1e-5) the GNMax noise is
    ``sigma = 39.9`` for 1000 queries and ``69.1`` for 3000 (it grows as
    ``sqrt(n_queries)``), while the vote margin it must beat is at most
    ``k = n_private / n_classes`` (72 to 350 on the Digit-Five proxy clients). On the
    cloud's labeled pool (never a test split; seed 1, 3000 client-domain pool rows
    per client, 5 noise draws), the noisy labels' accuracy at 100 / 1000 / 3000
    queries was .93 / .83 / .61 for mnist (k = 200), .95 / .91 / .80 for synth and
    at least .92 at 1000 for print, hand and hershey (k = 350): up to about 1000
    queries the larger clients' labels stay mostly right, past it they degrade
    fast. Trained models agree: one query per selected sample gave 85.1 % mean
    accuracy at 1000 queries and 76.3 % at 3000 (README). The small clients would
    want fewer (optdigits, k = 72: .84 at 100 queries, .38 at 1000; mnistm .68 and
    .46), so pass ``queries=`` to :func:`label_selection` for a client of a few
    hundred samples; a lower cap was not chosen because what fewer labels cost the
    trained model was not measured.

    Examples
    --------
    >>> default_queries(300), default_queries(3000)
    (300, 1000)
    """
    return min(int(n_selected), DEFAULT_QUERIES)


@dataclass(frozen=True)
class SelectionLabels:
    """What :func:`label_selection` returns.

    Attributes
    ----------
    queried : ndarray of shape (n_queries,), int64
        Pool indices sent to the client for labelling (in selection order).
    labels : ndarray of shape (n_queries,), int64
        The client's noisy-argmax labels of ``queried``.
    unlabeled : ndarray of shape (n_selected - n_queries,), int64
        The rest of the selection (pool indices, selection order): never shown to
        the client, available to train on without labels.
    knn : KnnLabels
        The labelling itself: ``sigma``, ``k``, the composed ``epsilon``, ...
    """

    queried: NDArray[np.int64]
    labels: NDArray[np.int64]
    unlabeled: NDArray[np.int64]
    knn: KnnLabels

    @property
    def n_queries(self) -> int:
        """Label queries made (what the privacy accounting counts)."""
        return int(self.queried.shape[0])


def label_selection(
    private_features: NDArray[Any],
    private_labels: NDArray[Any],
    pool_features: NDArray[Any],
    selected: NDArray[Any],
    *,
    queries: int | None = None,
    epsilon: float = 5.0,
    delta: float = 1e-5,
    k: int | None = None,
    n_classes: int = 10,
    ledger: Any = None,
    cloud: str = "cloud",
    seed: int | None = None,
    true_labels: NDArray[Any] | None = None,
) -> SelectionLabels:
    """Label ``queries`` of the selected pool samples by private kNN; leave the rest unlabeled.

    Parameters
    ----------
    private_features : ndarray of shape (n_private, n_features)
    private_labels : ndarray of shape (n_private,)
    pool_features : ndarray of shape (n_pool, n_features)
    selected : ndarray of shape (n_selected,), int
        Pool indices of the selection (distinct, in ``[0, n_pool)``).
    queries : int, optional
        Label queries to send, ``>= 1``; default :func:`default_queries`
        (``min(n_selected, 1000)``). A selection smaller than ``queries`` (a budget
        shortfall) is queried whole. When fewer than the selection, the queried
        samples are a uniform subsample of it drawn from ``seed``.
    epsilon : float, default 5.0
        Privacy budget of the label queries together; ``sigma`` is calibrated for
        the number of queries made, whatever the selection size.
    delta : float, default 1e-5
    k : int, optional
        Neighbours; default :func:`default_k`.
    n_classes : int, default 10
    ledger : ecos_fast.ledger.Ledger, optional
        Records the queries (``count = n_queries``) before any noise is drawn, and
        refuses them over its budget; default a fresh in-memory ledger.
    cloud : str, default "cloud"
    seed : int, optional
        Seeds the subsample and the noise; default OS entropy.
    true_labels : ndarray of shape (n_pool,), optional
        Ground truth of the pool (experiments only) for ``knn.label_accuracy``.

    Returns
    -------
    SelectionLabels
        Train on ``pool_features[queried]`` with ``labels``. The simplest honest
        use, and what the applications do, is to train on the labelled subset only;
        ``unlabeled`` is there for semi-supervised training (for example as
        ``unlabeled_x`` of :func:`ecos_fast.apps.labeling.run_labeling`), which uses
        no label of it and so costs no privacy.

    Raises
    ------
    InvalidInputError
        ``queries < 1``, an empty, repeated or out-of-range ``selected``.
    PrivacyBudgetExceededError
        The ledger refuses the queries; nothing is recorded or released.

    Notes
    -----
    Privacy: only ``pool_features[queried]`` reaches the client and only the
    ``n_queries`` noisy labels come back; they are ``(epsilon, delta)``-DP w.r.t. the
    private set (see :func:`private_knn_label`). The unlabeled rest of the selection
    never touches private data. The selection itself is post-processing of the
    coverage release.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(400) % 2
    >>> x = rng.normal(size=(400, 8)).astype(np.float32) + 4 * np.eye(8)[y]
    >>> out = label_selection(x, y, x, np.arange(300), queries=50, epsilon=8.0, seed=0)
    >>> out.n_queries, len(out.unlabeled), out.knn.epsilon < 8.01
    (50, 250, True)
    """
    sel = np.asarray(selected)
    n_pool = int(np.asarray(pool_features).shape[0])
    if sel.ndim != 1 or sel.size == 0 or sel.dtype.kind not in "iu":
        raise InvalidInputError(
            f"selected must be a non-empty 1-D array of pool indices; got dtype={sel.dtype}, "
            f"shape={sel.shape}"
        )
    sel = sel.astype(np.int64)
    if sel.min() < 0 or sel.max() >= n_pool:
        raise InvalidInputError(
            f"selected holds indices in [{sel.min()}, {sel.max()}], outside [0, n_pool={n_pool})"
        )
    if np.unique(sel).size != sel.size:
        raise InvalidInputError(f"selected repeats {sel.size - np.unique(sel).size} indices")
    n_q = default_queries(sel.size) if queries is None else int(queries)
    if n_q < 1:
        raise InvalidInputError(f"queries={queries} must be >= 1")
    if n_q >= sel.size:
        ask = np.ones(sel.size, dtype=bool)
        noise_seed = seed
    else:
        # The subsample and the noise get independent streams of the one seed.
        ss = np.random.SeedSequence(seed)
        pick_ss, noise_ss = ss.spawn(2)
        ask = np.zeros(sel.size, dtype=bool)
        ask[np.random.default_rng(pick_ss).choice(sel.size, n_q, replace=False)] = True
        noise_seed = int(noise_ss.generate_state(1, np.uint64)[0] >> np.uint64(1))
    queried, unlabeled = sel[ask], sel[~ask]
    knn = private_knn_label(
        private_features,
        private_labels,
        np.asarray(pool_features)[queried],
        epsilon=epsilon,
        delta=delta,
        k=k,
        n_classes=n_classes,
        ledger=ledger,
        cloud=cloud,
        seed=noise_seed,
        true_labels=None if true_labels is None else np.asarray(true_labels)[queried],
    )
    return SelectionLabels(queried=queried, labels=knn.labels, unlabeled=unlabeled, knn=knn)
