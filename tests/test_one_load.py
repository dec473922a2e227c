"""One pass over the data: a command loads (and hashes) the checkpoint a scene names once, whoever asks for
it afterwards (the scene reader for dimensions, the projection status, the renders)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from morph import cli
from morph.checkpoints import loading

TEAM = Path(__file__).resolve().parents[1] / "scenes" / "team"

RENDER_SCENE = """
latents:
  a: {seed: 1}
  b: {seed: 2}
renders:
  tiny: {format: gif, size: 64, fps: 10, path: [a, b], transition: {duration: 2f}}
"""

CHECK_SCENE = (RENDER_SCENE + """
  still: {format: gif, size: 64, around: photo, duration: 2f}
""").replace("latents:\n", "latents:\n  photo: {project: ada.png}\n")


@pytest.fixture
def loads(monkeypatch) -> list[Path]:
    """The checkpoint files read while the test runs, one entry per load."""
    seen: list[Path] = []
    read = loading.read_checkpoint

    def counted(path):
        seen.append(Path(path))
        return read(path)

    monkeypatch.setattr(loading, "read_checkpoint", counted)
    return seen


def run(*args: str) -> None:
    result = CliRunner().invoke(cli.app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)


def test_render_loads_the_model_once(tmp_path, loads):
    scene = tmp_path / "scene.yaml"
    scene.write_text(RENDER_SCENE)
    run("render", str(scene), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--device", "cpu",
        "--quiet")
    assert (tmp_path / "out" / "tiny.gif").stat().st_size > 0
    assert len(loads) == 1, loads


def test_check_loads_the_model_once(tmp_path, loads, monkeypatch):
    monkeypatch.setenv("MORPH_CACHE", str(tmp_path / "cache"))
    shutil.copy(TEAM / "ada.png", tmp_path / "ada.png")
    scene = tmp_path / "scene.yaml"
    scene.write_text(CHECK_SCENE)
    run("check", str(scene))
    assert len(loads) == 1, loads
