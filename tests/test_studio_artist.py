"""The studio as an artist uses it: controls that apply (bounds from limits.py), sound under the timeline,
undo, keyframes, snapshots and the direction mixer. In-process first; then the page in a real headless
Chromium (Debian's chromium + chromium-driver through Selenium) against ``morph studio`` on a tmp copy of
``scenes/music.yaml``."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from morph.core import limits
from morph.studio.edits import Edit, apply, compose

ROOT = Path(__file__).resolve().parents[1]
MUSIC = ROOT / "scenes" / "music.yaml"
needs_librosa = pytest.mark.skipif(__import__("importlib").util.find_spec("librosa") is None,
                                   reason="librosa is not installed (pip install 'morph[audio]')")


def _controls(path: Path, text: str = None):
    from morph.scene import parse_scene
    from morph.studio.controls import controls

    text = path.read_text() if text is None else text
    return controls(parse_scene(text, path), compose(text))


def _by_path(listed) -> dict:
    return {tuple(c["path"]): c for c in listed}


# --- controls -----------------------------------------------------------------------------------------------

@needs_librosa
def test_a_breathe_that_follows_a_feature_has_follow_controls_and_no_period():
    shown = _by_path(_controls(MUSIC))
    video = ("renders", "music-video")
    assert video + ("breathe", "period") not in shown          # it follows the bass: no period to add
    assert shown[video + ("breathe", "follow", "feature")]["value"] == "bass"
    assert shown[video + ("breathe", "follow", "range", 0)]["value"] == 0.5
    assert shown[video + ("breathe", "follow", "release")]["value"] == 0.3
    assert video + ("deform", "period") in shown                # this deform has a period and follows onsets
    assert shown[video + ("deform", "follow")]["value"] == "onsets"
    assert video + ("hold",) not in shown                       # beat-timed: no hold
    assert shown[video + ("transition", "every")]["value"] == 4
    pulse = ("renders", "music-pulse", "add", "builtin:turn_left")
    assert shown[pulse + ("strength",)]["value"] == 1.5          # render-level add:, with its follow
    assert shown[pulse + ("follow", "attack")]["value"] == 0.05


@needs_librosa
def test_bounds_come_from_limits():
    listed = _controls(MUSIC)
    strengths = [c for c in listed if c["label"].startswith(("breathe", "add")) and c["kind"] == "number"
                 and "gain" not in c["label"] and "(s)" not in c["label"]]
    assert strengths and all((c["min"], c["max"]) == (-limits.MAX_STRENGTH, limits.MAX_STRENGTH) for c in strengths)
    amplitude = _by_path(listed)[("renders", "music-video", "deform", "amplitude")]
    assert amplitude["max"] == limits.MAX_AMPLITUDE
    durations = [c for c in listed if c.get("unit") == "s" or "(s)" in c["label"]]
    assert durations and all(c["max"] == limits.MAX_SECONDS for c in durations)
    assert all(c["span"][0] <= c["value"] <= c["span"][1] for c in listed if c["kind"] == "number")


@needs_librosa
def test_every_music_control_writes_back_a_valid_scene():
    """Each control at another value (its ``before`` edits first): the scene stays valid and holds the value."""
    from morph.scene import parse_scene

    text = MUSIC.read_text()
    for c in _controls(MUSIC):
        edited = text
        for b in c.get("before") or []:
            edited = apply(edited, Edit(tuple(b["path"]), b["value"]))
        if c["kind"] == "choice":
            value = next(o for o in c["options"] if o != c["value"])
        else:
            value = min(c["span"][1], c["value"] + c["step"])
            value = f"{round(value) if c['unit'] == 'f' or c['step'] == 1 else round(value, 3):g}{c['unit']}"
        edited = apply(edited, Edit(tuple(c["path"]), str(value)))
        parse_scene(edited, MUSIC)  # still valid
        node = yaml.safe_load(edited)
        for key in c["path"]:
            node = node[key]
        assert str(node) == str(value) or float(node) == float(str(value).rstrip("sf")), c["label"]


# --- undo and keyframes in the text -------------------------------------------------------------------------

def test_undo_gives_back_each_text_and_a_gesture_is_one_step():
    from morph.studio.history import History

    h, texts = History(), ["a: 1  # c\n", "a: 2  # c\n", "a: 3  # c\n", "a: 4  # c\n"]
    h.record(texts[0], "drag")
    h.record(texts[1], "drag")        # the same drag: still one step
    h.record(texts[2], None)
    assert h.undo(texts[3]) == texts[2] and h.undo(texts[2]) == texts[0] and h.undo(texts[0]) is None
    assert h.redo(texts[0]) == texts[2]
    h.record(texts[2], None)
    assert h.redo("x") is None        # a new edit drops the redo steps


def test_keyframes_are_spliced_into_the_path_in_its_style():
    from morph.studio.paths import insert, remove

    flow = "renders:\n  r:\n    path: [a, b, c]   # kept\n"
    assert insert(flow, "r", 1, "n") == flow.replace("[a, b, c]", "[a, n, b, c]")
    assert insert(flow, "r", 3, "n") == flow.replace("[a, b, c]", "[a, b, c, n]")
    assert remove(flow, "r", 0) == flow.replace("[a, b, c]", "[b, c]")
    assert remove(flow, "r", 2) == flow.replace("[a, b, c]", "[a, b]")
    block = "renders:\n  r:\n    path:\n      - a\n      - b: {hold: 1s}   # kept\n      - c\n    fps: 3\n"
    assert insert(block, "r", 1, "n") == block.replace("      - b", "      - n\n      - b")
    assert insert(block, "r", 3, "n") == block.replace("      - c\n", "      - c\n      - n\n")
    assert remove(block, "r", 1) == block.replace("      - b: {hold: 1s}   # kept\n", "")
    assert remove(insert(block, "r", 2, "n"), "r", 2) == block


def test_a_snapshot_png_carries_the_latent_and_the_settings():
    from PIL import Image
    import torch

    from morph.studio.routes import read_snapshot_latent, snapshot_png

    w = torch.randn(10, 8, dtype=torch.float64)
    data = snapshot_png(np.zeros((4, 4, 3), np.uint8), w, {"render": "r", "frame": 3})
    assert np.array_equal(read_snapshot_latent(data), w.numpy().astype(np.float32))
    assert json.loads(Image.open(io.BytesIO(data)).text["morph:settings"]) == {"render": "r", "frame": 3}
