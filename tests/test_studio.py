"""morph studio: YAML splices and the mix picker's text in-process; then the page itself in a real headless
Chromium (Debian's chromium + chromium-driver through Selenium) against ``morph studio`` on a tmp copy of the
demo scene. The demo projects six photos on first load: one server and one cache serve the whole session
(``MORPH_STUDIO_TEST_CACHE`` points at a cache prepared earlier, to skip that wait while developing)."""

from __future__ import annotations

import base64
import difflib
import io
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import headless_chromium, leave_studio_page

from morph.core.errors import MorphError
from morph.studio.edits import Edit, apply
from morph.stylegan2.networks import layer_groups

GROUPS = layer_groups(10)  # the built-in 64 px model's coarse / middle / fine

ROOT = Path(__file__).resolve().parents[1]
SCENE_LINE = "  fay_smiling: {from: fay, add: {builtin:smile: 2.0}}"
STRENGTH = ["latents", "fay_smiling", "add", "builtin:smile"]


# --- in-process: edits at YAML marks -----------------------------------------------------------------------

DOC = """\
# a comment that must survive
model: builtin
latents:
  a:    {seed: 1}          # aligned on purpose
  b: {from: a, add: {builtin:smile: 2.0}}
renders:
  r:
    path: [a, b]
    hold: 0.5s   # half a second
"""


def test_value_splice_changes_only_that_value():
    out = apply(DOC, Edit(("latents", "b", "add", "builtin:smile"), "-1.25"))
    changed = [(a, b) for a, b in zip(DOC.splitlines(), out.splitlines()) if a != b]
    assert changed == [("  b: {from: a, add: {builtin:smile: 2.0}}", "  b: {from: a, add: {builtin:smile: -1.25}}")]
    assert apply(DOC, Edit(("renders", "r", "hold"), "1s")).replace("hold: 1s", "hold: 0.5s") == DOC
    assert apply("a: {b: }\nc:\n", Edit(("c",), "3")) == "a: {b: }\nc: 3\n"
    with pytest.raises(MorphError, match="no value given"):
        apply(DOC, Edit(("renders", "r", "hold"), " "))


def test_missing_keys_are_added_in_the_style_around_them():
    flow = apply(DOC, Edit(("latents", "a", "truncation"), "0.7"))
    assert "  a:    {seed: 1, truncation: 0.7}          # aligned on purpose" in flow.splitlines()
    block = apply(DOC, Edit(("renders", "r", "transition", "ease"), "linear"))
    assert yaml.safe_load(block)["renders"]["r"] == {"path": ["a", "b"], "hold": "0.5s",
                                                     "transition": {"ease": "linear"}}
    assert "    hold: 0.5s   # half a second\n    transition: {ease: linear}\n" in block
    top = apply(DOC, Edit(("truncation",), "0.8"))
    assert top.splitlines()[2] == "truncation: 0.8" and yaml.safe_load(top)["truncation"] == 0.8
    added = apply(DOC, Edit(("latents", "seed7"), "{seed: 7}"))
    assert yaml.safe_load(added)["latents"]["seed7"] == {"seed": 7} and added.startswith(DOC.split("renders:")[0])


MERGED = """renders:
  a: &common
    path: [x, y]
    transition: {duration: 2s, interp: slerp}
    hold: 0.5s
  b:
    <<: *common
    fps: 12
"""


def test_values_shared_by_a_merge_key_read_through_it_and_edits_stay_in_their_entry():
    from morph.studio.edits import compose, find

    root = compose(MERGED)
    assert find(root, ("renders", "b", "hold")).value == "0.5s"              # what the scene reads for b
    assert find(root, ("renders", "b", "transition", "duration")).value == "2s"
    out = apply(MERGED, Edit(("renders", "b", "hold"), "1s"))              # b's own key now overrides
    assert yaml.safe_load(out)["renders"]["b"]["hold"] == "1s" and yaml.safe_load(out)["renders"]["a"]["hold"] == "0.5s"
    with pytest.raises(MorphError, match="renders.b.transition comes from a YAML merge key"):
        apply(MERGED, Edit(("renders", "b", "transition", "duration"), "3s"))  # would drop interp: slerp from b
    assert yaml.safe_load(apply(MERGED, Edit(("renders", "a", "transition", "duration"), "3s")))["renders"]["b"][
        "transition"] == {"duration": "3s", "interp": "slerp"}                 # edited where the anchor is


def test_mix_text_names_whole_groups_and_ranges_the_rest():
    from morph.studio.controls import mix_text

    assert mix_text(["c"] * 3 + ["d"] * 4 + ["e"] * 3, GROUPS) == "{coarse: c, middle: d, fine: e}"
    assert mix_text(["c", "c", "x", "d", "d", "d", "d", "e", "e", "e"], GROUPS) == \
        "{0-1: c, 2: x, middle: d, fine: e}"


# --- the page in a browser ---------------------------------------------------------------------------------

def _missing(*modules: str) -> str:
    """Why the studio (or its browser tests) cannot run here, or ""."""
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install 'morph[studio]' selenium)"
    return ""


def _browser_missing() -> str:
    for exe in ("chromium", "chromedriver"):
        if shutil.which(exe) is None:
            return f"{exe} is not installed (apt-get install chromium chromium-driver)"
    return _missing("starlette", "uvicorn", "PIL", "selenium")


browser = pytest.mark.skipif(bool(_browser_missing()), reason=_browser_missing() or "browser present")


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "morph.cli", *args], capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def studio_server(tmp_path_factory):
    """``morph studio`` on a tmp copy of scenes/ (port 0), its URL, and the reference ``morph render`` output."""
    if _browser_missing():
        pytest.skip(_browser_missing())
    tmp = tmp_path_factory.mktemp("studio")
    shutil.copytree(ROOT / "scenes", tmp / "scenes")
    scene = tmp / "scenes" / "team.yaml"
    cache = Path(os.environ.get("MORPH_STUDIO_TEST_CACHE") or tmp / "cache")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen([sys.executable, "-m", "morph.cli", "studio", str(scene), "--port", "0", "--device",
                             "cpu", "--cache", str(cache), "--out", str(tmp / "studio-out")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp)
    try:
        line = ""
        for line in proc.stdout:  # projection messages, then the URL
            if "http://" in line:
                break
        match = re.search(r"(http://127\.0\.0\.1:(\d+))/\?token=(\S+)", line)
        assert match, f"no URL printed; last line: {line!r}"
        log: list[str] = []  # the server's log from here on, read as it comes (a full pipe would stall it)
        threading.Thread(target=lambda: log.extend(proc.stdout), daemon=True).start()
        ref = _cli("render", str(scene), "--out", str(tmp / "ref"), "--cache", str(cache), "--device", "cpu",
                   "--quiet", env=env)
        assert ref.returncode == 0, ref.stderr
        yield {"base": match[1], "port": int(match[2]), "token": match[3], "scene": scene,
               "original": scene.read_text(), "ref": tmp / "ref", "out": tmp / "studio-out", "cache": cache,
               "log": log}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def driver():
    d = headless_chromium("--window-size=1280,1000")
    yield d
    d.quit()


def _post(server, path: str) -> None:
    req = urllib.request.Request(f"{server['base']}{path}", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json", "X-Morph-Token": server["token"]})
    urllib.request.urlopen(req, timeout=60).read()


@pytest.fixture
def page(studio_server, driver):
    """The page opened on the original scene (file restored, unsaved edits dropped)."""
    leave_studio_page(driver, studio_server["base"])
    if studio_server["scene"].read_text() != studio_server["original"]:
        studio_server["scene"].write_text(studio_server["original"])
    _post(studio_server, "/api/revert")
    driver.get(f"{studio_server['base']}/?token={studio_server['token']}")
    _wait(driver, lambda d: d.execute_script("return window.studio.shown && window.studio.shown.quality == 'full'"))
    return driver


def _wait(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(condition)


def _shown_pixels(driver) -> np.ndarray:
    """The picture the page shows, at its own size, read back through a canvas."""
    from PIL import Image

    url = driver.execute_script("""
        const img = document.getElementById('frame'), c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        c.getContext('2d').drawImage(img, 0, 0);
        return c.toDataURL('image/png');""")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def _scrub(driver, index: int, quality: str = "full") -> None:
    driver.execute_script("const s = document.getElementById('scrub'); s.value = arguments[0];"
                          "s.dispatchEvent(new Event('input'));", index)
    _wait(driver, lambda d: d.execute_script(
        "const s = window.studio.shown; return s && s.index == arguments[0] && s.quality == arguments[1]",
        index, quality))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255 ** 2 / max(mse, 1e-12)))


@browser
def test_scrubbed_frames_are_the_rendered_frames_and_fast(page, studio_server):
    from morph.render.encode import decode_frames

    rendered = decode_frames(studio_server["ref"] / "team-morph.mp4", 256)
    for index in (100, 160, 360):  # mid-transition (slerp, in-out), another one, the held last keyframe
        _scrub(page, index)
        shown = _shown_pixels(page)
        assert shown.shape == (256, 256, 3)
        score = _psnr(shown, rendered[index])
        assert score > 35, f"frame {index}: PSNR {score:.1f} dB against morph render's"
    if os.environ.get("MORPH_STUDIO_SCREENSHOT"):
        page.set_window_size(1280, 1320)
        _scrub(page, 160)
        time.sleep(1)  # the seed grid and the direction strip
        page.save_screenshot(os.environ["MORPH_STUDIO_SCREENSHOT"])
        page.set_window_size(1280, 1000)
    picks = np.random.default_rng(0).choice(np.setdiff1d(np.arange(405), [100, 160, 360]), 50, replace=False)
    page.execute_script("window.studio.latencies = []")
    for index in picks.tolist():
        _scrub(page, index, "preview")
    latencies = page.execute_script("return window.studio.latencies")
    median = float(np.median(latencies))
    print(f"\nstudio frame latency (scrub → preview shown, {len(latencies)} scrubs, 64 px built-in model): "
          f"median {median:.0f} ms, p90 {np.percentile(latencies, 90):.0f} ms")
    assert len(latencies) >= 50 and median < 2000  # a generous bound: the figure itself is printed, not asserted
    page.find_element("id", "play").click()
    time.sleep(3)
    played = page.find_element("id", "fps").text
    page.find_element("id", "play").click()
    assert re.search(r"playing at [\d.]+ of 30 fps", played)
    print(f"studio playback: {played.strip(' ·')}")


@browser
def test_dragging_a_direction_slider_changes_the_picture(page):
    from selenium.webdriver.common.action_chains import ActionChains

    _scrub(page, 360)  # the fay_smiling keyframe, held
    before = _shown_pixels(page)
    version = page.execute_script("return window.studio.shown.version")
    row = page.find_element("css selector", f"[data-path='{_path_json(STRENGTH)}']")
    slider = row.find_element("css selector", "input[type=range]")
    ActionChains(page).click_and_hold(slider).move_by_offset(-80, 0).move_by_offset(-40, 0).release().perform()
    _wait(page, lambda d: d.execute_script("const s = window.studio.shown; return s.version > arguments[0] && "
                                           "s.quality == 'full' && s.index == 360", version))
    after = _shown_pixels(page)
    assert np.abs(after.astype(int) - before).mean() > 1.0
    assert float(row.find_element("css selector", ".num").get_attribute("value")) < 2.0


def _path_json(path: list) -> str:
    return '["' + '","'.join(path) + '"]'


def _type_value(driver, path: list, text: str) -> None:
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element("css selector", f"[data-path='{_path_json(path)}'] .num")
    box.clear()
    box.send_keys(text, Keys.ENTER)


@browser
def test_save_writes_only_the_changed_value(page, studio_server):
    scene = studio_server["scene"]
    _type_value(page, STRENGTH, "2.5")
    _wait(page, lambda d: d.find_element("id", "dirty").is_displayed())
    page.find_element("id", "save").click()
    _wait(page, lambda d: scene.read_text() != studio_server["original"] and not d.find_element("id", "dirty").is_displayed())
    check = _cli("check", str(scene))
    assert check.returncode == 0, check.stderr
    diff = [l for l in difflib.unified_diff(studio_server["original"].splitlines(), scene.read_text().splitlines(),
                                            lineterm="", n=0) if l[:1] in "+-" and l[:3] not in ("+++", "---")]
    old = next(l for l in studio_server["original"].splitlines() if l.startswith(SCENE_LINE))
    assert diff == ["-" + old, "+" + old.replace("smile: 2.0}", "smile: 2.5}")]
    _wait(page, lambda d: any("studio: saved" in line and scene.name in line for line in studio_server["log"]),
          timeout=10)
    assert any(re.search(r"studio: POST /api/save -> 200 \(\d+ ms\)", line) for line in studio_server["log"])


@browser
def test_an_invalid_value_shows_the_check_message_and_writes_nothing(page, studio_server):
    from morph.scene import SceneError, parse_scene

    scene = studio_server["scene"]
    _type_value(page, STRENGTH, "abc")
    # clearing the box first sends an empty edit, whose error can show before the typed value's
    errors = _wait(page, lambda d: d.find_element("id", "errors").is_displayed() and "abc" in
                   d.find_element("id", "errors").text and d.find_element("id", "errors"))
    edited = studio_server["original"].replace("smile: 2.0}", "smile: abc}")
    with pytest.raises(SceneError) as expected:
        parse_scene(edited, scene)
    assert errors.text.splitlines() == expected.value.problems
    assert re.match(r".*team\.yaml:\d+:\d+: latents\.fay_smiling\.add\.builtin:smile: expected a strength", errors.text)
    page.find_element("id", "save").click()
    time.sleep(0.5)
    assert scene.read_text() == studio_server["original"]
    assert page.find_element("id", "errors").is_displayed()


@browser
def test_editing_the_file_on_disk_updates_the_page(page, studio_server):
    scene = studio_server["scene"]
    scene.write_text(studio_server["original"].replace("smile: 2.0}", "smile: 1.25}"))
    _wait(page, lambda d: d.find_element("css selector", f"[data-path='{_path_json(STRENGTH)}'] .num")
          .get_attribute("value") == "1.25", 15)
    scene.write_text(studio_server["original"].replace("hold: 0.5s", "hold: [0.5s"))
    errors = _wait(page, lambda d: d.find_element("id", "errors").is_displayed() and d.find_element("id", "errors"), 15)
    assert re.search(r"team\.yaml:\d+:\d+: ", errors.text)
    scene.write_text(studio_server["original"])
    _wait(page, lambda d: not d.find_element("id", "errors").is_displayed(), 15)


@browser
def test_render_button_writes_what_morph_render_writes(page, studio_server):
    outputs = len(yaml.safe_load(studio_server["scene"].read_text())["renders"])
    page.find_element("id", "render-go").click()
    links = _wait(page, lambda d: len(d.find_elements("css selector", "#render-files a")) == outputs
                  and d.find_element("id", "render-text").text == "done"
                  and d.find_elements("css selector", "#render-files a"), 300)
    made = studio_server["out"] / "team-morph.mp4"
    assert made.read_bytes() == (studio_server["ref"] / "team-morph.mp4").read_bytes()
    href = next(a.get_attribute("href") for a in links if "team-morph" in a.get_attribute("href"))
    assert urllib.request.urlopen(href, timeout=30).read() == made.read_bytes()


@browser
def test_the_token_is_required_and_loopback_is_the_default(studio_server):
    base, token = studio_server["base"], studio_server["token"]
    for url in (f"{base}/", f"{base}/api/state", f"{base}/api/frame?render=wobble&i=0",
                f"{base}/api/state?token=wrong{token}"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=30)
        assert refused.value.code == 403
    assert urllib.request.urlopen(f"{base}/api/state?token={token}", timeout=30).status == 200
    port = f"{studio_server['port']:04X}"
    listening = [line.split()[1] for name in ("/proc/net/tcp", "/proc/net/tcp6") if Path(name).exists()
                 for line in Path(name).read_text().splitlines()[1:]
                 if line.split()[1].endswith(f":{port}") and line.split()[3] == "0A"]
    assert listening == ["0100007F:" + port]


@browser
def test_style_mix_picker_and_add_to_scene_write_the_yaml(page, studio_server):
    from selenium.webdriver.support.ui import Select

    scene = studio_server["scene"]
    mix = page.find_element("css selector", "[data-path='[\"latents\",\"hybrid\",\"mix\"]']")
    Select(mix.find_element("css selector", "select[data-group=coarse]")).select_by_visible_text("ada")
    _wait(page, lambda d: d.find_element("id", "dirty").is_displayed())
    page.find_elements("css selector", "#seeds img")[3].click()
    assert page.find_element("id", "new-name").get_attribute("value") == "seed3"
    page.find_element("id", "add").click()
    _wait(page, lambda d: "seed3" in d.execute_script("return [...document.getElementById('strip-latent').options]"
                                                        ".map(o => o.value)"))
    page.find_element("id", "save").click()
    _wait(page, lambda d: not d.find_element("id", "dirty").is_displayed())
    saved = yaml.safe_load(scene.read_text())["latents"]
    assert saved["hybrid"] == {"mix": {"coarse": "ada", "middle": "dana", "fine": "eli"}}
    assert saved["seed3"] == {"seed": 3}
    diff = [l[0] for l in difflib.ndiff(studio_server["original"].splitlines(), scene.read_text().splitlines())
            if l[:1] in "+-"]
    assert sorted(diff) == ["+", "+", "-"]  # the hybrid line changed, one line added


@pytest.mark.skipif(bool(_missing("starlette", "uvicorn", "PIL")), reason=_missing("starlette", "uvicorn", "PIL") or "-")
def test_a_bad_scene_or_port_is_one_line_and_exit_2(tmp_path):
    missing = _cli("studio", str(tmp_path / "none.yaml"), "--port", "0")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1 and "none.yaml" in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("latents:\n  a: {seed: -1}\nrenders: {r: {around: a, duration: 1}}\n")
    invalid = _cli("studio", str(bad), "--port", "0")
    assert invalid.returncode == 2 and re.match(r".*bad\.yaml:2:\d+: latents\.a\.seed: expected a seed", invalid.stderr)


@pytest.mark.parametrize("name", ["basics.yaml", "team.yaml"])
def test_every_control_writes_back_a_valid_scene(name):
    from morph.scene import load_scene, parse_scene
    from morph.studio.controls import controls
    from morph.studio.edits import compose, find

    path = ROOT / "scenes" / name
    text = path.read_text()
    listed = controls(load_scene(path), compose(text))
    kinds = {c["kind"] for c in listed}
    assert {"number", "choice", "mix"} <= kinds
    for c in listed:
        if c["kind"] == "mix":
            continue
        value = c["value"] if c["kind"] == "choice" else f"{c['value']:g}{c['unit']}"
        edited = apply(text, Edit(tuple(c["path"]), value))
        parse_scene(edited, path)  # still valid
        if c.get("unit") and find(compose(text), tuple(c["path"])) is not None:
            assert edited == text, c["label"]  # a duration written back as it was written


def test_the_picture_memo_is_bounded_in_bytes():
    from morph.studio.frames import Memo

    memo, made = Memo(limit=250), []
    for key in range(5):
        memo.get((key,), lambda: made.append(1) or b"x" * 100)
    assert memo.get((4,), lambda: b"other") == b"x" * 100
    assert list(memo.items) == [(3,), (4,)] and memo.size == 200 and len(made) == 5


def test_an_edit_during_a_reload_does_not_deadlock(tmp_path):
    """A reload (holding the studio's ``work`` while it prepares the scene) and an edit arriving meanwhile both
    finish: the edit takes ``work`` before the state ``lock``, in the reload's order (the other order left every
    request of the studio waiting forever)."""
    if _missing("starlette"):
        pytest.skip(_missing("starlette"))
    import asyncio
    import json

    from starlette.requests import Request

    from morph.studio.frames import open_frames
    from morph.studio.routes import extra_routes
    from morph.studio.server import Studio

    scene = tmp_path / "scene.yaml"
    scene.write_text("model: builtin\nlatents:\n  a: {seed: 1}\n  b: {seed: 2}\nrenders:\n"
                     "  r: {format: png, size: 64, fps: 10, path: [a, b], transition: {duration: 3f}}\n")
    frames = open_frames(scene, "cpu", tmp_path / "cache")
    studio = Studio(scene, frames, tmp_path / "out", "cpu")
    studio.reload()
    prepare = frames.prepare

    def slow_prepare(parsed):
        time.sleep(0.5)  # the reload holds work here while the edit arrives
        return prepare(parsed)
    frames.prepare = slow_prepare
    (edits,) = [r.endpoint for r in extra_routes(studio) if r.path == "/api/edits"]
    body = json.dumps({"edits": [{"path": ["latents", "b", "seed"], "value": 5}]}).encode()

    async def post():
        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}
        request = Request({"type": "http", "method": "POST", "path": "/api/edits", "query_string": b"",
                           "headers": [(b"content-type", b"application/json")]}, receive)
        return (await edits(request)).status_code

    done: dict = {}
    reload = threading.Thread(target=lambda: done.update(reload=studio.reload()), daemon=True)
    reload.start()
    time.sleep(0.1)
    edit = threading.Thread(target=lambda: done.update(edit=asyncio.run(post())), daemon=True)
    edit.start()
    reload.join(30)
    edit.join(30)
    assert "reload" in done and done.get("edit") == 200, done
    assert "seed: 5" in studio.text
