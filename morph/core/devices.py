"""Device and precision selection: ``--device auto|cpu|cuda[:N]|mps`` and ``--precision auto|fp32|fp16|bf16``, the
tolerance a reduced precision must meet against fp32 (``auto`` checks it on the model at start), and
``--compile``'s compiled synthesis with the tolerance it must meet against eager."""

from __future__ import annotations

import math
import weakref
from typing import Any, Optional

import torch

from morph.core.errors import MorphError
from morph.core.model import Model, Noise, images_to_uint8

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# What ``--precision auto`` tries on CUDA, in order: fp16 keeps three more mantissa bits than bf16 at the same
# tensor-core rate, bf16 cannot overflow where fp16 does.
AUTO_CANDIDATES = ("fp16", "bf16")


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


def resolve_precision(name: str, device: torch.device) -> Optional[torch.dtype]:
    """Compute dtype for synthesis; half precisions are GPU-only (fp32 is exact on every device). ``auto``: fp32
    except on CUDA, where it is None: decided per model by :func:`auto_precision`."""
    key = name.strip().lower()
    if key == "auto":
        return None if device.type == "cuda" else torch.float32
    if key not in PRECISIONS:
        raise MorphError(f"unknown precision {name!r}", "--precision", "use auto, fp32, fp16 or bf16")
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
    return frames_psnr(ref, low, str(dtype).removeprefix("torch."), "--precision")


def frames_psnr(ref: torch.Tensor, other: torch.Tensor, name: str, where: str) -> float:
    """PSNR (dB) of images ``other`` (drawn by ``name``) against ``ref`` as uint8 frames (inf when identical);
    a non-finite image in either raises MorphError naming ``where``."""
    for label, img in (("the reference", ref), (name, other)):
        if not bool(torch.isfinite(img).all()):
            raise MorphError(f"{label} synthesis produced non-finite pixels", where,
                             "use fp32 without --compile (or a model trained for reduced precision)")
    err = (images_to_uint8(ref).float() - images_to_uint8(other).float()).pow(2).mean().item()
    return float("inf") if err == 0 else 10 * math.log10(255 ** 2 / err)


def auto_precision(G: Model, device: torch.device, frames: int = 4) -> tuple[Optional[torch.dtype], str]:
    """``--precision auto`` on CUDA for model ``G``: the first of AUTO_CANDIDATES the card runs whose frames of
    ``frames`` fixed seeds stay within PRECISION_TOLERANCE_DB of fp32 (None: none does, fp32), and why, in words.
    One batch at start; a model whose reduced-precision pixels are not finite, or that runs in fp32 only, gets
    fp32."""
    with torch.inference_mode():
        z = torch.randn(frames, G.z_dim, generator=torch.Generator().manual_seed(0)).to(device)
        ws = G.mapping(z, None, truncation_psi=0.7)
    found = []
    for name in AUTO_CANDIDATES:
        if name == "bf16" and not torch.cuda.is_bf16_supported():
            continue
        try:
            psnr = precision_psnr(G, ws, PRECISIONS[name])
        except ValueError:  # a family that runs in fp32 only (StyleGAN3)
            found.append(f"{name} not run by this model")
            continue
        except MorphError:
            psnr = float("nan")
        found.append(f"{name} {psnr:.1f} dB")
        if psnr >= PRECISION_TOLERANCE_DB:
            return PRECISIONS[name], f"{name}: {', '.join(found)} against fp32 (tolerance {PRECISION_TOLERANCE_DB:g})"
    return None, f"fp32: {', '.join(found) or 'no reduced precision'} against fp32 (tolerance {PRECISION_TOLERANCE_DB:g})"


# Compiled frames are fit for rendering when they stay this close to eager's (uint8 PSNR, dB): the compiler
# only reorders floating-point sums, so the two differ by a level here and there.
COMPILE_TOLERANCE_DB = 45.0


class Compiled:
    """``G`` with its synthesis compiled by ``torch.compile`` for a render's batch (``--compile``): everything
    else is ``G``'s. A batch smaller than the largest one seen (a segment's remainder) is padded with its last
    frame and cut back, so one compiled graph serves a whole render instead of one compilation per size."""

    def __init__(self, G: Model, backend: str = "inductor"):
        """``backend``: torch.compile's (``eager`` traces without compiling: the device script's smoke run)."""
        self._model = weakref.ref(G)  # held by the caller: the cache of twins keeps no model alive
        self._synthesize = torch.compile(type(G).synthesize, dynamic=False, backend=backend)
        self._batch = 0

    @property
    def model(self) -> Model:
        """The eager model this twin compiles."""
        G = self._model()
        if G is None:
            raise ReferenceError("the compiled model's eager model is gone")
        return G

    def synthesize(self, ws: torch.Tensor, noise: Noise = Noise(), dtype: Optional[torch.dtype] = None,
                   **options: Any) -> torch.Tensor:
        n = len(ws)
        self._batch = max(self._batch, n)
        if n < self._batch:
            ws = _padded(ws, self._batch)
            if options.get("camera") is not None:
                options["camera"] = _padded(options["camera"], self._batch)
        return self._synthesize(self.model, ws, noise, dtype=dtype, **options)[:n]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def _padded(x: torch.Tensor, n: int) -> torch.Tensor:
    """``x`` with its last row repeated up to ``n`` rows."""
    return torch.cat([x, x[-1:].expand(n - len(x), *x.shape[1:])])


_COMPILED: "weakref.WeakKeyDictionary[Any, Compiled]" = weakref.WeakKeyDictionary()


def compiled(G: Model) -> Compiled:
    """``G``'s :class:`Compiled` twin, made once per model (its compilation is reused by every render)."""
    if G not in _COMPILED:
        _COMPILED[G] = Compiled(G)
    return _COMPILED[G]
