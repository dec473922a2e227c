"""Writing other tools' formats: rosinality checkpoints (``morph convert --to rosinality``) and latents
(``morph latents export``: NVIDIA's projected_w.npz, a plain [num_ws, w_dim] .npy)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from morph.checkpoints import normalize_init_kwargs
from morph.checkpoints.loading import load_generator
from morph.checkpoints.rosinality import read_rosinality, write_rosinality
from morph.motion.latents import read_w
from morph.stylegan2 import Generator


def rosinality_model_py_names(size: int = 64, style_dim: int = 512, n_mlp: int = 8) -> dict[str, tuple[int, ...]]:
    """``Generator(64, 512, 8, channel_multiplier=2).state_dict()`` names and shapes, from reading rosinality's
    model.py (commit 7e46e47): PixelNorm at style.0, EqualLinear style.1..8; ConstantInput; StyledConv =
    ModulatedConv2d (weight [1, out, in, k, k], blur.kernel when upsampling, modulation) + NoiseInjection
    (weight [1]) + FusedLeakyReLU (bias [out]); ToRGB (bias [1, 3, 1, 1], upsample.kernel, conv); the noise
    buffers noise_i of [1, 1, 2^((i+5)//2), 2^((i+5)//2)]. Channels are 512 at every size up to 64 px."""
    c, s = 512, style_dim
    names: dict[str, tuple[int, ...]] = {}
    for i in range(1, n_mlp + 1):
        names[f"style.{i}.weight"] = (s, s)
        names[f"style.{i}.bias"] = (s,)
    names["input.input"] = (1, c, 4, 4)
    names.update({"conv1.conv.weight": (1, c, c, 3, 3), "conv1.conv.modulation.weight": (c, s),
                  "conv1.conv.modulation.bias": (c,), "conv1.noise.weight": (1,), "conv1.activate.bias": (c,),
                  "to_rgb1.bias": (1, 3, 1, 1), "to_rgb1.conv.weight": (1, 3, c, 1, 1),
                  "to_rgb1.conv.modulation.weight": (c, s), "to_rgb1.conv.modulation.bias": (c,)})
    for i in range(8):  # two StyledConvs per block at 8, 16, 32, 64 px; the first upsamples
        names[f"convs.{i}.conv.weight"] = (1, c, c, 3, 3)
        if i % 2 == 0:
            names[f"convs.{i}.conv.blur.kernel"] = (4, 4)
        names.update({f"convs.{i}.conv.modulation.weight": (c, s), f"convs.{i}.conv.modulation.bias": (c,),
                      f"convs.{i}.noise.weight": (1,), f"convs.{i}.activate.bias": (c,)})
    for i in range(4):
        names.update({f"to_rgbs.{i}.bias": (1, 3, 1, 1), f"to_rgbs.{i}.upsample.kernel": (4, 4),
                      f"to_rgbs.{i}.conv.weight": (1, 3, c, 1, 1), f"to_rgbs.{i}.conv.modulation.weight": (c, s),
                      f"to_rgbs.{i}.conv.modulation.bias": (c,)})
    for i, r in enumerate((4, 8, 8, 16, 16, 32, 32, 64, 64)):
        names[f"noises.noise_{i}"] = (1, 1, r, r)
    return names


def random_generator(**kwargs) -> Generator:
    """A generator whose every parameter and buffer is random (so that no term is trivially zero)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        G = Generator(**kwargs)
        with torch.no_grad():
            for name, t in G.state_dict().items():
                if not name.endswith("resample_filter") and t.is_floating_point():
                    t.copy_(torch.randn_like(t) * (0.1 if "noise_strength" in name or "bias" in name else 1.0))
    return G.eval()


ROSINALITY_64 = dict(z_dim=512, w_dim=512, c_dim=0, img_resolution=64, img_channels=3,
                     mapping_kwargs={"num_layers": 8}, synthesis_kwargs={"channel_base": 32768, "channel_max": 512})


def test_rosinality_export_reads_back_identically(tmp_path):
    G = random_generator(**ROSINALITY_64)
    dest = tmp_path / "g.pt"
    write_rosinality(dest, G.init_kwargs, G.state_dict())
    assert [p.name for p in tmp_path.iterdir()] == ["g.pt"]  # no temp file left
    ckpt = torch.load(dest, map_location="cpu", weights_only=True)  # plain tensors and dicts only
    assert sorted(ckpt) == ["g_ema", "latent_avg"]
    assert {k: tuple(v.shape) for k, v in ckpt["g_ema"].items()} == rosinality_model_py_names()
    assert list(ckpt["g_ema"]) == list(rosinality_model_py_names())  # and in model.py's state_dict order
    assert ckpt["latent_avg"].shape == (512,)

    back = read_rosinality(dest)
    assert back.init_kwargs == normalize_init_kwargs(G.init_kwargs)
    mine = {k: v for k, v in G.state_dict().items() if not k.endswith("resample_filter")}
    assert back.state.keys() == mine.keys()
    for k, v in mine.items():
        assert torch.equal(back.state[k], v), k
    R = load_generator(dest)
    ws = G.mapping(torch.randn(2, 512, generator=torch.Generator().manual_seed(1)), None, truncation_psi=0.7)
    assert torch.equal(R.mapping(torch.randn(2, 512, generator=torch.Generator().manual_seed(1)), None,
                                 truncation_psi=0.7), ws)
    with torch.no_grad():
        assert torch.equal(R.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const"))


def test_rosinality_export_refuses_a_network_off_its_channel_table(tmp_path):
    from morph.checkpoints.rosinality import rosinality_config
    from morph.core.errors import CheckpointError

    G = random_generator(z_dim=64, w_dim=64, c_dim=0, img_resolution=32, img_channels=3,
                         synthesis_kwargs={"channel_base": 2048, "channel_max": 64})
    with pytest.raises(CheckpointError, match="fixed table"):
        rosinality_config(G.init_kwargs, "g.pkl")


def test_convert_refuses_b_nvidia_in_one_line(stylegan2_fixtures, tmp_path):
    dest = tmp_path / "B.pt"
    out = subprocess.run([sys.executable, "-m", "morph.cli", "convert", str(stylegan2_fixtures / "B_nvidia.pkl"),
                          str(dest), "--to", "rosinality"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "B_nvidia.pkl" in lines[0] and "rosinality" in lines[0], out.stderr
    assert "128" in lines[0] and "512 up to 32 px" in lines[0]
    assert not dest.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shape", [(10, 128), (1, 10, 128), (128,), (1, 128)])
def test_latents_export_to_nvidia_npz_and_plain_npy(tmp_path, shape):
    w = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    src = tmp_path / "in.npy"
    np.save(src, w)
    extra = ["--num-ws", "10"] if len(shape) == 1 or shape[0] == 1 and len(shape) == 2 else []
    for dest, want in ((tmp_path / "projected_w.npz", (1, 10, 128)), (tmp_path / "w.npy", (10, 128))):
        out = subprocess.run([sys.executable, "-m", "morph.cli", "latents", "export", str(src), str(dest), *extra],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        if dest.suffix == ".npz":
            with np.load(dest) as z:
                assert z.files == ["w"]
                got = z["w"]
        else:
            got = np.load(dest)
        assert got.shape == want and got.dtype == np.float32
        assert np.array_equal(got.reshape(10, 128), np.broadcast_to(w.reshape(-1, 128), (10, 128)))
        assert np.array_equal(read_w(dest).reshape(10, 128), got.reshape(10, 128))  # morph reads it back


def test_latents_export_of_a_w_without_layer_count_is_one_line(tmp_path):
    src = tmp_path / "w.npy"
    np.save(src, np.zeros(128, np.float32))
    out = subprocess.run([sys.executable, "-m", "morph.cli", "latents", "export", str(src), str(tmp_path / "o.npz")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "--num-ws" in out.stderr
    assert not (tmp_path / "o.npz").exists()
