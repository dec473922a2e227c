"""Checkpoint formats of every family: detect, read safely, convert to NVIDIA names, write morph's own.

Every reader returns a :class:`Checkpoint`: its family (a row of :mod:`.families`), the constructor
arguments of that family's ``Generator`` and a state dict under that ``Generator``'s ``state_dict()``
names (float32 CPU tensors; the constant ``resample_filter`` buffers are left out, they are rebuilt from
the arguments). Supported inputs, recognised by content:

* ``nvidia-pkl`` (:mod:`.nvidia`): NVIDIA's PyTorch network pickles (``G_ema``);
* ``nvidia-pt`` (:mod:`.nvidia`): ``torch.save`` of NVIDIA's ``Generator`` module, as PTI writes its tuned one;
* ``tf-pkl`` (:mod:`.tensorflow`): the original TensorFlow StyleGAN2/ADA pickles, no TensorFlow needed;
* ``rosinality`` (:mod:`.rosinality`): ``.pt`` files of rosinality/stylegan2-pytorch (``g_ema``);
* ``psp`` (:mod:`.psp`): the generator (``decoder.*``) stored in a pSp or e4e encoder checkpoint;
* ``morph`` (:mod:`.native`): morph's native safetensors file (:func:`write_native`).

No code from a file ever runs. Any problem raises :class:`~morph.core.errors.CheckpointError`
(one line: file, what, how to fix).
"""

from __future__ import annotations

import os

from morph.checkpoints.checkpoint import Checkpoint, check_state, expected_shapes, noise_buffer_names
from morph.checkpoints.config import block_resolutions, normalize_init_kwargs
from morph.checkpoints.detect import detect_format
from morph.checkpoints.native import read_native, write_native
from morph.checkpoints.nvidia import read_nvidia, read_nvidia_module
from morph.checkpoints.psp import read_psp_decoder
from morph.checkpoints.rosinality import read_rosinality
from morph.checkpoints.tensorflow import read_tf
from morph.core.errors import CheckpointError

_READERS = {"nvidia-pkl": read_nvidia, "tf-pkl": read_tf, "rosinality": read_rosinality, "morph": read_native,
            "psp": read_psp_decoder, "nvidia-pt": read_nvidia_module}

__all__ = ["Checkpoint", "block_resolutions", "check_state", "detect_format", "expected_shapes",
           "noise_buffer_names", "normalize_init_kwargs", "read_checkpoint", "write_native"]


def read_checkpoint(path) -> Checkpoint:
    """Detect the format of ``path`` and read it into a :class:`Checkpoint` (no code from the file runs)."""
    path = os.fspath(path)
    fmt = detect_format(path)
    try:
        return _READERS[fmt](path)
    except CheckpointError:
        raise
    except MemoryError:
        raise CheckpointError("not enough memory to read the checkpoint", where=path) from None
    except Exception as e:  # never let a raw parsing error escape
        raise CheckpointError(f"cannot read {fmt} checkpoint ({type(e).__name__}: {e})", where=path) from None
