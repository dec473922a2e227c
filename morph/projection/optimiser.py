"""NVIDIA's projector recipe (``projector.py`` of stylegan2-ada-pytorch), on any :class:`morph.core.model.Model`.

Start at w_avg (the mean of 10k mapped samples, whose spread sets the scale), Adam at lr 0.1 with a 5 %
ramp-up and a 25 % cosine ramp-down, Gaussian noise added to w that decays to zero over the first 75 % of
the steps (squared), and the per-layer noise maps optimised too, under the multi-scale autocorrelation
penalty (× 1e5) and renormalised to zero mean and unit variance after every step. W+ (one w per layer) by
default. Every photo has its own seeded random streams and its own loss, so a batch of photos optimised
together gives what each would alone; the batch only makes it faster.

An encoder's guess (``init``) replaces the start at w_avg, with the model's own constant noise as the noise
maps' start, and is refined by :data:`REFINE_RECIPE` (no noise on w) or a loss's own recipe
(:data:`REFINE_RECIPES`), both chosen by ``bench/project.py --encoder``. A family without noise inputs
(StyleGAN3: ``noise_shapes()`` empty) optimises w alone, with no noise regulariser. On models larger than
:data:`COARSE_ABOVE` that can draw an intermediate image (``Model.intermediate_resolutions``) the first half
of the steps compare that image at :data:`COARSE_RESOLUTION` with the target downsampled to it
(:func:`coarse_plan`; ``bench/coarse.py`` measures what a step costs at each size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from morph.core.model import Noise, images_to_uint8
from morph.core.progress import Progress
from morph.core.runtime import check_stop
from morph.motion.latents import w_moments
from morph.projection.losses import REFINE_LOSS, Distance

HISTORY_FRAMES = 60  # optimisation snapshots kept for the progress video
REFINE_STEPS = 100  # steps after an encoder's first guess (bench/project.py --encoder)
COARSE_ABOVE = 256       # models larger than this refine most steps on a smaller image (bench/coarse.py) ...
COARSE_RESOLUTION = 256  # ... their intermediate image at this size
FULL_STEPS = 0.5    # the share of the steps (at least one) that finish at full resolution (README)


@dataclass(frozen=True)
class Recipe:
    """NVIDIA's projector hyper-parameters (``projector.py`` defaults)."""

    lr: float = 0.1
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    w_noise: float = 0.05           # × w_std at step 0
    w_noise_ramp: float = 0.75
    noise_reg: float = 1e5
    w_avg_samples: int = 10_000


REFINE_RECIPE = Recipe(w_noise=0.0)  # after an encoder's guess: the noise on w only cost PSNR there (README)
# A loss's own recipe after an encoder's guess, where one was measured better (bench/project.py --encoder).
REFINE_RECIPES = {REFINE_LOSS: Recipe(lr=0.2, lr_rampdown=0.15, w_noise=0.0)}


@dataclass
class Projection:
    """One photo's result: W [1, w_dim] or W+ [num_ws, w_dim], noise maps [R, R] per noise layer (none for
    StyleGAN3), the aligned target (uint8 [R, R, 3]) and snapshots of w during the optimisation."""

    w: torch.Tensor
    noise: list[torch.Tensor]
    target: np.ndarray
    history: torch.Tensor

    def ws(self, num_ws: int) -> torch.Tensor:
        """W+ [num_ws, w_dim] (a W latent repeated over the layers)."""
        return self.w.expand(num_ws, -1).clone()


def refine_recipe(loss: str) -> Recipe:
    """The recipe that refines an encoder's guess under ``loss``."""
    return REFINE_RECIPES.get(loss, REFINE_RECIPE)


def w_stats(G, samples: int = 10_000) -> tuple[torch.Tensor, float]:
    """(w_avg [w_dim], w_std): the mean of w and its RMS distance from it (:func:`morph.motion.latents.w_moments`
    over ``samples`` seeded z), the start and the scale of the noise added to w."""
    moments = w_moments(G, samples)
    return moments.mean, moments.rms


def noise_regularizer(noise: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-sample Σ over layers and scales (down to 8 px) of the squared mean autocorrelation at a
    one-pixel shift, across and down: zero for white noise, large where the noise draws structure."""
    total = 0
    for n in noise:
        while True:
            total = total + (n * torch.roll(n, 1, dims=3)).mean(dim=(1, 2, 3)).square()
            total = total + (n * torch.roll(n, 1, dims=2)).mean(dim=(1, 2, 3)).square()
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return total


def learning_rate(t: float, recipe: Recipe) -> float:
    """NVIDIA's schedule at progress ``t`` in [0, 1): linear ramp-up, cosine ramp-down."""
    ramp = min(1.0, (1.0 - t) / recipe.lr_rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return recipe.lr * ramp * min(1.0, t / recipe.lr_rampup)


def coarse_plan(G, steps: int, coarse: int = -1) -> tuple[int, int]:
    """(resolution of the coarse stage or 0, steps at full resolution): ``coarse`` -1 picks
    :data:`COARSE_RESOLUTION` for models larger than :data:`COARSE_ABOVE`, with the last :data:`FULL_STEPS` of
    the steps at full size; a model that draws no intermediate image at that size (StyleGAN3, StyleGAN2's
    ``orig`` and ``resnet`` architectures) and ``coarse`` 0 refine at full size only."""
    if coarse == -1:
        coarse = COARSE_RESOLUTION if G.img_resolution > COARSE_ABOVE else 0
    if not coarse or coarse not in G.intermediate_resolutions():
        return 0, steps
    return coarse, min(steps, max(1, math.ceil(FULL_STEPS * steps)))


def draw(G, ws: torch.Tensor, noise: Noise, until: Optional[int] = None) -> torch.Tensor:
    """``G.synthesize(ws, noise)``; with ``until`` (a :func:`coarse_plan` resolution, one of the model's
    ``intermediate_resolutions()``) the intermediate image at that size."""
    return G.synthesize(ws, noise) if until is None else G.synthesize(ws, noise, until=until)


def noise_of(maps: Sequence[torch.Tensor]) -> Noise:
    """Constant noise drawn with ``maps`` (the model's own when there are none: a family without noise inputs)."""
    return Noise("const", tuple(maps) if maps else None)


def optimise(G, targets: torch.Tensor, distance: Distance, seeds: Sequence[int], space: str = "w+",
             steps: int = 1000, recipe: Recipe = Recipe(), progress: Optional[Progress] = None,
             stats: Optional[tuple[torch.Tensor, float]] = None, init: Optional[torch.Tensor] = None,
             coarse: int = 0, full_steps: int = 0) -> list[Projection]:
    """Project images ``targets`` [N, C, R, R] in [-1, 1] together, one result per image; image i's
    random streams come from ``seeds[i]`` only, so the batch does not change any result. ``init`` (W+
    [N, num_ws, w_dim], an encoder's guess) replaces the start at w_avg, with the model's constant noise
    as the noise maps' start; a model without noise inputs optimises w alone. With ``coarse`` (a resolution),
    all but the last ``full_steps`` steps compare the model's intermediate image at that size with the target
    downsampled to it."""
    device = targets.device
    n, num_ws = len(targets), G.num_ws
    w_avg, w_std = stats or w_stats(G, recipe.w_avg_samples)
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def randn(shape: Sequence[int]) -> torch.Tensor:
        return torch.stack([torch.randn(list(shape), generator=g) for g in gens]).to(device)

    if init is None:
        w_opt = w_avg.to(device).reshape(1, 1, -1).repeat(n, num_ws if space == "w+" else 1, 1).requires_grad_(True)
        noise = [randn([1, h, w]).requires_grad_(True) for h, w in G.noise_shapes()]
    else:
        w_opt = (init if space == "w+" else init.mean(dim=1, keepdim=True)).to(device).clone().requires_grad_(True)
        noise = [m.detach().to(device)[None, None].repeat(n, 1, 1, 1).requires_grad_(True)
                 for m in G.noise_maps().values()]
    optimizer = torch.optim.Adam([w_opt] + noise, betas=(0.9, 0.999), lr=recipe.lr)
    dist = distance(targets)
    low = distance(F.interpolate(targets, size=(coarse, coarse), mode="area")) if coarse else None
    keep = set(np.linspace(0, steps - 1, min(steps, HISTORY_FRAMES)).round().astype(int).tolist())
    history = []
    for step in range(steps):
        check_stop()  # SIGTERM: stop between steps, not after the whole projection
        t = step / steps
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(t, recipe)
        scale = w_std * recipe.w_noise * max(0.0, 1.0 - t / recipe.w_noise_ramp) ** 2
        ws = (w_opt + randn(w_opt.shape[1:]) * scale).expand(n, num_ws, -1)
        cheap = bool(coarse) and step < steps - full_steps
        img = draw(G, ws, noise_of(noise), coarse if cheap else None)
        reg = recipe.noise_reg * noise_regularizer(noise) if noise else 0
        loss = ((low if cheap else dist)(img) + reg).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for buf in noise:
                buf -= buf.mean(dim=(1, 2, 3), keepdim=True)
                buf *= buf.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
        if step in keep:
            history.append(w_opt.detach().cpu().clone())
        if progress:
            progress.advance(1)
    if not history:  # no steps: the first guess is the answer
        history.append(w_opt.detach().cpu().clone())
    target_u8 = images_to_uint8(targets).cpu().numpy()
    hist = torch.stack(history, dim=1)  # [N, K, L, D]
    return [Projection(w_opt[i].detach().cpu(), [b[i, 0].detach().cpu() for b in noise], target_u8[i], hist[i])
            for i in range(n)]


def synthesize(G, projections: Sequence[Projection], batch: int = 8) -> np.ndarray:
    """Each projection rendered with its own noise, ``batch`` at a time: uint8 [N, R, R, C]."""
    device = next(G.parameters()).device
    out = []
    for start in range(0, len(projections), batch):
        chunk = projections[start:start + batch]
        ws = torch.stack([p.ws(G.num_ws) for p in chunk]).to(device)
        maps = [torch.stack([p.noise[k] for p in chunk])[:, None].to(device) for k in range(len(chunk[0].noise))]
        with torch.no_grad():
            out.append(images_to_uint8(G.synthesize(ws, noise_of(maps))).cpu().numpy())
    return np.concatenate(out)


__all__ = ["COARSE_ABOVE", "COARSE_RESOLUTION", "FULL_STEPS", "HISTORY_FRAMES", "Projection", "REFINE_RECIPE",
           "REFINE_RECIPES", "REFINE_STEPS", "Recipe", "coarse_plan", "draw", "learning_rate", "noise_of",
           "noise_regularizer", "optimise", "refine_recipe", "synthesize", "w_stats"]
