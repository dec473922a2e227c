"""Train the built-in attribute classifier on procedural faces.

``python -m morph.training.train_classifier --out runs/classifier [--resume] [--export PATH]``

Renders a fixed pool of faces (seeded; cached as ``pool.npz`` in ``--out``), then trains with
augmentation that makes it a fair judge of generator samples too: mirror images (with the
mirrored labels), small shifts and zooms, blur and noise. Ambiguous samples (labels near a
threshold) are left out of each attribute's loss. Checkpoints after every epoch; ``--resume``
continues; ``--max-minutes`` stops cleanly (checkpointed) so long runs can be split up.
Prints held-out accuracy per attribute; ``--export`` writes morph's format.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from morph.builtin.classifier import AttributeClassifier, save_classifier, to_input
from morph.training.toyfaces import ATTRIBUTES, ambiguous, labels, render, sample_params
from morph.training.toyfaces.params import BALD

CONTINUOUS = ("smile_amount", "turn", "tilt", "gaze_x", "gaze_y", "skin", "hair_light", "face_width", "light")
MIRRORED = {"turn", "tilt", "gaze_x", "light"}  # continuous values that change sign in a mirror image
MIRROR_FLIPS = {"turn_left"}  # binary attributes that swap in a mirror image
TRAIN_STREAM, VAL_STREAM = 0, 1


def make_pool(seed: int, stream: int, n: int, size: int = 64) -> dict[str, np.ndarray]:
    """``n`` rendered faces with their labels: images uint8 [n, size, size, 3], y bool [n, A],
    mask bool [n, A] (False where ambiguous), cont float32 [n, C], cont_mask bool [n, C]."""
    params = sample_params(np.random.default_rng([seed, stream]), n)
    y, amb = labels(params), ambiguous(params)
    cont = np.stack([y[c] for c in CONTINUOUS], 1).astype(np.float32)
    cont_mask = np.ones_like(cont, bool)
    cont_mask[:, CONTINUOUS.index("hair_light")] = params.hair_style != BALD
    return {
        "images": render(params, size),
        "y": np.stack([y[a] for a in ATTRIBUTES], 1),
        "mask": ~np.stack([amb[a] for a in ATTRIBUTES], 1),
        "cont": cont,
        "cont_mask": cont_mask,
    }


def load_pool(out: Path, seed: int, stream: int, n: int) -> dict[str, np.ndarray]:
    path = out / f"pool-{seed}-{stream}-{n}.npz"
    if path.is_file():
        with np.load(path) as data:
            return dict(data)
    start = time.perf_counter()
    pool = make_pool(seed, stream, n)
    np.savez(path, **pool)
    print(f"rendered {n} faces (stream {stream}) in {time.perf_counter() - start:.0f}s -> {path}", flush=True)
    return pool


def augment(x: torch.Tensor, y: torch.Tensor, cont: torch.Tensor, gen: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random mirror (labels follow), shift/zoom, blur and noise on a batch in [-1, 1]."""
    n = len(x)
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    y = y.clone()
    for a in MIRROR_FLIPS:
        i = ATTRIBUTES.index(a)
        y[:, i] = torch.where(flip, 1.0 - y[:, i], y[:, i])
    sign = torch.ones(n, len(CONTINUOUS))
    for c in MIRRORED:
        sign[:, CONTINUOUS.index(c)] = torch.where(flip, -1.0, 1.0)
    cont = cont * sign
    # shift by up to ±3 % and zoom by up to ±5 %
    scale = 1.0 + 0.05 * (2 * torch.rand(n, generator=gen) - 1)
    shift = 0.06 * (2 * torch.rand(n, 2, generator=gen) - 1)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Gaussian blur of random strength (none for a third of the batch)
    sigma = (0.2 + 1.0 * torch.rand(n, generator=gen)) * (torch.rand(n, generator=gen) > 0.33)
    t = torch.arange(-2, 3, dtype=torch.float32)
    k1 = torch.exp(-0.5 * (t[None] / sigma.clamp(min=1e-3)[:, None]) ** 2)
    k1 = k1 / k1.sum(1, keepdim=True)
    k = (k1[:, :, None] * k1[:, None, :]).repeat_interleave(3, 0)[:, None]  # [3n, 1, 5, 5]
    x = F.conv2d(F.pad(x.reshape(1, 3 * n, *x.shape[2:]), [2] * 4, mode="replicate"), k, groups=3 * n)
    x = x.reshape(n, 3, *x.shape[2:])
    x = x + (0.04 * torch.rand(n, 1, 1, 1, generator=gen)) * torch.randn(x.shape, generator=gen)
    return x, y, cont


@torch.no_grad()
def accuracy(model: AttributeClassifier, pool: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per attribute: accuracy on the unambiguous faces (``clear``) and on all faces (``all``)."""
    pred = model.predict(pool["images"])["probs"] > 0.5
    out = {}
    for i, a in enumerate(ATTRIBUTES):
        hit = pred[:, i] == pool["y"][:, i]
        out[a] = {"clear": float(hit[pool["mask"][:, i]].mean()), "all": float(hit.mean()),
                  "n_clear": int(pool["mask"][:, i].sum())}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m morph.training.train_classifier", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/classifier"), help="run folder (pool cache, checkpoint)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=30_000, help="training faces (default 30000)")
    ap.add_argument("--val", type=int, default=4_000, help="held-out faces (default 4000)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--widths", type=str, default="16,32,64,128")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    ap.add_argument("--max-minutes", type=float, default=0.0, help="stop (checkpointed) after this long; 0: no limit")
    ap.add_argument("--export", type=Path, default=None, help="write the trained classifier here (morph format)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    torch.manual_seed(args.seed)

    train, val = load_pool(args.out, args.seed, TRAIN_STREAM, args.train), load_pool(args.out, args.seed, VAL_STREAM, args.val)
    cm = np.where(train["cont_mask"], train["cont"], np.nan)
    mean, std = np.nanmean(cm, 0), np.nanstd(cm, 0)
    mean[[CONTINUOUS.index(c) for c in MIRRORED]] = 0.0  # keep mirrored values odd
    model = AttributeClassifier(ATTRIBUTES, CONTINUOUS, [int(w) for w in args.widths.split(",")], 64,
                                mean.tolist(), std.tolist())
    steps_per_epoch = args.train // args.batch
    total = steps_per_epoch * args.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total, pct_start=0.15)
    model = model.to(memory_format=torch.channels_last)
    epoch = 0
    ckpt_path = args.out / "checkpoint.pt"
    if args.resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
        epoch = int(ckpt["epoch"])
        print(f"resumed at epoch {epoch}", flush=True)

    images = torch.from_numpy(train["images"])
    y_all = torch.from_numpy(train["y"]).float()
    m_all = torch.from_numpy(train["mask"]).float()
    c_all = (torch.from_numpy(train["cont"]) - model.cont_mean) / model.cont_std
    cm_all = torch.from_numpy(train["cont_mask"]).float()
    log = open(args.out / "log.jsonl", "a")
    while epoch < args.epochs:
        gen = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        order = torch.randperm(args.train, generator=gen)
        model.train()
        t0, seen, run_loss = time.perf_counter(), 0, 0.0
        for step in range(steps_per_epoch):
            idx = order[step * args.batch:(step + 1) * args.batch]
            x = to_input(images[idx])
            x, y, c = augment(x, y_all[idx], c_all[idx], gen)
            x = x.contiguous(memory_format=torch.channels_last)  # ~20 % faster convolutions on CPU
            logits, pred_c, _ = model(x)
            bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
            loss_a = (bce * m_all[idx]).sum() / m_all[idx].sum()
            loss_c = ((pred_c - c) ** 2 * cm_all[idx]).sum() / cm_all[idx].sum()
            loss = loss_a + 0.3 * loss_c
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen += len(idx)
            run_loss += float(loss.detach())
            if args.max_minutes and time.perf_counter() - started > 60 * args.max_minutes:
                break
        else:
            epoch += 1
            acc = accuracy(model, val)
            rate = seen / (time.perf_counter() - t0)
            record = {"epoch": epoch, "loss": run_loss / steps_per_epoch, "images_per_s": rate,
                      "val": {a: round(v["clear"], 4) for a, v in acc.items()}}
            print(json.dumps(record), flush=True)
            log.write(json.dumps(record) + "\n")
            log.flush()
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "epoch": epoch}, ckpt_path)
            continue
        print(f"stopped after {args.max_minutes} min in epoch {epoch + 1}; the last checkpoint is the end of epoch "
              f"{epoch}: rerun with --resume", flush=True)
        return
    acc = accuracy(model, val)
    print("held-out accuracy (unambiguous faces / all faces):")
    for a, v in acc.items():
        print(f"  {a:<10} {100 * v['clear']:6.2f} %  {100 * v['all']:6.2f} %   (n={v['n_clear']})")
    if args.export:
        args.export.parent.mkdir(parents=True, exist_ok=True)
        save_classifier(args.export, model.eval(), {
            "trained_by": "python -m morph.training.train_classifier",
            "args": {k: str(v) for k, v in vars(args).items() if k not in ("resume", "export", "threads", "max_minutes")},
            "heldout_accuracy": {a: round(v["clear"], 4) for a, v in acc.items()},
        })
        print(f"wrote {args.export}")


if __name__ == "__main__":
    main()
