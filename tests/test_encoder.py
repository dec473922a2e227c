"""The image → W+ encoder: round trip on generator samples, refinement from its guess, its file (refused by
another model, resumable training), the projection cache key, the CLI, and the identity figure."""

from __future__ import annotations

import inspect
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TEAM, needs_dlib

import morph.projection as projection
from morph.builtin import builtin_path
from morph.core.errors import MorphError
from morph.projection import Recipe, Settings, align, optimise, project_photos, psnr, synthesize
from morph.projection import project as projecting
from morph.projection.encoder import encoder_for, load_encoder, read_encoder, save_encoder
from morph.stylegan2.networks import layer_groups

# Bounds with margin around what the shipped encoder measured on these 16 samples (psi 0.7, seeds 1000-1015):
# W+ error 0.083 (mean squared offset error in units of w's spread; the mean face is at 0.53), PSNR 37.3 dB
# (min 30.3; the mean face 15.5 dB).
W_ERROR_CEILING = 0.2
SAMPLE_PSNR_FLOOR = 30.0
# The shipped encoder alone on the team photos, per photo (the targets: 34 of 36 attributes, 22 dB).
TEAM_ATTRIBUTES_FLOOR = 34 / 6
TEAM_PSNR_FLOOR = 22.0

needs_encoder = pytest.mark.skipif(not builtin_path("encoder").is_file() or len(TEAM) < 3,
                                   reason="the built-in encoder's weights or scenes/team are missing")


@pytest.fixture(scope="module")
def other_model(G, tmp_path_factory) -> Path:
    """The built-in generator with one weight changed: another file, another sha256."""
    from morph.checkpoints import write_native

    state = {k: v.clone() for k, v in G.state_dict().items()}
    state["synthesis.b4.const"] += 0.01
    path = tmp_path_factory.mktemp("model") / "other.safetensors"
    write_native(path, G.init_kwargs, state)
    return path


def team(G, n: int) -> torch.Tensor:
    faces = np.stack([align.aligned_face(p, G.img_resolution, align=False) for p in TEAM[:n]])
    return torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1


@needs_encoder
def test_round_trip_on_generator_samples(G):
    from morph.motion.latents import map_z, z_from_seed

    enc = encoder_for(G, "auto")
    z = torch.cat([z_from_seed(1000 + i, G.z_dim) for i in range(16)])
    ws = map_z(G, z, psi=0.7)
    with torch.no_grad():
        images = G.synthesis(ws, noise_mode="const")
        guess = enc(images)
        recon = G.synthesis(guess, noise_mode="const")
    error = float(((guess - ws) / enc.w_scale).square().mean())
    mean_face = float(((G.mapping.w_avg - ws) / enc.w_scale).square().mean())
    assert error < W_ERROR_CEILING < mean_face, (error, mean_face)
    u8 = lambda x: ((x.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy())  # noqa: E731
    assert psnr(u8(images), u8(recon)).mean() > SAMPLE_PSNR_FLOOR


@needs_encoder
def test_encoder_then_refinement_beats_refinement_alone(G):
    x = team(G, 3)
    enc = encoder_for(G, "auto")
    cpu = torch.device("cpu")
    refine_loss = projection.default_loss(G.info.path, refine=True)  # what morph project does after the encoder
    stats = projection.w_stats(G)
    with torch.no_grad():
        guess = enc(x)
    steps = 20
    ours = optimise(G, x, projection.make_distance(refine_loss, cpu), [0, 1, 2], "w+", steps,
                    projection.refine_recipe(refine_loss), stats=stats, init=guess)
    alone = optimise(G, x, projection.make_distance(projection.default_loss(G.info.path), cpu), [0, 1, 2], "w+",
                     steps, Recipe(), stats=stats)
    want = np.stack([r.target for r in ours])
    better = psnr(want, synthesize(G, ours)) - psnr(want, synthesize(G, alone))
    assert better.min() > 0.5 and better.mean() > 1, better  # measured: +1.2 to +1.9 dB


@needs_encoder
def test_an_encoder_for_another_model_is_refused_in_one_line(other_model, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from morph.checkpoints.loading import load_generator
    from morph.cli import app

    with pytest.raises(MorphError) as err:
        load_encoder(builtin_path("encoder"), load_generator(other_model))
    assert "trained for another model" in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(str(builtin_path("encoder")))
    monkeypatch.setenv("MORPH_CACHE", str(tmp_path / "cache"))
    bad = CliRunner().invoke(app, ["project", str(TEAM[0]), "--no-align", "--model", str(other_model),
                                   "--encoder", str(builtin_path("encoder")), "--out", str(tmp_path / "out")])
    assert bad.exit_code != 0 and isinstance(bad.exception, MorphError)
    # auto finds NAME.encoder.safetensors beside a checkpoint, and refuses it the same way when it does not fit
    (other_model.parent / "other.encoder.safetensors").write_bytes(builtin_path("encoder").read_bytes())
    with pytest.raises(MorphError, match="trained for another model"):
        encoder_for(load_generator(other_model), "auto")
    (other_model.parent / "other.encoder.safetensors").unlink()
    assert encoder_for(load_generator(other_model), "auto") is None


def test_not_an_encoder_file_is_one_line(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "x.safetensors"), metadata={"format": "morph.classifier"})
    with pytest.raises(MorphError, match="x.safetensors: not a morph encoder"):
        read_encoder(tmp_path / "x.safetensors")
    with pytest.raises(MorphError, match="no such file"):
        encoder_for(type("G", (), {"info": type("I", (), {"path": "m.pkl"})()})(), tmp_path / "missing.safetensors")


@needs_encoder
def test_cache_key_changes_with_the_encoder(G, tmp_path, monkeypatch):
    enc = encoder_for(G, "auto")
    keys = {Settings(encoder=e).key("img", "model") for e in ("", enc.sha256, "0" * 64)}
    assert len(keys) == 3
    settings = Settings(steps=2, align=False)
    first = project_photos(TEAM[:1], G, settings, cache_dir=tmp_path, quiet=True, encoder=enc)
    calls = []
    real = projection.optimise
    signature = inspect.signature(real)
    monkeypatch.setattr(projecting, "optimise",
                        lambda *a, **k: calls.append(signature.bind(*a, **k).arguments) or real(*a, **k))
    again = project_photos(TEAM[:1], G, settings, cache_dir=tmp_path, quiet=True, encoder=enc)
    assert calls == [] and torch.equal(again[0].w, first[0].w)
    project_photos(TEAM[:1], G, settings, cache_dir=tmp_path, quiet=True)  # no encoder: another projection
    assert len(calls) == 1 and calls[0].get("init") is None


@needs_encoder
def test_steps_0_is_the_encoders_answer_with_figures(G, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from morph.cli import app

    monkeypatch.setenv("MORPH_CACHE", str(tmp_path / "cache"))
    ok = CliRunner().invoke(app, ["project", str(TEAM[0]), "--no-align", "--steps", "0", "--out", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert "PSNR" in ok.output and "attributes" in ok.output
    with torch.no_grad():
        guess = encoder_for(G, "auto")(team(G, 1))
    assert np.allclose(np.load(tmp_path / f"{TEAM[0].stem}.npy"), guess[0].numpy(), atol=1e-5)
    figures = json.loads((tmp_path / f"{TEAM[0].stem}.json").read_text())
    assert figures["steps"] == 0 and figures["psnr"] > 15 and 0 <= figures["attributes_agreeing"] <= 6
    side = align.read_image(tmp_path / f"{TEAM[0].stem}.png")
    assert side.shape[0] > 64 + 4 and (side[68:] < 128).any()  # a caption under the images


@needs_encoder
def test_scene_plan_says_the_encoder_is_used(tmp_path, monkeypatch):
    from morph.motion.latents import Project

    monkeypatch.setenv("MORPH_CACHE", str(tmp_path))
    from morph.checkpoints.loading import load_generator

    status = projection.projection_status(Project(str(TEAM[0])), load_generator(builtin_path("generator")))
    assert status == f"needs projection ({projection.REFINE_STEPS} steps after the encoder)"


def test_training_resumes_where_it_stopped(G, tmp_path, monkeypatch):
    from morph.core import runtime
    from morph.projection import encoder_training
    from morph.projection.encoder_training import TrainConfig, train

    config = TrainConfig(steps=3, batch=2, checkpoint_every=1)
    small = {"base": 16, "max_width": 32, "pyramid": 16}  # (torch 2.13 on the CPU segfaults in backward at base 8)
    straight = train(G, tmp_path / "a.safetensors", config, quiet=True, encoder_kwargs=small)
    calls = iter(range(10))

    def stop_at_third() -> None:
        if next(calls) == 2:
            raise runtime.Terminated()
    monkeypatch.setattr(encoder_training, "check_stop", stop_at_third)
    with pytest.raises(runtime.Terminated):
        train(G, tmp_path / "b.safetensors", config, quiet=True, encoder_kwargs=small)
    monkeypatch.undo()
    assert read_encoder(tmp_path / "b.safetensors")[1]["steps_done"] == "2"
    resumed = train(G, tmp_path / "b.safetensors", config, resume=True, quiet=True, encoder_kwargs=small)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    saved, meta = read_encoder(tmp_path / "b.safetensors")
    assert meta["model_sha256"] == G.info.sha256 and meta["steps_done"] == "3"
    save_encoder(tmp_path / "c.safetensors", saved, G.info.sha256)
    assert load_encoder(tmp_path / "c.safetensors", G).num_ws == G.num_ws


def test_resuming_under_another_schedule_is_one_line(G, tmp_path):
    from morph.projection.encoder_training import TrainConfig, checkpoint_path, train

    small = {"base": 16, "max_width": 32, "pyramid": 16}
    config = TrainConfig(steps=3, batch=2, checkpoint_every=1)
    out = tmp_path / "e.safetensors"
    train(G, out, config, quiet=True, encoder_kwargs=small, stop_at=1)
    before = checkpoint_path(out).read_bytes()
    with pytest.raises(MorphError) as err:
        train(G, out, replace(config, lr=1e-4), resume=True, quiet=True, encoder_kwargs=small)
    assert "another schedule: lr 0.002 (now 0.0001)" in str(err.value) and "\n" not in str(err.value)
    assert checkpoint_path(out).read_bytes() == before  # nothing overwritten
    resumed = train(G, out, replace(config, checkpoint_every=2), resume=True, quiet=True, encoder_kwargs=small)
    assert read_encoder(out)[1]["steps_done"] == "3" and resumed is not None  # how often it saves is no change


@needs_dlib
def test_identity_of_the_astronaut(tmp_path):
    from skimage import data

    from morph.projection.quality import IDENTITY_SAME, figures, identity
    from morph.render.images import write_png

    photo = tmp_path / "astronaut.png"
    write_png(photo, data.astronaut())
    crop = align.aligned_face(photo, 256)
    same = identity(crop, crop)
    assert same["identity"] > 0.999 and same["identity_distance"] < 1e-3
    noisy = np.clip(crop + np.random.default_rng(0).normal(0, 8, crop.shape), 0, 255).astype(np.uint8)
    near = identity(crop, noisy)
    assert near["identity"] > 0.9 and near["identity_distance"] < IDENTITY_SAME
    assert identity(crop, np.full_like(crop, 128)) is None  # no face in the reconstruction
    rows = figures(crop[None], noisy[None], builtin=False)
    assert rows[0]["identity"] == pytest.approx(near["identity"]) and rows[0]["psnr"] > 25


def test_encoder_train_command(G, tmp_path):
    from typer.testing import CliRunner

    from morph.cli import app

    runner = CliRunner()
    out = tmp_path / "builtin.encoder.safetensors"
    ok = runner.invoke(app, ["encoder", "train", str(out), "--model", "builtin", "--steps", "1",
                             "--batch-size", "2", "--device", "cpu", "--quiet"])
    assert ok.exit_code == 0, ok.output
    enc, meta = read_encoder(out)
    assert meta["model_sha256"] == G.info.sha256 and enc.num_ws == G.num_ws
    assert (tmp_path / "builtin.encoder.safetensors.train.pt").is_file()
    bad = runner.invoke(app, ["encoder", "train", str(tmp_path / "x.pt"), "--model", "builtin"])
    assert bad.exit_code != 0 and "safetensors format" in str(bad.exception)


def test_photo_folder_reads_crops_and_refuses_an_empty_folder(tmp_path):
    import shutil

    from morph.projection.encoder_training import PhotoFolder

    (tmp_path / "empty").mkdir()
    with pytest.raises(MorphError, match="no photos here") as err:
        PhotoFolder(tmp_path / "empty", 64)
    assert "\n" not in str(err.value) and str(err.value).startswith(str(tmp_path / "empty"))
    for i, path in enumerate(TEAM[:2]):
        shutil.copy(path, tmp_path / f"{i}.png")
    folder = PhotoFolder(tmp_path, 32)
    batch = folder(torch.Generator().manual_seed(0), 16)
    assert batch.shape == (16, 3, 32, 32) and folder.images.shape == (2, 3, 32, 32)
    as_drawn = [[torch.equal(b, image) for image in folder.images] for b in batch]
    mirrored = [[torch.equal(b, image.flip(-1)) for image in folder.images] for b in batch]
    assert all(any(a) or any(m) for a, m in zip(as_drawn, mirrored))  # every image is a photo or its mirror
    assert any(map(any, as_drawn)) and any(map(any, mirrored)) and batch.min() >= -1 and batch.max() <= 1


def test_photos_join_each_batch_and_init_starts_from_a_file(G, tmp_path):
    from morph.projection.encoder_training import TrainConfig, train

    small = {"base": 16, "max_width": 32, "pyramid": 16}
    asked = []

    def faces(index: int):
        def photos(gen: torch.Generator, n: int) -> torch.Tensor:
            asked.append(n)
            return team(G, index + 1)[index:].expand(n, -1, -1, -1)
        return photos
    config = TrainConfig(steps=2, batch=4, photo_share=0.5, checkpoint_every=1)
    first = train(G, tmp_path / "a.safetensors", config, quiet=True, encoder_kwargs=small, photos=faces(0))
    assert asked == [2, 2]
    other = train(G, tmp_path / "b.safetensors", config, quiet=True, encoder_kwargs=small, photos=faces(1))
    assert not torch.allclose(first.heads["coarse"].weight, other.heads["coarse"].weight)  # the photos are learnt
    frozen = TrainConfig(steps=1, batch=2, lr=0.0)
    tuned = train(G, tmp_path / "c.safetensors", frozen, quiet=True, init=tmp_path / "a.safetensors")
    for (name, a), b in zip(first.named_parameters(), tuned.parameters()):
        assert torch.allclose(a, b, atol=1e-2, rtol=1e-2), name  # the file's float16 weights, unchanged at lr 0
    assert tuned.config == first.config
    start = json.loads(read_encoder(tmp_path / "c.safetensors")[1]["initialised_from"])
    assert start["file"] == "a.safetensors" and len(start["sha256"]) == 64
    with pytest.raises(MorphError, match="none were given") as err:
        train(G, tmp_path / "d.safetensors", TrainConfig(steps=1, batch=2, photo_share=0.5), quiet=True)
    assert "\n" not in str(err.value)
    with pytest.raises(MorphError, match="leaves no generator samples"):
        train(G, tmp_path / "d.safetensors", TrainConfig(steps=1, batch=2, photo_share=0.9), quiet=True,
              photos=faces(0))
    assert not (tmp_path / "d.safetensors").exists()


def test_encoder_train_command_with_photos_and_init(G, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from morph.cli import app

    (tmp_path / "photos").mkdir()
    for path in TEAM[:2]:
        shutil.copy(path, tmp_path / "photos" / path.name)
    start = tmp_path / "start.safetensors"
    small = CliRunner().invoke(app, ["encoder", "train", str(start), "--model", "builtin", "--steps", "1",
                                     "--batch-size", "2", "--device", "cpu", "--quiet"])
    assert small.exit_code == 0, small.output
    out = tmp_path / "tuned.safetensors"
    ok = CliRunner().invoke(app, ["encoder", "train", str(out), "--model", "builtin", "--steps", "1",
                                  "--batch-size", "4", "--photos", str(tmp_path / "photos"), "--photo-share", "0.5",
                                  "--init", str(start), "--device", "cpu", "--quiet"])
    assert ok.exit_code == 0, ok.output
    meta = read_encoder(out)[1]
    assert json.loads(meta["training"])["photo_share"] == 0.5
    assert json.loads(meta["initialised_from"])["file"] == "start.safetensors"
    missing = CliRunner().invoke(app, ["encoder", "train", str(out), "--model", "builtin",
                                       "--init", str(tmp_path / "nope.safetensors")])
    assert missing.exit_code != 0 and "no such file" in str(missing.exception)


@needs_encoder
def test_shipped_encoder_is_the_scripts_last_stage_and_reads_the_team(G):
    """The shipped file holds the training script's finished last stage, and alone (no refinement) it
    keeps the team photos' attributes: what the photo stage was added for."""
    from morph.builtin import load_builtin_classifier
    from morph.core.model import images_to_uint8
    from morph.projection import attribute_agreement
    from morph.training.train_encoder import STAGES, finished

    *earlier, (_, last, _) = STAGES
    assert finished(builtin_path("encoder"), last)
    assert not any(finished(builtin_path("encoder"), config) for _, config, _ in earlier)
    x = team(G, len(TEAM))
    with torch.no_grad():
        recon = images_to_uint8(G.synthesis(encoder_for(G, "auto")(x), noise_mode="const")).numpy()
    want = images_to_uint8(x).numpy()
    clf = load_builtin_classifier()
    agreed = attribute_agreement(clf, want, recon).sum() * len(clf.attributes)
    assert agreed >= TEAM_ATTRIBUTES_FLOOR * len(TEAM) and psnr(want, recon).mean() > TEAM_PSNR_FLOOR, agreed


def test_coarse_stage_compares_the_intermediate_image(G, monkeypatch):
    assert projection.coarse_plan(G, 100) == (0, 100)  # 64 px: nothing to save
    assert projection.coarse_plan(G, 100, coarse=32) == (32, 50)
    assert projection.coarse_plan(G, 100, coarse=0) == (0, 100)
    sizes = []
    real = G.synthesis.forward
    monkeypatch.setattr(G.synthesis, "forward", lambda *a, **k: sizes.append(k.get("until")) or real(*a, **k))
    x = team(G, 1)
    out = optimise(G, x, projection.laplacian(), [0], "w+", 4, stats=projection.w_stats(G, 1000), coarse=32,
                   full_steps=1)
    assert sizes == [32, 32, 32, None] and out[0].w.shape == (G.num_ws, G.w_dim)
    with torch.no_grad():
        assert G.synthesis(out[0].ws(G.num_ws)[None], until=16).shape[-1] == 16


@needs_encoder
def test_shipped_encoder_fits_the_weights_budget(G):
    enc, meta = read_encoder(builtin_path("encoder"))
    assert builtin_path("encoder").stat().st_size <= 5 * 2 ** 20
    assert meta["model_sha256"] == G.info.sha256 and int(meta["steps_done"]) > 0


def test_figures_with_lpips_and_the_caption(tmp_path):
    from morph.projection.quality import figures
    from morph.render.caption import add_caption, describe

    torch.manual_seed(0)
    torch.save(projection.VGG16Features().state_dict(), tmp_path / "vgg16.pth")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    b = a.copy()
    b[1] = 255 - b[1]
    rows = figures(a, b, builtin=False, vgg=[tmp_path / "vgg16.pth"], real=False)
    assert rows[0]["lpips"] == pytest.approx(0, abs=1e-6) and rows[1]["lpips"] > 0
    assert "identity" not in rows[0] and rows[0]["psnr"] > 90
    line = describe(rows[1])
    assert line.startswith("PSNR ") and "LPIPS" in line
    out = add_caption(np.zeros((20, 200, 3), np.uint8), [line])
    assert out.shape[0] > 20 and out.shape[1:] == (200, 3) and (out[20:] < 128).any() and (out[20:] == 255).any()


# --- StyleGAN3 -------------------------------------------------------------------------------------------------

def test_encoder_heads_follow_stylegan3_layer_groups(tmp_path):
    """A StyleGAN3 encoder reads its groups from the model (by cutoff, not StyleGAN2's blocks) and keeps them in
    its file; a StyleGAN2 encoder's header stays as it was."""
    from morph.projection.encoder import for_model
    from morph.stylegan2 import Generator as Generator2
    from morph.stylegan3 import Generator

    G3 = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=32, img_channels=3, channel_base=256, channel_max=8)
    enc = for_model(G3, base=16, max_width=32, pyramid=16)
    assert enc.groups == {k: r for k, r in G3.layer_groups().items() if len(r)}
    assert enc.groups != {k: r for k, r in layer_groups(G3.num_ws).items() if len(r)}  # a case where they differ
    save_encoder(tmp_path / "e.safetensors", enc, "0" * 64)
    back, meta = read_encoder(tmp_path / "e.safetensors")
    assert back.groups == enc.groups and "layer_groups" in json.loads(meta["config"])
    G2 = Generator2(z_dim=8, c_dim=0, w_dim=8, img_resolution=32, img_channels=3,
                    synthesis_kwargs=dict(channel_base=256, channel_max=8))
    assert "layer_groups" not in for_model(G2, base=16, max_width=32, pyramid=16).config
    config = {**enc.config, "layer_groups": {"coarse": [0, 3], "fine": [4, G3.num_ws]}}  # ws 3 in no group
    from safetensors.torch import save_file

    save_file({}, str(tmp_path / "bad.safetensors"), metadata={"format": "morph.encoder", "version": "1",
                                                               "config": json.dumps(config)})
    with pytest.raises(MorphError, match="invalid encoder configuration"):
        read_encoder(tmp_path / "bad.safetensors")


def test_encoder_trains_on_stylegan3_and_starts_its_projection(tiny_stylegan3, tmp_path, monkeypatch):
    """40 steps on a tiny random StyleGAN3 (the image loss back through its synthesis): the guess beats the mean
    face on held-out samples, and projection starts from it (``--encoder auto`` beside the checkpoint)."""
    import shutil

    from test_projection import sg3_photo
    from typer.testing import CliRunner

    from morph.cli import app
    from morph.core.model import images_to_uint8
    from morph.models.loader import load_model
    from morph.projection.encoder import beside
    from morph.projection.encoder_training import TrainConfig, sample_batch, train

    model = tmp_path / "sg3.safetensors"
    shutil.copy(tiny_stylegan3, model)
    G = load_model(model)
    config = TrainConfig(steps=40, batch=8, checkpoint_every=40)
    enc = train(G, beside(model), config, quiet=True, encoder_kwargs={"base": 16, "max_width": 32, "pyramid": 16})
    ws, images = sample_batch(G, 16, torch.Generator().manual_seed(99), config)  # not a training batch
    with torch.no_grad():
        guess = images_to_uint8(G.synthesize(enc(images))).numpy()
        mean_face = images_to_uint8(G.synthesize(enc.w_avg.expand(16, G.num_ws, -1).contiguous())).numpy()
    truth = images_to_uint8(images).numpy()
    assert psnr(truth, guess).mean() > psnr(truth, mean_face).mean() + 3
    assert (psnr(truth, guess) > psnr(truth, mean_face)).mean() >= 0.9

    loaded = encoder_for(G, "auto")
    assert loaded is not None and loaded.path == str(beside(model))
    photo = sg3_photo(G, tmp_path)
    target = torch.from_numpy(align.aligned_face(photo, G.img_resolution, align=False)).permute(2, 0, 1)[None]
    with torch.no_grad():
        first = loaded(target.float() / 127.5 - 1)[0]
    kept = project_photos([photo], G, Settings(steps=0, align=False), cache_dir=tmp_path / "c", encoder=loaded)[0]
    assert torch.equal(kept.w, first) and kept.noise == []
    monkeypatch.setenv("MORPH_CACHE", str(tmp_path / "cache"))
    run = CliRunner().invoke(app, ["project", str(photo), "--model", str(model), "--no-align", "--steps", "3",
                                   "--out", str(tmp_path / "out")])
    assert run.exit_code == 0, run.output
    assert json.loads((tmp_path / "out" / f"{photo.stem}.json").read_text())["encoder"] == str(beside(model))


def test_the_encoders_hash_is_read_once_per_version_of_the_file(tmp_path, monkeypatch):
    """``morph check`` asks for an encoder's hash per photo (twice with ``tune:``): a 1.2 GB pSp file is read once,
    and again only when the file changes."""
    from morph.projection import encoder

    path = tmp_path / "enc.bin"
    path.write_bytes(b"one")
    reads = []
    monkeypatch.setattr(encoder, "file_sha256", lambda p: reads.append(p) or f"sha-{Path(p).read_bytes()}")
    first = [encoder.encoder_sha256(path) for _ in range(3)]
    path.write_bytes(b"two!")
    second = encoder.encoder_sha256(path)
    assert len(reads) == 2 and first == [first[0]] * 3 and second != first[0]
