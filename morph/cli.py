"""The ``morph`` command line: one typer app; each command is a thin shell over the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import MorphError
from .runtime import keep_freed_memory

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Render StyleGAN2 latent space into videos and looping GIFs.")

EXIT_CODES = """Exit codes: 0 done, 1 internal error, 2 bad input (scene, model file or option), 130 interrupted."""


@app.command()
def info(model: str = typer.Argument(..., help="checkpoint file: NVIDIA .pkl (PyTorch or TF), rosinality .pt, "
                                                "or morph .safetensors"),
         as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of text")) -> None:
    """Describe a generator checkpoint: format, resolution, layers, dimensions, parameter count, file hash."""
    from .stylegan2.loading import load_generator

    G = load_generator(model)
    syn = G.init_kwargs["synthesis_kwargs"]
    facts = {
        "file": G.info.path,
        "format": G.info.format,
        "sha256": G.info.sha256,
        "resolution": G.img_resolution,
        "img_channels": G.img_channels,
        "num_ws": G.num_ws,
        "w_dim": G.w_dim,
        "z_dim": G.z_dim,
        "c_dim": G.c_dim,
        "architecture": syn.get("architecture", "skip"),
        "mapping_layers": G.mapping.num_layers,
        "channels": {res: getattr(G.synthesis, f"b{res}").conv1.weight.shape[0] for res in G.synthesis.block_resolutions},
        "conv_clamp": syn.get("conv_clamp"),
        "num_fp16_res": syn.get("num_fp16_res", 0),
        "parameters": sum(p.numel() for p in G.parameters()),
        **({"notes": G.info.metadata} if G.info.metadata else {}),
    }
    if as_json:
        typer.echo(json.dumps(facts, indent=2, default=str))
        return
    width = max(map(len, facts))
    for key, value in facts.items():
        if key == "parameters":
            value = f"{value:,}"
        elif key == "channels":
            value = " ".join(f"{r}:{c}" for r, c in value.items())
        typer.echo(f"{key:<{width}}  {value}")


@app.command()
def convert(source: str = typer.Argument(..., help="any checkpoint morph reads"),
            dest: Path = typer.Argument(..., help="output .safetensors file (morph's own format)")) -> None:
    """Convert a checkpoint to morph's own format: safetensors weights, architecture in the metadata."""
    from .stylegan2.formats import write_native
    from .stylegan2.loading import load_generator

    G = load_generator(source)
    write_native(dest, G.init_kwargs, G.state_dict(),
                 {"converted_from": Path(source).name, "source_format": G.info.format, "source_sha256": G.info.sha256})
    typer.echo(f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB) from {G.info.format} {source}")


@app.command()
def check(scene: Path = typer.Argument(..., help="scene file (.yaml)")) -> None:
    """Validate a scene and print its plan (renders' frames, durations, sizes; where each latent comes from)."""
    from .scene import describe, load_scene

    typer.echo("\n".join(describe(load_scene(scene))))


def main() -> None:
    """Console entry point: a user error becomes one line per problem on stderr (``where: what``), exit code 2."""
    keep_freed_memory()
    try:
        app()
    except MorphError as err:
        typer.echo(str(err), err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.echo("morph: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
