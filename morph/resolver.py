"""Model and direction names → files: ``builtin`` → the shipped weights, a path relative to where it was written.

This is the one place that turns what a user writes after ``model:`` / ``--model`` into a file on
disk; the network packages never look up names themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CheckpointError

BUILTIN = "builtin"


def is_builtin(model: str | os.PathLike | None) -> bool:
    """True for the model names that mean the built-in generator (``builtin``, any case)."""
    return isinstance(model, str) and model.strip().lower() == BUILTIN


def resolve_model(model: str | os.PathLike, base: Path = Path(".")) -> Path:
    """The file a model spec names: ``builtin`` → the shipped generator (a one-line error if this install
    lacks it), ``~`` expanded, a relative path taken from ``base`` (a scene's folder)."""
    if is_builtin(model):
        from .builtin import builtin_path

        path = builtin_path("generator")
        if not path.is_file():
            raise CheckpointError("the built-in generator's weights are not installed", path,
                                  "reinstall morph, or train them: python -m morph.builtin.train_generator")
        return path
    path = Path(model).expanduser()
    return path if path.is_absolute() else base / path


def resolve_direction(spec: str | os.PathLike, base: Path = Path(".")) -> Path:
    """The file a direction spec names: ``builtin:NAME`` → the shipped direction (a one-line error listing
    the ones there are), else a path relative to ``base``."""
    if isinstance(spec, str) and spec.startswith(f"{BUILTIN}:"):
        from .builtin import direction_path

        return direction_path(spec.split(":", 1)[1])
    path = Path(spec).expanduser()
    return path if path.is_absolute() else base / path


__all__ = ["BUILTIN", "is_builtin", "resolve_direction", "resolve_model"]
