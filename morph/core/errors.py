"""User-facing errors: each one renders as a single line saying where, what and how to fix."""

from __future__ import annotations

import errno
import os
from typing import Optional


class MorphError(Exception):
    """An error caused by the user's input (a file, a scene, an option), not by a bug in morph.

    ``str(err)`` is one line: ``<where>: <what is wrong>[; <how to fix it>]``.
    """

    exit_code = 2

    def __init__(self, message: str, where: Optional[str | os.PathLike] = None, hint: Optional[str] = None):
        self.message = message
        self.where = os.fspath(where) if where is not None else None
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f"; {self.hint}"
        return " ".join(text.split())  # always one line


class CheckpointError(MorphError):
    """A model file that cannot be read, is unsafe, or does not describe a supported generator."""


_OS_HINTS = {
    errno.EACCES: "morph may not write there: check the permissions, or choose another --out / --cache",
    errno.EPERM: "morph may not write there: check the permissions, or choose another --out / --cache",
    errno.EROFS: "that file system is read-only: choose another --out / --cache",
    errno.ENOSPC: "the disk is full: free some space, or point --out / --cache at another disk",
    errno.EDQUOT: "the disk quota is used up: free some space, or point --out / --cache elsewhere",
    errno.ENOTDIR: "part of that path is a file where a folder should be",
    errno.EISDIR: "that is a folder where a file should be",
    errno.ENAMETOOLONG: "the name is too long for the file system: shorten it",
}


def os_error_line(err: OSError) -> str:
    """A file-system error as one line: the path, what the system said, and what to do about it."""
    where = err.filename if err.filename is not None else "morph"
    text = f"{where}: {err.strerror or err}"
    hint = _OS_HINTS.get(err.errno or -1)
    return " ".join((f"{text}; {hint}" if hint else text).split())
