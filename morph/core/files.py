"""Files morph writes and identifies: atomic writes (a temp file renamed when complete) and content hashes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional


@contextlib.contextmanager
def atomic_path(dest: Path, suffix: Optional[str] = None) -> Iterator[Path]:
    """A temp path beside ``dest``; renamed onto ``dest`` if the block succeeds, removed otherwise."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_path: Optional[Path] = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=(suffix or dest.suffix) + ".part",
                                   dir=dest.parent)
        tmp_path = Path(tmp)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; finished files get the usual permissions
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (checkpoints can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, str], dict]:
    """(header metadata, tensors on the CPU) of a safetensors file; a CheckpointError in one line when it is
    missing or not a safetensors file (a truncated or damaged one included)."""
    from safetensors import safe_open

    from morph.core.errors import CheckpointError

    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as fh:
            return dict(fh.metadata() or {}), {k: fh.get_tensor(k) for k in fh.keys()}
    except FileNotFoundError:
        raise CheckpointError("no such file", path) from None
    except Exception as exc:  # safetensors raises several types for a corrupt header
        raise CheckpointError(f"not a readable safetensors file ({' '.join(str(exc).split())[:100]})", path,
                              "the file may be truncated; write it again") from None
