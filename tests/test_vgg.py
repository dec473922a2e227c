"""NVIDIA's vgg16.pt read as weights only: a TorchScript archive with VGG16+LPIPS's shapes and forward, built
here, gives morph the same tensors and LPIPS distances as the scripted module, without torch.jit.load, without
opening code/, and without firing the trap its code carries; hostile archives are refused in one line."""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from typing import List

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import morph.projection as projection
from morph.checkpoints import torchscript
from morph.core.errors import MorphError
from morph.projection.losses import VGG16_CFG

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # the test writes TorchScript
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
CPU = torch.device("cpu")


class _Conv(nn.Module):
    """3×3 conv + ReLU whose kernel is stored [out, in, 3, 3] or, like TensorFlow, [3, 3, in, out]."""

    def __init__(self, cin: int, cout: int, tf: bool):
        super().__init__()
        w = torch.randn(cout, cin, 3, 3) * (2 / (9 * cin)) ** 0.5
        self.w = nn.Parameter(w.permute(2, 3, 1, 0).contiguous() if tf else w)
        self.b = nn.Parameter(torch.randn(cout) * 0.1)
        self.tf = tf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.w.permute(3, 2, 0, 1) if self.tf else self.w
        return F.relu(F.conv2d(x, w, self.b, padding=1))


class _Trap(nn.Module):
    """Code in the file that runs only if the file's code runs: on load it turns every output into NaN."""

    def __init__(self):
        super().__init__()
        self.register_buffer("poison", torch.ones(1))

    @torch.jit.export
    def __getstate__(self):
        return (self.poison, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]):
        self.poison = state[0] * float("nan")
        self.training = state[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.poison


class _NvidiaLikeVGG(nn.Module):
    """vgg16.pt's call and semantics as far as they are known: images in [0, 255], ImageNet normalisation,
    VGG16's 13 convolutions, the five taps unit-normalised and scaled by sqrt(LPIPS weight / pixels)."""

    def __init__(self, tf: bool):
        super().__init__()
        convs, cin, pools = [], 3, []
        for v in VGG16_CFG:
            if v == "M":
                pools.append(len(convs) - 1)
            else:
                convs.append(_Conv(cin, v, tf))
                cin = v
        self.layers = nn.ModuleList(convs)
        self.pools: List[int] = pools
        self.taps: List[int] = pools + [len(convs) - 1]
        self.fc = nn.Linear(512, 16)  # stands in for fc6..fc8, which morph never reads
        shape = (lambda c: (1, 1, c, 1)) if tf else (lambda c: (c,))
        self.lpips0, self.lpips1, self.lpips2, self.lpips3, self.lpips4 = (
            nn.Parameter(torch.rand(shape(c))) for c in LPIPS_CHANNELS)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.trap = _Trap()

    def forward(self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        x = img.to(torch.float32)
        if resize_images:
            x = F.interpolate(x, size=(224, 224), mode="area")
        x = (x / 255 - self.mean) / self.std
        feats: List[torch.Tensor] = []
        for i, conv in enumerate(self.layers):
            x = conv(x)
            if i in self.taps:
                feats.append(x)
            if i in self.pools:
                x = F.max_pool2d(x, 2)
        if not return_lpips:
            return self.trap(self.fc(x.mean(dim=(2, 3))))
        weights = [self.lpips0, self.lpips1, self.lpips2, self.lpips3, self.lpips4]
        out: List[torch.Tensor] = []
        for f, w in zip(feats, weights):
            unit = f / (f.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            out.append((unit * (w.reshape(1, -1, 1, 1) / (f.shape[2] * f.shape[3])).sqrt()).flatten(1))
        return self.trap(torch.cat(out, dim=1))


@pytest.fixture(scope="module", params=["torch-layout", "tf-layout"])
def vgg_file(request, tmp_path_factory):
    """(the scripted module, its file): full VGG16 shapes, made once per layout."""
    torch.manual_seed(0)
    net = torch.jit.script(_NvidiaLikeVGG(tf=request.param == "tf-layout")).eval()
    path = tmp_path_factory.mktemp(request.param) / "vgg16.pt"
    net.save(str(path))
    return net, path


def _one_line_about(err: pytest.ExceptionInfo, path) -> str:
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{path}: "), text
    return text


def test_the_reader_gives_the_archive_tensors(vgg_file):
    net, path = vgg_file
    tensors = torchscript.read_torchscript(path)
    params = dict(net.named_parameters())
    assert set(params) <= set(tensors)
    for name, p in params.items():
        assert torch.equal(tensors[name], p.detach()), name
    assert torch.equal(tensors["mean"], net.mean)


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """The archive members opened while the test runs."""
    names: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        names.append(name if isinstance(name, str) else name.filename)
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    return names


def test_only_the_chosen_tensors_are_read(vgg_file, opened):
    _, path = vgg_file
    seen = []

    def choose(available):
        seen.extend(available)
        return ["lpips2"]

    tensors = torchscript.read_torchscript(path, choose)
    assert list(tensors) == ["lpips2"] and len(seen) > 30 and ("fc.weight", torch.Size([16, 512])) in seen
    assert len([n for n in opened if "/data/" in n]) == 1


def test_lpips_matches_the_scripted_module_without_running_its_code(vgg_file, monkeypatch, opened):
    net, path = vgg_file
    torch.manual_seed(1)
    target, img = torch.rand(2, 2, 3, 64, 64) * 2 - 1

    def features(x):
        return net((x + 1) * 127.5, resize_images=False, return_lpips=True)

    with torch.no_grad():
        want = (features(img) - features(target)).square().sum(dim=1)
        assert torch.isnan(torch.jit.load(str(path))((img + 1) * 127.5, False, True)).all()  # the trap is live

    def refuse(*args, **kwargs):
        raise AssertionError("morph ran the TorchScript loader")

    monkeypatch.setattr(torch.jit, "load", refuse)
    monkeypatch.setattr(torch._C, "import_ir_module", refuse)
    dist = projection.make_distance("ignored", CPU, [path])(target)
    with torch.no_grad():
        got = dist(img)
    assert torch.isfinite(got).all() and (got > 0).all()
    assert torch.allclose(got, want, rtol=1e-5, atol=0), (got, want)
    assert torch.allclose(dist(target), torch.zeros(2), atol=1e-6)
    assert opened and not [n for n in opened if "/code/" in n]


def _archive(path, members: dict[str, bytes], compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in {"x/code/__torch__.py": b"", "x/version": b"3\n", **members}.items():
            zf.writestr(name, data)
    return path


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_naming_os_system_is_refused_in_one_line(tmp_path):
    marker = tmp_path / "ran"
    path = _archive(tmp_path / "vgg16.pt", {"x/data.pkl": pickle.dumps(_Evil(marker), protocol=2)})
    with pytest.raises(MorphError) as err:
        projection.make_distance("ignored", CPU, [path])
    text = _one_line_about(err, path)
    assert f"refusing to read: its pickle names the global '{os.system.__module__}.system'" in text
    assert not marker.exists()


class _Tensor:
    """Pickles as the storage reference + ``_rebuild_tensor_v2`` call torch.jit.save writes, with any numel."""

    def __init__(self, numel: int):
        self.numel = numel

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (_Ref(self.numel), 0, (self.numel,), (1,), False,
                                                 collections.OrderedDict())


class _Ref:
    def __init__(self, numel: int):
        self.numel = numel


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", torch.FloatStorage, "0", "cpu", obj.numel) if isinstance(obj, _Ref) else None


def _data_pkl(value) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(value)
    return buf.getvalue()


def test_a_small_hand_made_archive_reads(tmp_path):
    path = _archive(tmp_path / "w.pt", {"x/data.pkl": _data_pkl({"w": _Tensor(4)}),
                                        "x/data/0": torch.arange(4.0).numpy().tobytes()})
    assert torch.equal(torchscript.read_torchscript(path)["w"], torch.arange(4.0))


@pytest.mark.parametrize("numel, stored", [(4, 15), (2 ** 40, 16)], ids=["truncated-storage", "oversized-claim"])
def test_a_storage_of_the_wrong_size_is_refused(tmp_path, numel, stored):
    path = _archive(tmp_path / "w.pt", {"x/data.pkl": _data_pkl({"w": _Tensor(numel)}), "x/data/0": bytes(stored)})
    with pytest.raises(MorphError) as err:
        torchscript.read_torchscript(path)
    assert f"holds {stored} bytes, its reference claims {numel * 4}" in _one_line_about(err, path)


def test_a_truncated_archive_is_refused(vgg_file, tmp_path):
    _, path = vgg_file
    cut = tmp_path / "vgg16.pt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(MorphError) as err:
        torchscript.read_torchscript(cut)
    assert "not a readable TorchScript archive" in _one_line_about(err, cut)
    with pytest.raises(MorphError) as err:
        projection.make_distance("ignored", CPU, [cut])
    _one_line_about(err, cut)


def test_a_zip_bomb_member_is_refused_unread(tmp_path):
    path = _archive(tmp_path / "w.pt", {"x/data.pkl": _data_pkl({"w": _Tensor(4)}), "x/data/0": bytes(8 << 20)},
                    compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(MorphError) as err:
        torchscript.read_torchscript(path)
    assert "inflates from" in _one_line_about(err, path)


def test_too_many_torchscript_classes_are_refused(tmp_path, monkeypatch):
    objects = b"".join(b"c__torch__\nC%d\n)\x81a" % i for i in range(4))  # GLOBAL, EMPTY_TUPLE, NEWOBJ, APPEND
    path = _archive(tmp_path / "w.pt", {"x/data.pkl": b"\x80\x02]" + objects + b"."})
    assert torchscript.read_torchscript(path) == {}
    monkeypatch.setattr(torchscript, "MAX_MODULES", 3)
    with pytest.raises(MorphError) as err:
        torchscript.read_torchscript(path)
    assert "more than 3 TorchScript classes" in _one_line_about(err, path)


class _NotVGG(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        return self.conv(img / 255).flatten(1)


def test_a_torchscript_file_that_is_not_vgg16_is_refused_in_one_line(tmp_path):
    path = tmp_path / "vgg16.pt"
    torch.jit.script(_NotVGG()).save(str(path))
    with pytest.raises(MorphError) as err:
        projection.make_distance("ignored", CPU, [path])
    assert "not NVIDIA's VGG16+LPIPS file: nothing of shape [64, 3, 3, 3] for features.0.weight" in \
        _one_line_about(err, path)


class _WithConstant(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tensor([1.5, 2.5, 3.5])


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_constants_are_read_from_their_own_storages(tmp_path):
    path = tmp_path / "c.pt"
    torch.jit.trace(_WithConstant(), torch.ones(3)).save(str(path))
    assert torch.equal(torchscript.read_torchscript(path)["CONSTANTS.c0"], torch.tensor([1.5, 2.5, 3.5]))
