"""The scene words of one output file: a render's ``format``, ``fps``, ``size``, ``canvas``, ``audio``, its
encoder choices (``codec``, ``pixel_format``, ``quality``) and its motion (``morph.scene.motion``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from yaml.nodes import MappingNode, Node

from morph.core.limits import MAX_FPS, MAX_FRAMES, MAX_SIZE, MIN_FPS, MIN_SIZE
from morph.render.encode import (
    CODECS,
    MAX_CRF,
    PIXEL_FORMATS,
    PRESETS,
    QUALITY_LEVELS,
    VIDEO_FORMATS,
    Encoding,
    audio_problem,
    missing_encoder,
)
from morph.scene.canvas import CanvasReader
from morph.scene.motion import MotionReader
from morph.scene.nodes import alternatives
from morph.scene.types import DEFAULT_FPS, ENCODING_KEYS, QUALITY_KEYS, RENDER_KEYS, Render

_BITRATE = re.compile(r"^\d+(\.\d+)?[kM]?$")


class RenderReader(MotionReader, CanvasReader):
    """Reads renders and sound tracks."""

    def audio(self, node: Node, path: str) -> Optional[Path]:
        """A sound file for ``audio:`` (any format ffmpeg reads: mp3, wav, aac, ogg, flac …)."""
        found = self.existing(node, path, "an audio file path",
                              "give an audio file (mp3, wav, …) relative to the scene's folder")
        problem = found and audio_problem(found)
        if problem:
            self.fail(node, path, f"{node.value}: {problem}; give an audio file ffmpeg reads (mp3, wav, ogg, …)")
            return None
        return found

    def encoding(self, node: Node, path: str, items: dict, fmt: Optional[str]) -> Optional[Encoding]:
        """A render's ``codec``, ``pixel_format`` and ``quality``: video formats only, and a codec only where
        the ffmpeg morph runs has its encoder."""
        given = [k for k in ENCODING_KEYS if k in items]
        if fmt not in CODECS:
            for key in given if fmt else ():
                self.fail(items[key][0], f"{path}.{key}", f"a {fmt} render has no {key} (only "
                                                          f"{alternatives(VIDEO_FORMATS)} do); drop {key}")
            return None if given else Encoding()
        codec = self.option(items, "codec", path, self.choice, CODECS[fmt], default=CODECS[fmt][0])
        if codec is None:
            return None
        # the codecs of morph's first formats are taken as present; the others are asked of the binary
        problem = codec not in (CODECS["mp4"][0], CODECS["webm"][0]) and missing_encoder(codec)
        if problem:  # at the codec, or at the format whose own codec it is (mov's ProRes)
            where = "codec" if "codec" in items else "format"
            self.fail(items[where][1], f"{path}.{where}", problem)
            return None
        pix_fmt = self.option(items, "pixel_format", path, self.choice, PIXEL_FORMATS[codec],
                              default=PIXEL_FORMATS[codec][0])
        quality = self.option(items, "quality", path, self.quality, codec,
                              default=(QUALITY_LEVELS.get(codec, {}).get("standard", Encoding.crf), "", ""))
        if pix_fmt is None or quality is None:
            return None
        crf, bitrate, preset = quality
        return Encoding("" if codec == CODECS[fmt][0] else codec, pix_fmt, crf,
                        preset or Encoding.preset, bitrate)

    def quality(self, node: Node, path: str, codec: str) -> Optional[tuple[int, str, str]]:
        """(crf, bitrate, preset) of ``quality:``: a level (``draft``, ``standard``, ``high``), a CRF, or
        ``{crf: N | bitrate: 8M, preset: slow}``."""
        levels = QUALITY_LEVELS.get(codec)
        if levels is None:
            self.fail(node, path, f"{codec} has one quality (the 4444 profile); drop quality")
            return None
        crf_text = f"a CRF from 0 (best) to {MAX_CRF[codec]}"
        if not isinstance(node, MappingNode):
            value = self.value(node)
            if isinstance(value, str) and value in levels:
                return levels[value], "", ""
            crf = self.number(node, path, f"{alternatives(levels)}, or {crf_text}",
                              lambda x: 0 <= x <= MAX_CRF[codec], True)
            return None if crf is None else (int(crf), "", "")
        items = self.mapping(node, path, QUALITY_KEYS)
        if items is None:
            return None
        if "crf" in items and "bitrate" in items:
            self.fail(items["bitrate"][0], f"{path}.bitrate", "give crf or bitrate, not both")
            return None
        if "preset" in items and codec not in ("h264", "h265"):
            self.fail(items["preset"][0], f"{path}.preset", f"{codec} has no preset; drop it")
            return None
        crf = self.option(items, "crf", path, self.number, crf_text, lambda x: 0 <= x <= MAX_CRF[codec], True,
                          default=levels["standard"])
        bitrate = self.option(items, "bitrate", path, self.bitrate, default="")
        preset = self.option(items, "preset", path, self.choice, PRESETS, default="")
        return None if None in (crf, bitrate, preset) else (int(crf), bitrate, preset)

    def bitrate(self, node: Node, path: str) -> Optional[str]:
        """A target bitrate as ffmpeg takes it: bits per second, or with k or M (``8M``, ``2500k``)."""
        value = self.value(node)
        text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
        if _BITRATE.match(text) and float(text.rstrip("kM")) > 0:
            return text
        self.fail(node, path, f"expected a bitrate such as 8M or 2500k, got {self.show(node)}")
        return None

    def render(self, node: Node, path: str, audio: Optional[Path] = None) -> Optional[Render]:
        """A render; ``audio`` is the scene's sound track, used by mp4/webm renders that name none."""
        items = self.mapping(node, path, RENDER_KEYS)
        if items is None:
            return None
        fmt = self.option(items, "format", path, self.choice, DEFAULT_FPS, default="mp4")
        fps = self.option(items, "fps", path, self.number, "a positive number", lambda x: x > 0,
                          default=DEFAULT_FPS.get(fmt, 30))
        if fps is not None and not MIN_FPS <= fps <= MAX_FPS:
            self.fail(items["fps"][1], f"{path}.fps", f"{fps:g} fps is outside {MIN_FPS} to {MAX_FPS}")
            fps = None
        size = self.option(items, "size", path, self.number, "a positive integer (pixels)", lambda x: x > 0, True,
                           default=self.dims and self.dims.resolution)
        if size is not None and not MIN_SIZE <= size <= MAX_SIZE:
            self.fail(items["size"][1], f"{path}.size", f"{size} px is outside {MIN_SIZE} to {MAX_SIZE}")
            size = None
        if size is not None and size % 2 and fmt in VIDEO_FORMATS:
            self.fail(items["size"][1], f"{path}.size", f"{fmt} needs an even size, got {size}")
        canvas = self.option(items, "canvas", path, self.canvas, fmt, size, "size" in items)
        if canvas is not None:
            size = canvas.square
        if "audio" in items and fmt is not None and fmt not in VIDEO_FORMATS:
            self.fail(items["audio"][0], f"{path}.audio", f"a {fmt} render has no sound track; "
                                                           f"use format {alternatives(VIDEO_FORMATS)}, or drop audio")
        elif "audio" in items:
            audio = self.audio(items["audio"][1], f"{path}.audio")
            if audio is None:
                return None
        self.sound = audio  # what follow: and transition.on read, in any format
        encoding = self.encoding(node, path, items, fmt)
        motion = self.motion(node, path, items, fps or 30)
        if None in (fmt, fps, size, motion, encoding) or ("canvas" in items and canvas is None):
            return None
        if motion.frames > MAX_FRAMES:
            self.fail(node, path, f"{motion.frames} frames ({motion.frames / fps / 3600:.1f} h at {fps:g} fps); "
                                  f"a render has at most {MAX_FRAMES}: split it into several renders")
            return None
        return Render(path.split(".", 1)[1], fmt, float(fps), int(size), motion, self.where(node, path),
                      audio if fmt in VIDEO_FORMATS else None, canvas=canvas, encoding=encoding)
