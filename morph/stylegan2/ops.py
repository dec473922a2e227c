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
# Whether torch.compile is tracing the caller (torch < 2.3 cannot say: it then traces the in-place path too).
compiling = getattr(torch.compiler, "is_compiling", lambda: False)


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


def fir_2d(x: torch.Tensor, f: torch.Tensor, pad: tuple[int, int, int, int], gain: float = 1.0,
           bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Pad (x0, x1, y0, y1; negative crops) then filter every channel with the 2-D FIR ``f``; add ``bias`` [C].

    Equivalent to NVIDIA's ``upfirdn2d(x, f, padding=pad, gain=gain)`` with up = down = 1, done as
    one depthwise convolution (fast in channels-last layout); symmetric padding goes into the
    convolution itself so no padded copy is made.
    """
    c = x.shape[1]
    px0, px1, py0, py1 = pad
    kernel = (f.flip([0, 1]) * gain).to(x.dtype).expand(c, 1, *f.shape)
    if px0 == px1 == py0 == py1 and px0 >= 0:
        return F.conv2d(x, kernel, bias, padding=px0, groups=c)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    return F.conv2d(x, kernel, bias, groups=c)


def upsample_2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """Zero insertion then FIR filtering (NVIDIA's ``upfirdn2d.upsample2d``), as one depthwise transposed
    convolution, so no zero-filled intermediate is built and filtered."""
    n, c, h, w = x.shape
    taps = f.shape[-1]
    pad = taps - 1 - (taps + up - 1) // 2  # aligns the transposed convolution's output with upfirdn2d's
    kernel = (f * (up * up)).to(x.dtype).expand(c, 1, *f.shape)
    y = F.conv_transpose2d(x, kernel, stride=up, padding=max(pad, 0), groups=c)
    if pad < 0:  # a 1-tap filter: upfirdn2d shifts the zero-inserted samples by one
        y = F.pad(y, [-pad, 0, -pad, 0])
    return y[:, :, : h * up, : w * up]  # odd filter lengths give one extra row and column


def conv_up2(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor, groups: int = 1,
             bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """k×k convolution with 2× upsampling: a transposed stride-2 convolution, then the FIR (which adds ``bias``).

    Matches NVIDIA's ``conv2d_resample(x, w, f, up=2, padding=k//2, flip_weight=False)``: the
    stored kernel is used as a true convolution kernel by the transposed convolution.
    """
    out_ch, in_per_group, kh, kw = w.shape
    taps = f.shape[-1]
    if kw == 1 and kh == 1:
        y = upsample_2d(F.conv2d(x, w, groups=groups), f)
        return y if bias is None else y.add_(bias.reshape(1, -1, 1, 1))
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
    y = F.conv_transpose2d(x, in_layout_of(wt, x), stride=2, padding=[pyt, pxt], groups=groups)
    return fir_2d(y, f, (px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), gain=4, bias=bias)


def is_channels_last(x: torch.Tensor) -> bool:
    """True for a 4-D tensor stored NHWC (and not also NCHW, as [N, C, 1, 1] tensors are)."""
    return x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def in_layout_of(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``t`` in ``x``'s memory format: oneDNN picks its output layout from the inputs, and a mixed pair
    costs a strided copy of the activations."""
    return t.contiguous(memory_format=torch.channels_last) if is_channels_last(x) else t


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

    x [N,I,H,W], weight [O,I,k,k], styles [N,I], bias [O], noise [R,R] or [N,1,R,R] → [N,O,R,R].
    ``fused`` folds styles and demodulation into per-sample weights for one grouped convolution
    (NVIDIA's inference path) and lets the convolution add the bias; otherwise activations are
    scaled around one shared-weight convolution. ``None`` picks per-sample weights at batch 1 (in
    inference only when they are smaller than the activations), shared weights otherwise; 1×1
    kernels on NHWC activations are one batched matmul with per-sample weights, which needs
    neither (bench/generator.py). The activation gain (> 0) commutes with lrelu, so it is folded
    into the scale, bias and noise. ``weight_sq`` is Σ over the kernel window of weight² ([O, I]),
    cacheable by the caller; ``consume_input`` lets inference scale ``x`` in place.
    """
    n, in_ch, h, w_ = x.shape
    out_ch, in_ch_w, kh, kw = weight.shape
    assert in_ch == in_ch_w and styles.shape == (n, in_ch), (x.shape, weight.shape, styles.shape)
    assert act in ("linear", "lrelu"), act

    if x.dtype == torch.float16 and demodulate:
        # NVIDIA's pre-normalisation against fp16 overflow; a no-op on the result up to rounding.
        w_scale = 1 / math.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True)
        weight = weight * w_scale
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
        if weight_sq is not None:  # the caller's Σ w² is of the weight before the rescaling
            weight_sq = weight_sq * w_scale.reshape(-1, 1).square()

    # Output scale per (sample, channel): demodulation (sum over I,k,k of (w·s)² = s² · Σ_kk w², one
    # small matmul instead of materialising [N,O,I,k,k]) times the activation gain.
    scale = torch.full((n, out_ch), float(gain), dtype=styles.dtype, device=styles.device)
    if demodulate:
        if weight_sq is None:
            weight_sq = weight.square().sum(dim=[2, 3])
        scale = scale * (styles.square() @ weight_sq.t() + 1e-8).rsqrt()

    bias = bias.to(x.dtype) * gain
    if noise is not None:
        noise = noise.to(x.dtype) * gain

    def conv(inp: torch.Tensor, wt: torch.Tensor, groups: int, b: Optional[torch.Tensor] = None) -> torch.Tensor:
        if up == 2:
            return conv_up2(inp, wt, resample_filter, groups=groups, bias=b)
        return F.conv2d(inp, in_layout_of(wt, inp), b, padding=kw // 2, groups=groups)

    # In inference, update tensors in place: large new tensors cost page faults. Not while torch.compile traces
    # it: the compiler plans the memory itself, and out= into a channels-last tensor breaks its graph.
    inplace = not torch.is_grad_enabled() and not compiling()
    per_sample_matmul = fused is None and kh * kw == 1 and up == 1 and is_channels_last(x)
    if fused is None:
        # At batch 1 in inference, scale whichever is smaller, the weights or the activations (under autograd,
        # always the weights: projection then follows one path whatever its batch).
        fused = (n == 1 and (not inplace or weight.numel() <= x.numel())) or kh * kw == 1
    if per_sample_matmul:
        # NHWC is [N, H·W, I] in memory: y = x @ per-sample weightsᵀ, output NHWC with no copy.
        wt = weight[:, :, 0, 0].unsqueeze(0) * (styles.unsqueeze(1) * scale.unsqueeze(2))
        y = torch.bmm(x.permute(0, 2, 3, 1).reshape(n, h * w_, in_ch), wt.transpose(1, 2).to(x.dtype))
        y = y.reshape(n, h, w_, out_ch).permute(0, 3, 1, 2)
        y = y.add_(bias.reshape(1, -1, 1, 1)) if inplace else y + bias.reshape(1, -1, 1, 1)
    elif fused:
        wt = weight.unsqueeze(0) * (styles.reshape(n, 1, -1, 1, 1) * scale.reshape(n, -1, 1, 1, 1))
        y = conv(x.reshape(1, n * in_ch, h, w_), wt.reshape(n * out_ch, in_ch, kh, kw).to(x.dtype), groups=n,
                 b=bias.repeat(n))
        y = y.reshape(n, out_ch, y.shape[2], y.shape[3])
    else:
        s_in = styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = x.mul_(s_in) if inplace and consume_input else x * s_in
        y = conv(x, weight.to(x.dtype), groups=1)
        scale = scale.to(x.dtype).reshape(n, -1, 1, 1)
        # Bias and noise as one [1|N, O, R, R] term in y's layout: one pass over y, the term shared by the batch.
        shift = bias.reshape(1, -1, 1, 1)
        if noise is not None:
            shift, noise = in_layout_of(shift + noise, y), None
        y = torch.addcmul(shift, y, scale, out=y) if inplace else torch.addcmul(shift, y, scale)
    if noise is not None:
        y = y.add_(noise) if inplace else y + noise
    if act == "lrelu":
        y = F.leaky_relu(y, LRELU_SLOPE, inplace=inplace)
    if clamp is not None and clamp >= 0:
        y = y.clamp_(-clamp, clamp) if inplace else y.clamp(-clamp, clamp)
    return y
