"""Checkpoint file → ready-to-run ``Generator``: format detection, safe reading, strict shape checks."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .formats import Checkpoint, read_checkpoint
from .networks import Generator


@dataclass(frozen=True)
class ModelInfo:
    """Where a loaded generator came from: shown by ``morph info`` and keyed into render caches."""

    path: str
    format: str
    sha256: str
    metadata: dict[str, Any] = field(default_factory=dict)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (checkpoints can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def build_generator(ckpt: Checkpoint, where: str | os.PathLike) -> Generator:
    """Instantiate the architecture a checkpoint describes and load its tensors, checking every name and shape."""
    try:
        G = Generator(**ckpt.init_kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise CheckpointError(f"unsupported generator configuration {ckpt.init_kwargs}: {exc}", where) from None
    expected = G.state_dict()
    # FIR filters are constants rebuilt from the constructor; files may omit them.
    missing = [k for k in expected if k not in ckpt.state and not k.endswith("resample_filter")]
    unexpected = [k for k in ckpt.state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensor(s), e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s), e.g. {', '.join(unexpected[:3])}")
        raise CheckpointError("does not match a StyleGAN2 generator of its own configuration: " + "; ".join(parts),
                              where, "is it a StyleGAN3 or a modified network?")
    for name, tensor in ckpt.state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(f"tensor {name} has shape {list(tensor.shape)}, the configuration needs "
                                  f"{list(expected[name].shape)}", where)
    G.load_state_dict({**expected, **{k: v.to(torch.float32) for k, v in ckpt.state.items()}})
    return G.eval().requires_grad_(False)


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """Load any supported checkpoint (format detected from its content) into a ``Generator`` on ``device``.

    The returned module carries ``G.info`` (a ``ModelInfo``). Nothing in the file is executed.
    """
    path = Path(path).expanduser()
    ckpt = read_checkpoint(path)
    G = build_generator(ckpt, path)
    G.info = ModelInfo(path=str(path), format=ckpt.format, sha256=file_sha256(path), metadata=dict(ckpt.metadata))
    return G.to(device)
