"""Camera moves on StyleGAN3: the scene's ``camera:`` key, poses eased between keyframes and periodic orbits that
close their loops, per-frame transforms in the segment keys, shards and cluster tasks; refused on StyleGAN2."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import morph

from morph.engine.cluster import WorkerModel, render_task
from morph.engine.scenes import RenderOptions, open_scene
from morph.motion.latents import ModelDims
from morph.motion.schedule import Cycle, Motion, camera_poses, sample, timeline
from morph.render.encode import decode_frames
from morph.render.images import read_image
from morph.render.job import render_segment
from morph.scene import SceneError, parse_scene
from morph.stylegan3 import camera_transform, camera_transforms

ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the same float results in every process
SG3 = ModelDims(num_ws=8, w_dim=32, z_dim=32, c_dim=0, resolution=32,
                groups=(("coarse", range(0, 3)), ("middle", range(3, 8)), ("fine", range(8, 8))), family="stylegan3")


def scene_text(model: str, renders: str, directions: str = "") -> str:
    return f"""model: {model}
{directions}latents:
  a: {{seed: 1}}
  b: {{seed: 2}}
renders:
{renders}"""


ORBIT = """  orbit:
    format: png
    fps: 10
    around: a
    duration: 4s
    camera: {orbit: {radius: 0.15, period: 2s}, swing: {degrees: 8, period: 1s}}
"""


def parse(renders: str, dims: ModelDims = SG3):
    return parse_scene(scene_text("sg3.safetensors", renders), "scene.yaml", dims)


def test_render_camera_and_keyframe_poses_are_read():
    sc = parse("""  walk:
    path: [a, {b: {camera: {translate: [0.25, -0.1], rotate: 30}}}, a]
    camera: {rotate: 5}
""" + ORBIT)
    walk, orbit = sc.renders["walk"].motion.camera, sc.renders["orbit"].motion.camera
    assert walk.poses == ((0.0, 0.0, 5.0), (0.25, -0.1, 30.0), (0.0, 0.0, 5.0)) and walk.orbit is None
    assert orbit.poses == ((0.0, 0.0, 0.0),) and orbit.orbit.radius == 0.15 and orbit.swing.degrees == 8
    assert orbit.orbit.cycle == Cycle(2, 40) and orbit.swing.cycle == Cycle(4, 40)  # whole periods per loop
    assert sc.renders["walk"].frames == 61


def test_an_orbit_alone_sets_the_length_of_an_around_render():
    sc = parse("""  spin:
    around: a
    camera: {orbit: {radius: 0.1, period: 3s}}
""")
    assert sc.renders["spin"].frames == 90


@pytest.mark.parametrize("renders, message", [
    ("  r:\n    around: a\n    duration: 1s\n    camera: {translate: [0.1]}\n", "renders.r.camera.translate: expected [X, Y]"),
    ("  r:\n    around: a\n    duration: 1s\n    camera: {rotate: 1e9}\n", "renders.r.camera.rotate: expected degrees"),
    ("  r:\n    around: a\n    camera: {orbit: {radius: -1}}\n", "renders.r.camera.orbit.radius: expected a radius"),
    ("  r:\n    around: a\n    duration: 1s\n    camera: {zoom: 2}\n", "renders.r.camera: unknown key 'zoom'"),
    ("  r:\n    path: [a, {b: {camera: {orbit: {}}}}]\n", "renders.r.path[1].b.camera: unknown key 'orbit'"),
])
def test_bad_cameras_are_one_line_each(renders, message):
    with pytest.raises(SceneError) as err:
        parse(renders)
    assert len(err.value.problems) == 1 and message in err.value.problems[0], err.value.problems


def test_camera_on_stylegan2_is_refused_with_its_place(tmp_path):
    scene = tmp_path / "scene.yaml"
    scene.write_text(scene_text("builtin", "  r:\n    around: a\n    duration: 1s\n    camera: {rotate: 10}\n"))
    result = morph("check", str(scene))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{scene}:9:13: renders.r.camera: camera moves need a StyleGAN3 model") \
        and "stylegan2" in lines[0]


def test_poses_are_eased_like_w_and_orbits_close_the_loop():
    sc = parse("""  walk:
    path: [a, {b: {camera: {translate: [0.2, 0.1], rotate: 40}}}]
    transition: {duration: 10f, ease: in-out}
""" + ORBIT)
    latents = {"a": torch.zeros(8, 32), "b": torch.ones(8, 32)}
    walk = timeline(sc.renders["walk"].motion, latents, {}, lambda seed, n: torch.zeros(n, 32))
    t = torch.arange(11, dtype=torch.float64)
    poses = camera_poses(walk, t)
    assert poses.shape == (11, 3) and poses.dtype == torch.float64
    torch.testing.assert_close(poses[0], torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(poses[10], torch.tensor([0.2, 0.1, 40.0], dtype=torch.float64))
    u = sample(walk, t)[:, 0, 0].to(torch.float64)  # W's own progress from a (0) to b (1)
    torch.testing.assert_close(poses[:, 2], 40 * u, rtol=0, atol=1e-5)
    orbit = timeline(sc.renders["orbit"].motion, latents, {}, lambda seed, n: torch.zeros(n, 32))
    ends = camera_poses(orbit, torch.tensor([0.0, 40.0]))
    torch.testing.assert_close(ends[0], ends[1])
    torch.testing.assert_close(ends[0], torch.tensor([0.15, 0.0, 0.0], dtype=torch.float64))
    radii = camera_poses(orbit, torch.arange(40.0))[:, :2].norm(dim=1)
    torch.testing.assert_close(radii, torch.full((40,), 0.15, dtype=torch.float64))
    still = timeline(Motion(sc.renders["walk"].motion.path), latents, {}, lambda seed, n: torch.zeros(n, 32))
    assert camera_poses(still, t) is None


def test_batched_transforms_equal_the_single_ones():
    poses = torch.tensor([[0.1, -0.05, 7.0], [0.0, 0.3, -120.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    batched = camera_transforms(poses)
    for i, p in enumerate(poses.tolist()):
        a = math.radians(p[2])
        make = torch.tensor([[math.cos(a), math.sin(a), p[0]], [-math.sin(a), math.cos(a), p[1]], [0, 0, 1]],
                            dtype=torch.float64)
        torch.testing.assert_close(batched[i], torch.linalg.inv(make))
        torch.testing.assert_close(batched[i], camera_transform(p[:2], p[2]))


def frames(folder: Path) -> np.ndarray:
    return np.stack([read_image(p) for p in sorted(folder.glob("frame_*.png"))]).astype(np.float64)


def test_a_scene_renders_seeds_a_mix_an_add_and_a_seamless_orbit(tmp_path, tiny_stylegan3):
    np.save(tmp_path / "d.npy", np.random.default_rng(0).standard_normal((8, 32)).astype(np.float32))
    renders = ORBIT + """  tour:
    format: mp4
    size: 64
    fps: 10
    path: [a, m, e, b]
    transition: {duration: 5f}
"""
    text = scene_text(str(tiny_stylegan3), renders, "directions:\n  d: d.npy\n").replace(
        "  b: {seed: 2}\n", "  b: {seed: 2}\n  m: {mix: {coarse: a, rest: b}}\n  e: {from: a, add: {d: 2}}\n")
    scene = tmp_path / "scene.yaml"
    scene.write_text(text)
    result = morph("render", str(scene), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"),
                   env_extra=ENV)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "tour.mp4").stat().st_size > 0
    f = frames(tmp_path / "out" / "orbit")
    assert f.shape == (40, 32, 32, 3)
    inside = [np.abs(f[i + 1] - f[i]).mean() for i in range(len(f) - 1)]
    seam = np.abs(f[0] - f[-1]).mean()
    assert min(inside) > 0.5, inside  # the camera really moves the picture
    assert seam <= max(inside), (seam, inside)
    still = morph("render", str(scene), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"),
                  env_extra=ENV)
    assert "up to date" in still.stderr and still.returncode == 0


def test_poses_decide_segment_keys_and_travel_with_shards_and_tasks(tmp_path, tiny_stylegan3):
    scene = tmp_path / "scene.yaml"
    scene.write_text(scene_text(str(tiny_stylegan3), ORBIT))
    loaded = open_scene(scene, torch.device("cpu"))
    options = RenderOptions(out=tmp_path / "out", cache_dir=tmp_path / "cache")
    plan = loaded.job("orbit", options).plan(options.cache_dir)
    moved = tmp_path / "moved.yaml"
    moved.write_text(scene_text(str(tiny_stylegan3), ORBIT.replace("radius: 0.15", "radius: 0.2")))
    other = open_scene(moved, torch.device("cpu")).job("orbit", options).plan(options.cache_dir)
    assert [s.key for s in plan.segments] != [s.key for s in other.segments]
    assert [s.key for s in plan.segments] == [s.key for s in loaded.job("orbit", options).plan(options.cache_dir).segments]

    seg, job = plan.segments[0], plan.job
    local = tmp_path / "local" / seg.path.name
    render_segment(loaded.G, job.ws(seg), local, job.settings, job.noise, torch.device("cpu"), 4,
                   camera=job.poses(seg))
    task = tmp_path / "task" / seg.path.name
    task.parent.mkdir()
    task.write_bytes(render_task(job.ws(seg), str(tmp_path / "unused"), job.settings,
                                 WorkerModel(str(tiny_stylegan3), loaded.G.info.sha256, "cpu", 4), None, job.noise, None,
                                 job.poses(seg)))
    np.testing.assert_array_equal(decode_frames(task, 32), decode_frames(local, 32))
    plain = tmp_path / "plain" / seg.path.name
    render_segment(loaded.G, job.ws(seg), plain, job.settings, job.noise, torch.device("cpu"), 4)
    assert not np.array_equal(decode_frames(plain, 32), decode_frames(local, 32))  # the poses are drawn

    for k in (1, 2):
        shard = morph("render", str(scene), "--out", str(tmp_path / "sharded"), "--cache", str(tmp_path / "c2"),
                      "--shard", f"{k}/2", env_extra=ENV)
        assert shard.returncode == 0, shard.stderr
    joined = morph("render", str(scene), "--out", str(tmp_path / "sharded"), "--cache", str(tmp_path / "c2"),
                   env_extra=ENV)
    assert "(0 rendered" in joined.stderr, joined.stderr
    direct = morph("render", str(scene), "--out", str(tmp_path / "direct"), "--cache", str(tmp_path / "c3"),
                   env_extra=ENV)
    assert direct.returncode == 0
    np.testing.assert_array_equal(frames(tmp_path / "sharded" / "orbit"), frames(tmp_path / "direct" / "orbit"))
    np.testing.assert_array_equal(loaded.frames("orbit", [0, 7], torch.device("cpu")),
                                  frames(tmp_path / "direct" / "orbit")[[0, 7]].astype(np.uint8))


def test_a_path_on_beats_cycles_its_keyframes_poses(tmp_path, tiny_stylegan3):
    pytest.importorskip("librosa", reason="librosa is not installed (pip install -e '.[audio]')")
    from morph.sound.synth import clicks, write_wav

    write_wav(tmp_path / "beat.wav", clicks([0.5, 1.0, 1.5, 2.0, 2.5], 3.0))
    scene = tmp_path / "scene.yaml"
    scene.write_text(scene_text(str(tiny_stylegan3), """  beat:
    format: png
    fps: 10
    path: [a, {b: {camera: {rotate: 20}}}]
    transition: {on: onsets}
""", "audio: beat.wav\n"))
    from morph.scene import load_scene

    motion = load_scene(scene, cache_dir=tmp_path / "cache").renders["beat"].motion
    keys = motion.path.keys
    assert len(keys) > 2 and keys[:3] == ("a", "b", "a")
    assert motion.camera.poses == tuple((0.0, 0.0, 20.0 if k == "b" else 0.0) for k in keys)
