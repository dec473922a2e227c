"""The tensors of a TorchScript archive (a ``torch.jit.save`` file, such as NVIDIA's ``vgg16.pt``), read as data.

``torch.jit.save`` writes a zip with one folder: ``data.pkl`` (the module tree: ``__torch__.*`` objects whose
state holds the parameters), ``data/<key>`` (each storage's raw bytes), ``constants.pkl`` + ``constants/<key>``
(tensors the code uses as constants), ``code/`` (the TorchScript source), ``version`` and ``byteorder``.
Here the two pickles go through morph's allow-list unpickler (:func:`~morph.checkpoints.safe_pickle.
load_torchscript_pickle`): ``__torch__`` classes become inert holders, tensors are rebuilt by morph's
checked ``_rebuild_tensor`` over storages from the archive, any other global is refused. ``code/`` is never
opened, so nothing the file carries runs (``torch.jit.load`` would compile and run it, ``__setstate__``
methods included). Archive members are checked like every zip morph reads (:func:`morph.core.arrays.check_zip`),
each storage must hold exactly the bytes its reference claims, and only the storages of the tensors the
caller picks are read.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import torch

from morph.checkpoints.safe_pickle import (
    PersistentObject,
    RefusedGlobal,
    ScriptObject,
    Storage,
    StorageType,
    UnsafePickleError,
    load_torchscript_pickle,
)
from morph.core.arrays import check_zip
from morph.core.errors import MorphError
from morph.core.limits import MAX_MODULES, MAX_PLAIN_DEPTH, MAX_PLAIN_NODES

HOSTILE = "the file is damaged or hostile; do not use it"
Choose = Callable[[Sequence[tuple[str, torch.Size]]], Iterable[str]]


def is_torchscript(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zip laid out as ``torch.jit.save`` writes (``NAME/data.pkl`` beside ``NAME/code/``)."""
    try:
        with zipfile.ZipFile(path) as zf:
            parts = [name.split("/") for name in zf.namelist()]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False
    return any(p[1:] == ["data.pkl"] for p in parts) and any(p[1:2] == ["code"] for p in parts)


class _Storages:
    """``persistent_load`` for one pickle: a storage per key, the member of that name in the first of ``folders``
    holding one, allocated (not read) when the pickle names it, once the member holds exactly the bytes claimed."""

    def __init__(self, zf: zipfile.ZipFile, folders: Sequence[str]):
        self._zf = zf
        self._folders = folders
        self._members = set(zf.namelist())
        self.by_key: dict[str, tuple[Storage, zipfile.ZipInfo]] = {}

    def __call__(self, pid: Any) -> Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise UnsafePickleError(f"unexpected persistent reference {pid!r:.80}")
        _, stype, key, _location, numel = pid
        if not (isinstance(stype, StorageType) and isinstance(key, str) and isinstance(numel, int)
                and not isinstance(numel, bool) and numel >= 0):
            raise UnsafePickleError("malformed storage reference")
        if key in self.by_key:
            storage, _ = self.by_key[key]
            if storage.data.dtype != stype.dtype or storage.data.numel() != numel:
                raise UnsafePickleError(f"storage {key!r:.40} referenced with two different types or sizes")
            return storage
        names = [f"{folder}/{key}" for folder in self._folders if f"{folder}/{key}" in self._members]
        if not names:
            raise UnsafePickleError(f"the archive has no storage {self._folders[0]}/{key}"[:120])
        info = self._zf.getinfo(names[0])
        nbytes = numel * torch.empty((), dtype=stype.dtype).element_size()
        if info.file_size != nbytes:
            raise UnsafePickleError(f"storage {info.filename!r:.80} holds {info.file_size} bytes, "
                                    f"its reference claims {nbytes}")
        mapped = self._map(info, numel, stype.dtype)
        # untouched pages cost no memory; a mapped storage is never read (its info is None)
        storage = Storage(torch.empty(numel, dtype=stype.dtype) if mapped is None else mapped)
        self.by_key[key] = (storage, info if mapped is None else None)
        return storage

    def _map(self, info: zipfile.ZipInfo, numel: int, dtype: torch.dtype) -> Optional[torch.Tensor]:
        """The member's bytes as a tensor without reading them (a subclass may memory-map), or None: read them."""
        return None

    def read(self, tensors: Iterable[torch.Tensor]) -> None:
        """Read from the archive the storages that ``tensors`` are views of."""
        wanted = {t.untyped_storage().data_ptr() for t in tensors if t.numel()}
        for storage, info in self.by_key.values():
            flat = storage.data
            if info is not None and flat.numel() and flat.untyped_storage().data_ptr() in wanted:
                buffer = memoryview(flat.view(torch.uint8).numpy())
                with self._zf.open(info) as fh:
                    done = 0
                    while done < len(buffer):
                        n = fh.readinto(buffer[done:])
                        if not n:
                            raise UnsafePickleError(f"storage {info.filename!r:.80} is truncated")
                        done += n


def _named_tensors(root: Any, prefix: str) -> list[tuple[str, torch.Tensor]]:
    """Every tensor under ``root`` (holders, dicts, lists, tuples), depth first in pickle order, named by path."""
    found: list[tuple[str, torch.Tensor]] = []
    nodes = 0

    def visit(value: Any, name: str, depth: int) -> None:
        nonlocal nodes
        nodes += 1
        if nodes > MAX_PLAIN_NODES or depth > MAX_PLAIN_DEPTH:
            raise UnsafePickleError(f"the module tree has more than {MAX_PLAIN_NODES} values "
                                    f"or is nested more than {MAX_PLAIN_DEPTH} deep")
        if isinstance(value, torch.Tensor):
            found.append((name, value))
            return
        if isinstance(value, (ScriptObject, PersistentObject)):
            value = value.state
        if isinstance(value, dict):
            items = [(k if isinstance(k, str) else str(i), v) for i, (k, v) in enumerate(value.items())]
        elif isinstance(value, (list, tuple)):
            items = [(str(i), v) for i, v in enumerate(value)]
        else:
            return
        for key, child in items:
            visit(child, f"{name}.{key}" if name else key, depth + 1)

    visit(root, prefix, 0)
    return found


def read_torchscript(path: str | os.PathLike, choose: Optional[Choose] = None) -> dict[str, torch.Tensor]:
    """The tensors of the TorchScript archive at ``path`` by attribute path (``conv1``, ``lin.weight``; constants
    as ``CONSTANTS.c0``), without running anything from it. ``choose`` gets every (name, shape) in archive order
    and returns the names to read (default: all); only their storages are read. MorphError naming the file when
    it is not such an archive, or is damaged or hostile."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            check_zip(zf, path)
            roots = {n.split("/")[0] for n in zf.namelist() if n.split("/")[1:] == ["data.pkl"]}
            if len(roots) != 1:
                raise MorphError("not a TorchScript archive (no single NAME/data.pkl inside)", where=path)
            root = roots.pop()
            if f"{root}/byteorder" in zf.namelist() and zf.read(f"{root}/byteorder")[:16].strip() != b"little":
                raise MorphError("a big-endian TorchScript archive; morph reads little-endian ones", where=path)
            named: list[tuple[str, torch.Tensor]] = []
            readers: list[tuple[_Storages, list[tuple[str, torch.Tensor]]]] = []
            # constants' storages are in constants/ (older archives may keep them in data/)
            for pkl, folders, prefix in (("data.pkl", ["data"], ""),
                                         ("constants.pkl", ["constants", "data"], "CONSTANTS")):
                if f"{root}/{pkl}" not in zf.namelist():
                    continue
                storages = _Storages(zf, [f"{root}/{f}" for f in folders])
                with zf.open(f"{root}/{pkl}") as fh:
                    tree = load_torchscript_pickle(io.BytesIO(fh.read()), storages, MAX_MODULES)
                tensors = _named_tensors(tree, prefix)
                if prefix == "CONSTANTS":  # the code calls constant i CONSTANTS.c<i>
                    tensors = [(".".join(["CONSTANTS", "c" + name.split(".")[1], *name.split(".")[2:]]), t)
                               for name, t in tensors]
                named += tensors
                readers.append((storages, tensors))
            picked = set(choose([(n, t.shape) for n, t in named]) if choose else (n for n, _ in named))
            for storages, tensors in readers:
                storages.read(t for n, t in tensors if n in picked)
            return {n: t for n, t in named if n in picked}
    except MorphError:
        raise
    except RefusedGlobal as e:
        raise MorphError(f"refusing to read: its pickle names the global '{e.qualname}'"[:160], where=path,
                         hint="a TorchScript weights file names only __torch__ classes and tensors; " + HOSTILE) \
            from None
    except (UnsafePickleError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, TypeError,
            IndexError, AttributeError, KeyError, OverflowError, RuntimeError, OSError) as e:
        raise MorphError(f"not a readable TorchScript archive ({' '.join(str(e).split())[:120]})", where=path,
                         hint=HOSTILE) from None
