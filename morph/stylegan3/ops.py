"""Tensor operations of StyleGAN3 synthesis: low-pass filter design, modulated convolution, filtered leaky ReLU.

NVIDIA's ``filtered_lrelu`` upsamples by zero insertion, filters, applies bias/lrelu/clamp and
filters again before throwing away all but every ``down``-th sample; its CPU fallback builds the
zero-stuffed grid and filters every sample of it. :func:`filtered_lrelu` computes the same values
without the wasted work: the upsampling filter runs as a strided transposed depthwise convolution
(it never multiplies the inserted zeros), the downsampling filter as a strided depthwise
convolution (only the kept samples), separable filters as two 1-D passes, the activation gain is
folded into the upsampling filter, and large batches run a few samples at a time so the
2×-oversampled intermediate never exists for the whole batch at once. :func:`filtered_lrelu_reference` is the
straightforward composition, kept as the oracle of the tests and the baseline of ``bench/``.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

Padding = tuple[int, int, int, int]  # x0, x1, y0, y1 with respect to the upsampled grid; negative crops

# Elements of the oversampled intermediate the fused filtered lrelu materialises at once: larger
# batches run a few samples at a time (at least one), so its memory stops growing with the batch.
CHUNK_ELEMENTS = 1 << 24


# ----------------------------------------------------------------------------------------------------
# Filter design (NVIDIA's SynthesisLayer.design_lowpass_filter, numpy-only; checkpoints carry the filters,
# so this only runs when a network is built from scratch).

def _kaiser_beta(numtaps: int, width: float) -> float:
    """Kaiser window β for ``numtaps`` taps and a transition ``width`` relative to Nyquist (Kaiser's formulas)."""
    atten = 2.285 * (numtaps - 1) * math.pi * width + 7.95
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> Optional[torch.Tensor]:
    """Kaiser-windowed low-pass filter: separable 1-D taps [numtaps], or radially symmetric jinc
    [numtaps, numtaps]; ``None`` for one tap (the identity). Frequencies are in the units of ``fs``."""
    assert numtaps >= 1
    if numtaps == 1:
        return None
    nyq = fs / 2
    beta = _kaiser_beta(numtaps, width / nyq)
    window = np.kaiser(numtaps, beta)
    if not radial:  # windowed sinc, unit gain at DC (scipy.signal.firwin's design)
        m = np.arange(numtaps) - (numtaps - 1) / 2
        c = cutoff / nyq
        f = c * np.sinc(c * m) * window
        return torch.as_tensor(f / f.sum(), dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = torch.as_tensor(np.hypot(*np.meshgrid(x, x)), dtype=torch.float64)
    f = (torch.special.bessel_j1(2 * cutoff * math.pi * r) / (math.pi * r)).numpy()
    f = f * np.outer(window, window)
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


# ----------------------------------------------------------------------------------------------------
# Modulated convolution.

def modulated_conv2d(x: torch.Tensor,             # [N, I, H, W] activations
                     weight: torch.Tensor,        # [O, I, k, k] shared weight
                     styles: torch.Tensor,        # [N, I] per-sample input scales
                     demodulate: bool = True,     # normalise each output channel's weight to unit norm
                     padding: int = 0,            # zero padding on each side (SG3 uses k - 1: a full convolution)
                     input_gain: Optional[torch.Tensor] = None,  # [] or [I]: scales the input channels
                     ) -> torch.Tensor:
    """NVIDIA's StyleGAN3 modulated convolution → [N, O, H + 2p - k + 1, ...].

    The per-sample weights are never materialised for k > 1: the styles scale the activations
    around one shared convolution and the demodulation scales its output (the same sums, in
    another order); 1×1 convolutions are one batched matmul with the per-sample [O, I] weights.
    """
    n, i = x.shape[:2]
    o, wi, kh, kw = weight.shape
    assert wi == i and styles.shape == (n, i), (x.shape, weight.shape, styles.shape)
    w = weight.to(x.dtype)
    s = styles.to(x.dtype)
    if demodulate:  # pre-normalisation as in the official code (over the whole style tensor)
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
    dcoefs = None
    if demodulate:  # Σ_i,k (w s)² per sample and output channel, without building w·s
        dcoefs = (s.square() @ w.square().sum([2, 3]).t() + 1e-8).rsqrt()  # [N, O]
    if input_gain is not None:  # applied after demodulation, as NVIDIA does
        s = s * input_gain.to(x.dtype)
    if kh == kw == 1 and padding == 0:
        wn = w.reshape(1, o, i) * s.unsqueeze(1)  # [N, O, I]
        if dcoefs is not None:
            wn = wn * dcoefs.unsqueeze(2)
        if x.is_contiguous(memory_format=torch.channels_last):
            y = torch.bmm(x.permute(0, 2, 3, 1).reshape(n, -1, i), wn.transpose(1, 2))  # [N, HW, O]
            return y.reshape(n, x.shape[2], x.shape[3], o).permute(0, 3, 1, 2)
        return torch.bmm(wn, x.reshape(n, i, -1)).reshape(n, o, *x.shape[2:])
    y = F.conv2d(x * s.reshape(n, i, 1, 1), w, padding=padding)
    if dcoefs is not None:
        y = y * dcoefs.reshape(n, o, 1, 1)
    return y


# ----------------------------------------------------------------------------------------------------
# Filtered leaky ReLU.

def _filter_size(f: Optional[torch.Tensor]) -> tuple[int, int]:
    """(width, height) of a 1-D (separable) or 2-D filter; (1, 1) for None."""
    if f is None:
        return 1, 1
    assert f.ndim in (1, 2), f.shape
    return f.shape[-1], f.shape[0]


def output_size(in_size: tuple[int, int], fu: Optional[torch.Tensor], fd: Optional[torch.Tensor], up: int,
                down: int, padding: Padding) -> tuple[int, int]:
    """(height, width) of ``filtered_lrelu``'s output for an input of (height, width) ``in_size``."""
    (fuw, fuh), (fdw, fdh) = _filter_size(fu), _filter_size(fd)
    px0, px1, py0, py1 = padding
    h = (in_size[0] * up + py0 + py1 - (fuh - 1) - (fdh - 1) + down - 1) // down
    w = (in_size[1] * up + px0 + px1 - (fuw - 1) - (fdw - 1) + down - 1) // down
    return h, w


def _upfirdn_reference(x: torch.Tensor, f: Optional[torch.Tensor], up: int = 1, down: int = 1,
                       padding: Padding = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """NVIDIA's upfirdn2d as its reference does it: insert zeros, pad/crop, filter every sample, subsample."""
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    n, c, h, w = x.shape
    px0, px1, py0, py1 = padding
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0):x.shape[2] - max(-py1, 0), max(-px0, 0):x.shape[3] - max(-px1, 0)]
    f = (f * gain ** (f.ndim / 2)).to(x.dtype).flip(list(range(f.ndim)))
    f = f[None, None].repeat([c, 1] + [1] * f.ndim)
    if f.ndim == 4:
        x = F.conv2d(x, f, groups=c)
    else:
        x = F.conv2d(x, f.unsqueeze(2), groups=c)
        x = F.conv2d(x, f.unsqueeze(3), groups=c)
    return x[:, :, ::down, ::down]


def filtered_lrelu_reference(x: torch.Tensor, fu: Optional[torch.Tensor], fd: Optional[torch.Tensor],
                             b: Optional[torch.Tensor], up: int, down: int, padding: Padding,
                             gain: float = math.sqrt(2), slope: float = 0.2,
                             clamp: Optional[float] = None) -> torch.Tensor:
    """NVIDIA's reference composition, done as their CPU fallback does it:
    bias_act → upfirdn2d (up) → bias_act (lrelu, gain, clamp) → upfirdn2d (down)."""
    if b is not None:
        x = x + b.reshape(1, -1, 1, 1)
    x = _upfirdn_reference(x, fu, up=up, padding=padding, gain=up ** 2)
    x = F.leaky_relu(x, slope) if slope != 1 else x
    x = x * gain if gain != 1 else x
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return _upfirdn_reference(x, fd, down=down)


def _upsample_axis(x: torch.Tensor, f: torch.Tensor, up: int, pad: tuple[int, int], dim: int) -> torch.Tensor:
    """Zero-insert by ``up``, pad/crop by ``pad`` and convolve with the 1-D ``f`` along ``dim`` (2: H, 3: W),
    as one transposed depthwise convolution that never touches the inserted zeros."""
    c, length, k = x.shape[1], x.shape[dim], f.shape[0]
    start = k - 1 - pad[0]                  # first wanted sample of the full transposed convolution
    stop = length * up + pad[1]             # one past the last one
    full = (length - 1) * up + k
    trim = max(0, min(start, full - stop))  # cropped by the convolution itself, symmetrically
    shape = (c, 1, k, 1) if dim == 2 else (c, 1, 1, k)
    y = F.conv_transpose2d(x, f.reshape(shape[2:]).expand(shape), stride=(up, 1) if dim == 2 else (1, up),
                           padding=(trim, 0) if dim == 2 else (0, trim), groups=c)
    lo, hi = start - trim, stop - trim      # the wanted range in y's coordinates
    if lo < 0 or hi > y.shape[dim]:         # wanted samples outside the convolution's support are zeros
        pads = [0, 0, max(0, -lo), max(0, hi - y.shape[dim])] if dim == 2 else [max(0, -lo), max(0, hi - y.shape[dim])]
        y = F.pad(y, pads)
        hi, lo = hi + max(0, -lo), max(lo, 0)
    return y.narrow(dim, lo, hi - lo)


def _upsample(x: torch.Tensor, fu: Optional[torch.Tensor], up: int, padding: Padding, gain: float) -> torch.Tensor:
    """The upsampling half: zero insertion, padding and ``fu`` scaled by up² · ``gain`` (the lrelu gain folded in)."""
    px0, px1, py0, py1 = padding
    c = x.shape[1]
    if fu is None:
        y = _upfirdn_reference(x, None, up=up, padding=padding)  # zero insertion only: nothing to save
        return y * (up ** 2 * gain) if up ** 2 * gain != 1 else y
    fu = fu.to(x.dtype)
    if fu.ndim == 1:
        fu = fu * (up * math.sqrt(gain))
        return _upsample_axis(_upsample_axis(x, fu, up, (py0, py1), 2), fu, up, (px0, px1), 3)
    kh, kw = fu.shape
    # 2-D filter: a transposed convolution over both axes, then the same cropping/padding as above.
    y = F.conv_transpose2d(x, (fu * (up ** 2 * gain)).expand(c, 1, kh, kw), stride=up, groups=c)
    top, left = kh - 1 - py0, kw - 1 - px0
    bottom, right = x.shape[2] * up + py1, x.shape[3] * up + px1
    y = F.pad(y, [max(0, -left), max(0, right - y.shape[3]), max(0, -top), max(0, bottom - y.shape[2])])
    top, left = max(top, 0), max(left, 0)
    return y[:, :, top:top + (bottom - kh + 1 + py0), left:left + (right - kw + 1 + px0)]


def _downsample(x: torch.Tensor, fd: Optional[torch.Tensor], down: int) -> torch.Tensor:
    """The downsampling half: filter with ``fd`` and keep every ``down``-th sample, computing only those."""
    c = x.shape[1]
    if fd is None:
        return x[:, :, ::down, ::down] if down > 1 else x
    fd = fd.to(x.dtype).flip(list(range(fd.ndim)))  # a convolution, as NVIDIA's flip_filter=False
    if fd.ndim == 2:
        return F.conv2d(x, fd.expand(c, 1, *fd.shape), stride=down, groups=c)
    k = fd.shape[0]
    x = F.conv2d(x, fd.reshape(k, 1).expand(c, 1, k, 1), stride=(down, 1), groups=c)
    return F.conv2d(x, fd.reshape(1, k).expand(c, 1, 1, k), stride=(1, down), groups=c)


def _filtered_lrelu_chunk(x: torch.Tensor, fu: Optional[torch.Tensor], fd: Optional[torch.Tensor], up: int,
                          down: int, padding: Padding, gain: float, slope: float,
                          clamp: Optional[float]) -> torch.Tensor:
    y = _upsample(x, fu, up, padding, gain if slope != 1 else 1.0)
    owned = y.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()  # never write into the caller's x
    owned = owned and not y.requires_grad  # in place, clamp_ would overwrite what leaky_relu's backward needs
    if slope != 1:
        y, owned = (F.leaky_relu_(y, slope) if owned else F.leaky_relu(y, slope)), True
    elif gain != 1:
        y, owned = y * gain, True
    if clamp is not None:
        y = y.clamp_(-clamp, clamp) if owned else y.clamp(-clamp, clamp)
    return _downsample(y, fd, down)


def filtered_lrelu(x: torch.Tensor,                 # [N, C, H, W]
                   fu: Optional[torch.Tensor],      # upsampling filter: [K] separable, [K, K], or None (one tap)
                   fd: Optional[torch.Tensor],      # downsampling filter, likewise
                   b: Optional[torch.Tensor],       # [C] bias added before upsampling
                   up: int,                         # upsampling factor (zero insertion)
                   down: int,                       # downsampling factor (subsampling)
                   padding: Padding,                # on the upsampled grid: x0, x1, y0, y1 (negative crops)
                   gain: float = math.sqrt(2),      # scales the lrelu's output
                   slope: float = 0.2,              # negative slope; 1 makes the activation linear (ToRGB)
                   clamp: Optional[float] = None,   # clamp to ±clamp after the gain
                   ) -> torch.Tensor:
    """The values of NVIDIA's ``filtered_lrelu`` (flip_filter=False), computed without wasted samples
    → [N, C, H', W']."""
    assert x.ndim == 4 and (b is None or b.shape == (x.shape[1],)), (x.shape, None if b is None else b.shape)
    out_h, out_w = output_size(x.shape[2:], fu, fd, up, down, padding)
    if b is not None:
        x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
    n, c, h, w = x.shape
    per_sample = c * (h * up + padding[2] + padding[3]) * (w * up + padding[0] + padding[1])
    step = max(1, min(n, CHUNK_ELEMENTS // max(per_sample, 1)))  # whole samples: contiguous in any layout
    chunks = [_filtered_lrelu_chunk(x[i:i + step], fu, fd, up, down, padding, gain, slope, clamp)
              for i in range(0, n, step)]
    y = chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=0)
    assert y.shape == (n, c, out_h, out_w), (y.shape, (n, c, out_h, out_w))
    return y


__all__ = ["CHUNK_ELEMENTS", "design_lowpass_filter", "filtered_lrelu", "filtered_lrelu_reference", "modulated_conv2d",
           "output_size"]
