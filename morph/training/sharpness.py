"""Sharpness of images as the issue measures it: the mean squared Laplacian of the grey image.

The grey image is ITU-R 601 luma on the 0–255 scale; the Laplacian is the 4-neighbour 3×3
kernel over the interior pixels. A blurred face loses most of this energy, so the ratio of a
generator's samples to the renderer's faces (same size, same count) says how crisp it draws.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)
_KERNEL = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).reshape(1, 1, 3, 3)


def to_grey255(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Float [N, 3, H, W] in about [-1, 1] (generator output) or uint8 [N, H, W, 3] → grey [N, 1, H, W], 0–255."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if images.dtype == torch.uint8:
        x = images.permute(0, 3, 1, 2).float()
    else:
        x = (images.float() * 127.5 + 128).clamp(0, 255)
    luma = torch.tensor(LUMA, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
    return (x * luma).sum(dim=1, keepdim=True)


def laplacian_energy(images: torch.Tensor | np.ndarray, batch: int = 256) -> float:
    """Mean over images and interior pixels of the squared Laplacian of the grey image."""
    total, count = 0.0, 0
    for start in range(0, len(images), batch):
        grey = to_grey255(images[start:start + batch])
        lap = F.conv2d(grey, _KERNEL.to(grey.device, grey.dtype))
        total += float(lap.square().sum())
        count += lap.numel()
    return total / max(count, 1)


def sharpness_ratio(samples: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray) -> dict[str, float]:
    """Laplacian energy of ``samples``, of ``reference`` and their ratio (1: as crisp as the reference)."""
    s, r = laplacian_energy(samples), laplacian_energy(reference)
    return {"samples": s, "reference": r, "ratio": s / r if r > 0 else float("nan")}
