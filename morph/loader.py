"""A model spec (``builtin``, a checkpoint path) → a loaded generator of the family its file holds."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .model import Model
from .resolver import resolve_model


def load_model(spec: str | os.PathLike, device: str | torch.device = "cpu", base: Path = Path(".")) -> Model:
    """Resolve ``spec`` (relative paths from ``base``) and load it safely onto ``device``; nothing in it is run."""
    from .stylegan2.loading import load_generator

    return load_generator(resolve_model(spec, base), device)


__all__ = ["load_model"]
