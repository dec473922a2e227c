"""Procedural cartoon faces in pure numpy: training images and attribute labels for morph's
built-in StyleGAN2 model and its judge.

>>> params = sample_params(0, 16)
>>> images = render(params, size=64)      # uint8 [16, 64, 64, 3]
>>> y = labels(params)["smile"]           # bool [16]
"""

from morph.render.images import grid, write_png
from morph.training.toyfaces.compose import render, render_seed
from morph.training.toyfaces.labels import ATTRIBUTES, CONTINUOUS, ambiguous, labels
from morph.training.toyfaces.params import BALD, LONG, SHORT, FaceParams, sample_params
from morph.training.toyfaces.team import TEAM_NAMES, team_params

__all__ = [
    "ATTRIBUTES", "BALD", "CONTINUOUS", "LONG", "SHORT", "TEAM_NAMES", "FaceParams", "ambiguous", "grid",
    "labels", "render", "render_seed", "sample_params", "team_params", "write_png",
]
