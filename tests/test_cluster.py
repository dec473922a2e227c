"""Rendering on a Dask cluster and in shards: same video as one process, faults survived, no frame twice."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed "
                                                          "(pip install -e '.[cluster]')")

from test_render import morph, rendered, tiny_model, write_scene  # noqa: E402,F401  (tiny_model: a fixture)

from morph.core.errors import MorphError  # noqa: E402
from morph.engine import cluster as morph_cluster  # noqa: E402
from morph.render.encode import decode_frames  # noqa: E402
from morph.render.job import segment_bounds  # noqa: E402

FPS, SIZE = 10, 64
# 4 keyframes, 4 s transitions, 2-frame holds: 129 frames in 7 segments of 20 frames (the last 9).
SCENE = f"""latents:
  a: {{seed: 1}}
  b: {{seed: 2}}
  c: {{seed: 3}}
  d: {{seed: 4}}
renders:
  tour:
    fps: {FPS}
    size: {SIZE}
    path: [a, b, c, d]
    transition: {{duration: 4}}
    hold: 2f
"""
FRAMES = 4 * 2 + 3 * 4 * FPS + 1
# CPU float results depend on how many threads split a convolution (a pixel may move by one level), so every
# process here, single or worker, uses the thread count that `--workers 2` gives each of its workers.
THREADS = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // 2))}


@pytest.fixture(scope="module")
def scene(tmp_path_factory, tiny_model) -> Path:
    return write_scene(tmp_path_factory.mktemp("scene"), tiny_model, SCENE)


@pytest.fixture(scope="module")
def reference(scene, tmp_path_factory) -> np.ndarray:
    """The scene's frames rendered in one process."""
    folder = tmp_path_factory.mktemp("single")
    out = morph("render", str(scene), "--out", str(folder), "--cache", str(folder / "cache"), env_extra=THREADS)
    assert out.returncode == 0 and rendered(out) == FRAMES, out.stderr
    return decode_frames(folder / "tour.mp4", SIZE)


@pytest.fixture(scope="module")
def client():
    """A 2-worker local cluster (one process and one thread each), shared by this module's tests."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR, env=THREADS) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def segment_files(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "segments").glob("*.mp4") if not p.name.startswith("."))


def models_loaded() -> int:
    """Generators held by this worker process (run on each worker)."""
    return len(sys.modules["morph.engine.cluster"]._MODELS)


def check_cluster_render(args: list[str], folder: Path, reference: np.ndarray) -> None:
    """Run ``morph render`` on a cluster into ``folder``: all frames on the 2 workers, the video identical
    to ``reference``, every segment cached under its final name only."""
    out = morph(*args)
    assert out.returncode == 0, out.stderr
    assert f"7 segments into the cache ({FRAMES} rendered on 2 workers)" in out.stderr
    assert np.array_equal(decode_frames(folder / "tour.mp4", SIZE), reference)
    assert len(segment_files(folder / "cache")) == len(segment_bounds(FRAMES, FPS))
    assert not list((folder / "cache").rglob("*.part")) and not list((folder / "cache").rglob(".shared-*"))


def test_cluster_video_is_identical_to_a_single_process_render(tmp_path, scene, reference, client):
    check_cluster_render(["render", str(scene), "--out", str(tmp_path), "--cache", str(tmp_path / "cache"),
                          "--cluster", client.scheduler.address], tmp_path, reference)
    loads = client.run(models_loaded)
    assert sorted(loads.values()) in ([0, 1], [1, 1]), loads  # each worker loaded the model at most once


@pytest.mark.slow  # starts a second cluster: ~15 s on two idle cores
def test_local_cluster_sending_segments_back_gives_the_identical_video(tmp_path, scene, reference):
    check_cluster_render(["render", str(scene), "--out", str(tmp_path), "--cache", str(tmp_path / "cache"),
                          "--workers", "2", "--cluster-transfer"], tmp_path, reference)


def test_killing_a_worker_mid_segment_still_yields_the_identical_video(tmp_path, scene, reference, client):
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "morph.cli", "render", str(scene), "--out", str(tmp_path), "--cache", str(cache),
           "--cluster", client.scheduler.address]
    victim = next(iter(client.run(os.getpid).values()))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((cache / "segments").glob(".*.part"))) < 2:
        time.sleep(0.005)  # until both workers are writing a segment
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert np.array_equal(decode_frames(tmp_path / "tour.mp4", SIZE), reference)
    # The killed worker's partial segment stayed under its temp name, never under a cache key.
    assert list((cache / "segments").glob(".*.part"))
    assert sorted(len(decode_frames(p, SIZE)) for p in segment_files(cache)) == \
        sorted(stop - start for start, stop in segment_bounds(FRAMES, FPS))
    assert victim not in client.run(os.getpid).values()


def test_shards_then_a_plain_render_generate_every_frame_once(tmp_path, scene, reference):
    args = ("render", str(scene), "--out", str(tmp_path), "--cache", str(tmp_path / "cache"))
    first = morph(*args, "--shard", "1/2", env_extra=THREADS)
    assert first.returncode == 0 and not (tmp_path / "tour.mp4").exists(), first.stderr
    second = morph(*args, "--shard", "2/2", env_extra=THREADS)
    final = morph(*args, env_extra=THREADS)
    assert second.returncode == 0 and final.returncode == 0, second.stderr + final.stderr
    counts = [rendered(run) for run in (first, second, final)]
    assert counts[0] > 0 and counts[1] > 0 and counts[2] == 0 and sum(counts) == FRAMES, counts
    assert np.array_equal(decode_frames(tmp_path / "tour.mp4", SIZE), reference)


@pytest.mark.parametrize("spec", ["0/2", "3/2", "2", "a/b", "1/0"])
def test_bad_shard_is_one_line(spec):
    with pytest.raises(MorphError) as err:
        morph_cluster.parse_shard(spec)
    assert str(err.value).startswith("--shard: not a shard") and "\n" not in str(err.value)


def test_unreachable_scheduler_is_one_line(monkeypatch):
    monkeypatch.setattr(morph_cluster, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(MorphError) as err:
        with morph_cluster.connect("tcp://127.0.0.1:1"):
            pass
    assert str(err.value).startswith("--cluster: cannot reach the Dask scheduler") and "\n" not in str(err.value)


def test_several_scenes_in_one_call_share_the_cluster(tmp_path, scene, reference, client):
    other = tmp_path / "other.yaml"
    other.write_text(scene.read_text().replace("tour:", "tour2:").replace("seed: 4", "seed: 5"))
    out = morph("render", str(scene), str(other), "--out", str(tmp_path), "--cache", str(tmp_path / "cache"),
                "--cluster", client.scheduler.address)
    assert out.returncode == 0, out.stderr
    assert f"cluster (scene.yaml): 7 segments into the cache ({FRAMES} rendered on 2 workers)" in out.stderr
    assert re.search(r"cluster \(other.yaml\): \d+ segments into the cache \(\d+ rendered on 2 workers\)", out.stderr)
    assert np.array_equal(decode_frames(tmp_path / "tour.mp4", SIZE), reference)
    assert len(decode_frames(tmp_path / "tour2.mp4", SIZE)) == FRAMES
    (tmp_path / "copy.yaml").write_text(scene.read_text())
    clash = morph("render", str(scene), str(tmp_path / "copy.yaml"), "--dry-run")
    assert clash.returncode == 2 and "both have a render named 'tour'" in clash.stderr


def test_a_shard_renders_projected_photos_with_their_noise(tmp_path):
    """Shards key and draw segments with a projected photo's optimised noise, as the local join does: the
    join after the only shard renders nothing."""
    photo = Path(__file__).resolve().parents[1] / "scenes" / "team" / "ada.png"
    builtin = Path(__file__).resolve().parents[1] / "morph" / "builtin" / "weights" / "generator.safetensors"
    if not builtin.is_file():
        pytest.skip("the built-in generator's weights are not in this checkout")
    scene = tmp_path / "s.yaml"
    scene.write_text(f"latents:\n  a: {{project: {photo}, steps: 4}}\n  b: {{seed: 2}}\n"
                     "renders:\n  r: {path: [a, b], transition: {duration: 10f}, fps: 10}\n")
    args = ("render", str(scene), "--out", str(tmp_path), "--cache", str(tmp_path / "cache"))
    shard = morph(*args, "--shard", "1/1", env_extra=THREADS)
    join = morph(*args, env_extra=THREADS)
    assert shard.returncode == 0 and join.returncode == 0, shard.stderr + join.stderr
    assert rendered(shard) == 11 and rendered(join) == 0, shard.stderr + join.stderr


def test_with_transfer_a_model_in_the_clients_cache_travels_to_workers_without_it(tmp_path, tiny_model, reference,
                                                                                   client):
    """A tuned or downloaded model lies in the client's cache, which workers with no shared file system cannot
    read: with ``--cluster-transfer`` the client sends the file, each worker keeps it under its temp folder
    (verified by hash), and the video is the single-process one."""
    import shutil
    import tempfile

    import torch

    from morph.engine.scenes import Distribution, RenderOptions, open_scene, render_scene

    cache = tmp_path / "cache"
    model = cache / "projections" / "tuned-0123.safetensors"
    model.parent.mkdir(parents=True)
    shutil.copyfile(tiny_model, model)
    loaded = open_scene(write_scene(tmp_path, model, SCENE), torch.device("cpu"), cache, quiet=True)

    class Elsewhere:
        """The client, whose workers lose sight of the model file once it has been sent."""

        def scatter(self, data, **kwargs):
            future = client.scatter(data, **kwargs)
            model.rename(tmp_path / "hidden.safetensors")
            return future

        def __getattr__(self, name):
            return getattr(client, name)

    options = RenderOptions(out=tmp_path / "out", cache_dir=cache, quiet=True)
    render_scene(loaded, ["tour"], options, Distribution(lambda: Elsewhere(), None, True))
    assert not model.exists()
    assert np.array_equal(decode_frames(tmp_path / "out" / "tour.mp4", SIZE), reference)
    kept = Path(tempfile.gettempdir()) / "morph-models" / loaded.G.info.sha256[:32] / model.name
    assert any(client.run(kept.is_file).values())
