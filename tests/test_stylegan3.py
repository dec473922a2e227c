"""StyleGAN3: conformance with NVIDIA's official outputs (configs T and R), the fused filtered lrelu,
the Model contract (transform, noise, groups, threads), and loading NVIDIA / morph / StyleGAN-XL files."""

from __future__ import annotations

import builtins
import itertools
import json
import math
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from test_formats import TRAP, fake_modules, make_nvidia_generator  # noqa: F401,F811 (fake_modules: a fixture)

from morph.checkpoints import read_checkpoint, write_native
from morph.checkpoints.config_sg3 import valid_init_kwargs
from morph.core.errors import CheckpointError
from morph.core.model import Model, Noise
from morph.models.loader import load_model
from morph.stylegan3 import Generator, camera_transform, ops

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "stylegan3"
needs_fixtures = pytest.mark.skipif(not (FIXTURES / "T.npz").exists(),
                                    reason=f"StyleGAN3 reference fixtures not found at {FIXTURES}")
CONFIGS = ("T", "R")
WS_ATOL = 1e-5     # absolute, for ws
IMG_RTOL = 1e-4    # of the reference image's largest absolute value


def fixture_kwargs(name: str) -> dict:
    spec = json.loads((FIXTURES / f"{name}.json").read_text())
    return {**spec["top_level"], "mapping_kwargs": spec["mapping_kwargs"], **spec["init_kwargs"]}


def fixture_state(name: str) -> dict[str, torch.Tensor]:
    with np.load(FIXTURES / f"{name}.npz") as z:
        return {k: torch.from_numpy(z[k].copy()) for k in z.files}


@pytest.fixture(scope="module")
def models() -> dict[str, Generator]:
    out = {}
    for name in CONFIGS:
        G = Generator(**fixture_kwargs(name)).eval().requires_grad_(False)
        G.load_state_dict(fixture_state(name))
        out[name] = G
    return out


@pytest.fixture(scope="module")
def cases() -> dict[str, dict[str, torch.Tensor]]:
    out = {}
    for name in CONFIGS:
        with np.load(FIXTURES / f"{name}_cases.npz") as z:
            out[name] = {k: torch.from_numpy(z[k].copy()) for k in z.files}
    return out


def assert_image_close(img: torch.Tensor, ref: torch.Tensor) -> None:
    assert img.shape == ref.shape
    scale = ref.abs().max().item()
    err = (img.double() - ref.double()).abs().max().item()
    assert err <= IMG_RTOL * scale, f"max error {err:.3g} > {IMG_RTOL:g} x {scale:.3g}"


def synthesis_input(c: dict, case: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ws a fixture image was synthesised from (the float64 references from the float64 ws)."""
    key = {"wplus": "wplus", "wplus_large": "wplus_large", "psi0.7_transform": "ws_psi0.7"}.get(case, f"ws_{case}")
    if dtype == torch.float64 and f"{key}_f64" in c:
        key = f"{key}_f64"
    return c[key].to(dtype)


IMAGE_CASES = ("psi1.0", "psi0.7", "psi0.7_cutoff4", "wplus", "wplus_large", "psi0.7_transform")


# ------------------------------------------------------------------------------------------
# Conformance with the official outputs.

@needs_fixtures
@pytest.mark.parametrize("name", CONFIGS)
def test_state_dict_names_shapes_and_designed_filters(name):
    """The constructor builds exactly NVIDIA's tensors, and designs the same filters NVIDIA's code did."""
    G = Generator(**fixture_kwargs(name))
    ref, own = fixture_state(name), G.state_dict()
    assert list(own) == list(ref) or set(own) == set(ref)
    assert {k: tuple(v.shape) for k, v in own.items()} == {k: tuple(v.shape) for k, v in ref.items()}
    assert G.synthesis.layer_names == json.loads((FIXTURES / f"{name}.json").read_text())["layer_names"]
    filters = [k for k in ref if k.endswith(("up_filter", "down_filter"))]
    assert filters and any(ref[k].ndim == 2 for k in filters) == (name == "R")
    for k in filters:
        torch.testing.assert_close(own[k], ref[k], rtol=0, atol=1e-7)
    assert G.num_ws == 16 and G.family == "stylegan3" and G.config == f"stylegan3-{name.lower()}"


@needs_fixtures
@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("ref_suffix", ["", "_f64"])
@pytest.mark.parametrize("psi,cutoff,case", [(1.0, None, "psi1.0"), (0.7, None, "psi0.7"), (0.7, 4, "psi0.7_cutoff4")])
def test_mapping_matches(models, cases, name, ref_suffix, psi, cutoff, case):
    ws = models[name].mapping(cases[name]["z"], None, truncation_psi=psi, truncation_cutoff=cutoff)
    ref = cases[name][f"ws_{case}{ref_suffix}"]
    assert ws.shape == ref.shape == (4, 16, 64)
    assert (ws.double() - ref.double()).abs().max().item() <= WS_ATOL
    if cutoff is not None:  # layers past the cutoff are not truncated
        untruncated = models[name].mapping(cases[name]["z"], None)
        assert torch.equal(ws[:, cutoff:], untruncated[:, cutoff:])


@needs_fixtures
@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("case", IMAGE_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_synthesis_matches(models, cases, name, case, dtype):
    """float32 and float64 runs against the float32 and float64 references alike."""
    G, c = models[name], cases[name]
    transform = c["transform"] if case.endswith("transform") else None
    img = G.synthesize(synthesis_input(c, case, dtype), dtype=dtype, transform=transform)
    assert img.dtype == dtype
    for suffix in ("", "_f64"):
        assert_image_close(img, c[f"img_{case}{suffix}"])
    if dtype == torch.float64:  # the same computation: float64 agrees with NVIDIA's to rounding
        ref = c[f"img_{case}_f64"]
        assert (img - ref).abs().max().item() <= 1e-10 * ref.abs().max().item()


@needs_fixtures
def test_conv_clamp_is_applied(monkeypatch, cases):
    """The fixture's wplus_large stays below conv_clamp (256) in every layer, so clamping is checked with a
    clamp this network does reach: it changes the image, and the fused op clamps as the reference does."""
    clamped = Generator(**{**fixture_kwargs("T"), "conv_clamp": 1.0}).eval()
    clamped.load_state_dict(fixture_state("T"))
    ws = cases["T"]["wplus_large"][:2]
    img = clamped.synthesize(ws)
    assert not torch.allclose(img, cases["T"]["img_wplus_large"][:2], atol=1e-2)
    monkeypatch.setattr("morph.stylegan3.networks.filtered_lrelu", ops.filtered_lrelu_reference)
    torch.testing.assert_close(img, clamped.synthesize(ws), rtol=0, atol=1e-5)


@needs_fixtures
@pytest.mark.parametrize("name", CONFIGS)
def test_whole_generator_forward(models, cases, name):
    img = models[name](cases[name]["z"], None, truncation_psi=0.7, noise_mode="const")
    for suffix in ("", "_f64"):
        assert_image_close(img, cases[name][f"img_G_forward_psi0.7{suffix}"])


# ------------------------------------------------------------------------------------------
# The user transform and the camera helper.

@needs_fixtures
def test_camera_transform_is_gen_images_inverse_make_transform(cases):
    m = camera_transform((0.1, -0.05), 7)
    assert m.shape == (3, 3)
    torch.testing.assert_close(m, cases["T"]["transform"].double(), rtol=0, atol=1e-7)
    torch.testing.assert_close(camera_transform((0, 0), 0), torch.eye(3, dtype=torch.float64))


@needs_fixtures
def test_transform_buffer_and_argument_agree_and_the_buffer_is_left_alone(models, cases):
    G, c = models["R"], cases["R"]
    before = G.synthesis.input.transform.clone()
    by_argument = G.synthesize(c["ws_psi0.7"], transform=camera_transform((0.1, -0.05), 7))
    assert torch.equal(G.synthesis.input.transform, before)
    assert_image_close(by_argument, c["img_psi0.7_transform"])
    G2 = Generator(**fixture_kwargs("R")).eval()
    G2.load_state_dict({**fixture_state("R"), "synthesis.input.transform": c["transform"]})
    torch.testing.assert_close(G2.synthesis(c["ws_psi0.7"]), by_argument, rtol=0, atol=1e-6)
    assert not torch.allclose(G.synthesize(c["ws_psi0.7"]), by_argument, atol=1e-3)


@needs_fixtures
def test_per_sample_transforms(models, cases):
    G, ws = models["T"], cases["T"]["ws_psi0.7"][:2]
    moves = torch.stack([camera_transform((0.1, 0.0), 0), camera_transform((0.0, 0.2), 30)])
    both = G.synthesize(ws, transform=moves)
    for i in range(2):
        torch.testing.assert_close(both[i:i + 1], G.synthesize(ws[i:i + 1], transform=moves[i]), rtol=0, atol=2e-6)
    with pytest.raises(AssertionError):
        G.synthesize(ws, transform=torch.eye(3).repeat(3, 1, 1))


@needs_fixtures
def test_concurrent_calls_with_different_transforms(models, cases):
    """Two threads rendering different camera positions from one model get what sequential calls get."""
    G, ws = models["T"], cases["T"]["ws_psi1.0"][:2]
    moves = [camera_transform((0.05 * i, 0.0), 10 * i) for i in range(2)]
    expected = [G.synthesize(ws, transform=m) for m in moves]
    results: dict[int, list[torch.Tensor]] = {0: [], 1: []}

    def work(i: int) -> None:
        for _ in range(3):
            results[i].append(G.synthesize(ws, transform=moves[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        assert all(torch.equal(r, expected[i]) for r in results[i])


# ------------------------------------------------------------------------------------------
# The Model contract.

@needs_fixtures
def test_noise_modes_all_render_the_same_image(models, cases):
    G, ws = models["T"], cases["T"]["ws_psi0.7"][:1]
    assert G.noise_shapes() == []
    images = [G.synthesize(ws, noise=Noise(mode)) for mode in ("const", "random", "none")]
    assert all(torch.equal(images[0], img) for img in images[1:])
    with pytest.raises(ValueError, match="no noise inputs"):
        G.synthesize(ws, noise=Noise("const", maps=(torch.zeros(4, 4),)))


@needs_fixtures
@pytest.mark.parametrize("name", CONFIGS)
def test_layer_groups_follow_the_cutoffs(models, name):
    G = models[name]
    groups = G.layer_groups()
    assert list(groups) == ["coarse", "middle", "fine"]
    assert list(itertools.chain(*groups.values())) == list(range(G.num_ws))  # a partition, in order
    assert all(len(g) > 0 for g in groups.values())
    cutoff = [G.synthesis.cutoffs[0]] + G.synthesis.cutoffs  # ws[i] drives layer i-1; ws[0] the input
    assert all(cutoff[i] <= 4 + 1e-6 for i in groups["coarse"])
    assert all(4 + 1e-6 < cutoff[i] <= 16 + 1e-6 for i in groups["middle"])
    assert all(cutoff[i] > 16 + 1e-6 for i in groups["fine"])
    assert groups["fine"][-1] == G.num_ws - 1  # ToRGB is fine


def test_layer_groups_of_a_1024px_network_resemble_stylegan2():
    """Cutoffs 2, 2, 3.2 | 5, 8, 12.7 | 20, ... cycles: SG2-1024's groups are ws 0-3 | 4-7 | 8-17 of 18."""
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=1024, img_channels=3, channel_base=4096, channel_max=4)
    groups = G.layer_groups()
    assert groups == {"coarse": range(0, 3), "middle": range(3, 6), "fine": range(6, 16)}


@pytest.mark.parametrize("kwargs", [
    dict(img_resolution=32, img_channels=1, c_dim=0),
    dict(img_resolution=128, img_channels=3, c_dim=5, conv_kernel=1, use_radial_filters=True),
    dict(img_resolution=16, img_channels=3, c_dim=0, num_layers=6, num_critical=1, margin_size=4,
         lrelu_upsampling=1, conv_clamp=None),
])
def test_other_configurations_match_the_reference_composition(monkeypatch, kwargs):
    """Conditional, 1-channel and other resolutions / hyperparameters: the fused op gives the reference's image."""
    torch.manual_seed(1)
    G = Generator(z_dim=16, w_dim=16, channel_base=256, channel_max=16, **kwargs).eval()
    c = torch.eye(kwargs["c_dim"])[:2] if kwargs["c_dim"] else None
    z = torch.randn(2, 16)
    ws = G.mapping(z, c, truncation_psi=0.5)
    assert ws.shape == (2, G.num_ws, 16)
    if c is not None:  # the label matters
        assert not torch.allclose(ws, G.mapping(z, c.flip(0), truncation_psi=0.5))
    img = G.synthesize(ws.double(), dtype=torch.float64)
    assert img.shape == (2, kwargs["img_channels"], kwargs["img_resolution"], kwargs["img_resolution"])
    assert torch.isfinite(img).all() and img.abs().max() > 0
    monkeypatch.setattr("morph.stylegan3.networks.filtered_lrelu", ops.filtered_lrelu_reference)
    ref = G.synthesize(ws.double(), dtype=torch.float64)
    assert (img - ref).abs().max().item() <= 1e-12 * max(1.0, ref.abs().max().item())


# ------------------------------------------------------------------------------------------
# The fused filtered lrelu against the reference composition.

@pytest.mark.parametrize("up,down,padding,fu_kind,fd_kind", [
    (2, 2, (11, 10, 11, 10), "sep", "sep"), (4, 2, (-2, -5, -2, -5), "sep", "radial"),
    (2, 2, (-9, -10, -9, -10), "sep", "sep"), (1, 1, (0, 0, 0, 0), None, None),
    (2, 2, (3, 30, -4, 2), "2d", "radial"), (2, 1, (1, 2, 3, 4), "sep", None), (1, 2, (5, 6, 7, 8), None, "sep"),
    (2, 2, (-13, 0, 0, -13), "sep", "sep"),
])
@pytest.mark.parametrize("slope,gain,clamp", [(0.2, math.sqrt(2), 0.5), (1.0, 1.0, None)])
def test_filtered_lrelu_equals_reference(up, down, padding, fu_kind, fd_kind, slope, gain, clamp):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 40, 44, generator=g, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)

    def make(kind, factor):
        if kind is None:
            return None
        f = ops.design_lowpass_filter(6 * factor, 2.0, 6.0, 16 * factor, radial=kind == "radial")
        return torch.outer(f, f) if kind == "2d" else f

    fu, fd = make(fu_kind, up), make(fd_kind, down)
    ref = ops.filtered_lrelu_reference(x, fu, fd, b, up, down, padding, gain, slope, clamp)
    out = ops.filtered_lrelu(x, fu, fd, b, up, down, padding, gain, slope, clamp)
    assert out.shape == ref.shape == (2, 5, *ops.output_size((40, 44), fu, fd, up, down, padding))
    assert (out - ref).abs().max().item() < 1e-12
    cl = ops.filtered_lrelu(x.contiguous(memory_format=torch.channels_last), fu, fd, b, up, down, padding, gain,
                            slope, clamp)
    assert (cl - ref).abs().max().item() < 1e-12


def test_filtered_lrelu_sample_chunks(monkeypatch):
    """Running a few samples at a time (as large layers do) changes nothing."""
    x = torch.randn(5, 7, 20, 20, dtype=torch.float64)
    fu = ops.design_lowpass_filter(12, 2.0, 6.0, 32)
    whole = ops.filtered_lrelu(x, fu, fu, None, 2, 2, (11, 10, 11, 10), clamp=0.3)
    monkeypatch.setattr(ops, "CHUNK_ELEMENTS", 2 * 7 * 61 * 61)  # 2 samples per chunk
    assert torch.equal(ops.filtered_lrelu(x, fu, fu, None, 2, 2, (11, 10, 11, 10), clamp=0.3), whole)


@pytest.mark.parametrize("slope,gain", [(1.0, 1.0), (0.2, 1.0), (1.0, 2.0)])
def test_filtered_lrelu_leaves_its_input_alone(slope, gain):
    """Without filters or bias nothing is copied on the way in, yet the caller's tensor must not change."""
    x = torch.randn(2, 3, 8, 8) * 10
    before = x.clone()
    y = ops.filtered_lrelu(x, None, None, None, 1, 1, (0, 0, 0, 0), gain=gain, slope=slope, clamp=0.5)
    assert torch.equal(x, before) and y.abs().max() <= 0.5


# ------------------------------------------------------------------------------------------
# Loading.

def _forbid_code(monkeypatch):
    def forbidden(*args, **kw):
        raise AssertionError("code from the checkpoint was compiled or executed")

    for name in ("exec", "eval", "compile"):
        monkeypatch.setattr(builtins, name, forbidden)


@needs_fixtures
def test_nvidia_stylegan3_pickle_loads_exactly(monkeypatch, cases):
    path = FIXTURES / "T_nvidia.pkl"
    assert b"fixture trap" in path.read_bytes()  # the embedded sources are traps
    _forbid_code(monkeypatch)
    ckpt = read_checkpoint(path)
    monkeypatch.undo()
    assert ckpt.family == "stylegan3" and ckpt.format == "nvidia-pkl"
    ref = fixture_state("T")
    assert set(ckpt.state) == set(ref)
    assert all(torch.equal(ckpt.state[k], ref[k]) for k in ref)
    G = load_model(path)
    assert isinstance(G, Model)
    assert G.family == "stylegan3" and G.info.format == "nvidia-pkl" and G.info.metadata["training_set"]
    assert G.activation_size() == max(64 * 84 ** 2, 64 * 36 ** 2)  # L8-L12: 64 channels at 84 x 84
    c = cases["T"]
    assert (G.mapping(c["z"], None, truncation_psi=0.7) - c["ws_psi0.7"]).abs().max() <= WS_ATOL
    assert_image_close(G.synthesize(c["ws_psi0.7"]), c["img_psi0.7"])
    assert_image_close(G(c["z"], None, truncation_psi=0.7), c["img_G_forward_psi0.7"])


@needs_fixtures
def test_stylegan2_pickle_from_the_stylegan3_repository(monkeypatch):
    path = FIXTURES / "S_nvidia.pkl"
    _forbid_code(monkeypatch)
    ckpt = read_checkpoint(path)
    monkeypatch.undo()
    assert ckpt.family == "stylegan2"
    ref = fixture_state("S")
    assert all(torch.equal(ckpt.state[k], ref[k]) for k in ckpt.state)
    G = load_model(path)
    assert G.family == "stylegan2"
    with np.load(FIXTURES / "S_cases.npz") as z:
        c = {k: torch.from_numpy(z[k].copy()) for k in z.files}
    assert (G.mapping(c["z"], None, truncation_psi=0.7) - c["ws_psi0_7"]).abs().max() <= WS_ATOL
    assert_image_close(G.synthesis(c["ws_psi0_7"], noise_mode="const"), c["img_psi0_7_const"])


@needs_fixtures
def test_native_round_trip_records_the_family(tmp_path, cases):
    G = load_model(FIXTURES / "T_nvidia.pkl")
    dest = tmp_path / "t.safetensors"
    write_native(dest, G.init_kwargs, G.state_dict(), {"converted_from": "T_nvidia.pkl"}, family="stylegan3")
    from safetensors import safe_open

    with safe_open(dest, framework="pt") as f:
        header = f.metadata()
    assert header["format"] == "morph.stylegan3" and header["family"] == "stylegan3"
    G2 = load_model(dest)
    assert G2.family == "stylegan3" and G2.info.format == "morph" and G2.init_kwargs == G.init_kwargs
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G2.state_dict().values()))
    ws = cases["T"]["ws_psi0.7"]
    assert torch.equal(G2.synthesize(ws), G.synthesize(ws))
    with pytest.raises(CheckpointError, match="StyleGAN3 generator configuration"):
        write_native(tmp_path / "bad.safetensors", G.init_kwargs,
                     {k: v for k, v in G.state_dict().items() if "L3_" not in k}, family="stylegan3")


@needs_fixtures
def test_cli_convert_and_info_name_the_family_and_config(tmp_path):
    dest = tmp_path / "r.safetensors"
    G = Generator(**fixture_kwargs("R"))
    G.load_state_dict(fixture_state("R"))
    write_native(tmp_path / "src.safetensors", G.init_kwargs, G.state_dict(), family="stylegan3")
    run = [sys.executable, "-m", "morph.cli"]
    subprocess.run(run + ["convert", str(tmp_path / "src.safetensors"), str(dest)], check=True, capture_output=True)
    out = subprocess.run(run + ["info", "--json", str(dest)], check=True, capture_output=True, text=True).stdout
    facts = json.loads(out)
    assert facts["family"] == "stylegan3" and facts["config"] == "stylegan3-r" and facts["num_ws"] == 16
    assert facts["layers"][-1] == "L14_64_3"


def _stylegan3_g_ema(fake, class_name="Generator"):
    g = make_nvidia_generator(fake, fixture_kwargs("T"), fixture_state("T"))
    g.meta["class_name"] = class_name
    g.meta["state"]["_modules"]["synthesis"].meta["state"]["_modules"]["input"].meta["class_name"] = "SynthesisInput"
    return g


@needs_fixtures
def test_synthetic_stylegan3_pickle_loads(fake_modules, tmp_path):
    path = tmp_path / "sg3.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _stylegan3_g_ema(fake_modules)}))
    ckpt = read_checkpoint(path)
    assert ckpt.family == "stylegan3" and ckpt.init_kwargs["channel_base"] == 4096


@needs_fixtures
def test_stylegan_xl_pickles_are_refused_in_one_line(fake_modules, tmp_path):
    superres = tmp_path / "superres.pkl"
    superres.write_bytes(pickle.dumps({"G_ema": _stylegan3_g_ema(fake_modules, "SuperresGenerator")}))
    # A full StyleGAN-XL snapshot also pickles plain modules (its class embedding, the timm discriminator).
    xl = tmp_path / "xl.pkl"
    d = fake_modules.Persistent({"type": "class", "version": 6, "class_name": "ProjectedDiscriminator",
                                 "module_src": "from pg_modules.blocks import DownBlock\n" + TRAP, "state": {}})
    xl.write_bytes(pickle.dumps({"G_ema": _stylegan3_g_ema(fake_modules), "D": d, "embed": torch.nn.Embedding(3, 2)}))
    for path in (superres, xl):
        with pytest.raises(CheckpointError) as excinfo:
            read_checkpoint(path)
        text = str(excinfo.value)
        assert "\n" not in text and path.name in text
        assert "StyleGAN-XL" in text and "networks_stylegan3_resetting" in text


def test_unknown_stylegan3_arguments_are_refused():
    base = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3)
    assert valid_init_kwargs({**base, "conv_kernel": 1})["conv_kernel"] == 1
    for bad in ({"rand_embedding": True}, {"conv_kernel": 0}, {"num_critical": 14}, {"img_resolution": "16"}):
        with pytest.raises(CheckpointError):
            valid_init_kwargs({**base, **bad}, where="x.pkl")
