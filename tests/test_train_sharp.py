"""The sharp built-in model's trainer (``morph.training.train_sharp``) on a tiny configuration: growth is exact,
a step trains G and D with a positive R1 term, kill + resume continues bit for bit, and the export loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from morph.checkpoints import write_native
from morph.stylegan2.networks import Generator
from morph.stylegan2.ops import setup_filter, upsample_2d
from morph.training.latent import LATENT_DIM
from morph.training.sharpness import laplacian_energy, sharpness_ratio
from morph.training.train_sharp import DEFAULTS, StepBatches, Trainer, batches, grow, parse_args, read_checkpoint, run

TINY = dict(resolution=16, batch=2, anchor_res=8, feature_weight=0.0, r1_every=2, d_channel_base=64,
            d_channel_max=16, ema_kimg=0.01)


def tiny_generator(resolution: int = 8) -> Generator:
    torch.manual_seed(0)
    return Generator(z_dim=LATENT_DIM, c_dim=0, w_dim=8, img_resolution=resolution, img_channels=3,
                     mapping_kwargs=dict(num_layers=2, lr_multiplier=1.0, w_avg_beta=0.995),
                     synthesis_kwargs=dict(channel_base=64, channel_max=16, num_fp16_res=0, conv_clamp=None,
                                           architecture="skip")).eval()


@pytest.fixture()
def init_file(tmp_path):
    G = tiny_generator()
    path = tmp_path / "tiny8.safetensors"
    write_native(path, G.init_kwargs, G.state_dict())
    return path


def cli_args(out, init, steps: int, *extra: str):
    kimg = steps * TINY["batch"] / 1000
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    return parse_args(["--out", str(out), "--init", str(init), f"--kimg={kimg}", "--snap-every=100",
                       "--log-every=1", "--threads=1", *flags, *extra])


def test_grow_draws_the_small_model_upsampled():
    G = tiny_generator()
    big = grow(G, 32)
    assert big.img_resolution == 32 and big.num_ws == G.num_ws + 4
    z = torch.randn(3, LATENT_DIM)
    with torch.no_grad():
        small = G(z, None, noise_mode="none")
        grown = big(z, None, noise_mode="none")
    f = setup_filter()
    assert torch.equal(upsample_2d(upsample_2d(small, f), f), grown)


@pytest.mark.parametrize("d_condition", [False, True])
def test_step_trains_both_networks_with_positive_r1(d_condition):
    trainer = Trainer(tiny_generator(), {**DEFAULTS, **TINY, "d_condition": d_condition}, seed=0,
                      device=torch.device("cpu"))
    assert trainer.D.fromrgb.weight.shape[1] == (6 if d_condition else 3)
    g_before = {k: v.clone() for k, v in trainer.G.synthesis.state_dict().items()}
    d_before = {k: v.clone() for k, v in trainer.D.state_dict().items()}
    map_before = {k: v.clone() for k, v in trainer.G.mapping.state_dict().items() if "w_avg" not in k}
    out = trainer.step()  # step 0 is an R1 step (r1_every = 2)
    assert out["r1"] > 0
    assert all(np.isfinite(v) for v in out.values())
    g_after, d_after = trainer.G.synthesis.state_dict(), trainer.D.state_dict()
    assert not torch.equal(g_before["b16.torgb.weight"], g_after["b16.torgb.weight"])  # the new block learns
    assert not torch.equal(g_before["b8.conv1.weight"], g_after["b8.conv1.weight"])    # and so do the old ones
    assert any(not torch.equal(d_before[k], d_after[k]) for k in d_before)
    # the mapping network is frozen by default, so w (and the directions) stay the grown-from model's
    assert all(torch.equal(v, trainer.G.mapping.state_dict()[k]) for k, v in map_before.items())
    assert "r1" not in trainer.step() and trainer.step()["r1"] > 0  # lazy R1: steps 0 and 2 of r1_every = 2


def test_resume_continues_bit_for_bit(tmp_path, init_file):
    straight = run(cli_args(tmp_path / "a", init_file, 3))
    run(cli_args(tmp_path / "b", init_file, 2))
    resumed = run(cli_args(tmp_path / "b", init_file, 3, "--resume"))
    assert straight.step_count == resumed.step_count == 3
    for name in ("G", "G_ema", "D"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    ckpt = read_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert ckpt["step"] == 3
    assert ckpt["opt_D"]["state"] and ckpt["opt_G"]["state"]


def test_export_loads_as_a_stylegan2_model(tmp_path, init_file):
    from morph.models.loader import load_model

    trainer = run(cli_args(tmp_path / "run", init_file, 1))
    G = load_model(tmp_path / "run" / "generator.safetensors")
    assert G.family == "stylegan2" and G.img_resolution == 16 and G.z_dim == LATENT_DIM
    assert G.info.metadata["trained_by"] == "python -m morph.training.train_sharp"
    z = torch.randn(2, LATENT_DIM)
    with torch.no_grad():
        assert torch.allclose(G(z, None, noise_mode="none"), trainer.G_ema(z, None, noise_mode="none"), atol=1e-6)
    assert list((tmp_path / "run").glob("grid-*.png"))


def test_sharpness_ratio_falls_with_blur():
    rng = np.random.default_rng(0)
    crisp = torch.from_numpy(rng.choice([-1.0, 1.0], size=(4, 3, 16, 16)).astype(np.float32))
    blurred = torch.nn.functional.avg_pool2d(crisp, 3, stride=1, padding=1)
    assert laplacian_energy(crisp) > 4 * laplacian_energy(blurred)
    assert sharpness_ratio(crisp, crisp)["ratio"] == pytest.approx(1.0)
    as_uint8 = ((crisp.permute(0, 2, 3, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    assert laplacian_energy(as_uint8) == pytest.approx(laplacian_energy(crisp), rel=0.02)


def test_worker_processes_deliver_the_same_batches_in_order():
    data = StepBatches({**DEFAULTS, **TINY, "kimg": 0.008}, seed=3, num_ws=8)
    assert len(data) == 4
    inline, workers = list(batches(data, 1, 0, False)), list(batches(data, 1, 2, False))
    assert len(inline) == len(workers) == 3
    for a, b in zip(inline, workers):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(inline[0]["reals"], inline[1]["reals"])


def test_evaluate_reports_sharpness_and_targets_at_the_models_resolution():
    from morph.builtin import builtin_path, load_builtin_classifier
    from morph.training.evaluate import evaluate, report, targets

    if not builtin_path("classifier").is_file():
        pytest.skip("the built-in classifier is not installed")
    G = grow(tiny_generator(), 16).eval()
    result = evaluate(G, load_builtin_classifier(), n=24, cutoffs=(3,))
    assert result["resolution"] == 16
    sharp = result["sharpness"]
    assert sharp["reference"] > 0 and sharp["ratio"] == pytest.approx(sharp["samples"] / sharp["reference"])
    met = targets(result)
    assert set(met) == {"frechet", "sharpness", "fidelity"} and not met["sharpness"][0]  # a random net is not crisp
    assert "target sharpness: NOT met" in report(result)
