"""Tensor operations of StyleGAN2 synthesis, in plain PyTorch with NVIDIA's exact semantics.

NVIDIA ships CUDA kernels (bias_act, upfirdn2d) with pure-PyTorch reference fallbacks; these are
reimplementations of the reference semantics, arranged for speed on CPU and GPU alike: the FIR
filter is applied as two 1-D passes (it is an outer product), and modulated convolution either
folds the styles into per-sample weights (a grouped convolution, best for small batches) or
scales the activations around one shared-weight convolution (best for large batches).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def setup_filter(taps: list[float] | tuple[float, ...] = (1, 3, 3, 1)) -> torch.Tensor:
    """The normalised 2-D FIR filter NVIDIA stores as ``resample_filter``: outer(k, k) / sum."""
    k = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(k, k)
    return f / f.sum()


def bias_act(
    x: torch.Tensor,
    b: Optional[torch.Tensor] = None,
    act: str = "linear",
    gain: float = 1.0,
    clamp: Optional[float] = None,
) -> torch.Tensor:
    """Add a per-channel bias (dim 1), apply the activation, scale by ``gain``, clamp to ±clamp."""
    if b is not None:
        x = x + b.reshape([1, -1] + [1] * (x.ndim - 2))
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    elif act == "relu":
        x = F.relu(x)
    elif act != "linear":
        raise ValueError(f"unsupported activation {act!r}")
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def fir_2d(x: torch.Tensor, f: torch.Tensor, pad: tuple[int, int, int, int], gain: float = 1.0) -> torch.Tensor:
    """Pad (x0, x1, y0, y1; negative crops) then filter every channel with the 2-D FIR ``f``.

    Equivalent to NVIDIA's ``upfirdn2d(x, f, padding=pad, gain=gain)`` with up = down = 1, done as
    one depthwise convolution (fast in channels-last layout); symmetric padding goes into the
    convolution itself so no padded copy is made.
    """
    c = x.shape[1]
    px0, px1, py0, py1 = pad
    kernel = (f.flip([0, 1]) * gain).to(x.dtype).expand(c, 1, *f.shape)
    if px0 == px1 == py0 == py1 and px0 >= 0:
        return F.conv2d(x, kernel, padding=px0, groups=c)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    return F.conv2d(x, kernel, groups=c)


def upsample_2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """2× upsampling by zero insertion and FIR filtering (NVIDIA's ``upfirdn2d.upsample2d``)."""
    n, c, h, w = x.shape
    taps = f.shape[-1]
    y = x.new_zeros(n, c, h, up, w, up)
    y[:, :, :, 0, :, 0] = x
    y = y.reshape(n, c, h * up, w * up)
    p0 = (taps + up - 1) // 2
    p1 = (taps - up) // 2
    return fir_2d(y, f, (p0, p1, p0, p1), gain=up * up)


def conv_up2(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """k×k convolution with 2× upsampling: a transposed stride-2 convolution, then the FIR.

    Matches NVIDIA's ``conv2d_resample(x, w, f, up=2, padding=k//2, flip_weight=False)``: the
    stored kernel is used as a true convolution kernel by the transposed convolution.
    """
    out_ch, in_per_group, kh, kw = w.shape
    taps = f.shape[-1]
    if kw == 1 and kh == 1:
        return upsample_2d(F.conv2d(x, w, groups=groups), f)
    if groups == 1:
        wt = w.transpose(0, 1)
    else:
        wt = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
        wt = wt.reshape(groups * in_per_group, out_ch // groups, kh, kw)
    pad = kw // 2
    px0 = pad + (taps + 1) // 2 - (kw - 1)
    px1 = pad + (taps - 2) // 2 - (kw - 2)
    py0 = pad + (taps + 1) // 2 - (kh - 1)
    py1 = pad + (taps - 2) // 2 - (kh - 2)
    pxt = max(min(-px0, -px1), 0)
    pyt = max(min(-py0, -py1), 0)
    y = F.conv_transpose2d(x, wt, stride=2, padding=[pyt, pxt], groups=groups)
    return fir_2d(y, f, (px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), gain=4)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    bias: torch.Tensor,
    noise: Optional[torch.Tensor] = None,
    up: int = 1,
    resample_filter: Optional[torch.Tensor] = None,
    demodulate: bool = True,
    fused: Optional[bool] = None,
    act: str = "linear",
    gain: float = 1.0,
    clamp: Optional[float] = None,
    weight_sq: Optional[torch.Tensor] = None,
    consume_input: bool = False,
) -> torch.Tensor:
    """A whole StyleGAN2 layer after its affine: modulated conv, noise, bias, activation, clamp.

    x [N,I,H,W], weight [O,I,k,k], styles [N,I], bias [O] → [N,O,H',W']. ``fused`` folds styles
    and demodulation into per-sample weights for one grouped convolution (NVIDIA's inference
    path); otherwise activations are scaled around one shared-weight convolution. ``None``
    picks per-sample weights at batch 1 (a plain convolution) and for 1×1 kernels (where a
    grouped convolution costs nothing extra), shared weights otherwise (bench/generator.py). Demodulation, the activation gain (> 0, so it commutes
    with lrelu), noise and bias are folded into one multiply-add over the output.
    ``weight_sq`` is Σ over the kernel window of weight² ([O, I]), cacheable by the caller;
    ``consume_input`` lets inference scale ``x`` in place.
    """
    n, in_ch, h, w_ = x.shape
    out_ch, in_ch_w, kh, kw = weight.shape
    assert in_ch == in_ch_w and styles.shape == (n, in_ch), (x.shape, weight.shape, styles.shape)
    assert act in ("linear", "lrelu"), act

    if x.dtype == torch.float16 and demodulate:
        # NVIDIA's pre-normalisation against fp16 overflow; a no-op on the result up to rounding.
        weight = weight * (1 / math.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    # Output scale per (sample, channel): demodulation (sum over I,k,k of (w·s)² = s² · Σ_kk w², one
    # small matmul instead of materialising [N,O,I,k,k]) times the activation gain.
    scale = torch.full((n, out_ch), float(gain), dtype=styles.dtype, device=styles.device)
    if demodulate:
        if weight_sq is None:
            weight_sq = weight.square().sum(dim=[2, 3])
        scale = scale * (styles.square() @ weight_sq.t() + 1e-8).rsqrt()
    shift = bias.to(x.dtype).reshape(1, -1, 1, 1)
    if noise is not None:
        shift = shift + noise.to(x.dtype)
    if gain != 1:
        shift = shift * gain

    def conv(inp: torch.Tensor, wt: torch.Tensor, groups: int) -> torch.Tensor:
        if up == 2:
            return conv_up2(inp, wt, resample_filter, groups=groups)
        return F.conv2d(inp, wt, padding=kw // 2, groups=groups)

    # In inference, update tensors in place: large new tensors cost page faults.
    inplace = not torch.is_grad_enabled()
    if fused is None:
        fused = n == 1 or kh * kw == 1
    if fused:
        wt = weight.unsqueeze(0) * (styles.reshape(n, 1, -1, 1, 1) * scale.reshape(n, -1, 1, 1, 1))
        y = conv(x.reshape(1, n * in_ch, h, w_), wt.reshape(n * out_ch, in_ch, kh, kw).to(x.dtype), groups=n)
        y = y.reshape(n, out_ch, y.shape[2], y.shape[3])
        y = y.add_(shift) if inplace else y + shift
    else:
        s_in = styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = x.mul_(s_in) if inplace and consume_input else x * s_in
        y = conv(x, weight.to(x.dtype), groups=1)
        scale = scale.to(x.dtype).reshape(n, -1, 1, 1)
        y = y.mul_(scale).add_(shift) if inplace else torch.addcmul(shift, y, scale)
    if act == "lrelu":
        y = F.leaky_relu(y, LRELU_SLOPE, inplace=inplace)
    if clamp is not None and clamp >= 0:
        y = y.clamp_(-clamp, clamp) if inplace else y.clamp(-clamp, clamp)
    return y
