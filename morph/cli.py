"""The ``morph`` command line: one typer app; each command parses its options, calls the library, prints.

One grammar: ``--out/-o`` is always a destination folder (a single output file is a positional argument),
and ``--model/-m``, ``--cache`` ($MORPH_CACHE), ``--device``, ``--batch-size``, ``--quiet/-q``, ``--progress``
(bar | lines | json) and ``--json`` (the result on stdout) mean the same in every command that has them.

Each command imports what it needs inside its function: ``morph --help``, a typo and shell completion answer
without importing torch and the networks.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from morph import __version__
from morph.core.errors import MorphError, os_error_line
from morph.core.limits import MAX_BATCH, MAX_IDENTITY_WEIGHT, MAX_PREVIEW_FRAMES, MAX_PROJECT_STEPS, MAX_STRIP_STEPS
from morph.core.progress import fatal
from morph.core.runtime import Terminated, keep_freed_memory, request_stop

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})  # its help: _main's docstring

EXIT_CODES = ("Exit codes: 0 done, 1 internal error, 2 bad input (scene, model file or option), "
              "3 output locked by another run (--no-wait, --wait-timeout), 4 file-system error (permissions, full "
              "disk, a file where a folder belongs), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).")


# --- the options every command spells the same way ------------------------------------------------------------

# shared by every command that has them (typer reads an OptionInfo without changing it)
def out_option(default: str = "outputs") -> Any:
    return typer.Option(Path(default), "--out", "-o", help="destination folder")


CACHE = typer.Option(None, "--cache", envvar="MORPH_CACHE", show_envvar=True,
                     show_default="$XDG_CACHE_HOME/morph, else ~/.cache/morph", help="cache folder")
MODEL = typer.Option("builtin", "--model", "-m", help="builtin, a published name (morph fetch --list), an https URL "
                                                      "or a checkpoint file")
DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda[:N] | mps")
QUIET = typer.Option(False, "--quiet", "-q", help="no progress, only warnings and errors")
PROGRESS = typer.Option("auto", "--progress", help="auto (a bar on a terminal, lines elsewhere) | bar | lines | "
                                                   "json (JSON lines on stderr, for programs)")
JSON = typer.Option(False, "--json", help="print the result as one JSON object on stdout")


def _feedback(quiet: bool = False, progress: str = "auto") -> None:
    """Progress bars / log lines / JSON lines on stderr, as the options say."""
    from morph.core.progress import configure

    configure("quiet" if quiet else progress)


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"morph {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                       help="print morph's version and exit")) -> None:
    """Render StyleGAN2 and StyleGAN3 latent space into videos and looping GIFs."""


@app.command()
def info(model: str = typer.Argument(..., help="checkpoint file: NVIDIA .pkl (PyTorch or TF), rosinality .pt, "
                                                "a pSp / e4e checkpoint, or morph .safetensors"),
         as_json: bool = JSON) -> None:
    """Describe a generator checkpoint: format, resolution, layers, dimensions, parameter count, file hash (and, for
    a pSp / e4e checkpoint, its encoder)."""
    from morph.engine.checkpoints import model_facts

    facts = model_facts(model)
    if as_json:
        return _print_json(facts)
    width = max(map(len, facts))
    for key, value in facts.items():
        if key == "parameters":
            value = f"{value:,}"
        elif key == "channels":
            value = " ".join(f"{r}:{c}" for r, c in value.items())
        elif key == "layers":
            value = " ".join(value)
        elif key == "encoder":
            value = "\n".join([value[0].split(": ", 1)[1], *(f"{'':<{width}}  {line.strip()}" for line in value[1:])])
        typer.echo(f"{key:<{width}}  {value}")


@app.command()
def convert(source: str = typer.Argument(..., help="any checkpoint morph reads"),
            dest: Path = typer.Argument(..., help="output .safetensors file (morph's own format)"),
            to: str = typer.Option("morph", "--to", help="morph (safetensors) | rosinality (.pt for pSp, e4e, "
                                                         "ReStyle, GANSpace, StyleCLIP)")) -> None:
    """Convert a checkpoint to morph's own format (safetensors weights, architecture in the metadata), or with
    --to rosinality to a stylegan2-pytorch checkpoint (g_ema, latent_avg)."""
    from morph.engine.checkpoints import convert_checkpoint

    typer.echo(convert_checkpoint(source, dest, to))


@app.command()
def check(scene: Path = typer.Argument(..., help="scene file (.yaml)"),
          out: Path = out_option(),
          cache: Optional[Path] = CACHE,
          as_json: bool = JSON,
          quiet: bool = QUIET) -> None:
    """Validate a scene and print its plan (renders' frames, durations, sizes, outputs; where each latent
    comes from). A sound is analysed once (said as it starts) and cached."""
    from morph.api import check as plan

    _feedback(quiet)
    result = plan(scene, cache, out)
    if as_json:
        _print_json(result)
    else:
        typer.echo("\n".join(result["plan"]))


@app.command(epilog=EXIT_CODES)
def render(scenes: list[Path] = typer.Argument(..., help="scene files (.yaml)"),
           only: Optional[list[str]] = typer.Option(None, "--only", help="render only this one (repeatable)"),
           out: Path = out_option(),
           device: str = DEVICE,
           precision: str = typer.Option("auto", "--precision", help="auto | fp32 | fp16 | bf16 (half precisions "
                                         "on a GPU only; auto: fp32, or on CUDA the half precision that keeps the "
                                         "model's frames within tolerance of fp32)"),
           compile: bool = typer.Option(False, "--compile", help="compile the synthesis with torch.compile (minutes "
                                                                  "at start, then faster where it pays)"),
           batch_size: str = typer.Option("auto", "--batch-size", help="frames per batch, or auto"),
           encoders: Optional[int] = typer.Option(None, "--encoders", min=1, max=64, help="ffmpeg processes at once",
                                                  show_default="1 on the CPU, half the cores on a GPU"),
           force: bool = typer.Option(False, "--force", "-f", help="re-render even what the cache holds"),
           dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and the output paths only"),
           no_wait: bool = typer.Option(False, "--no-wait", help="exit 3 at once if another run writes the same "
                                                                 "output"),
           wait_timeout: Optional[float] = typer.Option(None, "--wait-timeout", min=0, show_default="no limit",
                                                        help="seconds to queue behind another run writing the same "
                                                             "output before exiting 3"),
           cache: Optional[Path] = CACHE,
           cluster: Optional[str] = typer.Option(None, "--cluster", help="render segments on the Dask cluster whose "
                                                                          "scheduler is here, e.g. tcp://host:8786"),
           workers: Optional[int] = typer.Option(None, "--workers", min=1, help="render segments on a local cluster "
                                                                                "of N worker processes"),
           cluster_transfer: bool = typer.Option(False, "--cluster-transfer", help="no shared filesystem: workers "
                                                 "send segments back, and get a model that lies in the cache"),
           shard: Optional[str] = typer.Option(None, "--shard", help="K/N: render shard K of N of the missing "
                                                                      "segments into the cache and exit (array jobs)"),
           as_json: bool = JSON,
           quiet: bool = QUIET,
           progress: str = PROGRESS) -> None:
    """Render scenes' videos and GIFs into OUT; unchanged segments come from the cache. Several scenes in one
    call share one cluster (--workers, --cluster). With --json: each output's path, status (written or up to
    date), frames rendered, segments from the cache and seconds."""
    from morph.api import check as plan
    from morph.api import render_results
    from morph.engine.scenes import select

    _feedback(quiet, progress)
    if dry_run:
        plans = [plan(path, cache, out) for path in dict.fromkeys(scenes)]
        select({Path(p["scene"]): [r["name"] for r in p["renders"]] for p in plans}, only)
        if as_json:
            return _print_json({"scenes": plans})
        for p in plans:
            typer.echo("\n".join(p["plan"] + [f"{r['name']} -> {r['output']}" for r in p["renders"]
                                              if not only or r["name"] in only]))
        return
    if batch_size != "auto" and not batch_size.isdigit():
        raise MorphError(f"not a batch size: {batch_size!r}", "--batch-size",
                         f"give a whole number from 1 to {MAX_BATCH}, or auto")
    results = render_results(scenes, out, only=only, device=device, precision=precision,
                             batch_size=int(batch_size) if batch_size.isdigit() else None, force=force, cache=cache,
                             wait=not no_wait, wait_timeout=wait_timeout, quiet=quiet, cluster=cluster,
                             workers=workers, shard=shard, transfer=cluster_transfer, encoders=encoders,
                             compile=compile)
    if as_json:
        _print_json({"renders": [r.summary() for r in results],
                     "frames_rendered": sum(r.stats.generated for r in results),
                     "segments_from_cache": sum(r.stats.reused for r in results),
                     "seconds": round(sum(r.seconds for r in results), 3)})


@app.command()
def preview(scene: Path = typer.Argument(..., help="scene file (.yaml)"),
            out: Path = out_option(),
            frames: int = typer.Option(8, "--frames", min=1, max=MAX_PREVIEW_FRAMES,
                                       help="evenly spaced frames per render, besides keyframes"),
            device: str = DEVICE,
            cache: Optional[Path] = CACHE,
            quiet: bool = QUIET,
            progress: str = PROGRESS) -> None:
    """Write a PNG contact sheet per render: its keyframes, then evenly spaced frames (seconds, not minutes)."""
    from morph.core.devices import resolve_device
    from morph.engine.scenes import open_scene
    from morph.engine.stills import write_previews

    _feedback(quiet, progress)
    dev = resolve_device(device)
    for dest, description in write_previews(open_scene(scene, dev, cache, quiet), out, frames, dev):
        typer.echo(f"{dest}: {description}")


@app.command()
def cache(clear: bool = typer.Option(False, "--clear", help="delete cached segments (never those a running "
                                                             "render uses)"),
          older_than: Optional[float] = typer.Option(None, "--older-than", min=0, help="with --clear: only those "
                                                     "unused for this many days"),
          verify: bool = typer.Option(False, "--verify", help="check every cached segment and projection against "
                                                               "its record; remove the damaged ones"),
          folder: Optional[Path] = CACHE,
          models: bool = typer.Option(False, "--models", help="the downloaded models instead of the segments"),
          as_json: bool = JSON) -> None:
    """Show the segment cache (where, how many, how large), verify it, or clear it; with --models, the
    downloaded models."""
    from morph.core.cache import default_cache_dir
    from morph.engine.caches import cache_report

    report, lines = cache_report(folder or default_cache_dir(), clear, older_than, verify, models)
    _print_json(report) if as_json else typer.echo("\n".join(lines))


@app.command("sample")
def sample_cmd(model: str = MODEL,
               n: int = typer.Option(..., "--n", "-n", min=1, help="how many samples"),
               out: Path = out_option("outputs/samples"),
               truncation: float = typer.Option(1.0, "--truncation", help="psi"),
               seed: int = typer.Option(0, "--seed", help="sample i is seed SEED+i (as in NVIDIA's generate.py)"),
               classifier: Optional[str] = typer.Option(None, "--classifier", help="builtin: score every image "
                                                                                   "with the built-in classifier"),
               images: bool = typer.Option(True, "--images/--no-images", help="write 000000.png, 000001.png, ..."),
               device: str = DEVICE,
               batch_size: int = typer.Option(32, "--batch-size", min=1, help="images per batch"),
               quiet: bool = QUIET,
               progress: str = PROGRESS) -> None:
    """Sample latents to label: latents.npy (W, [N, w_dim]) and z.npy, images named by index to sort by hand
    into folders, and with --classifier builtin the attribute scores (scores.npz)."""
    from morph.core.devices import resolve_device
    from morph.directions import LATENTS_FILE, SCORES_FILE, Z_FILE
    from morph.engine.stills import sample

    _feedback(quiet, progress)
    done = sample(model, n, out, truncation, seed, classifier, images, resolve_device(device), batch_size)
    typer.echo(f"{out}: {n} latents ({LATENTS_FILE}, {Z_FILE})" + (f", {done.images} images" if done.images else "")
               + (f", scores of {', '.join(done.scored)} ({SCORES_FILE})" if done.scored else ""))


directions_app = typer.Typer(no_args_is_help=True, help="Find latent directions (SVM on labels, PCA), show them.")
app.add_typer(directions_app, name="directions")


@directions_app.command("train")
def directions_train(latents: Path = typer.Option(..., "--latents", help="latents.npy from morph sample "
                                                                          "([N, w_dim] or [N, num_ws, w_dim])"),
                     scores: Optional[str] = typer.Option(None, "--scores", help="ATTR from scores.npz beside the "
                                                                                 "latents, or a .npy of N scores"),
                     positive: Optional[Path] = typer.Option(None, "--positive", help="folder of images with the "
                                                                                      "attribute"),
                     negative: Optional[Path] = typer.Option(None, "--negative", help="folder of images without it"),
                     space: str = typer.Option("w", "--space", help="w | w+"),
                     ratio: float = typer.Option(0.02, "--ratio", help="with --scores: top and bottom fraction kept "
                                                                        "(a count if > 1)"),
                     split: float = typer.Option(0.7, "--split", help="training fraction; the rest validates"),
                     conditions: Optional[list[Path]] = typer.Option(None, "--condition", help="keep this direction's "
                                                                     "attribute unchanged (repeatable)"),
                     out: Path = out_option("outputs/directions"),
                     seed: int = typer.Option(0, "--seed", help="shuffle of the train/validation split")) -> None:
    """Train a direction with a linear SVM: from latents + scores (InterFaceGAN's recipe) or from two folders
    of hand-sorted samples. Prints the validation accuracy; writes OUT/ATTR.npy and its .json metadata."""
    from morph.directions import train_direction

    attribute, fit, dest = train_direction(latents, out, scores, positive, negative, space, ratio, split,
                                           conditions or (), seed)
    typer.echo(f"{attribute}: validation accuracy {fit.accuracy:.1%} on {fit.validation} held-out of "
               f"{fit.positives} + {fit.negatives} samples ({space}); wrote {dest}")


@directions_app.command("pca")
def directions_pca(model: str = MODEL,
                   n: int = typer.Option(100000, "--n", "-n", min=2, help="mapped samples"),
                   k: int = typer.Option(10, "--k", min=1, help="components to keep"),
                   out: Path = out_option("outputs/directions"),
                   truncation: float = typer.Option(1.0, "--truncation", help="psi"),
                   seed: int = typer.Option(0, "--seed", help="first seed of the samples"),
                   device: str = DEVICE) -> None:
    """GANSpace-style principal directions of W (incremental PCA of mapped samples), saved as OUT/pc0.npy, ..."""
    from morph.core.devices import resolve_device
    from morph.core.progress import log
    from morph.directions import map_batches, pca, save_array, seeds_z
    from morph.models.loader import load_model

    _feedback()
    G = load_model(model, resolve_device(device))
    if k > G.w_dim:
        raise MorphError(f"{k} components asked of a {G.w_dim}-dimensional W", "--k")
    log(f"pca: mapping {n} samples and fitting {k} components")
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
                    model: str = MODEL,
                    out: Path = out_option(),
                    low: float = typer.Option(-3.0, "--from", help="first strength"),
                    high: float = typer.Option(3.0, "--to", help="last strength"),
                    steps: int = typer.Option(7, "--steps", min=2, max=MAX_STRIP_STEPS, help="images in the strip"),
                    truncation: float = typer.Option(1.0, "--truncation", help="psi for a seed"),
                    device: str = DEVICE) -> None:
    """OUT/NAME-strip.png: one face moved along a direction, from strength --from to --to (builtin:NAME
    writes builtin-NAME-strip.png, so it never overwrites a file direction's strip)."""
    import numpy as np

    from morph.core.devices import resolve_device
    from morph.engine.stills import direction_strip

    _feedback()
    strengths = np.linspace(low, high, steps)
    dest = direction_strip(direction, latent, model, out, strengths, truncation, resolve_device(device))
    typer.echo(f"{dest}: {direction} at strengths {', '.join(f'{s:g}' for s in strengths)}")


@app.command()
def project(images: list[Path] = typer.Argument(..., help="photos (PNG, JPEG, WebP, ...)"),
            model: Optional[str] = typer.Option(None, "--model", "-m", help="builtin, a published name (morph fetch "
                                                "--list), an https URL or a checkpoint file",
                                                show_default="the generator stored in a pSp / e4e --encoder "
                                                "checkpoint, else builtin"),
            space: str = typer.Option("w+", "--space", help="w+ (one w per layer) | w"),
            steps: Optional[int] = typer.Option(None, "--steps", min=0, max=MAX_PROJECT_STEPS,
                                                show_default="100 with an encoder, 1000 without",
                                                help="optimisation steps after the encoder's guess (0: the guess "
                                                "alone)"),
            encoder: str = typer.Option("auto", "--encoder", help="PATH (morph's encoder file, or a published pSp / "
                                        "e4e checkpoint) | auto (the built-in model's own, or "
                                        "NAME.encoder.safetensors beside the checkpoint) | none (start at w_avg)"),
            coarse: Optional[int] = typer.Option(None, "--coarse", min=0, show_default="256 for models above 256 px",
                                                 help="refine the first half of the steps on the image at this "
                                                      "resolution (0: never)"),
            out: Path = out_option("outputs/projected"),
            video: bool = typer.Option(False, "--video", help="also write NAME.mp4 of the optimisation"),
            align: Optional[bool] = typer.Option(None, "--align/--no-align", show_default="align unless square at "
                                                 "the model's resolution, as a scene does",
                                                 help="align each face like FFHQ first (dlib, morph-gan[align])"),
            face: Optional[int] = typer.Option(None, "--face", min=1, show_default="the largest",
                                               help="which face, counted from the left"),
            vgg: Optional[list[Path]] = typer.Option(None, "--vgg", help="LPIPS weights: NVIDIA's vgg16.pt (auto: "
                                                     "download it once), or vgg16-397923af.pth plus LPIPS's vgg.pth "
                                                     "(repeat --vgg)"),
            identity: Optional[Path] = typer.Option(None, "--identity", show_default="dlib's descriptors",
                                                    help="ArcFace IR-SE50 weights (model_ir_se50.pth): identity "
                                                    "measured as pSp measures it"),
            identity_weight: float = typer.Option(0.0, "--identity-weight", min=0, max=MAX_IDENTITY_WEIGHT,
                                                  help="W·(1 − --identity similarity) joins the refinement; 0: off"),
            tune: bool = typer.Option(False, "--tune", help="pivotal tuning: then tune one generator so every photo's "
                                      "latent draws it (cached); writes OUT/tuned.safetensors"),
            tune_steps: int = typer.Option(600, "--tune-steps", min=1, help="steps of --tune"),
            device: str = DEVICE,
            cache: Optional[Path] = CACHE,
            as_json: bool = JSON,
            quiet: bool = QUIET,
            progress: str = PROGRESS) -> None:
    """Find the W+ (or W) latent and noise that draw each photo: NAME.npy, NAME.noise.npz, NAME.png and
    NAME.json (PSNR; LPIPS with --vgg; identity for real photos; attributes on the built-in model) in OUT."""
    from morph.core.devices import resolve_device
    from morph.engine.checkpoints import model_of_encoder
    from morph.engine.photos import project_files
    from morph.render.caption import describe

    _feedback(quiet, progress)
    done = project_files(images, model or model_of_encoder(encoder), out, space, steps, encoder, coarse, video, align, face,
                         vgg or (), resolve_device(device), cache, quiet, identity=identity,
                         tune_steps=tune_steps if tune else 0, identity_weight=identity_weight)
    if as_json:
        return _print_json({"photos": [{"photo": str(p.photo), "figures": p.figures, "files": p.files} for p in done]})
    for p in done if not quiet else ():
        typer.echo(f"{p.photo}: {describe(p.figures)} -> {', '.join(map(str, p.files))}")


@app.command()
def compare(a: Path = typer.Argument(..., help="a photo"), b: Path = typer.Argument(..., help="another photo"),
            identity: Optional[Path] = typer.Option(None, "--identity", help="ArcFace IR-SE50 weights "
                                                    "(model_ir_se50.pth), as pSp's identity loss measures; "
                                                    "default: dlib's descriptors"),
            vgg: Optional[list[Path]] = typer.Option(None, "--vgg", help="LPIPS weights, as morph project takes them "
                                                     "(auto: NVIDIA's vgg16.pt, downloaded once)"),
            no_align: bool = typer.Option(False, "--no-align", help="the photos are aligned faces already"),
            as_json: bool = JSON,
            cache: Optional[Path] = CACHE) -> None:
    """PSNR, LPIPS and identity similarity of two face photos, both FFHQ-aligned to 256×256, one line each."""
    from morph.models.resolver import resolve_vgg
    from morph.projection.compare import compare as compare_photos
    from morph.projection.compare import lines

    for path in (a, b, *([identity] if identity else [])):
        if not path.is_file():
            raise MorphError("no such file", path)
    row = compare_photos(a, b, identity, resolve_vgg(vgg or (), cache, as_json), align=not no_align)
    if as_json:
        return _print_json(row)
    for line in lines(row):
        typer.echo(line)


@app.command()
def fetch(spec: Optional[str] = typer.Argument(None, help="a published network's name (morph fetch --list) or an "
                                                           "https:// URL"),
          list_names: bool = typer.Option(False, "--list", help="list the published networks and which are here"),
          sha256: Optional[str] = typer.Option(None, "--sha256", help="refuse the file unless it has this sha256"),
          cache: Optional[Path] = CACHE,
          as_json: bool = JSON,
          quiet: bool = QUIET,
          progress: str = PROGRESS) -> None:
    """Download a model once into the cache (resumable, sha256 recorded) and print where it is."""
    from morph.engine.caches import published
    from morph.models.download import download, recorded_sha256
    from morph.models.resolver import model_url

    _feedback(quiet, progress)
    if list_names:
        rows = published(cache)
        if as_json:
            return _print_json({"networks": rows})
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            state = f"sha256 {r['sha256'] or '?'}" if r["path"] else "not downloaded"
            typer.echo(f"{r['name']:<{width}}  {r['url']}  ({state})")
        return
    if spec is None:
        raise MorphError("give a published network's name or a URL, or --list", "morph fetch")
    url = model_url(spec)
    if url is None:
        raise MorphError(f"{spec!r} is neither an http(s) URL nor a published network", "morph fetch",
                         "morph fetch --list shows the names")
    path = download(url, cache, sha256, quiet)
    if as_json:
        return _print_json({"url": url, "path": str(path), "sha256": recorded_sha256(path)})
    typer.echo(f"{path}  sha256 {recorded_sha256(path)}")


latents_app = typer.Typer(no_args_is_help=True, help="Latent files: export to the formats other tools read.")
app.add_typer(latents_app, name="latents")


@latents_app.command("export")
def latents_export(source: Path = typer.Argument(..., help="a latent: .npy/.npz, W [w_dim] / [1, w_dim] or "
                                                            "W+ [num_ws, w_dim]"),
                   dest: Path = typer.Argument(..., help="OUT.npz: NVIDIA's projected_w.npz (w [1, num_ws, w_dim]); "
                                                         "OUT.npy: a plain [num_ws, w_dim] array"),
                   model: Optional[str] = typer.Option(None, "--model", "-m", help="builtin, a published name, an "
                                                       "https URL or a checkpoint file: for a W latent, the model "
                                                       "whose layer count it is repeated over"),
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
           port: int = typer.Option(8765, "--port", min=0, max=65535, help="port to listen on (0: any free one)"),
           host: str = typer.Option("127.0.0.1", "--host", help="address to listen on; another than loopback "
                                                             "only on purpose (the token is still required)"),
           device: str = DEVICE,
           out: Path = out_option(),
           cache: Optional[Path] = CACHE) -> None:
    """Edit a scene in a local web page: scrub its renders, drag its strengths, save back into the YAML; its
    Render button writes into OUT. Prints the page's URL (with its access token) and opens nothing."""
    try:
        from morph.studio.server import serve
    except ImportError as err:
        raise MorphError(f"morph studio needs {err.name}, which is not installed", "morph studio",
                         "pip install 'morph-gan[studio]'") from None
    serve(scene, host, port, device, cache, out)


encoder_app = typer.Typer(no_args_is_help=True, help="Image → W+ encoders: projection's first guess.")
app.add_typer(encoder_app, name="encoder")


@encoder_app.command("train")
def encoder_train(dest: Path = typer.Argument(..., help="the encoder file to write (.safetensors); "
                                              "NAME.encoder.safetensors beside the checkpoint is found by "
                                              "--encoder auto"),
                  model: str = MODEL,
                  steps: int = typer.Option(3000, "--steps", min=1, help="training steps"),
                  batch_size: int = typer.Option(32, "--batch-size", min=1, help="generator samples per step"),
                  lr: float = typer.Option(2e-3, "--lr", help="Adam learning rate (cosine decay)"),
                  image_weight: float = typer.Option(1.0, "--image-weight", min=0.0,
                                                     help="weight of the image loss through the generator"),
                  seed: int = typer.Option(0, "--seed", help="seed of the samples and the initial weights"),
                  photos: Optional[Path] = typer.Option(None, "--photos", help="a folder of face crops like those "
                                                        "you will project: part of each batch, image loss only"),
                  photo_share: float = typer.Option(0.25, "--photo-share", min=0.0, max=0.9,
                                                    help="share of each batch taken from --photos"),
                  init: Optional[Path] = typer.Option(None, "--init", help="start from this encoder file "
                                                      "(fine-tune one trained on the samples alone)"),
                  resume: bool = typer.Option(False, "--resume", help="continue from DEST.train.pt"),
                  device: str = DEVICE,
                  quiet: bool = QUIET,
                  progress: str = PROGRESS) -> None:
    """Train an encoder on the model's own samples (truncated and style-mixed) and, with --photos, on photos
    like yours; checkpointed and resumable."""
    from morph.core.devices import resolve_device
    from morph.models.loader import load_model
    from morph.projection.encoder_training import PhotoFolder, TrainConfig, train

    _feedback(quiet, progress)
    if dest.suffix != ".safetensors":
        raise MorphError("the encoder is written in morph's safetensors format", dest, "name it NAME.safetensors")
    if init is not None and not init.is_file():
        raise MorphError("no such file", init, "--init takes an encoder file (morph encoder train)")
    G = load_model(model, resolve_device(device))
    folder = PhotoFolder(photos, G.img_resolution) if photos is not None else None
    config = TrainConfig(steps=steps, batch=batch_size, lr=lr, image_weight=image_weight, seed=seed,
                         photo_share=photo_share if folder else 0.0)
    train(G, dest, config, resume=resume, quiet=quiet, photos=folder, init=init)
    if not quiet:
        typer.echo(f"{dest}: encoder for {G.info.path} (sha256 {G.info.sha256[:12]}…)")


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
            fatal(" ".join(f"{command}: {err.format_message()}; see {command} --help".split()))
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):  # click turns Ctrl-C into Abort
        fatal("morph: interrupted; finished segments stay cached")
        sys.exit(130)
    except MorphError as err:
        fatal(str(err))
        sys.exit(err.exit_code)
    except OSError as err:  # the file system said no: one line, temp files already removed on the way out
        fatal(os_error_line(err))
        sys.exit(4)
    except Terminated:
        fatal("morph: terminated; finished segments stay cached")
        sys.exit(143)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
