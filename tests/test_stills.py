"""Labelled stills: what every PNG morph writes says about itself (text chunks, read back with Pillow), and the
labels drawn under preview sheets, direction strips and curves."""

from __future__ import annotations

import inspect

import numpy as np
from conftest import morph
from PIL import Image
from test_render import SCENE, tiny_model, write_scene  # noqa: F401  (tiny_model is a fixture)

from morph import __version__
from morph.core.files import file_sha256
from morph.render import caption, images
from morph.render.caption import text_band
from morph.render.images import grid
from morph.render.plot import curve_panel


def test_labels_add_a_band_with_text_under_each_cell():
    faces = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    plain = grid(faces, cols=2)
    labelled = grid(faces, cols=2, labels=["ada", "ben", "frame 12", "frame 40"])
    band = text_band(["ada"], 64).shape[0]
    assert labelled.shape == (plain.shape[0] + 2 * band, plain.shape[1], 3)
    first, second = labelled[2 + 64:2 + 64 + band, 2:2 + 64], labelled[2 + 64:2 + 64 + band, 68:132]
    assert (first < 100).any() and (first == 255).any()  # dark text on white, not a blank strip
    assert not np.array_equal(first, second)  # each cell its own label
    long = grid(faces[:2], cols=2, labels=["a", "a label far too long for one line"])
    assert long.shape[0] == 2 + 64 + band + 2  # set smaller to fit, never a taller band
    assert (long[2 + 64:2 + 64 + band, 68:132] < 100).any()


def test_curves_carry_their_names_ranges_and_frame_axis():
    gain = np.linspace(0.25, 0.75, 50)
    panel = curve_panel([gain], 200, marks=[0, 25])
    line = text_band(["x"], 200).shape[0]
    assert panel.shape[0] == line + 40 + 2 + line
    name, axis = panel[:line], panel[-line:]
    assert (name != 255).any() and (axis < 100).any()
    assert (name[..., 0].astype(int) - name[..., 2] > 100).any()  # the first curve's name in its red


def test_sample_pngs_say_their_seed_and_model(tmp_path, tiny_model):
    done = morph("sample", "-m", str(tiny_model), "-n", "2", "--seed", "7", "--truncation", "0.5",
                 "-o", str(tmp_path / "s"))
    assert done.returncode == 0, done.stderr
    text = Image.open(tmp_path / "s" / "000001.png").text
    assert text["Software"] == f"morph {__version__}"
    assert text["morph:source"] == "seed 8, truncation 0.5"
    assert text["morph:model"] == str(tiny_model) and text["morph:model_sha256"] == file_sha256(tiny_model)


def test_preview_sheets_are_labelled_and_say_their_scene(tmp_path, tiny_model):
    scene = write_scene(tmp_path, tiny_model, SCENE.replace("FORMAT", "gif"))
    done = morph("preview", str(scene), "--out", str(tmp_path / "out"), "--frames", "3")
    assert done.returncode == 0, done.stderr
    sheet = Image.open(tmp_path / "out" / "tour-preview.png")
    assert sheet.height == 2 + 2 * (32 + text_band(["a"], 32).shape[0] + 2)  # two rows of faces, each labelled
    assert sheet.text["morph:model_sha256"] == file_sha256(tiny_model)
    assert sheet.text["morph:source"].startswith("render tour of scene.yaml: keyframes a, b, c")
    assert sheet.text["morph:scene"].endswith(f"sha256:{file_sha256(scene)}")


def test_direction_strips_show_strengths_and_name(tmp_path, tiny_model):
    np.save(tmp_path / "up.npy", np.random.default_rng(1).standard_normal(32).astype(np.float32))
    done = morph("directions", "show", str(tmp_path / "up.npy"), "--latent", "3", "-m", str(tiny_model),
                 "--steps", "3", "--from", "-1", "--to", "1", "-o", str(tmp_path / "o"), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    strip = Image.open(tmp_path / "o" / "up-strip.png")
    assert strip.text["morph:strengths"] == "-1, 0, 1" and strip.text["morph:source"] == "seed 3, truncation 1"
    assert strip.text["morph:direction"].startswith("up.npy") or "up.npy" in strip.text["morph:direction"]
    pixels = np.asarray(strip.convert("RGB"))
    assert strip.height > 2 + 32 + text_band(["-1"], 32).shape[0]  # the labels, then the caption below them
    caption_rows = pixels[2 + 32 + text_band(["-1"], 32).shape[0] + 2:]
    assert (caption_rows < 100).any()  # the direction's name is written under the strip


def test_the_hand_written_png_writer_and_pixel_font_are_gone():
    assert not hasattr(caption, "text_mask") and not hasattr(caption, "_FONT")
    source = inspect.getsource(images)
    assert "import zlib" not in source and "import struct" not in source and "IDAT" not in source
