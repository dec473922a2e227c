"""Training an encoder on the model's own samples: (G(w), w) pairs, drawn afresh every step.

Each batch is z → w through the mapping, truncated towards w_avg by a random psi per sample, and for
half of the samples style-mixed (the ws from a crossover layer on come from a second z), so the
encoder sees W+ codes and not only the W line; the generator draws the images with its constant noise.
The loss is the latent error (the offset error in units of w's spread per dimension) plus the image
distance projection uses (:func:`morph.projection.losses.default_loss`) between the sample and G(encoder(sample))
through the frozen generator — on models above 256 px between the intermediate images of both, at the size
projection's coarse stage uses (:func:`morph.projection.optimiser.coarse_plan`), which makes the step cheaper
there. The encoder's origin and units are the mean and spread of mapped w (:func:`morph.motion.latents.w_moments`).

The model's samples are not the photos people project: a generator draws its training data's world a
little blurred and averaged, and an encoder that has seen only its samples reads a sharp photo's extremes
(a wide grin, thin glasses) back towards the mean. ``photos`` (a :class:`PhotoFolder`, or any callable
giving a batch of images) closes that gap as pSp trains on real faces: a ``photo_share`` of each batch
comes from them, scored by the image loss alone, since no latent is known for a photo. ``init`` starts from
an encoder file (fine-tuning one trained on samples alone).

Adam with a warm-up and a cosine decay over a fixed number of steps; every random draw is seeded by (seed, step), so a resumed run continues exactly where it stopped.
A checkpoint (``OUT.train.pt``: tensors only, read back with ``weights_only``) and the encoder file
itself are written every ``checkpoint_every`` steps, and when a run is stopped (Ctrl-C, SIGTERM); the
checkpoint keeps its schedule, so resuming under other options is refused instead of mixing two runs.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from morph.core.errors import MorphError
from morph.core.files import atomic_path
from morph.core.model import Noise
from morph.core.progress import Progress, log
from morph.core.runtime import Terminated, check_stop
from morph.motion.latents import map_z, w_moments
from morph.projection.align import aligned_face
from morph.projection.encoder import Encoder, for_model, load_encoder, save_encoder
from morph.projection.losses import default_loss, make_distance
from morph.projection.optimiser import coarse_plan, draw


@dataclass(frozen=True)
class TrainConfig:
    """What decides a training run (stored in the encoder's header)."""
    steps: int = 3000
    batch: int = 32
    lr: float = 2e-3
    latent_weight: float = 1.0
    image_weight: float = 1.0
    psi_min: float = 0.5        # truncation psi ~ U(psi_min, 1) per sample
    mix_prob: float = 0.5       # share of style-mixed samples
    seed: int = 0
    checkpoint_every: int = 200
    loss: str = "auto"          # the image distance (projection's names); auto: the model's projection default
    photo_share: float = 0.0    # share of each batch taken from ``photos`` (image loss only)


def sample_batch(G, n: int, gen: torch.Generator, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(ws [n, num_ws, w_dim], images [n, C, R, R]) drawn by ``G``: truncated, half style-mixed."""
    device = next(G.parameters()).device
    z = torch.randn(2 * n, G.z_dim, generator=gen)
    w = map_z(G, z)  # [2n, num_ws, w_dim] on the CPU
    w_avg = G.w_avg.cpu()
    psi = config.psi_min + (1 - config.psi_min) * torch.rand(2 * n, 1, 1, generator=gen)
    w = w_avg + psi * (w - w_avg)
    ws, other = w[:n].clone(), w[n:]
    mix = torch.rand(n, generator=gen) < config.mix_prob
    cut = torch.randint(1, G.num_ws, (n,), generator=gen)
    layer = torch.arange(G.num_ws)[None, :, None]
    ws = torch.where(mix[:, None, None] & (layer >= cut[:, None, None]), other, ws)
    with torch.no_grad():
        images = G.synthesize(ws.to(device), Noise("const"))
    return ws.to(device), images


Photos = Callable[[torch.Generator, int], torch.Tensor]  # (generator, n) → images [n, C, R, R] in [-1, 1]

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class PhotoFolder:
    """The images of a folder (face crops, as ``morph project --no-align`` reads them), at the model's size,
    drawn at random with a left-right flip half of the time."""
    def __init__(self, folder: str | os.PathLike, resolution: int):
        folder = Path(folder)
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES) if folder.is_dir() else []
        if not files:
            raise MorphError("no photos here (PNG, JPEG or WebP)", folder, "--photos takes a folder of face crops")
        faces = torch.from_numpy(np.stack([aligned_face(p, resolution, align=False) for p in files]))
        self.images = faces.permute(0, 3, 1, 2).float() / 127.5 - 1
        self.folder = folder

    def __call__(self, gen: torch.Generator, n: int) -> torch.Tensor:
        pick = self.images[torch.randint(len(self.images), (n,), generator=gen)]
        flip = torch.rand(n, generator=gen) < 0.5
        return torch.where(flip[:, None, None, None], pick.flip(-1), pick)


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up over the first 2 % of the steps, then a cosine decay to zero."""
    warm = max(1, config.steps // 50)
    if step < warm:
        return config.lr * (step + 1) / warm
    return config.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, config.steps - warm)))


def checkpoint_path(out: Path) -> Path:
    return out.with_name(f"{out.name}.train.pt")


def train(G, out: Path, config: TrainConfig = TrainConfig(), resume: bool = False, quiet: bool = False,
          encoder_kwargs: Optional[dict] = None, stop_at: Optional[int] = None, photos: Optional[Photos] = None,
          init: Optional[Path] = None) -> Encoder:
    """Train an encoder for ``G`` and write it to ``out`` (and its training checkpoint beside it); ``stop_at``
    ends the run after that many of the schedule's ``config.steps`` (a later ``resume`` goes on). ``photos``
    and ``init``: see the module doc."""
    device = next(G.parameters()).device
    n_photos = round(config.batch * config.photo_share) if photos is not None else 0
    if config.photo_share and photos is None:
        raise MorphError(f"photo_share {config.photo_share:g} asks for photos and none were given",
                         hint="pass --photos DIR")
    if n_photos and not config.image_weight:
        raise MorphError("photos are scored by the image loss alone, and its weight is 0", hint="--image-weight > 0")
    if n_photos >= config.batch:
        raise MorphError(f"photo_share {config.photo_share:g} leaves no generator samples in a batch of "
                         f"{config.batch}", hint="a share below 1")
    torch.manual_seed(config.seed)  # the initial weights
    if init is not None:
        enc = load_encoder(init, G, device).requires_grad_(True)
    else:
        enc = for_model(G, **(encoder_kwargs or {})).to(device)
        moments = w_moments(G)
        enc.w_avg.copy_(moments.mean)
        enc.w_scale.copy_(moments.spread.clamp_min(1e-3))
    optimizer = torch.optim.Adam(enc.parameters(), lr=config.lr, betas=(0.9, 0.99))
    start = 0
    ckpt = checkpoint_path(out)
    schedule = {k: v for k, v in asdict(config).items() if k != "checkpoint_every"}  # what decides the result
    if resume and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        stored = json.loads(state.get("schedule", "null")) or schedule  # checkpoints before schedules were kept
        changed = sorted(k for k in schedule.keys() | stored.keys() if stored.get(k) != schedule.get(k))
        if changed:
            was = ", ".join(f"{k} {stored.get(k)!r} (now {schedule.get(k)!r})" for k in changed)
            raise MorphError(f"{ckpt}: the checkpoint is of another schedule: {was}",
                             hint="resume with its options, or drop --resume to start again")
        enc.load_state_dict(state["encoder"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        log(f"{ckpt}: resuming at step {start} of {config.steps}")
    loss_name = default_loss(G.info.path) if config.loss == "auto" else config.loss
    distance = make_distance(loss_name, device)
    scale = enc.w_scale.to(device)
    until = coarse_plan(G, 1)[0] or None
    facts = {"training": asdict(config) | {"loss": loss_name}, "model_file": Path(G.info.path).name}
    if init is not None:
        facts["initialised_from"] = {"file": Path(init).name, "sha256": enc.sha256}

    def save(step: int) -> None:
        with atomic_path(ckpt, suffix=".pt") as tmp:
            torch.save({"encoder": enc.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                        "schedule": json.dumps(schedule)}, tmp)
        save_encoder(out, enc, G.info.sha256, facts | {"steps_done": step})

    end = min(config.steps, stop_at or config.steps)
    progress = Progress("encoder", max(0, end - start), unit="steps", quiet=quiet)
    enc.train()
    began, seen, step = time.monotonic(), 0.0, start
    try:
        for step in range(start, end):
            check_stop()
            gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
            ws, images = sample_batch(G, config.batch - n_photos, gen, config)
            if n_photos:
                real = photos(gen, n_photos).to(device)
                images = torch.cat([images, real])
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, config)
            pred = enc(images)
            latent = ((pred[:len(ws)] - ws) / scale).square().mean()
            loss = config.latent_weight * latent
            if config.image_weight:
                if until:
                    with torch.no_grad():
                        drawn = draw(G, ws, Noise("const"), until)
                    images = torch.cat([drawn, F.interpolate(real, size=drawn.shape[-2:], mode="area")]) \
                        if n_photos else drawn
                recon = draw(G, pred, Noise("const"), until)
                loss = loss + config.image_weight * distance(images)(recon).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            progress.advance(1)
            value = latent.item()
            seen = 0.98 * seen + 0.02 * value if step > start else value
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == end:
                save(step + 1)
                if not quiet:
                    log(f"encoder: step {step + 1}, latent error {seen:.3f} (offset² per dim), "
                        f"{(time.monotonic() - began) / (step + 1 - start):.2f} s/step")
    except (KeyboardInterrupt, Terminated):
        if step > start:
            save(step)  # the steps before the interrupted one are complete
            log(f"encoder: stopped at step {step}; --resume continues from {ckpt}")
        raise
    finally:
        progress.close()
    return enc.eval()


__all__ = ["PhotoFolder", "Photos", "TrainConfig", "checkpoint_path", "sample_batch", "train"]
