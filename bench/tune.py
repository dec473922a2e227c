"""Pivotal tuning, measured in one run.

On the built-in model (the default): the six team photos and ``--faces`` renderer faces (seeds 1000…, no choice
was tuned on them), one generator tuned for each set, and one table: encoder only, + refinement (as ``morph
project`` refines), + tuning; mean PSNR, the classifier's attributes agreeing, seconds per photo of each stage.
Then, for each set's tuned network against the untuned one:

- locality: how far the pivots' images came towards their photos (mean pixel levels of error that went away)
  against how far the images of 20 other faces (seeds 0…19, ψ 0.7) moved;
- the smile direction's mean Spearman (strength against P(smile)) over −3…+3 on those 20 faces, as
  ``tests/test_directions.py`` measures the shipped direction;
- morphs between every two tuned faces of the set (16 frames each, W+ and noise maps interpolated linearly),
  read by the classifier: a frame is *neither face* when its features are farther from both ends' than the
  ends' are from each other (it looks less like either than they look like each other); the stricter count
  of frames on which some attribute is read (P > 0.5) that is read on neither end; and the end nearest each
  frame by features must change exactly once along the morph.

``--size 1024``: a StyleGAN2 config-f network with random weights (``bench/coarse.py``'s), random photos,
seconds per tuning step at batch 1 and 6 (the mean of ``--steps`` steps after a first, untimed one),
the wall time of a team of six at the default step count extrapolated from it, and the peak resident memory.

    python bench/tune.py [--faces 12 (0: the team only)] [--steps 300] [--refine 100] [--locality W]
    python bench/tune.py --size 1024 [--steps 3] [--threads 2] [--device cuda]
    python bench/tune.py --scan "lr=1e-3,loss=mse" "warmup=20" ... [--steps 150]

``--scan``: the team refined once, then one tuning per configuration (``TuneSettings`` fields over the
defaults, ``default`` for none) at ``--steps``: mean PSNR, attributes, seconds per photo, the locality row,
the smile Spearman and the two morph counts.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from bench.project import targets
from morph.builtin import direction_path, load_builtin_classifier, load_builtin_generator
from morph.directions import read_direction, strength_sweep
from morph.motion.latents import map_z, z_from_seed
from morph.projection import (
    REFINE_STEPS,
    Projection,
    coarse_plan,
    default_loss,
    make_distance,
    optimise,
    psnr,
    refine_recipe,
    synthesize,
    w_stats,
)
from morph.projection.encoder import encoder_for
from morph.projection.tuning import TuneSettings, tune

STRENGTHS = np.linspace(-3, 3, 7)
MORPH_FRAMES = 16


def row(name: str, clf, x: np.ndarray, recon: np.ndarray, seconds: float) -> str:
    pa, pb = clf.predict(x)["probs"] > 0.5, clf.predict(recon)["probs"] > 0.5
    return (f"{name:<22} PSNR {psnr(x, recon).mean():5.2f} dB  attributes {int((pa == pb).sum())}/{pa.size}  "
            f"{seconds:6.2f} s/photo")


def smile_spearman(G, clf, faces: torch.Tensor) -> float:
    """Mean over ``faces`` (W [N, w_dim]) of Spearman(strength, P(smile)) along the shipped smile direction."""
    d = torch.from_numpy(read_direction(direction_path("smile"))).expand(G.num_ws, G.w_dim)
    const = [m.cpu() for m in G.noise_maps().values()]
    path = [Projection(w, const, None, w[None]) for f in faces for w in strength_sweep(f.expand(G.num_ws, -1), d,
                                                                                         STRENGTHS)]
    smile = clf.predict(synthesize(G, path, batch=35))["smile"].reshape(len(faces), len(STRENGTHS))
    return float(np.mean([spearmanr(STRENGTHS, s).correlation for s in smile]))


def morph_check(G, clf, pivots: list[Projection]) -> tuple[int, int, int, int, int]:
    """(frames farther from both ends than the ends are from each other, frames with an attribute read on
    neither end, frames, morphs whose nearest end changes other than once, morphs)."""
    t = np.linspace(0, 1, MORPH_FRAMES)
    apart, flips, bad = 0, 0, 0
    pairs = list(itertools.combinations(pivots, 2))
    for a, b in pairs:
        path = [Projection(a.w + s * (b.w - a.w), [m + s * (n - m) for m, n in zip(a.noise, b.noise)], None, a.w)
                for s in t.astype(np.float32)]
        pred = clf.predict(synthesize(G, path, batch=MORPH_FRAMES))
        on = pred["probs"] > 0.5
        flips += int(np.sum(np.any((on != on[0]) & (on != on[-1]), axis=1)))
        f = pred["features"]
        to_a, to_b = np.linalg.norm(f - f[0], axis=1), np.linalg.norm(f - f[-1], axis=1)
        apart += int(np.sum(np.minimum(to_a, to_b) > to_a[-1]))
        bad += int(np.count_nonzero(np.diff((to_b < to_a).astype(int))) != 1)
    return apart, flips, len(pairs) * MORPH_FRAMES, bad, len(pairs)


def after_tuning(G, tuned, clf, pivots: list[Projection]) -> None:
    """The locality, Spearman and morph rows of the module doc for one set's tuned network."""
    faces = map_z(G, z_from_seed(0, G.z_dim, 20), psi=0.7)[:, 0]
    const = [m.cpu() for m in G.noise_maps().values()]
    others = [Projection(w, const, None, w[None]) for w in faces]
    x = np.stack([p.target for p in pivots]).astype(float)
    gained = np.abs(synthesize(G, pivots) - x).mean() - np.abs(synthesize(tuned, pivots) - x).mean()
    moved = np.abs(synthesize(tuned, others).astype(float) - synthesize(G, others)).mean()
    print(f"locality               pivots' error fell by {gained:.2f} levels, 20 other faces moved {moved:.2f} "
          f"({moved / gained:.2f} of it)")
    print(f"smile Spearman         {smile_spearman(G, clf, faces):.3f} untuned, {smile_spearman(tuned, clf, faces):.3f}"
          " tuned (20 faces, -3…+3)")
    for name, net in (("untuned", G), ("tuned", tuned)):
        apart, flips, frames, bad, pairs = morph_check(net, clf, pivots)
        print(f"morphs ({name + ')':<8}      {apart}/{frames} frames neither face (farther from both than they are "
              f"apart); {flips}/{frames} with an attribute of neither end; nearest end changes other than once in "
              f"{bad}/{pairs} morphs", flush=True)


def builtin_table(args) -> None:
    G = load_builtin_generator()
    clf = load_builtin_classifier()
    enc = encoder_for(G, "auto")
    loss = default_loss(G.info.path, refine=True)
    distance = make_distance(loss, torch.device("cpu"))
    stats = w_stats(G)
    settings = replace(TuneSettings(), steps=args.steps,
                       **({"locality": args.locality} if args.locality is not None else {}))
    print(f"tuning: {settings}")
    sets = [("team (6)", targets(G, 6))] + ([(f"renderer faces ({args.faces})", targets(G, args.faces, True))]
                                           if args.faces else [])
    for label, x in sets:
        u8 = ((x.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        print(f"--- {label}", flush=True)
        t0 = time.perf_counter()
        with torch.no_grad():
            guess = enc(x)
        t1 = time.perf_counter()
        only = [Projection(w, [m.cpu() for m in G.noise_maps().values()], u, w[None]) for w, u in zip(guess, u8)]
        print(row("encoder only", clf, u8, synthesize(G, only), (t1 - t0) / len(x)), flush=True)
        coarse, full = coarse_plan(G, args.refine)
        refined = optimise(G, x, distance, list(range(len(x))), "w+", args.refine, refine_recipe(loss), None, stats,
                           guess, coarse, full)
        t2 = time.perf_counter()
        print(row(f"+ refinement ({args.refine})", clf, u8, synthesize(G, refined), (t2 - t1) / len(x)), flush=True)
        tuned = tune(G, refined, settings)
        t3 = time.perf_counter()
        print(row(f"+ tuning ({args.steps})", clf, u8, synthesize(tuned, refined), (t3 - t2) / len(x)), flush=True)
        after_tuning(G, tuned, clf, refined)


def scan_settings(text: str, steps: int) -> TuneSettings:
    """``TuneSettings`` at ``steps`` with the ``field=value,...`` of ``text`` (``default``: none) over the defaults;
    ``frozen`` takes ``+`` between its names (``frozen=noise_strength+affine``)."""
    types = {f.name: type(getattr(TuneSettings(), f.name)) for f in fields(TuneSettings)}
    pairs = [kv.split("=", 1) for kv in text.split(",") if kv and text != "default"]
    return replace(TuneSettings(), **{"steps": steps, **{k: types[k](v.replace("+", ",")) for k, v in pairs}})


def scan(args) -> None:
    """The ``--scan`` table of the module doc."""
    G = load_builtin_generator()
    clf = load_builtin_classifier()
    loss = default_loss(G.info.path, refine=True)
    x = targets(G, 6)
    u8 = ((x.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    with torch.no_grad():
        guess = encoder_for(G, "auto")(x)
    refined = optimise(G, x, make_distance(loss, torch.device("cpu")), list(range(len(x))), "w+", args.refine,
                       refine_recipe(loss), None, w_stats(G), guess, *coarse_plan(G, args.refine))
    print(row(f"team refined ({args.refine})", clf, u8, synthesize(G, refined), 0), flush=True)
    faces = map_z(G, z_from_seed(0, G.z_dim, 20), psi=0.7)[:, 0]
    const = [m.cpu() for m in G.noise_maps().values()]
    others = [Projection(w, const, None, w[None]) for w in faces]
    for text in args.scan:
        t0 = time.perf_counter()
        tuned = tune(G, refined, scan_settings(text, args.steps))
        seconds = (time.perf_counter() - t0) / len(x)
        gained = (np.abs(synthesize(G, refined) - u8.astype(float)).mean()
                  - np.abs(synthesize(tuned, refined) - u8.astype(float)).mean())
        moved = np.abs(synthesize(tuned, others).astype(float) - synthesize(G, others)).mean()
        apart, flips, frames, _, _ = morph_check(tuned, clf, refined)
        print(f"{row(text, clf, u8, synthesize(tuned, refined), seconds)}  locality {gained:5.2f} / {moved:5.2f} "
              f"= {moved / gained:.2f}  smile {smile_spearman(tuned, clf, faces):.3f}  morph frames neither face "
              f"{apart}/{frames}, attribute of neither {flips}/{frames}", flush=True)


def peak_rss_gib() -> float:
    """The process's peak resident memory so far; on CUDA, the device's peak allocation instead."""
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated():
        return torch.cuda.max_memory_allocated() / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def large_table(args) -> None:
    """The ``--size 1024`` figures of the module doc."""
    from bench.coarse import CONFIG_F
    from morph.checkpoints import write_native
    from morph.models.loader import load_model
    from morph.stylegan2 import Generator

    path = Path(f"/tmp/config-f-random-{args.size}.safetensors")
    if not path.is_file():
        torch.manual_seed(0)
        net = Generator(**{**CONFIG_F, "img_resolution": args.size})
        write_native(path, net.init_kwargs, net.state_dict())
        del net
    G = load_model(path, device=args.device)
    w_avg = G.mapping.w_avg.cpu()
    const = [m.cpu() for m in G.noise_maps().values()]
    gen = torch.Generator().manual_seed(0)
    photos = [torch.randint(0, 256, (args.size, args.size, 3), generator=gen, dtype=torch.uint8).numpy()
              for _ in range(6)]
    pivots = [Projection(w_avg[None] + 0.1 * torch.randn(1, G.w_dim, generator=gen), const, p, w_avg[None])
              for p in photos]
    defaults = TuneSettings()
    print(f"StyleGAN2 config-f {args.size} px, random weights, {torch.get_num_threads()} threads, loss "
          f"{defaults.loss}, locality every {defaults.locality_every} step(s); "
          f"after loading: peak RSS {peak_rss_gib():.2f} GiB", flush=True)
    for batch in (1, 6):
        clock = StepClock()
        tune(G, pivots[:batch], replace(defaults, steps=args.steps + 1), progress=clock)
        first, step = clock.times[0], float(np.mean(clock.times[1:]))
        line = (f"batch {batch}: {step:.1f} s per tuning step (mean of {args.steps}; set-up and first step "
                f"{first:.1f} s), peak RSS {peak_rss_gib():.2f} GiB")
        if batch == 6:
            total = first + (defaults.steps - 1) * step
            line += (f"; a team of six at the default {defaults.steps} steps: {total / 3600:.1f} h "
                     f"(extrapolated from {args.steps} steps)")
        print(line, flush=True)


class StepClock:
    """A stand-in for ``Progress`` that records the wall time of each step (the first includes the set-up)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.last = time.perf_counter()

    def advance(self, n: int) -> None:
        now = time.perf_counter()
        self.times += [(now - self.last) / n] * n
        self.last = now


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=12)
    ap.add_argument("--steps", type=int, default=None, help="tuning steps (default: TuneSettings; 3 with --size)")
    ap.add_argument("--refine", type=int, default=REFINE_STEPS)
    ap.add_argument("--locality", type=float, default=None, help="the locality term's weight (default: TuneSettings)")
    ap.add_argument("--size", type=int, default=64, help="64: the built-in model; else a random config-f network")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="with --size: cpu or cuda (peak memory is then the GPU's)")
    ap.add_argument("--scan", nargs="+", metavar="FIELD=VALUE,...", help="tune the team once per configuration")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.scan:
        args.steps = args.steps or TuneSettings.steps
        scan(args)
    elif args.size == 64:
        args.steps = args.steps or TuneSettings.steps
        builtin_table(args)
    else:
        args.steps = args.steps or 3
        large_table(args)


if __name__ == "__main__":
    main()
