"""Faces as a deterministic function of a vector: the renderer's distribution, reparametrised.

``sample_params`` draws one uniform per field and pushes it through that field's sampler;
``params_from_uniform`` does exactly that for uniforms you give it, so a face becomes a pure
function of a point in [0, 1)^F (F = ``len(FIELDS)``), and ``params_from_normal`` of a standard
normal vector (each coordinate through the normal CDF). This is what lets a generator be fitted
to the renderer: every latent vector has a target image.

>>> u = np.random.default_rng(3).random((5, len(FIELDS)))
>>> params_from_uniform(u).smile == sample_params(3, 5).smile   # all True
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from morph.training.toyfaces.params import _SAMPLERS, FaceParams

FIELDS: tuple[str, ...] = tuple(_SAMPLERS)  # field order of the uniforms (FaceParams order)

# Fields whose sampler is a step function of its uniform, and the uniforms where it steps.
SWITCHES: dict[str, tuple[float, ...]] = {
    "hair_style": (0.15, 0.60),  # BALD | SHORT | LONG
    "hair_curly": (0.3,),
    "glasses": (0.45,),
    "glasses_round": (0.5,),
    "beard": (0.4,),
}


def params_from_uniform(u: np.ndarray) -> FaceParams:
    """Faces from uniforms ``u`` [N, len(FIELDS)] in [0, 1): column k drives field ``FIELDS[k]``
    through the same sampler ``sample_params`` uses."""
    u = np.asarray(u, np.float64)
    if u.ndim != 2 or u.shape[1] != len(FIELDS):
        raise ValueError(f"expected uniforms of shape [N, {len(FIELDS)}], got {list(u.shape)}")
    u = np.clip(u, 0.0, np.nextafter(1.0, 0.0))
    return FaceParams(**{name: _SAMPLERS[name](u[:, k]) for k, name in enumerate(FIELDS)})


def params_from_normal(z: np.ndarray) -> FaceParams:
    """Faces from standard-normal vectors ``z`` [N, len(FIELDS)]: each coordinate through the
    normal CDF, then ``params_from_uniform``. Independent N(0, 1) rows give exactly the
    distribution of ``sample_params``."""
    return params_from_uniform(ndtr(np.asarray(z, np.float64)))


def uniform_from_params(params: FaceParams, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """A uniform vector per face that ``params_from_uniform`` maps back to (nearly) that face:
    the inverse of each sampler; step-function fields get a uniform drawn inside their step
    (from ``rng``, or its middle when ``rng`` is None)."""
    rng = None if rng is None else (rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng))
    n = len(params)
    u = np.empty((n, len(FIELDS)))
    probe = np.linspace(0.0, 1.0, 4097)[:-1] + 0.5 / 4096
    for k, name in enumerate(FIELDS):
        value = getattr(params, name).astype(np.float64)
        if name in SWITCHES:
            edges = np.array((0.0,) + SWITCHES[name] + (1.0,))
            levels = _SAMPLERS[name](0.5 * (edges[:-1] + edges[1:])).astype(np.float64)
            idx = np.argmin(np.abs(value[:, None] - levels[None, :]), axis=1)
            t = 0.5 * np.ones(n) if rng is None else rng.random(n)
            u[:, k] = edges[idx] + t * (edges[idx + 1] - edges[idx])
        else:
            curve = _SAMPLERS[name](probe).astype(np.float64)  # monotone non-decreasing
            order = np.argsort(curve, kind="stable")
            u[:, k] = np.interp(value, curve[order], probe[order])
    return u
