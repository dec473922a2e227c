"""Pictures of the built-in model for the README and the demo scene.

``python -m morph.training.figures [--model builtin] [--docs docs] [--team scenes/team]``

* ``docs/samples.png``: random samples of the generator (ψ = 1), 2× enlarged;
* ``docs/style-mixing.png``: StyleGAN's figure: the top row gives the fine styles (colours),
  the left column the coarse ones (pose, shape, expression); each cell is coarse(row) + fine(column);
* ``docs/interpolation.png``: slerp between seeds, and truncation from ψ = 1 to 0 (the median face);
* ``scenes/team/<name>.png``: the six team members drawn by the *renderer* (not the generator)
  at the model's resolution, and ``scenes/team/large/<name>.png`` at 256 px;
* ``docs/wide.png``: a keyframe of the demo's 16:9 render (``team-wide``), the network drawing the wider frame.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from morph.core.model import images_to_uint8
from morph.motion.schedule import slerp
from morph.render.images import still_text
from morph.training.latent import LATENT_DIM, MIX_CUTOFF
from morph.training.toyfaces import TEAM_NAMES, grid, render, team_params, write_png


def enlarge(image: np.ndarray, k: int) -> np.ndarray:
    return image.repeat(k, 0).repeat(k, 1)


def _u8(img: torch.Tensor) -> np.ndarray:
    return images_to_uint8(img).numpy()


def _z(seed: int, n: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, LATENT_DIM)).astype(np.float32))


@torch.no_grad()
def samples_figure(G, n: int = 32, cols: int = 8, seed: int = 1) -> np.ndarray:
    return grid(_u8(G(_z(seed, n), None, noise_mode="const")), cols)


@torch.no_grad()
def mixing_figure(G, rows: int = 4, cols: int = 6, cutoff: int = MIX_CUTOFF, seed: int = 2) -> np.ndarray:
    """Top-left blank, first row the fine-style sources, first column the coarse-style sources."""
    za, zb = _z(seed, rows), _z(seed + 1000, cols)
    wa, wb = G.mapping(za, None), G.mapping(zb, None)
    img_a, img_b = _u8(G.synthesis(wa, noise_mode="const")), _u8(G.synthesis(wb, noise_mode="const"))
    r = G.img_resolution
    tiles = [np.full((r, r, 3), 255, np.uint8)] + list(img_b)
    for i in range(rows):
        ws = torch.cat([wa[i:i + 1, :cutoff].expand(cols, -1, -1), wb[:, cutoff:]], dim=1)
        tiles += [img_a[i]] + list(_u8(G.synthesis(ws, noise_mode="const")))
    return grid(np.stack(tiles), cols + 1)


@torch.no_grad()
def interpolation_figure(G, steps: int = 10, seed: int = 3) -> np.ndarray:
    z = _z(seed, 4)
    t = torch.linspace(0, 1, steps)[:, None]
    rows = [_u8(G(slerp(z[0:1], z[1:2], t), None, noise_mode="const")),
            _u8(G(slerp(z[2:3], z[3:4], t), None, noise_mode="const"))]
    for zi in z[:2]:
        ws = G.mapping(zi[None].expand(steps, -1), None)
        psi = torch.linspace(1, 0, steps)[:, None, None]
        w_avg = G.mapping.w_avg
        rows.append(_u8(G.synthesis(w_avg + psi * (ws - w_avg), noise_mode="const")))
    return grid(np.concatenate(rows), steps)


def write_team(folder: Path, size: int, large: int = 256) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "large").mkdir(exist_ok=True)
    written = []
    params = team_params()
    for s, where in ((size, folder), (large, folder / "large")):
        for name, img in zip(TEAM_NAMES, render(params, s)):
            write_png(where / f"{name}.png", img)
            written.append(where / f"{name}.png")
    return written


def wide_figure(scene: Path, render: str = "team-wide", keyframe: int = 3,
                cache_dir: Optional[Path] = None) -> np.ndarray:
    """A keyframe of the demo's 16:9 render (default: chen) as ``morph render`` draws it, scaled to the
    render's frame with Lanczos as the encoder scales it (``docs/wide.png``)."""
    from morph.engine.scenes import open_scene
    from morph.studio.frames import resize

    loaded = open_scene(scene, torch.device("cpu"), cache_dir, quiet=True)
    r = loaded.scene.renders[render]
    frame = loaded.frames(render, [loaded.timelines[render].keyframes[keyframe]], torch.device("cpu"))[0]
    return resize(frame, (r.canvas.width, r.canvas.height))


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m morph.training.figures", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin", help="generator: 'builtin' or a checkpoint file")
    ap.add_argument("--docs", type=Path, default=Path("docs"))
    ap.add_argument("--team", type=Path, default=Path("scenes/team"))
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from morph.models.loader import load_model

    G = load_model(args.model)
    args.docs.mkdir(parents=True, exist_ok=True)
    figures = {"samples.png": enlarge(samples_figure(G), 2), "style-mixing.png": enlarge(mixing_figure(G), 2),
               "interpolation.png": enlarge(interpolation_figure(G), 2)}
    for name, image in figures.items():
        write_png(args.docs / name, image, still_text(args.model, G.info.sha256, f"{name}: seeded z, figures.py"))
        print(f"wrote {args.docs / name} ({image.shape[1]}x{image.shape[0]})")
    team = write_team(args.team, G.img_resolution)
    print(f"wrote {len(team)} team photos under {args.team}")
    if args.model == "builtin":  # the demo scene is drawn by the built-in model
        image = wide_figure(args.team.parent / "team.yaml")
        write_png(args.docs / "wide.png", image)
        print(f"wrote {args.docs / 'wide.png'} ({image.shape[1]}x{image.shape[0]})")


if __name__ == "__main__":
    main()
