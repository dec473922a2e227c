"""What the page can edit in a scene: one control per value (its YAML path, kind, range, current value),
read from the validated scene and, for how a value is written (1.5, 1.5s, 45f), from its YAML node."""

from __future__ import annotations

import re
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from morph.motion.latents import Blend, Mix
from morph.scene import Scene
from morph.scene.types import DEFAULTS
from morph.motion.schedule import EASINGS, INTERPS
from morph.studio.edits import find

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|f)\s*$")


def _number(path: tuple, label: str, value: float, low: float, high: float, step: float, unit: str = "") -> dict:
    return {"kind": "number", "path": list(path), "label": label, "value": value, "min": low, "max": high,
            "step": step, "unit": unit}


def _choice(path: tuple, label: str, value: str, options: list[str]) -> dict:
    return {"kind": "choice", "path": list(path), "label": label, "value": value, "options": options}


def _duration(root: Node, path: tuple, label: str, default_seconds: float, fps: float, positive: bool = True) -> dict:
    """A duration as written: seconds (``1.5`` or ``1.5s``, slider in seconds) or frames (``45f``); a hold
    (not ``positive``) may be 0."""
    node = find(root, path)
    text = node.value if isinstance(node, ScalarNode) else ""
    match = _DURATION.match(text) if node is not None and node.tag.endswith(":str") else None
    if match and match[2] == "f":
        return _number(path, f"{label} (frames)", float(match[1]), int(positive), max(8 * fps, 2 * float(match[1])),
                       1, "f")
    seconds = float(match[1]) if match else float(text) if node is not None and _is_float(text) else default_seconds
    return _number(path, f"{label} (s)", seconds, 0.05 if positive else 0, max(8.0, 2 * seconds), 0.05,
                   "s" if match or node is None else "")


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _steps(root: Node, base: tuple, fps: float, interp: str) -> list[dict]:
    """Controls for the options written on a path's own steps (``- NAME: {duration, hold, ease}``)."""
    steps = find(root, base + ("path",))
    out: list[dict] = []
    for i, step in enumerate(steps.value if isinstance(steps, SequenceNode) else ()):
        if not (isinstance(step, MappingNode) and len(step.value) == 1 and isinstance(step.value[0][1], MappingNode)):
            continue
        name = step.value[0][0].value
        keys = {k.value for k, _ in step.value[0][1].value}
        at = base + ("path", i, name)
        if "duration" in keys:
            out.append(_duration(root, at + ("duration",), f"transition into {name}", DEFAULTS["transition"], fps))
        if "hold" in keys:
            out.append(_duration(root, at + ("hold",), f"hold at {name}", DEFAULTS["hold"], fps, False))
        if "ease" in keys and interp != "spline":
            out.append(_choice(at + ("ease",), f"easing into {name}", find(root, at + ("ease",)).value, list(EASINGS)))
    return out


def controls(scene: Scene, root: Node) -> list[dict]:
    """Every slider and picker for ``scene`` (validated), whose YAML tree is ``root``, grouped by owner."""
    out: list[dict] = []
    psi = find(root, ("truncation",))
    out.append({**_number(("truncation",), "truncation ψ (seed latents)",
                          float(psi.value) if isinstance(psi, ScalarNode) and _is_float(psi.value)
                          else DEFAULTS["truncation"], 0, 1.5, 0.01), "group": "scene"})
    names = list(scene.latents)
    for name, latent in scene.latents.items():
        group = f"latent {name}"
        if isinstance(latent.source, Blend):
            out += [{**_number(("latents", name, "blend", other), f"blend weight of {other}", k, -1, 2, 0.01),
                     "group": group} for other, k in latent.source.weights]
        for direction, strength in latent.edits:
            out.append({**_number(("latents", name, "add", direction), f"{direction} strength", strength, -5, 5, 0.05),
                        "group": group})
        if isinstance(latent.source, Mix):
            out.append({"kind": "mix", "path": ["latents", name, "mix"], "label": "style mix per layer",
                        "value": list(latent.source.owners), "options": [n for n in names if n != name],
                        "group": group})
    for name, render in scene.renders.items():
        group, base, fps = f"render {name}", ("renders", name), render.fps
        path = render.motion.path
        if path.moves:
            out.append({**_duration(root, base + ("transition", "duration"), "transition", DEFAULTS["transition"],
                                    fps), "group": group})
            out.append({**_choice(base + ("transition", "interp"), "interpolation", path.interp, list(INTERPS)),
                        "group": group})
            if path.interp != "spline":
                ease = find(root, base + ("transition", "ease"))
                out.append({**_choice(base + ("transition", "ease"), "easing",
                                      ease.value if isinstance(ease, ScalarNode) else DEFAULTS["ease"],
                                      list(EASINGS)), "group": group})
            out.append({**_duration(root, base + ("hold",), "hold", DEFAULTS["hold"], fps, False), "group": group})
            out += [{**c, "group": group} for c in _steps(root, base, fps, path.interp)]
        elif find(root, base + ("duration",)) is not None:
            out.append({**_duration(root, base + ("duration",), "duration", render.seconds, fps), "group": group})
        d, b = render.motion.deform, render.motion.breathe
        if d:
            out.append({**_number(base + ("deform", "amplitude"), "deform amplitude", d.amplitude, 0.01, 3, 0.01),
                        "group": group})
            out.append({**_duration(root, base + ("deform", "period"), "deform period", DEFAULTS["period"], fps),
                        "group": group})
        if b:
            strength = base + ("breathe", "strength")
            if isinstance(find(root, strength), SequenceNode):
                out.append({**_number(strength + (0,), f"breathe {b.direction} low", b.low, -5, 5, 0.05),
                            "group": group})
                out.append({**_number(strength + (1,), f"breathe {b.direction} high", b.high, -5, 5, 0.05),
                            "group": group})
            else:
                out.append({**_number(strength, f"breathe {b.direction} strength", b.high, -5, 5, 0.05),
                            "group": group})
            out.append({**_duration(root, base + ("breathe", "period"), "breathe period", DEFAULTS["period"], fps),
                        "group": group})
    return out


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
