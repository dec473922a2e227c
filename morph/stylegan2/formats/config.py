"""Generator constructor arguments (NVIDIA's ``init_kwargs``): one canonical form, and a validity check.

Files of different origin spell the same configuration differently (defaults left out or written
out, EasyDicts, tuples, numpy scalars); the canonical form lets equal configurations compare equal.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import CheckpointError
from ..networks import ARCHITECTURES

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


def plain(value):
    """Deep-convert to JSON-like Python values (dict subclasses -> dict, tuples -> lists, numpy -> Python)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
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


def _require_int(kw: dict, key: str, where, minimum: int) -> None:
    value = kw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise CheckpointError(f"invalid generator argument {key}={value!r}", where=where)


def valid_init_kwargs(kwargs: dict, where=None) -> dict:
    """Normalise ``kwargs``; raise CheckpointError unless they describe a buildable StyleGAN2 Generator."""
    kw = normalize_init_kwargs(kwargs)
    for key in TOP_LEVEL:
        _require_int(kw, key, where, minimum=1 if key in ("w_dim", "img_resolution", "img_channels") else 0)
    unknown = [k for k in kw if k not in TOP_LEVEL and k not in _NESTED]
    if unknown:
        raise CheckpointError(f"unknown generator argument {unknown[0]!r}", where=where)
    res = kw["img_resolution"]
    if res < 4 or res & (res - 1):
        raise CheckpointError(f"image resolution {res} is not a power of two >= 4", where=where)
    m, s = kw["mapping_kwargs"], kw["synthesis_kwargs"]
    _require_int(m, "num_layers", where, minimum=1)
    _require_int(s, "channel_base", where, minimum=1)
    _require_int(s, "channel_max", where, minimum=1)
    _require_int(s, "num_fp16_res", where, minimum=0)
    if s["architecture"] not in ARCHITECTURES:
        raise CheckpointError(f"unknown synthesis architecture {s['architecture']!r}", where=where,
                              hint="expected 'orig', 'skip' or 'resnet'")
    if min(s["channel_base"] // res, s["channel_max"]) < 1:
        raise CheckpointError("channel_base/channel_max give zero channels at the output resolution", where=where)
    return kw


def block_resolutions(init_kwargs: dict) -> list[int]:
    """The synthesis blocks' resolutions, 4 up to ``img_resolution``."""
    return [2 ** i for i in range(2, int(math.log2(init_kwargs["img_resolution"])) + 1)]
