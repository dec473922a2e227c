"""Wide frames: a render's canvas (its frame in pixels) and how the square model fills it.

``widen`` has the network draw the wider frame itself (each family's ``synthesize(canvas=...)``); ``pad``
centres the square image on a plain canvas; ``crop`` cuts the canvas out of the square's centre. The
square image's side in the output is the render's ``size``: the canvas's short side for widen and pad,
its long side for crop. Sizes computed from an aspect are rounded to the nearest even number, for every
format alike (mp4 and webm need even sizes; a scene's frames then match across its formats).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

FITS = ("widen", "pad", "crop")


def even(x: float) -> int:
    """The even integer nearest ``x`` (at least 2)."""
    return max(2, 2 * round(x / 2))


@dataclass(frozen=True)
class Canvas:
    """A render's frame: ``width`` × ``height`` output pixels, filled by ``fit`` (pad: with ``color``)."""

    width: int
    height: int
    fit: str = "widen"
    color: tuple[int, int, int] = (0, 0, 0)

    @classmethod
    def from_aspect(cls, aspect: float, size: int, fit: str = "widen",
                    color: tuple[int, int, int] = (0, 0, 0)) -> "Canvas":
        """The canvas of ``aspect`` (width / height) whose square image is ``size`` px: the short side is
        ``size`` for widen and pad, the long side for crop; the other side is rounded to even."""
        long_is_size = fit == "crop"
        if (aspect >= 1) != long_is_size:  # the width is the computed side
            return cls(even(size * aspect), size, fit, color)
        return cls(size, even(size / aspect), fit, color)

    @property
    def square(self) -> int:
        """The square image's side in the output frame."""
        return max(self.width, self.height) if self.fit == "crop" else min(self.width, self.height)

    def model_frame(self, resolution: int) -> tuple[int, int]:
        """(width, height) of the frame at the model's scale (its square image ``resolution`` px)."""
        scale = resolution / self.square
        return round(self.width * scale), round(self.height * scale)

    def drawn(self, resolution: int) -> Optional[tuple[int, int]]:
        """The ``canvas`` the network draws (widen), or None: pad and crop frame the square image."""
        return self.model_frame(resolution) if self.fit == "widen" else None

    def source(self, resolution: int) -> tuple[int, int]:
        """(width, height) of the frames the generator hands the encoder."""
        return self.drawn(resolution) or (resolution, resolution)

    def filters(self) -> str:
        """ffmpeg's video filter from the generator's frames to the output frame: Lanczos to the output scale,
        then pad or crop there, so pad borders are exactly ``color`` and crop is exactly the square's centre."""
        w, h, s = self.width, self.height, self.square
        if self.fit == "widen":
            return f"scale={w}:{h}:flags=lanczos"
        scale = f"scale={s}:{s}:flags=lanczos"
        if self.fit == "pad":
            return f"{scale},pad={w}:{h}:{(w - s) // 2}:{(h - s) // 2}:color=0x{bytes(self.color).hex()}"
        return f"{scale},crop={w}:{h}:{(s - w) // 2}:{(s - h) // 2}"

    def frame(self, images: np.ndarray, resolution: int) -> np.ndarray:
        """uint8 frames [n, H, W, 3] from the generator → the canvas at the model's scale (previews, the studio)."""
        if self.fit == "widen":
            return images
        w, h = self.model_frame(resolution)
        r = resolution
        if self.fit == "crop":
            top, left = (r - h) // 2, (r - w) // 2
            return images[:, top:top + h, left:left + w]
        out = np.empty((len(images), h, w, images.shape[-1]), np.uint8)
        out[...] = np.asarray(self.color, np.uint8)[:images.shape[-1]]
        top, left = (h - r) // 2, (w - r) // 2
        out[:, top:top + r, left:left + r] = images
        return out

    def key(self) -> dict:
        """What of the canvas decides a segment's pixels."""
        return asdict(self)

    def describe(self) -> str:
        """``1920x1080 widen`` (``pad #202020``): how ``morph check`` shows it."""
        return f"{self.width}x{self.height} {self.fit}" + (f" #{bytes(self.color).hex()}" if self.fit == "pad" else "")


__all__ = ["FITS", "Canvas", "even"]
