"""Projection speed per photo at batch 1 and batch 8, (``--losses``) reconstruction quality per loss, and
(``--encoder``) the encoder against the old recipe.

1. Seconds per photo: 8 photos optimised one at a time, then all 8 in one batch, same steps; the
   ratio is what batching buys (every photo's result is the same either way).
2. ``--losses``: each candidate distance on the same photos and steps, scored by PSNR and by the
   built-in classifier's attribute agreement between target and reconstruction (the table behind
   :func:`morph.projection.losses.default_loss`).
3. ``--encoder [PATH]``: on the team photos (or ``--faces N`` renderer faces, a held-out set), the
   encoder's guess alone (seconds: one photo at a time), then refined by ``--refine`` steps (default 50,
   100, 200) as ``morph project`` refines it; for the middle count also under the from-w_avg distance at
   lr 0.1 (the refinement before) and from w_avg by the old recipe; and the old recipe at
   ``--baseline-steps`` (1000) on ``--baseline-photos`` of them. ``--coarse R ...`` adds the middle
   refinement with its first half of steps at R px (``coarse_plan``).

    python bench/project.py [--model builtin|PATH] [--steps 50] [--losses [LOSS ...]] [--space w+|w]
    python bench/project.py --encoder [PATH] [--refine 50 100 200] [--coarse 32 16] [--baseline-photos 6] [--faces 12]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from morph.checkpoints.loading import load_generator
from morph.models.resolver import resolve_model
from morph.projection import (
    FULL_STEPS,
    LOSSES,
    REFINE_RECIPE,
    Recipe,
    attribute_agreement,
    coarse_plan,
    default_loss,
    make_distance,
    optimise,
    psnr,
    refine_recipe,
    synthesize,
    w_stats,
)
from morph.projection.align import aligned_face

TEAM = sorted((Path(__file__).resolve().parents[1] / "scenes" / "team").glob("*.png"))
HELD_OUT = 1000  # first renderer seed of --faces


def targets(G, n: int, drawn: bool = False) -> torch.Tensor:
    """``n`` team photos (repeated if there are fewer), or with ``drawn`` ``n`` renderer faces of seeds 1000…
    (a held-out set to check a choice made on the team), as the generator's images in [-1, 1]."""
    if drawn:
        from morph.training.toyfaces.compose import render_seed

        faces = np.stack([render_seed(HELD_OUT + i, G.img_resolution) for i in range(n)])
    else:
        faces = np.stack([aligned_face(TEAM[i % len(TEAM)], G.img_resolution, align=False) for i in range(n)])
    return torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1


def seconds_per_photo(G, x: torch.Tensor, batch: int, steps: int, stats) -> float:
    distance = make_distance("l2", torch.device("cpu"))
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        optimise(G, x[i:i + batch], distance, list(range(i, i + batch))[:len(x) - i], "w+", steps, stats=stats)
    return (time.perf_counter() - start) / len(x)


def encoder_table(G, stats, args) -> None:
    """The table of section 3 of the module doc."""
    from morph.builtin import load_builtin_classifier
    from morph.projection.encoder import encoder_for

    enc = encoder_for(G, args.encoder)
    clf = load_builtin_classifier()
    x = targets(G, args.faces or len(TEAM), drawn=bool(args.faces))
    cpu = torch.device("cpu")
    fresh = make_distance(default_loss(G.info.path), cpu)         # from w_avg, as without an encoder
    refine_loss = default_loss(G.info.path, refine=True)            # after the encoder's guess, as morph project
    refine, refining = make_distance(refine_loss, cpu), refine_recipe(refine_loss)
    seeds = list(range(len(x)))
    with torch.no_grad():
        enc(x[:1])  # warm-up
        start = time.perf_counter()
        guess = torch.cat([enc(x[i:i + 1]) for i in range(len(x))])
        guess_s = (time.perf_counter() - start) / len(x)
    print(f"{len(x)} photos, {G.img_resolution} px, {torch.get_num_threads()} threads, encoder {enc.path}; "
          f"refined under {refine_loss} at lr {refining.lr:g}, from w_avg under {default_loss(G.info.path)}")
    print(f"{'':<40} {'PSNR dB':>8} {'min':>6} {'attributes':>11} {'s/photo':>8}")

    def row(label: str, results, seconds: float) -> None:
        recon, want = synthesize(G, results), np.stack([r.target for r in results])
        score = psnr(want, recon)
        agree = attribute_agreement(clf, want, recon)
        total = len(agree) * len(clf.attributes)
        print(f"{label:<40} {score.mean():8.2f} {score.min():6.2f} {round(agree.sum() * len(clf.attributes)):>5}/"
              f"{total:<5} {seconds:8.3f}", flush=True)

    def run(label: str, n: int, steps: int, init, recipe: Recipe, coarse: int = 0, distance=None) -> None:
        start = time.perf_counter()
        distance = distance or (fresh if init is None else refine)
        results = optimise(G, x[:n], distance, seeds[:n], "w+", steps, recipe, stats=stats,
                           init=None if init is None else init[:n], coarse=coarse,
                           full_steps=coarse_plan(G, steps, coarse)[1] if coarse else 0)
        seconds = (time.perf_counter() - start) / n + (guess_s if init is not None else 0)
        row(label, results, seconds)

    row("encoder only", optimise(G, x, refine, seeds, "w+", 0, stats=stats, init=guess), guess_s)
    middle = args.refine[len(args.refine) // 2]
    for steps in args.refine:
        run(f"encoder + {steps} steps", len(x), steps, guess, refining)
        for res in args.coarse if steps == middle else ():
            run(f"encoder + {steps} ({res} px, last {FULL_STEPS:.0%} full)", len(x), steps, guess, refining, res)
        if steps == middle:
            run(f"encoder + {steps} (w_avg's loss, lr 0.1)", len(x), steps, guess,
                REFINE_RECIPE, distance=fresh)
            run(f"w_avg + {steps} steps (old recipe)", len(x), steps, None, Recipe())
    n = args.baseline_photos or len(x)
    run(f"w_avg + {args.baseline_steps} steps (old){'' if n == len(x) else f', {n} photos'}", n,
        args.baseline_steps, None, Recipe())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--space", default="w+", choices=("w+", "w"))
    ap.add_argument("--losses", nargs="*", choices=LOSSES, metavar="LOSS",
                    help="compare these distances (all if none named) instead of timing batches")
    ap.add_argument("--encoder", nargs="?", const="auto", help="the encoder table (auto: the model's own encoder)")
    ap.add_argument("--refine", type=int, nargs="+", default=[50, 100, 200], help="refinement steps after the encoder")
    ap.add_argument("--coarse", type=int, nargs="*", default=[], help="also refine the middle --refine count of "
                    "steps at these resolutions (the last half full)")
    ap.add_argument("--baseline-steps", type=int, default=1000)
    ap.add_argument("--baseline-photos", type=int, default=0, help="photos for the baseline row (default all)")
    ap.add_argument("--faces", type=int, default=0, help="--encoder on this many renderer faces (seeds 1000…) "
                    "instead of the team photos")
    args = ap.parse_args()
    G = load_generator(resolve_model(args.model))
    stats = w_stats(G)
    if args.encoder:
        encoder_table(G, stats, args)
        return
    if args.losses is not None:
        from morph.builtin import load_builtin_classifier

        clf = load_builtin_classifier()
        x = targets(G, len(TEAM))
        print(f"{len(x)} photos, {args.steps} steps, {args.space}")
        print(f"{'loss':<22} {'PSNR dB':>8} {'min':>6} {'agreement':>10} {'s':>6}")
        for name in args.losses or LOSSES:
            start = time.perf_counter()
            results = optimise(G, x, make_distance(name, torch.device("cpu")), list(range(len(x))), args.space,
                               args.steps, stats=stats)
            seconds = time.perf_counter() - start
            recon, want = synthesize(G, results), np.stack([r.target for r in results])
            score = psnr(want, recon)
            print(f"{name:<22} {score.mean():8.2f} {score.min():6.2f} "
                  f"{attribute_agreement(clf, want, recon).mean():10.3f} {seconds:6.1f}", flush=True)
        return
    x = targets(G, 8)
    one = seconds_per_photo(G, x, 1, args.steps, stats)
    eight = seconds_per_photo(G, x, 8, args.steps, stats)
    print(f"{G.img_resolution} px, {args.steps} steps, {torch.get_num_threads()} threads: "
          f"batch 1 {one:.2f} s/photo, batch 8 {eight:.2f} s/photo, speed-up {one / eight:.2f}x")


if __name__ == "__main__":
    main()
