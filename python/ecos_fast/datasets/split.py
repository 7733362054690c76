"""Loading domain splits (with an on-disk cache) and the paper's client/pool split."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ecos_fast.errors import InvalidInputError, InvalidTypeError

from . import _cache
from . import fonts as _fonts
from .digits import (
    DATA_VERSION,
    HARD_DOMAINS,
    HARD_VERSION,
    IMAGE_SHAPE,
    PRESETS,
    FontSplit,
    Split,
    check_domain,
    check_fonts,
    check_preset,
    check_seed,
    check_split,
    preset_domains,
    preset_fonts,
    render_domain,
)

__all__ = [
    "PaperSplit",
    "check_private_size",
    "data_tag",
    "hard_tag",
    "load_domain",
    "paper_split",
    "split_key",
]


def data_tag() -> str:
    """A short hash of everything the image bytes depend on besides the arguments.

    The recipe version, the installed fonts, and the versions of NumPy (random streams)
    and Pillow/FreeType (rasterisation). Cached images are keyed by it.
    """
    import PIL
    from PIL import features

    parts = (
        f"v{DATA_VERSION}",
        _fonts.font_fingerprint(),
        f"numpy{np.__version__}",
        f"pillow{PIL.__version__}",
        f"freetype{features.version('freetype2')}",
    )
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:10]


def hard_tag() -> str:
    """A short hash of what the hard preset's extra recipes depend on.

    :data:`~ecos_fast.datasets.digits.HARD_VERSION`, the script fonts
    (:func:`~ecos_fast.datasets.fonts.script_font_fingerprint`) and the font partition
    rule. Only keys of the hard recipes (script domains, junk, held-out fonts) carry it.
    """
    parts = (f"h{HARD_VERSION}", _fonts.script_font_fingerprint(), f"every{_fonts.TEST_EVERY}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:8]


# Domains whose bytes depend on the font partition (``fonts="heldout"``).
_FONT_DOMAINS = frozenset({"print", "synth", "hand", "hershey", "deva", "arabic", "thai", "cjk"})


def split_key(name: str, split: Split, n: int, seed: int, fonts: FontSplit = "all") -> str:
    """Cache key of one domain split: domain, split, size, seed and :func:`data_tag`.

    The seven domains in ``fonts="all"`` mode keep the key they always had; the hard
    preset's recipes add ``-h`` and :func:`hard_tag`. ``fonts`` matters only for domains
    rendered from fonts (mnist, optdigits, mnistm and junk ignore it, so their held-out
    and full keys are the same entry).
    """
    fonts = check_fonts(fonts)
    key = f"{name}-{split}-n{n}-seed{seed}-{data_tag()}"
    heldout = fonts == "heldout" and name in _FONT_DOMAINS
    if heldout or name in HARD_DOMAINS:
        key += f"-h{'f' if heldout else ''}{hard_tag()}"
    return key


def _check_n(n: object, name: str, split: Split, preset: str) -> int:
    if n is None:
        if name not in PRESETS[preset]:
            raise InvalidInputError(
                f"domain={name!r} is not in preset {preset!r}; pass n= or use the hard preset"
            )
        return PRESETS[preset][name][0 if split == "train" else 1]
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise InvalidTypeError(f"n must be an int or None, got {type(n).__name__}")
    if n < 0:
        raise InvalidInputError(f"n={n} must be >= 0")
    return int(n)


def load_domain(
    name: str,
    split: Split = "train",
    n: int | None = None,
    seed: int = 0,
    *,
    preset: str = "default",
    cache: bool = True,
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Images and labels of one domain split.

    Parameters
    ----------
    name : str
        One of :data:`~ecos_fast.datasets.digits.ALL_DOMAINS`.
    split : {"train", "test"}
    n : int, optional
        Number of images; ``None`` takes the preset's size for this split.
    seed : int, default 0
        Data seed. Real domains keep one fixed train/test partition for every seed;
        the seed picks which class-balanced subset (and mnistm's photo patches).
    preset : {"default", "small", "hard"}
        Sizes used when ``n`` is ``None`` (see :data:`PRESETS`). ``hard`` also renders
        the test splits from fonts the train splits never use (``fonts="heldout"`` of
        :func:`~ecos_fast.datasets.digits.render_domain`).
    cache : bool, default True
        Keep the images on disk (see :func:`ecos_fast.datasets.cache_dir`), keyed by
        domain, split, ``n``, ``seed`` and :func:`data_tag`; a later call reads them back.

    Returns
    -------
    images : ndarray of shape (n, 32, 32, 3), dtype uint8
        RGB images.
    labels : ndarray of shape (n,), dtype int64
        Digits 0-9, class-balanced (``junk``: label 10).

    Raises
    ------
    InvalidInputError
        Unknown domain/split/preset, negative ``n`` or ``seed``, ``n`` larger than a
        real domain's split, or ``n=None`` for a domain the preset does not hold.
    MissingFontsError
        A rendered domain's Debian font package is not installed.

    Examples
    --------
    >>> images, labels = load_domain("mnist", "test", n=20, seed=1, cache=False)
    >>> images.shape, sorted(set(labels.tolist())) == list(range(10))
    ((20, 32, 32, 3), True)
    """
    name = check_domain(name)
    split = check_split(split)
    seed = check_seed(seed)
    preset = check_preset(preset)
    n = _check_n(n, name, split, preset)
    fonts = preset_fonts(preset)
    if not cache:
        return render_domain(name, split, n, seed, fonts=fonts)
    key = split_key(name, split, n, seed, fonts)
    images = _cache.load_array("images", key, dtype=np.uint8, shape=(n, *IMAGE_SHAPE))
    labels = _cache.load_array("images", key + ".labels", dtype=np.int64, shape=(n,))
    if images is not None and labels is not None:
        return images, labels
    images, labels = render_domain(name, split, n, seed, fonts=fonts)
    _cache.save_array("images", key, images)
    _cache.save_array("images", key + ".labels", labels)
    return images, labels


@dataclass(frozen=True)
class PaperSplit:
    """One experiment of the paper: a client domain against a multi-domain cloud pool.

    Attributes
    ----------
    client_domain : str
    seed : int
        Seed of the private/pool halving.
    data_seed : int
        Seed of the domain data (shared by every client and seed, so features are reused).
    domains : tuple of str
        Domains present; ``pool_domains`` indexes this tuple.
    private_images : ndarray of shape (n_private, 32, 32, 3), uint8
    private_labels : ndarray of shape (n_private,), int64
    private_index : ndarray of shape (n_private,), int64
        Rows of the client domain's train split that went private.
    pool_images : ndarray of shape (n_pool, 32, 32, 3), uint8
        The client domain's other train rows plus every other domain's train split,
        concatenated in ``domains`` order.
    pool_labels : ndarray of shape (n_pool,), int64
        True digits (hidden from the protocol; for oracle labelling and evaluation).
    pool_domains : ndarray of shape (n_pool,), int64
        Domain id of each pool sample, an index into ``domains`` (for analysis only).
    pool_index : ndarray of shape (n_pool,), int64
        Row of each pool sample inside its domain's train split.
    test_images : ndarray of shape (n_test, 32, 32, 3), uint8
        The client domain's test split.
    test_labels : ndarray of shape (n_test,), int64
    preset : str
        The preset the split was built from.
    private_fraction : float
        Share of the client's train split asked to go private (ignored when
        ``private_size`` is set).
    private_size : int or None
        Number of private samples asked for, overriding ``private_fraction``.
    """

    client_domain: str
    seed: int
    data_seed: int
    domains: tuple[str, ...]
    private_images: NDArray[np.uint8]
    private_labels: NDArray[np.int64]
    private_index: NDArray[np.int64]
    pool_images: NDArray[np.uint8]
    pool_labels: NDArray[np.int64]
    pool_domains: NDArray[np.int64]
    pool_index: NDArray[np.int64]
    test_images: NDArray[np.uint8]
    test_labels: NDArray[np.int64]
    preset: str = "default"
    private_fraction: float = 0.5
    private_size: int | None = None

    @property
    def client_id(self) -> int:
        """Index of the client domain in ``domains``."""
        return self.domains.index(self.client_domain)

    def summary(self) -> str:
        """One line of sizes, e.g. for logs."""
        counts = np.bincount(self.pool_domains, minlength=len(self.domains))
        per = ", ".join(f"{d}={c}" for d, c in zip(self.domains, counts, strict=True))
        return (
            f"client={self.client_domain} seed={self.seed}: private={len(self.private_labels)}"
            f" pool={len(self.pool_labels)} ({per}) test={len(self.test_labels)}"
        )


def private_rows(
    n_train: int, seed: int, private_fraction: float, private_size: int | None = None
) -> NDArray[np.int64]:
    """Sorted rows of the client train split that go private (the rest join the pool).

    ``private_size`` (a count) overrides ``private_fraction``. The rows are a prefix of one
    seeded permutation, so a smaller private set is a subset of a larger one (same seed).
    """
    n_private = round(private_fraction * n_train) if private_size is None else private_size
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EC05]))
    return np.sort(rng.permutation(n_train)[:n_private]).astype(np.int64)


def check_private_size(private_size: object, n_train: int, client_domain: str) -> int | None:
    """Validate ``private_size``: ``None`` or an int in ``[1, n_train - 1]``.

    At least one train row must stay in the pool, so the client domain is still in it.
    """
    if private_size is None:
        return None
    if isinstance(private_size, bool) or not isinstance(private_size, (int, np.integer)):
        raise InvalidTypeError(
            f"private_size must be an int or None, got {type(private_size).__name__}"
        )
    if not 1 <= private_size <= n_train - 1:
        raise InvalidInputError(
            f"private_size={private_size} must be in [1, {n_train - 1}]: the client domain "
            f"{client_domain!r} has {n_train} train images and at least one stays in the pool"
        )
    return int(private_size)


def check_private_fraction(private_fraction: object) -> float:
    """Validate ``private_fraction``, a number in (0, 1)."""
    if (
        isinstance(private_fraction, bool)
        or not isinstance(private_fraction, (float, int))
        or not 0.0 < private_fraction < 1.0
    ):
        raise InvalidInputError(f"private_fraction={private_fraction!r} must be in (0, 1)")
    return float(private_fraction)


def check_domains(
    domains: Sequence[str] | None, preset: str, client_domain: str
) -> tuple[tuple[str, ...], str]:
    """Validate the experiment's domains (default: the preset's) and the client domain."""
    domains = tuple(preset_domains(preset) if domains is None else domains)
    for name in domains:
        check_domain(name)
    if len(set(domains)) != len(domains):
        raise InvalidInputError(f"domains={domains!r} holds duplicates")
    client_domain = check_domain(client_domain)
    if client_domain not in domains:
        raise InvalidInputError(f"client_domain={client_domain!r} is not in domains={domains!r}")
    if client_domain == "junk":
        raise InvalidInputError("client_domain='junk' is not allowed: junk is pool-only")
    return domains, client_domain


def resolve_sizes(
    preset: str, sizes: Mapping[str, tuple[int, int]] | None, domains: Sequence[str]
) -> dict[str, tuple[int, int]]:
    """Per-domain ``(n_train, n_test)``: the preset's, overridden by ``sizes``."""
    preset = check_preset(preset)
    base = dict(PRESETS[preset])
    for name, pair in (sizes or {}).items():
        check_domain(name)
        if (
            not isinstance(pair, tuple)
            or len(pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in pair)
        ):
            raise InvalidInputError(
                f"sizes[{name!r}]={pair!r} must be a pair (n_train, n_test) of ints >= 0"
            )
        base[name] = pair
    missing = [name for name in domains if name not in base]
    if missing:
        raise InvalidInputError(
            f"domains {missing} are not in preset {preset!r}; give their sizes= or use "
            f"preset='hard'"
        )
    return {name: base[name] for name in domains}


def paper_split(
    client_domain: str,
    preset: str = "default",
    seed: int = 0,
    *,
    data_seed: int = 0,
    domains: Sequence[str] | None = None,
    sizes: Mapping[str, tuple[int, int]] | None = None,
    private_fraction: float = 0.5,
    private_size: int | None = None,
    cache: bool = True,
) -> PaperSplit:
    """The paper's split: a private half of the client domain, a pool of everything else.

    ``private_fraction`` (50 %) of the client domain's train split becomes the private
    set; the rest of it, plus every other domain's train split, forms the cloud pool; the
    client domain's test split is for evaluation.

    Parameters
    ----------
    client_domain : str
        One of ``domains`` (never ``junk``).
    preset : {"default", "small", "hard"}
        Split sizes and domains (:data:`PRESETS`); ``default`` gives a pool of about 35k
        images; ``hard`` adds four numeral scripts and junk, with held-out test fonts.
    seed : int, default 0
        Seed of the private/pool halving (the paper repeats with seeds 1, 2, 3).
    data_seed : int, default 0
        Seed of the domain data. Kept apart from ``seed`` so that every client domain
        and seed draws from the same images, and their cached features are reused.
    domains : sequence of str, optional
        Domains in the experiment (default: the preset's,
        :func:`~ecos_fast.datasets.digits.preset_domains`).
    sizes : mapping of str to (int, int), optional
        ``{domain: (n_train, n_test)}`` overriding the preset.
    private_fraction : float, default 0.5
        Share of the client's train split kept private, in (0, 1).
    private_size : int, optional
        Number of private samples, overriding ``private_fraction``; in
        ``[1, n_train - 1]``. The private rows leave the pool as with a fraction.
    cache : bool, default True
        Cache each domain split on disk (see :func:`load_domain`).

    Returns
    -------
    PaperSplit

    Raises
    ------
    InvalidInputError
        Unknown names, duplicate domains, a client outside ``domains`` or ``junk``, a
        ``private_fraction`` outside (0, 1), or a ``private_size`` outside its range.
    InvalidTypeError
        A ``private_size`` that is not an int.

    Examples
    --------
    >>> from ecos_fast.datasets import ALL_DOMAINS, DOMAINS
    >>> s = paper_split("optdigits", sizes={d: (20, 10) for d in DOMAINS}, cache=False)
    >>> len(s.private_labels), len(s.pool_labels), len(s.test_labels)
    (10, 130, 10)
    >>> s.domains[s.pool_domains[0]]
    'mnist'
    >>> h = paper_split("cjk", "hard", sizes={d: (20, 10) for d in ALL_DOMAINS},
    ...                 private_size=5, cache=False)
    >>> len(h.private_labels), len(h.pool_labels), sorted(set(h.pool_labels.tolist()))[-1]
    (5, 235, 10)
    """
    preset = check_preset(preset)
    domains, client_domain = check_domains(domains, preset, client_domain)
    seed = check_seed(seed)
    data_seed = check_seed(data_seed, "data_seed")
    private_fraction = check_private_fraction(private_fraction)
    table = resolve_sizes(preset, sizes, domains)

    n_client = table[client_domain][0]
    private_size = check_private_size(private_size, n_client, client_domain)
    private_index = private_rows(n_client, seed, private_fraction, private_size)
    private_images = np.zeros((0, *IMAGE_SHAPE), dtype=np.uint8)
    private_labels = np.zeros(0, dtype=np.int64)
    pool_images, pool_labels, pool_domains, pool_index = [], [], [], []
    for domain_id, name in enumerate(domains):
        n_train, _ = table[name]
        images, labels = load_domain(name, "train", n_train, data_seed, preset=preset, cache=cache)
        rows = np.arange(n_train, dtype=np.int64)
        if name == client_domain:
            private_images, private_labels = images[private_index], labels[private_index]
            rows = np.setdiff1d(rows, private_index).astype(np.int64)
        pool_images.append(images[rows])
        pool_labels.append(labels[rows])
        pool_domains.append(np.full(len(rows), domain_id, dtype=np.int64))
        pool_index.append(rows)
    test_images, test_labels = load_domain(
        client_domain, "test", table[client_domain][1], data_seed, preset=preset, cache=cache
    )
    return PaperSplit(
        client_domain=client_domain,
        seed=seed,
        data_seed=data_seed,
        domains=domains,
        private_images=private_images,
        private_labels=private_labels,
        private_index=private_index,
        pool_images=np.concatenate(pool_images),
        pool_labels=np.concatenate(pool_labels),
        pool_domains=np.concatenate(pool_domains),
        pool_index=np.concatenate(pool_index),
        test_images=test_images,
        test_labels=test_labels,
        preset=preset,
        private_fraction=private_fraction,
        private_size=private_size,
    )
