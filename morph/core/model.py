"""What morph needs from a generator, whatever its family: the contract scenes, rendering, projection
and directions are written against (StyleGAN2 and StyleGAN3 implement it).

A synthesis call is always given the noise it should draw with: a :class:`Noise` value (a mode and,
optionally, explicit maps such as a projected photo's). Nothing outside a model's constructor and
``load_state_dict`` writes its buffers, so one loaded model can serve several renders at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, runtime_checkable

import torch

NOISE_MODES = ("const", "random", "none")
LAYER_GROUPS = ("coarse", "middle", "fine")


@dataclass(frozen=True)
class ModelInfo:
    """Where a loaded generator came from: shown by ``morph info`` and keyed into render caches."""

    path: str
    format: str
    sha256: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Noise:
    """The noise a synthesis call draws with: ``mode`` (const | random | none) and, for ``const``,
    optional ``maps`` (one per noise layer, [R, R] or per sample [N, 1, R, R]) replacing the model's own."""

    mode: str = "const"
    maps: Optional[tuple[torch.Tensor, ...]] = None

    def __post_init__(self) -> None:
        if self.mode not in NOISE_MODES:
            raise ValueError(f"noise mode must be one of {NOISE_MODES}, got {self.mode!r}")
        if self.maps is not None and not isinstance(self.maps, tuple):
            object.__setattr__(self, "maps", tuple(self.maps))


@runtime_checkable
class Model(Protocol):
    """A loaded generator (an ``nn.Module``): everything code outside its family's folder may ask of it.

    Beyond these members a family's modules are its own (NVIDIA's ``mapping`` and ``synthesis`` networks):
    only its folder, the checkpoint readers and the built-in model's training scripts reach into them."""

    family: str                 # its row in morph.checkpoints.families: "stylegan2", "stylegan3", ...
    z_dim: int                  # input latent z
    c_dim: int                  # class label (0: unconditional)
    w_dim: int                  # intermediate latent w
    num_ws: int                 # how many w vectors synthesis takes (W+ is [num_ws, w_dim])
    img_resolution: int         # output images are [img_channels, R, R]
    img_channels: int           # 1 or 3
    info: ModelInfo             # file, format and content hash (set by the loader)
    init_kwargs: dict           # Generator(**init_kwargs): the constructor arguments a checkpoint writer stores

    def mapping(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor] = None, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None) -> torch.Tensor:
        """z [N, z_dim] (and c [N, c_dim]) → ws [N, num_ws, w_dim], truncated towards ``w_avg``."""

    def synthesize(self, ws: torch.Tensor, noise: Noise = Noise(), dtype: Optional[torch.dtype] = None,
                   **family_options: Any) -> torch.Tensor:
        """ws [N, num_ws, w_dim] → images [N, img_channels, R, R] in about [-1, 1], drawn with ``noise``.

        Both families take ``canvas=(width, height)``: the network itself draws a frame of that many
        pixels (StyleGAN2 widens its constant input, StyleGAN3 samples its Fourier input on a wider
        grid), centred on the square image; noise maps stay [R, R] and are widened inside. Other
        ``family_options`` are what only some families take, e.g. StyleGAN3's ``camera`` (poses [N, 3]:
        translate x, y in image widths, rotate in degrees), which a renderer passes only when a scene asks."""

    def noise_shapes(self) -> list[tuple[int, int]]:
        """[R, R] of each noise input, in order; empty for a family without noise inputs (StyleGAN3)."""

    def layer_groups(self) -> dict[str, range]:
        """The w indices of the named style-mixing groups ``coarse``, ``middle`` and ``fine``."""

    def activation_size(self) -> int:
        """Elements of the largest activation one image passes through (sizes render batches)."""

    @property
    def w_avg(self) -> torch.Tensor:
        """The mean w [w_dim] the mapping tracked in training (truncation's centre), on the model's device."""

    def noise_maps(self) -> dict[str, torch.Tensor]:
        """The model's own constant noise maps [R, R] by layer name, in :meth:`noise_shapes` order (the start
        projection refines, and the names its ``NAME.noise.npz`` files use); empty without noise inputs."""

    def intermediate_resolutions(self) -> tuple[int, ...]:
        """Resolutions below the output's at which ``synthesize(ws, noise, until=r)`` returns the image drawn so
        far: a cheaper, smaller picture of the same face (projection's coarse stage). Empty when the network
        draws its image only at the end."""

    def architecture_facts(self) -> dict[str, Any]:
        """What ``morph info`` shows of the network beyond the dimensions above: the family's own configuration
        (architecture, channels or layers, clamping, mapping depth), as JSON-ready values."""


def model_hash(G: Model) -> str:
    """The content hash that identifies ``G``'s weights in cache keys (the checkpoint file's SHA-256)."""
    return G.info.sha256


def check_noise(G: Model, noise: Noise) -> None:
    """Raise ValueError if ``noise.maps`` does not match ``G``'s noise inputs (count and size)."""
    if noise.maps is None:
        return
    shapes = G.noise_shapes()
    if len(noise.maps) != len(shapes):
        raise ValueError(f"{len(noise.maps)} noise maps for a model with {len(shapes)} noise inputs")
    for m, (h, w) in zip(noise.maps, shapes):
        if tuple(m.shape[-2:]) != (h, w):
            raise ValueError(f"noise map of shape {tuple(m.shape)} for a [{h}, {w}] noise input")


def crop_centre(img: torch.Tensor, canvas: tuple[int, int]) -> torch.Tensor:
    """The centre ``canvas`` (width, height) pixels of images [N, C, H, W] drawn at least that large."""
    width, height = canvas
    top, left = (img.shape[-2] - height) // 2, (img.shape[-1] - width) // 2
    assert top >= 0 and left >= 0, (tuple(img.shape), canvas)
    return img[..., top:top + height, left:left + width]


def images_to_uint8(img: torch.Tensor, out: Optional[torch.Tensor] = None,
                    scratch: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Generator output [N, C, H, W] in about [-1, 1] → uint8 frames [N, H, W, C] (NVIDIA's mapping).

    ``out`` (uint8 [N, H, W, C], or [N, H, W, 3] for grey images, which are repeated) receives the frames, and
    the arithmetic runs in ``scratch`` (``img``'s shape and dtype) when given: the same bytes without a fresh
    image-sized tensor per step, for a renderer that converts batch after batch."""
    assert img.ndim == 4, img.shape
    if scratch is None:
        values = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255)
    else:
        values = torch.mul(img, 127.5, out=scratch).add_(128).clamp_(0, 255).permute(0, 2, 3, 1)
    return values.to(torch.uint8) if out is None else out.copy_(values)


__all__ = ["LAYER_GROUPS", "NOISE_MODES", "Model", "ModelInfo", "Noise", "check_noise", "crop_centre", "images_to_uint8", "model_hash"]
