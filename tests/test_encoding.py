"""A render's encoder choices: codec, pixel format and quality; defaults byte-for-byte as before."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from conftest import morph
from test_render import tiny_model, write_scene  # noqa: F401  (tiny_model is a fixture)

from morph.render.encode import EncodeSettings, Encoding, count_frames, ffmpeg_exe, missing_encoder, probe
from morph.render.job import segment_key

RENDER = "size: 32, around: a, duration: 0.5s"
CHOICES = f"""latents:
  a: {{seed: 1}}
renders:
  plain: {{format: mp4, {RENDER}}}
  hevc: {{format: mp4, codec: h265, pixel_format: yuv444p, quality: high, {RENDER}}}
  rate: {{format: mp4, quality: {{bitrate: 20k, preset: medium}}, {RENDER}}}
  full: {{format: webm, pixel_format: yuv444p, quality: 30, {RENDER}}}
  edit: {{format: mov, {RENDER}}}
"""


@pytest.mark.skipif(bool(missing_encoder("h265") or missing_encoder("prores")),
                    reason="the bundled ffmpeg lacks libx265 or prores_ks")
def test_each_choice_writes_its_codec_and_pixel_format(tmp_path, tiny_model):
    scene = write_scene(tmp_path, tiny_model, CHOICES)
    done = morph("render", str(scene), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    expected = {"plain.mp4": ("h264", "yuv420p"), "hevc.mp4": ("hevc", "yuv444p"), "rate.mp4": ("h264", "yuv420p"),
                "full.webm": ("vp9", "yuv444p"), "edit.mov": ("prores", "yuv444p12le")}  # ProRes decodes at 12 bits
    for name, (codec, pix_fmt) in expected.items():
        found = probe(tmp_path / "out" / name)
        assert (found["codec"], found["pix_fmt"]) == (codec, pix_fmt), (name, found["stream"])
        assert count_frames(tmp_path / "out" / name) == (15, 32, 32), name
    assert "hvc1" in probe(tmp_path / "out" / "hevc.mp4")["stream"]  # the tag Apple's players need
    assert "4444" in probe(tmp_path / "out" / "edit.mov")["stream"]
    plain, rate = (os.path.getsize(tmp_path / "out" / n) for n in ("plain.mp4", "rate.mp4"))
    assert rate < plain  # a low bitrate, not CRF 18, decided its size
    plan = morph("check", str(scene)).stdout
    assert "mp4 (h265 yuv444p crf 16 veryfast)" in plan and "mov (prores 4444 yuv444p10le)" in plan
    listed = {r["name"]: r["encoding"] for r in json.loads(morph("check", str(scene), "--json").stdout)["renders"]}
    assert listed["plain"] == "h264 yuv420p crf 18 veryfast" and listed["rate"] == "h264 yuv420p 20kb/s medium"


def test_choices_are_part_of_the_cache_key():
    ws = torch.linspace(-1, 1, 64).reshape(2, 4, 8)
    keys = {segment_key(ws, "model", EncodeSettings(format=fmt, size=64, encoding=e), "const")
            for fmt, e in [("mp4", Encoding()), ("mp4", Encoding(codec="h265")), ("mp4", Encoding(pix_fmt="yuv444p")),
                           ("mp4", Encoding(crf=12)), ("mp4", Encoding(preset="slow")),
                           ("mp4", Encoding(bitrate="8M")), ("mov", Encoding())]}
    assert len(keys) == 7


def test_defaults_keep_their_cache_keys(monkeypatch):
    """Keys computed before encoder choices existed (at render version 2, which the test sets, so that a later
    version bump for other reasons leaves them standing): default renders reuse their cached segments and
    outputs (the codec arguments of a default render are unchanged too, so are its bytes)."""
    monkeypatch.setattr("morph.render.job.RENDER_VERSION", "2")
    ws = torch.linspace(-1, 1, 64).reshape(2, 4, 8)
    before = {"mp4": "6eeae27edbb3ead1c15c7b5a822edfb220d424c95d92ae11fe6608152363af8e",
              "webm": "72e37c7aaca8001aa1718d36c3895a2373504df1cc5f147a120eeeca260eaf4f",
              "gif": "fdcb8f4e54d6c7ce853d12d7c2b26263dc891a4f77dffe152c6dc4f20d80ccee"}
    for fmt, key in before.items():
        assert segment_key(ws, "model", EncodeSettings(format=fmt, fps=30.0, size=64), "const") == key, fmt


BAD = f"""latents:
  a: {{seed: 1}}
renders:
  r1: {{format: mp4, codec: h266, {RENDER}}}
  r2: {{format: gif, quality: high, {RENDER}}}
  r3: {{format: mp4, quality: ultra, {RENDER}}}
  r4: {{format: webm, quality: {{preset: slow}}, {RENDER}}}
  r5: {{format: mp4, quality: {{crf: 10, bitrate: 8M}}, {RENDER}}}
  r6: {{format: mov, pixel_format: yuv420p, {RENDER}}}
  r7: {{format: mp4, quality: 60, {RENDER}}}
"""


def test_bad_values_are_one_line_each(tmp_path, tiny_model):
    scene = write_scene(tmp_path, tiny_model, BAD)
    done = morph("check", str(scene))
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    expected = ["renders.r1.codec: 'h266' is not one of h264 or h265; did you mean 'h265'?",
                "renders.r2.quality: a gif render has no quality (only mp4, webm or mov do); drop quality",
                "renders.r3.quality: expected draft, standard or high, or a CRF from 0 (best) to 51, got 'ultra'",
                "renders.r4.quality.preset: vp9 has no preset; drop it",
                "renders.r5.quality.bitrate: give crf or bitrate, not both",
                "renders.r6.pixel_format: 'yuv420p' is not one of yuv444p10le",
                "renders.r7.quality: expected draft, standard or high, or a CRF from 0 (best) to 51, got 60"]
    assert len(lines) == len(expected), done.stderr
    for line, end in zip(lines, expected):
        assert line.startswith(str(scene)) and line.endswith(end), line


@pytest.mark.parametrize("render, encoder, line", [
    ("{format: mp4, codec: h265, ", "libx265", "renders.r.codec: h265 needs ffmpeg's libx265 encoder"),
    ("{format: mov, ", "prores_ks", "renders.r.format: prores needs ffmpeg's prores_ks encoder")])
def test_a_codec_the_binary_lacks_is_one_line(tmp_path, tiny_model, render, encoder, line):
    """An ffmpeg without the codec's encoder (the real one, its encoder list filtered) refuses the render."""
    fake = tmp_path / "ffmpeg"
    fake.write_text(f'#!/bin/sh\nif [ "$2" = "-encoders" ]; then "{ffmpeg_exe()}" "$@" | grep -v " {encoder} "; '
                    f'else exec "{ffmpeg_exe()}" "$@"; fi\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    scene = write_scene(tmp_path, tiny_model, f"latents:\n  a: {{seed: 1}}\nrenders:\n  r: {render}{RENDER}}}\n")
    done = morph("render", str(scene), "--out", str(tmp_path / "out"), env_extra={"IMAGEIO_FFMPEG_EXE": str(fake)})
    assert done.returncode == 2
    errors = done.stderr.strip().splitlines()
    assert len([e for e in errors if str(scene) in e]) == 1
    assert errors[-1].endswith(f"{line}, which {fake} lacks; set IMAGEIO_FFMPEG_EXE to an ffmpeg built with it, "
                               f"or choose another codec")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
