"""A render's sound as the page draws it under the timeline: the file the ``<audio>`` element plays, the
waveform's peak per video frame, each followed feature (its value and the gain the motion takes from it, both
per frame, as ``morph render`` computes them) and the frames of the sound's beats and onsets."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from morph.motion.schedule import Follow
from morph.scene.types import Render
from morph.sound.audio import EVENTS, RATE, Sound, envelope


def sound_file(render: Render) -> Optional[Path]:
    """The sound a render plays or follows: its sound track, else the file its follows or beats read."""
    motion = render.motion
    follows = [w.follow for w in (motion.deform, motion.breathe, *motion.pushes) if w and w.follow]
    return render.audio or (motion.cue.sound if motion.cue else None) or (follows[0].sound if follows else None)


def follows(render: Render) -> list[tuple[str, Follow]]:
    """(what follows, its follow) for each wave of the render that follows the sound."""
    m = render.motion
    named = [("deform", m.deform), ("breathe", m.breathe), *((f"add {p.direction}", p) for p in m.pushes)]
    return [(label, wave.follow) for label, wave in named if wave and wave.follow]


def peaks(pcm: np.ndarray, fps: float, frames: int) -> np.ndarray:
    """The largest |sample| within each video frame's 1/fps of the sound (0 after it ends)."""
    edges = np.minimum(np.round(np.arange(frames + 1) * RATE / fps).astype(np.int64), len(pcm))
    out = np.zeros(frames)
    full = edges[1:] > edges[:-1]
    if full.any():
        out[full] = np.maximum.reduceat(np.abs(pcm[:edges[-1]]), edges[:-1][full])
    return out


def track(render: Render, cache_dir: Optional[Path]) -> dict:
    """What the page draws for ``render``'s sound, per video frame (rounded to 3 decimals); ``{"audio": False}``
    for a render without one."""
    path = sound_file(render)
    if path is None:
        return {"audio": False}
    sound, frames, fps = Sound(path, cache_dir), render.frames, render.fps
    curves = [{"label": f"{label} ← {f.feature}", "feature": f.feature,
               "value": np.round(sound.per_frame(f.feature, fps, frames), 3).tolist(),
               "gain": np.round(envelope(f, frames, cache_dir).numpy(), 3).tolist(), "range": [f.low, f.high]}
              for label, f in follows(render)]
    events = {kind: sound.event_frames(kind, fps, frames).tolist() for kind in EVENTS}
    return {"audio": True, "file": path.name, "seconds": sound.seconds, "fps": fps, "frames": frames,
            "wave": np.round(peaks(sound.pcm, fps, frames), 3).tolist(), "curves": curves, **events}
