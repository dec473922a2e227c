"""The ``canvas:`` key of a render: ``{aspect: 16:9}`` or ``{width: W, height: H}``, ``fit`` and ``color``, read
into a :class:`morph.render.canvas.Canvas` with one ``file:line:col`` line per problem."""

from __future__ import annotations

import re
from typing import Optional

from yaml.nodes import Node, ScalarNode, SequenceNode

from morph.core.limits import MAX_SIZE, MIN_SIZE
from morph.render.canvas import FITS, Canvas
from morph.render.encode import VIDEO_FORMATS
from morph.scene.nodes import NodeReader

CANVAS_KEYS = ("aspect", "width", "height", "fit", "color")
MAX_ASPECT = 4.0  # 4:1 either way; wider costs the network proportionally more
_RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[:/]\s*(\d+(?:\.\d+)?)\s*$")
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


class CanvasReader(NodeReader):
    """Reads a render's ``canvas:``."""

    def canvas_aspect(self, node: Node, path: str) -> Optional[float]:
        """``16:9``, ``16/9`` or ``1.85`` (width / height). The raw text is read, since YAML 1.1 takes an
        unquoted ``16:9`` for the base-60 number 969."""
        text = node.value if isinstance(node, ScalarNode) else None
        match = _RATIO.match(text) if isinstance(text, str) else None
        value = None
        if match and float(match[2]) > 0:
            value = float(match[1]) / float(match[2])
        elif isinstance(text, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", text):
            value = float(text)
        if value is None or value <= 0:
            self.fail(node, path, f"expected an aspect ratio such as 16:9, 2.39:1 or 1.85, got {self.show(node)}")
            return None
        if not 1 / MAX_ASPECT <= value <= MAX_ASPECT:
            self.fail(node, path, f"aspect {text.strip()} is beyond {MAX_ASPECT:g}:1 either way")
            return None
        return value

    def canvas_color(self, node: Node, path: str) -> Optional[tuple[int, int, int]]:
        """``"#202020"`` (quoted: ``#`` starts a YAML comment) or ``[32, 32, 32]``."""
        if isinstance(node, SequenceNode) and len(node.value) == 3:
            channels = [self.number(n, path, "a channel value from 0 to 255", lambda x: 0 <= x <= 255, True)
                        for n in node.value]
            return None if None in channels else tuple(int(c) for c in channels)
        value = self.value(node)
        match = _HEX.match(value) if isinstance(value, str) else None
        if match:
            return tuple(bytes.fromhex(match[1]))
        self.fail(node, path, f"expected a colour as \"#rrggbb\" (quoted) or [r, g, b], got {self.show(node)}")
        return None

    def canvas_side(self, node: Node, path: str, fmt: Optional[str]) -> Optional[int]:
        """A canvas ``width`` or ``height`` in pixels (even for a video)."""
        side = self.number(node, path, "a positive integer (pixels)", lambda x: x > 0, True)
        if side is not None and not MIN_SIZE <= side <= MAX_SIZE:
            self.fail(node, path, f"{side} px is outside {MIN_SIZE} to {MAX_SIZE}")
            return None
        if side is not None and side % 2 and fmt in VIDEO_FORMATS:
            self.fail(node, path, f"{fmt} needs an even size, got {side}")
            return None
        return side

    def canvas(self, node: Node, path: str, fmt: Optional[str], size: Optional[int],
                    size_given: bool) -> Optional[Canvas]:
        """The canvas of a render whose square is ``size`` px (``size_given``: the render wrote ``size:``)."""
        items = self.mapping(node, path, CANVAS_KEYS)
        if items is None:
            return None
        fit = self.option(items, "fit", path, self.choice, FITS, default="widen")
        color = self.option(items, "color", path, self.canvas_color, default=(0, 0, 0))
        if "color" in items and fit not in (None, "pad"):
            self.fail(items["color"][0], f"{path}.color", f"color applies only to fit: pad (this canvas is fit: {fit})")
            return None
        sides = [k for k in ("width", "height") if k in items]
        if ("aspect" in items) == bool(sides):
            self.fail(node, path, "give aspect, or width and height, not both" if sides else
                   "needs aspect (16:9) or width and height")
            return None
        if "aspect" in items:
            aspect = self.canvas_aspect(items["aspect"][1], f"{path}.aspect")
            if None in (aspect, size, fit, color):
                return None
            canvas = Canvas.from_aspect(aspect, size, fit, color)
            if not MIN_SIZE <= min(canvas.width, canvas.height) <= max(canvas.width, canvas.height) <= MAX_SIZE:
                self.fail(items["aspect"][1], f"{path}.aspect", f"the frame would be {canvas.width}x{canvas.height}, "
                                                             f"outside {MIN_SIZE} to {MAX_SIZE} px; change the size")
                return None
            return canvas
        if len(sides) == 1:
            self.fail(node, path, f"needs both width and height, or aspect (only {sides[0]} is given)")
            return None
        if size_given:
            self.fail(node, path, "width and height set the frame, and size would set it too; give one of them "
                               "(or canvas aspect with size)")
            return None
        width, height = (self.canvas_side(items[k][1], f"{path}.{k}", fmt) for k in ("width", "height"))
        if None in (width, height, fit, color):
            return None
        if not 1 / MAX_ASPECT <= width / height <= MAX_ASPECT:
            self.fail(node, path, f"{width}x{height} is beyond {MAX_ASPECT:g}:1 either way")
            return None
        return Canvas(int(width), int(height), fit, color)
