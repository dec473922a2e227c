"""The scene words that tie motion to a sound: ``follow:`` on a wave, ``add:`` on a render, and
``transition: {on: beats|onsets, every: N}`` on a path — read into :mod:`morph.motion.schedule` values, with the
same ``file:line:col`` problems as the rest of the scene."""

from __future__ import annotations

from typing import Optional

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from morph.core.errors import MorphError
from morph.core.limits import MAX_STRENGTH
from morph.motion.schedule import Cue, Follow, KeyPath, Push, path_on_events
from morph.scene.nodes import Items, NodeReader
from morph.scene.types import FOLLOW_DEFAULTS, FOLLOW_KEYS, PUSH_KEYS
from morph.sound.audio import EVENTS, Sound, feature_problem, require_librosa

NO_SOUND = "give audio: FILE at the top of the scene or in the render"


class MusicReader(NodeReader):
    """Reads sound-driven motion; ``self.sound`` is the current render's sound file."""

    def analysis(self, node: Node, path: str) -> Optional[Sound]:
        """The current render's :class:`morph.sound.audio.Sound`, or None after reporting why there is none."""
        if self.sound is None:
            if not self.audio_failed:
                self.fail(node, path, f"follows a sound, but the render has none; {NO_SOUND}")
            return None
        try:
            require_librosa()
            return Sound(self.sound, self.cache_dir)
        except MorphError as err:
            self.fail(node, path, str(err))
            return None

    def follow(self, node: Node, path: str, fps: float) -> Optional[Follow]:
        """``FEATURE`` or ``{feature, range: [LOW, HIGH], attack, release}`` → the gain (0…1) a wave follows."""
        scalar = isinstance(node, ScalarNode)
        items: Items = {"feature": (node, node)} if scalar else self.mapping(node, path, FOLLOW_KEYS) or {}
        if isinstance(node, MappingNode) and "feature" not in items:
            self.fail(node, path, "missing feature (loudness, onsets, bass, mid, treble, band:LOW-HIGH or chroma:NOTE)")
        f_path = path if scalar else f"{path}.feature"
        feature = self.text(items["feature"][1], f_path, "a feature name") if "feature" in items else None
        problem = feature and feature_problem(feature)
        if problem:
            self.fail(items["feature"][1], f_path, problem)
        low, high = self.option(items, "range", path, self.window, default=(0.0, 1.0)) or (None, None)
        attack, release = (self.option(items, key, path, self.duration, fps, False, default=FOLLOW_DEFAULTS[key] * fps)
                           for key in ("attack", "release"))
        sound = self.analysis(node, path)
        if None in (feature, low, attack, release, sound) or problem:
            return None
        return Follow(self.sound, feature, float(fps), low, high, attack, release)

    def window(self, node: Node, path: str) -> Optional[tuple[float, float]]:
        """``[LOW, HIGH]``: the part of a feature's 0…1 scale that spans the gain (HIGH < LOW inverts it)."""
        what = "[LOW, HIGH], two different numbers from 0 to 1 (the feature values that give gain 0 and 1)"
        ends = self.sequence(node, path) if isinstance(node, SequenceNode) else None
        values = [self.value(n) for n in ends or ()]
        if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1
                                       for v in values) or values[0] == values[1]:
            self.fail(node, path, f"expected {what}, got {self.show(node)}")
            return None
        return float(values[0]), float(values[1])

    def pushes(self, node: Node, path: str, fps: float) -> Optional[tuple[Push, ...]]:
        """``add: {DIRECTION: STRENGTH | {strength, layers, follow}}`` on a render: offsets held throughout."""
        items = self.mapping(node, path)
        if items is None:
            return None
        out = []
        for name, (key_node, value) in items.items():
            self.direction_ref(key_node, path, name)
            p = f"{path}.{name}"
            if isinstance(value, MappingNode):
                options = self.mapping(value, p, PUSH_KEYS) or {}
                strength = self.option(options, "strength", p, self.number,
                                       f"a strength from -{MAX_STRENGTH:g} to {MAX_STRENGTH:g}",
                                       lambda x: abs(x) <= MAX_STRENGTH, default=1.0)
                layers = self.option(options, "layers", p, self.layers, default=self.all_layers())
                follow = self.option(options, "follow", p, self.follow, fps)
                if "follow" in options and follow is None:
                    return None
            else:
                strength = self.number(value, p, f"a strength from -{MAX_STRENGTH:g} to {MAX_STRENGTH:g}",
                                       lambda x: abs(x) <= MAX_STRENGTH)
                layers, follow = self.all_layers(), None
            if strength is None or layers is None:
                return None
            out.append(Push(name, float(strength), layers, follow))
        return tuple(out)

    def cue_path(self, transition: Items, t_path: str, steps: list[Node], items: Items, keys: tuple[str, ...],
                 move: Optional[float], ease: str, interp: str, fps: float) -> Optional[tuple[KeyPath, Cue]]:
        """A path whose keyframes arrive on every N-th beat or onset of the sound, ending where the sound ends."""
        kind = self.option(transition, "on", t_path, self.choice, EVENTS)
        every = self.option(transition, "every", t_path, self.number, "a whole number of events from 1",
                            lambda x: x >= 1, True, default=1)
        for key in ("loop", "hold"):
            if key in items:
                self.fail(items[key][0], t_path.rsplit(".", 1)[0], f"{key} does not apply to a path on {kind or 'beats'}: "
                                                                   "its keyframes come on the sound's events and it "
                                                                   "ends where the sound ends")
        for i, step in enumerate(steps):
            inner = step.value[0][1] if isinstance(step, MappingNode) and len(step.value) == 1 else None
            for key_node, _ in (inner.value if isinstance(inner, MappingNode) else ()):
                if key_node.value in ("duration", "hold"):
                    self.fail(key_node, f"{t_path.rsplit('.', 1)[0]}.path[{i}]",
                              f"{key_node.value} does not apply to a path on {kind or 'beats'}; set "
                              "transition.duration to shorten every move")
        sound = self.analysis(transition["on"][1], f"{t_path}.on")
        if None in (kind, every, sound):
            return None
        frames = sound.frames(fps)
        try:
            events = sound.event_frames(kind, fps, frames)
        except MorphError as err:
            self.fail(transition["on"][1], f"{t_path}.on", str(err))
            return None
        marks = tuple(int(f) for f in events[::int(every)])
        return (path_on_events(keys, marks, frames, None if move is None else round(move), ease, interp),
                Cue(self.sound, kind, int(every)))
