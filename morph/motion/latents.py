"""W-space algebra on ``[num_ws, w_dim]`` tensors (seeds, means, blends, layer mixes, direction offsets),
W/direction files, and a scene's named latents resolved in dependency order."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch

from morph.core.arrays import read_array, require_finite
from morph.core.errors import MorphError
from morph.core.files import atomic_path
from morph.core.model import Model
from morph.stylegan2.networks import layer_groups

SPACES = ("w+", "w")  # a projection's latent space: one w per layer, or one w broadcast to all


@dataclass(frozen=True)
class ModelDims:
    """The latent-space shape of a generator: everything a scene is validated against."""
    num_ws: int
    w_dim: int
    z_dim: int
    c_dim: int
    resolution: int
    groups: tuple[tuple[str, range], ...] = ()   # coarse / middle / fine w indices; () → StyleGAN2's by num_ws
    family: str = "stylegan2"

    def __post_init__(self) -> None:
        if not self.groups:
            object.__setattr__(self, "groups", tuple(layer_groups(self.num_ws).items()))

    @classmethod
    def of(cls, G: Model) -> "ModelDims":
        """Dimensions of a loaded generator."""
        return cls(G.num_ws, G.w_dim, G.z_dim, G.c_dim, G.img_resolution, tuple(G.layer_groups().items()), G.family)

    @classmethod
    def at(cls, resolution: int, w_dim: int = 512, z_dim: Optional[int] = None, c_dim: int = 0) -> "ModelDims":
        """Dimensions of a StyleGAN2 of ``resolution`` px (num_ws = 2·log2(R) − 2), e.g. for tests."""
        return cls(2 * int(math.log2(resolution)) - 2, w_dim, w_dim if z_dim is None else z_dim, c_dim, resolution)

    def group(self, name: str) -> range:
        """The w indices of layer group ``name`` (coarse, middle or fine)."""
        return dict(self.groups)[name]


# --- algebra ---------------------------------------------------------------------------------------------------

def z_from_seed(seed: int, z_dim: int, count: int = 1) -> torch.Tensor:
    """``[count, z_dim]`` latents for ``seed``, drawn as NVIDIA's ``generate.py`` does (same seed, same face)."""
    return torch.from_numpy(np.random.RandomState(seed).randn(count, z_dim)).to(torch.float32)


def map_z(G, z: torch.Tensor, label: Optional[int] = None, psi: float = 1.0,
          cutoff: Optional[int] = None) -> torch.Tensor:
    """``[n, num_ws, w_dim]`` from z through G's mapping, with a one-hot class ``label`` for conditional models."""
    device = next(G.parameters()).device
    c = None
    if G.c_dim:
        c = torch.zeros(len(z), G.c_dim, device=device)
        c[:, label or 0] = 1
    with torch.no_grad():
        return G.mapping(z.to(device), c, truncation_psi=psi, truncation_cutoff=cutoff).cpu()


def seed_w(G, seed: int, psi: float = 1.0, cutoff: Optional[int] = None, label: Optional[int] = None) -> torch.Tensor:
    """``[num_ws, w_dim]`` for a seed, with truncation ``psi`` applied to the first ``cutoff`` layers (all if None)."""
    return map_z(G, z_from_seed(seed, G.z_dim), label, psi, cutoff)[0]


def random_offsets(G, seed: int, count: int) -> torch.Tensor:
    """``[count, w_dim]`` seeded offsets from the mean face to random faces (w − w_avg): real variation's scale."""
    return map_z(G, z_from_seed(seed, G.z_dim, count))[:, 0] - G.w_avg.cpu()


class WMoments(NamedTuple):
    """How mapped w spreads: its mean [w_dim], each dimension's RMS deviation from it [w_dim], and the RMS
    distance of a whole w from it (a float)."""
    mean: torch.Tensor
    spread: torch.Tensor
    rms: float


def w_moments(G, samples: int = 10_000) -> WMoments:
    """The moments of w mapped from ``samples`` seeded z (NVIDIA projector's seed 123; class 0 of a conditional
    model), on the CPU: projection starts at the mean and scales its noise on w by ``rms``; an encoder
    measures its output in ``spread``."""
    z = z_from_seed(123, G.z_dim, samples)
    w = torch.cat([map_z(G, z[i:i + 1000])[:, 0] for i in range(0, samples, 1000)])
    mean = w.mean(dim=0)
    deviation = (w - mean).square()
    return WMoments(mean, deviation.mean(dim=0).sqrt(), float((deviation.sum() / samples).sqrt()))


def mean(ws: Sequence[torch.Tensor]) -> torch.Tensor:
    """Arithmetic mean of latents."""
    return torch.stack(list(ws)).mean(dim=0)


def blend(ws: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """Σ weight·latent; weights need not sum to 1 (extrapolation is allowed)."""
    stack = torch.stack(list(ws))
    return torch.tensordot(torch.tensor(list(weights), dtype=stack.dtype), stack, dims=1)


def mix(sources: Sequence[torch.Tensor], owners: Sequence[int]) -> torch.Tensor:
    """Style mix: layer ``i`` is taken from ``sources[owners[i]]``."""
    stack = torch.stack(list(sources))
    return stack[torch.as_tensor(owners), torch.arange(len(owners))]


def add(w: torch.Tensor, direction: torch.Tensor, strength: float, layers: Optional[range] = None) -> torch.Tensor:
    """``w + strength·direction`` on ``layers`` (all when None); other layers unchanged."""
    mask = torch.zeros(w.shape[0], 1, dtype=w.dtype)
    mask[slice(None) if layers is None else slice(layers.start, layers.stop)] = 1
    return w + strength * mask * direction


# --- files -----------------------------------------------------------------------------------------------------

def w_shape_problem(shape: Sequence[int], num_ws: int, w_dim: int) -> Optional[str]:
    """Why an array of ``shape`` is not a W or W+ latent/direction for this model, or None if it is."""
    if tuple(shape) in ((w_dim,), (1, w_dim), (num_ws, w_dim), (1, num_ws, w_dim)):
        return None
    return (f"has shape [{', '.join(map(str, shape))}]; the model needs [{w_dim}], [1, {w_dim}] (W) "
            f"or [{num_ws}, {w_dim}] (W+)")


def _pick_w(names: list[str], path) -> str:
    """The member of a latent/direction ``.npz`` to read: ``w``, ``direction``, or its only array."""
    keys = [k for k in ("w", "direction") if k in names] or (names if len(names) == 1 else [])
    if not keys:
        raise MorphError(f"holds arrays {names}; expected one named 'w' or 'direction', or a single array", where=path)
    return keys[0]


def read_w(path: str | os.PathLike, mmap: bool = False) -> np.ndarray:
    """The array in a ``.npy`` file, or in a ``.npz`` (key ``w`` as in NVIDIA's ``projected_w.npz``,
    ``direction``, or its only array): real, finite numbers only. Raises MorphError naming the file."""
    path = Path(path)
    array = read_array(path, mmap=mmap, choose=lambda names: _pick_w(names, path))
    require_finite(array, path)
    return array


def finite_float32(array: np.ndarray, where) -> np.ndarray:
    """``array`` as float32, refusing values that only overflow there (1e300 in a float64 file)."""
    with np.errstate(over="ignore"):
        out = np.array(array, dtype=np.float32)
    if not np.isfinite(out).all():
        raise MorphError("holds values too large for float32 (beyond ±3.4e38)", where=where,
                         hint="the file is damaged or came from a run that diverged; write it again")
    return out


def load_w(path: str | os.PathLike, num_ws: int, w_dim: int) -> torch.Tensor:
    """A latent or direction file as ``[num_ws, w_dim]`` float32 (W files are repeated over the layers)."""
    array = read_w(path)
    problem = w_shape_problem(array.shape, num_ws, w_dim)
    if problem:
        raise MorphError(problem, where=path)
    return torch.from_numpy(finite_float32(array, path)).reshape(-1, w_dim).expand(num_ws, w_dim).clone()


def export_w(source: str | os.PathLike, dest: Path, num_ws: int) -> np.ndarray:
    """Latent file ``source`` as ``[num_ws, w_dim]`` float32 (W repeated over the layers), written atomically to
    ``dest``: NVIDIA's ``projected_w.npz`` (``w``: [1, num_ws, w_dim]) for ``.npz``, else a plain ``.npy``."""
    w = load_w(source, num_ws, read_w(source, mmap=True).shape[-1]).numpy()
    out = w[None] if dest.suffix == ".npz" else w
    with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
        if dest.suffix == ".npz":
            np.savez(fh, w=out)
        else:
            np.save(fh, out)
    return out


# --- a scene's latents -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Seed:
    """z from a seed through the mapping network."""
    seed: int
    psi: float = 1.0
    cutoff: Optional[int] = None
    label: Optional[int] = None


@dataclass(frozen=True)
class File:
    """A W or W+ latent saved by morph, NVIDIA's projector or any tool writing .npy/.npz."""
    path: Path


@dataclass(frozen=True)
class Project:
    """A photo, resolved by projection onto the model (a resolver callback supplies the latent);
    ``steps`` and ``space`` override the projection's defaults."""
    image: Path
    steps: Optional[int] = None
    space: Optional[str] = None


@dataclass(frozen=True)
class Mean:
    """The mean of named latents."""
    names: tuple[str, ...]


@dataclass(frozen=True)
class Blend:
    """A weighted sum of named latents."""
    weights: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Mix:
    """A style mix: ``owners[i]`` names the latent that layer i comes from."""
    owners: tuple[str, ...]


@dataclass(frozen=True)
class From:
    """Another named latent, as is (a base for ``add``)."""
    name: str


Source = Union[Seed, File, Project, Mean, Blend, Mix, From]


@dataclass(frozen=True)
class Latent:
    """A named latent: its source, then direction offsets ``(direction, strength)`` on ``layers`` (all if None)."""
    source: Source
    edits: tuple[tuple[str, float], ...] = ()
    layers: Optional[range] = None
    where: str = ""  # "file:line:col: latents.name", for errors found while resolving

    def needs(self) -> tuple[str, ...]:
        """Names of the latents this one is built from."""
        src = self.source
        if isinstance(src, Mean):
            return src.names
        if isinstance(src, Blend):
            return tuple(name for name, _ in src.weights)
        if isinstance(src, Mix):
            return tuple(dict.fromkeys(src.owners))
        return (src.name,) if isinstance(src, From) else ()


Projector = Callable[[Project], torch.Tensor]


def resolve(latents: Mapping[str, Latent], directions: Mapping[str, torch.Tensor], G,
            project: Optional[Projector] = None) -> dict[str, torch.Tensor]:
    """Every named latent as ``[num_ws, w_dim]``; ``latents`` must be in dependency order (as a Scene keeps them),
    ``project`` turns a photo into a latent (projection is another module's job)."""
    out: dict[str, torch.Tensor] = {}
    for name, latent in latents.items():
        src = latent.source
        try:
            if isinstance(src, Seed):
                w = seed_w(G, src.seed, src.psi, src.cutoff, src.label)
            elif isinstance(src, File):
                w = load_w(src.path, G.num_ws, G.w_dim)
            elif isinstance(src, Project):
                if project is None:
                    raise MorphError(f"{src.image} must be projected onto the model first; no projector was given")
                w = project(src)
            elif isinstance(src, Mean):
                w = mean([out[n] for n in src.names])
            elif isinstance(src, Blend):
                w = blend([out[n] for n, _ in src.weights], [k for _, k in src.weights])
            elif isinstance(src, Mix):
                names = list(dict.fromkeys(src.owners))
                w = mix([out[n] for n in names], [names.index(n) for n in src.owners])
            else:
                w = out[src.name].clone()
        except MorphError as err:
            raise MorphError(str(err), where=latent.where or None) from None
        for direction, strength in latent.edits:
            w = add(w, directions[direction], strength, latent.layers)
        out[name] = w
    return out
