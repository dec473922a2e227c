"""Outputs of ``morph project``: per photo the latent (``.npy``), its noise maps by layer (``.noise.npz``), the
side-by-side PNG (photo | projection, labelled) with its figures captioned and in ``.json``, and optionally the optimisation as a video."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from morph.core.files import atomic_path
from morph.projection.optimiser import Projection, synthesize
from morph.render.caption import add_caption, describe, text_size
from morph.render.encode import EncodeSettings, SegmentWriter
from morph.render.images import grid, still_text, write_png


def write_outputs(G, image: str | os.PathLike, p: Projection, recon: np.ndarray, out: Path,
                  video: bool = False, figures: Optional[dict] = None) -> list[Path]:
    """``NAME.npy`` (the latent), ``NAME.noise.npz`` (noise maps by layer; not for a model without noise
    inputs), ``NAME.png`` (target | ``recon``, the reconstruction), with ``figures``
    (:func:`morph.projection.quality.figures`' row) captioned under it and written to ``NAME.json``, and, with
    ``video``, ``NAME.mp4`` (the reconstruction at each kept optimisation step)."""
    name = Path(image).stem
    written = [out / f"{name}.npy"]
    with atomic_path(written[-1]) as tmp, open(tmp, "wb") as fh:
        np.save(fh, p.w.numpy())
    if p.noise:
        written.append(out / f"{name}.noise.npz")
        with atomic_path(written[-1]) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **{layer: n.numpy() for layer, n in zip(G.noise_maps(), p.noise)})
    side = grid(_rgb(np.stack([p.target, recon])), cols=2, labels=["photo", "projection"])
    if figures:
        side = add_caption(side, describe(figures).split(", "), text_size(recon.shape[1]))
    written.append(out / f"{name}.png")
    with atomic_path(written[-1]) as tmp:
        write_png(tmp, side, still_text(G.info.path, G.info.sha256, f"photo {Path(image).name}, projected",
                                        latent=written[0].name))
    if figures:
        written.append(out / f"{name}.json")
        with atomic_path(written[-1]) as tmp:
            tmp.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    if video:
        frames = synthesize(G, [Projection(w, p.noise, p.target, p.history) for w in p.history])
        size = max(256, G.img_resolution)  # a video player's minimum; resolutions are powers of two (even)
        written.append(out / f"{name}.mp4")
        with SegmentWriter(written[-1], EncodeSettings(format="mp4", fps=10, size=size), G.img_resolution) as wr:
            wr.write(_rgb(frames))
    return written


def _rgb(images: np.ndarray) -> np.ndarray:
    """Grey images [N, H, W, 1] as RGB (PNG grids and videos take three channels)."""
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


__all__ = ["write_outputs"]
