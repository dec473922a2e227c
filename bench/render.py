"""End-to-end render speed against generator-only speed, and peak memory against video length.

1. frames/s of ``morph render`` (generation + encoding + caching + joining, cold cache) over
   frames/s of the generator alone on the same W frames, same batch size: ≥ 0.9 means encoding
   is hidden behind generation.
2. Peak RSS of a 100-frame render against a 3,000-frame render of the same scene (each in its own
   process): memory must not grow with the video's length.

    python bench/render.py [--model builtin|PATH] [--size 256] [--long 3000]
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

from morph.engine.scenes import RenderOptions, open_scene, render_scene
from morph.core.model import Noise
from morph.render.job import auto_batch_size, generate
from morph.core.runtime import keep_freed_memory
from morph.motion.schedule import sample
from tour import write_tour  # bench/tour.py, beside this script

def write_scene(folder: Path, model: str, size: int, frames: int) -> Path:
    return write_tour(folder / f"scene-{frames}.yaml", model, size, frames)


def peak_rss_mb(cmd: list[str]) -> float:
    """Peak resident memory of a child process, in MB (Linux reports ru_maxrss in KiB)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"render failed: {' '.join(cmd)}")
    return usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--size", type=int, default=256, help="output size (the generator's own is upscaled)")
    parser.add_argument("--frames", type=int, default=240, help="frames for the speed comparison")
    parser.add_argument("--long", type=int, default=3000, help="frames of the long render for the memory check")
    args = parser.parse_args()
    keep_freed_memory()
    with tempfile.TemporaryDirectory(prefix="morph-bench-") as tmp:
        folder = Path(tmp)
        scene = write_scene(folder, args.model, args.size, args.frames)
        device = torch.device("cpu")
        loaded = open_scene(scene, device, folder / "cache", quiet=True)
        G, tl = loaded.G, loaded.timelines["tour"]
        n = tl.frames
        batch = auto_batch_size(G, device)
        ws = sample(tl, torch.arange(n))
        list(generate(G, ws[:batch], batch, Noise(), device))  # warm-up
        start = time.perf_counter()
        for _ in generate(G, ws, batch, Noise(), device):
            pass
        gen_fps = n / (time.perf_counter() - start)
        start = time.perf_counter()
        render_scene(loaded, ["tour"], RenderOptions(out=folder, cache_dir=folder / "cache", batch_size=batch,
                                                      quiet=True))
        e2e_fps = n / (time.perf_counter() - start)
        print(f"model {args.model} ({G.img_resolution} px → {args.size} px mp4), {n} frames, batch {batch}, "
              f"{torch.get_num_threads()} threads")
        print(f"generator only: {gen_fps:.2f} frames/s; end to end: {e2e_fps:.2f} frames/s; "
              f"ratio {e2e_fps / gen_fps:.3f} (target ≥ 0.9)")
        rss = {}
        for frames in (100, args.long):
            s = write_scene(folder, args.model, args.size, frames)
            rss[frames] = peak_rss_mb([sys.executable, "-m", "morph.cli", "render", str(s), "--out",
                                       str(folder / f"out-{frames}"), "--cache", str(folder / f"cache-{frames}"),
                                       "--quiet", "--batch-size", str(batch)])
        short, long_ = rss[100], rss[args.long]
        print(f"peak RSS: {short:.0f} MB for 100 frames, {long_:.0f} MB for {args.long} frames; "
              f"ratio {long_ / short:.3f} (target within 10 %)")


if __name__ == "__main__":
    main()
