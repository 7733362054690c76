"""A one-page report of a selection: a verdict, the privacy numbers, and one figure.

The page (``.html``, one self-contained file) opens with a one-line verdict (budget,
rows selected, the share of the quota that went to clusters with signal), then ε, δ,
σ and a signal-to-noise indicator, the figure, the top clusters as a table and the
details. It is rendered by Jinja2 from ``templates/report.html.j2`` with autoescape
on, so any string in the summary (a cloud name, a key id) reaches the page escaped.

The figure (``.png``, at most 1240 px wide; inlined in the page) has, for an ECOS
selection:

- the top clusters **sorted by noisy count** (not in centroid order), the threshold
  ``threshold·σ``, each bar's quota, the true counts in a simulation, and one "rest"
  whisker (min–max of the other clusters), so it reads the same at R = 1000;
- the cumulative share of the budget and of the (clipped) noisy mass over the clusters
  in that order: where the budget went;
- a 2-D PCA of a seeded sample of the pool (light) with a seeded sample of the
  selected rows on top;
- the histogram of all R noisy counts against what noise alone, N(0, σ²), would give.

A baseline (Random, K-Center: no client response) gets the PCA panel only: no empty
panels. ε, δ and σ are in the figure's title. The same inputs give the same bytes
(no date, no path; the footer names the ecos-fast and matplotlib versions). matplotlib
and Jinja2 (the ``report`` extra) are imported only here, only when a report is asked for.
"""

from __future__ import annotations

import base64
import gc
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _stream
from .atomic import write_atomically
from .errors import InvalidInputError

__all__ = [
    "covering_radius_curve",
    "pca_2d",
    "require_matplotlib",
    "true_coverage",
    "write_report",
]

# The PCA panel draws at most this many pool rows and selected rows (seeded subsamples).
MAX_PLOT_ROWS = 5000
MAX_PLOT_SELECTED = 1500
# Bars in the cluster panel and rows in the page's cluster table; the rest is summarised.
TOP_CLUSTERS = 25
# The signal-to-noise ratio below which select warns (rule.LOW_SIGNAL_SIGMAS).
LOW_SIGNAL_RATIO = 3.0
# Figure size in inches at 100 dpi: 1240 px fits a 1280 px window with the page margins.
_DPI = 100
_WIDTH_IN = 12.4
_PICK_BLOCK = 256
_SIGNAL, _NOISE, _TRUE, _SELECTED = "#1f6feb", "#b0b7bf", "#1f2328", "#d1242f"

_EXTRA_HINT = "pip install 'ecos-fast[report]' (or pip install matplotlib jinja2)"


def require_matplotlib() -> None:
    """Raise a clear error when matplotlib or Jinja2 (the ``report`` extra) is missing.

    Raises
    ------
    click.UsageError
        From the CLI's point of view a report cannot be written: install the extra.
    """
    missing = []
    for name in ("matplotlib", "jinja2"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        import click

        raise click.UsageError(
            f"--report needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: {_EXTRA_HINT}"
        )


def _subsample(n: int, k: int, seed: int) -> NDArray[np.int64]:
    if n <= k:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)


def pca_2d(
    sample: NDArray[np.floating[Any]], *others: NDArray[np.floating[Any]]
) -> list[NDArray[np.float64]]:
    """Project ``sample`` (and ``others``) on the top two principal axes of ``sample``.

    Examples
    --------
    >>> import numpy as np
    >>> from ecos_fast.report import pca_2d
    >>> x = np.array([[0, 0, 0], [2, 0, 0], [4, 0, 1]], dtype=np.float32)
    >>> [p.shape for p in pca_2d(x, x[:1])]
    [(3, 2), (1, 2)]
    """
    s = np.asarray(sample, dtype=np.float64)
    mean = s.mean(axis=0)
    _, _, vt = np.linalg.svd(s - mean, full_matrices=False)
    axes = vt[:2].T
    # The sign of a singular vector is arbitrary: fix it (largest |loading| positive) so
    # the picture does not flip between LAPACK builds.
    axes = axes * np.where(axes[np.abs(axes).argmax(axis=0), range(axes.shape[1])] < 0, -1, 1)
    if axes.shape[1] < 2:  # one feature: pad with zeros
        axes = np.pad(axes, ((0, 0), (0, 2 - axes.shape[1])))
    return [(np.asarray(a, dtype=np.float64) - mean) @ axes for a in (s, *others)]


def covering_radius_curve(
    points: NDArray[np.floating[Any]], centers: NDArray[np.floating[Any]]
) -> NDArray[np.float64]:
    """Covering radius of ``points`` by the first ``k`` rows of ``centers``, for every k.

    Not drawn in the report any more (for ECOS the pick order follows the clusters, so
    the curve showed the cluster order, not the selection); kept for analyses.

    Parameters
    ----------
    points : ndarray of shape (n_points, n_features)
    centers : ndarray of shape (n_centers, n_features)
        In pick order.

    Returns
    -------
    ndarray of shape (n_centers,), float64
        ``out[k-1] = max_p min_{j<k} ||p - centers[j]||``; non-increasing.

    Examples
    --------
    >>> import numpy as np
    >>> from ecos_fast.report import covering_radius_curve
    >>> p = np.array([[0.0], [1.0], [10.0], [4.0]])
    >>> covering_radius_curve(p, p[[0, 2, 3]]).tolist()
    [10.0, 4.0, 1.0]
    """
    p = np.asarray(points, dtype=np.float64)
    c = np.asarray(centers, dtype=np.float64)
    pn = np.einsum("ij,ij->i", p, p)
    best = np.full(p.shape[0], np.inf)
    out = np.empty(c.shape[0], dtype=np.float64)
    for s in range(0, c.shape[0], _PICK_BLOCK):
        blk = c[s : s + _PICK_BLOCK]
        d2 = pn[:, None] - 2.0 * (p @ blk.T) + np.einsum("ij,ij->i", blk, blk)[None, :]
        np.maximum(d2, 0.0, out=d2)
        run = np.minimum.accumulate(np.minimum(d2, best[:, None]), axis=1)
        out[s : s + blk.shape[0]] = np.sqrt(run.max(axis=0))
        best = run[:, -1]
    return out


def true_coverage(
    centroids: Any, private_features: Any, *, n_threads: int | None = None
) -> NDArray[np.int64]:
    """Simulation only: the exact (noise-free) coverage counts of private features.

    What the client's response estimates, for a report drawn in a simulation where
    the cloud happens to hold the private features too (``select
    --true-counts-from``). Never available to a real cloud.

    Parameters
    ----------
    centroids : Centroids
        Their ``normalize`` is applied to ``private_features`` first.
    private_features : array-like of shape (n_private, n_features)
    n_threads : int, optional

    Returns
    -------
    ndarray of shape (n_clusters,), int64
        Private rows whose nearest centroid is each centroid.

    Examples
    --------
    >>> import numpy as np, ecos_fast
    >>> from ecos_fast.report import true_coverage
    >>> c = ecos_fast.Centroids(np.array([[0, 0], [10, 10]], dtype=np.float32))
    >>> true_coverage(c, np.array([[1, 0], [9, 9], [0, 1]])).tolist()
    [2, 1]
    """
    from .kernels import assign

    x = centroids.transform(private_features, "private_features")
    labels, _ = assign(x, centroids.centroids, n_threads=n_threads)
    counts: NDArray[np.int64] = np.bincount(labels, minlength=centroids.n_clusters).astype(np.int64)
    return counts


# -- the numbers ------------------------------------------------------------------
@dataclass(frozen=True)
class _Clusters:
    """The per-cluster view of an ECOS selection, in the report's order."""

    noisy: NDArray[np.float64]
    quotas: NDArray[np.int64] | None
    true: NDArray[np.float64] | None
    order: NDArray[np.int64]  # by noisy count, largest first; ties: lowest index first
    cut: float  # threshold * sigma: a cluster above it has signal
    signal: NDArray[np.bool_]  # noisy > cut, in cluster order
    snr: float | None  # noisy total / (sigma * sqrt(R)); None without noise
    quota_share_signal: float | None  # share of the quota on clusters with signal

    @property
    def n_signal(self) -> int:
        return int(self.signal.sum())


def _clusters(
    noisy_counts: NDArray[Any],
    quotas: NDArray[Any] | None,
    true_counts: NDArray[Any] | None,
    sigma: float,
    threshold: float,
) -> _Clusters:
    noisy = np.asarray(noisy_counts, dtype=np.float64).ravel()
    r = noisy.shape[0]
    for name, arr in (("quotas", quotas), ("true_counts", true_counts)):
        if arr is not None and np.asarray(arr).shape != (r,):
            raise InvalidInputError(
                f"{name} has shape {np.asarray(arr).shape}, expected ({r},) like noisy_counts"
            )
    q = None if quotas is None else np.asarray(quotas, dtype=np.int64)
    cut = threshold * sigma
    signal = noisy > cut
    total = float(noisy.sum())
    snr = total / (sigma * math.sqrt(r)) if sigma > 0 and r > 0 else None
    share = None
    if q is not None and int(q.sum()) > 0:
        share = float(q[signal].sum()) / float(q.sum())
    return _Clusters(
        noisy=noisy,
        quotas=q,
        true=None if true_counts is None else np.asarray(true_counts, dtype=np.float64),
        order=np.argsort(-noisy, kind="stable").astype(np.int64),
        cut=cut,
        signal=signal,
        snr=snr,
        quota_share_signal=share,
    )


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v


def _fmt(v: float | None, digits: int = 3) -> str:
    """A short, locale-free number: 0.58, 1e-05, 6.14, 12,345."""
    if v is None:
        return "—"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def _pct(v: float | None) -> str:
    if v is None:
        return "—"
    p = 100.0 * v
    if p == 0:
        return "0 %"
    if 0 < p < 1:
        return "<1 %"
    if 99 < p < 100:
        return ">99 %"
    return f"{p:.1f} %" if p < 10 else f"{p:.0f} %"


_METHODS = {"ecos": "ECOS", "random": "Random baseline", "kcenter": "K-Center baseline"}


# -- the figure -------------------------------------------------------------------
def _title(summary: dict[str, Any], cl: _Clusters | None) -> str:
    method = str(summary.get("method", ""))
    head = (
        f"{_METHODS.get(method, 'Selection')}: {_fmt(_num(summary.get('n_selected')))} "
        f"selected, budget {_fmt(_num(summary.get('budget')))}"
    )
    if cl is None:
        return f"{head}\nno client data used: no release, no privacy spent"
    eps, delta, sigma = (_num(summary.get(k)) for k in ("epsilon", "delta", "sigma"))
    thr = _num(summary.get("threshold"))
    eps_s = "∞ (no noise)" if eps is None or math.isinf(eps) else _fmt(eps)
    snr = "—" if cl.snr is None else f"{cl.snr:.1f}"
    return (
        f"{head}\nε = {eps_s}   δ = {_fmt(delta)}   σ = {_fmt(sigma)}   "
        f"threshold {_fmt(thr)}σ = {_fmt(cl.cut)}   signal/noise = {snr}"
    )


def _draw_clusters(ax: Any, cl: _Clusters) -> None:
    r = cl.noisy.shape[0]
    top = cl.order[: min(TOP_CLUSTERS, r)]
    x = np.arange(top.shape[0])
    colors = [_SIGNAL if cl.signal[i] else _NOISE for i in top]
    ax.bar(x, cl.noisy[top], width=0.8, color=colors, zorder=2)
    if cl.true is not None:
        ax.bar(
            x, cl.true[top], width=0.8, fill=False, edgecolor=_TRUE, lw=1.0, zorder=3,
            label="true count (simulation)",
        )  # fmt: skip
    labels = [f"#{int(i)}" for i in top]
    rest = cl.order[top.shape[0] :]
    if rest.shape[0]:
        v = cl.noisy[rest]
        xr = top.shape[0] + 0.5
        ax.vlines(xr, v.min(), v.max(), color=_NOISE, lw=3, zorder=2)
        ax.plot([xr], [v.mean()], "o", color="#57606a", ms=4, zorder=3)
        labels.append(f"{rest.shape[0]:,} more\n(min–max)")
        ax.set_xticks([*x, xr], labels)
    else:
        ax.set_xticks(x, labels)
    ax.tick_params(axis="x", labelsize=7, rotation=90)
    ax.axhline(cl.cut, color=_SELECTED, lw=1, ls="--", zorder=4, label=f"threshold {_fmt(cl.cut)}")
    ax.axhline(0, color="#57606a", lw=0.6)
    if cl.quotas is not None:
        highest = cl.noisy[top] if cl.true is None else np.maximum(cl.noisy[top], cl.true[top])
        ymax = max(float(highest.max()), cl.cut, 1.0)
        for xi, i in zip(x, top, strict=True):
            q = int(cl.quotas[i])
            if q:
                top_of_bar = float(cl.noisy[i]) if cl.true is None else max(cl.noisy[i], cl.true[i])
                y = max(float(top_of_bar), 0.0) + 0.015 * ymax
                ax.text(xi, y, f"{q:,}", ha="center", va="bottom", fontsize=6.5, color="#57606a")
        ax.set_ylim(top=ymax * 1.12)
    ax.set_title(
        f"Top {top.shape[0]} of {r:,} clusters by noisy count (blue: above the threshold; "
        "numbers: rows selected)",
        fontsize=10,
    )
    ax.set_ylabel("noisy count (released)")
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.grid(axis="y", color="#eaeef2", zorder=0)


def _draw_cumulative(ax: Any, cl: _Clusters) -> None:
    r = cl.noisy.shape[0]
    rank = np.arange(1, r + 1)
    mass = np.maximum(cl.noisy[cl.order], 0.0)
    if mass.sum() > 0:
        ax.plot(rank, np.cumsum(mass) / mass.sum(), color=_NOISE, lw=2, label="noisy count (≥ 0)")
    if cl.quotas is not None and cl.quotas.sum() > 0:
        q = cl.quotas[cl.order].astype(np.float64)
        ax.plot(rank, np.cumsum(q) / q.sum(), color=_SIGNAL, lw=2, label="budget (quotas)")
    if cl.n_signal:
        ax.axvline(cl.n_signal, color=_SELECTED, lw=1, ls="--", label=f"{cl.n_signal} with signal")
    ax.set_xscale("log" if r > 30 else "linear")
    ax.set_xlim(1, max(r, 2))
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f} %")
    ax.set_title("Where the budget went (clusters ranked by noisy count)", fontsize=10)
    ax.set_xlabel("top k clusters")
    ax.set_ylabel("cumulative share")
    ax.legend(loc="best", fontsize=8, frameon=False)
    ax.grid(color="#eaeef2")


def _draw_noise(ax: Any, cl: _Clusters, sigma: float) -> None:
    v = cl.noisy
    lo, hi = float(v.min()), float(v.max())
    if sigma > 0:
        lo, hi = min(lo, -4 * sigma), max(hi, 4 * sigma)
    if hi <= lo:
        hi = lo + 1.0
    bins = np.linspace(lo, hi, 41)
    ax.hist(v[~cl.signal], bins=bins, color=_NOISE, label="below the threshold", zorder=2)
    if cl.n_signal:
        ax.hist(v[cl.signal], bins=bins, color=_SIGNAL, label="above: signal", zorder=2)
    if sigma > 0:
        t = np.linspace(lo, hi, 400)
        dens = np.exp(-0.5 * (t / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        ax.plot(t, v.shape[0] * (bins[1] - bins[0]) * dens, color=_TRUE, lw=1,
                label="noise alone, N(0, σ²)")  # fmt: skip
    ax.axvline(cl.cut, color=_SELECTED, lw=1, ls="--")
    ax.set_yscale("log")
    ax.set_ylim(0.7, 2.0 * max(float(np.histogram(v, bins=bins)[0].max()), 1.0))
    ax.set_title(f"All {v.shape[0]:,} noisy counts against pure noise", fontsize=10)
    ax.set_xlabel("noisy count")
    ax.set_ylabel("clusters (log)")
    ax.legend(loc="upper right", fontsize=8, frameon=False)


def _draw_pca(ax: Any, sample: NDArray[np.float64], chosen: NDArray[np.float64],
              n_pool: int, n_selected: int) -> None:  # fmt: skip
    ps, pc = pca_2d(sample, chosen)
    ax.scatter(ps[:, 0], ps[:, 1], s=4, c="#c9d1d9", linewidths=0, zorder=1,
               label=f"pool ({ps.shape[0]:,} of {n_pool:,} shown)")  # fmt: skip
    ax.scatter(pc[:, 0], pc[:, 1], s=9, c=_SELECTED, linewidths=0, alpha=0.8, zorder=2,
               label=f"selected ({pc.shape[0]:,} of {n_selected:,} shown)")  # fmt: skip
    ax.set_title("Selection against a sample of the pool (2-D PCA of the pool sample)", fontsize=10)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(loc="best", fontsize=8, markerscale=2, frameon=True)


def _figure(
    summary: dict[str, Any],
    cl: _Clusters | None,
    sample: NDArray[np.float64],
    chosen: NDArray[np.float64],
    n_pool: int,
    n_selected: int,
) -> tuple[bytes, int, int]:
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"font.family": "DejaVu Sans", "svg.hashsalt": "ecos-fast"}):
        if cl is None:
            fig = Figure(figsize=(9.0, 6.6), layout="constrained")
            _draw_pca(fig.subplots(), sample, chosen, n_pool, n_selected)
        else:
            fig = Figure(figsize=(_WIDTH_IN, 9.6), layout="constrained")
            grid = fig.add_gridspec(2, 2, width_ratios=[1.45, 1.0])
            _draw_clusters(fig.add_subplot(grid[0, 0]), cl)
            _draw_cumulative(fig.add_subplot(grid[0, 1]), cl)
            _draw_pca(fig.add_subplot(grid[1, 0]), sample, chosen, n_pool, n_selected)
            _draw_noise(fig.add_subplot(grid[1, 1]), cl, _num(summary.get("sigma")) or 0.0)
        fig.suptitle(_title(summary, cl), fontsize=12)
        buf = io.BytesIO()
        # No "Software" key: the bytes depend on the drawing only.
        fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    png = buf.getvalue()
    # The size as written (PNG IHDR: width, height, big-endian, at bytes 16..24).
    return png, int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


# -- the page ---------------------------------------------------------------------
_DETAILS = (
    ("method", "method"),
    ("budget", "budget"),
    ("n_selected", "rows selected"),
    ("shortfall", "shortfall"),
    ("n_samples", "pool rows"),
    ("n_clusters", "clusters R"),
    ("epsilon", "ε"),
    ("delta", "δ"),
    ("sigma", "σ"),
    ("threshold", "threshold (× σ)"),
    ("weights_from", "weights from"),
    ("within", "inside each cluster"),
    ("candidates", "candidates (× quota)"),
    ("response_signed_by", "response signed by"),
    ("response_verified", "signature verified"),
    ("indices_sha256", "SHA-256 of the indices"),
)
# Arrays, drawn or tabulated instead of listed; the output path, not the page's business.
_SKIP = {"quotas", "weights", "noisy_counts", "command", "output", "report"}


def _scalar(value: Any) -> str | None:
    """A value for the details table, or None for what does not belong there."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | float | np.integer | np.floating):
        return _fmt(float(value), 4)
    return None


def _details(summary: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for key, label in _DETAILS:
        value = _scalar(summary.get(key))
        if value is not None:
            rows.append({"label": label, "key": key, "value": value})
    comm = summary.get("communication")
    if isinstance(comm, dict):
        for key in ("download_bytes", "upload_bytes", "total_bytes"):
            if isinstance(comm.get(key), int | float):
                rows.append({"label": key.replace("_", " "), "key": "", "value": f"{comm[key]:,}"})
    known = {k for k, _ in _DETAILS} | _SKIP | {"communication"}
    for key in sorted(set(summary) - known, key=str):
        value = _scalar(summary[key])
        if value is not None:
            rows.append({"label": str(key), "key": "", "value": value})
    return rows


def _verdict(summary: dict[str, Any], cl: _Clusters | None) -> tuple[str, str]:
    n_sel = _fmt(_num(summary.get("n_selected")))
    b = _num(summary.get("budget"))
    of_budget = f"{n_sel} rows" if b is None else f"{n_sel} of a budget of {_fmt(b)} rows"
    pool = _fmt(_num(summary.get("n_samples")))
    shortfall = int(_num(summary.get("shortfall")) or 0)
    short = f" ({shortfall:,} short: too few rows where the client is)" if shortfall else ""
    method = str(summary.get("method", ""))
    if cl is None:
        what = _METHODS.get(method, "Selection")
        return (
            f"{what}: selected {of_budget} from a pool of {pool}"
            f"{short}, without the client's data (no release, no privacy spent).",
            "baseline",
        )
    r = cl.noisy.shape[0]
    where = (
        f"{_pct(cl.quota_share_signal)} of the quota went to the {cl.n_signal:,} of {r:,} "
        f"clusters with signal (noisy count above {_fmt(cl.cut)})"
        if cl.quota_share_signal is not None
        else f"{cl.n_signal:,} of {r:,} clusters have signal (noisy count above {_fmt(cl.cut)})"
    )
    low = cl.snr is not None and cl.snr < LOW_SIGNAL_RATIO
    tail = "; the release is close to noise, so this is close to a random selection" if low else ""
    return (
        f"Selected {of_budget} from a pool of {pool}{short}: {where}{tail}.",
        "warn" if low or cl.n_signal == 0 else "",
    )


def _chips(summary: dict[str, Any], cl: _Clusters | None) -> list[dict[str, str]]:
    if cl is None:
        return [{"text": "ε = 0: no release", "cls": "", "title": "a baseline uses no client data"}]
    eps, delta, sigma = (_num(summary.get(k)) for k in ("epsilon", "delta", "sigma"))
    r = cl.noisy.shape[0]
    chips = [
        {"text": f"ε = {'∞' if eps is None else _fmt(eps)}", "cls": "",
         "title": "the client's privacy loss for this release"},
        {"text": f"δ = {_fmt(delta)}", "cls": "", "title": "the probability the bound fails"},
        {"text": f"σ = {_fmt(sigma)}", "cls": "", "title": "noise standard deviation per count"},
        {"text": f"threshold = {_fmt(_num(summary.get('threshold')))}σ = {_fmt(cl.cut)}",
         "cls": "", "title": "a cluster's weight is its noisy count less this"},
    ]  # fmt: skip
    if cl.snr is None:
        chips.append({"text": "no noise (ε = ∞)", "cls": "bad", "title": "not private"})
    else:
        cls = "ok" if cl.snr >= 10 else "warn" if cl.snr >= LOW_SIGNAL_RATIO else "bad"
        chips.append(
            {
                "text": f"signal/noise = {cl.snr:.1f}",
                "cls": cls,
                "title": f"noisy total {_fmt(float(cl.noisy.sum()))} / (σ·√R = "
                f"{_fmt(float(sigma or 0) * math.sqrt(r))}); below {LOW_SIGNAL_RATIO:g} "
                "select warns that the release carries almost no signal",
            }
        )
    # Clusters the client never touched pass the threshold t with probability Q(t): R * Q(t)
    # of them are expected above it from noise alone (a binomial count).
    thr = _num(summary.get("threshold")) or 0.0
    q = 0.5 * math.erfc(thr / math.sqrt(2.0)) if cl.snr is not None else 0.0
    expected = r * q
    beyond = cl.n_signal > expected + 3.0 * math.sqrt(r * q * (1.0 - q))
    chips.append(
        {
            "text": f"{cl.n_signal:,} of {r:,} clusters above the threshold"
            + (f" (noise alone: ~{expected:.0f})" if cl.snr is not None else ""),
            "cls": "ok" if beyond else "warn" if cl.n_signal else "bad",
            "title": "clusters whose noisy count passes threshold·σ; noise alone puts "
            "R·Q(threshold) of them there",
        }
    )
    return chips


def _cluster_rows(cl: _Clusters) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    total_q = None if cl.quotas is None else int(cl.quotas.sum())

    def share(q: int) -> str:
        return _pct(q / total_q) if total_q else "—"

    top = cl.order[: min(TOP_CLUSTERS, cl.noisy.shape[0])]
    rows = []
    for rank, i in enumerate(top, start=1):
        q = None if cl.quotas is None else int(cl.quotas[i])
        rows.append(
            {
                "rank": rank,
                "cluster": int(i),
                "noisy": f"{cl.noisy[i]:,.1f}",
                "true": "" if cl.true is None else f"{cl.true[i]:,.0f}",
                "quota": "—" if q is None else f"{q:,}",
                "share": "—" if q is None else share(q),
                "signal": bool(cl.signal[i]),
            }
        )
    rest = cl.order[top.shape[0] :]
    if not rest.shape[0]:
        return rows, None
    q = None if cl.quotas is None else int(cl.quotas[rest].sum())
    return rows, {
        "n": int(rest.shape[0]),
        "noisy": f"{cl.noisy[rest].sum():,.1f}",
        "true": "" if cl.true is None else f"{cl.true[rest].sum():,.0f}",
        "quota": "—" if q is None else f"{q:,}",
        "share": "—" if q is None else share(q),
    }


def _render(context: dict[str, Any]) -> str:
    from importlib.resources import files

    import jinja2

    env = jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["thousands"] = lambda v: _fmt(_num(v))
    source = (files("ecos_fast") / "templates" / "report.html.j2").read_text(encoding="utf-8")
    return env.from_string(source).render(**context)


def write_report(
    path: str | os.PathLike[str],
    features: NDArray[Any],
    selected: NDArray[np.int64],
    *,
    summary: dict[str, Any],
    noisy_counts: NDArray[np.float64] | None = None,
    true_counts: NDArray[np.integer[Any]] | None = None,
    quotas: NDArray[np.int64] | None = None,
    seed: int = 0,
) -> Path:
    """Draw the report and write it as ``.png`` or ``.html``.

    Parameters
    ----------
    path : str or PathLike
        Ends in ``.png``, ``.html`` or ``.htm``.
    features : ndarray of shape (n_samples, n_features)
        The pool (as selection saw it).
    selected : ndarray of shape (n_selected,), int64
        Selected rows, in pick order.
    summary : dict
        The selection's summary (as ``select --summary`` writes it): ``method``,
        ``budget``, ``n_selected``, ``epsilon``, ``delta``, ``sigma``, ``threshold``
        and the other scalar fields are shown; strings are escaped.
    noisy_counts, true_counts, quotas : ndarray of shape (n_clusters,), optional
        The per-cluster panels, drawn only with ``noisy_counts`` (a baseline has
        none: its report is the PCA panel). ``true_counts`` is known only in
        simulations (the cloud never sees it).
    seed : int, default 0
        Seeds the subsamples of pool and selected rows plotted.

    Returns
    -------
    Path

    Notes
    -----
    Everything shown is computed from the pool, the selection and the client's
    already-private release (and, in a simulation, ``true_counts``): drawing it
    costs no further privacy, except that a report with ``true_counts`` shows
    non-private numbers and must not leave the simulation.
    """
    p = Path(path)
    kind = p.suffix.lower()
    if kind not in (".png", ".html", ".htm"):
        raise InvalidInputError(f"report path {p} must end in .png or .html")
    x = features
    sel = np.asarray(selected, dtype=np.int64)
    sub = _subsample(x.shape[0], MAX_PLOT_ROWS, seed)
    # Only the plotted rows are read; on a pool on disk their reads are queued together.
    sample = np.asarray(_stream.gather_rows(x, sub), dtype=np.float64)
    shown = sel[_subsample(sel.shape[0], MAX_PLOT_SELECTED, seed + 1)]
    chosen = np.asarray(_stream.gather_rows(x, shown), dtype=np.float64).reshape(-1, x.shape[1])
    summary = {"n_samples": int(x.shape[0]), "n_selected": int(sel.shape[0]), **summary}
    cl = None
    if noisy_counts is not None:
        cl = _clusters(
            noisy_counts,
            quotas,
            true_counts,
            _num(summary.get("sigma")) or 0.0,
            _num(summary.get("threshold")) or 0.0,
        )
    png, width, height = _figure(summary, cl, sample, chosen, int(x.shape[0]), int(sel.shape[0]))
    # The first figure of a process makes matplotlib import its lazy parts, and an
    # ImportError it catches on the way leaves a reference cycle through the frames
    # above it (f_back), this one and the caller's included: the pool passed here (and
    # every other local of the caller) stayed alive after the caller returned, until
    # the cyclic collector next ran (2.5 GB of an in-RAM pool in benches/pool_10m.py).
    # Collecting once here breaks it: ~90 ms with torch and matplotlib loaded (measured
    # 2026-12-02), beside ~2 s of drawing a report.
    gc.collect()
    if kind == ".png":
        return write_atomically(p, png)

    import matplotlib

    from . import __version__

    verdict, verdict_class = _verdict(summary, cl)
    clusters, rest = ([], None) if cl is None else _cluster_rows(cl)
    method = str(summary.get("method", ""))
    page = _render(
        {
            "method_label": _METHODS.get(method, method or "selection"),
            "n_selected": summary.get("n_selected"),
            "budget": summary.get("budget"),
            "n_samples": summary.get("n_samples"),
            "n_clusters": None if cl is None else cl.noisy.shape[0],
            "verdict": verdict,
            "verdict_class": verdict_class,
            "chips": _chips(summary, cl),
            "png_base64": base64.b64encode(png).decode("ascii"),
            "png_width": width,
            "png_height": height,
            "figure_alt": _title(summary, cl).replace("\n", "; "),
            "figure_caption": (
                "Pool and selected points are seeded samples; PCA axes are fitted on the "
                "pool sample."
                if cl is None
                else "Clusters are ranked by the client's noisy count (the release), not "
                "by centroid index. Pool and selected points are seeded samples."
            ),
            "clusters": clusters,
            "rest": rest,
            "has_true": cl is not None and cl.true is not None,
            "details": _details(summary),
            "ecos_version": __version__,
            "matplotlib_version": matplotlib.__version__,
        }
    )
    # The one atomic writer: a fresh O_EXCL temporary name, so a link planted at the
    # old fixed ".NAME.tmp" is never followed.
    return write_atomically(p, page.encode("utf-8"))
