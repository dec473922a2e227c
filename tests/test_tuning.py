"""Pivotal tuning (``morph project --tune``) on the built-in model: the tuned generator draws the team photos
closer than the untuned one, its figures say so (before and after), it is cached and reused, and it is a
model file other commands take."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TEAM, morph


def test_tune_lifts_psnr_and_is_cached(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["project", str(TEAM[0]), "--no-align", "--steps", "5", "--tune", "--tune-steps", "12",
            "--out", str(out), "--cache", str(cache), "--device", "cpu"]
    first = morph(*args)
    assert first.returncode == 0, first.stderr
    row = json.loads((out / f"{TEAM[0].stem}.json").read_text())
    assert row["psnr"] > row["psnr_before_tuning"] and row["tune_steps"] == 12
    assert "before tuning PSNR" in first.stdout
    cached = sorted((cache / "projections").glob("tuned-*.safetensors"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    again = morph(*args)
    assert again.returncode == 0 and cached[0].stat().st_mtime_ns == stamp  # reused, not tuned again
    info = morph("info", str(out / "tuned.safetensors"), "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["resolution"] == 64


def _pivot_towards_another_face(G):
    """One pivot (a mapped latent) whose photo is another latent's face, and four other latents: tuning must move
    the pivot's image a long way while the rest of latent space stays."""
    import torch

    from morph.projection import Projection, synthesize

    rng = np.random.default_rng(0)
    with torch.no_grad():
        ws = G.mapping(torch.from_numpy(rng.standard_normal((6, G.z_dim)).astype(np.float32)), None)
    noise = [m.cpu() for m in G.noise_maps().values()]
    face = synthesize(G, [Projection(ws[1], noise, None, ws[1][None])])[0]  # the face the pivot should draw
    return [Projection(ws[0], noise, face, ws[0][None])], [Projection(w, noise, face, w[None]) for w in ws[2:]], face


def test_tuning_keeps_the_rest_of_latent_space(G):
    """The locality term's purpose: for what the pivot's image gains towards its photo, the images of latents
    elsewhere move much less than without the term, and the pivot gains about as much (the figures are printed
    for the record)."""
    from dataclasses import replace

    from morph.projection import synthesize
    from morph.projection.tuning import TuneSettings, tune

    pivot, far, face = _pivot_towards_another_face(G)

    def gained_and_moved(settings: TuneSettings) -> tuple[float, float]:
        tuned = tune(G, pivot, settings)
        gained = (np.abs(synthesize(G, pivot).astype(float) - face).mean()
                  - np.abs(synthesize(tuned, pivot).astype(float) - face).mean())
        return gained, np.abs(synthesize(tuned, far).astype(float) - synthesize(G, far)).mean()

    gained, moved = gained_and_moved(TuneSettings(steps=10))
    alone, loose = gained_and_moved(replace(TuneSettings(steps=10), locality=0.0))
    print(f"\nmean pixel levels: the pivot's error fell by {gained:.1f}, 4 other latents moved {moved:.1f} "
          f"({moved / gained:.2f}); without the locality term {alone:.1f} and {loose:.1f} ({loose / alone:.2f})")
    assert gained > 0.8 * alone and moved / gained < 0.8 * loose / alone, (gained, moved, alone, loose)


def test_the_cli_tunes_as_many_steps_as_the_settings_say():
    """``morph project --tune-steps``' default is the tuning's own (the CLI does not import torch to read it)."""
    import typer

    from morph.cli import app
    from morph.projection.tuning import TuneSettings

    project = typer.main.get_command(app).commands["project"]
    assert {p.name: p.default for p in project.params}["tune_steps"] == TuneSettings().steps


def test_two_runs_that_need_one_tuned_model_tune_it_once(G, tmp_path, monkeypatch):
    """Two runs (cron jobs, shards) wanting the same tuned generator: one tunes, the other says whom it waits for
    and then reads the file the first wrote."""
    import threading
    import time

    from morph.projection import tuning
    from morph.render import job

    pivot, _, _ = _pivot_towards_another_face(G)
    said: list[str] = []
    monkeypatch.setattr(job, "log", said.append)
    real, calls, started = tuning.tune, [], threading.Event()

    def slow(*args, **kwargs):
        calls.append(threading.current_thread().name)
        started.set()
        time.sleep(1.0)  # long enough for the second run to find the lock taken
        return real(*args, **kwargs)

    monkeypatch.setattr(tuning, "tune", slow)
    paths = {}

    def run(name: str) -> None:
        paths[name] = tuning.tuned_model(G, pivot, tuning.TuneSettings(steps=2), cache_dir=tmp_path, quiet=True)[1]

    first = threading.Thread(target=run, args=("first",), name="first")
    first.start()
    assert started.wait(60)
    run("second")
    first.join()
    assert calls == ["first"] and paths["first"] == paths["second"]
    assert len(said) == 1 and "waiting for pid" in said[0], said


def test_the_rate_ramps_up_over_at_most_a_tenth_of_the_steps_and_falls_to_nothing():
    """The default run ramps up over its 20 warm-up steps and falls towards 0 over its last 30 %; a short run (the
    locality test's 10 steps) reaches the full rate after its first step instead of never."""
    from dataclasses import replace

    from morph.projection.tuning import TuneSettings, learning_rate

    s = replace(TuneSettings(), steps=300, lr=1.0, warmup=20, rampdown=0.3)
    rates = [learning_rate(k, s) for k in range(300)]
    assert rates[0] == 1 / 20 and rates[19] == 1.0 and rates[200] == 1.0
    assert rates[-1] < 1e-3 and all(a >= b for a, b in zip(rates[210:], rates[211:]))
    short = replace(s, steps=10, rampdown=0.0)
    assert [learning_rate(k, short) for k in range(10)] == [1.0] * 10


def test_frozen_parameters_stay_as_they_are(G):
    """``frozen`` names parameters by the ends of their names: those stay bit for bit, the rest move."""
    import torch

    from morph.projection.tuning import TuneSettings, tune

    pivot, _, _ = _pivot_towards_another_face(G)
    tuned = tune(G, pivot, TuneSettings(steps=2, frozen="affine.weight,affine.bias"))
    before = dict(G.synthesis.named_parameters())
    after = dict(tuned.synthesis.named_parameters())
    assert all(torch.equal(before[k], after[k]) for k in before if ".affine." in k)
    assert not torch.equal(before["b64.conv1.weight"], after["b64.conv1.weight"])


def test_a_stopped_tuning_resumes_where_it_stopped(G, tmp_path, monkeypatch):
    """Stopped (SIGTERM between steps) after 3 of 7 steps, tuning leaves a sealed checkpoint; the next call runs
    only the 4 remaining steps and gives the weights an uninterrupted run gives."""
    import pytest
    import torch

    from morph.core.runtime import Terminated
    from morph.projection import tuning
    from morph.projection.tuning import TuneSettings, tune

    pivot, _, _ = _pivot_towards_another_face(G)
    settings = TuneSettings(steps=7, lr=1e-3)
    whole = tune(G, pivot, settings)
    calls = []

    def stop_after(k):
        def check():
            calls.append(1)
            if len(calls) > k:
                raise Terminated()
        return check

    checkpoint = tmp_path / "tuned-x.resume.pt"
    monkeypatch.setattr(tuning, "check_stop", stop_after(3))
    with pytest.raises(Terminated):
        tune(G, pivot, settings, checkpoint=checkpoint, checkpoint_seconds=1e9)
    assert checkpoint.is_file() and (tmp_path / "tuned-x.resume.pt.json").is_file()
    calls.clear()
    monkeypatch.setattr(tuning, "check_stop", stop_after(100))
    resumed = tune(G, pivot, settings, checkpoint=checkpoint)
    assert len(calls) == 4  # steps 3..6 only
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_damaged_checkpoint_starts_over(G, tmp_path):
    """A checkpoint whose bytes differ from its record is removed and tuning starts from the untuned weights."""
    import torch

    from morph.core.cache import seal
    from morph.projection.tuning import TuneSettings, tune

    pivot, _, _ = _pivot_towards_another_face(G)
    checkpoint = tmp_path / "tuned-y.resume.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    seal(checkpoint)
    checkpoint.write_bytes(b"not a checkpoinT")
    settings = TuneSettings(steps=2, lr=1e-3)
    got, want = tune(G, pivot, settings, checkpoint=checkpoint), tune(G, pivot, settings)
    assert not checkpoint.exists()
    assert all(torch.equal(a, b) for a, b in zip(got.state_dict().values(), want.state_dict().values()))


TUNE_SCENE = """model: builtin
{top}
latents:
  ada: {{project: {photo}, steps: 2}}
  other: {{seed: 3}}
renders:
  r: {{format: png, size: 64, fps: 10, path: [ada, other], transition: {{duration: 3f}}}}
"""


def _tune_scene(folder, top: str):
    path = folder / f"scene-{abs(hash(top))}.yaml"
    path.write_text(TUNE_SCENE.format(top=top, photo=TEAM[0]))
    return path


def test_a_tuned_scene_renders_through_the_tuned_generator_cached(tmp_path, monkeypatch):
    """``tune: {steps: 2}``: every frame (the photo's and the seed's) is drawn by the tuned generator, so the frames
    differ from the untuned scene's and the untuned render's segments are not reused; a second render tunes
    nothing (tuning would fail here) and finds its output up to date."""
    import torch

    from morph.engine.scenes import RenderOptions, open_scene, render_scene
    from morph.projection import tuning
    from morph.render.encode import decode_frames

    options = RenderOptions(out=tmp_path / "out", cache_dir=tmp_path / "cache", quiet=True)

    def render(top: str):
        loaded = open_scene(_tune_scene(tmp_path, top), torch.device("cpu"), options.cache_dir, quiet=True)
        stats = render_scene(loaded, ["r"], options)["r"]
        frames = np.stack([decode_frames(f, 64) for f in sorted((options.out / "r").iterdir())])
        return loaded, stats, frames

    plain, plain_stats, plain_frames = render("")
    tuned, tuned_stats, tuned_frames = render("tune: {steps: 2}")
    assert tuned_stats.generated == tuned_stats.frames > 0 and tuned_stats.reused == 0
    assert tuned.G.info.sha256 != plain.G.info.sha256
    assert len(list((options.cache_dir / "projections").glob("tuned-*.safetensors"))) == 1
    assert plain_frames.shape == tuned_frames.shape
    assert all(np.abs(a.astype(int) - b).max() > 0 for a, b in zip(plain_frames, tuned_frames))  # every frame

    def refuse(*args, **kwargs):
        raise AssertionError("tuned again")
    monkeypatch.setattr(tuning, "tune", refuse)
    again, again_stats, again_frames = render("tune: {steps: 2}")
    assert again_stats.up_to_date and again.G.info.sha256 == tuned.G.info.sha256
    assert np.array_equal(again_frames, tuned_frames)


def test_a_scene_tunes_what_morph_project_tunes(tmp_path):
    """The same photo, steps and tuning settings give ``morph project --tune`` and a scene one cached generator."""
    import torch

    from morph.engine.scenes import open_scene

    cache = tmp_path / "cache"
    result = morph("project", str(TEAM[0]), "--steps", "2", "--tune", "--tune-steps", "2", "--out",
                   str(tmp_path / "out"), "--cache", str(cache), "--device", "cpu", "--quiet")
    assert result.returncode == 0, result.stderr
    made = sorted((cache / "projections").glob("*"))
    loaded = open_scene(_tune_scene(tmp_path, "tune: {steps: 2}"), torch.device("cpu"), cache, quiet=True)
    assert sorted((cache / "projections").glob("*")) == made  # nothing projected or tuned anew
    assert Path(loaded.G.info.path).name.startswith("tuned-")


@pytest.mark.parametrize("top, message", [
    ("tune: {stepz: 2}", "tune.stepz: unknown key 'stepz'; did you mean 'steps'?"),
    ("tune: {steps: 0}", "tune.steps: expected a whole number of steps, 1 to"),
    ("tune: {lr: 3e-4}", "YAML reads 3e-4 as text: write 3.0e-4"),
    ("tune: {lr: .nan}", "tune.lr: expected a number, true / false or a name, got nan"),
    ("tune: {loss: lpips}", "tune.loss: expected auto or one of"),
    ("tune: [steps]", "tune: expected a mapping, got a list"),
    ("encoder: nowhere.safetensors", "encoder: nowhere.safetensors: no such file"),
    ("identity: {weight: 0.1}", "identity: needs file:"),
])
def test_a_bad_photo_key_is_one_line_with_file_and_line(tmp_path, top, message):
    path = _tune_scene(tmp_path, top)
    result = morph("check", str(path))
    assert result.returncode != 0 and not result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}:2:") and message in lines[0], result.stderr


def test_tune_without_photos_is_one_line(tmp_path):
    path = tmp_path / "seeds.yaml"
    path.write_text("tune: true\nlatents: {a: {seed: 1}}\nrenders: {r: {format: png, size: 64, around: a, "
                    "duration: 2f}}\n")
    result = morph("check", str(path))
    assert result.returncode != 0 and "tune: tunes the generator to the scene's photos, but it has none" in \
        result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_check_describes_the_photos_encoder_and_tuning(tmp_path):
    path = _tune_scene(tmp_path, "encoder: none\ntune: {steps: 7, locality: 0.5}")
    result = morph("check", str(path), "--json", "--cache", str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    photos = json.loads(result.stdout)["photos"]
    assert photos["photos"] == 1 and photos["encoder"] is None and photos["identity"] is None
    assert photos["tune"]["steps"] == 7 and photos["tune"]["locality"] == 0.5 and photos["tune"]["lr"] == 2e-3
    text = morph("check", str(path), "--cache", str(tmp_path / "cache")).stdout
    assert "photos: 1, no encoder" in text and "tune: one generator for all the photos" in text and "steps 7" in text
    assert "(needs projection (2 steps))" in text
    assert photos["tuned"] == "needs tuning (7 steps, after the photos are projected)"


def test_check_says_whether_the_tuned_generator_is_in_the_cache_it_is_given(tmp_path):
    """The tuned file's key holds every pivot: once the projections are cached, ``morph check --cache`` names the
    steps tuning will take, then "cached" once a render has tuned (the same cache, given by ``--cache``)."""
    import torch

    from morph.engine.scenes import open_scene

    path, cache = _tune_scene(tmp_path, "encoder: none\ntune: {steps: 2}"), tmp_path / "cache"

    def said() -> tuple[str, str]:
        result = morph("check", str(path), "--json", "--cache", str(cache))
        assert result.returncode == 0, result.stderr
        plan = json.loads(result.stdout)
        return plan["photos"]["tuned"], "\n".join(plan["plan"])

    assert said()[0] == "needs tuning (2 steps, after the photos are projected)"
    from morph.builtin import load_builtin_generator
    from morph.projection.scene import project_scene
    from morph.scene import load_scene

    G = load_builtin_generator()
    project_scene(load_scene(path), G, cache, quiet=True)
    tuned, text = said()
    assert tuned == "needs tuning (2 steps)" and "ada" in text and "(cached)" in text
    open_scene(path, torch.device("cpu"), cache, quiet=True)
    tuned, text = said()
    assert tuned == "cached" and "drawing every latent (cached)" in text


def test_the_studio_checks_tune_as_morph_check_does(tmp_path):
    """The studio validates an edited scene's text itself (not through morph check): a bad ``tune:`` key is
    refused there too, before anything is projected."""
    from morph.engine.scenes import LoadedModels
    from morph.models.resolver import resolve_model
    from morph.scene import SceneError
    from morph.studio.frames import Frames

    frames = Frames(LoadedModels(), resolve_model("builtin", tmp_path), tmp_path / "cache", quiet=True)
    with pytest.raises(SceneError, match=r"scene.yaml:2:8: tune.stepz: unknown key 'stepz'; did you mean 'steps'"):
        frames.parse(TUNE_SCENE.format(top="tune: {stepz: 2}", photo=TEAM[0]), tmp_path / "scene.yaml")
    assert frames.parse(TUNE_SCENE.format(top="tune: {steps: 2}", photo=TEAM[0]), tmp_path / "scene.yaml").photos.tune


def test_the_studio_draws_a_tuned_scenes_latents_with_the_tuned_generator(tmp_path):
    """The studio's single-latent pictures (a keyframe, a seed, the mixer) come from the scene's own model: with
    ``tune:`` the tuned one, so what the artist tunes is what ``morph render`` draws."""
    import torch

    from morph.core.model import Noise
    from morph.engine.scenes import LoadedModels
    from morph.models.resolver import resolve_model
    from morph.render.job import generate
    from morph.studio.frames import Frames

    frames = Frames(LoadedModels(), resolve_model("builtin", tmp_path), tmp_path / "cache", quiet=True)
    path = _tune_scene(tmp_path, "tune: {steps: 2}")
    loaded = frames.prepare(frames.parse(path.read_text(), path))
    w = loaded.ws["ada"]
    assert loaded.G is not frames.G
    drawn = frames.look(loaded, w)
    noise = Noise(loaded.scene.noise)
    tuned = next(iter(generate(loaded.G, w[None], 1, noise, torch.device("cpu"))))[0]
    untuned = next(iter(generate(frames.G, w[None], 1, noise, torch.device("cpu"))))[0]
    assert np.array_equal(drawn, tuned) and np.abs(drawn.astype(int) - untuned).max() > 0
