"""The published FFHQ encoders' files (pSp's ``psp_ffhq_encode.pt``, e4e's ``e4e_ffhq_encode.pt``) and ArcFace's
IR-SE50 weights (``model_ir_se50.pth``), read as data.

A pSp / e4e checkpoint is a ``torch.save``'d dict: ``state_dict`` (``encoder.*``: the encoder, ``decoder.*``:
rosinality's generator), ``opts`` (the training options, a dict of plain values) and ``latent_avg``
(``[n_styles, 512]``). Everything is read through the allow-list of :mod:`morph.checkpoints.torchfile`:
``opts`` may hold only plain values (a class instance is refused before it could run), and only the tensors
a caller needs are read (the encoder's for projection, the decoder's for the model), memory-mapped where the
file allows. The networks themselves live in :mod:`morph.projection.psp` (this layer may not import it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from morph.checkpoints.checkpoint import Checkpoint, check_storage_use
from morph.checkpoints.rosinality import g_ema_checkpoint
from morph.checkpoints.torchfile import TORCH_SAVE_GLOBALS, pickle_strings, read_torch_file
from morph.core.errors import CheckpointError

#: opts["encoder_type"] → morph's name for the network.
ENCODER_TYPES = {"GradualStyleEncoder": "psp", "Encoder4Editing": "e4e"}
WHAT = "a pSp or e4e checkpoint"
ARCFACE = "ArcFace IR-SE50 weights (model_ir_se50.pth)"
_PLAIN = (str, int, float, bool, type(None))
_MAX_OPTS = 1000  # values in opts (the published files hold about 60)


@dataclass
class EncoderCheckpoint:
    """A pSp / e4e checkpoint's encoder: what the network needs, and what ``morph info`` tells."""

    path: Path
    kind: str                        # "psp" | "e4e"
    opts: dict[str, Any]             # the training options, plain values only
    latent_avg: torch.Tensor         # [n_styles, w_dim], added to the network's output
    state: dict[str, torch.Tensor] = field(default_factory=dict)  # encoder.* without the prefix (empty: not read)
    decoder_tensors: int = 0         # how many decoder.* tensors the file holds

    @property
    def n_styles(self) -> int:
        return self.latent_avg.shape[0]

    @property
    def w_dim(self) -> int:
        return self.latent_avg.shape[1]


def _check_plain(value: Any, where, name: str = "opts") -> None:
    """CheckpointError unless ``value`` is plain data (str, numbers, None, lists / tuples / str-keyed dicts)."""
    count = 0
    stack = [(name, value, 0)]
    while stack:
        key, v, depth = stack.pop()
        count += 1
        if count > _MAX_OPTS or depth > 8:
            raise CheckpointError(f"{name} holds more than {_MAX_OPTS} values or nests deeper than 8", where=where,
                                  hint="the file is damaged or hostile; do not use it")
        if isinstance(v, dict):
            stack += [(f"{key}.{k}", x, depth + 1) for k, x in v.items()]
            if not all(isinstance(k, str) for k in v):
                raise CheckpointError(f"{key} has keys that are not strings", where=where)
        elif isinstance(v, (list, tuple)):
            stack += [(f"{key}[{i}]", x, depth + 1) for i, x in enumerate(v)]
        elif not isinstance(v, _PLAIN):
            raise CheckpointError(f"{key} is a {type(v).__name__}, not a plain value", where=where,
                                  hint="a pSp / e4e checkpoint's opts are plain values; do not use this file")


def _parts(tree: Any, path) -> tuple[dict, dict, Any]:
    """(state_dict, opts, latent_avg) of an unpickled checkpoint; CheckpointError when it is not one."""
    if not isinstance(tree, dict) or not isinstance(tree.get("state_dict"), dict) \
            or not isinstance(tree.get("opts"), dict):
        keys = ", ".join(repr(k) for k in list(tree)[:6]) if isinstance(tree, dict) else type(tree).__name__
        raise CheckpointError(f"not {WHAT} (expected a dict of state_dict, opts and latent_avg; found {keys})",
                              where=path, hint="give the psp_ffhq_encode.pt or e4e_ffhq_encode.pt file")
    opts = tree["opts"]
    _check_plain(opts, path)
    return tree["state_dict"], opts, tree.get("latent_avg")


def _kind(opts: dict, path) -> str:
    kind = ENCODER_TYPES.get(opts.get("encoder_type"))
    if kind is None:
        raise CheckpointError(f"its encoder_type is {opts.get('encoder_type')!r}; morph reads "
                              f"{' and '.join(ENCODER_TYPES)}", where=path,
                              hint="use the published FFHQ encoders (psp_ffhq_encode.pt, e4e_ffhq_encode.pt)")
    if opts.get("input_nc", 3) != 3 or opts.get("label_nc", 0):
        raise CheckpointError(f"this encoder reads {opts.get('input_nc')} input channels and {opts.get('label_nc', 0)} "
                              f"labels (a sketch or segmentation task); morph encodes RGB photos", where=path)
    return kind


def _styles(state: dict, latent_avg: Any, path) -> torch.Tensor:
    """``latent_avg`` as [n_styles, w_dim], n_styles being the count of the encoder's style heads."""
    heads = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"encoder\.styles\.(\d+)\.linear\.weight", k)))
    if not heads or heads != list(range(len(heads))):
        raise CheckpointError("the encoder has no style heads styles.0..N", where=path, hint=f"not {WHAT}")
    if not isinstance(latent_avg, torch.Tensor) or latent_avg.dtype != torch.float32 or latent_avg.dim() > 2 \
            or latent_avg.shape[-1] != state["encoder.styles.0.linear.weight"].shape[0] \
            or (latent_avg.dim() == 2 and latent_avg.shape[0] not in (1, len(heads))):
        shape = list(latent_avg.shape) if isinstance(latent_avg, torch.Tensor) else type(latent_avg).__name__
        raise CheckpointError(f"latent_avg is {shape}, not [{len(heads)}, 512] for its {len(heads)} style heads",
                              where=path, hint="the file is damaged")
    avg = latent_avg.reshape(-1, latent_avg.shape[-1]).clone()
    if not torch.isfinite(avg).all():
        raise CheckpointError("latent_avg holds non-finite values", where=path, hint="the file is damaged")
    return avg.expand(len(heads), -1).contiguous()


def read_encoder_checkpoint(path: str | os.PathLike, weights: bool = True) -> EncoderCheckpoint:
    """The encoder of a pSp / e4e checkpoint (``weights``: its tensors too; else only what describes it)."""
    path = Path(path)

    def choose(tree: Any, tensors: dict[str, torch.Tensor]) -> list[str]:
        _parts(tree, path)
        wanted = "state_dict.encoder." if weights else "state_dict.encoder.styles."
        return [n for n in tensors if n.startswith(wanted)] + ["latent_avg"] * ("latent_avg" in tensors)

    tree, tensors = read_torch_file(path, TORCH_SAVE_GLOBALS, WHAT, choose)
    state, opts, latent_avg = _parts(tree, path)
    kind = _kind(opts, path)
    avg = _styles(state, latent_avg, path)
    encoder = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    if weights:  # their values are not scanned here (that would read 1 GB): the encoder's output is checked
        check_storage_use(encoder, path)
    return EncoderCheckpoint(path, kind, opts, avg, encoder if weights else {},
                             sum(k.startswith("decoder.") for k in state))


def read_psp_decoder(path: str | os.PathLike) -> Checkpoint:
    """The generator stored in a pSp / e4e checkpoint (rosinality's, under ``decoder.*``), its ``w_avg`` the mean
    of ``latent_avg``'s rows (in the published files they are one vector repeated)."""
    path = Path(path)

    def choose(tree: Any, tensors: dict[str, torch.Tensor]) -> list[str]:
        _parts(tree, path)
        return [n for n in tensors if n.startswith("state_dict.decoder.")] + ["latent_avg"] * ("latent_avg" in tensors)

    tree, _ = read_torch_file(path, TORCH_SAVE_GLOBALS, WHAT, choose)
    state, opts, latent_avg = _parts(tree, path)
    decoder = {k.removeprefix("decoder."): v for k, v in state.items() if k.startswith("decoder.")}
    if not decoder:
        raise CheckpointError("this encoder checkpoint holds no decoder.* generator", where=path,
                              hint="give the model with --model")
    check_storage_use(decoder, path)
    avg = _styles(state, latent_avg, path).mean(dim=0)
    ckpt = g_ema_checkpoint(decoder, avg, None, path, source_format=ENCODER_TYPES.get(opts.get("encoder_type"), "psp"))
    ckpt.metadata["w_avg"] = "the mean of the encoder checkpoint's latent_avg rows"
    return ckpt


def is_encoder_checkpoint(path: str | os.PathLike) -> bool:
    """Whether a torch file (zip or legacy) looks like a pSp / e4e checkpoint: its pickle names ``state_dict``,
    ``opts`` and ``encoder.`` tensors (a scan of its strings; nothing is loaded)."""
    strings = pickle_strings(Path(path))
    return {"state_dict", "opts"} <= strings and any(s.startswith("encoder.") for s in strings)


def read_arcface(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """ArcFace IR-SE50 weights (a bare state dict: ``input_layer.*``, ``body.*``, ``output_layer.*``)."""
    path = Path(path)

    def choose(tree: Any, tensors: dict[str, torch.Tensor]) -> list[str]:
        if not isinstance(tree, dict) or "output_layer.3.weight" not in tree or "body.0.res_layer.1.weight" not in tree:
            raise CheckpointError(f"not {ARCFACE} (no output_layer.3 / body.0 tensors)", where=path,
                                  hint="--identity takes model_ir_se50.pth (pSp's identity loss network)")
        return list(tensors)

    _, tensors = read_torch_file(path, TORCH_SAVE_GLOBALS, ARCFACE, choose)
    check_storage_use(tensors, path)
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"tensor {bad[0]!r} holds non-finite values", where=path, hint="download it again")
    return tensors


def describe_encoder(path: str | os.PathLike) -> list[str]:
    """``morph info`` lines for a pSp / e4e checkpoint (its encoder's style heads and options; no weights read)."""
    enc = read_encoder_checkpoint(path, weights=False)
    opts = enc.opts
    name = {"psp": "pSp (GradualStyleEncoder)", "e4e": "e4e (Encoder4Editing)"}[enc.kind]
    size = opts.get("stylegan_size", opts.get("output_size"))
    return [f"{enc.path}: {name} encoder checkpoint",
            f"  encoder: {enc.n_styles} styles of w[{enc.w_dim}], input 256×256 RGB in [-1, 1] (FFHQ-aligned faces)",
            f"  decoder: rosinality generator{f' {size} px' if size else ''} ({enc.decoder_tensors} tensors); "
            f"the model when no --model is given",
            f"  trained on: {opts.get('dataset_type', '?')}; start_from_latent_avg: "
            f"{opts.get('start_from_latent_avg', '?')}",
            f"  use: morph project PHOTOS --encoder {enc.path} (identity: --identity model_ir_se50.pth)"]


__all__ = ["ENCODER_TYPES", "EncoderCheckpoint", "describe_encoder", "is_encoder_checkpoint", "read_arcface",
           "read_encoder_checkpoint", "read_psp_decoder"]
