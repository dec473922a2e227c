"""Latent directions: the SVM recipe, hand-sorted folders, PCA, conditioning, foreign files, the CLI, and the
built-in directions judged by the built-in classifier (the issue's "done when")."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from typer.testing import CliRunner

from morph.builtin import WEIGHTS_DIR, builtin_path, direction_path
from morph.cli import app
from morph.core.errors import MorphError
from morph.directions import (
    as_space,
    condition,
    extremes,
    folder_indices,
    load_scores,
    pca,
    read_direction,
    read_meta,
    save_array,
    strength_sweep,
    train_folders,
    train_svm,
    w_images,
)
from morph.motion.latents import load_w
from morph.render.images import write_png

SHIPPED = WEIGHTS_DIR / "directions"
STRENGTHS = np.linspace(-3, 3, 7)


def planted(n: int = 3000, dim: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian latents, a hidden unit direction, and noisy scores along it."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim))
    d = rng.standard_normal(dim)
    d /= np.linalg.norm(d)
    return x, d, x @ d + 0.1 * rng.standard_normal(n)


# --- the SVM recipe --------------------------------------------------------------------------------------------

def test_svm_recovers_a_planted_direction_in_w():
    x, d, scores = planted()
    fit = train_svm(x, scores, ratio=0.1)
    assert fit.direction.shape == (24,)
    assert np.linalg.norm(fit.direction) == pytest.approx(1, abs=1e-5)
    assert fit.direction @ d > 0.95  # points towards high scores
    assert fit.accuracy > 0.97
    assert (fit.positives, fit.negatives, fit.validation) == (300, 300, 180)


def test_svm_recovers_a_planted_direction_in_w_plus():
    x, d, scores = planted(dim=4 * 6)
    fit = train_svm(x.reshape(-1, 4, 6), scores, ratio=0.1, space="w+")
    assert fit.direction.shape == (4, 6)
    assert fit.direction.reshape(-1) @ d > 0.95


def test_extremes_keep_the_top_and_bottom_fraction():
    scores = np.arange(100.0)[::-1]
    top, bottom = extremes(scores, 0.05)
    assert sorted(scores[top]) == [95, 96, 97, 98, 99] and sorted(scores[bottom]) == [0, 1, 2, 3, 4]
    assert len(extremes(scores, 10)[0]) == 10  # a count when > 1
    with pytest.raises(MorphError, match="ratio"):
        extremes(scores, 0.6)


def test_space_checks():
    w = np.random.default_rng(1).standard_normal((5, 8))
    same = np.repeat(w[:, None], 3, axis=1)
    assert np.allclose(as_space(same, "w"), w)  # mapped, untruncated W+ counts as W
    assert as_space(same, "w+").shape == (5, 24)
    with pytest.raises(MorphError, match="w\\+"):
        as_space(same + np.random.default_rng(2).standard_normal(same.shape), "w")
    with pytest.raises(MorphError, match="cannot train a W\\+"):
        as_space(w, "w+")
    with pytest.raises(MorphError, match="unknown latent space"):
        as_space(w, "z")


# --- hand-sorted folders ---------------------------------------------------------------------------------------

def test_training_from_two_sorted_folders(tmp_path):
    x, d, scores = planted(n=400)
    blank = np.zeros((4, 4, 3), np.uint8)
    for name, idx in (("pos", np.argsort(-scores)[:60]), ("neg", np.argsort(scores)[:60])):
        (tmp_path / name).mkdir()
        for i in idx:
            write_png(tmp_path / name / f"{i:06d}.png", blank)
    (tmp_path / "pos" / "notes.txt").write_text("not an image")
    fit = train_folders(x, tmp_path / "pos", tmp_path / "neg")
    assert fit.direction @ d > 0.8 and fit.positives == fit.negatives == 60
    assert list(folder_indices(tmp_path / "pos")) == sorted(np.argsort(-scores)[:60])
    shutil.copy(next((tmp_path / "pos").glob("*.png")), tmp_path / "neg")
    with pytest.raises(MorphError, match="in both folders"):
        train_folders(x, tmp_path / "pos", tmp_path / "neg")
    write_png(tmp_path / "pos" / "smiling.png", blank)
    with pytest.raises(MorphError, match="sample index"):
        folder_indices(tmp_path / "pos")


# --- PCA -------------------------------------------------------------------------------------------------------

def test_pca_components_are_sorted_and_orthonormal():
    rng = np.random.default_rng(3)
    scales = np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.3, 0.2, 0.1])
    basis, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    ws = (rng.standard_normal((5000, 8)) * scales) @ basis.T + 2.0
    comps = pca(ws, 4, batch=1000)
    assert np.all(np.diff(comps.ratio) < 0)
    assert comps.ratio[0] == pytest.approx(25 / (scales ** 2).sum(), rel=0.05)
    assert np.allclose(comps.vectors @ comps.vectors.T, np.eye(4), atol=1e-5)
    assert abs(comps.vectors[0] @ basis[:, 0]) > 0.99
    batches = pca(iter([ws[:2000], ws[2000:4998], ws[4998:]]), 4)  # a trailing batch smaller than k is merged
    assert np.allclose(np.abs(batches.vectors @ comps.vectors.T).max(axis=1), 1, atol=1e-3)


# --- conditional edits -----------------------------------------------------------------------------------------

def test_conditioning_removes_the_span_of_any_number_of_directions():
    rng = np.random.default_rng(4)
    primary, a, b = rng.standard_normal((3, 16))
    out = condition(primary, [a, 2 * a, a + b, b[None]])  # dependent conditions; InterFaceGAN [1, D] shape
    assert np.linalg.norm(out) == pytest.approx(1, abs=1e-5)
    assert abs(out @ a) < 1e-5 and abs(out @ b) < 1e-5
    assert out @ primary > 0
    with pytest.raises(MorphError, match="span"):
        condition(a + b, [a, b])
    with pytest.raises(MorphError, match="same space"):
        condition(primary, [rng.standard_normal((2, 16))])


# --- files -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 512), (18, 512), (512,)])
def test_foreign_direction_files_load(tmp_path, shape):
    array = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    path = tmp_path / "age-latent-direction.npy"
    np.save(path, array)
    assert load_w(path, 18, 512).shape == (18, 512)
    assert np.allclose(load_w(path, 18, 512)[-1], array.reshape(-1, 512)[-1])
    assert read_direction(path).shape == ((512,) if shape[0] in (1, 512) else (18, 512))
    assert read_meta(path) == {}


def test_direction_file_and_sidecar_round_trip(tmp_path):
    d = np.ones(8, np.float32) / np.sqrt(8)
    path = save_array(tmp_path / "smile.npy", d, {"accuracy": np.float64(0.97), "space": "w"})
    assert np.array_equal(np.load(path), d)
    assert read_meta(path) == {"accuracy": 0.97, "space": "w"}
    assert json.loads((tmp_path / "smile.json").read_text())["space"] == "w"
    np.save(tmp_path / "zero.npy", np.zeros(8))
    with pytest.raises(MorphError, match="not a direction"):
        read_direction(tmp_path / "zero.npy")


def test_scores_table_problems_are_one_line(tmp_path):
    latents = tmp_path / "latents.npy"
    with pytest.raises(MorphError, match="no scores.npz beside the latents"):
        load_scores("smile", latents)
    (tmp_path / "scores.npz").write_bytes(b"PK\x03\x04 damaged")
    with pytest.raises(MorphError, match="scores.npz: cannot read the scores"):
        load_scores("smile", latents)
    np.savez(tmp_path / "scores.npz", smile=np.arange(4.0))
    assert load_scores("smile", latents)[1].tolist() == [0, 1, 2, 3]
    with pytest.raises(MorphError, match="choose from smile"):
        load_scores("glasses", latents)


# --- the built-in model ----------------------------------------------------------------------------------------

def needs_builtin():
    if not builtin_path("generator").is_file():
        pytest.skip("the built-in generator's weights are not installed")


def needs_shipped(*names: str) -> None:
    needs_builtin()
    missing = [n for n in names if not (SHIPPED / f"{n}.npy").is_file()]
    if missing:
        pytest.skip(f"built-in directions {missing} not trained: python -m morph.training.train_directions")


@pytest.fixture(scope="module")
def model():
    needs_builtin()
    from morph.builtin import load_builtin_classifier, load_builtin_generator

    return load_builtin_generator(), load_builtin_classifier()


def scores_along(model, direction: np.ndarray, n: int = 20, psi: float = 0.7) -> dict[str, np.ndarray]:
    """Classifier probabilities [n, 7] for n seeded faces moved along ``direction`` from −3 to +3."""
    from morph.motion.latents import map_z, z_from_seed

    G, clf = model
    ws = map_z(G, z_from_seed(0, G.z_dim, n), psi=psi)
    d = torch.from_numpy(direction).expand(G.num_ws, G.w_dim)
    path = torch.cat([strength_sweep(w, d, STRENGTHS) for w in ws])
    frames = np.concatenate(list(w_images(G, path[:, 0].numpy(), 70)))
    probs = clf.predict(frames)
    return {name: probs[name].reshape(n, len(STRENGTHS)) for name in clf.attributes}


@pytest.mark.slow
def test_builtin_smile_raises_the_smile_score_and_conditioning_spares_glasses(model):
    needs_shipped("smile", "glasses")
    smile, glasses = read_direction(direction_path("smile")), read_direction(direction_path("glasses"))
    plain = scores_along(model, smile)
    rho = np.mean([spearmanr(STRENGTHS, row).correlation for row in plain["smile"]])
    assert rho >= 0.9, f"mean Spearman {rho:.3f}"
    assert np.mean(plain["smile"][:, -1] - plain["smile"][:, 0]) > 0.5
    conditioned = scores_along(model, condition(smile, [glasses]))
    change = [np.mean(np.abs(s["glasses"][:, -1] - s["glasses"][:, 0])) for s in (plain, conditioned)]
    assert change[1] <= 0.5 * change[0], f"glasses change {change[0]:.3f} plain, {change[1]:.3f} conditioned"


def test_shipped_directions_belong_to_the_shipped_generator():
    needs_shipped("smile")
    from morph.core.files import file_sha256

    sha = file_sha256(builtin_path("generator"))
    stale = [p.stem for p in SHIPPED.glob("*.npy") if read_meta(p).get("model_sha256") != sha]
    assert not stale, f"retrain: python -m morph.training.train_directions ({stale} were fitted to another generator)"
    for p in SHIPPED.glob("*.npy"):
        assert np.linalg.norm(np.load(p)) == pytest.approx(1, abs=1e-4)
        assert read_meta(p)["accuracy"] > 0.85


def test_builtin_direction_names():
    needs_shipped("smile")
    assert direction_path("smile") == SHIPPED / "smile.npy"
    with pytest.raises(MorphError, match="choose from .*smile"):
        direction_path("smiel")


# --- the command line ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_sample_train_pca_show(tmp_path, model):
    runner = CliRunner()
    samples = tmp_path / "samples"
    run = runner.invoke(app, ["sample", "--n", "48", "--out", str(samples), "--classifier", "builtin",
                              "--seed", "7", "--device", "cpu"])
    assert run.exit_code == 0, run.output
    w = np.load(samples / "latents.npy")
    assert w.shape == (48, model[0].w_dim) and np.load(samples / "z.npy").shape == (48, model[0].z_dim)
    assert len(list(samples.glob("*.png"))) == 48 and (samples / "000047.png").is_file()
    assert read_meta(samples / "latents.npy")["model_sha256"] == model[0].info.sha256
    glasses = np.load(samples / "scores.npz")["glasses"]
    assert glasses.shape == (48,)

    # sort the images "by hand" (by the classifier) into two folders, and train on them
    for name, keep in (("glasses", glasses > 0.5), ("plain", glasses <= 0.5)):
        (tmp_path / name).mkdir()
        for i in np.flatnonzero(keep):
            shutil.copy(samples / f"{i:06d}.png", tmp_path / name)
    run = runner.invoke(app, ["directions", "train", "--latents", str(samples / "latents.npy"), "--positive",
                              str(tmp_path / "glasses"), "--negative", str(tmp_path / "plain"),
                              "--out", str(tmp_path / "d")])
    assert run.exit_code == 0, run.output
    assert "validation accuracy" in run.output
    meta = read_meta(tmp_path / "d" / "glasses.npy")
    assert meta["method"] == "svm-folders" and meta["positives"] + meta["negatives"] == 48
    assert meta["model_sha256"] == model[0].info.sha256

    run = runner.invoke(app, ["directions", "train", "--latents", str(samples / "latents.npy"), "--scores", "smile",
                              "--ratio", "0.25", "--condition", str(tmp_path / "d" / "glasses.npy"),
                              "--out", str(tmp_path / "d")])
    assert run.exit_code == 0, run.output
    smile, gl = np.load(tmp_path / "d" / "smile.npy"), np.load(tmp_path / "d" / "glasses.npy")
    assert abs(smile @ gl) < 1e-5 and read_meta(tmp_path / "d" / "smile.npy")["positives"] == 12

    run = runner.invoke(app, ["directions", "train", "--latents", str(samples / "latents.npy"), "--scores", "smiel"])
    assert run.exit_code != 0 and "choose from" in str(run.exception)

    run = runner.invoke(app, ["directions", "pca", "--n", "3000", "--k", "3", "--out", str(tmp_path / "pca"),
                              "--device", "cpu"])
    assert run.exit_code == 0, run.output
    ratios = [read_meta(tmp_path / "pca" / f"pc{i}.npy")["explained_variance_ratio"] for i in range(3)]
    assert ratios == sorted(ratios, reverse=True)

    strip = tmp_path / "smile-strip.png"
    run = runner.invoke(app, ["directions", "show", str(tmp_path / "d" / "smile.npy"), "--latent", "3",
                              "--out", str(tmp_path), "--device", "cpu"])
    assert run.exit_code == 0, run.output
    r = model[0].img_resolution
    assert strip.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(strip.read_bytes()[16:20], "big") == 7 * r + 8 * 2  # seven images and padding
