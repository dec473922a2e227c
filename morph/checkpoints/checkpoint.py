"""What every reader returns (:class:`Checkpoint`), and the one check of a state dict against its configuration.

Expected tensor names and shapes come from the family's row (:mod:`morph.checkpoints.families`): a
StyleGAN2's are worked out from the (bounded) configuration without building the network, so a small file
with a huge configuration costs nothing, and a test compares them with ``Generator(**init_kwargs).state_dict()``
so the readers cannot drift from the model they feed; a family without such a rule (StyleGAN3) has its
tensors read off the network itself, built once per configuration.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Mapping

import torch

from morph.checkpoints.config import plain
from morph.checkpoints.families import family as family_row
from morph.core.errors import CheckpointError


@dataclass
class Checkpoint:
    """A generator read from a file, in the terms of NVIDIA's code for its family."""

    format: str                      # "nvidia-pkl" | "tf-pkl" | "rosinality" | "morph"
    init_kwargs: dict                # Generator(**init_kwargs), normalised (see normalize_init_kwargs)
    state: dict[str, torch.Tensor]   # state_dict names -> float32 CPU tensors, no resample_filter
    metadata: dict = field(default_factory=dict)  # str -> str, informative only
    family: str = "stylegan2"        # which network: a row of morph.checkpoints.families ("stylegan2", "stylegan3")


def _is_resample_filter(name: str) -> bool:
    return name == "resample_filter" or name.endswith(".resample_filter")


@functools.lru_cache(maxsize=8)
def _state_shapes(kwargs_json: str, family: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    # Built on the CPU, not the meta device: meta ops import torch._dynamo, which takes longer than building
    # even a 1024 px generator, and the cache builds each configuration once.
    with torch.random.fork_rng(devices=[]):  # construction draws random weights; leave the caller's RNG alone
        G = family_row(family).generator()(**json.loads(kwargs_json))
    return tuple((k, tuple(v.shape)) for k, v in G.state_dict().items() if not _is_resample_filter(k))


def expected_shapes(init_kwargs: dict, where=None, family: str = "stylegan2") -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of ``Generator(**init_kwargs)`` of ``family``, in its ``state_dict()`` order.

    A family with a shape rule computes them, allocating nothing however large the (validated) configuration;
    others build the network once per configuration. ``resample_filter`` buffers are left out: they are
    constants rebuilt from the kwargs.
    """
    row = family_row(family, where)
    if row.shapes is not None:
        return dict(row.shapes(row.valid_kwargs(init_kwargs, where)))
    try:
        return dict(_state_shapes(json.dumps(plain(init_kwargs), sort_keys=True), family))
    except (TypeError, ValueError, AssertionError, RuntimeError) as e:
        raise CheckpointError(f"unsupported generator configuration ({type(e).__name__}: {e})", where=where) from None


def noise_buffer_names(init_kwargs: dict) -> list[str]:
    """The ``noise_const`` buffers in NVIDIA order: b4.conv1, b8.conv0, b8.conv1, ..."""
    return [name for name in expected_shapes(init_kwargs) if name.endswith(".noise_const")]


def as_float32(name: str, t, where) -> torch.Tensor:
    """``t`` as a contiguous float32 CPU tensor; CheckpointError if it is not a floating-point tensor."""
    if not isinstance(t, torch.Tensor):
        raise CheckpointError(f"{name!r} is not a tensor", where=where)
    if not t.is_floating_point():
        raise CheckpointError(f"tensor {name!r} has non-float dtype {t.dtype}", where=where)
    return t.detach().to(device="cpu", dtype=torch.float32).contiguous()


def fmt_shape(shape) -> str:
    """A shape as error messages show it: ``[512, 3, 3]``."""
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def _first_few(items: list[str], shown: int = 3) -> str:
    more = f" (and {len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def check_storage_use(tensors: Mapping[str, torch.Tensor], where) -> None:
    """CheckpointError if materialising ``tensors`` would take more memory than the storages behind them hold.

    Catches stride-0 or overlapping views (a few bytes shown as gigabytes) and many tensors viewing one
    storage, before anything is copied; honest files give each tensor its own storage.
    """
    storages: dict[int, int] = {}
    needed = 0
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{name!r} is not a tensor", where=where)
        nbytes, storage = t.numel() * t.element_size(), t.untyped_storage()
        if nbytes > storage.nbytes():
            raise CheckpointError(f"tensor {name!r} {fmt_shape(t.shape)} needs {nbytes} bytes but its storage holds "
                                  f"{storage.nbytes()} (a stride-0 or overlapping view)", where=where,
                                  hint="the file is damaged or hostile; do not use it")
        storages[storage.data_ptr()] = storage.nbytes()
        needed += nbytes
    if needed > sum(storages.values()):
        raise CheckpointError(f"the tensors need {needed} bytes but share storages of {sum(storages.values())}",
                              where=where, hint="the file is damaged or hostile; do not use it")


def check_state(init_kwargs: dict, state: dict, where, family: str = "stylegan2") -> dict[str, torch.Tensor]:
    """``state`` as float32 CPU tensors in ``Generator(**init_kwargs)`` order, if it fits that network exactly.

    ``resample_filter`` entries are ignored. Otherwise one CheckpointError names the first few
    missing, unexpected and wrongly shaped tensors. Names, shapes and storage use are checked
    before any tensor is copied.
    """
    expected = expected_shapes(init_kwargs, where, family)
    state = {k: v for k, v in state.items() if not _is_resample_filter(k)}
    for k, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{k!r} is not a tensor", where=where)
    missing = [repr(k) for k in expected if k not in state]
    unexpected = [repr(k) for k in state if k not in expected]
    misshapen = [f"{k!r} {fmt_shape(state[k].shape)} (expected {fmt_shape(shape)})"
                 for k, shape in expected.items() if k in state and tuple(state[k].shape) != shape]
    problems = [f"{what}{'s' if len(names) > 1 else ''} {_first_few(names)}" for what, names in
                (("missing tensor", missing), ("unexpected tensor", unexpected), ("wrong shape", misshapen)) if names]
    if problems:
        name = family_row(family, where).label
        raise CheckpointError(f"tensors do not match the {name} generator configuration: " + "; ".join(problems),
                              where=where, hint=f"incomplete, or another network (a modified {name}?)")
    check_storage_use(state, where)
    return {k: as_float32(k, state[k], where) for k in expected}


def build_checkpoint(fmt: str, init_kwargs: dict, state: dict, metadata: dict, where,
                     family: str = "stylegan2") -> Checkpoint:
    """A :class:`Checkpoint` with normalised, validated kwargs, a checked state and string metadata."""
    kw = family_row(family, where).valid_kwargs(init_kwargs, where)
    meta = {str(k): (v if isinstance(v, str) else json.dumps(plain(v))) for k, v in metadata.items()}
    return Checkpoint(format=fmt, init_kwargs=kw, state=check_state(kw, state, where, family), metadata=meta,
                      family=family)
