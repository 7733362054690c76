"""A preview grid of the domains: one row per domain, two samples of each digit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ecos_fast.errors import InvalidInputError

from .digits import DOMAINS, FontSplit, check_fonts, check_seed, render_domain

__all__ = ["preview_grid", "save_preview"]


def preview_grid(
    domains: Sequence[str] = DOMAINS,
    per_class: int = 2,
    seed: int = 0,
    scale: int = 2,
    *,
    fonts: FontSplit = "all",
) -> NDArray[np.uint8]:
    """A labelled RGB grid: one row per domain, ``per_class`` images of each digit.

    Parameters
    ----------
    domains : sequence of str
        Rows, top to bottom.
    per_class : int, default 2
        Images of each digit per row.
    seed : int, default 0
        Data seed of the test splits drawn.
    scale : int, default 2
        Nearest-neighbour magnification of each 32x32 image.
    fonts : {"all", "heldout"}, default "all"
        ``heldout`` shows the hard preset's test splits (fonts that training never uses).

    Returns
    -------
    ndarray of shape (height, width, 3), dtype uint8

    Examples
    --------
    >>> grid = preview_grid(["hershey"], per_class=1, scale=1)
    >>> grid.shape[0] >= 34, grid.dtype.name
    (True, 'uint8')
    """
    from PIL import Image, ImageDraw, ImageFont

    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise InvalidInputError(f"per_class={per_class!r} must be an int >= 1")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise InvalidInputError(f"scale={scale!r} must be an int >= 1")
    seed = check_seed(seed)
    fonts = check_fonts(fonts)
    cell = 32 * scale + 2
    label_width = 80 * scale
    rows = []
    for name in domains:
        images, labels = render_domain(name, "test", 10 * per_class, seed, fonts=fonts)
        order = np.argsort(labels, kind="stable")
        tiles = [
            np.pad(
                images[i].repeat(scale, axis=0).repeat(scale, axis=1),
                ((1, 1), (1, 1), (0, 0)),
                constant_values=255,
            )
            for i in order
        ]
        rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    canvas = Image.new("RGB", (label_width + grid.shape[1], grid.shape[0]), (255, 255, 255))
    canvas.paste(Image.fromarray(grid), (label_width, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=12 * scale)
    for r, name in enumerate(domains):
        draw.text((4, r * cell + cell // 2), name, fill=(0, 0, 0), font=font, anchor="lm")
    return np.asarray(canvas, dtype=np.uint8)


def save_preview(path: str | Path, **kwargs: object) -> Path:
    """Write :func:`preview_grid` as a PNG and return its path."""
    from PIL import Image

    path = Path(path)
    Image.fromarray(preview_grid(**kwargs)).save(path)  # type: ignore[arg-type]
    return path
