"""Projection: photos to W/W+ and noise, and what surrounds it.

One job per module, bottom to top: :mod:`~morph.projection.vgg` (NVIDIA's ``vgg16.pt`` read as weights),
:mod:`~morph.projection.losses` (the distances), :mod:`~morph.projection.optimiser` (NVIDIA's projector
recipe on any model), :mod:`~morph.projection.store` (the cache: settings, key, save, load),
:mod:`~morph.projection.align` (FFHQ alignment), :mod:`~morph.projection.encoder` (the image → W+ first
guess) and :mod:`~morph.projection.encoder_training`, :mod:`~morph.projection.project` (photos →
projections, cached), :mod:`~morph.projection.quality` (each photo's figures),
:mod:`~morph.projection.outputs` (``morph project``'s files) and :mod:`~morph.projection.scene` (a scene's
``{project: photo}`` latents). The names below are the package's public surface.
"""

from morph.projection.losses import (
                                     DEFAULT_LOSS,
                                     LOSSES,
                                     REFINE_LOSS,
                                     VGG16Features,
                                     default_loss,
                                     laplacian,
                                     make_distance,
                                     multiscale,
)
from morph.projection.optimiser import (
                                     COARSE_RESOLUTION,
                                     FULL_STEPS,
                                     REFINE_RECIPE,
                                     REFINE_STEPS,
                                     Projection,
                                     Recipe,
                                     coarse_plan,
                                     optimise,
                                     refine_recipe,
                                     synthesize,
                                     w_stats,
)
from morph.projection.outputs import write_outputs
from morph.projection.project import project_photos, resolve_settings
from morph.projection.quality import attribute_agreement, figures, psnr
from morph.projection.scene import SCENE_STEPS, ScenePhotos, noise_digest, project_scene, projection_status
from morph.projection.store import Settings, cache_path

__all__ = ["COARSE_RESOLUTION", "DEFAULT_LOSS", "FULL_STEPS", "LOSSES", "REFINE_LOSS", "REFINE_RECIPE", "REFINE_STEPS",
           "SCENE_STEPS", "Projection", "Recipe", "ScenePhotos", "Settings", "VGG16Features", "attribute_agreement",
           "cache_path", "coarse_plan", "default_loss", "figures", "laplacian", "make_distance", "multiscale",
           "noise_digest", "optimise", "project_photos", "project_scene", "projection_status", "psnr", "refine_recipe",
           "resolve_settings", "synthesize", "w_stats", "write_outputs"]
