"""rosinality/stylegan2-pytorch ``.pt`` checkpoints (``g_ema``): the reader, via ``torch.load(weights_only=True)``,
and the writer (for the tools that read only that format: pSp, e4e, ReStyle, GANSpace, StyleCLIP), which
runs the reader's name mapping backwards.

These files carry no constructor arguments: the configuration is inferred from the tensor shapes
(channel counts solved for NVIDIA's ``channel_base``/``channel_max``), and ``w_avg`` is estimated
from the mapping network when the file has no ``latent_avg``.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Callable

import torch

from morph.checkpoints.checkpoint import (
    Checkpoint,
    as_float32,
    build_checkpoint,
    check_state,
    check_storage_use,
    expected_shapes,
    fmt_shape,
    noise_buffer_names,
)
from morph.checkpoints.config import normalize_init_kwargs, valid_init_kwargs
from morph.checkpoints.fileio import SUPPORTED_HINT, refused_global, short
from morph.core.arrays import check_zip
from morph.core.errors import CheckpointError, MorphError
from morph.stylegan2.networks import MappingNetwork

W_AVG_SAMPLES = 10_000
W_AVG_SEED = 0

_K = torch.tensor([1.0, 3.0, 3.0, 1.0])
_FIR_KERNEL = torch.outer(_K, _K) / 64 * 4  # the only blur/upsample kernel NVIDIA's layout can express


def _unbatch(t: torch.Tensor, n: int = 1) -> torch.Tensor:
    """Drop ``n`` leading size-1 dimensions (rosinality keeps batch/channel axes NVIDIA does not)."""
    if t.dim() < n or any(d != 1 for d in t.shape[:n]):
        raise ValueError
    return t[(0,) * n]


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


# rosinality leaf -> (NVIDIA leaf, layout change), for the modulated convolutions and the ToRGB layers.
_MODULATED = {"conv.weight": ("weight", _unbatch), "conv.modulation.weight": ("affine.weight", _same),
              "conv.modulation.bias": ("affine.bias", _same)}
_CONV_LEAVES = {**_MODULATED, "noise.weight": ("noise_strength", lambda t: t.reshape(())),
                "activate.bias": ("bias", _same)}
_TORGB_LEAVES = {**_MODULATED, "bias": ("bias", lambda t: t.reshape(-1))}


def _torch_load_safely(path):
    """``torch.load`` with ``weights_only`` (no code runs), its failures as CheckpointErrors."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                check_zip(z, path)  # before torch.load inflates anything
            if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
                raise CheckpointError("a zip archive that is not a torch checkpoint (no data.pkl inside)",
                                      where=path, hint=SUPPORTED_HINT)
    except MorphError as e:
        raise CheckpointError(e.message, where=path, hint=e.hint) from None
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"corrupt zip archive ({e})", where=path,
                              hint="download or copy the file again") from None
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL ([\w.]+)", str(e))
        if m and re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", m.group(1)):
            raise refused_global(m.group(1), path) from None
        raise CheckpointError(f"corrupt or unsupported torch checkpoint ({short(e)})", where=path,
                              hint="the file may be truncated; download or copy it again") from None
    except Exception as e:
        raise CheckpointError(f"cannot read torch checkpoint ({short(e)})", where=path,
                              hint="the file may be truncated; download or copy it again") from None


def _target(name: str) -> tuple[str, Callable[[torch.Tensor], torch.Tensor]]:
    """rosinality ``g_ema`` name -> (NVIDIA name, layout change); KeyError for a name NVIDIA has no match for.

    Noise buffers become ``noise<i>``: their NVIDIA names depend on the resolution, known only later.
    """
    m = re.fullmatch(r"style\.(\d+)\.(weight|bias)", name)
    if m and int(m.group(1)) >= 1:
        return f"mapping.fc{int(m.group(1)) - 1}.{m.group(2)}", _same
    if name == "input.input":
        return "synthesis.b4.const", _unbatch
    m = re.fullmatch(r"noises\.noise_(\d+)", name)
    if m:
        return f"noise{int(m.group(1))}", lambda t: _unbatch(t, 2)
    m = re.fullmatch(r"(conv1|convs\.(\d+)|to_rgb1|to_rgbs\.(\d+))\.(.+)", name)
    if not m:
        raise KeyError(name)
    if m.group(1) == "conv1":
        prefix = "synthesis.b4.conv1"
    elif m.group(1) == "to_rgb1":
        prefix = "synthesis.b4.torgb"
    elif m.group(2) is not None:
        i = int(m.group(2))
        prefix = f"synthesis.b{8 * 2 ** (i // 2)}.conv{i % 2}"
    else:
        prefix = f"synthesis.b{8 * 2 ** int(m.group(3))}.torgb"
    leaf, layout = (_TORGB_LEAVES if prefix.endswith("torgb") else _CONV_LEAVES)[m.group(4)]
    return f"{prefix}.{leaf}", layout


def _solve_channels(ch: dict[int, int], where) -> tuple[int, int]:
    """Find (channel_base, channel_max) with min(base // R, max) == ch[R] for every block."""
    cmax = max(ch.values())
    lo, hi = 1, None
    for r, c in ch.items():
        if c < cmax:  # base // r == c
            lo, hi = max(lo, c * r), (c * r + r - 1 if hi is None else min(hi, c * r + r - 1))
        else:  # base // r >= cmax
            lo = max(lo, cmax * r)
    if hi is not None and lo > hi:
        per = ", ".join(f"{r}: {c}" for r, c in sorted(ch.items()))
        raise CheckpointError(f"the channel counts per resolution ({per}) cannot be expressed as "
                              f"min(channel_base // R, channel_max)", where=where,
                              hint="this generator's layout is not supported")
    if lo <= 32768 and (hi is None or 32768 <= hi):
        return 32768, cmax  # the official default, when it fits
    return lo, cmax


def _estimate_w_avg(init_kwargs: dict, state: dict) -> torch.Tensor:
    """The mean mapping output over a fixed set of random z: what training's w_avg tracks."""
    with torch.random.fork_rng(devices=[]):  # construction draws random weights; leave the caller's RNG alone
        mapping = MappingNetwork(z_dim=init_kwargs["z_dim"], c_dim=0, w_dim=init_kwargs["w_dim"], num_ws=None,
                                 **init_kwargs["mapping_kwargs"])
    mapping.load_state_dict({k.removeprefix("mapping."): v for k, v in state.items() if k.startswith("mapping.")})
    z = torch.randn(W_AVG_SAMPLES, init_kwargs["z_dim"], generator=torch.Generator().manual_seed(W_AVG_SEED))
    with torch.no_grad():
        return mapping(z).mean(dim=0)


def _lr_multiplier(args) -> float:
    """The mapping network's learning-rate multiplier from the training arguments (``lr_mlp``), 0.01 by default."""
    lr_mul = getattr(args, "lr_mlp", None) if isinstance(args, argparse.Namespace) else None
    lr_mul = args.get("lr_mlp") if isinstance(args, dict) else lr_mul
    return float(lr_mul) if isinstance(lr_mul, (int, float)) and not isinstance(lr_mul, bool) else 0.01


def _g_ema(ckpt, path) -> dict:
    """The generator's state dict: ``ckpt["g_ema"]``, or ``ckpt`` itself when it is a bare one."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"not a rosinality checkpoint (top level is {type(ckpt).__name__})", where=path,
                              hint=SUPPORTED_HINT)
    if "g_ema" in ckpt:
        sd = ckpt["g_ema"]
    elif "input.input" in ckpt and "style.1.weight" in ckpt:
        sd = ckpt  # a bare g_ema state dict
    else:
        keys = ", ".join(repr(k) for k in list(ckpt)[:8])
        raise CheckpointError(f"no 'g_ema' generator in the torch checkpoint (keys: {keys or 'none'})", where=path,
                              hint=SUPPORTED_HINT)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError("'g_ema' is not a state dict of tensors", where=path)
    check_storage_use(sd, path)  # before any tensor is converted (copied)
    return sd


def _nvidia_tensors(g_ema: dict, path) -> tuple[dict[str, torch.Tensor], dict[int, torch.Tensor]]:
    """``g_ema`` under NVIDIA names and layouts, and its noise buffers by rosinality index."""
    state: dict[str, torch.Tensor] = {}
    for name, t in g_ema.items():
        if name.endswith(".kernel"):  # blur/upsample FIR filters, which NVIDIA's code rebuilds from the kwargs
            if t.shape != _FIR_KERNEL.shape or not torch.allclose(t.float().cpu(), _FIR_KERNEL, atol=1e-6):
                raise CheckpointError(f"non-default blur kernel {name!r}", where=path,
                                      hint="only the standard [1,3,3,1] filter is supported")
            continue
        try:
            dst, layout = _target(name)
        except KeyError:
            raise CheckpointError(f"unexpected tensor {name!r} in g_ema", where=path,
                                  hint="not a rosinality stylegan2-pytorch generator") from None
        t = as_float32(name, t, path)
        try:
            state[dst] = layout(t)
        except (ValueError, RuntimeError):
            raise CheckpointError(f"tensor {name!r} has unexpected shape {fmt_shape(t.shape)}", where=path) from None
    noises = {int(k[len("noise"):]): state.pop(k) for k in [k for k in state if k.startswith("noise")]}
    return state, noises


def _infer_init_kwargs(state: dict, args, path) -> dict:
    """NVIDIA ``Generator`` kwargs that give these tensors their shapes (``args``: the training arguments)."""
    for key in ("synthesis.b4.const", "synthesis.b4.torgb.weight", "mapping.fc0.weight"):
        if key not in state:
            raise CheckpointError(f"g_ema lacks the tensor that becomes {key!r}", where=path,
                                  hint="the file is incomplete or is not a rosinality generator")
    layers = sorted({int(k.split(".")[1][2:]) for k in state if k.startswith("mapping.fc")})
    if layers != list(range(len(layers))):
        raise CheckpointError("mapping layers style.1..N are not contiguous", where=path)
    style_dim = state["mapping.fc0.weight"].shape[1]
    ch = {4: state["synthesis.b4.const"].shape[0]}
    r = 8
    while f"synthesis.b{r}.conv0.weight" in state:
        ch[r] = state[f"synthesis.b{r}.conv0.weight"].shape[0]
        r *= 2
    channel_base, channel_max = _solve_channels(ch, path)
    return valid_init_kwargs({
        "z_dim": style_dim, "c_dim": 0, "w_dim": style_dim,
        "img_resolution": r // 2, "img_channels": state["synthesis.b4.torgb.weight"].shape[0],
        "mapping_kwargs": {"num_layers": len(layers), "lr_multiplier": _lr_multiplier(args)},
        "synthesis_kwargs": {"channel_base": channel_base, "channel_max": channel_max, "conv_clamp": None},
    }, path)


def read_rosinality(path) -> Checkpoint:
    """Read ``g_ema`` from a rosinality checkpoint, inferring the configuration and, if absent, ``w_avg``."""
    ckpt = _torch_load_safely(path)
    return g_ema_checkpoint(_g_ema(ckpt, path), ckpt.get("latent_avg"), ckpt.get("args"), path)


def g_ema_checkpoint(g_ema: dict, latent_avg, args, path, source_format: str = "rosinality") -> Checkpoint:
    """A rosinality generator's state dict (``g_ema``, or the ``decoder.*`` of a pSp / e4e checkpoint) as a
    :class:`Checkpoint`: names mapped, configuration inferred, ``w_avg`` from ``latent_avg`` ([w_dim]) or
    estimated."""
    state, noises = _nvidia_tensors(g_ema, path)
    kw = _infer_init_kwargs(state, args, path)
    noise_names = noise_buffer_names(kw)
    if sorted(noises) != list(range(len(noise_names))):
        raise CheckpointError(f"expected noise buffers noises.noise_0..{len(noise_names) - 1}, found "
                              f"{len(noises)}", where=path)
    state.update((name, noises[i]) for i, name in enumerate(noise_names))

    meta = {"source_format": source_format, "source_file": os.path.basename(path),
            "conv_clamp": "none (rosinality generators do not clamp)"}
    w_dim = kw["w_dim"]
    if isinstance(latent_avg, torch.Tensor):
        if latent_avg.numel() != w_dim:
            raise CheckpointError(f"latent_avg has shape {fmt_shape(latent_avg.shape)}, expected [{w_dim}]",
                                  where=path)
        state["mapping.w_avg"] = as_float32("latent_avg", latent_avg, path).reshape(w_dim)
        meta["w_avg"] = "latent_avg from the checkpoint"
    else:
        # Check everything but w_avg first, so that the estimate runs on a well-formed mapping network.
        check_state(kw, {**state, "mapping.w_avg": torch.zeros(w_dim)}, path)
        state["mapping.w_avg"] = _estimate_w_avg(kw, state)
        meta["w_avg"] = (f"estimated from {W_AVG_SAMPLES} samples of the mapping network "
                         f"(seed {W_AVG_SEED}); the checkpoint has no latent_avg")
    return build_checkpoint(source_format, kw, state, meta, path)


# --- writing --------------------------------------------------------------------------------------------------
# rosinality's Generator has a fixed channel table: 512 up to 32 px, then (16384 // R) · channel_multiplier.

def _rosinality_channels(resolution: int, channel_multiplier: int) -> dict[int, int]:
    return {2 ** i: 512 if 2 ** i <= 32 else (16384 >> i) * channel_multiplier
            for i in range(2, int(math.log2(resolution)) + 1)}


def rosinality_shapes(size: int, style_dim: int, n_mlp: int, channel_multiplier: int) -> dict[str, tuple[int, ...]]:
    """Name → shape of every tensor of rosinality's ``Generator(size, style_dim, n_mlp, channel_multiplier)``
    ``state_dict()``, in its order (blur/upsample kernels included)."""
    ch = _rosinality_channels(size, channel_multiplier)
    out: dict[str, tuple[int, ...]] = {}
    for i in range(1, n_mlp + 1):
        out.update({f"style.{i}.weight": (style_dim, style_dim), f"style.{i}.bias": (style_dim,)})

    def modulated(prefix: str, cin: int, cout: int, k: int, blur: bool) -> None:
        out[f"{prefix}.weight"] = (1, cout, cin, k, k)
        if blur:
            out[f"{prefix}.blur.kernel"] = tuple(_FIR_KERNEL.shape)
        out.update({f"{prefix}.modulation.weight": (cin, style_dim), f"{prefix}.modulation.bias": (cin,)})

    def styled(prefix: str, cin: int, cout: int, up: bool) -> None:
        modulated(f"{prefix}.conv", cin, cout, 3, up)
        out.update({f"{prefix}.noise.weight": (1,), f"{prefix}.activate.bias": (cout,)})

    def to_rgb(prefix: str, cin: int, up: bool) -> None:
        out[f"{prefix}.bias"] = (1, 3, 1, 1)
        if up:
            out[f"{prefix}.upsample.kernel"] = tuple(_FIR_KERNEL.shape)
        modulated(f"{prefix}.conv", cin, 3, 1, False)

    out["input.input"] = (1, ch[4], 4, 4)
    styled("conv1", ch[4], ch[4], False)
    to_rgb("to_rgb1", ch[4], False)
    resolutions = [r for r in ch if r > 4]
    for j, r in enumerate(resolutions):
        styled(f"convs.{2 * j}", ch[r // 2], ch[r], True)
        styled(f"convs.{2 * j + 1}", ch[r], ch[r], False)
    for j, r in enumerate(resolutions):
        to_rgb(f"to_rgbs.{j}", ch[r], True)
    for layer in range(2 * len(resolutions) + 1):
        res = 2 ** ((layer + 5) // 2)
        out[f"noises.noise_{layer}"] = (1, 1, res, res)
    return out


def rosinality_config(init_kwargs: dict, where) -> tuple[int, int, int, int]:
    """(size, style_dim, n_mlp, channel_multiplier) of the rosinality Generator that holds this network exactly;
    CheckpointError saying why when none does."""
    init_kwargs = normalize_init_kwargs(init_kwargs)
    syn, mapping = init_kwargs["synthesis_kwargs"], init_kwargs["mapping_kwargs"]
    res, w_dim = init_kwargs["img_resolution"], init_kwargs["w_dim"]

    def refuse(why: str) -> CheckpointError:
        return CheckpointError(f"rosinality's generator cannot hold this network: {why}", where=where,
                               hint="convert it to morph's format instead (morph convert IN OUT.safetensors)")

    if init_kwargs["c_dim"]:
        raise refuse(f"it is conditional (c_dim {init_kwargs['c_dim']}); rosinality's has no class input")
    if init_kwargs["z_dim"] != w_dim or mapping.get("layer_features") not in (None, w_dim):
        raise refuse(f"its z ({init_kwargs['z_dim']}) and mapping widths differ from w ({w_dim})")
    if init_kwargs["img_channels"] != 3:
        raise refuse(f"it draws {init_kwargs['img_channels']} channels; rosinality's draws RGB")
    if syn.get("architecture", "skip") != "skip":
        raise refuse(f"its architecture is {syn['architecture']}; rosinality's is skip")
    odd = [(k, v) for k, v in {**mapping, **syn}.items()
           if k in ("embed_features", "activation", "resample_filter", "use_noise", "kernel_size")]
    if odd:  # normalised kwargs hold these only where they differ from NVIDIA's defaults, which rosinality fixes
        raise refuse(f"its {odd[0][0]} is {odd[0][1]}; rosinality's generator has only the default")
    if res < 8:
        raise refuse(f"its resolution is {res} px; rosinality's starts at 8")
    channels = {}
    for name, shape in expected_shapes(init_kwargs, where).items():
        m = re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", name)
        if m:
            channels[int(m.group(1))] = shape[0]
    cm = channels[64] // 256 if res >= 64 and channels[64] % 256 == 0 else 2
    fixed = _rosinality_channels(res, max(cm, 1))
    wrong = [r for r in fixed if channels[r] != fixed[r]]
    if cm < 1 or wrong:
        per = ", ".join(f"{r} px: {channels[r]}" for r in wrong[:3])
        raise refuse(f"its channels ({per}) are not rosinality's fixed table (512 up to 32 px, then "
                     "16384 / R × channel_multiplier)")
    return res, w_dim, mapping["num_layers"], cm


def rosinality_state(init_kwargs: dict, state: dict[str, torch.Tensor], where) -> dict[str, torch.Tensor]:
    """``{"g_ema", "latent_avg"}`` for rosinality's ``Generator.load_state_dict``, from NVIDIA-named tensors,
    through the reader's own name mapping (:func:`_target`) read backwards."""
    init_kwargs = normalize_init_kwargs(init_kwargs)
    size, style_dim, n_mlp, cm = rosinality_config(init_kwargs, where)
    noise_names = noise_buffer_names(init_kwargs)
    # rosinality's mapping layers always train at lr_mlp 0.01 (the default its tools construct with): rescale
    # the stored weights so that stored × multiplier stays the same.
    lr_scale = init_kwargs["mapping_kwargs"].get("lr_multiplier", 0.01) / 0.01
    g_ema = {}
    for name, shape in rosinality_shapes(size, style_dim, n_mlp, cm).items():
        if name.endswith(".kernel"):
            g_ema[name] = _FIR_KERNEL.clone()
            continue
        source, _ = _target(name)
        source = noise_names[int(source[len("noise"):])] if source.startswith("noise") else source
        t = state[source].detach().to("cpu", torch.float32)
        g_ema[name] = (t * lr_scale if name.startswith("style.") else t).reshape(shape).clone()
    return {"g_ema": g_ema, "latent_avg": state["mapping.w_avg"].detach().to("cpu", torch.float32).clone()}


def write_rosinality(path, init_kwargs: dict, state: dict[str, torch.Tensor]) -> None:
    """Write a rosinality ``.pt`` checkpoint (plain tensors and dicts, ``torch.save``) atomically."""
    from morph.core.files import atomic_path

    ckpt = rosinality_state(init_kwargs, state, path)
    try:
        with atomic_path(Path(path)) as tmp:
            torch.save(ckpt, tmp)
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint ({e.strerror or e})", where=path) from None
