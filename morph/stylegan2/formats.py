"""StyleGAN2 checkpoint formats: detect, read safely, convert to NVIDIA names, write morph's own.

Every reader returns a :class:`Checkpoint`: the constructor arguments of NVIDIA's
``stylegan2-ada-pytorch`` ``Generator`` and a state dict under that ``Generator``'s
``state_dict()`` names (float32 CPU tensors; the constant ``resample_filter`` buffers are left
out, they are rebuilt from the arguments). Supported inputs, recognised by content:

* ``nvidia-pkl``: NVIDIA's PyTorch network pickles (``G_ema``), read without running the
  embedded source code or any other code from the file;
* ``tf-pkl``: the original TensorFlow StyleGAN2/ADA pickles (``(G, D, Gs)``), converted with
  the rules of NVIDIA's ``legacy.py``; no TensorFlow needed;
* ``rosinality``: ``.pt`` files of rosinality/stylegan2-pytorch (``g_ema``), via
  ``torch.load(weights_only=True)``;
* ``morph``: morph's native safetensors file (:func:`write_native`).

Any problem raises :class:`~morph.errors.CheckpointError` (one line: file, what, how to fix).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import re
import secrets
import zipfile
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from ..errors import CheckpointError
from . import safe_pickle as sp

FORMATS = ("nvidia-pkl", "tf-pkl", "rosinality", "morph")

NATIVE_FORMAT = "morph.stylegan2"
NATIVE_VERSION = "1"
_NATIVE_RESERVED = ("format", "version", "init_kwargs")

ROSINALITY_W_AVG_SAMPLES = 10_000
ROSINALITY_W_AVG_SEED = 0

_SUPPORTED_HINT = ("expected an NVIDIA stylegan2-ada-pytorch network pickle, a TensorFlow StyleGAN2 "
                   "pickle, a rosinality .pt checkpoint or a morph .safetensors file")


@dataclass
class Checkpoint:
    """A generator read from a file, in NVIDIA ``stylegan2-ada-pytorch`` terms."""

    format: str                      # "nvidia-pkl" | "tf-pkl" | "rosinality" | "morph"
    init_kwargs: dict                # Generator(**init_kwargs), normalised (see normalize_init_kwargs)
    state: dict[str, torch.Tensor]   # state_dict names -> float32 CPU tensors, no resample_filter
    metadata: dict = field(default_factory=dict)  # str -> str, informative only


# ============================================================================================
# Constructor arguments.

# Keys always present after normalisation, with the official constructor defaults.
_MAPPING_REQUIRED = {"num_layers": 8, "lr_multiplier": 0.01, "w_avg_beta": 0.995}
_SYNTHESIS_REQUIRED = {"channel_base": 32768, "channel_max": 512, "num_fp16_res": 0,
                       "conv_clamp": None, "architecture": "skip"}
# Optional keys that are dropped when they equal the official default (so that equivalent
# configurations compare equal whatever wrote them).
_MAPPING_OPTIONAL = {"embed_features": None, "layer_features": None, "activation": "lrelu"}
_SYNTHESIS_OPTIONAL = {"resample_filter": [1, 3, 3, 1], "use_noise": True, "activation": "lrelu",
                       "fp16_channels_last": False, "kernel_size": 3, "channels_last": False}
_TOP_LEVEL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
_ARCHITECTURES = ("orig", "skip", "resnet")


def _plain(value):
    """Deep-convert to JSON-like Python values (dict subclasses -> dict, tuples -> lists, numpy -> Python)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def normalize_init_kwargs(kwargs: dict) -> dict:
    """Return NVIDIA ``Generator`` kwargs in morph's canonical form.

    ``mapping_kwargs`` always holds num_layers / lr_multiplier / w_avg_beta and
    ``synthesis_kwargs`` always holds channel_base / channel_max / num_fp16_res / conv_clamp /
    architecture (official defaults filled in); other optional keys are kept only when they
    differ from the official default. Values become plain JSON types.
    """
    kw = _plain(kwargs)
    out = {k: kw[k] for k in _TOP_LEVEL if k in kw}
    for k, v in kw.items():
        if k not in _TOP_LEVEL and k not in ("mapping_kwargs", "synthesis_kwargs"):
            out[k] = v
    for key, required, optional in (("mapping_kwargs", _MAPPING_REQUIRED, _MAPPING_OPTIONAL),
                                    ("synthesis_kwargs", _SYNTHESIS_REQUIRED, _SYNTHESIS_OPTIONAL)):
        given = kw.get(key) or {}
        sub = {k: given.get(k, d) for k, d in required.items()}
        for k, v in given.items():
            if k in required:
                continue
            if k in optional and v == optional[k]:
                continue
            sub[k] = v
        out[key] = sub
    return out


def _require_int(kw: dict, key: str, where, minimum: int = 0) -> int:
    value = kw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise CheckpointError(f"invalid generator argument {key}={value!r}", where=where)
    return value


def check_init_kwargs(kwargs: dict, where=None) -> None:
    """Raise CheckpointError unless ``kwargs`` (normalised) describe a buildable StyleGAN2 Generator."""
    for key in _TOP_LEVEL:
        _require_int(kwargs, key, where, minimum=1 if key in ("w_dim", "img_resolution", "img_channels") else 0)
    unknown = [k for k in kwargs if k not in _TOP_LEVEL and k not in ("mapping_kwargs", "synthesis_kwargs")]
    if unknown:
        raise CheckpointError(f"unknown generator argument {unknown[0]!r}", where=where)
    res = kwargs["img_resolution"]
    if res < 4 or res & (res - 1):
        raise CheckpointError(f"image resolution {res} is not a power of two >= 4", where=where)
    m, s = kwargs["mapping_kwargs"], kwargs["synthesis_kwargs"]
    _require_int(m, "num_layers", where, minimum=1)
    _require_int(s, "channel_base", where, minimum=1)
    _require_int(s, "channel_max", where, minimum=1)
    _require_int(s, "num_fp16_res", where)
    if s["architecture"] not in _ARCHITECTURES:
        raise CheckpointError(f"unknown synthesis architecture {s['architecture']!r}", where=where,
                              hint="expected 'orig', 'skip' or 'resnet'")
    if min(s["channel_base"] // res, s["channel_max"]) < 1:
        raise CheckpointError("channel_base/channel_max give zero channels at the output resolution", where=where)


def block_resolutions(init_kwargs: dict) -> list[int]:
    return [2 ** i for i in range(2, int(math.log2(init_kwargs["img_resolution"])) + 1)]


def channels_per_resolution(init_kwargs: dict) -> dict[int, int]:
    s = init_kwargs["synthesis_kwargs"]
    return {r: min(s["channel_base"] // r, s["channel_max"]) for r in block_resolutions(init_kwargs)}


def noise_buffer_names(init_kwargs: dict) -> list[str]:
    """The ``noise_const`` buffers in NVIDIA order: b4.conv1, b8.conv0, b8.conv1, ..."""
    if not init_kwargs["synthesis_kwargs"].get("use_noise", True):
        return []
    names = []
    for r in block_resolutions(init_kwargs):
        if r > 4:
            names.append(f"synthesis.b{r}.conv0.noise_const")
        names.append(f"synthesis.b{r}.conv1.noise_const")
    return names


def expected_shapes(init_kwargs: dict) -> dict[str, tuple[int, ...]]:
    """Every parameter/buffer name (except resample_filter) of the official Generator, with shapes.

    Order follows NVIDIA's ``state_dict()``: synthesis first, then mapping.
    """
    kw = init_kwargs
    z_dim, c_dim, w_dim, img_ch = kw["z_dim"], kw["c_dim"], kw["w_dim"], kw["img_channels"]
    m, s = kw["mapping_kwargs"], kw["synthesis_kwargs"]
    arch = s["architecture"]
    k = s.get("kernel_size", 3)
    use_noise = s.get("use_noise", True)
    ch = channels_per_resolution(kw)
    shapes: dict[str, tuple[int, ...]] = {}

    def layer(prefix, cin, cout, res, kernel):
        shapes[f"{prefix}.weight"] = (cout, cin, kernel, kernel)
        if use_noise:
            shapes[f"{prefix}.noise_strength"] = ()
        shapes[f"{prefix}.bias"] = (cout,)
        if use_noise:
            shapes[f"{prefix}.noise_const"] = (res, res)
        shapes[f"{prefix}.affine.weight"] = (cin, w_dim)
        shapes[f"{prefix}.affine.bias"] = (cin,)

    resolutions = block_resolutions(kw)
    for r in resolutions:
        b = f"synthesis.b{r}"
        cin = ch[r // 2] if r > 4 else 0
        cout = ch[r]
        if r == 4:
            shapes[f"{b}.const"] = (cout, 4, 4)
        else:
            layer(f"{b}.conv0", cin, cout, r, k)
        layer(f"{b}.conv1", cout, cout, r, k)
        if arch == "skip" or r == resolutions[-1]:
            shapes[f"{b}.torgb.weight"] = (img_ch, cout, 1, 1)
            shapes[f"{b}.torgb.bias"] = (img_ch,)
            shapes[f"{b}.torgb.affine.weight"] = (cout, w_dim)
            shapes[f"{b}.torgb.affine.bias"] = (cout,)
        if arch == "resnet" and r > 4:
            shapes[f"{b}.skip.weight"] = (cout, cin, 1, 1)

    if m.get("w_avg_beta", 0.995) is not None:
        shapes["mapping.w_avg"] = (w_dim,)
    embed = m.get("embed_features")
    embed = w_dim if embed is None else embed
    embed = 0 if c_dim == 0 else embed
    hidden = m.get("layer_features")
    hidden = w_dim if hidden is None else hidden
    num_layers = m["num_layers"]
    features = [z_dim + embed] + [hidden] * (num_layers - 1) + [w_dim]
    if c_dim > 0:
        shapes["mapping.embed.weight"] = (embed, c_dim)
        shapes["mapping.embed.bias"] = (embed,)
    for i in range(num_layers):
        shapes[f"mapping.fc{i}.weight"] = (features[i + 1], features[i])
        shapes[f"mapping.fc{i}.bias"] = (features[i + 1],)
    return shapes


def _is_resample_filter(name: str) -> bool:
    return name == "resample_filter" or name.endswith(".resample_filter")


def _as_float32(name: str, t: torch.Tensor, where) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise CheckpointError(f"{name!r} is not a tensor", where=where)
    if not t.is_floating_point():
        raise CheckpointError(f"tensor {name!r} has non-float dtype {t.dtype}", where=where)
    return t.detach().to(device="cpu", dtype=torch.float32).contiguous()


def _fmt_shape(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def _finish(fmt: str, init_kwargs: dict, state: dict, metadata: dict, where) -> Checkpoint:
    """Normalise, validate names/shapes against the kwargs, order like NVIDIA's state_dict()."""
    kw = normalize_init_kwargs(init_kwargs)
    check_init_kwargs(kw, where)
    expected = expected_shapes(kw)
    state = {k: v for k, v in state.items() if not _is_resample_filter(k)}
    missing = [k for k in expected if k not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"missing tensor {missing[0]!r}{more}", where=where,
                              hint="the file is incomplete or is not a StyleGAN2 generator")
    extra = [k for k in state if k not in expected]
    if extra:
        raise CheckpointError(f"unexpected tensor {extra[0]!r} for a StyleGAN2 generator with these settings",
                              where=where, hint="the file holds a different network architecture")
    out = {}
    for name, shape in expected.items():
        t = _as_float32(name, state[name], where)
        if tuple(t.shape) != shape:
            raise CheckpointError(f"tensor {name!r} has shape {_fmt_shape(t.shape)}, expected {_fmt_shape(shape)}",
                                  where=where)
        out[name] = t
    meta = {str(k): (v if isinstance(v, str) else json.dumps(_plain(v))) for k, v in (metadata or {}).items()}
    return Checkpoint(format=fmt, init_kwargs=kw, state=out, metadata=meta)


# ============================================================================================
# Detection.

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_LEGACY_TORCH_HEADER = b"\x80\x02\x8a\x0a" + sp.LEGACY_MAGIC.to_bytes(10, "little") + b"."


def _check_file(path) -> int:
    """Return the file size; raise CheckpointError if it is not a readable, non-empty file."""
    try:
        if os.path.isdir(path):
            raise CheckpointError("is a directory, not a checkpoint file", where=path,
                                  hint="give the path of the model file inside it")
        size = os.path.getsize(path)
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError("no such file", where=path, hint="check the path") from None
    except OSError as e:
        raise CheckpointError(f"cannot access file ({e.strerror or e})", where=path) from None
    if size == 0:
        raise CheckpointError("file is empty", where=path, hint="the download or copy probably failed")
    return size


def _open(path):
    try:
        return open(path, "rb")
    except OSError as e:
        raise CheckpointError(f"cannot open file ({e.strerror or e})", where=path) from None


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def _classify_pickle(path) -> str:
    seen: list[str] = []
    with _open(path) as f:
        try:
            for module, name in sp.iter_globals(f):
                if module == "dnnlib.tflib.network" and name == "Network":
                    return "tf-pkl"
                if module == "torch_utils.persistence":
                    return "nvidia-pkl"
                qualname = f"{module}.{name}"
                if qualname not in seen:
                    seen.append(qualname)
        except (ValueError, EOFError, UnicodeDecodeError, OverflowError, MemoryError) as e:
            raise CheckpointError(f"truncated or corrupt pickle ({_short(e)})", where=path,
                                  hint="download or copy the file again") from None
    unsafe = [g for g in seen if g not in sp.KNOWN_SAFE_GLOBALS]
    if unsafe:
        raise CheckpointError(
            f"refusing to load global {unsafe[0]!r}: this pickle is not a StyleGAN2 checkpoint and "
            f"could run code when loaded (globals: {', '.join(seen[:8])})", where=path,
            hint="do not load this file; only use checkpoints from sources you trust")
    found = f"found globals {', '.join(seen[:8])}" if seen else "it references no classes at all"
    raise CheckpointError(f"not a StyleGAN2 checkpoint: a pickle without a generator ({found})",
                          where=path, hint=_SUPPORTED_HINT)


def detect_format(path) -> str:
    """Return "nvidia-pkl", "tf-pkl", "rosinality" or "morph", judged by the file's content."""
    size = _check_file(path)
    with _open(path) as f:
        head = f.read(64)
    if head[:4] in _ZIP_MAGIC:
        return "rosinality"
    if head.startswith(_LEGACY_TORCH_HEADER):
        return "rosinality"
    if _looks_like_safetensors(head, size):
        return "morph"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return _classify_pickle(path)
    raise CheckpointError("unrecognised file format (not a pickle, torch checkpoint or safetensors file)",
                          where=path, hint=_SUPPORTED_HINT)


def read_checkpoint(path) -> Checkpoint:
    """Detect the format of ``path`` and read it into a :class:`Checkpoint` (no code from the file runs)."""
    path = os.fspath(path)
    fmt = detect_format(path)
    reader = {"nvidia-pkl": _read_nvidia, "tf-pkl": _read_tf, "rosinality": _read_rosinality,
              "morph": _read_native}[fmt]
    try:
        return reader(path)
    except CheckpointError:
        raise
    except MemoryError:
        raise CheckpointError("not enough memory to read the checkpoint", where=path) from None
    except Exception as e:  # never let a raw parsing error escape
        raise CheckpointError(f"cannot read {fmt} checkpoint ({type(e).__name__}: {e})", where=path) from None


def _unpickle(path, loader):
    with _open(path) as f:
        try:
            return loader(f)
        except sp.RefusedGlobal as e:
            raise CheckpointError(
                f"refusing to load global {e.qualname!r}: it is not part of a StyleGAN2 checkpoint and "
                f"could run code", where=path,
                hint="do not load this file; only use checkpoints from sources you trust") from None
        except MemoryError:
            raise CheckpointError("ran out of memory while unpickling (corrupt object sizes, or too little memory)",
                                  where=path) from None
        except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError,
                AttributeError, OverflowError, RuntimeError) as e:
            text = _short(e)
            if isinstance(e, EOFError) or "truncated" in text:
                raise CheckpointError(f"truncated or corrupt pickle ({text})", where=path,
                                      hint="download or copy the file again") from None
            raise CheckpointError(f"corrupt or unsupported pickle ({text})", where=path) from None


# ============================================================================================
# NVIDIA stylegan2-ada-pytorch pickles.

_GENERATOR_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs",
                   "synthesis_kwargs")


def _collect_module_tensors(obj: sp.PersistentObject, prefix: str, out: dict, where) -> None:
    state = obj.state
    for key in ("_parameters", "_buffers"):
        tensors = state.get(key) or {}
        if not isinstance(tensors, dict):
            raise CheckpointError(f"malformed module state at {prefix or 'G_ema'!r}", where=where)
        for name, t in tensors.items():
            if t is None:
                continue
            if not isinstance(t, torch.Tensor):
                raise CheckpointError(f"{prefix + str(name)!r} is not a tensor", where=where)
            out[prefix + str(name)] = t
    children = state.get("_modules") or {}
    if not isinstance(children, dict):
        raise CheckpointError(f"malformed module state at {prefix or 'G_ema'!r}", where=where)
    for name, child in children.items():
        if child is None:
            continue
        if not isinstance(child, sp.PersistentObject):
            raise CheckpointError(f"module {prefix + str(name)!r} is not a network module", where=where)
        _collect_module_tensors(child, f"{prefix}{name}.", out, where)


def _child(obj: sp.PersistentObject, name: str):
    children = obj.state.get("_modules") or {}
    return children.get(name) if isinstance(children, dict) else None


def _read_nvidia(path) -> Checkpoint:
    data = _unpickle(path, sp.load_nvidia_pickle)
    if not isinstance(data, dict):
        raise CheckpointError(f"not a StyleGAN2 network pickle (top level is {type(data).__name__}, "
                              f"expected a dict with 'G_ema')", where=path, hint=_SUPPORTED_HINT)
    g = data.get("G_ema")
    if g is None:
        keys = ", ".join(repr(k) for k in list(data)[:8])
        raise CheckpointError(f"no 'G_ema' generator in the pickle (keys: {keys or 'none'})", where=path,
                              hint=_SUPPORTED_HINT)
    if not isinstance(g, sp.PersistentObject):
        raise CheckpointError("'G_ema' is not a network module", where=path)
    synthesis, mapping = _child(g, "synthesis"), _child(g, "mapping")
    if isinstance(synthesis, sp.PersistentObject):
        sub = synthesis.state.get("_modules") or {}
        names = [getattr(c, "class_name", None) for c in sub.values()] if isinstance(sub, dict) else []
        if "input" in sub or "SynthesisInput" in names:
            raise CheckpointError("this is a StyleGAN3 generator (its synthesis network starts with a "
                                  "SynthesisInput layer); only StyleGAN2 generators are supported", where=path,
                                  hint="use a StyleGAN2 / StyleGAN2-ADA checkpoint")
    if (g.class_name != "Generator" or not isinstance(synthesis, sp.PersistentObject)
            or not isinstance(mapping, sp.PersistentObject) or synthesis.class_name != "SynthesisNetwork"
            or mapping.class_name != "MappingNetwork"):
        raise CheckpointError(f"'G_ema' is a {g.class_name!r}, not a StyleGAN2 Generator with mapping and "
                              f"synthesis networks", where=path, hint=_SUPPORTED_HINT)

    args = g.state.get("_init_args") or ()
    kwargs = g.state.get("_init_kwargs") or {}
    if not isinstance(args, (tuple, list)) or not isinstance(kwargs, dict) or len(args) > len(_GENERATOR_ARGS):
        raise CheckpointError("malformed generator constructor arguments", where=path)
    init_kwargs = dict(zip(_GENERATOR_ARGS, args))
    init_kwargs.update(kwargs)
    # The stylegan3 repository's StyleGAN2 Generator takes the synthesis arguments as **kwargs at
    # the top level; move them where stylegan2-ada-pytorch expects them.
    synthesis_kwargs = dict(init_kwargs.get("synthesis_kwargs") or {})
    for key in [k for k in init_kwargs if k not in _GENERATOR_ARGS]:
        synthesis_kwargs.setdefault(key, init_kwargs.pop(key))
    synthesis_kwargs.pop("fused_modconv_default", None)  # a run-time choice, not part of the weights
    init_kwargs["synthesis_kwargs"] = synthesis_kwargs
    for key in _TOP_LEVEL:  # fall back to the attributes the constructor stored
        if key not in init_kwargs and key in g.state:
            init_kwargs[key] = g.state[key]
    missing = [k for k in _TOP_LEVEL if k not in init_kwargs]
    if missing:
        raise CheckpointError(f"generator constructor argument {missing[0]!r} missing", where=path)

    state: dict[str, torch.Tensor] = {}
    _collect_module_tensors(g, "", state, path)
    meta = {"source_format": "nvidia-pkl", "source_file": os.path.basename(path)}
    tsk = data.get("training_set_kwargs")
    if isinstance(tsk, dict) and isinstance(tsk.get("path"), str):
        meta["training_set"] = tsk["path"]
    return _finish("nvidia-pkl", init_kwargs, state, meta, path)


# ============================================================================================
# TensorFlow StyleGAN2 pickles.

def _tf_convert_kwargs(static_kwargs: dict, where) -> dict:
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


def _tf_collect_vars(net: sp.TFNetworkStub, where) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def recurse(prefix, node, depth):
        if not isinstance(node, sp.TFNetworkStub) or depth > 8:
            raise CheckpointError("malformed TensorFlow network (component is not a Network)", where=where)
        variables = node.state.get("variables") or []
        items = variables.items() if isinstance(variables, dict) else variables
        for item in items:
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


def _tf_source_name(name: str) -> tuple[str, str]:
    """PyTorch name -> (TF variable name, transform)."""
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


def _tf_transform(value: np.ndarray, how: str) -> np.ndarray:
    if how == "transpose":
        return value.T
    if how == "drop_batch":
        return value[0]
    if how == "noise":
        return value[0, 0]
    if how == "conv":
        return value.transpose(3, 2, 0, 1)
    if how == "flip_conv":
        return value[::-1, ::-1].transpose(3, 2, 0, 1)
    if how == "plus_one":
        return value + np.float32(1)
    return value


def _read_tf(path) -> Checkpoint:
    data = _unpickle(path, sp.load_tf_pickle)
    if isinstance(data, tuple) and len(data) == 3 and all(isinstance(n, sp.TFNetworkStub) for n in data):
        gs = data[2]
    elif isinstance(data, sp.TFNetworkStub):
        gs = data
    else:
        raise CheckpointError("not a TensorFlow StyleGAN2 pickle (expected a (G, D, Gs) tuple of networks)",
                              where=path, hint=_SUPPORTED_HINT)
    version = gs.state.get("version")
    if not isinstance(version, int) or version < 4:
        raise CheckpointError(f"TensorFlow network pickle version {version!r} is too old (need >= 4)", where=path,
                              hint="re-save it with the StyleGAN2 TensorFlow code")
    static_kwargs = gs.state.get("static_kwargs")
    if not isinstance(static_kwargs, dict):
        raise CheckpointError("TensorFlow network has no static_kwargs", where=path)
    kwargs = normalize_init_kwargs(_tf_convert_kwargs(static_kwargs, path))
    check_init_kwargs(kwargs, path)
    tf_vars = _tf_collect_vars(gs, path)
    state: dict[str, torch.Tensor] = {}
    for name in expected_shapes(kwargs):
        tf_name, how = _tf_source_name(name)
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
            converted = _tf_transform(value, how)
        except (IndexError, ValueError) as e:
            raise CheckpointError(f"TensorFlow variable {tf_name!r} has unexpected shape "
                                  f"{_fmt_shape(value.shape)} ({e})", where=path) from None
        state[name] = torch.from_numpy(np.array(converted, dtype=np.float32, order="C"))  # 0-d stays 0-d
    meta = {"source_format": "tf-pkl", "source_file": os.path.basename(path), "tf_network_version": str(version)}
    return _finish("tf-pkl", kwargs, state, meta, path)


# ============================================================================================
# rosinality/stylegan2-pytorch checkpoints.

def _short(e: BaseException) -> str:
    """The first sentence of an exception's message (torch's are paragraphs)."""
    text = " ".join(str(e).split()) or type(e).__name__
    if len(text) > 120:
        cut = text.find(". ", 20)
        if cut != -1:
            text = text[:cut + 1]
    return text


def _torch_load_safely(path):
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
            if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
                raise CheckpointError("a zip archive that is not a torch checkpoint (no data.pkl inside)",
                                      where=path, hint=_SUPPORTED_HINT)
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"corrupt zip archive ({e})", where=path,
                              hint="download or copy the file again") from None
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL ([\w.]+)", str(e))
        if m and re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", m.group(1)):
            raise CheckpointError(f"refusing to load global {m.group(1)!r}: it is not part of a StyleGAN2 "
                                  f"checkpoint and could run code", where=path,
                                  hint="do not load this file; only use checkpoints from sources you trust") from None
        raise CheckpointError(f"corrupt or unsupported torch checkpoint ({_short(e)})", where=path,
                              hint="the file may be truncated; download or copy it again") from None
    except Exception as e:
        raise CheckpointError(f"cannot read torch checkpoint ({_short(e)})", where=path,
                              hint="the file may be truncated; download or copy it again") from None


def _rosinality_target(name: str, n_mlp_seen: set) -> Optional[tuple[str, str]]:
    """rosinality g_ema name -> (NVIDIA name or 'noise:<i>', layout transform); None = ignored buffer."""
    if re.fullmatch(r".+\.kernel", name) and (".blur." in name or ".upsample." in name):
        return None
    m = re.fullmatch(r"style\.(\d+)\.(weight|bias)", name)
    if m and int(m.group(1)) >= 1:
        n_mlp_seen.add(int(m.group(1)))
        return f"mapping.fc{int(m.group(1)) - 1}.{m.group(2)}", "none"
    if name == "input.input":
        return "synthesis.b4.const", "drop_batch"
    m = re.fullmatch(r"noises\.noise_(\d+)", name)
    if m:
        return f"noise:{int(m.group(1))}", "noise"
    m = re.fullmatch(r"(conv1|convs\.(\d+)|to_rgb1|to_rgbs\.(\d+))\.(.+)", name)
    if not m:
        return None if name.endswith(".kernel") else ("", "unknown")
    head, leaf = m.group(1), m.group(4)
    if head == "conv1":
        prefix = "synthesis.b4.conv1"
    elif head == "to_rgb1":
        prefix = "synthesis.b4.torgb"
    elif head.startswith("convs."):
        i = int(m.group(2))
        prefix = f"synthesis.b{8 * 2 ** (i // 2)}.conv{i % 2}"
    else:
        prefix = f"synthesis.b{8 * 2 ** int(m.group(3))}.torgb"
    is_rgb = "torgb" in prefix
    table = {
        "conv.weight": ("weight", "drop_batch"),
        "conv.modulation.weight": ("affine.weight", "none"),
        "conv.modulation.bias": ("affine.bias", "none"),
    }
    if is_rgb:
        table["bias"] = ("bias", "flatten")
    else:
        table["noise.weight"] = ("noise_strength", "scalar")
        table["activate.bias"] = ("bias", "none")
    if leaf not in table:
        return ("", "unknown")
    target, how = table[leaf]
    return f"{prefix}.{target}", how


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


def _estimate_w_avg(state: dict, num_layers: int, lr_mul: float, z_dim: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(ROSINALITY_W_AVG_SEED)
    z = torch.randn(ROSINALITY_W_AVG_SAMPLES, z_dim, generator=g, dtype=torch.float32)
    x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
    for i in range(num_layers):
        w, b = state[f"mapping.fc{i}.weight"], state[f"mapping.fc{i}.bias"]
        x = torch.nn.functional.linear(x, w * (lr_mul / math.sqrt(w.shape[1])), b * lr_mul)
        x = torch.nn.functional.leaky_relu(x, 0.2) * math.sqrt(2)
    return x.mean(dim=0)


def _read_rosinality(path) -> Checkpoint:
    ckpt = _torch_load_safely(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"not a rosinality checkpoint (top level is {type(ckpt).__name__})", where=path,
                              hint=_SUPPORTED_HINT)
    if "g_ema" in ckpt:
        sd = ckpt["g_ema"]
    elif "input.input" in ckpt and "style.1.weight" in ckpt:
        sd = ckpt  # a bare g_ema state dict
    else:
        keys = ", ".join(repr(k) for k in list(ckpt)[:8])
        raise CheckpointError(f"no 'g_ema' generator in the torch checkpoint (keys: {keys or 'none'})", where=path,
                              hint=_SUPPORTED_HINT)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError("'g_ema' is not a state dict of tensors", where=path)

    state: dict[str, torch.Tensor] = {}
    noises: dict[int, torch.Tensor] = {}
    n_mlp_seen: set = set()
    kernels = []
    for name, t in sd.items():
        target = _rosinality_target(name, n_mlp_seen)
        if target is None:
            kernels.append((name, t))
            continue
        dst, how = target
        if how == "unknown":
            raise CheckpointError(f"unexpected tensor {name!r} in g_ema", where=path,
                                  hint="not a rosinality stylegan2-pytorch generator")
        t = _as_float32(name, t, path)
        try:
            if how == "drop_batch":
                if t.shape[0] != 1:
                    raise ValueError
                t = t[0]
            elif how == "noise":
                if t.dim() != 4 or t.shape[:2] != (1, 1):
                    raise ValueError
                t = t[0, 0]
            elif how == "scalar":
                if t.numel() != 1:
                    raise ValueError
                t = t.reshape(())
            elif how == "flatten":
                t = t.reshape(-1)
        except (ValueError, IndexError):
            raise CheckpointError(f"tensor {name!r} has unexpected shape {_fmt_shape(t.shape)}", where=path) from None
        if dst.startswith("noise:"):
            noises[int(dst[6:])] = t.contiguous()
        else:
            state[dst] = t.contiguous()

    for name, kernel in kernels:  # blur/upsample FIR kernels: only [1,3,3,1] is representable
        k1 = torch.tensor([1.0, 3.0, 3.0, 1.0])
        ref = torch.outer(k1, k1) / 64 * 4
        if kernel.shape != ref.shape or not torch.allclose(kernel.float().cpu(), ref, atol=1e-6):
            raise CheckpointError(f"non-default blur kernel {name!r}", where=path,
                                  hint="only the standard [1,3,3,1] filter is supported")

    for key in ("synthesis.b4.const", "synthesis.b4.torgb.weight", "mapping.fc0.weight"):
        if key not in state:
            raise CheckpointError(f"g_ema lacks the tensor that becomes {key!r}", where=path,
                                  hint="the file is incomplete or is not a rosinality generator")
    n_mlp = len(n_mlp_seen)
    if sorted(n_mlp_seen) != list(range(1, n_mlp + 1)):
        raise CheckpointError("mapping layers style.1..N are not contiguous", where=path)
    style_dim = state["mapping.fc0.weight"].shape[1]
    img_channels = state["synthesis.b4.torgb.weight"].shape[0]
    ch = {4: state["synthesis.b4.const"].shape[0]}
    r = 8
    while f"synthesis.b{r}.conv0.weight" in state:
        ch[r] = state[f"synthesis.b{r}.conv0.weight"].shape[0]
        r *= 2
    img_resolution = r // 2
    channel_base, channel_max = _solve_channels(ch, path)

    args = ckpt.get("args")
    lr_mul = None
    if isinstance(args, argparse.Namespace):
        lr_mul = getattr(args, "lr_mlp", None)
    elif isinstance(args, dict):
        lr_mul = args.get("lr_mlp")
    lr_mul = float(lr_mul) if isinstance(lr_mul, (int, float)) and not isinstance(lr_mul, bool) else 0.01

    init_kwargs = {
        "z_dim": style_dim, "c_dim": 0, "w_dim": style_dim,
        "img_resolution": img_resolution, "img_channels": img_channels,
        "mapping_kwargs": {"num_layers": n_mlp, "lr_multiplier": lr_mul, "w_avg_beta": 0.995},
        "synthesis_kwargs": {"channel_base": channel_base, "channel_max": channel_max, "num_fp16_res": 0,
                             "conv_clamp": None, "architecture": "skip"},
    }
    kw = normalize_init_kwargs(init_kwargs)
    check_init_kwargs(kw, path)

    noise_names = noise_buffer_names(kw)
    if sorted(noises) != list(range(len(noise_names))):
        raise CheckpointError(f"expected noise buffers noises.noise_0..{len(noise_names) - 1}, found "
                              f"{len(noises)}", where=path)
    for i, name in enumerate(noise_names):
        state[name] = noises[i]

    meta = {"source_format": "rosinality", "source_file": os.path.basename(path),
            "conv_clamp": "none (rosinality generators do not clamp)"}
    # Validate everything except w_avg first, so the estimate below runs on a well-formed mapping.
    latent_avg = ckpt.get("latent_avg")
    if isinstance(latent_avg, torch.Tensor):
        if latent_avg.numel() != style_dim:
            raise CheckpointError(f"latent_avg has shape {_fmt_shape(latent_avg.shape)}, expected [{style_dim}]",
                                  where=path)
        state["mapping.w_avg"] = _as_float32("latent_avg", latent_avg, path).reshape(style_dim)
        meta["w_avg"] = "latent_avg from the checkpoint"
    else:
        probe = dict(state)
        probe["mapping.w_avg"] = torch.zeros(style_dim)
        _finish("rosinality", kw, probe, {}, path)
        state["mapping.w_avg"] = _estimate_w_avg(state, n_mlp, lr_mul, style_dim)
        meta["w_avg"] = (f"estimated from {ROSINALITY_W_AVG_SAMPLES} samples of the mapping network "
                         f"(seed {ROSINALITY_W_AVG_SEED}); the checkpoint has no latent_avg")
    return _finish("rosinality", kw, state, meta, path)


# ============================================================================================
# morph native (safetensors).

def _read_native(path) -> Checkpoint:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            header = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as e:
        raise CheckpointError(f"corrupt safetensors file ({e})", where=path,
                              hint="the file may be truncated; write it again") from None
    if header.get("format") != NATIVE_FORMAT:
        raise CheckpointError(f"a safetensors file that is not a morph StyleGAN2 checkpoint "
                              f"(format={header.get('format')!r})", where=path, hint=_SUPPORTED_HINT)
    if header.get("version") != NATIVE_VERSION:
        raise CheckpointError(f"unsupported morph checkpoint version {header.get('version')!r}", where=path,
                              hint="it was written by a newer morph; upgrade morph")
    try:
        init_kwargs = json.loads(header.get("init_kwargs", ""))
    except ValueError:
        init_kwargs = None
    if not isinstance(init_kwargs, dict):
        raise CheckpointError("morph checkpoint has no valid init_kwargs", where=path)
    meta = {k: v for k, v in header.items() if k not in _NATIVE_RESERVED}
    return _finish("morph", init_kwargs, state, meta, path)


def write_native(path, init_kwargs: dict, state: dict, metadata: Optional[dict] = None) -> None:
    """Write a morph native checkpoint (safetensors) atomically.

    ``init_kwargs`` are normalised and the state is checked against them (names and shapes);
    ``resample_filter`` buffers are dropped. ``metadata`` values are stored as strings (non-strings
    as JSON). Raises CheckpointError when the state does not fit the kwargs.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    path = os.fspath(path)
    metadata = dict(metadata or {})
    clash = [k for k in metadata if k in _NATIVE_RESERVED]
    if clash:
        raise ValueError(f"metadata key {clash[0]!r} is reserved")
    ckpt = _finish("morph", init_kwargs, dict(state), metadata, path)
    header = {"format": NATIVE_FORMAT, "version": NATIVE_VERSION,
              "init_kwargs": json.dumps(ckpt.init_kwargs, sort_keys=True)}
    header.update(ckpt.metadata)
    tensors = {k: v.clone() for k, v in ckpt.state.items()}
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CheckpointError("cannot write checkpoint: its folder does not exist", where=path,
                              hint="create the folder first")
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        save_file(tensors, tmp, metadata=header)
        mask = os.umask(0o022)  # read the umask (safetensors creates its files 0600)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, (OSError, SafetensorError)):
            raise CheckpointError(f"cannot write checkpoint ({getattr(e, 'strerror', None) or e})",
                                  where=path) from None
        raise
