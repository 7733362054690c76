"""Time one ledger budget check-and-record (``Ledger.spend``) at N prior releases.

Usage::

    python scripts/ledger_timing.py --rows 50 150 500 --kinds 1
    python scripts/ledger_timing.py --rows 50 150 500 --kinds 5

The prior releases are coverage releases at epsilon 0.1 (``--kinds 1``) or cycle
through epsilon 0.1, 0.2, 0.3, 0.4, 0.5 (``--kinds 5``), delta 1e-5, one cloud;
they are written with plain SQL so that only the timed check composes them.
Prints one line per row count: the seconds one ``spend`` took (read, compose
once, insert, commit), with the composed epsilon it found.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from ecos_fast.ledger import Ledger, Release
from ecos_fast.privacy import calibrate_gaussian_sigma


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[50, 150, 500])
    parser.add_argument("--kinds", type=int, choices=range(1, 6), default=1)
    args = parser.parse_args()
    sigmas = [calibrate_gaussian_sigma(e, 1e-5) for e in (0.1, 0.2, 0.3, 0.4, 0.5)]
    for n in args.rows:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "ledger.sqlite"
            Ledger(path).close()
            conn = sqlite3.connect(path)
            conn.executemany(
                "INSERT INTO releases (cloud, time, mechanism, sigma, sensitivity, count, "
                "purpose) VALUES ('acme', '2026-01-01T00:00:00+00:00', 'gaussian', ?, 1.0, "
                "1, 'coverage')",
                [(sigmas[i % args.kinds],) for i in range(n)],
            )
            conn.commit()
            conn.close()
            with Ledger(path, budget_epsilon=1e9) as ledger:
                start = time.perf_counter()
                ledger.spend(Release("acme", "gaussian", sigma=sigmas[0]))
                seconds = time.perf_counter() - start
                total = ledger.last_total
            print(
                f"{n} prior releases, {args.kinds} kind(s): one check-and-record "
                f"{seconds:.3f} s (composed epsilon {total:.4g})",
                flush=True,
            )


if __name__ == "__main__":
    main()
