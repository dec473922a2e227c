"""StyleGAN3 through the rest of morph (issue 16): SVM directions from labelled samples in W and W+, and a
scene rendered on a Dask cluster and in shards, identical to the local render. Projection and the encoder on
StyleGAN3 are tested in test_projection.py and test_encoder.py."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from test_render import morph, rendered, write_scene
from typer.testing import CliRunner

from morph.cli import app
from morph.directions import read_meta, strength_sweep, w_images
from morph.models.loader import load_model
from morph.motion.latents import load_w, read_w
from morph.render.encode import decode_frames
from morph.render.images import read_image

# --- directions ------------------------------------------------------------------------------------------------


def brightness(G, ws: np.ndarray) -> np.ndarray:
    """Mean pixel value (0-255) of each image of W [N, w_dim] or W+ [N, num_ws, w_dim] latents."""
    ws = torch.from_numpy(np.asarray(ws, np.float32))
    ws = ws[:, None].expand(-1, G.num_ws, -1) if ws.ndim == 2 else ws
    with torch.no_grad():
        img = G.synthesize(ws).clamp(-1, 1)
    return ((img.mean(dim=(1, 2, 3)) + 1) * 127.5).numpy()


def style_mixed(w: np.ndarray, num_ws: int, seed: int = 0) -> np.ndarray:
    """W+ [N, num_ws, w_dim]: each sample's layers from a random crossover on taken from the next sample."""
    rng = np.random.default_rng(seed)
    ws = np.repeat(w[:, None], num_ws, axis=1)
    cut = rng.integers(1, num_ws, len(w))
    layer = np.arange(num_ws)[None, :, None]
    return np.where(layer >= cut[:, None, None], np.roll(ws, 1, axis=0), ws).astype(np.float32)


@pytest.mark.parametrize("space", ["w", "w+"])
def test_svm_direction_on_stylegan3_moves_the_label(tiny_stylegan3, tmp_path, space):
    """Label 300 samples of a random StyleGAN3 by their brightness; the SVM's direction brightens every test
    face, and ``directions show`` draws the strip on the StyleGAN3 model."""
    G = load_model(tiny_stylegan3)
    runner = CliRunner()
    samples = tmp_path / "samples"
    run = runner.invoke(app, ["sample", "--model", str(tiny_stylegan3), "--n", "300", "--no-images", "--out",
                              str(samples), "--device", "cpu"])
    assert run.exit_code == 0, run.output
    latents = samples / "latents.npy"
    assert read_meta(latents)["num_ws"] == G.num_ws
    if space == "w+":
        mixed = style_mixed(read_w(latents), G.num_ws)
        np.save(samples / "mixed.npy", mixed)
        latents = samples / "mixed.npy"
    np.save(tmp_path / "bright.npy", brightness(G, read_w(latents)))
    run = runner.invoke(app, ["directions", "train", "--latents", str(latents), "--scores",
                              str(tmp_path / "bright.npy"), "--ratio", "0.2", "--space", space, "--out",
                              str(tmp_path / "dirs")])
    out = tmp_path / "dirs" / "bright.npy"  # --out is a folder; the file is named for the scores' attribute
    assert run.exit_code == 0, run.output
    meta = read_meta(out)
    assert meta["accuracy"] >= 0.9 and np.load(out).size == (G.w_dim if space == "w" else G.num_ws * G.w_dim)

    d = load_w(out, G.num_ws, G.w_dim)
    step = 2 * meta["spread"]
    test_w = np.load(samples / "latents.npy")[:10]  # starting points (W, every layer the same)
    moved = torch.cat([strength_sweep(torch.from_numpy(w).expand(G.num_ws, -1), d, [-step, step]) for w in test_w]).numpy()
    low, high = brightness(G, moved).reshape(-1, 2).T
    assert (high > low).all(), (low, high)

    run = runner.invoke(app, ["directions", "show", str(out), "--model", str(tiny_stylegan3), "--latent", "3",
                              "--steps", "5", "--from", str(-step), "--to", str(step), "--out",
                              str(tmp_path / "strips"), "--device", "cpu"])
    assert run.exit_code == 0, run.output
    (strip,) = (tmp_path / "strips").glob("*.png")  # --out is a folder; the strip is named for the direction
    image = read_image(strip)
    r = G.img_resolution
    assert image.shape[1:] == (5 * r + 6 * 2, 3) and image.shape[0] > r + 4  # the strip, then its labels
    tiles = [image[2:2 + r, 2 + i * (r + 2):2 + i * (r + 2) + r].mean() for i in range(5)]
    assert tiles[-1] > tiles[0], tiles


def test_w_images_of_a_stylegan3_model_match_its_synthesis(tiny_stylegan3):
    """``morph sample``'s images come from the StyleGAN3 synthesis (uint8 of the clamped image)."""
    G = load_model(tiny_stylegan3)
    w = np.random.default_rng(0).standard_normal((3, G.w_dim)).astype(np.float32)
    images = np.concatenate(list(w_images(G, w, 2)))
    assert images.shape == (3, G.img_resolution, G.img_resolution, 3)
    assert np.abs(images.mean(axis=(1, 2, 3)) - brightness(G, w)).max() < 1.0


# --- cluster and shards ----------------------------------------------------------------------------------------

FPS, SIZE = 10, 64
# 3 keyframes, 2 s transitions, 1-frame holds: 44 frames in 3 segments (20, 20, 4).
SCENE = f"""latents:
  a: {{seed: 1}}
  b: {{seed: 2}}
  c: {{seed: 3}}
renders:
  tour:
    fps: {FPS}
    size: {SIZE}
    path: [a, b, c]
    transition: {{duration: 2}}
    hold: 1f
"""
FRAMES = 3 * 1 + 2 * 2 * FPS + 1


@pytest.fixture(scope="module")
def threads() -> dict[str, str]:
    """The thread count of this process, for every render subprocess: the in-process cluster's workers draw
    with it, and a convolution's float result can depend on how many threads split it."""
    return {"OMP_NUM_THREADS": str(torch.get_num_threads())}


@pytest.fixture(scope="module")
def sg3_scene(tmp_path_factory, tiny_stylegan3) -> Path:
    return write_scene(tmp_path_factory.mktemp("sg3scene"), tiny_stylegan3, SCENE)


@pytest.fixture(scope="module")
def sg3_reference(sg3_scene, tmp_path_factory, threads) -> np.ndarray:
    """The StyleGAN3 scene rendered in one process."""
    folder = tmp_path_factory.mktemp("single")
    out = morph("render", str(sg3_scene), "--out", str(folder), "--cache", str(folder / "cache"), env_extra=threads)
    assert out.returncode == 0 and rendered(out) == FRAMES, out.stderr
    frames = decode_frames(folder / "tour.mp4", SIZE)
    assert len(frames) == FRAMES and frames.std(axis=0).mean() > 1  # the faces move
    return frames


def test_stylegan3_scene_on_a_cluster_is_the_local_render(sg3_scene, sg3_reference, tmp_path, threads):
    distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed "
                                                              "(pip install -e '.[cluster]')")
    # Two worker threads in this process (cheap), reached over TCP by the `morph render --cluster` subprocess.
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        out = morph("render", str(sg3_scene), "--out", str(tmp_path), "--cache", str(tmp_path / "cache"),
                    "--cluster", cluster.scheduler_address, env_extra=threads)
    assert out.returncode == 0, out.stderr
    assert f"3 segments into the cache ({FRAMES} rendered on 2 workers)" in out.stderr
    assert np.array_equal(decode_frames(tmp_path / "tour.mp4", SIZE), sg3_reference)


def test_stylegan3_scene_in_shards_is_the_local_render(sg3_scene, sg3_reference, tmp_path, threads):
    args = ("render", str(sg3_scene), "--out", str(tmp_path), "--cache", str(tmp_path / "cache"))
    first = morph(*args, "--shard", "1/2", env_extra=threads)
    second = morph(*args, "--shard", "2/2", env_extra=threads)
    final = morph(*args, env_extra=threads)
    assert first.returncode == second.returncode == final.returncode == 0, first.stderr + second.stderr + final.stderr
    counts = [rendered(run) for run in (first, second, final)]
    assert counts[0] > 0 and counts[1] > 0 and counts[2] == 0 and sum(counts) == FRAMES, counts
    assert np.array_equal(decode_frames(tmp_path / "tour.mp4", SIZE), sg3_reference)
