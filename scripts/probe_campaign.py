"""A seeded adversarial probe campaign against the Python API and the command line.

Plays a hostile peer and a careless user (issue 13): NaN/inf, huge finite values,
wrong dtypes and shapes, empty and ragged inputs, budgets and privacy parameters out
of range, thread counts and ``ECOS_FAST_NUM_THREADS`` values, truncated, tampered,
deeply nested and wrong-kind exchange files, mismatched response/centroids, signed
files checked with the wrong key, corrupted ledgers. Every probe gets one outcome:

- ``ok``: it ran (and, where a float64 NumPy reference exists, agreed with it);
- ``error``: a clear refusal, an :class:`~ecos_fast.errors.EcosError` subclass (and,
  for the command line, an exit code other than 0/1 with no traceback);
- ``CRASH``: any other exception, or exit code 1 / a traceback on the command line;
- ``SILENT WRONG``: it ran but disagreed with the reference, or accepted an input it
  must refuse;
- ``EXIT MISMATCH``: a clear error but not the exit code docs/cli.md gives.

Usage::

    python scripts/probe_campaign.py [--seed 0] [--no-cli] [--json OUT.json]

Exit status 0 when there are no crashes, silent wrong results or exit mismatches.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ecos_fast
import numpy as np
from ecos_fast import reference
from ecos_fast.errors import EcosError
from ecos_fast.ledger import Ledger, Release

OK, ERROR, CRASH, WRONG, MISMATCH = "ok", "error", "CRASH", "SILENT WRONG", "EXIT MISMATCH"
USAGE, INPUT, BUDGET, LEDGER = 2, 3, 4, 5
EXE = str(Path(sys.executable).with_name("ecos-fast"))


@dataclass
class Outcome:
    group: str
    name: str
    outcome: str
    detail: str
    exit_code: int | None = None


class Campaign:
    def __init__(self, seed: int, work: Path) -> None:
        self.rng = np.random.default_rng(seed)
        self.work = work
        self.results: list[Outcome] = []

    # -- the two kinds of probe ------------------------------------------------------
    def api(
        self,
        group: str,
        name: str,
        fn: Callable[[], Any],
        *,
        must_fail: bool = False,
        check: Callable[[Any], str | None] | None = None,
    ) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = fn()
        except EcosError as exc:
            self._add(group, name, ERROR, f"{type(exc).__name__}: {str(exc)[:110]}")
            return
        except OSError as exc:  # the file system's own answer (missing folder, ...)
            self._add(group, name, ERROR, f"{type(exc).__name__}: {str(exc)[:110]}")
            return
        except Exception as exc:
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            self._add(group, name, CRASH, tb[:200])
            return
        if must_fail:
            self._add(group, name, WRONG, f"accepted: {_short(value)}")
            return
        problem = None
        if check is not None:
            try:
                problem = check(value)
            except Exception as exc:
                problem = f"reference check raised {type(exc).__name__}: {exc}"
        if problem:
            self._add(group, name, WRONG, problem)
        else:
            self._add(group, name, OK, _short(value))

    def cli(
        self,
        group: str,
        name: str,
        args: list[str],
        *,
        expect: int | set[int] | None = None,
        env: dict[str, str] | None = None,
        check: Callable[[subprocess.CompletedProcess[str]], str | None] | None = None,
        timeout: float = 120.0,
    ) -> None:
        full_env = {**os.environ, "ECOS_FAST_NUM_THREADS": "2", **(env or {})}
        for key, value in (env or {}).items():
            if value == "":  # "" unsets
                full_env.pop(key, None)
        try:
            proc = subprocess.run(
                [EXE, "--json", "--quiet", *args],
                capture_output=True,
                text=True,
                env=full_env,
                cwd=self.work,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            self._add(group, name, CRASH, f"timed out after {timeout} s")
            return
        rc, err = proc.returncode, proc.stderr
        expected = {expect} if isinstance(expect, int) else expect
        if rc == 1 or "Traceback" in err or rc < 0:
            self._add(group, name, CRASH, err.strip().splitlines()[-1][:200] if err else "", rc)
            return
        if rc != 0:
            try:
                doc = json.loads(proc.stdout)
                kind = doc["error"]["type"]
            except (ValueError, KeyError, TypeError):
                kind = "no JSON error object"
                self._add(group, name, CRASH, f"exit {rc} without a JSON error: {err[-150:]}", rc)
                return
            if expected is not None and rc not in expected:
                self._add(group, name, MISMATCH, f"exit {rc} ({kind}), docs give {expected}", rc)
            else:
                self._add(group, name, ERROR, f"{kind}: {err.strip()[:110]}", rc)
            return
        if expected is not None and 0 not in expected:
            self._add(group, name, WRONG, f"exit 0, expected {expected}", rc)
            return
        problem = check(proc) if check is not None else None
        self._add(group, name, WRONG if problem else OK, problem or "exit 0", rc)

    def _add(self, group: str, name: str, outcome: str, detail: str, rc: int | None = None) -> None:
        self.results.append(Outcome(group, name, outcome, detail, rc))

    def path(self, name: str) -> Path:
        return self.work / name


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 90 else text[:87] + "..."


# -- references --------------------------------------------------------------------------


def _labels_agree(x: Any, cents: np.ndarray, labels: np.ndarray) -> str | None:
    """labels are a nearest centroid of each row under float64 (ties within rounding)."""
    x64 = np.asarray(x, dtype=np.float64)
    c64 = np.asarray(cents, dtype=np.float64)
    d = ((x64[:, None, :] - c64[None]) ** 2).sum(-1)
    best = d.min(axis=1)
    got = d[np.arange(len(x64)), np.asarray(labels)]
    bad = np.flatnonzero(got > best * (1 + 1e-4) + 1e-6 * (1 + best))
    if not np.isfinite(d).all():
        return "float64 reference distances not finite"
    if bad.size:
        return f"{bad.size} of {len(x64)} labels not nearest under float64"
    return None


def check_assign(x: Any, c: Any) -> Callable[[Any], str | None]:
    def check(out: Any) -> str | None:
        labels, d2 = out
        if not np.isfinite(d2).all():
            return "non-finite distances returned"
        return _labels_agree(x, c, labels)

    return check


def check_kmeans(x: Any) -> Callable[[Any], str | None]:
    def check(km: Any) -> str | None:
        if not np.isfinite(km.centroids).all() or not np.isfinite(km.inertia):
            return "non-finite centroids or inertia"
        return _labels_agree(x, km.centroids, km.labels)

    return check


def check_kcenter(x: Any, budget: int) -> Callable[[Any], str | None]:
    def check(out: Any) -> str | None:
        idx, radii = out
        if len(idx) != budget or len(set(idx.tolist())) != budget:
            return f"{len(idx)} picks (unique {len(set(idx.tolist()))}), budget {budget}"
        _, ref_radii = reference.kcenter_greedy(np.asarray(x, np.float64), budget)
        if not np.isfinite(radii).all():
            return "non-finite radii"
        if not np.allclose(radii, ref_radii, rtol=1e-3, atol=1e-4):
            return f"radii differ from float64: {radii[:3]} vs {ref_radii[:3]}"
        return None

    return check


def check_counts(x: Any, cents: Any) -> Callable[[Any], str | None]:
    def check(resp: Any) -> str | None:
        feats = cents.transform(np.asarray(x, np.float32))  # the transform being probed
        labels, _ = reference.assign(np.asarray(feats, np.float64), cents.centroids)
        truth = np.bincount(labels, minlength=cents.n_clusters)
        if not np.array_equal(np.asarray(resp.noisy_counts), truth):
            return f"sigma=0 counts {resp.noisy_counts[:5]} != float64 {truth[:5]}"
        return None

    return check


def _check_sigma(eps: float, delta: float) -> Callable[[Any], str | None]:
    """sigma against the analytic Gaussian mechanism (Balle & Wang 2018), in float64."""

    def check(resp: Any) -> str | None:
        from scipy.stats import norm

        if not np.isfinite(resp.noisy_counts).all():
            return "non-finite noisy counts"
        s, sens = float(resp.sigma), float(resp.sensitivity)
        if eps * s / sens > 30:  # exp(eps) overflows the formula; nothing to check there
            return None
        a, b = sens / (2 * s), eps * s / sens
        got = norm.cdf(a - b) - np.exp(eps) * norm.cdf(-a - b)
        if not np.isclose(got, delta, rtol=1e-3):
            return f"sigma={s} gives delta={got:.3g} at eps={eps}, not {delta}"
        return None

    return check


def check_selection(n: int, budget: int) -> Callable[[Any], str | None]:
    def check(sel: Any) -> str | None:
        idx = np.asarray(sel.indices)
        if len(idx) != budget or len(np.unique(idx)) != budget:
            return f"{len(idx)} picks, {len(np.unique(idx))} distinct, budget {budget}"
        if idx.min() < 0 or idx.max() >= n:
            return f"indices outside [0, {n})"
        return None

    return check


# -- inputs ------------------------------------------------------------------------------


def bad_features(rng: np.random.Generator, n: int, d: int) -> dict[str, tuple[Any, bool]]:
    """name -> (value, must_fail)."""
    base = rng.normal(size=(n, d)).astype(np.float32)

    def poke(value: float) -> np.ndarray:
        a = base.copy()
        a[int(rng.integers(n)), int(rng.integers(d))] = value
        return a

    out: dict[str, tuple[Any, bool]] = {
        "nan": (poke(np.nan), True),
        "inf": (poke(np.inf), True),
        "-inf": (poke(-np.inf), True),
        "huge 1e19": (base * np.float32(1e19), True),
        "huge 3e38": (poke(3e38), True),
        "float64 1e300": (np.where(base > 2, 1e300, base.astype(np.float64)), True),
        "bool": (base > 0, True),
        "complex": (base.astype(np.complex64), True),
        "object": (base.astype(object), True),
        "str": (base.astype(str), True),
        "float16": (base.astype(np.float16), False),
        "int64": ((base * 10).astype(np.int64), False),
        "uint8": ((np.abs(base) * 40).astype(np.uint8), False),
        "float64": (base.astype(np.float64), False),
        "fortran": (np.asfortranarray(base), False),
        "strided": (np.repeat(base, 2, axis=1)[:, ::2], False),
        "list": (base.tolist(), False),
        "1-D": (base[:, 0].copy(), True),
        "3-D": (base[None], True),
        "empty rows": (base[:0], True),
        "empty cols": (base[:, :0], True),
        "ragged": ([[1.0, 2.0], [3.0]], True),
        "scalar": (np.float32(1.0), True),
        "None": (None, True),
        "dict": ({"a": 1}, True),
        "missing path": ("/nonexistent/pool.npy", True),
        "1e-45 subnormal": (base * np.float32(1e-44), False),
    }
    try:
        import torch

        out["torch bfloat16"] = (torch.from_numpy(base).to(torch.bfloat16), True)
        out["torch float16"] = (torch.from_numpy(base).to(torch.float16), False)
        out["torch float32"] = (torch.from_numpy(base.copy()), False)
        out["torch requires_grad"] = (torch.from_numpy(base.copy()).requires_grad_(), False)
    except ImportError:
        pass
    return out


BUDGETS: dict[str, tuple[Any, bool]] = {
    "0": (0, True),
    "-1": (-1, True),
    "n+1": (None, True),  # filled in per pool
    "1e30": (1e30, True),
    "10**30": (10**30, True),
    "2.5": (2.5, True),
    "True": (True, True),
    "'5'": ("5", True),
    "None": (None, True),
    "np.int64(5)": (np.int64(5), False),
    "n": ("n", False),
}


def api_probes(c: Campaign) -> None:
    rng = c.rng
    n, d = 160, 6
    good = rng.normal(size=(n, d)).astype(np.float32)
    cents = ecos_fast.fit_centroids(good, 8, seed=0)
    cents_l2 = ecos_fast.fit_centroids(good, 8, seed=0, normalize="l2")
    c8 = cents.centroids
    resp = ecos_fast.respond(good, cents, 1.0, 1e-5, seed=0)
    sketch = ecos_fast.Sketch(cents, resp)

    for label, (x, must_fail) in bad_features(rng, n, d).items():
        plain = None
        if not must_fail:
            src = x.detach().float().numpy() if hasattr(x, "detach") else x
            plain = np.asarray(src, dtype=np.float64)
        g = f"features={label}"
        c.api(g, "assign(x, c)", lambda x=x: ecos_fast.assign(x, c8),
              must_fail=must_fail, check=None if must_fail else check_assign(plain, c8))  # fmt: skip
        c.api(g, "assign(good, centroids=x)", lambda x=x: ecos_fast.assign(good, x),
              must_fail=must_fail and label not in ("float16", "int64"))  # fmt: skip
        c.api(g, "kmeans(x, 4)", lambda x=x: ecos_fast.kmeans(x, 4, seed=0),
              must_fail=must_fail, check=None if must_fail else check_kmeans(plain))  # fmt: skip
        c.api(g, "kcenter_greedy(x, 5)", lambda x=x: ecos_fast.kcenter_greedy(x, 5),
              must_fail=must_fail, check=None if must_fail else check_kcenter(plain, 5))  # fmt: skip
        c.api(g, "fit_centroids(x, 4)", lambda x=x: ecos_fast.fit_centroids(x, 4),
              must_fail=must_fail)  # fmt: skip
        c.api(g, "respond(x, eps=inf)", lambda x=x: ecos_fast.respond(x, cents, float("inf"), 1e-5),
              must_fail=must_fail, check=None if must_fail else check_counts(plain, cents))  # fmt: skip
        c.api(g, "select(x, sketch, 10)", lambda x=x: ecos_fast.select(x, sketch, 10),
              must_fail=must_fail, check=None if must_fail else check_selection(n, 10))  # fmt: skip
        c.api(g, "select_kcenter(x, 5)", lambda x=x: ecos_fast.select_kcenter(x, 5),
              must_fail=must_fail, check=None if must_fail else check_selection(n, 5))  # fmt: skip
        c.api(g, "select_random(x, 5)", lambda x=x: ecos_fast.select_random(x, 5, seed=0),
              must_fail=must_fail and label not in ("bool", "complex", "object", "str", "huge 1e19",
                                                   "huge 3e38", "nan", "inf", "-inf", "float64 1e300",
                                                   "torch bfloat16"))  # fmt: skip

    # normalize="l2": huge finite rows are fine (unit vectors), NaN/inf are not.
    big = good * np.float32(1e19)
    c.api("l2", "fit_centroids(1e19, l2)", lambda: ecos_fast.fit_centroids(big, 8, normalize="l2"),
          check=lambda r: None if np.isfinite(r.centroids).all() else "non-finite")  # fmt: skip
    c.api("l2", "respond(1e19, l2 centroids)",
          lambda: ecos_fast.respond(big, cents_l2, float("inf"), 1e-5),
          check=check_counts(good, cents_l2))  # fmt: skip
    c.api("l2", "select(1e19, l2 sketch)",
          lambda: ecos_fast.select(big, ecos_fast.Sketch(cents_l2, ecos_fast.respond(
              good, cents_l2, 1.0, 1e-5, seed=0)), 10),
          check=check_selection(n, 10))  # fmt: skip
    nan_big = big.copy()
    nan_big[3, 3] = np.nan
    c.api("l2", "fit_centroids(nan, l2)", lambda: ecos_fast.fit_centroids(nan_big, 8, normalize="l2"),
          must_fail=True)  # fmt: skip
    zero = good.copy()
    zero[:5] = 0
    c.api("l2", "fit_centroids(zero rows, l2)", lambda: ecos_fast.fit_centroids(zero, 8, normalize="l2"),
          check=lambda r: None if np.isfinite(r.centroids).all() else "non-finite")  # fmt: skip

    # budgets / cluster counts
    for label, (b, must_fail) in BUDGETS.items():
        b = n + 1 if label == "n+1" else (n if label == "n" else b)
        g = f"budget={label}"
        c.api(g, "select", lambda b=b: ecos_fast.select(good, sketch, b), must_fail=must_fail,
              check=None if must_fail else check_selection(n, int(b)))  # fmt: skip
        c.api(g, "select_random", lambda b=b: ecos_fast.select_random(good, b, seed=0),
              must_fail=must_fail, check=None if must_fail else check_selection(n, int(b)))  # fmt: skip
        c.api(g, "select_random(n)", lambda b=b: ecos_fast.select_random(n, b, seed=0),
              must_fail=must_fail, check=None if must_fail else check_selection(n, int(b)))  # fmt: skip
        c.api(g, "select_kcenter", lambda b=b: ecos_fast.select_kcenter(good, b),
              must_fail=must_fail, check=None if must_fail else check_selection(n, int(b)))  # fmt: skip
        c.api(g, "kcenter_greedy", lambda b=b: ecos_fast.kcenter_greedy(good, b),
              must_fail=must_fail, check=None if must_fail else check_kcenter(good, int(b)))  # fmt: skip
        c.api(g, "kmeans n_clusters", lambda b=b: ecos_fast.kmeans(good, b, seed=0, max_iter=3),
              must_fail=must_fail)  # fmt: skip
    for size, must_fail in ((0, True), (-1, True), (10**19, True), (2**63 - 1, False), (True, True),
                            (5.0, True), ("10", True)):  # fmt: skip
        c.api("pool size", f"select_random({size!r}, 3)",
              lambda size=size: ecos_fast.select_random(size, 3, seed=0), must_fail=must_fail)  # fmt: skip

    # privacy parameters
    for eps, must_fail in ((0, True), (-1, True), (float("nan"), True), (1e300, True),
                           (1e7, True), (1e6, False), ("1", True), (True, True), (None, True),
                           (1e-300, False), (float("-inf"), True)):  # fmt: skip
        c.api("epsilon", f"respond(eps={eps!r})",
              lambda eps=eps: ecos_fast.respond(good, cents, eps, 1e-5, seed=0),
              must_fail=must_fail, check=None if must_fail else _check_sigma(eps, 1e-5))  # fmt: skip
    c.api("epsilon", "respond(eps=inf) exact counts",
          lambda: ecos_fast.respond(good, cents, float("inf"), 1e-5),
          check=check_counts(good, cents))  # fmt: skip
    for delta, must_fail in ((0, True), (1, True), (1.5, True), (-1, True), (float("nan"), True),
                             (float("inf"), True), (1e-300, False), (0.999, False), ("x", True)):  # fmt: skip
        c.api("delta", f"respond(delta={delta!r})",
              lambda delta=delta: ecos_fast.respond(good, cents, 1.0, delta, seed=0),
              must_fail=must_fail, check=None if must_fail else _check_sigma(1.0, delta))  # fmt: skip
    for rel in ("add_remove", "replace_one", "bogus", None, 1):
        c.api("relation", f"respond(relation={rel!r})",
              lambda rel=rel: ecos_fast.respond(good, cents, 1.0, 1e-5, relation=rel, seed=0),
              must_fail=rel not in ("add_remove", "replace_one"))  # fmt: skip

    # threads
    for t, must_fail in ((0, True), (-1, True), (True, True), (2.5, True), ("2", True),
                         (10**9, False), (10**30, False), (np.int64(2), False), (1, False)):  # fmt: skip
        c.api("n_threads", f"assign(n_threads={t!r})",
              lambda t=t: ecos_fast.assign(good, c8, n_threads=t), must_fail=must_fail,
              check=None if must_fail else check_assign(good, c8))  # fmt: skip
        c.api("n_threads", f"kcenter_greedy(n_threads={t!r})",
              lambda t=t: ecos_fast.kcenter_greedy(good, 5, n_threads=t), must_fail=must_fail,
              check=None if must_fail else check_kcenter(good, 5))  # fmt: skip
    saved = os.environ.get("ECOS_FAST_NUM_THREADS")
    for v, must_fail in (("abc", True), ("-1", True), ("0", True), ("1e9", True), ("2.5", True),
                         ("999999999", False), (" 2 ", False), ("", False)):  # fmt: skip
        os.environ["ECOS_FAST_NUM_THREADS"] = v
        c.api("env threads", f"assign with ECOS_FAST_NUM_THREADS={v!r}",
              lambda: ecos_fast.assign(good, c8), must_fail=must_fail,
              check=None if must_fail else check_assign(good, c8))  # fmt: skip
    if saved is None:
        os.environ.pop("ECOS_FAST_NUM_THREADS", None)
    else:
        os.environ["ECOS_FAST_NUM_THREADS"] = saved

    # other keyword arguments
    kw: list[tuple[str, Callable[[], Any], bool]] = [
        ("kmeans(tol='x')", lambda: ecos_fast.kmeans(good, 4, tol="x"), True),
        ("kmeans(tol=nan)", lambda: ecos_fast.kmeans(good, 4, tol=float("nan")), True),
        ("kmeans(tol=-1)", lambda: ecos_fast.kmeans(good, 4, tol=-1.0), True),
        ("kmeans(max_iter=0)", lambda: ecos_fast.kmeans(good, 4, max_iter=0), True),
        ("kmeans(max_iter=-1)", lambda: ecos_fast.kmeans(good, 4, max_iter=-1), True),
        ("kmeans(seed=-1)", lambda: ecos_fast.kmeans(good, 4, seed=-1), True),
        ("kmeans(seed=2**64)", lambda: ecos_fast.kmeans(good, 4, seed=2**64), True),
        ("kmeans(seed='a')", lambda: ecos_fast.kmeans(good, 4, seed="a"), True),
        ("kmeans(init=nan)", lambda: ecos_fast.kmeans(good, 2, init=np.full((2, d), np.nan)), True),
        (
            "kmeans(init wrong width)",
            lambda: ecos_fast.kmeans(good, 2, init=np.zeros((2, d + 1))),
            True,
        ),
        ("kmeans(init wrong k)", lambda: ecos_fast.kmeans(good, 2, init=np.zeros((3, d))), True),
        ("kmeans(n_local_trials=0)", lambda: ecos_fast.kmeans(good, 4, n_local_trials=0), True),
        ("kmeans(init_sample=0)", lambda: ecos_fast.kmeans(good, 4, init_sample=0), True),
        (
            "kmeans(max_points_per_centroid=0)",
            lambda: ecos_fast.kmeans(good, 4, max_points_per_centroid=0),
            True,
        ),
        ("kmeans(backend='x')", lambda: ecos_fast.kmeans(good, 4, backend="x"), True),
        ("kcenter_greedy(first=-1)", lambda: ecos_fast.kcenter_greedy(good, 3, first=-1), True),
        ("kcenter_greedy(first=n)", lambda: ecos_fast.kcenter_greedy(good, 3, first=n), True),
        ("kcenter_greedy(first=True)", lambda: ecos_fast.kcenter_greedy(good, 3, first=True), True),
        (
            "kcenter_greedy(initial=[n])",
            lambda: ecos_fast.kcenter_greedy(good, 3, initial=[n]),
            True,
        ),
        (
            "kcenter_greedy(initial dup)",
            lambda: ecos_fast.kcenter_greedy(good, 3, initial=[1, 1]),
            True,
        ),
        ("kcenter_greedy(rows=[])", lambda: ecos_fast.kcenter_greedy(good, 3, rows=[]), True),
        ("kcenter_greedy(rows=[-1])", lambda: ecos_fast.kcenter_greedy(good, 1, rows=[-1]), True),
        (
            "kcenter_greedy(rows float)",
            lambda: ecos_fast.kcenter_greedy(good, 1, rows=[0.5, 1.0]),
            True,
        ),
        (
            "select(threshold=nan)",
            lambda: ecos_fast.select(good, sketch, 5, threshold=float("nan")),
            True,
        ),
        (
            "select(threshold=inf)",
            lambda: ecos_fast.select(good, sketch, 5, threshold=float("inf")),
            True,
        ),
        ("select(threshold=-1)", lambda: ecos_fast.select(good, sketch, 5, threshold=-1.0), True),
        ("select(candidates=0)", lambda: ecos_fast.select(good, sketch, 5, candidates=0.0), True),
        (
            "select(candidates=nan)",
            lambda: ecos_fast.select(good, sketch, 5, candidates=float("nan")),
            True,
        ),
        ("select(fallback='x')", lambda: ecos_fast.select(good, sketch, 5, fallback="x"), True),
        ("select(weights='x')", lambda: ecos_fast.select(good, sketch, 5, weights="x"), True),
        ("select(within='x')", lambda: ecos_fast.select(good, sketch, 5, within="x"), True),
        (
            "select(labels wrong length)",
            lambda: ecos_fast.select(good, sketch, 5, labels=np.zeros(3, np.int64)),
            True,
        ),
        (
            "select(labels out of range)",
            lambda: ecos_fast.select(good, sketch, 5, labels=np.full(n, 99, np.int64)),
            True,
        ),
        ("select(sketch=None)", lambda: ecos_fast.select(good, None, 5), True),
        ("select(sketch=(cents,))", lambda: ecos_fast.select(good, (cents,), 5), True),
        ("select(pool wrong width)", lambda: ecos_fast.select(good[:, :3], sketch, 5), True),
        ("respond(wrong width)", lambda: ecos_fast.respond(good[:, :3], cents, 1.0, 1e-5), True),
        ("respond(centroids=array)", lambda: ecos_fast.respond(good, c8, 1.0, 1e-5), True),
        ("respond(seed=-1)", lambda: ecos_fast.respond(good, cents, 1.0, 1e-5, seed=-1), True),
        (
            "respond(extractor_fingerprint='x')",
            lambda: ecos_fast.respond(good, cents, 1.0, 1e-5, extractor_fingerprint="x"),
            True,
        ),
        (
            "fit_centroids(normalize='l1')",
            lambda: ecos_fast.fit_centroids(good, 4, normalize="l1"),
            True,
        ),
        ("fit_centroids(k > n)", lambda: ecos_fast.fit_centroids(good[:3], 4), True),
        ("Centroids(nan)", lambda: ecos_fast.Centroids(np.full((2, 2), np.nan, np.float32)), True),
        ("Centroids(1-D)", lambda: ecos_fast.Centroids(np.zeros(3, np.float32)), True),
        ("Centroids(empty)", lambda: ecos_fast.Centroids(np.zeros((0, 3), np.float32)), True),
        ("Centroids(1e19)", lambda: ecos_fast.Centroids(np.full((2, 2), 1e19, np.float32)), True),
        (
            "Sketch(mismatched)",
            lambda: ecos_fast.Sketch(ecos_fast.fit_centroids(good, 8, seed=1), resp),
            True,
        ),
        ("Sketch(cents, cents)", lambda: ecos_fast.Sketch(cents, cents), True),
    ]
    for name, fn, must_fail in kw:
        c.api("keywords", name, fn, must_fail=must_fail)


# -- exchange files ----------------------------------------------------------------------


def _header(data: bytes) -> tuple[int, dict[str, Any]]:
    (hlen,) = struct.unpack("<Q", data[:8])
    return hlen, json.loads(data[8 : 8 + hlen])


def _rewrite(data: bytes, header: dict[str, Any], payload: bytes | None = None) -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    (hlen,) = struct.unpack("<Q", data[:8])
    body = data[8 + hlen :] if payload is None else payload
    return struct.pack("<Q", len(raw)) + raw + body


def _recompute_checksum(data: bytes, counts_edit: Callable[[np.ndarray], None]) -> bytes:
    """Edit the tensor and recompute the keyless checksum, as a hostile peer can."""
    hlen, header = _header(data)
    meta = header["__metadata__"]
    name = next(k for k in header if k != "__metadata__")
    lo, hi = header[name]["data_offsets"]
    body = bytearray(data[8 + hlen :])
    dtype = {"F32": "<f4", "F64": "<f8", "I64": "<i8"}[header[name]["dtype"]]
    arr = np.frombuffer(bytes(body[lo:hi]), dtype=dtype).copy()
    counts_edit(arr)
    body[lo:hi] = arr.tobytes()
    import hashlib

    h = hashlib.sha256(meta["ecos"].encode())
    h.update(arr.tobytes())
    meta["sha256"] = h.hexdigest()
    return _rewrite(data, header, bytes(body))


def exchange_probes(c: Campaign, with_cli: bool) -> None:
    rng = c.rng
    n, d = 200, 5
    pool = rng.normal(size=(n, d)).astype(np.float32)
    priv = rng.normal(size=(120, d)).astype(np.float32)
    np.save(c.path("pool.npy"), pool)
    np.save(c.path("priv.npy"), priv)
    cents = ecos_fast.fit_centroids(pool, 10, seed=0)
    other = ecos_fast.fit_centroids(pool, 10, seed=1)
    resp = ecos_fast.respond(priv, cents, 1.0, 1e-5, seed=0)
    cpath, rpath = c.path("cents.safetensors"), c.path("resp.safetensors")
    ecos_fast.save_centroids(cents, cpath)
    ecos_fast.save_response(resp, rpath)
    ecos_fast.save_centroids(other, c.path("other.safetensors"))
    from ecos_fast.signing import generate_key

    generate_key(c.path("k1"))
    generate_key(c.path("k2"))
    ecos_fast.save_centroids(cents, c.path("cents.signed.safetensors"), sign_key=c.path("k1"))
    ecos_fast.save_response(resp, c.path("resp.signed.safetensors"), sign_key=c.path("k1"))

    variants: dict[str, tuple[bytes, bool]] = {}  # name -> (bytes of a response, must_fail)
    cdata, rdata = cpath.read_bytes(), rpath.read_bytes()
    for frac in (0.0, 0.01, 0.1, 0.3, 0.5, 0.9, 0.999):
        variants[f"truncated {frac:g}"] = (rdata[: int(len(rdata) * frac)], True)
    for _ in range(8):
        pos = int(rng.integers(len(rdata)))
        b = bytearray(rdata)
        b[pos] ^= 1 << int(rng.integers(8))
        variants[f"bit flip @{pos}"] = (bytes(b), True)
    variants["appended garbage"] = (rdata + b"\0" * 16, True)
    variants["random bytes"] = (rng.integers(0, 256, 512, dtype=np.uint8).tobytes(), True)
    variants["header len 2**63"] = (struct.pack("<Q", 2**63) + rdata[8:], True)
    variants["header len 0"] = (struct.pack("<Q", 0) + rdata[8:], True)
    nest = b"[" * 100_000 + b"]" * 100_000
    variants["100k nested ["] = (struct.pack("<Q", len(nest)) + nest + rdata[8:], True)
    _, header = _header(rdata)
    meta_doc = json.loads(header["__metadata__"]["ecos"])
    deep = json.loads(json.dumps(header))
    deep["__metadata__"]["ecos"] = "[" * 5000 + "]" * 5000
    variants["ecos meta 5k nested"] = (_rewrite(rdata, deep), True)
    arr_header = json.loads(json.dumps(header))
    arr_header["__metadata__"]["ecos"] = "[]"
    variants["ecos meta is []"] = (_rewrite(rdata, arr_header), True)
    notjson = json.loads(json.dumps(header))
    notjson["__metadata__"]["ecos"] = "{not json"
    variants["ecos meta not JSON"] = (_rewrite(rdata, notjson), True)
    nometa = {k: v for k, v in header.items() if k != "__metadata__"}
    variants["no metadata"] = (_rewrite(rdata, nometa), True)
    for key in list(meta_doc)[:12]:
        for bad in (None, "x", -1, 1e308, [1], {"a": 1}):
            doc = dict(meta_doc)
            doc[key] = bad
            h2 = json.loads(json.dumps(header))
            h2["__metadata__"]["ecos"] = json.dumps(doc)
            variants[f"field {key}={bad!r}"] = (_rewrite(rdata, h2), True)
    variants["counts*100, checksum recomputed"] = (
        _recompute_checksum(rdata, lambda a: a.__imul__(100)), False)  # fmt: skip
    variants["counts nan, checksum recomputed"] = (
        _recompute_checksum(rdata, lambda a: a.__setitem__(0, np.nan)), True)  # fmt: skip
    variants["centroid file as response"] = (cdata, True)
    variants["empty"] = (b"", True)

    for name, (data, must_fail) in variants.items():
        p = c.path("probe.safetensors")
        p.write_bytes(data)
        c.api("load_response", name, lambda p=p: ecos_fast.load_response(p, centroids=cents),
              must_fail=must_fail)  # fmt: skip
    # the same mutations applied to a centroid file (fewer: the loader is shared)
    for frac in (0.0, 0.2, 0.7, 0.99):
        p = c.path("probe_c.safetensors")
        p.write_bytes(cdata[: int(len(cdata) * frac)])
        c.api("load_centroids", f"truncated {frac:g}", lambda p=p: ecos_fast.load_centroids(p),
              must_fail=True)  # fmt: skip
    p = c.path("probe_c.safetensors")
    p.write_bytes(rdata)
    c.api("load_centroids", "response file as centroids", lambda: ecos_fast.load_centroids(p),
          must_fail=True)  # fmt: skip
    p2 = c.path("probe_c2.safetensors")
    p2.write_bytes(_recompute_checksum(cdata, lambda a: a.__setitem__(0, 1e19)))
    c.api("load_centroids", "centroid 1e19, checksum recomputed",
          lambda: ecos_fast.load_centroids(p2), must_fail=True)  # fmt: skip
    p3 = c.path("probe_c3.safetensors")
    p3.write_bytes(_recompute_checksum(cdata, lambda a: a.__setitem__(0, np.inf)))
    c.api("load_centroids", "centroid inf, checksum recomputed",
          lambda: ecos_fast.load_centroids(p3), must_fail=True)  # fmt: skip
    c.api("load_centroids", "directory", lambda: ecos_fast.load_centroids(c.work), must_fail=True)
    c.api(
        "load_centroids",
        "missing",
        lambda: ecos_fast.load_centroids(c.path("nope")),
        must_fail=True,
    )
    c.api("load_centroids", "max_bytes=10", lambda: ecos_fast.load_centroids(cpath, max_bytes=10),
          must_fail=True)  # fmt: skip
    # mismatched, signed, keys
    c.api("mismatch", "response against other centroids",
          lambda: ecos_fast.load_response(rpath, centroids=other), must_fail=True)  # fmt: skip
    c.api("mismatch", "Sketch(other, response)",
          lambda: ecos_fast.Sketch(other, ecos_fast.load_response(rpath)), must_fail=True)  # fmt: skip
    sc, sr = c.path("cents.signed.safetensors"), c.path("resp.signed.safetensors")
    pub1, pub2 = c.path("k1.pub"), c.path("k2.pub")
    c.api("signature", "signed, right key", lambda: ecos_fast.load_centroids(sc, verify_key=pub1))
    c.api("signature", "signed, wrong key",
          lambda: ecos_fast.load_centroids(sc, verify_key=pub2), must_fail=True)  # fmt: skip
    c.api("signature", "unsigned with verify_key",
          lambda: ecos_fast.load_centroids(cpath, verify_key=pub1), must_fail=True)  # fmt: skip
    forged = c.path("forged.safetensors")
    forged.write_bytes(_recompute_checksum(sr.read_bytes(), lambda a: a.__imul__(100)))
    c.api("signature", "signed response, counts changed, checksum recomputed",
          lambda: ecos_fast.load_response(forged, verify_key=pub1), must_fail=True)  # fmt: skip
    c.api("signature", "verify_key = private key file",
          lambda: ecos_fast.load_centroids(sc, verify_key=c.path("k1")), must_fail=True)  # fmt: skip
    c.api("signature", "verify_key = data file",
          lambda: ecos_fast.load_centroids(sc, verify_key=c.path("pool.npy")), must_fail=True)  # fmt: skip
    c.api("signature", "verify_key missing",
          lambda: ecos_fast.load_centroids(sc, verify_key=c.path("nope.pub")), must_fail=True)  # fmt: skip
    c.api("signature", "sign_key = public key",
          lambda: ecos_fast.save_centroids(cents, c.path("x.safetensors"), sign_key=pub1),
          must_fail=True)  # fmt: skip
    c.api("signature", "verify_key = 123", lambda: ecos_fast.load_centroids(sc, verify_key=123),
          must_fail=True)  # fmt: skip
    c.api("save", "save_centroids into missing folder",
          lambda: ecos_fast.save_centroids(cents, c.path("no/dir/x.safetensors")), must_fail=True)  # fmt: skip
    c.api("save", "save_response(centroids)",
          lambda: ecos_fast.save_response(cents, c.path("x.safetensors")), must_fail=True)  # fmt: skip

    if not with_cli:
        return
    for name in ("truncated 0.5", "bit flip", "100k nested [", "ecos meta 5k nested",
                 "ecos meta not JSON", "random bytes", "empty", "centroid file as response",
                 "counts nan, checksum recomputed", "header len 2**63"):  # fmt: skip
        key = next(k for k in variants if k.startswith(name))
        p = c.path(f"cli_{abs(hash(key)) % 10**8}.safetensors")
        p.write_bytes(variants[key][0])
        # a valid centroid file is one to inspect, only not a response
        inspect_code = 0 if key == "centroid file as response" else INPUT
        c.cli("cli inspect", key, ["inspect", str(p)], expect=inspect_code)
        c.cli("cli select", key, ["select", "pool.npy", "cents.safetensors", str(p), "-b", "5",
                                  "-o", "sel.npy"], expect=INPUT)  # fmt: skip
    for frac in (0.0, 0.5, 0.99):
        p = c.path(f"cli_c{frac}.safetensors")
        p.write_bytes(cdata[: int(len(cdata) * frac)])
        c.cli("cli respond", f"centroids truncated {frac:g}",
              ["respond", str(p), "priv.npy", "-o", "r.safetensors", "--epsilon", "1"], expect=INPUT)  # fmt: skip
        c.cli("cli inspect", f"centroids truncated {frac:g}", ["inspect", str(p)], expect=INPUT)
    c.cli("cli select", "response for other centroids",
          ["select", "pool.npy", "other.safetensors", "resp.safetensors", "-b", "5", "-o", "s.npy"],
          expect=INPUT)  # fmt: skip
    c.cli(
        "cli inspect",
        "response against other centroids",
        ["inspect", "resp.safetensors", "--centroids", "other.safetensors"],
        expect=INPUT,
    )
    c.cli("cli select", "forged signed response, --verify-key",
          ["select", "pool.npy", "cents.safetensors", str(forged), "-b", "5", "-o", "s.npy",
           "--verify-key", "k1.pub"], expect=INPUT)  # fmt: skip
    c.cli("cli select", "unsigned response, --verify-key",
          ["select", "pool.npy", "cents.safetensors", "resp.safetensors", "-b", "5", "-o", "s.npy",
           "--verify-key", "k1.pub"], expect=INPUT)  # fmt: skip
    c.cli("cli select", "signed response, wrong --verify-key",
          ["select", "pool.npy", "cents.safetensors", "resp.signed.safetensors", "-b", "5",
           "-o", "s.npy", "--verify-key", "k2.pub"], expect=INPUT)  # fmt: skip
    c.cli("cli select", "signed response, right --verify-key",
          ["select", "pool.npy", "cents.safetensors", "resp.signed.safetensors", "-b", "5",
           "-o", "s.npy", "--verify-key", "k1.pub"], expect=0)  # fmt: skip
    c.cli("cli respond", "--verify-key wrong key",
          ["respond", "cents.signed.safetensors", "priv.npy", "-o", "r.safetensors",
           "--epsilon", "1", "--verify-key", "k2.pub"], expect=INPUT)  # fmt: skip
    c.cli("cli respond", "--sign-key is a .pub",
          ["respond", "cents.safetensors", "priv.npy", "-o", "r.safetensors", "--epsilon", "1",
           "--sign-key", "k1.pub"], expect=INPUT)  # fmt: skip
    c.cli("cli respond", "--sign-key missing",
          ["respond", "cents.safetensors", "priv.npy", "-o", "r.safetensors", "--epsilon", "1",
           "--sign-key", "nokey"], expect={USAGE, INPUT})  # fmt: skip
    c.cli("cli sketch", "--sign-key is pool.npy",
          ["sketch", "pool.npy", "-o", "c2.safetensors", "-k", "4", "--sign-key", "pool.npy"],
          expect=INPUT)  # fmt: skip
    c.cli("cli keygen", "onto existing key", ["keygen", "k1"], expect=INPUT)
    c.cli("cli keygen", "into missing folder", ["keygen", "no/such/dir/key"], expect=INPUT)
    c.cli("cli keygen", "fresh", ["keygen", "k3"], expect=0)
    c.cli("cli keygen", "onto a directory", ["keygen", "."], expect={USAGE, INPUT})


# -- command line: features, options, environment ------------------------------------------


def cli_probes(c: Campaign) -> None:
    rng = c.rng
    n, d = 200, 5
    base = rng.normal(size=(n, d)).astype(np.float32)
    files: dict[str, tuple[Any, int]] = {
        "nan": (np.where(base > 2.5, np.nan, base).astype(np.float32), INPUT),
        "inf": (np.where(base > 2.5, np.inf, base).astype(np.float32), INPUT),
        "huge 1e19": (base * np.float32(1e19), INPUT),
        "bool": (base > 0, INPUT),
        "complex": (base.astype(np.complex64), INPUT),
        "float16": (base.astype(np.float16), 0),
        "int32": ((base * 100).astype(np.int32), 0),
        "1-D": (base[:, 0].copy(), INPUT),
        "3-D": (base[None], INPUT),
        "empty": (base[:0], INPUT),
        "object": (base.astype(object), INPUT),
        "str": (base.astype("U8"), INPUT),
    }
    for label, (arr, code) in files.items():
        p = c.path(f"feat_{label.replace(' ', '_')}.npy")
        np.save(p, arr, allow_pickle=True)
        c.cli("cli sketch", f"POOL={label}", ["sketch", str(p), "-o", "c.safetensors", "-k", "4"],
              expect=code)  # fmt: skip
        c.cli("cli respond", f"PRIVATE={label}",
              ["respond", "cents.safetensors", str(p), "-o", "r.safetensors", "--epsilon", "1",
               "--seed", "0"], expect=code if label not in ("float16", "int32") else {0, INPUT})  # fmt: skip
    c.path("text.npy").write_text("not a numpy file\n")
    c.cli(
        "cli sketch",
        "POOL=text named .npy",
        ["sketch", "text.npy", "-o", "c.safetensors"],
        expect=INPUT,
    )
    c.cli("cli sketch", "POOL=missing", ["sketch", "missing.npy", "-o", "c.safetensors"],
          expect={USAGE, INPUT})  # fmt: skip
    (c.work / "emptydir").mkdir(exist_ok=True)
    c.cli("cli sketch", "POOL=empty folder", ["sketch", "emptydir", "-o", "c.safetensors"],
          expect=INPUT)  # fmt: skip
    c.cli("cli sketch", "huge 1e19 --normalize l2",
          ["sketch", "feat_huge_1e19.npy", "-o", "c_l2.safetensors", "-k", "4", "--normalize", "l2"],
          expect=0)  # fmt: skip
    c.cli("cli sketch", "-k > n", ["sketch", "pool.npy", "-o", "c.safetensors", "-k", "1000"],
          expect=INPUT)  # fmt: skip
    c.cli("cli sketch", "-o into missing folder",
          ["sketch", "pool.npy", "-o", "no/dir/c.safetensors", "-k", "4"], expect=INPUT)  # fmt: skip

    eps_cases = [("0", USAGE), ("-1", USAGE), ("nan", USAGE), ("1e300", USAGE), ("1e7", USAGE),
                 ("abc", USAGE), ("inf", 0), ("1e-300", 0)]  # fmt: skip
    for eps, code in eps_cases:
        c.cli("cli respond", f"--epsilon {eps}",
              ["respond", "cents.safetensors", "priv.npy", "-o", "r.safetensors", "--epsilon", eps,
               "--seed", "0"], expect=code)  # fmt: skip
    for delta in ("0", "1", "1.5", "-1", "nan", "inf"):
        c.cli("cli respond", f"--delta {delta}",
              ["respond", "cents.safetensors", "priv.npy", "-o", "r.safetensors", "--epsilon", "1",
               "--delta", delta], expect=USAGE)  # fmt: skip
    c.cli("cli respond", "--epsilon inf --ledger",
          ["respond", "cents.safetensors", "priv.npy", "-o", "r.safetensors", "--epsilon", "inf",
           "--ledger", "L.sqlite"], expect=BUDGET)  # fmt: skip
    c.cli("cli respond", "--epsilon inf --ledger --budget-epsilon 1",
          ["respond", "cents.safetensors", "priv.npy", "-o", "r.safetensors", "--epsilon", "inf",
           "--ledger", "L.sqlite", "--budget-epsilon", "1"], expect=BUDGET)  # fmt: skip
    for be in ("0", "-1", "nan", "inf", "1e300"):
        c.cli("cli respond", f"--budget-epsilon {be}",
              ["respond", "cents.safetensors", "priv.npy", "-o", "r.safetensors", "--epsilon", "1",
               "--ledger", "L2.sqlite", "--budget-epsilon", be],
              expect={"0": {USAGE, BUDGET}, "inf": {0, USAGE}, "1e300": {0, USAGE}}.get(be, {USAGE}))  # fmt: skip
    c.cli("cli respond", "--budget-epsilon without --ledger",
          ["respond", "cents.safetensors", "priv.npy", "-o", "r.safetensors", "--epsilon", "1",
           "--budget-epsilon", "3"], expect=USAGE)  # fmt: skip
    c.cli("cli respond", "budget exhausted",
          ["respond", "cents.safetensors", "priv.npy", "-o", "r.safetensors", "--epsilon", "2",
           "--ledger", "L3.sqlite", "--budget-epsilon", "1"], expect=BUDGET)  # fmt: skip
    c.cli("cli respond", "--relation bogus",
          ["respond", "cents.safetensors", "priv.npy", "-o", "r.safetensors", "--epsilon", "1",
           "--relation", "bogus"], expect=USAGE)  # fmt: skip
    c.cli("cli respond", "wrong width private",
          ["respond", "cents.safetensors", "feat_1-D.npy", "-o", "r.safetensors", "--epsilon", "1"],
          expect=INPUT)  # fmt: skip

    for b in ("0", "-1", "201", "1e30", "abc", "99999999999999999999"):
        c.cli("cli select", f"--budget {b}",
              ["select", "pool.npy", "cents.safetensors", "resp.safetensors", "-b", b, "-o", "s.npy"],
              expect={INPUT} if b in ("201", "99999999999999999999") else {USAGE})  # fmt: skip
    for method in ("random", "kcenter"):
        c.cli("cli select", f"--method {method} --budget 201",
              ["select", "pool.npy", "--method", method, "-b", "201", "-o", "s.npy"], expect=INPUT)  # fmt: skip
        c.cli("cli select", f"--method {method} ok",
              ["select", "pool.npy", "--method", method, "-b", "7", "-o", "s.npy"], expect=0,
              check=_check_npy(c.path("s.npy"), 7, n))  # fmt: skip
    for opt, val in (("--threshold", "nan"), ("--threshold", "inf"), ("--candidates", "0"),
                     ("--candidates", "nan"), ("--fallback", "x"), ("--within", "x")):  # fmt: skip
        c.cli("cli select", f"{opt} {val}",
              ["select", "pool.npy", "cents.safetensors", "resp.safetensors", "-b", "5", "-o", "s.npy",
               opt, val], expect=USAGE)  # fmt: skip
    c.cli("cli select", "-o s.bin", ["select", "pool.npy", "--method", "random", "-b", "5", "-o", "s.bin"],
          expect=USAGE)  # fmt: skip
    c.cli("cli select", "--report x.pdf",
          ["select", "pool.npy", "--method", "random", "-b", "5", "-o", "s.npy", "--report", "x.pdf"],
          expect=USAGE)  # fmt: skip
    c.cli("cli select", "--method ecos without files",
          ["select", "pool.npy", "-b", "5", "-o", "s.npy"], expect=USAGE)  # fmt: skip
    c.cli("cli select", "ecos ok",
          ["select", "pool.npy", "cents.safetensors", "resp.safetensors", "-b", "9", "-o", "s.npy"],
          expect=0, check=_check_npy(c.path("s.npy"), 9, n))  # fmt: skip
    c.cli("cli select", "pool of wrong width",
          ["select", "feat_nan.npy", "cents.safetensors", "resp.safetensors", "-b", "5", "-o", "s.npy"],
          expect=INPUT)  # fmt: skip

    for t in ("0", "-1", "abc", "1e9", "99999"):
        c.cli("cli threads", f"--threads {t}",
              ["select", "pool.npy", "--method", "kcenter", "-b", "5", "-o", "s.npy", "--threads", t],
              expect={USAGE} if t != "99999" else {0})  # fmt: skip
    for v in ("abc", "-1", "0", "1e9", "2.5", "99999999"):
        c.cli("cli env", f"ECOS_FAST_NUM_THREADS={v}",
              ["select", "pool.npy", "--method", "kcenter", "-b", "5", "-o", "s.npy"],
              env={"ECOS_FAST_NUM_THREADS": v}, expect={USAGE} if v != "99999999" else {0})  # fmt: skip
    c.cli("cli env", "ECOS_FAST_NUM_THREADS=abc info", ["info"], env={"ECOS_FAST_NUM_THREADS": "abc"},
          expect=USAGE)  # fmt: skip
    c.cli("cli", "unknown command", ["frobnicate"], expect=USAGE)
    c.cli("cli", "unknown option", ["sketch", "--frob"], expect=USAGE)


def _check_npy(p: Path, budget: int, n: int) -> Callable[[Any], str | None]:
    def check(_: Any) -> str | None:
        idx = np.load(p)
        if len(idx) != budget or len(np.unique(idx)) != budget or idx.min() < 0 or idx.max() >= n:
            return f"bad selection file: {idx[:5]} ({len(idx)} rows)"
        return None

    return check


# -- ledgers -----------------------------------------------------------------------------


def ledger_probes(c: Campaign, with_cli: bool) -> None:
    rel = Release(cloud="probe", mechanism="gaussian", sigma=4.0, sensitivity=1.0)
    bad: dict[str, Callable[[Path], None]] = {
        "random bytes": lambda p: p.write_bytes(
            c.rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
        ),
        "text file": lambda p: p.write_text("hello\n"),
        "other sqlite db": lambda p: _sqlite(p, "CREATE TABLE t (a INTEGER)"),
        "releases table, wrong columns": lambda p: _sqlite(p, "CREATE TABLE releases (a TEXT)"),
        "truncated ledger": lambda p: _truncated_ledger(p, rel),
        "sigma as text": lambda p: _poisoned_ledger(p, rel, "UPDATE releases SET sigma = 'abc'"),
        "sigma negative": lambda p: _poisoned_ledger(p, rel, "UPDATE releases SET sigma = -1"),
        "sigma NaN-ish text": lambda p: _poisoned_ledger(
            p, rel, "UPDATE releases SET sigma = 'nan'"
        ),
        "count 0": lambda p: _poisoned_ledger(p, rel, "UPDATE releases SET count = 0"),
        "count -5": lambda p: _poisoned_ledger(p, rel, "UPDATE releases SET count = -5"),
        "relation bogus": lambda p: _poisoned_ledger(p, rel, "UPDATE releases SET relation = 'x'"),
        "mechanism bogus": lambda p: _poisoned_ledger(
            p, rel, "UPDATE releases SET mechanism = 'x'"
        ),
        "sensitivity 0": lambda p: _poisoned_ledger(p, rel, "UPDATE releases SET sensitivity = 0"),
        "schema version 999": lambda p: _poisoned_ledger(p, rel, "PRAGMA user_version = 999"),
        "a directory": lambda p: p.mkdir(),
    }
    for name, make in bad.items():
        p = c.path(f"ledger_{abs(hash(name)) % 10**8}.sqlite")
        make(p)
        c.api("Ledger", f"{name}: total_epsilon",
              lambda p=p: _ledger_total(p), must_fail=True)  # fmt: skip
        c.api("Ledger", f"{name}: spend", lambda p=p: _ledger_spend(p, rel), must_fail=True)
        if with_cli:
            # a directory is refused by the option's own check (a usage error)
            code = {USAGE, LEDGER} if name == "a directory" else LEDGER
            c.cli("cli ledger", name, ["ledger", str(p)], expect=code)
            c.cli("cli respond --ledger", name,
                  ["respond", "cents.safetensors", "priv.npy", "-o", "r.safetensors", "--epsilon", "1",
                   "--ledger", str(p), "--budget-epsilon", "5", "--cloud", "probe"],
                  expect=code)  # fmt: skip
    empty = c.path("L_empty.sqlite")
    empty.write_bytes(b"")  # SQLite reads a 0-byte file as an empty database
    c.api("Ledger", "empty file: spend, then total", lambda: (_ledger_spend(empty, rel),
          _ledger_total(empty))[1], check=lambda v: None if v > 0 else f"total {v}")  # fmt: skip
    c.api("Ledger", "missing folder", lambda: _ledger_spend(c.path("no/dir/L.sqlite"), rel),
          must_fail=True)  # fmt: skip
    c.api("Ledger", "budget_epsilon=nan", lambda: Ledger(c.path("Ln.sqlite"), budget_epsilon=float("nan")),
          must_fail=True)  # fmt: skip
    c.api("Ledger", "delta=2", lambda: Ledger(c.path("Ln.sqlite"), delta=2.0), must_fail=True)
    c.api(
        "Ledger",
        "accountant='x'",
        lambda: Ledger(c.path("Ln.sqlite"), accountant="x"),
        must_fail=True,
    )
    c.api("Ledger", "timeout=-1", lambda: Ledger(c.path("Ln.sqlite"), timeout=-1.0), must_fail=True)
    c.api("Ledger", "sigma=0 release", lambda: _ledger_spend(c.path("L0.sqlite"), Release(
        cloud="p", mechanism="gaussian", sigma=0.0)), must_fail=True)  # fmt: skip
    c.api("Ledger", "sigma=nan release", lambda: _ledger_spend(c.path("L0.sqlite"), Release(
        cloud="p", mechanism="gaussian", sigma=float("nan"))), must_fail=True)  # fmt: skip
    c.api("Ledger", "count=0 release", lambda: _ledger_spend(c.path("L0.sqlite"), Release(
        cloud="p", mechanism="gaussian", sigma=2.0, count=0)), must_fail=True)  # fmt: skip
    c.api("Ledger", "relation='x' release", lambda: _ledger_spend(c.path("L0.sqlite"), Release(
        cloud="p", mechanism="gaussian", sigma=2.0, relation="x")), must_fail=True)  # fmt: skip
    ro = c.path("L_ro.sqlite")
    _ledger_spend(ro, rel)
    ro_dir = c.path("ro_dir")
    ro_dir.mkdir(exist_ok=True)
    _ledger_spend(ro_dir / "L.sqlite", rel)
    os.chmod(ro, 0o444)
    os.chmod(ro_dir, 0o555)
    if os.geteuid() != 0:  # root ignores file modes: nothing to probe there
        c.api("Ledger", "read-only file: spend", lambda: _ledger_spend(ro, rel), must_fail=True)
        if with_cli:
            c.cli("cli respond --ledger", "read-only file",
                  ["respond", "cents.safetensors", "priv.npy", "-o", "r.safetensors", "--epsilon", "1",
                   "--ledger", str(ro)], expect=LEDGER)  # fmt: skip
    c.api("Ledger", "read-only file: total", lambda: _ledger_total(ro),
          check=lambda v: None if np.isfinite(v) and v > 0 else f"total {v}")  # fmt: skip


def _sqlite(p: Path, sql: str) -> None:
    con = sqlite3.connect(p)
    con.execute(sql)
    con.commit()
    con.close()


def _ledger_spend(p: Path, rel: Release) -> Any:
    with Ledger(p) as led:
        return led.spend(rel)


def _ledger_total(p: Path) -> Any:
    with Ledger(p, read_only=True) as led:
        return led.total_epsilon("probe")


def _truncated_ledger(p: Path, rel: Release) -> None:
    for _ in range(3):
        _ledger_spend(p, rel)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _poisoned_ledger(p: Path, rel: Release, sql: str) -> None:
    _ledger_spend(p, rel)
    _sqlite(p, sql)


# -- report ------------------------------------------------------------------------------


def summarize(results: list[Outcome], seconds: float, argv: list[str]) -> int:
    counts = Counter(r.outcome for r in results)
    print(f"\nprobe campaign: {' '.join(argv)}  ({seconds:.0f} s)")
    print(
        f"{'group':<28} {'probes':>6} {'ok':>5} {'error':>6} {'crash':>6} {'wrong':>6} {'exit':>5}"
    )
    groups: dict[str, Counter[str]] = {}
    for r in results:
        key = r.group if r.group.startswith("cli") else r.group.split("=")[0]
        groups.setdefault(key, Counter())[r.outcome] += 1
    for g, cnt in groups.items():
        print(f"{g:<28} {sum(cnt.values()):>6} {cnt[OK]:>5} {cnt[ERROR]:>6} {cnt[CRASH]:>6} "
              f"{cnt[WRONG]:>6} {cnt[MISMATCH]:>5}")  # fmt: skip
    print(f"{'TOTAL':<28} {len(results):>6} {counts[OK]:>5} {counts[ERROR]:>6} {counts[CRASH]:>6} "
          f"{counts[WRONG]:>6} {counts[MISMATCH]:>5}")  # fmt: skip
    cli_n = sum(1 for r in results if r.group.startswith("cli"))
    print(
        f"\nprobes tried: {len(results)} ({len(results) - cli_n} API, {cli_n} CLI); "
        f"ran fine: {counts[OK]}; clear errors: {counts[ERROR]}; crashes: {counts[CRASH]}; "
        f"silent wrong: {counts[WRONG]}; exit-code mismatches: {counts[MISMATCH]}"
    )
    bad = [r for r in results if r.outcome in (CRASH, WRONG, MISMATCH)]
    for r in bad:
        code = f" [exit {r.exit_code}]" if r.exit_code is not None else ""
        print(f"  {r.outcome}: {r.group} / {r.name}{code}: {r.detail}")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-cli", action="store_true", help="API probes only (no subprocesses)")
    ap.add_argument("--json", type=Path, help="write every probe's outcome here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="ecos-probes-"))
    campaign = Campaign(args.seed, work)
    try:
        api_probes(campaign)
        exchange_probes(campaign, with_cli=not args.no_cli)
        if not args.no_cli:
            cli_probes(campaign)
        ledger_probes(campaign, with_cli=not args.no_cli)
    finally:
        for root, dirs, _ in os.walk(work):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in campaign.results], indent=1))
    return summarize(campaign.results, time.perf_counter() - t0, ["python", *sys.argv])


if __name__ == "__main__":
    sys.exit(main())
