"""A scene's ``{project: photo}`` latents: how each is projected (:func:`scene_settings`), whether ``morph check``
finds it cached (:func:`projection_status`), and the projected photos a render draws with (:class:`ScenePhotos`).

A scene render draws every frame with the optimised noise of its first projected keyframe (held for the whole
render: the scheduler gives W frames, not the keyframe weights a per-frame noise blend would need), so a
projected face renders identically every time; the noise's hash joins the render's cache key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from morph.core.errors import MorphError
from morph.core.model import Model, Noise
from morph.motion.latents import From, Project
from morph.projection.encoder import encoder_for, encoder_sha256, find_encoder
from morph.projection.optimiser import REFINE_STEPS, Projection
from morph.projection.project import project_photos, resolve_settings
from morph.projection.store import Settings, cache_path
from morph.render.images import read_image

SCENE_STEPS = 1000  # steps for a scene's {project: photo}
SCENE_BATCH = 8     # a scene's photos are projected this many at a time (memory at 1024 px)


def scene_settings(spec: Project, resolution: int, encoder: str = "") -> Settings:
    """How a scene's ``{project: photo, steps, space}`` is projected: defaults unless the scene says (fewer
    steps after the ``encoder`` with this sha256, if any); a square photo at the model's own resolution is
    taken as an already aligned face (what ``morph project`` makes)."""
    h, w = read_image(spec.image).shape[:2]
    return Settings(space=spec.space or Settings.space, steps=spec.steps or (REFINE_STEPS if encoder else SCENE_STEPS),
                    align=not (h == w == resolution), encoder=encoder)


def projection_status(spec: Project, G: Optional[Model]) -> str:
    """For ``morph check``: "cached", "needs projection (N steps)", or that plus why it will fail (an
    unreadable photo), on the already loaded generator ``G`` (None: a scene validated without a model)."""
    if G is None:
        return f"needs projection ({spec.steps or SCENE_STEPS} steps)"
    model_path, sha, resolution = Path(G.info.path), G.info.sha256, G.img_resolution
    encoder = find_encoder("auto", model_path)
    encoder_sha = encoder_sha256(encoder) if encoder is not None else ""
    needs = f"needs projection ({spec.steps or (REFINE_STEPS if encoder else SCENE_STEPS)} steps" \
            + (" after the encoder)" if encoder else ")")
    try:
        settings = resolve_settings(scene_settings(spec, resolution, encoder_sha), model_path)
    except MorphError as err:
        return f"{needs}, which will fail: {err.message}"
    return "cached" if cache_path(spec.image, sha, settings, None).is_file() else needs


@dataclass
class ScenePhotos:
    """A scene's projected photos: the latent callback for ``scene.timelines`` and each render's noise."""

    scene: object
    projections: dict[Project, Projection]

    def latent(self, spec: Project) -> torch.Tensor:
        """The ``Projector`` callback: the photo's W+ [num_ws, w_dim]."""
        return self.projections[spec].ws(self.scene.dims.num_ws)

    def noise_maps(self, render: str) -> Optional[list[torch.Tensor]]:
        """The noise of the render's first keyframe that is a projected photo (directly or ``from:`` one), held
        for the whole render; None when no keyframe is, or the model has no noise inputs (its own noise)."""
        for key in self.scene.renders[render].motion.path.keys:
            latent = self.scene.latents[key]
            while isinstance(latent.source, From):
                latent = self.scene.latents[latent.source.name]
            if isinstance(latent.source, Project):
                return self.projections[latent.source].noise or None
        return None

    def noise(self, render: str, mode: str) -> Noise:
        """What the render draws with: the scene's noise ``mode``, with :meth:`noise_maps` when it has them."""
        maps = self.noise_maps(render)
        return Noise(mode, None if maps is None else tuple(maps))

    def model_key(self, G, render: str) -> str:
        """The model's key for the render cache: its file hash, plus the hash of the render's projected noise
        maps when it has them, so cached segments never mix noises."""
        maps = self.noise_maps(render)
        return G.info.sha256 if maps is None else f"{G.info.sha256}+noise:{noise_digest(maps)}"


def project_scene(scene, G, cache_dir: Optional[Path] = None, quiet: bool = False) -> ScenePhotos:
    """Every ``{project: photo}`` of a scene, the missing ones projected together in one batch (cached),
    from the model's own encoder when it has one (``--encoder auto``)."""
    specs = list(dict.fromkeys(l.source for l in scene.latents.values() if isinstance(l.source, Project)))
    encoder = encoder_for(G, "auto") if specs else None
    groups: dict[Settings, list[Project]] = {}
    for spec in specs:
        groups.setdefault(scene_settings(spec, G.img_resolution, encoder.sha256 if encoder else ""), []).append(spec)
    done: dict[Project, Projection] = {}
    for settings, group in groups.items():
        done.update(zip(group, project_photos([spec.image for spec in group], G, settings, cache_dir=cache_dir,
                                              batch_size=min(len(group), SCENE_BATCH), quiet=quiet,
                                              encoder=encoder)))
    return ScenePhotos(scene, done)


def noise_digest(maps: Sequence[torch.Tensor]) -> str:
    """SHA-256 of noise maps (part of a render's cache key when they replace the model's)."""
    digest = hashlib.sha256()
    for m in maps:
        digest.update(m.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


__all__ = ["SCENE_BATCH", "SCENE_STEPS", "ScenePhotos", "noise_digest", "project_scene", "projection_status",
           "scene_settings"]
