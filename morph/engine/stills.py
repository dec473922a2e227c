"""Still images from scenes and models: frames at a render's output size, preview sheets, samples to label,
direction strips. What ``morph preview``, ``morph sample``, ``morph directions show`` and ``morph.frames``
do, kept out of the front ends so the command line and the Python API share it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from morph.builtin import load_builtin_classifier
from morph.core.errors import MorphError
from morph.core.files import atomic_path, file_sha256
from morph.core.model import Noise
from morph.core.progress import Progress, warn
from morph.directions import (
    LATENTS_FILE,
    SCORES_FILE,
    Z_FILE,
    map_batches,
    read_meta,
    save_array,
    seeds_z,
    strength_sweep,
    w_images,
)
from morph.engine.scenes import LoadedScene
from morph.models.loader import load_model
from morph.models.resolver import resolve_direction
from morph.motion.latents import load_w, seed_w
from morph.render.caption import add_caption, text_size
from morph.render.encode import EncodeSettings, ffmpeg_exe
from morph.render.images import grid, still_text, write_png
from morph.render.job import generate
from morph.render.plot import COLOURS, curve_panel


def frames_at_size(loaded: LoadedScene, name: str, indices: Sequence[int], device: torch.device,
                   batch_size: int = 8) -> np.ndarray:
    """Frames ``indices`` of render ``name`` as uint8 [N, H, W, 3] at the render's output size: drawn as the
    render draws them, then scaled by ffmpeg with the render's Lanczos filter."""
    if name not in loaded.scene.renders:
        raise MorphError(f"no render named {name!r}", loaded.path,
                         f"the scene has {', '.join(loaded.scene.renders)}")
    r = loaded.scene.renders[name]
    bad = [i for i in indices if not 0 <= int(i) < r.frames]
    if bad:
        raise MorphError(f"frame {bad[0]} is outside render {name!r}", loaded.path,
                         f"it has frames 0 to {r.frames - 1}")
    images = loaded.frames(name, indices, device, batch_size)
    width, height = EncodeSettings(size=r.size, canvas=r.canvas).frame()
    n, h, w, _ = images.shape
    if (w, h) == (width, height):
        return images
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                           "-s", f"{w}x{h}", "-i", "-", "-vf", f"scale={width}:{height}:flags=lanczos",
                           "-sws_flags", "lanczos+accurate_rnd+full_chroma_int+full_chroma_inp",
                           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                          input=np.ascontiguousarray(images).tobytes(), capture_output=True)
    if proc.returncode != 0:
        raise MorphError(f"ffmpeg could not scale the frames ({proc.stderr.decode(errors='replace').strip()[:200]})",
                         loaded.path)
    return np.frombuffer(proc.stdout, np.uint8).reshape(n, height, width, 3).copy()


def write_previews(loaded: LoadedScene, out: Path, frames: int, device: torch.device) -> list[tuple[Path, str]]:
    """A PNG contact sheet per render in ``out/NAME-preview.png``: its keyframes on top, ``frames`` evenly
    spaced frames below, each named under it, and under them the gains of the waves that follow a sound, on a
    frame axis. Returns each sheet with a line describing it."""
    written = []
    renders = list(loaded.timelines.items())
    progress = Progress("preview", len(renders), unit="sheets")
    digest = loaded.digest or file_sha256(loaded.path)
    for name, tl in renders:
        keys = list(tl.keyframes)
        names = loaded.scene.renders[name].motion.path.keys
        key_labels = list(names) if len(names) == len(keys) else [f"key {i + 1}" for i in range(len(keys))]
        spaced = np.linspace(0, tl.frames - 1, num=max(1, frames)).round().astype(int).tolist()
        row = max(len(keys), len(spaced))
        pick = keys + [keys[-1]] * (row - len(keys)) + spaced + [spaced[-1]] * (row - len(spaced))
        images = loaded.frames(name, pick, device)
        blank = np.full_like(images[0], 255)
        images[len(keys):row] = blank  # pad the keyframe row with white
        images[row + len(spaced):] = blank
        labels = [*key_labels, *[""] * (row - len(keys)), *[f"frame {f}" for f in spaced], *[""] * (row - len(spaced))]
        dest = out / f"{name}-preview.png"
        sheet = grid(images, cols=row, labels=labels)
        following = [w for w in tl.waves if w.envelope is not None]
        curves = ""
        if following:  # the gains each following wave reads from the sound, under the sheet
            sheet = np.concatenate([sheet, curve_panel([w.envelope.numpy() for w in following], sheet.shape[1],
                                                       marks=keys, labels=[f"{w.label}: gain" for w in following],
                                                       size=text_size(images.shape[2]))])
            curves = "".join(f"; curve {i + 1} (rgb{COLOURS[i % len(COLOURS)]}): {w.label}"
                             for i, w in enumerate(following))
        text = still_text(loaded.scene.model, loaded.G.info.sha256, f"render {name} of {loaded.path.name}: keyframes "
                          f"{', '.join(key_labels)}; frames {', '.join(map(str, spaced))} of {tl.frames}",
                          scene=f"{loaded.path} sha256:{digest}")
        with atomic_path(dest) as tmp:
            write_png(tmp, sheet, text)
        written.append((dest, f"{len(keys)} keyframes (top), {len(spaced)} of {tl.frames} frames (bottom){curves}"))
        progress.advance(1)
    progress.close()
    return written


@dataclass(frozen=True)
class Samples:
    """What :func:`sample` wrote into its folder."""
    folder: Path
    count: int
    images: int                 # PNGs written (0 with images=False)
    scored: tuple[str, ...]     # attributes in scores.npz


def sample(model: str, n: int, out: Path, truncation: float = 1.0, seed: int = 0, classifier: Optional[str] = None,
           images: bool = True, device: torch.device = torch.device("cpu"), batch_size: int = 32) -> Samples:
    """Sample latents to label: ``latents.npy`` (W, [N, w_dim]) and ``z.npy`` in ``out``, images named by index
    to sort by hand, and with ``classifier="builtin"`` the attribute scores (``scores.npz``)."""
    if classifier not in (None, "builtin"):
        raise MorphError(f"unknown classifier {classifier!r}", "--classifier", "the one available is builtin")
    G = load_model(model, device)
    if G.c_dim:
        raise MorphError("sampling conditional models is not supported", "--model")
    z = seeds_z(seed, n, G.z_dim)
    w = np.concatenate(list(map_batches(G, z, truncation)))
    out.mkdir(parents=True, exist_ok=True)
    save_array(out / Z_FILE, z)
    save_array(out / LATENTS_FILE, w, {"model": str(model), "model_sha256": G.info.sha256, "space": "w", "count": n,
                                       "seed": seed, "truncation": truncation, "num_ws": G.num_ws, "w_dim": G.w_dim})
    scores: dict[str, list] = {}
    if images or classifier:
        clf = None
        if classifier:
            clf = load_builtin_classifier(device)
        progress = Progress("sample", n, unit="images" if images else "scores")
        done = 0
        for frames in w_images(G, w, batch_size, device):
            if clf is not None:
                for name, value in clf.predict(frames).items():
                    if name in clf.attributes or name in clf.continuous:
                        scores.setdefault(name, []).append(value)
            for i, frame in enumerate(frames, start=done) if images else ():
                with atomic_path(out / f"{i:06d}.png") as tmp:
                    write_png(tmp, frame, still_text(model, G.info.sha256, f"seed {seed + i}, truncation {truncation:g}",
                                                     sample=str(i)))
            done += len(frames)
            progress.advance(len(frames))
        progress.close()
    if scores:
        with atomic_path(out / SCORES_FILE) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{name: np.concatenate(parts) for name, parts in scores.items()})
    return Samples(out, n, n if images else 0, tuple(scores))


def strip_name(spec: str) -> str:
    """The file stem a direction's strip is named by: ``builtin:smile`` → ``builtin-smile``, a file → its
    stem, so a shipped direction and a file of the same name never write the same PNG."""
    return spec.replace(":", "-") if spec.startswith("builtin:") else Path(spec).stem


def direction_strip(direction: str, latent: str, model: str, out: Path, strengths: np.ndarray,
                    truncation: float = 1.0, device: torch.device = torch.device("cpu")) -> Path:
    """``out/NAME-strip.png``: one face (a seed number or a latent file) moved along a direction at each of
    ``strengths``. Returns the PNG's path."""
    path = resolve_direction(direction)
    G = load_model(model, device)
    trained_on = read_meta(path).get("model_sha256")
    if trained_on and trained_on != G.info.sha256:
        warn(f"warning: {path} was trained on another model (sha256 {trained_on[:12]}, this one {G.info.sha256[:12]})")
    d = load_w(path, G.num_ws, G.w_dim)
    seeded = latent.lstrip("-").isdigit()
    w = seed_w(G, int(latent), truncation) if seeded else load_w(latent, G.num_ws, G.w_dim)
    images = np.concatenate(list(generate(G, strength_sweep(w, d, strengths), 8, Noise("const"), device)))
    source = f"seed {int(latent)}, truncation {truncation:g}" if seeded else f"latent {latent}"
    strip = grid(images, cols=len(strengths), labels=[f"{s:+g}" if s else "0" for s in strengths])
    strip = add_caption(strip, [f"{direction} on {source}; strength under each face"], text_size(images.shape[2]))
    dest = out / f"{strip_name(direction)}-strip.png"
    with atomic_path(dest) as tmp:
        write_png(tmp, strip, still_text(model, G.info.sha256, source, direction=f"{direction} ({path})",
                                         strengths=", ".join(f"{s:g}" for s in strengths)))
    return dest


__all__ = ["Samples", "direction_strip", "frames_at_size", "sample", "strip_name", "write_previews"]
