"""Rendering past one machine: missing segments as tasks on a Dask cluster, or a deterministic shard of them.

Segments are content-addressed (see ``morph.render.job``), so any machine renders any segment into the
same file. On a cluster each worker loads the model once and keeps it; it writes finished
segments atomically into the client's cache when it can see that folder (a shared filesystem),
and otherwise sends the bytes back for the client to store. The client then joins as in a local
render. Shards split the segments of a scene between independent jobs (Slurm or Kubernetes
arrays) that share only the cache folder; a final plain render joins.

Dask (``distributed``) is imported inside the functions that need it: it is slow to import, and a render
without a cluster never does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Optional

import torch

from morph.core.cache import SEGMENTS, reusable, seal
from morph.core.devices import resolve_device
from morph.core.errors import MorphError
from morph.core.files import atomic_path
from morph.core.model import Model, Noise
from morph.core.progress import Progress
from morph.core.runtime import check_stop, keep_freed_memory
from morph.models.loader import load_model
from morph.render.encode import EncodeSettings
from morph.render.job import RenderPlan, Work, auto_batch_size, render_segment

if TYPE_CHECKING:
    from distributed import Client

# A task that raised runs again up to this many times; a task whose worker died is rescheduled by Dask
# itself (up to ``distributed.scheduler.allowed-failures`` times, then it fails with KilledWorker).
RETRIES = 2
CONNECT_TIMEOUT_S = 10
_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_ADDRESS = re.compile(r"^(?:(?:tcp|tls|ucx|inproc)://)?(?:\[[0-9A-Fa-f:.]+\]|[\w.-]+)(?::\d{1,5})?$")


@dataclass(frozen=True)
class WorkerModel:
    """What every worker needs besides a segment: the model file (checked by hash) and how to run it."""

    model_path: str
    model_sha256: str
    device: str = "auto"
    batch_size: Optional[int] = None


def distinct_segments(plans: Iterable[RenderPlan]) -> list[Work]:
    """Every distinct segment of the plans, sorted by cache key: an order that depends only on the scene, so
    every shard job computes the same split. Renders sharing a segment share its work."""
    seen: dict[str, Work] = {}
    for plan in plans:
        for seg in plan.segments:
            seen.setdefault(seg.key, Work(seg, plan.job))
    return [seen[key] for key in sorted(seen)]


def check_address(address: str) -> None:
    """MorphError in one line unless ``address`` reads as a Dask scheduler address (``tcp://host:port``)."""
    if not _ADDRESS.match(address):
        raise MorphError(f"not a scheduler address: {address!r}", "--cluster",
                         "give the address `dask scheduler` prints, e.g. tcp://10.0.0.5:8786")


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` → (K, N) with 1 ≤ K ≤ N."""
    match = _SHARD.match(text)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise MorphError(f"not a shard: {text!r}", "--shard",
                         "give K/N with 1 <= K <= N, e.g. --shard 3/8 for the third of eight jobs")
    return int(match.group(1)), int(match.group(2))


def shard(work: list[Work], k: int, n: int) -> list[Work]:
    """Shard K of N: every N-th segment of ``work`` (sorted by key), starting at the K-th.

    The split is over all of a scene's segments, cached or not, so jobs that start at different
    times (one finishing before another plans) still split the same way and never duplicate work.
    """
    return work[k - 1::n]


def missing(work: list[Work]) -> list[Work]:
    """The work whose segment the cache does not hold whole (a damaged one is reported and removed)."""
    return [w for w in work if not reusable(w.segment.path, w.frames, w.job.name)]


def render_distributed(client: Callable[[], "Client"], todo: list[Work], model: WorkerModel, cache_dir: Path,
                       progress: Progress, transfer: bool = False) -> int:
    """Render the segments of ``todo`` on the cluster of ``client()``, which is called only if there is work
    (so an up-to-date run starts no cluster); returns the frames rendered."""
    progress.total = sum(w.frames for w in todo)
    if not todo:
        return 0
    try:
        return render_on_cluster(client(), todo, model, cache_dir, progress, transfer)
    finally:
        progress.close()


# --- workers --------------------------------------------------------------------------------------------------

_MODELS: dict[tuple[str, str, str], tuple[Model, torch.device]] = {}  # per worker process: loaded once


def _worker_device(name: str) -> torch.device:
    """The device a worker renders on: with several GPUs and no index given, local worker i takes GPU i."""
    device = resolve_device(name)
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        from distributed import get_worker

        worker_name = get_worker().name
        if isinstance(worker_name, int):
            device = torch.device("cuda", worker_name % torch.cuda.device_count())
    return device


def _received(engine: WorkerModel, data: bytes) -> Path:
    """The model file the client sent, written once (atomically) under this machine's temp folder by its hash."""
    path = Path(tempfile.gettempdir()) / "morph-models" / engine.model_sha256[:32] / Path(engine.model_path).name
    if not reusable(path, label="received model"):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        seal(path)
    return path


def worker_generator(engine: WorkerModel, sent: Optional[bytes] = None) -> tuple[Model, torch.device]:
    """The engine's generator in this worker process, loaded on first use and kept for later tasks: from its
    path, or from the bytes the client ``sent`` when that path is not on this machine."""
    key = (engine.model_path, engine.model_sha256, engine.device)
    if key not in _MODELS:
        keep_freed_memory()
        device = _worker_device(engine.device)
        here = Path(engine.model_path).is_file() or sent is None
        G = load_model(engine.model_path if here else _received(engine, sent), device)
        if G.info.sha256 != engine.model_sha256:
            raise MorphError("the model file on this worker differs from the client's", engine.model_path,
                             "give every worker the same file, e.g. on a shared path")
        _MODELS[key] = (G, device)
    return _MODELS[key]


def render_task(ws: torch.Tensor, dest: str, settings: EncodeSettings, engine: WorkerModel,
                shared_marker: Optional[str], noise: Noise, dtype: Optional[torch.dtype] = None,
                camera: Optional[torch.Tensor] = None, sent: Optional[bytes] = None) -> Optional[bytes]:
    """A Dask task: render one segment with ``noise`` (and ``camera`` poses). Into ``dest`` when this worker sees
    the client's cache (its ``shared_marker`` file exists; returns None), else into a private temp file whose
    bytes it returns. Noise and camera are arguments, so tasks of different renders share one model at once;
    ``sent``: the model file's bytes, for a worker that does not have it."""
    G, device = worker_generator(engine, sent)
    batch_size = engine.batch_size or auto_batch_size(G, device, settings.canvas)
    target = Path(dest)
    if shared_marker is not None and Path(shared_marker).exists():
        if not reusable(target, len(ws)):  # another run may have rendered it meanwhile
            render_segment(G, ws, target, settings, noise, device, batch_size, dtype, camera=camera)
        return None
    with tempfile.TemporaryDirectory(prefix="morph-segment-") as folder:
        local = Path(folder) / target.name
        render_segment(G, ws, local, settings, noise, device, batch_size, dtype, camera=camera)
        return local.read_bytes()


# --- the client -----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Silence logger ``name`` and its children for the block: a lost scheduler is reported as one MorphError
    line, not as the client's tracebacks."""
    loggers = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)
               if n == name or n.startswith(name + ".")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextlib.contextmanager
def connect(address: Optional[str] = None, workers: Optional[int] = None) -> Iterator["Client"]:
    """A Dask client on the scheduler at ``address``, or on a local cluster of ``workers`` processes
    (one thread each) that lives as long as the block."""
    from distributed import Client, LocalCluster

    if workers is not None and workers < 1:
        raise MorphError(f"need at least one worker, got {workers}", "--workers")
    with _quiet("distributed"), contextlib.ExitStack() as stack:
        if workers is not None:
            threads = str(max(1, (os.cpu_count() or 1) // workers))  # torch threads: the cores, shared out
            cluster = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                       dashboard_address=None, silence_logs=logging.ERROR,
                                                       env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}))
            client = stack.enter_context(Client(cluster))
        else:
            try:
                client = stack.enter_context(Client(address, timeout=CONNECT_TIMEOUT_S))
            except (OSError, TimeoutError, ValueError) as err:
                raise MorphError(f"cannot reach the Dask scheduler ({' '.join(str(err).split())})", "--cluster",
                                 "start one with `dask scheduler` and workers with `dask worker ADDRESS`, "
                                 "or use --workers N for a local cluster") from None
        yield client


def _lost(address: str, done: int, total: int) -> MorphError:
    return MorphError(f"lost the Dask scheduler after {done} of {total} segments", address,
                      "the finished segments stay cached; run again to render only the rest")


def render_on_cluster(client: "Client", work: list[Work], engine: WorkerModel, cache_dir: Path,
                      progress: Progress, transfer: bool = False) -> int:
    """Render ``work`` as tasks on ``client``'s cluster into the cache; returns the number of frames generated.

    Progress advances as segments complete. ``transfer`` makes every worker send its segments back
    instead of writing into the cache folder (which it otherwise does when it can see that folder), and
    sends the model file to every worker when it lies in the client's cache (a tuned generator, a model
    fetched by URL): a worker without the client's file system has no copy of it.
    """
    from distributed import CancelledError, KilledWorker, as_completed

    address = str(client.scheduler.address)
    tag = uuid.uuid4().hex[:12]
    marker = None if transfer else cache_dir / SEGMENTS / f".shared-{tag}"
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    futures: dict = {}
    generated = 0
    model_file = Path(engine.model_path)
    sent = client.scatter(model_file.read_bytes(), broadcast=True) \
        if transfer and model_file.resolve().is_relative_to(cache_dir.resolve()) else None
    try:
        for w in work:
            futures[client.submit(render_task, w.ws(), str(w.segment.path), w.job.settings, engine,
                                  str(marker) if marker else None, w.job.noise, w.job.dtype, w.camera(), sent,
                                  key=f"morph-segment-{w.segment.key[:24]}-{tag}", retries=RETRIES)] = w
        for future in as_completed(list(futures)):
            w = futures.pop(future)
            try:
                data = future.result()
            except KilledWorker:
                raise MorphError(f"segment of frames {w.segment.start}-{w.segment.stop - 1} killed every worker "
                                 f"that ran it", address, "a worker may run out of memory: try a smaller "
                                 "--batch-size") from None
            except (CancelledError, OSError, TimeoutError):
                raise _lost(address, len(work) - len(futures) - 1, len(work)) from None
            if data is not None:
                with atomic_path(w.segment.path) as tmp:
                    tmp.write_bytes(data)
                seal(w.segment.path, w.frames)
            generated += w.frames
            progress.advance(w.frames)
            check_stop()
    finally:
        if futures:
            with contextlib.suppress(Exception):
                client.cancel(list(futures))
        if marker is not None:
            marker.unlink(missing_ok=True)
    return generated
