"""ffmpeg at the edge: raw RGB frames piped in, video segments out, segments joined into the final file.

Every file appears only complete: ffmpeg writes a temp file beside the destination, which is
renamed on success and removed on any failure or interruption. The ffmpeg binary is the one
``imageio-ffmpeg`` ships, so nothing has to be installed.

Segments are the unit of caching: mp4, webm and mov segments are already in the final codec and
are joined by stream copy; GIF and PNG segments are stored losslessly (FFV1) and the join is
the one encoding pass (GIF: a palette from a sample of frames, then dithering every frame).

One ffmpeg encodes far fewer large frames a second than a GPU draws (datacenter GPUs have no
hardware encoder), so an :class:`EncoderPool` encodes several segments at once, one ffmpeg process
each, fed from the generator through queues whose frames are bounded together: memory stays flat
however long the render. The frames themselves travel in a ring of batch buffers the pool allocates once
and recycles (``EncoderPool.take``): were each batch a fresh array, allocated by the generator's thread and
freed by an encoder thread whenever ffmpeg had it, the long-lived frames would sit between the generator's
short-lived activations and fragment the C heap, whose resident size then grows with the render's length.

A video render may choose its codec (H.264 or H.265 in mp4, VP9 in webm, ProRes 4444 in mov for editors),
its pixel format and its quality (:class:`Encoding`); codecs beyond the defaults are used only where the
bundled ffmpeg has their encoder (:func:`missing_encoder` asks it once).
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from morph.core.errors import MorphError
from morph.core.files import atomic_path
from morph.render.canvas import Canvas

FORMATS = ("mp4", "webm", "mov", "gif", "png")
VIDEO_FORMATS = ("mp4", "webm", "mov")  # encoded by a video codec: even sizes only, and they carry a sound track
SEGMENT_SUFFIX = {"mp4": ".mp4", "webm": ".webm", "mov": ".mov", "gif": ".mkv", "png": ".mkv"}
CODECS = {"mp4": ("h264", "h265"), "webm": ("vp9",), "mov": ("prores",)}  # a format's codecs, its default first
ENCODERS = {"h264": "libx264", "h265": "libx265", "vp9": "libvpx-vp9", "prores": "prores_ks"}  # ffmpeg's names
# Pixel formats a codec may write, its default first. ProRes 4444 is always 4:4:4 at 10 bits.
PIXEL_FORMATS = {"h264": ("yuv420p", "yuv444p"), "h265": ("yuv420p", "yuv444p"), "vp9": ("yuv420p", "yuv444p"),
                 "prores": ("yuv444p10le",)}
# Named quality levels as CRF (lower is better); each codec's CRF scale differs, so each has its own table, its
# standard level the CRF morph always used (x265's at its own scale). ProRes has no CRF: one fixed 4444 profile.
QUALITY_LEVELS = {"h264": {"draft": 28, "standard": 18, "high": 12}, "h265": {"draft": 30, "standard": 22, "high": 16},
                  "vp9": {"draft": 40, "standard": 18, "high": 12}}
MAX_CRF = {"h264": 51, "h265": 51, "vp9": 63}
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")  # x264/5
AUDIO_CODEC = {"mp4": "aac", "webm": "libopus", "mov": "pcm_s16le"}  # mov: uncompressed, as editors expect
# Frames sampled for a GIF palette: palettegen over every frame is the slow part of GIF encoding.
GIF_PALETTE_SAMPLES = 48
_FRAME_NAME = re.compile(r"^frame_\d{6}\.png$")
# Most bytes of frames an EncoderPool holds waiting for its encoders (beyond one batch in flight).
POOL_BUFFER_BYTES = 1 << 30
MAX_AUTO_ENCODERS = 8


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg (``IMAGEIO_FFMPEG_EXE`` overrides it)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.lru_cache(maxsize=None)
def _encoders(exe: str) -> frozenset[str]:
    proc = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True)
    return frozenset(line.split()[1] for line in proc.stdout.splitlines() if len(line.split()) > 1
                     and line.split()[0].startswith("V"))


def missing_encoder(codec: str) -> Optional[str]:
    """Why ``codec`` (a name in ENCODERS) cannot be written with the ffmpeg morph runs; None when it can. The
    binary's encoder list is read once per process."""
    exe = ffmpeg_exe()
    if ENCODERS[codec] in _encoders(exe):
        return None
    return (f"{codec} needs ffmpeg's {ENCODERS[codec]} encoder, which {exe} lacks; set IMAGEIO_FFMPEG_EXE to an "
            f"ffmpeg built with it, or choose another codec")


@dataclass(frozen=True)
class Encoding:
    """A video render's codec choices: ``codec`` ("" is the format's default), pixel format, and quality as a
    CRF or, when ``bitrate`` is set (``8M``, ``2500k``), a target bitrate; ``preset`` is x264's and x265's."""

    codec: str = ""
    pix_fmt: str = "yuv420p"
    crf: int = 18            # lower is better
    # x264 speed/size trade-off: veryfast keeps the encoder ahead of the generator it shares the CPU with, at
    # the file size of slower presets on morph's smooth frames (docs/speed.md, "Why x264's preset is veryfast")
    preset: str = "veryfast"
    bitrate: str = ""

    def key(self) -> dict:
        """The choices as a segment's cache key holds them: a default render's key is the one it had before
        codecs could be chosen, so its cached segments stay valid."""
        key = {"crf": self.crf, "preset": self.preset}
        key.update({k: v for k, v in (("codec", self.codec), ("pix_fmt", self.pix_fmt), ("bitrate", self.bitrate))
                    if v != getattr(Encoding, k)})
        return key

    def describe(self, fmt: str) -> str:
        """``h265 yuv444p crf 16 slow`` for ``morph check``: the choices of a ``fmt`` render."""
        codec = self.codec or CODECS[fmt][0]
        if codec == "prores":
            return "prores 4444 yuv444p10le"
        rate = f"{self.bitrate}b/s" if self.bitrate else f"crf {self.crf}"
        return f"{codec} {self.pix_fmt} {rate}" + (f" {self.preset}" if codec in ("h264", "h265") else "")


@dataclass(frozen=True)
class EncodeSettings:
    """Everything about encoding that decides a segment's bytes (part of the cache key)."""

    format: str = "mp4"
    fps: float = 30.0
    size: int = 512          # output width = height, scaled with Lanczos from the generator's resolution
    canvas: Optional[Canvas] = None  # a frame other than size × size (morph.render.canvas); None: square
    encoding: Encoding = field(default_factory=Encoding)  # mp4 / webm / mov codec choices
    threads: Optional[int] = None    # the codec's threads per ffmpeg (x264's output depends on it); None: its own

    def key(self) -> dict:
        key = {"format": self.format, "fps": self.fps, "size": self.size, **self.encoding.key()}
        if self.canvas is not None:  # square renders keep the keys they had before canvases
            key["canvas"] = self.canvas.key()
        if self.threads is not None:  # likewise renders that leave the codec its own threads
            key["threads"] = self.threads
        return key

    def frame(self) -> tuple[int, int]:
        """(width, height) of the output frames."""
        return (self.canvas.width, self.canvas.height) if self.canvas else (self.size, self.size)


def _segment_codec_args(settings: EncodeSettings) -> list[str]:
    if settings.threads is not None:
        return [*_segment_codec_args(replace(settings, threads=None)), "-threads", str(settings.threads)]
    e = settings.encoding
    codec = e.codec or CODECS.get(settings.format, ("ffv1",))[0]
    if codec in ("h264", "h265"):
        rate = ["-b:v", e.bitrate] if e.bitrate else ["-crf", str(e.crf)]
        hevc = ["-tag:v", "hvc1", "-x265-params", "log-level=error"] if codec == "h265" else []  # hvc1: Apple plays it
        return ["-c:v", ENCODERS[codec], "-pix_fmt", e.pix_fmt, *rate, "-preset", e.preset, *hevc]
    if codec == "vp9":
        rate = ["-b:v", e.bitrate] if e.bitrate else ["-crf", str(e.crf), "-b:v", "0"]
        return ["-c:v", "libvpx-vp9", "-pix_fmt", e.pix_fmt, *rate, "-row-mt", "1", "-deadline", "good",
                "-cpu-used", "4"]
    if codec == "prores":
        return ["-c:v", "prores_ks", "-profile:v", "4444", "-pix_fmt", "yuv444p10le", "-vendor", "apl0"]
    return ["-c:v", "ffv1", "-pix_fmt", "rgb24"]


def _run(cmd: list[str], where: Path) -> None:
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        last = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise MorphError(f"ffmpeg failed (exit {proc.returncode}): {last}", where)


class SegmentWriter:
    """Streams uint8 frames [N, H, W, 3] into one segment file through an ffmpeg pipe.

    Use as a context manager: on a clean exit the segment is complete and renamed into place;
    on an exception (or Ctrl-C) ffmpeg is killed and nothing is left at ``dest``.
    """

    def __init__(self, dest: Path, settings: EncodeSettings, src_size: int | tuple[int, int]):
        """``src_size``: the generator's frames, square (pixels) or (width, height) for a widened canvas."""
        self.dest = dest
        self.settings = settings
        self.src_shape = (src_size, src_size) if isinstance(src_size, int) else tuple(src_size)
        self._atomic = atomic_path(dest)

    def __enter__(self) -> "SegmentWriter":
        self._tmp = self._atomic.__enter__()
        try:
            self._start()
        except BaseException:  # e.g. SIGTERM while ffmpeg starts: __exit__ will not run, so clean up here
            if getattr(self, "_proc", None) is not None:
                self._proc.kill()
                self._proc.wait()
            self._atomic.__exit__(*sys.exc_info())
            raise
        return self

    def _start(self) -> None:
        s = self.settings
        scale = [] if (s.size, s.size) == self.src_shape else ["-vf", f"scale={s.size}:{s.size}:flags=lanczos"]
        if s.canvas is not None:
            scale = ["-vf", s.canvas.filters()]
        width, height = self.src_shape
        cmd = [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", str(s.fps), "-i", "-", *scale,
               "-sws_flags", "lanczos+accurate_rnd+full_chroma_int+full_chroma_inp",
               *_segment_codec_args(s), "-f", s.format if s.format in VIDEO_FORMATS else "matroska",
               str(self._tmp)]
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr)

    def write(self, frames: np.ndarray) -> None:
        assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[1:] == (*self.src_shape[::-1], 3), \
            frames.shape
        try:
            # the array's own memory, not a copy: an encoder thread allocating frame-sized blocks that another
            # thread's frames are then freed around fragments glibc's heap until memory grows with the render
            self._proc.stdin.write(memoryview(np.ascontiguousarray(frames)).cast("B"))
        except BrokenPipeError:
            self._fail()

    def _fail(self) -> None:
        self._proc.wait()
        self._stderr.seek(0)
        last = (self._stderr.read().decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise MorphError(f"ffmpeg failed (exit {self._proc.returncode}): {last}", self.dest)

    def __exit__(self, exc_type, exc, tb) -> None:
        complete = False
        try:
            if exc_type is None:
                self._proc.stdin.close()
                if self._proc.wait() != 0:
                    self._fail()
                complete = True
        finally:
            if not complete:
                self._proc.kill()
                self._proc.wait()
            with contextlib.suppress(Exception):
                self._proc.stdin.close()
            self._stderr.close()
            # Only a segment ffmpeg finished cleanly is renamed into place; anything else is removed.
            abort = (exc_type, exc, tb) if exc_type is not None else (RuntimeError, RuntimeError("aborted"), None)
            self._atomic.__exit__(*((None, None, None) if complete else abort))


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def auto_encoders(device_type: str) -> int:
    """ffmpeg processes a render runs at once when ``--encoders`` is not given. On the CPU one: the generator
    already uses every core, and one encoder keeps up with it. On a GPU half the usable cores (up to
    MAX_AUTO_ENCODERS): the generator then needs one core to launch its kernels, and each ffmpeg process runs
    its scaler on one core and libx264's frame threads on others."""
    if device_type == "cpu":
        return 1
    return max(1, min(MAX_AUTO_ENCODERS, usable_cores() // 2))


def pool_buffer_frames(encoders: int, segment_frames: int, batch: int, frame_bytes: int) -> int:
    """Frames an EncoderPool may hold waiting: enough that each encoder has a segment's worth while the
    generator runs ahead, at most POOL_BUFFER_BYTES, never under two batches (generation and encoding overlap)."""
    return max(2 * batch, min(encoders * segment_frames, POOL_BUFFER_BYTES // max(1, frame_bytes)))


class _Aborted(Exception):
    """Raised inside an encoder thread so its SegmentWriter kills ffmpeg and leaves nothing behind."""


_END = object()


class SegmentFeed:
    """The frames of one segment on their way to its encoder thread (see :meth:`EncoderPool.open`)."""

    def __init__(self, pool: "EncoderPool", ticket: int, frames: int):
        self._pool, self.ticket, self.frames = pool, ticket, frames
        self.queue: "queue.SimpleQueue" = queue.SimpleQueue()

    def write(self, frames: np.ndarray) -> None:
        """Queue uint8 frames [n, H, W, 3]; waits while the pool holds its most frames (raises an encoder's error)."""
        self._pool._admit(len(frames))
        self.queue.put(frames)

    def close(self) -> None:
        """No more frames: the encoder finishes the segment once it has encoded those queued."""
        self.queue.put(_END)


class EncoderPool:
    """Segments encoded by up to ``encoders`` ffmpeg processes at once, each driven by its own thread.

    The generator (the thread that owns the pool) opens segments in order and writes their frames; an
    encoder thread starts its ffmpeg when one of the ``encoders`` slots is free, oldest segment first. All
    frames waiting in the pool are bounded together by ``buffer_frames`` (a write waits while the pool holds
    that many), so memory is flat whatever the render's length; frames written from :meth:`take`'s batch buffers
    come back to it once piped. Each segment is atomic as with
    :class:`SegmentWriter`; ``done(dest, frames)`` runs in its encoder thread once it is in place, ``advance(n)``
    as frames are handed to ffmpeg (serialised by the pool's lock). Leaving the ``with`` block waits for every
    encoder and raises the first encoder error; leaving it by an exception kills every ffmpeg and removes their
    temp files.
    """

    def __init__(self, encoders: int, buffer_frames: int, done: Optional[Callable[[Path, int], None]] = None,
                 advance: Optional[Callable[[int], None]] = None, allocate: Optional[Callable[[], Any]] = None,
                 slots: int = 0):
        """``allocate()`` makes one batch buffer for :meth:`take` (an array or tensor [batch, H, W, 3]); the
        pool makes ``slots`` of them at most, as they are first needed."""
        if encoders < 1 or buffer_frames < 1:
            raise ValueError(f"encoders {encoders} and buffer_frames {buffer_frames} must be positive")
        self.encoders, self.buffer_frames = encoders, buffer_frames
        self._done, self._advance = done, advance
        self._allocate, self.slots = allocate, slots
        self._free: list[Any] = []            # batch buffers an encoder has finished with
        self._owned: dict[int, Any] = {}      # every batch buffer, by the address of its memory
        self._cond = threading.Condition()
        self._buffered = 0        # frames written and not yet handed to ffmpeg
        self._running = 0         # ffmpeg processes alive
        self._next_start = 0      # ticket of the segment that starts next
        self._tickets = 0
        self._error: Optional[BaseException] = None
        self._aborting = False
        self._threads: list[threading.Thread] = []
        self._feeds: list[SegmentFeed] = []
        self.peak_buffered = 0    # the most frames held at once (tests and benches read it)
        self.peak_running = 0     # the most ffmpeg processes alive at once

    @property
    def allocated(self) -> int:
        """How many batch buffers :meth:`take` has allocated (at most ``slots``, however long the render)."""
        return len(self._owned)

    def __enter__(self) -> "EncoderPool":
        return self

    def open(self, dest: Path, settings: EncodeSettings, src_size: int | tuple[int, int], frames: int) -> SegmentFeed:
        """A feed for segment ``dest`` of ``frames`` frames; write them all, then close it."""
        self._raise_error()
        feed = SegmentFeed(self, self._tickets, frames)
        self._tickets += 1
        writer = SegmentWriter(dest, settings, src_size)
        thread = threading.Thread(target=self._encode, args=(feed, writer), name=f"morph-encode-{feed.ticket}",
                                  daemon=True)
        self._feeds.append(feed)
        self._threads.append(thread)
        thread.start()
        return feed

    def take(self, n: int) -> Any:
        """The first ``n`` frames of a batch buffer to fill and write (``SegmentFeed.write``); it comes back to
        the pool once its encoder has piped it into ffmpeg. Waits while all ``slots`` are on their way (raises an
        encoder's error)."""
        with self._cond:
            self._cond.wait_for(lambda: self._free or len(self._owned) < self.slots or self._error is not None)
            self._raise_error()
            if self._free:
                buffer = self._free.pop()
            else:
                buffer = self._allocate()
                self._owned[_address(buffer)] = buffer
        return buffer[:n]

    def _recycle(self, frames: np.ndarray) -> None:
        """Give ``frames``' batch buffer back (call with the lock held); an array of the caller's own is left alone."""
        buffer = self._owned.get(_address(frames))
        if buffer is not None:
            self._free.append(buffer)

    def _admit(self, n: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._buffered < self.buffer_frames or self._error is not None)
            self._raise_error()
            self._buffered += n
            self.peak_buffered = max(self.peak_buffered, self._buffered)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _encode(self, feed: SegmentFeed, writer: "SegmentWriter") -> None:
        """One segment's thread: wait for a slot (in ticket order), then pipe its frames through ffmpeg."""
        with self._cond:
            self._cond.wait_for(lambda: self._aborting or self._error is not None or
                                (self._next_start == feed.ticket and self._running < self.encoders))
            if self._aborting or self._error is not None:
                return
            self._next_start += 1
            self._running += 1
            self.peak_running = max(self.peak_running, self._running)
        try:
            with writer:
                while True:
                    frames = feed.queue.get()
                    if self._aborting:  # checked before the end mark too: an aborted segment is never completed
                        raise _Aborted()
                    if frames is _END:
                        break
                    writer.write(frames)
                    with self._cond:
                        self._buffered -= len(frames)
                        self._recycle(frames)
                        self._cond.notify_all()
                        if self._advance is not None:
                            self._advance(len(frames))
            if self._done is not None:
                self._done(writer.dest, feed.frames)
        except _Aborted:
            pass
        except BaseException as exc:  # handed to the generator's thread, which raises it
            with self._cond:
                self._error = self._error or exc
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            with self._cond:
                self._aborting = True
                self._cond.notify_all()
            for feed in self._feeds:
                feed.queue.put(_END)  # wakes a thread waiting for frames; it sees the abort first
        for thread in self._threads:
            thread.join()
        if exc_type is None:
            self._raise_error()


def _address(frames: Any) -> int:
    """Where an array's or tensor's memory starts: a batch buffer and the frames taken from its front share it."""
    if isinstance(frames, np.ndarray):
        return frames.__array_interface__["data"][0]
    return frames.data_ptr()


def _concat_list(segments: Sequence[Path], folder: Path) -> Path:
    listing = folder / "segments.txt"
    listing.write_text("".join(f"file '{os.fspath(p.resolve())}'\n" for p in segments))
    return listing


def join_segments(segments: Sequence[Path], dest: Path, settings: EncodeSettings, total_frames: int,
                  audio: Optional[Path] = None, metadata: Optional[dict[str, str]] = None) -> None:
    """Join cached segments into ``dest`` atomically: stream copy for mp4/webm, one encode for GIF and PNG."""
    meta_args = [arg for k, v in (metadata or {}).items() for arg in ("-metadata", f"{k}={v}")]
    with tempfile.TemporaryDirectory(prefix="morph-join-") as work:
        listing = _concat_list(segments, Path(work))
        src = [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "concat", "-safe", "0",
               "-i", str(listing)]
        if settings.format in VIDEO_FORMATS:
            audio_in = ["-i", str(audio)] if audio else []
            # -t, not -shortest: a sound track longer than the video is cut to it, a shorter one never cuts the video
            audio_out = (["-map", "0:v", "-map", "1:a", "-c:a", AUDIO_CODEC[settings.format],
                          "-t", f"{total_frames / settings.fps:.6f}"] if audio else [])
            faststart = ["-movflags", "+faststart"] if settings.format == "mp4" else []
            hevc = ["-tag:v", "hvc1"] if settings.encoding.codec == "h265" else []  # stream copy keeps no tag
            with atomic_path(dest) as tmp:
                _run([*src, *audio_in, "-c:v", "copy", *hevc, *audio_out, *faststart, *meta_args,
                      "-f", settings.format, str(tmp)], dest)
                check_joined(tmp, settings, total_frames, dest)
        elif settings.format == "gif":
            step = max(1, total_frames // GIF_PALETTE_SAMPLES)
            palette = Path(work) / "palette.png"
            _run([*src, "-vf", f"select='not(mod(n\\,{step}))',palettegen=stats_mode=full", "-frames:v", "1",
                  str(palette)], dest)
            with atomic_path(dest) as tmp:
                _run([*src, "-i", str(palette), "-lavfi", "[0:v][1:v]paletteuse=dither=bayer:bayer_scale=3",
                      "-r", str(settings.fps), "-loop", "0", "-f", "gif", str(tmp)], dest)
                check_joined(tmp, settings, total_frames, dest)
        elif settings.format == "png":
            _join_png(src, dest, settings, total_frames)
        else:
            raise MorphError(f"unknown format {settings.format!r}", dest, f"use one of {', '.join(FORMATS)}")


def is_frame_file(path: Path) -> bool:
    """Whether ``path`` is a frame a png render writes (``frame_000000.png`` …): all a png folder may hold."""
    return path.is_file() and _FRAME_NAME.match(path.name) is not None


def _join_png(src: list[str], dest: Path, settings: EncodeSettings, total_frames: int) -> None:
    """PNG frames into folder ``dest`` (frame_000000.png, ...), built beside it and renamed into place; an
    existing ``dest`` is replaced only if it holds nothing but such frames (the caller checks it first)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a finished folder gets the usual permissions
        _run([*src, "-start_number", "0", str(tmp / "frame_%06d.png")], dest)
        check_joined(tmp, settings, total_frames, dest)
        if dest.exists():
            if any(not is_frame_file(p) for p in dest.iterdir()):
                raise MorphError("holds files morph did not write; it is left as it was", dest,
                                 "move them away, or render into another --out")
            old = dest.with_name(f".{dest.name}.old")
            os.replace(dest, old)
            _remove_tree(old)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            _remove_tree(tmp)


def _remove_tree(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def count_frames(path: Path) -> tuple[int, int, int]:
    """(frames, width, height) of a video file's first stream, read without decoding; of a png folder, its
    frame files and the first one's size."""
    if path.is_dir():
        frames = sorted(p for p in path.iterdir() if is_frame_file(p))
        if not frames:
            return 0, 0, 0
        head = frames[0].read_bytes()[:24]
        return len(frames), int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(path), "-map", "0:v:0", "-c", "copy",
                           "-f", "null", "-"], capture_output=True, text=True)
    counted = re.findall(r"frame=\s*(\d+)", proc.stderr)
    size = re.search(r"Video:.*?, (\d+)x(\d+)", proc.stderr)
    if proc.returncode != 0 or not counted or size is None:
        return 0, 0, 0
    return int(counted[-1]), int(size.group(1)), int(size.group(2))


def check_joined(path: Path, settings: EncodeSettings, total_frames: int, dest: Path) -> None:
    """MorphError unless the joined file at ``path`` holds exactly the planned frames at the planned size."""
    frames, width, height = count_frames(path)
    if (frames, width, height) != (total_frames, *settings.frame()):
        planned = "x".join(map(str, settings.frame()))
        raise MorphError(f"the joined output has {frames} frames of {width}x{height}, planned "
                         f"{total_frames} of {planned}; nothing was written", dest,
                         "run morph cache --verify, then render again")


def audio_problem(path: Path) -> Optional[str]:
    """Why ffmpeg cannot take ``path`` as a sound track (None when it holds an audio stream it decodes)."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-v", "error", "-i", str(path), "-map", "0:a:0", "-t", "1",
                           "-ac", "1", "-f", "f32le", "-"], capture_output=True)
    if proc.returncode == 0:
        return None if proc.stdout else "it holds no samples (an empty sound)"
    last = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no audio stream"])[-1]
    return "no audio stream" if "matches no streams" in last else f"ffmpeg cannot decode it ({last})"


def probe(path: Path) -> dict[str, object]:
    """Codec, pixel format, size and frame rate of a file's first video stream, as ffmpeg reads them."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    line = next((ln for ln in proc.stderr.splitlines() if "Video:" in ln), None)
    if line is None:
        raise MorphError("no video stream", path)
    size = re.search(r", (\d+)x(\d+)", line)
    fps = re.search(r"([\d.]+) (?:fps|tbr)", line)
    pix_fmt = re.search(r", ((?:yuv|yuva|gbr|rgb|bgr|gray|pal)\w*)", line)
    return {"codec": line.split("Video:")[1].split()[0].rstrip(","), "pix_fmt": pix_fmt and pix_fmt.group(1),
            "width": int(size.group(1)),
            "height": int(size.group(2)), "fps": float(fps.group(1)) if fps else None, "stream": line.strip()}


def decode_frames(path: Path, size: int | tuple[int, int]) -> np.ndarray:
    """All frames of a video as uint8 [N, size, size, 3], or [N, H, W, 3] for ``size`` (W, H) (tests compare
    them with generated frames)."""
    width, height = (size, size) if isinstance(size, int) else size
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-f", "rawvideo",
                           "-pix_fmt", "rgb24", "-"], capture_output=True, check=True)
    return np.frombuffer(proc.stdout, np.uint8).reshape(-1, height, width, 3)

