"""What every reader returns (:class:`Checkpoint`), and the one check of a state dict against its configuration.

Expected tensor names and shapes are read off the network itself (``Generator(**init_kwargs)`` of
the checkpoint's family: StyleGAN2 or StyleGAN3), so the readers can never drift from the model they feed.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

import torch

from ...errors import CheckpointError
from ..networks import Generator
from .config import plain, valid_init_kwargs

FAMILIES = ("stylegan2", "stylegan3")


@dataclass
class Checkpoint:
    """A generator read from a file, in the terms of NVIDIA's code for its family."""

    format: str                      # "nvidia-pkl" | "tf-pkl" | "rosinality" | "morph"
    init_kwargs: dict                # Generator(**init_kwargs), normalised (see normalize_init_kwargs)
    state: dict[str, torch.Tensor]   # state_dict names -> float32 CPU tensors, no resample_filter
    metadata: dict = field(default_factory=dict)  # str -> str, informative only
    family: str = "stylegan2"        # which network: "stylegan2" (stylegan2-ada-pytorch) | "stylegan3"


def generator_class(family: str) -> type:
    """The ``Generator`` class of a family (StyleGAN3's imported only when asked for)."""
    if family == "stylegan3":
        from ...stylegan3.networks import Generator as StyleGAN3Generator

        return StyleGAN3Generator
    assert family == "stylegan2", family
    return Generator


def _is_resample_filter(name: str) -> bool:
    return name == "resample_filter" or name.endswith(".resample_filter")


@functools.lru_cache(maxsize=8)
def _state_shapes(kwargs_json: str, family: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    # Built on the CPU, not the meta device: meta ops import torch._dynamo (1.5 s) while even a 1024px
    # generator builds in 0.25 s, once per configuration thanks to the cache.
    with torch.random.fork_rng(devices=[]):  # construction draws random weights; leave the caller's RNG alone
        G = generator_class(family)(**json.loads(kwargs_json))
    return tuple((k, tuple(v.shape)) for k, v in G.state_dict().items() if not _is_resample_filter(k))


def expected_shapes(init_kwargs: dict, where=None, family: str = "stylegan2") -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of ``Generator(**init_kwargs)``, in its ``state_dict()`` order.

    ``resample_filter`` buffers are left out: they are constants rebuilt from the kwargs.
    """
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


def check_state(init_kwargs: dict, state: dict, where, family: str = "stylegan2") -> dict[str, torch.Tensor]:
    """``state`` as float32 CPU tensors in ``Generator(**init_kwargs)`` order, if it fits that network exactly.

    ``resample_filter`` entries are ignored. Otherwise one CheckpointError names the first few
    missing, unexpected and wrongly shaped tensors.
    """
    expected = expected_shapes(init_kwargs, where, family)
    state = {k: v for k, v in state.items() if not _is_resample_filter(k)}
    out = {k: as_float32(k, state[k], where) for k in expected if k in state}
    missing = [repr(k) for k in expected if k not in state]
    unexpected = [repr(k) for k in state if k not in expected]
    misshapen = [f"{k!r} {fmt_shape(t.shape)} (expected {fmt_shape(expected[k])})"
                 for k, t in out.items() if tuple(t.shape) != expected[k]]
    problems = [f"{what}{'s' if len(names) > 1 else ''} {_first_few(names)}" for what, names in
                (("missing tensor", missing), ("unexpected tensor", unexpected), ("wrong shape", misshapen)) if names]
    if problems:
        name = {"stylegan2": "StyleGAN2", "stylegan3": "StyleGAN3"}[family]
        raise CheckpointError(f"tensors do not match the {name} generator configuration: " + "; ".join(problems),
                              where=where, hint=f"incomplete, or another network (a modified {name}?)")
    return out


def build_checkpoint(fmt: str, init_kwargs: dict, state: dict, metadata: dict, where,
                     family: str = "stylegan2") -> Checkpoint:
    """A :class:`Checkpoint` with normalised, validated kwargs, a checked state and string metadata."""
    if family == "stylegan3":
        from ...stylegan3.config import valid_init_kwargs as valid_stylegan3_kwargs

        kw = valid_stylegan3_kwargs(init_kwargs, where)
    else:
        kw = valid_init_kwargs(init_kwargs, where)
    meta = {str(k): (v if isinstance(v, str) else json.dumps(plain(v))) for k, v in metadata.items()}
    return Checkpoint(format=fmt, init_kwargs=kw, state=check_state(kw, state, where, family), metadata=meta,
                      family=family)
