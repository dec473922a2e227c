"""Pivotal tuning for a whole team: one generator that draws every photo from its own projected latent.

After the encoder's guess and the refinement, W+ projection still loses what the generator cannot draw (a
person's exact features: identity). Pivotal tuning (PTI, Roich et al. 2021) keeps each photo's latent fixed as
its *pivot* and fine-tunes the synthesis network's weights until the pivot draws the photo. Here every photo of
the batch is tuned into **one** network together, so a morph between two tuned faces stays inside one generator.

The loss is PTI's: a pixel distance (plain MSE at full resolution by default; ``auto`` is the projection's own
refining distance, LPIPS with ``--vgg``) between each pivot's image and its photo, plus a locality regulariser
that keeps the rest of latent space where it was. PTI draws one code per step a fixed distance beyond a random
sample; here every ``locality_every`` steps ``locality_samples`` codes are drawn on the segments from the
pivots to fresh random samples of the mapping network (a uniform fraction of the way, at least
``locality_radius``: codes nearer a pivot would pin its own neighbourhood to the untuned image, the very
change the pivot's term asks for), with the model's own constant noise, and the same distance between the tuned and the
original network's images of them is added with weight ``locality``. Sampling the whole segment covers both
what a morph between two tuned faces passes through and the random faces a scene draws from seeds. The
gradients of the pivots and the codes accumulate over passes of at most ``PASS_PIXELS`` image pixels each, so a
team on a 1024 px network needs one image's activations in memory, not twelve. The mapping network and the noise maps stay as they
are. ``bench/tune.py`` prints what this buys (docs/projection.md).

The tuned weights are cached like projections (``<cache>/projections/tuned-KEY.safetensors``, morph's model
format, verified before reuse), keyed by the model, each photo's projection and the settings, so a scene render
or a second run reuses them; :func:`tuned_model` returns them as an ordinary model. A tuning that is stopped
(SIGTERM or Ctrl-C between checkpoints) resumes from ``tuned-KEY.resume.pt`` beside it: the weights, Adam's
state, the random stream and the step count, written atomically and sealed like every cached file every
``checkpoint_seconds`` and when SIGTERM stops the loop, so only the remaining steps run and the result is the
one an uninterrupted run gives.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from morph.checkpoints.loading import load_generator
from morph.checkpoints.native import write_native
from morph.core.cache import PROJECTIONS, folder, remove, reusable, seal
from morph.core.files import atomic_path, file_sha256
from morph.core.progress import Progress, log
from morph.core.runtime import Terminated, check_stop, stop_points
from morph.projection.losses import default_loss, make_distance
from morph.projection.optimiser import Projection, noise_of
from morph.render.job import output_lock

TUNE_VERSION = "3"
PASS_PIXELS = 1 << 20      # image pixels per forward and backward pass; more images accumulate over passes
CHECKPOINT_SECONDS = 60.0  # wall time between resume checkpoints (not part of the key: it decides no weight)


@dataclass(frozen=True)
class TuneSettings:
    """Everything besides the model and the pivots that decides the tuned weights (part of the cache key)."""
    steps: int = 600
    lr: float = 2e-3                # Adam's peak rate (PTI: 3e-4; bench/tune.py --scan)
    loss: str = "mse"               # auto: the projection's refining loss for the model; lpips with --vgg
    locality: float = 0.3           # weight of the locality term (PTI: 0.1 per term, lazily; bench/tune.py)
    locality_every: int = 1         # steps between locality terms (1: every step)
    locality_radius: float = 0.5    # the least fraction of the way from a pivot to a random sample a code lies
    seed: int = 303
    locality_samples: int = 0       # codes per locality term (0: one per pivot)
    warmup: int = 20                # steps (at most a tenth of them) over which the rate ramps up linearly
    frozen: str = ""                # parameters kept as they are: comma-separated endings of their names
    rampdown: float = 0.3           # the last fraction of the steps, over which the rate falls to 0 (cosine)


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


def _locality_codes(G, ws: torch.Tensor, count: int, low: float, gen: torch.Generator) -> torch.Tensor:
    """``count`` W+ codes, each a uniform fraction (at least ``low``) of the way from a pivot (taken in turn) to
    a fresh random sample of the mapping network."""
    z = torch.randn(count, G.z_dim, generator=gen).to(ws.device)
    t = (low + (1 - low) * torch.rand(count, generator=gen)).to(ws.device)
    start = ws[torch.arange(count, device=ws.device) % len(ws)]
    with torch.no_grad():
        return start + t[:, None, None] * (G.mapping(z, None) - start)


def _const_maps(G, count: int, device: torch.device) -> list[torch.Tensor]:
    """The model's own constant noise, as per-sample maps for ``count`` samples."""
    return [m.to(device)[None, None].expand(count, 1, -1, -1) for m in G.noise_maps().values()]


def _save_state(path: Path, step: int, tuned, optimizer: torch.optim.Optimizer, gen: torch.Generator) -> None:
    """The resume checkpoint, written atomically and sealed (its old record dropped first, so a crash between
    the two leaves a file that counts as damaged rather than one that passes for the old)."""
    remove(path)
    with atomic_path(path) as tmp:
        torch.save({"step": step, "synthesis": tuned.synthesis.state_dict(), "optimizer": optimizer.state_dict(),
                    "rng": gen.get_state()}, tmp)
    seal(path)


def _load_state(path: Path, tuned, optimizer: torch.optim.Optimizer, gen: torch.Generator, steps: int) -> int:
    """Steps already done, restored from a whole resume checkpoint at ``path`` (0 when there is none or it does
    not fit: then it is removed and tuning starts over)."""
    if not reusable(path, label="tuning checkpoint"):
        return 0
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        step = int(state["step"])
        if not 0 < step <= steps:
            raise ValueError(f"step {step} of {steps}")
        tuned.synthesis.load_state_dict(state["synthesis"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["rng"])
    except Exception as e:  # torch.load and load_state_dict raise many types for a file that does not fit
        log(f"tune: checkpoint {path.name[:16]}… does not fit ({' '.join(str(e).split())[:80]}); starting over")
        remove(path)
        return 0
    log(f"tune: resuming at step {step} of {steps}")
    return step


def learning_rate(step: int, settings: TuneSettings) -> float:
    """The rate at ``step``: a linear ramp-up over ``warmup`` steps, at most a tenth of the run (Adam's first
    steps move every weight by the rate whatever the gradient's size; a short run needs its steps at the full
    rate), then a cosine ramp-down to 0 over the last ``rampdown`` of the steps (Adam moves every weight by
    about the rate while the pivots' and the locality codes' gradients disagree: it settles only as the rate
    falls)."""
    up = max(1, min(settings.warmup, settings.steps // 10))
    left = (settings.steps - step) / settings.steps
    down = 0.5 - 0.5 * math.cos(math.pi * min(1.0, left / settings.rampdown)) if settings.rampdown else 1.0
    return settings.lr * min(1.0, (step + 1) / up) * down


def tune(G, projections: Sequence[Projection], settings: TuneSettings = TuneSettings(),
         vgg: Sequence[str] = (), progress: Optional[Progress] = None, checkpoint: Optional[Path] = None,
         checkpoint_seconds: float = CHECKPOINT_SECONDS):
    """A copy of ``G`` whose synthesis weights are tuned so that each projection's pivot draws its photo. With
    ``checkpoint`` (a path), resume from the state found there and save it there every ``checkpoint_seconds``
    and when stopped; the caller removes it once the result is kept."""
    device = next(G.parameters()).device
    loss_name = "lpips" if vgg else (default_loss(G.info.path, refine=True) if settings.loss == "auto" else settings.loss)
    distance = make_distance(loss_name, device, vgg)
    tuned = copy.deepcopy(G)
    frozen = tuple(name for name in settings.frozen.split(",") if name)
    for name, p in tuned.synthesis.named_parameters():
        p.requires_grad_(not name.endswith(frozen) if frozen else True)
    params = [p for p in tuned.synthesis.parameters() if p.requires_grad]
    ws, maps, targets = _pivots(G, projections, device)
    per_pass = max(1, PASS_PIXELS // (G.img_resolution ** 2))
    chunks = [slice(i, i + per_pass) for i in range(0, len(ws), per_pass)]
    dists = [distance(targets[c]) for c in chunks]
    count = settings.locality_samples or len(ws)
    gen = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.Adam(params, lr=settings.lr, foreach=True)
    start = _load_state(checkpoint, tuned, optimizer, gen, settings.steps) if checkpoint else 0
    if progress and start:
        progress.advance(start)
    step, saved = start, time.monotonic()

    def backward(loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pivotal tuning diverged at step {step} (loss {loss.item()})")
        loss.backward()

    try:
        with stop_points():  # SIGTERM stops between steps, where the state is whole and can be saved
            for step in range(start, settings.steps):
                check_stop()
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(step, settings)
                optimizer.zero_grad(set_to_none=True)
                for c, dist in zip(chunks, dists):  # gradients accumulate over passes: a big model's memory
                    backward(dist(tuned.synthesize(ws[c], noise_of([m[c] for m in maps]))).sum())
                if settings.locality > 0 and step % settings.locality_every == 0:
                    codes = _locality_codes(G, ws, count, settings.locality_radius, gen)
                    for i in range(0, count, per_pass):
                        part = codes[i:i + per_pass]
                        const = noise_of(_const_maps(G, len(part), device))
                        with torch.no_grad():
                            near = distance(G.synthesize(part, const))
                        backward(near(tuned.synthesize(part, const)).sum() * (settings.locality * len(ws) / count))
                optimizer.step()
                if progress:
                    progress.advance(1)
                if checkpoint and step + 1 < settings.steps and time.monotonic() - saved >= checkpoint_seconds:
                    _save_state(checkpoint, step + 1, tuned, optimizer, gen)
                    saved = time.monotonic()
    except Terminated:
        if checkpoint and step > start:
            _save_state(checkpoint, step, tuned, optimizer, gen)
        raise
    return tuned.requires_grad_(False).eval()


def tuned_model(G, projections: Sequence[Projection], settings: TuneSettings = TuneSettings(),
                vgg: Sequence[str | os.PathLike] = (), cache_dir: Optional[Path] = None, quiet: bool = False):
    """The tuned generator for these pivots: read from the cache when it holds it whole, else tuned (resuming a
    stopped tuning of the same key) and cached; a run that finds another tuning the same key says whom it waits
    for and reads the result. Returns (model, path of its file)."""
    path = tuned_path(G, projections, settings, vgg, cache_dir)
    device = next(G.parameters()).device
    if reusable(path, label="tuned model"):
        return load_generator(path, device), path
    with output_lock(path):  # one run tunes a key (hours at 1024 px); another waits for it, then reads its file
        if reusable(path, label="tuned model"):
            return load_generator(path, device), path
        resume = resume_path(path)
        progress = Progress("tune", settings.steps, unit="steps", quiet=quiet)
        try:
            tuned = tune(G, projections, settings, vgg, progress, checkpoint=resume)
        finally:
            progress.close()
        state = {k: v.detach().cpu() for k, v in tuned.state_dict().items()}
        write_native(path, tuned.init_kwargs, state, metadata={
            "tuned_from": G.info.sha256, "tuned_photos": len(projections), "tune_settings": asdict(settings)},
            family=G.family)
        seal(path)
        remove(resume)
    return load_generator(path, device), path


def tuned_path(G, projections: Sequence[Projection], settings: TuneSettings, vgg: Sequence[str | os.PathLike] = (),
               cache_dir: Optional[Path] = None) -> Path:
    """Where the generator tuned for these pivots is cached (``<cache>/projections/tuned-KEY.safetensors``)."""
    key = tune_key(G.info.sha256, projections, settings, [file_sha256(p) for p in vgg])
    return folder(PROJECTIONS, cache_dir) / f"tuned-{key}.safetensors"


def resume_path(path: Path) -> Path:
    """Where the resume checkpoint of the tuned model cached at ``path`` lives (beside it, the same key)."""
    return path.with_name(path.name.replace(".safetensors", ".resume.pt"))


def write_tuned(cached: Path, out: Path) -> Path:
    """``OUT/tuned.safetensors``: the cached tuned generator copied beside the projections, atomically (a model
    file every command takes, ``morph convert --to rosinality`` included)."""
    dest = out / "tuned.safetensors"
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        shutil.copyfile(cached, tmp)
    return dest


__all__ = ["CHECKPOINT_SECONDS", "TuneSettings", "resume_path", "tune", "tune_key", "tuned_model", "tuned_path",
           "write_tuned"]
