"""Reader of NVIDIA's PyTorch network pickles (stylegan2-ada-pytorch, stylegan3 repo), ``G_ema`` only.

The pickle is unpickled into inert stand-ins (:mod:`..safe_pickle`); the embedded source code is
never run. Tensors are collected from the pickled modules' ``_parameters``/``_buffers`` tables.
StyleGAN2 generators (either repository) and StyleGAN3 ones (``training.networks_stylegan3``, told
apart by their ``SynthesisInput``) are read; StyleGAN-XL's (SG3-based) are recognised and refused.
"""

from __future__ import annotations

import os
from typing import Optional

import torch

from morph.checkpoints import safe_pickle as sp
from morph.checkpoints.checkpoint import Checkpoint, build_checkpoint
from morph.checkpoints.config import TOP_LEVEL
from morph.checkpoints.fileio import SUPPORTED_HINT, unpickle
from morph.checkpoints.torchfile import TORCH_SAVE_GLOBALS, read_torch_file
from morph.core.errors import CheckpointError
from morph.core.limits import MAX_MODULES

_GENERATOR_ARGS = (*TOP_LEVEL, "mapping_kwargs", "synthesis_kwargs")  # Generator's positional order
# Strings only StyleGAN-XL pickles hold: its generator module and class, and its discriminator's package.
_STYLEGAN_XL_MARKERS = (b"networks_stylegan3_resetting", b"SuperresGenerator", b"pg_modules")
_STYLEGAN_XL = ("this is a StyleGAN-XL network (training.networks_stylegan3_resetting, a StyleGAN3 variant with "
                "class embeddings and super-resolution stages); morph does not support StyleGAN-XL")


def _table(module: sp.PersistentObject, key: str, prefix: str, where) -> dict:
    """One of a pickled ``nn.Module``'s name tables: ``_parameters``, ``_buffers`` or ``_modules``."""
    table = module.state.get(key) or {}
    if not isinstance(table, dict):
        raise CheckpointError(f"malformed module state at {prefix or 'G_ema'!r}", where=where)
    return table


def _collect_tensors(module: sp.PersistentObject, prefix: str, out: dict, where, seen: Optional[set] = None) -> None:
    """Add every parameter and buffer under ``module`` to ``out``, by state_dict name.

    Each module may appear once in the tree (``seen``), and at most MAX_MODULES of them: a pickle that
    reuses one module under many names (or in a cycle) cannot make the walk exponential.
    """
    seen = set() if seen is None else seen
    if id(module) in seen or len(seen) >= MAX_MODULES:
        raise CheckpointError(f"module {prefix.rstrip('.') or 'G_ema'!r} appears more than once in the network, "
                              f"or the network has over {MAX_MODULES} modules", where=where,
                              hint="the file is damaged or hostile; do not use it")
    seen.add(id(module))
    for key in ("_parameters", "_buffers"):
        out.update((prefix + str(name), t) for name, t in _table(module, key, prefix, where).items() if t is not None)
    for name, child in _table(module, "_modules", prefix, where).items():
        if child is None:
            continue
        if not isinstance(child, sp.PersistentObject):
            raise CheckpointError(f"module {prefix + str(name)!r} is not a network module", where=where)
        _collect_tensors(child, f"{prefix}{name}.", out, where, seen)


def _init_kwargs(g: sp.PersistentObject, where) -> dict:
    """The constructor arguments of ``G_ema``, laid out as stylegan2-ada-pytorch's ``Generator`` takes them."""
    args, kwargs = g.state.get("_init_args"), g.state.get("_init_kwargs")
    args, kwargs = (() if args is None else args), ({} if kwargs is None else kwargs)
    if not isinstance(args, (tuple, list)) or not isinstance(kwargs, dict) or len(args) > len(_GENERATOR_ARGS):
        raise CheckpointError("malformed generator constructor arguments", where=where)
    init_kwargs = {**dict(zip(_GENERATOR_ARGS, args)), **kwargs}
    # The stylegan3 repository's StyleGAN2 Generator takes the synthesis arguments as **kwargs at
    # the top level; move them where stylegan2-ada-pytorch expects them.
    synthesis_kwargs = init_kwargs.get("synthesis_kwargs")
    if synthesis_kwargs is not None and not isinstance(synthesis_kwargs, dict):
        raise CheckpointError("malformed generator constructor arguments (synthesis_kwargs)", where=where)
    synthesis_kwargs = dict(synthesis_kwargs or {})
    for key in [k for k in init_kwargs if k not in _GENERATOR_ARGS]:
        synthesis_kwargs.setdefault(key, init_kwargs.pop(key))
    synthesis_kwargs.pop("fused_modconv_default", None)  # a run-time choice, not part of the weights
    init_kwargs["synthesis_kwargs"] = synthesis_kwargs
    for key in TOP_LEVEL:  # fall back to the attributes the constructor stored
        if key not in init_kwargs and key in g.state:
            init_kwargs[key] = g.state[key]
    missing = [k for k in TOP_LEVEL if k not in init_kwargs]
    if missing:
        raise CheckpointError(f"generator constructor argument {missing[0]!r} missing", where=where)
    return init_kwargs


def _mentions_stylegan_xl(path, chunk: int = 1 << 24) -> bool:
    """Whether the file's bytes hold a StyleGAN-XL marker (its embedded module sources name them)."""
    keep = max(map(len, _STYLEGAN_XL_MARKERS))
    tail = b""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            window = tail + block
            if any(m in window for m in _STYLEGAN_XL_MARKERS):
                return True
            tail = window[-keep:]
    return False


def _stylegan3_init_kwargs(g: sp.PersistentObject, where) -> dict:
    """The constructor arguments of a StyleGAN3 ``G_ema``: NVIDIA's flat ``Generator(**)`` layout, as pickled."""
    args = g.state.get("_init_args") or ()
    kwargs = g.state.get("_init_kwargs") or {}
    if not isinstance(args, (tuple, list)) or not isinstance(kwargs, dict) or len(args) > len(TOP_LEVEL) + 1:
        raise CheckpointError("malformed generator constructor arguments", where=where)
    return {**dict(zip((*TOP_LEVEL, "mapping_kwargs"), args)), **kwargs}


def read_nvidia(path) -> Checkpoint:
    """Read ``G_ema`` from an NVIDIA network pickle (StyleGAN2 or StyleGAN3; other networks are refused)."""
    try:
        data = unpickle(path, sp.load_nvidia_pickle)
    except CheckpointError:
        if _mentions_stylegan_xl(path):  # its pickles hold plain modules (nn.Embedding, timm) we refuse
            raise CheckpointError(_STYLEGAN_XL, where=path, hint="use a StyleGAN2 or StyleGAN3 checkpoint") from None
        raise
    return _checkpoint(data, path, "nvidia-pkl")


def read_nvidia_module(path) -> Checkpoint:
    """PTI's output (and any ``torch.save`` of NVIDIA's ``Generator`` module, or of a network pickle's dict): a torch
    file whose pickle carries NVIDIA's persistent classes, read through the same allow-list as NVIDIA pickles."""
    def every_tensor(tree, tensors) -> list[str]:
        return list(tensors)

    tree, _ = read_torch_file(path, {**sp.NVIDIA_GLOBALS, **TORCH_SAVE_GLOBALS}, "a torch.save'd NVIDIA generator",
                              every_tensor)
    return _checkpoint(tree if isinstance(tree, dict) else {"G_ema": tree}, path, "nvidia-pt")


def _checkpoint(data, path, fmt: str) -> Checkpoint:
    """The :class:`Checkpoint` of an unpickled network dict (``G_ema`` and, optionally, the training set)."""
    if not isinstance(data, dict):
        raise CheckpointError(f"not a StyleGAN2 network pickle (top level is {type(data).__name__}, "
                              f"expected a dict with 'G_ema')", where=path, hint=SUPPORTED_HINT)
    g = data.get("G_ema")
    if g is None:
        keys = ", ".join(repr(k) for k in list(data)[:8])
        raise CheckpointError(f"no 'G_ema' generator in the pickle (keys: {keys or 'none'})", where=path,
                              hint=SUPPORTED_HINT)
    if not isinstance(g, sp.PersistentObject):
        raise CheckpointError("'G_ema' is not a network module", where=path)
    children = _table(g, "_modules", "", path)
    synthesis, mapping = children.get("synthesis"), children.get("mapping")
    family = "stylegan2"
    if isinstance(synthesis, sp.PersistentObject):
        layers = _table(synthesis, "_modules", "synthesis.", path)
        if "input" in layers or any(getattr(c, "class_name", None) == "SynthesisInput" for c in layers.values()):
            family = "stylegan3"
    mapping_children = _table(mapping, "_modules", "mapping.", path) if isinstance(mapping, sp.PersistentObject) else {}
    if g.class_name == "SuperresGenerator" or "embed_proj" in mapping_children:
        raise CheckpointError(_STYLEGAN_XL, where=path, hint="use a StyleGAN2 or StyleGAN3 checkpoint")
    if (g.class_name != "Generator" or getattr(synthesis, "class_name", None) != "SynthesisNetwork"
            or getattr(mapping, "class_name", None) != "MappingNetwork"):
        raise CheckpointError(f"'G_ema' is a {g.class_name!r}, not a StyleGAN2 Generator (nor a StyleGAN3 one) "
                              f"with mapping and synthesis networks", where=path, hint=SUPPORTED_HINT)

    state: dict[str, torch.Tensor] = {}
    _collect_tensors(g, "", state, path)
    meta = {"source_format": fmt, "source_file": os.path.basename(path)}
    tsk = data.get("training_set_kwargs")
    if isinstance(tsk, dict) and isinstance(tsk.get("path"), str):
        meta["training_set"] = tsk["path"]
    if family == "stylegan3":
        return build_checkpoint(fmt, _stylegan3_init_kwargs(g, path), state, meta, path, family=family)
    return build_checkpoint(fmt, _init_kwargs(g, path), state, meta, path)
