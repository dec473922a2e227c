"""Classifier labels derived from face parameters: binary attributes, their ambiguous
bands (to leave out of training), and continuous values."""

from __future__ import annotations

import numpy as np

from morph.training.toyfaces.params import BALD, LONG, FaceParams

# smile: smiling (smile > SMILE_THRESHOLD); hair_dark: black/brown rather than light brown/blond;
# hair_long: hair down to the shoulders; turn_left: the face is turned towards the image's left side.
ATTRIBUTES: tuple[str, ...] = ("smile", "glasses", "beard", "hair_dark", "hair_long", "turn_left")
CONTINUOUS: tuple[str, ...] = (
    "smile_amount", "turn", "tilt", "gaze_x", "gaze_y", "skin", "hair_light", "face_width", "light",
)

SMILE_THRESHOLD = 0.25  # smile above this reads as smiling (the lip line clearly bends up)
SMILE_MARGIN = 0.15  # |smile - threshold| below this is ambiguous
HAIR_DARK_THRESHOLD = 0.5
HAIR_DARK_MARGIN = 0.1
TURN_MARGIN = 0.2  # |turn| below this is ambiguous: the face is almost frontal


def labels(params: FaceParams) -> dict[str, np.ndarray]:
    """Binary attributes (bool, keys ``ATTRIBUTES``) and continuous values (float32, keys ``CONTINUOUS``)."""
    p = params
    out: dict[str, np.ndarray] = {
        "smile": p.smile > SMILE_THRESHOLD,
        "glasses": p.glasses.copy(),
        "beard": p.beard.copy(),
        "hair_dark": p.hair_light < HAIR_DARK_THRESHOLD,
        "hair_long": p.hair_style == LONG,
        "turn_left": p.turn < 0.0,
        "smile_amount": p.smile.copy(),
    }
    for name in CONTINUOUS[1:]:
        out[name] = getattr(p, name).copy()
    return out


def ambiguous(params: FaceParams) -> dict[str, np.ndarray]:
    """Per attribute, True where the label is hard to see and best left out of training:
    near a threshold, or the hair colour of a bald head."""
    p = params
    none = np.zeros(len(p), bool)
    return {
        "smile": np.abs(p.smile - SMILE_THRESHOLD) < SMILE_MARGIN,
        "glasses": none.copy(),
        "beard": none.copy(),
        "hair_dark": (np.abs(p.hair_light - HAIR_DARK_THRESHOLD) < HAIR_DARK_MARGIN) | (p.hair_style == BALD),
        "hair_long": none.copy(),
        "turn_left": np.abs(p.turn) < TURN_MARGIN,
    }
