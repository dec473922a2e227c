"""Frames from a W path: generated in batches on the device, streamed into ffmpeg, cached as segments.

A render is cut into segments of a few seconds, aligned to absolute frame numbers. Each
segment's file in the cache is named by a hash of everything that decides its pixels (the
model file, the segment's W frames, noise, encoder settings), so an unchanged scene renders
nothing, an edited keyframe re-renders only the segments it touches, and a killed render
resumes from its finished segments. Generation and encoding overlap: the generator computes batch
k + 1 while encoder threads feed ffmpeg the batches before it, several segments at once, through a
bounded pool (``encode.EncoderPool``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import numpy as np
import torch

from morph.core.cache import SEGMENTS, folder, output_record, reusable, seal
from morph.core.devices import compiled
from morph.core.errors import MorphError
from morph.core.files import atomic_path, file_sha256
from morph.core.model import Model, Noise, images_to_uint8
from morph.core.progress import Progress, log, warn
from morph.core.runtime import check_stop, stop_points
from morph.render.canvas import Canvas
from morph.render.encode import (
    SEGMENT_SUFFIX,
    EncoderPool,
    EncodeSettings,
    auto_encoders,
    join_segments,
    pool_buffer_frames,
)

SEGMENT_SECONDS = 2.0
# Bump when a change to the generator or encoder alters pixels, so old cached segments are not reused.
RENDER_VERSION = "3"


@dataclass(frozen=True)
class Segment:
    """Frames [start, stop) of a render and the cache file that holds them once encoded."""

    start: int
    stop: int
    key: str
    path: Path


def segment_bounds(n_frames: int, fps: float) -> list[tuple[int, int]]:
    """Consecutive [start, stop) frame ranges of about SEGMENT_SECONDS, aligned to frame 0."""
    size = max(1, round(fps * SEGMENT_SECONDS))
    return [(s, min(s + size, n_frames)) for s in range(0, n_frames, size)]


def segment_key(ws: torch.Tensor, model_key: str, settings: EncodeSettings, noise_mode: str,
                extra: Optional[dict] = None, camera: Optional[torch.Tensor] = None) -> str:
    """Hex SHA-256 over everything that decides a segment's bytes (``camera``: its per-frame poses, if any)."""
    head = json.dumps({"version": RENDER_VERSION, "model": model_key, "noise": noise_mode,
                       "encode": settings.key(), "frames": list(ws.shape), **(extra or {}),
                       **({"camera": list(camera.shape)} if camera is not None else {})}, sort_keys=True)
    digest = hashlib.sha256(head.encode())
    digest.update(ws.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    if camera is not None:
        digest.update(camera.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
    return digest.hexdigest()


def auto_batch_size(G: Model, device: torch.device, canvas: Optional[Canvas] = None) -> int:
    """Frames per batch: keep the largest activation near 256 MB on a CPU, near a quarter of the free memory on
    a GPU (the layer's input, its upsampled copy and its output live at once, and the pool's frames wait on the
    host); 1 … 32. A widened ``canvas`` costs its area's share more per frame."""
    per_frame = G.activation_size() * 4
    drawn = canvas and canvas.drawn(G.img_resolution)
    if drawn:
        w, h = drawn
        per_frame = per_frame * max(1.0, w * h / G.img_resolution ** 2)
    budget = torch.cuda.mem_get_info(device)[0] // 4 if device.type == "cuda" else (256 << 20)
    return int(max(1, min(32, budget // per_frame)))


def generate(G: Model, ws: torch.Tensor, batch_size: int, noise: Noise, device: torch.device,
             dtype: Optional[torch.dtype] = None, camera: Optional[torch.Tensor] = None,
             canvas: Optional[tuple[int, int]] = None, host: Optional["HostFrames"] = None) -> Iterator[np.ndarray]:
    """uint8 RGB frames [b, H, W, 3] batch by batch for W frames ``ws`` [n, num_ws, w_dim], drawn with ``noise``,
    seen through the camera poses ``camera`` [n, 3] when given; ``canvas`` (width, height) has the network
    draw that wider frame (``Canvas.drawn``). The frames land in ``host``'s memory (a render's, reused batch
    after batch), else in fresh memory per batch.

    Frames become uint8 on the device (a quarter of the bytes to copy). On CUDA each batch is copied into
    pinned memory asynchronously and handed over only after the next batch has been queued, so the GPU
    computes batch k + 1 while the host encodes batch k."""
    noise = _on(noise, device)
    host = host or HostFrames()
    options = {} if canvas is None else {"canvas": canvas}
    pending: Optional[tuple[torch.Tensor, Optional[torch.cuda.Event]]] = None
    with torch.inference_mode():
        for i in range(0, len(ws), batch_size):
            if camera is not None:
                options["camera"] = camera[i:i + batch_size]
            img = G.synthesize(ws[i:i + batch_size].to(device), noise, dtype=dtype, **options)
            copied = host.put(img)
            if pending is not None:
                yield _arrived(pending)
            pending = copied
        if pending is not None:
            yield _arrived(pending)


class HostFrames:
    """Where generated batches land on the host as uint8 RGB frames [N, H, W, 3].

    ``take(N)`` gives the memory for a batch (a render passes ``EncoderPool.take``, a ring of batch buffers
    recycled once ffmpeg has them; pinned on CUDA); without it each batch gets fresh memory. On the CPU the
    conversion's arithmetic reuses one float buffer. A render's steady state then allocates no image-sized
    block per batch: such blocks, freed while smaller long-lived ones sit between them, fragment the C heap
    until its resident size grows with the render's length."""

    def __init__(self, take: Optional[Callable[[int], torch.Tensor]] = None):
        self._take = take
        self._scratch: Optional[torch.Tensor] = None

    def put(self, img: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.cuda.Event]]:
        """Images [N, C, H, W] → their frames, converted where they were drawn and brought to the host: from
        CUDA into pinned memory without waiting, with the event that marks the copy done."""
        n, channels, height, width = img.shape
        cuda = img.device.type == "cuda"
        dest = (self._take(n) if self._take is not None
                else torch.empty((n, height, width, 3), dtype=torch.uint8, pin_memory=cuda))
        if tuple(dest.shape) != (n, height, width, 3):
            raise ValueError(f"host memory {tuple(dest.shape)} for {n} frames of {width}x{height}")
        if not cuda:
            images_to_uint8(img, out=dest, scratch=self._scratch_for(img))
            return dest, None
        frames = images_to_uint8(img)  # on the device: its caching allocator recycles the memory
        dest.copy_(frames.expand(n, height, width, 3), non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(img.device))
        return dest, event

    def _scratch_for(self, img: torch.Tensor) -> torch.Tensor:
        """The float buffer for ``img``'s conversion: the first ``len(img)`` images of one allocated for the
        largest batch seen."""
        s = self._scratch
        if s is None or s.shape[1:] != img.shape[1:] or s.dtype != img.dtype or len(s) < len(img):
            s = self._scratch = torch.empty_like(img, memory_format=torch.contiguous_format)
        return s[:len(img)]


def _arrived(copied: tuple[torch.Tensor, Optional[torch.cuda.Event]]) -> np.ndarray:
    """The host frames of ``HostFrames.put`` once their copy is done."""
    host, event = copied
    if event is not None:
        event.synchronize()
    return host.numpy()


def _on(noise: Noise, device: torch.device) -> Noise:
    """``noise`` with its maps on ``device`` (a projection's maps are kept on the CPU)."""
    if noise.maps is None:
        return noise
    return Noise(noise.mode, tuple(m.to(device) for m in noise.maps))


@dataclass
class RenderStats:
    frames: int = 0
    generated: int = 0
    segments: int = 0
    reused: int = 0
    up_to_date: bool = False


class LockBusy(MorphError):
    """Another morph process is rendering the same output."""

    exit_code = 3


@contextlib.contextmanager
def output_lock(dest: Path, wait: bool = True, timeout: Optional[float] = None) -> Iterator[None]:
    """Hold an exclusive lock on ``dest`` (a hidden ``.NAME.lock`` beside it, which names its holder) so
    overlapping runs never write the same file. A run that finds it taken says whom it waits for, then
    queues (for ``timeout`` seconds at most); ``wait=False`` raises LockBusy at once instead."""
    import socket
    import sys
    import time

    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{dest.name}.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fh)
            if not wait:
                raise LockBusy(f"another morph run ({holder}) is writing this output", dest,
                               "wait for it, or run without --no-wait to queue behind it") from None
            log(f"{dest}: waiting for {holder}, which writes it"
                + (f" (at most {timeout:g} s)" if timeout is not None else "; --wait-timeout SECONDS gives up"))
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise LockBusy(f"waited {timeout:g} s for {holder}, which still writes this output",
                                       dest, "try again later, or raise --wait-timeout") from None
                    check_stop()
                    time.sleep(0.2)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "command": " ".join(["morph", *sys.argv[1:]])[:200], "since": int(time.time())}))
            fh.flush()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _lock_holder(fh) -> str:
    """Who holds an output lock, as its holder wrote it: ``pid N on HOST (COMMAND, since HH:MM:SS)``."""
    import time

    fh.seek(0)
    try:
        who = json.loads(fh.read())
        since = time.strftime("%H:%M:%S", time.localtime(who["since"]))
        return f"pid {who['pid']} on {who['host']} ({who['command']}, since {since})"
    except (ValueError, KeyError, TypeError):
        return "another morph run"


def _output_state(dest: Path, key: str) -> Optional[dict]:
    try:
        st = dest.stat()
    except FileNotFoundError:
        return None
    return {"key": key, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_up_to_date(cache_dir: Path, dest: Path, key: str) -> bool:
    """Whether ``dest`` is exactly the file morph last joined for ``key`` (unchanged since)."""
    record = output_record(cache_dir, dest)
    try:
        return json.loads(record.read_text()) == _output_state(dest, key)
    except (FileNotFoundError, json.JSONDecodeError):
        return False


def forget_output(cache_dir: Path, dest: Path) -> None:
    """Drop ``dest``'s up-to-date record, so the next render joins it again."""
    output_record(cache_dir, dest).unlink(missing_ok=True)


def remember_output(cache_dir: Path, dest: Path, key: str) -> None:
    record = output_record(cache_dir, dest)
    record.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(record) as tmp:
        tmp.write_text(json.dumps(_output_state(dest, key)))


def encode_segments(G: Model, work: Iterable[tuple[Path, torch.Tensor, Optional[torch.Tensor]]],
                    settings: EncodeSettings, noise: Noise, device: torch.device, batch_size: int,
                    dtype: Optional[torch.dtype] = None, advance: Optional[Callable[[int], None]] = None,
                    encoders: Optional[int] = None) -> int:
    """Generate each ``(dest, ws, camera)`` of ``work`` in turn (drawn lazily, so a long render holds only the
    segments in flight) and encode it into segment file ``dest`` (atomic: complete or absent, sealed in the
    cache), up to ``encoders`` segments at once (None: ``auto_encoders``). ``advance(n)`` is called as frames
    reach ffmpeg. Returns the number of frames generated."""
    res, canvas = G.img_resolution, settings.canvas
    src = canvas.source(res) if canvas else res
    width, height = (src, src) if isinstance(src, int) else src
    encoders = encoders or auto_encoders(device.type)
    buffer = pool_buffer_frames(encoders, max(1, round(settings.fps * SEGMENT_SECONDS)), batch_size,
                                width * height * 3)
    # batch buffers: the pool's bound, the batch being copied and the one waiting to be handed over
    slots = -(-buffer // batch_size) + 2

    def allocate() -> torch.Tensor:
        return torch.empty((batch_size, height, width, 3), dtype=torch.uint8, pin_memory=device.type == "cuda")

    generated = 0
    with stop_points(), EncoderPool(encoders, buffer, done=seal, advance=advance, allocate=allocate,
                                    slots=slots) as pool:
        host = HostFrames(pool.take)
        for dest, ws, camera in work:
            feed = pool.open(dest, settings, src, len(ws))
            for frames in generate(G, ws, batch_size, noise, device, dtype, camera, canvas and canvas.drawn(res),
                                   host):
                check_stop()
                feed.write(frames)
            feed.close()
            generated += len(ws)
    return generated


def render_segment(G: Model, ws: torch.Tensor, dest: Path, settings: EncodeSettings, noise: Noise,
                   device: torch.device, batch_size: int, dtype: Optional[torch.dtype] = None,
                   advance: Optional[Callable[[int], None]] = None, camera: Optional[torch.Tensor] = None) -> int:
    """Generate W frames ``ws`` (through ``camera`` poses, if any) and encode them into segment file ``dest``
    (atomic: complete or absent); ``advance(n)`` is called per batch. Returns the number of frames generated."""
    return encode_segments(G, [(dest, ws, camera)], settings, noise, device, batch_size, dtype, advance, encoders=1)


@dataclass(frozen=True)
class RenderJob:
    """One output file and everything that decides its bytes: the one place a render's cache keys come from.

    ``model_key`` is the model file's SHA-256, with the digest of ``noise.maps`` appended when a projected
    photo's noise replaces the model's, so cached segments never mix noises.
    """

    name: str
    dest: Path
    sample: Callable[[torch.Tensor], torch.Tensor]   # frame indices → W frames [n, num_ws, w_dim]
    frames: int
    settings: EncodeSettings
    noise: Noise
    model_key: str
    resolution: int
    dtype: Optional[torch.dtype] = None               # None: float32
    audio: Optional[Path] = None                      # sound track muxed into the output
    metadata: dict[str, str] = field(default_factory=dict)
    camera: Optional[Callable[[torch.Tensor], torch.Tensor]] = None  # frame indices → poses [n, 3] (StyleGAN3)
    compiled: bool = False                            # synthesis through torch.compile (devices.Compiled)

    def ws(self, segment: Segment) -> torch.Tensor:
        """The W frames of one of this job's segments."""
        return self.sample(torch.arange(segment.start, segment.stop))

    def poses(self, segment: Segment) -> Optional[torch.Tensor]:
        """The camera poses of one of this job's segments, None without a camera."""
        return None if self.camera is None else self.camera(torch.arange(segment.start, segment.stop))

    def plan(self, cache_dir: Path) -> "RenderPlan":
        """The segments with their cache files, and the key the joined output is recorded under."""
        extra = {"resolution": self.resolution, "dtype": str(self.dtype or torch.float32),
                 **({"compiled": True} if self.compiled else {})}  # its pixels differ from eager's by a level
        segments = []
        for start, stop in segment_bounds(self.frames, self.settings.fps):
            t = torch.arange(start, stop)
            key = segment_key(self.sample(t), self.model_key, self.settings, self.noise.mode, extra,
                              self.camera(t) if self.camera else None)
            segments.append(Segment(start, stop, key,
                                    folder(SEGMENTS, cache_dir) / f"{key}{SEGMENT_SUFFIX[self.settings.format]}"))
        key = hashlib.sha256(json.dumps({"segments": [s.key for s in segments], "metadata": self.metadata,
                                         "audio": file_sha256(self.audio) if self.audio else None,
                                         "format": self.settings.format}, sort_keys=True).encode()).hexdigest()
        return RenderPlan(self, segments, key)


@dataclass(frozen=True)
class RenderPlan:
    """A job's segments, and the key its joined output is recorded under (see ``is_up_to_date``)."""

    job: RenderJob
    segments: list[Segment]
    key: str

    def missing(self) -> list[Segment]:
        """The segments the cache does not hold whole (a damaged one is reported, removed and listed)."""
        return [s for s in self.segments if not reusable(s.path, s.stop - s.start, self.job.name)]


@dataclass(frozen=True)
class Work:
    """One segment to render and the job it belongs to (its W frames, encoding and noise)."""

    segment: Segment
    job: RenderJob

    @property
    def frames(self) -> int:
        """How many frames the segment holds."""
        return self.segment.stop - self.segment.start

    def ws(self) -> torch.Tensor:
        """The segment's W frames [frames, num_ws, w_dim] (computed on demand: small, but many segments)."""
        return self.job.ws(self.segment)

    def camera(self) -> Optional[torch.Tensor]:
        """The segment's camera poses [frames, 3], None without a camera."""
        return self.job.poses(self.segment)


def render_segments(G: Model, todo: list[Work], device: torch.device, batch_size: Optional[int],
                    progress: Progress, encoders: Optional[int] = None) -> int:
    """Encode the segments of ``todo`` into the cache in this process (each replaced atomically, so a
    concurrent join of the old file still reads it whole), up to ``encoders`` at once (None: auto), advancing
    ``progress``; returns the number of frames generated. Consecutive segments of one job share one pool."""
    generated = 0
    for _, group in itertools.groupby(todo, key=lambda w: id(w.job)):
        group = list(group)
        job = group[0].job
        work = ((w.segment.path, w.ws(), w.camera()) for w in group)
        generated += encode_segments(compiled(G) if job.compiled else G, work, job.settings, job.noise, device,
                                     batch_size or auto_batch_size(G, device, job.settings.canvas), job.dtype,
                                     progress.advance, encoders)
    return generated


def join(plan: RenderPlan, cache_dir: Path) -> None:
    """Join the plan's cached segments into its output (atomic at the destination) and record it as up to date."""
    job = plan.job
    check_stop()
    join_segments([s.path for s in plan.segments], job.dest, job.settings, job.frames, audio=job.audio,
                  metadata=job.metadata)
    try:
        remember_output(cache_dir, job.dest, plan.key)
    except OSError as err:  # the output is complete; only the shortcut for the next run is lost
        warn(f"{job.name}: warning: {job.dest} is complete, but its up-to-date record was not written "
            f"({err.strerror or err}); the next run joins it again")
    for s in plan.segments:  # mark as recently used, for cache eviction by age
        with contextlib.suppress(OSError):
            os.utime(s.path)
