"""StyleGAN2 generator (mapping + synthesis) with NVIDIA's constructor arguments and state-dict names.

Every module mirrors its namesake in NVIDIA's ``training/networks.py`` (stylegan2-ada-pytorch), so
``Generator(**init_kwargs).load_state_dict(state)`` takes an official state dict as it is. Shapes
are asserted at each boundary, as in the original, so a wrong checkpoint fails loudly and early.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from morph.core.model import NOISE_MODES, Noise, check_noise, crop_centre
from morph.stylegan2.ops import (
    LRELU_GAIN,
    bias_act,
    compiling,
    conv_up2,
    is_channels_last,
    modulated_conv2d,
    setup_filter,
    upsample_2d,
)

ARCHITECTURES = ("orig", "skip", "resnet")
CONST_SIZE = 4  # the learned constant input is [C, 4, 4]


def mirror_indices(n: int, extra: int) -> torch.Tensor:
    """Indices that extend ``n`` cells by ``extra`` on each side, mirrored about the edges with the edge cell
    repeated (…, 1, 0 | 0, 1, …, n-1 | n-1, n-2, …): a widened constant has no jump at its old edges."""
    i = torch.arange(-extra, n + extra) % (2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)


def canvas_cells(canvas: tuple[int, int], resolution: int) -> tuple[int, int]:
    """Constant cells (rows, columns) the synthesis needs to draw ``canvas`` (width, height) pixels: the 4
    learned ones plus the same number added on each side (so the square image stays at the centre)."""
    cell = resolution // CONST_SIZE
    return tuple(CONST_SIZE + 2 * max(0, math.ceil((side - resolution) / (2 * cell))) for side in canvas[::-1])


BLEND_RESOLUTION = 32  # a widened canvas's two drawings are blended after every block up to this one
# Where the background drawing takes over, per block resolution: (start, width) of a smoothstep in constant cells
# (a quarter of the square's side) from the square's edge outwards. The 4 px block's ramp starts one cell inside
# the square, so no cell there goes from none of the background drawing to half of it at the square's edge (drawn
# as a line); the finer blocks start at the edge and take over within little more than a cell, so no hair or head
# outline carries on beside the square; the last ramp, the widest, spreads the change from the square's own
# background to the background drawing's brightness, so the edge shows no line. bench/wide.py compares them.
BLEND_RAMPS = {4: (-1.0, 2.0), 8: (0.0, 1.25), 16: (0.0, 1.25), 32: (0.0, 1.5)}


def background_constant(const: torch.Tensor, cells: tuple[int, int]) -> torch.Tensor:
    """A constant of ``cells`` (rows, columns) holding, in every cell, the mean of ``const``'s four corner cells
    (the cells farthest from the face): the network draws plain background from it in the style's colours,
    with no face anywhere and no edge to draw a seam at."""
    fill = const[:, [0, 0, -1, -1], [0, -1, 0, -1]].mean(dim=1)
    return fill[:, None, None].expand(const.shape[0], *cells).contiguous()


def mirrored_constant(const: torch.Tensor, cells: tuple[int, int]) -> torch.Tensor:
    """``const`` [C, 4, 4] mirrored out to ``cells`` (rows, columns) by :func:`mirror_indices`: no jump at the
    learned cells' edges, so the square's edges are drawn as if the frame went on."""
    rows, cols = (mirror_indices(n, (k - n) // 2).to(const.device) for n, k in zip(const.shape[1:], cells))
    return const.index_select(1, rows).index_select(2, cols)


def background_weight(cells: tuple[int, int], resolution: int, start: float, width: float) -> torch.Tensor:
    """[rows·r, cols·r] (r = ``resolution`` / 4 pixels per cell) weight of the background drawing after the block
    of ``resolution``: a smoothstep of the distance outside the square, in cells, from 0 at ``start`` to 1 at
    ``start + width`` (no kink, so no line where it starts or ends); per pixel, the larger of the two axes'. An
    axis the canvas does not widen has none of it, even where ``start`` lies inside the square."""
    per_cell = resolution // CONST_SIZE

    def ramp(n: int) -> torch.Tensor:
        pos = (torch.arange(n * per_cell, dtype=torch.float32) + 0.5) / per_cell  # pixel centres, in cells
        inner = (n - CONST_SIZE) // 2
        u = ((torch.maximum(inner - pos, pos - (n - inner)) - start) / width).clamp(0, 1)
        return u * u * (3 - 2 * u) * (n > CONST_SIZE)
    return torch.maximum(ramp(cells[0])[:, None], ramp(cells[1])[None, :])


@functools.lru_cache(maxsize=64)
def _noise_field(h: int, w: int, seed: int) -> torch.Tensor:
    """[H, W] samples of N(0, 1) from ``seed`` on the CPU (kept: every batch of a render asks again; never written).
    A plain tensor even when first asked for inside inference_mode, so that any later call can use it."""
    with torch.inference_mode(False):
        return torch.randn([h, w], generator=torch.Generator().manual_seed(seed))


def widened_noise(base: torch.Tensor, shape: tuple[int, int], seed: int) -> torch.Tensor:
    """``base`` ([R, R] or [N, 1, R, R]) at the centre of a [H, W] map whose new samples are N(0, 1) drawn
    from ``seed``: noise is white, so fresh samples beside the old ones leave no seam, and the same canvas
    always draws the same noise."""
    h, w = shape
    field = _noise_field(h, w, seed).to(base.device, base.dtype).expand(*base.shape[:-2], h, w).clone()
    top, left = (h - base.shape[-2]) // 2, (w - base.shape[-1]) // 2
    field[..., top:top + base.shape[-2], left:left + base.shape[-1]] = base
    return field


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector to unit root-mean-square (the mapping network's input normalisation)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalised learning rate: weights stored ÷ lr_multiplier, rescaled at run time."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 2 and x.shape[1] == self.in_features, (x.shape, self.in_features)
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation,
                        gain=LRELU_GAIN if self.activation in ("lrelu", "relu") else 1.0)


class MappingNetwork(nn.Module):
    """z (and an optional class label c) → w, broadcast to ``num_ws`` layers, with truncation towards w_avg."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: Optional[int], num_layers: int = 8,
                 embed_features: Optional[int] = None, layer_features: Optional[int] = None,
                 activation: str = "lrelu", lr_multiplier: float = 0.01, w_avg_beta: Optional[float] = 0.995):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                                          lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor] = None, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None, update_w_avg: bool = False) -> torch.Tensor:
        x = None
        if self.z_dim > 0:
            assert z is not None and z.ndim == 2 and z.shape[1] == self.z_dim, (None if z is None else z.shape)
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            assert c is not None and c.ndim == 2 and c.shape[1] == self.c_dim, (None if c is None else c.shape)
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_w_avg and self.w_avg_beta is not None:
            # Exponential moving average of w, as NVIDIA's training loop tracks it; truncation pulls towards it.
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            assert self.w_avg_beta is not None, "truncation needs w_avg"
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


class Conv2dLayer(nn.Module):
    """Plain convolution with equalised lr; in the generator only the resnet skip (1×1, 2× upsampling)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, resample_filter: Any = (1, 3, 3, 1),
                 conv_clamp: Optional[float] = None, **_unused: Any):
        super().__init__()
        assert up in (1, 2), "the generator only upsamples by 2"
        self.activation, self.up, self.conv_clamp = activation, up, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = LRELU_GAIN if activation in ("lrelu", "relu") else 1.0
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        if self.up == 2:
            x = conv_up2(x, w, self.resample_filter)
        else:
            x = torch.nn.functional.conv2d(x, w, padding=self.padding)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        b = self.bias.to(x.dtype) if self.bias is not None else None
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class SynthesisLayer(nn.Module):
    """Modulated 3×3 convolution (optionally 2× upsampling), noise, bias, lrelu·√2, clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu", resample_filter: Any = (1, 3, 3, 1),
                 conv_clamp: Optional[float] = None, **_unused: Any):
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.act_gain = LRELU_GAIN if activation == "lrelu" else 1.0
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.noise_index = 0  # this layer's place among the noise inputs: seeds the noise of a widened canvas
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def _weight_derived(self, name: str, compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``compute(weight)``, kept until the weight changes (``load_state_dict``, ``copy_``; not edits made
        through ``.data``); computed afresh when autograd needs the weight's gradient, and inside a graph
        torch.compile traces (which computes it with the rest)."""
        if (torch.is_grad_enabled() and self.weight.requires_grad) or compiling():
            return compute(self.weight)
        key = (self.weight.data_ptr(), self.weight._version, self.weight.device, self.weight.dtype)
        cache = self.__dict__.setdefault("_derived", {})
        if name not in cache or cache[name][0] != key:
            # A plain tensor even inside inference_mode, so that a later projection can use it under autograd.
            with torch.inference_mode(False), torch.no_grad():
                cache[name] = (key, compute(self.weight))
        return cache[name][1]

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> "SynthesisLayer":
        """``.to()``, ``.half()`` and the like drop the derived weights rather than keep stale copies alive."""
        self.__dict__.pop("_derived", None)
        return super()._apply(fn, *args, **kwargs)

    def _nhwc(self, w: torch.Tensor) -> torch.Tensor:
        """``w`` stored NHWC as the convolution reads it; for the 2× layer, the transposed convolution's
        [I, O, k, k] is, so ``.transpose(0, 1)`` of the result is channels-last contiguous."""
        if self.up == 2:
            return w.transpose(0, 1).contiguous(memory_format=torch.channels_last).transpose(0, 1)
        return w.contiguous(memory_format=torch.channels_last)

    def weight_sq(self) -> torch.Tensor:
        """Σ over the kernel window of weight², for demodulation."""
        return self._weight_derived("sq", lambda w: w.square().sum(dim=[2, 3]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", fused: Optional[bool] = None,
                gain: float = 1.0, noise_map: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``noise_map`` ([R, R] or per sample [N, 1, R, R]) replaces ``noise_const`` in noise_mode "const".
        ``x`` is consumed: inference may scale it in place (every caller's input is dead after the layer)."""
        in_res = self.resolution // self.up
        cell = max(1, in_res // CONST_SIZE)  # a widened canvas adds whole constant cells
        assert x.shape[1] == self.weight.shape[1] and x.shape[2] % cell == x.shape[3] % cell == 0, \
            (x.shape, self.weight.shape, in_res)
        out_shape = (x.shape[2] * self.up, x.shape[3] * self.up)
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, *out_shape], device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const if noise_map is None else noise_map
            if tuple(noise.shape[-2:]) != out_shape:
                noise = widened_noise(noise, out_shape, self.noise_index)
            noise = noise * self.noise_strength
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        weight = self.weight
        if is_channels_last(x):  # NHWC weights, so that neither weights nor activations are copied per call
            weight = self._weight_derived("nhwc", self._nhwc)
        return modulated_conv2d(x, weight, styles, self.bias, noise, up=self.up,
                                resample_filter=self.resample_filter, fused=fused, act=self.activation,
                                gain=self.act_gain * gain, clamp=clamp, weight_sq=self.weight_sq(),
                                consume_input=True)


class ToRGBLayer(nn.Module):
    """Modulated 1×1 convolution to image channels, without demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: Optional[float] = None, **_unused: Any):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: Optional[bool] = None) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        return modulated_conv2d(x, self.weight, styles, self.bias, demodulate=False, fused=fused,
                                clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (const | 2× upsampling conv0), conv1, and ToRGB per the architecture."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter: Any = (1, 3, 3, 1),
                 conv_clamp: Optional[float] = None, use_fp16: bool = False, **layer_kwargs: Any):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")
        self.in_channels, self.resolution, self.img_channels = in_channels, resolution, img_channels
        self.is_last, self.architecture, self.use_fp16 = is_last, architecture, use_fp16
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp,
                                    **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter)

    def noise_layers(self) -> list[SynthesisLayer]:
        """This block's convolutions that add noise, in order (conv0, conv1)."""
        return [layer for layer in (getattr(self, "conv0", None), self.conv1) if layer is not None and layer.use_noise]

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor,
                noise_mode: str = "const", fused: Optional[bool] = None, dtype: torch.dtype = torch.float32,
                noise_maps: Optional[list[torch.Tensor]] = None, const: Optional[torch.Tensor] = None):
        """``const``: the first block's input [C, rows, cols] in place of the learned constant (a wider canvas)."""
        assert ws.shape[1] == self.num_conv + self.num_torgb, (ws.shape, self.num_conv, self.num_torgb)
        w_iter = iter(ws.unbind(dim=1))
        maps = dict(zip(self.noise_layers(), noise_maps)) if noise_maps is not None else {}
        if self.in_channels == 0:
            const = self.const if const is None else const
            # NHWC activations make the convolutions and the FIR faster on CPU (oneDNN; bench/generator.py).
            x = const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = x.contiguous(memory_format=torch.channels_last)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused=fused,
                           noise_map=maps.get(self.conv1))
        elif self.architecture == "resnet":
            x = x.to(dtype)
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused=fused,
                           noise_map=maps.get(self.conv0))
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused=fused, gain=math.sqrt(0.5),
                           noise_map=maps.get(self.conv1))
            x = y + x
        else:
            x = x.to(dtype)
            # The block's input is no longer needed (the previous ToRGB has used it): conv0 may scale it in place.
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused=fused,
                           noise_map=maps.get(self.conv0))
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused=fused,
                           noise_map=maps.get(self.conv1))
        if img is not None:
            img = upsample_2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused=fused).to(torch.float32)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """W+ [N, num_ws, w_dim] → image [N, img_channels, R, R], one block per resolution 4 … R."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, **block_kwargs: Any):
        super().__init__()
        log2 = int(np.log2(img_resolution))
        if img_resolution < 4 or img_resolution != 2 ** log2:
            raise ValueError(f"img_resolution must be a power of two ≥ 4, got {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=is_last, use_fp16=res >= fp16_resolution,
                                   **block_kwargs)
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f"b{res}", block)
        for index, layer in enumerate(self.noise_layers()):
            layer.noise_index = index

    def noise_layers(self) -> list[SynthesisLayer]:
        """Every convolution that adds noise, in the order of NVIDIA's ``noise_const`` buffers."""
        return [layer for res in self.block_resolutions for layer in getattr(self, f"b{res}").noise_layers()]

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", fused_modconv: Optional[bool] = None,
                dtype: Optional[torch.dtype] = None, noise_maps: Optional[list[torch.Tensor]] = None,
                until: Optional[int] = None, canvas: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """``fused_modconv`` None picks the faster path per layer; ``dtype`` (fp16/bf16 on a GPU)
        applies to the blocks NVIDIA runs in fp16 (``num_fp16_res``), or to all blocks if that is 0.
        ``noise_maps`` (one per :meth:`noise_layers` entry, [R, R] or per sample [N, 1, R, R]) replace the
        ``noise_const`` buffers in noise_mode "const", e.g. a projection's optimised noise. ``until`` stops
        after the block of that resolution: the skip architecture's image so far (a cheap preview). ``canvas``
        (width, height) draws that many pixels, the square image at the centre and background beside it (not with
        ``until``): see :meth:`_widened`."""
        assert canvas is None or until is None, "a canvas is drawn at the full resolution"
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), (ws.shape, self.num_ws, self.w_dim)
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        assert noise_maps is None or len(noise_maps) == len(self.noise_layers()), len(noise_maps)
        ws = ws.to(torch.float32)
        any_fp16 = any(getattr(self, f"b{r}").use_fp16 for r in self.block_resolutions)
        steps = []  # (block, its ws, its noise maps, its dtype), in order
        w_idx = n_idx = 0
        for res in self.block_resolutions:
            if until is not None and res > until:
                break
            block = getattr(self, f"b{res}")
            block_dtype = torch.float32
            if dtype is not None and (block.use_fp16 or not any_fp16):
                block_dtype = dtype
            n_maps = len(block.noise_layers())
            maps = None if noise_maps is None else noise_maps[n_idx:n_idx + n_maps]
            n_idx += n_maps
            steps.append((block, ws.narrow(1, w_idx, block.num_conv + block.num_torgb), maps, block_dtype))
            w_idx += block.num_conv

        def draw(todo: list, x: Optional[torch.Tensor] = None, img: Optional[torch.Tensor] = None,
                 const: Optional[torch.Tensor] = None) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
            for block, block_ws, maps, block_dtype in todo:
                x, img = block(x, img, block_ws, noise_mode=noise_mode, fused=fused_modconv, dtype=block_dtype,
                               noise_maps=maps, const=const)
            return x, img

        cells = (CONST_SIZE, CONST_SIZE) if canvas is None else canvas_cells(canvas, self.img_resolution)
        if cells == (CONST_SIZE, CONST_SIZE):
            _, img = draw(steps)
        else:
            first = int(math.log2(min(BLEND_RESOLUTION, self.img_resolution))) - 1  # blocks 4 … BLEND_RESOLUTION
            _, img = draw(steps[first:], *self._widened(steps[:first], cells, draw))
        return img if canvas is None else crop_centre(img, canvas)

    def _widened(self, first: list, cells: tuple[int, int], draw: Callable) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """A wider canvas's activations (and skip image) after the ``first`` blocks, up to ``BLEND_RESOLUTION``: drawn
        twice, from :func:`mirrored_constant` (the square, and its edges carried on) and from
        :func:`background_constant` (background only), the background drawing taking over outside the square
        after every block by :func:`background_weight` along :data:`BLEND_RAMPS`. Drawn alone, the mirrored constant
        puts echoes of the head at the sides, and a constant whose added cells jump away from the learned ones
        draws a seam where they meet; blended at one block only, what the mirrored drawing holds next to the
        square (hair, the head's outline) reaches the finer blocks, which draw it as a shadow beside the head.
        Blended after each coarse block, the sides are background and the square's edges carry on without a line."""
        const = self.b4.const
        x = img = x_bg = img_bg = None
        face, background = mirrored_constant(const, cells), background_constant(const, cells)
        for step in first:
            x, img = draw([step], x, img, const=face)
            x_bg, img_bg = draw([step], x_bg, img_bg, const=background)
            resolution = step[0].resolution
            if resolution in BLEND_RAMPS:
                weight = background_weight(cells, resolution, *BLEND_RAMPS[resolution]).to(x.device)
                x = torch.lerp(x, x_bg, weight.to(x.dtype))
                img = None if img is None else torch.lerp(img, img_bg, weight.to(img.dtype))
        return x, img


def layer_resolution(index: int, num_ws: int) -> int:
    """Resolution of the synthesis convolution that w index ``index`` modulates (4 for b4.conv1, R for bR.conv0/1).

    A ``torgb`` index is shared with the next block's conv0 and counts as that block's; the last one
    (the top ``torgb``) belongs to the top block.
    """
    top = 2 ** ((num_ws + 2) // 2)
    return 4 if index == 0 else min(top, 2 ** ((index + 5) // 2))


def layer_groups(num_ws: int) -> dict[str, range]:
    """StyleGAN2's named style-mixing groups by resolution: coarse 4–8 px, middle 16–32 px, fine 64 px and up."""
    res = [layer_resolution(i, num_ws) for i in range(num_ws)]
    bounds = {"coarse": (4, 8), "middle": (16, 32), "fine": (64, math.inf)}
    groups = {}
    for name, (low, high) in bounds.items():
        idx = [i for i in range(num_ws) if low <= res[i] <= high]
        groups[name] = range(idx[0], idx[-1] + 1) if idx else range(0)
    return groups


class Generator(nn.Module):
    """The whole StyleGAN2 generator; ``Generator(**init_kwargs)`` takes NVIDIA's constructor kwargs.
    Implements morph's :class:`morph.core.model.Model`."""

    family = "stylegan2"

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: Optional[dict] = None, synthesis_kwargs: Optional[dict] = None, **_unused: Any):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.init_kwargs = dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                                img_channels=img_channels, mapping_kwargs=dict(mapping_kwargs or {}),
                                synthesis_kwargs=dict(synthesis_kwargs or {}))
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **(synthesis_kwargs or {}))
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **(mapping_kwargs or {}))

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None, **synthesis_kwargs: Any) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)

    def synthesize(self, ws: torch.Tensor, noise: Noise = Noise(), dtype: Optional[torch.dtype] = None,
                   fused_modconv: Optional[bool] = None, until: Optional[int] = None,
                   canvas: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """ws [N, num_ws, w_dim] → images, drawn with ``noise``; writes no buffer, so concurrent calls are safe.
        ``until`` stops after that resolution's block (the skip architecture's intermediate image); ``canvas``
        (width, height) widens the constant input to draw that frame (see :meth:`SynthesisNetwork.forward`)."""
        check_noise(self, noise)
        maps = list(noise.maps) if noise.maps is not None else None
        return self.synthesis(ws, noise_mode=noise.mode, fused_modconv=fused_modconv, dtype=dtype, noise_maps=maps,
                              until=until, canvas=canvas)

    def noise_shapes(self) -> list[tuple[int, int]]:
        """[R, R] of every noise input, in the order of NVIDIA's ``noise_const`` buffers."""
        return [(layer.resolution, layer.resolution) for layer in self.synthesis.noise_layers()]

    @property
    def w_avg(self) -> torch.Tensor:
        """The mapping's tracked mean w [w_dim] (NVIDIA's ``mapping.w_avg`` buffer)."""
        return self.mapping.w_avg

    def noise_maps(self) -> dict[str, torch.Tensor]:
        """The ``noise_const`` buffers by their layer's name under ``synthesis`` (``b4.conv1``, ``b8.conv0``, …)."""
        layers = set(self.synthesis.noise_layers())
        return {name: m.noise_const for name, m in self.synthesis.named_modules() if m in layers}

    def intermediate_resolutions(self) -> tuple[int, ...]:
        """Every block below the top one with the skip architecture (each adds its ToRGB to the image so far);
        none with ``orig`` or ``resnet``, which draw the image in the last block only."""
        if self.synthesis.b4.architecture != "skip":
            return ()
        return tuple(r for r in self.synthesis.block_resolutions if r < self.img_resolution)

    def architecture_facts(self) -> dict[str, Any]:
        """Architecture (orig | skip | resnet), channels per block resolution, clamp, fp16 blocks, mapping depth."""
        syn = self.init_kwargs["synthesis_kwargs"]
        return {"architecture": syn.get("architecture", "skip"),
                "channels": {res: getattr(self.synthesis, f"b{res}").conv1.weight.shape[0]
                             for res in self.synthesis.block_resolutions},
                "conv_clamp": syn.get("conv_clamp"), "num_fp16_res": syn.get("num_fp16_res", 0),
                "mapping_layers": self.mapping.num_layers}

    def layer_groups(self) -> dict[str, range]:
        """coarse / middle / fine w indices (see :func:`layer_groups`)."""
        return layer_groups(self.num_ws)

    def activation_size(self) -> int:
        """Elements of the top block's activation for one image (channels × R²)."""
        return getattr(self.synthesis, f"b{self.img_resolution}").conv1.weight.shape[0] * self.img_resolution ** 2
