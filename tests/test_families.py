"""The family registry and the model contract: a third family, registered by one row, is written and loaded
through the ordinary loader, and both shipped families answer what callers ask of a model."""

from __future__ import annotations

from typing import Any, Optional

import pytest
import torch
from torch import nn

from morph.checkpoints import write_native
from morph.checkpoints.families import FAMILIES, Family, register
from morph.core.errors import CheckpointError
from morph.core.model import Model, Noise
from morph.models.loader import load_model


class ToyGenerator(nn.Module):
    """A made-up family: w is z through one linear layer, the image a fixed projection of w; no noise."""

    family = "toy"

    def __init__(self, z_dim: int, w_dim: int, img_resolution: int, num_ws: int = 2, **_: Any):
        super().__init__()
        self.init_kwargs = dict(z_dim=z_dim, w_dim=w_dim, img_resolution=img_resolution, num_ws=num_ws)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, 0, w_dim, num_ws
        self.img_resolution, self.img_channels = img_resolution, 3
        self.fc = nn.Linear(z_dim, w_dim)
        self.to_image = nn.Linear(w_dim, 3 * img_resolution ** 2)
        self.register_buffer("mean_w", torch.zeros(w_dim))

    def mapping(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor] = None, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None) -> torch.Tensor:
        w = self.fc(z)
        return self.mean_w.lerp(w, truncation_psi)[:, None].repeat(1, self.num_ws, 1)

    def synthesize(self, ws: torch.Tensor, noise: Noise = Noise(), dtype: Optional[torch.dtype] = None,
                   **family_options: Any) -> torch.Tensor:
        r = self.img_resolution
        return torch.tanh(self.to_image(ws.mean(dim=1))).view(-1, 3, r, r)

    def noise_shapes(self) -> list[tuple[int, int]]:
        return []

    def layer_groups(self) -> dict[str, range]:
        return {"coarse": range(0, 1), "middle": range(1, 1), "fine": range(1, self.num_ws)}

    def activation_size(self) -> int:
        return 3 * self.img_resolution ** 2

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mean_w

    def noise_maps(self) -> dict[str, torch.Tensor]:
        return {}

    def intermediate_resolutions(self) -> tuple[int, ...]:
        return ()

    def architecture_facts(self) -> dict[str, Any]:
        return {"layers": 2}


def valid_toy_kwargs(kwargs: dict, where: Any = None) -> dict:
    """The toy family's argument check: three positive integers (and num_ws)."""
    kw = {k: kwargs.get(k) for k in ("z_dim", "w_dim", "img_resolution", "num_ws")}
    if not all(isinstance(v, int) and v > 0 for v in kw.values()):
        raise CheckpointError(f"invalid toy arguments {kw}", where=where)
    return kw


@pytest.fixture
def toy_family():
    """The toy row registered for one test (the registry is restored afterwards)."""
    saved = dict(FAMILIES)
    yield register(Family("toy", "Toy", lambda: ToyGenerator, valid_toy_kwargs))
    FAMILIES.clear()
    FAMILIES.update(saved)


def test_a_registered_family_loads_through_the_ordinary_loader(toy_family, tmp_path):
    kwargs = dict(z_dim=4, w_dim=6, img_resolution=8, num_ws=3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        original = ToyGenerator(**kwargs)
    original.mean_w.normal_()
    path = tmp_path / "toy.safetensors"
    write_native(path, kwargs, original.state_dict(), {"note": "made up"}, family="toy")

    G = load_model(path)
    assert type(G) is ToyGenerator and isinstance(G, Model)
    assert G.info.format == "morph" and G.info.metadata == {"note": "made up"}
    assert torch.equal(G.w_avg, original.mean_w)
    z = torch.randn(2, 4)
    assert torch.equal(G.synthesize(G.mapping(z)), original.synthesize(original.mapping(z)))


def test_a_family_refuses_tensors_that_do_not_fit_its_generator(toy_family, tmp_path):
    kwargs = dict(z_dim=4, w_dim=6, img_resolution=8, num_ws=3)
    state = ToyGenerator(**kwargs).state_dict()
    state["fc.weight"] = torch.zeros(7, 4)
    with pytest.raises(CheckpointError, match=r"do not match the Toy generator configuration: wrong shape 'fc.weight'"):
        write_native(tmp_path / "bad.safetensors", kwargs, state, family="toy")


def test_an_unknown_family_is_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="unknown network family 'toy'.*StyleGAN2, StyleGAN3"):
        write_native(tmp_path / "x.safetensors", {}, {}, family="toy")


@pytest.mark.parametrize("family", ["stylegan2", "stylegan3"])
def test_both_families_answer_the_contract(family, tiny_stylegan3):
    G = load_model("builtin" if family == "stylegan2" else tiny_stylegan3)
    assert G.family == family and isinstance(G, Model)
    assert G.w_avg.shape == (G.w_dim,)
    facts = G.architecture_facts()
    assert facts["mapping_layers"] >= 1 and "conv_clamp" in facts
    maps = G.noise_maps()
    assert [tuple(m.shape) for m in maps.values()] == G.noise_shapes()
    ws = G.mapping(torch.randn(1, G.z_dim), torch.zeros(1, G.c_dim) if G.c_dim else None)
    for r in G.intermediate_resolutions():
        assert r < G.img_resolution
        assert G.synthesize(ws, Noise("const"), until=r).shape[-1] == r
    if family == "stylegan2":
        assert list(maps)[:2] == ["b4.conv1", "b8.conv0"] and facts["architecture"] == "skip"
        assert G.intermediate_resolutions() == tuple(2 ** i for i in range(2, G.img_resolution.bit_length() - 1))
    else:
        assert maps == {} and G.intermediate_resolutions() == () and facts["config"].startswith("stylegan3-")
