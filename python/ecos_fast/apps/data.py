"""What the experiment needs to know about a data preset, in one place.

The experiment loop asks this module, never :mod:`ecos_fast.features` directly, for a
preset's domains, its client domains, its number of classes (11 when the pool holds
junk labelled 10, "not a digit"), its default extractor, a fingerprint of everything
the data bytes depend on, and the client/pool/test split in feature space. Where
:mod:`ecos_fast.features` provides a preset-aware function it is used; for a preset
the data layer does not describe (the original ``"default"`` and ``"small"``), the
answers are the proxy's seven domains, ten classes and the default extractor.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Mapping
from typing import Any

from ecos_fast.errors import InvalidInputError

__all__ = [
    "JUNK_LABEL",
    "client_domains",
    "data_fingerprint",
    "default_extractor",
    "extractor_version",
    "n_classes",
    "preset_domains",
    "split_features",
    "split_images",
]

#: Label the oracle gives a pool row that is not a digit (junk); only presets with junk.
JUNK_LABEL = 10


def _data_fn(name: str) -> Any:
    """The data layer's preset-aware function ``name``, or ``None`` where it has none."""
    from ecos_fast import datasets, features

    return getattr(datasets, name, None) or getattr(features, name, None)


def preset_domains(preset: str) -> tuple[str, ...]:
    """Every domain whose rows a preset's pool may hold, in domain-id order.

    Examples
    --------
    >>> preset_domains("default")[:3]
    ('mnist', 'optdigits', 'mnistm')
    """
    fn = _data_fn("preset_domains")
    if fn is not None:
        return tuple(fn(preset))
    from ecos_fast.datasets.digits import DOMAINS, check_preset

    check_preset(preset)
    return DOMAINS


def client_domains(preset: str) -> tuple[str, ...]:
    """The domains that take the client's role in turn (junk never does).

    Examples
    --------
    >>> len(client_domains("default"))
    7
    """
    fn = _data_fn("client_domains")
    if fn is not None:
        return tuple(fn(preset))
    return preset_domains(preset)


def n_classes(preset: str) -> int:
    """Classes of the heads: 10 digits, plus :data:`JUNK_LABEL` when the pool has junk.

    Examples
    --------
    >>> n_classes("default")
    10
    """
    fn = _data_fn("n_classes")
    if fn is not None:
        return int(fn(preset))
    preset_domains(preset)  # validates the preset
    return 10


def default_extractor(preset: str) -> str:
    """The feature extractor a preset is run with unless the user picks one.

    Examples
    --------
    >>> default_extractor("default")
    'ppocr'
    """
    fn = _data_fn("default_extractor")
    if fn is not None:
        return str(fn(preset))
    from ecos_fast.features import DEFAULT_EXTRACTOR

    preset_domains(preset)
    return DEFAULT_EXTRACTOR


def extractor_version(extractor: str) -> str:
    """The extractor's name, pinned model version and the feature recipe version.

    Examples
    --------
    >>> extractor_version("ppocr")
    'ppocr1.4.4-f1'
    """
    from ecos_fast import features

    spec = features._spec(extractor)
    return f"{spec.name}{spec.version}-f{features.FEATURE_VERSION}"


def data_fingerprint(preset: str, extractor: str | None = None, *, data_seed: int = 0) -> str:
    """A hash of everything a preset's rendered data and features depend on.

    The recipe's ``DATA_VERSION`` and :func:`ecos_fast.datasets.split.data_tag` (the
    installed fonts, NumPy, Pillow and FreeType versions), the extractor with its
    versions, and the data layer's own :func:`ecos_fast.features.data_fingerprint`
    where it has one (hard recipes, sizes, data seed).

    Examples
    --------
    >>> data_fingerprint("default") == data_fingerprint("default", data_seed=1)
    False
    """
    from ecos_fast.datasets import digits
    from ecos_fast.datasets import split as _split

    extractor = extractor or default_extractor(preset)
    parts = [
        f"v{digits.DATA_VERSION}",
        _split.data_tag(),
        extractor_version(extractor),
        f"{preset}/{data_seed}",
    ]
    fn = _data_fn("data_fingerprint")
    if fn is not None:
        parts.append(str(fn(preset, extractor, data_seed=data_seed)))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def split_features(
    client_domain: str,
    preset: str,
    seed: int,
    *,
    data_seed: int = 0,
    extractor: str | None = None,
    private_fraction: float = 0.5,
    private_size: int | None = None,
    sizes: Mapping[str, tuple[int, int]] | None = None,
) -> Any:
    """The client's private set, the pool and the client's test split as features.

    :func:`ecos_fast.features.paper_split_features` with the preset's domains and
    extractor; ``private_size`` (the client's private set size) needs a data layer
    that takes it.

    Raises
    ------
    InvalidInputError
        ``private_size`` is given but the installed data layer cannot honour it, or
        any argument the data layer rejects.
    """
    from ecos_fast.features import paper_split_features

    kwargs: dict[str, Any] = {
        "data_seed": data_seed,
        "extractor": extractor or default_extractor(preset),
        "sizes": sizes,
        "private_fraction": private_fraction,
        "domains": preset_domains(preset),
    }
    if private_size is not None:
        if "private_size" not in inspect.signature(paper_split_features).parameters:
            raise InvalidInputError(
                f"private_size={private_size} needs a data layer with a private_size "
                "parameter (ecos_fast.features.paper_split_features has none)"
            )
        kwargs["private_size"] = private_size
    return paper_split_features(client_domain, preset, seed, **kwargs)


def split_images(
    client_domain: str,
    preset: str,
    seed: int,
    *,
    data_seed: int = 0,
    private_fraction: float = 0.5,
    private_size: int | None = None,
    sizes: Mapping[str, tuple[int, int]] | None = None,
) -> Any:
    """The same split as :func:`split_features` as images (``model="cnn"``), row for row.

    Raises
    ------
    InvalidInputError
        ``private_size`` is given but the installed data layer cannot honour it.
    """
    from ecos_fast.datasets import paper_split

    kwargs: dict[str, Any] = {
        "data_seed": data_seed,
        "sizes": sizes,
        "private_fraction": private_fraction,
        "domains": preset_domains(preset),
    }
    if private_size is not None:
        if "private_size" not in inspect.signature(paper_split).parameters:
            raise InvalidInputError(
                f"private_size={private_size} needs a data layer with a private_size "
                "parameter (ecos_fast.datasets.paper_split has none)"
            )
        kwargs["private_size"] = private_size
    return paper_split(client_domain, preset, seed, **kwargs)
