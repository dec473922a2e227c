"""What the page can edit in a scene: one control per value (its YAML path, kind, bounds, current value),
read from the validated scene and, for how a value is written (1.5, 1.5s, 45f), from its YAML node.

Bounds (``min``/``max``: what ``morph check`` accepts) come from :mod:`morph.core.limits`, so the page and the
validator agree; ``span`` is only where a slider starts (a comfortable window inside the bounds, widened to the
value). A control is listed only where the value applies to the render as written: a breathe that follows a
sound and has no period gets follow controls and no period slider (adding ``period:`` would change what it
means), and a path timed by beats gets no hold or per-step duration sliders (the reader refuses those)."""

from __future__ import annotations

import math
import re
from typing import Optional

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from morph.core.limits import MAX_AMPLITUDE, MAX_ROTATE, MAX_SECONDS, MAX_STRENGTH, MAX_TRANSLATE
from morph.core.model import NOISE_MODES
from morph.motion.latents import Blend, Mix
from morph.motion.schedule import EASINGS, INTERPS, Follow
from morph.scene import Scene
from morph.scene.types import DEFAULTS, FOLLOW_DEFAULTS
from morph.sound.audio import BANDS, NOTES
from morph.studio.edits import find

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|f)\s*$")
STRENGTHS = (-MAX_STRENGTH, MAX_STRENGTH)
FEATURE_CHOICES = ["loudness", "onsets", *BANDS, *(f"chroma:{n}" for n in NOTES)]

# Where sliders start (not bounds: the number box takes anything the validator does, and a slider widens to
# the value it shows).
SPAN_STRENGTH = (-5.0, 5.0)
SPAN_WEIGHT = (-1.0, 2.0)
SPAN_AMPLITUDE = (0.01, 3.0)
SPAN_PSI = (0.0, 1.5)
SPAN_SECONDS = 8.0
SPAN_TRANSLATE = (-0.5, 0.5)
SPAN_ROTATE = (-180.0, 180.0)
SPAN_EVERY = (1, 16)


def _number(path: tuple, label: str, value: float, bounds: tuple[Optional[float], Optional[float]],
            span: tuple[float, float], step: float, unit: str = "") -> dict:
    """A number control: ``bounds`` (None: unbounded) as the validator has them, the slider over ``span``."""
    low, high = bounds
    s_low = span[0] if low is None else max(low, span[0])
    s_high = span[1] if high is None else min(high, span[1])
    return {"kind": "number", "path": list(path), "label": label, "value": value, "min": low, "max": high,
            "span": [min(s_low, value), max(s_high, value)], "step": step, "unit": unit}


def _choice(path: tuple, label: str, value: str, options: list[str]) -> dict:
    return {"kind": "choice", "path": list(path), "label": label, "value": value,
            "options": options if value in options else [value, *options]}


def _duration(root: Node, path: tuple, label: str, default_seconds: float, fps: float, positive: bool = True) -> dict:
    """A duration as written: seconds (``1.5`` or ``1.5s``, slider in seconds) or frames (``45f``); a hold
    (not ``positive``) may be 0. Bounds: one frame (or 0) to MAX_SECONDS."""
    node = find(root, path)
    text = node.value if isinstance(node, ScalarNode) else ""
    match = _DURATION.match(text) if node is not None and node.tag.endswith(":str") else None
    if match and match[2] == "f":
        frames = float(match[1])
        return _number(path, f"{label} (frames)", frames, (int(positive), MAX_SECONDS * fps),
                       (int(positive), max(SPAN_SECONDS * fps, 2 * frames)), 1, "f")
    seconds = float(match[1]) if match else float(text) if node is not None and _is_float(text) else default_seconds
    return _number(path, f"{label} (s)", seconds, (1 / fps if positive else 0, MAX_SECONDS),
                   (0.05 if positive else 0, max(SPAN_SECONDS, 2 * seconds)), 0.05, "s" if match or node is None else "")


def _is_float(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _steps(root: Node, base: tuple, fps: float, interp: str, timed: bool) -> list[dict]:
    """Controls for the options written on a path's own steps (``- NAME: {duration, hold, ease}``); a path timed
    by the sound (``timed``) has no step durations or holds."""
    steps = find(root, base + ("path",))
    out: list[dict] = []
    for i, step in enumerate(steps.value if isinstance(steps, SequenceNode) else ()):
        if not (isinstance(step, MappingNode) and len(step.value) == 1 and isinstance(step.value[0][1], MappingNode)):
            continue
        name = step.value[0][0].value
        keys = {k.value for k, _ in step.value[0][1].value}
        at = base + ("path", i, name)
        if "duration" in keys and not timed:
            out.append(_duration(root, at + ("duration",), f"transition into {name}", DEFAULTS["transition"], fps))
        if "hold" in keys and not timed:
            out.append(_duration(root, at + ("hold",), f"hold at {name}", DEFAULTS["hold"], fps, False))
        if "ease" in keys and interp != "spline":
            out.append(_choice(at + ("ease",), f"easing into {name}", find(root, at + ("ease",)).value, list(EASINGS)))
    return out


def _follow(root: Node, at: tuple, what: str, follow: Follow, fps: float) -> list[dict]:
    """feature, range (low, high), attack and release of the ``follow:`` at ``at``. A short ``follow: FEATURE``
    gets the same controls: the edits listed in a control's ``before`` (writing it out as ``{feature: FEATURE}``,
    writing the range's two ends) are made first, in the same undo step."""
    short = isinstance(find(root, at), ScalarNode)
    before = [{"path": list(at), "value": f"{{feature: {follow.feature}}}"}] if short else []
    out = [_choice(at if short else at + ("feature",), f"{what} follows", follow.feature, FEATURE_CHOICES)]
    ends = [_number(at + ("range", 0), f"{what} gain 0 at", follow.low, (0, 1), (0, 1), 0.01),
            _number(at + ("range", 1), f"{what} gain 1 at", follow.high, (0, 1), (0, 1), 0.01)]
    window = [] if isinstance(find(root, at + ("range",)), SequenceNode) else [
        {"path": list(at + ("range",)), "value": f"[{follow.low:g}, {follow.high:g}]"}]
    times = [_duration(root, at + (key,), f"{what} {key}", FOLLOW_DEFAULTS[key], fps, False)
             for key in ("attack", "release")]
    for c in ends:
        c["before"] = before + window
    for c in times:
        c["before"] = before
    return out + ends + times


def _camera(root: Node, base: tuple, scene: Scene) -> list[dict]:
    """A render's camera pose (translate x, y; rotate) for models whose input can move (StyleGAN3)."""
    if scene.dims.family not in ("stylegan3",):
        return []
    at = base + ("camera",)
    t = find(root, at + ("translate",))
    xy = [float(n.value) for n in t.value] if isinstance(t, SequenceNode) else [0.0, 0.0]
    r = find(root, at + ("rotate",))
    rotate = float(r.value) if isinstance(r, ScalarNode) and _is_float(r.value) else 0.0
    return [{"kind": "camera", "path": list(at), "label": "camera (drag: translate; shift-drag: rotate)",
             "value": {"translate": xy, "rotate": rotate}, "min": -MAX_TRANSLATE, "max": MAX_TRANSLATE,
             "rotate_max": MAX_ROTATE, "span": list(SPAN_TRANSLATE), "rotate_span": list(SPAN_ROTATE)}]


def controls(scene: Scene, root: Node) -> list[dict]:
    """Every slider and picker for ``scene`` (validated), whose YAML tree is ``root``, grouped by owner."""
    psi = find(root, ("truncation",))
    cutoff = find(root, ("truncation_cutoff",))
    num_ws = scene.dims.num_ws
    out: list[dict] = [
        {**_number(("truncation",), "truncation ψ (seed latents)",
                   float(psi.value) if isinstance(psi, ScalarNode) and _is_float(psi.value) else DEFAULTS["truncation"],
                   (None, None), SPAN_PSI, 0.01), "group": "scene"},
        {**_number(("truncation_cutoff",), "ψ cutoff (layers truncated)",
                   int(cutoff.value) if isinstance(cutoff, ScalarNode) and cutoff.value.isdigit() else num_ws,
                   (1, num_ws), (1, num_ws), 1), "group": "scene"},
        {**_choice(("noise",), "noise", scene.noise, list(NOISE_MODES)), "group": "scene"}]
    names = list(scene.latents)
    for name, latent in scene.latents.items():
        group = f"latent {name}"
        if isinstance(latent.source, Blend):
            out += [{**_number(("latents", name, "blend", other), f"blend weight of {other}", k, STRENGTHS,
                               SPAN_WEIGHT, 0.01), "group": group} for other, k in latent.source.weights]
        for direction, strength in latent.edits:
            out.append({**_number(("latents", name, "add", direction), f"{direction} strength", strength, STRENGTHS,
                                  SPAN_STRENGTH, 0.05), "group": group})
        if isinstance(latent.source, Mix):
            out.append({"kind": "mix", "path": ["latents", name, "mix"], "label": "style mix per layer",
                        "value": list(latent.source.owners), "options": [n for n in names if n != name],
                        "group": group})
    for name, render in scene.renders.items():
        out += [{**c, "group": f"render {name}"} for c in _render(scene, root, name)]
    for c in out:
        c["latent"] = c["path"][1] if c["path"][0] == "latents" else None  # the page shows it when touched
    return out


def _render(scene: Scene, root: Node, name: str) -> list[dict]:
    """The controls of render ``name``: its path's timing, deform, breathe, render-level ``add:``, camera."""
    render = scene.renders[name]
    base, fps, motion = ("renders", name), render.fps, render.motion
    path, cue, out = motion.path, motion.cue, []
    if path.moves:
        if cue:
            out.append(_duration(root, base + ("transition", "duration"), f"move before each {cue.kind[:-1]}",
                                 DEFAULTS["transition"], fps))
            out.append(_number(base + ("transition", "every"), f"a keyframe every N {cue.kind}", cue.every,
                               (1, None), SPAN_EVERY, 1))
        else:
            out.append(_duration(root, base + ("transition", "duration"), "transition", DEFAULTS["transition"], fps))
        out.append(_choice(base + ("transition", "interp"), "interpolation", path.interp, list(INTERPS)))
        if path.interp != "spline":
            ease = find(root, base + ("transition", "ease"))
            out.append(_choice(base + ("transition", "ease"), "easing",
                               ease.value if isinstance(ease, ScalarNode) else DEFAULTS["ease"], list(EASINGS)))
        if not cue:
            out.append(_duration(root, base + ("hold",), "hold", DEFAULTS["hold"], fps, False))
        out += _steps(root, base, fps, path.interp, bool(cue))
    elif find(root, base + ("duration",)) is not None:
        out.append(_duration(root, base + ("duration",), "duration", render.seconds, fps))
    d, b = motion.deform, motion.breathe
    if d:
        out.append(_number(base + ("deform", "amplitude"), "deform amplitude", d.amplitude, (0, MAX_AMPLITUDE),
                           SPAN_AMPLITUDE, 0.01))
        if d.sine:
            out.append(_duration(root, base + ("deform", "period"), "deform period", DEFAULTS["period"], fps))
        if d.follow:
            out += _follow(root, base + ("deform", "follow"), "deform", d.follow, fps)
    if b:
        strength = base + ("breathe", "strength")
        if isinstance(find(root, strength), SequenceNode):
            out.append(_number(strength + (0,), f"breathe {b.direction} low", b.low, STRENGTHS, SPAN_STRENGTH, 0.05))
            out.append(_number(strength + (1,), f"breathe {b.direction} high", b.high, STRENGTHS, SPAN_STRENGTH, 0.05))
        else:
            out.append(_number(strength, f"breathe {b.direction} strength", b.high, STRENGTHS, SPAN_STRENGTH, 0.05))
        if b.sine:
            out.append(_duration(root, base + ("breathe", "period"), "breathe period", DEFAULTS["period"], fps))
        if b.follow:
            out += _follow(root, base + ("breathe", "follow"), "breathe", b.follow, fps)
    for push in motion.pushes:
        at = base + ("add", push.direction)
        long = isinstance(find(root, at), MappingNode)
        out.append(_number(at + ("strength",) if long else at, f"add {push.direction}", push.strength, STRENGTHS,
                           SPAN_STRENGTH, 0.05))
        if push.follow:
            out += _follow(root, at + ("follow",), f"add {push.direction}", push.follow, fps)
    return out + _camera(root, base, scene)


def mix_text(owners: list[str], groups: dict[str, range]) -> str:
    """A ``mix:`` mapping for per-layer owners: a group's name where one latent owns all of it, else its runs
    as layer ranges (``5``, ``6-7``)."""
    items = []
    for group, layers in groups.items():
        run = [owners[i] for i in layers]
        if run and len(set(run)) == 1:
            items.append(f"{group}: {run[0]}")
            continue
        start = layers.start
        for i in range(layers.start + 1, layers.stop + 1):
            if i == layers.stop or owners[i] != owners[start]:
                items.append(f"{start if i - start == 1 else f'{start}-{i - 1}'}: {owners[start]}")
                start = i
    return "{" + ", ".join(items) + "}"
