"""Noise is an argument: one Dask worker running two segments at once, each through a different projected
photo's noise, draws every frame exactly as a single process does (on a model whose noise matters)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed "
                                                          "(pip install -e '.[cluster]')")

from conftest import FIXTURES, morph  # noqa: E402

from morph.render.images import read_image  # noqa: E402

TEAM = Path(__file__).resolve().parents[1] / "scenes" / "team"
# One thread per torch op everywhere: CPU float results depend on the thread count, and the point here is
# that the worker's two task threads draw exactly what one process draws.
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
RENDERS = ("ada-a", "ben-a", "ada-b", "ben-b")


def write_scene(folder: Path) -> Path:
    """Four renders through two projected photos (64 px, as the model): each 2 distinct segments of PNG frames."""
    folder.mkdir(parents=True, exist_ok=True)
    body = "\n".join(f"""  {name}:
    format: png
    fps: 5
    around: {name.split('-')[0]}
    deform: {{layers: all, amplitude: {0.4 if name.endswith('a') else 0.7}, period: 4s, seed: {i}}}
    duration: 4s""" for i, name in enumerate(RENDERS))
    scene = folder / "scene.yaml"
    scene.write_text(f"""model: {FIXTURES / 'B_nvidia.pkl'}
noise: const
latents:
  ada: {{project: {TEAM / 'ada.png'}, steps: 2}}
  ben: {{project: {TEAM / 'ben.png'}, steps: 2}}
renders:
{body}
""")
    return scene


def frames(folder: Path, name: str) -> np.ndarray:
    return np.stack([read_image(p) for p in sorted((folder / name).glob("*.png"))])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b) ** 2).mean()
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def test_two_threads_of_one_worker_draw_each_render_with_its_own_noise(tmp_path, stylegan2_fixtures):
    scene, cache = write_scene(tmp_path / "scene"), tmp_path / "cache"
    single = morph("render", str(scene), "--out", str(tmp_path / "single"), "--cache", str(cache), env_extra=ENV)
    assert single.returncode == 0, single.stderr
    # The segments just rendered would be reused; a fresh segment cache (projections kept) makes the worker draw.
    for seg in (cache / "segments").iterdir():
        seg.unlink()
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR, env=ENV) as cluster:
        out = morph("render", str(scene), "--out", str(tmp_path / "cluster"), "--cache", str(cache),
                    "--cluster", cluster.scheduler_address, env_extra=ENV)
    assert out.returncode == 0, out.stderr
    assert "8 segments into the cache (80 rendered on 1 worker" in out.stderr, out.stderr
    for name in RENDERS:
        want, got = frames(tmp_path / "single", name), frames(tmp_path / "cluster", name)
        assert want.shape == got.shape == (20, 64, 64, 3)
        worst = min(psnr(w, g) for w, g in zip(want, got))
        assert np.array_equal(want, got), f"{name}: frames differ from the single-process render (worst {worst:.1f} dB)"
