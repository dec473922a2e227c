"""Wide frames, measured: seams where StyleGAN2's widened constant meets the learned one, how close the
square image's region of a wide frame stays to the square render (StyleGAN2's built-in model, tiny random
StyleGAN3s), and what widening costs per frame.

A seam is a column gap that steps harder than its neighbours: each gap's mean |horizontal step| over the
mean of the three gaps either side ("spike", 1 for a smooth image). The gaps where the mirrored cells
meet the learned ones are compared with every gap of the frame, for mirroring (morph's choice) and tiling.

    python bench/wide.py [--seeds 48] [--threads 1] [--scene scenes/team.yaml --cache ~/.cache/morph]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

import morph.stylegan2.networks as networks
from morph.models.loader import load_model


def spikes(frames: np.ndarray) -> np.ndarray:
    """uint8 or float frames [N, H, W, C] → spike of every column gap, averaged over the frames."""
    g = np.abs(np.diff(frames.astype(np.float32), axis=2)).mean(axis=(1, 3))
    return np.array([(g[:, b] / np.concatenate([g[:, b - 3:b], g[:, b + 1:b + 4]], 1).mean(1)).mean()
                     for b in range(3, g.shape[1] - 3)])


def _listed(values: np.ndarray) -> str:
    return ", ".join(f"{x:.3f}" for x in values)


def seams(G, seeds: int) -> None:
    torch.manual_seed(0)
    ws = G.mapping(torch.randn(seeds, G.z_dim), None, truncation_psi=0.7)
    mirror = networks.mirror_indices
    r = G.img_resolution
    for name, index in (("mirror", mirror), ("tile", lambda n, extra: torch.arange(-extra, n + extra) % n)):
        networks.mirror_indices = index
        with torch.no_grad():
            img = G.synthesize(ws, canvas=(2 * r, r)).permute(0, 2, 3, 1).numpy()
        s = spikes(img)
        at = s[[r // 2 - 1 - 3, 3 * r // 2 - 1 - 3]]  # the gaps before columns R/2 and 3R/2 (8 cells drawn)
        print(f"{name:>6}: seam spikes {_listed(at)}, all gaps mean {s.mean():.3f} p90 "
              f"{np.percentile(s, 90):.3f} ({seeds} seeds, {2 * r}x{r})")
    networks.mirror_indices = mirror


def closeness(G, seeds: int) -> None:
    torch.manual_seed(1)
    ws = G.mapping(torch.randn(seeds, G.z_dim), None, truncation_psi=0.7)
    r = G.img_resolution
    with torch.no_grad():
        square = G.synthesize(ws)
        start = time.perf_counter()
        square = G.synthesize(ws)
        t_square = time.perf_counter() - start
        canvas = (round(r * 16 / 9), r)
        start = time.perf_counter()
        wide = G.synthesize(ws, canvas=canvas)
        t_wide = time.perf_counter() - start
    left = (canvas[0] - r) // 2
    d = wide[..., left:left + r] - square
    other = (square - square.roll(1, 0)).abs().mean()
    psnr = 10 * torch.log10(4 / d.square().mean())
    print(f"square region of a {canvas[0]}x{canvas[1]} frame vs the square render: mean |diff| "
          f"{d.abs().mean() * 127.5:.2f} levels of 255, {d.abs().mean() / other:.1%} of two faces' difference, "
          f"PSNR {psnr:.1f} dB; time per frame {t_wide / t_square:.2f}x the square's")


def stylegan3(seeds: int) -> None:
    """A tiny random SG3 (32 px) of each config: the square's region of a 2:1 and a 2:3 frame against the square."""
    from morph.stylegan3 import Generator

    for name, config in (("T", {}), ("R", dict(conv_kernel=1, use_radial_filters=True))):
        torch.manual_seed(1)
        G = Generator(z_dim=16, w_dim=16, c_dim=0, img_resolution=32, img_channels=3, channel_base=256,
                      channel_max=16, **config).eval()
        ws = G.mapping(torch.randn(seeds, 16), None, truncation_psi=0.7).double()
        with torch.no_grad():
            square = G.synthesize(ws, dtype=torch.float64)
            wide = G.synthesize(ws, dtype=torch.float64, canvas=(64, 32))[..., 16:48]
            tall = G.synthesize(ws, dtype=torch.float64, canvas=(32, 48))[..., 8:40, :]
        peak = square.abs().max()
        for shape, region in (("64x32", wide), ("32x48", tall)):
            d = (region - square).abs()
            print(f"SG3-{name} {shape}: square region max |diff| {d.max() / peak:.2e} of the image's peak, inner half "
                  f"{d[..., 8:24, 8:24].max() / peak:.2e}")


def demo(scene: Path, cache: Optional[Path]) -> None:
    from morph.engine.scenes import open_scene

    loaded = open_scene(scene, torch.device("cpu"), cache, quiet=True)
    name = next(n for n, r in loaded.scene.renders.items() if r.canvas and r.canvas.fit == "widen")
    frames = loaded.frames(name, range(0, loaded.scene.renders[name].frames, 5), torch.device("cpu"))
    r, w = loaded.G.img_resolution, frames.shape[2]
    drawn = r * networks.canvas_cells((w, r), r)[1] // networks.CONST_SIZE
    cut = (drawn - w) // 2
    s = spikes(frames)
    at = s[[(drawn - r) // 2 - cut - 1 - 3, (drawn + r) // 2 - cut - 1 - 3]]
    print(f"{scene} {name}: {len(frames)} frames at {w}x{r}, seam spikes {_listed(at)}, all gaps mean "
          f"{s.mean():.3f} p90 {np.percentile(s, 90):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scene", type=Path, default=None, help="also measure a scene's widened render")
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    G = load_model("builtin", torch.device("cpu"))
    seams(G, args.seeds)
    closeness(G, args.seeds)
    stylegan3(min(args.seeds, 8))
    if args.scene:
        demo(args.scene, args.cache)


if __name__ == "__main__":
    main()
