"""The ``morph`` command line: one typer app; each command is a thin shell over the library."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

from morph.core.errors import MorphError, os_error_line
from morph.core.limits import MAX_BATCH, MAX_PREVIEW_FRAMES, MAX_STRIP_STEPS
from morph.core.runtime import Terminated, keep_freed_memory, request_stop

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Render StyleGAN2 and StyleGAN3 latent space into videos and looping GIFs.")

EXIT_CODES = ("Exit codes: 0 done, 1 internal error, 2 bad input (scene, model file or option), "
              "3 output locked by another run (--no-wait), 4 file-system error (permissions, full disk, a file "
              "where a folder belongs), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).")


@app.command()
def info(model: str = typer.Argument(..., help="checkpoint file: NVIDIA .pkl (PyTorch or TF), rosinality .pt, "
                                                "or morph .safetensors"),
         as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of text")) -> None:
    """Describe a generator checkpoint: format, resolution, layers, dimensions, parameter count, file hash."""
    from morph.models.loader import load_model

    G = load_model(model)
    family = G.family
    facts = {
        "file": G.info.path,
        "format": G.info.format,
        "family": family,
        "sha256": G.info.sha256,
        "resolution": G.img_resolution,
        "img_channels": G.img_channels,
        "num_ws": G.num_ws,
        "w_dim": G.w_dim,
        "z_dim": G.z_dim,
        "c_dim": G.c_dim,
        **G.architecture_facts(),
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
        elif key == "layers":
            value = " ".join(value)
        typer.echo(f"{key:<{width}}  {value}")


@app.command()
def convert(source: str = typer.Argument(..., help="any checkpoint morph reads"),
            dest: Path = typer.Argument(..., help="output .safetensors file (morph's own format)"),
            to: str = typer.Option("morph", "--to", help="morph (safetensors) | rosinality (.pt for pSp, e4e, "
                                                         "ReStyle, GANSpace, StyleCLIP)")) -> None:
    """Convert a checkpoint to morph's own format (safetensors weights, architecture in the metadata), or with
    --to rosinality to a stylegan2-pytorch checkpoint (g_ema, latent_avg)."""
    from morph.checkpoints import write_native
    from morph.models.loader import load_model

    if to not in ("morph", "rosinality"):
        raise MorphError(f"unknown format {to!r}", "--to", "use morph or rosinality")
    G = load_model(source)
    if to == "rosinality":
        return _convert_rosinality(G, source, dest)
    write_native(dest, G.init_kwargs, G.state_dict(),
                 {"converted_from": Path(source).name, "source_format": G.info.format, "source_sha256": G.info.sha256},
                 family=G.family)
    typer.echo(f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB) from {G.info.format} {source}")


@app.command()
def check(scene: Path = typer.Argument(..., help="scene file (.yaml)")) -> None:
    """Validate a scene and print its plan (renders' frames, durations, sizes; where each latent comes from)."""
    from morph.projection import projection_status
    from morph.scene import describe, load_scene

    sc = load_scene(scene)
    typer.echo("\n".join(describe(sc, lambda photo: projection_status(photo, sc.model_path))))


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
           workers: Optional[int] = typer.Option(None, "--workers", min=1, help="render segments on a local cluster of N "
                                                                          "worker processes"),
           cluster_transfer: bool = typer.Option(False, "--cluster-transfer", help="workers send segments back "
                                                 "instead of writing the cache (no shared filesystem)"),
           shard: Optional[str] = typer.Option(None, "--shard", help="K/N: render shard K of N of the missing "
                                                                      "segments into the cache and exit (array jobs)"),
           ) -> None:
    """Render scenes' videos and GIFs into OUT; unchanged segments come from the cache. Several scenes in one
    call share one cluster (--workers, --cluster)."""
    import torch

    from morph.engine.cluster import check_address, parse_shard
    from morph.core.devices import resolve_device, resolve_precision
    from morph.engine.scenes import RenderOptions, destination, render_scenes, select
    from morph.projection import projection_status
    from morph.core.cache import default_cache_dir
    from morph.scene import describe, load_scene

    if dry_run:
        loaded = {path: load_scene(path) for path in dict.fromkeys(scenes)}
        for path, names in select(loaded, only).items():
            sc = loaded[path]
            typer.echo("\n".join(describe(sc, lambda photo: projection_status(photo, sc.model_path))))
            typer.echo("\n".join(f"{n} -> {destination(out, sc.renders[n])}" for n in names))
        return
    if batch_size != "auto" and not (batch_size.isdigit() and 1 <= int(batch_size) <= MAX_BATCH):
        raise MorphError(f"not a batch size: {batch_size!r}", "--batch-size",
                         f"give a whole number from 1 to {MAX_BATCH}, or auto")
    if cluster is not None:
        check_address(cluster)
    if sum(x is not None for x in (cluster, workers, shard)) > 1:
        raise MorphError("--cluster, --workers and --shard exclude each other", "morph render",
                         "a shard job renders on its own machine; a cluster run splits the work itself")
    if cluster_transfer and cluster is None and workers is None:
        raise MorphError("--cluster-transfer applies only with --cluster or --workers", "--cluster-transfer")
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    options = RenderOptions(out=out, cache_dir=cache or default_cache_dir(), device=dev, device_name=device,
                            dtype=None if dtype == torch.float32 else dtype,
                            batch_size=int(batch_size) if batch_size.isdigit() else None, force=force,
                            wait=not no_wait, quiet=quiet)
    render_scenes(scenes, only, options, cluster, workers, parse_shard(shard) if shard is not None else None,
                  cluster_transfer)


@app.command()
def preview(scene: Path = typer.Argument(..., help="scene file (.yaml)"),
            out: Path = typer.Option(Path("outputs"), "--out", help="destination folder"),
            frames: int = typer.Option(8, "--frames", min=1, max=MAX_PREVIEW_FRAMES,
                                       help="evenly spaced frames per render, besides keyframes"),
            device: str = typer.Option("auto", help="auto | cpu | cuda[:N] | mps")) -> None:
    """Write a PNG contact sheet per render: its keyframes, then evenly spaced frames (seconds, not minutes)."""
    import numpy as np

    from morph.core.devices import resolve_device
    from morph.engine.scenes import open_scene
    from morph.core.files import atomic_path
    from morph.render.images import grid, write_png

    dev = resolve_device(device)
    loaded = open_scene(scene, dev)
    for name, tl in loaded.timelines.items():
        keys = list(tl.keyframes)
        spaced = np.linspace(0, tl.frames - 1, num=max(1, frames)).round().astype(int).tolist()
        row = max(len(keys), len(spaced))
        pick = keys + [keys[-1]] * (row - len(keys)) + spaced + [spaced[-1]] * (row - len(spaced))
        images = loaded.frames(name, pick, dev)
        blank = np.full_like(images[0], 255)
        images[len(keys):row] = blank  # pad the keyframe row with white
        images[row + len(spaced):] = blank
        dest = out / f"{name}-preview.png"
        sheet = grid(images, cols=row)
        following = [w for w in tl.waves if w.envelope is not None]
        if following:  # the gains each following wave reads from the sound, under the sheet
            from morph.render.plot import COLOURS, curve_panel

            sheet = np.concatenate([sheet, curve_panel([w.envelope.numpy() for w in following], sheet.shape[1],
                                                       marks=keys)])
        with atomic_path(dest) as tmp:
            write_png(tmp, sheet)
        typer.echo(f"{dest}: {len(keys)} keyframes (top), {len(spaced)} of {tl.frames} frames (bottom)"
                   + "".join(f"; curve {i + 1} (rgb{COLOURS[i % len(COLOURS)]}): {w.label}"
                             for i, w in enumerate(following)))


@app.command()
def cache(clear: bool = typer.Option(False, "--clear", help="delete cached segments (never those a running "
                                                             "render uses)"),
          older_than: Optional[float] = typer.Option(None, "--older-than", min=0, help="with --clear: only those "
                                                     "unused for this many days"),
          verify: bool = typer.Option(False, "--verify", help="check every cached segment and projection against "
                                                               "its record; remove the damaged ones"),
          folder: Optional[Path] = typer.Option(None, "--cache", help="cache folder [default: ~/.cache/morph]"),
          models: bool = typer.Option(False, "--models", help="the downloaded models instead of the segments")) -> None:
    """Show the segment cache (where, how many, how large), verify it, or clear it; with --models, the
    downloaded models."""
    from morph.core import cache as store
    from morph.core.cache import default_cache_dir

    root = folder or default_cache_dir()
    store.check_folder(root)
    if older_than is not None and not clear:
        raise MorphError("--older-than applies only with --clear", "--older-than")
    if models:
        return _cache_models(root, clear, older_than)
    if verify:
        checked, bad = store.verify(root)
        for path, why in bad:
            typer.echo(f"{path}: damaged ({why}); removed")
        typer.echo(f"{root}: {checked} cached files checked, {len(bad)} damaged and removed")
        return
    if clear:
        removed, kept, busy = store.clear(root, older_than)
        typer.echo(f"{root}: removed {removed} segments, {kept} left" +
                   (f" ({busy} in use by a running render)" if busy else ""))
        return
    files = store.entries(root)
    size = sum(p.stat().st_size for p in files)
    typer.echo(f"{root}: {len(files)} segments, {size / 1e6:.1f} MB")
    _cache_models(root, False, None, summary=True)


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

    from morph.core.devices import resolve_device
    from morph.directions import LATENTS_FILE, SCORES_FILE, Z_FILE, map_batches, save_array, seeds_z, w_images
    from morph.core.files import atomic_path
    from morph.core.progress import Progress
    from morph.models.loader import load_model
    from morph.render.images import write_png

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
            from morph.builtin import load_builtin_classifier
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
    from morph.directions import (condition, load_scores, read_direction, read_meta, save_array, spread, train_folders,
                             train_svm)
    from morph.motion.latents import read_w

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
    from morph.core.devices import resolve_device
    from morph.directions import map_batches, pca, save_array, seeds_z
    from morph.models.loader import load_model

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
                    steps: int = typer.Option(7, "--steps", min=2, max=MAX_STRIP_STEPS, help="images in the strip"),
                    truncation: float = typer.Option(1.0, "--truncation", help="psi for a seed"),
                    device: str = typer.Option("auto", help="auto | cpu | cuda[:N] | mps")) -> None:
    """A PNG strip of one face moved along a direction, from strength --from to --to."""
    import numpy as np

    from morph.core.devices import resolve_device
    from morph.directions import read_meta, sweep
    from morph.core.files import atomic_path
    from morph.motion.latents import load_w, seed_w
    from morph.core.progress import log
    from morph.core.model import Noise
    from morph.render.job import generate
    from morph.models.resolver import resolve_direction
    from morph.models.loader import load_model
    from morph.render.images import grid, write_png

    path = resolve_direction(direction)
    dev = resolve_device(device)
    G = load_model(model, dev)
    trained_on = read_meta(path).get("model_sha256")
    if trained_on and trained_on != G.info.sha256:
        log(f"warning: {path} was trained on another model (sha256 {trained_on[:12]}, this one {G.info.sha256[:12]})")
    d = load_w(path, G.num_ws, G.w_dim)
    w = seed_w(G, int(latent), truncation) if latent.lstrip("-").isdigit() else load_w(latent, G.num_ws, G.w_dim)
    strengths = np.linspace(low, high, steps)
    images = np.concatenate(list(generate(G, sweep(w, d, strengths), 8, Noise("const"), dev)))
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
            vgg: Optional[list[Path]] = typer.Option(None, "--vgg", help="LPIPS weights: NVIDIA's vgg16.pt (auto: "
                                                     "download it once), or vgg16-397923af.pth plus LPIPS's vgg.pth "
                                                     "(repeat --vgg)"),
            device: str = typer.Option("auto", help="auto | cpu | cuda[:N] | mps"),
            cache: Optional[Path] = typer.Option(None, "--cache", help="cache folder [default: ~/.cache/morph]"),
            quiet: bool = typer.Option(False, "--quiet", help="no progress, only errors")) -> None:
    """Find the W+ (or W) latent and noise that draw each photo: NAME.npy, NAME.noise.npz, NAME.png and
    NAME.json (PSNR; LPIPS with --vgg; identity for real photos; attributes on the built-in model) in OUT."""
    import numpy as np

    from morph.core.devices import resolve_device
    from morph.projection.encoder import encoder_for
    from morph.motion.latents import SPACES
    from morph.render.caption import describe
    from morph.projection import REFINE_STEPS, SCENE_STEPS, Settings, project_photos, synthesize, write_outputs
    from morph.projection.quality import figures
    from morph.models.resolver import is_builtin_file
    from morph.models.loader import load_model
    from morph.models.resolver import resolve_vgg

    if space not in SPACES:
        raise MorphError(f"unknown space {space!r}", "--space", "use w+ or w")
    stems: dict[str, Path] = {}
    for image in images:
        if not image.is_file():
            raise MorphError("no such file", image)
        if stems.setdefault(image.stem, image) != image:
            raise MorphError(f"{stems[image.stem]} and {image} would both write {image.stem}.*", "--out",
                             "rename one of them, or project them in separate runs with different --out")
    G = load_model(model, resolve_device(device), cache_dir=cache)
    enc = encoder_for(G, encoder)
    steps = steps if steps is not None else (REFINE_STEPS if enc is not None else SCENE_STEPS)
    if steps == 0 and enc is None:
        raise MorphError("--steps 0 keeps the encoder's guess, but there is no encoder", "--steps",
                         "give --encoder PATH (morph encoder train), or at least one step")
    settings = Settings(space=space, steps=steps, align=not no_align, face=face,
                        coarse=-1 if coarse is None else coarse)
    vgg_files = resolve_vgg(vgg or (), cache, quiet)
    results = project_photos(images, G, settings, vgg_files, cache, quiet=quiet, encoder=enc)
    recon = synthesize(G, results)
    rows = figures(np.stack([r.target for r in results]), recon, is_builtin_file(G.info.path), vgg_files,
                   real=not no_align)
    for image, p, rec, row in zip(images, results, recon, rows):
        row |= {"steps": steps, "space": space, "encoder": enc.path if enc is not None else None}
        written = write_outputs(G, image, p, rec, out, video, figures=row)
        if not quiet:
            typer.echo(f"{image}: {describe(row)} -> {', '.join(map(str, written))}")


def _cache_models(root: Path, clear: bool, older_than: Optional[float], summary: bool = False) -> None:
    """``morph cache --models``: list (or one summary line) or clear the downloads under ``root/models``."""
    from morph.models.download import cached_downloads, clear_downloads, models_dir

    if clear:
        removed, kept = clear_downloads(root, older_than)
        typer.echo(f"{models_dir(root)}: removed {removed} downloads, {kept} left")
        return
    found = cached_downloads(root)
    size = sum(path.stat().st_size for _, path, _ in found)
    if summary:
        if found:
            typer.echo(f"{models_dir(root)}: {len(found)} downloaded models, {size / 1e6:.1f} MB "
                       "(morph cache --models)")
        return
    typer.echo(f"{models_dir(root)}: {len(found)} downloaded models, {size / 1e6:.1f} MB")
    for url, path, digest in found:
        typer.echo(f"  {path.stat().st_size / 1e6:9.1f} MB  sha256 {digest or '?'}  {url}\n{'':14}-> {path}")


def _convert_rosinality(G, source: str, dest: Path) -> None:
    """``morph convert --to rosinality``: a stylegan2-pytorch checkpoint rosinality's Generator loads."""
    from morph.checkpoints.rosinality import rosinality_config, write_rosinality

    size, style_dim, n_mlp, cm = rosinality_config(G.init_kwargs, source)
    write_rosinality(dest, G.init_kwargs, G.state_dict())
    clamp = G.architecture_facts()["conv_clamp"]
    typer.echo(f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB) from {G.info.format} {source}: load it with "
               f"Generator({size}, {style_dim}, {n_mlp}, channel_multiplier={cm})"
               + (f"; rosinality's generator does not clamp (this one clamped at {clamp:g})" if clamp else ""))


@app.command()
def fetch(spec: Optional[str] = typer.Argument(None, help="a published network's name (morph fetch --list) or an "
                                                           "https:// URL"),
          list_names: bool = typer.Option(False, "--list", help="list the published networks and which are here"),
          sha256: Optional[str] = typer.Option(None, "--sha256", help="refuse the file unless it has this sha256"),
          cache: Optional[Path] = typer.Option(None, "--cache", help="cache folder [default: ~/.cache/morph]"),
          quiet: bool = typer.Option(False, "--quiet", help="no progress, only errors")) -> None:
    """Download a model once into the cache (resumable, sha256 recorded) and print where it is."""
    from morph.models.download import cached_path, download, recorded_sha256
    from morph.models.resolver import PUBLISHED, model_url

    if list_names:
        width = max(map(len, PUBLISHED))
        for name, url in PUBLISHED.items():
            here = cached_path(url, cache)
            state = f"sha256 {recorded_sha256(here) or '?'}" if here.is_file() else "not downloaded"
            typer.echo(f"{name:<{width}}  {url}  ({state})")
        return
    if spec is None:
        raise MorphError("give a published network's name or a URL, or --list", "morph fetch")
    url = model_url(spec)
    if url is None:
        raise MorphError(f"{spec!r} is neither an http(s) URL nor a published network", "morph fetch",
                         "morph fetch --list shows the names")
    path = download(url, cache, sha256, quiet)
    typer.echo(f"{path}  sha256 {recorded_sha256(path)}")


latents_app = typer.Typer(no_args_is_help=True, help="Latent files: export to the formats other tools read.")
app.add_typer(latents_app, name="latents")


@latents_app.command("export")
def latents_export(source: Path = typer.Argument(..., help="a latent: .npy/.npz, W [w_dim] / [1, w_dim] or "
                                                            "W+ [num_ws, w_dim]"),
                   dest: Path = typer.Argument(..., help="OUT.npz: NVIDIA's projected_w.npz (w [1, num_ws, w_dim]); "
                                                         "OUT.npy: a plain [num_ws, w_dim] array"),
                   model: Optional[str] = typer.Option(None, "--model", help="for a W latent: the model whose "
                                                                             "layer count it is repeated over"),
                   num_ws: Optional[int] = typer.Option(None, "--num-ws", min=1,
                                                        help="for a W latent: the layer count, without a model")
                   ) -> None:
    """Write a latent as NVIDIA's projected_w.npz (generate.py --projected_w) or as a plain [num_ws, w_dim] .npy."""
    from morph.motion.latents import export_w, read_w

    if dest.suffix not in (".npz", ".npy"):
        raise MorphError("the output must end in .npz (NVIDIA's projected_w) or .npy ([num_ws, w_dim])", dest)
    shape = read_w(source, mmap=True).shape
    if num_ws is None and model is not None:
        from morph.models.loader import load_model

        num_ws = load_model(model).num_ws
    if num_ws is None:
        if len(shape) == 3 and shape[0] == 1 or len(shape) == 2 and shape[0] > 1:
            num_ws = shape[-2]
        else:
            raise MorphError(f"a W latent of shape {list(shape)} has no layer count", source,
                             "give --model MODEL or --num-ws N to repeat it over the layers")
    w = export_w(source, dest, num_ws)
    typer.echo(f"wrote {dest}: {'w ' if dest.suffix == '.npz' else ''}{list(w.shape)}")


@app.command()
def studio(scene: Path = typer.Argument(..., help="scene file (.yaml)"),
           port: int = typer.Option(8765, "--port", help="port to listen on (0: any free one)"),
           host: str = typer.Option("127.0.0.1", "--host", help="address to listen on; another than loopback "
                                                             "only on purpose (the token is still required)"),
           device: str = typer.Option("auto", help="auto | cpu | cuda[:N] | mps"),
           out: Path = typer.Option(Path("outputs"), "--out", help="where the Render button writes"),
           cache: Optional[Path] = typer.Option(None, "--cache", help="cache folder [default: ~/.cache/morph]")) -> None:
    """Edit a scene in a local web page: scrub its renders, drag its strengths, save back into the YAML. Prints
    the page's URL (with its access token) and opens nothing."""
    try:
        from morph.studio.server import serve
    except ImportError as err:
        raise MorphError(f"morph studio needs {err.name}, which is not installed", "morph studio",
                         "pip install 'morph[studio]'") from None
    serve(scene, host, port, device, cache, out)




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
                  photos: Optional[Path] = typer.Option(None, "--photos", help="a folder of face crops like those "
                                                        "you will project: part of each batch, image loss only"),
                  photo_share: float = typer.Option(0.25, "--photo-share", min=0.0, max=0.9,
                                                    help="share of each batch taken from --photos"),
                  init: Optional[Path] = typer.Option(None, "--init", help="start from this encoder file "
                                                      "(fine-tune one trained on the samples alone)"),
                  resume: bool = typer.Option(False, "--resume", help="continue from OUT.train.pt"),
                  device: str = typer.Option("auto", help="auto | cpu | cuda[:N] | mps"),
                  quiet: bool = typer.Option(False, "--quiet", help="no progress, only errors")) -> None:
    """Train an encoder on the model's own samples (truncated and style-mixed) and, with --photos, on photos
    like yours; checkpointed and resumable."""
    from morph.core.devices import resolve_device
    from morph.projection.encoder_training import PhotoFolder, TrainConfig, train
    from morph.models.loader import load_model

    if out.suffix != ".safetensors":
        raise MorphError("the encoder is written in morph's safetensors format", out, "name it NAME.safetensors")
    if init is not None and not init.is_file():
        raise MorphError("no such file", init, "--init takes an encoder file (morph encoder train)")
    G = load_model(model, resolve_device(device))
    folder = PhotoFolder(photos, G.img_resolution) if photos is not None else None
    config = TrainConfig(steps=steps, batch=batch, lr=lr, image_weight=image_weight, seed=seed,
                         photo_share=photo_share if folder else 0.0)
    train(G, out, config, resume=resume, quiet=quiet, photos=folder, init=init)
    if not quiet:
        typer.echo(f"{out}: encoder for {G.info.path} (sha256 {G.info.sha256[:12]}…)")

def _usage_errors() -> tuple[type, ...]:
    """The usage-error class of the click typer runs on: its own copy (``typer._click``) in recent typer
    releases, the ``click`` package in older ones."""
    import importlib

    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).UsageError)
        except ImportError:
            continue
    return tuple(found)


def main() -> None:
    """Console entry point: a user error becomes one line per problem on stderr (``where: what``), exit code 2;
    a file-system error one line, exit code 4; SIGTERM exits 143 (see EXIT_CODES)."""
    keep_freed_memory()
    signal.signal(signal.SIGTERM, request_stop)
    try:
        code = app(standalone_mode=False)
    except _usage_errors() as err:  # a bad option: one line, as every other mistake
        command = err.ctx.command_path if err.ctx else "morph"
        if type(err).__name__ == "NoArgsIsHelpError":
            typer.echo(err.ctx.get_help())
        else:
            typer.echo(" ".join(f"{command}: {err.format_message()}; see {command} --help".split()), err=True)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):  # click turns Ctrl-C into Abort
        typer.echo("morph: interrupted; finished segments stay cached", err=True)
        sys.exit(130)
    except MorphError as err:
        typer.echo(str(err), err=True)
        sys.exit(err.exit_code)
    except OSError as err:  # the file system said no: one line, temp files already removed on the way out
        typer.echo(os_error_line(err), err=True)
        sys.exit(4)
    except Terminated:
        typer.echo("morph: terminated; finished segments stay cached", err=True)
        sys.exit(143)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
