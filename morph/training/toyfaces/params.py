"""Face parameters as a struct of arrays, and their seeded random distribution.

Every face draws one row of uniforms in a fixed field order, so face ``i`` of
``sample_params(seed, n)`` is the same for any ``n > i`` and each field is independent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

BALD, SHORT, LONG = 0, 1, 2  # values of ``FaceParams.hair_style``


@dataclass(frozen=True, eq=False)
class FaceParams:
    """One array per field, all of length N (one entry per face). Build by hand with
    ``FaceParams.from_records``; unspecified fields take their neutral ``DEFAULTS``."""

    face_width: np.ndarray  # 0.88..1.12, multiplies the face's width
    jaw: np.ndarray  # 0 round chin .. 1 narrow, pointed chin
    skin: np.ndarray  # 0 light .. 1 dark skin tone
    hair_style: np.ndarray  # BALD, SHORT or LONG
    hair_curly: np.ndarray  # bool, bumpy curly outline
    hair_light: np.ndarray  # 0 black .. 1 blond; below 0.5 counts as dark
    hair_red: np.ndarray  # 0 neutral .. 1 ginger tint
    fringe: np.ndarray  # 0 high hairline .. 1 low fringe
    part: np.ndarray  # -1..1, side the hair is swept from
    eye_size: np.ndarray  # 0.85..1.15
    eye_color: np.ndarray  # 0..1, index into the iris palette
    gaze_x: np.ndarray  # -1 looks image-left .. 1 image-right
    gaze_y: np.ndarray  # -1 up .. 1 down
    brow_raise: np.ndarray  # -1 lowered .. 1 raised eyebrows
    brow_thick: np.ndarray  # 0.7..1.3
    nose_size: np.ndarray  # 0.8..1.2
    mouth_width: np.ndarray  # 0.85..1.15
    smile: np.ndarray  # -1 frown .. 0 neutral .. 1 big open smile with teeth
    glasses: np.ndarray  # bool
    glasses_round: np.ndarray  # bool, round rather than rectangular frames
    glasses_color: np.ndarray  # 0..1, index into the frame palette
    beard: np.ndarray  # bool
    turn: np.ndarray  # -1 head turned to image-left .. 1 image-right
    tilt: np.ndarray  # radians, positive rolls the head clockwise on screen
    light: np.ndarray  # -1 lit from image-left .. 1 from image-right
    bg_hue: np.ndarray  # 0..1
    bg_value: np.ndarray  # 0..1 background brightness
    bg_gradient: np.ndarray  # -1..1, direction of the background gradient (0 = top to bottom)
    shirt_hue: np.ndarray  # 0..1
    shirt_value: np.ndarray  # 0..1 shirt brightness

    def __post_init__(self) -> None:
        n = None
        for f in dataclasses.fields(self):
            dtype = _DTYPES.get(f.name, np.float32)
            value = np.atleast_1d(np.asarray(getattr(self, f.name))).astype(dtype)
            if value.ndim != 1 or (n is not None and len(value) != n):
                raise ValueError(f"FaceParams.{f.name}: expected a 1-D array of length {n}, got shape {value.shape}")
            n = len(value)
            object.__setattr__(self, f.name, value)

    def __len__(self) -> int:
        return len(self.smile)

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> FaceParams:
        """The faces at ``index`` (an int keeps a batch of one)."""
        index = [index] if isinstance(index, (int, np.integer)) else index
        return FaceParams(**{name: value[index] for name, value in self.columns().items()})

    def columns(self) -> dict[str, np.ndarray]:
        """Field name -> array, in declaration order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> FaceParams:
        """A copy with some fields replaced; scalars are broadcast to every face."""
        columns = self.columns()
        for name, value in changes.items():
            columns[name] = np.broadcast_to(value, (len(self),))
        return FaceParams(**columns)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> FaceParams:
        """Faces from hand-written dicts of field values; missing fields are neutral defaults."""
        records = list(records)
        unknown = {key for r in records for key in r} - set(DEFAULTS)
        if unknown:
            raise ValueError(f"FaceParams: unknown field(s) {sorted(unknown)}")
        return cls(**{name: [r.get(name, default) for r in records] for name, default in DEFAULTS.items()})

    @classmethod
    def concat(cls, parts: Sequence[FaceParams]) -> FaceParams:
        """One batch holding the faces of ``parts`` in order."""
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in DEFAULTS})


_DTYPES = {"hair_style": np.int8, "hair_curly": bool, "glasses": bool, "glasses_round": bool, "beard": bool}

DEFAULTS: dict[str, Any] = {
    "face_width": 1.0, "jaw": 0.5, "skin": 0.3, "hair_style": SHORT, "hair_curly": False,
    "hair_light": 0.2, "hair_red": 0.0, "fringe": 0.5, "part": 0.3, "eye_size": 1.0, "eye_color": 0.2,
    "gaze_x": 0.0, "gaze_y": 0.0, "brow_raise": 0.0, "brow_thick": 1.0, "nose_size": 1.0,
    "mouth_width": 1.0, "smile": 0.0, "glasses": False, "glasses_round": False, "glasses_color": 0.0,
    "beard": False, "turn": 0.0, "tilt": 0.0, "light": 0.3, "bg_hue": 0.55, "bg_value": 0.8,
    "bg_gradient": 0.5, "shirt_hue": 0.6, "shirt_value": 0.5,
}


def _uniform(lo: float, hi: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda u: lo + (hi - lo) * u


def _bernoulli(p: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda u: u < p


def _choice(*probs: float) -> Callable[[np.ndarray], np.ndarray]:
    edges = np.cumsum(probs)[:-1]
    return lambda u: np.searchsorted(edges, u, side="right")


def _away_from_middle(power: float) -> Callable[[np.ndarray], np.ndarray]:
    """0..1 values that thin out near 0.5, so 'dark' vs 'light' is rarely a coin toss."""
    return lambda u: 0.5 + 0.5 * np.sign(2 * u - 1) * np.abs(2 * u - 1) ** power


_SAMPLERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "face_width": _uniform(0.88, 1.12), "jaw": _uniform(0.0, 1.0), "skin": _uniform(0.0, 1.0),
    "hair_style": _choice(0.15, 0.45, 0.40), "hair_curly": _bernoulli(0.3),
    "hair_light": _away_from_middle(0.6), "hair_red": lambda u: u * u, "fringe": _uniform(0.0, 1.0),
    "part": _uniform(-1.0, 1.0), "eye_size": _uniform(0.85, 1.15), "eye_color": _uniform(0.0, 1.0),
    "gaze_x": _uniform(-1.0, 1.0), "gaze_y": _uniform(-0.6, 0.6), "brow_raise": _uniform(-1.0, 1.0),
    "brow_thick": _uniform(0.7, 1.3), "nose_size": _uniform(0.8, 1.2), "mouth_width": _uniform(0.85, 1.15),
    "smile": _uniform(-0.8, 1.0), "glasses": _bernoulli(0.45), "glasses_round": _bernoulli(0.5),
    "glasses_color": _uniform(0.0, 1.0), "beard": _bernoulli(0.4), "turn": _uniform(-1.0, 1.0),
    "tilt": _uniform(-0.25, 0.25), "light": _uniform(-1.0, 1.0), "bg_hue": _uniform(0.0, 1.0),
    "bg_value": _uniform(0.35, 0.95), "bg_gradient": _uniform(-1.0, 1.0), "shirt_hue": _uniform(0.0, 1.0),
    "shirt_value": _uniform(0.2, 0.9),
}


def sample_params(rng: np.random.Generator | int, n: int) -> FaceParams:
    """``n`` random faces from a seed or generator; the same seed always gives the same faces."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    uniforms = rng.random((n, len(_SAMPLERS)))
    return FaceParams(**{name: draw(uniforms[:, k]) for k, (name, draw) in enumerate(_SAMPLERS.items())})
