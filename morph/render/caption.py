"""Text drawn under images with Pillow's bundled font (``ImageFont.load_default(size=...)``: nothing to
download): captions under a still, labels under the cells of a grid, a curve's axis."""

from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BLACK = (0, 0, 0)


@functools.lru_cache(maxsize=None)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` pixels."""
    return ImageFont.load_default(size=size)


def text_size(width: int) -> int:
    """Pixel size of text under an image ``width`` pixels wide: readable on a 64 px face, not shouting on a
    1024 px one."""
    return max(10, min(28, width // 14))


def _wrap(line: str, width: int, size: int) -> list[str]:
    """``line`` broken at spaces into pieces at most ``width`` pixels long (a longer single word is clipped)."""
    out: list[str] = []
    for word in line.split(" "):
        if out and font(size).getlength(f"{out[-1]} {word}") <= width:
            out[-1] = f"{out[-1]} {word}"
        else:
            out.append(word)
    return out or [""]


def _fitted(line: str, width: int, size: int) -> int:
    """The largest size up to ``size`` (and at least 7) at which ``line`` fits in ``width`` pixels."""
    while size > 7 and font(size).getlength(line) > width:
        size -= 1
    return size


def text_band(lines: Sequence[str], width: int, colour: Sequence[int] = BLACK, size: int = 0,
              right: Sequence[str] = (), fit: bool = False) -> np.ndarray:
    """A white uint8 band ``width`` pixels wide holding ``lines`` in ``colour``: wrapped at spaces, or with
    ``fit`` each kept on one line in a smaller size until it fits (a band's height then never depends on its
    text: the labels of a grid's cells line up). ``right``: text set flush right on the same lines. ``size``
    0: :func:`text_size` of the width."""
    size = size or text_size(width)
    margin = max(2, size // 5)
    room = width - 2 * margin
    rows = list(lines) if fit else [piece for line in lines for piece in _wrap(line, room, size)]
    line_h = round(size * 1.25)
    band = Image.new("RGB", (width, line_h * max(len(rows), len(right)) + margin), (255, 255, 255))
    draw = ImageDraw.Draw(band)
    for i, row in enumerate(rows):
        small = _fitted(row, room, size) if fit else size
        draw.text((margin, margin + i * line_h + size - small), row, fill=tuple(colour), font=font(small))
    for i, row in enumerate(right):
        draw.text((width - margin, margin + i * line_h), row, fill=tuple(colour), font=font(size), anchor="ra")
    return np.asarray(band)


def add_caption(image: np.ndarray, lines: Sequence[str], size: int = 0) -> np.ndarray:
    """``image`` (uint8 [H, W, 3]) with ``lines`` of black text on white below it (``size``: as
    :func:`text_band`; a grid's caption passes its cells' so that it reads like their labels)."""
    return np.concatenate([image, text_band(lines, image.shape[1], size=size)])


def describe(row: dict[str, Any]) -> str:
    """One line of figures: ``PSNR 24.1 dB, LPIPS 0.213, identity 0.95 (distance 0.31), attributes 6/6``."""
    parts = [f"PSNR {row['psnr']:.1f} dB"]
    if "lpips" in row:
        parts.append(f"LPIPS {row['lpips']:.3f}")
    if "identity" in row:
        parts.append("identity: no face found" if row["identity"] is None else
                     f"identity {row['identity']:.2f} (distance {row['identity_distance']:.2f})"
                     if "identity_distance" in row else f"identity {row['identity']:.2f} (ArcFace)")
    if "attributes" in row:
        parts.append(f"attributes {row['attributes_agreeing']}/{row['attributes']}")
    if "psnr_before_tuning" in row:  # morph project --tune: the untuned network's figures too
        before = [f"PSNR {row['psnr_before_tuning']:.1f} dB"]
        before += [f"LPIPS {row['lpips_before_tuning']:.3f}"] if "lpips_before_tuning" in row else []
        before += [f"identity {row['identity_before_tuning']:.2f}"] if row.get("identity_before_tuning") is not None else []
        parts.append("before tuning " + " ".join(before))
    return ", ".join(parts)
