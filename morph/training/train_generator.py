"""Train the built-in StyleGAN2 generator by fitting it to the procedural face renderer.

``python -m morph.training.train_generator --out runs/generator [--kimg 300] [--budget-minutes 115] [--resume] [--export PATH]``

Method: every latent z has a target image, the renderer's face for z (``morph.training.latent``),
so the generator is trained by plain regression, ``synthesis(mapping(z)) ≈ target(z)``, with an
L1 loss on the image and on a 3-level pyramid of downsampled copies, plus (``--feature-weight``)
an L1 loss on the activations of a face classifier (``weights/perceptual.safetensors``, not the
judge that ``evaluate`` uses), which sharpens the small features that make an attribute. Compared with adversarial
training this needs no discriminator, cannot collapse or diverge, and converges in the couple
of hours a 2-core CPU allows; the GAN-like latent structure is trained in explicitly:

* style mixing (probability ``--mix``): per sample a crossover layer c; layers < c take w(z_A),
  the rest w(z_B), and the target takes the coarse fields (pose, shape, expression) from A and
  the fine ones (colours) from B, as ``latent.LEVEL`` assigns them;
* truncation (probability ``--trunc``): w_avg (tracked as NVIDIA does) lerped towards w by ψ ~ U(0, 1)
  must draw the face of ψ·z, so truncation pulls towards a median face;
* soft targets across discrete fields, so interpolations blend rather than jump.

The architecture is NVIDIA's (``Generator(**init_kwargs)``), noise unused (the renderer has
none; noise strengths stay 0, so every noise mode gives the same image). An exponential moving
average of the weights (G_ema) is what gets exported, in morph's own format. Batches are a pure
function of (seed, step), and checkpoints hold everything else, so ``--resume`` continues a run
exactly where it stopped. The run ends after ``--kimg`` thousand images or ``--budget-minutes`` of
training, whichever comes first (the learning-rate ramp-down follows whichever is further along).
Logs loss and images/s; writes sample grids (samples above, targets below).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from morph.projection.losses import multiscale
from morph.stylegan2.networks import Generator
from morph.training.latent import LATENT_DIM, LEVEL, coords, mix_coords, render_targets
from morph.training.toyfaces import grid, write_png

DEFAULTS = dict(
    resolution=64, w_dim=128, mapping_layers=4, mapping_lr_mul=1.0, channel_base=2048, channel_max=256,
    batch=16, lr=0.004, kimg=300.0, budget_minutes=0.0, feature_weight=1.0, mix=0.9, trunc=0.2, trunc_start_kimg=10.0, ema_kimg=5.0,
)


def init_kwargs(cfg: dict) -> dict:
    return dict(z_dim=LATENT_DIM, c_dim=0, w_dim=cfg["w_dim"], img_resolution=cfg["resolution"], img_channels=3,
                mapping_kwargs=dict(num_layers=cfg["mapping_layers"], lr_multiplier=cfg["mapping_lr_mul"],
                                    w_avg_beta=0.995),
                synthesis_kwargs=dict(channel_base=cfg["channel_base"], channel_max=cfg["channel_max"],
                                      num_fp16_res=0, conv_clamp=None, architecture="skip"))


def progress(nimg: int, seconds: float, cfg: dict) -> float:
    """Fraction of the run done: images seen of ``kimg``, or time spent of ``budget_minutes`` if that is further."""
    done = nimg / (cfg["kimg"] * 1000)
    if cfg.get("budget_minutes"):
        done = max(done, seconds / (60 * cfg["budget_minutes"]))
    return done


def learning_rate(frac: float, cfg: dict) -> float:
    """Constant, then a cosine ramp down to a tenth over the last 40 % of the run."""
    t = min(max((frac - 0.6) / 0.4, 0.0), 1.0)
    return cfg["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def make_batch(seed: int, step: int, cfg: dict, num_ws: int) -> dict[str, torch.Tensor]:
    """The step's latents, crossovers, truncation and targets: a pure function of (seed, step)."""
    rng = np.random.default_rng([seed, step])
    n = cfg["batch"]
    za = rng.standard_normal((n, LATENT_DIM))
    zb = rng.standard_normal((n, LATENT_DIM))
    cutoff = np.where(rng.random(n) < cfg["mix"], rng.integers(1, num_ws, n), num_ws)
    psi = np.where(rng.random(n) < cfg["trunc"], rng.random(n), 1.0)
    if step * n < cfg["trunc_start_kimg"] * 1000:  # w_avg is meaningless until it has settled
        psi = np.ones(n)
    x = mix_coords(psi[:, None] * coords(za), psi[:, None] * coords(zb), cutoff)
    target = render_targets(x, cfg["resolution"])
    return {"za": torch.from_numpy(za).float(), "zb": torch.from_numpy(zb).float(),
            "cutoff": torch.from_numpy(cutoff), "psi": torch.from_numpy(psi).float(),
            "target": torch.from_numpy(target)}


def generate(G: Generator, za: torch.Tensor, zb: torch.Tensor, cutoff: torch.Tensor, psi: torch.Tensor,
             update_w_avg: bool = False) -> torch.Tensor:
    """Images for mixed, truncated latents (the training forward pass)."""
    wa = G.mapping(za, None, update_w_avg=update_w_avg)
    wb = G.mapping(zb, None)
    w_avg = G.mapping.w_avg
    p = psi[:, None, None]
    wa, wb = w_avg + p * (wa - w_avg), w_avg + p * (wb - w_avg)
    layer = torch.arange(G.num_ws, device=cutoff.device)[None, :, None]
    ws = torch.where(layer < cutoff[:, None, None], wa, wb)
    return G.synthesis(ws, noise_mode="none", fused_modconv=False)


def pyramid_l1(img: torch.Tensor, target: torch.Tensor, levels: int = 3) -> torch.Tensor:
    """Mean absolute error of the image and of ``levels`` 2×-downsampled copies, summed over the levels
    (projection's multi-scale L1: coarse structure and colour get extra weight, so they are learnt first)."""
    return (levels + 1) * multiscale(1, levels)(target)(img).mean()


class FeatureLoss:
    """L1 between the stage activations of a face classifier for image and target, each stage
    normalised by the target's mean activation: a perceptual loss that knows what matters in
    these faces (mouth curve, glasses, hair outline). The network is the shipped ``perceptual``
    classifier, trained like the judge but from another seed on other faces, so the judge's
    features (the Fréchet distance) are never optimised directly."""

    def __init__(self, path=None):
        from morph.builtin import builtin_path
        from morph.builtin.classifier import load_classifier

        path = path or builtin_path("perceptual")
        if not Path(path).is_file():
            raise SystemExit(f"{path} is missing: train it first with python -m morph.training.train_classifier "
                             f"--seed 1 --out runs/perceptual --export {path}  (or pass --feature-weight 0)")
        self.net = load_classifier(path)

    def __call__(self, img: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        size = self.net.image_size
        if img.shape[-1] != size:
            img = F.interpolate(img, size=(size, size), mode="area")
            target = F.interpolate(target, size=(size, size), mode="area")
        with torch.no_grad():
            want = self.net.feature_maps(target)
        got = self.net.feature_maps(img)
        return sum((g - w).abs().mean() / (w.abs().mean() + 1e-3) for g, w in zip(got, want)) / len(got)


def sample_grid(G: Generator, cfg: dict, n: int = 16, seed: int = 12345) -> np.ndarray:
    """uint8 grid: generator samples (row pairs: sample above target) for fixed latents."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, LATENT_DIM))
    with torch.no_grad():
        img = G(torch.from_numpy(z).float(), None, noise_mode="none")
    fake = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    real = ((render_targets(coords(z), cfg["resolution"]).transpose(0, 2, 3, 1) + 1) * 127.5).round().astype(np.uint8)
    cols = 8
    rows = []
    for start in range(0, n, cols):
        rows += [fake[start:start + cols], real[start:start + cols]]
    return grid(np.concatenate(rows), cols)


def export(G_ema: Generator, path: Path, cfg: dict, nimg: int, seconds: float) -> None:
    from morph.checkpoints import write_native

    path.parent.mkdir(parents=True, exist_ok=True)
    write_native(path, G_ema.init_kwargs, G_ema.state_dict(), {
        "description": "morph built-in generator: StyleGAN2 fitted to morph.training.toyfaces procedural faces",
        "trained_by": "python -m morph.training.train_generator",
        "training": {**cfg, "images_seen": nimg, "train_seconds": round(seconds)},
        "latent_fields": list(LEVEL),
        "field_levels": LEVEL,
    })


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m morph.training.train_generator", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/generator"), help="run folder (checkpoint, logs, grids)")
    ap.add_argument("--seed", type=int, default=0)
    for key, value in DEFAULTS.items():
        ap.add_argument("--" + key.replace("_", "-"), type=type(value), default=value, help=f"(default {value})")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--resume", action="store_true",
                    help="continue from --out/checkpoint.pt with its settings (--kimg, --budget-minutes and "
                         "--feature-weight may be changed)")
    ap.add_argument("--max-minutes", type=float, default=0.0, help="stop (checkpointed) after this long; 0: no limit")
    ap.add_argument("--log-every", type=int, default=20, help="steps between log lines")
    ap.add_argument("--snap-every", type=int, default=250, help="steps between checkpoints, grids and exports")
    ap.add_argument("--export", type=Path, default=None,
                    help="also write the G_ema weights here at every snapshot (e.g. morph/builtin/weights/generator.safetensors)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = {k: getattr(args, k) for k in DEFAULTS}
    ckpt_path = args.out / "checkpoint.pt"
    resume = args.resume and ckpt_path.is_file()
    ckpt = torch.load(ckpt_path, weights_only=True, map_location="cpu") if resume else None
    if ckpt is not None:
        saved = json.loads(ckpt["cfg"])
        saved = {"feature_weight": 0.0, "budget_minutes": 0.0, **saved}
        changed = {k: (saved[k], cfg[k]) for k in saved if k not in ("kimg", "budget_minutes", "feature_weight") and saved[k] != cfg[k]}
        if changed:
            print(f"resuming with the checkpoint's settings; ignoring {changed}", flush=True)
        # the run's length and loss weights may be changed on resume, but only by saying so
        cfg = {**saved, **{k: cfg[k] for k in ("kimg", "budget_minutes", "feature_weight") if cfg[k] != DEFAULTS[k]}}

    torch.manual_seed(args.seed)
    G = Generator(**init_kwargs(cfg)).to(device).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    opt = torch.optim.Adam(G.parameters(), lr=cfg["lr"], betas=(0.9, 0.99), eps=1e-8)
    step, seconds = 0, 0.0
    if ckpt is not None:
        G.load_state_dict(ckpt["G"])
        G_ema.load_state_dict(ckpt["G_ema"])
        opt.load_state_dict(ckpt["opt"])
        step, seconds = int(ckpt["step"]), float(ckpt["seconds"])
        print(f"resumed at step {step} ({step * cfg['batch'] / 1000:.1f} kimg, {seconds / 60:.1f} min trained)", flush=True)
    feature_loss = FeatureLoss() if cfg.get("feature_weight") else None
    params = sum(p.numel() for p in G.parameters())
    print(f"generator: {cfg['resolution']} px, {G.num_ws} ws, {params / 1e6:.2f} M parameters; "
          f"channels {[min(cfg['channel_base'] // r, cfg['channel_max']) for r in G.synthesis.block_resolutions]}; "
          f"{torch.get_num_threads()} threads", flush=True)

    log = open(args.out / "log.jsonl", "a")
    started = time.perf_counter()
    window_t, window_n, window_loss, window_data = time.perf_counter(), 0, 0.0, 0.0

    def snapshot() -> None:
        torch.save({"G": G.state_dict(), "G_ema": G_ema.state_dict(), "opt": opt.state_dict(), "step": step,
                    "seconds": seconds, "cfg": json.dumps(cfg)}, args.out / "checkpoint.tmp")
        os.replace(args.out / "checkpoint.tmp", ckpt_path)
        write_png(args.out / f"grid-{step:06d}.png", sample_grid(G_ema.cpu(), cfg))
        G_ema.to(device)
        export(G_ema.cpu(), args.out / "generator.safetensors", cfg, step * cfg["batch"], seconds)
        if args.export:
            export(G_ema, args.export, cfg, step * cfg["batch"], seconds)
        G_ema.to(device)

    while progress(step * cfg["batch"], seconds, cfg) < 1.0:
        t0 = time.perf_counter()
        lr = learning_rate(progress(step * cfg["batch"], seconds, cfg), cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = make_batch(args.seed, step, cfg, G.num_ws)
        t_data = time.perf_counter() - t0
        batch = {k: v.to(device) for k, v in batch.items()}
        img = generate(G, batch["za"], batch["zb"], batch["cutoff"], batch["psi"], update_w_avg=True)
        loss = pyramid_l1(img, batch["target"])
        if feature_loss is not None:
            loss = loss + cfg["feature_weight"] * feature_loss(img, batch["target"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # G_ema: half-life ema_kimg, ramped up over the first images as NVIDIA does
        nimg = (step + 1) * cfg["batch"]
        ema_nimg = min(cfg["ema_kimg"] * 1000, nimg * 0.05)
        beta = 0.5 ** (cfg["batch"] / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.lerp_(p, 1 - beta)
            for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)
        step += 1
        dt = time.perf_counter() - t0
        seconds += dt
        window_n += cfg["batch"]
        window_loss += float(loss.detach()) * cfg["batch"]
        window_data += t_data
        finished = progress(step * cfg["batch"], seconds, cfg) >= 1.0
        if step % args.log_every == 0 or finished:
            span = time.perf_counter() - window_t
            record = {"step": step, "kimg": round(step * cfg["batch"] / 1000, 2), "loss": round(window_loss / window_n, 5),
                      "images_per_s": round(window_n / span, 2), "s_per_step": round(span * cfg["batch"] / window_n, 3),
                      "data_share": round(window_data / span, 3), "lr": round(lr, 6), "minutes": round(seconds / 60, 1)}
            print(json.dumps(record), flush=True)
            log.write(json.dumps(record) + "\n")
            log.flush()
            window_t, window_n, window_loss, window_data = time.perf_counter(), 0, 0.0, 0.0
        if step % args.snap_every == 0 or finished:
            snapshot()
        if args.max_minutes and time.perf_counter() - started > 60 * args.max_minutes:
            if step % args.snap_every and not finished:
                snapshot()
            print(f"stopped after {args.max_minutes} min at step {step}; rerun with --resume to continue", flush=True)
            return
    print(f"done: {step} steps, {step * cfg['batch'] / 1000:.1f} kimg in {seconds / 60:.1f} min; "
          f"G_ema in {args.out / 'generator.safetensors'}" + (f" and {args.export}" if args.export else ""), flush=True)


if __name__ == "__main__":
    main()
