"""Rendering on a Dask cluster against one process, and what the cluster path costs per segment.

1. frames/s rendering the segments of a scene into a cold cache: in this process (all cores) and
   on a local cluster of N worker processes (the cores shared out), after the cluster has started
   and loaded the model (those start-up costs are printed apart).
2. Per-segment overhead of the cluster path (scheduling, sending W frames, the client's
   bookkeeping; with --cluster-transfer also the bytes back): one-frame segments rendered one at
   a time on the cluster, minus the same segments rendered in this process on one thread.
3. A scaling estimate for N GPUs from those figures.

    python bench/distributed.py [--model builtin|PATH] [--size 256] [--frames 240] [--workers 2] [--tiny 24]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

# bench/tour.py by its path: the workers re-import this script with its folder off the path (below).
_spec = importlib.util.spec_from_file_location("bench_tour", Path(__file__).resolve().with_name("tour.py"))
_tour = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tour)
write_tour = _tour.write_tour

# This file shares its name with Dask's package: keep its folder off the import path (also for the worker
# processes, which inherit it) so that `import distributed` finds Dask.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from morph.core.progress import Progress  # noqa: E402
from morph.core.runtime import keep_freed_memory  # noqa: E402
from morph.engine.cluster import WorkerModel, connect, distinct_segments, render_on_cluster  # noqa: E402
from morph.engine.scenes import RenderOptions, open_scene  # noqa: E402
from morph.models.loader import load_model  # noqa: E402
from morph.render.job import Work, render_segments  # noqa: E402


def scene_work(device: torch.device, folder: Path, model: str, size: int, frames: int, fps: float) -> list[Work]:
    """The segments of a looping 3-keyframe tour of about ``frames`` frames, cached in ``folder``."""
    scene = write_tour(folder / "scene.yaml", model, size, frames, fps)
    loaded = open_scene(scene, device, folder / "cache", quiet=True)
    options = RenderOptions(out=folder, cache_dir=folder / "cache")
    return distinct_segments([loaded.job("tour", options).plan(options.cache_dir)])


def quiet(total: int = 0) -> Progress:
    return Progress("bench", total, quiet=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--size", type=int, default=256, help="output size (the generator's own is upscaled)")
    parser.add_argument("--frames", type=int, default=240, help="frames for the frames/s comparison")
    parser.add_argument("--workers", type=int, default=2, help="local cluster size")
    parser.add_argument("--tiny", type=int, default=24, help="one-frame segments for the overhead measurement")
    args = parser.parse_args()
    keep_freed_memory()
    device = torch.device("cpu")
    G = load_model(args.model, device)
    engine = WorkerModel(str(Path(G.info.path).resolve()), G.info.sha256, "cpu")
    cores = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="morph-bench-") as tmp:
        root = Path(tmp)

        def work(name: str, frames: int, fps: float) -> list[Work]:
            return scene_work(device, root / name, args.model, args.size, frames, fps)

        single = work("single", args.frames, 30)
        frames = sum(w.frames for w in single)
        single_s = timed(lambda: render_segments(G, single, device, None, quiet()))

        start = time.perf_counter()
        with connect(workers=args.workers) as client:
            up_s = time.perf_counter() - start
            load_s = timed(lambda: client.run(warm_worker, engine))
            cluster = work("cluster", args.frames, 30)
            cluster_s = timed(lambda: render_on_cluster(client, cluster, engine, root / "cluster" / "cache", quiet()))
            # one-frame segments, one at a time: each pays the whole round trip
            per_cluster = [timed(lambda w=w: render_on_cluster(client, [w], engine, root / "tiny-c" / "cache",
                                                               quiet())) for w in work("tiny-c", args.tiny, 0.5)]
            tiny = work("tiny-t", args.tiny, 0.5)
            per_transfer = [timed(lambda w=w: render_on_cluster(client, [w], engine, root / "tiny-t" / "cache",
                                                                quiet(), transfer=True)) for w in tiny]
            segment_kb = statistics.mean(w.segment.path.stat().st_size for w in tiny) / 1e3
            down_start = time.perf_counter()
        down_s = time.perf_counter() - down_start

        torch.set_num_threads(max(1, cores // args.workers))  # what one worker has
        per_local = [timed(lambda w=w: render_segments(G, [w], device, None, quiet()))
                     for w in work("tiny-l", args.tiny, 0.5)]

    local_ms, cluster_ms, transfer_ms = (1e3 * statistics.median(x) for x in (per_local, per_cluster, per_transfer))
    overhead = (cluster_ms - local_ms) / 1e3
    single_fps, cluster_fps = frames / single_s, frames / cluster_s
    worker_fps = cluster_fps / args.workers
    print(f"model {G.info.path} ({G.img_resolution} px) -> {args.size} px mp4, {frames} frames in {len(single)} "
          f"segments of 2 s, CPU")
    print(f"1 process, {cores} threads:              {single_fps:7.2f} frames/s")
    print(f"local cluster, {args.workers} workers x {max(1, cores // args.workers)} threads: {cluster_fps:7.2f} "
          f"frames/s (x{cluster_fps / single_fps:.2f}); not counted: cluster start {up_s:.1f} s, "
          f"model load {load_s:.1f} s, shutdown {down_s:.1f} s")
    print(f"one-frame segment in this process:  {local_ms:7.1f} ms")
    print(f"one-frame segment on the cluster:   {cluster_ms:7.1f} ms -> overhead {cluster_ms - local_ms:.1f} ms "
          f"per segment (scheduling, W frames out, bookkeeping)")
    print(f"  with --cluster-transfer:          {transfer_ms:7.1f} ms -> overhead {transfer_ms - local_ms:.1f} ms "
          f"per segment ({segment_kb:.1f} kB back each)")
    print(f"scaling estimate: N workers (one GPU each) give about N x g / (1 + o x g / 60) frames/s for 60-frame "
          f"segments, g = one worker's frames/s alone, o = {1e3 * overhead:.0f} ms, as long as the client "
          f"joins and the scheduler dispatches faster than N x g / 60 segments/s; for g = {worker_fps:.2f} "
          f"(a worker here):")
    for n in (1, 2, 4, 8, 16, 64):
        print(f"  N = {n:>2}: {n * worker_fps / (1 + overhead * worker_fps / 60):8.2f} frames/s")


def warm_worker(engine: WorkerModel) -> None:
    """Run on every worker: load the engine's model (and keep it), so timings start warm."""
    from morph.engine.cluster import worker_generator

    worker_generator(engine)


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn()`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
