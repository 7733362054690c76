"""Paired statistics of the experiment: wins out of N and the Wilcoxon signed-rank test.

Two methods are compared on the runs they share: the same client domain, seed and
budget (the same private set, pool and test split). For each shared run the paired
difference is ``accuracy(a) - accuracy(b)`` in percentage points. Reported:

* **wins / ties / losses** out of N shared runs (a tie is an equal accuracy, which
  happens on saturated test splits);
* the **mean paired difference** (points);
* the two-sided **Wilcoxon signed-rank** p-value (:func:`scipy.stats.wilcoxon`) of the
  differences. Zero differences (ties) carry no sign, so they are dropped before
  ranking (Wilcoxon's own convention, ``zero_method="wilcox"``) and the note says how
  many. Without ties SciPy's p is exact up to 50 differences; equal non-zero ``|d|``
  share their average rank, and SciPy then enumerates the sign permutations up to 13
  differences and uses the normal approximation with its tie correction beyond (the
  note says which). With every difference zero there is no evidence either way: p = 1.

A table cell is **bold** only when its method has the best mean of its row *and* beats
every other method of the row with p < 0.05 over the row's shared runs; a best mean
alone is never bold. With 3 seeds a single client domain has N = 3 pairs, whose
smallest two-sided Wilcoxon p is 0.25: per-domain rows are never bold, honestly.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .experiment import RunRecord

__all__ = [
    "ALPHA",
    "PairedComparison",
    "compare",
    "format_comparisons",
    "metric_value",
    "paired_differences",
    "significant_best",
    "wilcoxon_p",
]

#: Significance level of the bold cells and of :meth:`PairedComparison.significant`.
ALPHA = 0.05


def metric_value(record: RunRecord, metric: str = "accuracy") -> float:
    """A run's metric in percent: ``accuracy`` or a fraction stored in ``record.extra``.

    Examples
    --------
    >>> from ecos_fast.apps.experiment import RunRecord
    >>> r = RunRecord("labeling", "mnist", 1, 10, "ecos", 0.58, 0.58, 0.9, 10, 0.5, 1.0,
    ...               {"semi_accuracy": 0.95})
    >>> metric_value(r), metric_value(r, "semi_accuracy")
    (90.0, 95.0)
    """
    if metric == "accuracy":
        return 100.0 * record.accuracy
    value = record.extra.get(metric)
    return math.nan if value is None else 100.0 * float(value)


def _main_epsilon(records: Sequence[RunRecord]) -> float:
    ecos = [r.epsilon for r in records if r.method == "ecos"]
    return ecos[0] if ecos else 0.0


def _runs(
    records: Iterable[RunRecord], method: str, epsilon: float, metric: str
) -> dict[tuple[str, int, int], float]:
    out: dict[tuple[str, int, int], float] = {}
    for r in records:
        if r.method != method or (method == "ecos" and r.epsilon != epsilon):
            continue
        v = metric_value(r, metric)
        if math.isfinite(v):
            out[(r.domain, r.seed, r.budget)] = v
    return out


def paired_differences(
    records: Sequence[RunRecord],
    a: str,
    b: str,
    *,
    metric: str = "accuracy",
    epsilon: float | None = None,
    budget: int | None = None,
    domain: str | None = None,
) -> np.ndarray:
    """``metric(a) - metric(b)`` (points) over the (domain, seed, budget) runs both have.

    ECOS runs are those at ``epsilon`` (default: the first ECOS epsilon seen);
    ``budget`` and ``domain`` restrict the runs. Sorted by (domain, seed, budget).
    """
    eps = _main_epsilon(records) if epsilon is None else epsilon
    ra, rb = _runs(records, a, eps, metric), _runs(records, b, eps, metric)
    keys = sorted(
        k
        for k in ra.keys() & rb.keys()
        if (budget is None or k[2] == budget) and (domain is None or k[0] == domain)
    )
    # Accuracies are counts over a test split: round away the float noise of the
    # subtraction so that equal |d| get equal ranks (SciPy's advice).
    return np.round(np.array([ra[k] - rb[k] for k in keys], dtype=np.float64), 9)


def wilcoxon_p(differences: Sequence[float] | np.ndarray) -> tuple[float, str]:
    """Two-sided Wilcoxon signed-rank p-value of paired differences, and a note.

    Zero differences are dropped (``zero_method="wilcox"``); with none left, p = 1.
    Without SciPy, p is NaN and the note says so.

    Examples
    --------
    >>> p, note = wilcoxon_p([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0])
    >>> round(p, 4), note
    (0.0312, '1 zero difference dropped')
    >>> wilcoxon_p([0.0, 0.0])
    (1.0, 'all 2 differences are zero')
    """
    d = np.asarray(differences, dtype=np.float64)
    n_zero = int((d == 0).sum())
    zero_note = (
        "" if n_zero == 0 else f"{n_zero} zero difference{'s' if n_zero > 1 else ''} dropped"
    )
    if d.size == 0:
        return math.nan, "no shared runs"
    if n_zero == d.size:
        return 1.0, f"all {d.size} differences are zero"
    try:
        from scipy.stats import wilcoxon  # type: ignore[import-untyped,unused-ignore]
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        return math.nan, "scipy is not installed: no p-value"
    nonzero = d[d != 0]
    with warnings.catch_warnings():
        # SciPy warns that ties force the normal approximation; the note says it.
        warnings.simplefilter("ignore")
        p = float(wilcoxon(nonzero, zero_method="wilcox").pvalue)
    notes = [zero_note] if zero_note else []
    if len(np.unique(np.abs(nonzero))) < nonzero.size:
        how = "exact permutations" if nonzero.size <= 13 else "normal approximation"
        notes.append(f"tied |differences|: {how}")
    return p, "; ".join(notes)


@dataclass(frozen=True)
class PairedComparison:
    """Method ``a`` against ``b`` over their shared runs.

    Attributes
    ----------
    a, b : str
        Method keys (``"ecos"``, ``"random"``, ...).
    n : int
        Shared (domain, seed, budget) runs.
    wins, ties, losses : int
        Runs where ``a`` is better, equal, worse.
    mean_difference : float
        Mean of ``metric(a) - metric(b)``, percentage points (NaN when ``n == 0``).
    p_value : float
        Two-sided Wilcoxon signed-rank p-value (see :func:`wilcoxon_p`).
    note : str
        About zero differences and ties.
    """

    a: str
    b: str
    n: int
    wins: int
    ties: int
    losses: int
    mean_difference: float
    p_value: float
    note: str = ""

    def significant(self, alpha: float = ALPHA) -> bool:
        """``a`` is better than ``b``: positive mean difference and p below ``alpha``."""
        return self.n > 0 and self.mean_difference > 0 and self.p_value < alpha

    def format(self) -> str:
        """``"ECOS vs Random: wins 18/21 (ties 1), mean +1.20 points, p = 0.0012"``."""
        from .experiment import METHOD_NAMES

        name_a, name_b = METHOD_NAMES.get(self.a, self.a), METHOD_NAMES.get(self.b, self.b)
        ties = f" (ties {self.ties})" if self.ties else ""
        p = "n/a" if math.isnan(self.p_value) else f"{self.p_value:.2g}"
        text = (
            f"{name_a} vs {name_b}: wins {self.wins}/{self.n}{ties}, "
            f"mean {self.mean_difference:+.2f} points, Wilcoxon p = {p}"
        )
        if self.significant():
            text += " (significant at 5 %)"
        return text + (f"; {self.note}" if self.note else "")


def compare(
    records: Sequence[RunRecord],
    a: str,
    b: str,
    *,
    metric: str = "accuracy",
    epsilon: float | None = None,
    budget: int | None = None,
    domain: str | None = None,
) -> PairedComparison:
    """Paired comparison of methods ``a`` and ``b`` (arguments of :func:`paired_differences`).

    Examples
    --------
    >>> from ecos_fast.apps.experiment import RunRecord
    >>> def run(method, seed, acc):
    ...     return RunRecord("labeling", "mnist", seed, 10, method, 0.58, 0.58, acc, 10,
    ...                      0.5, 1.0)
    >>> recs = [run("ecos", s, 0.9) for s in range(4)] + [
    ...     run("random", s, a) for s, a in enumerate([0.8, 0.9, 0.85, 0.95])]
    >>> c = compare(recs, "ecos", "random")
    >>> c.wins, c.ties, c.losses, c.n
    (2, 1, 1, 4)
    """
    d = paired_differences(
        records, a, b, metric=metric, epsilon=epsilon, budget=budget, domain=domain
    )
    p, note = wilcoxon_p(d)
    return PairedComparison(
        a=a,
        b=b,
        n=int(d.size),
        wins=int((d > 0).sum()),
        ties=int((d == 0).sum()),
        losses=int((d < 0).sum()),
        mean_difference=float(d.mean()) if d.size else math.nan,
        p_value=p,
        note=note,
    )


def significant_best(
    records: Sequence[RunRecord],
    methods: Sequence[str],
    *,
    budget: int,
    domain: str | None = None,
    metric: str = "accuracy",
    epsilon: float | None = None,
    alpha: float = ALPHA,
) -> str | None:
    """The method to bold in a row, or ``None``.

    The method with the best mean over the row's runs (``domain=None``: every domain,
    the "average" row) is returned only if it beats each other method of ``methods``
    with p < ``alpha`` on their shared runs.
    """
    eps = _main_epsilon(records) if epsilon is None else epsilon
    means: dict[str, float] = {}
    for m in methods:
        v = [
            val
            for (dom, _, b), val in _runs(records, m, eps, metric).items()
            if b == budget and (domain is None or dom == domain)
        ]
        if v:
            means[m] = float(np.mean(v))
    if len(means) < 2:
        return None
    best = max(means, key=lambda m: means[m])
    for other in means:
        if other == best:
            continue
        c = compare(records, best, other, metric=metric, epsilon=eps, budget=budget, domain=domain)
        if not c.significant(alpha):
            return None
    return best


def format_comparisons(
    records: Sequence[RunRecord],
    *,
    method: str = "ecos",
    metric: str = "accuracy",
    epsilon: float | None = None,
) -> str:
    """One line per budget and other method: ``"B=1000: ECOS vs Random: wins ..."``.

    Pairs are every client domain and seed of the budget.
    """
    from .experiment import METHODS

    present = {r.method for r in records}
    if method not in present:
        return ""
    budgets = sorted({r.budget for r in records if r.method == method})
    lines: list[str] = []
    for b in budgets:
        for other in METHODS:
            if other == method or other not in present:
                continue
            c = compare(records, method, other, metric=metric, epsilon=epsilon, budget=b)
            if c.n:
                lines.append(f"B={b}: {c.format()}")
    return "\n".join(lines)
