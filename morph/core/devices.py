"""Device and precision selection: ``--device auto|cpu|cuda[:N]|mps`` and ``--precision fp32|fp16|bf16``, and the
tolerance a reduced precision must meet against fp32."""

from __future__ import annotations

import math

import torch

from morph.core.errors import MorphError
from morph.core.model import Model, Noise, images_to_uint8

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for a user's choice; ``auto`` takes CUDA, then Apple's MPS, then the CPU."""
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise MorphError(f"unknown device {name!r}", "--device", "use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise MorphError("CUDA is not available to this torch build", "--device",
                             "install a CUDA build of torch (see README) or use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise MorphError(f"no GPU {device.index}: this machine has {torch.cuda.device_count()}", "--device")
    elif device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise MorphError("Apple MPS is not available here", "--device", "use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise MorphError(f"unsupported device type {device.type!r}", "--device", "use auto, cpu, cuda or mps")
    return device


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """Compute dtype for synthesis; half precisions are opt-in and GPU-only (fp32 is exact on every device)."""
    key = name.strip().lower()
    if key not in PRECISIONS:
        raise MorphError(f"unknown precision {name!r}", "--precision", "use fp32, fp16 or bf16")
    if key != "fp32" and device.type == "cpu":
        raise MorphError(f"{key} runs only on a GPU", "--precision", "use fp32 on the CPU")
    return PRECISIONS[key]


# A reduced precision is fit for rendering when its frames stay this close to fp32's (uint8 PSNR, dB): beyond
# 35 dB the difference is below what 4:2:0 video at CRF 18 keeps. bench/device.sh prints each precision's PSNR.
PRECISION_TOLERANCE_DB = 35.0


def precision_psnr(G: Model, ws: torch.Tensor, dtype: torch.dtype) -> float:
    """PSNR (dB) of ``G``'s uint8 frames for ``ws`` drawn in ``dtype`` against the same frames in fp32 (inf when
    identical); ``nan`` never passes: a non-finite frame in either precision raises MorphError."""
    with torch.inference_mode():
        ref, low = (G.synthesize(ws, Noise(), dtype=d) for d in (None, dtype))
    for name, img in (("fp32", ref), (str(dtype).removeprefix("torch."), low)):
        if not bool(torch.isfinite(img).all()):
            raise MorphError(f"{name} synthesis produced non-finite pixels", "--precision",
                             "use fp32 (or a model trained for reduced precision)")
    err = (images_to_uint8(ref).float() - images_to_uint8(low).float()).pow(2).mean().item()
    return float("inf") if err == 0 else 10 * math.log10(255 ** 2 / err)
