"""Image files: reading any image ffmpeg decodes, writing PNGs that say what made them (Pillow), tiling grids
with a label under each image."""

from __future__ import annotations

import io
import os
import re
import subprocess
from typing import Mapping, Optional, Sequence

import numpy as np
from PIL import Image, PngImagePlugin

from morph.core import __version__
from morph.core.errors import MorphError
from morph.render.caption import text_band
from morph.render.encode import ffmpeg_exe

_PPM_HEADER = re.compile(rb"P6\s+(\d+)\s+(\d+)\s+255\s")


def grid(images: np.ndarray, cols: int, pad: int = 2, labels: Optional[Sequence[str]] = None) -> np.ndarray:
    """Tile uint8 images [N, H, W, 3] into one image, ``cols`` per row, separated by ``pad`` white pixels; with
    ``labels`` (one per image), each image's label is written on one line in a white band under it."""
    if labels is not None:
        images = np.stack([np.concatenate([image, text_band([label], image.shape[1], fit=True)])
                           for image, label in zip(images, labels, strict=True)])
    n, h, w, _ = images.shape
    rows = -(-n // cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = img
    return out


def png_bytes(image: np.ndarray, text: Optional[Mapping[str, str]] = None, compress_text: bool = False) -> bytes:
    """A uint8 RGB image [H, W, 3] as PNG bytes whose text chunks hold ``Software: morph VERSION`` and ``text``
    (UTF-8 iTXt chunks, zlib-compressed with ``compress_text``); ``PIL.Image.open(f).text`` reads them back."""
    info = PngImagePlugin.PngInfo()
    for key, value in {"Software": f"morph {__version__}", **(text or {})}.items():
        info.add_itxt(key, value, zip=compress_text)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, np.uint8)).save(buf, format="PNG", pnginfo=info, compress_level=6)
    return buf.getvalue()


def still_text(model: str, model_sha256: str, source: str, **more: str) -> dict[str, str]:
    """The text chunks of a still: the model as it was named and its file's SHA-256, what it shows
    (``source``: ``seed 12, truncation 0.7``, a latent file, a scene's render), and ``more`` (``morph:KEY``)."""
    return {"morph:model": model, "morph:model_sha256": model_sha256, "morph:source": source,
            **{f"morph:{key}": value for key, value in more.items()}}


def write_png(path: str | os.PathLike, image: np.ndarray, text: Optional[Mapping[str, str]] = None) -> None:
    """Write ``image`` (uint8 RGB [H, W, 3]) as a PNG with ``text`` in its text chunks (see :func:`png_bytes`):
    every still morph writes says which model, seed or latent made it."""
    with open(path, "wb") as fh:
        fh.write(png_bytes(image, text))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Any image ffmpeg decodes (PNG, JPEG, WebP, GIF, BMP, TIFF) as uint8 RGB [H, W, 3]; MorphError if not."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", os.fspath(path),
                           "-frames:v", "1", "-f", "image2pipe", "-c:v", "ppm", "-pix_fmt", "rgb24", "-"],
                          capture_output=True)
    # The header is "P6 WIDTH HEIGHT 255" and ONE whitespace byte; the pixels may start with whitespace values.
    head = _PPM_HEADER.match(proc.stdout)
    size = int(head.group(1)) * int(head.group(2)) * 3 if head else 0
    if proc.returncode != 0 or head is None or len(proc.stdout) < head.end() + size:
        last = (proc.stderr.decode(errors="replace").strip().splitlines() or ["not an image"])[-1]
        raise MorphError(f"cannot read the image ({last})", where=path)
    pixels = np.frombuffer(proc.stdout, np.uint8, count=size, offset=head.end())
    return pixels.reshape(int(head.group(2)), int(head.group(1)), 3).copy()
