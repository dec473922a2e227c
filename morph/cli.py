"""The ``morph`` command line: one typer app; each command is a thin shell over the library."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from .errors import MorphError
from .runtime import Terminated, keep_freed_memory, request_stop

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Render StyleGAN2 latent space into videos and looping GIFs.")

EXIT_CODES = ("Exit codes: 0 done, 1 internal error, 2 bad input (scene, model file or option), "
              "3 output locked by another run (--no-wait), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).")


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


@app.command(epilog=EXIT_CODES)
def render(scene: Path = typer.Argument(..., help="scene file (.yaml)"),
           only: Optional[list[str]] = typer.Option(None, "--only", help="render only this one (repeatable)"),
           out: Path = typer.Option(Path("outputs"), "--out", help="destination folder"),
           device: str = typer.Option("auto", help="auto | cpu | cuda[:N] | mps"),
           precision: str = typer.Option("fp32", help="fp32 | fp16 | bf16 (half precisions on a GPU only)"),
           batch_size: str = typer.Option("auto", "--batch-size", help="frames per batch, or auto"),
           force: bool = typer.Option(False, "--force", help="re-render even what the cache holds"),
           dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and the output paths only"),
           quiet: bool = typer.Option(False, "--quiet", help="no progress, only errors"),
           no_wait: bool = typer.Option(False, "--no-wait", help="exit 3 if another run writes the same output"),
           cache: Optional[Path] = typer.Option(None, "--cache", help="segment cache folder [default: ~/.cache/morph]"),
           ) -> None:
    """Render a scene's videos and GIFs into OUT; unchanged segments come from the cache."""
    from functools import partial

    import torch

    from .devices import resolve_device, resolve_precision
    from .encode import EncodeSettings
    from .progress import Progress, log
    from .render import default_cache_dir, output_lock, render as render_video
    from .scene import describe, load_scene, timelines
    from .schedule import sample
    from .stylegan2.loading import file_sha256, load_generator

    sc = load_scene(scene)
    names = list(sc.renders) if not only else only
    unknown = [n for n in names if n not in sc.renders]
    if unknown:
        raise MorphError(f"no render named {', '.join(unknown)}", "--only", f"the scene has {', '.join(sc.renders)}")
    dests = {n: out / (n if sc.renders[n].format == "png" else f"{n}.{sc.renders[n].format}") for n in names}
    if dry_run:
        typer.echo("\n".join(describe(sc)))
        typer.echo("\n".join(f"{n} -> {d}" for n, d in dests.items()))
        return
    if not batch_size.isdigit() and batch_size != "auto":
        raise MorphError(f"not a batch size: {batch_size!r}", "--batch-size", "give a positive integer or auto")
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    cache_dir = cache or default_cache_dir()
    G = load_generator(sc.model_path, dev)
    paths = timelines(sc, G)
    scene_sha = file_sha256(scene)
    for name in names:
        r, dest, tl = sc.renders[name], dests[name], paths[name]
        settings = EncodeSettings(format=r.format, fps=r.fps, size=r.size)
        start = time.monotonic()
        with output_lock(dest, wait=not no_wait):
            progress = Progress(name, r.frames, quiet=quiet)
            stats = render_video(G, partial(sample, tl), tl.frames, dest, settings, G.info.sha256, sc.noise, dev,
                                 int(batch_size) if batch_size.isdigit() else None, cache_dir, progress,
                                 metadata={"comment": f"morph scene {scene.name} sha256:{scene_sha[:16]} "
                                                      f"model sha256:{G.info.sha256[:16]}"},
                                 dtype=None if dtype == torch.float32 else dtype, force=force)
        if quiet:
            continue
        if stats.up_to_date:
            log(f"{name}: {dest} is up to date (0 frames rendered)")
        else:
            log(f"{name}: {dest} written, {stats.frames} frames ({stats.generated} rendered, "
                f"{stats.reused}/{stats.segments} segments from the cache) in {time.monotonic() - start:.1f} s")


@app.command()
def preview(scene: Path = typer.Argument(..., help="scene file (.yaml)"),
            out: Path = typer.Option(Path("outputs"), "--out", help="destination folder"),
            frames: int = typer.Option(8, "--frames", help="evenly spaced frames per render, besides keyframes"),
            device: str = typer.Option("auto", help="auto | cpu | cuda[:N] | mps")) -> None:
    """Write a PNG contact sheet per render: its keyframes, then evenly spaced frames (seconds, not minutes)."""
    import numpy as np
    import torch

    from .devices import resolve_device
    from .encode import atomic_path
    from .render import generate
    from .scene import load_scene, timelines
    from .schedule import sample
    from .stylegan2.loading import load_generator
    from .toyfaces.png import grid, write_png

    sc = load_scene(scene)
    dev = resolve_device(device)
    G = load_generator(sc.model_path, dev)
    for name, tl in timelines(sc, G).items():
        keys = list(tl.keyframes)
        spaced = np.linspace(0, tl.frames - 1, num=max(1, frames)).round().astype(int).tolist()
        row = max(len(keys), len(spaced))
        pick = keys + [keys[-1]] * (row - len(keys)) + spaced + [spaced[-1]] * (row - len(spaced))
        images = np.concatenate(list(generate(G, sample(tl, torch.tensor(pick)), 8, sc.noise, dev)))
        blank = np.full_like(images[0], 255)
        images[len(keys):row] = blank  # pad the keyframe row with white
        images[row + len(spaced):] = blank
        dest = out / f"{name}-preview.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest) as tmp:
            write_png(tmp, grid(images, cols=row))
        typer.echo(f"{dest}: {len(keys)} keyframes (top), {len(spaced)} of {tl.frames} frames (bottom)")


@app.command()
def cache(clear: bool = typer.Option(False, "--clear", help="delete cached segments"),
          older_than: Optional[float] = typer.Option(None, "--older-than", help="with --clear: only those unused "
                                                                                 "for this many days"),
          folder: Optional[Path] = typer.Option(None, "--cache", help="cache folder [default: ~/.cache/morph]")) -> None:
    """Show the segment cache (where, how many, how large) or clear it."""
    from .render import default_cache_dir

    root = folder or default_cache_dir()
    files = [p for p in (root / "segments").glob("*") if p.is_file()]
    if clear:
        cutoff = time.time() - older_than * 86400 if older_than is not None else None
        gone = [p for p in files if cutoff is None or p.stat().st_mtime < cutoff]
        for p in gone:
            p.unlink(missing_ok=True)
        typer.echo(f"{root}: removed {len(gone)} segments, {len(files) - len(gone)} left")
        return
    size = sum(p.stat().st_size for p in files)
    typer.echo(f"{root}: {len(files)} segments, {size / 1e6:.1f} MB")


def main() -> None:
    """Console entry point: a user error becomes one line per problem on stderr (``where: what``), exit code 2."""
    keep_freed_memory()
    signal.signal(signal.SIGTERM, request_stop)
    try:
        app()
    except MorphError as err:
        typer.echo(str(err), err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.echo("morph: interrupted; finished segments stay cached", err=True)
        sys.exit(130)
    except Terminated:
        typer.echo("morph: terminated; finished segments stay cached", err=True)
        sys.exit(143)


if __name__ == "__main__":
    main()
