"""Photos → W / W+ latents (and the noise maps that finish them), by NVIDIA's projector recipe.

The optimisation follows ``projector.py`` of stylegan2-ada-pytorch: start at w_avg (mean of 10k
mapped samples, whose spread sets the scale), Adam at lr 0.1 with a 5 % ramp-up and a 25 % cosine
ramp-down, Gaussian noise added to w that decays to zero over the first 75 % of the steps (squared),
and the per-layer noise maps optimised too, under the multi-scale autocorrelation penalty (× 1e5)
and renormalised to zero mean and unit variance after every step. W+ (one w per layer) by default.
Every photo has its own seeded random streams and its own loss, so a batch of photos optimised
together gives what each would alone; the batch only makes it faster.

The distance: LPIPS on VGG16 features when the user has the weights (``--vgg``: NVIDIA's
``vgg16.pt``, or torchvision's ``vgg16-397923af.pth`` plus the LPIPS ``vgg.pth`` lin layers).
Without them, :func:`default_loss`, chosen on the built-in model: 6 team photos, 500 steps, W+,
scored by PSNR and by the attribute agreement of the independent judge classifier
(``PYTHONPATH=. python bench/project.py --losses --steps 500``)::

    loss                  PSNR dB (min)   agreement
    l1 (multi-scale)      24.71 (22.85)   0.972
    l2 (multi-scale)      25.04 (23.27)   0.944
    laplacian             25.07 (23.21)   0.944
    ssim                  25.18 (22.60)   0.972
    perceptual            23.66 (21.41)   1.000
    perceptual+laplacian  24.70 (22.44)   1.000

Only the ``perceptual`` classifier's features keep every attribute (a smile, glasses, a beard)
right; adding the Laplacian pyramid wins back 1 dB of PSNR, within 0.5 dB of the best pixel
loss. The classifier knows only the built-in model's faces, so other models get ``laplacian``.

With an encoder (:mod:`morph.projection.encoder`: the built-in model ships one; ``--encoder auto`` finds
``NAME.encoder.safetensors`` beside a checkpoint) the optimisation starts from its guess instead of w_avg,
with the model's constant noise as the noise maps' start, and runs :data:`REFINE_STEPS` steps of the same
recipe without the noise on w (:data:`REFINE_RECIPE`, chosen by ``bench/project.py --encoder``); on the
built-in model, multi-scale L2 plus a hundredth of the perceptual term at twice the learning rate
(:data:`REFINE_LOSS`, :data:`REFINE_RECIPES`: more PSNR, every attribute kept); zero steps keep the guess.
On models larger than :data:`COARSE_ABOVE` (skip architecture) the first half of the steps compare the
generator's intermediate image at :data:`COARSE_RESOLUTION` with the target downsampled to it
(:func:`coarse_plan`; ``bench/coarse.py`` measures what a step costs at each size).

Everything goes through the :class:`morph.core.model.Model` contract, so StyleGAN3 projects too: a family
without noise inputs (``noise_shapes()`` empty) optimises w alone, with no noise regulariser, and its
projections hold no noise maps. StyleGAN3 has no coarse stage: it draws no intermediate image (one ToRGB at
the end, and its last layers all run at the output's size), so every step is at full resolution.

Results are cached under ``<cache>/projections/`` by (image bytes, model file hash, settings — the
encoder's file hash among them), so a scene re-render never projects again. A scene render draws every
frame with the optimised noise of its first projected keyframe (held for the whole render: the scheduler
gives W frames, not the keyframe weights a per-frame noise blend would need), so a projected face renders
identically every time; the noise's hash joins the render's cache key.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from morph.projection.align import aligned_face
from morph.projection.psp import EncoderGuess
from morph.core.arrays import read_arrays
from morph.core.cache import PROJECTIONS, folder, reusable, seal
from morph.render.encode import EncodeSettings, SegmentWriter
from morph.core.files import atomic_path
from morph.core.errors import MorphError
from morph.motion.latents import From, Project, map_z
from morph.core.progress import Progress, log
from morph.models.resolver import is_builtin_file
from morph.core.runtime import check_stop
from morph.checkpoints.torchscript import is_torchscript
from morph.core.model import Model, Noise
from morph.projection.vgg import vgg16_state
from morph.core.model import images_to_uint8
from morph.core.files import file_sha256

# Bump when a change to the optimisation alters results, so old cached projections are not reused.
PROJECTION_VERSION = "1"
DEFAULT_LOSS = "perceptual+laplacian"
REFINE_LOSS = "l2+0.01*perceptual"  # the built-in model's loss after its encoder's guess (README)
LOSSES = ("l1", "l2", "laplacian", "ssim", "perceptual", DEFAULT_LOSS, REFINE_LOSS)
HISTORY_FRAMES = 60  # optimisation snapshots kept for the progress video
SCENE_STEPS = 1000  # steps for a scene's {project: photo}
REFINE_STEPS = 100  # steps after an encoder's first guess (bench/project.py --encoder)
COARSE_ABOVE = 256       # models larger than this refine most steps on a smaller image (bench/coarse.py) ...
COARSE_RESOLUTION = 256  # ... the skip architecture's intermediate image at this size
FULL_STEPS = 0.5    # the share of the steps (at least one) that finish at full resolution (README)
SCENE_BATCH = 8     # a scene's photos are projected this many at a time (memory at 1024 px)

Distance = Callable[[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]  # target → (image → [N] distances)


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


@dataclass(frozen=True)
class Settings:
    """Everything besides the photo and the model that decides a projection (part of the cache key)."""

    space: str = "w+"
    steps: int = 1000
    align: bool = True
    face: Optional[int] = None
    loss: str = "auto"              # auto: :func:`default_loss`; "lpips" with --vgg
    vgg: tuple[str, ...] = ()       # sha256 of each --vgg file, filled in by :func:`resolve_settings`
    seed: int = 303
    recipe: Recipe = field(default_factory=Recipe)
    encoder: str = ""               # sha256 of the encoder file that gave the first guess ("": start at w_avg)
    coarse: int = -1                # resolution of the coarse stage; -1: :func:`coarse_plan`, 0: none

    def key(self, image_sha256: str, model_sha256: str) -> str:
        head = json.dumps({"version": PROJECTION_VERSION, "image": image_sha256, "model": model_sha256,
                           **asdict(self)}, sort_keys=True)
        return hashlib.sha256(head.encode()).hexdigest()


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


# --- distances -------------------------------------------------------------------------------------------------

def _pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """``x`` and ``levels`` successive 2× average-pooled copies."""
    out = [x]
    for _ in range(levels):
        out.append(F.avg_pool2d(out[-1], 2))
    return out


def _levels(x: torch.Tensor) -> int:
    return max(0, int(math.log2(x.shape[-1])) - 3)  # down to 8 px


def multiscale(power: int) -> Distance:
    """Mean |a − b|^power over the image and its 2× downsamplings to 8 px (per sample)."""
    def bind(target: torch.Tensor):
        want = _pyramid(target, _levels(target))
        return lambda img: sum((g - w).abs().pow(power).mean(dim=(1, 2, 3))
                               for g, w in zip(_pyramid(img, len(want) - 1), want)) / len(want)
    return bind


def _laplacian(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    gauss = _pyramid(x, levels)
    up = [F.interpolate(g, scale_factor=2, mode="bilinear", align_corners=False) for g in gauss[1:]]
    return [g - u for g, u in zip(gauss, up)] + [gauss[-1]]


def laplacian() -> Distance:
    """Laplacian-pyramid L1: band-pass levels compared separately, so edges count as much as colour."""
    def bind(target: torch.Tensor):
        want = _laplacian(target, _levels(target))
        return lambda img: sum((g - w).abs().mean(dim=(1, 2, 3))
                               for g, w in zip(_laplacian(img, len(want) - 1), want))
    return bind


def _blur(x: torch.Tensor, sigma: float = 1.5, size: int = 11) -> torch.Tensor:
    t = torch.arange(size, dtype=x.dtype, device=x.device) - size // 2
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, [size // 2] * 4, mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def ssim() -> Distance:
    """1 − SSIM (Gaussian window σ 1.5, images mapped to [0, 1])."""
    def stats(x: torch.Tensor):
        x = (x + 1) / 2
        mu = _blur(x)
        return x, mu, _blur(x * x) - mu * mu

    def bind(target: torch.Tensor):
        t, mu_t, var_t = stats(target)

        def dist(img: torch.Tensor) -> torch.Tensor:
            x, mu_x, var_x = stats(img)
            cov = _blur(x * t) - mu_x * mu_t
            c1, c2 = 0.01 ** 2, 0.03 ** 2
            s = (2 * mu_x * mu_t + c1) * (2 * cov + c2) / ((mu_x ** 2 + mu_t ** 2 + c1) * (var_x + var_t + c2))
            return 1 - s.mean(dim=(1, 2, 3))
        return dist
    return bind


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)


def feature_distance(maps: Callable[[torch.Tensor], list[torch.Tensor]],
                     weights: Optional[Sequence[torch.Tensor]] = None) -> Distance:
    """LPIPS's form on any network: channel-normalised activations, squared differences weighted per channel
    (``weights[k]`` [C_k]; uniform when None), averaged over space, summed over layers."""
    def bind(target: torch.Tensor):
        with torch.no_grad():
            want = [_unit(m) for m in maps(target)]

        def dist(img: torch.Tensor) -> torch.Tensor:
            total = 0
            for k, (g, w) in enumerate(zip(maps(img), want)):
                d = (_unit(g) - w).square()
                d = d.sum(dim=1) if weights is None else torch.einsum("nchw,c->nhw", d, weights[k])
                total = total + d.mean(dim=(1, 2))
            return total
        return dist
    return bind


def perceptual(device: torch.device) -> Distance:
    """:func:`feature_distance` on the built-in ``perceptual`` face classifier (not the judge), at its 64 px."""
    from morph.builtin import builtin_path
    from morph.builtin.classifier import load_classifier

    net = load_classifier(builtin_path("perceptual"), device)
    size = net.image_size

    def maps(x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="area" if x.shape[-1] > size else "bilinear")
        return net.feature_maps(x)
    return feature_distance(maps)


def scaled(distance: Distance, weight: float) -> Distance:
    """``distance`` times ``weight``."""
    def bind(target: torch.Tensor):
        bound = distance(target)
        return lambda img: weight * bound(img)
    return bind


def combined(*parts: Distance) -> Distance:
    """The sum of several distances."""
    def bind(target: torch.Tensor):
        bound = [p(target) for p in parts]
        return lambda img: sum(b(img) for b in bound)
    return bind


# --- LPIPS on VGG16 (user-supplied weights) --------------------------------------------------------------------

VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
LPIPS_TAPS = (3, 8, 15, 22, 29)  # indices in torchvision's vgg16.features of relu1_2, 2_2, 3_3, 4_3, 5_3
LPIPS_SHIFT, LPIPS_SCALE = (-0.030, -0.088, -0.188), (0.458, 0.448, 0.450)


class VGG16Features(nn.Module):
    """torchvision's ``vgg16().features`` layout (its state-dict names), up to relu5_3."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
                cin = v
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """LPIPS's five activations of an image in [-1, 1]."""
        x = (x - x.new_tensor(LPIPS_SHIFT).view(1, 3, 1, 1)) / x.new_tensor(LPIPS_SCALE).view(1, 3, 1, 1)
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in LPIPS_TAPS:
                out.append(x)
        return out


def _to_256(x: torch.Tensor) -> torch.Tensor:
    """Images larger than 256 px are area-downsampled to 256, as NVIDIA's projector feeds VGG."""
    return F.interpolate(x, size=(256, 256), mode="area") if x.shape[-1] > 256 else x


def vgg_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The ``--vgg`` files (``~`` expanded); MorphError naming the first that is not a file."""
    files = [Path(p).expanduser() for p in paths]
    for f in files:
        if not f.is_file():
            raise MorphError("no such file", where=f, hint="--vgg takes vgg16.pt or vgg16-397923af.pth (+ vgg.pth)")
    return files


def lpips(paths: Sequence[str | os.PathLike], device: torch.device) -> Distance:
    """LPIPS from ``--vgg`` files: NVIDIA's ``vgg16.pt`` (TorchScript, of which only the weights are read:
    :mod:`morph.projection.vgg`), or state dicts holding torchvision's VGG16 ``features.*`` and optionally LPIPS's
    ``lin0..4.model.1.weight`` (uniform channel weights without them). MorphError naming the file when it is neither."""
    paths = vgg_files(paths)
    vgg = VGG16Features()
    wanted = vgg.state_dict()
    if len(paths) == 1 and is_torchscript(paths[0]):
        lin = {f"lin{k}.model.1.weight": torch.Size([1, vgg.features[t - 1].out_channels, 1, 1])
               for k, t in enumerate(LPIPS_TAPS)}
        state = vgg16_state(paths[0], {**{k: v.shape for k, v in wanted.items()}, **lin})
    else:
        state = {}
        for p in paths:
            try:
                loaded = torch.load(p, map_location="cpu", weights_only=True)
            except Exception as e:  # torch raises many types for a file that is not a state dict
                raise MorphError(f"not a VGG16 state dict ({' '.join(str(e).split())[:120]})", where=p) from None
            state.update(loaded if isinstance(loaded, dict) else {})
    missing = [k for k in wanted if k not in state or state[k].shape != wanted[k].shape]
    if missing:
        raise MorphError(f"not torchvision's VGG16 (missing or mis-shaped {missing[0]})", where=paths[0],
                         hint="--vgg takes vgg16.pt, or vgg16-397923af.pth plus LPIPS's vgg.pth")
    vgg.load_state_dict({k: state[k] for k in wanted})
    vgg = vgg.to(device).eval().requires_grad_(False)
    lin = [state.get(f"lin{k}.model.1.weight") for k in range(len(LPIPS_TAPS))]
    weights = [w.reshape(-1).to(device) for w in lin] if all(w is not None for w in lin) else None
    return feature_distance(lambda x: vgg(_to_256(x)), weights)


def make_distance(name: str, device: torch.device, vgg: Sequence[str | os.PathLike] = ()) -> Distance:
    """The distance called ``name`` (``lpips`` when ``vgg`` files are given)."""
    if vgg:
        return lpips(vgg, device)
    parts = {"l1": lambda: multiscale(1), "l2": lambda: multiscale(2), "laplacian": laplacian, "ssim": ssim,
             "perceptual": lambda: perceptual(device)}
    if name not in LOSSES:
        raise MorphError(f"unknown loss {name!r}", hint=f"use one of {', '.join(LOSSES)}")

    def term(text: str) -> Distance:  # NAME or WEIGHT*NAME
        weight, _, part = text.rpartition("*")
        return scaled(parts[part](), float(weight)) if weight else parts[part]()
    return combined(*(term(p) for p in name.split("+")))


# --- the optimisation ------------------------------------------------------------------------------------------

def w_stats(G, samples: int = 10_000) -> tuple[torch.Tensor, float]:
    """(w_avg [w_dim], w_std): mean and RMS distance from it of w for ``samples`` seeded z (NVIDIA's seed 123;
    class 0 of a conditional model)."""
    z = torch.from_numpy(np.random.RandomState(123).randn(samples, G.z_dim)).to(torch.float32)
    w = torch.cat([map_z(G, z[i:i + 1000])[:, 0] for i in range(0, samples, 1000)])
    w_avg = w.mean(dim=0)
    return w_avg, float(((w - w_avg).square().sum() / samples).sqrt())


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
    :data:`COARSE_RESOLUTION` for skip-architecture models larger than :data:`COARSE_ABOVE`, with the last
    :data:`FULL_STEPS` of the steps at full size; other models (StyleGAN3, which draws no intermediate image,
    and StyleGAN2's other architectures) and ``coarse`` 0 refine at full size only."""
    skip = G.family == "stylegan2" and G.init_kwargs["synthesis_kwargs"].get("architecture", "skip") == "skip"
    if coarse == -1:
        coarse = COARSE_RESOLUTION if G.img_resolution > COARSE_ABOVE else 0
    if not coarse or not skip or coarse >= G.img_resolution:
        return 0, steps
    return coarse, min(steps, max(1, math.ceil(FULL_STEPS * steps)))


def draw(G, ws: torch.Tensor, noise: Noise, until: Optional[int] = None) -> torch.Tensor:
    """``G.synthesize(ws, noise)``; with ``until`` (a :func:`coarse_plan` resolution: StyleGAN2's skip
    architecture only) the intermediate image at that size."""
    return G.synthesize(ws, noise) if until is None else G.synthesize(ws, noise, until=until)


def constant_noise(G) -> list[torch.Tensor]:
    """The model's own constant noise maps [R, R], one per :meth:`~morph.core.model.Model.noise_shapes` entry (StyleGAN2's
    ``noise_const`` buffers); none for a family without noise inputs."""
    return [layer.noise_const for layer in G.synthesis.noise_layers()] if G.noise_shapes() else []


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
    all but the last ``full_steps`` steps compare the skip architecture's image at that size with the target
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
        noise = [m.detach().to(device)[None, None].repeat(n, 1, 1, 1).requires_grad_(True) for m in constant_noise(G)]
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


# --- photos, cache, outputs ------------------------------------------------------------------------------------

def cache_path(image: str | os.PathLike, model_sha256: str, settings: Settings, cache_dir: Optional[Path]) -> Path:
    """Where the projection of ``image`` with these settings is cached (``<cache>/projections/KEY.npz``)."""
    key = settings.key(file_sha256(image), model_sha256)
    return folder(PROJECTIONS, cache_dir) / f"{key}.npz"


def _save(path: Path, p: Projection) -> None:
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, w=p.w.numpy(), target=p.target, history=p.history.numpy(),
                 **{f"noise{k}": n.numpy() for k, n in enumerate(p.noise)})
    seal(path)


def _load(path: Path) -> Optional[Projection]:
    """The cached projection at ``path``, or None when there is none whole (a damaged one is reported and
    removed, so it is projected again)."""
    if not reusable(path, label="projection"):
        return None
    try:
        data = read_arrays(path)  # headers and member sizes checked before anything is inflated
        count = sum(name.startswith("noise") for name in data)
        return Projection(torch.from_numpy(data["w"]), [torch.from_numpy(data[f"noise{k}"]) for k in range(count)],
                          data["target"], torch.from_numpy(data["history"]))
    except (MorphError, OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def default_loss(model_path: str | os.PathLike, refine: bool = False) -> str:
    """The measured best without VGG weights: on the built-in model (whose faces the perceptual classifier
    knows) perceptual+laplacian from w_avg, and after the encoder's guess (``refine``) multi-scale L2 with a
    little of the perceptual term; the Laplacian pyramid on any other model."""
    if not is_builtin_file(model_path):
        return "laplacian"
    return REFINE_LOSS if refine else DEFAULT_LOSS


def refine_recipe(loss: str) -> Recipe:
    """The recipe that refines an encoder's guess under ``loss``."""
    return REFINE_RECIPES.get(loss, REFINE_RECIPE)


def resolve_settings(settings: Settings, model_path: str | os.PathLike,
                     vgg: Sequence[str | os.PathLike] = ()) -> Settings:
    """Settings with the loss named: LPIPS with the hashes of the ``--vgg`` files, else the model's default
    for "auto" (so the cache key says what was optimised); after an encoder, the loss's refining recipe."""
    refine = bool(settings.encoder)
    if vgg:
        settings = replace(settings, loss="lpips", vgg=tuple(file_sha256(p) for p in vgg_files(vgg)))
    elif settings.loss == "auto":
        settings = replace(settings, loss=default_loss(model_path, refine))
    if refine and settings.recipe == Recipe():  # an encoder's guess is refined by its own recipe
        settings = replace(settings, recipe=refine_recipe(settings.loss))
    return settings


def project_photos(images: Sequence[str | os.PathLike], G, settings: Settings = Settings(),
                   vgg: Sequence[str | os.PathLike] = (), cache_dir: Optional[Path] = None,
                   batch_size: int = 8, quiet: bool = False, encoder=None) -> list[Projection]:
    """Each image projected (or read back from the cache): the missing ones optimised in batches, from
    ``encoder``'s guess (a :class:`morph.projection.encoder.Encoder` for ``G``) when given, else from w_avg."""
    settings = replace(settings, encoder=encoder.sha256 if encoder is not None else "")
    settings = resolve_settings(settings, G.info.path, vgg)
    device = next(G.parameters()).device
    paths = [cache_path(img, G.info.sha256, settings, cache_dir) for img in images]
    found = [_load(p) for p in paths]
    todo = [i for i, f in enumerate(found) if f is None]
    if todo:
        targets = {i: aligned_face(images[i], G.img_resolution, settings.align, settings.face) for i in todo}
        distance = make_distance(settings.loss, device, vgg)
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
                    _save(paths[i], p)
                    found[i] = p
        finally:
            progress.close()
    return found


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Peak signal-to-noise ratio (dB) of uint8 image pairs [N, H, W, C]."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(axis=1)
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))


def attribute_agreement(classifier, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pair, the share of the classifier's binary attributes it reads the same way (p > 0.5) in both."""
    pa, pb = classifier.predict(a)["probs"], classifier.predict(b)["probs"]
    return ((pa > 0.5) == (pb > 0.5)).mean(axis=1)


def write_outputs(G, image: str | os.PathLike, p: Projection, recon: np.ndarray, out: Path,
                  video: bool = False, figures: Optional[dict] = None) -> list[Path]:
    """``NAME.npy`` (the latent), ``NAME.noise.npz`` (noise maps by layer; not for a model without noise
    inputs), ``NAME.png`` (target | ``recon``, the reconstruction), with ``figures`` (:func:`morph.projection.quality.figures`'
    row) captioned under it and written to ``NAME.json``, and, with ``video``, ``NAME.mp4`` (the reconstruction
    at each kept optimisation step)."""
    from morph.render.caption import add_caption, describe
    from morph.render.images import grid, write_png

    name = Path(image).stem
    written = [out / f"{name}.npy"]
    with atomic_path(written[-1]) as tmp, open(tmp, "wb") as fh:
        np.save(fh, p.w.numpy())
    if p.noise:
        names = {id(m): n for n, m in G.synthesis.named_modules()}
        written.append(out / f"{name}.noise.npz")
        with atomic_path(written[-1]) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **{names[id(l)]: n.numpy() for l, n in zip(G.synthesis.noise_layers(), p.noise)})
    side = grid(_rgb(np.stack([p.target, recon])), cols=2)
    written.append(out / f"{name}.png")
    with atomic_path(written[-1]) as tmp:
        write_png(tmp, add_caption(side, describe(figures).split(", ")) if figures else side)
    if figures:
        written.append(out / f"{name}.json")
        with atomic_path(written[-1]) as tmp:
            tmp.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    if video:
        frames = synthesize(G, [Projection(w, p.noise, p.target, p.history) for w in p.history])
        size = max(256, G.img_resolution)  # a video player's minimum; resolutions are powers of two (even)
        written.append(out / f"{name}.mp4")
        with SegmentWriter(written[-1], EncodeSettings(format="mp4", fps=10, size=size), G.img_resolution) as wr:
            wr.write(_rgb(frames))
    return written


def _rgb(images: np.ndarray) -> np.ndarray:
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


# --- scenes ----------------------------------------------------------------------------------------------------

def scene_settings(spec: Project, resolution: int, encoder: str = "") -> Settings:
    """How a scene's ``{project: photo, steps, space}`` is projected: defaults unless the scene says (fewer
    steps after the ``encoder`` with this sha256, if any); a square photo at the model's own resolution is
    taken as an already aligned face (what ``morph project`` makes)."""
    from morph.render.images import read_image

    h, w = read_image(spec.image).shape[:2]
    return Settings(space=spec.space or Settings.space, steps=spec.steps or (REFINE_STEPS if encoder else SCENE_STEPS),
                    align=not (h == w == resolution), encoder=encoder)


def projection_status(spec: Project, G: Optional[Model]) -> str:
    """For ``morph check``: "cached", "needs projection (N steps)", or that plus why it will fail (an
    unreadable photo), on the already loaded generator ``G`` (None: a scene validated without a model)."""
    from morph.projection.encoder import encoder_sha256, find_encoder

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
    from morph.projection.encoder import encoder_for

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
