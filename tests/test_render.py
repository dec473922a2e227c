"""morph render end to end: real ffmpeg outputs, atomicity under SIGTERM, the segment cache, locking."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import morph

from morph.checkpoints import write_native
from morph.checkpoints.loading import load_generator
from morph.core.model import images_to_uint8
from morph.motion.schedule import sample
from morph.render.encode import decode_frames, probe
from morph.render.job import segment_bounds
from morph.scene import load_scene, resolve_latents, timelines
from morph.stylegan2 import Generator


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A random 32 px StyleGAN2 in morph's format: fast enough to render hundreds of frames in a test.

    Only the 4 and 8 px ToRGB layers are kept, so images are smooth like real faces rather than
    the per-pixel noise of random fine layers (which no 4:2:0 video codec could keep).
    """
    torch.manual_seed(0)
    kwargs = dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=512, channel_max=32))
    G = Generator(**kwargs)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
            if name.startswith(("synthesis.b16.torgb.weight", "synthesis.b32.torgb.weight")):
                p.zero_()
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    write_native(path, kwargs, G.state_dict())
    return path


def write_scene(folder: Path, model: Path, body: str) -> Path:
    scene = folder / "scene.yaml"
    scene.write_text(f"model: {model}\ntruncation: 0.8\n" + body)
    return scene


SCENE = """latents:
  a: {seed: 1}
  b: {seed: 2}
  c: {seed: 3}
renders:
  tour:
    format: FORMAT
    fps: 25
    size: 64
    path: [a, b, c]
    transition: {duration: 1, interp: slerp}
    hold: 4f
"""




def rendered(out: subprocess.CompletedProcess) -> int:
    """Frames generated in a run, read from its log lines."""
    return sum(int(m) for m in re.findall(r"\((\d+) rendered", out.stderr))


@pytest.mark.parametrize("fmt", ["mp4", "webm", "gif"])
def test_outputs_have_exact_frames_size_and_fps(tmp_path, tiny_model, fmt):
    scene = write_scene(tmp_path, tiny_model, SCENE.replace("FORMAT", fmt))
    out = morph("render", str(scene), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"))
    assert out.returncode == 0, out.stderr
    dest = tmp_path / "out" / f"tour.{fmt}"
    frames = load_scene(scene).renders["tour"].frames
    info = probe(dest)
    assert (info["width"], info["height"]) == (64, 64)
    assert info["fps"] == pytest.approx(25)
    assert len(decode_frames(dest, 64)) == frames == 3 * 4 + 2 * 25 + 1
    if fmt == "gif":
        data = dest.read_bytes()
        loop = data.index(b"NETSCAPE2.0")
        assert data[loop + 11:loop + 16] == b"\x03\x01\x00\x00\x00"  # loop count 0 = forever
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".part")]


def lanczos(frames: np.ndarray, size: int) -> np.ndarray:
    """Frames scaled as the encoder scales them, without any codec: the reference for codec loss."""
    from morph.render.encode import ffmpeg_exe

    src = frames.shape[1]
    raw = subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
                          f"{src}x{src}", "-i", "-", "-vf", f"scale={size}:{size}:flags=lanczos", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], input=frames.tobytes(), capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, size, size, 3)


def test_mp4_frames_match_the_generator(tmp_path, tiny_model):
    """At CRF 18 a decoded frame is within 35 dB PSNR of the generated one (at 256 px, as a user renders)."""
    scene = write_scene(tmp_path, tiny_model, SCENE.replace("FORMAT", "mp4").replace("size: 64", "size: 256"))
    assert morph("render", str(scene), "--out", str(tmp_path), "--cache", str(tmp_path / "c")).returncode == 0
    decoded = decode_frames(tmp_path / "tour.mp4", 256).astype(np.float64)
    sc = load_scene(scene)
    G = load_generator(tiny_model)
    with torch.no_grad():
        ws = sample(timelines(sc, G, *resolve_latents(sc, G))["tour"], torch.arange(len(decoded)))
        truth = lanczos(images_to_uint8(G.synthesis(ws, noise_mode="const")).numpy(), 256).astype(np.float64)
    psnr = 10 * np.log10(255 ** 2 / ((decoded - truth) ** 2).mean(axis=(1, 2, 3)))
    assert psnr.min() > 35, psnr


def test_cache_reuse_and_partial_rerender(tmp_path, tiny_model):
    scene = write_scene(tmp_path, tiny_model, SCENE.replace("FORMAT", "mp4"))
    args = ("render", str(scene), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"))
    first = morph(*args)
    total = load_scene(scene).renders["tour"].frames
    assert first.returncode == 0 and rendered(first) == total
    again = morph(*args)
    assert again.returncode == 0 and "up to date (0 frames rendered)" in again.stderr
    # Moving the last keyframe changes only the segments after the first transition starts towards it.
    scene.write_text(scene.read_text().replace("c: {seed: 3}", "c: {seed: 4}"))
    edited = morph(*args)
    bounds = segment_bounds(total, 25)
    first_changed = 4 + 25 + 4  # hold a, a→b, hold b: frames before the transition towards c are unchanged
    untouched = sum(stop - start for start, stop in bounds if stop <= first_changed)
    assert edited.returncode == 0 and 0 < rendered(edited) == total - untouched


def test_sigterm_leaves_nothing_and_resume_renders_only_missing_frames(tmp_path, tiny_model):
    long_scene = SCENE.replace("FORMAT", "mp4").replace("duration: 1,", "duration: 6,")
    scene = write_scene(tmp_path, tiny_model, long_scene)
    cache, out = tmp_path / "cache", tmp_path / "out"
    cmd = [sys.executable, "-m", "morph.cli", "render", str(scene), "--out", str(out), "--cache", str(cache),
           "--batch-size", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((cache / "segments").glob("*.mp4"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert not (out / "tour.mp4").exists()
    assert not [p for p in out.rglob("*.part")] and not [p for p in cache.rglob("*.part")], err
    done = sum(1 for _ in (cache / "segments").glob("*.mp4"))
    total = load_scene(scene).renders["tour"].frames
    bounds = segment_bounds(total, 25)
    assert 2 <= done < len(bounds)
    resumed = morph("render", str(scene), "--out", str(out), "--cache", str(cache))
    assert resumed.returncode == 0, resumed.stderr
    assert rendered(resumed) == total - sum(stop - start for start, stop in bounds[:done])
    assert len(decode_frames(out / "tour.mp4", 64)) == total


def test_concurrent_runs_produce_one_correct_file(tmp_path, tiny_model):
    scene = write_scene(tmp_path, tiny_model, SCENE.replace("FORMAT", "mp4"))
    cmd = [sys.executable, "-m", "morph.cli", "render", str(scene), "--out", str(tmp_path / "out"),
           "--cache", str(tmp_path / "cache")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    total = load_scene(scene).renders["tour"].frames
    assert sum(rendered(subprocess.CompletedProcess([], 0, "", err)) for _, err in results) == total
    assert len(decode_frames(tmp_path / "out" / "tour.mp4", 64)) == total
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == ["tour.mp4"]


def test_no_wait_exits_3_while_locked(tmp_path, tiny_model):
    import fcntl

    scene = write_scene(tmp_path, tiny_model, SCENE.replace("FORMAT", "mp4"))
    (tmp_path / "out").mkdir()
    with open(tmp_path / "out" / ".tour.mp4.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        out = morph("render", str(scene), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c"), "--no-wait")
    assert out.returncode == 3 and "another morph run" in out.stderr


def test_scene_errors_render_nothing(tmp_path, tiny_model):
    scene = write_scene(tmp_path, tiny_model, SCENE.replace("FORMAT", "mp4").replace("slerp", "slrep"))
    out = morph("render", str(scene), "--out", str(tmp_path / "out"))
    assert out.returncode == 2 and "did you mean 'slerp'" in out.stderr
    assert not (tmp_path / "out").exists()


def test_preview_and_cache_commands(tmp_path, tiny_model):
    scene = write_scene(tmp_path, tiny_model, SCENE.replace("FORMAT", "gif"))
    out = morph("preview", str(scene), "--out", str(tmp_path / "out"), "--frames", "5")
    assert out.returncode == 0, out.stderr
    sheet = (tmp_path / "out" / "tour-preview.png").read_bytes()
    assert sheet.startswith(b"\x89PNG") and "3 keyframes" in out.stdout
    cache = tmp_path / "cache"
    assert morph("render", str(scene), "--out", str(tmp_path / "out"), "--cache", str(cache)).returncode == 0
    shown = morph("cache", "--cache", str(cache))
    assert re.search(r": [1-9]\d* segments", shown.stdout)
    cleared = morph("cache", "--cache", str(cache), "--clear")
    assert cleared.returncode == 0 and not list((cache / "segments").iterdir())


def write_wav(path: Path, seconds: float, hz: float, rate: int = 16000) -> None:
    """A mono 16-bit sine tone."""
    import wave

    t = np.arange(int(seconds * rate)) / rate
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((np.sin(2 * np.pi * hz * t) * 12000).astype("<i2").tobytes())


def audio_seconds(path: Path) -> float:
    """Length of a file's first audio stream, decoded."""
    from morph.render.encode import ffmpeg_exe

    pcm = subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le",
                          "-ac", "1", "-ar", "8000", "-"], capture_output=True, check=True).stdout
    return len(pcm) / 2 / 8000


def test_audio_is_muxed_cut_to_the_video_and_keys_the_output(tmp_path, tiny_model):
    from morph.render.encode import ffmpeg_exe

    write_wav(tmp_path / "song.wav", 6.0, 440)
    scene = write_scene(tmp_path, tiny_model, "audio: song.wav\n" + SCENE.replace("FORMAT", "mp4"))
    args = ("render", str(scene), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"))
    assert morph(*args).returncode == 0
    dest = tmp_path / "out" / "tour.mp4"
    frames = load_scene(scene).renders["tour"].frames
    assert "Audio: aac" in subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(dest)], capture_output=True,
                                          text=True).stderr
    assert len(decode_frames(dest, 64)) == frames
    assert audio_seconds(dest) == pytest.approx(frames / 25, abs=0.08)  # 6 s of sound cut to the 2.5 s video
    write_wav(tmp_path / "song.wav", 1.0, 660)  # new sound, same frames: joined again, nothing rendered
    again = morph(*args)
    assert again.returncode == 0 and rendered(again) == 0 and "written" in again.stderr
    assert len(decode_frames(dest, 64)) == frames  # a shorter sound never cuts the video
    assert audio_seconds(dest) == pytest.approx(1.0, abs=0.08)
