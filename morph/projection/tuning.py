"""Pivotal tuning for a whole team: one generator that draws every photo from its own projected latent.

After the encoder's guess and the refinement, W+ projection still loses what the generator cannot draw (a
person's exact features: identity). Pivotal tuning (PTI, Roich et al. 2021) keeps each photo's latent fixed as
its *pivot* and fine-tunes the synthesis network's weights until the pivot draws the photo. Here every photo of
the batch is tuned into **one** network together, so a morph between two tuned faces stays inside one generator.

The loss is PTI's: the projection's own distance (multi-scale L2 with the model's perceptual term on the
built-in model, LPIPS with ``--vgg``) between each pivot's image and its photo, plus a locality regulariser that
keeps the rest of latent space where it was: every ``locality_every`` steps, latents a fixed distance from each
pivot towards random samples of the mapping network are drawn by the tuned and the original network, and their
distance is added with weight ``locality``. The mapping network and the noise maps stay as they are.

The tuned weights are cached like projections (``<cache>/projections/tuned-KEY.safetensors``, morph's model
format, verified before reuse), keyed by the model, each photo's projection and the settings, so a scene render
or a second run reuses them; :func:`tuned_model` returns them as an ordinary model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from morph.checkpoints.loading import load_generator
from morph.checkpoints.native import write_native
from morph.core.cache import PROJECTIONS, folder, reusable, seal
from morph.core.files import atomic_path, file_sha256
from morph.core.progress import Progress
from morph.core.runtime import check_stop
from morph.projection.losses import default_loss, make_distance
from morph.projection.optimiser import Projection, noise_of

TUNE_VERSION = "1"


@dataclass(frozen=True)
class TuneSettings:
    """Everything besides the model and the pivots that decides the tuned weights (part of the cache key)."""
    steps: int = 300
    lr: float = 3e-4                # Adam, PTI's rate
    loss: str = "auto"              # auto: the projection's refining loss for the model; lpips with --vgg
    locality: float = 0.1           # weight of the locality term (PTI's)
    locality_every: int = 10        # steps between locality terms (PTI's lazy regularisation)
    locality_radius: float = 1.0    # how far from the pivot, in units of the mapped ws' mean distance from w_avg
    seed: int = 303


def tune_key(model_sha256: str, projections: Sequence[Projection], settings: TuneSettings, vgg: Sequence[str]) -> str:
    """SHA-256 of the model, every pivot (W+ and noise, bit for bit) and the settings."""
    h = hashlib.sha256(json.dumps({"version": TUNE_VERSION, "model": model_sha256, "vgg": list(vgg),
                                   **asdict(settings)}, sort_keys=True).encode())
    for p in projections:
        for t in (p.w, *p.noise):
            h.update(np.ascontiguousarray(t.numpy()).tobytes())
    return h.hexdigest()


def _pivots(G, projections: Sequence[Projection], device: torch.device):
    ws = torch.stack([p.ws(G.num_ws) for p in projections]).to(device)
    maps = [torch.stack([p.noise[k] for p in projections])[:, None].to(device)
            for k in range(len(projections[0].noise))]
    targets = torch.from_numpy(np.stack([p.target for p in projections])).permute(0, 3, 1, 2).to(device)
    targets = targets.float() / 127.5 - 1
    return ws, maps, targets.mean(dim=1, keepdim=True) if G.img_channels == 1 else targets


def tune(G, projections: Sequence[Projection], settings: TuneSettings = TuneSettings(),
         vgg: Sequence[str] = (), progress: Optional[Progress] = None):
    """A copy of ``G`` whose synthesis weights are tuned so that each projection's pivot draws its photo."""
    device = next(G.parameters()).device
    loss_name = "lpips" if vgg else (default_loss(G.info.path, refine=True) if settings.loss == "auto" else settings.loss)
    distance = make_distance(loss_name, device, vgg)
    tuned = copy.deepcopy(G)
    tuned.synthesis.requires_grad_(True)
    params = [p for p in tuned.synthesis.parameters() if p.requires_grad]
    ws, maps, targets = _pivots(G, projections, device)
    noise = noise_of(maps)
    dist = distance(targets)
    gen = torch.Generator().manual_seed(settings.seed)
    with torch.no_grad():  # the locality radius: the mapped ws' mean distance from w_avg
        z = torch.randn(256, G.z_dim, generator=gen).to(device)
        sample = G.mapping(z, None)[:, 0]
        radius = settings.locality_radius * (sample - G.mapping.w_avg).norm(dim=1).mean()
    optimizer = torch.optim.Adam(params, lr=settings.lr)
    for step in range(settings.steps):
        check_stop()
        loss = dist(tuned.synthesize(ws, noise)).sum()
        if settings.locality and step % settings.locality_every == 0:
            with torch.no_grad():
                z = torch.randn(len(ws), G.z_dim, generator=gen).to(device)
                toward = G.mapping(z, None) - ws
                w_near = ws + radius * toward / toward.flatten(1).norm(dim=1).clamp_min(1e-8)[:, None, None]
                before = G.synthesize(w_near, noise)
            loss = loss + settings.locality * distance(before)(tuned.synthesize(w_near, noise)).sum()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pivotal tuning diverged at step {step} (loss {loss.item()})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if progress:
            progress.advance(1)
    return tuned.requires_grad_(False).eval()


def tuned_model(G, projections: Sequence[Projection], settings: TuneSettings = TuneSettings(),
                vgg: Sequence[str | os.PathLike] = (), cache_dir: Optional[Path] = None, quiet: bool = False):
    """The tuned generator for these pivots: read from the cache when it holds it whole, else tuned and cached.
    Returns (model, path of its file)."""
    key = tune_key(G.info.sha256, projections, settings, [file_sha256(p) for p in vgg])
    path = folder(PROJECTIONS, cache_dir) / f"tuned-{key}.safetensors"
    device = next(G.parameters()).device
    if reusable(path, label="tuned model"):
        return load_generator(path, device), path
    progress = Progress("tune", settings.steps, unit="steps", quiet=quiet)
    try:
        tuned = tune(G, projections, settings, vgg, progress)
    finally:
        progress.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in tuned.state_dict().items()}
    write_native(path, tuned.init_kwargs, state, metadata={
        "tuned_from": G.info.sha256, "tuned_photos": len(projections), "tune_settings": asdict(settings)},
        family=G.family)
    seal(path)
    return load_generator(path, device), path


def write_tuned(cached: Path, out: Path) -> Path:
    """``OUT/tuned.safetensors``: the cached tuned generator copied beside the projections, atomically (a model
    file every command takes, ``morph convert --to rosinality`` included)."""
    dest = out / "tuned.safetensors"
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        shutil.copyfile(cached, tmp)
    return dest


__all__ = ["TuneSettings", "tune", "tune_key", "tuned_model", "write_tuned"]

