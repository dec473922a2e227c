"""The scene words for how a render moves: ``path:`` (keyframes, ``transition:``, ``hold:``, ``loop:``) or
``around:`` with ``duration:``, and the ``deform:`` and ``breathe:`` waves on top, fitted to the loop."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from yaml.nodes import MappingNode, Node, SequenceNode

from morph.core.limits import MAX_AMPLITUDE, MAX_STRENGTH
from morph.motion.schedule import EASINGS, INTERPS, Breathe, Camera, Cue, Cycle, Deform, KeyPath, Motion, Pose, cycle
from morph.scene.camera import CameraReader
from morph.scene.music import MusicReader
from morph.scene.nodes import SEED_RULE, STRENGTH_RULE, Items
from morph.scene.types import BREATHE_KEYS, DEFAULTS, DEFORM_KEYS, STEP_KEYS, TRANSITION_KEYS


class MotionReader(MusicReader, CameraReader):
    """Reads a render's motion: its keyframe path or held latent, its waves, its sound cues and camera."""

    def motion(self, node: Node, path: str, items: Items, fps: float) -> Optional[Motion]:
        """A render's motion from its ``items``: a path or an around, its waves and pushes, its camera."""
        if ("path" in items) == ("around" in items):
            self.fail(node, path, "give either path or around, not both" if "path" in items else
                      "needs path: [keyframes...] or around: LATENT")
            return None
        base = "path" if "path" in items else "around"
        for key in ("loop", "transition", "hold", "duration"):
            if key in items and (key == "duration") != (base == "around"):
                self.fail(items[key][0], path, f"{key} does not apply to {base} renders")
        deform = self.option(items, "deform", path, self.deform, fps)
        breathe = self.option(items, "breathe", path, self.breathe, fps)
        pushes = self.option(items, "add", path, self.pushes, fps, default=())
        camera = self.option(items, "camera", path, self.camera, fps)
        cue, poses = None, []
        if base == "around":
            follows = [w.follow for w in (deform, breathe, *(pushes or ())) if w and w.follow]
            moves = [w for w in (deform, breathe, camera and camera.orbit, camera and camera.swing) if w]
            waves = ("deform" in items or "breathe" in items or bool(follows or moves)
                     or ("camera" in items and camera is None))
            keys = self.still(node, path, items, fps, waves, self.analysis(node, path).frames(fps) if follows else
                              max((w.cycle.frames for w in moves), default=None))  # the whole sound
        else:
            keys, cue, poses = self.key_path(path, items, fps)
        if keys is None or pushes is None or any(k in items and v is None for k, v in
                                                 (("deform", deform), ("breathe", breathe), ("camera", camera))):
            return None
        if camera or any(poses):  # a pose per key of the path (a path on beats cycles through its steps)
            camera = camera or Camera(((0.0, 0.0, 0.0),))
            poses = [(poses and poses[i % len(poses)]) or camera.poses[0] for i in range(len(keys.keys))]
            camera = replace(camera, poses=tuple(poses))
        if keys.loop:  # a whole number of periods per loop, so the last frame flows into the first
            deform, breathe = (w and replace(w, cycle=cycle(w.cycle.frames, keys.frames, True))
                               for w in (deform, breathe))
            if camera:
                camera = replace(camera, **{k: replace(m, cycle=cycle(m.cycle.frames, keys.frames, True))
                                            for k, m in (("orbit", camera.orbit), ("swing", camera.swing)) if m})
        return Motion(keys, deform, breathe, pushes, cue, camera)

    def still(self, node: Node, path: str, items: Items, fps: float, waves: bool,
              period: Optional[float]) -> Optional[KeyPath]:
        """One latent held for ``duration`` (default: the longest wave period), always looping."""
        name = self.latent_ref(items["around"][1], f"{path}.around")
        frames = self.option(items, "duration", path, self.duration, fps, default=period)
        if "duration" not in items and not waves:
            self.fail(node, path, "an around render needs a duration, a deform, a breathe or a camera orbit/swing")
        if name is None or frames is None:
            return None
        return KeyPath((name,), (round(frames),), (), (), loop=True)

    def key_path(self, path: str, items: Items,
                 fps: float) -> tuple[Optional[KeyPath], Optional[Cue], list[Optional[Pose]]]:
        """The keyframe path, the sound's events it is timed by (if any), and the camera pose each step of the
        path gives (None where it gives none)."""
        loop = self.option(items, "loop", path, self.boolean, default=False)
        transition = self.option(items, "transition", path, self.mapping, TRANSITION_KEYS, default={}) or {}
        t_path = f"{path}.transition"
        interp = self.option(transition, "interp", t_path, self.choice, INTERPS, default=DEFAULTS["interp"])
        move = self.option(transition, "duration", t_path, self.duration, fps, default=DEFAULTS["transition"] * fps)
        ease = self.ease(transition, t_path, interp, DEFAULTS["ease"])
        hold = self.option(items, "hold", path, self.duration, fps, False, default=DEFAULTS["hold"] * fps)
        steps = self.sequence(items["path"][1], f"{path}.path")
        if steps is not None and len(steps) < 2:
            self.fail(items["path"][1], f"{path}.path",
                      f"a path needs at least two keyframes, got {len(steps)}; for one latent use around: NAME")
        if steps is None or len(steps) < 2:
            return None, None, []
        keys, holds, moves, eases, poses = [], [], [], [], []
        for i, step in enumerate(steps):  # a step's duration and ease are those of the transition into it
            s_path = f"{path}.path[{i}]"
            name, options = self.step(step, s_path)
            o_path = f"{s_path}.{name}"
            if "duration" in options and i == 0 and loop is False:
                self.fail(options["duration"][0], o_path, "the first keyframe has no transition into it "
                                                         "(the path does not loop)")
            keys.append(name)
            holds.append(self.option(options, "hold", o_path, self.duration, fps, False, default=hold))
            moves.append(self.option(options, "duration", o_path, self.duration, fps, default=move))
            eases.append(self.ease(options, o_path, interp, ease))
            poses.append(self.option(options, "camera", o_path, self.pose))
        moves, eases = (moves[1:] + moves[:1], eases[1:] + eases[:1]) if loop else (moves[1:], eases[1:])
        if "on" in transition:  # timing from the sound
            timed = None if None in keys + [interp, ease] else self.cue_path(
                transition, t_path, steps, items, tuple(keys),
                self.option(transition, "duration", t_path, self.duration, fps), ease, interp, fps)
            return (*(timed or (None, None)), poses)
        if "every" in transition:
            self.fail(transition["every"][0], t_path, "every applies only with on: beats or on: onsets")
        if None in keys + holds + moves + eases + [loop, interp]:
            return None, None, []
        return KeyPath(tuple(keys), tuple(round(h) for h in holds), tuple(round(m) for m in moves), tuple(eases),
                       interp, loop), None, poses

    def step(self, node: Node, path: str) -> tuple[Optional[str], Items]:
        """A path item: ``NAME`` or ``NAME: {duration, hold, ease, camera}``."""
        if not isinstance(node, MappingNode):
            return self.latent_ref(node, path), {}
        items = self.mapping(node, path)
        if items is None or len(items) != 1:
            self.fail(node, path, "expected a latent name, or NAME: {duration, hold, ease, camera}")
            return None, {}
        (name, (key_node, value)), = items.items()
        return self.latent_ref(key_node, path, name), self.mapping(value, f"{path}.{name}", STEP_KEYS) or {}

    def ease(self, items: Items, path: str, interp: Optional[str], default: Optional[str]) -> Optional[str]:
        """The easing given in ``items``, else ``default``; spline paths take none (they are smooth throughout)."""
        if interp == "spline":
            if "ease" in items:
                self.fail(items["ease"][0], path, "ease does not apply to spline paths, whose speed is smooth "
                                                  "through every keyframe")
            return "linear"
        return self.option(items, "ease", path, self.choice, EASINGS, default=default)


    def deform(self, node: Node, path: str, fps: float) -> Optional[Deform]:
        """A deform whose cycle is one period (fitted to the loop later)."""
        items = self.mapping(node, path, DEFORM_KEYS)
        if items is None:
            return None
        layers = self.option(items, "layers", path, self.layers, default=self.all_layers())
        amplitude = self.option(items, "amplitude", path, self.number, f"a positive number up to {MAX_AMPLITUDE:g}",
                                lambda x: 0 < x <= MAX_AMPLITUDE, default=DEFAULTS["amplitude"])
        seed = self.option(items, "seed", path, self.number, *SEED_RULE, True, default=0)
        period = self.period(items, path, fps)
        follow = self.option(items, "follow", path, self.follow, fps)
        if None in (layers, amplitude, seed, period) or "follow" in items and follow is None:
            return None
        return Deform(layers, float(amplitude), int(seed), Cycle(1, period), follow,
                      follow is None or "period" in items)

    def breathe(self, node: Node, path: str, fps: float) -> Optional[Breathe]:
        """A breathe whose cycle is one period (fitted to the loop later)."""
        items = self.mapping(node, path, BREATHE_KEYS)
        if items is None:
            return None
        for key in ("direction", "strength"):
            if key not in items:
                self.fail(node, path, f"missing {key}")
        direction = self.option(items, "direction", path, self.direction_ref)
        strength = self.option(items, "strength", path, self.strength)
        layers = self.option(items, "layers", path, self.layers, default=self.all_layers())
        period = self.period(items, path, fps)
        follow = self.option(items, "follow", path, self.follow, fps)
        if None in (direction, strength, layers, period) or "follow" in items and follow is None:
            return None
        return Breathe(direction, *strength, layers, Cycle(1, period), follow, follow is None or "period" in items)


    def strength(self, node: Node, path: str) -> Optional[tuple[float, float]]:
        """``HIGH`` (swinging from 0) or ``[LOW, HIGH]``."""
        if isinstance(node, SequenceNode) and len(node.value) == 2:
            low, high = (self.number(n, f"{path}[{i}]", *STRENGTH_RULE) for i, n in enumerate(node.value))
            return None if low is None or high is None else (float(low), float(high))
        high = self.number(node, path, f"a strength: HIGH or [LOW, HIGH], each from -{MAX_STRENGTH:g} to "
                                       f"{MAX_STRENGTH:g}", STRENGTH_RULE[1])
        return None if high is None else (0.0, float(high))
