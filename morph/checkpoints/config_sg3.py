"""StyleGAN3 constructor arguments (NVIDIA's flat ``Generator(z_dim, ..., mapping_kwargs, **synthesis_kwargs)``):
one canonical form and a validity check, so that a file can never build something unexpected."""

from __future__ import annotations

from morph.checkpoints.config import TOP_LEVEL, plain
from morph.core.errors import CheckpointError

MAPPING_KEYS = ("num_layers", "lr_multiplier", "w_avg_beta")
SYNTHESIS_KEYS = ("channel_base", "channel_max", "num_layers", "num_critical", "first_cutoff", "first_stopband",
                  "last_stopband_rel", "margin_size", "output_scale", "num_fp16_res")
LAYER_KEYS = ("conv_kernel", "filter_size", "lrelu_upsampling", "use_radial_filters", "conv_clamp",
              "magnitude_ema_beta")
_INTS = {"channel_base": 1, "channel_max": 1, "num_layers": 2, "num_critical": 0, "margin_size": 0,
         "num_fp16_res": 0, "conv_kernel": 1, "filter_size": 1, "lrelu_upsampling": 1}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def valid_init_kwargs(kwargs: dict, where=None) -> dict:
    """``kwargs`` as plain JSON values; CheckpointError unless they name a buildable StyleGAN3 Generator."""
    kw = plain(kwargs)
    for key in TOP_LEVEL:
        value = kw.get(key)
        minimum = 1 if key in ("w_dim", "img_resolution", "img_channels") else 0
        if not _is_int(value) or value < minimum:
            raise CheckpointError(f"invalid StyleGAN3 generator argument {key}={value!r}", where=where)
    mapping = kw.get("mapping_kwargs") or {}
    if not isinstance(mapping, dict):
        raise CheckpointError("StyleGAN3 mapping_kwargs is not a dict", where=where)
    unknown = [k for k in mapping if k not in MAPPING_KEYS]
    unknown += [k for k in kw if k not in (*TOP_LEVEL, "mapping_kwargs", *SYNTHESIS_KEYS, *LAYER_KEYS)]
    if unknown:
        raise CheckpointError(f"unknown StyleGAN3 generator argument {unknown[0]!r}", where=where,
                              hint="a modified StyleGAN3 (e.g. StyleGAN-XL) is not supported")
    for key, minimum in _INTS.items():  # synthesis integers (num_layers here is the synthesis network's)
        if key in kw and (not _is_int(kw[key]) or kw[key] < minimum):
            raise CheckpointError(f"invalid StyleGAN3 generator argument {key}={kw[key]!r}", where=where)
    if "num_layers" in mapping and (not _is_int(mapping["num_layers"]) or mapping["num_layers"] < 1):
        raise CheckpointError(f"invalid StyleGAN3 mapping num_layers={mapping['num_layers']!r}", where=where)
    if kw.get("num_critical", 2) >= kw.get("num_layers", 14):
        raise CheckpointError("StyleGAN3 num_critical must be below num_layers", where=where)
    return {**{k: kw[k] for k in TOP_LEVEL}, "mapping_kwargs": dict(mapping),
            **{k: v for k, v in kw.items() if k not in TOP_LEVEL and k != "mapping_kwargs"}}


__all__ = ["valid_init_kwargs"]
