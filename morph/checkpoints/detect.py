"""Which checkpoint format a file holds, judged by its content (never its name), without loading it."""

from __future__ import annotations

import os

from morph.checkpoints import safe_pickle as sp
from morph.checkpoints.fileio import SUPPORTED_HINT, UNTRUSTED_HINT, open_file, short
from morph.checkpoints.pickle_scan import iter_globals
from morph.checkpoints.psp import is_encoder_checkpoint
from morph.checkpoints.torchfile import pickle_strings
from morph.core.errors import CheckpointError

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_LEGACY_TORCH_HEADER = b"\x80\x02\x8a\x0a" + sp.LEGACY_MAGIC.to_bytes(10, "little") + b"."


def _check_file(path) -> int:
    """Return the file size; raise CheckpointError if it is not a readable, non-empty file."""
    if os.path.isdir(path):
        raise CheckpointError("is a directory, not a checkpoint file", where=path,
                              hint="give the path of the model file inside it")
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise CheckpointError("no such file", where=path, hint="check the path") from None
    except OSError as e:
        raise CheckpointError(f"cannot access file ({e.strerror or e})", where=path) from None
    if size == 0:
        raise CheckpointError("file is empty", where=path, hint="the download or copy probably failed")
    return size


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """An 8-byte little-endian header length that fits the file, then the header's opening brace."""
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def _classify_pickle(path) -> str:
    """Tell a TF from an NVIDIA pickle by the classes it references; CheckpointError for any other pickle."""
    seen: list[str] = []
    with open_file(path) as f:
        try:
            for module, name in iter_globals(f):
                if module == "dnnlib.tflib.network" and name == "Network":
                    return "tf-pkl"
                if module == "torch_utils.persistence":
                    return "nvidia-pkl"
                qualname = f"{module}.{name}"
                if qualname not in seen:
                    seen.append(qualname)
        except (ValueError, EOFError, UnicodeDecodeError, OverflowError, MemoryError) as e:
            raise CheckpointError(f"truncated or corrupt pickle ({short(e)})", where=path,
                                  hint="download or copy the file again") from None
    unsafe = [g for g in seen if g not in sp.KNOWN_SAFE_GLOBALS]
    if unsafe:
        raise CheckpointError(
            f"refusing to load global {unsafe[0]!r}: this pickle is not a StyleGAN2 checkpoint and "
            f"could run code when loaded (globals: {', '.join(seen[:8])})", where=path, hint=UNTRUSTED_HINT)
    found = f"found globals {', '.join(seen[:8])}" if seen else "it references no classes at all"
    raise CheckpointError(f"not a StyleGAN2 checkpoint: a pickle without a generator ({found})",
                          where=path, hint=SUPPORTED_HINT)


def detect_format(path) -> str:
    """Return "nvidia-pkl", "nvidia-pt" (``torch.save`` of NVIDIA's module: PTI's output), "tf-pkl", "rosinality",
    "psp" (a pSp / e4e checkpoint) or "morph", judged by the file's content."""
    size = _check_file(path)
    with open_file(path) as f:
        head = f.read(64)
    if head[:4] in _ZIP_MAGIC or head.startswith(_LEGACY_TORCH_HEADER):
        if "torch_utils.persistence" in pickle_strings(path):  # PTI's torch.save'd NVIDIA generator
            return "nvidia-pt"
        return "psp" if is_encoder_checkpoint(path) else "rosinality"
    if _looks_like_safetensors(head, size):
        return "morph"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return _classify_pickle(path)
    raise CheckpointError("unrecognised file format (not a pickle, torch checkpoint or safetensors file)",
                          where=path, hint=SUPPORTED_HINT)
