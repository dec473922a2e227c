"""The plan ``morph check`` prints: the model, where each latent comes from, each render's frames and motion."""

from __future__ import annotations

from typing import Callable, Optional

from morph.motion.latents import Blend, File, Latent, Mean, Mix, Project, Seed
from morph.motion.schedule import Follow
from morph.render.encode import Encoding
from morph.scene.types import Render, Scene, range_text, runs


def _origin(latent: Latent, projection: Callable[[Project], str]) -> str:
    """Where a latent comes from, in words."""
    src = latent.source
    if isinstance(src, Seed):
        text = f"seed {src.seed} (truncation {src.psi:g}" + (f" on layers 0-{src.cutoff - 1}" if src.cutoff else "") \
            + (f", class {src.label})" if src.label is not None else ")")
    elif isinstance(src, File):
        text = f"file {src.path}"
    elif isinstance(src, Project):
        text = f"projection of {src.image}" + (f" into {src.space.upper()}" if src.space else "") \
            + f" ({projection(src)})"
    elif isinstance(src, Mean):
        text = f"derived: mean of {', '.join(src.names)}"
    elif isinstance(src, Blend):
        text = "derived: blend " + " + ".join(f"{k:g}·{n}" for n, k in src.weights)
    elif isinstance(src, Mix):
        text = "derived: mix " + ", ".join(f"layers {range_text(r)} from {src.owners[r.start]}"
                                           for r in runs(src.owners))
    else:
        text = f"derived: {src.name}"
    if latent.edits:
        text += " + " + " + ".join(f"{k:g}·{d}" for d, k in latent.edits)
        text += f" on layers {range_text(latent.layers)}" if latent.layers is not None else ""
    return text


def _motion_text(render: Render) -> str:
    """A render's motion, in words."""
    p, fps = render.motion.path, render.fps
    if p.moves:
        keys = p.keys[:len(set(p.keys))] + ("…",) if render.motion.cue else p.keys  # a cue cycles through its keys
        text = "path " + " → ".join(keys + ((p.keys[0],) if p.loop else ()))
        text += f", {p.interp}" + ("" if p.interp == "spline" else f" {'/'.join(sorted(set(p.eases)))}")
        text += f", transitions {'/'.join(f'{m / fps:.2f}' for m in sorted(set(p.moves)))} s"
        text += f", holds {'/'.join(f'{h / fps:.2f}' for h in sorted(set(p.holds)))} s" if any(p.holds) else ""
        text += ", loop" if p.loop else ""
    else:
        text = f"around {p.keys[0]}"
    d, b = render.motion.deform, render.motion.breathe
    if d:
        text += (f"; deform layers {range_text(d.layers)} amplitude {d.amplitude:g} seed {d.seed}"
                 + (f", period {d.cycle.frames / d.cycle.cycles / fps:.2f} s" if d.sine else ""))
    if b:
        text += (f"; breathe {b.direction} {b.low:g}…{b.high:g} on layers {range_text(b.layers)}"
                 + (f", period {b.cycle.frames / b.cycle.cycles / fps:.2f} s" if b.sine else ""))
    return text + _music_text(render) + _camera_text(render)


def _camera_text(render: Render) -> str:
    """A render's camera, in words (empty without one)."""
    c, fps = render.motion.camera, render.fps
    if c is None:
        return ""
    poses = c.poses[:1] if len(set(c.poses)) == 1 else c.poses
    text = "; camera " + " → ".join(f"({x:g}, {y:g}) {r:g}°" for x, y, r in poses)
    if c.orbit:
        text += f", orbit radius {c.orbit.radius:g} period {c.orbit.cycle.frames / c.orbit.cycle.cycles / fps:.2f} s"
    if c.swing:
        text += f", swing ±{c.swing.degrees:g}° period {c.swing.cycle.frames / c.swing.cycle.cycles / fps:.2f} s"
    return text


def _follow_text(follow: Optional[Follow], sine: bool = False) -> str:
    """`` following FEATURE of SOUND (…)``: what a wave follows, in words."""
    if follow is None:
        return ""
    return (f" {'scaled by' if sine else 'following'} {follow.feature} of {follow.sound.name} "
            f"(window {follow.low:g}…{follow.high:g}, attack {follow.attack / follow.fps:.2f} s, "
            f"release {follow.release / follow.fps:.2f} s)")


def _music_text(render: Render) -> str:
    """What follows what in a render: waves following the sound, pushes, keyframes on its beats or onsets."""
    m, text = render.motion, ""
    for name, wave in (("deform", m.deform), ("breathe", m.breathe)):
        if wave and wave.follow:
            text += f"; {name}{_follow_text(wave.follow, wave.sine)}" + ("" if wave.sine else " instead of its sine")
    for p in m.pushes:
        text += f"; add {p.strength:g}·{p.direction} on layers {range_text(p.layers)}{_follow_text(p.follow)}"
    if m.cue:
        nth = {1: "every", 2: "every 2nd", 3: "every 3rd"}.get(m.cue.every, f"every {m.cue.every}th")
        text += (f"; keyframes on {nth} {m.cue.kind[:-1]} of {m.cue.sound.name} ({len(m.path.moves)} moves, "
                 f"to the end of the sound)")
    return text


def plan_lines(scene: Scene, projection: Callable[[Project], str] = lambda photo: "needs projection") -> list[str]:
    """The plan ``morph check`` prints: model, each latent's origin, each render's frames, duration, fps, size;
    ``projection(photo)`` says whether a photo's projection is cached (the engine knows)."""
    d = scene.dims
    lines = [f"scene {scene.file}: model {scene.model}" + (f" ({scene.model_path})" if scene.model_path and
                                                            str(scene.model_path) != scene.model else "")
             + f", {d.resolution} px, {d.num_ws} layers of w[{d.w_dim}], noise {scene.noise}", "latents:"]
    width = max(map(len, scene.latents), default=0)
    lines += [f"  {name:<{width}}  {_origin(latent, projection)}" for name, latent in scene.latents.items()]
    if scene.directions:
        lines.append("directions:")
        lines += [f"  {name}  {path}" for name, path in scene.directions.items()]
    lines.append("renders:")
    width = max(map(len, scene.renders), default=0)
    for name, r in scene.renders.items():
        codec = f" ({r.encoding.describe(r.format)})" if r.encoding != Encoding() else ""
        lines.append(f"  {name:<{width}}  {r.format}{codec} {r.frame} {r.fps:g} fps, {r.frames} frames, "
                     f"{r.seconds:.2f} s: {_motion_text(r)}" + (f"; audio {r.audio}" if r.audio else ""))
    return lines
