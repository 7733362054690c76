"""Split a selection budget over clusters in proportion to their weights.

**(our rule)** Water-filling with largest remainder: find the level ``lam`` at
which ``sum_i min(capacity_i, lam * w_i)`` equals the target (the budget, or
the total capacity of the weighted clusters if that is smaller); clusters whose
capacity is below ``lam * w_i`` get their whole capacity (the overflow goes to
the others in proportion to their weights); the rest get the floor of
``lam * w_i`` plus one for the largest fractional parts, ties to the lowest
cluster index. Arithmetic is exact (rationals), so the result is deterministic
and independent of floating-point summation order.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._validation import as_capacity, as_weights, check_int

__all__ = ["allocate_quotas"]


def allocate_quotas(weights: Any, capacity: Any, budget: int) -> NDArray[np.int64]:
    """Per-cluster quotas proportional to ``weights``, capped at ``capacity``.

    Parameters
    ----------
    weights : array-like of shape (n_clusters,)
        Finite, >= 0. A zero weight always gets a zero quota.
    capacity : array-like of shape (n_clusters,)
        Integers >= 0: how many samples each cluster holds.
    budget : int
        >= 0.

    Returns
    -------
    quotas : ndarray of shape (n_clusters,), int64
        ``0 <= quotas <= capacity``; ``quotas.sum() == min(budget, capacity of
        the clusters with positive weight)``. Among clusters below capacity,
        ``quotas[i]`` is the floor or the ceiling of ``lam * weights[i]`` for one
        common ``lam``.

    Examples
    --------
    >>> from ecos_fast import allocate_quotas
    >>> allocate_quotas([1.0, 1.0, 2.0], [10, 10, 10], 8).tolist()
    [2, 2, 4]
    >>> allocate_quotas([1.0, 1.0, 1.0], [10, 10, 10], 4).tolist()  # ties: lowest index
    [2, 1, 1]
    >>> allocate_quotas([1.0, 0.0, 8.0], [10, 10, 2], 8).tolist()  # overflow moves on
    [6, 0, 2]
    """
    w = as_weights(weights, "weights")
    cap = as_capacity(capacity, w.shape[0], "capacity")
    b = check_int(budget, "budget", low=0)

    quotas = np.zeros(w.shape[0], dtype=np.int64)
    active = np.flatnonzero((w > 0) & (cap > 0))
    total = int(cap[active].sum())
    target = min(b, total)
    if target == 0:
        return quotas
    if target == total:
        quotas[active] = cap[active]
        return quotas

    wf = {int(i): Fraction(float(w[i])) for i in active}
    cf = {int(i): int(cap[i]) for i in active}
    # Saturation order: a cluster fills up when lam >= capacity / weight.
    order = sorted(wf, key=lambda i: (Fraction(cf[i]) / wf[i], i))
    left = Fraction(target)
    weight = sum(wf.values(), Fraction(0))
    k = 0
    while k < len(order):
        i = order[k]
        if left * wf[i] >= cf[i] * weight:  # lam * w_i >= cap_i with lam = left / weight
            quotas[i] = cf[i]
            left -= cf[i]
            weight -= wf[i]
            k += 1
        else:
            break
    rest = order[k:]  # non-empty because target < total
    shares = [left * wf[i] / weight for i in rest]
    floors = [math.floor(s) for s in shares]
    for i, f in zip(rest, floors, strict=False):
        quotas[i] = f
    extra = target - int(quotas.sum())
    by_remainder = sorted(range(len(rest)), key=lambda j: (-(shares[j] - floors[j]), rest[j]))
    for j in by_remainder[:extra]:
        quotas[rest[j]] += 1
    return quotas
