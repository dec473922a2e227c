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
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import headless_chromium, leave_studio_page

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


def test_keyframes_are_added_removed_and_moved_in_the_paths_style():
    from morph.studio.paths import insert, move, remove

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
    assert move(flow, "r", 0, 1) == flow.replace("[a, b, c]", "[b, a, c]")
    assert move(block, "r", 1, -1) == block.replace("      - a\n      - b: {hold: 1s}   # kept\n",
                                                    "      - b: {hold: 1s}   # kept\n      - a\n")
    assert move(move(block, "r", 2, -1), "r", 1, 1) == block


def test_a_snapshot_png_carries_the_latent_and_the_settings():
    import torch
    from PIL import Image

    from morph.studio.routes import read_snapshot_latent, snapshot_png

    w = torch.randn(10, 8, dtype=torch.float64)
    data = snapshot_png(np.zeros((4, 4, 3), np.uint8), w, {"render": "r", "frame": 3})
    assert np.array_equal(read_snapshot_latent(data), w.numpy().astype(np.float32))
    assert json.loads(Image.open(io.BytesIO(data)).text["morph:settings"]) == {"render": "r", "frame": 3}


# --- the page in a browser, on scenes/music.yaml --------------------------------------------------------------

def _browser_missing() -> str:
    for exe in ("chromium", "chromedriver"):
        if shutil.which(exe) is None:
            return f"{exe} is not installed (apt-get install chromium chromium-driver)"
    for module in ("starlette", "uvicorn", "PIL", "selenium", "librosa"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install 'morph[studio,audio]' selenium)"
    return ""


browser = pytest.mark.skipif(bool(_browser_missing()), reason=_browser_missing() or "browser present")
SHOTS = os.environ.get("MORPH_STUDIO_SCREENSHOTS")  # a folder: the tests save docs' screenshots there


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "morph.cli", *args], capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def music_server(tmp_path_factory):
    """``morph studio`` on a tmp copy of scenes/music.yaml (port 0): its URL, token and scene."""
    if _browser_missing():
        pytest.skip(_browser_missing())
    tmp = tmp_path_factory.mktemp("studio-music")
    shutil.copytree(ROOT / "scenes", tmp / "scenes")
    scene = tmp / "scenes" / "music.yaml"
    cache = Path(os.environ.get("MORPH_STUDIO_TEST_CACHE") or tmp / "cache")  # a cache made earlier skips the analysis
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen([sys.executable, "-m", "morph.cli", "studio", str(scene), "--port", "0", "--device",
                             "cpu", "--cache", str(cache), "--out", str(tmp / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp)
    try:
        line = ""
        for line in proc.stdout:
            if "http://" in line:
                break
        match = re.search(r"(http://127\.0\.0\.1:\d+)/\?token=(\S+)", line)
        assert match, f"no URL printed; last line: {line!r}"
        yield {"base": match[1], "token": match[2], "scene": scene, "original": scene.read_bytes(),
               "cache": cache}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def driver():
    d = headless_chromium("--window-size=1280,1400", "--autoplay-policy=no-user-gesture-required")
    yield d
    d.quit()


def _wait(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(condition)


@pytest.fixture
def page(music_server, driver):
    """The page on the original music scene (file restored, unsaved edits dropped), its sound loaded."""
    leave_studio_page(driver, music_server["base"])
    music_server["scene"].write_bytes(music_server["original"])
    req = urllib.request.Request(f"{music_server['base']}/api/revert?token={music_server['token']}", data=b"{}",
                                 method="POST", headers={"Content-Type": "application/json",
                                                         "X-Morph-Token": music_server["token"]})
    urllib.request.urlopen(req, timeout=60).read()
    driver.get(f"{music_server['base']}/?token={music_server['token']}")
    _wait(driver, lambda d: d.execute_script("return window.studio.shown && window.studio.shown.quality == 'full' "
                                             "&& document.getElementById('audio').readyState >= 1"), 300)
    return driver


def _js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def _scrub(driver, index: int, quality: str = "full") -> None:
    _js(driver, "const s = document.getElementById('scrub'); s.value = arguments[0]; s.dispatchEvent(new Event('input'));",
        index)
    _wait(driver, lambda d: _js(d, "const s = window.studio.shown; return s && s.index == arguments[0] && "
                                   "s.quality == arguments[1]", index, quality))


def _image(driver, element_id: str) -> np.ndarray:
    """An <img>'s pixels, read back through a canvas."""
    from PIL import Image

    url = _js(driver, """const img = document.getElementById(arguments[0]), c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        c.getContext('2d').drawImage(img, 0, 0); return c.toDataURL('image/png');""", element_id)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")).astype(int)


def _control(driver, path: list):
    return driver.find_element("css selector", f"[data-path='{json.dumps(path, separators=(',', ':'))}']")


def _save(driver, scene: Path, before: bytes) -> bytes:
    driver.find_element("id", "save").click()
    _wait(driver, lambda d: scene.read_bytes() != before and not d.find_element("id", "dirty").is_displayed())
    return scene.read_bytes()


@browser
def test_the_sound_plays_and_follows_a_scrub(page):
    fps = 30
    for index in (120, 7, 200):
        _scrub(page, index)
        assert abs(_js(page, "return document.getElementById('audio').currentTime") - index / fps) < 1 / fps
    assert page.find_element("id", "sound").is_displayed()
    legend = page.find_element("id", "sound-legend").text
    assert "breathe ← bass" in legend and "deform ← onsets" in legend and "beats" in legend
    if SHOTS:
        page.save_screenshot(str(Path(SHOTS) / "studio-music.png"))
    _scrub(page, 30)
    page.find_element("tag name", "body").send_keys(" ")            # space: play, with the sound
    _wait(page, lambda d: _js(d, "const a = document.getElementById('audio'); return !a.paused && a.currentTime > 1.5"),
          15)
    page.find_element("tag name", "body").send_keys(" ")
    assert _js(page, "return document.getElementById('audio').paused")


@browser
def test_a_followed_breathe_shows_follow_controls_and_no_period(page):
    base = ["renders", "music-video", "breathe"]
    assert _control(page, base + ["follow", "feature"]).find_element("css selector", "select").get_attribute(
        "value") == "bass"
    assert _control(page, base + ["follow", "attack"]).is_displayed()
    assert not page.find_elements("css selector", f"[data-path='{json.dumps(base + ['period'], separators=(',', ':'))}']")
    assert not page.find_elements("css selector", "[data-path='[\"renders\",\"music-video\",\"hold\"]']")


@browser
def test_a_keyboard_step_moves_exactly_one_frame_and_question_mark_lists_the_keys(page):
    from selenium.webdriver.common.keys import Keys

    _scrub(page, 50)
    body = page.find_element("tag name", "body")
    body.send_keys(Keys.ARROW_RIGHT)
    _scrub_done = lambda i: _wait(page, lambda d: _js(d, "return window.studio.shown.index == arguments[0]", i))
    _scrub_done(51)
    assert page.find_element("id", "scrub").get_attribute("value") == "51"
    body.send_keys(Keys.ARROW_LEFT)
    _scrub_done(50)
    body.send_keys("?")
    assert "one frame back / on" in page.find_element("id", "shortcuts").text


@browser
def test_undo_restores_the_file_byte_for_byte(page, music_server):
    from selenium.webdriver.common.keys import Keys

    scene, original = music_server["scene"], music_server["original"]
    box = _control(page, ["renders", "music-video", "breathe", "follow", "release"]).find_element("css selector", ".num")
    box.clear()
    box.send_keys("0.5s", Keys.ENTER)
    _wait(page, lambda d: d.find_element("id", "dirty").is_displayed())
    edited = _save(page, scene, original)
    assert b"release: 0.5s}" in edited
    page.find_element("id", "undo").click()
    _wait(page, lambda d: d.find_element("id", "dirty").is_displayed())
    assert _save(page, scene, edited) == original
    page.find_element("id", "redo").click()
    _wait(page, lambda d: d.find_element("id", "dirty").is_displayed())
    assert _save(page, scene, original) == edited


@browser
def test_a_snapshot_png_carries_the_latent_of_its_frame(page, music_server):
    import torch

    from morph.studio.frames import open_frames
    from morph.studio.routes import read_snapshot_latent

    _scrub(page, 77)
    page.find_element("tag name", "body").send_keys("s")
    _wait(page, lambda d: _js(d, "return window.studio.snapshot"))
    data = base64.b64decode(page.execute_async_script(
        "const done = arguments[0]; fetch(window.studio.snapshot.url).then(r => r.blob()).then(b => {"
        "const f = new FileReader(); f.onload = () => done(f.result.split(',')[1]); f.readAsDataURL(b); });"))
    from PIL import Image

    png = Image.open(io.BytesIO(data))
    settings = json.loads(png.text["morph:settings"])
    assert png.size == (256, 256) and settings["render"] == "music-video" and settings["frame"] == 77
    scene = music_server["scene"]
    frames = open_frames(scene, "cpu", music_server["cache"])
    p = frames.prepare(frames.parse(scene.read_text(), scene))
    expected = frames.latent(p, "music-video", 77).to(torch.float32).numpy()
    assert np.allclose(read_snapshot_latent(data), expected, atol=1e-6)


@browser
def test_adding_a_keyframe_on_the_timeline_writes_one_path_entry(page, music_server):
    from selenium.webdriver.support.ui import Select

    scene, original = music_server["scene"], music_server["original"]
    keyframes = _js(page, "return window.studio && currentRender().keyframes")
    _scrub(page, keyframes[1] + 3)                           # just after ben's keyframe
    Select(page.find_element("id", "key-latent")).select_by_visible_text("ada")
    page.find_element("id", "key-add").click()
    _wait(page, lambda d: d.find_element("id", "dirty").is_displayed())
    saved = _save(page, scene, original)
    assert yaml.safe_load(saved)["renders"]["music-video"]["path"] == ["ada", "ben", "ada", "cleo", "dev"]
    changed = [(a, b) for a, b in zip(original.decode().splitlines(), saved.decode().splitlines()) if a != b]
    assert changed == [("    path: [ada, ben, cleo, dev]", "    path: [ada, ben, ada, cleo, dev]")]
    check = _cli("check", str(scene))
    assert check.returncode == 0, check.stderr
    mark = page.find_elements("css selector", "#marks .mark")[2]  # select it, then Delete removes the entry again
    mark.click()
    page.find_element("tag name", "body").send_keys("\ue017")     # Keys.DELETE
    _wait(page, lambda d: d.find_element("id", "dirty").is_displayed())
    assert _save(page, scene, saved) == original
    page.find_elements("css selector", "#marks .mark")[1].click()  # ben, one place later
    page.find_element("id", "key-later").click()
    _wait(page, lambda d: d.find_element("id", "dirty").is_displayed())
    assert yaml.safe_load(_save(page, scene, original))["renders"]["music-video"]["path"] == ["ada", "cleo", "ben", "dev"]


@browser
def test_a_direction_on_a_layer_range_changes_only_those_layers(page, music_server):
    from selenium.webdriver.support.ui import Select

    scene, original = music_server["scene"], music_server["original"]
    Select(page.find_element("id", "mix-latent")).select_by_visible_text("ada")
    row = page.find_element("css selector", "#mix-rows .mixrow")
    Select(row.find_element("css selector", "select")).select_by_visible_text("builtin:smile")
    _wait(page, lambda d: _js(d, "const i = document.getElementById('mix-view'); return i.complete && i.naturalWidth > 0"
                                 " && !i.dataset.url.includes('&d=')"))
    before = _image(page, "mix-view")
    _js(page, """const [, num, a, b] = arguments[0].querySelectorAll('input');
        num.value = '3'; num.dispatchEvent(new Event('change')); a.value = '0'; b.value = '3';
        b.dispatchEvent(new Event('change'));""", row)
    _wait(page, lambda d: _js(d, "const i = document.getElementById('mix-view'); return i.complete && "
                                 "i.dataset.url.includes(encodeURIComponent('builtin:smile:3:0-3'))"))
    time.sleep(0.3)
    after = _image(page, "mix-view")
    assert np.abs(after - before).mean() > 1.0
    if SHOTS:  # GANSpace-style: a second direction on other layers, for the picture only
        _js(page, """addMixRow('builtin:turn_left'); const [, num, a] = [...document.querySelectorAll('#mix-rows .mixrow')]
            .pop().querySelectorAll('input'); num.value = '-2'; a.value = '4'; num.dispatchEvent(new Event('change'));""")
        time.sleep(2)
        page.execute_script("document.getElementById('mixer').scrollIntoView()")
        page.save_screenshot(str(Path(SHOTS) / "studio-mixer.png"))
        _js(page, "[...document.querySelectorAll('#mix-rows .mixrow')].pop().querySelector('button').click()")
    page.find_element("id", "mix-name").send_keys("ada_smiling")
    page.find_element("id", "mix-save").click()
    _wait(page, lambda d: _js(d, "return window.studio.shown && window.studio.shown.latent == 'ada_smiling'"))
    saved = yaml.safe_load(_save(page, scene, original))
    assert saved["latents"]["ada_smiling"] == {"from": "ada", "add": {"builtin:smile": 3}, "layers": "0-3"}
    from morph.studio.frames import open_frames

    frames = open_frames(scene, "cpu", music_server["cache"])
    ws = frames.prepare(frames.parse(scene.read_text(), scene)).ws
    moved = (ws["ada_smiling"] - ws["ada"]).abs().amax(dim=1)
    assert (moved[:4] > 0).all() and (moved[4:] == 0).all()


@browser
def test_touching_a_latents_control_shows_that_latent(page, music_server):
    from selenium.webdriver.common.action_chains import ActionChains

    scene = music_server["scene"]
    scene.write_text(music_server["original"].decode().replace("ben:  {seed: 2}", "ben:  {seed: 2, add: {builtin:smile: 1}}"))
    path = ["latents", "ben", "add", "builtin:smile"]
    row = _wait(page, lambda d: d.find_elements("css selector", f"[data-path='{json.dumps(path, separators=(',', ':'))}']"),
                15)[0]
    keyframes, keys = _js(page, "return [currentRender().keyframes, currentRender().keys]")
    _scrub(page, 0)
    ActionChains(page).click(row.find_element("css selector", "input[type=range]")).perform()
    _wait(page, lambda d: _js(d, "return window.studio.shown.index == arguments[0]", keyframes[keys.index("ben")]))
    assert page.find_elements("css selector", "#changed span")  # the frames the edit changes, marked


@browser
def test_b_shows_the_saved_files_frame_against_the_edits(page):
    from selenium.webdriver.common.keys import Keys

    _scrub(page, 100)
    saved = _image(page, "frame")
    version = _js(page, "return window.studio.shown.version")
    box = _control(page, ["renders", "music-video", "breathe", "strength", 1]).find_element("css selector", ".num")
    box.clear()
    box.send_keys("-4", Keys.ENTER)
    _wait(page, lambda d: _js(d, "const s = window.studio.shown; return s.version > arguments[0] && s.quality == 'full'"
                                 " && s.index == 100", version))
    edited = _image(page, "frame")
    assert np.abs(edited - saved).mean() > 1.0
    page.find_element("tag name", "body").send_keys("b")
    _wait(page, lambda d: _js(d, "const s = window.studio.shown; return s.saved && s.quality == 'full'"))
    assert np.array_equal(_image(page, "frame"), saved)
    page.find_element("tag name", "body").send_keys("b")
    _wait(page, lambda d: _js(d, "const s = window.studio.shown; return !s.saved && s.quality == 'full'"))
    assert np.array_equal(_image(page, "frame"), edited)


@browser
def test_a_point_between_seeds_is_added_as_a_blend_of_them(page, music_server):
    scene, original = music_server["scene"], music_server["original"]
    _js(page, "const s = document.getElementById('seed-drag'); s.value = '7.25'; s.dispatchEvent(new Event('input'));")
    _wait(page, lambda d: _js(d, "const i = document.getElementById('mix-view'); return i.complete && "
                                 "i.dataset.url.includes('seed=7.25')"))
    page.find_element("id", "mix-name").send_keys("between")
    page.find_element("id", "mix-save").click()
    _wait(page, lambda d: _js(d, "return window.studio.shown && window.studio.shown.latent == 'between'"))
    latents = yaml.safe_load(_save(page, scene, original))["latents"]
    assert latents["seed7"] == {"seed": 7} and latents["seed8"] == {"seed": 8}
    assert latents["between"] == {"blend": {"seed7": 0.75, "seed8": 0.25}}
    page.find_element("tag name", "body").send_keys("\ue009z")  # Ctrl+Z: the whole add is one undo step
    _wait(page, lambda d: d.find_element("id", "dirty").is_displayed())
    assert _save(page, scene, scene.read_bytes()) == original


def test_a_stylegan3_render_gets_a_camera_pad_that_writes_camera(tiny_stylegan3, tmp_path):
    from morph.scene import parse_scene

    scene = tmp_path / "sg3.yaml"
    text = (f"model: {tiny_stylegan3}\nlatents:\n  a: {{seed: 1}}\n  b: {{seed: 2}}\n"
            "renders:\n  r: {format: gif, size: 32, path: [a, b]}   # kept\n")
    scene.write_text(text)
    pad = [c for c in _controls(scene) if c["kind"] == "camera"]
    assert [c["path"] for c in pad] == [["renders", "r", "camera"]]
    assert (pad[0]["min"], pad[0]["max"], pad[0]["rotate_max"]) == (-limits.MAX_TRANSLATE, limits.MAX_TRANSLATE,
                                                                    limits.MAX_ROTATE)
    for path, value in ((("renders", "r", "camera", "translate"), "[0.125, -0.25]"),
                        (("renders", "r", "camera", "rotate"), "12.5")):  # the pad's two edits
        text = apply(text, Edit(path, value))
    parse_scene(text, scene)
    assert yaml.safe_load(text)["renders"]["r"]["camera"] == {"translate": [0.125, -0.25], "rotate": 12.5}
    assert text.endswith("   # kept\n")
    assert not [c for c in _controls(MUSIC) if c["kind"] == "camera"]  # a StyleGAN2 model has none


@browser
def test_a_looped_range_plays_over_and_over_with_its_sound(page):
    body = page.find_element("tag name", "body")
    _scrub(page, 30)
    body.send_keys("[")
    _scrub(page, 45)
    body.send_keys("]")
    _js(page, "window.studio.playedFrames = []")
    body.send_keys(" ")
    _wait(page, lambda d: _js(d, "const f = window.studio.playedFrames; const k = f.indexOf(Math.max(...f));"
                                 "return f.length > 4 && f.slice(k).some((i) => i < 38)"), 30)  # wrapped round
    body.send_keys(" ")
    played = _js(page, "return window.studio.playedFrames")
    assert min(played) >= 30 and max(played) <= 45, played
    assert 1.0 - 1 / 30 <= _js(page, "return document.getElementById('audio').currentTime") <= 1.5 + 1 / 30


def _request(server, method: str, path: str, body=None, token: bool = True) -> tuple[int, str]:
    headers = {"Content-Type": "application/json", **({"X-Morph-Token": server["token"]} if token else {})}
    req = urllib.request.Request(server["base"] + path, method=method, headers=headers,
                                 data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, timeout=120) as got:
            return got.status, got.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


@browser
def test_the_new_routes_need_the_token_and_answer_a_bad_request_in_one_line(music_server, page):
    for path in ("/api/sound?render=music-video", "/api/snapshot?render=music-video&i=3", "/api/mix?latent=ada",
                 "/api/audio?render=music-video"):
        assert _request(music_server, "GET", path, token=False)[0] == 403
        assert _request(music_server, "GET", path)[0] == 200
    for method, path, body in (("GET", "/api/snapshot?render=music-video&i=x", None),
                               ("POST", "/api/edits", {"gesture": "g1"}),
                               ("POST", "/api/keyframe", {"render": "music-video", "move": 1}),
                               ("GET", "/api/mix?latent=ada&d=builtin:smile:nan:0-3", None),
                               ("GET", "/api/mix?seed=inf", None)):
        status, text = _request(music_server, method, path, body)
        assert status == 400 and len(text.strip().splitlines()) == 1, (path, text)
