"""Coarse-to-fine projection on a 1024 px config-f network: seconds per coarse step against a full step,
and the wall time ``morph project`` would take with its defaults on one photo.

The network is FFHQ's shape (StyleGAN2 config-f: 1024 px, 18 × w[512], skip architecture) with random
weights, written in morph's format and loaded back, so the figures are the CPU cost of the real shape.
Each stage is timed as (k+1 steps − 1 step) / k, so set-up is not counted as a step. The estimate adds
the parts ``morph project`` runs: loading, w_avg (10,000 mapped samples), the encoder, the default
steps (the first half at the coarse resolution), and the final render; one row per coarse
resolution, the default marked. ``--project PHOTO`` then times the real thing: ``morph project PHOTO``
with its defaults, in a fresh process at ``--threads``, the network's encoder (random weights: its
cost, not its guess, is what counts here) beside it where ``--encoder auto`` finds it.

    python bench/coarse.py [--threads 2] [--steps 1] [--coarse 64 128 256] [--out /tmp/config-f.safetensors]
    python bench/coarse.py --project PHOTO --coarse 256
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from morph.checkpoints import write_native
from morph.models.loader import load_model
from morph.projection import COARSE_RESOLUTION, REFINE_STEPS, coarse_plan, laplacian, optimise, w_stats
from morph.projection.encoder import for_model, save_encoder
from morph.stylegan2 import Generator

CONFIG_F = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3,
                mapping_kwargs={"num_layers": 8}, synthesis_kwargs={"channel_base": 32768, "channel_max": 512,
                                                                    "architecture": "skip"})


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def per_step(G, target, stats, coarse: int, k: int) -> float:
    """Seconds per optimisation step at ``coarse`` px (0: full resolution), set-up excluded."""
    def run(steps: int) -> None:
        optimise(G, target, laplacian(), [0], "w+", steps, stats=stats, coarse=coarse, full_steps=0)
    return (timed(lambda: run(k + 1)) - timed(lambda: run(1))) / k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=1, help="timed steps per stage (after one untimed)")
    ap.add_argument("--coarse", type=int, nargs="+", default=[64, 128, 256], help="coarse resolutions to time")
    ap.add_argument("--out", type=Path, default=Path("/tmp/config-f-random.safetensors"))
    ap.add_argument("--project", type=Path, help="then time `morph project PHOTO` with the defaults")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.out.is_file():
        torch.manual_seed(0)
        G = Generator(**CONFIG_F)
        write_native(args.out, G.init_kwargs, G.state_dict())
    load_s = timed(lambda: load_model(args.out))
    G = load_model(args.out)
    start = time.perf_counter()
    stats = w_stats(G)
    stats_s = time.perf_counter() - start
    target = torch.rand(1, 3, G.img_resolution, G.img_resolution) * 2 - 1
    enc = for_model(G).eval()
    with torch.no_grad():
        enc_s = timed(lambda: enc(target))
        render_s = timed(lambda: G.synthesis(stats[0].expand(1, G.num_ws, -1), noise_mode="const"))
    full_s = per_step(G, target, stats, 0, args.steps)
    fixed = load_s + stats_s + enc_s + render_s
    print(f"config-f 1024 px, random weights, {torch.get_num_threads()} threads: step at 1024 px {full_s:.2f} s; "
          f"load {load_s:.1f} s, w_avg {stats_s:.1f} s, encoder {enc_s:.2f} s, final render {render_s:.1f} s")
    print(f"1000 full steps from w_avg (the old recipe): {(fixed - enc_s + 1000 * full_s) / 3600:.2f} h")
    for res in args.coarse:
        coarse_s = per_step(G, target, stats, res, args.steps)
        coarse, full_steps = coarse_plan(G, REFINE_STEPS, res)
        total = fixed + (REFINE_STEPS - full_steps) * coarse_s + full_steps * full_s
        mark = " (default)" if res == COARSE_RESOLUTION else ""
        print(f"coarse {res} px{mark}: {coarse_s:.2f} s/step, {coarse_s / full_s:.3f} of a full step; "
              f"encoder + {REFINE_STEPS - full_steps} coarse + {full_steps} full steps: {total:.0f} s = "
              f"{total / 60:.1f} min", flush=True)
    if args.project:
        time_project(G, enc, args)


def time_project(G, enc, args) -> None:
    """Wall time of ``morph project PHOTO --model OUT --no-align`` with every other option at its default."""
    beside = args.out.with_name(args.out.name.split(".")[0] + ".encoder.safetensors")
    save_encoder(beside, enc, G.info.sha256)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "morph.cli", "project", str(args.project), "--model", str(args.out),
                   "--no-align", "--out", folder, "--cache", folder, "--quiet"]
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env)
        wall = time.perf_counter() - start
    print(f"morph project {args.project.name} (defaults, {args.threads} threads, encoder beside the checkpoint): "
          f"{wall:.0f} s = {wall / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
