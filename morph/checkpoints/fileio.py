"""Opening and unpickling checkpoint files, with every low-level failure turned into a one-line CheckpointError."""

from __future__ import annotations

import pickle

from morph.checkpoints import safe_pickle as sp
from morph.core.errors import CheckpointError

SUPPORTED_HINT = ("expected an NVIDIA stylegan2-ada-pytorch or stylegan3 network pickle, a TensorFlow StyleGAN2 "
                  "pickle, a rosinality .pt checkpoint or a morph .safetensors file")
UNTRUSTED_HINT = "do not load this file; only use checkpoints from sources you trust"


def short(e: BaseException) -> str:
    """The first sentence of an exception's message (torch's are paragraphs)."""
    text = " ".join(str(e).split()) or type(e).__name__
    if len(text) > 120:
        cut = text.find(". ", 20)
        if cut != -1:
            text = text[:cut + 1]
    return text


def refused_global(qualname: str, where) -> CheckpointError:
    """The error for a pickle that references a global outside the allow-list (it could run code)."""
    return CheckpointError(f"refusing to load global {qualname!r}: it is not part of a StyleGAN2 checkpoint and "
                           f"could run code", where=where, hint=UNTRUSTED_HINT)


def open_file(path):
    """``open(path, "rb")``, with a CheckpointError when that fails."""
    try:
        return open(path, "rb")
    except OSError as e:
        raise CheckpointError(f"cannot open file ({e.strerror or e})", where=path) from None


def unpickle(path, loader):
    """``loader(file)`` (a :mod:`safe_pickle` loader) on ``path``, its failures as CheckpointErrors."""
    with open_file(path) as f:
        try:
            return loader(f)
        except sp.RefusedGlobal as e:
            raise refused_global(e.qualname, path) from None
        except MemoryError:
            raise CheckpointError("ran out of memory while unpickling (corrupt object sizes, or too little memory)",
                                  where=path) from None
        except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError,
                AttributeError, OverflowError, RuntimeError) as e:
            text = short(e)
            if isinstance(e, EOFError) or "truncated" in text:
                raise CheckpointError(f"truncated or corrupt pickle ({text})", where=path,
                                      hint="download or copy the file again") from None
            if isinstance(e, sp.UnsafePickleError):  # structure no checkpoint has (bombs, expanding views, ...)
                raise CheckpointError(f"refusing to load this pickle: {text}", where=path, hint=UNTRUSTED_HINT) from None
            raise CheckpointError(f"corrupt or unsupported pickle ({text})", where=path) from None
