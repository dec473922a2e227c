"""Nothing lost, nothing silent: names that would escape their folder, damaged cache pieces, unbounded scenes,
file-system faults, SIGTERM, maintenance during a render and unbounded options each end in one line (or are
healed), never in a traceback, a lost file or a wrong video."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import morph
from test_render import rendered, tiny_model, write_scene  # noqa: F401  (tiny_model: a fixture)

from morph.core import cache as store
from morph.render.encode import decode_frames

TEAM = Path(__file__).resolve().parents[1] / "scenes" / "team"
# 5 fps, 2 s segments of 10 frames: a 4-keyframe path of 1 s transitions and 2-frame holds is 4 segments.
FOUR_SEGMENTS = """latents:
  a: {{seed: 1}}
  b: {{seed: 2}}
  c: {{seed: 3}}
  d: {{seed: 4}}
renders:
  tour:
    format: {fmt}
    fps: 5
    size: 64
    path: [a, b, c, d]
    transition: {{duration: 2}}
    hold: 3f
"""
FRAMES = 4 * 3 + 3 * 10 + 1  # holds, transitions and the last keyframe: 43 frames, segments of 10, 10, 10, 10, 3


def one_line(out: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed command (no traceback)."""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


def leftovers(*folders: Path) -> list[Path]:
    return [p for f in folders if f.exists() for p in f.rglob("*") if p.name.endswith(".part")]


def output(folder: Path, fmt: str) -> Path:
    return folder / ("tour" if fmt == "png" else f"tour.{fmt}")


def frames_of(path: Path) -> np.ndarray:
    if path.is_dir():
        from morph.render.images import read_image

        return np.stack([read_image(p) for p in sorted(path.glob("frame_*.png"))])
    return decode_frames(path, 64)


# --- 1. names that become paths -------------------------------------------------------------------------------

def test_render_names_are_single_ordinary_file_names_and_user_files_survive(tmp_path, tiny_model):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("the user's own file")
    long_name = "x" * 300
    scene = write_scene(tmp_path, tiny_model, f"""latents:
  a: {{seed: 1}}
renders:
  .: {{format: png, around: a, duration: 4f}}
  ..: {{format: png, around: a, duration: 4f}}
  {long_name}: {{format: png, around: a, duration: 4f}}
""")
    result = morph("render", str(scene), "--out", str(out), "--cache", str(tmp_path / "cache"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and all(": renders: render name" in line for line in lines), lines
    assert (out / "mine.txt").read_text() == "the user's own file" and sorted(os.listdir(out)) == ["mine.txt"]


def test_a_png_render_never_replaces_a_folder_holding_other_files(tmp_path, tiny_model):
    out = tmp_path / "out"
    (out / "tour").mkdir(parents=True)
    (out / "tour" / "notes.txt").write_text("keep me")
    scene = write_scene(tmp_path, tiny_model, FOUR_SEGMENTS.format(fmt="png"))
    result = morph("render", str(scene), "--out", str(out), "--cache", str(tmp_path / "cache"))
    assert result.returncode == 2 and "holds files morph did not write" in one_line(result)
    assert (out / "tour" / "notes.txt").read_text() == "keep me" and rendered(result) == 0


# --- 2. damaged cache pieces ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["mp4", "webm", "gif", "png"])
def test_each_kind_of_cache_damage_is_detected_and_rebuilt(tmp_path, tiny_model, fmt):
    scene = write_scene(tmp_path, tiny_model, FOUR_SEGMENTS.format(fmt=fmt))
    cache, out = tmp_path / "cache", tmp_path / "out"
    args = ("render", str(scene), "--out", str(out), "--cache", str(cache))
    first = morph(*args)
    assert first.returncode == 0 and rendered(first) == FRAMES, first.stderr
    want = frames_of(output(out, fmt))
    assert len(want) == FRAMES
    segments = store.entries(cache)
    assert len(segments) == 5
    truncated, flipped, swapped, emptied = segments[:4]
    damaged = sum(json.loads(store.record_path(p).read_text())["frames"] for p in segments[:4])
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(b ^ 0xFF for b in data[len(data) // 2:len(data) // 2 + 64])
    flipped.write_bytes(bytes(data))
    swapped.write_bytes(segments[4].read_bytes())  # a whole, valid segment — of other frames
    emptied.write_bytes(b"")
    if output(out, fmt).is_dir():
        for p in output(out, fmt).iterdir():
            p.unlink()
        output(out, fmt).rmdir()
    else:
        output(out, fmt).unlink()
    again = morph(*args)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("is damaged") == 4 and rendered(again) == damaged, again.stderr
    assert np.array_equal(frames_of(output(out, fmt)), want)
    assert all(store.damage(p) is None for p in store.entries(cache)) and not leftovers(cache, out)


def test_a_damaged_projection_is_reported_and_projected_again(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "out"
    args = ("project", str(TEAM / "ada.png"), "--steps", "2", "--no-align", "--out", str(out), "--cache", str(cache))
    first = morph(*args)
    assert first.returncode == 0, first.stderr
    w = np.load(out / "ada.npy")
    (projection,) = store.entries(cache, store.PROJECTIONS)
    projection.write_bytes(projection.read_bytes()[:100])
    again = morph(*args)
    assert again.returncode == 0 and "is damaged" in again.stderr, again.stderr
    assert np.array_equal(np.load(out / "ada.npy"), w) and store.damage(projection) is None


def test_the_joined_output_is_checked_before_it_takes_the_final_name(tmp_path, tiny_model):
    from morph.core.errors import MorphError
    from morph.render.encode import EncodeSettings, join_segments

    scene = write_scene(tmp_path, tiny_model, FOUR_SEGMENTS.format(fmt="mp4"))
    assert morph("render", str(scene), "--out", str(tmp_path), "--cache", str(tmp_path / "cache")).returncode == 0
    segments = [p for p in store.entries(tmp_path / "cache")][:2]
    dest = tmp_path / "joined.mp4"
    with pytest.raises(MorphError, match="planned 43"):
        join_segments(segments, dest, EncodeSettings(format="mp4", fps=5, size=64), FRAMES)
    assert not dest.exists() and not leftovers(tmp_path)


# --- 4, 5, 7, 8. scenes: bounds, unreadable content, what render needs ------------------------------------------

def test_every_rate_length_size_and_strength_is_bounded_with_one_line_each(tmp_path, tiny_model):
    scene = write_scene(tmp_path, tiny_model, """latents:
  a: {seed: 1}
  b: {blend: {a: 1.0e+308}}
renders:
  fast: {fps: 1.0e+9, around: a, duration: 1}
  slow: {fps: 0.001, path: [a, a]}
  held: {path: [a, a], hold: 1.0e+12}
  long: {around: a, duration: 1e11f}
  wave: {around: a, deform: {period: 1.0e+12}}
  loud: {around: a, deform: {amplitude: 1.0e+300}, duration: 1}
  huge: {size: 1099511627776, around: a, duration: 1}
  big: {size: 100000, around: a, duration: 1}
  days: {fps: 240, around: a, duration: 3500}
""")
    result = morph("check", str(scene))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    for key in ("latents.b.blend.a", "renders.fast.fps", "renders.slow.fps", "renders.held.hold",
                "renders.long.duration", "renders.wave.deform.period", "renders.loud.deform.amplitude",
                "renders.huge.size", "renders.big.size", "renders.days: "):
        assert any("scene.yaml:" in line and key in line for line in lines), (key, lines)


@pytest.mark.parametrize("content,expect", [
    ("latents:\n  a: {seed: 1}\x00\n", "NUL byte"),
    ("latents: " + "[" * 20000 + "]" * 20000 + "\n", "nested too deeply"),
])
def test_unreadable_scene_content_is_one_line(tmp_path, content, expect):
    path = tmp_path / "scene.yaml"
    path.write_text(content)
    result = morph("check", str(path))
    assert result.returncode == 2 and expect in one_line(result) and one_line(result).startswith(str(path))


def test_endless_or_folder_scenes_are_refused_unread(tmp_path):
    start = time.monotonic()
    result = morph("check", "/dev/zero")
    assert result.returncode == 2 and "larger than 1 MiB" in one_line(result) and time.monotonic() - start < 60
    result = morph("check", str(tmp_path))
    assert result.returncode == 2 and "is a folder" in one_line(result)


def test_check_refuses_what_render_could_not_use(tmp_path, tiny_model):
    (tmp_path / "song.mp3").write_text("not a sound at all")
    (tmp_path / "face.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    (tmp_path / "folder.npy").mkdir()
    scene = write_scene(tmp_path, tiny_model, """audio: song.mp3
latents:
  a: {seed: 1}
  p: {project: face.png}
  f: {file: folder.npy}
renders:
  r: {around: a, duration: 1}
""")
    result = morph("check", str(scene))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 3 and "Traceback" not in result.stderr
    assert any("audio: song.mp3" in line and "audio" in line.split(": ", 3)[-1] for line in lines), lines
    assert any("latents.p.project: face.png: cannot read the image" in line for line in lines), lines
    assert any("latents.f.file: folder.npy is a folder" in line for line in lines), lines


# --- 6. the file system ---------------------------------------------------------------------------------------

def test_file_system_faults_are_one_line_and_leave_nothing(tmp_path, tiny_model):
    scene = write_scene(tmp_path, tiny_model, FOUR_SEGMENTS.format(fmt="mp4"))
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "video-folder" / "tour.mp4").mkdir(parents=True)
    (tmp_path / "cache-with-file").mkdir()
    (tmp_path / "cache-with-file" / "segments").write_text("x")
    (tmp_path / "locked" / ".tour.mp4.lock").mkdir(parents=True)
    cases = [  # (--out, --cache, what the line says)
        (tmp_path / "a-file", tmp_path / "c1", "is a file, not a folder"),
        (tmp_path / "video-folder", tmp_path / "c2", "is a folder; the mp4 render writes a file"),
        (tmp_path / "o3", tmp_path / "a-file", "is a file, not a folder"),
        (tmp_path / "o4", tmp_path / "cache-with-file", "is a file, not a folder"),
        (tmp_path / "locked", tmp_path / "c5", "Is a directory"),
    ]
    for out, cache, says in cases:
        result = morph("render", str(scene), "--out", str(out), "--cache", str(cache))
        assert result.returncode in (2, 4) and says in one_line(result), (out, cache, result.stderr)
        assert not (out / "tour.mp4").is_file() and not leftovers(out, cache)
    result = morph("cache", "--cache", str(tmp_path / "a-file"))
    assert result.returncode == 2 and "is a file" in one_line(result)


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """``morph ARGS`` in this process (so a fault can be injected); (exit code, stderr)."""
    from morph import cli

    monkeypatch.setattr(sys, "argv", ["morph", *args])
    with pytest.raises(SystemExit) as done:
        cli.main()
    return done.value.code, capsys.readouterr().err


def test_permission_and_full_disk_faults_are_one_line(tmp_path, tiny_model, monkeypatch, capsys):
    import morph.core.files
    import morph.render.job

    scene = write_scene(tmp_path, tiny_model, FOUR_SEGMENTS.format(fmt="mp4"))
    args = ("render", str(scene), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--quiet")

    def refused(prefix, suffix, dir):
        raise PermissionError(errno.EACCES, "Permission denied", dir)

    with monkeypatch.context() as m:
        m.setattr(morph.core.files.tempfile, "mkstemp", refused)
        code, err = run_main(m, capsys, *args)
    assert code == 4 and len(err.strip().splitlines()) == 1 and "Permission denied; morph may not write" in err
    assert not (tmp_path / "out" / "tour.mp4").exists() and not leftovers(tmp_path)

    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device", "record")

    with monkeypatch.context() as m:  # the output is complete: only the up-to-date record cannot be written
        m.setattr(morph.render.job, "remember_output", full)
        code, err = run_main(m, capsys, *args)
    assert code == 0 and "is complete, but its up-to-date record was not written" in err
    assert len(decode_frames(tmp_path / "out" / "tour.mp4", 64)) == FRAMES


# --- 9. SIGTERM -----------------------------------------------------------------------------------------------

def test_sigterm_stops_any_command_with_143(tmp_path):
    out = tmp_path / "samples"
    proc = subprocess.Popen([sys.executable, "-m", "morph.cli", "sample", "--n", "100000", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob("0*.png")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated" in err and time.monotonic() - start < 30, err
    assert not leftovers(out) and len(list(out.glob("*.png"))) < 100000


# --- 10, 11. maintenance during a render, leftovers --------------------------------------------------------------

def test_clear_spares_the_segments_a_running_render_holds(tmp_path, tiny_model):
    scene = write_scene(tmp_path, tiny_model, FOUR_SEGMENTS.format(fmt="mp4"))
    cache = tmp_path / "cache"
    assert morph("render", str(scene), "--out", str(tmp_path), "--cache", str(cache)).returncode == 0
    segments = store.entries(cache)
    with store.lease(cache, [p.name for p in segments[:3]]):
        result = morph("cache", "--clear", "--cache", str(cache))
        assert result.returncode == 0 and "removed 2 segments, 3 left (3 in use by a running render)" in result.stdout
        assert all(p.is_file() for p in segments[:3]) and not any(p.exists() for p in segments[3:])
    assert "removed 3 segments, 0 left" in morph("cache", "--clear", "--cache", str(cache)).stdout


def test_force_replaces_segments_in_place_so_a_concurrent_join_never_misses_one(tmp_path, tiny_model):
    scene = write_scene(tmp_path, tiny_model, FOUR_SEGMENTS.format(fmt="mp4"))
    cache = tmp_path / "cache"
    assert morph("render", str(scene), "--out", str(tmp_path), "--cache", str(cache)).returncode == 0
    segments = store.entries(cache)
    before = {p: p.stat().st_ino for p in segments}
    proc = subprocess.Popen([sys.executable, "-m", "morph.cli", "render", str(scene), "--out", str(tmp_path),
                             "--cache", str(cache), "--force"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    missing = 0
    while proc.poll() is None:
        missing += sum(not p.exists() for p in segments)
        time.sleep(0.01)
    assert proc.returncode == 0 and missing == 0
    assert all(p.stat().st_ino != before[p] for p in segments)  # every one rendered again


def test_stale_temp_files_are_swept_and_never_counted(tmp_path, tiny_model):
    scene = write_scene(tmp_path, tiny_model, FOUR_SEGMENTS.format(fmt="png"))
    cache, out = tmp_path / "cache", tmp_path / "out"
    (cache / "segments").mkdir(parents=True)
    out.mkdir()
    old, fresh = cache / "segments" / ".abc.mp4.x.part", cache / "segments" / ".def.mp4.y.part"
    old_join = out / ".tour.x.part"
    for p in (old, fresh, old_join):
        p.write_text("half")
    hours_ago = time.time() - 2 * store.STALE_SECONDS
    os.utime(old, (hours_ago, hours_ago))
    os.utime(old_join, (hours_ago, hours_ago))
    assert "0 segments" in morph("cache", "--cache", str(cache)).stdout
    result = morph("render", str(scene), "--out", str(out), "--cache", str(cache))
    assert result.returncode == 0 and re.search(r"removed \d+ temp files", result.stderr), result.stderr
    assert not old.exists() and not old_join.exists() and fresh.exists()
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "tour").stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    assert "5 segments" in morph("cache", "--cache", str(cache)).stdout


def test_cache_verify_checks_every_piece(tmp_path, tiny_model):
    scene = write_scene(tmp_path, tiny_model, FOUR_SEGMENTS.format(fmt="gif"))
    cache = tmp_path / "cache"
    assert morph("render", str(scene), "--out", str(tmp_path), "--cache", str(cache)).returncode == 0
    bad = store.entries(cache)[1]
    bad.write_bytes(bad.read_bytes()[:-10])
    result = morph("cache", "--verify", "--cache", str(cache))
    assert result.returncode == 0 and "5 cached files checked, 1 damaged and removed" in result.stdout
    assert not bad.exists() and len(store.entries(cache)) == 4


# --- 12. options ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,says", [
    (["preview", "s.yaml", "--frames", "100000"], "--frames"),
    (["directions", "show", "builtin:smile", "--steps", "100000"], "--steps"),
    (["render", "s.yaml", "--batch-size", "0"], "--batch-size"),
    (["render", "s.yaml", "--workers", "0"], "--workers"),
    (["render", "s.yaml", "--cluster", "not an address!"], "--cluster"),
])
def test_options_are_checked_before_any_work(tmp_path, tiny_model, args, says):
    write_scene(tmp_path, tiny_model, FOUR_SEGMENTS.format(fmt="mp4")).rename(tmp_path / "s.yaml")
    result = morph(*args, cwd=tmp_path)
    assert result.returncode == 2 and says in one_line(result)
