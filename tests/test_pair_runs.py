"""scripts/pair_runs.py pairs two reproduce runs run by run, private-size sweeps included."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "pair_runs", Path(__file__).resolve().parents[1] / "scripts" / "pair_runs.py"
)
assert _SPEC is not None and _SPEC.loader is not None
pair_runs: Any = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(pair_runs)


def _write(
    path: Path, rows: list[tuple[str, float, float | None]], method: str = "ecos", eps: float = 0.58
) -> Path:
    fields = ["app", "domain", "seed", "budget", "method", "epsilon", "accuracy",
              "client_share", "extra"]  # fmt: skip
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for domain, acc, size in rows:
            extra = {} if size is None else {"private_size": size}
            w.writerow({"app": "labeling", "domain": domain, "seed": 1, "budget": 1000,
                        "method": method, "epsilon": eps, "accuracy": acc,
                        "client_share": 0.5, "extra": json.dumps(extra)})  # fmt: skip
    return path


def test_a_private_size_sweep_pairs_each_size(tmp_path: Path, capsys: Any) -> None:
    # Before the sizes were part of the key, the N=50 run was overwritten by the N=300 one
    # of the same (domain, seed, budget, epsilon): one pair instead of two.
    a = _write(tmp_path / "a.csv", [("mnist", 0.6, 50.0), ("mnist", 0.7, 300.0)])
    b = _write(tmp_path / "b.csv", [("mnist", 0.5, 50.0), ("mnist", 0.7, 300.0)])
    assert pair_runs.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 paired runs")
    assert "N=50, B=1000, eps=0.58: A 60.0 vs B 50.0, A - B +10.00 points" in out
    assert "N=300, B=1000, eps=0.58: A 70.0 vs B 70.0, A - B +0.00 points" in out


def test_runs_without_a_recorded_size_still_pair_and_duplicates_are_refused(
    tmp_path: Path, capsys: Any
) -> None:
    a = _write(tmp_path / "a.csv", [("mnist", 0.6, None), ("print", 0.4, None)])
    b = _write(tmp_path / "b.csv", [("mnist", 0.5, None), ("print", 0.4, None)])
    assert pair_runs.main([str(a), str(b)]) == 0
    assert capsys.readouterr().out.startswith("2 paired runs")
    dup = _write(tmp_path / "d.csv", [("mnist", 0.6, None), ("mnist", 0.5, None)])
    with pytest.raises(SystemExit, match="share the key"):
        pair_runs.main([str(dup), str(b)])


def test_ecos_pairs_with_a_baseline_whatever_its_epsilon(tmp_path: Path, capsys: Any) -> None:
    # Local records epsilon 0: without --method-b nothing would pair.
    a = _write(tmp_path / "a.csv", [("mnist", 0.6, 300.0), ("print", 0.5, 300.0)])
    b = _write(tmp_path / "b.csv", [("mnist", 0.7, 300.0), ("print", 0.4, 300.0)], "local", 0.0)
    assert pair_runs.main([str(a), str(b), "--method-b", "local"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 paired runs of ecos (A) and local (B)")
    assert "N=300, B=1000: A 55.0 vs B 55.0, A - B +0.00 points, A wins 1/2" in out
    assert "share" not in out
    assert pair_runs.main([str(a), str(b)]) == 1  # same method: no local runs in A
