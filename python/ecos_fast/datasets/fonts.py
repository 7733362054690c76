"""Font discovery for the rendered digit domains (``print``, ``synth``, ``hand``, ``hershey``).

Fonts come from Debian font packages (``deps/apt-data.txt``); nothing is downloaded.
Each package is listed once in :data:`FONT_PACKAGES` with the folder it installs into,
the domain family it feeds and its licence. Discovery keeps a font only when it draws
ten distinct, non-empty digits ``0``-``9`` that differ from its missing-glyph box, and
de-duplicates fonts whose digit glyphs render identically (the same design shipped in
several packages or formats).

A machine that lacks a package gets :class:`MissingFontsError` naming it and the
``apt-get`` line that installs it. Set ``ECOS_FAST_ALLOW_MISSING_FONTS=1`` to render
with whatever subset is installed instead (a warning then says what is missing, and
the rendered bytes differ from a machine that has every package).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from ecos_fast.errors import EcosError, InvalidInputError

__all__ = [
    "FONT_PACKAGES",
    "HERSHEY_PACKAGE",
    "SCRIPTS",
    "SCRIPT_DIGITS",
    "FontFamily",
    "FontPackage",
    "HersheyFont",
    "MissingFontsError",
    "discover_fonts",
    "font_fingerprint",
    "font_partition",
    "font_roots",
    "hershey_fonts",
    "hershey_partition",
    "script_font_fingerprint",
]

FontFamily = Literal["print", "hand", "deva", "arabic", "thai", "cjk"]
Script = Literal["deva", "arabic", "thai", "cjk"]

#: The non-Latin numeral systems of the hard preset's far-away domains, in domain order.
SCRIPTS: tuple[Script, ...] = ("deva", "arabic", "thai", "cjk")

#: The characters that stand for the digits 0-9 in each script (index = label).
SCRIPT_DIGITS: dict[str, str] = {
    "deva": "".join(chr(0x0966 + d) for d in range(10)),  # Devanagari digits
    "arabic": "".join(chr(0x0660 + d) for d in range(10)),  # Arabic-Indic (Eastern Arabic)
    "thai": "".join(chr(0x0E50 + d) for d in range(10)),  # Thai digits
    "cjk": "\u3007\u4e00\u4e8c\u4e09\u56db\u4e94\u516d\u4e03\u516b\u4e5d",  # 〇一二…九
}

#: Environment variable: extra font folders searched before the system ones (``os.pathsep``).
FONT_DIRS_ENV = "ECOS_FAST_FONT_DIRS"
#: Environment variable: ``1`` renders with the installed subset instead of failing.
ALLOW_MISSING_ENV = "ECOS_FAST_ALLOW_MISSING_FONTS"

_SYSTEM_ROOTS = (
    "/usr/share/fonts",
    "/usr/share/texmf/fonts",
    "/usr/local/share/fonts",
)

# Files whose cmap maps the ASCII digits to pictures, not digits (checked by eye on the
# preview grid; the glyph checks below cannot tell a dingbat from a digit).
_NOT_DIGITS = re.compile(r"(?i)(D050000L|dingbat)")
# Calligraphic faces inside otherwise "print" packages: they feed the handwriting family.
_SCRIPT_FACES = re.compile(r"(?i)(Z003|texgyrechorus)")
# fonts-femkeklaver (listed in data.md) is left out: its digits are hollow outlines, which
# the stroke-thickness jitter of the hand domain fills into blobs.


class MissingFontsError(EcosError, FileNotFoundError):
    """A Debian font package that a rendered domain needs is not installed."""


@dataclass(frozen=True)
class FontPackage:
    """A Debian package that installs fonts used by the rendered domains.

    Attributes
    ----------
    name : str
        Debian package name (``apt-get install <name>``).
    family : {"print", "hand", "hershey"}
        Which rendered domains use it: ``print`` feeds ``print`` and ``synth``,
        ``hand`` feeds ``hand``, ``hershey`` feeds ``hershey``; a script name
        (``deva``, ``arabic``, ``thai``, ``cjk``) feeds that script's numerals domain.
    subdir : str
        Folder the package installs into, relative to a font root.
    licence : str
        Licence of the font files (from the package's ``copyright`` file).
    """

    name: str
    family: Literal["print", "hand", "hershey", "deva", "arabic", "thai", "cjk"]
    subdir: str
    licence: str


#: Every font package the rendered domains use, in a fixed order (the order fixes the bytes).
FONT_PACKAGES: tuple[FontPackage, ...] = (
    FontPackage("fonts-liberation", "print", "truetype/liberation", "GPL-2 with font exception"),
    FontPackage("fonts-freefont-ttf", "print", "truetype/freefont", "GPL-3+ with font exception"),
    FontPackage("fonts-urw-base35", "print", "opentype/urw-base35", "AGPL-3 with font exception"),
    FontPackage("fonts-texgyre", "print", "opentype/public/tex-gyre", "GUST Font License"),
    FontPackage("fonts-cmu", "print", "truetype/cmu", "OFL-1.1"),
    FontPackage("fonts-dejavu-extra", "print", "truetype/dejavu", "Bitstream Vera licence"),
    FontPackage("fonts-comic-neue", "hand", "opentype/comic-neue", "OFL-1.1"),
    FontPackage("fonts-dkg-handwriting", "hand", "truetype/fifthhorseman", "OFL-1.1"),
    FontPackage("fonts-breip", "hand", "truetype/breip", "OFL-1.0"),
    FontPackage("fonts-bwht", "hand", "opentype/bwht", "OFL-1.1"),
    FontPackage("fonts-humor-sans", "hand", "truetype/humor-sans", "OFL-1.1"),
    FontPackage("fonts-rufscript", "hand", "truetype/rufscript", "GPL-3+ with font exception"),
    FontPackage("fonts-sjfonts", "hand", "truetype/sjfonts", "GPL-2 with font exception"),
    FontPackage("fonts-dancingscript", "hand", "opentype/dancingscript", "OFL-1.1"),
    FontPackage("fonts-kaushanscript", "hand", "opentype/kaushanscript", "OFL-1.1"),
    FontPackage("fonts-kristi", "hand", "truetype/kristi", "OFL-1.1"),
    FontPackage("fonts-lobster", "hand", "opentype/lobster", "OFL-1.1"),
    FontPackage("fonts-leckerli-one", "hand", "truetype/leckerli-one", "OFL-1.1"),
    FontPackage("fonts-ecolier-court", "hand", "truetype/ecolier-court", "OFL-1.1"),
    FontPackage("fonts-joscelyn", "hand", "opentype/joscelyn", "OFL-1.1"),
    FontPackage("fonts-havana", "hand", "opentype/havana", "OFL-1.1"),
    # Numerals of other scripts (the hard preset's far-away domains). Appended after the
    # Latin families, which filter by family, so their fonts and bytes are unchanged.
    FontPackage("fonts-lohit-deva", "deva", "truetype/lohit-devanagari", "OFL-1.1"),
    FontPackage("fonts-samyak-deva", "deva", "truetype/samyak", "GPL-3+ with font exception"),
    FontPackage("fonts-gargi", "deva", "truetype/Gargi", "GPL-2+"),
    FontPackage("fonts-nakula", "deva", "truetype/Nakula", "GPL-2+"),
    FontPackage("fonts-sahadeva", "deva", "truetype/Sahadeva", "GPL-2+"),
    FontPackage("fonts-sarai", "deva", "truetype/Sarai", "GPL-2"),
    FontPackage("fonts-kacst", "arabic", "truetype/kacst", "GPL-2"),
    FontPackage("fonts-arabeyes", "arabic", "truetype/fonts-arabeyes", "GPL-2"),
    FontPackage("fonts-hosny-amiri", "arabic", "opentype/fonts-hosny-amiri", "OFL-1.1"),
    FontPackage("fonts-sil-scheherazade", "arabic", "truetype/scheherazade", "OFL-1.1"),
    FontPackage("fonts-thai-tlwg", "thai", "truetype/tlwg", "GPL-2+ with font exception"),
    FontPackage("fonts-wqy-microhei", "cjk", "truetype/wqy", "Apache-2.0 or GPL-3 with FE"),
    FontPackage("fonts-wqy-zenhei", "cjk", "truetype/wqy", "GPL-2 with font embedding exc."),
    FontPackage("fonts-arphic-ukai", "cjk", "truetype/arphic", "Arphic Public License"),
    FontPackage("fonts-arphic-uming", "cjk", "truetype/arphic", "Arphic Public License"),
    FontPackage("fonts-ipafont-gothic", "cjk", "opentype/ipafont-gothic", "IPA Font License"),
    FontPackage("fonts-ipafont-mincho", "cjk", "opentype/ipafont-mincho", "IPA Font License"),
)

# Files each script package installs (two packages can share a folder: wqy, arphic).
_SCRIPT_FILES: dict[str, tuple[str, ...]] = {
    "fonts-wqy-microhei": ("wqy-microhei.ttc",),
    "fonts-wqy-zenhei": ("wqy-zenhei.ttc",),
    "fonts-arphic-ukai": ("ukai.ttc",),
    "fonts-arphic-uming": ("uming.ttc",),
}

#: Hershey stroke fonts (``.jhf``), installed outside the usual font roots.
HERSHEY_PACKAGE = FontPackage(
    "hershey-fonts-data",
    "hershey",
    "/usr/share/hershey-fonts",
    "Hershey font licence (free use; acknowledgement required)",
)

# Hershey files without the digits 0-9 at their ASCII positions (symbols, kana, ...).
_HERSHEY_NO_DIGITS = frozenset(
    {
        "astrology",
        "japanese",
        "markers",
        "mathlow",
        "mathupp",
        "meteorology",
        "music",
        "symbolic",
    }
)

_FONT_SUFFIXES = (".ttf", ".otf")
_SCRIPT_SUFFIXES = (".ttf", ".otf", ".ttc")  # collections: face 0 is used


def font_roots() -> tuple[Path, ...]:
    """Folders searched for font packages: ``$ECOS_FAST_FONT_DIRS`` first, then the system's."""
    extra = [p for p in os.environ.get(FONT_DIRS_ENV, "").split(os.pathsep) if p]
    return tuple(Path(p) for p in (*extra, *_SYSTEM_ROOTS))


def _package_files(package: FontPackage) -> list[Path]:
    """Font files of one package (first root that has its folder), sorted by name."""
    roots = (Path("/"),) if os.path.isabs(package.subdir) else font_roots()
    for root in roots:
        folder = root / package.subdir
        if folder.is_dir():
            if package.family == "hershey":
                suffixes: tuple[str, ...] = (".jhf",)
            elif package.family in SCRIPTS:
                suffixes = _SCRIPT_SUFFIXES
            else:
                suffixes = _FONT_SUFFIXES
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)
            if package.name in _SCRIPT_FILES:
                files = [p for p in files if p.name in _SCRIPT_FILES[package.name]]
            if files:
                return files
    return []


def _missing(packages: list[FontPackage], what: str) -> None:
    """Raise (or warn, when allowed) about packages whose files were not found."""
    if not packages:
        return
    names = " ".join(p.name for p in packages)
    message = (
        f"the {what} digit domain needs the Debian font package(s) {names}, which are not "
        f"installed (searched {', '.join(str(r) for r in font_roots())}). "
        f"Install them with: sudo apt-get install {names}  "
        f"(deps/apt-data.txt lists every package)."
    )
    if os.environ.get(ALLOW_MISSING_ENV) == "1":
        warnings.warn(
            message + f" Continuing with the installed subset because {ALLOW_MISSING_ENV}=1.",
            stacklevel=3,
        )
        return
    raise MissingFontsError(message + f" Or set {ALLOW_MISSING_ENV}=1 to use a subset.")


def _glyph_signature(path: Path, digits: str = "0123456789") -> bytes | None:
    """Binary renderings of the ten ``digits`` (cropped, 24x24), or ``None`` if any is missing."""
    from PIL import Image, ImageFont

    try:
        font = ImageFont.truetype(str(path), 48)
    except OSError:
        return None
    bitmaps = []
    for ch in (*digits, "\U0010fffd"):
        mask = font.getmask(ch)
        if mask.size[0] == 0 or mask.size[1] == 0:
            bitmaps.append(np.zeros((24, 24), dtype=np.uint8))
            continue
        glyph = Image.frombytes("L", mask.size, bytes(mask))
        glyph = glyph.resize((24, 24), Image.Resampling.BILINEAR)
        bitmaps.append((np.asarray(glyph) > 96).astype(np.uint8))
    glyphs, notdef = bitmaps[:10], bitmaps[10]
    keys = [b.tobytes() for b in glyphs]
    if any(not b.any() for b in glyphs):
        return None
    if len(set(keys)) < 10 or notdef.tobytes() in keys:
        return None
    return b"".join(keys)


@functools.cache
def _discover(family: FontFamily, allow_missing_env: str | None) -> tuple[Path, ...]:
    # allow_missing_env is part of the cache key so that changing the variable takes effect.
    del allow_missing_env
    packages = [p for p in FONT_PACKAGES if p.family == family]
    missing = []
    candidates: list[Path] = []
    for package in packages:
        files = _package_files(package)
        if not files:
            missing.append(package)
        candidates.extend(files)
    # Script faces shipped inside "print" packages move to the handwriting family.
    digits = SCRIPT_DIGITS.get(family, "0123456789")
    if family == "hand":
        for package in FONT_PACKAGES:
            if package.family == "print":
                candidates.extend(
                    f for f in _package_files(package) if _SCRIPT_FACES.search(f.name)
                )
    _missing(missing, family)
    kept: list[Path] = []
    seen: set[bytes] = set()
    for path in candidates:
        if _NOT_DIGITS.search(path.name):
            continue
        if family == "print" and _SCRIPT_FACES.search(path.name):
            continue
        signature = _glyph_signature(path, digits)
        if signature is None:
            continue
        digest = hashlib.sha256(signature).digest()
        if digest in seen:
            continue
        seen.add(digest)
        kept.append(path)
    if not kept:
        raise MissingFontsError(
            f"no usable {family} font with the digits {digits} was found; install "
            + " ".join(p.name for p in packages)
        )
    return tuple(kept)


def discover_fonts(family: FontFamily) -> tuple[Path, ...]:
    """Installed fonts of one family that draw the digits 0-9, de-duplicated by glyph hash.

    Parameters
    ----------
    family : {"print", "hand", "deva", "arabic", "thai", "cjk"}
        ``print``: non-handwriting faces (the ``print`` and ``synth`` domains);
        ``hand``: handwriting and script faces (the ``hand`` domain); a script name:
        faces that draw that script's ten numerals (:data:`SCRIPT_DIGITS`).

    Returns
    -------
    tuple of pathlib.Path
        Font files in a fixed order (package order of :data:`FONT_PACKAGES`, then name).

    Raises
    ------
    MissingFontsError
        A package of the family is not installed (the message names it).

    Examples
    --------
    >>> fonts = discover_fonts("print")
    >>> len(fonts) > 50
    True
    >>> len(discover_fonts("deva")) >= 2
    True
    """
    if family not in ("print", "hand", *SCRIPTS):
        raise InvalidInputError(
            f"family={family!r} must be one of 'print', 'hand', {', '.join(map(repr, SCRIPTS))}"
        )
    return _discover(family, os.environ.get(ALLOW_MISSING_ENV))


@dataclass(frozen=True)
class HersheyFont:
    """The digits of one Hershey stroke font.

    Attributes
    ----------
    name : str
        File stem, e.g. ``"futural"``.
    digits : tuple of tuple of ndarray
        ``digits[d]`` is the list of strokes of digit ``d``; each stroke is a float64
        array of shape ``(n_points, 2)`` in Hershey units (x right, y down, origin at
        the glyph centre).
    """

    name: str
    digits: tuple[tuple[NDArray[np.float64], ...], ...]


def _parse_jhf(text: str) -> list[list[NDArray[np.float64]]]:
    """Strokes of every glyph of a ``.jhf`` file (one glyph per record, ASCII order from 32)."""
    glyphs: list[list[NDArray[np.float64]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if len(line) < 8 or not line[5:8].strip():
            continue
        count = int(line[5:8])
        data = line[8:]
        # Records longer than 72 characters may wrap onto following lines.
        while len(data) < 2 * count and i < len(lines):
            data += lines[i]
            i += 1
        pairs = [data[k : k + 2] for k in range(2, 2 * count, 2)]  # skip the margin pair
        strokes: list[NDArray[np.float64]] = []
        current: list[tuple[float, float]] = []
        for pair in pairs:
            if pair == " R":
                if len(current) > 1:
                    strokes.append(np.asarray(current, dtype=np.float64))
                current = []
                continue
            current.append((float(ord(pair[0]) - ord("R")), float(ord(pair[1]) - ord("R"))))
        if len(current) > 1:
            strokes.append(np.asarray(current, dtype=np.float64))
        glyphs.append(strokes)
    return glyphs


@functools.cache
def _hershey(allow_missing_env: str | None) -> tuple[HersheyFont, ...]:
    del allow_missing_env
    files = _package_files(HERSHEY_PACKAGE)
    _missing([] if files else [HERSHEY_PACKAGE], "hershey")
    fonts: list[HersheyFont] = []
    seen: set[bytes] = set()
    for path in files:
        if path.stem in _HERSHEY_NO_DIGITS:
            continue
        glyphs = _parse_jhf(path.read_text(encoding="ascii", errors="replace"))
        if len(glyphs) < 26:
            continue
        digits = [glyphs[16 + d] for d in range(10)]  # '0' is ASCII 48 = record 16
        if any(not strokes for strokes in digits):
            continue
        signature = b"|".join(b"".join(s.tobytes() for s in strokes) for strokes in digits)
        if len(set(signature.split(b"|"))) < 10:
            continue
        digest = hashlib.sha256(signature).digest()
        if digest in seen:
            continue
        seen.add(digest)
        fonts.append(HersheyFont(path.stem, tuple(tuple(s) for s in digits)))
    if not fonts:
        raise MissingFontsError(
            f"no Hershey font with digits found; install {HERSHEY_PACKAGE.name}"
        )
    return tuple(fonts)


def hershey_fonts() -> tuple[HersheyFont, ...]:
    """Hershey stroke fonts that have the digits 0-9, de-duplicated by stroke data.

    Raises
    ------
    MissingFontsError
        ``hershey-fonts-data`` is not installed.

    Examples
    --------
    >>> fonts = hershey_fonts()
    >>> len(fonts[0].digits)
    10
    """
    return _hershey(os.environ.get(ALLOW_MISSING_ENV))


def font_fingerprint() -> str:
    """A short hash of the font files every rendered domain uses (names and sizes).

    Cached images are keyed by it, so installing or removing a font package
    invalidates them.
    """
    h = hashlib.sha256()
    families: tuple[FontFamily, ...] = ("print", "hand")
    for family in families:
        for path in discover_fonts(family):
            h.update(f"{path.name}:{path.stat().st_size};".encode())
    for font in hershey_fonts():
        h.update(f"{font.name};".encode())
    return h.hexdigest()[:12]


def script_font_fingerprint() -> str:
    """A short hash of the script-numeral font files (names and sizes), like :func:`font_fingerprint`.

    Kept apart from :func:`font_fingerprint` so that the cache keys of the ``default`` and
    ``small`` presets (which use no script font) do not change when script fonts do.
    """
    h = hashlib.sha256()
    for script in SCRIPTS:
        for path in discover_fonts(script):
            h.update(f"{script}/{path.name}:{path.stat().st_size};".encode())
    return h.hexdigest()[:12]


# Faces that are one design under two family names (proportional twins).
_SAME_DESIGN = {"ipapgothic": "ipagothic", "ipapmincho": "ipamincho"}
#: Every ``TEST_EVERY``-th typeface (in hash order) of a family is held out for testing.
TEST_EVERY = 3


def _typeface(path: Path) -> str:
    """The design a font file belongs to: its FreeType family name, normalised."""
    family = str(_font_name(str(path))).lower().replace(" ", "")
    return _SAME_DESIGN.get(family, family)


@functools.cache
def _font_name(path: str) -> str:
    from PIL import ImageFont

    return str(ImageFont.truetype(path, 12).getname()[0])


def _partition(family: str, names: list[str], groups: list[str]) -> tuple[list[int], list[int]]:
    """Split items into (train, test) index lists by group, deterministically.

    The groups are ordered by ``sha256(family:group)`` and every :data:`TEST_EVERY`-th one,
    starting with the first, goes to test. Needs two groups or more.
    """
    distinct = sorted(set(groups), key=lambda g: hashlib.sha256(f"{family}:{g}".encode()).digest())
    if len(distinct) < 2:
        raise MissingFontsError(
            f"the {family} fonts hold {len(distinct)} typeface(s) ({', '.join(names)}); "
            f"a train/test font partition needs at least 2: install every package of "
            f"deps/apt-data.txt"
        )
    test_groups = {g for rank, g in enumerate(distinct) if rank % TEST_EVERY == 0}
    train = [i for i, g in enumerate(groups) if g not in test_groups]
    test = [i for i, g in enumerate(groups) if g in test_groups]
    return train, test


def font_partition(family: FontFamily) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """The hard preset's disjoint train and test fonts of one family.

    Fonts are grouped by typeface (FreeType family name, so the bold and italic files of a
    test face never reach training); the typefaces are ordered by the SHA-256 of
    ``"<family>:<typeface>"`` and every third one, starting with the first, is held out for
    the test splits. The partition depends only on the installed font files.

    Parameters
    ----------
    family : {"print", "hand", "deva", "arabic", "thai", "cjk"}

    Returns
    -------
    train, test : tuple of pathlib.Path
        Disjoint, both non-empty, together :func:`discover_fonts` ``(family)``.

    Raises
    ------
    MissingFontsError
        The family has fewer than two typefaces installed.

    Examples
    --------
    >>> train, test = font_partition("thai")
    >>> len(train) > 0 and len(test) > 0 and not set(train) & set(test)
    True
    """
    fonts = discover_fonts(family)
    train, test = _partition(family, [p.name for p in fonts], [_typeface(p) for p in fonts])
    return tuple(fonts[i] for i in train), tuple(fonts[i] for i in test)


def hershey_partition() -> tuple[tuple[HersheyFont, ...], tuple[HersheyFont, ...]]:
    """The hard preset's disjoint train and test Hershey designs.

    Designs are grouped by the first four letters of their file name (``futural`` and
    ``futuram`` are one design at two weights), then split as in :func:`font_partition`.

    Examples
    --------
    >>> train, test = hershey_partition()
    >>> {f.name for f in train}.isdisjoint(f.name for f in test)
    True
    """
    fonts = hershey_fonts()
    names = [f.name for f in fonts]
    train, test = _partition("hershey", names, [n[:4] for n in names])
    return tuple(fonts[i] for i in train), tuple(fonts[i] for i in test)
