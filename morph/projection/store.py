"""The projection cache: one ``.npz`` per (photo bytes, model file hash, settings) under ``<cache>/projections/``,
written atomically and sealed, verified before reuse; a damaged entry is reported, removed and projected again.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from morph.core.arrays import read_arrays
from morph.core.cache import PROJECTIONS, folder, reusable, seal
from morph.core.errors import MorphError
from morph.core.files import atomic_path, file_sha256
from morph.projection.optimiser import Projection, Recipe

# Bump when a change to the optimisation alters results, so old cached projections are not reused.
PROJECTION_VERSION = "1"


@dataclass(frozen=True)
class Settings:
    """Everything besides the photo and the model that decides a projection (part of the cache key)."""

    space: str = "w+"
    steps: int = 1000
    align: bool = True
    face: Optional[int] = None
    loss: str = "auto"              # auto: the model's default_loss (morph.projection.losses); "lpips" with --vgg
    vgg: tuple[str, ...] = ()       # sha256 of each --vgg file, filled in by project.resolve_settings
    seed: int = 303
    recipe: Recipe = field(default_factory=Recipe)
    encoder: str = ""               # sha256 of the encoder file that gave the first guess ("": start at w_avg)
    coarse: int = -1                # resolution of the coarse stage; -1: optimiser.coarse_plan picks, 0: none
    identity: str = ""              # sha256 of the ArcFace file whose identity term joins the distance ("": none)
    identity_weight: float = 0.0    # the weight of that term, 1 − cosine similarity of the ArcFace features

    def key(self, image_sha256: str, model_sha256: str) -> str:
        """The cache key of this projection of the photo and model with these file hashes. Without an identity
        term its fields are left out, so projections cached before the term existed keep their keys."""
        fields = asdict(self)
        if not self.identity:
            del fields["identity"], fields["identity_weight"]
        head = json.dumps({"version": PROJECTION_VERSION, "image": image_sha256, "model": model_sha256,
                           **fields}, sort_keys=True)
        return hashlib.sha256(head.encode()).hexdigest()


def cache_path(image: str | os.PathLike, model_sha256: str, settings: Settings, cache_dir: Optional[Path]) -> Path:
    """Where the projection of ``image`` with these settings is cached (``<cache>/projections/KEY.npz``)."""
    key = settings.key(file_sha256(image), model_sha256)
    return folder(PROJECTIONS, cache_dir) / f"{key}.npz"


def save_projection(path: Path, p: Projection) -> None:
    """Write ``p`` to ``path`` atomically and seal it (the record :func:`load_projection` verifies)."""
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, w=p.w.numpy(), target=p.target, history=p.history.numpy(),
                 **{f"noise{k}": n.numpy() for k, n in enumerate(p.noise)})
    seal(path)


def load_projection(path: Path) -> Optional[Projection]:
    """The cached projection at ``path``, or None when there is none whole (a damaged one is reported and
    removed, so it is projected again)."""
    if not reusable(path, label="projection"):
        return None
    try:
        data = read_arrays(path)  # headers and member sizes checked before anything is inflated
        count = sum(name.startswith("noise") for name in data)
        return Projection(torch.from_numpy(data["w"]), [torch.from_numpy(data[f"noise{k}"]) for k in range(count)],
                          data["target"], torch.from_numpy(data["history"]))
    except (MorphError, OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


__all__ = ["PROJECTION_VERSION", "Settings", "cache_path", "load_projection", "save_projection"]
