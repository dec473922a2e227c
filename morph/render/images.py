"""Image files: reading any image ffmpeg decodes, writing PNGs (no extra dependency), tiling grids."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import zlib

import numpy as np

from morph.core.errors import MorphError
from morph.render.encode import ffmpeg_exe

_PPM_HEADER = re.compile(rb"P6\s+(\d+)\s+(\d+)\s+255\s")


def grid(images: np.ndarray, cols: int, pad: int = 2) -> np.ndarray:
    """Tile uint8 images [N, H, W, 3] into one image, ``cols`` per row, separated by ``pad`` white pixels."""
    n, h, w, _ = images.shape
    rows = -(-n // cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = img
    return out


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a uint8 RGB image [H, W, 3] as an 8-bit PNG."""
    h, w, _ = image.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in np.ascontiguousarray(image, np.uint8))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
                 + chunk(b"IEND", b""))


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
