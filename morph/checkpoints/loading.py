"""Checkpoint file → ready-to-run ``Generator``: format detection, safe reading, strict shape checks."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from morph.checkpoints import Checkpoint, check_state, read_checkpoint
from morph.checkpoints.families import family
from morph.core.files import file_sha256
from morph.core.model import Model, ModelInfo


def build_generator(ckpt: Checkpoint, where: str | os.PathLike) -> Model:
    """Instantiate the architecture a checkpoint describes (the generator class of its family's row in
    :mod:`morph.checkpoints.families`) and load its tensors, checking every name and shape."""
    state = check_state(ckpt.init_kwargs, ckpt.state, where, ckpt.family)
    G = family(ckpt.family, where).generator()(**ckpt.init_kwargs)
    G.load_state_dict({**G.state_dict(), **state})  # resample_filter buffers keep their constructed values
    return G.eval().requires_grad_(False)


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> Model:
    """Load any supported checkpoint (format detected from its content) into a ``Generator`` on ``device``.

    The returned module carries ``G.info`` (a ``ModelInfo``). Nothing in the file is executed.
    """
    path = Path(path).expanduser()
    ckpt = read_checkpoint(path)
    G = build_generator(ckpt, path)
    G.info = ModelInfo(path=str(path), format=ckpt.format, sha256=file_sha256(path), metadata=dict(ckpt.metadata))
    return G.to(device)
