"""``ecos-fast demo``: the selective-labeling experiment of the paper on the offline
Digit-Five proxy (every domain as the client, budgets 1000 and 3000, seeds 1-3,
ECOS vs K-Center, Random and Local; no epsilon sweep). torch is imported only here.

It prints the paired statistics (ECOS's wins out of the 21 runs per budget against each
method, Wilcoxon p) and writes ``out/demo.md``, ``out/demo.csv``, ``out/demo-runs.csv``
and ``out/demo.png``. Self-training is off to keep its cost (about four minutes on two
cores with a warm feature cache); ``--semi-supervised`` adds it, ``--preset hard`` runs
the hard benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click

__all__ = ["command", "main"]


def _help() -> str:
    return (__doc__ or "").split("\n\n")[0].replace("``", "")


def command() -> click.Command:
    """``ecos-fast demo``: the options of ``ecos-fast reproduce``, with no epsilon
    sweep and no self-training by default."""
    from .apps.reproduce import make_command

    return make_command(
        "demo",
        sweep_default=False,
        semi_default=False,
        name="demo",
        help_text=_help(),
        short_help="ECOS end to end on the offline Digit-Five proxy (see the README).",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo (``ecos-fast demo`` with ``argv``, default none); returns the exit
    status, through :func:`ecos_fast._cli_output.run_command` and its error handling."""
    from ._cli_output import run_command

    return run_command(command(), [*(argv or ())], prog_name="python -m ecos_fast.demo")


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
