"""k-means pieces both backends share: the result type, the seeded row draws and the
single-machine run.

The Ray backend (:mod:`ecos_fast.ray_backend`) draws the same training sample and
the same seeding rows as the local backend with :func:`training_sample_rows` and
:func:`init_sample_rows`, and clusters a gathered sample with :func:`kmeans_rows`,
so both return the same centroids bit for bit. Inputs are checked by the callers
(``_validation.check_kmeans_params``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from . import _core
from ._progress import kernel_callback
from ._validation import KMeansParams, check_int, check_seed

__all__ = ["KMeansResult", "init_sample_rows", "kmeans_rows", "training_sample_rows"]


@dataclass(frozen=True)
class KMeansResult:
    """What :func:`ecos_fast.kmeans` returns.

    Attributes
    ----------
    centroids : ndarray of shape (n_clusters, n_features), float32
    labels : ndarray of shape (n_samples,), int64
        Nearest centroid of every row (all rows, also when training subsampled).
    inertia_history : ndarray of shape (n_iter + 1,) or (n_iter,), float64
        Sum of squared distances of the training rows at each assignment; it
        never increases (up to float32 rounding). Length ``n_iter + 1`` when
        training on every row (the last entry is the final centroids'),
        ``n_iter`` when training on a subsample.
    n_iter : int
        Lloyd iterations run.
    """

    centroids: NDArray[np.float32]
    labels: NDArray[np.int64]
    inertia_history: NDArray[np.float64]
    n_iter: int

    @property
    def inertia(self) -> float:
        """The final inertia."""
        return float(self.inertia_history[-1])


def training_sample_rows(n_samples: int, params: KMeansParams) -> NDArray[np.int64] | None:
    """The seeded training subsample, or None to train on every row.

    ``params.max_train`` rows drawn uniformly without replacement with
    ``numpy.random.default_rng(seed)``, sorted; None when the pool is not larger.

    Examples
    --------
    >>> from ecos_fast._validation import KMeansParams
    >>> from ecos_fast.clustering import training_sample_rows
    >>> p = KMeansParams(2, 10, 0.0, 0, None, 4, 1, None)
    >>> training_sample_rows(10, p).shape, training_sample_rows(4, p)
    ((4,), None)
    """
    cap = params.max_train
    if cap is None or n_samples <= cap:
        return None
    rng = np.random.default_rng(params.seed)
    return np.sort(rng.choice(n_samples, size=cap, replace=False)).astype(np.int64)


def init_sample_rows(
    n_train: int, init_sample: int, seed: int, n_clusters: int
) -> NDArray[np.int64]:
    """The training rows k-means++ seeds on when ``init_sample`` is given.

    A seeded uniform sample without replacement (``numpy.random.default_rng([seed, 1])``),
    sorted; every row when ``init_sample >= n_train``. Both backends use it.

    Parameters
    ----------
    n_train : int
    init_sample : int
        In [n_clusters, ...].
    seed : int
    n_clusters : int

    Returns
    -------
    ndarray of shape (min(init_sample, n_train),), int64

    Examples
    --------
    >>> from ecos_fast.clustering import init_sample_rows
    >>> init_sample_rows(10, 4, 0, 2).shape, init_sample_rows(3, 4, 0, 2).tolist()
    ((4,), [0, 1, 2])
    """
    m = check_int(init_sample, "init_sample", low=n_clusters)
    if m >= n_train:
        return np.arange(n_train, dtype=np.int64)
    rng = np.random.default_rng([check_seed(seed), 1])
    return np.sort(rng.choice(n_train, size=m, replace=False)).astype(np.int64)


def kmeans_rows(x: NDArray[np.float32], params: KMeansParams, n_threads: int) -> KMeansResult:
    """k-means of checked features ``x`` on one machine (the compiled core).

    Trains on :func:`training_sample_rows` when ``params.max_train`` is below the
    pool size, seeds k-means++ on :func:`init_sample_rows` when
    ``params.init_sample`` is given (and ``params.init`` is not), then assigns
    every row once.

    Examples
    --------
    >>> import numpy as np
    >>> from ecos_fast._validation import KMeansParams
    >>> from ecos_fast.clustering import kmeans_rows
    >>> x = np.array([[0], [0.1], [5], [5.1]], np.float32)
    >>> km = kmeans_rows(x, KMeansParams(2, 10, 0.0, 0, None, None, 1, None), 1)
    >>> sorted(km.labels.tolist()), km.n_iter >= 1
    ([0, 0, 1, 1], True)
    """
    n = x.shape[0]
    p = params
    sample = training_sample_rows(n, p)
    init_c = p.init
    if init_c is None and p.init_sample is not None:
        n_train = n if sample is None else sample.shape[0]
        rows = init_sample_rows(n_train, p.init_sample, p.seed, p.n_clusters)
        if rows.shape[0] < n_train:  # else: the usual seeding on every training row
            rows = rows if sample is None else sample[rows]
            init_c = _core.kmeans_plusplus(
                x[rows], p.n_clusters, p.seed, n_threads, p.n_local_trials
            )
    progress = kernel_callback("k-means", p.max_iter)
    c, labels, inertia, n_iter = _core.kmeans(
        x, p.n_clusters, p.max_iter, p.tol, p.seed, n_threads, init_c, p.n_local_trials, sample,
        progress,
    )  # fmt: skip
    return KMeansResult(c, labels, inertia, int(n_iter))


def on_every_row(params: KMeansParams) -> KMeansParams:
    """``params`` with no training subsample (for a sample already drawn)."""
    return replace(params, max_train=None)
