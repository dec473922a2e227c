"""The published FFHQ encoders (pSp, e4e) and ArcFace IR-SE50, against the official code's outputs
(../shared/fixtures/encoders): the weights are rebuilt from the fixtures' recipe, written in the published
file layouts (``torch.save`` dicts, both torch layouts), and read back through morph."""

from __future__ import annotations

import collections
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TEAM, morph, needs_dlib

from morph.core.errors import CheckpointError, MorphError

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "encoders"
SEED = 20261207


def _draw(rng: np.random.Generator, keys: list) -> collections.OrderedDict:
    """One official state dict, drawn by the fixtures README's recipe in ``keys`` order."""
    state = collections.OrderedDict()
    for name, shape, _dtype in keys:
        shape = tuple(shape)
        if name.endswith("num_batches_tracked"):
            value = np.zeros(shape, dtype=np.int64)
        elif name.endswith("running_var"):
            value = 0.5 + rng.random(shape, dtype=np.float32)
        elif name.endswith("running_mean"):
            value = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.1)
        elif len(shape) == 1 and name.endswith(".weight"):
            value = np.float32(0.9) + np.float32(0.2) * rng.random(shape, dtype=np.float32)
        elif len(shape) == 1 and name.endswith(".bias"):
            value = (rng.random(shape, dtype=np.float32) - np.float32(0.5)) * np.float32(0.2)
        elif name.startswith("styles.") and name.endswith(".linear.weight"):
            value = rng.standard_normal(shape, dtype=np.float32)
        else:
            value = rng.standard_normal(shape, dtype=np.float32) * np.float32(1 / math.sqrt(math.prod(shape[1:])))
        state[name] = torch.from_numpy(np.asarray(value))
    return state


def _decoder() -> collections.OrderedDict:
    """The rosinality decoder stored beside the encoders: zeros (any values serve), its FIR kernels as listed."""
    state = collections.OrderedDict()
    for name, shape, _dtype, *kernel in json.loads((FIXTURES / "decoder_keys.json").read_text()):
        state[name] = torch.tensor(kernel[0], dtype=torch.float32) if kernel else torch.zeros(shape)
    return state


def _opts(kind: str) -> dict:
    common = {"start_from_latent_avg": True, "dataset_type": "ffhq_encode", "checkpoint_path": None,
              "lpips_lambda": 0.8, "id_lambda": 0.1, "batch_size": 8, "stylegan_weights": "stylegan2-ffhq-config-f.pt"}
    if kind == "e4e":
        return {**common, "encoder_type": "Encoder4Editing", "stylegan_size": 1024, "w_discriminator_lambda": 0.1}
    return {**common, "encoder_type": "GradualStyleEncoder", "output_size": 1024, "input_nc": 3, "label_nc": 0,
            "learn_in_w": False}


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict[str, Path]:
    """e4e_ffhq_encode.pt, psp_ffhq_encode.pt (torch's zip layout) and model_ir_se50.pth (the legacy layout,
    as the 2018 file was written), rebuilt from the recipe."""
    if not (FIXTURES / "e4e_wplus.npy").is_file():
        pytest.skip(f"reference fixtures not found at {FIXTURES} (only the project's CI has them)")
    folder = tmp_path_factory.mktemp("published")
    rng = np.random.default_rng(SEED)
    decoder = _decoder()
    files = {}
    for kind in ("e4e", "psp"):
        encoder = _draw(rng, json.loads((FIXTURES / f"{kind}_keys.json").read_text()))
        latent_avg = torch.from_numpy(rng.standard_normal((18, 512), dtype=np.float32) * np.float32(0.5))
        assert np.array_equal(latent_avg.numpy(), np.load(FIXTURES / f"{kind}_latent_avg.npy"))  # the recipe's walk
        state = collections.OrderedDict([*((f"encoder.{k}", v) for k, v in encoder.items()),
                                         *((f"decoder.{k}", v) for k, v in decoder.items())])
        files[kind] = folder / f"{kind}_ffhq_encode.pt"
        torch.save({"state_dict": state, "opts": _opts(kind), "latent_avg": latent_avg}, files[kind])
        del encoder, state
    arcface = _draw(rng, json.loads((FIXTURES / "arcface_keys.json").read_text()))
    files["arcface"] = folder / "model_ir_se50.pth"
    torch.save(arcface, files["arcface"], _use_new_zipfile_serialization=False)
    return files


def _inputs() -> torch.Tensor:
    x = np.load(FIXTURES / "inputs.npy")
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 * 2 - 1  # (pixel / 255 - 0.5) / 0.5


@pytest.mark.parametrize("kind", ["e4e", "psp"])
def test_published_encoder_matches_the_official_wplus(published, kind):
    from morph.checkpoints.psp import read_encoder_checkpoint
    from morph.projection.psp import build_encoder

    ckpt = read_encoder_checkpoint(published[kind])
    assert ckpt.kind == kind and ckpt.n_styles == 18 and ckpt.opts["start_from_latent_avg"] is True
    net = build_encoder(ckpt)
    with torch.no_grad():
        w = net(_inputs()).numpy()
    reference = np.load(FIXTURES / f"{kind}_wplus.npy")
    assert w.shape == reference.shape == (2, 18, 512)
    assert np.abs(w - reference).max() <= 1e-4 * np.abs(reference).max()


def test_arcface_matches_the_official_features(published):
    from morph.projection.arcface import identity_features, load_arcface

    net = load_arcface(published["arcface"])
    features = identity_features(net, np.load(FIXTURES / "inputs.npy"))
    reference = np.load(FIXTURES / "arcface_features.npy")
    assert np.abs(features - reference).max() <= 1e-5
    assert np.allclose(np.linalg.norm(features, axis=1), 1, atol=1e-5)


def test_a_hostile_opts_is_refused_in_one_line(tmp_path):
    path = tmp_path / "e4e_ffhq_encode.pt"
    torch.save({"state_dict": {"encoder.styles.0.linear.weight": torch.zeros(512, 512)},
                "opts": collections.Counter(a=1), "latent_avg": torch.zeros(18, 512)}, path)
    from morph.checkpoints.psp import read_encoder_checkpoint

    with pytest.raises(CheckpointError) as e:
        read_encoder_checkpoint(path)
    text = str(e.value)
    assert "\n" not in text and "collections.Counter" in text and "refusing" in text


def test_a_mismatched_style_count_is_refused_in_one_line(published, G):
    from morph.projection.psp import load_published_encoder

    with pytest.raises(MorphError) as e:
        load_published_encoder(published["e4e"], G)  # 18 styles; the built-in model takes fewer
    text = str(e.value)
    assert "\n" not in text and "18 styles" in text and f"takes {G.num_ws}" in text


def test_the_decoder_is_the_model_when_none_is_given(published):
    from morph.checkpoints import detect_format, read_checkpoint
    from morph.checkpoints.psp import describe_encoder

    assert detect_format(published["psp"]) == "psp"
    ckpt = read_checkpoint(published["psp"])
    assert ckpt.init_kwargs["img_resolution"] == 1024 and ckpt.init_kwargs["w_dim"] == 512
    assert torch.allclose(ckpt.state["mapping.w_avg"], torch.from_numpy(np.load(FIXTURES / "psp_latent_avg.npy")).mean(0))
    lines = describe_encoder(published["e4e"])
    assert "e4e (Encoder4Editing)" in lines[0] and "18 styles" in lines[1]


def test_opening_the_encoder_maps_instead_of_reading(published):
    """Memory of opening (reading and building) the e4e encoder, then of one forward pass, in a fresh process:
    the weights are memory-mapped, so opening takes almost no private memory (the file's pages, once touched,
    are the kernel's reclaimable cache); printed for the record."""
    if not Path("/proc/self/status").is_file():
        pytest.skip("memory is read from /proc/self/status (Linux)")
    code = ("import torch; from morph.checkpoints.psp import read_encoder_checkpoint; "
            "from morph.projection.psp import build_encoder\n"
            "def rss():\n"
            "    d = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
            "    return [int(d[k].split()[0]) for k in ('RssAnon', 'RssFile', 'VmHWM')]\n"
            "before = rss()\n"
            f"net = build_encoder(read_encoder_checkpoint({str(published['e4e'])!r}))\n"
            "opened = rss()\n"
            "with torch.no_grad(): net(torch.zeros(1, 3, 256, 256))\n"
            "print(*before, *opened, *rss())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    (a0, f0, _), (a1, f1, h1), (a2, f2, h2) = np.array(out.stdout.split(), dtype=np.int64).reshape(3, 3) * 1024
    size = published["e4e"].stat().st_size
    mib = 2 ** 20
    print(f"\nopening a {size / mib:.0f} MiB e4e checkpoint: private +{(a1 - a0) / mib:.0f} MiB, file pages "
          f"+{(f1 - f0) / mib:.0f} MiB; after one 256 px forward pass: private +{(a2 - a0) / mib:.0f} MiB, "
          f"file pages +{(f2 - f0) / mib:.0f} MiB, peak RSS {h2 / mib:.0f} MiB")
    assert a1 - a0 < size / 20 and f1 - f0 < size / 20


def test_project_takes_the_encoder_checkpoint_and_its_decoder(published, tmp_path):
    """``morph project PHOTO --encoder e4e_ffhq_encode.pt --steps 0`` (no --model: the checkpoint's decoder is the
    model) writes the official W+ of the photo (an aligned 256 px face, so --no-align)."""
    from morph.render.images import write_png

    photo = tmp_path / "astronaut.png"
    write_png(photo, np.load(FIXTURES / "inputs.npy")[0])
    result = morph("project", str(photo), "--encoder", str(published["e4e"]), "--steps", "0", "--no-align",
                   "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    w = np.load(tmp_path / "out" / "astronaut.npy")
    reference = np.load(FIXTURES / "e4e_wplus.npy")[0]
    assert np.abs(w - reference).max() <= 1e-4 * np.abs(reference).max()
    assert json.loads((tmp_path / "out" / "astronaut.json").read_text())["encoder"] == str(published["e4e"])


def _two_people(folder: Path) -> dict[str, Path]:
    """Two crops of one photo (scikit-image's astronaut) and another person (a face of scikit-image's LFW subset,
    enlarged so that dlib finds it), as PNG files."""
    from PIL import Image
    from skimage import data

    from morph.render.images import write_png

    astronaut = data.astronaut()
    other = Image.fromarray((data.lfw_subset()[0] * 255).astype(np.uint8)).resize((200, 200), Image.BICUBIC)
    files = {"crop1": astronaut[0:420, 40:460], "crop2": astronaut[30:450, 10:430],
             "other": np.stack([np.pad(np.asarray(other), 60, mode="edge")] * 3, axis=-1)}
    for name, image in files.items():
        write_png(folder / f"{name}.png", np.ascontiguousarray(image))
    return {name: folder / f"{name}.png" for name in files}


@needs_dlib
def test_compare_orders_identity_with_dlib(tmp_path):
    photos = _two_people(tmp_path)
    same = morph("compare", str(photos["crop1"]), str(photos["crop2"]), "--json")
    other = morph("compare", str(photos["crop1"]), str(photos["other"]), "--json")
    assert same.returncode == 0 and other.returncode == 0, same.stderr + other.stderr
    same, other = json.loads(same.stdout), json.loads(other.stdout)
    assert {"psnr", "lpips", "identity"} <= set(same) and same["identity_model"] == "dlib"
    assert same["identity"] > other["identity"] and same["psnr"] > other["psnr"]
    text = morph("compare", str(photos["crop1"]), str(photos["crop2"])).stdout.splitlines()
    assert text[0].startswith("psnr") and text[1].startswith("lpips") and text[2].startswith("identity")


@needs_dlib
def test_compare_measures_identity_with_arcface(published, tmp_path):
    from morph.projection.compare import compare

    photos = _two_people(tmp_path)
    row = compare(photos["crop1"], photos["crop1"], arcface=published["arcface"])
    assert row["identity_model"] == "arcface" and abs(row["identity"] - 1) < 1e-5 and row["psnr"] > 90


def test_pti_output_loads_through_the_allow_list(tmp_path, monkeypatch):
    """PTI saves its tuned generator as ``torch.save(G)``: NVIDIA's persistent module in a torch zip. Such a file
    (made here from the NVIDIA fixture pickle, with stand-ins for NVIDIA's modules) reads as the pickle does;
    a torch.save'd module of any other class is refused in one line."""
    import pickle
    import types

    from morph.checkpoints import detect_format, read_checkpoint

    source = FIXTURES.parent / "stylegan2" / "B_nvidia.pkl"
    if not source.is_file():
        pytest.skip(f"reference fixtures not found at {source.parent}")

    class Persistent:  # what NVIDIA's persistence decorator pickles a module as: its class facts and state
        def __init__(self, meta):
            self.meta = meta

        def __reduce__(self):
            return reconstruct, (self.meta,)

    def reconstruct(meta):
        return Persistent(meta)

    class EasyDict(dict):
        pass

    reconstruct.__module__, reconstruct.__qualname__ = "torch_utils.persistence", "_reconstruct_persistent_obj"
    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    for name, attrs in (("torch_utils", {}), ("torch_utils.persistence", {"_reconstruct_persistent_obj": reconstruct}),
                        ("dnnlib", {}), ("dnnlib.util", {"EasyDict": EasyDict})):
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attrs))
    with open(source, "rb") as fh:
        network = pickle.load(fh)  # the project's own fixture, with the stand-ins above
    torch.save(network["G_ema"], tmp_path / "model_pti.pt")
    assert detect_format(tmp_path / "model_pti.pt") == "nvidia-pt"
    tuned, original = read_checkpoint(tmp_path / "model_pti.pt"), read_checkpoint(source)
    assert tuned.init_kwargs == original.init_kwargs and tuned.state.keys() == original.state.keys()
    assert all(torch.equal(tuned.state[k], original.state[k]) for k in tuned.state)

    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(tmp_path / "module.pt")
    assert "\n" not in str(e.value) and "torch.nn.modules.linear.Linear" in str(e.value)


def test_without_an_identity_term_the_projection_key_is_unchanged():
    """Projections cached before the identity term existed keep their keys (these are main's keys before it)."""
    from morph.projection.store import Settings

    image, model = "a" * 64, "b" * 64
    assert Settings().key(image, model) == "7e0ba916cf9508a792c0ed10b9acc99a9906d4d7ec10973ecb3c78244cd663f1"
    assert Settings(encoder="c" * 64, steps=100).key(image, model) == \
        "4ea8ac4b422de6bf8a8981252517ef09c0520eb9032e32754b06c5e21371413b"
    weighted = Settings(identity="d" * 64, identity_weight=0.1)
    assert weighted.key(image, model) != Settings().key(image, model)
    assert weighted.key(image, model) != Settings(identity="d" * 64, identity_weight=0.2).key(image, model)


def test_an_identity_weight_without_arcface_is_one_line(tmp_path):
    result = morph("project", str(TEAM[0]), "--steps", "1", "--identity-weight", "0.1", "--out", str(tmp_path / "o"),
                   "--cache", str(tmp_path / "c"))
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert "--identity-weight" in result.stderr and "--identity" in result.stderr and not (tmp_path / "o").exists()


def test_the_identity_term_is_nonzero_and_has_a_gradient(published, G):
    from morph.core.model import Noise
    from morph.projection.arcface import load_arcface
    from morph.projection.losses import identity
    from morph.render.images import read_image

    term = identity(load_arcface(published["arcface"]))
    photo = torch.from_numpy(read_image(TEAM[0])).permute(2, 0, 1)[None].float() / 127.5 - 1
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1)), None).requires_grad_(True)
    bound = term(photo)
    d = bound(G.synthesize(ws, Noise("const")))
    assert d.item() > 1e-6 and abs(bound(photo).item()) < 1e-5  # another face scores, the photo itself does not
    d.sum().backward()
    assert ws.grad is not None and ws.grad.abs().sum().item() > 0


def test_the_identity_term_changes_the_projection_and_its_cache_entry(published, G, tmp_path):
    """``identity_weight`` with the ArcFace file optimises another latent, cached under another key; the file
    given without a weight changes nothing (the same entry is read back)."""
    from dataclasses import replace

    from morph.projection import Settings, project_photos
    from morph.projection.encoder import encoder_for

    encoder, cache = encoder_for(G, "auto"), tmp_path / "cache"
    base = Settings(steps=3, align=False)
    plain = project_photos([TEAM[0]], G, base, cache_dir=cache, encoder=encoder, quiet=True)[0]
    again = project_photos([TEAM[0]], G, base, cache_dir=cache, encoder=encoder, quiet=True,
                           arcface=published["arcface"])[0]
    assert torch.equal(plain.w, again.w) and len(list((cache / "projections").glob("*.npz"))) == 1
    weighted = project_photos([TEAM[0]], G, replace(base, identity_weight=1.0), cache_dir=cache, encoder=encoder,
                              quiet=True, arcface=published["arcface"])[0]
    assert len(list((cache / "projections").glob("*.npz"))) == 2
    assert (weighted.w - plain.w).abs().max().item() > 1e-6


def test_a_scene_identity_term_is_the_one_morph_project_uses(published, G, tmp_path, monkeypatch):
    """``identity: {file, weight}`` in a scene and ``--identity FILE --identity-weight W`` give one cache entry:
    the scene finds ``morph project``'s projection cached, and without the term it does not."""
    from morph.engine.photos import project_files
    from morph.motion.latents import Project
    from morph.projection.scene import projection_status
    from morph.scene.types import Photos

    cache = tmp_path / "cache"
    project_files([TEAM[0]], "builtin", tmp_path / "out", steps=2, cache_dir=cache, quiet=True,
                  identity=published["arcface"], identity_weight=0.5)
    spec = Project(TEAM[0], 2, None)
    monkeypatch.setenv("MORPH_CACHE", str(cache))  # where morph check looks
    assert projection_status(spec, G, Photos(identity=published["arcface"], identity_weight=0.5)) == "cached"
    assert projection_status(spec, G).startswith("needs projection")
    assert projection_status(spec, G, Photos(identity=published["arcface"], identity_weight=0.25)) != "cached"


def test_a_scene_with_a_published_encoder_and_no_model_draws_with_its_decoder(published, tmp_path):
    from morph.scene import load_scene

    scene = tmp_path / "ffhq.yaml"
    scene.write_text(f"encoder: {published['e4e']}\ntune: {{steps: 1}}\nlatents: {{a: {{seed: 1}}, "
                     f"b: {{project: {TEAM[0]}}}}}\n"
                     "renders: {r: {format: png, size: 64, around: a, duration: 2f}}\n")
    sc = load_scene(scene)
    assert sc.model_path == published["e4e"] and sc.dims.num_ws == 18 and sc.dims.resolution == 1024
    assert sc.photos.encoder == str(published["e4e"]) and [(o.key, o.value) for o in sc.photos.tune] == [("steps", 1)]
