"""User-facing errors: each one renders as a single line saying where, what and how to fix."""

from __future__ import annotations

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
