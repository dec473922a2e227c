"""StyleGAN2 constructor arguments (NVIDIA's ``init_kwargs``): one canonical form, a validity check, and the
tensors they call for (worked out without building the network).

Files of different origin spell the same configuration differently (defaults left out or written
out, EasyDicts, tuples, numpy scalars); the canonical form lets equal configurations compare equal.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from morph.core.errors import CheckpointError
from morph.core.limits import (
    MAX_ARG_CHARS,
    MAX_CHANNEL_BASE,
    MAX_CHANNELS,
    MAX_FILTER_TAPS,
    MAX_IMAGE_CHANNELS,
    MAX_KERNEL_SIZE,
    MAX_LABELS,
    MAX_LATENT_DIM,
    MAX_MAPPING_LAYERS,
    MAX_PLAIN_DEPTH,
    MAX_PLAIN_NODES,
    MAX_RESOLUTION,
)
from morph.stylegan2.networks import ARCHITECTURES

TOP_LEVEL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
_NESTED = ("mapping_kwargs", "synthesis_kwargs")
# Keys always present after normalisation, with the official constructor defaults.
_REQUIRED = {"mapping_kwargs": {"num_layers": 8, "lr_multiplier": 0.01, "w_avg_beta": 0.995},
             "synthesis_kwargs": {"channel_base": 32768, "channel_max": 512, "num_fp16_res": 0,
                                  "conv_clamp": None, "architecture": "skip"}}
# Optional keys, dropped when they equal the official default.
_OPTIONAL = {"mapping_kwargs": {"embed_features": None, "layer_features": None, "activation": "lrelu"},
             "synthesis_kwargs": {"resample_filter": [1, 3, 3, 1], "use_noise": True, "activation": "lrelu",
                                  "fp16_channels_last": False, "kernel_size": 3, "channels_last": False}}


# Type of every known argument: "int", "number" (int or float), "bool", "str", "filter" (a short list of
# numbers); a trailing "?" also allows None. Anything else in a file is refused before it is converted.
_KINDS = {
    None: dict.fromkeys(TOP_LEVEL, "int"),
    "mapping_kwargs": {"num_layers": "int", "lr_multiplier": "number", "w_avg_beta": "number?",
                       "embed_features": "int?", "layer_features": "int?", "activation": "str"},
    "synthesis_kwargs": {"channel_base": "int", "channel_max": "int", "num_fp16_res": "int", "conv_clamp": "number?",
                         "architecture": "str", "resample_filter": "filter", "use_noise": "bool", "activation": "str",
                         "fp16_channels_last": "bool", "kernel_size": "int", "channels_last": "bool"},
}
# Inclusive bounds of the integer arguments (optional ones may also be absent or None).
_BOUNDS = {
    "z_dim": (0, MAX_LATENT_DIM), "c_dim": (0, MAX_LABELS), "w_dim": (1, MAX_LATENT_DIM),
    "img_resolution": (4, MAX_RESOLUTION), "img_channels": (1, MAX_IMAGE_CHANNELS),
    "mapping_kwargs.num_layers": (1, MAX_MAPPING_LAYERS), "mapping_kwargs.embed_features": (1, MAX_LATENT_DIM),
    "mapping_kwargs.layer_features": (1, MAX_LATENT_DIM), "synthesis_kwargs.channel_base": (1, MAX_CHANNEL_BASE),
    "synthesis_kwargs.channel_max": (1, MAX_CHANNELS), "synthesis_kwargs.num_fp16_res": (0, 32),
    "synthesis_kwargs.kernel_size": (1, MAX_KERNEL_SIZE),
}


def plain(value, _budget: Optional[list[int]] = None, _depth: int = 0):
    """Deep-convert to JSON-like Python values (dict subclasses -> dict, tuples -> lists, numpy -> Python).

    Converts at most MAX_PLAIN_NODES values, MAX_PLAIN_DEPTH deep (ValueError beyond), so shared
    references (a memo bomb) or a stride-0 numpy array can never expand into something big.
    """
    budget = [MAX_PLAIN_NODES] if _budget is None else _budget
    size = value.size if isinstance(value, np.ndarray) else 1
    budget[0] -= size
    if budget[0] < 0 or _depth > MAX_PLAIN_DEPTH:
        raise ValueError(f"value too large or too deeply nested to convert (limits: {MAX_PLAIN_NODES} values, "
                         f"{MAX_PLAIN_DEPTH} levels)")
    if isinstance(value, dict):
        return {str(k): plain(v, budget, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, budget, _depth + 1) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def normalize_init_kwargs(kwargs: dict) -> dict:
    """Return NVIDIA ``Generator`` kwargs in morph's canonical form.

    The nested dicts always hold the keys of ``_REQUIRED`` (official defaults filled in); other
    keys are kept only when they differ from the official default. Values become plain JSON types.
    """
    kw = plain(kwargs)
    out = {k: kw[k] for k in TOP_LEVEL if k in kw}
    out.update((k, v) for k, v in kw.items() if k not in TOP_LEVEL and k not in _NESTED)
    for key in _NESTED:
        given, required, optional = kw.get(key) or {}, _REQUIRED[key], _OPTIONAL[key]
        out[key] = {k: given.get(k, d) for k, d in required.items()}
        out[key].update((k, v) for k, v in given.items()
                        if k not in required and not (k in optional and v == optional[k]))
    return out


def _is_number(value, integer: bool) -> bool:
    """A Python or numpy 0-d int (or, unless ``integer``, finite float); never a bool or an array."""
    if isinstance(value, np.generic) and not isinstance(value, np.ndarray):
        value = value.item()
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (not integer and isinstance(value, float) and math.isfinite(value))


def _scalar_problem(value, kind: str) -> Optional[str]:
    """Why ``value`` is not of ``kind`` (see ``_KINDS``), judged without converting or iterating anything big."""
    if kind.endswith("?"):
        if value is None:
            return None
        kind = kind[:-1]
    if isinstance(value, np.ndarray):
        return f"a numpy array of shape {list(value.shape)}, not a single value"
    if kind in ("int", "number"):
        ok = _is_number(value, integer=kind == "int")
    elif kind == "bool":
        ok = isinstance(value, (bool, np.bool_))
    elif kind == "str":
        if isinstance(value, str) and len(value) > MAX_ARG_CHARS:
            return f"a string of {len(value)} characters (at most {MAX_ARG_CHARS})"
        ok = isinstance(value, str)
    elif isinstance(value, (list, tuple)):  # "filter"
        if not 1 <= len(value) <= MAX_FILTER_TAPS or not all(_is_number(v, integer=False) for v in value):
            return f"a list of {len(value)} items, not 1 to {MAX_FILTER_TAPS} numbers"
        ok = True
    else:
        ok = False
    wanted = {"int": "an integer", "number": "a number", "bool": "true or false", "str": "a string",
              "filter": f"a list of 1 to {MAX_FILTER_TAPS} numbers"}[kind]
    return None if ok else f"{type(value).__name__} value where {wanted} belongs"


def check_arguments(kwargs, where=None) -> None:
    """CheckpointError unless ``kwargs`` holds only known constructor arguments with single values of the right
    type (nested dicts for mapping/synthesis); nothing is converted or expanded before this passes."""
    if not isinstance(kwargs, dict):
        raise CheckpointError("generator constructor arguments are not a dict", where=where)
    for key, value in kwargs.items():
        if key in _NESTED:
            if value is not None and not isinstance(value, dict):
                raise CheckpointError(f"generator argument {key} is a {type(value).__name__}, not a dict", where=where)
            items, kinds, prefix = (value or {}).items(), _KINDS[key], f"{key}."
        else:
            items, kinds, prefix = ((key, value),), _KINDS[None], ""
        for name, item in items:
            if name not in kinds:
                raise CheckpointError(f"unknown generator argument {prefix}{str(name)[:MAX_ARG_CHARS]!r}", where=where,
                                      hint="not a StyleGAN2 generator, or one built with options morph does not know")
            problem = _scalar_problem(item, kinds[name])
            if problem:
                raise CheckpointError(f"invalid generator argument {prefix}{name}: {problem}", where=where)


def _check_bounds(kw: dict, where) -> None:
    for path, (low, high) in _BOUNDS.items():
        group, _, key = path.rpartition(".")
        value = (kw[group] if group else kw).get(key)
        if value is None and (group or key not in TOP_LEVEL):
            continue
        if value is None or not low <= value <= high:
            raise CheckpointError(f"generator argument {path}={value!r} is outside {low}..{high}", where=where,
                                  hint="morph's limits for StyleGAN2 generators (morph/core/limits.py)")


def valid_init_kwargs(kwargs: dict, where=None) -> dict:
    """Normalise ``kwargs``; raise CheckpointError unless they describe a StyleGAN2 Generator within morph's limits."""
    check_arguments(kwargs, where)
    kw = normalize_init_kwargs(kwargs)
    missing = [k for k in TOP_LEVEL if k not in kw]
    if missing:
        raise CheckpointError(f"generator argument {missing[0]} missing", where=where)
    _check_bounds(kw, where)
    res = kw["img_resolution"]
    if res & (res - 1):
        raise CheckpointError(f"image resolution {res} is not a power of two >= 4", where=where)
    m, s = kw["mapping_kwargs"], kw["synthesis_kwargs"]
    if kw["z_dim"] == 0 and kw["c_dim"] == 0:
        raise CheckpointError("the mapping network has no input (z_dim and c_dim are both 0)", where=where)
    if s["architecture"] not in ARCHITECTURES:
        raise CheckpointError(f"unknown synthesis architecture {s['architecture']!r}", where=where,
                              hint="expected 'orig', 'skip' or 'resnet'")
    if not m["lr_multiplier"] > 0:
        raise CheckpointError(f"mapping lr_multiplier {m['lr_multiplier']!r} is not positive", where=where)
    if s.get("kernel_size", 3) % 2 == 0:
        raise CheckpointError(f"synthesis kernel_size {s['kernel_size']} is not odd", where=where)
    if min(s["channel_base"] // res, s["channel_max"]) < 1:
        raise CheckpointError("channel_base/channel_max give zero channels at the output resolution", where=where)
    return kw


def block_resolutions(init_kwargs: dict) -> list[int]:
    """The synthesis blocks' resolutions, 4 up to ``img_resolution``."""
    return [2 ** i for i in range(2, int(math.log2(init_kwargs["img_resolution"])) + 1)]


def _fc(prefix: str, in_features: int, out_features: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{prefix}.weight", (out_features, in_features)), (f"{prefix}.bias", (out_features,))]


def _layer(prefix: str, in_ch: int, out_ch: int, w_dim: int, res: int, kernel: int, noise: bool):
    """A SynthesisLayer's tensors, in ``state_dict()`` order (own parameters, buffers, then ``affine``)."""
    own = [(f"{prefix}.weight", (out_ch, in_ch, kernel, kernel))]
    own += [(f"{prefix}.noise_strength", ())] if noise else []
    own += [(f"{prefix}.bias", (out_ch,))]
    own += [(f"{prefix}.noise_const", (res, res))] if noise else []
    return own + _fc(f"{prefix}.affine", w_dim, in_ch)


def stylegan2_shapes(kw: dict) -> list[tuple[str, tuple[int, ...]]]:
    """Name and shape of every tensor ``Generator(**kw)`` holds (``resample_filter`` buffers aside), worked out
    from normalised kwargs alone, in ``state_dict()`` order; tests check it against the network itself."""
    m, s = kw["mapping_kwargs"], kw["synthesis_kwargs"]
    w_dim, img_channels = kw["w_dim"], kw["img_channels"]
    kernel, noise = s.get("kernel_size", 3), s.get("use_noise", True)
    channels = {r: min(s["channel_base"] // r, s["channel_max"]) for r in block_resolutions(kw)}
    out: list[tuple[str, tuple[int, ...]]] = []
    for r, ch in channels.items():
        prefix, in_ch, is_last = f"synthesis.b{r}", channels.get(r // 2, 0), r == kw["img_resolution"]
        out += [(f"{prefix}.const", (ch, r, r))] if r == 4 else _layer(f"{prefix}.conv0", in_ch, ch, w_dim, r,
                                                                         kernel, noise)
        out += _layer(f"{prefix}.conv1", ch, ch, w_dim, r, kernel, noise)
        if is_last or s["architecture"] == "skip":
            out += [(f"{prefix}.torgb.weight", (img_channels, ch, 1, 1)), (f"{prefix}.torgb.bias", (img_channels,))]
            out += _fc(f"{prefix}.torgb.affine", w_dim, ch)
        if r > 4 and s["architecture"] == "resnet":
            out += [(f"{prefix}.skip.weight", (ch, in_ch, 1, 1))]
    embed = 0 if kw["c_dim"] == 0 else (m.get("embed_features") or w_dim)
    layer = m.get("layer_features") or w_dim
    features = [kw["z_dim"] + embed] + [layer] * (m["num_layers"] - 1) + [w_dim]
    out += [("mapping.w_avg", (w_dim,))] if m.get("w_avg_beta", 0.995) is not None else []
    out += _fc("mapping.embed", kw["c_dim"], embed) if kw["c_dim"] else []
    for i in range(m["num_layers"]):
        out += _fc(f"mapping.fc{i}", features[i], features[i + 1])
    return out
