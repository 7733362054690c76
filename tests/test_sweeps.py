"""Parameter sweeps of the experiment's reports (:mod:`ecos_fast.apps.results`).

The private-size sweep pairs ECOS with Local at each size (the crossover); the
label-query sweep of client labeling pairs ECOS with Random and K-Center at each query
budget. Both are checked on records whose right answer is known.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from ecos_fast.apps.experiment import RunRecord
from ecos_fast.apps.reproduce import main as reproduce_main
from ecos_fast.apps.results import format_param_sweep, write_sweep_reports

DOMAINS = ("mnist", "optdigits", "mnistm", "print", "synth", "hand", "hershey")


def _records(key: str, value: int, acc: dict[str, float]) -> list[RunRecord]:
    out = []
    for method, a in acc.items():
        eps = 0.58 if method == "ecos" else 0.0
        for d_i, domain in enumerate(DOMAINS):
            for seed in (1, 2, 3):
                # a small per-run spread so the paired differences are not all tied
                noise = 0.001 * ((d_i + seed) % 3)
                out.append(
                    RunRecord(
                        "labeling", domain, seed, 1000, method, eps, eps, a + noise, 1000, 0.1,
                        1.0, extra={key: float(value)},
                    )
                )  # fmt: skip
    return out


def test_private_sweep_pairs_ecos_with_local_and_finds_the_crossover() -> None:
    # ECOS ahead of Local at 50, behind at 1000: the table shows both, the pairs say so.
    recs = _records("private_size", 50, {"ecos": 0.80, "local": 0.60})
    recs += _records("private_size", 1000, {"ecos": 0.80, "local": 0.95})
    md = format_param_sweep(recs, "private_size")
    rows = [
        line for line in md.splitlines() if line.startswith("| 50 ") or line.startswith("| 1000 ")
    ]
    assert rows[0].startswith("| 50 | 80.") and "| 60." in rows[0]
    assert rows[1].startswith("| 1000 | 80.") and "| 95." in rows[1]
    notes = [line for line in md.splitlines() if line.startswith("- private size")]
    assert len(notes) == 2
    assert "wins 21/21" in notes[0] and "wins 0/21" in notes[1]
    assert "Random" not in md  # only the methods present


def test_query_sweep_pairs_ecos_with_the_pool_baselines(tmp_path) -> None:
    recs = []
    for q, gain in ((250, 0.02), (1000, 0.10)):
        recs += _records(
            "query_budget", q, {"ecos": 0.7 + gain, "kcenter": 0.7, "random": 0.65, "local": 0.9}
        )
    md = format_param_sweep(recs, "query_budget")
    notes = [line for line in md.splitlines() if line.startswith("- label queries")]
    # per value: ECOS vs Random and ECOS vs K-Center, never vs Local
    assert len(notes) == 4
    assert not any("Local" in n for n in notes)
    assert all("wins 21/21" in n for n in notes)
    paths = write_sweep_reports(recs, tmp_path, key="query_budget", name="cl-queries", title="t")
    assert paths["png"].stat().st_size > 0
    assert "| label queries |" in paths["markdown"].read_text()


def test_a_record_outside_the_sweep_is_left_out() -> None:
    recs = _records("private_size", 50, {"ecos": 0.8, "local": 0.6})
    stray = replace(recs[0], extra={})
    md = format_param_sweep([*recs, stray], "private_size")
    value_rows = [line for line in md.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert value_rows == [md.splitlines()[2]]  # the one value, once
    assert format_param_sweep([stray], "private_size") == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["--app", "client-labeling", "--private-sizes", "50", "--queries-sweep", "100"],
        ["--app", "labeling", "--queries-sweep", "100"],
    ],
)
def test_reproduce_refuses_sweeps_that_do_not_apply(argv, capsys) -> None:
    assert reproduce_main(argv) == 2
    assert "error:" in capsys.readouterr().err.lower()  # click's "Error: ..."
