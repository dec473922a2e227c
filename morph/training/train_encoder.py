"""Train the built-in model's encoder (image → W+, projection's first guess) from fixed seeds, in three stages.

``python -m morph.training.train_encoder [--out runs/encoder] [--resume] [--threads 1] [--stop-at N]``

1. ``samples``: :func:`morph.projection.encoder_training.train` on the built-in generator's own samples (``CONFIG``).
2. ``renderer``: from stage 1's file, fine-tuned with a quarter of each batch drawn from the face renderer
   the generator was trained on (``FINETUNE``): the samples alone teach it the generator's blurred world,
   and it read the team photos' wide grins and thin glasses back towards the mean face.
3. ``encoder``: from stage 2's file, half the learning rate with half of each batch from the renderer
   (``POLISH``): a better first guess, and one that 100 refinement steps keep every team attribute from.

The result is copied into ``morph/builtin/weights/encoder.safetensors`` (``--no-export`` keeps it in
``--out``). A stage whose file in ``--out`` already holds its finished schedule is kept; ``--resume``
continues a stopped stage from its checkpoint, to the same result (up to float rounding when the thread
count changes); ``--stop-at N`` ends a stage after N steps of its schedule, so a long run can be split up.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from morph.builtin import builtin_path, load_builtin_generator
from morph.core.files import read_safetensors
from morph.core.progress import log
from morph.core.runtime import request_stop
from morph.projection.encoder_training import Photos, TrainConfig, train

CONFIG = TrainConfig(steps=1400, batch=32, lr=2e-3, seed=15)
FINETUNE = TrainConfig(steps=1600, batch=32, lr=1e-3, seed=16, photo_share=0.25)
POLISH = TrainConfig(steps=1200, batch=32, lr=5e-4, seed=17, photo_share=0.5)
ARCHITECTURE = {"base": 32, "max_width": 192, "pyramid": 96}  # 1.6 M parameters, 3.2 MB in float16


def renderer_photos(gen: torch.Generator, n: int, size: int = 64) -> torch.Tensor:
    """The renderer stages' photos: ``n`` fresh renderer faces from a seed taken from ``gen`` (so the training
    run stays a function of its own seed)."""
    from morph.training.train_sharp import renderer_faces

    return renderer_faces(np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen))), n, size)


# (file name in --out, schedule, photos): the module doc's three stages, in order.
STAGES = (("samples", CONFIG, None), ("renderer", FINETUNE, renderer_photos), ("encoder", POLISH, renderer_photos))


def finished(path: Path, config: TrainConfig) -> bool:
    """Whether the encoder file at ``path`` holds the whole of ``config``'s schedule."""
    if not path.is_file():
        return False
    meta, _ = read_safetensors(path)
    trained = json.loads(meta.get("training", "{}"))
    trained.pop("loss", None)
    try:
        same = TrainConfig(**trained) == config  # fields added since the file was written take their defaults
    except TypeError:
        return False
    return same and meta.get("steps_done") == str(config.steps)


def stage(G, out: Path, config: TrainConfig, args: argparse.Namespace, init: Optional[Path] = None,
          photos: Optional[Photos] = None) -> Optional[Path]:
    """Run one stage into ``out`` (kept when finished already); None when ``--stop-at`` ended it early."""
    if finished(out, config):
        log(f"{out}: finished already, kept")
        return out
    train(G, out, config, resume=args.resume, encoder_kwargs=None if init else ARCHITECTURE, stop_at=args.stop_at,
          photos=photos, init=init)
    return out if finished(out, config) else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/encoder"))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stop-at", type=int, default=None, help="stop a stage after this many steps of its schedule")
    ap.add_argument("--no-export", action="store_true", help="leave the weights in --out only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    signal.signal(signal.SIGTERM, request_stop)  # stop between steps, checkpointed
    args.out.mkdir(parents=True, exist_ok=True)
    G = load_builtin_generator()
    out = None
    for name, config, photos in STAGES:  # each stage starts from the one before
        out = stage(G, args.out / f"{name}.safetensors", config, args, init=out, photos=photos)
        if out is None:
            return
    if not args.no_export:
        shutil.copyfile(out, builtin_path("encoder"))
        print(f"{out} -> {builtin_path('encoder')}")


if __name__ == "__main__":
    main()
