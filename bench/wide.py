"""Wide frames, measured: face parts at the sides of a widened frame, seams where the widened constant meets
the learned one, how close the square image's region stays to the square render, StyleGAN3's wider grid, and
what widening costs per frame. Every widening is run in the one call, so the figures compare like with like.

Widenings (StyleGAN2): ``blend`` is morph's (a drawing from the constant mirrored out and one from a
background-only constant, the background drawing taking over outside the square after every block up to 32 px;
see ``SynthesisNetwork._widened``); ``previous`` is issue 31's first widening (the mirrored constant fading into
the background fill from its second added cell, the two drawings blended once, after the 16 px block, by a
smoothstep one cell wide); ``mirror`` the constant mirrored out alone (morph before issue 31); ``fill`` the
learned constant surrounded by the mean of its corner cells (the border statistics) alone; ``tile`` the
constant tiled.

Face parts at the sides: a 16:9 frame at the model's scale (114x64 for the built-in model) has two side
strips beside the square; each is cut into bands an eighth of the square wide (8 px), rows above the
shoulders (the top three quarters). A band's *structure* is the RMS (levels of 255) of what is left of each
colour channel after the least-squares plane through it: the procedural faces' background is a linear
gradient, so background leaves little, a head's outline or a blob of hair a lot. The background-only
reference is the same measure on the same bands of the frame the network draws, for the same latent and the
same noise, from the background constant alone (no learned cell, so no face anywhere: a plain background in
the latent's colours). Its 95th percentile is the line above which a side band counts as holding more than
background. As the share above that line moves by a whole band per six photos, each band is also compared
with the same band of its own reference frame (same latent, same noise): the mean excess, and the share of
bands more than one level above theirs. A plane per 8 px band takes up a soft stripe of light or shade along
the square's edge, so *bend* measures that: the RMS (levels) of each side's column profile (the mean of each
column's rows above the shoulders, per channel, from the frame's edge to 4 px into the square) about a line.

A seam is a column gap that steps harder than its neighbours: each gap's mean |horizontal step| over the
mean of the three gaps either side ("spike", 1 for a smooth image), at the gaps where the added cells meet
the learned ones against every gap of the frame.

    python bench/wide.py [--seeds 100] [--threads 1] [--scene scenes/team.yaml --cache ~/.cache/morph]
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

import morph.stylegan2.networks as networks
from morph.core.model import Noise
from morph.models.loader import load_model

WIDENINGS = ("blend", "previous", "mirror", "fill", "tile")


def fading(const: torch.Tensor, cells: tuple[int, int]) -> torch.Tensor:
    """``previous``'s constant: mirrored out, the added cells fading into the background fill from the second one
    out (half way there, then all the way)."""
    def fade(n: int, k: int) -> torch.Tensor:  # per index: 0 on the learned cells and the first added one
        i, first = torch.arange(k), (k - n) // 2
        return ((torch.maximum(first - i, i - (first + n - 1)) - 1) / 2).clamp(0, 1)
    share = torch.maximum(fade(const.shape[1], cells[0])[:, None], fade(const.shape[2], cells[1])[None, :])
    return torch.lerp(networks.mirrored_constant(const, cells), networks.background_constant(const, cells), share)


def previous(self, first: list, cells: tuple[int, int], draw) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``SynthesisNetwork._widened`` of issue 31's first widening: :func:`fading` and the background constant drawn
    up to the 16 px block, blended there by a smoothstep from the square's edge to one cell out."""
    upto = [step for step in first if step[0].resolution <= 16]
    x, img = draw(upto, const=fading(self.b4.const, cells))
    x_bg, img_bg = draw(upto, const=networks.background_constant(self.b4.const, cells))
    weight = networks.background_weight(cells, upto[-1][0].resolution, 0.0, 1.0)
    x, img = torch.lerp(x, x_bg, weight), None if img is None else torch.lerp(img, img_bg, weight)
    return draw(first[len(upto):], x, img)


def surrounded(const: torch.Tensor, cells: tuple[int, int]) -> torch.Tensor:
    """The learned constant at the centre of ``cells``, every added cell the mean of its corner cells."""
    out = networks.background_constant(const, cells).clone()
    top, left = (cells[0] - const.shape[1]) // 2, (cells[1] - const.shape[2]) // 2
    out[:, top:top + const.shape[1], left:left + const.shape[2]] = const
    return out


@contextlib.contextmanager
def widening(name: str) -> Iterator[None]:
    """Draw canvases with widening ``name`` (see the module's docstring; ``reference``: the background-only
    frame) while inside: ``previous`` as :func:`previous` draws, the others draw the first blocks once, from their
    own constant."""
    widened, mirror = networks.SynthesisNetwork._widened, networks.mirror_indices
    constant = {"mirror": networks.mirrored_constant, "tile": networks.mirrored_constant, "fill": surrounded,
                "reference": networks.background_constant}.get(name)
    if name == "previous":
        networks.SynthesisNetwork._widened = previous
    if constant is not None:
        networks.SynthesisNetwork._widened = lambda self, first, cells, draw: draw(first, const=constant(self.b4.const,
                                                                                                           cells))
    if name == "tile":
        networks.mirror_indices = lambda n, extra: torch.arange(-extra, n + extra) % n
    try:
        yield
    finally:
        networks.SynthesisNetwork._widened, networks.mirror_indices = widened, mirror


def spikes(frames: np.ndarray) -> np.ndarray:
    """uint8 or float frames [N, H, W, C] → spike of every column gap, averaged over the frames."""
    g = np.abs(np.diff(frames.astype(np.float32), axis=2)).mean(axis=(1, 3))
    return np.array([(g[:, b] / np.concatenate([g[:, b - 3:b], g[:, b + 1:b + 4]], 1).mean(1)).mean()
                     for b in range(3, g.shape[1] - 3)])


def structure(img: torch.Tensor, starts: list[int], width: int) -> np.ndarray:
    """Images [N, C, H, W] in [-1, 1] → [N, bands] RMS residual (levels of 255) of each band of ``width``
    columns starting at ``starts``, rows above the shoulders, about its own least-squares plane per channel."""
    rows = img.shape[2] * 3 // 4
    yy, xx = np.mgrid[:rows, :width]
    a = np.stack([np.ones(rows * width), yy.ravel(), xx.ravel()], 1)
    out = []
    for c0 in starts:
        band = img[:, :, :rows, c0:c0 + width].double().numpy() * 127.5
        y = band.reshape(-1, rows * width).T  # [pixels, N·C]
        residual = y - a @ np.linalg.lstsq(a, y, rcond=None)[0]
        out.append(np.sqrt(np.square(residual).mean(0).reshape(len(img), -1).mean(1)))
    return np.stack(out, 1)


def _listed(values: np.ndarray) -> str:
    return ", ".join(f"{x:.3f}" for x in values)


def bend(img: torch.Tensor, left: int, square: int, inside: int = 4) -> np.ndarray:
    """Images [N, C, H, W] in [-1, 1] → [N] RMS (levels of 255) of both sides' column profiles (each column's mean
    over the rows above the shoulders, per channel, from the frame's edge to ``inside`` columns into the square)
    about their least-squares lines: a stripe of light or shade along the square's edge."""
    profile = img[:, :, :img.shape[2] * 3 // 4].mean(2).double().numpy() * 127.5  # [N, C, W]
    out = []
    for c0, c1 in ((0, left + inside), (left + square - inside, img.shape[-1])):
        a = np.stack([np.ones(c1 - c0), np.arange(c1 - c0)], 1)
        y = profile[..., c0:c1].reshape(-1, c1 - c0).T
        residual = y - a @ np.linalg.lstsq(a, y, rcond=None)[0]
        out.append(np.sqrt(np.square(residual).mean(0)).reshape(len(img), -1).mean(1))
    return np.mean(out, 0)


def face_parts(G, sets: dict[str, tuple[torch.Tensor, Noise]]) -> None:
    """The face-parts measure (module docstring) for each set of latents, every widening against the reference."""
    r = G.img_resolution
    width = r // 8
    canvas = (round(r * 16 / 9 / 2) * 2, r)
    left = (canvas[0] - r) // 2
    starts = [left - k * width for k in range(left // width, 0, -1)]
    starts += [left + r + k * width for k in range(left // width)]
    for label, (ws, noise) in sets.items():
        with widening("reference"), torch.no_grad():
            reference = structure(G.synthesize(ws, noise, canvas=canvas), starts, width)
        line = np.percentile(reference, 95)
        print(f"{label}: side bands' structure in levels of 255 (bands outer to inner | inner to outer), the share "
              f"above the reference's 95th percentile ({line:.2f}); each band against the same band of its reference "
              f"frame: the mean excess and the share more than 1 level above; bend in levels")
        for name in ("reference", "mirror", "fill", "previous", "blend"):
            with widening(name), torch.no_grad():
                img = G.synthesize(ws, noise, canvas=canvas)
            sides = structure(img, starts, width)
            excess = sides - reference
            print(f"  {name:>10}: {sides.mean():5.2f} ({' '.join(f'{v:4.1f}' for v in sides.mean(0))}), "
                  f"{(sides > line).mean():6.1%}; excess {excess.mean():+5.2f}, {(excess > 1).mean():6.1%}; "
                  f"bend {bend(img, left, r).mean():.2f}")


def seams(G, seeds: int) -> None:
    torch.manual_seed(0)
    ws = G.mapping(torch.randn(seeds, G.z_dim), None, truncation_psi=0.7)
    r = G.img_resolution
    for name in WIDENINGS:
        with widening(name), torch.no_grad():
            img = G.synthesize(ws, canvas=(2 * r, r)).permute(0, 2, 3, 1).numpy()
        s = spikes(img)
        at = s[[r // 2 - 1 - 3, 3 * r // 2 - 1 - 3]]  # the gaps before columns R/2 and 3R/2 (8 cells drawn)
        print(f"{name:>10}: seam spikes {_listed(at)}, all gaps mean {s.mean():.3f} p90 "
              f"{np.percentile(s, 90):.3f} ({seeds} seeds, {2 * r}x{r})")


def closeness(G, seeds: int, repeats: int = 3) -> None:
    """The square's region of a 16:9 frame against the square render, and the frame's time against the square's
    (best of ``repeats``)."""
    torch.manual_seed(1)
    ws = G.mapping(torch.randn(seeds, G.z_dim), None, truncation_psi=0.7)
    r = G.img_resolution
    canvas = (round(r * 16 / 9), r)
    left = (canvas[0] - r) // 2

    def timed(**kwargs) -> tuple[torch.Tensor, float]:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            img = G.synthesize(ws, **kwargs)
            times.append(time.perf_counter() - start)
        return img, min(times)

    with torch.no_grad():
        square, t_square = timed()
        other = (square - square.roll(1, 0)).abs().mean()
        for name in ("mirror", "previous", "blend"):
            with widening(name):
                wide, t_wide = timed(canvas=canvas)
            d = wide[..., left:left + r] - square
            psnr = 10 * torch.log10(4 / d.square().mean())
            print(f"{name:>10}: square region of a {canvas[0]}x{canvas[1]} frame vs the square render: mean |diff| "
                  f"{d.abs().mean() * 127.5:.2f} levels of 255, {d.abs().mean() / other:.1%} of two faces' difference, "
                  f"PSNR {psnr:.1f} dB; time per frame {t_wide / t_square:.2f}x the square's")


def stylegan3(seeds: int) -> None:
    """Tiny random SG3s (32 px) of each config: the square's region of a 2:1 and a 2:3 frame against the square,
    and whether a 3:1 frame's sides echo its centre: the correlation of the centre square with the squares
    beside it, against the correlation of two different seeds' squares."""
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
            three = G.synthesize(ws, dtype=torch.float64, canvas=(96, 32))
        peak = square.abs().max()
        for shape, region in (("64x32", wide), ("32x48", tall)):
            d = (region - square).abs()
            print(f"SG3-{name} {shape}: square region max |diff| {d.max() / peak:.2e} of the image's peak, inner half "
                  f"{d[..., 8:24, 8:24].max() / peak:.2e}")

        def corr(a: torch.Tensor, b: torch.Tensor) -> float:
            a, b = (t.flatten(1) - t.flatten(1).mean(1, keepdim=True) for t in (a, b))
            return float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean())

        centre, sides = three[..., 32:64], (three[..., :32], three[..., 64:])
        print(f"SG3-{name} 96x32: centre vs the squares beside it: correlation {corr(centre, sides[0]):+.2f} / "
              f"{corr(centre, sides[1]):+.2f}, mirrored {corr(centre.flip(-1), sides[0]):+.2f} / "
              f"{corr(centre.flip(-1), sides[1]):+.2f}; two seeds' squares {corr(square, square.roll(1, 0)):+.2f}")


def team(scene: Path, cache: Optional[Path]) -> tuple[torch.Tensor, Noise, object]:
    """The demo's projected team photos (W at the widened render's keyframes that are photos) and its noise."""
    from morph.engine.scenes import open_scene
    from morph.motion.latents import Project
    from morph.motion.schedule import sample

    loaded = open_scene(scene, torch.device("cpu"), cache, quiet=True)
    name = next(n for n, r in loaded.scene.renders.items() if r.canvas and r.canvas.fit == "widen")
    tl = loaded.timelines[name]
    keys = [f for f, key in zip(tl.keyframes, loaded.scene.renders[name].motion.path.keys)
            if isinstance(loaded.scene.latents[key].source, Project) and not loaded.scene.latents[key].edits]
    return sample(tl, torch.as_tensor(keys)), loaded.noise(name), (loaded, name)


def demo(loaded, name: str) -> None:
    frames = loaded.frames(name, range(0, loaded.scene.renders[name].frames, 5), torch.device("cpu"))
    r, w = loaded.G.img_resolution, frames.shape[2]
    drawn = r * networks.canvas_cells((w, r), r)[1] // networks.CONST_SIZE
    cut = (drawn - w) // 2
    s = spikes(frames)
    at = s[[(drawn - r) // 2 - cut - 1 - 3, (drawn + r) // 2 - cut - 1 - 3]]
    print(f"{name}: {len(frames)} frames at {w}x{r}, seam spikes {_listed(at)}, all gaps mean "
          f"{s.mean():.3f} p90 {np.percentile(s, 90):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scene", type=Path, default=None, help="also measure a scene's widened render and photos")
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    G = load_model("builtin", torch.device("cpu"))
    torch.manual_seed(0)
    sets = {f"{args.seeds} seeds (psi 0.7)": (G.mapping(torch.randn(args.seeds, G.z_dim), None, truncation_psi=0.7),
                                             Noise())}
    scene = None
    if args.scene:
        ws, noise, scene = team(args.scene, args.cache)
        sets[f"{len(ws)} team photos ({args.scene})"] = (ws, noise)
    face_parts(G, sets)
    seams(G, min(args.seeds, 48))
    closeness(G, min(args.seeds, 48))
    stylegan3(min(args.seeds, 8))
    if scene:
        demo(*scene)


if __name__ == "__main__":
    main()
