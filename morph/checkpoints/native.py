"""morph's own checkpoint format: a safetensors file with the generator's ``init_kwargs`` in its header.

Safetensors cannot run code when read; the header also records the network family (``format``
``morph.<family>``, e.g. ``morph.stylegan2``, and ``family``: any row of :mod:`morph.checkpoints.families`)
and where a converted model came from.
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Optional

from morph.checkpoints.checkpoint import Checkpoint, build_checkpoint
from morph.checkpoints.families import FAMILIES
from morph.checkpoints.families import family as family_row
from morph.checkpoints.fileio import SUPPORTED_HINT
from morph.core.errors import CheckpointError

VERSION = "1"
_RESERVED = ("format", "version", "init_kwargs", "family")  # header keys that are not free-form metadata


def read_native(path) -> Checkpoint:
    """Read a file written by :func:`write_native`."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            header = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as e:
        raise CheckpointError(f"corrupt safetensors file ({e})", where=path,
                              hint="the file may be truncated; write it again") from None
    family = next((row.name for row in FAMILIES.values() if header.get("format") == row.native_format), None)
    if family is None or header.get("family", family) != family:
        labels = " or ".join(row.label for row in FAMILIES.values())
        raise CheckpointError(f"a safetensors file that is not a morph {labels} checkpoint "
                              f"(format={header.get('format')!r}, family={header.get('family')!r})",
                              where=path, hint=SUPPORTED_HINT)
    if header.get("version") != VERSION:
        raise CheckpointError(f"unsupported morph checkpoint version {header.get('version')!r}", where=path,
                              hint="it was written by a newer morph; upgrade morph")
    try:
        init_kwargs = json.loads(header.get("init_kwargs", ""))
    except ValueError:
        init_kwargs = None
    if not isinstance(init_kwargs, dict):
        raise CheckpointError("morph checkpoint has no valid init_kwargs", where=path)
    meta = {k: v for k, v in header.items() if k not in _RESERVED}
    return build_checkpoint("morph", init_kwargs, state, meta, path, family=family)


def write_native(path, init_kwargs: dict, state: dict, metadata: Optional[dict] = None,
                 family: str = "stylegan2") -> None:
    """Write a morph native checkpoint (safetensors) atomically: a temporary file, then a rename.

    ``init_kwargs`` are normalised and the state is checked against them (names and shapes);
    ``resample_filter`` buffers are dropped. ``metadata`` values are stored as strings (non-strings
    as JSON). Raises CheckpointError when the state does not fit the kwargs.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    path = os.fspath(path)
    metadata = dict(metadata or {})
    clash = [k for k in metadata if k in _RESERVED]
    if clash:
        raise ValueError(f"metadata key {clash[0]!r} is reserved")
    ckpt = build_checkpoint("morph", init_kwargs, state, metadata, path, family=family)
    header = {"format": family_row(family, path).native_format, "family": family, "version": VERSION,
              "init_kwargs": json.dumps(ckpt.init_kwargs, sort_keys=True), **ckpt.metadata}
    tensors = {k: v.clone() for k, v in ckpt.state.items()}  # safetensors refuses tensors that share memory
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CheckpointError("cannot write checkpoint: its folder does not exist", where=path,
                              hint="create the folder first")
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        save_file(tensors, tmp, metadata=header)
        mask = os.umask(0o022)  # read the umask (safetensors creates its files 0600)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, (OSError, SafetensorError)):
            raise CheckpointError(f"cannot write checkpoint ({getattr(e, 'strerror', None) or e})",
                                  where=path) from None
        raise
