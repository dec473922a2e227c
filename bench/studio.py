"""The studio's frame cost at a network's full size against its preview, through the studio's frame adapter:
draw (synthesis of one frame) and the encoded picture the page receives (preview: ≤ 256 px JPEG; full:
the render's size, PNG). The browser test measures the 64 px built-in model end to end in Chromium.

    python bench/studio.py [--resolution 1024] [--rounds 5]      # a random-weight FFHQ-sized network
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from morph.stylegan2 import Generator
from morph.checkpoints.native import write_native
from morph.studio import frames as engine
from morph.studio.server import PREVIEW
from tour import write_tour  # bench/tour.py, beside this script


def timed(step, rounds: int) -> float:
    """Median milliseconds of ``step()`` over ``rounds`` calls after one warm-up."""
    step()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    res = args.resolution
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3,
                  mapping_kwargs=dict(num_layers=8),
                  synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=256)).eval()
    with tempfile.TemporaryDirectory(prefix="morph-bench-") as tmp:
        model = Path(tmp) / f"random{res}.safetensors"
        write_native(model, G.init_kwargs, G.state_dict())
        del G
        scene = write_tour(Path(tmp) / "tour.yaml", str(model), res, 90)
        frames = engine.Frames(model, torch.device("cpu"), Path(tmp) / "cache", quiet=True)
        p = frames.prepare(frames.parse(scene.read_text(), scene))
        index = iter(range(10 ** 6))
        small = min(res, PREVIEW)
        draw = timed(lambda: frames.frame(p, "tour", next(index) % 90, res), args.rounds)
        preview = timed(lambda: engine.encode(frames.frame(p, "tour", next(index) % 90, small), "JPEG"), args.rounds)
        full = timed(lambda: engine.encode(frames.frame(p, "tour", next(index) % 90, res), "PNG"), args.rounds)
    print(f"{res} px network on {torch.get_num_threads()} CPU threads (load average {os.getloadavg()[0]:.1f}), "
          f"median of {args.rounds}: draw {draw:.0f} ms; "
          f"preview ({small} px JPEG) {preview:.0f} ms; full ({res} px PNG) {full:.0f} ms; "
          f"preview/full {preview / full:.2f}")


if __name__ == "__main__":
    main()
