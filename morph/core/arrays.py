""".npy/.npz files from users and caches, read only after their headers and archive members pass inspection.

A ``.npy`` header's shape × itemsize must match the bytes the file (or the ``.npz`` member) really
holds, compressed members may not inflate past :data:`~morph.core.limits.MAX_COMPRESSION_RATIO`, and only
real numbers are read (no objects, strings, complex numbers or records), so a small file can never
allocate much and numpy's ``allow_pickle`` advice never reaches the user. Every problem is one
:class:`~morph.core.errors.MorphError` line naming the file.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from morph.core.errors import MorphError
from morph.core.limits import MAX_COMPRESSION_RATIO, MAX_NPY_HEADER, MIN_RATIO_CHECKED

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
REAL_KINDS = "biuf"  # bool, signed, unsigned, float
_KIND_NAMES = {"O": "Python objects", "U": "strings", "S": "byte strings", "c": "complex numbers",
               "V": "structured records", "M": "dates", "m": "time spans"}
SAVE_HINT = "save it as a float array: numpy.save(path, numpy.asarray(array, dtype=numpy.float32))"


def _unreadable(what: str, where) -> MorphError:
    return MorphError(f"cannot read as .npy/.npz ({what})", where=where)


def dtype_problem(dtype: np.dtype) -> Optional[str]:
    """Why an array of ``dtype`` is not an array of real numbers, or None."""
    if dtype.hasobject or dtype.kind not in REAL_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        kind = "O" if dtype.hasobject else dtype.kind
        return f"holds {_KIND_NAMES.get(kind, 'values')} (dtype {dtype.str!r}), not real numbers"
    return None


def _read_header(fh, data_bytes: int, where) -> None:
    """Check the ``.npy`` header at ``fh``: real-number dtype, and shape × itemsize == the ``data_bytes`` that follow."""
    start = fh.tell()
    if fh.read(len(NPY_MAGIC)) != NPY_MAGIC:
        raise _unreadable("not a .npy array", where)
    fh.seek(start)
    try:
        version = np.lib.format.read_magic(fh)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = reader(fh, max_header_size=MAX_NPY_HEADER)
    except (ValueError, TypeError, SyntaxError, EOFError, OSError) as e:
        raise _unreadable(f"corrupt .npy header: {' '.join(str(e).split())[:120]}", where) from None
    problem = dtype_problem(dtype)
    if problem:
        raise MorphError(problem, where=where, hint=SAVE_HINT)
    declared = math.prod(shape) * dtype.itemsize
    held = data_bytes - (fh.tell() - start)
    if declared != held:
        raise _unreadable(f"its header declares shape {list(shape)} of {dtype.name} ({declared} bytes) but the "
                          f"file holds {held} bytes of data; it is truncated or damaged", where)


def check_member(info: zipfile.ZipInfo, archive_bytes: int, where) -> None:
    """Refuse a zip member that lies outside the archive's ``archive_bytes``, or that would inflate past
    MAX_COMPRESSION_RATIO × its compressed size (a zip bomb), before any of it is read."""
    hostile = "the file is damaged or hostile; do not use it"
    if info.header_offset + info.compress_size > archive_bytes or (
            info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size):
        raise MorphError(f"archive member {info.filename!r} claims more bytes than the archive holds", where=where,
                         hint=hostile)
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > MIN_RATIO_CHECKED \
            and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
        raise MorphError(f"archive member {info.filename!r} inflates from {info.compress_size} to {info.file_size} "
                         f"bytes (more than {MAX_COMPRESSION_RATIO}x); refusing to unpack it", where=where, hint=hostile)


def check_zip(zf: zipfile.ZipFile, where) -> None:
    """:func:`check_member` for every member of ``zf`` (e.g. a torch zip checkpoint, before ``torch.load``)."""
    size = _archive_bytes(zf)
    for info in zf.infolist():
        check_member(info, size, where)


def _archive_bytes(zf: zipfile.ZipFile) -> int:
    fp = zf.fp
    position = fp.tell()
    try:
        return fp.seek(0, os.SEEK_END)
    finally:
        fp.seek(position)


def _file_kind(path: Path) -> str:
    """"npy" or "npz" by the file's first bytes; MorphError for anything else."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except IsADirectoryError:
        raise MorphError("is a folder, not a .npy/.npz file", where=path) from None
    except OSError as e:
        raise _unreadable(e.strerror or str(e), path) from None
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head[:4] in ZIP_MAGICS:
        return "npz"
    if not head:
        raise _unreadable("the file is empty", path)
    raise _unreadable(f"not a numpy array file: it starts with {head!r}", path)


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise _unreadable(f"corrupt .npz archive: {' '.join(str(e).split())}", path) from None


def npz_names(zf: zipfile.ZipFile) -> list[str]:
    """The array names of an ``.npz`` (its ``NAME.npy`` members), as ``numpy.load(...).files`` lists them."""
    return [n[:-4] if n.endswith(".npy") else n for n in zf.namelist()]


def _read_member(zf: zipfile.ZipFile, name: str, where) -> np.ndarray:
    member = name if name in zf.namelist() else f"{name}.npy"
    try:
        info = zf.getinfo(member)
        check_member(info, _archive_bytes(zf), where)
        with zf.open(info) as fh:
            _read_header(fh, info.file_size, f"{where}[{name}]")
        with zf.open(info) as fh:
            return np.lib.format.read_array(fh, allow_pickle=False, max_header_size=MAX_NPY_HEADER)
    except MorphError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError, NotImplementedError) as e:
        raise _unreadable(f"corrupt .npz member {name!r}: {' '.join(str(e).split())[:120]}", where) from None


def read_array(path: str | os.PathLike, mmap: bool = False,
               choose: Optional[Callable[[list[str]], str]] = None) -> np.ndarray:
    """The array of a ``.npy`` (memory-mapped if ``mmap``), or the ``.npz`` member ``choose(names)`` picks
    (it raises MorphError when none fits; default: the only one). Headers, sizes and dtypes are checked first."""
    path = Path(path)
    if _file_kind(path) == "npy":
        with open(path, "rb") as fh:
            _read_header(fh, os.fstat(fh.fileno()).st_size, path)
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise _unreadable(" ".join(str(e).split())[:160], path) from None
    with _open_zip(path) as zf:
        names = npz_names(zf)
        if choose is None:
            if len(names) != 1:
                raise MorphError(f"holds arrays {names}; expected a single array", where=path)
            name = names[0]
        else:
            name = choose(names)
        return _read_member(zf, name, path)


def read_arrays(path: str | os.PathLike, names: Optional[Sequence[str]] = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` by name (all, or ``names``; KeyError-free: missing names are left out)."""
    path = Path(path)
    if _file_kind(path) != "npz":
        raise MorphError("is a .npy file, not an .npz archive of named arrays", where=path)
    with _open_zip(path) as zf:
        present = npz_names(zf)
        return {n: _read_member(zf, n, path) for n in (present if names is None else names) if n in present}


def require_finite(array: np.ndarray, where, what: str = "value", chunk: int = 1 << 20) -> None:
    """MorphError unless every value of ``array`` is finite (NaN or inf would render black frames).

    Scanned ``chunk`` values at a time, so a memory-mapped file is never copied whole.
    """
    if array.dtype.kind != "f":
        return
    order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
    flat = array.reshape(-1, order=order)  # a view in memory order, also of a Fortran-ordered file
    count, first = 0, None
    for start in range(0, flat.size, chunk):
        bad = ~np.isfinite(flat[start:start + chunk])
        n = int(np.count_nonzero(bad))
        if n and first is None:
            first = start + int(np.argmax(bad))
        count += n
    if count:
        index = [int(i) for i in np.unravel_index(first, array.shape, order=order)]
        raise MorphError(f"holds {count} NaN or infinite {what}{'s' if count > 1 else ''} (first at index {index})",
                         where=where, hint="the file is damaged or came from a run that diverged; write it again")
