"""The ``morph`` command line: one typer app; each command is a thin shell over the library."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import typer

from .errors import MorphError
from .runtime import Terminated, keep_freed_memory, request_stop

if TYPE_CHECKING:  # torch is imported inside the commands, so that --help stays fast
    import torch

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Render StyleGAN2 latent space into videos and looping GIFs.")

EXIT_CODES = ("Exit codes: 0 done, 1 internal error, 2 bad input (scene, model file or option), "
              "3 output locked by another run (--no-wait), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).")


@app.command()
def info(model: str = typer.Argument(..., help="checkpoint file: NVIDIA .pkl (PyTorch or TF), rosinality .pt, "
                                                "or morph .safetensors"),
         as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of text")) -> None:
    """Describe a generator checkpoint: format, resolution, layers, dimensions, parameter count, file hash."""
    from .loader import load_model

    G = load_model(model)
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
    from .loader import load_model

    G = load_model(source)
    write_native(dest, G.init_kwargs, G.state_dict(),
                 {"converted_from": Path(source).name, "source_format": G.info.format, "source_sha256": G.info.sha256})
    typer.echo(f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB) from {G.info.format} {source}")


@app.command()
def check(scene: Path = typer.Argument(..., help="scene file (.yaml)")) -> None:
    """Validate a scene and print its plan (renders' frames, durations, sizes; where each latent comes from)."""
    from .scene import describe, load_scene

    typer.echo("\n".join(describe(load_scene(scene))))


@app.command(epilog=EXIT_CODES)
def render(scenes: list[Path] = typer.Argument(..., help="scene files (.yaml)"),
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
           cluster: Optional[str] = typer.Option(None, "--cluster", help="render segments on the Dask cluster whose "
                                                                          "scheduler is here, e.g. tcp://host:8786"),
           workers: Optional[int] = typer.Option(None, "--workers", help="render segments on a local cluster of N "
                                                                          "worker processes"),
           cluster_transfer: bool = typer.Option(False, "--cluster-transfer", help="workers send segments back "
                                                 "instead of writing the cache (no shared filesystem)"),
           shard: Optional[str] = typer.Option(None, "--shard", help="K/N: render shard K of N of the missing "
                                                                      "segments into the cache and exit (array jobs)"),
           ) -> None:
    """Render scenes' videos and GIFs into OUT; unchanged segments come from the cache. Several scenes in one
    call share one cluster (--workers, --cluster)."""
    from .cluster import connect, parse_shard
    from .devices import resolve_device, resolve_precision
    from .render import default_cache_dir
    from .scene import describe, load_scene

    loaded = {path: load_scene(path) for path in dict.fromkeys(scenes)}  # every scene's problems before any work
    known = {name for sc in loaded.values() for name in sc.renders}
    unknown = [n for n in only or () if n not in known]
    if unknown:
        raise MorphError(f"no render named {', '.join(unknown)}", "--only", f"the scenes have {', '.join(sorted(known))}")
    selected = {path: [n for n in sc.renders if not only or n in only] for path, sc in loaded.items()}
    owners: dict[str, Path] = {}
    for path, names in selected.items():
        for n in names:
            if n in owners:
                raise MorphError(f"{owners[n]} and {path} both have a render named {n!r}, which would write the same "
                                 "file", "morph render", "rename one, or render them with different --out folders")
            owners[n] = path
    if dry_run:
        for path, sc in loaded.items():
            typer.echo("\n".join(describe(sc)))
            typer.echo("\n".join(f"{n} -> {_destination(out, sc, n)}" for n in selected[path]))
        return
    if not batch_size.isdigit() and batch_size != "auto":
        raise MorphError(f"not a batch size: {batch_size!r}", "--batch-size", "give a positive integer or auto")
    if sum(x is not None for x in (cluster, workers, shard)) > 1:
        raise MorphError("--cluster, --workers and --shard exclude each other", "morph render",
                         "a shard job renders on its own machine; a cluster run splits the work itself")
    if cluster_transfer and cluster is None and workers is None:
        raise MorphError("--cluster-transfer applies only with --cluster or --workers", "--cluster-transfer")
    options = _RenderOptions(out, resolve_device(device), device, batch_size, force, quiet, no_wait,
                             cache or default_cache_dir(), parse_shard(shard) if shard is not None else None,
                             cluster_transfer)
    options.dtype = resolve_precision(precision, options.device)
    distributed = cluster is not None or workers is not None
    with contextlib.ExitStack() as stack:
        clients: list = []

        def client():  # the cluster, connected (or started) on first need and shared by all scenes
            if not clients:
                clients.append(stack.enter_context(connect(cluster, workers)))
            return clients[0]

        for path, sc in loaded.items():
            _render_scene(path, sc, selected[path], options, client if distributed else None)


def _destination(out: Path, sc, name: str) -> Path:
    """Where render ``name`` of scene ``sc`` goes: ``OUT/NAME.FORMAT``, or the folder ``OUT/NAME`` for png."""
    fmt = sc.renders[name].format
    return out / (name if fmt == "png" else f"{name}.{fmt}")


@dataclass
class _RenderOptions:
    """``morph render``'s options, resolved once for all its scenes."""

    out: Path
    device: torch.device
    device_name: str
    batch_size: str
    force: bool
    quiet: bool
    no_wait: bool
    cache_dir: Path
    shard: Optional[tuple[int, int]]
    transfer: bool
    dtype: Optional[torch.dtype] = None


def _render_scene(scene: Path, sc, names: list[str], o: _RenderOptions, client: Optional[Callable]) -> None:
    """Render ``names`` of one loaded scene: locally, as a shard, or on the cluster of ``client()``, then join."""
    from functools import partial

    import torch

    from .encode import EncodeSettings
    from .progress import Progress, log
    from .projection import project_scene
    from .render import output_lock, render as render_video
    from .scene import timelines
    from .schedule import sample
    from .loader import load_model
    from .stylegan2.loading import file_sha256

    G = load_model(sc.model_path, o.device)
    photos = project_scene(sc, G, o.cache_dir, o.quiet)
    paths = timelines(sc, G, photos.latent)
    metadata = {"comment": f"morph scene {scene.name} sha256:{file_sha256(scene)[:16]} "
                           f"model sha256:{G.info.sha256[:16]}"}
    jobs = {name: (partial(sample, paths[name]), EncodeSettings(format=sc.renders[name].format,
                                                               fps=sc.renders[name].fps, size=sc.renders[name].size))
            for name in names}
    dests = {name: _destination(o.out, sc, name) for name in names}
    batch = int(o.batch_size) if o.batch_size.isdigit() else None
    half = None if o.dtype == torch.float32 else o.dtype
    force = o.force
    if o.shard is not None or client is not None:
        from .cluster import Engine, Job, pending_work, render_distributed, render_shard

        engine = Engine(str(Path(G.info.path).resolve()), G.info.sha256, sc.noise, o.device_name, batch, half)
        work = pending_work(G, [Job(dests[n], *jobs[n], sc.renders[n].frames, sc.renders[n].audio,
                                    photos.model_key(G, n), photos.noise_maps(n)) for n in names],
                            engine, o.cache_dir, metadata, force)
        start = time.monotonic()
        label = f"shard {o.shard[0]}/{o.shard[1]}" if o.shard else "cluster"
        progress = Progress(label, 0, quiet=o.quiet)
        if o.shard is not None:
            segments, frames = render_shard(G, work, *o.shard, engine, o.device, progress, force)
            where = "in this process"
        else:
            segments, frames = render_distributed(client, work, engine, o.cache_dir, progress, o.transfer, force)
            where = f"on {len(client().nthreads())} workers" if segments else "on the cluster"
        if not o.quiet:
            log(f"{label} ({scene.name}): {segments} segments into the cache ({frames} rendered {where}) in "
                f"{time.monotonic() - start:.1f} s" + ("; a plain morph render joins them" if o.shard else ""))
        if o.shard is not None:
            return
        force = False  # every segment was just rendered and the outputs forgotten: the join below reads the cache
    for name in names:
        r, dest, tl = sc.renders[name], dests[name], paths[name]
        sample_w, settings = jobs[name]
        start = time.monotonic()
        with output_lock(dest, wait=not o.no_wait), photos.noise(G, name) as model_key:
            progress = Progress(name, r.frames, quiet=o.quiet)
            stats = render_video(G, sample_w, tl.frames, dest, settings, model_key, sc.noise, o.device, batch,
                                 o.cache_dir, progress, audio=r.audio, metadata=metadata, dtype=half, force=force)
        if o.quiet:
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
    from .projection import project_scene
    from .render import generate
    from .scene import load_scene, timelines
    from .schedule import sample
    from .loader import load_model
    from .toyfaces.png import grid, write_png

    sc = load_scene(scene)
    dev = resolve_device(device)
    G = load_model(sc.model_path, dev)
    photos = project_scene(sc, G)
    for name, tl in timelines(sc, G, photos.latent).items():
        keys = list(tl.keyframes)
        spaced = np.linspace(0, tl.frames - 1, num=max(1, frames)).round().astype(int).tolist()
        row = max(len(keys), len(spaced))
        pick = keys + [keys[-1]] * (row - len(keys)) + spaced + [spaced[-1]] * (row - len(spaced))
        with photos.noise(G, name):
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


@app.command("sample")
def sample_cmd(model: str = typer.Option("builtin", "--model", help="checkpoint file, or builtin"),
               n: int = typer.Option(..., "--n", min=1, help="how many samples"),
               out: Path = typer.Option(..., "--out", help="destination folder"),
               truncation: float = typer.Option(1.0, "--truncation", help="psi"),
               seed: int = typer.Option(0, "--seed", help="sample i is seed SEED+i (as in NVIDIA's generate.py)"),
               classifier: Optional[str] = typer.Option(None, "--classifier", help="builtin: score every image "
                                                                                   "with the built-in classifier"),
               images: bool = typer.Option(True, "--images/--no-images", help="write 000000.png, 000001.png, ..."),
               device: str = typer.Option("auto", help="auto | cpu | cuda[:N] | mps"),
               batch_size: int = typer.Option(32, "--batch-size", min=1, help="images per batch")) -> None:
    """Sample latents to label: latents.npy (W, [N, w_dim]) and z.npy, images named by index to sort by hand
    into folders, and with --classifier builtin the attribute scores (scores.npz)."""
    import numpy as np

    from .devices import resolve_device
    from .directions import LATENTS_FILE, SCORES_FILE, Z_FILE, map_batches, save_array, seeds_z, w_images
    from .encode import atomic_path
    from .progress import Progress
    from .loader import load_model
    from .toyfaces.png import write_png

    if classifier not in (None, "builtin"):
        raise MorphError(f"unknown classifier {classifier!r}", "--classifier", "the one available is builtin")
    dev = resolve_device(device)
    G = load_model(model, dev)
    if G.c_dim:
        raise MorphError("sampling conditional models is not supported", "--model")
    z = seeds_z(seed, n, G.z_dim)
    w = np.concatenate(list(map_batches(G, z, truncation)))
    out.mkdir(parents=True, exist_ok=True)
    save_array(out / Z_FILE, z)
    save_array(out / LATENTS_FILE, w, {"model": str(model), "model_sha256": G.info.sha256, "space": "w", "count": n,
                                       "seed": seed, "truncation": truncation, "num_ws": G.num_ws, "w_dim": G.w_dim})
    scores: dict[str, list] = {}
    if images or classifier:
        clf = None
        if classifier:
            from .builtin import load_builtin_classifier
            clf = load_builtin_classifier(dev)
        progress = Progress("sample", n, unit="images")
        done = 0
        for frames in w_images(G, w, batch_size, dev):
            if clf is not None:
                for name, value in clf.predict(frames).items():
                    if name in clf.attributes or name in clf.continuous:
                        scores.setdefault(name, []).append(value)
            for i, frame in enumerate(frames, start=done) if images else ():
                with atomic_path(out / f"{i:06d}.png") as tmp:
                    write_png(tmp, frame)
            done += len(frames)
            progress.advance(len(frames))
        progress.close()
    if scores:
        with atomic_path(out / SCORES_FILE) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{name: np.concatenate(parts) for name, parts in scores.items()})
    typer.echo(f"{out}: {n} latents ({LATENTS_FILE}, {Z_FILE})" + (f", {n} images" if images else "")
               + (f", scores of {', '.join(scores)} ({SCORES_FILE})" if scores else ""))


directions_app = typer.Typer(no_args_is_help=True, help="Find latent directions (SVM on labels, PCA), show them.")
app.add_typer(directions_app, name="directions")


@directions_app.command("train")
def directions_train(latents: Path = typer.Option(..., "--latents", help="latents.npy from morph sample "
                                                                          "([N, w_dim] or [N, num_ws, w_dim])"),
                     scores: Optional[str] = typer.Option(None, "--scores", help="ATTR from scores.npz beside the "
                                                                                 "latents, or a .npy of N scores"),
                     positive: Optional[Path] = typer.Option(None, "--positive", help="folder of images with the attribute"),
                     negative: Optional[Path] = typer.Option(None, "--negative", help="folder of images without it"),
                     space: str = typer.Option("w", "--space", help="w | w+"),
                     ratio: float = typer.Option(0.02, "--ratio", help="with --scores: top and bottom fraction kept "
                                                                        "(a count if > 1)"),
                     split: float = typer.Option(0.7, "--split", help="training fraction; the rest validates"),
                     conditions: Optional[list[Path]] = typer.Option(None, "--condition", help="keep this direction's "
                                                                     "attribute unchanged (repeatable)"),
                     out: Optional[Path] = typer.Option(None, "--out", help="direction .npy [default: directions/ATTR.npy]"),
                     seed: int = typer.Option(0, "--seed", help="shuffle of the train/validation split")) -> None:
    """Train a direction with a linear SVM: from latents + scores (InterFaceGAN's recipe) or from two folders
    of hand-sorted samples. Prints the validation accuracy; writes the .npy and its .json metadata."""
    from .directions import (condition, load_scores, read_direction, read_meta, save_array, spread, train_folders,
                             train_svm)
    from .latents import read_w

    if (scores is None) == (positive is None and negative is None) or (positive is None) != (negative is None):
        raise MorphError("give either --scores ATTR or both --positive DIR and --negative DIR", "directions train")
    if not 0 < split <= 1:
        raise MorphError(f"split {split:g} is not in (0, 1]", "--split")
    ws = read_w(latents)
    if scores is not None:
        attribute, values = load_scores(scores, latents)
        fit = train_svm(ws, values, ratio, split, space, seed)
        source = {"method": "svm", "scores": scores, "ratio": ratio}
    else:
        attribute = positive.name
        fit = train_folders(ws, positive, negative, split, space, seed)
        source = {"method": "svm-folders", "positive": str(positive), "negative": str(negative)}
    direction = fit.direction
    if conditions:
        direction = condition(direction, [read_direction(c) for c in conditions])
    out = out or Path("directions") / f"{attribute}.npy"
    out.parent.mkdir(parents=True, exist_ok=True)
    info = read_meta(latents)
    save_array(out, direction, {**source, "attribute": attribute, "space": space, "accuracy": fit.accuracy,
                                "positives": fit.positives, "negatives": fit.negatives, "validation": fit.validation,
                                "split": split, "spread": spread(ws, direction, space),
                                "conditioned_on": [str(c) for c in conditions or []], "latents": str(latents),
                                "model_sha256": info.get("model_sha256")})
    typer.echo(f"{attribute}: validation accuracy {fit.accuracy:.1%} on {fit.validation} held-out of "
               f"{fit.positives} + {fit.negatives} samples ({space}); wrote {out}")


@directions_app.command("pca")
def directions_pca(model: str = typer.Option("builtin", "--model", help="checkpoint file, or builtin"),
                   n: int = typer.Option(100000, "--n", min=2, help="mapped samples"),
                   k: int = typer.Option(10, "--k", min=1, help="components to keep"),
                   out: Path = typer.Option(Path("directions"), "--out", help="folder for pc0.npy, pc1.npy, ..."),
                   truncation: float = typer.Option(1.0, "--truncation", help="psi"),
                   seed: int = typer.Option(0, "--seed", help="first seed of the samples"),
                   device: str = typer.Option("auto", help="auto | cpu | cuda[:N] | mps")) -> None:
    """GANSpace-style principal directions of W (incremental PCA of mapped samples), saved as pc0, pc1, ..."""
    from .devices import resolve_device
    from .directions import map_batches, pca, save_array, seeds_z
    from .loader import load_model

    G = load_model(model, resolve_device(device))
    if k > G.w_dim:
        raise MorphError(f"{k} components asked of a {G.w_dim}-dimensional W", "--k")
    comps = pca(map_batches(G, seeds_z(seed, n, G.z_dim), truncation, batch=max(10000, k)), k)
    out.mkdir(parents=True, exist_ok=True)
    for i, vector in enumerate(comps.vectors):
        save_array(out / f"pc{i}.npy", vector, {"method": "pca", "attribute": f"pc{i}", "space": "w", "component": i,
                                               "explained_variance_ratio": comps.ratio[i], "spread": comps.std[i],
                                               "count": n, "truncation": truncation, "model_sha256": G.info.sha256})
        typer.echo(f"pc{i}: {comps.ratio[i]:6.1%} of the variance (std {comps.std[i]:.3f})")
    typer.echo(f"wrote {k} directions to {out} ({comps.ratio.sum():.1%} of the variance of {n} samples)")


@directions_app.command("show")
def directions_show(direction: str = typer.Argument(..., help="direction .npy/.npz, or builtin:NAME"),
                    latent: str = typer.Option("0", "--latent", help="latent .npy/.npz (W or W+), or a seed number"),
                    model: str = typer.Option("builtin", "--model", help="checkpoint file, or builtin"),
                    out: Optional[Path] = typer.Option(None, "--out", help="PNG [default: outputs/NAME-strip.png]"),
                    low: float = typer.Option(-3.0, "--from", help="first strength"),
                    high: float = typer.Option(3.0, "--to", help="last strength"),
                    steps: int = typer.Option(7, "--steps", min=2, help="images in the strip"),
                    truncation: float = typer.Option(1.0, "--truncation", help="psi for a seed"),
                    device: str = typer.Option("auto", help="auto | cpu | cuda[:N] | mps")) -> None:
    """A PNG strip of one face moved along a direction, from strength --from to --to."""
    import numpy as np

    from .devices import resolve_device
    from .directions import read_meta, sweep
    from .encode import atomic_path
    from .latents import load_w, seed_w
    from .progress import log
    from .render import generate
    from .scene import builtin_direction_path
    from .loader import load_model
    from .toyfaces.png import grid, write_png

    path = builtin_direction_path(direction.split(":", 1)[1]) if direction.startswith("builtin:") else Path(direction)
    dev = resolve_device(device)
    G = load_model(model, dev)
    trained_on = read_meta(path).get("model_sha256")
    if trained_on and trained_on != G.info.sha256:
        log(f"warning: {path} was trained on another model (sha256 {trained_on[:12]}, this one {G.info.sha256[:12]})")
    d = load_w(path, G.num_ws, G.w_dim)
    w = seed_w(G, int(latent), truncation) if latent.lstrip("-").isdigit() else load_w(latent, G.num_ws, G.w_dim)
    strengths = np.linspace(low, high, steps)
    images = np.concatenate(list(generate(G, sweep(w, d, strengths), 8, "const", dev)))
    out = out or Path("outputs") / f"{path.stem}-strip.png"
    with atomic_path(out) as tmp:
        write_png(tmp, grid(images, cols=steps))
    typer.echo(f"{out}: {path.stem} at strengths {', '.join(f'{s:g}' for s in strengths)}")


@app.command()
def project(images: list[Path] = typer.Argument(..., help="photos (PNG, JPEG, WebP, ...)"),
            model: str = typer.Option("builtin", "--model", help="checkpoint file, or builtin"),
            space: str = typer.Option("w+", "--space", help="w+ (one w per layer) | w"),
            steps: Optional[int] = typer.Option(None, "--steps", min=0, help="optimisation steps after the encoder's "
                                                "guess (0: the guess alone); default 100 with an encoder, "
                                                "1000 without"),
            encoder: str = typer.Option("auto", "--encoder", help="PATH | auto (the built-in model's own, or "
                                        "NAME.encoder.safetensors beside the checkpoint) | none (start at w_avg)"),
            coarse: Optional[int] = typer.Option(None, "--coarse", min=0, help="refine the first half of the "
                                                 "steps on the image at this resolution (0: never); default 256 for "
                                                 "models above 256 px"),
            out: Path = typer.Option(Path("outputs/projected"), "--out", help="destination folder"),
            video: bool = typer.Option(False, "--video", help="also write NAME.mp4 of the optimisation"),
            no_align: bool = typer.Option(False, "--no-align", help="images are aligned faces already"),
            face: Optional[int] = typer.Option(None, "--face", min=1, help="which face, counted from the left "
                                                                           "[default: the largest]"),
            vgg: Optional[list[Path]] = typer.Option(None, "--vgg", help="LPIPS weights: NVIDIA's vgg16.pt, or "
                                                     "vgg16-397923af.pth plus LPIPS's vgg.pth (repeat --vgg)"),
            device: str = typer.Option("auto", help="auto | cpu | cuda[:N] | mps"),
            cache: Optional[Path] = typer.Option(None, "--cache", help="cache folder [default: ~/.cache/morph]"),
            quiet: bool = typer.Option(False, "--quiet", help="no progress, only errors")) -> None:
    """Find the W+ (or W) latent and noise that draw each photo: NAME.npy, NAME.noise.npz, NAME.png and
    NAME.json (PSNR; LPIPS with --vgg; identity for real photos; attributes on the built-in model) in OUT."""
    import numpy as np

    from .devices import resolve_device
    from .encoder import encoder_for
    from .projection import (REFINE_STEPS, SCENE_STEPS, SPACES, Settings, is_builtin_file, project_photos,
                             synthesize, write_outputs)
    from .quality import describe, figures
    from .loader import load_model

    if space not in SPACES:
        raise MorphError(f"unknown space {space!r}", "--space", "use w+ or w")
    stems: dict[str, Path] = {}
    for image in images:
        if not image.is_file():
            raise MorphError("no such file", image)
        if stems.setdefault(image.stem, image) != image:
            raise MorphError(f"{stems[image.stem]} and {image} would both write {image.stem}.*", "--out",
                             "rename one of them, or project them in separate runs with different --out")
    G = load_model(model, resolve_device(device))
    enc = encoder_for(G, encoder)
    steps = steps if steps is not None else (REFINE_STEPS if enc is not None else SCENE_STEPS)
    if steps == 0 and enc is None:
        raise MorphError("--steps 0 keeps the encoder's guess, but there is no encoder", "--steps",
                         "give --encoder PATH (morph encoder train), or at least one step")
    settings = Settings(space=space, steps=steps, align=not no_align, face=face,
                        coarse=-1 if coarse is None else coarse)
    results = project_photos(images, G, settings, vgg or (), cache, quiet=quiet, encoder=enc)
    recon = synthesize(G, results)
    rows = figures(np.stack([r.target for r in results]), recon, is_builtin_file(G.info.path), vgg or (),
                   real=not no_align)
    for image, p, rec, row in zip(images, results, recon, rows):
        row |= {"steps": steps, "space": space, "encoder": enc.path if enc is not None else None}
        written = write_outputs(G, image, p, rec, out, video, figures=row)
        if not quiet:
            typer.echo(f"{image}: {describe(row)} -> {', '.join(map(str, written))}")



encoder_app = typer.Typer(no_args_is_help=True, help="Image → W+ encoders: projection's first guess.")
app.add_typer(encoder_app, name="encoder")


@encoder_app.command("train")
def encoder_train(model: str = typer.Option(..., "--model", help="checkpoint file, or builtin"),
                  out: Path = typer.Option(..., "--out", help="the encoder file to write (.safetensors); "
                                           "NAME.encoder.safetensors beside the checkpoint is found by "
                                           "--encoder auto"),
                  steps: int = typer.Option(3000, "--steps", min=1, help="training steps"),
                  batch: int = typer.Option(32, "--batch", min=1, help="generator samples per step"),
                  lr: float = typer.Option(2e-3, "--lr", help="Adam learning rate (cosine decay)"),
                  image_weight: float = typer.Option(1.0, "--image-weight", min=0.0,
                                                     help="weight of the image loss through the generator"),
                  seed: int = typer.Option(0, "--seed"),
                  resume: bool = typer.Option(False, "--resume", help="continue from OUT.train.pt"),
                  device: str = typer.Option("auto", help="auto | cpu | cuda[:N] | mps"),
                  quiet: bool = typer.Option(False, "--quiet", help="no progress, only errors")) -> None:
    """Train an encoder on the model's own samples (truncated and style-mixed), checkpointed and resumable."""
    from .devices import resolve_device
    from .encoder_training import TrainConfig, train
    from .loader import load_model

    if out.suffix != ".safetensors":
        raise MorphError("the encoder is written in morph's safetensors format", out, "name it NAME.safetensors")
    G = load_model(model, resolve_device(device))
    train(G, out, TrainConfig(steps=steps, batch=batch, lr=lr, image_weight=image_weight, seed=seed),
          resume=resume, quiet=quiet)
    if not quiet:
        typer.echo(f"{out}: encoder for {G.info.path} (sha256 {G.info.sha256[:12]}…)")

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
