"""Reader of the original TensorFlow StyleGAN2/ADA pickles (``(G, D, Gs)``), converted without TensorFlow.

Names, layouts and kwargs follow NVIDIA's ``legacy.py``: for each tensor the PyTorch Generator
has, the TF variable it comes from and how its layout changes.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import numpy as np
import torch

from morph.checkpoints import safe_pickle as sp
from morph.checkpoints.checkpoint import Checkpoint, build_checkpoint, expected_shapes, fmt_shape
from morph.checkpoints.config import valid_init_kwargs
from morph.checkpoints.fileio import SUPPORTED_HINT, unpickle
from morph.core.errors import CheckpointError
from morph.core.limits import MAX_MODULES


def _convert_kwargs(static_kwargs: dict, where) -> dict:
    """TF ``static_kwargs`` -> PyTorch ``Generator`` kwargs; CheckpointError on a kwarg legacy.py does not know."""
    known: set[str] = set()

    def kwarg(name, default=None, none=None):
        known.add(name)
        value = static_kwargs.get(name, default)
        return value if value is not None else none

    fmap_base = kwarg("fmap_base", 16384)
    if not isinstance(fmap_base, int) or isinstance(fmap_base, bool):
        raise CheckpointError(f"invalid TensorFlow kwarg fmap_base={fmap_base!r}", where=where)
    kwargs = {
        "z_dim": kwarg("latent_size", 512),
        "c_dim": kwarg("label_size", 0),
        "w_dim": kwarg("dlatent_size", 512),
        "img_resolution": kwarg("resolution", 1024),
        "img_channels": kwarg("num_channels", 3),
        "mapping_kwargs": {
            "num_layers": kwarg("mapping_layers", 8),
            "embed_features": kwarg("label_fmaps", None),
            "layer_features": kwarg("mapping_fmaps", None),
            "activation": kwarg("mapping_nonlinearity", "lrelu"),
            "lr_multiplier": kwarg("mapping_lrmul", 0.01),
            "w_avg_beta": kwarg("w_avg_beta", 0.995, none=1),
        },
        "synthesis_kwargs": {
            "channel_base": fmap_base * 2,
            "channel_max": kwarg("fmap_max", 512),
            "num_fp16_res": kwarg("num_fp16_res", 0),
            "conv_clamp": kwarg("conv_clamp", None),
            "architecture": kwarg("architecture", "skip"),
            "resample_filter": kwarg("resample_kernel", [1, 3, 3, 1]),
            "use_noise": kwarg("use_noise", True),
            "activation": kwarg("nonlinearity", "lrelu"),
        },
    }
    for ignored in ("truncation_psi", "truncation_cutoff", "style_mixing_prob", "structure"):
        kwarg(ignored)
    unknown = sorted(str(k) for k in static_kwargs if k not in known)
    if unknown:
        raise CheckpointError(f"unknown TensorFlow generator kwarg {unknown[0]!r}", where=where,
                              hint="this TF network was built with options the StyleGAN2 converter does not know")
    return kwargs


def _collect_vars(net: sp.TFNetworkStub, where) -> dict[str, Any]:
    """Every variable of ``net`` and its components, by TF name ("synthesis/4x4/Conv/weight")."""
    out: dict[str, Any] = {}
    seen: set[int] = set()  # each component once: a pickle reusing one under many names cannot blow up the walk

    def recurse(prefix, node, depth):
        if not isinstance(node, sp.TFNetworkStub) or depth > 8:
            raise CheckpointError("malformed TensorFlow network (component is not a Network)", where=where)
        if id(node) in seen or len(seen) >= MAX_MODULES:
            raise CheckpointError(f"TensorFlow component {prefix.rstrip('/') or 'Gs'!r} appears more than once, or "
                                  f"the network has over {MAX_MODULES} components", where=where,
                                  hint="the file is damaged or hostile; do not use it")
        seen.add(id(node))
        variables = node.state.get("variables") or []
        for item in variables.items() if isinstance(variables, dict) else variables:
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
                raise CheckpointError("malformed TensorFlow variable list", where=where)
            out[prefix + item[0]] = item[1]
        components = node.state.get("components") or {}
        if not isinstance(components, dict):
            raise CheckpointError("malformed TensorFlow component list", where=where)
        for name, comp in components.items():
            recurse(f"{prefix}{name}/", comp, depth + 1)

    recurse("", net, 0)
    return out


# TF layout -> PyTorch layout.
_TRANSFORMS = {
    "none": lambda v: v,
    "transpose": lambda v: v.T,
    "drop_batch": lambda v: v[0],
    "noise": lambda v: v[0, 0],
    "conv": lambda v: v.transpose(3, 2, 0, 1),
    "flip_conv": lambda v: v[::-1, ::-1].transpose(3, 2, 0, 1),
    "plus_one": lambda v: v + np.float32(1),
}


def _source(name: str) -> tuple[str, str]:
    """PyTorch name -> (TF variable name, key of ``_TRANSFORMS``)."""
    if name == "mapping.w_avg":
        return "dlatent_avg", "none"
    m = re.fullmatch(r"mapping\.(embed|fc(\d+))\.(weight|bias)", name)
    if m:
        scope = "LabelEmbed" if m.group(1) == "embed" else f"Dense{m.group(2)}"
        return f"mapping/{scope}/{m.group(3)}", ("transpose" if m.group(3) == "weight" else "none")
    if name == "synthesis.b4.const":
        return "synthesis/4x4/Const/const", "drop_batch"
    m = re.fullmatch(r"synthesis\.b(\d+)\.(conv0|conv1|torgb|skip)\.(.+)", name)
    if not m:
        raise KeyError(name)
    r, layer, leaf = int(m.group(1)), m.group(2), m.group(3)
    if leaf == "noise_const":
        index = 0 if r == 4 else 2 * int(math.log2(r)) - (5 if layer == "conv0" else 4)
        return f"synthesis/noise{index}", "noise"
    scope = {"conv0": "Conv0_up", "conv1": "Conv" if r == 4 else "Conv1", "torgb": "ToRGB", "skip": "Skip"}[layer]
    base = f"synthesis/{r}x{r}/{scope}"
    if leaf == "weight":
        return f"{base}/weight", ("flip_conv" if layer in ("conv0", "skip") else "conv")
    if leaf == "affine.weight":
        return f"{base}/mod_weight", "transpose"
    if leaf == "affine.bias":
        return f"{base}/mod_bias", "plus_one"
    if leaf in ("bias", "noise_strength"):
        return f"{base}/{leaf}", "none"
    raise KeyError(name)


def read_tf(path) -> Checkpoint:
    """Read ``Gs`` from a TensorFlow pickle: each PyTorch tensor taken from its TF variable, re-laid out."""
    data = unpickle(path, sp.load_tf_pickle)
    if isinstance(data, tuple) and len(data) == 3 and all(isinstance(n, sp.TFNetworkStub) for n in data):
        gs = data[2]
    elif isinstance(data, sp.TFNetworkStub):
        gs = data
    else:
        raise CheckpointError("not a TensorFlow StyleGAN2 pickle (expected a (G, D, Gs) tuple of networks)",
                              where=path, hint=SUPPORTED_HINT)
    version = gs.state.get("version")
    if not isinstance(version, int) or version < 4:
        raise CheckpointError(f"TensorFlow network pickle version {version!r} is too old (need >= 4)", where=path,
                              hint="re-save it with the StyleGAN2 TensorFlow code")
    static_kwargs = gs.state.get("static_kwargs")
    if not isinstance(static_kwargs, dict):
        raise CheckpointError("TensorFlow network has no static_kwargs", where=path)
    kwargs = valid_init_kwargs(_convert_kwargs(static_kwargs, path), path)
    tf_vars = _collect_vars(gs, path)
    state: dict[str, torch.Tensor] = {}
    for name in expected_shapes(kwargs, path):
        tf_name, how = _source(name)
        if tf_name not in tf_vars:
            hint = None
            if any("ToRGB_lod" in k for k in tf_vars):
                hint = "progressive-growing (ToRGB_lod) networks are not StyleGAN2 generators"
            raise CheckpointError(f"TensorFlow variable {tf_name!r} missing (needed for {name!r})", where=path,
                                  hint=hint)
        value = tf_vars[tf_name]
        if not isinstance(value, (np.ndarray, np.generic)) or value.dtype.kind != "f":
            raise CheckpointError(f"TensorFlow variable {tf_name!r} is not a float array", where=path)
        value = np.asarray(value, dtype=np.float32)
        try:
            converted = _TRANSFORMS[how](value)
        except (IndexError, ValueError) as e:
            raise CheckpointError(f"TensorFlow variable {tf_name!r} has unexpected shape "
                                  f"{fmt_shape(value.shape)} ({e})", where=path) from None
        state[name] = torch.from_numpy(np.array(converted, dtype=np.float32, order="C"))  # 0-d stays 0-d
    meta = {"source_format": "tf-pkl", "source_file": os.path.basename(path), "tf_network_version": str(version)}
    return build_checkpoint("tf-pkl", kwargs, state, meta, path)
