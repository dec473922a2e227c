"""``import morph`` as a notebook uses it: a dict scene rendered in a few lines, frames at the render's size,
one-line errors, and the README's Python examples run as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import morph
from morph.render.encode import decode_frames

README = Path(__file__).resolve().parents[1] / "README.md"

SCENE = {"model": "builtin", "noise": "const",
         "latents": {"a": {"seed": 1}, "b": {"seed": 2}},
         "renders": {"ab": {"format": "mp4", "size": 96, "fps": 10, "path": ["a", "b"],
                            "transition": {"duration": 1}}}}


def test_five_line_notebook_script(tmp_path):
    """The script a notebook cell holds: a dict scene, morph.render, the paths it returns decode to the plan."""
    script = textwrap.dedent(f"""
        import json, morph
        scene = {SCENE!r}
        paths = morph.render(scene, out="renders", cache="cache", device="cpu")
        plan = morph.check(scene, cache="cache")["renders"]
        print(json.dumps([[str(p) for p in paths], [[r["frames"], r["width"]] for r in plan]]))
    """)
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    paths, plan = json.loads(run.stdout.strip().splitlines()[-1])
    assert paths == ["renders/ab.mp4"] and plan == [[11, 96]]
    frames = decode_frames(tmp_path / paths[0], 96)
    assert frames.shape == (11, 96, 96, 3)
    assert "ab: renders/ab.mp4 written" in run.stderr  # the log line a notebook shows


def test_frames_at_the_renders_size_match_the_video(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scene = {**SCENE, "renders": {"ab": {**SCENE["renders"]["ab"], "size": 80}}}
    images = morph.frames(scene, "ab", [0, 10], device="cpu", cache=tmp_path / "cache")
    assert images.shape == (2, 80, 80, 3) and images.dtype == np.uint8
    paths = morph.render(scene, out=tmp_path / "out", cache=tmp_path / "cache", device="cpu", quiet=True)
    video = decode_frames(paths[0], 80)
    assert len(video) == 11
    # the same pixels, up to the video codec's loss
    assert np.abs(video[[0, 10]].astype(int) - images.astype(int)).mean() < 6
    assert np.abs(images[0].astype(int) - images[1].astype(int)).mean() > 6  # and two different faces


def test_a_yaml_string_resolves_paths_from_the_current_folder(tmp_path, monkeypatch):
    from morph.directions import save_array

    monkeypatch.chdir(tmp_path)
    save_array(tmp_path / "tilt.npy", np.ones(128, np.float32))
    text = textwrap.dedent("""
        model: builtin
        directions: {tilt: tilt.npy}
        latents:
          a: {seed: 3}
          b: {from: a, add: {tilt: 1.0}}
        renders:
          ab: {format: gif, size: 64, fps: 8, path: [a, b], transition: {duration: 0.5}}
    """)
    plan = morph.check(text, cache=tmp_path / "cache")
    assert plan["renders"][0]["output"] == str(Path("outputs") / "ab.gif")
    assert any("tilt" in line for line in plan["plan"])


def test_errors_are_one_morph_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(morph.MorphError) as err:
        morph.render("nope.yaml", out=tmp_path / "out")
    assert str(err.value).startswith("nope.yaml:") and "\n" not in str(err.value)
    with pytest.raises(morph.MorphError, match="outside render 'ab'"):
        morph.frames(SCENE, "ab", [11], device="cpu", cache=tmp_path / "cache")
    with pytest.raises(morph.MorphError, match="no render named 'ba'"):
        morph.frames(SCENE, "ba", [0], device="cpu", cache=tmp_path / "cache")
    with pytest.raises(morph.MorphError, match="not int"):
        morph.render(3)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_load_model_by_name_and_the_render_package_stays_importable():
    import importlib

    G = morph.load_model("builtin", device="cpu")
    assert G.img_resolution == 64 and G.num_ws == 10
    job = importlib.import_module("morph.render.job")  # the package that shares the name stays a package
    assert callable(morph.render) and morph.render.job is job and morph.render.__doc__.startswith("Rendering")


def _readme_examples() -> list[str]:
    """The README's ```python blocks that use the API (``import morph``)."""
    text = README.read_text() if README.is_file() else ""
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    return [block for block in blocks if re.search(r"^import morph$", block, re.M)]


@pytest.mark.skipif(not _readme_examples(), reason="README.md has no ```python block using import morph yet")
@pytest.mark.parametrize("block", _readme_examples())
def test_readme_python_examples_run_as_written(block, tmp_path):
    root = README.parent
    run = subprocess.run([sys.executable, "-c", block], cwd=root, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "MORPH_CACHE": str(tmp_path / "cache")})
    assert run.returncode == 0, run.stderr[-2000:]
