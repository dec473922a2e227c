"""The built-in attribute classifier: a small CNN trained on the procedural faces' labels.

It judges images the way the direction workflow and the semantic tests need: per-attribute
probabilities for every binary attribute of ``morph.training.toyfaces.ATTRIBUTES``, estimates of the
renderer's continuous values (``CONTINUOUS``: smile amount, head turn, ...), and its
penultimate features (for a Fréchet distance between image sets).

Images go in as generator output does: float [N, 3, H, W] in about [-1, 1] (or uint8
[N, H, W, 3], see :func:`to_input`); other sizes are resized to the classifier's 64 px.

Stored in morph's own format: a safetensors file whose metadata holds ``format =
morph.classifier`` and the architecture, so loading never runs code from the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from morph.core.errors import CheckpointError
from morph.core.files import read_safetensors

FORMAT = "morph.classifier"
VERSION = "1"


class _ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class AttributeClassifier(nn.Module):
    """64 px RGB → binary-attribute logits, continuous-value estimates, penultimate features.

    Four stride-2 stages (``widths``), each a strided 3×3 convolution and a 3×3 convolution
    (BatchNorm, ReLU), then global average pooling: the pooled vector is the feature vector.
    ``cont_mean``/``cont_std`` un-normalise the continuous head (it is trained on z-scores).
    """

    def __init__(self, attributes: Sequence[str], continuous: Sequence[str] = (), widths: Sequence[int] = (16, 32, 64, 128),
                 image_size: int = 64, cont_mean: Optional[Sequence[float]] = None,
                 cont_std: Optional[Sequence[float]] = None):
        super().__init__()
        self.attributes, self.continuous = tuple(attributes), tuple(continuous)
        self.widths, self.image_size = tuple(int(w) for w in widths), int(image_size)
        layers: list[nn.Module] = []
        cin = 3
        for w in self.widths:
            layers += [_ConvBN(cin, w, stride=2), _ConvBN(w, w)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.feature_dim = cin
        self.attr_head = nn.Linear(cin, len(self.attributes))
        self.cont_head = nn.Linear(cin, len(self.continuous)) if self.continuous else None
        k = len(self.continuous)
        self.register_buffer("cont_mean", torch.tensor(list(cont_mean) if cont_mean is not None else [0.0] * k))
        self.register_buffer("cont_std", torch.tensor(list(cont_std) if cont_std is not None else [1.0] * k))

    @property
    def config(self) -> dict[str, Any]:
        return {"attributes": list(self.attributes), "continuous": list(self.continuous), "widths": list(self.widths),
                "image_size": self.image_size}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features [N, feature_dim] of images already at ``image_size`` in [-1, 1]."""
        return self.features(x).mean(dim=(2, 3))

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations at the end of each stage (32, 16, 8 and 4 px), for a perceptual loss."""
        maps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i % 2 == 1:
                maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(attribute logits [N, A], normalised continuous estimates [N, C], features [N, D])."""
        f = self.embed(x)
        cont = self.cont_head(f) if self.cont_head is not None else f.new_zeros(len(f), 0)
        return self.attr_head(f), cont, f

    @torch.no_grad()
    def predict(self, images: torch.Tensor | np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
        """Everything the classifier says about ``images`` (see :func:`to_input`), as numpy arrays:
        ``probs`` [N, A] (columns in ``attributes`` order), ``values`` [N, C] (renderer units),
        ``features`` [N, D]; plus one [N] entry per attribute name (its probability) and per
        continuous name (its value)."""
        was_training = self.training
        self.eval()
        probs, values, feats = [], [], []
        for start in range(0, len(images), batch):
            x = to_input(images[start:start + batch], self.image_size).contiguous(memory_format=torch.channels_last)
            logits, cont, f = self(x)
            probs.append(torch.sigmoid(logits))
            values.append(cont * self.cont_std + self.cont_mean)
            feats.append(f)
        self.train(was_training)
        out = {"probs": torch.cat(probs).numpy(), "values": torch.cat(values).numpy(), "features": torch.cat(feats).numpy()}
        for i, name in enumerate(self.attributes):
            out[name] = out["probs"][:, i]
        for i, name in enumerate(self.continuous):
            out[name] = out["values"][:, i]
        return out


def to_input(images: torch.Tensor | np.ndarray, size: int = 64) -> torch.Tensor:
    """Classifier input from uint8 images [N, H, W, 3] (numpy or torch) or float generator
    output [N, 3, H, W] in about [-1, 1]: float32 [N, 3, size, size], area-resized if needed."""
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected uint8 images [N, H, W, 3], got {list(x.shape)}")
        x = x.permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1.0
    else:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected float images [N, 3, H, W], got {list(x.shape)}")
        x = x.to(torch.float32).clamp(-1.0, 1.0)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="area" if x.shape[-1] > size else "bilinear", align_corners=None)
    return x.contiguous()


def save_classifier(path: str | os.PathLike, model: AttributeClassifier, metadata: Optional[dict] = None) -> None:
    """Write ``model`` in morph's format (safetensors; architecture and notes in the metadata), atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    header = {"format": FORMAT, "version": VERSION, "config": json.dumps(model.config, sort_keys=True)}
    for key, value in (metadata or {}).items():
        if key in header:
            raise ValueError(f"metadata key {key!r} is reserved")
        header[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    state = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in model.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(state, str(tmp), metadata=header)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def load_classifier(path: str | os.PathLike, device: str | torch.device = "cpu") -> AttributeClassifier:
    """Load a classifier written by :func:`save_classifier` (eval mode, no gradients)."""
    path = Path(path)
    meta, state = read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"not a morph classifier (format {meta.get('format')!r})", path)
    if meta.get("version") != VERSION:
        raise CheckpointError(f"unsupported classifier version {meta.get('version')!r}", path,
                              "upgrade morph")
    cfg = json.loads(meta["config"])
    model = AttributeClassifier(cfg["attributes"], cfg["continuous"], cfg["widths"], cfg["image_size"])
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    bad = [k for k in state if k not in expected or tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or bad:
        raise CheckpointError(f"tensors do not match the classifier's configuration ({(missing + bad)[:3]})", path)
    model.load_state_dict(state, strict=False)
    model.metadata = {k: v for k, v in meta.items() if k not in ("format", "version", "config")}
    return model.to(device).eval().requires_grad_(False)
