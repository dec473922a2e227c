"""A scene on a loaded model: its latents and directions as W (each resolved once), and each render's
timeline of W frames built from them."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Optional

import torch

from morph.core.model import Model
from morph.motion.latents import Projector, load_w, random_offsets, resolve
from morph.motion.schedule import Timeline, timeline
from morph.scene.types import Scene
from morph.sound.audio import envelope


def resolve_latents(scene: Scene, G: Model, project: Optional[Projector] = None
                    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The scene's latents and directions as W [num_ws, w_dim] on generator ``G``: seeds mapped, files read,
    photos projected by ``project``."""
    directions = {name: load_w(path, G.num_ws, G.w_dim) for name, path in scene.directions.items()}
    return resolve(scene.latents, directions, G, project), directions


def timelines(scene: Scene, G: Model, ws: dict[str, torch.Tensor], directions: dict[str, torch.Tensor],
              cache_dir: Optional[Path] = None) -> dict[str, Timeline]:
    """Each render's timeline on generator ``G`` from the resolved latents ``ws`` and ``directions``
    (:func:`resolve_latents`); the sounds waves follow are analysed (cached in ``cache_dir``)."""
    offsets = partial(random_offsets, G)
    gains = partial(envelope, cache_dir=cache_dir)
    return {name: timeline(render.motion, ws, directions, offsets, gains) for name, render in scene.renders.items()}
