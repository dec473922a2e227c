"""The network families morph loads: one row each, naming the generator class, the check of its constructor
arguments and, where known without building it, the tensors those arguments call for.

Every reader says which family a file holds (``Checkpoint.family``); checking its tensors, building the
generator and writing morph's own file (header ``format`` ``morph.<family>``) all look the family up here.
A new family is a folder beside ``stylegan2/`` and ``stylegan3/`` whose ``Generator`` implements
:class:`morph.core.model.Model`, plus one :func:`register` row (below for a shipped family; a reader of
its files goes with the other readers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from morph.checkpoints.config import stylegan2_shapes
from morph.checkpoints.config import valid_init_kwargs as valid_stylegan2_kwargs
from morph.checkpoints.config_sg3 import valid_init_kwargs as valid_stylegan3_kwargs
from morph.core.errors import CheckpointError

Shapes = list[tuple[str, tuple[int, ...]]]  # (state_dict name, shape), in state_dict() order


@dataclass(frozen=True)
class Family:
    """What loading needs to know of one network family."""

    name: str                                   # Checkpoint.family and Model.family ("stylegan2")
    label: str                                  # how messages name it ("StyleGAN2")
    generator: Callable[[], type]               # the Generator class: Generator(**init_kwargs) (imported on first use)
    valid_kwargs: Callable[[dict, Any], dict]   # (init_kwargs, where) → canonical kwargs, or CheckpointError
    shapes: Optional[Callable[[dict], Shapes]] = None  # valid kwargs → tensors, without building; None: built once

    @property
    def native_format(self) -> str:
        """The ``format`` of a morph safetensors file holding this family."""
        return f"morph.{self.name}"


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add (or replace) a family's row; returns it."""
    FAMILIES[family.name] = family
    return family


def family(name: str, where: Any = None) -> Family:
    """The row of family ``name``; CheckpointError when morph knows no such family."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise CheckpointError(f"unknown network family {name!r}", where=where,
                              hint=f"morph reads {', '.join(f.label for f in FAMILIES.values())}") from None


def _stylegan2() -> type:
    from morph.stylegan2.networks import Generator

    return Generator


def _stylegan3() -> type:  # imported only when a StyleGAN3 file is read
    from morph.stylegan3.networks import Generator

    return Generator


register(Family("stylegan2", "StyleGAN2", _stylegan2, valid_stylegan2_kwargs, stylegan2_shapes))
register(Family("stylegan3", "StyleGAN3", _stylegan3, valid_stylegan3_kwargs))

__all__ = ["FAMILIES", "Family", "Shapes", "family", "register"]
