"""Synthesis speed on this machine: images/s and achieved FLOP/s against the float32 matmul peak.

Network: 256 px, z = w = 512, channel_base 16384, channel_max 256, 8 mapping layers, random
weights, fp32, noise 'const'. FLOPs count only convolution and dense multiply-adds (2 per MAC),
the work any implementation must do; filtering, bias and activations are overhead on top.
The baseline is NVIDIA's inference strategy (a grouped convolution of per-sample weights at every
batch size) run through the same code, so the ratio isolates morph's choice of path.

    python bench/generator.py [--batches 1 8 16] [--seconds 1.5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from morph.runtime import keep_freed_memory
from morph.stylegan2 import Generator

CONFIG = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3,
              mapping_kwargs=dict(num_layers=8),
              synthesis_kwargs=dict(channel_base=16384, channel_max=256, num_fp16_res=0, conv_clamp=256))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--seconds", type=float, default=1.5, help="length of one timed window")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per batch size (the median is reported)")
    args = parser.parse_args()
    keep_freed_memory()  # as the morph CLI does
    torch.manual_seed(0)
    G = Generator(**CONFIG).eval()
    print(f"threads {torch.get_num_threads()}, {synthesis_flops(G) / 1e9:.2f} GFLOP per 256 px image; "
          f"median of {args.rounds} rounds, each fraction against the matmul peak measured around it")
    print(f"{'batch':>5} {'peak GFLOP/s':>12} {'morph img/s':>12} {'of peak':>8} {'(min-max)':>13} "
          f"{'baseline img/s':>15} {'of peak':>8} {'speed-up':>9}")
    with torch.inference_mode():
        for batch in args.batches:
            m = measure(G, batch, args.rounds, args.seconds)
            med = {k: statistics.median(v) for k, v in m.items()}
            print(f"{batch:>5} {med['peak'] / 1e9:>12.1f} {med['morph']:>12.3f} {med['morph_frac']:>8.1%} "
                  f"{min(m['morph_frac']):>6.1%}-{max(m['morph_frac']):<6.1%} {med['baseline']:>15.3f} "
                  f"{med['baseline_frac']:>8.1%} {med['morph'] / med['baseline']:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
