"""morph project: photos → W / W+ on the built-in model (quality floors, batching, cache, noise reuse),
scenes with ``{project: ...}`` keyframes, LPIPS weight files, and FFHQ alignment with dlib."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TEAM, needs_dlib

import morph.projection as projection
from morph.builtin import builtin_path
from morph.core.errors import MorphError
from morph.projection import Settings, align, attribute_agreement, project_photos, psnr, synthesize
from morph.projection import project as projecting
from morph.projection import scene as scene_projection

STEPS = 40  # leaves the mean face far behind at 64 px (measured: W+ 21.4-25.4 dB, W 20.8-24.9 dB, mean face
# 12.6-15.0 dB, attributes 18/18); the README's figures use 1000
PHOTOS = TEAM[:3]

needs_builtin = pytest.mark.skipif(not builtin_path("generator").is_file() or len(TEAM) < 3,
                                   reason="the built-in model's weights or scenes/team are missing")


@pytest.fixture(scope="module")
def noisy_model(G, tmp_path_factory) -> Path:
    """The built-in model with noise strength 0.2 in every layer (the interim one draws no noise at all), so
    that using the right noise maps shows in the pixels."""
    from morph.checkpoints import write_native

    state = {k: v.clone() for k, v in G.state_dict().items()}
    for k in state:
        if k.endswith("noise_strength"):
            state[k].fill_(0.2)
    path = tmp_path_factory.mktemp("model") / "noisy.safetensors"
    write_native(path, G.init_kwargs, state)
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def projected(G, cache):
    """W+ and W projections of three team photos (aligned already: --no-align), each space in one batch."""
    return {space: project_photos(PHOTOS, G, Settings(space=space, steps=STEPS, align=False), cache_dir=cache,
                                  quiet=True) for space in ("w+", "w")}


@needs_builtin
@pytest.mark.slow
@pytest.mark.parametrize("space,psnr_floor", [("w+", 18.5), ("w", 18.0)])
def test_reconstruction_beats_floors(G, projected, space, psnr_floor):
    from morph.builtin import load_builtin_classifier

    results = projected[space]
    recon = synthesize(G, results)
    targets = np.stack([r.target for r in results])
    mean_face = synthesize(G, [dataclasses.replace(results[0], w=G.mapping.w_avg[None].clone())] * len(results))
    assert results[0].w.shape == ((G.num_ws, G.w_dim) if space == "w+" else (1, G.w_dim))
    assert psnr(targets, recon).min() > psnr_floor
    assert psnr(targets, recon).mean() > psnr(targets, mean_face).mean() + 4  # it moved towards the photo
    assert attribute_agreement(load_builtin_classifier(), targets, recon).mean() >= 0.8


@needs_builtin
def test_batch_equals_loop(G, tmp_path):
    settings = Settings(steps=8, align=False)
    batch = project_photos(PHOTOS[:2], G, settings, cache_dir=tmp_path / "a", quiet=True)
    alone = [project_photos([p], G, settings, cache_dir=tmp_path / "b", quiet=True)[0] for p in PHOTOS[:2]]
    # Same random streams and losses; only float rounding of batched convolutions differs: the first step's
    # gradients agree to ~1e-6 of their size. Where rounding moves a pre-activation across lrelu's kink the
    # gradient changes more, and Adam's normalised steps carry that on, so w drifts by ~0.002 on average
    # (measured, at most ~0.02): far below its spread (~0.6 per dimension here). A batch that mixed its
    # photos' noise, targets or losses would move w by that spread and fail the image check below.
    for x, y in zip(batch, alone):
        diff = (x.w - y.w).abs()
        assert float(diff.mean()) < 1e-2 and float(diff.max()) < 1e-1, (float(diff.mean()), float(diff.max()))
        for a, b in zip(x.noise, y.noise):
            torch.testing.assert_close(a, b, atol=2e-2, rtol=0)
    assert psnr(synthesize(G, batch), synthesize(G, alone)).min() > 40


@needs_builtin
def test_second_projection_comes_from_the_cache(G, cache, projected, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("optimised again")

    monkeypatch.setattr(projecting, "optimise", fail)
    again = project_photos(PHOTOS, G, Settings(space="w+", steps=STEPS, align=False), cache_dir=cache, quiet=True)
    for a, b in zip(again, projected["w+"]):
        assert torch.equal(a.w, b.w) and all(torch.equal(x, y) for x, y in zip(a.noise, b.noise))
    with pytest.raises(AssertionError, match="optimised again"):  # other settings are another projection
        project_photos(PHOTOS[:1], G, Settings(space="w+", steps=STEPS + 1, align=False), cache_dir=cache)


@needs_builtin
def test_sigterm_stops_a_projection_between_steps(G, monkeypatch):
    from morph.core import runtime

    monkeypatch.setattr(runtime, "_stop_requested", True)
    target = torch.zeros(1, G.img_channels, G.img_resolution, G.img_resolution)
    with pytest.raises(runtime.Terminated):
        projection.optimise(G, target, projection.laplacian(), [0], steps=3, stats=(G.mapping.w_avg, 1.0))


@needs_builtin
def test_outputs_hold_latent_noise_and_images(noisy_model, tmp_path):
    from PIL import Image

    from morph.checkpoints.loading import load_generator
    from morph.motion.latents import read_w
    from morph.render.caption import text_band

    G = load_generator(noisy_model)
    p = project_photos(PHOTOS[:1], G, Settings(steps=5, align=False), cache_dir=tmp_path, quiet=True)[0]
    recon = synthesize(G, [p])
    written = projection.write_outputs(G, PHOTOS[0], p, recon[0], tmp_path, video=True)
    name = PHOTOS[0].stem
    assert [w.name for w in written] == [f"{name}.npy", f"{name}.noise.npz", f"{name}.png", f"{name}.mp4"]
    assert np.array_equal(read_w(tmp_path / f"{name}.npy"), p.w.numpy())
    with np.load(tmp_path / f"{name}.noise.npz") as noise:
        assert list(noise.files)[0] == "b4.conv1" and len(noise.files) == len(p.noise)
        assert all(np.array_equal(noise[k], n.numpy()) for k, n in zip(noise.files, p.noise))
    side = align.read_image(tmp_path / f"{name}.png")
    band = text_band(["photo"], 64).shape[0]
    assert side.shape == (64 + band + 4, 2 * 64 + 6, 3)  # photo | projection, each named under it
    assert np.array_equal(side[2:66, 2:66], p.target) and np.array_equal(side[2:66, 68:132], recon[0])
    assert (side[66:66 + band, 2:66] < 100).any() and not np.array_equal(side[66:66 + band, 2:66],
                                                                          side[66:66 + band, 68:132])
    text = Image.open(tmp_path / f"{name}.png").text
    assert text["morph:model_sha256"] == G.info.sha256 and text["morph:source"] == f"photo {PHOTOS[0].name}, projected"
    # The projection's own noise matters: the model's constant noise draws another image.
    own = synthesize(G, [dataclasses.replace(p, noise=[l.noise_const for l in G.synthesis.noise_layers()])])
    assert not np.array_equal(own, recon)


@needs_builtin
def test_project_command(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from morph.cli import app

    monkeypatch.setenv("MORPH_CACHE", str(tmp_path / "cache"))
    runner = CliRunner()
    ok = runner.invoke(app, ["project", str(PHOTOS[0]), "--no-align", "--space", "w", "--steps", "3",
                             "--out", str(tmp_path / "out")])
    assert ok.exit_code == 0, ok.output
    assert "PSNR" in ok.output and np.load(tmp_path / "out" / f"{PHOTOS[0].stem}.npy").shape == (1, 128)
    bad = runner.invoke(app, ["project", str(tmp_path / "nobody.png")])
    assert bad.exit_code != 0 and isinstance(bad.exception, MorphError)
    assert str(bad.exception) == f"{tmp_path / 'nobody.png'}: no such file"
    (tmp_path / "b").mkdir()
    twin = tmp_path / "b" / PHOTOS[0].name
    twin.write_bytes(PHOTOS[0].read_bytes())
    clash = runner.invoke(app, ["project", str(PHOTOS[0]), str(twin), "--out", str(tmp_path / "out")])
    assert clash.exit_code != 0 and f"would both write {PHOTOS[0].stem}.*" in str(clash.exception)


@needs_builtin
def test_scene_projects_once_and_renders_with_the_saved_noise(noisy_model, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from morph.checkpoints.loading import load_generator
    from morph.cli import app

    monkeypatch.setenv("MORPH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(scene_projection, "SCENE_STEPS", 6)
    for p in PHOTOS[:2]:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    scene = tmp_path / "scene.yaml"
    scene.write_text(f"model: {noisy_model}\nlatents:\n  a: {{project: {PHOTOS[0].name}}}\n  b: {{project: {PHOTOS[1].name}}}\n"
                     "  c: {seed: 3}\nrenders:\n  tour: {format: png, fps: 10, path: [a, b, c], "
                     "transition: {duration: 2f}, hold: 1f}\n")
    calls = []
    real = projection.optimise
    monkeypatch.setattr(projecting, "optimise", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    runner = CliRunner()
    check = runner.invoke(app, ["check", str(scene)])
    assert "needs projection (6 steps)" in check.output, check.output
    first = runner.invoke(app, ["render", str(scene), "--out", str(tmp_path / "out"), "--quiet"])
    assert first.exit_code == 0, first.output
    assert calls == [2]  # both photos, one batch
    assert "cached" in runner.invoke(app, ["check", str(scene)]).output
    frames = np.stack([align.read_image(f) for f in sorted((tmp_path / "out" / "tour").glob("*.png"))])
    second = runner.invoke(app, ["render", str(scene), "--out", str(tmp_path / "out2"), "--quiet"])
    assert second.exit_code == 0, second.output
    assert calls == [2]  # nothing projected again
    G = load_generator(noisy_model)
    cached = project_photos([tmp_path / p.name for p in PHOTOS[:1]], G, Settings(steps=6, align=False),
                            cache_dir=tmp_path / "cache", quiet=True)
    assert calls == [2]
    # Keyframe a is drawn with its own optimised noise (up to float rounding of batched vs single synthesis),
    # not with the model's constant noise.
    diff = np.abs(frames[0].astype(int) - synthesize(G, cached)[0])
    assert diff.max() <= 1 and diff.mean() < 0.05
    own = synthesize(G, [dataclasses.replace(cached[0], noise=[l.noise_const for l in G.synthesis.noise_layers()])])
    assert np.abs(frames[0].astype(int) - own[0]).mean() > 0.5


@needs_builtin
def test_lpips_from_a_torchvision_shaped_file(tmp_path):
    torch.manual_seed(0)
    state = projection.VGG16Features().state_dict()
    state |= {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate((64, 128, 256, 512, 512))}
    torch.save(state, tmp_path / "vgg16.pth")
    bind = projection.make_distance("ignored", torch.device("cpu"), [tmp_path / "vgg16.pth"])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    dist = bind(x)
    assert torch.allclose(dist(x), torch.zeros(2), atol=1e-6)
    y = x.flip(-1).requires_grad_(True)
    d = dist(y)
    assert d.shape == (2,) and (d > 0).all()
    d.sum().backward()
    assert y.grad.abs().sum() > 0
    (tmp_path / "bad.pth").write_bytes(b"not a state dict")
    with pytest.raises(MorphError, match="bad.pth: not a VGG16 state dict"):
        projection.make_distance("ignored", torch.device("cpu"), [tmp_path / "bad.pth"])


def test_read_image_keeps_pixels_whose_values_are_whitespace_bytes(tmp_path):
    from morph.render.images import write_png

    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3)).astype(np.uint8)
    image[0, 0] = (10, 32, 9)  # "\n", " ", "\t" right after the PPM header
    write_png(tmp_path / "dark.png", image)
    assert np.array_equal(align.read_image(tmp_path / "dark.png"), image)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(MorphError, match="bad.png: cannot read the image"):
        align.read_image(tmp_path / "bad.png")


def test_missing_vgg_file_is_one_line_before_anything_is_hashed(tmp_path):
    with pytest.raises(MorphError) as err:
        projection.resolve_settings(Settings(), tmp_path / "model.pkl", [tmp_path / "vgg16.pt"])
    assert str(err.value).startswith(f"{tmp_path / 'vgg16.pt'}: no such file") and "\n" not in str(err.value)


def test_missing_dlib_is_one_clear_line(tmp_path, monkeypatch):
    image = tmp_path / "me.png"
    from morph.render.images import write_png

    write_png(image, np.zeros((40, 60, 3), np.uint8))
    monkeypatch.setattr(align, "_predictor_path", lambda: None)
    align._dlib_models.cache_clear()
    with pytest.raises(MorphError) as err:
        align.aligned_face(image, 64)
    align._dlib_models.cache_clear()
    assert "\n" not in str(err.value) and "pip install 'morph[align]'" in str(err.value)
    assert align.aligned_face(image, 64, align=False).shape == (64, 64, 3)  # --no-align needs no dlib


@needs_dlib
def test_no_face_names_the_file(tmp_path):
    from morph.render.images import write_png

    image = tmp_path / "wall.png"
    write_png(image, np.full((80, 80, 3), 128, np.uint8))
    with pytest.raises(MorphError, match=r"wall.png: no face found") as err:
        align.aligned_face(image, 64)
    assert "\n" not in str(err.value)
    with pytest.raises(MorphError, match="cannot read the image"):
        align.read_image(tmp_path / "missing.png")


@needs_dlib
def test_astronaut_is_aligned_like_ffhq(tmp_path):
    from skimage import data

    from morph.render.images import write_png

    photo = tmp_path / "astronaut.png"
    write_png(photo, data.astronaut())
    with pytest.raises(MorphError, match="--face 2: the photo has 1 face"):
        align.aligned_face(photo, 256, face=2)
    crop = align.aligned_face(photo, 256)
    lm = align.face_landmarks(crop, "crop")
    eye_left, eye_right = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    angle = np.degrees(np.arctan2(*(eye_right - eye_left)[::-1]))
    assert abs(angle) < 1.0
    # FFHQ framing is a fixed point: the crop's own FFHQ frame is the whole crop (centre, size, no rotation).
    c, x, y = align.ffhq_frame(lm)
    assert np.abs(c - 127.5).max() < 0.02 * 256
    assert abs(np.hypot(*x) - 128) < 0.03 * 256 and abs(x[1]) < 0.02 * 128
    # Where FFHQ puts the eyes: level, a little above the centre, about a quarter of the width apart.
    assert 0.35 < (eye_left[1] + eye_right[1]) / 2 / 256 < 0.5
    assert 0.2 < (eye_right[0] - eye_left[0]) / 256 < 0.3


# --- StyleGAN3 -------------------------------------------------------------------------------------------------

def sg3_photo(G, folder: Path, seed: int = 11) -> Path:
    """A sample of ``G`` (psi 0.7) as a PNG at its resolution: a target it can draw exactly."""
    from morph.core.model import images_to_uint8
    from morph.motion.latents import seed_w
    from morph.render.images import write_png

    with torch.no_grad():
        image = images_to_uint8(G.synthesize(seed_w(G, seed, 0.7)[None].expand(1, G.num_ws, -1)))[0].numpy()
    path = folder / f"sample{seed}.png"
    write_png(path, image)
    return path


def test_stylegan3_synthesis_is_differentiable(tiny_stylegan3):
    """Projection needs d image / d ws: the filtered lrelu's gradient agrees with a finite difference."""
    from morph.models.loader import load_model

    torch.manual_seed(0)
    G = load_model(tiny_stylegan3).double()
    ws = G.mapping(torch.randn(1, G.z_dim), None).double().detach().requires_grad_(True)
    loss = lambda w: G.synthesize(w, dtype=torch.float64).square().mean()  # noqa: E731
    loss(ws).backward()
    d = torch.randn_like(ws)
    with torch.no_grad():
        numeric = (loss(ws + 1e-6 * d) - loss(ws - 1e-6 * d)) / 2e-6
    assert float((ws.grad * d).sum()) == pytest.approx(float(numeric), rel=1e-3)


@pytest.mark.parametrize("space", ["w+", "w"])
def test_stylegan3_projection_has_no_noise_and_no_coarse_stage(tiny_stylegan3, tmp_path, monkeypatch, space):
    from morph.models.loader import load_model

    G = load_model(tiny_stylegan3)
    photo = sg3_photo(G, tmp_path)
    assert projection.coarse_plan(G, 100) == projection.coarse_plan(G, 100, coarse=16) == (0, 100)
    calls = []
    real = G.synthesize
    monkeypatch.setattr(G, "synthesize", lambda ws, noise, **kw: calls.append((noise, kw)) or real(ws, noise, **kw))
    # 60 steps: on this tiny random network the path is chaotic (after 30 steps the gain differed by several
    # dB between CPUs and thread counts, once under 4 dB); after 60 it is well clear of the 4 dB asked of it.
    settings = Settings(space=space, steps=60, align=False)
    p = project_photos([photo], G, settings, cache_dir=tmp_path / "cache", quiet=True)[0]
    assert p.noise == [] and p.w.shape == ((G.num_ws, G.w_dim) if space == "w+" else (1, G.w_dim))
    assert all(noise.maps is None and not kw for noise, kw in calls)  # no noise maps, no `until`
    recon = synthesize(G, [p])
    mean_face = synthesize(G, [dataclasses.replace(p, w=G.mapping.w_avg[None].clone())])
    assert psnr(p.target[None], recon)[0] > psnr(p.target[None], mean_face)[0] + 4  # it moved towards the photo
    again = project_photos([photo], G, settings, cache_dir=tmp_path / "cache", quiet=True)[0]  # from the cache
    assert torch.equal(again.w, p.w) and again.noise == []


def test_stylegan3_project_command_and_scene(tiny_stylegan3, tmp_path, monkeypatch):
    """``morph project`` on a StyleGAN3 file writes the latent, the side-by-side and the figures (no noise file);
    a scene's ``{project: photo}`` renders its keyframe as the projection draws it, keyed without noise."""
    from typer.testing import CliRunner

    from morph.cli import app
    from morph.core.model import Noise
    from morph.models.loader import load_model
    from morph.scene import load_scene

    monkeypatch.setenv("MORPH_CACHE", str(tmp_path / "cache"))
    G = load_model(tiny_stylegan3)
    photo = sg3_photo(G, tmp_path)
    runner = CliRunner()
    ok = runner.invoke(app, ["project", str(photo), "--model", str(tiny_stylegan3), "--no-align", "--steps", "3",
                             "--encoder", "none", "--video", "--out", str(tmp_path / "out")])
    assert ok.exit_code == 0, ok.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == \
        [f"{photo.stem}.{ext}" for ext in ("json", "mp4", "npy", "png")]
    assert np.load(tmp_path / "out" / f"{photo.stem}.npy").shape == (G.num_ws, G.w_dim)

    monkeypatch.setattr(scene_projection, "SCENE_STEPS", 4)
    scene = tmp_path / "scene.yaml"
    scene.write_text(f"model: {tiny_stylegan3}\nlatents:\n  a: {{project: {photo.name}}}\n  b: {{seed: 3}}\n"
                     "renders:\n  r: {format: png, fps: 10, path: [a, b], transition: {duration: 2f}, hold: 1f}\n")
    assert "needs projection (4 steps)" in runner.invoke(app, ["check", str(scene)]).output
    done = runner.invoke(app, ["render", str(scene), "--out", str(tmp_path / "frames"), "--quiet"])
    assert done.exit_code == 0, done.output
    assert "cached" in runner.invoke(app, ["check", str(scene)]).output
    photos = projection.project_scene(load_scene(scene), G, quiet=True)
    assert photos.noise("r", "const") == Noise("const") and photos.model_key(G, "r") == G.info.sha256
    first = align.read_image(sorted((tmp_path / "frames" / "r").glob("*.png"))[0])
    expected = synthesize(G, list(photos.projections.values()))[0]
    assert np.abs(first.astype(int) - expected).max() <= 1
