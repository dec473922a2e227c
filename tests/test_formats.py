"""Checkpoint formats: safe reading of NVIDIA / TF / rosinality files, morph's native format, errors."""

from __future__ import annotations

import argparse
import builtins
import collections
import json
import math
import os
import pickle
import random
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from morph import checkpoints as formats
from morph.checkpoints import detect_format, expected_shapes, normalize_init_kwargs, read_checkpoint, write_native
from morph.checkpoints import safe_pickle as sp
from morph.checkpoints.rosinality import _solve_channels
from morph.core.errors import CheckpointError

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "stylegan2"
needs_fixtures = pytest.mark.skipif(not (FIXTURES / "B.npz").exists(),
                                    reason=f"StyleGAN2 reference fixtures not found at {FIXTURES}")

TRAP = "raise RuntimeError('test trap: module_src must never be executed')\n"


# ------------------------------------------------------------------------------------------
# Reference data.

@pytest.fixture(scope="module")
def b_ref():
    with np.load(FIXTURES / "B.npz") as z:
        state = {k: torch.from_numpy(z[k].copy()) for k in z.files}
    kwargs = json.loads((FIXTURES / "B.json").read_text())["init_kwargs"]
    return kwargs, state


def assert_matches_reference(ckpt, ref_state):
    expected = {k for k in ref_state if not k.endswith("resample_filter")}
    assert set(ckpt.state) == expected
    for k in expected:
        assert ckpt.state[k].dtype == torch.float32
        assert torch.equal(ckpt.state[k], ref_state[k]), k


def assert_one_line_error(excinfo, path, *fragments):
    text = str(excinfo.value)
    assert "\n" not in text
    assert os.path.basename(os.fspath(path)) in text
    for fragment in fragments:
        assert fragment in text, text


def read_error(path, *fragments):
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(path)
    assert_one_line_error(excinfo, path, *fragments)
    return str(excinfo.value)


# ------------------------------------------------------------------------------------------
# Writers for synthetic files in the real formats (fake modules make pickle emit the real globals).

@pytest.fixture
def fake_modules(monkeypatch):
    """Install importable stand-ins for torch_utils.persistence, dnnlib.util and dnnlib.tflib.network."""
    ns = types.SimpleNamespace()

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - never called by the reader
        raise AssertionError("called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"

    class Persistent:
        def __init__(self, meta):
            self.meta = meta

        def __reduce__(self):
            return (_reconstruct_persistent_obj, (self.meta,))

    class EasyDict(dict):
        pass

    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"

    class Network:
        def __init__(self, state):
            self._state = state

        def __getstate__(self):
            return self._state

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"

    mods = {name: types.ModuleType(name) for name in
            ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util", "dnnlib.tflib",
             "dnnlib.tflib.network")}
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    mods["dnnlib.util"].EasyDict = EasyDict
    mods["dnnlib.tflib.network"].Network = Network
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    ns.Persistent, ns.EasyDict, ns.Network = Persistent, EasyDict, Network
    return ns


_CLASS_NAMES = {"synthesis": "SynthesisNetwork", "mapping": "MappingNetwork", "conv0": "SynthesisLayer",
                "conv1": "SynthesisLayer", "torgb": "ToRGBLayer", "affine": "FullyConnectedLayer",
                "embed": "FullyConnectedLayer", "skip": "Conv2dLayer"}
_BUFFERS = ("noise_const", "w_avg", "resample_filter")


def make_nvidia_generator(fake, kwargs, state, transform=lambda name, t: t, synthesis_extra=None):
    """A persistent-object tree shaped like NVIDIA's G_ema, from a flat state dict."""
    tree = {"children": {}, "params": {}, "buffers": {}}
    for name, tensor in state.items():
        *path, leaf = name.split(".")
        node = tree
        for part in path:
            node = node["children"].setdefault(part, {"children": {}, "params": {}, "buffers": {}})
        t = transform(name, tensor)
        if leaf in _BUFFERS:
            node["buffers"][leaf] = t
        else:
            node["params"][leaf] = torch.nn.Parameter(t, requires_grad=False)

    def build(node, name, class_name, init_kwargs):
        children = collections.OrderedDict(
            (child, build(sub, child, _CLASS_NAMES.get(child, "SynthesisBlock" if child.startswith("b") else
                                                        "FullyConnectedLayer"), {}))
            for child, sub in node["children"].items())
        if synthesis_extra and name in synthesis_extra:
            children.update(synthesis_extra[name])
        st = {"training": False, "_parameters": collections.OrderedDict(node["params"]),
              "_buffers": collections.OrderedDict(node["buffers"]), "_non_persistent_buffers_set": set(),
              "_forward_hooks": collections.OrderedDict(), "_is_full_backward_hook": None,
              "_modules": children, "act_gain": np.float64(math.sqrt(2)), "_init_args": (),
              "_init_kwargs": init_kwargs}
        return fake.Persistent({"type": "class", "version": 6, "module_src": TRAP, "class_name": class_name,
                                "state": st})

    init = fake.EasyDict(kwargs)
    for key in ("mapping_kwargs", "synthesis_kwargs"):
        if key in init:
            init[key] = fake.EasyDict(init[key])
    return build(tree, "", "Generator", init)


def nvidia_to_tf_variables(kwargs, state):
    """Inverse of the FORMAT-tf-pkl.md mapping: (Gs own variables, mapping vars, synthesis vars)."""
    kw = normalize_init_kwargs(kwargs)
    own, mapping, synthesis = [], [], []
    conv = lambda w: w.numpy().transpose(2, 3, 1, 0)  # noqa: E731
    for name, t in state.items():
        if name.endswith("resample_filter"):
            continue
        a = t.numpy()
        if name == "mapping.w_avg":
            own.append(("dlatent_avg", a))
            continue
        parts = name.split(".")
        if parts[0] == "mapping":
            scope = "LabelEmbed" if parts[1] == "embed" else f"Dense{parts[1][2:]}"
            mapping.append((f"{scope}/{parts[2]}", a.T if parts[2] == "weight" else a))
            continue
        r = int(parts[1][1:])
        if parts[2] == "const":
            synthesis.append(("4x4/Const/const", a[None]))
            continue
        layer, leaf = parts[2], ".".join(parts[3:])
        if leaf == "noise_const":
            idx = 0 if r == 4 else 2 * int(math.log2(r)) - (5 if layer == "conv0" else 4)
            synthesis.append((f"noise{idx}", a[None, None]))
            continue
        scope = {"conv0": "Conv0_up", "conv1": "Conv" if r == 4 else "Conv1", "torgb": "ToRGB", "skip": "Skip"}[layer]
        if leaf == "weight":
            w = conv(t)
            value = w[::-1, ::-1].copy() if layer in ("conv0", "skip") else w
        elif leaf == "affine.weight":
            value = a.T
        elif leaf == "affine.bias":
            value = a - np.float32(1)
        else:
            value = a if a.ndim else np.float32(a)
        synthesis.append((f"{r}x{r}/{scope}/{leaf.replace('affine.', 'mod_')}", value))
    s = kw["synthesis_kwargs"]
    static = {"num_channels": kw["img_channels"], "resolution": kw["img_resolution"], "label_size": kw["c_dim"],
              "latent_size": kw["z_dim"], "dlatent_size": kw["w_dim"], "fmap_base": s["channel_base"] // 2,
              "fmap_max": s["channel_max"], "mapping_layers": kw["mapping_kwargs"]["num_layers"],
              "num_fp16_res": s["num_fp16_res"], "conv_clamp": s["conv_clamp"]}
    if s["architecture"] != "skip":
        static["architecture"] = s["architecture"]
    return static, own, mapping, synthesis


def write_tf_pickle(fake, path, kwargs, state, edit=None):
    static, own, mapping, synthesis = nvidia_to_tf_variables(kwargs, state)
    if edit:
        edit(static, own, mapping, synthesis)

    def net(name, variables, components, static_kwargs):
        return fake.Network({"version": 5, "name": name, "static_kwargs": static_kwargs, "components": components,
                             "build_module_src": "# placeholder", "build_func_name": "G_main",
                             "variables": variables})

    gs = net("Gs", own, {"synthesis": net("G_synthesis", synthesis, {}, {}),
                         "mapping": net("G_mapping", mapping, {}, {})}, static)
    with open(path, "wb") as f:
        pickle.dump((gs, net("D", [], {}, {}), gs), f, protocol=3)


def to_rosinality(kwargs, state):
    """Inverse mapping: NVIDIA names -> rosinality g_ema names and layouts."""
    kw = normalize_init_kwargs(kwargs)
    k1 = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = torch.outer(k1, k1) / 64 * 4
    sd = {}
    for i in range(kw["mapping_kwargs"]["num_layers"]):
        sd[f"style.{i + 1}.weight"] = state[f"mapping.fc{i}.weight"]
        sd[f"style.{i + 1}.bias"] = state[f"mapping.fc{i}.bias"]
    sd["input.input"] = state["synthesis.b4.const"][None]

    def styled(dst, src, up=False):
        sd[f"{dst}.conv.weight"] = state[f"{src}.weight"][None]
        if up:
            sd[f"{dst}.conv.blur.kernel"] = kernel
        sd[f"{dst}.conv.modulation.weight"] = state[f"{src}.affine.weight"]
        sd[f"{dst}.conv.modulation.bias"] = state[f"{src}.affine.bias"]
        sd[f"{dst}.noise.weight"] = state[f"{src}.noise_strength"].reshape(1)
        sd[f"{dst}.activate.bias"] = state[f"{src}.bias"]

    def rgb(dst, src, up=True):
        if up:
            sd[f"{dst}.upsample.kernel"] = kernel
        sd[f"{dst}.conv.weight"] = state[f"{src}.weight"][None]
        sd[f"{dst}.conv.modulation.weight"] = state[f"{src}.affine.weight"]
        sd[f"{dst}.conv.modulation.bias"] = state[f"{src}.affine.bias"]
        sd[f"{dst}.bias"] = state[f"{src}.bias"].reshape(1, -1, 1, 1)

    styled("conv1", "synthesis.b4.conv1")
    rgb("to_rgb1", "synthesis.b4.torgb", up=False)
    for k, r in enumerate(formats.block_resolutions(kw)[1:]):
        styled(f"convs.{2 * k}", f"synthesis.b{r}.conv0", up=True)
        styled(f"convs.{2 * k + 1}", f"synthesis.b{r}.conv1")
        rgb(f"to_rgbs.{k}", f"synthesis.b{r}.torgb")
    for i, name in enumerate(formats.noise_buffer_names(kw)):
        sd[f"noises.noise_{i}"] = state[name][None, None]
    return {k: v.clone() for k, v in sd.items()}


def random_state(kwargs, seed=0):
    """Random float32 tensors for every expected name; affine biases are 1 + x (exact TF round trip)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in expected_shapes(normalize_init_kwargs(kwargs)).items():
        t = torch.randn(shape, generator=g)
        if name.endswith("affine.bias"):
            t = (1 + 0.25 * t).float()
        out[name] = t
    return out


def mapping_mean(state, num_layers, lr_mul, z):
    """The mean of the mapping output over z (numpy float64, independent of the reader's code)."""
    x = z / np.sqrt(np.mean(z ** 2, axis=1, keepdims=True) + 1e-8)
    for i in range(num_layers):
        w = state[f"mapping.fc{i}.weight"].double().numpy()
        b = state[f"mapping.fc{i}.bias"].double().numpy()
        x = x @ (w * lr_mul / np.sqrt(w.shape[1])).T + b * lr_mul
        x = np.where(x >= 0, x, 0.2 * x) * np.sqrt(2)
    return x.mean(axis=0), x.std(axis=0)


# ------------------------------------------------------------------------------------------
# The real fixture files.

@needs_fixtures
@pytest.mark.parametrize("name,fmt", [("B_nvidia.pkl", "nvidia-pkl"), ("B_tf.pkl", "tf-pkl")])
def test_fixture_pickles_load_exactly(b_ref, monkeypatch, name, fmt):
    kwargs, ref = b_ref

    def forbidden(*args, **kw):
        raise AssertionError("code from the checkpoint was compiled or executed")

    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "compile", forbidden)
    assert detect_format(FIXTURES / name) == fmt
    ckpt = read_checkpoint(FIXTURES / name)
    monkeypatch.undo()
    assert ckpt.format == fmt
    assert ckpt.init_kwargs == normalize_init_kwargs(kwargs)
    assert ckpt.init_kwargs["synthesis_kwargs"] == {"channel_base": 4096, "channel_max": 128, "num_fp16_res": 0,
                                                   "conv_clamp": 256, "architecture": "skip"}
    assert ckpt.init_kwargs["mapping_kwargs"] == {"num_layers": 8, "lr_multiplier": 0.01, "w_avg_beta": 0.995}
    assert_matches_reference(ckpt, ref)
    assert all(isinstance(v, str) for v in ckpt.metadata.values())


@needs_fixtures
def test_detection_ignores_the_extension(tmp_path):
    misnamed = tmp_path / "model.safetensors"
    os.symlink(FIXTURES / "B_nvidia.pkl", misnamed)
    assert detect_format(misnamed) == "nvidia-pkl"
    misnamed_tf = tmp_path / "model.pt"
    os.symlink(FIXTURES / "B_tf.pkl", misnamed_tf)
    assert detect_format(misnamed_tf) == "tf-pkl"


@needs_fixtures
def test_trap_fires_if_executed():
    """Sanity check of the fixture itself: its module_src really is a trap."""
    with open(FIXTURES / "B_nvidia.pkl", "rb") as f:
        data = sp.load_nvidia_pickle(f)
    assert data["G_ema"].module_src_chars > 0
    raw = (FIXTURES / "B_nvidia.pkl").read_bytes()
    assert b"fixture trap" in raw


# ------------------------------------------------------------------------------------------
# Synthetic NVIDIA pickles: protocols, fp16, strides, missing tensors, StyleGAN3.

@needs_fixtures
@pytest.mark.parametrize("protocol", [2, 3, 5])
def test_nvidia_pickle_protocols_fp16_and_strides(b_ref, fake_modules, tmp_path, protocol):
    kwargs, ref = b_ref

    def transform(name, t):
        if name.endswith("torgb.weight"):
            return t.half()  # published pickles carry fp16 layers
        if name.endswith("conv1.weight"):
            return t.to(memory_format=torch.channels_last)  # non-contiguous strides
        if name.endswith("affine.weight"):
            return t.t().contiguous().t()  # transposed strides
        return t

    g = make_nvidia_generator(fake_modules, kwargs, ref, transform)
    path = tmp_path / f"snapshot-p{protocol}.pkl"
    path.write_bytes(pickle.dumps({"G": g, "D": None, "G_ema": g, "augment_pipe": None}, protocol=protocol))
    ckpt = read_checkpoint(path)
    assert ckpt.format == "nvidia-pkl"
    assert ckpt.init_kwargs == normalize_init_kwargs(kwargs)
    for k in ckpt.state:
        want = ref[k].half().float() if k.endswith("torgb.weight") else ref[k]
        assert ckpt.state[k].dtype == torch.float32 and ckpt.state[k].is_contiguous()
        assert torch.equal(ckpt.state[k], want), k


@needs_fixtures
def test_nvidia_stylegan3_repo_kwargs_layout(b_ref, fake_modules, tmp_path):
    """stylegan3's StyleGAN2 Generator takes the synthesis arguments at the top level."""
    kwargs, ref = b_ref
    flat = {k: v for k, v in kwargs.items() if k != "synthesis_kwargs"}
    flat.update(kwargs["synthesis_kwargs"], fused_modconv_default="inference_only")
    path = tmp_path / "sg3repo.pkl"
    path.write_bytes(pickle.dumps({"G_ema": make_nvidia_generator(fake_modules, flat, ref)}))
    assert read_checkpoint(path).init_kwargs == normalize_init_kwargs(kwargs)


@needs_fixtures
def test_nvidia_missing_tensor(b_ref, fake_modules, tmp_path):
    kwargs, ref = b_ref
    partial = {k: v for k, v in ref.items() if k != "synthesis.b16.conv0.weight"}
    path = tmp_path / "incomplete.pkl"
    path.write_bytes(pickle.dumps({"G_ema": make_nvidia_generator(fake_modules, kwargs, partial)}))
    read_error(path, "missing tensor", "synthesis.b16.conv0.weight")


@needs_fixtures
def test_nvidia_wrong_shape(b_ref, fake_modules, tmp_path):
    kwargs, ref = b_ref
    bad = dict(ref)
    bad["mapping.fc3.bias"] = torch.zeros(7)
    path = tmp_path / "wrongshape.pkl"
    path.write_bytes(pickle.dumps({"G_ema": make_nvidia_generator(fake_modules, kwargs, bad)}))
    read_error(path, "mapping.fc3.bias", "shape")


def test_incomplete_nvidia_stylegan3_names_the_family(fake_modules, tmp_path):
    kwargs = {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 16, "img_channels": 3}
    state = {"mapping.fc0.weight": torch.zeros(8, 8), "mapping.fc0.bias": torch.zeros(8),
             "synthesis.input.weight": torch.zeros(8, 4), "synthesis.L0_36_8.weight": torch.zeros(8, 8, 3, 3)}
    g = make_nvidia_generator(fake_modules, kwargs, state)
    g.meta["state"]["_modules"]["synthesis"].meta["state"]["_modules"]["input"].meta["class_name"] = "SynthesisInput"
    path = tmp_path / "stylegan3-t.pkl"
    path.write_bytes(pickle.dumps({"G_ema": g}))
    read_error(path, "StyleGAN3 generator configuration", "missing tensors")


def test_nvidia_without_g_ema(fake_modules, tmp_path):
    g = make_nvidia_generator(fake_modules, {"z_dim": 8}, {"mapping.fc0.bias": torch.zeros(8)})
    path = tmp_path / "only_g.pkl"
    path.write_bytes(pickle.dumps({"G": g, "D": None}))
    read_error(path, "no 'G_ema'")


def test_nvidia_g_ema_not_a_generator(fake_modules, tmp_path):
    g = make_nvidia_generator(fake_modules, {"z_dim": 8}, {"fc0.bias": torch.zeros(8)})
    g.meta["class_name"] = "Discriminator"
    path = tmp_path / "disc.pkl"
    path.write_bytes(pickle.dumps({"G_ema": g}))
    read_error(path, "not a StyleGAN2 Generator")


@pytest.mark.skipif(not (FIXTURES / "E.npz").exists(), reason=f"fixture E.npz not found in {FIXTURES}")
def test_conditional_generator_all_writers(fake_modules, tmp_path):
    """Config E (c_dim 10: mapping.embed / LabelEmbed) through NVIDIA, TF and native files."""
    with np.load(FIXTURES / "E.npz") as z:
        ref = {k: torch.from_numpy(z[k].copy()) for k in z.files}
    kwargs = json.loads((FIXTURES / "E.json").read_text())["init_kwargs"]
    assert "mapping.embed.weight" in expected_shapes(normalize_init_kwargs(kwargs))
    nv = tmp_path / "e_nvidia.pkl"
    nv.write_bytes(pickle.dumps({"G_ema": make_nvidia_generator(fake_modules, kwargs, ref)}))
    tf = tmp_path / "e_tf.pkl"
    write_tf_pickle(fake_modules, tf, kwargs, ref)
    native = tmp_path / "e.safetensors"
    write_native(native, kwargs, ref)
    for path in (nv, tf, native):
        ckpt = read_checkpoint(path)
        assert ckpt.init_kwargs == normalize_init_kwargs(kwargs)
        assert_matches_reference(ckpt, ref)


# ------------------------------------------------------------------------------------------
# TF pickles: resnet/orig layouts, unknown kwargs, missing variables.

@needs_fixtures
def test_tf_writer_matches_fixture(b_ref, fake_modules, tmp_path):
    """Our inverse writer reproduces what the real B_tf.pkl reads to (validates the test helper)."""
    kwargs, ref = b_ref
    path = tmp_path / "b_tf_rewritten.pkl"
    write_tf_pickle(fake_modules, path, kwargs, ref)
    assert detect_format(path) == "tf-pkl"
    assert_matches_reference(read_checkpoint(path), ref)


@pytest.mark.parametrize("architecture", ["resnet", "orig", "skip"])
def test_tf_architectures(fake_modules, tmp_path, architecture):
    kwargs = {"z_dim": 16, "c_dim": 0, "w_dim": 16, "img_resolution": 32, "img_channels": 1,
              "mapping_kwargs": {"num_layers": 2},
              "synthesis_kwargs": {"channel_base": 256, "channel_max": 16, "architecture": architecture}}
    state = random_state(kwargs, seed=3)
    names = set(state)
    assert ("synthesis.b16.skip.weight" in names) == (architecture == "resnet")
    assert ("synthesis.b16.torgb.weight" in names) == (architecture == "skip")
    assert "synthesis.b32.torgb.weight" in names
    path = tmp_path / f"tf_{architecture}.pkl"
    write_tf_pickle(fake_modules, path, kwargs, state)
    ckpt = read_checkpoint(path)
    assert ckpt.init_kwargs == normalize_init_kwargs(kwargs)
    assert set(ckpt.state) == names
    for k in names:
        assert torch.equal(ckpt.state[k], state[k]), k


@needs_fixtures
def test_tf_unknown_kwarg(b_ref, fake_modules, tmp_path):
    kwargs, ref = b_ref
    path = tmp_path / "tf_unknown.pkl"
    write_tf_pickle(fake_modules, path, kwargs, ref, edit=lambda static, *_: static.update(fmap_decay=1.0))
    read_error(path, "fmap_decay")


@needs_fixtures
def test_tf_missing_variable(b_ref, fake_modules, tmp_path):
    kwargs, ref = b_ref

    def drop(static, own, mapping, synthesis):
        synthesis[:] = [(k, v) for k, v in synthesis if k != "noise3"]

    path = tmp_path / "tf_missing.pkl"
    write_tf_pickle(fake_modules, path, kwargs, ref, edit=drop)
    read_error(path, "synthesis/noise3")


# ------------------------------------------------------------------------------------------
# rosinality checkpoints.

@needs_fixtures
@pytest.mark.parametrize("zip_format", [True, False])
def test_rosinality_with_latent_avg(b_ref, tmp_path, zip_format):
    kwargs, ref = b_ref
    sd = to_rosinality(kwargs, ref)
    ckpt = {"g": sd, "d": {}, "g_ema": sd, "g_optim": {}, "d_optim": {}, "ada_aug_p": 0.0,
            "args": argparse.Namespace(size=64, latent=128, n_mlp=8, channel_multiplier=2, lr=0.002),
            "latent_avg": ref["mapping.w_avg"].clone()}
    path = tmp_path / "rosinality.pt"
    torch.save(ckpt, path, _use_new_zipfile_serialization=zip_format)
    assert detect_format(path) == "rosinality"
    got = read_checkpoint(path)
    assert got.format == "rosinality"
    assert got.init_kwargs["synthesis_kwargs"]["conv_clamp"] is None
    want = normalize_init_kwargs(kwargs)
    want["synthesis_kwargs"]["conv_clamp"] = None
    assert got.init_kwargs == want
    assert_matches_reference(got, ref)


@needs_fixtures
def test_rosinality_without_latent_avg_estimates_w_avg(b_ref, tmp_path):
    kwargs, ref = b_ref
    path = tmp_path / "no_avg.pt"
    torch.save({"g_ema": to_rosinality(kwargs, ref), "args": argparse.Namespace(n_mlp=8)}, path)
    got = read_checkpoint(path)
    assert "estimated" in got.metadata["w_avg"]
    z = np.random.default_rng(1).standard_normal((10_000, 128))
    mean, std = mapping_mean(ref, 8, 0.01, z)
    tol = 6 * std * math.sqrt(2 / 10_000) + 1e-4
    assert np.all(np.abs(got.state["mapping.w_avg"].double().numpy() - mean) < tol)
    rest = {k: v for k, v in ref.items() if k != "mapping.w_avg"}
    for k in rest:
        if not k.endswith("resample_filter"):
            assert torch.equal(got.state[k], rest[k]), k


def test_rosinality_lr_mlp_and_channel_solver(tmp_path):
    """A config-f-like layout: 512 up to 32x32 then halving -> channel_base 32768 / channel_max 512... scaled down."""
    kwargs = {"z_dim": 32, "c_dim": 0, "w_dim": 32, "img_resolution": 64, "img_channels": 3,
              "mapping_kwargs": {"num_layers": 3, "lr_multiplier": 0.1},
              "synthesis_kwargs": {"channel_base": 512, "channel_max": 32}}
    state = random_state(kwargs, seed=5)
    path = tmp_path / "small.pt"
    torch.save({"g_ema": to_rosinality(kwargs, state), "args": argparse.Namespace(lr_mlp=0.1),
                "latent_avg": state["mapping.w_avg"]}, path)
    got = read_checkpoint(path)
    assert got.init_kwargs == normalize_init_kwargs(kwargs)
    for k in state:
        assert torch.equal(got.state[k], state[k]), k


def test_rosinality_channel_solver():
    assert _solve_channels({4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128}, "x") == (32768, 512)
    assert _solve_channels({4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128}, "x") == (16384, 512)
    assert _solve_channels({4: 128, 8: 128, 16: 128, 32: 128, 64: 64}, "x") == (4096, 128)
    assert _solve_channels({4: 64, 8: 64}, "x") == (32768, 64)
    with pytest.raises(CheckpointError, match="channel"):
        _solve_channels({4: 8, 8: 6, 16: 4}, "odd.pt")


# ------------------------------------------------------------------------------------------
# Hostile files: nothing from them may run.

class _Evil:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _hostile_payloads(marker):
    return [
        (os.system, (f"touch {marker}",), f"{os.system.__module__}.system"),
        (builtins.exec, (f"open({str(marker)!r}, 'w').close()",), "builtins.exec"),
        (builtins.eval, (f"open({str(marker)!r}, 'w').close()",), "builtins.eval"),
        (subprocess.Popen, (["touch", str(marker)],), "subprocess.Popen"),
    ]


@pytest.mark.parametrize("index", range(4))
def test_hostile_pickles_are_refused(tmp_path, index):
    marker = tmp_path / "MARKER"
    func, args, qualname = _hostile_payloads(marker)[index]
    path = tmp_path / f"evil{index}.pkl"
    path.write_bytes(pickle.dumps(_Evil(func, args)))
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(path)
    assert_one_line_error(excinfo, path, f"refusing to load global '{qualname}'")
    assert not marker.exists()


@pytest.mark.parametrize("evil_first", [False, True])
def test_hostile_stack_global_inside_nvidia_looking_pickle(fake_modules, tmp_path, evil_first):
    marker = tmp_path / "MARKER"
    g = make_nvidia_generator(fake_modules, {"z_dim": 8}, {"mapping.fc0.bias": torch.zeros(8)})
    evil = _Evil(os.system, (f"touch {marker}",))
    data = {"evil": evil, "G_ema": g} if evil_first else {"G_ema": g, "augment_pipe": evil}
    raw = pickle.dumps(data, protocol=4)
    assert b"\x93" in raw  # STACK_GLOBAL
    path = tmp_path / "snapshot.pkl"
    path.write_bytes(raw)
    read_error(path, f"refusing to load global '{os.system.__module__}.system'")
    assert not marker.exists()


def test_hostile_global_inside_a_storage_blob(fake_modules, tmp_path):
    marker = tmp_path / "MARKER"
    blob = b"".join([pickle.dumps(sp.LEGACY_MAGIC, protocol=2), pickle.dumps(1001, protocol=2),
                     pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2),
                     pickle.dumps(_Evil(os.system, (f"touch {marker}",)), protocol=2)])
    g = make_nvidia_generator(fake_modules, {"z_dim": 8}, {"mapping.fc0.bias": torch.zeros(8)})
    path = tmp_path / "blob.pkl"
    path.write_bytes(pickle.dumps({"G_ema": g, "x": _Evil(torch.storage._load_from_bytes, (blob,))}))
    read_error(path, f"refusing to load global '{os.system.__module__}.system'")
    assert not marker.exists()


@pytest.mark.parametrize("zip_format", [True, False])
def test_hostile_torch_file_is_refused(tmp_path, zip_format):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": _Evil(os.system, (f"touch {marker}",))}, path, _use_new_zipfile_serialization=zip_format)
    read_error(path, f"refusing to load global '{os.system.__module__}.system'")
    assert not marker.exists()


# ------------------------------------------------------------------------------------------
# Broken or unrelated input.

@needs_fixtures
@pytest.mark.parametrize("name", ["B_nvidia.pkl", "B_tf.pkl"])
@pytest.mark.parametrize("cut", ["1000", "half"])
def test_truncated_pickles(tmp_path, name, cut):
    raw = (FIXTURES / name).read_bytes()
    path = tmp_path / f"cut_{cut}_{name}"
    path.write_bytes(raw[:1000] if cut == "1000" else raw[:len(raw) // 2])
    read_error(path)


def test_truncated_torch_zip(tmp_path):
    path = tmp_path / "full.pt"
    torch.save({"g_ema": {"input.input": torch.zeros(1, 4, 4, 4)}}, path)
    cut = tmp_path / "cut.pt"
    raw = path.read_bytes()
    cut.write_bytes(raw[:len(raw) // 2])
    read_error(cut)


@pytest.mark.parametrize("obj", [[1, 2, 3], {"a": 1}, ("G", "D", "Gs"), collections.OrderedDict(a=1)])
def test_unrelated_pickles(tmp_path, obj):
    path = tmp_path / "unrelated.pkl"
    path.write_bytes(pickle.dumps(obj))
    read_error(path, "not a StyleGAN2 checkpoint")


def test_plain_state_dict_pickle_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "state.pkl"
    path.write_bytes(pickle.dumps({"w": torch.zeros(3)}))
    read_error(path, "not a StyleGAN2 checkpoint")


def test_empty_directory_missing(tmp_path):
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    read_error(empty, "empty")
    read_error(tmp_path, "directory")
    read_error(tmp_path / "nope.pkl", "no such file")
    with pytest.raises(CheckpointError):
        detect_format(tmp_path / "nope.pkl")


@pytest.mark.parametrize("seed", range(6))
def test_random_bytes(tmp_path, seed):
    rng = random.Random(seed)
    raw = bytearray(rng.randbytes(4096))
    if seed % 2:  # make it look like a pickle header so the opcode scanner has to cope
        raw[0:2] = b"\x80\x04"
    path = tmp_path / f"random{seed}.bin"
    path.write_bytes(bytes(raw))
    read_error(path)


@needs_fixtures
def test_npz_and_foreign_safetensors(tmp_path):
    npz = tmp_path / "weights.pt"
    shutil.copy(FIXTURES / "A.npz", npz)
    read_error(npz, "not a torch checkpoint")
    from safetensors.torch import save_file

    st = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, st)
    read_error(st, "not a morph")


# ------------------------------------------------------------------------------------------
# morph native.

@needs_fixtures
def test_native_round_trip(b_ref, tmp_path):
    kwargs, ref = b_ref
    src = read_checkpoint(FIXTURES / "B_tf.pkl")
    path = tmp_path / "b.safetensors"
    write_native(path, src.init_kwargs, src.state, {"note": "hello", "n": 3})
    assert sorted(os.listdir(tmp_path)) == ["b.safetensors"]  # no temp file left behind
    assert detect_format(path) == "morph"
    got = read_checkpoint(path)
    assert got.format == "morph"
    assert got.init_kwargs == src.init_kwargs
    assert got.metadata["note"] == "hello" and got.metadata["n"] == "3"
    assert_matches_reference(got, ref)
    # the reference state (with resample_filter buffers) and un-normalised kwargs are accepted too
    write_native(path, kwargs, ref)
    again = read_checkpoint(path)
    assert again.init_kwargs == normalize_init_kwargs(kwargs)
    assert_matches_reference(again, ref)


def test_native_rejects_inconsistent_state(tmp_path):
    kwargs = {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 8, "img_channels": 3,
              "mapping_kwargs": {"num_layers": 1}, "synthesis_kwargs": {"channel_base": 64, "channel_max": 8}}
    state = random_state(kwargs)
    del state["synthesis.b8.conv1.bias"]
    with pytest.raises(CheckpointError, match="missing tensor"):
        write_native(tmp_path / "x.safetensors", kwargs, state)
    assert not any(tmp_path.iterdir())


def test_native_truncated(tmp_path):
    kwargs = {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 8, "img_channels": 3,
              "mapping_kwargs": {"num_layers": 1}, "synthesis_kwargs": {"channel_base": 64, "channel_max": 8}}
    path = tmp_path / "small.safetensors"
    write_native(path, kwargs, random_state(kwargs))
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) - 100])
    read_error(path)


# ------------------------------------------------------------------------------------------
# Expected shapes are computed from the configuration; they must be exactly the network's.

@pytest.mark.parametrize("changes", [
    {},
    {"architecture": "orig", "use_noise": False},
    {"architecture": "resnet", "kernel_size": 5},
    {"c_dim": 3, "embed_features": 5, "layer_features": 7, "w_avg_beta": None, "num_layers": 3},
    {"img_resolution": 32, "channel_base": 256, "channel_max": 16, "img_channels": 1, "z_dim": 0, "c_dim": 2},
])
def test_computed_shapes_are_the_networks(changes):
    from morph.checkpoints.config import stylegan2_shapes
    from morph.stylegan2.networks import Generator

    top = {k: changes[k] for k in ("c_dim", "img_resolution", "img_channels", "z_dim") if k in changes}
    mapping = {k: changes[k] for k in ("embed_features", "layer_features", "w_avg_beta", "num_layers") if k in changes}
    synthesis = {k: v for k, v in changes.items() if k not in top and k not in mapping}
    kw = normalize_init_kwargs({"z_dim": 6, "c_dim": 0, "w_dim": 8, "img_resolution": 16, "img_channels": 3,
                                **top, "mapping_kwargs": {"num_layers": 2, **mapping},
                                "synthesis_kwargs": {"channel_base": 128, "channel_max": 8, **synthesis}})
    network = [(k, tuple(v.shape)) for k, v in Generator(**kw).state_dict().items()
               if not k.endswith("resample_filter")]
    assert stylegan2_shapes(kw) == network
    assert list(expected_shapes(kw).items()) == network
