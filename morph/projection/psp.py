"""The published FFHQ encoders, pSp (``GradualStyleEncoder``) and e4e (``Encoder4Editing``), in morph's own code.

Both read a 256×256 face (FFHQ-aligned, in [-1, 1]) with the IR-SE50 body (:mod:`morph.projection.arcface`),
tapped after units 6, 20 and 23 (c1: 128 ch at 64 px, c2: 256 ch at 32 px, c3: 512 ch at 16 px), and a feature
pyramid: p2 = c3 upsampled bilinearly to 32 px + a 1×1 conv of c2, p1 = p2 upsampled to 64 px + a 1×1 conv of c1.
One style head per W+ layer (strided 3×3 convs with LeakyReLU down to 1×1, then an equalised linear layer) reads
c3 for layers 0–2, p2 for 3–6, p1 from 7 on.

* pSp: W+ = the heads' outputs + ``latent_avg``.
* e4e: one w from head 0 for every layer, each later head's output added to its own layer (so the code stays
  near W, which is what makes e4e's latents editable), + ``latent_avg``.

Module names are the official ones: a checkpoint's ``encoder.*`` loads as it is. The weights come from the
file through :func:`morph.checkpoints.psp.read_encoder_checkpoint` (memory-mapped, nothing of the file run).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from morph.checkpoints.psp import EncoderCheckpoint, read_encoder_checkpoint
from morph.core.errors import CheckpointError, MorphError
from morph.core.files import file_sha256
from morph.projection.align import aligned_face
from morph.projection.arcface import input_layer, ir_se50_body

INPUT = 256
TAPS = {6: "c1", 20: "c2", 23: "c3"}  # body unit → feature map
COARSE, MIDDLE = 3, 7  # the first layers read from p2 and from p1


class StyleHead(nn.Module):
    """``GradualStyleBlock``: log2(spatial) strided 3×3 convs (LeakyReLU 0.01 after each) to 1×1, then an
    equalised linear layer (weight / sqrt(512))."""
    def __init__(self, spatial: int, channels: int = 512):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(channels, channels, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x).flatten(1)
        return F.linear(x, self.linear.weight / math.sqrt(self.linear.in_features), self.linear.bias)


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class PublishedEncoder(nn.Module):
    """pSp or e4e (``kind``): images [N, 3, 256, 256] in [-1, 1] → W+ [N, n_styles, 512]."""
    def __init__(self, kind: str, n_styles: int = 18):
        super().__init__()
        if kind not in ("psp", "e4e"):
            raise ValueError(f"unknown encoder kind {kind!r}")
        self.kind, self.n_styles = kind, n_styles
        self.input_layer = input_layer()
        self.body = ir_se50_body()
        self.styles = nn.ModuleList(StyleHead(16 if i < COARSE else 32 if i < MIDDLE else 64) for i in range(n_styles))
        self.latlayer1 = nn.Conv2d(256, 512, 1)
        self.latlayer2 = nn.Conv2d(128, 512, 1)
        self.register_buffer("latent_avg", torch.zeros(n_styles, 512))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_layer(x)
        taps = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in TAPS:
                taps[TAPS[i]] = x
        p2 = _upsample_add(taps["c3"], self.latlayer1(taps["c2"])) if self.n_styles > COARSE else None
        p1 = _upsample_add(p2, self.latlayer2(taps["c1"])) if self.n_styles > MIDDLE else None
        features = [taps["c3"] if i < COARSE else p2 if i < MIDDLE else p1 for i in range(self.n_styles)]
        outs = [head(f) for head, f in zip(self.styles, features)]
        if self.kind == "psp":
            w = torch.stack(outs, dim=1)
        else:
            w = outs[0][:, None].repeat(1, self.n_styles, 1)
            w[:, 1:] = w[:, 1:] + torch.stack(outs[1:], dim=1)
        return w + self.latent_avg


def build_encoder(ckpt: EncoderCheckpoint) -> PublishedEncoder:
    """The network of a read checkpoint, its weights assigned (memory-mapped tensors stay mapped)."""
    with torch.device("meta"):
        net = PublishedEncoder(ckpt.kind, ckpt.n_styles)
    expected = net.state_dict()
    state = {k: v for k, v in ckpt.state.items() if not k.endswith("num_batches_tracked")}
    bad = [k for k in expected if k != "latent_avg" and not k.endswith("num_batches_tracked")
           and (k not in state or state[k].shape != expected[k].shape)]
    extra = [k for k in state if k not in expected]
    if bad or extra:
        name = (bad or extra)[0]
        raise CheckpointError(f"the encoder's tensor {name!r} {'is missing or has another shape' if bad else 'is unexpected'} "
                              f"for {ckpt.kind} with {ckpt.n_styles} styles", where=ckpt.path,
                              hint="not a published pSp / e4e FFHQ encoder (IR-SE50 body)")
    state = {k: v if v.dtype == torch.float32 else v.float() for k, v in state.items()}
    state["latent_avg"] = ckpt.latent_avg
    for name, module in net.named_modules():  # BatchNorm's counter is not stored by every file, and never used
        if isinstance(module, nn.BatchNorm2d):
            state[f"{name}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    net.load_state_dict(state, assign=True)
    return net.eval().requires_grad_(False)


class EncoderGuess:
    """A published encoder as projection's first guess for generator ``G``: photos → W+ with the official
    preprocessing (FFHQ alignment, then one resize straight from the photo to 256×256, in [-1, 1])."""
    def __init__(self, net: PublishedEncoder, path: Path, sha256: str):
        self.net, self.path, self.sha256 = net, str(path), sha256
        self.input_size = INPUT

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """W+ of images [N, 3, R, R] in [-1, 1] already at 256 px (:meth:`photos` makes them from files)."""
        if x.shape[-1] != INPUT:
            raise ValueError(f"the {self.net.kind} encoder reads {INPUT} px faces, not {x.shape[-1]} px")
        device = next(iter(self.net.buffers())).device
        w = self.net(x.to(device, torch.float32))
        if not torch.isfinite(w).all():
            raise CheckpointError(f"the {self.net.kind} encoder gives non-finite latents (its weights hold NaN or "
                                  f"infinity)", where=self.path, hint="the file is damaged; download it again")
        return w

    def photos(self, images: Sequence[str | os.PathLike], align: bool = True, face: Optional[int] = None) -> torch.Tensor:
        """W+ of photo files, each aligned and resized once to 256 px as the official inference does."""
        faces = np.stack([aligned_face(p, INPUT, align, face) for p in images])
        x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.no_grad():
            return self(x)


def check_fits(ckpt: EncoderCheckpoint, G) -> None:
    """A one-line MorphError when the encoder's W+ does not fit ``G`` (style count or w size)."""
    if ckpt.n_styles != G.num_ws or ckpt.w_dim != G.w_dim:
        raise MorphError(f"this {ckpt.kind} encoder gives {ckpt.n_styles} styles of w[{ckpt.w_dim}], but "
                         f"{Path(G.info.path).name} takes {G.num_ws} of w[{G.w_dim}]", where=ckpt.path,
                         hint="use the model stored in the encoder checkpoint (leave out --model), or an encoder "
                              "trained for this model's resolution")


def load_published_encoder(path: str | os.PathLike, G, device: Optional[torch.device] = None) -> EncoderGuess:
    """The pSp / e4e encoder in ``path`` for generator ``G`` (refused in one line when its styles do not fit)."""
    ckpt = read_encoder_checkpoint(path)  # mapped: nothing is read until the network runs
    check_fits(ckpt, G)
    net = build_encoder(ckpt)
    device = device or next(G.parameters()).device
    if torch.device(device).type != "cpu":
        net = net.to(device)
    same = Path(G.info.path).resolve() == Path(path).resolve()  # the model is this file's decoder: hashed already
    return EncoderGuess(net, Path(path), G.info.sha256 if same else file_sha256(path))


__all__ = ["EncoderGuess", "PublishedEncoder", "StyleHead", "build_encoder", "check_fits", "load_published_encoder"]
