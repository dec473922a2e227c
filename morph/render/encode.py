"""ffmpeg at the edge: raw RGB frames piped in, video segments out, segments joined into the final file.

Every file appears only complete: ffmpeg writes a temp file beside the destination, which is
renamed on success and removed on any failure or interruption. The ffmpeg binary is the one
``imageio-ffmpeg`` ships, so nothing has to be installed.

Segments are the unit of caching: mp4 and webm segments are already in the final codec and
are joined by stream copy; GIF and PNG segments are stored losslessly (FFV1) and the join is
the one encoding pass (GIF: a palette from a sample of frames, then dithering every frame).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from morph.render.canvas import Canvas
from morph.core.errors import MorphError
from morph.core.files import atomic_path

FORMATS = ("mp4", "webm", "gif", "png")
VIDEO_FORMATS = ("mp4", "webm")  # encoded by a video codec: even sizes only, and they carry a sound track
SEGMENT_SUFFIX = {"mp4": ".mp4", "webm": ".webm", "gif": ".mkv", "png": ".mkv"}
# Frames sampled for a GIF palette: palettegen over every frame is the slow part of GIF encoding.
GIF_PALETTE_SAMPLES = 48
_FRAME_NAME = re.compile(r"^frame_\d{6}\.png$")


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg (``IMAGEIO_FFMPEG_EXE`` overrides it)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class EncodeSettings:
    """Everything about encoding that decides a segment's bytes (part of the cache key)."""

    format: str = "mp4"
    fps: float = 30.0
    size: int = 512          # output width = height, scaled with Lanczos from the generator's resolution
    crf: int = 18            # mp4 / webm quality (lower is better)
    # x264 speed/size trade-off: at CRF 18 on morph's smooth frames, veryfast encoded 256 px frames 2.7× faster
    # than medium (344 vs 122 frames/s on one core) at the same file size, and the encoder shares the CPU
    # with the generator (on a GPU machine it is the CPU that must keep up)
    preset: str = "veryfast"
    canvas: Optional[Canvas] = None  # a frame other than size × size (morph.render.canvas); None: square

    def key(self) -> dict:
        key = asdict(self)
        if self.canvas is None:  # square renders keep the keys they had before canvases
            del key["canvas"]
        return key

    def frame(self) -> tuple[int, int]:
        """(width, height) of the output frames."""
        return (self.canvas.width, self.canvas.height) if self.canvas else (self.size, self.size)


def _segment_codec_args(settings: EncodeSettings) -> list[str]:
    if settings.format == "mp4":
        return ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(settings.crf), "-preset", settings.preset]
    if settings.format == "webm":
        return ["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-crf", str(settings.crf), "-b:v", "0",
                "-row-mt", "1", "-deadline", "good", "-cpu-used", "4"]
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
               *_segment_codec_args(s), "-f", {"mp4": "mp4", "webm": "webm"}.get(s.format, "matroska"),
               str(self._tmp)]
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr)

    def write(self, frames: np.ndarray) -> None:
        assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[1:] == (*self.src_shape[::-1], 3), \
            frames.shape
        try:
            self._proc.stdin.write(np.ascontiguousarray(frames).tobytes())
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
            audio_out = (["-map", "0:v", "-map", "1:a", "-c:a", "aac" if settings.format == "mp4" else "libopus",
                          "-t", f"{total_frames / settings.fps:.6f}"] if audio else [])
            faststart = ["-movflags", "+faststart"] if settings.format == "mp4" else []
            with atomic_path(dest) as tmp:
                _run([*src, *audio_in, "-c:v", "copy", *audio_out, *faststart, *meta_args,
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
    """Codec, size and frame rate of a file's first video stream, as ffmpeg reads them."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    line = next((ln for ln in proc.stderr.splitlines() if "Video:" in ln), None)
    if line is None:
        raise MorphError("no video stream", path)
    size = re.search(r", (\d+)x(\d+)", line)
    fps = re.search(r"([\d.]+) (?:fps|tbr)", line)
    return {"codec": line.split("Video:")[1].split()[0].rstrip(","), "width": int(size.group(1)),
            "height": int(size.group(2)), "fps": float(fps.group(1)) if fps else None, "stream": line.strip()}


def decode_frames(path: Path, size: int | tuple[int, int]) -> np.ndarray:
    """All frames of a video as uint8 [N, size, size, 3], or [N, H, W, 3] for ``size`` (W, H) (tests compare
    them with generated frames)."""
    width, height = (size, size) if isinstance(size, int) else size
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-f", "rawvideo",
                           "-pix_fmt", "rgb24", "-"], capture_output=True, check=True)
    return np.frombuffer(proc.stdout, np.uint8).reshape(-1, height, width, 3)

