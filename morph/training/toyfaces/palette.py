"""Colour ramps that turn 0..1 parameters into RGB (float32, shape [N, 3], values 0..1)."""

from __future__ import annotations

import numpy as np

SKIN = np.array([[0.99, 0.86, 0.76], [0.94, 0.75, 0.62], [0.80, 0.58, 0.42],
                 [0.60, 0.40, 0.27], [0.38, 0.25, 0.17]], np.float32)
HAIR = np.array([[0.05, 0.04, 0.04], [0.17, 0.11, 0.07], [0.38, 0.25, 0.15],
                 [0.72, 0.56, 0.33], [0.93, 0.82, 0.56]], np.float32)
HAIR_RED = np.array([[0.14, 0.05, 0.03], [0.36, 0.12, 0.05], [0.62, 0.25, 0.09],
                     [0.84, 0.46, 0.20], [0.96, 0.70, 0.45]], np.float32)
IRIS = np.array([[0.20, 0.11, 0.06], [0.35, 0.20, 0.10], [0.30, 0.42, 0.20],
                 [0.18, 0.38, 0.62], [0.35, 0.42, 0.48]], np.float32)
FRAMES = np.array([[0.05, 0.05, 0.06], [0.30, 0.16, 0.08], [0.55, 0.08, 0.10],
                   [0.10, 0.16, 0.40]], np.float32)


def ramp(stops: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation through evenly spaced colour ``stops`` at positions ``t``."""
    x = np.clip(np.asarray(t, np.float32), 0.0, 1.0) * (len(stops) - 1)
    i = np.minimum(x.astype(np.int64), len(stops) - 2)
    f = (x - i)[:, None]
    return (stops[i] * (1 - f) + stops[i + 1] * f).astype(np.float32)


def pick(stops: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The colour of ``stops`` whose equal-width bin contains ``t`` (no blending)."""
    i = np.minimum((np.clip(t, 0.0, 1.0) * len(stops)).astype(np.int64), len(stops) - 1)
    return stops[i]


def hsv(h: np.ndarray, s: np.ndarray | float, v: np.ndarray | float) -> np.ndarray:
    """HSV (all 0..1) to RGB, vectorised."""
    h = np.asarray(h, np.float32)[:, None]
    k = (np.array([5.0, 3.0, 1.0], np.float32) + h * 6.0) % 6.0
    s = np.asarray(s, np.float32).reshape(-1, 1)
    v = np.asarray(v, np.float32).reshape(-1, 1)
    return (v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)).astype(np.float32)


def hair(light: np.ndarray, red: np.ndarray) -> np.ndarray:
    """Hair colour: black..blond along ``light``, tinted toward auburn/ginger by ``red``."""
    r = np.asarray(red, np.float32)[:, None]
    return ramp(HAIR, light) * (1 - r) + ramp(HAIR_RED, light) * r


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Perceived brightness of [N, 3] colours."""
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def contrast(rgb: np.ndarray, against: np.ndarray, gap: float = 0.2) -> np.ndarray:
    """``rgb`` darkened (or, on very dark ``against``, lightened) until its luminance differs from
    ``against``'s by at least ``gap``, so a feature never melts into the skin it lies on."""
    lum, ref = luminance(rgb), luminance(against)
    darken = ((lum <= ref) & (ref - gap >= 0.05)) | (ref + gap > 0.95)
    scale = np.where(darken, np.minimum(1.0, (ref - gap) / np.maximum(lum, 1e-3)), 1.0)[:, None]
    lift = np.where(darken, 0.0, np.clip((ref + gap - lum) / np.maximum(1.0 - lum, 1e-3), 0.0, 1.0))[:, None]
    return (rgb * np.maximum(scale, 0.0) + (1.0 - rgb) * lift).astype(np.float32)
