"""The three applications of ECOS, on torch (imported lazily: ``import ecos_fast`` never
pulls torch in).

* :mod:`.labeling` - selective labeling: an oracle labels the selection;
* :mod:`.compression` - a large teacher distilled into a small student on the selection;
* :mod:`.client_labeling` - the client labels the selection by private kNN (GNMax);
* :mod:`.training` - models and seeded trainers;
* :mod:`.experiment` - the paper's domain x budget x seed x method loop;
* :mod:`.results` - its tables, CSV files and figures;
* :mod:`.reproduce` - ``ecos-fast reproduce --app ...``.
"""

from __future__ import annotations

__all__ = [
    "client_labeling",
    "compression",
    "experiment",
    "labeling",
    "reproduce",
    "results",
    "training",
]
