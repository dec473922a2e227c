"""A model spec (``builtin``, a checkpoint path) → a loaded generator of the family its file holds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch

from morph.checkpoints.loading import load_generator
from morph.core.model import Model
from morph.models.resolver import resolve_model


def load_model(spec: str | os.PathLike, device: str | torch.device = "cpu", base: Path = Path("."),
               cache_dir: Optional[Path] = None) -> Model:
    """Resolve ``spec`` (relative paths from ``base``; a URL downloaded into ``cache_dir``) and load it safely
    onto ``device``; nothing in it is run."""
    return load_generator(resolve_model(spec, base, cache_dir=cache_dir), device)


__all__ = ["load_model"]
