"""One prepared GPU run that measures everything, under 8 minutes on one GPU, printed as one table.

Rows, in order (each row's failure is written into its cell; the run goes on and exits 1 at the end):

* ``gpu tests``: the ``gpu``-marked tests (CUDA frames = CPU frames, reduced precision within tolerance …).
* ``peak PREC``: a large square matmul in each precision: the card's practical peak, the yardstick.
* ``sg2 RES bB PREC``: StyleGAN2 config-f, random weights, images/s; the share of the peak its convolution
  and dense multiply-adds reach; NVIDIA's inference strategy (a grouped convolution of per-sample weights,
  ``fused_modconv``, their reference ops) on the same weights; and, for fp16/bf16, the PSNR of the frames
  against fp32 (``devices.PRECISION_TOLERANCE_DB`` is the bar).
* ``compile sg2 RES bB``: ``--compile`` (``devices.Compiled``) against eager at the render batch in fp32: images/s,
  the first call's seconds (the compilation) and the frames' PSNR against eager (``COMPILE_TOLERANCE_DB``).
* ``precision auto``: what ``--precision auto`` chooses for config-f on this card (``devices.auto_precision``:
  each half precision's PSNR against fp32) and its images/s against fp32's at the render batch.
* ``sg3 RES bB PREC``: StyleGAN3-R the same; at batch 1, 2 and 4 in fp32 against NVIDIA's reference
  composition of the filtered lrelu (bias_act → upfirdn2d → bias_act → upfirdn2d).
* ``render e2e``: ``morph render`` of a 1024 px config-f tour, frames/s end to end over generator-only.
* ``encoders N``: the stub generator (bench/render.py) at the render size, encoder-bound: frames/s with N
  ffmpeg processes.
* ``project bB`` / ``tune``: seconds per projection step (laplacian loss) and per encoder-training step.
* ``train_sharp``: the sharp 128 px built-in model trained for the minutes left (resumed if ``SHARP_DIR``
  holds a checkpoint), its checkpoint, export and evaluation under ``$OUT/sharp``.

    bench/device.sh [--smoke] [--minutes 8] [--out DIR]      # DIR defaults to $OUT, else outputs/device

``--smoke`` runs every row at tiny sizes (on the CPU in seconds), so the script works the first time it
meets a GPU; the tests run it so.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from generator import rate, sg3_synthesize, synthesis_flops  # noqa: E402  (bench/generator.py)
from render import CONFIG_F, speed, stub_render  # noqa: E402  (bench/render.py)

from morph.core.devices import (  # noqa: E402
    COMPILE_TOLERANCE_DB,
    PRECISION_TOLERANCE_DB,
    PRECISIONS,
    Compiled,
    auto_precision,
    frames_psnr,
    precision_psnr,
)
from morph.core.runtime import keep_freed_memory  # noqa: E402
from morph.stylegan2 import Generator  # noqa: E402
from morph.stylegan3 import Generator as StyleGAN3Generator  # noqa: E402
from morph.training.latent import LATENT_DIM  # noqa: E402

# StyleGAN3-R: NVIDIA's config-r (channels doubled, 1x1 convolutions, radial filters); morph's StyleGAN3 runs
# in float32 only, so its rows are fp32.
SG3_CONFIG = dict(z_dim=512, c_dim=0, w_dim=512, img_channels=3, mapping_kwargs=dict(num_layers=2),
                  conv_kernel=1, use_radial_filters=True)
FULL = dict(res=1024, batches=[1, 8, 32], render_batch=8, compile_backend="inductor", sg3_batches=[1, 2, 4, 8, 32], sg3_ref_batches=[1, 2, 4], seconds=1.0,
            matmul=8192, render_frames=120, encoders=[1, 2, 4, 8], stub_frames=240, project_batches=[1, 8],
            steps=5, sg2_kwargs=CONFIG_F, sg3_kwargs=dict(SG3_CONFIG, channel_base=65536, channel_max=1024))
SMOKE = dict(res=32, batches=[1, 2], render_batch=2, compile_backend="eager", sg3_batches=[1, 2], sg3_ref_batches=[1, 2], seconds=0.05, matmul=128,
             render_frames=6, encoders=[1, 2], stub_frames=12, project_batches=[1, 2], steps=2,
             sg2_kwargs=dict(z_dim=32, c_dim=0, w_dim=32, img_channels=3, mapping_kwargs=dict(num_layers=2),
                             synthesis_kwargs=dict(channel_base=512, channel_max=32, num_fp16_res=2,
                                                   conv_clamp=256)),
             sg3_kwargs=dict(SG3_CONFIG, z_dim=32, w_dim=32, channel_base=1024, channel_max=32, num_layers=4,
                             num_critical=1, margin_size=4))


class Table:
    """The run's one table: printed row by row as it is measured and rewritten to ``device.md`` each time."""

    def __init__(self, path: Path, title: str):
        self.path, self.lines, self.failed = path, [title, "", "| row | result | against | note |",
                                                   "|---|---|---|---|"], False
        self._write()
        print("\n".join(self.lines), flush=True)

    def row(self, name: str, result: str, against: str = "", note: str = "") -> None:
        line = f"| {name} | {result} | {against} | {note} |"
        self.lines.append(line)
        self._write()
        print(line, flush=True)

    def attempt(self, name: str, measure: Callable[[], None]) -> None:
        """Run ``measure`` (which adds its own rows); a failure becomes the row ``name: FAIL …``."""
        try:
            measure()
        except torch.cuda.OutOfMemoryError:  # a batch too large for this card is a finding, not a failure
            self.row(name, "does not fit", "", "out of GPU memory")
        except Exception as exc:  # the table goes on; the exit code tells
            self.failed = True
            last = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            self.row(name, "FAIL", "", last)
            traceback.print_exc(file=sys.stderr)
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _write(self) -> None:
        self.path.write_text("\n".join(self.lines) + "\n")


def timed(step: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """``step`` waited for: a GPU call returns before its kernels run."""
    if device.type != "cuda":
        return step
    return lambda: (step(), torch.cuda.synchronize(device))


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, seconds: float) -> float:
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    step = timed(lambda: torch.mm(a, b), device)
    step()
    return rate(step, 2.0 * n ** 3, seconds)


def gpu_tests(table: Table) -> None:
    files = [str(p) for p in sorted((ROOT / "tests").glob("test_*.py")) if "mark.gpu" in p.read_text()]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *files],
                          cwd=ROOT, capture_output=True, text=True)
    summary = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    if proc.returncode not in (0, 5):  # 5: nothing collected
        sys.stderr.write(proc.stdout[-4000:])
        table.failed = True
        table.row("gpu tests", "FAIL", "", summary)
    else:
        table.row("gpu tests", summary.strip("= "), "", "skipped ones need CUDA" if "skipped" in summary else "")


def precisions(device: torch.device) -> list[str]:
    names = ["fp32", "fp16", "bf16"]
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        names.remove("bf16")
    return names


def sg2_rows(table: Table, cfg: dict, device: torch.device, peaks: dict[str, float]) -> None:
    torch.manual_seed(0)
    G = Generator(**cfg["sg2_kwargs"], img_resolution=cfg["res"]).eval().requires_grad_(False).to(device)
    flops = synthesis_flops(G)
    for batch in cfg["batches"]:
        def cell(batch: int = batch) -> None:
            with torch.inference_mode():
                ws = G.mapping(torch.randn(batch, G.z_dim, device=device), None, truncation_psi=0.7)
                nvidia = timed(lambda: G.synthesis(ws, noise_mode="const", fused_modconv=True), device)
                nvidia()
                base = rate(nvidia, batch, cfg["seconds"])
                for prec in precisions(device):
                    dtype = PRECISIONS[prec]
                    step = timed(lambda: G.synthesis(ws, noise_mode="const", dtype=dtype), device)
                    step()
                    r = rate(step, batch, cfg["seconds"])
                    psnr = "" if prec == "fp32" else f"PSNR {precision_psnr(G, ws[:1], dtype):.1f} dB vs fp32"
                    table.row(f"sg2 {cfg['res']} b{batch} {prec}", f"{r:.2f} img/s",
                              f"NVIDIA strategy fp32 {base:.2f} img/s ({r / base:.2f}x)",
                              f"{r * flops / peaks[prec]:.0%} of {prec} peak; {psnr}".rstrip("; "))
        table.attempt(f"sg2 {cfg['res']} b{batch}", cell)


def sg2_model(cfg: dict, device: torch.device) -> Generator:
    torch.manual_seed(0)
    return Generator(**cfg["sg2_kwargs"], img_resolution=cfg["res"]).eval().requires_grad_(False).to(device)


def compile_rows(table: Table, cfg: dict, device: torch.device) -> None:
    G, batch = sg2_model(cfg, device), cfg["render_batch"]
    with torch.inference_mode():
        ws = G.mapping(torch.randn(batch, G.z_dim, device=device), None, truncation_psi=0.7)
        eager = timed(lambda: G.synthesize(ws), device)
        reference = G.synthesize(ws)
        twin = Compiled(G, backend=cfg["compile_backend"])
        start = time.perf_counter()
        images = twin.synthesize(ws)
        timed(lambda: None, device)()
        first = time.perf_counter() - start
        compiled = timed(lambda: twin.synthesize(ws), device)
        base, r = rate(eager, batch, cfg["seconds"]), rate(compiled, batch, cfg["seconds"])
        psnr = frames_psnr(reference, images, "compiled", "--compile")
    table.row(f"compile sg2 {cfg['res']} b{batch} fp32", f"{r:.2f} img/s", f"eager {base:.2f} img/s ({r / base:.2f}x)",
              f"{cfg['compile_backend']}, first call {first:.0f} s; PSNR {psnr:.1f} dB vs eager "
              f"(≥ {COMPILE_TOLERANCE_DB:g}: {'ok' if psnr >= COMPILE_TOLERANCE_DB else 'NOT met'})")


def auto_precision_row(table: Table, cfg: dict, device: torch.device) -> None:
    G, batch = sg2_model(cfg, device), cfg["render_batch"]
    dtype, why = auto_precision(G, device)
    with torch.inference_mode():
        ws = G.mapping(torch.randn(batch, G.z_dim, device=device), None, truncation_psi=0.7)
        fp32 = rate(timed(lambda: G.synthesize(ws), device), batch, cfg["seconds"])
        chosen = rate(timed(lambda: G.synthesize(ws, dtype=dtype), device), batch, cfg["seconds"])
    name = {v: k for k, v in PRECISIONS.items()}[dtype or torch.float32]
    table.row(f"precision auto sg2 {cfg['res']} b{batch}", f"{name}: {chosen:.2f} img/s",
              f"fp32 {fp32:.2f} img/s ({chosen / fp32:.2f}x)", why)


def sg3_rows(table: Table, cfg: dict, device: torch.device) -> None:
    torch.manual_seed(0)
    G = StyleGAN3Generator(**cfg["sg3_kwargs"], img_resolution=cfg["res"]).eval().requires_grad_(False).to(device)
    for batch in cfg["sg3_batches"]:
        def cell(batch: int = batch) -> None:
            with torch.inference_mode():
                ws = G.mapping(torch.randn(batch, G.z_dim, device=device), None, truncation_psi=0.7)
                base = ""
                if batch in cfg["sg3_ref_batches"]:
                    ref = timed(lambda: sg3_synthesize(G, ws, "reference"), device)
                    ref()
                    base = rate(ref, batch, cfg["seconds"])
                step = timed(lambda: G.synthesize(ws), device)
                step()
                r = rate(step, batch, cfg["seconds"])
                against = f"reference composition {base:.2f} img/s ({r / base:.2f}x)" if base else ""
                table.row(f"sg3 {cfg['res']} b{batch} fp32", f"{r:.2f} img/s", against,
                          "fused filtered lrelu" + ("" if base else "; reference not run at this batch"))
        table.attempt(f"sg3 {cfg['res']} b{batch}", cell)


def random_model(cfg: dict, folder: Path) -> Path:
    """The run's StyleGAN2 (config-f, or the smoke run's tiny one) with random weights, as a file."""
    from morph.checkpoints import write_native

    path = folder / f"sg2-{cfg['res']}.safetensors"
    if not path.is_file():
        torch.manual_seed(0)
        kwargs = {**cfg["sg2_kwargs"], "img_resolution": cfg["res"]}
        write_native(path, kwargs, Generator(**kwargs).state_dict())
    return path


def render_rows(table: Table, cfg: dict, device: torch.device, folder: Path) -> None:
    args = argparse.Namespace(model=str(random_model(cfg, folder)), size=cfg["res"], frames=cfg["render_frames"],
                              device=device.type, precision="fp32", batch=None, encoders=None)
    out = folder / "render"
    out.mkdir()
    gen, e2e = speed(args, out)
    table.row(f"render e2e {cfg['res']}", f"{e2e:.2f} frames/s", f"generator only {gen:.2f} frames/s",
              f"ratio {e2e / gen:.2f} (≥ 0.9: encoding hidden), fp32, auto batch and encoders")
    base = None
    for n in cfg["encoders"]:
        dest = folder / f"encoders-{n}"
        dest.mkdir()
        fps = stub_render(cfg["stub_frames"], cfg["res"], 10_000, n, dest)
        base = base or fps
        table.row(f"encoders {n}", f"{fps:.1f} frames/s", f"{fps / base:.2f}x one encoder",
                  f"stub generator, {cfg['res']} px mp4, {os.cpu_count()} cores")


def project_rows(table: Table, cfg: dict, device: torch.device, folder: Path) -> None:
    from morph.models.loader import load_model
    from morph.projection import make_distance, optimise
    from morph.projection.encoder_training import TrainConfig, train

    G = load_model(random_model(cfg, folder), device)
    distance = make_distance("laplacian", device)
    for batch in cfg["project_batches"]:
        targets = torch.rand(batch, 3, cfg["res"], cfg["res"], device=device) * 2 - 1
        optimise(G, targets, distance, range(batch), steps=1)  # warm-up
        timed(lambda: None, device)()
        start = time.perf_counter()
        optimise(G, targets, distance, range(batch), steps=cfg["steps"])
        per = (time.perf_counter() - start) / cfg["steps"]
        table.row(f"project b{batch}", f"{per:.3f} s/step", "", f"{per / batch:.3f} s per photo-step, laplacian")
    steps = cfg["steps"]
    start = time.perf_counter()
    train(G, folder / "encoder.safetensors", TrainConfig(steps=steps, batch=8, loss="laplacian",
                                                        checkpoint_every=10 ** 6), quiet=True)
    table.row("tune (encoder training)", f"{(time.perf_counter() - start) / steps:.3f} s/step", "",
              "batch 8, laplacian, first steps (model statistics included)")


def train_sharp_rows(table: Table, smoke: bool, device: torch.device, minutes: float, out: Path,
                     folder: Path) -> None:
    sharp = Path(os.environ.get("SHARP_DIR", out / "sharp"))
    cmd = [sys.executable, "-m", "morph.training.train_sharp", "--out", str(sharp), "--device", device.type,
           "--max-minutes", f"{minutes:.2f}"]
    if smoke:
        init = folder / "tiny8.safetensors"
        torch.manual_seed(0)
        G = Generator(z_dim=LATENT_DIM, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
                      mapping_kwargs=dict(num_layers=2, lr_multiplier=1.0, w_avg_beta=0.995),
                      synthesis_kwargs=dict(channel_base=64, channel_max=16, num_fp16_res=0, conv_clamp=None,
                                            architecture="skip"))
        from morph.checkpoints import write_native

        write_native(init, G.init_kwargs, G.state_dict())
        cmd += ["--init", str(init), "--kimg=0.008", "--resolution=16", "--batch=2", "--anchor-res=8",
                "--feature-weight=0.0", "--r1-every=2", "--d-channel-base=64", "--d-channel-max=16",
                "--ema-kimg=0.01", "--snap-every=100", "--log-every=1", "--threads=1"]
    elif device.type == "cuda":
        cmd += ["--workers", str(max(1, min(8, (os.cpu_count() or 2) - 2)))]
    if (sharp / "checkpoint.pt").is_file():
        cmd.append("--resume")
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise RuntimeError(f"train_sharp exit {proc.returncode}: {(proc.stderr.strip().splitlines() or [''])[-1]}")
    last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or [""])[-1]
    table.row("train_sharp", f"{(time.perf_counter() - start) / 60:.1f} min", "", last[:200])
    evaluation = sharp / "evaluate.json"
    ev = subprocess.run([sys.executable, "-m", "morph.training.evaluate", "--model",
                         str(sharp / "generator.safetensors"), "--n", "16" if smoke else "1000",
                         "--json", str(evaluation)], cwd=ROOT, capture_output=True, text=True)
    if ev.returncode != 0:
        raise RuntimeError(f"evaluate exit {ev.returncode}: {(ev.stderr.strip().splitlines() or [''])[-1]}")
    tail = [ln for ln in ev.stdout.strip().splitlines() if re.search(r"sharp|Fréchet|fidelity", ln, re.I)]
    table.row("train_sharp evaluate", f"{evaluation}", "", "; ".join(tail)[:300])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every row at tiny sizes (CPU, seconds)")
    parser.add_argument("--minutes", type=float, default=8.0, help="the whole run's budget; training gets the rest")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ROOT / "outputs" / "device")))
    args = parser.parse_args()
    start = time.monotonic()
    keep_freed_memory()
    cfg = SMOKE if args.smoke else FULL
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    table = Table(args.out / "device.md", f"bench/device.sh{' --smoke' if args.smoke else ''} on {card}, "
                                          f"torch {torch.__version__}, PSNR tolerance {PRECISION_TOLERANCE_DB} dB")
    with tempfile.TemporaryDirectory(prefix="morph-device-") as tmp:
        folder = Path(tmp)
        table.attempt("gpu tests", lambda: gpu_tests(table))
        peaks: dict[str, float] = {}

        def peak_rows() -> None:
            for prec in precisions(device):
                peaks[prec] = statistics.median(matmul_peak(device, PRECISIONS[prec], cfg["matmul"], cfg["seconds"])
                                                for _ in range(3))
                table.row(f"peak {prec}", f"{peaks[prec] / 1e12:.3g} TFLOP/s", "", f"{cfg['matmul']}² matmul")
        table.attempt("peak", peak_rows)
        table.attempt("sg2", lambda: sg2_rows(table, cfg, device, peaks))
        table.attempt("compile", lambda: compile_rows(table, cfg, device))
        table.attempt("precision auto", lambda: auto_precision_row(table, cfg, device))
        table.attempt("sg3", lambda: sg3_rows(table, cfg, device))
        table.attempt("render", lambda: render_rows(table, cfg, device, folder))
        table.attempt("project", lambda: project_rows(table, cfg, device, folder))
        left = args.minutes - (time.monotonic() - start) / 60 - (0.2 if args.smoke else 1.5)  # evaluation's share
        table.attempt("train_sharp", lambda: train_sharp_rows(table, args.smoke, device, max(0.05, left),
                                                              args.out, folder))
    table.row("total", f"{(time.monotonic() - start) / 60:.1f} min", "", str(args.out / "device.md"))
    raise SystemExit(1 if table.failed else 0)


if __name__ == "__main__":
    main()
