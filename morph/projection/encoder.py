"""Image → W+ encoder: a first guess of a photo's latent in one forward pass, which projection then refines.

The network is a small residual CNN with a feature pyramid (ResNet + FPN, as pSp reads a face): stride-2
residual stages take the image down to 4 px; a top-down pathway adds each coarser map, upsampled, to the
next finer one, so every level sees both layout and detail. Each of StyleGAN's layer groups is read from
the pyramid level that matches what those layers draw: ``coarse`` ws (pose, face shape) from the 4 px
level, ``middle`` from 8 px, ``fine`` (colours, texture) from 16 px. A head pools its level to 2×2 and
maps it linearly to that group's ws. The groups are the model's own (:meth:`morph.core.model.Model.layer_groups`):
StyleGAN2's by block resolution, StyleGAN3's by each layer's cutoff frequency (kept in the file's header).

The output is an *offset from w_avg*, in units of w's spread per dimension: mapped ws cluster tightly
around w_avg, so the offset is small and of unit scale whatever the model; the zero-initialised heads
start the encoder at the mean face, which is where the projector itself starts, and training only ever
moves it towards the photo. Images go in at ``min(R, 256)`` px (area-downsampled), so the encoder of a
1024 px model costs about what one of a 256 px model does.

Stored in morph's own safetensors format (``format = morph.encoder``, the architecture and training
facts in the header, weights in float16) with the generator's sha256 in the header: an encoder is
refused, in one line, by any other model.
"""

from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from morph.builtin import builtin_path
from morph.checkpoints.psp import is_encoder_checkpoint
from morph.core.errors import CheckpointError, MorphError
from morph.core.files import atomic_path, file_sha256, read_safetensors
from morph.core.limits import MAX_ENCODER_WIDTH, MAX_IMAGE_CHANNELS, MAX_LATENT_DIM, MAX_NUM_WS, MAX_RESOLUTION
from morph.models.resolver import is_builtin_file
from morph.projection.psp import load_published_encoder
from morph.stylegan2.networks import layer_groups as layer_groups_of  # the heads of a file that names no groups

FORMAT = "morph.encoder"  # the files' format name (shipped files carry it): not the module path
VERSION = "1"
MAX_INPUT = 256  # encoder input resolution cap
GROUP_LEVEL = {"coarse": 0, "middle": 1, "fine": 2}  # pyramid level (0 = 4 px) each layer group reads


class _Residual(nn.Module):
    """Two 3×3 convolutions (BatchNorm, LeakyReLU) plus a 1×1 projection shortcut; ``stride`` 2 halves the size."""
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                                  nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.body(x) + self.skip(x), 0.2)


class Encoder(nn.Module):
    """Images [N, C, R, R] in [-1, 1] → W+ [N, num_ws, w_dim] = w_avg + w_scale · offset (see the module doc)."""
    def __init__(self, num_ws: int, w_dim: int, img_resolution: int, img_channels: int = 3, base: int = 32,
                 max_width: int = 256, pyramid: int = 96, layer_groups: Optional[dict[str, list[int]]] = None):
        """``layer_groups``: {group: [start, stop]} of ws, when not StyleGAN2's for ``num_ws``."""
        super().__init__()
        self.num_ws, self.w_dim, self.img_resolution, self.img_channels = num_ws, w_dim, img_resolution, img_channels
        self.base, self.max_width, self.pyramid = base, max_width, pyramid
        self.layer_groups = layer_groups
        self.input_size = min(img_resolution, MAX_INPUT)
        stages = max(3, int(math.log2(self.input_size)) - 2)
        widths = [min(base * 2 ** i, max_width) for i in range(stages)]
        self.stem = nn.Sequential(nn.Conv2d(img_channels, base, 3, 1, 1, bias=False), nn.BatchNorm2d(base),
                                  nn.LeakyReLU(0.2, inplace=True))
        self.stages = nn.ModuleList(_Residual(cin, cout, 2) for cin, cout in zip([base] + widths[:-1], widths))
        self.lateral = nn.ModuleList(nn.Conv2d(w, pyramid, 1) for w in widths[-3:][::-1])  # 4, 8, 16 px
        self.smooth = nn.ModuleList(nn.Conv2d(pyramid, pyramid, 3, 1, 1) for _ in range(2))
        groups = layer_groups_of(num_ws) if layer_groups is None else {k: range(*v) for k, v in layer_groups.items()}
        if set(groups) - set(GROUP_LEVEL) or [i for r in groups.values() for i in r] != list(range(num_ws)):
            raise ValueError(f"layer groups {layer_groups} do not split the {num_ws} ws in order")
        self.groups = {name: r for name, r in groups.items() if len(r)}
        self.heads = nn.ModuleDict({name: nn.Linear(4 * pyramid, len(r) * w_dim) for name, r in self.groups.items()})
        for head in self.heads.values():
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.register_buffer("w_scale", torch.ones(w_dim))

    @property
    def config(self) -> dict[str, Any]:
        return {"num_ws": self.num_ws, "w_dim": self.w_dim, "img_resolution": self.img_resolution,
                "img_channels": self.img_channels, "base": self.base, "max_width": self.max_width,
                "pyramid": self.pyramid, **({"layer_groups": self.layer_groups} if self.layer_groups else {})}

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Generator-shaped images → the encoder's input size (area-downsampled when larger)."""
        if images.shape[-1] != self.input_size:
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="area")
        return images.to(self.w_avg.dtype)

    def offsets(self, images: torch.Tensor) -> torch.Tensor:
        """The normalised offsets [N, num_ws, w_dim] from w_avg (what the heads predict)."""
        x = self.stem(self.prepare(images))
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        top = self.lateral[0](feats[-1])
        levels = [top]
        for k in (1, 2):
            top = self.lateral[k](feats[-1 - k]) + F.interpolate(top, scale_factor=2.0, mode="nearest")
            top = self.smooth[k - 1](top)
            levels.append(top)
        out = images.new_zeros(len(images), self.num_ws, self.w_dim, dtype=self.w_avg.dtype)
        for name, r in self.groups.items():
            pooled = F.adaptive_avg_pool2d(F.leaky_relu(levels[GROUP_LEVEL[name]], 0.2), 2).flatten(1)
            out[:, r.start:r.stop] = self.heads[name](pooled).view(len(images), len(r), self.w_dim)
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """W+ [N, num_ws, w_dim]."""
        return self.w_avg + self.w_scale * self.offsets(images)


def for_model(G, **kwargs: Any) -> Encoder:
    """A fresh encoder shaped for generator ``G``, its heads on G's layer groups."""
    groups = G.layer_groups()
    own = None if groups == layer_groups_of(G.num_ws) else {k: [r.start, r.stop] for k, r in groups.items()}
    return Encoder(G.num_ws, G.w_dim, G.img_resolution, G.img_channels, layer_groups=own, **kwargs)


def encoder_sha256(path: str | os.PathLike) -> str:
    """The encoder file's hash (part of a projection's cache key), read once per version of the file in a process:
    ``morph check`` asks for it once per photo and once more per photo for the tuned model's key, and a pSp or e4e
    file is 1.2 GB."""
    st = os.stat(path)
    return _file_sha256_of(os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _file_sha256_of(path: str, device: int, inode: int, size: int, mtime_ns: int) -> str:
    """:func:`file_sha256` of ``path`` memoised by what changes when the file does (its identity, size, mtime)."""
    return file_sha256(path)


def save_encoder(path: str | os.PathLike, enc: Encoder, model_sha256: str, metadata: Optional[dict] = None) -> None:
    """Write ``enc`` for the model whose file hash is ``model_sha256`` (float16 weights), atomically."""
    from safetensors.torch import save_file

    header = {"format": FORMAT, "version": VERSION, "config": json.dumps(enc.config, sort_keys=True),
              "model_sha256": model_sha256}
    for key, value in (metadata or {}).items():
        if key in header:
            raise ValueError(f"metadata key {key!r} is reserved")
        header[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    state = {k: (v.detach().to(torch.float16) if v.is_floating_point() and k not in ("w_avg", "w_scale")
                 else v.detach()).contiguous().clone().cpu()
             for k, v in enc.state_dict().items() if not k.endswith("num_batches_tracked")}
    with atomic_path(Path(path), suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata=header)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # safetensors writes its files 0600


def read_encoder(path: str | os.PathLike) -> tuple[Encoder, dict[str, str]]:
    """An encoder file → (encoder in eval mode, float32, on the CPU; its header); CheckpointError when it is not one."""
    path = Path(path)
    meta, state = read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"not a morph encoder (format {meta.get('format')!r})", path,
                              "train one: morph encoder train FILE.safetensors --model MODEL")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"unsupported encoder version {meta.get('version')!r}", path, "upgrade morph")
    config = _config(meta, path)
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated until the file's tensors are known to fit
            expected = Encoder(**config).state_dict()
    except (TypeError, ValueError) as e:  # a header that names no buildable encoder
        raise CheckpointError(f"invalid encoder configuration ({' '.join(str(e).split())[:120]})", path) from None
    bad = [k for k in expected if not k.endswith("num_batches_tracked")
           and (k not in state or tuple(state[k].shape) != tuple(expected[k].shape))]
    if bad:
        raise CheckpointError(f"tensors do not match the encoder's configuration ({bad[0]})", path)
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"tensor {name} holds NaN or infinite values", path,
                                  "the file is damaged or its training diverged: train it again")
    enc = Encoder(**config)
    enc.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=False)
    return enc.eval().requires_grad_(False), meta


def _config(meta: dict[str, str], path: Path) -> dict[str, Any]:
    """The header's ``config``, every field checked against morph.core.limits before anything is built from it
    (a file of a few hundred bytes could otherwise ask for terabytes or a billion heads)."""
    bounds = {"num_ws": (1, MAX_NUM_WS), "w_dim": (1, MAX_LATENT_DIM), "img_resolution": (4, MAX_RESOLUTION),
              "img_channels": (1, MAX_IMAGE_CHANNELS), "base": (1, MAX_ENCODER_WIDTH),
              "max_width": (1, MAX_ENCODER_WIDTH), "pyramid": (1, MAX_ENCODER_WIDTH)}
    try:
        config = json.loads(meta["config"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError("the header has no readable config", path, "train one: morph encoder train") from None
    if not isinstance(config, dict) or set(config) - {*bounds, "layer_groups"} or set(bounds) - set(config):
        raise CheckpointError(f"the header's config does not list exactly the fields {', '.join(bounds)} "
                              "(and optionally layer_groups)", path)
    for key, (low, high) in bounds.items():
        value = config[key]
        if type(value) is not int or not low <= value <= high:
            raise CheckpointError(f"config {key} is {str(value)[:40]}, not a whole number in {low}..{high}", path)
    if config["img_resolution"] & (config["img_resolution"] - 1):
        raise CheckpointError(f"config img_resolution {config['img_resolution']} is not a power of two", path)
    groups = config.get("layer_groups")
    if groups is not None and not (isinstance(groups, dict) and set(groups) <= set(GROUP_LEVEL) and all(
            isinstance(r, list) and len(r) == 2 and all(type(i) is int and 0 <= i <= config["num_ws"] for i in r)
            for r in groups.values())):
        raise CheckpointError("config layer_groups is not {coarse|middle|fine: [start, stop]} within num_ws", path)
    return config


def load_encoder(path: str | os.PathLike, G, device: Optional[torch.device] = None) -> Encoder:
    """The encoder at ``path`` for generator ``G``; a one-line MorphError when it was trained for another model.
    A published pSp / e4e checkpoint gives its :class:`morph.projection.psp.EncoderGuess` instead."""
    if is_encoder_checkpoint(path):
        return load_published_encoder(path, G, device)
    enc, meta = read_encoder(path)
    if meta.get("model_sha256") != G.info.sha256:
        raise MorphError(f"this encoder was trained for another model (sha256 {meta.get('model_sha256', '?')[:12]}…, "
                         f"not {Path(G.info.path).name}'s {G.info.sha256[:12]}…)", where=path,
                         hint=f"train one: morph encoder train FILE.safetensors --model {G.info.path}, "
                              "or --encoder none")
    enc.sha256, enc.path = encoder_sha256(path), str(path)
    return enc.to(device or next(G.parameters()).device)


def beside(model_path: str | os.PathLike) -> Path:
    """Where ``--encoder auto`` looks for a checkpoint's encoder: ``NAME.encoder.safetensors`` beside it."""
    p = Path(model_path)
    return p.with_name(f"{p.stem}.encoder.safetensors")


def find_encoder(choice: str | os.PathLike | None, model_path: str | os.PathLike) -> Optional[Path]:
    """``--encoder PATH|auto|none`` → the encoder file to use, or None. ``auto``: the shipped one for the
    built-in model, :func:`beside` the checkpoint for any other, None when there is none."""
    if choice is None or str(choice).strip().lower() == "none":
        return None
    if str(choice).strip().lower() == "auto":
        path = builtin_path("encoder") if is_builtin_file(model_path) else beside(model_path)
        return path if path.is_file() else None
    path = Path(choice).expanduser()
    if not path.is_file():
        raise MorphError("no such file", path, "--encoder takes an encoder file (morph encoder train), a pSp / e4e "
                                               "checkpoint, auto or none")
    return path


def encoder_for(G, choice: str | os.PathLike | None = "auto") -> Optional[Encoder]:
    """The encoder ``choice`` names for ``G`` (see :func:`find_encoder`), loaded onto G's device; None for none."""
    path = find_encoder(choice, G.info.path)
    return load_encoder(path, G) if path is not None else None


__all__ = ["Encoder", "beside", "encoder_for", "encoder_sha256", "find_encoder", "for_model", "load_encoder",
           "read_encoder", "save_encoder"]
