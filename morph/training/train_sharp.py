"""Train the sharp built-in generator: the 64 px regression fit grown to 128 px, then an adversarial phase.

``python -m morph.training.train_sharp --out runs/sharp [--device cuda] [--kimg 200] [--max-minutes M] [--resume]``

Why grow rather than fit again: the shipped generator (``train_generator``) already maps every z to
its renderer face, with the truncation, style-mixing levels and interpolation that the directions,
the encoder and the semantic tests rely on; only its pixels are soft. Growing keeps all of that for
free: a 128 px block is appended to the skip architecture with its ToRGB zeroed, so the grown
network starts as exactly the old one upsampled, and the mapping network (hence w, w_avg and the
directions) is frozen by default (``--train-mapping`` frees it). A regression fit at 128 px from
scratch would cost several times the 64 px fit and end as blurred, for the reason the issue names.

The adversarial phase is StyleGAN2's: a small residual discriminator (``discriminator.py``) against
renderer faces at the full resolution, non-saturating logistic loss, lazy R1 penalty on the reals
(every ``--r1-every`` steps, scaled by that interval), style-mixing regularisation (probability
``--mix``, random crossover), Adam with β₁ = 0 and an exponential moving average of G (G_ema, what is
exported). The regression is kept only as an *anchor* at low resolution: L1 between the sample and
its target face box-filtered to ``--anchor-res`` px (and the perceptual classifier's features at
64 px, ``--feature-weight``), so z keeps drawing its own face, mixed and truncated as the latent
structure says (``train_generator.make_batch``), while the discriminator alone decides the edges.
``--d-condition`` also shows D that low-resolution face beside the image (real faces: their own), so
that D rather than the L1 anchor holds each sample to its face.

Every batch is a pure function of (seed, step) and the checkpoint holds everything else (networks,
optimisers, torch RNG state, the run's settings), written atomically every ``--snap-every`` steps
and when stopped (``--max-minutes``, Ctrl-C), so ``--resume`` continues bit for bit. A progress bar
on a terminal, log lines otherwise; ``log.jsonl`` and sample grids in ``--out``; at every snapshot
G_ema in morph's safetensors format as ``--out/generator.safetensors`` (the shipped files are never
written by this script).
"""

from __future__ import annotations

import argparse
import copy
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F

from morph.core import progress
from morph.core.files import atomic_path
from morph.core.progress import Progress, log
from morph.stylegan2.networks import Generator
from morph.training.discriminator import Discriminator
from morph.training.latent import LEVEL
from morph.training.toyfaces import render, sample_params, write_png
from morph.training.train_generator import FeatureLoss, generate, make_batch, sample_grid

DEFAULTS: dict[str, Any] = dict(
    resolution=128, batch=16, kimg=200.0, g_lr=0.002, d_lr=0.002, r1_gamma=0.2, r1_every=16, mix=0.9,
    trunc=0.1, anchor_res=32, anchor_weight=1.0, feature_weight=0.5, ema_kimg=2.0,
    d_channel_base=2048, d_channel_max=128, train_mapping=False, d_condition=False,
)
LENGTH_KEYS = ("kimg",)  # settings a resumed run may change (the rest come from the checkpoint)


def grow(G: Generator, resolution: int) -> Generator:
    """A copy of ``G`` with synthesis blocks added up to ``resolution`` (skip architecture), each new ToRGB
    zeroed, so the result draws exactly ``G``'s image upsampled; every other tensor is ``G``'s."""
    if resolution == G.img_resolution:
        return copy.deepcopy(G)
    if resolution < G.img_resolution or G.init_kwargs["synthesis_kwargs"].get("architecture", "skip") != "skip":
        raise ValueError(f"can only grow a skip-architecture generator upwards, not {G.img_resolution} → {resolution} px")
    kwargs = copy.deepcopy(G.init_kwargs)
    kwargs["img_resolution"] = resolution
    big = Generator(**kwargs)
    missing, unexpected = big.load_state_dict(G.state_dict(), strict=False)
    assert not unexpected, unexpected
    with torch.no_grad():
        for res in big.synthesis.block_resolutions:
            if res > G.img_resolution:
                block = getattr(big.synthesis, f"b{res}")
                block.torgb.weight.zero_()
                block.torgb.bias.zero_()
                for layer in block.noise_layers():
                    layer.noise_strength.zero_()  # the renderer has no noise, nor has the model it grows from
    return big


def anchor_loss(img: torch.Tensor, target: torch.Tensor, res: int) -> torch.Tensor:
    """L1 between image and target box-filtered to ``res`` px: what to draw, not how crisply."""
    factor = img.shape[-1] // res
    if factor > 1:
        img, target = F.avg_pool2d(img, factor), F.avg_pool2d(target, factor)
    return (img - target).abs().mean()


def renderer_faces(rng: np.random.Generator, n: int, resolution: int) -> torch.Tensor:
    """``n`` fresh faces of the renderer the generator learns from, [n, 3, R, R] in [-1, 1]."""
    faces = render(sample_params(rng, n), resolution)
    return torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def real_images(seed: int, step: int, n: int, resolution: int) -> torch.Tensor:
    """The discriminator's reals for a step: fresh renderer faces, a pure function of (seed, step)."""
    return renderer_faces(np.random.default_rng([seed, step, 1]), n, resolution)


def r1_penalty(D: Discriminator, reals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, mean over the batch of ‖∇ₓ D(x)‖²) on the reals: R1, which keeps D smooth where the data is."""
    reals = reals.detach().requires_grad_(True)
    logits = D(reals)
    (grad,) = torch.autograd.grad(logits.sum(), reals, create_graph=True)
    return logits, grad.square().sum(dim=[1, 2, 3]).mean()


class StepBatches(torch.utils.data.Dataset):
    """Item ``step``: that step's latents, crossovers, truncation, anchor targets and the discriminator's
    reals, a pure function of (seed, step); rendered on the CPU, in ``--workers`` processes if asked."""

    def __init__(self, cfg: dict, seed: int, num_ws: int):
        self.cfg, self.seed, self.num_ws = {**cfg, "trunc_start_kimg": 0.0}, seed, num_ws

    def __len__(self) -> int:
        return total_steps(self.cfg)

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        batch = make_batch(self.seed, step, self.cfg, self.num_ws)
        batch["reals"] = real_images(self.seed, step, self.cfg["batch"], self.cfg["resolution"])
        return batch


def total_steps(cfg: dict) -> int:
    """Steps of a run of ``kimg`` thousand images."""
    return int(round(cfg["kimg"] * 1000 / cfg["batch"]))


def batches(dataset: StepBatches, start: int, workers: int, pin: bool) -> Iterator[dict[str, torch.Tensor]]:
    """The dataset's items from ``start`` on, in order (prefetched by ``workers`` processes when > 0)."""
    if workers <= 0:
        return (dataset[i] for i in range(start, len(dataset)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, sampler=range(start, len(dataset)),
                                         num_workers=workers, pin_memory=pin, prefetch_factor=4,
                                         persistent_workers=False)
    return iter(loader)


class Trainer:
    """Networks, optimisers and the step counter of one run; :meth:`step` does one G and one D update."""

    def __init__(self, G_init: Generator, cfg: dict, seed: int, device: torch.device,
                 feature_loss: Optional[FeatureLoss] = None):
        self.cfg, self.seed, self.device = cfg, seed, device
        self.feature_loss = feature_loss
        torch.manual_seed(seed)
        self.G = grow(G_init, cfg["resolution"]).to(device).train().requires_grad_(True)
        self.G.mapping.requires_grad_(bool(cfg["train_mapping"]))
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        d_channels = self.G.img_channels * (2 if cfg["d_condition"] else 1)
        self.D = Discriminator(cfg["resolution"], d_channels, cfg["d_channel_base"],
                               cfg["d_channel_max"]).to(device).train()
        # Adam as StyleGAN2: β₁ = 0; D's lazy R1 interval corrected in lr and β₂ as NVIDIA does.
        c = cfg["r1_every"] / (cfg["r1_every"] + 1)
        self.opt_G = torch.optim.Adam([p for p in self.G.parameters() if p.requires_grad], lr=cfg["g_lr"],
                                      betas=(0.0, 0.99), eps=1e-8)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg["d_lr"] * c, betas=(0.0, 0.99 ** c), eps=1e-8)
        self.step_count, self.seconds = 0, 0.0

    def step(self, batch: Optional[dict[str, torch.Tensor]] = None) -> dict[str, float]:
        """One generator update (adversarial + anchor), one discriminator update (+ lazy R1), the EMA.
        ``batch`` is ``StepBatches(...)[step_count]``, made here when not given."""
        cfg, n = self.cfg, self.cfg["batch"]
        if batch is None:
            batch = StepBatches(self.cfg, self.seed, self.G.num_ws)[self.step_count]
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        reals = batch["reals"]
        train_mapping = bool(cfg["train_mapping"])

        # generator: fool D, and still draw z's own face at low resolution
        self.D.requires_grad_(False)
        fake = generate(self.G, batch["za"], batch["zb"], batch["cutoff"], batch["psi"], update_w_avg=train_mapping)
        g_adv = F.softplus(-self.D(self.d_input(fake, batch["target"]))).mean()
        g_anchor = anchor_loss(fake, batch["target"], cfg["anchor_res"])
        g_loss = g_adv + cfg["anchor_weight"] * g_anchor
        g_feat = torch.zeros(())
        if self.feature_loss is not None and cfg["feature_weight"]:
            g_feat = self.feature_loss(fake, batch["target"])
            g_loss = g_loss + cfg["feature_weight"] * g_feat
        self.opt_G.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_G.step()

        # discriminator: logistic loss on fakes and reals, R1 on the reals every r1_every steps
        self.D.requires_grad_(True)
        d_fake = F.softplus(self.D(self.d_input(fake.detach(), batch["target"]))).mean()
        lazy_r1 = self.step_count % cfg["r1_every"] == 0
        real_input = self.d_input(reals, reals)
        if lazy_r1:
            real_logits, r1 = r1_penalty(self.D, real_input)
        else:
            real_logits, r1 = self.D(real_input), torch.zeros((), device=self.device)
        d_real = F.softplus(-real_logits).mean()
        d_loss = d_fake + d_real + (cfg["r1_gamma"] / 2) * r1 * cfg["r1_every"]
        self.opt_D.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_D.step()

        # G_ema: half-life ema_kimg images
        beta = 0.5 ** (n / max(cfg["ema_kimg"] * 1000, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.lerp_(p, 1 - beta)
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)
        self.step_count += 1
        out = {"g_adv": g_adv, "g_anchor": g_anchor, "g_feat": g_feat, "d_fake": d_fake, "d_real": d_real}
        out = {k: float(v.detach()) for k, v in out.items()}
        if lazy_r1:
            out["r1"] = float(r1.detach())
        return out

    def d_input(self, img: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """What D sees: the image, and with ``d_condition`` beside it ``source`` (the face it must be: its
        target, or for a real face itself) box-filtered to ``anchor_res`` and blown up again, so D judges
        "a crisp drawing of this face" and content no longer rests on the L1 anchor alone."""
        if not self.cfg["d_condition"]:
            return img
        factor = img.shape[-1] // self.cfg["anchor_res"]
        cond = F.interpolate(F.avg_pool2d(source, factor), scale_factor=factor, mode="nearest") if factor > 1 else source
        return torch.cat([img, cond], dim=1)

    def state(self) -> dict:
        """Everything :meth:`load` needs to continue exactly (CPU tensors; ``torch.load(weights_only=True)``-safe)."""
        rng = {"torch_rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return {"G": self.G.state_dict(), "G_ema": self.G_ema.state_dict(), "D": self.D.state_dict(),
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(), "step": self.step_count,
                "seconds": self.seconds, "cfg": json.dumps(self.cfg, sort_keys=True),
                "G_init_kwargs": json.dumps(self.G.init_kwargs, sort_keys=True), **rng}

    def load(self, ckpt: dict) -> None:
        self.G.load_state_dict(ckpt["G"])
        self.G_ema.load_state_dict(ckpt["G_ema"])
        self.D.load_state_dict(ckpt["D"])
        self.opt_G.load_state_dict(ckpt["opt_G"])
        self.opt_D.load_state_dict(ckpt["opt_D"])
        self.step_count, self.seconds = int(ckpt["step"]), float(ckpt["seconds"])
        torch.set_rng_state(ckpt["torch_rng"])
        if "cuda_rng" in ckpt and self.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["cuda_rng"], self.device)


def save_checkpoint(trainer: Trainer, path: Path) -> None:
    """The trainer's state, written to a temp file and renamed (a kill mid-write leaves the old one)."""
    with atomic_path(path) as tmp:
        torch.save(trainer.state(), tmp)


def read_checkpoint(path: Path) -> dict:
    """A checkpoint written by :func:`save_checkpoint` (tensors and plain values only; nothing executed)."""
    return torch.load(path, weights_only=True, map_location="cpu")


def export(trainer: Trainer, path: Path, source: str) -> None:
    """G_ema in morph's safetensors format, with the run's settings in its header."""
    from morph.checkpoints import write_native

    G = trainer.G_ema
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in G.state_dict().items()}
    write_native(path, G.init_kwargs, state, {
        "description": f"morph built-in generator, {G.img_resolution} px: the regression fit grown and trained "
                       "adversarially against morph.training.toyfaces procedural faces",
        "trained_by": "python -m morph.training.train_sharp",
        "grown_from": source,
        "training": {**trainer.cfg, "images_seen": trainer.step_count * trainer.cfg["batch"],
                     "train_seconds": round(trainer.seconds)},
        "latent_fields": list(LEVEL),
        "field_levels": LEVEL,
    })


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m morph.training.train_sharp", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/sharp"), help="run folder (checkpoint, log, grids, export)")
    ap.add_argument("--init", default="builtin", help="generator to grow from: 'builtin' (the shipped 64 px) or a file")
    ap.add_argument("--seed", type=int, default=0)
    for key, value in DEFAULTS.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            ap.add_argument(flag, action="store_true", help="(default off)")
        else:
            ap.add_argument(flag, type=type(value), default=value, help=f"(default {value})")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ...")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--workers", type=int, default=0,
                    help="processes rendering batches ahead (0: in the training process); a GPU wants several")
    ap.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt with its settings "
                                                          "(only --kimg may be changed)")
    ap.add_argument("--max-minutes", type=float, default=0.0, help="stop (checkpointed) after this long; 0: no limit")
    ap.add_argument("--log-every", type=int, default=20, help="steps between log records")
    ap.add_argument("--snap-every", type=int, default=200, help="steps between checkpoints, grids and exports")
    return ap.parse_args(argv)


def load_init(spec: str) -> Generator:
    """The generator to grow from (always loaded on the CPU, moved with the trainer)."""
    from morph.models.loader import load_model

    G = load_model(spec)
    if getattr(G, "family", None) != "stylegan2":
        from morph.core.errors import MorphError

        raise MorphError(f"--init must be a StyleGAN2 generator, got a {getattr(G, 'family', '?')} model", where=spec)
    return G


class StopRequests:
    """Ctrl-C / SIGTERM while training: remembered, so the step in flight finishes and is checkpointed
    (a step cut in half would leave G updated and D not). A second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested = ""
        self._saved: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = f"{signal.Signals(signum).name} received"

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace) -> Trainer:
    """Build or resume the run that ``args`` describe and train it until done, stopped or interrupted."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = {k: getattr(args, k) for k in DEFAULTS}
    ckpt_path = args.out / "checkpoint.pt"
    ckpt = read_checkpoint(ckpt_path) if args.resume and ckpt_path.is_file() else None
    if ckpt is not None:
        saved = json.loads(ckpt["cfg"])
        ignored = {k: cfg[k] for k in saved if k not in LENGTH_KEYS and saved[k] != cfg[k] and cfg[k] != DEFAULTS[k]}
        if ignored:
            log(f"resuming with the checkpoint's settings; ignoring {ignored}")
        cfg = {**DEFAULTS, **saved, **{k: cfg[k] for k in LENGTH_KEYS}}  # keys added since: their defaults
        # the grown network's shape is the checkpoint's; the source file only provides a skeleton
        G_init = Generator(**json.loads(ckpt["G_init_kwargs"]))
    else:
        G_init = load_init(args.init)
    feature_loss = FeatureLoss() if cfg["feature_weight"] else None
    trainer = Trainer(G_init, cfg, args.seed, device, feature_loss)
    if ckpt is not None:
        trainer.load(ckpt)
        log(f"resumed at step {trainer.step_count} ({trainer.step_count * cfg['batch'] / 1000:.2f} kimg, "
            f"{trainer.seconds / 60:.1f} min trained)")
    total = total_steps(cfg)
    if feature_loss is not None:
        feature_loss.net.to(device)
    G, D = trainer.G, trainer.D
    log(f"generator {G.img_resolution} px, {G.num_ws} ws, {sum(p.numel() for p in G.parameters()) / 1e6:.2f} M "
        f"parameters ({sum(p.numel() for p in G.parameters() if p.requires_grad) / 1e6:.2f} M trained); "
        f"discriminator {sum(p.numel() for p in D.parameters()) / 1e6:.2f} M; batch {cfg['batch']}; {total} steps; "
        f"{device}, {torch.get_num_threads()} threads")

    def snapshot() -> None:
        save_checkpoint(trainer, ckpt_path)
        export(trainer, args.out / "generator.safetensors", str(args.init))
        G_cpu = copy.deepcopy(trainer.G_ema).cpu()
        write_png(args.out / f"grid-{trainer.step_count:06d}.png", sample_grid(G_cpu, cfg))

    # counts this session's steps, so that its rate and ETA are right after a resume
    bar = Progress(f"train_sharp from step {trainer.step_count}", total - trainer.step_count, unit="steps",
                   interval=60.0)
    started = time.perf_counter()
    window: dict[str, list[float]] = {}
    with open(args.out / "log.jsonl", "a") as log_file, StopRequests() as stop:
        data = batches(StepBatches(cfg, args.seed, G.num_ws), trainer.step_count, args.workers, device.type == "cuda")
        while trainer.step_count < total:
            t0 = time.perf_counter()
            for k, v in trainer.step(next(data)).items():
                window.setdefault(k, []).append(v)
            dt = time.perf_counter() - t0
            trainer.seconds += dt
            window.setdefault("s_per_step", []).append(dt)
            bar.advance(1)
            step = trainer.step_count
            if step % args.log_every == 0 or step == total:
                record = {"step": step, "kimg": round(step * cfg["batch"] / 1000, 3),
                          "minutes": round(trainer.seconds / 60, 2),
                          **{k: round(float(np.mean(v)), 5) for k, v in window.items()}}
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                if progress.mode() != "bar":  # a bar on a terminal shows the figures already
                    log(json.dumps(record))
                window = {}
            out_of_time = bool(args.max_minutes) and time.perf_counter() - started > 60 * args.max_minutes
            if step % args.snap_every == 0 or step == total or out_of_time or stop.requested:
                snapshot()
            if out_of_time or stop.requested:
                bar.close()
                why = stop.requested or f"stopped after {args.max_minutes} min"
                log(f"{why} at step {step}; checkpoint written, rerun with --resume to continue")
                return trainer
    bar.close()
    log(f"done: {trainer.step_count} steps, {trainer.step_count * cfg['batch'] / 1000:.1f} kimg in "
        f"{trainer.seconds / 60:.1f} min; G_ema in {args.out / 'generator.safetensors'}")
    return trainer


def main(argv: Optional[list[str]] = None) -> None:
    from morph.core.errors import MorphError

    try:
        run(parse_args(argv))
    except MorphError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
