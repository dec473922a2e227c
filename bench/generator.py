"""Synthesis speed on this machine: images/s and achieved FLOP/s against the float32 matmul peak.

StyleGAN2 network: 256 px, z = w = 512, channel_base 16384, channel_max 256, 8 mapping layers,
random weights, fp32, noise 'const'. FLOPs count only convolution and dense multiply-adds (2 per
MAC), the work any implementation must do; filtering, bias and activations are overhead on top.
The baseline is NVIDIA's inference strategy (a grouped convolution of per-sample weights at every
batch size) run through the same code, so the ratio isolates morph's choice of path.

StyleGAN3-R network: 256 px, z = w = 512, channel_base 65536, channel_max 1024, conv_kernel 1,
radial filters, 2 mapping layers, random weights, fp32. The baseline is the same network with its
filtered lrelu computed by NVIDIA's reference composition (bias_act → upfirdn2d → bias_act →
upfirdn2d, zero-stuffed and fully filtered, as their CPU fallback does), so the ratio isolates the
fused op; peak memory per image is the rise of the resident set of a fresh process over one call.

    python bench/generator.py [--batches 1 8 16] [--seconds 1.5] [--rounds 5] [--sg3-batches 1 8]
                              [--sg3-rounds 2] [--only sg2|sg3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable
from unittest import mock

import torch

from morph.core.runtime import keep_freed_memory
from morph.stylegan2 import Generator
from morph.stylegan3 import Generator as StyleGAN3Generator
from morph.stylegan3 import networks as sg3_networks
from morph.stylegan3.ops import filtered_lrelu_reference

CONFIG = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3,
              mapping_kwargs=dict(num_layers=8),
              synthesis_kwargs=dict(channel_base=16384, channel_max=256, num_fp16_res=0, conv_clamp=256))
SG3_CONFIG = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3, mapping_kwargs=dict(num_layers=2),
                  channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True)


def synthesis_flops(G: Generator) -> float:
    """Multiply-add FLOPs of one image's synthesis: modulated convs at their true cost, ToRGB, affines."""
    total = 0.0
    for res in G.synthesis.block_resolutions:
        block = getattr(G.synthesis, f"b{res}")
        for name in ("conv0", "conv1", "torgb"):
            layer = getattr(block, name, None)
            if layer is None:
                continue
            out_ch, in_ch, kh, kw = layer.weight.shape
            # A 2x upsampling conv is a transposed conv evaluated at the input resolution.
            pixels = (res // 2) ** 2 if name == "conv0" else res ** 2
            total += 2 * out_ch * in_ch * kh * kw * pixels
            total += 2 * layer.affine.weight.numel()
    return total


def rate(step: Callable[[], object], work: float, seconds: float) -> float:
    """Work per second of ``step`` over one timed window of at least ``seconds`` (and one call)."""
    reps, start = 0, time.perf_counter()
    while reps < 1 or time.perf_counter() - start < seconds:
        step()
        reps += 1
    return work * reps / (time.perf_counter() - start)


def matmul_step() -> tuple[Callable[[], object], float]:
    """A large square float32 matmul and its FLOPs: the practical peak of this machine."""
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    return (lambda: torch.mm(a, b)), 2.0 * n ** 3


def measure(G: Generator, batch: int, rounds: int, seconds: float) -> dict[str, list[float]]:
    """Per round: the matmul peak, morph's and the baseline's images/s, then the peak again.

    The machine's speed drifts (±20 % within a minute on a shared VM), so every fraction is taken
    against the peaks measured just before and after it, and the rounds' median is reported.
    """
    ws = G.mapping(torch.randn(batch, G.z_dim), None, truncation_psi=0.7)
    mm, mm_flops = matmul_step()
    steps = {"morph": lambda: G.synthesis(ws, noise_mode="const"),
             "baseline": lambda: G.synthesis(ws, noise_mode="const", fused_modconv=True)}
    for step in (mm, *steps.values()):
        step()  # warm-up
    out: dict[str, list[float]] = {"peak": [], "morph": [], "baseline": [], "morph_frac": [], "baseline_frac": []}
    flops = synthesis_flops(G)
    for _ in range(rounds):
        before = rate(mm, mm_flops, seconds / 2)
        rates = {name: rate(step, batch, seconds) for name, step in steps.items()}
        peak = max(before, rate(mm, mm_flops, seconds / 2))
        out["peak"].append(peak)
        for name, r in rates.items():
            out[name].append(r)
            out[f"{name}_frac"].append(r * flops / peak)
    return out


def sg3_synthesize(G: StyleGAN3Generator, ws: torch.Tensor, impl: str) -> torch.Tensor:
    """One synthesis call with morph's fused filtered lrelu or NVIDIA's reference composition."""
    if impl == "morph":
        return G.synthesize(ws)
    with mock.patch.object(sg3_networks, "filtered_lrelu", filtered_lrelu_reference):
        return G.synthesize(ws)


def sg3_model() -> StyleGAN3Generator:
    torch.manual_seed(0)
    return StyleGAN3Generator(**SG3_CONFIG).eval().requires_grad_(False)


def _resident_kib(field: str) -> int:
    """VmRSS / VmHWM (peak) of this process, in KiB."""
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def sg3_peak_bytes(impl: str, batch: int) -> int:
    """Run in a fresh process: how far one call at ``batch`` raises the resident set above what it was before.

    glibc keeps its default settings here (large freed blocks go back to the OS at once), so the rise
    is the live peak rather than what a long-running process happens to keep cached.
    """
    G = sg3_model()
    with torch.inference_mode():
        ws = G.mapping(torch.randn(batch, G.z_dim), None, truncation_psi=0.7)
        before = _resident_kib("VmRSS")
        sg3_synthesize(G, ws, impl)
    return (_resident_kib("VmHWM") - before) * 1024


def _available_bytes() -> int:
    return int(re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M).group(1)) * 1024


def _peak(impl: str, batch: int) -> int:
    """The resident-set rise of one call, in a process of its own."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(sg3_peak_bytes, impl, batch).result()


def sg3_section(batches: list[int], rounds: int, seconds: float) -> None:
    """SG3-R images/s, morph's filtered lrelu against NVIDIA's reference composition, and peak memory per image.

    Peaks are measured at batch 1 and 2 first; an implementation whose peak, extrapolated linearly
    from those, would not fit in the available memory at a batch size is not run there (the
    machine's out-of-memory killer would pick a victim), and its peak is reported extrapolated.
    """
    impls = ("morph", "reference")
    small = {impl: (_peak(impl, 1), _peak(impl, 2)) for impl in impls}

    def projected(impl: str, batch: int) -> int:
        one, two = small[impl]
        return one + (two - one) * (batch - 1)

    G = sg3_model()
    print(f"\nStyleGAN3-R 256 px (channel_base 65536, channel_max 1024): median of {rounds} rounds, "
          f"morph and reference alternating")
    print(f"{'batch':>5} {'morph img/s':>12} {'reference img/s':>16} {'speed-up':>9}")
    with torch.inference_mode():
        for batch in batches:
            ws = G.mapping(torch.randn(batch, G.z_dim), None, truncation_psi=0.7)
            runs = [impl for impl in impls if projected(impl, batch) < 0.8 * _available_bytes()]
            steps = {impl: (lambda impl=impl: sg3_synthesize(G, ws, impl)) for impl in runs}
            for step in steps.values():
                step()  # warm-up
            r: dict[str, list[float]] = {impl: [] for impl in steps}
            for _ in range(rounds):
                for impl, step in steps.items():
                    r[impl].append(rate(step, batch, seconds))
            med = {k: statistics.median(v) for k, v in r.items()}
            cells = [f"{med[impl]:.3f}" if impl in med else "does not fit" for impl in impls]
            ratio = f"{med['morph'] / med['reference']:.2f}x" if len(med) == 2 else "-"
            print(f"{batch:>5} {cells[0]:>12} {cells[1]:>16} {ratio:>9}", flush=True)
            for impl in set(impls) - set(runs):
                print(f"      {impl}: needs about {projected(impl, batch) / 2**30:.1f} GiB at batch {batch} "
                      f"(extrapolated from batches 1 and 2), {_available_bytes() / 2**30:.1f} GiB available")
    batch = max(batches)
    report = []
    for impl in impls:
        fits = projected(impl, batch) < 0.8 * _available_bytes()
        peak = (small[impl][batch - 1] if batch <= 2 else _peak(impl, batch)) if fits else projected(impl, batch)
        report.append(f"{impl} {peak / batch / 2**20:.0f} MiB{'' if fits else ' (extrapolated)'}")
    print(f"peak memory per image at batch {batch}: " + ", ".join(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--seconds", type=float, default=1.5, help="length of one timed window")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per batch size (the median is reported)")
    parser.add_argument("--sg3-batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--sg3-rounds", type=int, default=2, help="StyleGAN3 rounds per batch size (slow network)")
    parser.add_argument("--only", choices=["sg2", "sg3"], help="run one section")
    args = parser.parse_args()
    keep_freed_memory()  # as the morph CLI does
    if args.only != "sg3":
        sg2_section(args.batches, args.rounds, args.seconds)
    if args.only != "sg2":
        sg3_section(args.sg3_batches, args.sg3_rounds, seconds=0.0)  # one call per window: a call takes seconds


def sg2_section(batches: list[int], rounds: int, seconds: float) -> None:
    """StyleGAN2 images/s and fraction of the matmul peak, morph's path against NVIDIA's grouped convolution."""
    torch.manual_seed(0)
    G = Generator(**CONFIG).eval()
    print(f"threads {torch.get_num_threads()}, {synthesis_flops(G) / 1e9:.2f} GFLOP per 256 px image; "
          f"median of {rounds} rounds, each fraction against the matmul peak measured around it")
    print(f"{'batch':>5} {'peak GFLOP/s':>12} {'morph img/s':>12} {'of peak':>8} {'(min-max)':>13} "
          f"{'baseline img/s':>15} {'of peak':>8} {'speed-up':>9}")
    with torch.inference_mode():
        for batch in batches:
            m = measure(G, batch, rounds, seconds)
            med = {k: statistics.median(v) for k, v in m.items()}
            print(f"{batch:>5} {med['peak'] / 1e9:>12.1f} {med['morph']:>12.3f} {med['morph_frac']:>8.1%} "
                  f"{min(m['morph_frac']):>6.1%}-{max(m['morph_frac']):<6.1%} {med['baseline']:>15.3f} "
                  f"{med['baseline_frac']:>8.1%} {med['morph'] / med['baseline']:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
