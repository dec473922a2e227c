"""ArcFace IR-SE50, the identity network of the face-inversion papers, in morph's own code.

The residual body (IR-SE: pre-activation residual units with squeeze-and-excitation) is shared with the
pSp / e4e encoders (:mod:`morph.projection.psp`); its module names are the official ones, so the published
state dicts (``model_ir_se50.pth``, the ``encoder.*`` of ``psp_ffhq_encode.pt``) load as they are.

Identity is measured as pSp's identity loss measures it: the 256×256 FFHQ-aligned face cropped to
``[35:223, 32:220]`` (the face without the hair and background), average-pooled to 112×112, then the
L2-normalised 512-d feature; two faces' similarity is the dot product of their features.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from morph.checkpoints.psp import read_arcface
from morph.core.errors import CheckpointError

CROP = (slice(35, 223), slice(32, 220))  # rows, columns of the 256×256 aligned face (pSp's id loss)
INPUT = 112
STAGES = ((64, 3), (128, 4), (256, 14), (512, 3))  # IR-SE50: depth and units per stage


class SqueezeExcite(nn.Module):
    """Channel gates from the globally pooled map: 1×1 conv down by 16, ReLU, 1×1 conv up, sigmoid."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))


class ResidualUnit(nn.Module):
    """``bottleneck_IR_SE``: BN, 3×3 conv, PReLU, 3×3 conv (``stride``), BN, SE; plus the shortcut (a strided
    identity when the depth stays, else a strided 1×1 conv and BN)."""

    def __init__(self, cin: int, depth: int, stride: int):
        super().__init__()
        self.stride = stride
        if cin != depth:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(cin, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(nn.BatchNorm2d(cin), nn.Conv2d(cin, depth, 3, 1, 1, bias=False),
                                       nn.PReLU(depth), nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
                                       nn.BatchNorm2d(depth), SqueezeExcite(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut_layer(x) if hasattr(self, "shortcut_layer") else x[:, :, ::self.stride, ::self.stride]
        return self.res_layer(x) + shortcut


def ir_se50_body() -> nn.Sequential:
    """The 24 residual units of IR-SE50, the first of each stage halving the size."""
    units, cin = [], 64
    for depth, count in STAGES:
        units += [ResidualUnit(cin, depth, 2)] + [ResidualUnit(depth, depth, 1) for _ in range(count - 1)]
        cin = depth
    return nn.Sequential(*units)


def input_layer() -> nn.Sequential:
    """3×3 conv to 64 channels, BN, PReLU (the official ``input_layer``)."""
    return nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))


class ArcFace(nn.Module):
    """``Backbone(112, 50, 'ir_se')``: images [N, 3, 112, 112] in [-1, 1] → unit features [N, 512]."""

    def __init__(self):
        super().__init__()
        self.input_layer = input_layer()
        self.body = ir_se50_body()
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(), nn.Flatten(), nn.Linear(512 * 7 * 7, 512),
                                          nn.BatchNorm1d(512))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.output_layer(self.body(self.input_layer(x))), dim=1)

    def faces(self, aligned: torch.Tensor) -> torch.Tensor:
        """Features of FFHQ-aligned faces [N, 3, 256, 256] in [-1, 1], cropped and pooled as pSp's id loss does
        (other sizes are first resized to 256 with area averaging)."""
        if aligned.shape[-1] != 256:
            aligned = F.interpolate(aligned, size=(256, 256), mode="area" if aligned.shape[-1] > 256 else "bilinear",
                                    align_corners=None if aligned.shape[-1] > 256 else False)
        return self(F.adaptive_avg_pool2d(aligned[:, :, CROP[0], CROP[1]], (INPUT, INPUT)))


def load_arcface(path: str | os.PathLike, device: torch.device | str = "cpu") -> ArcFace:
    """ArcFace with the weights of ``model_ir_se50.pth`` (read through the allow-list), in eval mode."""
    state = read_arcface(path)
    net = ArcFace()
    expected = net.state_dict()
    bad = [k for k in expected if k not in state or state[k].shape != expected[k].shape]
    extra = [k for k in state if k not in expected]
    if bad or extra:
        name = (bad or extra)[0]
        raise CheckpointError(f"not ArcFace IR-SE50 weights: tensor {name!r} "
                              f"{'is missing or has another shape' if bad else 'is unexpected'}", where=Path(path),
                              hint="--identity takes model_ir_se50.pth (pSp's identity loss network)")
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return net.eval().requires_grad_(False).to(device)


def identity_features(net: ArcFace, images: np.ndarray, batch: int = 8) -> np.ndarray:
    """Unit features [N, 512] of uint8 FFHQ-aligned faces [N, H, W, 3] (any square size; 256 as the papers)."""
    device = next(net.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch])).to(device)
            out.append(net.faces(x.permute(0, 3, 1, 2).float() / 127.5 - 1).cpu().numpy())
    return np.concatenate(out)


__all__ = ["ArcFace", "CROP", "identity_features", "input_layer", "ir_se50_body", "load_arcface"]
