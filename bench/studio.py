"""The studio's frame cost at a network's full size against its preview, through the studio's frame adapter:
draw (synthesis of one frame) and the encoded picture the page receives (preview: ≤ 256 px JPEG; full:
the render's size, PNG). With ``--scrub``, the page itself: ``morph studio scenes/music.yaml`` (the 64 px
built-in model) in headless Chromium, random scrubs, each timed from the scrub to the preview shown.

    python bench/studio.py [--resolution 1024] [--rounds 5]      # a random-weight FFHQ-sized network
    python bench/studio.py --scrub [--rounds 50]                 # scrub latency in Chromium (needs chromium,
                                                                 # chromium-driver, selenium)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tour import write_tour  # bench/tour.py, beside this script

from morph.checkpoints.native import write_native
from morph.studio import frames as engine
from morph.studio.server import PREVIEW
from morph.stylegan2 import Generator


def timed(step, rounds: int) -> float:
    """Median milliseconds of ``step()`` over ``rounds`` calls after one warm-up."""
    step()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


SCRUB_TARGET_MS = 150  # the bound on the median scrub → preview shown


def scrub_latency(rounds: int) -> None:
    """Median and p90 of ``rounds`` random scrubs of music.yaml's first render in headless Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="morph-bench-studio-") as tmp:
        shutil.copytree(root / "scenes", Path(tmp) / "scenes")
        env = {**os.environ, "PYTHONPATH": str(root)}
        proc = subprocess.Popen([sys.executable, "-m", "morph.cli", "studio", str(Path(tmp) / "scenes" / "music.yaml"),
                                 "--port", "0", "--device", "cpu", "--cache", str(Path(tmp) / "cache"), "--out",
                                 str(Path(tmp) / "out")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env)
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
            options.add_argument(arg)
        driver = None
        try:
            url = next(m[1] for line in proc.stdout if (m := re.search(r"(http://\S+)", line)))
            driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
            driver.get(url)
            wait = lambda check: WebDriverWait(driver, 300, poll_frequency=0.02).until(check)
            wait(lambda d: d.execute_script("return window.studio.shown && window.studio.shown.quality == 'full'"))
            frames = driver.execute_script("return currentRender().frames")
            driver.execute_script("window.studio.latencies = []")
            for index in np.random.default_rng(0).integers(0, frames, rounds).tolist():
                driver.execute_script("const s = document.getElementById('scrub'); s.value = arguments[0];"
                                      "s.dispatchEvent(new Event('input'));", index)
                wait(lambda d: d.execute_script("const s = window.studio.shown; return s && s.index == arguments[0] && "
                                                "s.quality == 'full'", index))
            ms = driver.execute_script("return window.studio.latencies")
        finally:
            if driver:
                driver.quit()
            proc.terminate()
            proc.wait(timeout=30)
    median = statistics.median(ms)
    print(f"scrub → preview shown, scenes/music.yaml (64 px built-in model), {len(ms)} scrubs, load average "
          f"{os.getloadavg()[0]:.1f}: median {median:.0f} ms, p90 {np.percentile(ms, 90):.0f} ms; "
          f"median / {SCRUB_TARGET_MS} ms target = {median / SCRUB_TARGET_MS:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=None, help="5 frames; 50 scrubs with --scrub")
    parser.add_argument("--scrub", action="store_true", help="time scrubs of the page in headless Chromium")
    args = parser.parse_args()
    if args.scrub:
        return scrub_latency(args.rounds or 50)
    args.rounds = args.rounds or 5
    torch.manual_seed(0)
    res = args.resolution
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3,
                  mapping_kwargs=dict(num_layers=8),
                  synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=256)).eval()
    with tempfile.TemporaryDirectory(prefix="morph-bench-") as tmp:
        model = Path(tmp) / f"random{res}.safetensors"
        write_native(model, G.init_kwargs, G.state_dict())
        del G
        scene = write_tour(Path(tmp) / "tour.yaml", str(model), res, 90)
        frames = engine.Frames(model, torch.device("cpu"), Path(tmp) / "cache", quiet=True)
        p = frames.prepare(frames.parse(scene.read_text(), scene))
        index = iter(range(10 ** 6))
        small = min(res, PREVIEW)
        draw = timed(lambda: frames.frame(p, "tour", next(index) % 90, res), args.rounds)
        preview = timed(lambda: engine.encode(frames.frame(p, "tour", next(index) % 90, small), "JPEG"), args.rounds)
        full = timed(lambda: engine.encode(frames.frame(p, "tour", next(index) % 90, res), "PNG"), args.rounds)
    print(f"{res} px network on {torch.get_num_threads()} CPU threads (load average {os.getloadavg()[0]:.1f}), "
          f"median of {args.rounds}: draw {draw:.0f} ms; "
          f"preview ({small} px JPEG) {preview:.0f} ms; full ({res} px PNG) {full:.0f} ms; "
          f"preview/full {preview / full:.2f}")


if __name__ == "__main__":
    main()
