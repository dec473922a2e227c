"""What every reader returns (:class:`Checkpoint`), and the one check of a state dict against its configuration.

Expected tensor names and shapes are read off the network itself (``Generator(**init_kwargs)``),
so the readers can never drift from the model they feed.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

import torch

from ...errors import CheckpointError
from ..networks import Generator
from .config import plain, valid_init_kwargs


@dataclass
class Checkpoint:
    """A generator read from a file, in NVIDIA ``stylegan2-ada-pytorch`` terms."""

    format: str                      # "nvidia-pkl" | "tf-pkl" | "rosinality" | "morph"
    init_kwargs: dict                # Generator(**init_kwargs), normalised (see normalize_init_kwargs)
    state: dict[str, torch.Tensor]   # state_dict names -> float32 CPU tensors, no resample_filter
    metadata: dict = field(default_factory=dict)  # str -> str, informative only


def _is_resample_filter(name: str) -> bool:
    return name == "resample_filter" or name.endswith(".resample_filter")


@functools.lru_cache(maxsize=8)
def _state_shapes(kwargs_json: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    # Built on the CPU, not the meta device: meta ops import torch._dynamo (1.5 s) while even a 1024px
    # generator builds in 0.25 s, once per configuration thanks to the cache.
    with torch.random.fork_rng(devices=[]):  # construction draws random weights; leave the caller's RNG alone
        G = Generator(**json.loads(kwargs_json))
    return tuple((k, tuple(v.shape)) for k, v in G.state_dict().items() if not _is_resample_filter(k))


def expected_shapes(init_kwargs: dict, where=None) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of ``Generator(**init_kwargs)``, in its ``state_dict()`` order.

    ``resample_filter`` buffers are left out: they are constants rebuilt from the kwargs.
    """
    try:
        return dict(_state_shapes(json.dumps(plain(init_kwargs), sort_keys=True)))
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


def check_state(init_kwargs: dict, state: dict, where) -> dict[str, torch.Tensor]:
    """``state`` as float32 CPU tensors in ``Generator(**init_kwargs)`` order, if it fits that network exactly.

    ``resample_filter`` entries are ignored. Otherwise one CheckpointError names the first few
    missing, unexpected and wrongly shaped tensors.
    """
    expected = expected_shapes(init_kwargs, where)
    state = {k: v for k, v in state.items() if not _is_resample_filter(k)}
    out = {k: as_float32(k, state[k], where) for k in expected if k in state}
    missing = [repr(k) for k in expected if k not in state]
    unexpected = [repr(k) for k in state if k not in expected]
    misshapen = [f"{k!r} {fmt_shape(t.shape)} (expected {fmt_shape(expected[k])})"
                 for k, t in out.items() if tuple(t.shape) != expected[k]]
    problems = [f"{what}{'s' if len(names) > 1 else ''} {_first_few(names)}" for what, names in
                (("missing tensor", missing), ("unexpected tensor", unexpected), ("wrong shape", misshapen)) if names]
    if problems:
        raise CheckpointError("tensors do not match the generator configuration: " + "; ".join(problems),
                              where=where, hint="incomplete, or another network (StyleGAN3 or a modified StyleGAN2?)")
    return out


def build_checkpoint(fmt: str, init_kwargs: dict, state: dict, metadata: dict, where) -> Checkpoint:
    """A :class:`Checkpoint` with normalised, validated kwargs, a checked state and string metadata."""
    kw = valid_init_kwargs(init_kwargs, where)
    meta = {str(k): (v if isinstance(v, str) else json.dumps(plain(v))) for k, v in metadata.items()}
    return Checkpoint(format=fmt, init_kwargs=kw, state=check_state(kw, state, where), metadata=meta)
