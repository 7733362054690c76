"""``ecos-fast features``: the bundled extractors' feature cache and linear probes.

One click group of two commands, built by their modules: ``warm-cache``
(:mod:`ecos_fast.features`, also ``python -m ecos_fast.features``) and ``probe``
(:mod:`ecos_fast.datasets.probe`, also ``python -m ecos_fast.datasets.probe``). Here,
not in either module, so that neither imports the other for the command line.
"""

from __future__ import annotations

import click

__all__ = ["command"]


def command() -> click.Group:
    """The ``features`` group of ``ecos-fast``."""
    from .datasets.probe import command as probe_command
    from .features import warm_cache_command

    @click.group("features", context_settings={"help_option_names": ["-h", "--help"]})
    def features() -> None:
        """The bundled extractors' feature cache (warm-cache) and linear probes (probe)."""

    features.add_command(warm_cache_command())
    features.add_command(probe_command())
    return features
