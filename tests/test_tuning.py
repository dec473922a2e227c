"""Pivotal tuning (``morph project --tune``) on the built-in model: the tuned generator draws the team photos
closer than the untuned one, its figures say so (before and after), it is cached and reused, and it is a
model file other commands take."""

from __future__ import annotations

import json

import numpy as np
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


def test_tuning_keeps_the_rest_of_latent_space(G):
    """Tuning one pivot towards another face moves that pivot's image more than the images of latents elsewhere
    (the locality term's purpose); the ratio is printed for the record."""
    import torch

    from morph.projection import Projection, synthesize
    from morph.projection.tuning import TuneSettings, tune

    rng = np.random.default_rng(0)
    with torch.no_grad():
        ws = G.mapping(torch.from_numpy(rng.standard_normal((6, G.z_dim)).astype(np.float32)), None)
    noise = [m.cpu() for m in G.noise_maps().values()]
    face = synthesize(G, [Projection(ws[1], noise, None, ws[1][None])])[0]  # the face the pivot should draw
    pivot = [Projection(ws[0], noise, face, ws[0][None])]
    tuned = tune(G, pivot, TuneSettings(steps=10, lr=1e-3, locality_every=2))
    far = [Projection(w, noise, face, w[None]) for w in ws[2:]]
    drift = np.abs(synthesize(tuned, far).astype(float) - synthesize(G, far)).mean()
    moved = np.abs(synthesize(tuned, pivot).astype(float) - synthesize(G, pivot)).mean()
    print(f"\nmean pixel change: at the pivot {moved:.1f}, at 4 other latents {drift:.1f}")
    assert np.abs(synthesize(tuned, pivot).astype(float) - face).mean() < np.abs(synthesize(G, pivot).astype(float)
                                                                                 - face).mean()
    assert drift < moved
