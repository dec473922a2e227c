"""Checkpoint files as ``morph info`` and ``morph convert`` see them: a file's facts, a file written again in
another format, and the model a published encoder checkpoint carries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from morph.checkpoints import write_native
from morph.checkpoints.psp import ENCODER_TYPES, describe_encoder, is_encoder_checkpoint
from morph.checkpoints.rosinality import rosinality_config, write_rosinality
from morph.core.errors import MorphError
from morph.models.loader import load_model

CONVERSIONS = ("morph", "rosinality")


def model_facts(model: str) -> dict[str, Any]:
    """What ``morph info`` prints of a checkpoint: file, format, family, hash, dimensions, the family's own
    architecture facts, the parameter count, the file's notes and, for a pSp / e4e checkpoint, its encoder."""
    G = load_model(model)
    facts = {"file": G.info.path, "format": G.info.format, "family": G.family, "sha256": G.info.sha256,
             "resolution": G.img_resolution, "img_channels": G.img_channels, "num_ws": G.num_ws, "w_dim": G.w_dim,
             "z_dim": G.z_dim, "c_dim": G.c_dim, **G.architecture_facts(),
             "parameters": sum(p.numel() for p in G.parameters()),
             **({"notes": G.info.metadata} if G.info.metadata else {})}
    if G.info.format in ENCODER_TYPES.values():  # a pSp / e4e checkpoint: its encoder too
        facts["encoder"] = describe_encoder(G.info.path)
    return facts


def convert_checkpoint(source: str, dest: Path, to: str = "morph") -> str:
    """Write the generator in ``source`` to ``dest`` as morph's own safetensors format, or (``to="rosinality"``)
    as a stylegan2-pytorch checkpoint rosinality's Generator loads; returns the line that says what was done."""
    if to not in CONVERSIONS:
        raise MorphError(f"unknown format {to!r}", "--to", "use morph or rosinality")
    G = load_model(source)
    if to == "morph":
        write_native(dest, G.init_kwargs, G.state_dict(), {"converted_from": Path(source).name,
                     "source_format": G.info.format, "source_sha256": G.info.sha256}, family=G.family)
        return f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB) from {G.info.format} {source}"
    size, style_dim, n_mlp, cm = rosinality_config(G.init_kwargs, source)
    write_rosinality(dest, G.init_kwargs, G.state_dict())
    clamp = G.architecture_facts()["conv_clamp"]
    return (f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB) from {G.info.format} {source}: load it with "
            f"Generator({size}, {style_dim}, {n_mlp}, channel_multiplier={cm})"
            + (f"; rosinality's generator does not clamp (this one clamped at {clamp:g})" if clamp else ""))


def model_of_encoder(encoder: str) -> str:
    """``morph project``'s default model: the generator stored in a pSp / e4e ``--encoder`` checkpoint, else the
    built-in one."""
    path = Path(encoder).expanduser()
    return str(path) if path.is_file() and is_encoder_checkpoint(path) else "builtin"


__all__ = ["CONVERSIONS", "convert_checkpoint", "model_facts", "model_of_encoder"]
