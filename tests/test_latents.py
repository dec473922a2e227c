"""Latent algebra, layer groups, W/direction files and resolving a scene's named latents."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from morph.core.errors import MorphError
from morph.motion.latents import (
    Blend,
    File,
    From,
    Latent,
    Mean,
    Mix,
    ModelDims,
    Project,
    Seed,
    add,
    blend,
    load_w,
    mean,
    mix,
    random_offsets,
    resolve,
    seed_w,
    z_from_seed,
)
from morph.stylegan2 import Generator
from morph.stylegan2.networks import layer_groups, layer_resolution

quick = settings(max_examples=60, deadline=None)  # the whole file runs in seconds on 2 cores


def tensors(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def G() -> Generator:
    """A tiny 16 px generator (num_ws 6, w_dim 8) with a non-zero w_avg."""
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, mapping_kwargs={"num_layers": 2},
                  synthesis_kwargs={"channel_base": 64, "channel_max": 8}).eval()
    G.mapping.w_avg.normal_()
    return G


# --- layer groups ----------------------------------------------------------------------------------------------

def test_layer_resolution_follows_the_synthesis_blocks():
    num_ws = ModelDims.at(1024).num_ws
    assert num_ws == 18
    assert layer_resolution(0, num_ws) == 4  # b4.conv1
    for log2 in range(3, 11):  # bR.conv0 = 2·log2(R) − 5, bR.conv1 = 2·log2(R) − 4
        assert layer_resolution(2 * log2 - 5, num_ws) == layer_resolution(2 * log2 - 4, num_ws) == 2 ** log2
    assert layer_resolution(17, num_ws) == 1024  # the top torgb


@pytest.mark.parametrize("resolution,groups", [
    (1024, {"coarse": range(0, 3), "middle": range(3, 7), "fine": range(7, 18)}),
    (64, {"coarse": range(0, 3), "middle": range(3, 7), "fine": range(7, 10)}),
    (16, {"coarse": range(0, 3), "middle": range(3, 6), "fine": range(0)}),
])
def test_named_groups_come_from_the_resolution(resolution, groups):
    assert layer_groups(ModelDims.at(resolution).num_ws) == groups


# --- algebra ---------------------------------------------------------------------------------------------------

@quick
@given(st.integers(0, 2 ** 31), st.integers(1, 5), st.integers(1, 12), st.data())
def test_mix_takes_each_layer_exactly_from_its_source(seed, n, layers, data):
    sources = [tensors(seed + i, layers, 7) for i in range(n)]
    owners = data.draw(st.lists(st.integers(0, n - 1), min_size=layers, max_size=layers))
    out = mix(sources, owners)
    for layer, owner in enumerate(owners):
        assert torch.equal(out[layer], sources[owner][layer])


@quick
@given(st.integers(0, 2 ** 31), st.lists(st.floats(-3, 3), min_size=1, max_size=5))
def test_mean_and_blend_do_what_they_say(seed, weights):
    ws = [tensors(seed + i, 4, 6) for i in range(len(weights))]
    torch.testing.assert_close(mean(ws), sum(ws) / len(ws))
    torch.testing.assert_close(blend(ws, weights), sum(k * w for k, w in zip(weights, ws)), atol=1e-5, rtol=1e-5)
    for i in range(len(ws)):  # a one-hot blend is exactly that latent
        assert torch.equal(blend(ws, [float(i == j) for j in range(len(ws))]), ws[i])


@quick
@given(st.integers(0, 2 ** 31), st.floats(-5, 5), st.integers(0, 9), st.integers(0, 9))
def test_add_offsets_only_the_chosen_layers(seed, strength, a, b):
    w, d = tensors(seed, 10, 6), tensors(seed + 1, 10, 6)
    layers = range(min(a, b), max(a, b) + 1)
    out = add(w, d, strength, layers)
    outside = [i for i in range(10) if i not in layers]
    assert torch.equal(out[outside], w[outside])
    torch.testing.assert_close(out[list(layers)], w[list(layers)] + strength * d[list(layers)])
    torch.testing.assert_close(add(w, d, strength), w + strength * d)
    assert torch.equal(add(w, d, 0.0, layers), w)


# --- seeds -----------------------------------------------------------------------------------------------------

def test_seeds_draw_z_as_nvidia_generate_py_does(G):
    assert torch.equal(z_from_seed(42, 8)[0], torch.from_numpy(np.random.RandomState(42).randn(1, 8)[0]).float())
    w = seed_w(G, 42)
    assert torch.equal(w, G.mapping(z_from_seed(42, 8), None)[0])
    assert torch.equal(seed_w(G, 42), w) and not torch.equal(seed_w(G, 43), w)


def test_truncation_pulls_towards_w_avg_on_the_cutoff_layers(G):
    w, w0 = seed_w(G, 5), seed_w(G, 5, psi=0.0)
    torch.testing.assert_close(w0, G.mapping.w_avg.expand(6, 8))
    half = seed_w(G, 5, psi=0.5, cutoff=2)
    torch.testing.assert_close(half[:2], (w[:2] + w0[:2]) / 2)
    assert torch.equal(half[2:], w[2:])


def test_conditional_models_take_a_one_hot_class():
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=8, img_channels=3, mapping_kwargs={"num_layers": 2},
                  synthesis_kwargs={"channel_base": 64, "channel_max": 8}).eval()
    c = torch.tensor([[0.0, 0.0, 1.0]])
    assert torch.equal(seed_w(G, 1, label=2), G.mapping(z_from_seed(1, 8), c)[0])
    assert not torch.equal(seed_w(G, 1, label=2), seed_w(G, 1, label=0))


def test_random_offsets_are_seeded_differences_from_the_mean(G):
    off = random_offsets(G, 7, 4)
    assert off.shape == (4, 8)
    assert torch.equal(off, random_offsets(G, 7, 4)) and not torch.equal(off, random_offsets(G, 8, 4))
    torch.testing.assert_close(off[0], seed_w(G, 7)[0] - G.mapping.w_avg)  # seed's first z is the seed latent's


# --- files -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,name", [((512,), "w.npy"), ((1, 512), "interfacegan_boundary.npy"),
                                        ((18, 512), "age-latent-direction.npy"), ((1, 18, 512), "projected_w.npz")])
def test_w_files_of_every_common_shape_load_as_wplus(tmp_path, shape, name):
    array = np.random.RandomState(0).randn(*shape).astype(np.float32)
    path = tmp_path / name
    np.savez(path, w=array) if name.endswith(".npz") else np.save(path, array)
    w = load_w(path, 18, 512)
    assert w.shape == (18, 512) and w.dtype == torch.float32
    assert torch.equal(w, torch.from_numpy(array).reshape(-1, 512).expand(18, 512))


@pytest.mark.parametrize("content,message", [
    ({"w": np.zeros((5, 512))}, "has shape [5, 512]; the model needs [512], [1, 512] (W) or [18, 512] (W+)"),
    ({"a": np.zeros(512), "b": np.zeros(512)}, "holds arrays ['a', 'b']; expected one named 'w' or 'direction'"),
    (None, "cannot read as .npy/.npz"),
])
def test_bad_w_files_are_one_line_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **content) if content else path.write_bytes(b"not numpy")
    with pytest.raises(MorphError) as err:
        load_w(path, 18, 512)
    assert str(err.value).startswith(f"{path}: {message}") and "\n" not in str(err.value)


# --- resolving -------------------------------------------------------------------------------------------------

def test_resolve_builds_latents_on_each_other_in_order(G, tmp_path):
    np.save(tmp_path / "f.npy", np.ones((1, 8), np.float32))
    direction = tensors(9, 6, 8)
    latents = {
        "a": Latent(Seed(1, psi=0.7)),
        "b": Latent(Seed(2)),
        "f": Latent(File(tmp_path / "f.npy")),
        "avg": Latent(Mean(("a", "b"))),
        "bl": Latent(Blend((("a", 2.0), ("f", -1.0)))),
        "mx": Latent(Mix(("a", "a", "b", "b", "f", "f"))),
        "old": Latent(From("a"), (("age", 1.5),), range(0, 2)),
    }
    ws = resolve(latents, {"age": direction}, G)
    a, b, f = seed_w(G, 1, 0.7), seed_w(G, 2), torch.ones(6, 8)
    assert torch.equal(ws["a"], a) and torch.equal(ws["f"], f)
    torch.testing.assert_close(ws["avg"], (a + b) / 2)
    torch.testing.assert_close(ws["bl"], 2 * a - f)
    assert torch.equal(ws["mx"], torch.cat([a[:2], b[2:4], f[4:]]))
    torch.testing.assert_close(ws["old"], torch.cat([a[:2] + 1.5 * direction[:2], a[2:]]))
    assert all(torch.equal(ws[k], v) for k, v in resolve(latents, {"age": direction}, G).items())  # deterministic


def test_projection_is_a_callback_and_its_absence_names_the_latent(G, tmp_path):
    latents = {"peter": Latent(Project(tmp_path / "peter.jpg"), where="s.yaml:3:3: latents.peter")}
    w = tensors(0, 6, 8)
    assert torch.equal(resolve(latents, {}, G, project=lambda spec: w)["peter"], w)
    with pytest.raises(MorphError) as err:
        resolve(latents, {}, G)
    assert str(err.value).startswith("s.yaml:3:3: latents.peter: ") and "projected" in str(err.value)
