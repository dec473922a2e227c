"""Scene files: validation with file:line:col errors (all at once), the model they name, `morph check`."""

from __future__ import annotations

import tempfile
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import morph
from hypothesis import given, settings
from hypothesis import strategies as st

from morph.checkpoints import write_native
from morph.core.errors import MorphError
from morph.models.resolver import resolve_model as resolve_model_path
from morph.motion.latents import Blend, Mix, ModelDims, Project, Seed, seed_w
from morph.motion.schedule import chunks
from morph.render.images import write_png
from morph.scene import SceneError, load_scene, parse_scene, resolve_latents, timelines
from morph.stylegan2 import Generator

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "scenes").glob("*.yaml"))
DIMS = ModelDims.at(64, w_dim=128)  # the built-in model's shape: 10 layers of w[128]
OK = "renders:\n  r: {path: [a, b]}\n"  # a valid tail for scenes whose latents define a and b


def files(folder: Path) -> Path:
    """The files the test scenes refer to."""
    np.save(folder / "w.npy", np.ones((1, 128), np.float32))
    np.save(folder / "age.npy", np.ones((10, 128), np.float32))
    np.save(folder / "bad.npy", np.ones((5, 128), np.float32))
    write_png(folder / "face.png", np.full((8, 8, 3), 128, np.uint8))  # a real image: morph check decodes it
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    """A working folder with those files; scenes are read as ``scene.yaml`` in it."""
    monkeypatch.chdir(tmp_path)
    return files(tmp_path)


def problems(text: str, dims=DIMS) -> list[str]:
    with pytest.raises(SceneError) as err:
        parse_scene(text, "scene.yaml", dims)
    assert str(err.value) == "\n".join(err.value.problems)
    return err.value.problems


# Each case: a scene and every line it must produce, exactly.
MALFORMED = {
    "yaml syntax": ("latents:\n  a: {seed: 1\nrenders: {}\n",
                    ["scene.yaml:3:8: expected ',' or '}', but got ':' (while parsing a flow mapping at 2:6)"]),
    "tab indent": ("latents:\n\ta: {seed: 1}\n",
                   ["scene.yaml:2:1: found character '\\t' that cannot start any token "
                    "(while scanning for the next token)"]),
    "not a mapping": ("- a\n- b\n", ["scene.yaml:1:1: expected a mapping, got a list"]),
    "unknown top key": ("latents:\n  a: {seed: 1}\n  b: {seed: 2}\nrender:\n  r: {path: [a, b]}\n",
                        ["scene.yaml:1:1: renders: missing; a scene needs latents: and renders:",
                         "scene.yaml:4:1: unknown key 'render'; did you mean 'renders'?"]),
    "unknown latent key": ("latents:\n  a: {sed: 1}\n  b: {seed: 2}\n" + OK,
                           ["scene.yaml:2:7: latents.a: unknown key 'sed'; did you mean 'seed'?"]),
    "projection options": ("latents:\n  a: {project: face.png, steps: 0, space: z}\n  b: {seed: 2, steps: 9}\n" + OK,
                           ["scene.yaml:2:33: latents.a.steps: expected a whole number of steps, 1 to 100000, got 0",
                            "scene.yaml:2:43: latents.a.space: 'z' is not one of w+ or w",
                            "scene.yaml:3:16: latents.b: steps only applies to project latents"]),
    "two sources": ("latents:\n  a: {seed: 1, file: w.npy}\n  b: {seed: 2}\n" + OK,
                    ["scene.yaml:2:6: latents.a: gives seed and file; a latent has exactly one of "
                     "seed, file, project, mean, blend, mix or from"]),
    "wrong type": ("latents:\n  a: {seed: 1}\n  b: {seed: 2}\nrenders:\n  r:\n    path: [a, b]\n    fps: fast\n",
                   ["scene.yaml:7:10: renders.r.fps: expected a positive number, got 'fast'"]),
    "non-positive fps": ("latents:\n  a: {seed: 1}\n  b: {seed: 2}\nrenders:\n  r: {path: [a, b], fps: 0}\n",
                         ["scene.yaml:5:26: renders.r.fps: expected a positive number, got 0"]),
    "zero transition": ("latents:\n  a: {seed: 1}\n  b: {seed: 2}\n"
                        "renders:\n  r: {path: [a, b], transition: {duration: 0f}}\n",
                        ["scene.yaml:5:44: renders.r.transition.duration: expected a positive duration, "
                         "got 0 frames"]),
    "negative hold": ("latents:\n  a: {seed: 1}\n  b: {seed: 2}\nrenders:\n  r: {path: [a, b], hold: -0.5}\n",
                      ["scene.yaml:5:27: renders.r.hold: expected a non-negative duration, got -0.5 s"]),
    "bad duration": ("latents:\n  a: {seed: 1}\n  b: {seed: 2}\nrenders:\n  r: {path: [a, {b: {duration: 3x}}]}\n",
                     ["scene.yaml:5:32: renders.r.path[1].b.duration: expected a duration in seconds "
                      "(1.5 or 1.5s) or frames (45f), got '3x'"]),
    "missing file": ("latents:\n  a: {file: latents/brad.npy}\n  b: {seed: 2}\n" + OK,
                     ["scene.yaml:2:13: latents.a.file: latents/brad.npy: no such file"]),
    "not an image": ("latents:\n  a: {project: notes.txt}\n  b: {seed: 2}\n" + OK,
                     ["scene.yaml:2:16: latents.a.project: notes.txt is not an image "
                      "(PNG, JPEG, WebP, GIF, BMP or TIFF)"]),
    "unknown name": ("latents:\n  julie: {seed: 1}\n  b: {mean: [julie, jullie]}\n"
                     "renders:\n  r: {path: [julie, b]}\n",
                     ["scene.yaml:3:21: latents.b.mean[1]: no latent named 'jullie'; did you mean 'julie'?"]),
    "cycle": ("latents:\n  a: {from: c}\n  b: {mean: [a, c]}\n  c: {blend: {b: 1.0}}\n" + OK,
              ["scene.yaml:2:3: latents.a: cycle: a → c → b → a",
               "scene.yaml:4:3: latents.c: cycle: c → b → c"]),
    "direction shape": ("directions:\n  age: bad.npy\nlatents:\n  a: {seed: 1}\n  b: {seed: 2}\n" + OK,
                        ["scene.yaml:2:8: directions.age: bad.npy has shape [5, 128]; the model needs "
                         "[128], [1, 128] (W) or [10, 128] (W+)"]),
    "unknown direction": ("directions:\n  age: age.npy\nlatents:\n  a: {seed: 1}\n"
                          "  b: {from: a, add: {aeg: 2}}\n" + OK,
                          ["scene.yaml:5:22: latents.b.add: no direction named 'aeg'; did you mean 'age'?"]),
    "layers outside": ("latents:\n  a: {seed: 1}\n  b: {seed: 2}\n  hybrid: {mix: {0-3: a, 4-20: b}}\n" + OK,
                       ["scene.yaml:4:26: latents.hybrid.mix: layer range 4-20 is outside the model's layers 0-9"]),
    "mix gap": ("latents:\n  a: {seed: 1}\n  b: {seed: 2}\n  h: {mix: {coarse: a, fine: b}}\n" + OK,
                ["scene.yaml:4:12: latents.h.mix: layers 3-6 have no source; add them, or rest: NAME"]),
    "mix group typo": ("latents:\n  a: {seed: 1}\n  b: {seed: 2}\n  h: {mix: {coarce: a, rest: b}}\n" + OK,
                       ["scene.yaml:4:13: latents.h.mix: expected layers (5, 0-7, 8-, coarse, middle, fine or "
                        "all), got 'coarce'; did you mean 'coarse'?"]),
    "bad interp": ("latents:\n  a: {seed: 1}\n  b: {seed: 2}\nrenders:\n  r:\n    path: [a, b]\n"
                   "    transition: {interp: slrep}\n",
                   ["scene.yaml:7:26: renders.r.transition.interp: 'slrep' is not one of lerp, slerp or spline; "
                    "did you mean 'slerp'?"]),
    "ease with spline": ("latents:\n  a: {seed: 1}\n  b: {seed: 2}\nrenders:\n  r:\n    path: [a, b]\n"
                         "    transition: {interp: spline, ease: in}\n",
                         ["scene.yaml:7:34: renders.r.transition: ease does not apply to spline paths, whose "
                          "speed is smooth through every keyframe"]),
    "duplicate key": ("latents:\n  a: {seed: 1}\n  b: {seed: 2}\n  a: {seed: 3}\n" + OK,
                      ["scene.yaml:4:3: latents: duplicate key 'a' (first at line 2)"]),
    "odd mp4 size": ("latents:\n  a: {seed: 1}\n  b: {seed: 2}\nrenders:\n  r: {path: [a, b], size: 255}\n",
                     ["scene.yaml:5:27: renders.r.size: mp4 needs an even size, got 255"]),
    "path and around": ("latents:\n  a: {seed: 1}\n  b: {seed: 2}\nrenders:\n  r: {path: [a, b], around: a}\n",
                        ["scene.yaml:5:6: renders.r: give either path or around, not both"]),
    "class on unconditional": ("latents:\n  a: {seed: 1, class: 2}\n  b: {seed: 2}\n" + OK,
                               ["scene.yaml:2:16: latents.a: class given, but the model is not conditional"]),
    "short period": ("latents:\n  a: {seed: 1}\nrenders:\n  r: {around: a, deform: {period: 0.05}}\n",
                     ["scene.yaml:4:35: renders.r.deform.period: a period must last at least 2 frames at 30 fps"]),
    "render name": ("latents:\n  a: {seed: 1}\nrenders:\n  out/r: {around: a, duration: 2s}\n",
                    ["scene.yaml:4:3: renders: render name 'out/r' is used as a file name: use letters, "
                     "digits, _ . - only"]),
    "boolean key": ("latents:\n  a: {seed: 1}\n  no: {seed: 2}\nrenders:\n  r: {around: a, duration: 1}\n",
                    ["scene.yaml:3:3: latents: expected a name as key, got false; quote it"]),
}


@pytest.mark.parametrize("text,expected", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_scene_reports_exact_file_line_col_and_message(folder, text, expected):
    assert problems(text) == expected


def test_all_problems_of_a_file_are_reported_at_once_in_line_order(folder):
    text = ("model: builtin\nnoise: cnst\nlatents:\n  a: {seed: -1}\n  b: {mean: [a, c]}\n"
            "renders:\n  r: {path: [a, b], fps: 0, format: mp5}\n")
    assert problems(text) == [
        "scene.yaml:2:8: noise: 'cnst' is not one of const, random or none; did you mean 'const'?",
        "scene.yaml:4:13: latents.a.seed: expected a seed (an integer from 0 to 2**32 - 1), got -1",
        "scene.yaml:5:17: latents.b.mean[1]: no latent named 'c'",
        "scene.yaml:7:26: renders.r.fps: expected a positive number, got 0",
        "scene.yaml:7:37: renders.r.format: 'mp5' is not one of mp4, webm, mov, gif or png; did you mean 'mp4'?",
    ]


def test_model_problems_are_reported_with_the_rest(folder):
    text = "model: nothere.pkl\nlatents:\n  a: {seed: 1}\n  b: {seed: 2}\n" + OK + "  s: {around: z, duration: 1}\n"
    assert problems(text, dims=lambda path: pytest.fail("no model to read")) == [
        "scene.yaml:1:8: model: nothere.pkl: no such file",
        "scene.yaml:7:15: renders.s.around: no latent named 'z'",
    ]


def test_conditional_models_need_a_class_in_range(folder):
    dims = ModelDims(10, 128, 128, 3, 64)
    assert problems("latents:\n  a: {seed: 1}\n  b: {seed: 2, class: 3}\n" + OK, dims) == [
        "scene.yaml:2:6: latents.a: the model is conditional: give class: 0 to 2",
        "scene.yaml:3:23: latents.b.class: expected a class from 0 to 2, got 3",
    ]
    scene = parse_scene("latents:\n  a: {seed: 1, class: 0}\n  b: {seed: 2, class: 2}\n" + OK, "scene.yaml", dims)
    assert scene.latents["b"].source == Seed(2, 1.0, None, 2)


# --- valid scenes --------------------------------------------------------------------------------------------

FULL = """\
model: builtin
truncation: 0.7
truncation_cutoff: 8
directions:
  age: age.npy
latents:
  peter:  {project: face.png}
  julie:  {seed: 42}
  brad:   {file: w.npy}
  avg:    {mean: [peter, julie]}
  brad50: {blend: {peter: 0.5, brad: 0.5}}
  paul:   {project: face.png, steps: 300, space: w}
  hybrid: {mix: {coarse: peter, middle: julie, fine: brad}}
  older:  {from: peter, add: {age: 2.0}, layers: 0-7}
  young:  {seed: 7, truncation: 1}
renders:
  team-morph:
    format: mp4
    fps: 10
    size: 512
    path: [peter, julie, {hybrid: {duration: 2s, hold: 3f}}, {older: {ease: linear}}]
    transition: {duration: 1.5, interp: slerp, ease: in-out}
    hold: 0.5
    loop: true
  peter-breathe:
    format: gif
    around: peter
    deform: {layers: 0-5, amplitude: 0.6, period: 4, seed: 7}
    breathe: {direction: age, strength: [0, 2], period: 1.5s}
"""


def test_a_full_scene_becomes_a_frame_exact_model(folder):
    scene = parse_scene(FULL, "scene.yaml", DIMS)
    assert list(scene.latents)[:3] == ["peter", "julie", "brad"] and scene.model == "builtin"
    assert scene.latents["julie"].source == Seed(42, 0.7, 8, None) and scene.latents["young"].source.psi == 1
    assert scene.latents["peter"].source == Project(Path("face.png"))
    assert scene.latents["paul"].source == Project(Path("face.png"), 300, "w")
    assert scene.latents["brad50"].source == Blend((("peter", 0.5), ("brad", 0.5)))
    assert scene.latents["hybrid"].source == Mix(("peter",) * 3 + ("julie",) * 4 + ("brad",) * 3)
    assert scene.latents["older"].edits == (("age", 2.0),) and scene.latents["older"].layers == range(0, 8)
    morph_ = scene.renders["team-morph"]
    path = morph_.motion.path
    assert (morph_.format, morph_.fps, morph_.size) == ("mp4", 10.0, 512)
    assert path.holds == (5, 5, 3, 5)
    assert path.moves == (15, 20, 15, 15)  # into julie, into hybrid (2 s), into older, closing back into peter
    assert path.eases == ("in-out", "in-out", "linear", "in-out") and path.loop and path.interp == "slerp"
    assert morph_.frames == 18 + 65 and morph_.seconds == pytest.approx(8.3)
    breathe = scene.renders["peter-breathe"]
    assert (breathe.fps, breathe.size, breathe.frames) == (25.0, 64, 100)  # gif default fps; model's size; 4 s
    assert breathe.motion.deform.cycle.cycles == 1 and breathe.motion.breathe.cycle.cycles == 3  # 37.5 → 33.3 frames
    assert breathe.motion.breathe.low == 0 and breathe.motion.breathe.high == 2


TOKENS = [":", "{", "}", "[", "]", ",", "-", " ", "\n", "0", "-1", "null", "true", "abc", "0-3", "8-", "[]", "{}",
          "2s", "0f", "coarse", "rest", "class: 1", "builtin:smile", "&a", "*a", "<<: *a"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 6), st.sampled_from(TOKENS + [""])), min_size=1,
                max_size=3),
       st.sampled_from([DIMS, ModelDims(10, 128, 128, 3, 64)]))
def test_any_edit_of_a_scene_gives_a_scene_or_one_line_problems(edits, dims):
    text = FULL
    for where, cut, token in edits:
        at = int(where * len(text))
        text = text[:at] + token + text[at + cut:]
    with tempfile.TemporaryDirectory() as tmp:  # hypothesis runs many examples per test: no function fixtures
        files(Path(tmp))
        try:
            parse_scene(text, Path(tmp) / "scene.yaml", dims)
        except SceneError as err:
            assert err.problems and all(p.startswith(f"{tmp}/scene.yaml:") and "\n" not in p for p in err.problems)


def test_merge_keys_share_render_settings(folder):
    text = ("latents:\n  a: {seed: 1}\n  b: {seed: 2}\nrenders:\n"
            "  r1: &common {path: [a, b], fps: 12, format: gif}\n  r2: {<<: *common, fps: 24}\n")
    renders = parse_scene(text, "scene.yaml", DIMS).renders
    assert (renders["r1"].fps, renders["r2"].fps, renders["r2"].format) == (12, 24, "gif")


def test_model_paths_resolve_relative_to_the_scene_and_builtin_to_its_weights(tmp_path, monkeypatch):
    import morph.models.resolver

    assert resolve_model_path("m.pkl", Path("scenes")) == Path("scenes/m.pkl")
    assert resolve_model_path("~/m.pkl", Path("scenes")) == Path.home() / "m.pkl"
    weights = tmp_path / "generator.safetensors"
    monkeypatch.setattr(morph.models.resolver, "builtin_path", lambda name="generator": weights)
    with pytest.raises(MorphError, match="built-in generator's weights are not installed"):
        resolve_model_path("builtin")
    weights.write_bytes(b"x")
    assert resolve_model_path("builtin") == weights


@pytest.mark.parametrize("scene", EXAMPLES, ids=lambda p: p.name)
def test_every_example_scene_is_valid_for_the_builtin_models_shape(scene):
    assert load_scene(scene, DIMS).renders


# --- with a model: resolving, and `morph check` as a user runs it --------------------------------------------

@pytest.fixture
def tiny_model(folder) -> Path:
    """A 64 px generator with tiny channels, saved in morph's format as model.safetensors."""
    torch.manual_seed(0)
    G = Generator(z_dim=16, c_dim=0, w_dim=128, img_resolution=64, img_channels=3, mapping_kwargs={"num_layers": 2},
                  synthesis_kwargs={"channel_base": 256, "channel_max": 8})
    G.mapping.w_avg.normal_()
    write_native(folder / "model.safetensors", G.init_kwargs, G.state_dict())
    return folder / "model.safetensors"


def test_timelines_resolve_every_render_deterministically(tiny_model):
    from morph.checkpoints.loading import load_generator

    Path("scene.yaml").write_text(FULL.replace("model: builtin", "model: model.safetensors"))
    scene = load_scene("scene.yaml")
    G = load_generator(scene.model_path)
    peter = torch.zeros(10, 128)
    first = timelines(scene, G, *resolve_latents(scene, G, project=lambda spec: peter))
    second = timelines(scene, G, *resolve_latents(scene, G, project=lambda spec: peter))
    for name, tl in first.items():
        frames = torch.cat(list(chunks(tl, 32)))
        assert frames.shape == (scene.renders[name].frames, 10, 128)
        assert torch.equal(frames, torch.cat(list(chunks(second[name], 7))))
    assert torch.equal(first["team-morph"].keys[1], seed_w(G, 42, 0.7, 8))  # julie




def test_check_prints_the_plan(tiny_model):
    Path("scene.yaml").write_text(FULL.replace("model: builtin", "model: model.safetensors"))
    out = morph("check", "scene.yaml")
    assert out.returncode == 0, out.stderr
    plan = out.stdout
    assert "64 px, 10 layers of w[128]" in plan
    assert "projection of face.png (needs projection" in plan
    assert "julie   seed 42 (truncation 0.7 on layers 0-7)" in plan
    assert "brad    file w.npy" in plan and "hybrid  derived: mix layers 0-2 from peter" in plan
    assert ("team-morph     mp4 512x512 10 fps, 83 frames, 8.30 s: "
            "path peter → julie → hybrid → older → peter") in plan
    assert "peter-breathe  gif 64x64 25 fps, 100 frames, 4.00 s: around peter; deform layers 0-5" in plan


def test_check_reports_every_problem_on_stderr_and_exits_2(folder):
    Path("scene.yaml").write_text("model: nothere.pkl\nlatents:\n  a: {sed: 1}\nrenders:\n  r: {around: a, fps: -1}\n")
    out = morph("check", "scene.yaml")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [
        "scene.yaml:1:8: model: nothere.pkl: no such file",
        "scene.yaml:3:7: latents.a: unknown key 'sed'; did you mean 'seed'?",
        "scene.yaml:5:6: renders.r: an around render needs a duration, a deform, a breathe or a camera orbit/swing",
        "scene.yaml:5:23: renders.r.fps: expected a positive number, got -1",
    ]


def builtin_installed() -> bool:
    try:
        return resolve_model_path("builtin").is_file()
    except MorphError:
        return False


@pytest.mark.skipif(not builtin_installed(), reason="the built-in model's weights are not installed yet")
@pytest.mark.parametrize("scene", EXAMPLES, ids=lambda p: p.name)
def test_every_example_scene_passes_morph_check(scene):
    out = morph("check", str(scene))
    assert out.returncode == 0, out.stderr


def test_audio_must_exist_and_suit_the_format(folder):
    with wave.open(str(folder / "song.wav"), "wb") as song:  # a real sound: morph check decodes it
        song.setnchannels(1), song.setsampwidth(2), song.setframerate(8000)
        song.writeframes(bytes(1600))
    text = ("audio: nosong.mp3\nlatents:\n  a: {seed: 1}\n  b: {seed: 2}\nrenders:\n"
            "  r: {path: [a, b], audio: missing.mp3}\n  g: {path: [a, b], format: gif, audio: song.wav}\n")
    assert problems(text) == [
        "scene.yaml:1:8: audio: nosong.mp3: no such file; give an audio file (mp3, wav, …) relative to the "
        "scene's folder",
        "scene.yaml:6:28: renders.r.audio: missing.mp3: no such file; give an audio file (mp3, wav, …) relative "
        "to the scene's folder",
        "scene.yaml:7:34: renders.g.audio: a gif render has no sound track; use format mp4, webm or mov, or drop audio",
    ]
    scene = parse_scene("audio: song.wav\nlatents:\n  a: {seed: 1}\n  b: {seed: 2}\nrenders:\n"
                        "  r: {path: [a, b]}\n  g: {path: [a, b], format: gif}\n", "scene.yaml", DIMS)
    assert scene.renders["r"].audio == Path("song.wav") and scene.renders["g"].audio is None
