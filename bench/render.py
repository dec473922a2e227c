"""Render pipeline speed and memory: end to end against generator-only, flat memory, encoder scaling.

1. ``speed``: frames/s of a cold-cache render (generation + encoding + caching + joining) over frames/s
   of the generator alone on the same W frames and batch size: ≥ 0.9 means encoding hides behind
   generation. ``--model random:RES`` is NVIDIA's config-f at RES px with random weights.
2. ``memory``: peak RSS of a 100-frame render against a ``--long``-frame one through the pipeline
   (each in its own process), drawn by the stub generator: memory must not grow with the length.
3. ``scaling``: the stub generator (precomputed smooth frames handed out at ``--stub-fps``) makes the
   pipeline encoder-bound; frames/s with each ``--encoders`` count, over one encoder, with x264 choosing its
   threads and with the cores split between the encoders, and the cores kept busy (this process and its
   ffmpeg children's CPU seconds over the wall time).

    python bench/render.py [--only speed|memory|scaling] [--model builtin|random:RES|PATH] [--size 256]
                           [--device cpu|cuda] [--precision fp32|fp16|bf16]
                           [--frames 240] [--encoders N] [--against OLD] [--long 3000] [--stub-size 512]
                           [--scaling 1 2 4] [--stub-fps 2000]

``--against OLD`` (a checkout of the old pipeline) runs the speed section again with OLD's morph in a child
process, on exactly the same scene and model, and prints new over old: the 1024 px comparison in one
invocation is ``python bench/render.py --only speed --model random:1024 --size 1024 --frames 120 --against OLD``.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import torch
from tour import write_tour  # bench/tour.py, beside this script

from morph.core.devices import PRECISIONS
from morph.core.model import Noise
from morph.core.runtime import keep_freed_memory
from morph.engine.scenes import RenderOptions, open_scene, render_scene
from morph.motion.schedule import sample
from morph.render import encode
from morph.render.job import auto_batch_size, generate

CONFIG_F = dict(z_dim=512, c_dim=0, w_dim=512, img_channels=3, mapping_kwargs=dict(num_layers=8),
                synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256))


def model_file(name: str, folder: Path) -> str:
    """``random:RES`` → a config-f checkpoint with random weights written into ``folder``; else ``name``."""
    if not name.startswith("random:"):
        return name
    from morph.checkpoints import write_native
    from morph.stylegan2 import Generator

    res = int(name.split(":", 1)[1])
    torch.manual_seed(0)
    kwargs = {**CONFIG_F, "img_resolution": res}
    path = folder / f"random-{res}.safetensors"
    write_native(path, kwargs, Generator(**kwargs).state_dict())
    return str(path)


def speed(args: argparse.Namespace, folder: Path) -> tuple[float, float]:
    """(generator-only, end-to-end) frames/s, printed with their ratio."""
    scene = write_tour(folder / "scene.yaml", model_file(args.model, folder), args.size, args.frames)
    device = torch.device(args.device)
    dtype = None if args.precision == "fp32" else PRECISIONS[args.precision]
    loaded = open_scene(scene, device, folder / "cache", quiet=True)
    G, tl = loaded.G, loaded.timelines["tour"]
    n = tl.frames
    batch = args.batch or auto_batch_size(G, device)
    ws = sample(tl, torch.arange(n))
    list(generate(G, ws[:batch], batch, Noise(), device, dtype))  # warm-up
    start = time.perf_counter()
    for _ in generate(G, ws, batch, Noise(), device, dtype):
        pass
    gen_fps = n / (time.perf_counter() - start)
    extra: dict[str, Any] = {} if args.encoders is None else {"encoders": args.encoders}
    start = time.perf_counter()
    render_scene(loaded, ["tour"], RenderOptions(out=folder, cache_dir=folder / "cache", device=device,
                                                  device_name=args.device, dtype=dtype, batch_size=batch,
                                                  quiet=True, **extra))
    e2e_fps = n / (time.perf_counter() - start)
    print(f"model {args.model} ({G.img_resolution} px → {args.size} px mp4) on {args.device} {args.precision}, "
          f"{n} frames, batch {batch}, {torch.get_num_threads()} threads, encoders {args.encoders or 'default'}")
    print(f"generator only: {gen_fps:.3f} frames/s; end to end: {e2e_fps:.3f} frames/s; "
          f"ratio {e2e_fps / gen_fps:.3f} (target ≥ 0.9)", flush=True)
    if getattr(args, "against", None):
        against(args, e2e_fps / gen_fps)
    return gen_fps, e2e_fps


def against(args: argparse.Namespace, ratio: float) -> None:
    """The speed section again in a child process importing morph from ``--against`` (another checkout: the old
    pipeline), on the same scene and model; both ratios and new over old."""
    cmd = [sys.executable, __file__, "--only", "speed", "--model", args.model, "--size", str(args.size),
           "--frames", str(args.frames), "--device", args.device, "--precision", args.precision,
           *(["--batch", str(args.batch)] if args.batch else [])]
    env = {**os.environ, "PYTHONPATH": str(Path(args.against).resolve())}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    found = re.search(r"ratio ([\d.]+)", proc.stdout)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"the run against {args.against} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    print(f"against {args.against}: {proc.stdout.strip().splitlines()[-1]}")
    print(f"end to end ÷ generator only: {ratio:.3f} here, {float(found.group(1)):.3f} there; "
          f"new ÷ old {ratio / float(found.group(1)):.2f}")


class StubModel(torch.nn.Module):
    """A generator that draws nothing: smooth precomputed images handed out at ``fps`` frames/s at most, so the
    pipeline around it (copies, queues, ffmpeg) sets the pace. Frame ``i`` is ``ws[i, 0, 0]``'s image of a bank
    of 16, so consecutive frames differ as video frames do. Like a GPU generator, whose images live in device
    memory its caching allocator recycles, it hands out its images in one buffer reused call after call."""

    def __init__(self, resolution: int, fps: float):
        super().__init__()
        self.img_resolution, self.fps = resolution, fps
        low = torch.rand(16, 3, 6, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
        self.bank = torch.nn.functional.interpolate(low, size=(resolution, resolution), mode="bicubic",
                                                    align_corners=False).clamp(-1, 1)
        self._next = time.perf_counter()
        self._out = torch.empty(0)

    def synthesize(self, ws: torch.Tensor, noise: Noise = Noise(), dtype: Optional[torch.dtype] = None,
                   **_: Any) -> torch.Tensor:
        self._next = max(self._next, time.perf_counter()) + len(ws) / self.fps
        time.sleep(max(0.0, self._next - time.perf_counter()))
        if len(self._out) < len(ws):
            self._out = torch.empty(len(ws), *self.bank.shape[1:])
        return torch.index_select(self.bank, 0, ws[:, 0, 0].long() % len(self.bank), out=self._out[:len(ws)])


def stub_render(frames: int, resolution: int, fps: float, encoders: int, folder: Path, batch: int = 8,
                threads: Optional[int] = None) -> float:
    """Frames/s of ``frames`` stub frames through the pipeline into 2-second mp4 segments in ``folder``
    (``threads``: x264's threads per ffmpeg; None: its own choice)."""
    from morph.render.encode import EncodeSettings
    from morph.render.job import encode_segments, segment_bounds

    settings = EncodeSettings(format="mp4", fps=30, size=resolution, threads=threads)
    G = StubModel(resolution, fps)
    work = ((folder / f"{start:06d}.mp4", torch.arange(start, stop, dtype=torch.float32)[:, None, None], None)
            for start, stop in segment_bounds(frames, settings.fps))
    start = time.perf_counter()
    encode_segments(G, work, settings, Noise(), torch.device("cpu"), batch, encoders=encoders)
    return frames / (time.perf_counter() - start)


def peak_rss_mb(cmd: list[str]) -> float:
    """Peak resident memory of a child process, in MB (Linux reports ru_maxrss in KiB)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"render failed: {' '.join(cmd)}")
    return usage.ru_maxrss / 1024


def memory(args: argparse.Namespace, folder: Path) -> None:
    encoders = args.encoders or 1
    rss = {}
    for frames in (100, args.long):
        out = folder / f"mem-{frames}"
        out.mkdir()
        rss[frames] = peak_rss_mb([sys.executable, __file__, "--child", str(frames), "--stub-size",
                                   str(args.stub_size), "--stub-fps", str(args.stub_fps), "--encoders",
                                   str(encoders), "--child-out", str(out)])
    short, long_ = rss[100], rss[args.long]
    print(f"stub {args.stub_size} px, {encoders} encoders: peak RSS {short:.0f} MB for 100 frames, {long_:.0f} MB "
          f"for {args.long} frames; ratio {long_ / short:.3f} (target within 10 %)")


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished children (the ffmpeg encoders)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def scaling(args: argparse.Namespace, folder: Path) -> None:
    """Encoder-bound frames/s with each ``--encoders`` count, x264 left to pick its threads and with the cores
    split between the encoders; and how busy the cores were (on a machine whose cores one x264 already fills,
    more encoders cannot add frames: the CPU column says whether the cores, not the pipeline, set the pace)."""
    cores = encode.usable_cores()
    print(f"stub generator {args.stub_size} px at ≤ {args.stub_fps:.0f} frames/s, {args.stub_frames} frames → "
          f"{args.stub_size} px mp4 (libx264 veryfast, crf 18), {cores} usable cores, load average "
          f"{os.getloadavg()[0]:.1f} (other jobs' share of the cores is not this pipeline's)")
    print("| encoders | x264 threads each | frames/s | × one encoder | CPU busy (cores) | of the cores |\n"
          "|---|---|---|---|---|---|")
    base = None
    for n in args.scaling:
        for threads in dict.fromkeys([None, max(1, cores // n)]):
            out = folder / f"scale-{n}-{threads}"
            out.mkdir()
            cpu, wall = cpu_seconds(), time.perf_counter()
            fps = stub_render(args.stub_frames, args.stub_size, args.stub_fps, n, out, threads=threads)
            busy = (cpu_seconds() - cpu) / (time.perf_counter() - wall)
            base = base or fps
            print(f"| {n} | {threads or 'auto'} | {fps:.1f} | {fps / base:.2f} | {busy:.2f} | {busy / cores:.0%} |",
                  flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["speed", "memory", "scaling"], help="run one section")
    parser.add_argument("--model", default="builtin", help="builtin, random:RES (config-f) or a file")
    parser.add_argument("--size", type=int, default=256, help="output size (the generator's own is scaled)")
    parser.add_argument("--frames", type=int, default=240, help="frames for the speed comparison")
    parser.add_argument("--device", default="cpu", help="cpu, cuda … (the speed section)")
    parser.add_argument("--precision", default="fp32", choices=list(PRECISIONS), help="the speed section's")
    parser.add_argument("--batch", type=int, help="frames per batch (default: auto)")
    parser.add_argument("--encoders", type=int, help="ffmpeg processes at once (default: the render's own)")
    parser.add_argument("--against", help="another checkout (its folder holding morph/): the speed section again "
                                          "with its pipeline, in the same invocation")
    parser.add_argument("--long", type=int, default=3000, help="frames of the long render for the memory check")
    parser.add_argument("--stub-size", type=int, default=512, help="stub generator's frames (px)")
    parser.add_argument("--stub-fps", type=float, default=2000.0, help="stub generator's rate")
    parser.add_argument("--stub-frames", type=int, default=600, help="frames per scaling run")
    parser.add_argument("--scaling", type=int, nargs="+", default=[1, 2, 4], help="encoder counts to compare")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)        # the memory check's child render
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    keep_freed_memory()
    if args.child is not None:
        stub_render(args.child, args.stub_size, args.stub_fps, args.encoders, args.child_out)
        return
    with tempfile.TemporaryDirectory(prefix="morph-bench-") as tmp:
        for name, section in (("speed", speed), ("memory", memory), ("scaling", scaling)):
            if args.only in (None, name):
                section(args, Path(tmp))


if __name__ == "__main__":
    main()
