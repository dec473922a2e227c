"""The W-path scheduler: keyframes, transitions, holds, loops and periodic waves → W frames
``[n, num_ws, w_dim]``, computed chunk by chunk so no video ever holds all its frames.

Pure: the same motion and latents give the same frames, bit for bit. Time is measured in frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional

import numpy as np
import torch

INTERPS = ("lerp", "slerp", "spline")


def _linear(u: torch.Tensor) -> torch.Tensor:
    return u


def _in(u: torch.Tensor) -> torch.Tensor:
    return u * u * u


def _out(u: torch.Tensor) -> torch.Tensor:
    return 1 - (1 - u) * (1 - u) * (1 - u)


def _in_out(u: torch.Tensor) -> torch.Tensor:
    return torch.where(u < 0.5, 4 * _in(u), 1 - 4 * _in(1 - u))


# Cubic easings, written so that float rounding keeps them monotone and exact at 0 and 1.
EASINGS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"linear": _linear, "in": _in, "out": _out,
                                                              "in-out": _in_out}


def ease(u: torch.Tensor, name: str) -> torch.Tensor:
    """Easing ``name`` applied to progress ``u`` in [0, 1]."""
    return EASINGS[name](u)


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Linear interpolation, exactly ``a`` at t = 0 and ``b`` at t = 1."""
    return torch.lerp(a, b, t.to(a.dtype))


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of each row (last dim); exact at t = 0 and 1, lerp where the rows are (anti)parallel."""
    t = t.to(a.dtype)
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    theta = torch.acos(((a * b).sum(-1, keepdim=True) / (na * nb)).clamp(-1, 1))
    sin = torch.sin(theta)
    arc = torch.sin((1 - t) * theta) / sin * a + torch.sin(t * theta) / sin * b  # coefficients exactly 1, 0 at ends
    return torch.where(sin > 1e-6, arc, lerp(a, b, t))


@dataclass(frozen=True)
class KeyPath:
    """Keyframes (latent names) with ``holds[i]`` frames at key i and ``moves[i]`` frames from key i to the next.

    ``moves`` has one entry per transition: len(keys) − 1, or len(keys) when ``loop`` closes the path
    back to the first key (none for a single-key still); ``eases`` one per move.
    """

    keys: tuple[str, ...]
    holds: tuple[int, ...]
    moves: tuple[int, ...]
    eases: tuple[str, ...]
    interp: str = "lerp"
    loop: bool = False

    @property
    def frames(self) -> int:
        """Frame count: a loop stops one frame before its start again (the seam is cut); an open path ends on
        its last key."""
        return sum(self.holds) + sum(self.moves) + (0 if self.loop else 1)


@dataclass(frozen=True)
class Cycle:
    """``cycles`` full periods every ``frames`` frames."""

    cycles: int
    frames: float

    def angle(self, t: torch.Tensor) -> torch.Tensor:
        """Phase 2π·frac(t·cycles/frames): identical at t = 0 and t = frames, so loops close exactly."""
        x = t * self.cycles / self.frames
        return 2 * math.pi * (x - torch.floor(x))


def cycle(period: float, span: int, loop: bool) -> Cycle:
    """Timing of a wave of ``period`` frames: in a loop of ``span`` frames, the nearest whole number of periods."""
    return Cycle(max(1, round(span / period)), span) if loop else Cycle(1, period)


@dataclass(frozen=True)
class Follow:
    """A wave's gain read from a sound: ``feature`` per frame (0…1), smoothed; its window ``low``…``high`` spans
    the gain 0…1 (clipped outside; high < low inverts)."""

    sound: Path
    feature: str
    fps: float
    low: float = 0.0
    high: float = 1.0
    attack: float = 0.0    # frames
    release: float = 0.0   # frames


@dataclass(frozen=True)
class Deform:
    """Seeded random offsets on ``layers``, each swinging as amplitude·sin(angle + φ_layer); with ``follow``
    the swing is scaled by the sound's gain, or (``sine`` false) the offset is amplitude·gain."""

    layers: range
    amplitude: float
    seed: int
    cycle: Cycle
    follow: Optional[Follow] = None
    sine: bool = True


@dataclass(frozen=True)
class Breathe:
    """A direction's strength swinging from ``low`` (at t = 0) to ``high`` and back, on ``layers``."""

    direction: str
    low: float
    high: float
    layers: range
    cycle: Cycle
    follow: Optional[Follow] = None   # the swing scaled by the sound's gain, or (sine false) low + (high − low)·gain
    sine: bool = True


@dataclass(frozen=True)
class Push:
    """A direction added at ``strength`` on ``layers`` throughout a render, times the sound's gain if it follows."""

    direction: str
    strength: float
    layers: range
    follow: Optional[Follow] = None


@dataclass(frozen=True)
class Cue:
    """Keyframes reached on every ``every``-th of a sound's ``kind`` events (beats or onsets)."""

    sound: Path
    kind: str
    every: int


Pose = tuple[float, float, float]  # a camera pose: translate x, y (in image widths), rotate (degrees)


@dataclass(frozen=True)
class Orbit:
    """The camera's centre circling its pose at ``radius`` image widths, counter-clockwise from +x."""

    radius: float
    cycle: Cycle


@dataclass(frozen=True)
class Swing:
    """The camera's rotation swinging ±``degrees`` about its pose, starting at 0 and turning positive first."""

    degrees: float
    cycle: Cycle


@dataclass(frozen=True)
class Camera:
    """Where a model with a movable input (StyleGAN3) looks: a pose per keyframe, interpolated with the path's
    easing, plus optional periodic moves."""

    poses: tuple[Pose, ...]        # one per key of the path
    orbit: Optional[Orbit] = None
    swing: Optional[Swing] = None


@dataclass(frozen=True)
class Motion:
    """What a render shows: a keyframe path, optionally deformed, breathing and pushed along directions, seen
    through a camera."""

    path: KeyPath
    deform: Optional[Deform] = None
    breathe: Optional[Breathe] = None
    pushes: tuple[Push, ...] = ()
    cue: Optional[Cue] = None         # the path's timing came from the sound
    camera: Optional[Camera] = None

    @property
    def frames(self) -> int:
        """Number of frames rendered."""
        return self.path.frames


@dataclass(frozen=True)
class Wave:
    """An offset (bias + scale·sin(angle + phases[l]))·vectors[l] added to every layer l."""

    vectors: torch.Tensor  # [num_ws, w_dim]
    phases: torch.Tensor   # [num_ws], float64
    bias: float
    scale: float
    cycle: Cycle
    envelope: Optional[torch.Tensor] = None  # [frames] float64 gain from a sound (Follow), else 1
    sine: bool = True                        # False: bias + scale·gain, no swing
    label: str = ""                          # what the wave is, for plots


@dataclass(frozen=True)
class Timeline:
    """A motion made concrete: keyframe tensors and piecewise segments, ready to sample at any frame."""

    keys: torch.Tensor                 # [m, num_ws, w_dim]
    bounds: torch.Tensor               # [S + 1] float64: segment s spans bounds[s] .. bounds[s + 1]
    src: torch.Tensor                  # [S] key index at each segment's start (== dst for a hold)
    dst: torch.Tensor                  # [S] key index at its end
    ease: torch.Tensor                 # [S] index into EASINGS
    interp: str
    tangents: Optional[torch.Tensor]   # [m, num_ws, w_dim] per-frame velocities at the keys (spline only)
    waves: tuple[Wave, ...]
    frames: int
    keyframes: tuple[int, ...]         # frame at which each key is first reached
    camera: Optional[Camera] = None


def _tangents(keys: torch.Tensor, path: KeyPath) -> torch.Tensor:
    """Catmull-Rom velocities (p[i+1] − p[i−1]) / (time between them); zero at held keys and open ends."""
    m = len(path.keys)
    out = torch.zeros_like(keys)
    for i in range(m):
        if path.holds[i] or not path.moves or (not path.loop and i in (0, m - 1)):
            continue
        span = path.moves[i - 1] + path.moves[i]  # moves[-1] is the closing move when looping
        out[i] = (keys[(i + 1) % m] - keys[i - 1]) / span
    return out


def _segments(path: KeyPath) -> list[tuple[int, int, str, int]]:
    """(src, dst, ease, frames) of every hold and move in time order; zero-length holds left out."""
    segs = []
    for i, hold in enumerate(path.holds):
        if hold:
            segs.append((i, i, "linear", hold))
        if i < len(path.moves):
            segs.append((i, (i + 1) % len(path.keys), path.eases[i], path.moves[i]))
    return segs or [(0, 0, "linear", 1)]  # a single frame: still sampleable


def timeline(motion: Motion, latents: Mapping[str, torch.Tensor], directions: Mapping[str, torch.Tensor],
             offsets: Callable[[int, int], torch.Tensor],
             envelope: Optional[Callable[[Follow, int], torch.Tensor]] = None) -> Timeline:
    """Make a motion concrete. ``offsets(seed, count)`` gives ``[count, w_dim]`` random offsets for a deform
    (``latents.random_offsets`` with the model bound); ``envelope(follow, frames)`` the per-frame gain of a wave
    that follows a sound (``audio.envelope`` with the cache bound)."""
    path = motion.path
    if (min(path.moves, default=1) < 1 or min(path.holds) < 0 or path.interp not in INTERPS
            or path.interp == "spline" and set(path.eases) - {"linear"}):
        raise ValueError(f"invalid path {path}")
    keys = torch.stack([latents[k] for k in path.keys])
    segs = _segments(path)
    names = list(EASINGS)
    bounds = torch.tensor([0] + [f for *_, f in segs], dtype=torch.float64).cumsum(0)
    arrivals = [0] + [int(bounds[s + 1]) for s, (a, b, *_) in enumerate(segs) if a != b][:len(path.keys) - 1]
    waves = []
    if motion.deform:
        d = motion.deform
        vectors = torch.zeros_like(keys[0])
        vectors[d.layers.start:d.layers.stop] = d.amplitude * offsets(d.seed, len(d.layers)).to(keys.dtype)
        phases = torch.zeros(keys.shape[1], dtype=torch.float64)
        phases[d.layers.start:d.layers.stop] = torch.from_numpy(
            np.random.default_rng(d.seed).uniform(0, 2 * math.pi, len(d.layers)))
        waves.append(_following(Wave(vectors, phases, 0.0, 1.0, d.cycle, label="deform"), d.follow, d.sine,
                                motion.frames, envelope))
    if motion.breathe:
        b = motion.breathe
        vectors = torch.zeros_like(keys[0])
        vectors[b.layers.start:b.layers.stop] = directions[b.direction][b.layers.start:b.layers.stop].to(keys.dtype)
        phases = torch.full((keys.shape[1],), -math.pi / 2, dtype=torch.float64)  # sin(−π/2) = −1: start at low
        wave = Wave(vectors, phases, (b.low + b.high) / 2, (b.high - b.low) / 2, b.cycle, label=f"breathe {b.direction}")
        if not b.sine:
            wave = replace(wave, bias=b.low, scale=b.high - b.low)
        waves.append(_following(wave, b.follow, b.sine, motion.frames, envelope))
    for p in motion.pushes:
        vectors = torch.zeros_like(keys[0])
        vectors[p.layers.start:p.layers.stop] = directions[p.direction][p.layers.start:p.layers.stop].to(keys.dtype)
        phases = torch.zeros(keys.shape[1], dtype=torch.float64)
        waves.append(_following(Wave(vectors, phases, 0.0, p.strength, Cycle(1, 1), label=f"add {p.direction}"),
                                p.follow, False, motion.frames, envelope))
    return Timeline(keys=keys, bounds=bounds, src=torch.tensor([s[0] for s in segs]),
                    dst=torch.tensor([s[1] for s in segs]), ease=torch.tensor([names.index(s[2]) for s in segs]),
                    interp=path.interp, tangents=_tangents(keys, path) if path.interp == "spline" else None,
                    waves=tuple(waves), frames=motion.frames, keyframes=tuple(arrivals), camera=motion.camera)


def _progress(tl: Timeline, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(segment index, eased progress in it, its length) at frame times ``t`` (float64)."""
    s = (torch.searchsorted(tl.bounds, t, right=True) - 1).clamp(0, len(tl.src) - 1)
    start, length = tl.bounds[s], tl.bounds[s + 1] - tl.bounds[s]
    u = ((t - start) / length).clamp(0, 1)
    return s, torch.stack([fn(u) for fn in EASINGS.values()]).gather(0, tl.ease[s][None])[0], length


def _following(wave: Wave, follow: Optional[Follow], sine: bool, frames: int,
               envelope: Optional[Callable[[Follow, int], torch.Tensor]]) -> Wave:
    """``wave`` with its gain from ``follow`` (if any) and its swing on or off."""
    if follow is None:
        return wave if sine else replace(wave, sine=False)
    if envelope is None:
        raise ValueError(f"the {wave.label} follows {follow.sound}, but no envelope function was given")
    gain = envelope(follow, frames).to(torch.float64)
    if gain.shape != (frames,):
        raise ValueError(f"an envelope of {tuple(gain.shape)} for {frames} frames")
    return replace(wave, envelope=gain, sine=sine, label=f"{wave.label} following {follow.feature}")


def path_on_events(keys: tuple[str, ...], events: tuple[int, ...], frames: int, move: Optional[int],
                   ease: str, interp: str) -> KeyPath:
    """An open path of ``frames`` frames that reaches one keyframe at each event frame, cycling through ``keys``
    (key 0 at frame 0): each move lasts ``move`` frames (None: from the previous arrival) and ends on its event."""
    marks = [f for f in sorted(set(events)) if 0 < f < frames]
    arrivals = [0] + marks
    holds, moves = [], []
    for a, b in zip(arrivals, arrivals[1:]):
        length = b - a if move is None else max(1, min(move, b - a))
        holds.append(b - a - length)
        moves.append(length)
    holds.append(frames - 1 - arrivals[-1])
    names = tuple(keys[i % len(keys)] for i in range(len(arrivals)))
    return KeyPath(names, tuple(holds), tuple(moves), (ease,) * len(moves), interp, False)


def sample(tl: Timeline, t: torch.Tensor) -> torch.Tensor:
    """W at (possibly fractional) frame times ``t`` → ``[len(t), num_ws, w_dim]``; loops may be sampled at
    t = frames, the frame after the seam, which equals frame 0."""
    t = t.to(torch.float64)
    s, u, length = _progress(tl, t)
    u = u[:, None, None]
    a, b = tl.keys[tl.src[s]], tl.keys[tl.dst[s]]
    if tl.interp == "spline":
        uu = u.to(a.dtype)
        h = length[:, None, None].to(a.dtype)
        h00, h10 = 2 * uu ** 3 - 3 * uu ** 2 + 1, uu ** 3 - 2 * uu ** 2 + uu
        h01, h11 = -2 * uu ** 3 + 3 * uu ** 2, uu ** 3 - uu ** 2
        w = h00 * a + h10 * h * tl.tangents[tl.src[s]] + h01 * b + h11 * h * tl.tangents[tl.dst[s]]
    else:
        w = (slerp if tl.interp == "slerp" else lerp)(a, b, u)
    w = torch.where((tl.src[s] == tl.dst[s])[:, None, None], a, w)
    for wave in tl.waves:
        if wave.envelope is None and wave.sine:
            strength = wave.bias + wave.scale * torch.sin(wave.cycle.angle(t)[:, None] + wave.phases)
        else:
            swing = torch.sin(wave.cycle.angle(t)[:, None] + wave.phases) if wave.sine else torch.ones(len(t), 1)
            gain = torch.ones(len(t)) if wave.envelope is None else \
                wave.envelope[t.round().long().clamp(0, len(wave.envelope) - 1)]
            strength = wave.bias + wave.scale * gain[:, None].to(torch.float64) * swing.to(torch.float64)
        w = w + strength.to(w.dtype)[..., None] * wave.vectors
    return w


def camera_poses(tl: Timeline, t: torch.Tensor) -> Optional[torch.Tensor]:
    """The camera's poses at frame times ``t`` → float64 ``[len(t), 3]`` (translate x, y, rotate degrees), eased
    between keyframes as W is; None when the timeline has no camera. Periodic moves close loops exactly."""
    if tl.camera is None:
        return None
    t = t.to(torch.float64)
    s, u, _ = _progress(tl, t)
    poses = torch.tensor(tl.camera.poses, dtype=torch.float64)
    a, b = poses[tl.src[s]], poses[tl.dst[s]]
    out = torch.lerp(a, b, u[:, None])
    if tl.camera.orbit:
        angle = tl.camera.orbit.cycle.angle(t)
        out[:, 0] += tl.camera.orbit.radius * torch.cos(angle)
        out[:, 1] += tl.camera.orbit.radius * torch.sin(angle)
    if tl.camera.swing:
        out[:, 2] += tl.camera.swing.degrees * torch.sin(tl.camera.swing.cycle.angle(t))
    return out


def chunks(tl: Timeline, size: int) -> Iterator[torch.Tensor]:
    """All frames in order, ``size`` at a time: ``[≤ size, num_ws, w_dim]`` each."""
    for start in range(0, tl.frames, size):
        yield sample(tl, torch.arange(start, min(start + size, tl.frames), dtype=torch.float64))
