"""``torch.save`` files read as data, through an allow-list, without ``torch.load``: both layouts.

* zip (torch >= 1.6): one folder holding ``data.pkl`` (the saved object, its tensors as persistent references
  ``('storage', type, key, location, numel)``) and ``data/<key>`` (each storage's bytes, stored uncompressed);
* legacy (older torch, as most published pSp / e4e / ArcFace files were written): a magic number, a protocol
  version and a header pickled one after another, the object's pickle (references with a sixth field, a view),
  the list of storage keys, then per key an 8-byte element count and the bytes.

The object's pickle goes through morph's allow-list unpickler (:func:`~morph.checkpoints.safe_pickle.
restricted_load`) with the globals the caller allows, so a class instance anywhere in the file (a hostile
``opts``, say) is refused before anything of it could run. Storages are memory-mapped copy-on-write where
their bytes lie aligned in the file, so opening a 1.2 GB file costs only the pages a caller then touches;
otherwise only the storages of the tensors the caller picks are read.

Used for pSp / e4e checkpoints and ArcFace weights (:mod:`morph.checkpoints.psp`).
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import struct
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np
import torch

from morph.checkpoints.fileio import UNTRUSTED_HINT
from morph.checkpoints.safe_pickle import (
    LEGACY_MAGIC,
    LEGACY_PROTOCOL,
    TORCH_TENSOR_GLOBALS,
    TORCHSCRIPT_GLOBALS,
    RefusedGlobal,
    Storage,
    StorageType,
    UnsafePickleError,
    restricted_load,
)
from morph.checkpoints.torchscript import _named_tensors, _Storages
from morph.core.arrays import check_zip
from morph.core.errors import CheckpointError, MorphError

_LOCAL_HEADER = b"PK\x03\x04"

#: What ``torch.save`` writes for dicts of tensors and plain values: tensors, OrderedDicts, storage types.
TORCH_SAVE_GLOBALS: dict[tuple[str, str], Any] = {
    **TORCH_TENSOR_GLOBALS, **{k: v for k, v in TORCHSCRIPT_GLOBALS.items() if isinstance(v, StorageType)}}


def _numpy_dtype(dtype: torch.dtype) -> Optional[np.dtype]:
    try:
        return torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError:  # bfloat16 has no numpy type
        return None


def _mapped(path: Path, offset: int, numel: int, dtype: torch.dtype, file_size: int) -> Optional[torch.Tensor]:
    """``numel`` elements of ``dtype`` at ``offset`` of the file, memory-mapped copy-on-write (writes never reach
    the file), or None where that cannot be done (unaligned, a type numpy lacks, empty): read them instead."""
    np_dtype = _numpy_dtype(dtype)
    if np_dtype is None or not numel or offset % np_dtype.itemsize or offset + numel * np_dtype.itemsize > file_size:
        return None
    return torch.from_numpy(np.memmap(path, dtype=np_dtype, mode="c", offset=offset, shape=(numel,)))


class _MappedStorages(_Storages):
    """Storages memory-mapped onto the archive's bytes (copy-on-write: writes never reach the file)."""

    def __init__(self, zf: zipfile.ZipFile, folders: list[str], path: Path):
        super().__init__(zf, folders)
        self._path = path
        self._size = os.path.getsize(path)

    def _map(self, info: zipfile.ZipInfo, numel: int, dtype: torch.dtype) -> Optional[torch.Tensor]:
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with open(self._path, "rb") as fp:
            fp.seek(info.header_offset)
            head = fp.read(30)
        if len(head) != 30 or head[:4] != _LOCAL_HEADER:
            raise UnsafePickleError(f"member {info.filename!r:.80} has no local header")
        name_len, extra_len = struct.unpack("<HH", head[26:30])
        return _mapped(self._path, info.header_offset + 30 + name_len + extra_len, numel, dtype, self._size)


#: Given the unpickled object and every tensor in it by path (nothing read yet), the paths to read.
Choose = Callable[[Any, dict[str, torch.Tensor]], Iterable[str]]


def pickle_strings(path: Path, limit: int = 4096) -> set[str]:
    """The first ``limit`` strings of a torch file's object pickle, to tell what it holds without loading it
    (nothing is run: :mod:`pickletools` only decodes); empty for a file that is no such pickle."""
    found: set[str] = set()
    try:
        with open(path, "rb") as fh:
            if fh.read(4)[:4] == b"PK\x03\x04":
                with zipfile.ZipFile(path) as zf:
                    name = next((n for n in zf.namelist() if n.split("/")[1:] == ["data.pkl"]), None)
                    if name is None or zf.getinfo(name).file_size > 64 << 20:
                        return found
                    data = zf.read(name)
                ops = pickletools.genops(data)
            else:
                fh.seek(0)
                for _ in range(3):  # magic, protocol, header: then the object
                    for _op in pickletools.genops(fh):
                        pass
                ops = pickletools.genops(fh)
            for opcode, arg, _ in ops:
                if isinstance(arg, str):  # GLOBAL's argument is "module name": both parts count
                    found.update(arg.split(" ", 1) if opcode.name in ("GLOBAL", "INST") else [arg])
                    if len(found) >= limit:
                        break
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, UnicodeDecodeError):
        pass
    return found


def _read_zip(path: Path, allowed: Mapping[tuple[str, str], Any], what: str,
              choose: Choose) -> tuple[Any, dict[str, torch.Tensor]]:
    """:func:`read_torch_file` for the zip layout."""
    with zipfile.ZipFile(path) as zf:
        check_zip(zf, path)
        roots = {n.split("/")[0] for n in zf.namelist() if n.split("/")[1:] == ["data.pkl"]}
        if len(roots) != 1:
            raise CheckpointError(f"not {what} (no single NAME/data.pkl inside)", where=path)
        root = roots.pop()
        if f"{root}/byteorder" in zf.namelist() and zf.read(f"{root}/byteorder")[:16].strip() != b"little":
            raise CheckpointError("a big-endian torch archive; morph reads little-endian ones", where=path)
        storages = _MappedStorages(zf, [f"{root}/data"], path)
        with zf.open(f"{root}/data.pkl") as fh:
            tree = restricted_load(io.BytesIO(fh.read()), allowed, storages)
        tensors = dict(_named_tensors(tree, ""))
        picked = {name: tensors[name] for name in choose(tree, tensors)}
        storages.read(picked.values())
        return tree, picked


def _read_legacy(path: Path, allowed: Mapping[tuple[str, str], Any], what: str,
                 choose: Choose) -> tuple[Any, dict[str, torch.Tensor]]:
    """:func:`read_torch_file` for the legacy layout: the object's pickle is read twice (it is small), first to
    learn each storage's type and size and so where its bytes lie, then over storages placed there."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        if restricted_load(fh, {}) != LEGACY_MAGIC or restricted_load(fh, {}) != LEGACY_PROTOCOL:
            raise CheckpointError(f"not {what} (not a torch.save file)", where=path)
        header = restricted_load(fh, {})
        if not isinstance(header, dict) or not header.get("little_endian", True):
            raise CheckpointError("a big-endian torch file; morph reads little-endian ones", where=path)
        start = fh.tell()
        records: dict[str, tuple[torch.dtype, int]] = {}

        def reference(pid: Any) -> tuple[str, Optional[tuple[int, int]]]:
            if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
                raise UnsafePickleError(f"unexpected persistent reference {pid!r:.80}")
            _, stype, key, _location, numel, view = pid
            if not (isinstance(stype, StorageType) and isinstance(key, str) and isinstance(numel, int)
                    and not isinstance(numel, bool) and numel >= 0):
                raise UnsafePickleError("malformed storage reference")
            if numel * torch.empty((), dtype=stype.dtype).element_size() > size:
                raise UnsafePickleError(f"storage {key!r:.40} claims more bytes than the file holds")
            if records.setdefault(key, (stype.dtype, numel)) != (stype.dtype, numel):
                raise UnsafePickleError(f"storage {key!r:.40} referenced with two different types or sizes")
            if view is not None and not (isinstance(view, tuple) and len(view) == 3
                                         and all(isinstance(v, int) and v >= 0 for v in view[1:])
                                         and view[1] + view[2] <= numel):
                raise UnsafePickleError("malformed storage view")
            return key, (None if view is None else (view[1], view[2]))

        def unplaced(pid: Any) -> Storage:  # untouched pages cost no memory
            key, view = reference(pid)
            root = torch.empty(records[key][1], dtype=records[key][0])
            return Storage(root if view is None else root[view[0]:view[0] + view[1]])

        restricted_load(fh, allowed, unplaced)
        keys = restricted_load(fh, {})
        if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys) and set(keys) == set(records)):
            raise UnsafePickleError("the storage key list does not match the object's storages")
        offsets: dict[str, int] = {}
        position = fh.tell()
        for key in keys:
            dtype, numel = records[key]
            fh.seek(position)
            count = int.from_bytes(fh.read(8), "little", signed=True)
            if count != numel:
                raise UnsafePickleError(f"storage {key!r:.40} holds {count} elements, its reference claims {numel}")
            offsets[key] = position + 8
            position += 8 + numel * torch.empty((), dtype=dtype).element_size()
        if position > size:
            raise UnsafePickleError("the file is truncated (its storages run past its end)")

        storages: dict[str, tuple[Storage, bool]] = {}

        def placed(pid: Any) -> Storage:
            key, view = reference(pid)
            if key not in storages:
                dtype, numel = records[key]
                data = _mapped(path, offsets[key], numel, dtype, size)
                storages[key] = (Storage(torch.empty(numel, dtype=dtype) if data is None else data), data is not None)
            root = storages[key][0].data
            return Storage(root if view is None else root[view[0]:view[0] + view[1]])

        fh.seek(start)
        tree = restricted_load(fh, allowed, placed)
        tensors = dict(_named_tensors(tree, ""))
        picked = {name: tensors[name] for name in choose(tree, tensors)}
        wanted = {t.untyped_storage().data_ptr() for t in picked.values() if t.numel()}
        for key, (storage, mapped) in storages.items():
            if not mapped and storage.data.numel() and storage.data.untyped_storage().data_ptr() in wanted:
                fh.seek(offsets[key])
                buffer = memoryview(storage.data.view(torch.uint8).numpy())
                if fh.readinto(buffer) != len(buffer):
                    raise UnsafePickleError(f"storage {key!r:.40} is truncated")
        return tree, picked


def read_torch_file(path: str | os.PathLike, allowed: Mapping[tuple[str, str], Any], what: str,
                    choose: Choose) -> tuple[Any, dict[str, torch.Tensor]]:
    """The object ``torch.save`` wrote to ``path`` (either layout), unpickled with only the globals in
    ``allowed``, and the tensors ``choose`` picks (by path: ``state_dict.encoder.styles.0.linear.weight``),
    mapped or read; the others stay unread. ``what`` names the expected content in errors ("a pSp or e4e
    checkpoint"). CheckpointError, one line, when it is not such a file, or is damaged or hostile."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            zipped = fh.read(4) == _LOCAL_HEADER
        return (_read_zip if zipped else _read_legacy)(path, allowed, what, choose)
    except MorphError as e:
        raise CheckpointError(e.message, where=path, hint=e.hint) from None
    except RefusedGlobal as e:
        raise CheckpointError(f"refusing to read: its pickle names the global '{e.qualname}', which {what} never "
                              f"holds (it could run code)"[:200], where=path, hint=UNTRUSTED_HINT) from None
    except (UnsafePickleError, pickle.UnpicklingError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, TypeError,
            IndexError, AttributeError, KeyError, OverflowError, RuntimeError, OSError) as e:
        raise CheckpointError(f"not {what}: not a readable torch.save file ({' '.join(str(e).split())[:120]})",
                              where=path, hint=UNTRUSTED_HINT) from None
