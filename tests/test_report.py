"""The selection report (issue 14, item 8): a page people would rather look at than read.

One self-contained HTML page from a Jinja2 template (autoescape on) and a PNG: a one-line
verdict, ε/δ/σ and a signal-to-noise indicator, clusters sorted by noisy count (readable at
R = 1000), a PCA of samples of the pool and of the selection, no empty panels for the
baselines, at most 1280 px wide, the same bytes for the same inputs. A headless Chromium,
where installed, screenshots the page (``ECOS_FAST_SCREENSHOT=docs/report-screenshot.png``
keeps the picture).
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("jinja2")

from ecos_fast import report

R = 1000
SIGMA = 6.137
THRESHOLD = 2.0
BUDGET = 3000
HOSTILE = "<script>alert('cloud')</script>"


def _ecos_inputs() -> dict[str, Any]:
    """R = 1000 clusters in an arbitrary index order; the client sits in 40 of them."""
    rng = np.random.default_rng(3)
    pool = np.concatenate([rng.normal(m, 1.0, (1500, 8)) for m in (0, 4, 8)]).astype(np.float32)
    true = np.zeros(R)
    hot = rng.permutation(R)[:40]  # the client's clusters, scattered over the indices
    true[hot] = rng.integers(20, 90, 40)
    noisy = true + rng.normal(0, SIGMA, R)
    signal = noisy > THRESHOLD * SIGMA
    quotas = np.zeros(R, dtype=np.int64)
    quotas[signal] = BUDGET // int(signal.sum())
    quotas[np.flatnonzero(~signal)[:7]] = 30  # some budget outside the signal
    quotas[np.flatnonzero(signal)[0]] += BUDGET - int(quotas.sum())
    selected = rng.permutation(pool.shape[0])[:BUDGET].astype(np.int64)
    summary = {
        "method": "ecos",
        "budget": BUDGET,
        "n_selected": BUDGET,
        "shortfall": 0,
        "epsilon": 0.58,
        "delta": 1e-5,
        "sigma": SIGMA,
        "threshold": THRESHOLD,
        "noisy_counts": noisy,  # arrays in the summary are drawn, never dumped
        "quotas": quotas,
        "cloud": HOSTILE,
        "response_signed_by": '"><img src=x onerror=alert(1)>',
    }
    return {
        "features": pool,
        "selected": selected,
        "summary": summary,
        "noisy_counts": noisy,
        "true_counts": true.astype(np.int64),
        "quotas": quotas,
        "seed": 0,
    }


class _Drawn:
    """What write_report put in each figure it saved (axes, titles, labels)."""

    def __init__(self) -> None:
        self.figures: list[dict[str, Any]] = []

    def wrap(self, original: Any) -> Any:
        def savefig(fig: Any, *args: Any, **kwargs: Any) -> Any:
            self.figures.append(
                {
                    "n_axes": len(fig.axes),
                    "titles": [a.get_title() for a in fig.axes],
                    "has_data": [a.has_data() for a in fig.axes],
                    "xticklabels": [[t.get_text() for t in a.get_xticklabels()] for a in fig.axes],
                    "legends": [
                        [t.get_text() for t in a.get_legend().get_texts()] if a.get_legend() else []
                        for a in fig.axes
                    ],
                    "suptitle": fig.get_suptitle(),
                }
            )
            return original(fig, *args, **kwargs)

        return savefig


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One ECOS page (with simulated true counts), one baseline page, one ECOS PNG."""
    from matplotlib.figure import Figure

    out = tmp_path_factory.mktemp("report")
    inputs = _ecos_inputs()
    capture = _Drawn()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Figure, "savefig", capture.wrap(Figure.savefig))
        report.write_report(out / "ecos.html", **inputs)
        report.write_report(
            out / "random.html",
            inputs["features"],
            inputs["selected"][:500],
            summary={"method": "random", "budget": 500, "n_selected": 500, "cloud": HOSTILE},
        )
        report.write_report(out / "ecos.png", **inputs)
    ecos, baseline, png = capture.figures
    return {
        "dir": out,
        "inputs": inputs,
        "ecos_page": (out / "ecos.html").read_text(encoding="utf-8"),
        "random_page": (out / "random.html").read_text(encoding="utf-8"),
        "ecos_fig": ecos,
        "random_fig": baseline,
        "png": (out / "ecos.png").read_bytes(),
        "png_fig": png,
    }


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _text(fragment: str) -> str:
    """The visible text of an HTML fragment, entities decoded."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))).strip()


def _element(page: str, tag: str, ident: str) -> str:
    m = re.search(rf'<{tag}[^>]*id="{ident}"[^>]*>(.*?)</{tag}>', page, re.S)
    assert m, f"no <{tag} id={ident}>"
    return m.group(1)


# -- the verdict and the privacy numbers -------------------------------------------
def test_the_page_opens_with_a_one_line_verdict(drawn: dict[str, Any]) -> None:
    inputs = drawn["inputs"]
    noisy, quotas = inputs["noisy_counts"], inputs["quotas"]
    signal = noisy > THRESHOLD * SIGMA
    share = quotas[signal].sum() / quotas.sum()
    verdict = _text(_element(drawn["ecos_page"], "p", "verdict"))
    assert verdict.startswith(f"Selected {BUDGET:,} of a budget of {BUDGET:,} rows")
    assert f"pool of {inputs['features'].shape[0]:,}" in verdict
    assert f"{100 * share:.0f} % of the quota went to the {signal.sum()} of 1,000 clusters" in (
        verdict
    )
    assert 0.9 < share < 1.0  # the test's set-up: some quota outside the signal
    # The verdict comes before the figure.
    page = drawn["ecos_page"]
    assert page.index('id="verdict"') < page.index("<img")


def test_epsilon_delta_sigma_and_signal_to_noise_on_the_page_and_the_figure(
    drawn: dict[str, Any],
) -> None:
    noisy = drawn["inputs"]["noisy_counts"]
    snr = noisy.sum() / (SIGMA * math.sqrt(R))
    chips = _text(_element(drawn["ecos_page"], "ul", "privacy"))
    n_signal = int((noisy > THRESHOLD * SIGMA).sum())
    for want in (
        "ε = 0.58",
        "δ = 1e-05",
        "σ = 6.14",
        f"threshold = 2σ = {THRESHOLD * SIGMA:.3g}",
        f"signal/noise = {snr:.1f}",
        f"{n_signal} of 1,000 clusters above the threshold",
    ):
        assert want in chips, (want, chips)
    title = drawn["ecos_fig"]["suptitle"]
    for want in ("ε = 0.58", "δ = 1e-05", "σ = 6.14", f"signal/noise = {snr:.1f}"):
        assert want in title, (want, title)


# -- the clusters, sorted by weight ----------------------------------------------------
def test_clusters_are_sorted_by_noisy_count_in_the_table_and_the_figure(
    drawn: dict[str, Any],
) -> None:
    noisy = drawn["inputs"]["noisy_counts"]
    want = np.argsort(-noisy, kind="stable")[: report.TOP_CLUSTERS]
    assert not np.array_equal(np.sort(want), want)  # centroid order would differ
    rows = re.findall(r"<tr[^>]*><td>(\d+)</td><td class=\"l\">#(\d+)</td><td>([-\d.,]+)</td>",
                      _element(drawn["ecos_page"], "table", "clusters"))  # fmt: skip
    assert [int(c) for _, c, _ in rows] == want.tolist()
    assert [int(r) for r, _, _ in rows] == list(range(1, report.TOP_CLUSTERS + 1))
    shown = [float(v.replace(",", "")) for _, _, v in rows]
    assert shown == sorted(shown, reverse=True)
    # The table ends with one row for the other 975 clusters, not 975 rows.
    assert f"{R - report.TOP_CLUSTERS:,} other clusters" in drawn["ecos_page"]
    # The bar panel: the same clusters in the same order, then one "rest" tick.
    ticks = drawn["ecos_fig"]["xticklabels"][0]
    assert ticks[:-1] == [f"#{i}" for i in want]
    assert ticks[-1].startswith(f"{R - report.TOP_CLUSTERS:,} more")


def test_ecos_figure_has_four_panels_with_data_and_no_radius_curve(drawn: dict[str, Any]) -> None:
    fig = drawn["ecos_fig"]
    assert fig["n_axes"] == 4 and all(fig["has_data"])
    assert not any("radius" in t.lower() for t in fig["titles"])
    assert any("PCA" in t for t in fig["titles"])
    assert "true count (simulation)" in fig["legends"][0]  # true counts given
    assert drawn["png_fig"] == fig  # the PNG is the page's figure


def test_pca_shows_samples_of_the_pool_and_the_selection(drawn: dict[str, Any]) -> None:
    legend = next(lg for lg, t in zip(drawn["ecos_fig"]["legends"], drawn["ecos_fig"]["titles"],
                                      strict=True) if "PCA" in t)  # fmt: skip
    n_pool = drawn["inputs"]["features"].shape[0]
    assert legend == [
        f"pool ({min(n_pool, report.MAX_PLOT_ROWS):,} of {n_pool:,} shown)",
        f"selected ({report.MAX_PLOT_SELECTED:,} of {BUDGET:,} shown)",
    ]


def test_a_baseline_gets_no_empty_panels(drawn: dict[str, Any]) -> None:
    fig, page = drawn["random_fig"], drawn["random_page"]
    assert fig["n_axes"] == 1 and fig["has_data"] == [True] and "PCA" in fig["titles"][0]
    assert "no client response" not in page and 'id="clusters"' not in page
    verdict = _text(_element(page, "p", "verdict"))
    assert verdict.startswith("Random baseline: selected 500 of a budget of 500 rows")
    assert "no privacy spent" in verdict and "no client data used" in fig["suptitle"]


# -- what the page is not --------------------------------------------------------------
def test_no_raw_json_dump(drawn: dict[str, Any]) -> None:
    for page in (drawn["ecos_page"], drawn["random_page"]):
        assert "<pre" not in page and '{"' not in page and '": ' not in page
        assert "noisy_counts" not in page and "quotas" not in page


def test_hostile_strings_are_escaped(drawn: dict[str, Any]) -> None:
    for page in (drawn["ecos_page"], drawn["random_page"]):
        assert HOSTILE not in page and "<script" not in page
        assert html.escape(HOSTILE) in page or "&lt;script&gt;" in page
    assert "<img src=x" not in drawn["ecos_page"]
    assert len(re.findall(r"<img\b", drawn["ecos_page"])) == 1  # only the figure


def test_fits_a_1280_px_window(drawn: dict[str, Any]) -> None:
    for name in ("ecos.png",):
        assert _png_size((drawn["dir"] / name).read_bytes())[0] <= 1280
    for page in (drawn["ecos_page"], drawn["random_page"]):
        m = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
        assert m
        width, _ = _png_size(base64.b64decode(m.group(1)))
        assert width <= 1280 and f'width="{width}"' in page
        assert re.search(r"main \{[^}]*max-width: 1240px", page)
        assert re.search(r"figure img \{[^}]*max-width: 100%", page)


def test_same_inputs_give_the_same_bytes(drawn: dict[str, Any], tmp_path: Path) -> None:
    inputs = drawn["inputs"]
    report.write_report(tmp_path / "again.html", **inputs)
    assert (tmp_path / "again.html").read_text(encoding="utf-8") == drawn["ecos_page"]
    # The page inlines the same PNG as the .png report (so both are stable).
    assert base64.b64encode(drawn["png"]).decode() in drawn["ecos_page"]
    # The documented fields: the versions in the footer; no date and no path.
    page = drawn["ecos_page"]
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", page) and str(drawn["dir"]) not in page
    import matplotlib
    from ecos_fast import __version__

    assert f"ecos-fast {__version__} with matplotlib {matplotlib.__version__}" in page


def test_missing_jinja2_is_a_usage_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import click

    monkeypatch.setitem(sys.modules, "jinja2", None)  # import jinja2 -> ImportError
    with pytest.raises(click.UsageError, match=r"jinja2.*pip install 'ecos-fast\[report\]'"):
        report.require_matplotlib()


# -- a real browser ----------------------------------------------------------------
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_headless_chromium_screenshot_fits_1280_px(drawn: dict[str, Any], tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium on PATH (apt-get install chromium to run this check)")
    Image = pytest.importorskip("PIL.Image")

    shot = tmp_path / "shot.png"
    height = 2300
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size=1280,{height}", f"--screenshot={shot}",
         (drawn["dir"] / "ecos.html").as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert shot.exists(), proc.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.uint8)
    keep = os.environ.get("ECOS_FAST_SCREENSHOT")
    if keep:  # the window less the blank space under the page
        Path(keep).parent.mkdir(parents=True, exist_ok=True)
        bottom = int(np.flatnonzero((img < 250).any(axis=1))[-1]) + 24
        page = Image.open(shot).convert("RGB").crop((0, 0, 1280, min(bottom, height)))
        page.quantize(256).save(keep, optimize=True)  # a third of the bytes, for docs/
    assert img.shape == (height, 1280)
    # Nothing reaches the window's right edge (the page is centred in 1240 px with a
    # 20 px padding, so the last 30 columns are background), and the page is not blank.
    assert (img[:, -30:] > 250).all()
    assert (img < 128).mean() > 0.01
    # The figure is drawn at its own size: the cluster bars' blue is on screen.
    rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    blue = (abs(rgb[..., 0] - 0x1F) < 8) & (abs(rgb[..., 1] - 0x6F) < 8) & (rgb[..., 2] > 0xE0)
    assert blue.sum() > 2000


def test_a_release_close_to_noise_says_so(tmp_path: Path) -> None:
    # eps = 0.1: sigma = 30.7, and a client of 100 samples is lost in the noise of R = 200.
    rng = np.random.default_rng(5)
    r, sigma = 200, 30.7
    true = np.zeros(r)
    true[:10] = 10
    noisy = true + rng.normal(0, sigma, r)
    pool = rng.normal(0, 1, (400, 4)).astype(np.float32)
    summary = {"method": "ecos", "budget": 20, "epsilon": 0.1, "delta": 1e-5, "sigma": sigma,
               "threshold": 2.0}  # fmt: skip
    quotas = np.bincount(rng.integers(0, r, 20), minlength=r)  # spread by size
    report.write_report(tmp_path / "low.html", pool, np.arange(20), summary=summary,
                        noisy_counts=noisy, quotas=quotas)  # fmt: skip
    page = (tmp_path / "low.html").read_text(encoding="utf-8")
    snr = noisy.sum() / (sigma * math.sqrt(r))
    assert snr < report.LOW_SIGNAL_RATIO  # the set-up
    assert "close to noise" in _text(_element(page, "p", "verdict"))
    assert 'class="verdict warn"' in page
    expected = r * 0.5 * math.erfc(2.0 / math.sqrt(2.0))  # R * Q(2): noise alone above 2 sigma
    above = int((noisy > 2.0 * sigma).sum())
    chip = re.search(r'<li class="(\w+)"[^>]*>([^<]*clusters above the threshold[^<]*)</li>', page)
    assert chip and chip.group(2) == (
        f"{above} of {r} clusters above the threshold (noise alone: ~{expected:.0f})"
    )
    assert chip.group(1) in ("warn", "bad")  # not shown as signal
    assert re.search(r'<li class="(warn|bad)"[^>]*>signal/noise = ', page)


def test_the_built_wheel_ships_the_template() -> None:
    # maturin packs every file under python/ecos_fast (no package-data list to forget);
    # this checks the wheel `make wheel` left in dist/, where there is one.
    import zipfile

    wheels = sorted((Path(__file__).resolve().parent.parent / "dist").glob("ecos_fast-*.whl"))
    if not wheels:
        pytest.skip("no wheel in dist/ (make wheel builds one)")
    with zipfile.ZipFile(wheels[-1]) as zf:
        assert "ecos_fast/templates/report.html.j2" in zf.namelist()
        metadata = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [ln for ln in zf.read(metadata).decode().splitlines() if "Requires-Dist" in ln]
    assert any(ln.lower().startswith("requires-dist: jinja2>=3.1") and "report" in ln
               for ln in requires), requires  # fmt: skip


def test_the_first_report_of_a_process_does_not_keep_the_callers_pool_alive(
    tmp_path: Path,
) -> None:
    # matplotlib's first savefig catches an ImportError whose traceback's frames link
    # (f_back) to write_report's caller: the caller's pool stayed alive after it
    # returned, until the cyclic collector ran. A fresh process, collector off.
    code = f"""
import gc, weakref, numpy as np
from ecos_fast.report import write_report
gc.disable()
def caller():
    x = np.random.default_rng(0).normal(size=(2000, 8)).astype(np.float32)
    write_report({str(tmp_path / "r.html")!r}, x, np.arange(20),
                 summary={{"method": "random", "budget": 20, "n_selected": 20}})
    return weakref.ref(x)
print("alive" if caller()() is not None else "freed")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "freed"
