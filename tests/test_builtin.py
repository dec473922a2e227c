"""The built-in model: latent→face targets, the classifier format, and the shipped weights'
behaviour (load time, diversity, style mixing, classifier accuracy)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from morph.builtin import builtin_path
from morph.builtin.classifier import AttributeClassifier, load_classifier, save_classifier
from morph.core.errors import CheckpointError
from morph.models.resolver import is_builtin, resolve_model
from morph.training.latent import (
    ATTRIBUTE_FIELD,
    COLOUR_FIELDS,
    LATENT_DIM,
    LEVEL,
    MIX_CUTOFF,
    coords,
    latent_from_params,
    mix_coords,
    params_from_latent,
    render_targets,
    sphere_cdf,
    sphere_ppf,
)
from morph.training.toyfaces import ATTRIBUTES, ambiguous, labels, render, sample_params, team_params
from morph.training.toyfaces.latent import FIELDS, params_from_normal, params_from_uniform, uniform_from_params

# ------------------------------------------------------------------ without the weights

def test_uniforms_reproduce_sample_params():
    u = np.random.default_rng(5).random((40, len(FIELDS)))
    a, b = params_from_uniform(u), sample_params(5, 40)
    for name, column in a.columns().items():
        assert np.array_equal(column, getattr(b, name)), name
    back = params_from_uniform(uniform_from_params(b))
    for name, column in back.columns().items():
        assert np.allclose(column.astype(float), getattr(b, name).astype(float), atol=1e-3), name
    assert len(params_from_normal(np.zeros((2, len(FIELDS))))) == 2


def test_sphere_coordinates_are_uniform_and_invertible():
    x = coords(np.random.default_rng(0).standard_normal((4000, LATENT_DIM)))
    u = sphere_cdf(x)
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.std() - 12 ** -0.5) < 0.01
    counts = np.histogram(u, 10, (0, 1))[0]
    assert counts.min() > 0.9 * counts.mean()
    t = np.linspace(-4, 4, 17)
    assert np.allclose(sphere_ppf(sphere_cdf(t)), t, atol=1e-8)


def test_targets_match_the_renderer_and_blend_only_near_steps():
    z = np.random.default_rng(1).standard_normal((24, LATENT_DIM))
    soft = render_targets(coords(z))
    hard = render(params_from_latent(z), 64).transpose(0, 3, 1, 2) / 127.5 - 1
    assert soft.shape == (24, 3, 64, 64) and soft.dtype == np.float32
    assert np.abs(soft - hard).mean() < 0.01
    # a latent exactly on the glasses step is a half-and-half blend of with and without
    x = coords(z[:1]).copy()
    k = FIELDS.index("glasses")
    x[0, k] = sphere_ppf(0.45)
    on, off = x.copy(), x.copy()
    on[0, k], off[0, k] = -3, 3
    mid = render_targets(x)
    assert np.allclose(mid, 0.5 * (render_targets(on) + render_targets(off)), atol=0.02)


def test_mixing_takes_coarse_fields_from_a_and_colours_from_b():
    xa, xb = np.zeros((1, LATENT_DIM)), np.ones((1, LATENT_DIM))
    mixed = mix_coords(xa, xb, np.array([MIX_CUTOFF]))[0]
    for k, name in enumerate(FIELDS):
        assert mixed[k] == (1.0 if name in COLOUR_FIELDS else 0.0), name
    assert LEVEL["turn"] < LEVEL["smile"] < LEVEL["skin"]
    assert set(ATTRIBUTE_FIELD) == set(ATTRIBUTES)


def test_latent_from_params_finds_the_team():
    team = team_params()
    back = params_from_latent(latent_from_params(team))
    y, y_back = labels(team), labels(back)
    for a in ("glasses", "beard", "hair_long"):
        assert np.array_equal(y[a], y_back[a]), a


def test_classifier_file_round_trip(tmp_path):
    torch.manual_seed(0)
    model = AttributeClassifier(ATTRIBUTES, ("turn",), widths=(4, 4, 8, 8), cont_mean=[0.0], cont_std=[0.5]).eval()
    path = tmp_path / "c.safetensors"
    save_classifier(path, model, {"note": "test"})
    loaded = load_classifier(path)
    images = render(sample_params(0, 3), 64)
    a, b = model.predict(images), loaded.predict(images)
    assert np.allclose(a["probs"], b["probs"], atol=1e-6) and np.allclose(a["turn"], b["turn"], atol=1e-6)
    assert loaded.metadata["note"] == "test"
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    with pytest.raises(CheckpointError):
        load_classifier(tmp_path / "bad.safetensors")


def test_builtin_name_resolves():
    assert is_builtin("builtin") and is_builtin(" Builtin ") and not is_builtin("builtin.pkl")
    assert resolve_model("some/file.pkl") == Path("some/file.pkl")
    if builtin_path().is_file():
        assert resolve_model("builtin") == builtin_path()


# ------------------------------------------------------------------ the shipped weights

def _need(name: str):
    path = builtin_path(name)
    if not path.is_file():
        pytest.skip(f"built-in {name} weights not trained yet ({path} missing): see python -m morph.builtin.train_{name}")
    return path


@pytest.fixture(scope="module")
def generator():
    _need("generator")
    from morph.checkpoints.loading import load_generator

    return load_generator(resolve_model("builtin"))


@pytest.fixture(scope="module")
def classifier():
    return load_classifier(_need("classifier"))


def test_builtin_loads_fast():
    _need("generator")
    from morph.checkpoints.loading import load_generator

    load_generator(builtin_path())  # imports and file cache warm
    start = time.perf_counter()
    G = load_generator(resolve_model("builtin"))
    assert time.perf_counter() - start < 1.0
    assert G.img_resolution >= 64 and G.info.format == "morph"
    assert G.mapping.w_avg.abs().sum() > 0  # tracked during training, so truncation works


def test_samples_are_diverse_faces(generator, classifier):
    torch.manual_seed(0)
    with torch.no_grad():
        img = generator(torch.randn(16, generator.z_dim), None, noise_mode="const")
    flat = img.reshape(16, -1)
    dist = (flat[:, None] - flat[None]).abs().mean(-1)
    off_diagonal = dist[~torch.eye(16, dtype=torch.bool)]
    assert off_diagonal.min() > 0.05, off_diagonal.min()  # mean |difference| in [-1, 1] units
    pred = classifier.predict(img)
    probs = pred["probs"]
    # a face to the classifier: it is sure about most attributes, as it is for rendered faces ...
    assert ((probs < 0.2) | (probs > 0.8)).mean() > 0.75
    # ... and the attributes vary across samples
    for i, a in enumerate(classifier.attributes):
        assert probs[:, i].max() > 0.5 > probs[:, i].min(), (a, probs[:, i])


def test_style_mixing_keeps_coarse_from_a_and_colour_from_b(generator, classifier):
    from morph.training.evaluate import mixing_agreement

    rng = np.random.default_rng(11)
    za, zb = (torch.from_numpy(rng.standard_normal((64, generator.z_dim)).astype(np.float32)) for _ in range(2))
    table = mixing_agreement(classifier, generator, za, zb, MIX_CUTOFF)
    for a in ("turn_left", "hair_long", "glasses", "beard", "hair_dark"):
        t = table[a]
        # chance is 0.5: ask for two standard errors above it
        assert t["pairs"] >= 16 and t["kept"] > 0.5 + 2 * (0.25 / t["pairs"]) ** 0.5, (a, t)
    assert table["hair_dark"]["from"] == "B" and table["turn_left"]["from"] == "A"


def test_truncation_pulls_to_the_median_face(generator):
    with torch.no_grad():
        ws = generator.mapping.w_avg.expand(1, generator.num_ws, -1)
        img = generator.synthesis(ws, noise_mode="const").numpy()
    target = render_targets(np.zeros((1, LATENT_DIM)), generator.img_resolution)
    assert np.abs(img - target).mean() < 0.1


def test_classifier_accuracy_on_fresh_faces(classifier):
    params = sample_params(20240601, 500)  # seeds the training script never uses
    pred = classifier.predict(render(params, 64))
    y, amb = labels(params), ambiguous(params)
    for a in ATTRIBUTES:
        acc = ((pred[a] > 0.5) == y[a])[~amb[a]].mean()
        assert acc >= 0.95, (a, acc)


# ------------------------------------------------------------------ the training scripts, tiny

def test_generator_training_runs_and_resumes(tmp_path, capsys):
    from morph.checkpoints.loading import load_generator
    from morph.training import train_generator

    tiny = ["--out", str(tmp_path), "--resolution", "16", "--channel-base", "256", "--channel-max", "32",
            "--w-dim", "16", "--mapping-layers", "2", "--batch", "4", "--feature-weight", "0",
            "--trunc-start-kimg", "0", "--log-every", "1", "--snap-every", "2"]
    train_generator.main(tiny + ["--kimg", "0.008"])
    train_generator.main(tiny + ["--kimg", "0.016", "--resume"])
    out = capsys.readouterr().out
    assert "resumed at step 2" in out and '"step": 4' in out
    G = load_generator(tmp_path / "generator.safetensors")
    assert G.img_resolution == 16 and G.z_dim == LATENT_DIM
    assert (tmp_path / "grid-000004.png").is_file()


def test_classifier_training_runs(tmp_path):
    from morph.training import train_classifier

    path = tmp_path / "c.safetensors"
    train_classifier.main(["--out", str(tmp_path), "--train", "64", "--val", "32", "--epochs", "1", "--batch", "32",
                           "--widths", "4,4,8,8", "--export", str(path)])
    assert load_classifier(path).predict(render(sample_params(1, 2), 64))["probs"].shape == (2, len(ATTRIBUTES))


def test_morph_info_builtin_describes_the_shipped_model():
    _need("generator")
    from typer.testing import CliRunner

    from morph.cli import app

    out = CliRunner().invoke(app, ["info", "builtin", "--json"])
    assert out.exit_code == 0, out.output
    facts = json.loads(out.output)
    assert facts["format"] == "morph" and facts["resolution"] == 64 and facts["num_ws"] == 10
    assert facts["file"] == str(builtin_path())
