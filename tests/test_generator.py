"""Conformance of morph's StyleGAN2 with NVIDIA's official outputs (../shared/fixtures/stylegan2)."""

from __future__ import annotations

import numpy as np
import pytest
import reference_sg2
import torch
from conftest import load_reference

from morph.core.model import images_to_uint8
from morph.stylegan2 import Generator
from morph.stylegan2.ops import upsample_2d

WS_TOL = 1e-5
IMG_TOL = 1e-4


def max_err(ours: torch.Tensor, ref: np.ndarray) -> float:
    return float(np.abs(ours.detach().double().numpy() - ref.astype(np.float64)).max())


@pytest.fixture(scope="module", params=["A", "B", "E"])
def reference(request, stylegan2_fixtures):
    kwargs, state, cases = load_reference(stylegan2_fixtures, request.param)
    G = Generator(**kwargs).eval()
    G.load_state_dict(state)
    return G, cases


def inputs(cases):
    z = torch.from_numpy(cases["z"])
    c = torch.from_numpy(cases["c"]) if "c" in cases else None
    return z, c


@pytest.mark.parametrize("psi,cutoff,key", [(1.0, None, "ws_psi1.0"), (0.7, None, "ws_psi0.7"),
                                            (0.7, 4, "ws_psi0.7_cutoff4")])
def test_mapping_matches_reference(reference, psi, cutoff, key):
    G, cases = reference
    z, c = inputs(cases)
    with torch.no_grad():
        ws = G.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
    assert ws.shape == cases[key].shape
    assert max_err(ws, cases[key]) < WS_TOL
    assert max_err(ws, cases[key + "_f64"]) < WS_TOL


@pytest.mark.parametrize("fused", [True, False, None])
@pytest.mark.parametrize("source,noise", [("psi1.0", "const"), ("psi1.0", "none"), ("psi0.7", "const"),
                                          ("psi0.7", "none"), ("wplus", "const"), ("wplus", "none")])
def test_synthesis_matches_reference(reference, source, noise, fused):
    G, cases = reference
    ws = torch.from_numpy(cases[source if source.startswith("wplus") else f"ws_{source}"])
    with torch.no_grad():
        img = G.synthesis(ws, noise_mode=noise, fused_modconv=fused)
    key = f"img_{source}_{noise}"
    assert img.shape == cases[key].shape
    assert max_err(img, cases[key]) < IMG_TOL
    assert max_err(img, cases[key + "_f64"]) < IMG_TOL


@pytest.mark.parametrize("fused", [True, False])
def test_clamp_saturated_input(reference, fused):
    """W × 1000 drives every ToRGB into conv_clamp; matched relative to the image's largest value."""
    G, cases = reference
    with torch.no_grad():
        img = G.synthesis(torch.from_numpy(cases["wplus_large"]), noise_mode="const", fused_modconv=fused)
    for key in ("img_wplus_large_const", "img_wplus_large_const_f64"):
        assert max_err(img, cases[key]) < IMG_TOL * np.abs(cases[key]).max()


def test_whole_generator(reference):
    G, cases = reference
    z, c = inputs(cases)
    with torch.no_grad():
        img = G(z, c, truncation_psi=0.7, noise_mode="const")
    assert max_err(img, cases["img_G_forward_psi0.7_const"]) < IMG_TOL
    assert max_err(img, cases["img_G_forward_psi0.7_const_f64"]) < IMG_TOL


def test_batch_of_one_equals_batch(reference):
    """Per-sample results do not depend on the batch, whichever modulation path the batch size picks."""
    G, cases = reference
    ws = torch.from_numpy(cases["ws_psi0.7"])
    with torch.no_grad():
        whole = G.synthesis(ws)
        single = torch.cat([G.synthesis(ws[i:i + 1]) for i in range(len(ws))])
    assert float((whole - single).abs().max()) < IMG_TOL
    assert max_err(single, cases["img_psi0.7_const_f64"]) < IMG_TOL


@pytest.mark.parametrize("taps", [1, 2, 3, 4, 5, 6])
def test_upsample_matches_upfirdn2d(taps):
    """The transposed-convolution upsampling equals NVIDIA's zero insertion + FIR, for any filter length."""
    f = torch.rand(taps, taps, generator=torch.Generator().manual_seed(taps), dtype=torch.float64)
    x = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p0, p1 = (taps + 1) // 2, (taps - 2) // 2  # NVIDIA's upsample2d padding
    ref = reference_sg2.upfirdn2d(x, f, up=2, pad=(p0, p1, p0, p1), gain=4)
    ours = upsample_2d(x, f)
    assert ours.shape == ref.shape == (2, 3, 10, 14)
    assert float((ours - ref).abs().max()) < 1e-12


def test_naive_reference_matches_nvidia(stylegan2_fixtures):
    """The float64 judge used below agrees with NVIDIA's own outputs on the fixture configs."""
    for name in "AB":
        kwargs, state, cases = load_reference(stylegan2_fixtures, name)
        img = reference_sg2.synthesis(state, kwargs, torch.from_numpy(cases["ws_psi0.7"]))
        assert max_err(img, cases["img_psi0.7_const_f64"]) < IMG_TOL


def random_state(G: Generator, seed: int) -> dict[str, torch.Tensor]:
    """Every tensor redrawn (as the fixtures were), so no bias, noise strength or gain is trivially zero."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, t in G.state_dict().items():
        if name.endswith("resample_filter"):
            state[name] = t
        elif name.endswith("affine.bias"):
            state[name] = 1 + 0.25 * torch.randn(t.shape, generator=gen)
        elif name.endswith("noise_strength") or name.endswith(".bias"):
            state[name] = 0.2 * torch.randn(t.shape, generator=gen)
        else:
            state[name] = torch.randn(t.shape, generator=gen)
    return state


@pytest.mark.parametrize("arch,channels,clamp", [("resnet", 3, 256), ("orig", 3, None), ("skip", 1, 256),
                                                 ("resnet", 1, None), ("orig", 1, 256)])
def test_other_architectures_follow_reference_semantics(arch, channels, clamp):
    kwargs = dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=channels,
                  mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=512, channel_max=32, architecture=arch, conv_clamp=clamp))
    G = Generator(**kwargs).eval()
    G.load_state_dict(random_state(G, 7))
    names = G.state_dict().keys()
    assert ("synthesis.b8.skip.weight" in names) == (arch == "resnet")
    assert ("synthesis.b8.torgb.weight" in names) == (arch == "skip")
    assert "synthesis.b32.torgb.weight" in names and G.num_ws == 8
    ws = torch.randn(3, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(1))
    ref = reference_sg2.synthesis(G.state_dict(), kwargs, ws)
    with torch.no_grad():
        for fused in (True, False, None):
            img = G.synthesis(ws, noise_mode="const", fused_modconv=fused)
            assert img.shape == (3, channels, 32, 32)
            assert max_err(img, ref.numpy()) < IMG_TOL * max(1.0, float(ref.abs().max()))
        single = torch.cat([G.synthesis(ws[i:i + 1], noise_mode="const") for i in range(len(ws))])
        assert max_err(single, ref.numpy()) < IMG_TOL * max(1.0, float(ref.abs().max()))


def test_noise_modes():
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=8, img_channels=3,
                  synthesis_kwargs=dict(channel_base=256, channel_max=16)).eval()
    G.load_state_dict(random_state(G, 3))
    ws = G.mapping(torch.randn(2, 16), None)
    with torch.no_grad():
        const_a, const_b = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
        rand_a, rand_b = G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random")
        none = G.synthesis(ws, noise_mode="none")
    assert torch.equal(const_a, const_b)
    assert not torch.equal(rand_a, rand_b)
    assert not torch.allclose(none, const_a)
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="fixed")


def test_images_to_uint8():
    img = torch.tensor([-1.0, 0.0, 1.0, 5.0]).reshape(1, 1, 2, 2).repeat(1, 3, 1, 1)
    frames = images_to_uint8(img)
    assert frames.dtype == torch.uint8 and frames.shape == (1, 2, 2, 3)
    assert frames[0, :, :, 0].flatten().tolist() == [0, 128, 255, 255]


@pytest.mark.parametrize("batch", [1, 4])
def test_activations_stay_channels_last(batch):
    """Every layer's output is NHWC at any batch size: a layer that drifted back to NCHW would make oneDNN
    copy the activations around each convolution (batch 1 once ran NCHW throughout, ~25 % slower)."""
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3,
                  synthesis_kwargs=dict(channel_base=1024, channel_max=32)).eval()
    layouts = []
    for layer in G.synthesis.noise_layers():
        layer.register_forward_hook(lambda mod, args, out: layouts.append(
            out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()))
    with torch.inference_mode():
        G.synthesis(G.mapping(torch.randn(batch, 16), None))
    assert len(layouts) == 7 and all(layouts), layouts


def test_derived_weights_follow_the_weights():
    """The per-layer NHWC weight cache: fresh after load_state_dict, dropped by .to(), usable under autograd
    after an inference_mode render (as a render that projects photos first and draws frames after does)."""
    kwargs = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                  synthesis_kwargs=dict(channel_base=512, channel_max=32))
    G, other = Generator(**kwargs).eval(), Generator(**kwargs).eval()
    G.load_state_dict(random_state(G, 1))
    other.load_state_dict(random_state(other, 2))
    G.requires_grad_(False)
    ws = torch.randn(1, G.num_ws, 16, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        before = G.synthesis(ws)
    G.load_state_dict(other.state_dict())
    with torch.inference_mode():
        assert torch.equal(G.synthesis(ws), other.synthesis(ws)) and not torch.allclose(before, other.synthesis(ws))
    w = ws.clone().requires_grad_(True)
    G.synthesis(w).square().sum().backward()
    assert w.grad is not None and float(w.grad.abs().max()) > 0
    G.float()  # any .to() drops the copies rather than keeping stale ones alive
    assert not any("_derived" in layer.__dict__ for layer in G.synthesis.noise_layers())
