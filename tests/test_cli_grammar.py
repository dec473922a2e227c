"""One grammar for the whole command line: every command walked, the shared options spelled and meant the same,
defaults visible in help; the outputs a script reads (--json, --progress json) parse; a run behind a lock says
whom it waits for."""

from __future__ import annotations

import fcntl
import json
import os
import re
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest
import typer
from conftest import morph
from typer.testing import CliRunner

from morph.cli import app

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

# option → (its short form or None, the start of its help: what it means everywhere)
SHARED = {"--out": ("-o", "destination folder"), "--cache": (None, "cache folder"), "--model": ("-m", "builtin, a"),
          "--device": (None, "auto | cpu"), "--quiet": ("-q", "no progress"), "--json": (None, "print the result"),
          "--progress": (None, "auto (a bar"), "--batch-size": (None, "")}
RENAMED = {"--batch": "--batch-size", "--num": "--n"}  # spellings no command may use for these things


def commands(group=None, path=()):
    """(command path, click command) of every command, sub-commands included."""
    group = group or typer.main.get_command(app)
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


ALL = list(commands())


def test_the_walk_finds_every_command():
    names = {" ".join(p) for p, _ in ALL}
    assert {"render", "check", "preview", "cache", "fetch", "project", "sample", "directions train",
            "directions pca", "directions show", "encoder train", "latents export", "studio"} <= names


@pytest.mark.parametrize("path,cmd", ALL, ids=[" ".join(p) for p, _ in ALL])
def test_shared_options_have_one_name_and_meaning(path, cmd):
    for param in cmd.params:
        if not param.opts or not param.opts[0].startswith("--"):
            continue
        long = [o for o in param.opts if o.startswith("--")]
        assert not set(long) & set(RENAMED), f"{' '.join(path)}: {long} should be {[RENAMED.get(o) for o in long]}"
        name = long[0]
        if name in SHARED:
            short, meaning = SHARED[name]
            assert (short in param.opts) if short else True, f"{' '.join(path)} {name} lacks {short}"
            assert (param.help or "").startswith(meaning), f"{' '.join(path)} {name}: {param.help!r}"
        if name == "--out":  # always a folder: a Path, never a file name by default
            assert isinstance(param.default, Path) and not param.default.suffix, (path, param.default)
            assert str(param.default).startswith("outputs"), "outputs never go into the source tree by default"
        if name == "--cache":
            assert param.envvar == "MORPH_CACHE" and param.show_envvar


@pytest.mark.parametrize("path,cmd", ALL, ids=[" ".join(p) for p, _ in ALL])
def test_help_shows_every_default_and_the_cache_variable(path, cmd):
    result = CliRunner().invoke(app, [*path, "-h"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.replace("│", " ").split())
    for param in cmd.params:
        shown = param.show_default if isinstance(param.show_default, str) else param.default
        if param.opts and param.opts[0].startswith("--") and shown not in (None, False, (), []) \
                and not getattr(param, "is_flag", False):
            value = shown if isinstance(shown, str) else str(shown)
            assert f"default: {value}" in text or f"default: ({value})" in text, (path, param.name, text[-400:])
        if "--cache" in param.opts:
            assert "MORPH_CACHE" in text


def test_help_renders_option_types_under_the_pinned_typer():
    pin = re.search(r'"typer>=([\d.]+),<([\d.]+)"', PYPROJECT.read_text())
    have = tuple(int(x) for x in version("typer").split(".")[:2])
    low, high = (tuple(int(x) for x in v.split(".")[:2]) for v in pin.groups())
    if not low <= have < high:
        pytest.skip(f"typer {version('typer')} is installed, outside the pinned range {pin.group(0)}")
    text = CliRunner().invoke(app, ["render", "-h"], env={"COLUMNS": "200"}).output
    assert "<bool>" not in text and "<path>" not in text and "PATH" in text


def test_version_and_short_help():
    assert morph("--version").stdout.strip().startswith("morph ")
    out = morph("render", "-h")
    assert out.returncode == 0 and "--wait-timeout" in out.stdout


SCENE = textwrap.dedent("""
    model: builtin
    noise: const
    latents:
      a: {seed: 1}
      b: {seed: 2}
    renders:
      ab: {format: mp4, size: 64, fps: 10, path: [a, b], transition: {duration: 1}}
      still: {format: gif, size: 64, fps: 5, path: [b, a], transition: {duration: 0.4}}
""")


@pytest.fixture
def scene(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SCENE)
    return path


def test_check_json_lists_what_the_text_says(scene, tmp_path):
    text = morph("check", str(scene), "--cache", str(tmp_path / "c"))
    plan = json.loads(morph("check", str(scene), "--json", "--cache", str(tmp_path / "c")).stdout)
    assert plan["plan"] == text.stdout.strip().splitlines()
    assert [(r["name"], r["frames"]) for r in plan["renders"]] == [("ab", 11), ("still", 3)]
    for r in plan["renders"]:
        assert f"{r['frames']} frames" in text.stdout and r["output"] == f"outputs/{r['name']}.{r['format']}"


def test_render_json_and_the_json_progress_stream(scene, tmp_path):
    args = ["render", str(scene), "-o", str(tmp_path / "out"), "--cache", str(tmp_path / "c"), "--json"]
    first = morph(*args, "--progress", "json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert [(r["render"], r["status"], r["frames_rendered"]) for r in report["renders"]] == [
        ("ab", "written", 11), ("still", "written", 3)]
    assert all(Path(r["path"]).is_file() for r in report["renders"]) and report["frames_rendered"] == 14
    events = [json.loads(line) for line in first.stderr.splitlines()]  # every stderr line is JSON
    done = {e["task"]: e for e in events if e["event"] == "progress"}
    assert done["ab"]["done"] == done["ab"]["total"] == 11 and done["ab"]["unit"] == "frames"
    assert any(e["event"] == "log" and "ab.mp4 written" in e["message"] for e in events)
    again = json.loads(morph(*args, "-q").stdout)
    assert [r["status"] for r in again["renders"]] == ["up to date"] * 2 and again["frames_rendered"] == 0


def test_cache_and_fetch_list_json(tmp_path):
    cache = json.loads(morph("cache", "--json", "--cache", str(tmp_path / "c")).stdout)
    assert cache["segments"] == 0 and cache["models"] == [] and cache["folder"] == str(tmp_path / "c")
    networks = json.loads(morph("fetch", "--list", "--json", env_extra={"MORPH_CACHE": str(tmp_path / "c")}).stdout)
    assert networks["networks"] and all(n["path"] is None and n["url"].startswith("https://")
                                        for n in networks["networks"])


def test_a_render_behind_a_lock_says_whom_it_waits_for(scene, tmp_path):
    (tmp_path / "out").mkdir()
    with open(tmp_path / "out" / ".ab.mp4.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(json.dumps({"pid": os.getpid(), "host": "testhost", "command": "morph render other.yaml",
                             "since": 0}))
        fh.flush()
        out = morph("render", str(scene), "--only", "ab", "-o", str(tmp_path / "out"), "--cache", str(tmp_path / "c"),
                    "--wait-timeout", "1")
    assert out.returncode == 3, out.stderr
    assert f"waiting for pid {os.getpid()} on testhost (morph render other.yaml" in out.stderr
    assert "waited 1 s" in out.stderr.strip().splitlines()[-1]


def test_a_failure_ends_the_json_stream_with_an_error_event(tmp_path):
    out = morph("render", str(tmp_path / "nope.yaml"), "--progress", "json")
    assert out.returncode == 2
    last = json.loads(out.stderr.strip().splitlines()[-1])
    assert last["event"] == "error" and "nope.yaml" in last["message"]
    plain = morph("render", str(tmp_path / "nope.yaml"))
    assert plain.stderr.strip().splitlines()[-1] == last["message"]
