"""NVIDIA's ``vgg16.pt`` (VGG16 + LPIPS, what stylegan2-ada-pytorch's projector loads) as torchvision/LPIPS
state-dict tensors, read by :func:`morph.checkpoints.torchscript.read_torchscript`: weights only, none of its code runs.

What is known of the file, and how sure (no copy of it was at hand; nothing here was checked against it):

- Sure (stylegan2-ada-pytorch's source): a TorchScript archive; the projector calls it as ``net(img,
  resize_images=False, return_lpips=True)`` on images in [0, 255], area-downsampled to 256 px when larger,
  and takes ``(a - b).square().sum()`` of two results as LPIPS; ``metrics/precision_recall.py`` calls the
  same file with ``return_features=True`` for VGG16's fc features, so it also holds the fully connected
  layers (most of its bytes, never read here).
- Sure (the network's TensorFlow source, StyleGAN2's ``vgg16_zhang_perceptual.pkl``, which NVIDIA's file
  ports): x/255, minus ImageNet's mean (0.485, 0.456, 0.406), over its std (0.229, 0.224, 0.225) -- the
  same affine map as LPIPS's shift/scale on [-1, 1], so :class:`morph.projection.losses.VGG16Features` computes it;
  thirteen 3×3 convolutions + bias + ReLU, 2×2 max pools after relu1_2, 2_2, 3_3, 4_3; the taps relu1_2,
  2_2, 3_3, 4_3, 5_3 each divided by (its L2 norm over channels + 1e-10); squared differences weighted per
  channel by five 1×1 weights of 64, 128, 256, 512, 512 channels, averaged over space, summed over the taps
  (:func:`morph.projection.losses.feature_distance`).
- Inferred, high confidence: the PyTorch file computes the same, its LPIPS vector being each tap ×
  sqrt(weight / (H·W)), flattened and concatenated. A public projector fork records that vector's shape as
  [1, 124928], which is 64·32² + 128·16² + 256·8² + 512·4² + 512·2², the five taps of a 32 px image whole.
- Inferred, unknown detail: the names and layout of its tensors. The TF network held ``conv1..13`` as
  [3, 3, in, out], ``bias1..13`` and ``perceptual_weight_0..4`` as [1, 1, C, 1]; the port may keep those or
  use PyTorch's [out, in, 3, 3] and [1, C, 1, 1]. So tensors are matched by shape, in archive order, not by
  name: each wanted tensor takes the first unused one of its shape (PyTorch's layout first, then TF's; a
  ``bias`` in the name is preferred for biases and avoided for the rest; a bias prefers its weight's module,
  then the tensors after its weight), and the LPIPS weights must be non-negative, as LPIPS trains them and
  as a sum-of-squares vector needs. The 3×3 chain and the five LPIPS sizes are unambiguous by shape; 1-D
  LPIPS weights are told from biases by those rules (biases are matched first; the LPIPS weights get what
  is left), and a wrong pick would most likely meet a negative "LPIPS weight" and be refused.
- Inferred: the conv weights are torchvision's VGG16 (LPIPS's PyTorch backbone, RGB input), and the max
  pools floor odd sizes (TF pads them; morph's sizes, 256 px and its halvings, are even).
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import torch

from morph.checkpoints.torchscript import read_torchscript
from morph.core.errors import MorphError

HINT = "--vgg takes NVIDIA's vgg16.pt (--vgg auto), or vgg16-397923af.pth plus LPIPS's vgg.pth"


def _is_kernel(shape: torch.Size) -> bool:
    return len(shape) == 4 and shape[2] == shape[3] > 1  # a conv kernel [out, in, k, k]


def _is_lpips_weight(shape: torch.Size) -> bool:
    return len(shape) == 4 and shape[0] == shape[2] == shape[3] == 1  # LPIPS's 1×1 conv [1, C, 1, 1]


def _layouts(shape: torch.Size) -> list[torch.Size]:
    """The shapes a tensor wanted as ``shape`` may have in the file: PyTorch's, then TensorFlow's."""
    if _is_kernel(shape):  # TF's [k, k, in, out]
        return [shape, torch.Size([shape[2], shape[3], shape[1], shape[0]])]
    if _is_lpips_weight(shape):
        return [shape, torch.Size([shape[1]]), torch.Size([1, 1, shape[1], 1])]
    return [shape]


def _convert(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``t`` in the wanted layout ``shape`` (TF's HWIO kernels transposed; LPIPS weights reshaped), float32."""
    if t.shape != shape and _is_kernel(shape):
        t = t.permute(3, 2, 0, 1)
    return t.reshape(shape).to(torch.float32).contiguous()


def _parent(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _match_by_shape(available: Sequence[tuple[str, torch.Size]], wanted: Mapping[str, torch.Size],
                   where: str | os.PathLike) -> dict[str, str]:
    """wanted name → file name: each wanted tensor (in order) takes the first unused file tensor of its shape,
    PyTorch's layout before TF's, a ``bias`` in the file name preferred for biases and avoided for the rest; a
    bias prefers the module of its weight, then the tensors after it. MorphError naming ``where`` for the first
    wanted tensor nothing fits."""
    index = {n: i for i, (n, _) in enumerate(available)}
    used: set[str] = set()
    pairs: dict[str, str] = {}
    for name, shape in wanted.items():
        layouts = _layouts(shape)
        bias = name.endswith("bias")
        weight = pairs.get(f"{name[:-4]}weight") if bias else None
        fits = [(layouts.index(s), ("bias" in n.lower()) != bias,
                 weight is not None and _parent(n) != _parent(weight), weight is not None and i < index[weight], i, n)
                for i, (n, s) in enumerate(available) if n not in used and s in layouts]
        if not fits:
            raise MorphError(f"not NVIDIA's VGG16+LPIPS file: nothing of shape {list(shape)} for {name} among its "
                             f"{len(available)} tensors", where=where, hint=HINT)
        pairs[name] = min(fits)[-1]
        used.add(pairs[name])
    return pairs


def vgg16_state(path: str | os.PathLike, wanted: Mapping[str, torch.Size]) -> dict[str, torch.Tensor]:
    """The tensors of NVIDIA's ``vgg16.pt`` at ``path`` under the ``wanted`` names and shapes (torchvision's
    ``features.*`` and LPIPS's ``lin{k}.model.1.weight``), float32; only those are read from the file."""
    pairs: dict[str, str] = {}

    def choose(available: Sequence[tuple[str, torch.Size]]) -> list[str]:
        pairs.update(_match_by_shape(available, wanted, path))
        return list(pairs.values())

    tensors = read_torchscript(path, choose)
    for name, source in pairs.items():
        if not tensors[source].is_floating_point():
            raise MorphError(f"{source} (for {name}) holds {tensors[source].dtype}, not real-valued weights",
                             where=path, hint=HINT)
    state = {name: _convert(tensors[source], wanted[name]) for name, source in pairs.items()}
    for name, t in state.items():
        if not torch.isfinite(t).all():
            raise MorphError(f"{name} ({pairs[name]} in the file) holds NaN or infinite values", where=path, hint=HINT)
        if _is_lpips_weight(t.shape) and (t < 0).any():
            raise MorphError(f"not NVIDIA's VGG16+LPIPS file: the LPIPS weights {pairs[name]} are negative",
                             where=path, hint=HINT)
    return state
