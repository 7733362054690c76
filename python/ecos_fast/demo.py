"""``ecos-fast demo``: the selective-labeling experiment of the paper on the offline
Digit-Five proxy (every domain as the client, budgets 1000 and 3000, seeds 1-3,
ECOS vs K-Center, Random and Local; no epsilon sweep). torch is imported only here.

Writes ``out/demo.md``, ``out/demo.csv``, ``out/demo-runs.csv`` and ``out/demo.png``.
Takes about ten minutes on two cores with a warm feature cache.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; ``argv`` takes the options of ``ecos-fast reproduce``."""
    from .apps.reproduce import main as reproduce_main

    args = list(argv) if argv is not None else []
    return reproduce_main(
        ["--app", "labeling", *args],
        prog="ecos-fast demo",
        sweep_default=False,
        name="demo",
        command=" ".join(["ecos-fast demo", *args]),
    )


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
