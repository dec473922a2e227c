"""Photos → latents as files: what ``morph project`` and ``morph.project`` do, in one place.

Each photo is projected (or read back from the cache), its reconstruction drawn, its figures measured, and
NAME.npy, NAME.noise.npz, NAME.png and NAME.json written into the output folder. A square photo at the
model's own resolution is taken as an already aligned face, exactly as a scene takes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from morph.core.arrays import require_finite
from morph.core.errors import MorphError
from morph.core.progress import log
from morph.models.loader import load_model
from morph.models.resolver import is_builtin_file, resolve_vgg
from morph.motion.latents import SPACES
from morph.projection import REFINE_STEPS, SCENE_STEPS, Settings, project_photos, synthesize, write_outputs
from morph.projection.arcface import load_arcface
from morph.projection.encoder import encoder_for
from morph.projection.quality import figures
from morph.projection.tuning import TuneSettings, tuned_model, write_tuned
from morph.render.images import read_image


@dataclass(frozen=True)
class Projected:
    """One photo's result: its figures (PSNR, LPIPS, …) and the files written."""
    photo: Path
    figures: dict
    files: list[Path]


def project_files(photos: Sequence[Path], model: str = "builtin", out: Path = Path("outputs/projected"),
                  space: str = "w+", steps: Optional[int] = None, encoder: str = "auto",
                  coarse: Optional[int] = None, video: bool = False, align: Optional[bool] = None,
                  face: Optional[int] = None, vgg: Sequence[Path] = (), device: torch.device = torch.device("cpu"),
                  cache_dir: Optional[Path] = None, quiet: bool = False, identity: Optional[Path] = None,
                  tune_steps: int = 0, identity_weight: float = 0.0) -> list[Projected]:
    """Project ``photos`` onto ``model`` and write each one's files into ``out``. ``align`` None: align each
    photo unless it is square at the model's resolution; True / False: align all or none. ``identity``: ArcFace
    IR-SE50 weights to measure identity with (else dlib's descriptors); ``identity_weight`` > 0 also adds
    identity on them to the refinement's distance (see :mod:`morph.projection.project`). ``tune_steps`` > 0: then
    pivotal-tune one generator for all the photos (cached), write it as ``out/tuned.safetensors``, and report the
    tuned network's figures with the untuned ones under ``*_before_tuning``."""
    photos = [Path(p) for p in photos]
    if space not in SPACES:
        raise MorphError(f"unknown space {space!r}", "--space", "use w+ or w")
    stems: dict[str, Path] = {}
    for image in photos:
        if not image.is_file():
            raise MorphError("no such file", image)
        if stems.setdefault(image.stem, image) != image:
            raise MorphError(f"{stems[image.stem]} and {image} would both write {image.stem}.*", "--out",
                             "rename one of them, or project them in separate runs with different --out")
    G = load_model(model, device, cache_dir=cache_dir)
    enc = encoder_for(G, encoder)
    steps = steps if steps is not None else (REFINE_STEPS if enc is not None else SCENE_STEPS)
    if steps == 0 and enc is None:
        raise MorphError("--steps 0 keeps the encoder's guess, but there is no encoder", "--steps",
                         "give --encoder PATH (morph encoder train), or at least one step")
    res = G.img_resolution
    aligns = [align if align is not None else read_image(p).shape[:2] != (res, res) for p in photos]
    vgg_files = resolve_vgg(vgg, cache_dir, quiet)
    results: list = [None] * len(photos)
    for group in (True, False):  # aligned and already-aligned photos: one projection call each
        picked = [i for i, a in enumerate(aligns) if a == group]
        if not picked:
            continue
        settings = Settings(space=space, steps=steps, align=group, face=face, coarse=-1 if coarse is None else coarse,
                            identity_weight=identity_weight)
        for i, p in zip(picked, project_photos([photos[i] for i in picked], G, settings, vgg_files, cache_dir,
                                               quiet=quiet, encoder=enc, arcface=identity)):
            results[i] = p
    for photo, p in zip(photos, results):  # a diverged stage (a damaged encoder, a NaN step) ends here, not in a file
        require_finite(p.w.detach().cpu().numpy(), photo, "latent value")
    arcface = None
    if identity is not None:
        arcface = load_arcface(identity)

    def measure(G) -> tuple[torch.Tensor, list[dict]]:
        recon = synthesize(G, results)
        rows: list = [None] * len(photos)
        for group in (True, False):
            picked = [i for i, a in enumerate(aligns) if a == group]
            if picked:
                measured = figures(np.stack([results[i].target for i in picked]), recon[picked],
                                   is_builtin_file(G.info.path), vgg_files, real=group, arcface=arcface)
                for i, row in zip(picked, measured):
                    rows[i] = row
        return recon, rows

    recon, rows = measure(G)
    extra: dict = {}
    if tune_steps > 0:  # the figures become the tuned network's; the untuned ones stay under *_before_tuning

        G, tuned_path = tuned_model(G, results, TuneSettings(steps=tune_steps), vgg_files, cache_dir, quiet)
        before = rows
        recon, rows = measure(G)
        rows = [t | {f"{k}_before_tuning": v for k, v in r.items() if k in ("psnr", "lpips", "identity")}
                for t, r in zip(rows, before)]
        written = write_tuned(tuned_path, out)
        extra = {"tune_steps": tune_steps, "tuned_model": str(written)}
        if not quiet:
            log(f"tuned generator for {len(results)} photos -> {written} (use it as --model / model:)")
    done = []
    for i, row in enumerate(rows):
        row |= {"steps": steps, "space": space, "encoder": enc.path if enc is not None else None,
                "identity_weight": identity_weight, **extra}
        done.append(Projected(photos[i], row, write_outputs(G, photos[i], results[i], recon[i], out, video,
                                                            figures=row)))
    return done


__all__ = ["Projected", "project_files"]
