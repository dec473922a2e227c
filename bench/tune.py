"""Pivotal tuning on the built-in model: the six team photos and ``--faces`` renderer faces (seeds 1000…, no choice
was tuned on them), one table: encoder only, + refinement (as ``morph project`` refines), + tuning (one generator
for each set), mean PSNR and the classifier's attributes agreeing, seconds per photo of each stage.

    python bench/tune.py [--faces 12 (0: the team only)] [--steps 300] [--refine 100] [--locality 0.1]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from bench.project import targets
from morph.builtin import load_builtin_classifier, load_builtin_generator
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


def row(name: str, clf, x: np.ndarray, recon: np.ndarray, seconds: float) -> str:
    pa, pb = clf.predict(x)["probs"] > 0.5, clf.predict(recon)["probs"] > 0.5
    return (f"{name:<22} PSNR {psnr(x, recon).mean():5.2f} dB  attributes {int((pa == pb).sum())}/{pa.size}  "
            f"{seconds:6.2f} s/photo")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", type=int, default=12)
    ap.add_argument("--steps", type=int, default=TuneSettings.steps)
    ap.add_argument("--refine", type=int, default=REFINE_STEPS)
    ap.add_argument("--locality", type=float, default=TuneSettings.locality)
    args = ap.parse_args()
    torch.set_num_threads(2)
    G = load_builtin_generator()
    clf = load_builtin_classifier()
    enc = encoder_for(G, "auto")
    loss = default_loss(G.info.path, refine=True)
    distance = make_distance(loss, torch.device("cpu"))
    stats = w_stats(G)
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
        tuned = tune(G, refined, replace(TuneSettings(), steps=args.steps, locality=args.locality))
        t3 = time.perf_counter()
        print(row(f"+ tuning ({args.steps})", clf, u8, synthesize(tuned, refined), (t3 - t2) / len(x)), flush=True)


if __name__ == "__main__":
    main()
