"""Motion that follows a sound: features of synthetic tracks (clicks at known times, a tone rising in loudness),
waves that follow them, keyframes on beats, determinism and partial re-renders when the sound changes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

pytest.importorskip("librosa", reason="the audio features need librosa: pip install 'morph[audio]'")

from conftest import morph  # noqa: E402

from morph.builtin import builtin_path  # noqa: E402
from morph.core.errors import MorphError  # noqa: E402
from morph.engine.scenes import RenderOptions, open_scene, render_scene  # noqa: E402
from morph.motion.latents import ModelDims  # noqa: E402
from morph.scene import load_scene, parse_scene, plan_lines  # noqa: E402
from morph.scene.types import SceneError  # noqa: E402
from morph.sound import audio  # noqa: E402
from morph.sound.synth import clicks, tone, write_wav  # noqa: E402

FPS = 30
CLICKS = (0.52, 1.13, 1.71, 2.36, 2.94, 3.48)          # seconds, between frame times on purpose
DIMS = ModelDims(10, 128, 128, 0, 64)


def needs_builtin() -> None:
    if not builtin_path().is_file():
        pytest.skip("the built-in generator's weights are not installed")


def scene_file(folder: Path, text: str, sound: np.ndarray) -> Path:
    """A scene beside its sound ``sound.wav``."""
    write_wav(folder / "sound.wav", sound)
    path = folder / "scene.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_onsets_land_within_one_frame_of_the_clicks(tmp_path):
    write_wav(tmp_path / "clicks.wav", clicks(CLICKS, 4.0))
    sound = audio.Sound(tmp_path / "clicks.wav", tmp_path / "cache")
    frames = sound.frames(FPS)
    assert frames == 4 * FPS
    found = sound.event_frames("onsets", FPS, frames)
    expected = np.round(np.array(CLICKS) * FPS)
    assert len(found) == len(CLICKS), found
    assert np.max(np.abs(found - expected)) <= 1, (found, expected)
    strength = sound.per_frame("onsets", FPS, frames)  # the curve peaks at the clicks too
    peaks = np.sort(np.argsort(strength)[-len(CLICKS):])
    assert np.max(np.abs(peaks - expected)) <= 1, (peaks, expected)


def test_loudness_of_a_rising_tone_is_monotone_and_cached(tmp_path, monkeypatch):
    write_wav(tmp_path / "tone.wav", tone(3.0, start=0.001, stop=0.9))
    sound = audio.Sound(tmp_path / "tone.wav", tmp_path / "cache")
    loud = sound.per_frame("loudness", FPS, sound.frames(FPS))
    assert np.all(np.diff(loud) >= 0), np.diff(loud).min()
    assert loud[0] < 0.1 and loud[-1] > 0.9  # −60 dB … −1 dB of full scale
    assert all(0 <= v <= 1 for v in sound.per_frame("treble", FPS, 90))
    monkeypatch.setattr(audio, "decode", lambda path: pytest.fail("decoded again despite the cache"))
    again = audio.Sound(tmp_path / "tone.wav", tmp_path / "cache")
    assert np.array_equal(again.per_frame("loudness", FPS, again.frames(FPS)), loud)
    assert (tmp_path / "cache" / "audio" / sound.sha256).is_dir()


def test_smoothing_and_resampling():
    step = np.r_[np.zeros(5), np.ones(20), np.zeros(20)]
    quick, slow = audio.smooth(step, 0, 0), audio.smooth(step, 2, 8)
    assert np.array_equal(quick, step)
    assert 0 < slow[5] < 1 and slow[24] > 0.99 and 0.05 < slow[30] < slow[25]  # rises fast, falls slowly
    assert np.all(np.diff(slow[5:25]) > 0) and np.all(np.diff(slow[25:]) < 0)
    peak = audio.resample(np.r_[np.zeros(50), 1.0, np.zeros(49)], 100.0, 10.0, 10, np.maximum)
    assert peak.tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0]  # a 10 ms spike kept by its frame


BEATS_SCENE = """\
    model: builtin
    audio: sound.wav
    latents:
      a: {seed: 1}
      b: {seed: 2}
      c: {seed: 3}
    renders:
      beats:
        format: png
        fps: 30
        size: 64
        path: [a, b, c]
        transition: {on: beats, every: 1}
      onsets:
        format: gif
        size: 64
        fps: 30
        path: [a, b, c]
        transition: {on: onsets, every: 2, duration: 4f}
"""


def test_keyframes_on_beats_land_on_the_click_frames(tmp_path):
    times = np.arange(0.0, 6.0, 0.5)  # 120 bpm, every 15th frame at 30 fps
    path = scene_file(tmp_path, BEATS_SCENE, clicks(times, 6.0))
    scene = load_scene(path, dims=DIMS, cache_dir=tmp_path / "cache")
    clicked = set(np.round(times * FPS).astype(int).tolist())
    for name in ("beats", "onsets"):
        p = scene.renders[name].motion.path
        assert scene.renders[name].frames == 180, name  # to the end of the sound
        arrivals = np.cumsum([0] + [h + m for h, m in zip(p.holds, p.moves)])[1:]  # reaching keys 1, 2, …
        assert set(arrivals.tolist()) <= clicked, (name, arrivals)
        assert p.keys[:4] == ("a", "b", "c", "a")  # cycles through the keys
    beats = scene.renders["beats"].motion.path
    assert len(beats.moves) >= 9  # nearly every click is a beat
    onsets = scene.renders["onsets"].motion.path
    assert set(onsets.moves) == {4} and len(onsets.moves) == 6  # every 2nd of the 11 clicks after frame 0
    plan = "\n".join(plan_lines(scene))
    assert "keyframes on every beat of sound.wav" in plan and "every 2nd onset" in plan


FOLLOW_SCENE = """\
    model: builtin
    audio: sound.wav
    latents:
      face: {seed: 5, truncation: 0.7}
    renders:
      pulse:
        format: png
        fps: 8
        size: 64
        around: face
        breathe: {direction: builtin:smile, strength: [-2, 3], follow: {feature: loudness, attack: 0s, release: 0s}}
"""


@pytest.mark.slow
def test_a_breathe_following_loudness_moves_the_smile_score_with_it(tmp_path):
    needs_builtin()
    from morph.builtin import load_builtin_classifier

    path = scene_file(tmp_path, FOLLOW_SCENE, tone(3.0, start=0.001, stop=0.9))
    loaded = open_scene(path, torch.device("cpu"), tmp_path / "cache", quiet=True)
    tl = loaded.timelines["pulse"]
    assert tl.frames == 24  # the whole sound at 8 fps
    gain = tl.waves[0].envelope.numpy()
    assert np.all(np.diff(gain) >= 0) and gain[-1] - gain[0] > 0.8
    smile = load_builtin_classifier().predict(loaded.frames("pulse", range(tl.frames), torch.device("cpu")))["smile"]
    rho = spearmanr(gain, smile).correlation
    assert rho >= 0.9, f"Spearman {rho:.3f}"
    assert "breathe builtin:smile -2…3 on layers 0-9; breathe following loudness of sound.wav" in \
        "\n".join(plan_lines(loaded.scene))


def test_same_scene_and_sound_render_identical_frames(tmp_path):
    needs_builtin()
    from morph.render.encode import decode_frames

    path = scene_file(tmp_path, FOLLOW_SCENE.replace("around: face", "around: face\n        add: {builtin:turn_left: "
                                                     "{strength: 2, follow: onsets}}"),
                      tone(2.0) + clicks((0.4, 1.1), 2.0))
    outs = []
    for run in ("one", "two"):  # each from an empty cache: analysed, scheduled and rendered afresh
        options = RenderOptions(out=tmp_path / run, cache_dir=tmp_path / f"cache-{run}", quiet=True)
        render_scene(open_scene(path, torch.device("cpu"), options.cache_dir, quiet=True), ["pulse"], options)
        outs.append(np.stack([decode_frames(f, 64) for f in sorted((tmp_path / run / "pulse").iterdir())]))
    assert outs[0].shape[0] == 16
    assert np.array_equal(outs[0], outs[1])
    assert np.abs(outs[0][0].astype(int) - outs[0][5].astype(int)).max() > 0  # it moves


def test_changing_the_sound_re_renders_only_the_segments_it_changes(tmp_path):
    needs_builtin()
    sound = tone(6.0, start=0.01, stop=0.9)  # 48 frames at 8 fps: three segments of 16
    path = scene_file(tmp_path, FOLLOW_SCENE, sound)
    options = RenderOptions(out=tmp_path / "out", cache_dir=tmp_path / "cache", quiet=True)

    def render() -> tuple:
        stats = render_scene(open_scene(path, torch.device("cpu"), options.cache_dir, quiet=True), ["pulse"], options)
        return stats["pulse"].segments, stats["pulse"].reused

    assert render() == (3, 0)
    assert render()[1] == 3
    edited = sound.copy()
    edited[int(4.6 * 16000):] *= 0.3  # quieter from 4.6 s: frame 37 on, in the last segment
    write_wav(tmp_path / "sound.wav", edited)
    assert render() == (3, 2)


@pytest.mark.parametrize("text, message", [
    ("breathe: {direction: builtin:smile, strength: 2, follow: loudness}", "follows a sound, but the render has none"),
    ("breathe: {direction: builtin:smile, strength: 2, follow: volume}", "'volume' is not a feature"),
    ("breathe: {direction: builtin:smile, strength: 2, follow: {feature: chroma:H}}", "the note is one of"),
    ("deform: {follow: {feature: bass, range: [0, 2], attack: -1}}", "expected a non-negative duration"),
    ("add: {builtin:smile: {strength: 500}}", "expected a strength from -100 to 100"),
    ("add: {builtin:smile: 1}", "an around render needs a duration"),
])
def test_follow_problems_are_one_line_each(text, message):
    scene = f"latents: {{a: {{seed: 1}}}}\nrenders:\n  r:\n    around: a\n    {text}\n"
    with pytest.raises(SceneError) as err:
        parse_scene(scene, "s.yaml", DIMS)
    assert message in str(err.value) and str(err.value).startswith("s.yaml:"), str(err.value)


def test_cue_problems(tmp_path):
    path = scene_file(tmp_path, BEATS_SCENE.replace("transition: {on: beats, every: 1}",
                                                    "transition: {on: beats, every: 0}\n        loop: true")
                      .replace("transition: {on: onsets, every: 2, duration: 4f}", "transition: {every: 2}"),
                      clicks((0.5, 1.0), 2.0))
    with pytest.raises(SceneError) as err:
        load_scene(path, dims=DIMS, cache_dir=tmp_path / "cache")
    text = str(err.value)
    assert "renders.beats.transition.every: expected a whole number of events from 1, got 0" in text
    assert "loop does not apply to a path on beats" in text
    assert "every applies only with on: beats or on: onsets" in text


def test_librosa_missing_is_one_line(monkeypatch, tmp_path):
    import importlib.util

    write_wav(tmp_path / "tone.wav", tone(0.5))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "librosa" else real(name, *a))
    with pytest.raises(MorphError, match=r"pip install 'morph-gan\[audio\]'"):
        audio.require_librosa()
    with pytest.raises(SceneError, match=r"s.yaml:6:\d+: renders.r.breathe.follow: following a sound needs librosa; pip install"):
        parse_scene("audio: tone.wav\nlatents: {a: {seed: 1}}\nrenders:\n  r:\n    around: a\n"
                    "    breathe: {direction: builtin:smile, strength: 1, follow: bass}\n", tmp_path / "s.yaml", DIMS)


def test_check_and_preview_show_what_follows_what(tmp_path):
    needs_builtin()
    path = scene_file(tmp_path, FOLLOW_SCENE, tone(2.0))
    shown = morph("check", str(path), env_extra={"MORPH_CACHE": str(tmp_path / "cache")})
    assert shown.returncode == 0, shown.stderr
    assert "breathe following loudness of sound.wav (window 0…1, attack 0.00 s, release 0.00 s) instead of its sine" \
        in shown.stdout
    drawn = morph("preview", str(path), "--out", str(tmp_path / "p"), "--frames", "4",
                  env_extra={"MORPH_CACHE": str(tmp_path / "cache")})
    assert drawn.returncode == 0, drawn.stderr
    assert "curve 1 (rgb(214, 39, 40)): breathe builtin:smile following loudness" in drawn.stdout
    from morph.render.caption import text_band, text_size
    from morph.render.images import read_image

    sheet = read_image(tmp_path / "p" / "pulse-preview.png")
    label, line = text_band(["x"], 64).shape[0], text_band(["x"], sheet.shape[1], size=text_size(64)).shape[0]
    # two rows of 64 px faces, each named under it; then one 40 px curve under its name, and the frame axis
    assert sheet.shape[0] == 2 + 2 * (64 + label + 2) + line + 42 + line


def test_follow_window_spans_the_gain(tmp_path):
    from morph.motion.schedule import Follow

    write_wav(tmp_path / "tone.wav", tone(2.0, start=0.001, stop=0.9))
    plain, window, inverted = (audio.envelope(Follow(tmp_path / "tone.wav", "loudness", 10.0, low, high), 20,
                                              tmp_path / "cache").numpy() for low, high in ((0, 1), (0.5, 0.8), (1, 0)))
    assert window.min() == 0 and window.max() == 1 and np.all(np.diff(window) >= 0)
    assert np.allclose(inverted, 1 - plain)
    with pytest.raises(SceneError, match="expected \\[LOW, HIGH\\], two different numbers from 0 to 1"):
        parse_scene("audio: tone.wav\nlatents: {a: {seed: 1}}\nrenders:\n  r:\n    around: a\n"
                    "    breathe: {direction: builtin:smile, strength: 1, follow: {feature: bass, range: [0.5, 0.5]}}\n",
                    tmp_path / "s.yaml", DIMS)


def test_the_example_music_scene_checks_and_its_sound_is_made_by_the_repo(tmp_path):
    from morph.sound.synth import music

    root = Path(__file__).resolve().parents[1] / "scenes"
    made = write_wav(tmp_path / "music.wav", music())
    assert made.read_bytes() == (root / "music.wav").read_bytes()  # python -m morph.sound.synth scenes/music.wav
    scene = load_scene(root / "music.yaml", dims=DIMS, cache_dir=tmp_path / "cache")
    video = scene.renders["music-video"]
    assert video.frames == 240 and video.motion.cue.every == 4 and video.motion.breathe.follow.feature == "bass"
    assert len(video.motion.path.moves) >= 3  # a new face every bar of the 8 s track


def test_spectra_in_blocks_equal_one_stft_of_the_whole_sound(tmp_path, monkeypatch):
    write_wav(tmp_path / "s.wav", tone(1.0) + clicks((0.3, 0.7), 1.0))
    sound = audio.Sound(tmp_path / "s.wav", tmp_path / "cache")
    whole, square = sound.spectra(audio.N_FFT, audio.HOP, lambda power: power), sound._mean_square()
    monkeypatch.setattr(audio, "BLOCK", 7)
    assert np.array_equal(sound.spectra(audio.N_FFT, audio.HOP, lambda power: power), whole)
    assert np.array_equal(sound._mean_square(), square)
    assert whole.shape[1] == len(square)  # loudness, bands and chroma share the frames


def test_feature_names():
    assert all(audio.feature_problem(f) is None for f in ("loudness", "onsets", "bass", "mid", "treble",
                                                            "band:60-250", "band:0-11025", "chroma:C#"))
    assert "0 ≤ LOW < HIGH" in audio.feature_problem("band:250-60")
    assert "0 ≤ LOW < HIGH" in audio.feature_problem("band:60-20000")
