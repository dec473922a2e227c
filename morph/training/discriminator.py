"""A small StyleGAN2-style residual discriminator, the adversary of ``morph.training.train_sharp``.

As NVIDIA's (``training/networks.py``, resnet architecture) in what matters: equalised-learning-rate
convolutions and lrelu·√2, per resolution two 3×3 convolutions then a 2× downsampling with a 1×1
residual skip (both scaled by √½), and an epilogue at 4 px with a minibatch standard deviation
feature, a 3×3 convolution and two fully connected layers. Downsampling is a 2×2 box filter rather
than NVIDIA's [1, 3, 3, 1] FIR: this network is only ever trained, never loaded from NVIDIA's files.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from morph.stylegan2.networks import Conv2dLayer, FullyConnectedLayer


def disc_channels(resolution: int, channel_base: int, channel_max: int) -> dict[int, int]:
    """Channels per resolution, NVIDIA's rule: ``min(channel_base // res, channel_max)``, 4 px … ``resolution``."""
    res = [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]
    return {r: min(channel_base // r, channel_max) for r in res}


class DiscriminatorBlock(nn.Module):
    """One resolution: conv 3×3, conv 3×3, 2× down; plus a 1×1 skip of the downsampled input."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv0 = Conv2dLayer(cin, cin, 3, activation="lrelu")
        self.conv1 = Conv2dLayer(cin, cout, 3, activation="lrelu")
        self.skip = Conv2dLayer(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.skip(F.avg_pool2d(x, 2), gain=math.sqrt(0.5))
        x = F.avg_pool2d(self.conv1(self.conv0(x)), 2) * math.sqrt(0.5)
        return x + y


class Discriminator(nn.Module):
    """image [N, C, R, R] in [-1, 1] → one realness logit per image [N, 1]."""

    def __init__(self, resolution: int, img_channels: int = 3, channel_base: int = 2048, channel_max: int = 128,
                 mbstd_group: int = 4):
        super().__init__()
        ch = disc_channels(resolution, channel_base, channel_max)
        self.resolution, self.mbstd_group = resolution, mbstd_group
        self.fromrgb = Conv2dLayer(img_channels, ch[resolution], 1, activation="lrelu")
        self.blocks = nn.ModuleList(DiscriminatorBlock(ch[r], ch[r // 2]) for r in sorted(ch, reverse=True) if r > 4)
        self.conv = Conv2dLayer(ch[4] + 1, ch[4], 3, activation="lrelu")
        self.fc = FullyConnectedLayer(ch[4] * 16, ch[4], activation="lrelu")
        self.out = FullyConnectedLayer(ch[4], 1)

    def minibatch_std(self, x: torch.Tensor) -> torch.Tensor:
        """Append the mean standard deviation over groups of samples as one more feature map (so the
        discriminator sees the diversity of a batch, which discourages mode collapse)."""
        n, c, h, w = x.shape
        g = math.gcd(min(self.mbstd_group, n), n)
        y = x.reshape(g, n // g, c, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()
        y = y.mean(dim=[1, 2, 3]).reshape(1, n // g, 1, 1, 1).repeat(g, 1, 1, h, w).reshape(n, 1, h, w)
        return torch.cat([x, y], dim=1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        assert img.shape[-1] == self.resolution, (img.shape, self.resolution)
        x = self.fromrgb(img)
        for block in self.blocks:
            x = block(x)
        x = self.conv(self.minibatch_std(x))
        return self.out(self.fc(x.flatten(1)))
