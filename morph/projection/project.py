"""Photos → W / W+ latents (and the noise maps that finish them): each photo aligned, projected by
:func:`morph.projection.optimiser.optimise` under the distance its settings name, and cached
(:mod:`morph.projection.store`), so a second run, or a scene re-render, never projects again.

The distance: LPIPS on VGG16 features when the user has the weights (``--vgg``: NVIDIA's ``vgg16.pt``, or
torchvision's ``vgg16-397923af.pth`` plus the LPIPS ``vgg.pth`` lin layers), else the model's
:func:`morph.projection.losses.default_loss`. With an encoder (:mod:`morph.projection.encoder`: the built-in
model ships one; ``--encoder auto`` finds ``NAME.encoder.safetensors`` beside a checkpoint) the optimisation
starts from its guess instead of w_avg and refines it for :data:`~morph.projection.optimiser.REFINE_STEPS`
steps; zero steps keep the guess. Everything goes through the :class:`morph.core.model.Model` contract, so
StyleGAN3 projects too (without noise maps, and every step at full resolution).

With ArcFace weights (``--identity``) and an identity weight, (1 − the cosine similarity of the generated face's
and the photo's ArcFace features) × the weight is added to the distance (:func:`morph.projection.losses.identity`),
and the file's hash and the weight join the cache key.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from morph.core.errors import MorphError
from morph.core.files import file_sha256
from morph.core.progress import Progress, log
from morph.projection.align import aligned_face
from morph.projection.arcface import load_arcface
from morph.projection.losses import combined, default_loss, identity, make_distance, scaled, vgg_files
from morph.projection.optimiser import Projection, Recipe, coarse_plan, optimise, refine_recipe, w_stats
from morph.projection.psp import EncoderGuess
from morph.projection.store import Settings, cache_path, load_projection, save_projection


def resolve_settings(settings: Settings, model_path: str | os.PathLike,
                     vgg: Sequence[str | os.PathLike] = (), arcface: Optional[str | os.PathLike] = None) -> Settings:
    """Settings with the loss named: LPIPS with the hashes of the ``--vgg`` files, else the model's default
    for "auto" (so the cache key says what was optimised); after an encoder, the loss's refining recipe; with
    an identity weight, the hash of the ``arcface`` file whose features it compares."""
    refine = bool(settings.encoder)
    weight = settings.identity_weight
    if not (math.isfinite(weight) and weight >= 0):
        raise MorphError(f"identity weight {weight:g} is not a finite number ≥ 0", "--identity-weight",
                         "give a weight such as 0.1 (pSp's), or 0 for none")
    if weight and arcface is None:
        raise MorphError(f"an identity weight ({weight:g}) needs ArcFace's weights", "--identity-weight",
                         "give --identity model_ir_se50.pth (identity: {file: ...} in a scene), or weight 0")
    settings = replace(settings, identity=file_sha256(arcface) if settings.identity_weight else "")
    if vgg:
        settings = replace(settings, loss="lpips", vgg=tuple(file_sha256(p) for p in vgg_files(vgg)))
    elif settings.loss == "auto":
        settings = replace(settings, loss=default_loss(model_path, refine))
    if refine and settings.recipe == Recipe():  # an encoder's guess is refined by its own recipe
        settings = replace(settings, recipe=refine_recipe(settings.loss))
    return settings


def project_photos(images: Sequence[str | os.PathLike], G, settings: Settings = Settings(),
                   vgg: Sequence[str | os.PathLike] = (), cache_dir: Optional[Path] = None,
                   batch_size: int = 8, quiet: bool = False, encoder=None,
                   arcface: Optional[str | os.PathLike] = None) -> list[Projection]:
    """Each image projected (or read back from the cache): the missing ones optimised in batches, from
    ``encoder``'s guess (a :class:`morph.projection.encoder.Encoder` for ``G``) when given, else from w_avg;
    ``settings.identity_weight`` > 0 adds the identity term on the ArcFace weights in file ``arcface``."""
    settings = replace(settings, encoder=encoder.sha256 if encoder is not None else "")
    settings = resolve_settings(settings, G.info.path, vgg, arcface)
    device = next(G.parameters()).device
    paths = [cache_path(img, G.info.sha256, settings, cache_dir) for img in images]
    found = [load_projection(p) for p in paths]
    todo = [i for i, f in enumerate(found) if f is None]
    if todo:
        targets = {i: aligned_face(images[i], G.img_resolution, settings.align, settings.face) for i in todo}
        distance = make_distance(settings.loss, device, vgg)
        if settings.identity:
            distance = combined(distance, scaled(identity(load_arcface(arcface, device)), settings.identity_weight))
        stats = w_stats(G, settings.recipe.w_avg_samples)
        coarse, full_steps = coarse_plan(G, settings.steps, settings.coarse)
        if not quiet:
            log(f"projecting {', '.join(Path(images[i]).name for i in todo)} onto {Path(G.info.path).name} "
                f"({settings.steps} steps, {settings.space})")
        progress = Progress("project", settings.steps * math.ceil(len(todo) / batch_size), unit="steps", quiet=quiet)
        try:
            for start in range(0, len(todo), batch_size):
                chunk = todo[start:start + batch_size]
                x = torch.from_numpy(np.stack([targets[i] for i in chunk])).permute(0, 3, 1, 2).to(device)
                x = x.float() / 127.5 - 1
                x = x.mean(dim=1, keepdim=True) if G.img_channels == 1 else x
                seeds = [int(paths[i].stem[:8], 16) ^ settings.seed for i in chunk]  # the key: image, model, settings
                with torch.no_grad():  # a published encoder reads each photo as its own inference does
                    init = None if encoder is None else encoder.photos([images[i] for i in chunk], settings.align,
                                                                       settings.face) \
                        if isinstance(encoder, EncoderGuess) else encoder(x)
                for i, p in zip(chunk, optimise(G, x, distance, seeds, settings.space, settings.steps,
                                                settings.recipe, progress, stats, init, coarse, full_steps)):
                    save_projection(paths[i], p)
                    found[i] = p
        finally:
            progress.close()
    return found


__all__ = ["project_photos", "resolve_settings"]
