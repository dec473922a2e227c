"""Projection speed per photo at batch 1 and batch 8, and (``--losses``) reconstruction quality per loss.

1. Seconds per photo: 8 photos optimised one at a time, then all 8 in one batch, same steps; the
   ratio is what batching buys (every photo's result is the same either way).
2. ``--losses``: each candidate distance on the same photos and steps, scored by PSNR and by the
   built-in classifier's attribute agreement between target and reconstruction (the table in
   ``morph/projection.py``).

    python bench/project.py [--model builtin|PATH] [--steps 50] [--losses [LOSS ...]] [--space w+|w]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from morph.align import aligned_face
from morph.projection import LOSSES, attribute_agreement, make_distance, optimise, psnr, synthesize, w_stats
from morph.stylegan2 import load_generator

TEAM = sorted((Path(__file__).resolve().parents[1] / "scenes" / "team").glob("*.png"))


def targets(G, n: int) -> torch.Tensor:
    """``n`` team photos (repeated if there are fewer), as the generator's images in [-1, 1]."""
    faces = np.stack([aligned_face(TEAM[i % len(TEAM)], G.img_resolution, align=False) for i in range(n)])
    return torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1


def seconds_per_photo(G, x: torch.Tensor, batch: int, steps: int, stats) -> float:
    distance = make_distance("l2", torch.device("cpu"))
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        optimise(G, x[i:i + batch], distance, list(range(i, i + batch))[:len(x) - i], "w+", steps, stats=stats)
    return (time.perf_counter() - start) / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--space", default="w+", choices=("w+", "w"))
    ap.add_argument("--losses", nargs="*", choices=LOSSES, metavar="LOSS",
                    help="compare these distances (all if none named) instead of timing batches")
    args = ap.parse_args()
    G = load_generator(args.model)
    stats = w_stats(G)
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
