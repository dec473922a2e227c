"""The scene words of one output file: a render's ``format``, ``fps``, ``size``, ``canvas`` and ``audio``, and
its motion (``morph.scene.motion``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from yaml.nodes import Node

from morph.core.limits import MAX_FPS, MAX_FRAMES, MAX_SIZE, MIN_FPS, MIN_SIZE
from morph.render.encode import VIDEO_FORMATS, audio_problem
from morph.scene.canvas import CanvasReader
from morph.scene.motion import MotionReader
from morph.scene.nodes import alternatives
from morph.scene.types import DEFAULT_FPS, RENDER_KEYS, Render


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
        motion = self.motion(node, path, items, fps or 30)
        if None in (fmt, fps, size, motion) or ("canvas" in items and canvas is None):
            return None
        if motion.frames > MAX_FRAMES:
            self.fail(node, path, f"{motion.frames} frames ({motion.frames / fps / 3600:.1f} h at {fps:g} fps); "
                                  f"a render has at most {MAX_FRAMES}: split it into several renders")
            return None
        return Render(path.split(".", 1)[1], fmt, float(fps), int(size), motion, self.where(node, path),
                      audio if fmt in VIDEO_FORMATS else None, canvas=canvas)
