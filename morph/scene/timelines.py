"""Each render of a scene as a timeline of W frames on a loaded model."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Optional

from morph.sound.audio import envelope
from morph.motion.latents import Projector, load_w, random_offsets, resolve
from morph.motion.schedule import Timeline, timeline
from morph.scene.types import Scene

def timelines(scene: Scene, G, project: Optional[Projector] = None,
              cache_dir: Optional[Path] = None) -> dict[str, Timeline]:
    """Each render's timeline on generator ``G``: seeds mapped, files read, photos projected by ``project``, the
    sounds waves follow analysed (cached in ``cache_dir``)."""
    directions = {name: load_w(path, G.num_ws, G.w_dim) for name, path in scene.directions.items()}
    ws = resolve(scene.latents, directions, G, project)
    offsets = partial(random_offsets, G)
    gains = partial(envelope, cache_dir=cache_dir)
    return {name: timeline(render.motion, ws, directions, offsets, gains) for name, render in scene.renders.items()}
