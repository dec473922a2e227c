"""Train the built-in model's encoder (image → W+, projection's first guess) from a fixed seed.

``python -m morph.builtin.train_encoder [--out runs/encoder] [--resume] [--threads 1] [--stop-at N]``

Runs :func:`morph.encoder_training.train` on the built-in generator with the settings below, then
copies the result into ``morph/builtin/weights/encoder.safetensors`` (``--no-export`` keeps it in
``--out``). ``--resume`` continues a stopped run from its checkpoint, to the same result (up to float
rounding when the thread count changes); ``--stop-at N`` ends after N steps of the schedule, so a long
run can be split up.
"""

from __future__ import annotations

import argparse
import shutil
import signal
from pathlib import Path

import torch

from ..encoder_training import TrainConfig, train
from ..runtime import request_stop
from . import builtin_path, load_builtin_generator

CONFIG = TrainConfig(steps=1400, batch=32, lr=2e-3, seed=15)
ARCHITECTURE = {"base": 32, "max_width": 192, "pyramid": 96}  # 1.6 M parameters, 3.2 MB in float16


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/encoder"))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stop-at", type=int, default=None, help="stop after this many steps of the schedule")
    ap.add_argument("--no-export", action="store_true", help="leave the weights in --out only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    signal.signal(signal.SIGTERM, request_stop)  # stop between steps, checkpointed
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "encoder.safetensors"
    train(load_builtin_generator(), out, CONFIG, resume=args.resume, encoder_kwargs=ARCHITECTURE, stop_at=args.stop_at)
    if not args.no_export:
        shutil.copyfile(out, builtin_path("encoder"))
        print(f"{out} -> {builtin_path('encoder')}")


if __name__ == "__main__":
    main()
