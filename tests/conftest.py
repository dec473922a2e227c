"""Shared test fixtures and helpers: the reference files in ../shared/fixtures (absent in a user's clone),
and the ``morph`` command run as a subprocess."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch

TEAM = sorted((Path(__file__).resolve().parents[1] / "scenes" / "team").glob("*.png"))  # the demo's photos


def _dlib_ready() -> bool:
    from morph.projection import align

    return (importlib.util.find_spec("dlib") is not None and align._predictor_path() is not None
            and importlib.util.find_spec("skimage") is not None)


needs_dlib = pytest.mark.skipif(not _dlib_ready(), reason="dlib, face_recognition_models or scikit-image not "
                                                          "installed (pip install 'morph[align]' scikit-image)")


@pytest.fixture(scope="module")
def G():
    """The built-in generator (a test file may define its own ``G``)."""
    from morph.builtin import load_builtin_generator

    return load_builtin_generator()


FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "stylegan2"


@pytest.fixture(scope="session")
def stylegan2_fixtures() -> Path:
    """Folder of NVIDIA reference outputs; tests using it skip in clones without ../shared."""
    if not (FIXTURES / "B.npz").is_file():
        pytest.skip(f"reference fixtures not found at {FIXTURES} (only the project's CI has them)")
    return FIXTURES


def load_reference(folder: Path, name: str) -> tuple[dict, dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """(init_kwargs, state dict, cases) of fixture config ``name``."""
    kwargs = json.loads((folder / f"{name}.json").read_text())["init_kwargs"]
    state = {k: torch.from_numpy(v) for k, v in np.load(folder / f"{name}.npz").items()}
    cases = dict(np.load(folder / f"{name}_cases.npz"))
    return kwargs, state, cases


def morph(*args: str, env_extra: Optional[dict] = None, cwd: Optional[Path] = None,
          timeout: float = 600) -> subprocess.CompletedProcess:
    """``morph ARGS`` as a user runs it: a real subprocess, its exit code and its output (import with
    ``from conftest import morph``)."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "morph.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


def write_tiny_stylegan3(path: Path, seed: int = 0, **overrides) -> Path:
    """A random 32 px StyleGAN3-T in morph's format (7 layers, 32 channels at most, output scale 1 for
    contrast): small enough to render, project and train an encoder on in a test (import with
    ``from conftest import write_tiny_stylegan3``)."""
    from morph.checkpoints import write_native
    from morph.stylegan3 import Generator

    torch.manual_seed(seed)
    kwargs = dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3, mapping_kwargs=dict(num_layers=2),
                  channel_base=512, channel_max=32, num_layers=6, num_critical=1, margin_size=4, output_scale=1.0)
    G = Generator(**{**kwargs, **overrides})
    write_native(path, G.init_kwargs, G.state_dict(), family="stylegan3")
    return path


@pytest.fixture(scope="session")
def tiny_stylegan3(tmp_path_factory) -> Path:
    """The file of :func:`write_tiny_stylegan3` (seed 0), shared by every test that needs a StyleGAN3 model."""
    return write_tiny_stylegan3(tmp_path_factory.mktemp("stylegan3") / "tiny-sg3.safetensors")


def headless_chromium(*args: str):
    """Debian's Chromium driven by chromedriver, headless, with the browser tests' flags and ``args``; the
    caller quits it."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *args):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


def leave_studio_page(driver, base: str) -> None:
    """Close the last test's studio page once its edits in flight have reached the server, so that none of them
    lands on the next test's reverted scene."""
    from selenium.webdriver.support.ui import WebDriverWait

    if driver.current_url.startswith(base):
        WebDriverWait(driver, 60, poll_frequency=0.02).until(
            lambda d: d.execute_script("return editing == 0 && editWanted === null"))
    driver.get("about:blank")
