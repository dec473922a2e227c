"""What the built-in generator is trained to draw for each latent: the renderer's face for z.

The generator's mapping network sees ``x = z / rms(z)`` (NVIDIA's input normalisation), a point
on the sphere of radius √d in d = ``len(FIELDS)`` dimensions. Coordinate k of x drives face
field ``FIELDS[k]``: it goes through its exact marginal CDF on that sphere (so it is uniform
for random z) and then through ``morph.training.toyfaces``' own sampler for the field. So random z give
the renderer's distribution of faces, and every z has a definite target image.

Three extensions make the targets fit a StyleGAN's latent space:

* **Soft switches.** Fields that are step functions (hair style, glasses, beard, ...) would make
  the target jump; within ``SWITCH_BAND`` of each step the target cross-fades between the two
  renders instead, so interpolation glides through a short blend, as in a GAN.
* **Style mixing.** Each field has a ``LEVEL``: the first synthesis layer (w index) from which
  it is no longer decided. With a crossover at layer c (layers < c take w(z_A), the rest
  w(z_B)), fields of level < c come from A and the others from B: head pose, face shape, hair
  style, glasses and beard are coarse; expression, eyes, brows and hairline middle; skin, hair,
  eye, background and shirt colours fine.
* **Truncation.** w_avg.lerp(w, ψ) is trained to draw the face of ψ·x: ψ = 0 is the median face.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import betainc, betaincinv

from morph.training.toyfaces import FaceParams, render
from morph.training.toyfaces.latent import FIELDS, SWITCHES, params_from_uniform

LATENT_DIM = len(FIELDS)
SWITCH_BAND = 0.12  # half width, in sphere coordinates, of the cross-fade around each step

# First w index at which each field stops being decided (64 px: 0 = b4.conv1, 1-2 = b8,
# 3-4 = b16, 5-6 = b32, 7-9 = b64). Fields of level L come from z_A when the crossover is > L.
LEVEL: dict[str, int] = {
    # coarse (4-8 px): pose, head shape, hair volume, glasses, beard
    "turn": 1, "tilt": 1,
    "face_width": 2, "jaw": 2, "hair_style": 2, "glasses": 2, "beard": 2,
    # middle (16 px): expression, features, hairline, light direction
    "smile": 3, "mouth_width": 3, "hair_curly": 3, "fringe": 3, "part": 3, "glasses_round": 3,
    "eye_size": 4, "gaze_x": 4, "gaze_y": 4, "brow_raise": 4, "brow_thick": 4, "nose_size": 4, "light": 4,
    "bg_gradient": 4,
    # fine (32-64 px): colours
    "skin": 5, "hair_light": 5, "hair_red": 5,
    "bg_hue": 6, "bg_value": 6, "shirt_hue": 6, "shirt_value": 6,
    "eye_color": 7, "glasses_color": 7,
}
assert set(LEVEL) == set(FIELDS), sorted(set(FIELDS) ^ set(LEVEL))
LEVELS = np.array([LEVEL[f] for f in FIELDS])
MIX_CUTOFF = 5  # the crossover that evaluation and figures use: pose/shape/expression from A, colours from B
POSE_FIELDS = tuple(f for f in FIELDS if LEVEL[f] < MIX_CUTOFF)
COLOUR_FIELDS = tuple(f for f in FIELDS if LEVEL[f] >= MIX_CUTOFF)


def sphere_cdf(x: np.ndarray, d: int = LATENT_DIM) -> np.ndarray:
    """CDF of one coordinate of a uniform point on the sphere of radius √d in d dimensions."""
    x = np.asarray(x, np.float64)
    t = np.clip(x * x / d, 0.0, 1.0)
    return 0.5 + 0.5 * np.sign(x) * betainc(0.5, 0.5 * (d - 1), t)


def sphere_ppf(u: np.ndarray, d: int = LATENT_DIM) -> np.ndarray:
    """Inverse of :func:`sphere_cdf`."""
    u = np.asarray(u, np.float64)
    s = np.sign(u - 0.5)
    t = betaincinv(0.5, 0.5 * (d - 1), np.clip(np.abs(2 * u - 1), 0.0, 1.0))
    return s * np.sqrt(t * d)


def coords(z: np.ndarray) -> np.ndarray:
    """What the mapping network sees: ``z`` scaled to unit root-mean-square per row (float64)."""
    z = np.asarray(z, np.float64)
    return z / np.sqrt(np.mean(z * z, axis=1, keepdims=True) + 1e-8)


def params_from_latent(z: np.ndarray, psi: float | np.ndarray = 1.0) -> FaceParams:
    """The face latent ``z`` [N, LATENT_DIM] stands for (hard switches), truncated by ``psi``."""
    psi = np.broadcast_to(np.asarray(psi, np.float64), (len(z),))[:, None]
    return params_from_uniform(sphere_cdf(psi * coords(z)))


def latent_from_params(params: FaceParams) -> np.ndarray:
    """A latent z whose face is close to ``params``: the sphere coordinates of the faces' uniforms,
    rescaled onto the sphere (exact when they already lie on it, else every field moves a little
    towards or away from its median)."""
    from morph.training.toyfaces.latent import uniform_from_params

    x = sphere_ppf(np.clip(uniform_from_params(params), 1e-6, 1 - 1e-6))
    return coords(x).astype(np.float32)


@lru_cache(maxsize=None)
def _switch_points() -> tuple[tuple[int, float, float], ...]:
    """(field index, step uniform, its sphere coordinate) for every step, glasses before glasses_round."""
    out = []
    for name, steps in SWITCHES.items():
        for t in steps:
            out.append((FIELDS.index(name), t, float(sphere_ppf(t))))
    return tuple(out)


def mix_coords(xa: np.ndarray, xb: np.ndarray, cutoff: np.ndarray) -> np.ndarray:
    """Per row, the fields of level < cutoff from ``xa`` and the rest from ``xb``."""
    take_a = LEVELS[None, :] < np.asarray(cutoff)[:, None]
    return np.where(take_a, xa, xb)


def render_targets(x: np.ndarray, size: int = 64, band: float = SWITCH_BAND) -> np.ndarray:
    """Target images, float32 [N, 3, size, size] in [-1, 1], for sphere coordinates ``x`` [N, d]
    (possibly truncated, i.e. scaled by ψ ≤ 1): the renderer's face, cross-faded across every
    step field within ``band`` of its step."""
    x = np.asarray(x, np.float64)
    n = len(x)
    u = sphere_cdf(x)
    rows, weights, us = np.arange(n), np.ones(n), u
    glasses_k = FIELDS.index("glasses")
    glasses_round_k = FIELDS.index("glasses_round")
    for k, t, xt in _switch_points():
        xk = x[rows, k]
        a = np.clip((xk - xt) / (2 * band) + 0.5, 0.0, 1.0)
        a = a * a * (3 - 2 * a)  # smoothstep: the weight of the side above the step
        split = (a > 0.0) & (a < 1.0)
        if k == glasses_round_k:  # frame shape only matters where glasses are (partly) drawn
            split &= us[:, glasses_k] < SWITCHES["glasses"][0]
        if not split.any():
            continue
        lo, hi = us[split].copy(), us[split].copy()
        lo[:, k] = t - 1e-6
        hi[:, k] = t + 1e-6
        keep = ~split
        rows = np.concatenate([rows[keep], rows[split], rows[split]])
        weights = np.concatenate([weights[keep], weights[split] * (1 - a[split]), weights[split] * a[split]])
        us = np.concatenate([us[keep], lo, hi])
    images = render(params_from_uniform(us), size).astype(np.float32)
    out = np.zeros((n, size, size, 3), np.float32)
    np.add.at(out, rows, images * weights[:, None, None, None].astype(np.float32))
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)) / 127.5 - 1.0


# The face field each binary attribute of ``morph.training.toyfaces.ATTRIBUTES`` reads.
ATTRIBUTE_FIELD: dict[str, str] = {"smile": "smile", "glasses": "glasses", "beard": "beard", "hair_dark": "hair_light",
                                   "hair_long": "hair_style", "turn_left": "turn"}


def attribute_source(attribute: str, cutoff: int = MIX_CUTOFF) -> str:
    """``"A"`` if style mixing at ``cutoff`` takes ``attribute`` from the coarse source, else ``"B"``."""
    return "A" if LEVEL[ATTRIBUTE_FIELD[attribute]] < cutoff else "B"
