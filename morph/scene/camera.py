"""The scene words for the camera: a render's ``camera:`` (a pose, ``orbit`` and ``swing``) and a keyframe's
pose; only models whose input can move (StyleGAN3) take one."""

from __future__ import annotations

from typing import Callable, Optional

from yaml.nodes import Node, SequenceNode

from morph.core.limits import MAX_ROTATE, MAX_TRANSLATE
from morph.motion.schedule import Camera, Cycle, Orbit, Pose, Swing
from morph.scene.nodes import Items, NodeReader
from morph.scene.types import CAMERA_FAMILIES, CAMERA_KEYS, ORBIT_KEYS, POSE_KEYS, SWING_KEYS


class CameraReader(NodeReader):
    """Reads camera poses and periodic camera moves."""

    def pose(self, node: Node, path: str, items: Optional[Items] = None) -> Optional[Pose]:
        """A camera pose ``{translate: [X, Y], rotate: DEGREES}`` (either may be left out: 0); only models whose
        input can move (StyleGAN3) take one."""
        if self.dims and self.dims.family not in CAMERA_FAMILIES:
            self.fail(node, path, f"camera moves need a StyleGAN3 model, whose Fourier input can be translated and "
                                  f"rotated; this model is {self.dims.family}, whose input is a learned constant; drop camera")
            return None
        items = self.mapping(node, path, POSE_KEYS) if items is None else items
        if items is None:
            return None
        translate = self.option(items, "translate", path, self.translate, default=(0.0, 0.0))
        rotate = self.option(items, "rotate", path, self.number, f"degrees from -{MAX_ROTATE:g} to {MAX_ROTATE:g}",
                             lambda x: abs(x) <= MAX_ROTATE, default=0.0)
        return None if translate is None or rotate is None else (*translate, float(rotate))

    def translate(self, node: Node, path: str) -> Optional[tuple[float, float]]:
        """``[X, Y]`` in image widths."""
        what = f"[X, Y] in image widths, each from -{MAX_TRANSLATE:g} to {MAX_TRANSLATE:g}"
        if not isinstance(node, SequenceNode) or len(node.value) != 2:
            self.fail(node, path, f"expected {what}, got {self.show(node)}")
            return None
        xy = [self.number(n, f"{path}[{i}]", what, lambda x: abs(x) <= MAX_TRANSLATE) for i, n in enumerate(node.value)]
        return None if None in xy else (float(xy[0]), float(xy[1]))

    def camera(self, node: Node, path: str, fps: float) -> Optional[Camera]:
        """A render's camera: a pose for keyframes that give none, and periodic ``orbit`` / ``swing`` moves."""
        items = self.mapping(node, path, CAMERA_KEYS)
        if items is None:
            return None
        pose = self.pose(node, path, {k: v for k, v in items.items() if k in POSE_KEYS})
        if pose is None:
            return None
        orbit = self.option(items, "orbit", path, self.periodic, fps, ORBIT_KEYS, "radius",
                            (f"a radius from 0 to {MAX_TRANSLATE:g} image widths", lambda x: 0 < x <= MAX_TRANSLATE),
                            0.05)
        swing = self.option(items, "swing", path, self.periodic, fps, SWING_KEYS, "degrees",
                            ("degrees from 0 to 360", lambda x: 0 < x <= 360), 5.0)
        if ("orbit" in items and orbit is None) or ("swing" in items and swing is None):
            return None
        return Camera((pose,), orbit and Orbit(*orbit), swing and Swing(*swing))

    def periodic(self, node: Node, path: str, fps: float, keys: tuple[str, ...], size: str,
                 rule: tuple[str, Callable[[float], bool]], default: float) -> Optional[tuple[float, Cycle]]:
        """A periodic camera move ``{SIZE, period}``: its size and its cycle (one period, fitted to a loop later)."""
        items = self.mapping(node, path, keys)
        if items is None:
            return None
        amount = self.option(items, size, path, self.number, *rule, default=default)
        period = self.period(items, path, fps)
        return None if amount is None or period is None else (float(amount), Cycle(1, period))

