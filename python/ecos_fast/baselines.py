"""Selection baselines that use no client input: Random and global K-Center."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from . import kernels
from ._validation import Checked, as_features, check_budget, check_int
from .errors import InvalidInputError
from .feature_files import is_feature_source, load_features
from .rule import Selection, random_rows

__all__ = ["select_kcenter", "select_random"]

#: The largest pool size :func:`select_random` takes (row indices are int64).
_MAX_POOL = int(np.iinfo(np.int64).max)


def _pool_size(features_or_n: Any) -> int:
    if isinstance(features_or_n, numbers.Integral) and not isinstance(features_or_n, bool):
        # NumPy draws the rows as int64: a larger pool size is refused, not an OverflowError.
        return check_int(features_or_n, "n_samples", low=1, high=_MAX_POOL)
    if is_feature_source(features_or_n):  # a .npy file is mapped, not read
        features_or_n = load_features(features_or_n)
    shape = getattr(features_or_n, "shape", None)
    if shape is None:
        try:
            shape = np.shape(features_or_n)
        except ValueError:  # ragged nested lists
            raise InvalidInputError(
                "features must be 2-D (n_samples, n_features); got rows of different lengths"
            ) from None
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
        raise InvalidInputError(
            f"features must be 2-D (n_samples, n_features) and non-empty; got shape={shape}"
        )
    return int(shape[0])


def select_random(features_or_n: Any, budget: int, *, seed: int | None) -> Selection:
    """Random baseline: ``budget`` distinct pool rows, uniformly at random.

    Parameters
    ----------
    features_or_n : array-like of shape (n_samples, n_features), path, or int
        The pool (only its length is used), a path to it (see
        :func:`ecos_fast.feature_files.load_features`), or its size.
    budget : int
        In [1, n_samples].
    seed : int or None
        Generator seed; None draws fresh OS entropy (not reproducible).

    Returns
    -------
    Selection
        ``indices`` in increasing order; ``method="random"``.

    Examples
    --------
    >>> from ecos_fast import select_random
    >>> sel = select_random(100, 5, seed=0)
    >>> len(sel), len(set(sel)), sel.method
    (5, 5, 'random')
    """
    n = _pool_size(features_or_n)
    b = check_budget(budget, n)
    return Selection(random_rows(n, b, seed), b, method="random")


def select_kcenter(
    features: Any, budget: int, *, first: int | None = None, n_threads: int | None = None
) -> Selection:
    """K-Center baseline: global greedy K-Center coreset (Sener & Savarese 2018).

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    budget : int
        In [1, n_samples].
    first : int, optional
        First pick; default row 0.
    n_threads : int, optional

    Returns
    -------
    Selection
        ``indices`` in pick order (farthest-first); ``method="kcenter"``.

    Examples
    --------
    >>> import numpy as np
    >>> from ecos_fast import select_kcenter
    >>> x = np.array([[0.0], [1.0], [10.0], [4.0]], dtype=np.float32)
    >>> select_kcenter(x, 3).indices.tolist()
    [0, 2, 3]
    """
    x = as_features(features, "features")
    b = check_budget(budget, x.shape[0])
    idx, _ = kernels.kcenter_greedy(Checked(x), b, first=first, n_threads=n_threads)
    return Selection(idx, b, method="kcenter")
