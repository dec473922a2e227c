"""Pivotal tuning (``morph project --tune``) on the built-in model: the tuned generator draws the team photos
closer than the untuned one, its figures say so (before and after), it is cached and reused, and it is a
model file other commands take."""

from __future__ import annotations

import json

import numpy as np
from conftest import TEAM, morph

RATIO = 0.65  # the most latents elsewhere may move, as a share of what the pivot gains


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
    """The pivot's image gets closer to its photo by much more than the images of latents elsewhere change (the
    locality term's purpose); the figures are printed for the record."""
    from morph.projection import synthesize
    from morph.projection.tuning import TuneSettings, tune

    pivot, far, face = _pivot_towards_another_face(G)
    tuned = tune(G, pivot, TuneSettings(steps=10, lr=1e-3))
    gained = (np.abs(synthesize(G, pivot).astype(float) - face).mean()
              - np.abs(synthesize(tuned, pivot).astype(float) - face).mean())
    drift = np.abs(synthesize(tuned, far).astype(float) - synthesize(G, far)).mean()
    print(f"\nmean pixel levels: the pivot's error fell by {gained:.1f}, 4 other latents moved {drift:.1f}")
    assert gained > 0 and drift < RATIO * gained, (gained, drift)


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
