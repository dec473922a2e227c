"""StyleGAN3 generator (alias-free: configs -t and -r) with NVIDIA's constructor arguments and state-dict names.

Every module mirrors its namesake in NVIDIA's ``training/networks_stylegan3.py``, so
``Generator(**init_kwargs).load_state_dict(state)`` takes an official state dict as it is, the
designed low-pass filters (``up_filter`` / ``down_filter``) and the Fourier features' ``freqs`` /
``phases`` included: they are loaded, never rebuilt. Inference only (no EMA updates), fp32 or
fp64 on any device; there are no noise inputs. Nothing outside the constructor and
``load_state_dict`` writes a buffer, so one model can serve several threads at once.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from morph.core.model import Noise, crop_centre
from morph.stylegan2.networks import FullyConnectedLayer, MappingNetwork
from morph.stylegan3.ops import design_lowpass_filter, filtered_lrelu, modulated_conv2d

FAMILY = "stylegan3"
# Layer-group boundaries in cycles per image width: the bandwidth StyleGAN2's coarse (4-8 px blocks)
# and middle (16-32 px blocks) groups synthesise, so mixing a group means the same on both families.
COARSE_MAX_CUTOFF = 4.0
MIDDLE_MAX_CUTOFF = 16.0


def _user_transforms(transform: Optional[torch.Tensor], batch: int, default: torch.Tensor) -> torch.Tensor:
    """The user transform of each sample, [N, 3, 3]: ``transform`` ([3, 3] or [N, 3, 3]) or the stored buffer."""
    t = default if transform is None else torch.as_tensor(transform)
    assert t.shape in ((3, 3), (batch, 3, 3)), f"transform must be [3, 3] or [{batch}, 3, 3], got {tuple(t.shape)}"
    return t.reshape(-1, 3, 3).expand(batch, 3, 3)


class SynthesisInput(nn.Module):
    """Fourier features: ``channels`` sinusoids of random in-band frequencies, rotated and translated per
    sample by an affine of w, then by the user ``transform`` (the inverse transform of the image), mixed linearly."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, int(size)
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        freqs = torch.randn([channels, 2])  # uniform in the disc of radius `bandwidth`, as NVIDIA draws them
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4)
        with torch.no_grad():  # the identity transform at initialisation
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3, 3))  # user inverse transform w.r.t. the image
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand([channels]) - 0.5)

    def forward(self, w: torch.Tensor, transform: Optional[torch.Tensor] = None,
                extra: tuple[int, int] = (0, 0)) -> torch.Tensor:
        """w [N, w_dim] → features [N, channels, size, size]; ``transform`` overrides the buffer for this call.
        ``extra`` (rows, columns) samples the same features over a grid that many samples larger, centred
        on the square one (a wider canvas)."""
        assert w.ndim == 2 and w.shape[1] == self.w_dim, (w.shape, self.w_dim)
        n, dt, dev = w.shape[0], w.dtype, w.device
        transforms = _user_transforms(transform, n, self.transform).to(device=dev, dtype=dt)
        freqs, phases = self.freqs.to(dt).unsqueeze(0), self.phases.to(dt).unsqueeze(0)

        t = self.affine(w)  # (r_c, r_s, t_x, t_y): the learned rotation and translation
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        m_r = torch.eye(3, device=dev, dtype=dt).repeat([n, 1, 1])  # inverse rotation w.r.t. the image
        m_r[:, 0, 0], m_r[:, 0, 1], m_r[:, 1, 0], m_r[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        m_t = torch.eye(3, device=dev, dtype=dt).repeat([n, 1, 1])  # inverse translation
        m_t[:, 0, 2], m_t[:, 1, 2] = -t[:, 2], -t[:, 3]
        transforms = m_r @ m_t @ transforms  # rotate, then translate, then the user transform

        phases = phases + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]
        # Fade out frequencies the user transform pushed beyond the band (a zoom would alias otherwise).
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)

        height, width = self.size + extra[0], self.size + extra[1]
        theta = torch.eye(2, 3, device=dev, dtype=dt)  # sample spacing 1 / sampling_rate, centred on the image
        theta[0, 0], theta[1, 1] = 0.5 * width / self.sampling_rate, 0.5 * height / self.sampling_rate
        grids = nn.functional.affine_grid(theta.unsqueeze(0), [1, 1, height, width], align_corners=False)
        x = (grids.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # [N, H, W, C]
        x = torch.sin((x + phases.unsqueeze(1).unsqueeze(2)) * (np.pi * 2))
        x = x * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight.to(dt) / np.sqrt(self.channels)).t()
        x = x.permute(0, 3, 1, 2)  # [N, C, H, W], stored channels-last
        assert x.shape == (n, self.channels, height, width), x.shape
        return x


class SynthesisLayer(nn.Module):
    """Modulated convolution (input gain 1/√magnitude_ema), then the filtered leaky ReLU that resamples
    from the input to the output sampling rate; the last one is ToRGB (1×1, no demodulation, linear)."""

    def __init__(self, w_dim: int, is_torgb: bool, is_critically_sampled: bool, use_fp16: bool,
                 in_channels: int, out_channels: int,
                 in_size: int, out_size: int,                     # square feature maps, margins included
                 in_sampling_rate: float, out_sampling_rate: float,
                 in_cutoff: float, out_cutoff: float,             # f_c, cycles per image width
                 in_half_width: float, out_half_width: float,     # f_h, transition band half-widths
                 conv_kernel: int = 3,            # 1 for the -r config; ToRGB is always 1×1
                 filter_size: int = 6,            # filter taps per sample of the lower rate
                 lrelu_upsampling: int = 2,       # the lrelu runs at this multiple of the higher rate
                 use_radial_filters: bool = False,  # radial jinc downsampling filter (-r), not when critically sampled
                 conv_clamp: Optional[float] = 256,  # clamp the output to ±conv_clamp; None: no clamping
                 magnitude_ema_beta: float = 0.999):  # training only; kept for the constructor's signature
        super().__init__()
        self.w_dim, self.is_torgb, self.is_critically_sampled = w_dim, is_torgb, is_critically_sampled
        self.use_fp16 = bool(use_fp16)  # NVIDIA's CUDA-only choice; morph computes in the caller's dtype
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_size, self.out_size = int(in_size), int(out_size)
        self.in_sampling_rate, self.out_sampling_rate = in_sampling_rate, out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff, self.out_cutoff = in_cutoff, out_cutoff
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp, self.magnitude_ema_beta = conv_clamp, magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        self.up_factor = int(np.rint(self.tmp_sampling_rate / in_sampling_rate))
        assert in_sampling_rate * self.up_factor == self.tmp_sampling_rate
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.register_buffer("up_filter", design_lowpass_filter(
            self.up_taps, in_cutoff, in_half_width * 2, self.tmp_sampling_rate))
        self.down_factor = int(np.rint(self.tmp_sampling_rate / out_sampling_rate))
        assert out_sampling_rate * self.down_factor == self.tmp_sampling_rate
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer("down_filter", design_lowpass_filter(
            self.down_taps, out_cutoff, out_half_width * 2, self.tmp_sampling_rate, radial=self.down_radial))

        # Padding on the upsampled grid so that the output has out_size samples, centred as NVIDIA's
        # symmetric interpretation of sample locations puts them (their appendix C.3).
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total += self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        self.padding = (pad_lo, pad_total - pad_lo, pad_lo, pad_total - pad_lo)
        self.gain, self.slope = (1.0, 1.0) if is_torgb else (math.sqrt(2), 0.2)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x [N, in_channels, in_size, in_size], w [N, w_dim] → [N, out_channels, out_size, out_size]. A wider
        input (a canvas: more samples at the input rate) gives an output wider by as much of the image."""
        extra = [(side - self.in_size) * self.out_sampling_rate / self.in_sampling_rate for side in x.shape[2:]]
        assert x.shape[1] == self.in_channels and all(e >= 0 and e == int(e) for e in extra), \
            (x.shape, self.in_channels, self.in_size)
        out_shape = tuple(self.out_size + int(e) for e in extra)
        assert w.shape == (x.shape[0], self.w_dim), (w.shape, self.w_dim)
        styles = self.affine(w.to(x.dtype))
        if self.is_torgb:
            styles = styles * (1 / np.sqrt(self.in_channels * self.conv_kernel ** 2))
        x = modulated_conv2d(x, self.weight, styles, demodulate=not self.is_torgb, padding=self.conv_kernel - 1,
                             input_gain=self.magnitude_ema.to(x.dtype).rsqrt())
        x = filtered_lrelu(x, self.up_filter, self.down_filter, self.bias.to(x.dtype), self.up_factor,
                           self.down_factor, self.padding, gain=self.gain, slope=self.slope, clamp=self.conv_clamp)
        assert x.shape[1:] == (self.out_channels, *out_shape), x.shape
        return x


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] → images: Fourier input, ``num_layers`` layers whose cutoffs grow geometrically
    to the output's Nyquist rate (the last ``num_critical`` critically sampled), ToRGB, ``output_scale``."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int,
                 channel_base: int = 32768,       # channels ≈ channel_base / 2 / cutoff ...
                 channel_max: int = 512,          # ... at most channel_max
                 num_layers: int = 14,            # excluding the Fourier input and ToRGB
                 num_critical: int = 2,           # critically sampled layers at the end
                 first_cutoff: float = 2,         # f_c of the first layer, cycles per image width
                 first_stopband: float = 2 ** 2.1,  # f_t of the first layer
                 last_stopband_rel: float = 2 ** 0.3,  # f_t of the last layer, relative to its cutoff
                 margin_size: int = 10,           # samples outside the image on each side
                 output_scale: float = 0.25,      # the image is scaled by this at the end
                 num_fp16_res: int = 4,           # NVIDIA's CUDA fp16 choice (recorded, not used)
                 **layer_kwargs: Any):            # SynthesisLayer hyperparameters (conv_kernel, ...)
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_ws = num_layers + 2
        self.num_layers, self.num_critical = num_layers, num_critical
        self.margin_size, self.output_scale, self.num_fp16_res = margin_size, output_scale, num_fp16_res

        last_cutoff = img_resolution / 2
        last_stopband = last_cutoff * last_stopband_rel
        exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
        cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
        stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
        sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
        half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
        sizes = sampling_rates + margin_size * 2
        sizes[-2:] = img_resolution
        channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
        channels[-1] = img_channels
        self.cutoffs = [float(c) for c in cutoffs]  # per layer: what layer_groups() is decided by

        self.input = SynthesisInput(w_dim, int(channels[0]), int(sizes[0]), sampling_rates[0], cutoffs[0])
        self.layer_names: list[str] = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim=w_dim, is_torgb=idx == num_layers, is_critically_sampled=idx >= num_layers - num_critical,
                use_fp16=sampling_rates[idx] * 2 ** num_fp16_res > img_resolution,
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=int(sizes[prev]), out_size=int(sizes[idx]),
                in_sampling_rate=int(sampling_rates[prev]), out_sampling_rate=int(sampling_rates[idx]),
                in_cutoff=cutoffs[prev], out_cutoff=cutoffs[idx],
                in_half_width=half_widths[prev], out_half_width=half_widths[idx], **layer_kwargs)
            name = f"L{idx}_{layer.out_size}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", force_fp32: bool = True,
                update_emas: bool = False, transform: Optional[torch.Tensor] = None,
                canvas: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """NVIDIA's call: ws [N, num_ws, w_dim] → [N, img_channels, R, R] float32 (float64 for float64 ws).

        ``noise_mode`` and ``force_fp32`` are accepted and ignored (no noise; the dtype follows ws);
        ``transform`` ([3, 3] or [N, 3, 3]) replaces ``input.transform`` for this call only. ``canvas``
        (width, height) draws that many pixels: see :meth:`canvas_extra`.
        """
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), (ws.shape, self.num_ws, self.w_dim)
        if update_emas:
            raise NotImplementedError("morph's StyleGAN3 is inference-only (no EMA updates)")
        dtype = torch.float64 if ws.dtype == torch.float64 else torch.float32
        ws = ws.to(dtype).unbind(dim=1)
        x = self.input(ws[0], transform, (0, 0) if canvas is None else self.canvas_extra(canvas))
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w)
        if self.output_scale != 1:
            x = x * self.output_scale
        if canvas is not None:
            return crop_centre(x, canvas).contiguous()
        assert x.shape[1:] == (self.img_channels, self.img_resolution, self.img_resolution), x.shape
        return x.contiguous()

    def canvas_extra(self, canvas: tuple[int, int]) -> tuple[int, int]:
        """Extra Fourier-input samples (rows, columns) that draw ``canvas`` (width, height) pixels. Every layer
        then holds the same stretch of the image more (its padding is unchanged), so the output grows by as
        much; an even number keeps the square image's pixels exactly where the square render puts them."""
        rate, res = self.input.sampling_rate, self.img_resolution
        return tuple(2 * max(0, math.ceil((side - res) * rate / (2 * res))) for side in canvas[::-1])


class Generator(nn.Module):
    """StyleGAN3 ``G``: mapping (z, c) → ws, synthesis ws → images; implements :class:`morph.core.model.Model`."""

    family = FAMILY

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: Optional[dict] = None,  # num_layers (2), lr_multiplier (0.01), w_avg_beta (0.998)
                 **synthesis_kwargs: Any):               # SynthesisNetwork and SynthesisLayer arguments
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        self.init_kwargs = dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                                img_channels=img_channels, mapping_kwargs=mapping_kwargs, **synthesis_kwargs)
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws,
                                      num_layers=mapping_kwargs.get("num_layers", 2),
                                      lr_multiplier=mapping_kwargs.get("lr_multiplier", 0.01),
                                      w_avg_beta=mapping_kwargs.get("w_avg_beta", 0.998))

    @property
    def config(self) -> str:
        """NVIDIA's name for the configuration: ``stylegan3-r`` (1×1 convolutions, radial filters) or ``-t``."""
        layer = getattr(self.synthesis, self.synthesis.layer_names[0])
        return "stylegan3-r" if layer.conv_kernel == 1 and layer.down_radial else "stylegan3-t"

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor], truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False,
                **synthesis_kwargs: Any) -> torch.Tensor:
        """NVIDIA's ``G(z, c)``: mapping then synthesis."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)

    def synthesize(self, ws: torch.Tensor, noise: Noise = Noise(), dtype: Optional[torch.dtype] = None,
                   transform: Optional[torch.Tensor] = None, camera: Optional[torch.Tensor] = None,
                   canvas: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """ws [N, num_ws, w_dim] → images [N, C, R, R]; every noise mode draws the same image (there is no noise).

        ``transform``: the inverse image transform ([3, 3], or per sample [N, 3, 3]) for this call;
        ``camera``: per-sample poses [N, 3] instead (see :func:`camera_transforms`); neither keeps the
        model's own. ``dtype``: float32 (default) or float64; the result is float32 unless float64 was
        asked for. ``canvas`` (width, height): the Fourier input sampled over a wider grid draws that
        frame, the square at its centre.
        """
        if noise.maps:
            raise ValueError("StyleGAN3 has no noise inputs; noise maps cannot be given")
        if dtype not in (None, torch.float32, torch.float64):
            raise ValueError(f"StyleGAN3 synthesis runs in float32 or float64, not {dtype}")
        if camera is not None:
            if transform is not None:
                raise ValueError("give transform or camera, not both")
            transform = camera_transforms(camera)
        return self.synthesis(ws.to(dtype or torch.float32), transform=transform, canvas=canvas)

    def activation_size(self) -> int:
        """Elements of the largest activation one image passes through: a layer's input or output (the
        oversampled grid of its filtered lrelu exists for a few samples at a time, not the batch)."""
        return max(max(layer.in_channels * layer.in_size ** 2, layer.out_channels * layer.out_size ** 2)
                   for layer in (getattr(self.synthesis, name) for name in self.synthesis.layer_names))

    def noise_shapes(self) -> list[tuple[int, int]]:
        """No noise inputs: StyleGAN3 is deterministic given ws."""
        return []

    @property
    def w_avg(self) -> torch.Tensor:
        """The mapping's tracked mean w [w_dim] (NVIDIA's ``mapping.w_avg`` buffer)."""
        return self.mapping.w_avg

    def noise_maps(self) -> dict[str, torch.Tensor]:
        """None: StyleGAN3 has no noise inputs."""
        return {}

    def intermediate_resolutions(self) -> tuple[int, ...]:
        """None: one ToRGB at the end, and the last layers all run at the output's size."""
        return ()

    def architecture_facts(self) -> dict[str, Any]:
        """NVIDIA's config (t or r), the layers (name: index_size_channels), clamp, mapping depth."""
        return {"config": self.config, "layers": list(self.synthesis.layer_names),
                "conv_clamp": self.init_kwargs.get("conv_clamp", 256), "mapping_layers": self.mapping.num_layers}

    def layer_groups(self) -> dict[str, range]:
        """w indices of the style-mixing groups, chosen by each layer's cutoff frequency (cycles per image width).

        ws[0] drives the Fourier input, ws[i] layer L{i-1}. StyleGAN2's groups are fixed blocks
        (coarse 4-8 px, middle 16-32 px, fine the rest), i.e. content up to 4 and up to 16 cycles
        per image; SG3's layers have no block resolution but a cutoff that grows geometrically
        from 2 to R/2, so a layer is coarse while its output cutoff is ≤ 4, middle while ≤ 16, fine
        above. Channel counts follow the cutoffs (channel_base / 2 / f_c), so the grouping also
        follows the channel schedule; the sampling rate was rejected as a criterion because it
        jumps in octaves and stays at the output rate for the last several layers.
        """
        cutoffs = [self.synthesis.cutoffs[0]] + self.synthesis.cutoffs  # ws[0]: the input's bandwidth
        eps = 1e-6
        coarse_end = sum(1 for f in cutoffs if f <= COARSE_MAX_CUTOFF + eps)
        middle_end = sum(1 for f in cutoffs if f <= MIDDLE_MAX_CUTOFF + eps)
        return {"coarse": range(0, coarse_end), "middle": range(coarse_end, middle_end),
                "fine": range(middle_end, self.num_ws)}


def camera_transforms(poses: torch.Tensor) -> torch.Tensor:
    """Camera poses [N, 3] (translate x, y in image widths, rotate in degrees) → the [N, 3, 3] float64 user
    transforms that move the image as gen_images.py's ``--translate x,y --rotate deg`` do: the inverse of its
    ``make_transform``, [[c, s, x], [-s, c, y], [0, 0, 1]], written in closed form ([Rᵀ | −Rᵀt])."""
    poses = torch.as_tensor(poses, dtype=torch.float64)
    assert poses.ndim == 2 and poses.shape[1] == 3, f"poses must be [N, 3], got {tuple(poses.shape)}"
    x, y, a = poses[:, 0], poses[:, 1], torch.deg2rad(poses[:, 2])
    s, c = torch.sin(a), torch.cos(a)
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    return torch.stack([torch.stack([c, -s, -(c * x - s * y)], 1),
                        torch.stack([s, c, -(s * x + c * y)], 1),
                        torch.stack([zero, zero, one], 1)], 1)


def camera_transform(translate_xy: tuple[float, float], rotate_degrees: float) -> torch.Tensor:
    """The [3, 3] float64 user transform of one camera pose (see :func:`camera_transforms`)."""
    return camera_transforms(torch.tensor([[*translate_xy, rotate_degrees]]))[0]


__all__ = ["FAMILY", "Generator", "SynthesisInput", "SynthesisLayer", "SynthesisNetwork", "camera_transform",
           "camera_transforms"]
