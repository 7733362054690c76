"""A one-page report of a selection, drawn with matplotlib (an optional extra).

Four panels: noisy (and, in simulations, true) coverage per centroid; the
per-cluster quotas; a 2-D PCA projection of the pool with the selected rows
highlighted; the covering radius of the pool by the first ``k`` selected rows.
Written as PNG, or as a self-contained HTML page (the PNG inlined, plus the
summary numbers). matplotlib is imported only here, only when a report is asked for.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .atomic import write_atomically
from .errors import InvalidInputError

__all__ = [
    "covering_radius_curve",
    "pca_2d",
    "require_matplotlib",
    "true_coverage",
    "write_report",
]

# The PCA and radius panels use at most this many pool rows (a seeded subsample).
MAX_PLOT_ROWS = 5000
_PICK_BLOCK = 256


def require_matplotlib() -> None:
    """Raise a clear error when matplotlib is missing.

    Raises
    ------
    click.UsageError
        From the CLI's point of view a report cannot be written: install the extra.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        import click

        raise click.UsageError(
            "--report needs matplotlib, which is not installed: "
            "pip install 'ecos-fast[report]' (or pip install matplotlib)"
        ) from None


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
    if axes.shape[1] < 2:  # one feature: pad with zeros
        axes = np.pad(axes, ((0, 0), (0, 2 - axes.shape[1])))
    return [(np.asarray(a, dtype=np.float64) - mean) @ axes for a in (s, *others)]


def covering_radius_curve(
    points: NDArray[np.floating[Any]], centers: NDArray[np.floating[Any]]
) -> NDArray[np.float64]:
    """Covering radius of ``points`` by the first ``k`` rows of ``centers``, for every k.

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
        JSON-serialisable numbers shown on the HTML page.
    noisy_counts, true_counts, quotas : ndarray of shape (n_clusters,), optional
        Per-centroid panels; skipped when None. ``true_counts`` is known only in
        simulations (the cloud never sees it).
    seed : int, default 0
        Seeds the subsample of pool rows plotted.

    Returns
    -------
    Path
    """
    from matplotlib.figure import Figure

    p = Path(path)
    kind = p.suffix.lower()
    if kind not in (".png", ".html", ".htm"):
        raise InvalidInputError(f"report path {p} must end in .png or .html")
    x = features
    sub = _subsample(x.shape[0], MAX_PLOT_ROWS, seed)
    sample = np.asarray(x[sub], dtype=np.float64)
    chosen = np.asarray(x[np.asarray(selected)], dtype=np.float64)

    fig = Figure(figsize=(13, 9.5), layout="constrained")
    ax = fig.subplots(2, 2)

    a = ax[0, 0]
    if noisy_counts is not None:
        r = np.arange(noisy_counts.shape[0])
        a.bar(r, noisy_counts, width=1.0, color="tab:blue", alpha=0.6, label="noisy (released)")
        if true_counts is not None:
            a.bar(
                r,
                true_counts,
                width=1.0,
                fill=False,
                edgecolor="black",
                lw=0.8,
                label="true (simulation)",
            )
        a.axhline(0, color="grey", lw=0.5)
        a.legend(loc="upper right")
    else:
        a.text(0.5, 0.5, "no client response (baseline)", ha="center", va="center")
    a.set(title="Coverage per centroid", xlabel="centroid", ylabel="count")

    a = ax[0, 1]
    if quotas is not None:
        a.bar(np.arange(quotas.shape[0]), quotas, width=1.0, color="tab:orange")
    else:
        a.text(0.5, 0.5, "no per-cluster quotas (baseline)", ha="center", va="center")
    a.set(title="Quota per centroid", xlabel="centroid", ylabel="rows selected")

    a = ax[1, 0]
    ps, pc = pca_2d(sample, chosen)
    a.scatter(ps[:, 0], ps[:, 1], s=3, c="lightgrey", label=f"pool ({sub.shape[0]} shown)")
    a.scatter(pc[:, 0], pc[:, 1], s=8, c="tab:red", label=f"selected ({chosen.shape[0]})")
    a.legend(loc="best", markerscale=2)
    a.set(title="Pool, 2-D PCA", xlabel="PC 1", ylabel="PC 2")

    a = ax[1, 1]
    radius = covering_radius_curve(sample, chosen)
    a.plot(np.arange(1, radius.shape[0] + 1), radius, color="tab:green")
    a.set(
        title="Covering radius of the pool by the first k selected rows",
        xlabel="k",
        ylabel="radius",
        xscale="log" if radius.shape[0] > 10 else "linear",
    )
    fig.suptitle(
        f"ecos-fast selection: method {summary.get('method')}, "
        f"{summary.get('n_selected')} of budget {summary.get('budget')}"
    )

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    png = buf.getvalue()
    if kind == ".png":
        out = png
    else:
        numbers = {
            k: v for k, v in summary.items() if k not in ("quotas", "weights", "noisy_counts")
        }
        page = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            "<title>ecos-fast selection report</title></head><body>"
            "<h1>ecos-fast selection report</h1>"
            f"<img alt='report' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
            "<h2>Summary</h2><pre>"
            + html.escape(json.dumps(numbers, indent=2, sort_keys=True, default=str))
            + "</pre></body></html>\n"
        )
        out = page.encode("utf-8")
    # The one atomic writer: a fresh O_EXCL temporary name, so a link planted at the
    # old fixed ".NAME.tmp" is never followed.
    return write_atomically(p, out)
