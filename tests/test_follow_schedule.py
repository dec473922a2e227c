"""The schedule's side of following a sound, with no sound at all: per-frame gains on waves, and paths timed
by event frames (pure functions; the audio analysis is tested in test_audio.py)."""

from __future__ import annotations

import math
from pathlib import Path as FilePath

import pytest
import torch

from morph.motion.schedule import (
    Breathe,
    Cycle,
    Deform,
    Follow,
    KeyPath,
    Motion,
    Push,
    path_on_events,
    sample,
    timeline,
)

KEYS = {"a": torch.zeros(3, 4), "b": torch.ones(3, 4)}
DIRECTION = {"d": torch.eye(3, 4)}
FOLLOW = Follow(FilePath("x.wav"), "loudness", 10.0)
GAIN = torch.linspace(0, 1, 11, dtype=torch.float64) ** 2


def gains(follow: Follow, frames: int) -> torch.Tensor:
    assert follow is FOLLOW
    return GAIN[:frames]


def offsets(seed: int, count: int) -> torch.Tensor:
    return torch.ones(count, 4)


def still(frames: int = 11) -> KeyPath:
    return KeyPath(("a",), (frames,), (), (), loop=True)


def test_a_breathe_following_instead_of_its_sine_runs_from_low_to_high_with_the_gain():
    motion = Motion(still(), breathe=Breathe("d", -1.0, 3.0, range(3), Cycle(1, 4), FOLLOW, sine=False))
    ws = sample(timeline(motion, KEYS, DIRECTION, offsets, gains), torch.arange(11))
    expected = (-1 + 4 * GAIN).float()
    assert torch.allclose(ws[:, 0, 0], expected) and torch.allclose(ws[:, 2, 2], expected)
    assert torch.all(ws[:, 0, 1] == 0)


def test_a_following_wave_on_top_of_its_sine_scales_the_swing():
    motion = Motion(still(), breathe=Breathe("d", 0.0, 2.0, range(3), Cycle(1, 4), FOLLOW, sine=True))
    ws = sample(timeline(motion, KEYS, DIRECTION, offsets, gains), torch.arange(11))
    t = torch.arange(11, dtype=torch.float64)
    swing = torch.sin(2 * math.pi * (t / 4 - torch.floor(t / 4)) - math.pi / 2)
    assert torch.allclose(ws[:, 1, 1], (1 + GAIN * swing).float(), atol=1e-6)


def test_deform_and_push_follow_and_a_plain_push_is_constant():
    motion = Motion(still(), deform=Deform(range(1, 2), 0.5, 0, Cycle(1, 4), FOLLOW, sine=False),
                    pushes=(Push("d", 2.0, range(0, 1), FOLLOW), Push("d", -1.0, range(2, 3))))
    tl = timeline(motion, KEYS, DIRECTION, offsets, gains)
    ws = sample(tl, torch.arange(11))
    assert torch.allclose(ws[:, 1, 0], (0.5 * GAIN).float())      # deform: amplitude × gain
    assert torch.allclose(ws[:, 0, 0], (2 * GAIN).float())        # push: strength × gain
    assert torch.all(ws[:, 2, 2] == -1)                            # push without follow
    assert [w.label for w in tl.waves] == ["deform following loudness", "add d following loudness", "add d"]
    with pytest.raises(ValueError, match="no envelope function"):
        timeline(motion, KEYS, DIRECTION, offsets)


def test_waves_without_follow_are_unchanged():
    motion = Motion(still(), breathe=Breathe("d", 0.0, 2.0, range(3), Cycle(1, 4)))
    tl = timeline(motion, KEYS, DIRECTION, offsets)
    assert tl.waves[0].envelope is None and tl.waves[0].sine


def test_a_path_on_events_arrives_on_each_event_and_ends_with_the_sound():
    path = path_on_events(("a", "b"), (0, 10, 25, 25, 40, 99), 50, None, "linear", "lerp")
    assert path.frames == 50 and path.keys == ("a", "b", "a", "b")
    assert path.moves == (10, 15, 15) and path.holds == (0, 0, 0, 9)
    tl = timeline(Motion(path), KEYS, {}, offsets)
    assert tl.keyframes == (0, 10, 25, 40)
    short = path_on_events(("a", "b"), (10, 25), 30, 4, "in-out", "lerp")
    assert short.moves == (4, 4) and short.holds == (6, 11, 4)
    assert path_on_events(("a", "b"), (), 7, None, "linear", "lerp").frames == 7
