"""Each render of a scene as a timeline of W frames on a loaded model."""

from __future__ import annotations

from functools import partial
from typing import Optional

from ..latents import Projector, load_w, random_offsets, resolve
from ..schedule import Timeline, timeline
from .types import Scene

def timelines(scene: Scene, G, project: Optional[Projector] = None) -> dict[str, Timeline]:
    """Each render's timeline on generator ``G``: seeds mapped, files read, photos projected by ``project``."""
    directions = {name: load_w(path, G.num_ws, G.w_dim) for name, path in scene.directions.items()}
    ws = resolve(scene.latents, directions, G, project)
    offsets = partial(random_offsets, G)
    return {name: timeline(render.motion, ws, directions, offsets) for name, render in scene.renders.items()}
