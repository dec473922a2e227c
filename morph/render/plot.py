"""Curves drawn straight into pixels: the per-frame gains under ``morph preview``'s sheet, each under a line
naming it with its range, over a frame axis. A plotting library would add a dependency for a few lines a pixel
wide; the labels are Pillow's (``morph.render.caption``)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from morph.render.caption import text_band

COLOURS = ((214, 39, 40), (31, 119, 180), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207))


def curve_strip(values: np.ndarray, width: int, height: int, colour: Sequence[int],
                marks: Sequence[int] = ()) -> np.ndarray:
    """``values`` (one per frame) as a line on white, ``width`` × ``height`` uint8 RGB, scaled to their own
    range, with grey ticks at frames ``marks``; time runs left to right over the whole render."""
    out = np.full((height, width, 3), 255, np.uint8)
    frames = len(values)
    column = lambda f: int(round(f * (width - 1) / max(1, frames - 1)))
    for f in marks:
        out[:, column(f)] = 200
    v = np.asarray(values, np.float64)[np.round(np.linspace(0, frames - 1, width)).astype(int)]
    low, span = v.min(), np.ptp(v)
    y = np.round((1 - ((v - low) / span if span > 0 else np.full_like(v, 0.5))) * (height - 3)).astype(int) + 1
    for x in range(width):  # join each column to the previous one, so steep rises stay visible
        a, b = sorted((y[x], y[max(0, x - 1)]))
        out[a:b + 1, x] = colour
    return out


def curve_panel(curves: Sequence[np.ndarray], width: int, height: int = 40, marks: Sequence[int] = (),
                labels: Sequence[str] = (), size: int = 0) -> np.ndarray:
    """One strip per curve (coloured in ``COLOURS`` order), stacked, each under a line in its colour naming it
    (``labels``, else ``curve N``) with the range it is scaled to, and under them the frame axis (grey ticks:
    ``marks``). ``size``: the text's pixel size (0: from the width)."""
    strips = []
    for i, c in enumerate(curves):
        colour = COLOURS[i % len(COLOURS)]
        name = labels[i] if i < len(labels) else f"curve {i + 1}"
        strips += [text_band([name], width, colour, size, right=[f"{np.min(c):.2f} to {np.max(c):.2f}"]),
                   curve_strip(c, width, height, colour, marks), np.full((2, width, 3), 255, np.uint8)]
    if not strips:
        return np.zeros((0, width, 3), np.uint8)
    frames = len(curves[0])
    axis = text_band(["frame 0" + ("  (grey ticks: keyframes)" if len(marks) else "")], width, size=size,
                     right=[f"frame {frames - 1}"])
    return np.concatenate([*strips, axis])
