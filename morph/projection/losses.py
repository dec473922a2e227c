"""The distances a projection minimises between a generated image and its target photo: multi-scale L1/L2,
a Laplacian pyramid, SSIM, the built-in classifier's features (``perceptual``), LPIPS on the user's VGG16
weights, and sums of them (``l2+0.01*perceptual``); and identity (1 − ArcFace cosine similarity, pSp's identity
loss), a term added to any of them with the user's ArcFace weights.

A distance is bound to its targets once (their pyramids or features computed a single time) and then
scores a batch of images, one figure per image, so a batch of photos optimised together gives what each
would alone. Without VGG weights :func:`default_loss` picks by model: the classifier knows only the built-in
model's faces, so other models get ``laplacian``; ``bench/project.py --losses`` prints what each loss
scores (PSNR and attribute agreement) on the built-in model.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from morph.builtin import builtin_path
from morph.builtin.classifier import load_classifier
from morph.checkpoints.torchscript import is_torchscript
from morph.core.errors import MorphError
from morph.models.resolver import is_builtin_file
from morph.projection.arcface import ArcFace
from morph.projection.vgg import vgg16_state

DEFAULT_LOSS = "perceptual+laplacian"
REFINE_LOSS = "l2+0.01*perceptual"  # the built-in model's loss after its encoder's guess (README)
LOSSES = ("l1", "l2", "mse", "laplacian", "ssim", "perceptual", DEFAULT_LOSS, REFINE_LOSS)

Distance = Callable[[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]  # target → (image → [N] distances)


def _pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """``x`` and ``levels`` successive 2× average-pooled copies."""
    out = [x]
    for _ in range(levels):
        out.append(F.avg_pool2d(out[-1], 2))
    return out


def _levels(x: torch.Tensor) -> int:
    """How many 2× downsamplings take ``x`` down to 8 px."""
    return max(0, int(math.log2(x.shape[-1])) - 3)  # down to 8 px


def multiscale(power: int, levels: Optional[int] = None) -> Distance:
    """Mean |a − b|^power over the image and its ``levels`` successive 2× downsamplings (None: down to 8 px),
    per sample: coarse structure and colour count once per level, on top of the detail."""
    def bind(target: torch.Tensor):
        want = _pyramid(target, _levels(target) if levels is None else levels)
        return lambda img: sum((g - w).abs().pow(power).mean(dim=(1, 2, 3))
                               for g, w in zip(_pyramid(img, len(want) - 1), want)) / len(want)
    return bind


def _laplacian(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """The Laplacian pyramid of ``x``: ``levels`` band-pass images, finest first, then the coarsest Gaussian."""
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
    """A separable Gaussian blur of each channel (reflected edges): SSIM's window."""
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
    """Activations normalised to unit length over channels, as LPIPS compares them."""
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


def identity(net: ArcFace) -> Distance:
    """1 − cosine similarity of ArcFace features, as pSp's identity loss and the identity figure measure it
    (:meth:`ArcFace.faces`: the aligned face cropped and pooled); a one-channel model's images are read as grey."""
    def features(x: torch.Tensor) -> torch.Tensor:
        return net.faces(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)

    def bind(target: torch.Tensor):
        with torch.no_grad():
            want = features(target)
        return lambda img: 1 - (features(img) * want).sum(dim=1)
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
    parts = {"l1": lambda: multiscale(1), "l2": lambda: multiscale(2), "mse": lambda: multiscale(2, 0),
             "laplacian": laplacian, "ssim": ssim,
             "perceptual": lambda: perceptual(device)}
    if name not in LOSSES:
        raise MorphError(f"unknown loss {name!r}", hint=f"use one of {', '.join(LOSSES)}")

    def term(text: str) -> Distance:  # NAME or WEIGHT*NAME
        weight, _, part = text.rpartition("*")
        return scaled(parts[part](), float(weight)) if weight else parts[part]()
    return combined(*(term(p) for p in name.split("+")))


def default_loss(model_path: str | os.PathLike, refine: bool = False) -> str:
    """The best distance without VGG weights, as ``bench/project.py --losses`` and ``--encoder`` measure it on
    the built-in model: there (the faces the perceptual classifier knows) perceptual+laplacian from w_avg, and
    after the encoder's guess (``refine``) multi-scale L2 with a little of the perceptual term; on any other
    model the Laplacian pyramid."""
    if not is_builtin_file(model_path):
        return "laplacian"
    return REFINE_LOSS if refine else DEFAULT_LOSS


__all__ = ["DEFAULT_LOSS", "Distance", "LOSSES", "LPIPS_TAPS", "REFINE_LOSS", "VGG16Features", "VGG16_CFG", "combined",
           "default_loss", "feature_distance", "identity", "laplacian", "lpips", "make_distance", "multiscale",
           "perceptual", "scaled", "ssim", "vgg_files"]
