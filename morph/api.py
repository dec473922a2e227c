"""morph from Python: a notebook, a Colab cell, a script. The same work as the ``morph`` command, one call each.

>>> import morph
>>> paths = morph.render({"model": "builtin", "latents": {"a": {"seed": 1}, "b": {"seed": 2}},
...                       "renders": {"ab": {"path": ["a", "b"], "duration": 2, "size": 128}}}, out="outputs")

A scene is a path to a YAML file, a YAML string or a dict; relative paths in a file are resolved against its
folder (as ``morph render`` does), those in a string or a dict against the current folder. Mistakes raise
:class:`morph.MorphError`, whose ``str`` is the one line the command would print. Progress is a live
display in Jupyter and on a terminal, log lines elsewhere (the ``morph`` logger of the standard
``logging`` module: configure it to silence or redirect them).

Each call imports the engine inside its function, so ``import morph`` stays quick and loads no torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from morph.core.errors import MorphError

if TYPE_CHECKING:
    import numpy as np

    from morph.core.model import Model
    from morph.engine.photos import Projected

SceneLike = Union[str, os.PathLike, dict]


def _source(scene: SceneLike):
    """A scene file's path, or a :class:`morph.engine.scenes.SceneText` for a YAML string or a dict."""
    from morph.engine.scenes import SceneText

    if isinstance(scene, dict):
        import yaml

        return SceneText(Path.cwd() / "<scene>", yaml.safe_dump(scene, sort_keys=False))
    if isinstance(scene, str) and "\n" in scene:
        return SceneText(Path.cwd() / "<scene>", scene)
    if isinstance(scene, (str, os.PathLike)):
        return Path(scene).expanduser()
    raise MorphError(f"a scene is a path, a YAML string or a dict, not {type(scene).__name__}", "morph.render")


def _start(quiet: bool = False) -> None:
    """Progress and log lines as the caller's environment wants them, unless the application routes the
    ``morph`` logger itself."""
    from morph.core.progress import configure

    configure("quiet" if quiet else "auto", only_if_unset=True)


def _news(scene: SceneLike, doing: str) -> None:
    """The first line of a call, before torch and the model load (seconds on a cold start), for a person
    watching (a terminal's bar, a notebook) or a program reading ``--progress json``; in plain log lines it is
    left out, so a mistake stays the one line that says it."""
    from morph.core import progress
    from morph.core.progress import log

    if progress.mode() == "lines":
        return
    named = isinstance(scene, os.PathLike) or isinstance(scene, str) and "\n" not in scene
    log(f"{os.fspath(scene) if named else '<scene>'}: {doing} (the scene, its model, photos and sounds)")


def _device(device: str):
    from morph.core.devices import resolve_device

    return resolve_device(device)


def check(scene: SceneLike, cache: Optional[Path] = None, out: Path = Path("outputs")) -> dict[str, Any]:
    """Validate a scene and return its plan: ``{"scene", "model", "renders": [{"name", "format", "width",
    "height", "fps", "frames", "seconds", "output", "audio", "encoding"}], "photos": {"photos", "encoder",
    "identity", "tune", "tuned"} or None, "plan": [the lines morph check prints]}`` (``encoding``: a video's codec, pixel
    format and quality, ``h264 yuv420p crf 18 veryfast``; None for gif, png; ``photos``: how the scene's photos are
    projected and tuned)."""
    _start()
    _news(scene, "checking")
    from morph.core.cache import default_cache_dir
    from morph.engine.scenes import LoadedModels, destination, scene_path, scene_plan
    from morph.render.encode import CODECS

    source = _source(scene)
    models = LoadedModels()
    cache_dir = Path(cache) if cache else default_cache_dir()
    sc = models.scene(source, cache_dir)
    lines, photos = scene_plan(sc, models, cache_dir)
    renders = []
    for name, r in sc.renders.items():
        width, height = (r.canvas.width, r.canvas.height) if r.canvas else (r.size, r.size)
        renders.append({"name": name, "format": r.format, "width": width, "height": height, "fps": r.fps,
                        "frames": r.frames, "seconds": round(r.seconds, 3), "output": str(destination(Path(out), r)),
                        "audio": str(r.audio) if r.audio else None,
                        "encoding": r.encoding.describe(r.format) if r.format in CODECS else None})
    return {"scene": str(scene_path(source)), "model": sc.model,
            "model_path": str(sc.model_path) if sc.model_path else None, "renders": renders,
            "photos": photos, "plan": lines}


def render(scene: SceneLike, out: Union[str, os.PathLike] = "outputs", *, only: Optional[Sequence[str]] = None,
           device: str = "auto", precision: str = "auto", batch_size: Optional[int] = None, force: bool = False,
           cache: Optional[Union[str, os.PathLike]] = None, wait_timeout: Optional[float] = None,
           quiet: bool = False, show: bool = True) -> list[Path]:
    """Render a scene's videos and GIFs into the folder ``out`` (unchanged segments come from the cache) and
    return the paths of its outputs, written or already up to date. In a notebook (``show``) the first
    output is displayed under the cell."""
    results = render_results(scene, out, only=only, device=device, precision=precision, batch_size=batch_size,
                             force=force, cache=cache, wait_timeout=wait_timeout, quiet=quiet)
    paths = [r.path for r in results]
    if show and paths:
        _display(paths[0])
    return paths


def render_results(scene: SceneLike | Sequence[SceneLike], out: Union[str, os.PathLike] = "outputs", *,
                   only: Optional[Sequence[str]] = None, device: str = "auto", precision: str = "auto",
                   batch_size: Optional[int] = None, force: bool = False,
                   cache: Optional[Union[str, os.PathLike]] = None, wait: bool = True,
                   wait_timeout: Optional[float] = None, quiet: bool = False, cluster: Optional[str] = None,
                   workers: Optional[int] = None, shard: Optional[str] = None, transfer: bool = False,
                   encoders: Optional[int] = None, compile: bool = False):
    """:func:`render` with every option ``morph render`` has, returning each render's
    :class:`morph.engine.scenes.RenderResult` (path, frames rendered, segments from the cache, seconds).
    ``shard`` is ``"K/N"``: render shard K of N of the missing segments into the cache, join nothing;
    ``encoders``: ffmpeg processes at once (None: 1 on the CPU, half the cores on a GPU); ``compile``: the
    synthesis through ``torch.compile`` (minutes to compile, then faster where it pays: see docs/speed.md)."""
    import torch

    from morph.core.cache import default_cache_dir
    from morph.core.devices import resolve_precision
    from morph.core.limits import MAX_BATCH
    from morph.engine.cluster import check_address, parse_shard
    from morph.engine.scenes import RenderOptions, render_scenes

    _start(quiet)
    for one in scene if isinstance(scene, (list, tuple)) else [scene]:
        _news(one, "reading")
    if batch_size is not None and not 1 <= batch_size <= MAX_BATCH:
        raise MorphError(f"not a batch size: {batch_size!r}", "--batch-size",
                         f"give a whole number from 1 to {MAX_BATCH}, or auto")
    if cluster is not None:
        check_address(cluster)
    if sum(x is not None for x in (cluster, workers, shard)) > 1:
        raise MorphError("--cluster, --workers and --shard exclude each other", "morph render",
                         "a shard job renders on its own machine; a cluster run splits the work itself")
    if compile and (cluster is not None or workers is not None):
        raise MorphError("--compile applies to a render in this process (or a --shard)", "--compile",
                         "leave it out with --cluster or --workers")
    if transfer and cluster is None and workers is None:
        raise MorphError("--cluster-transfer applies only with --cluster or --workers", "--cluster-transfer")
    if not wait and wait_timeout is not None:
        raise MorphError("--no-wait and --wait-timeout exclude each other", "--wait-timeout")
    scenes = scene if isinstance(scene, (list, tuple)) else [scene]
    dev = _device(device)
    dtype = resolve_precision(precision, dev)
    options = RenderOptions(out=Path(out), cache_dir=Path(cache) if cache else default_cache_dir(), device=dev,
                            device_name=device, dtype=None if dtype == torch.float32 else dtype,
                            auto_precision=dtype is None, compile=compile,
                            batch_size=batch_size, force=force, wait=wait, wait_timeout=wait_timeout, quiet=quiet,
                            encoders=encoders)
    return render_scenes([_source(s) for s in scenes], only, options, cluster, workers,
                         parse_shard(shard) if shard is not None else None, transfer)


def frames(scene: SceneLike, render: str, frames: Sequence[int], device: str = "auto",
           cache: Optional[Union[str, os.PathLike]] = None) -> "np.ndarray":
    """Frames ``frames`` (indices) of render ``render`` as uint8 [N, height, width, 3] at the render's output
    size, drawn as ``morph render`` draws them (photos projected first if the cache lacks them)."""
    from morph.engine.scenes import open_scene
    from morph.engine.stills import frames_at_size

    _start()
    dev = _device(device)
    loaded = open_scene(_source(scene), dev, Path(cache) if cache else None)
    return frames_at_size(loaded, render, list(frames), dev)


def load_model(model: Union[str, os.PathLike] = "builtin", device: str = "auto",
               cache: Optional[Union[str, os.PathLike]] = None) -> "Model":
    """A generator from ``builtin``, a published network's name (``morph fetch --list``), an https URL
    (downloaded once into the cache) or a checkpoint file of any format morph reads; nothing in it is run.
    It has NVIDIA's API (``G.mapping``, ``G.synthesis``) and morph's ``G.synthesize``."""
    from morph.models.loader import load_model as load

    _start()
    return load(model, _device(device), cache_dir=Path(cache) if cache else None)


def project(photos: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]], model: str = "builtin",
            out: Union[str, os.PathLike] = "outputs/projected", *, steps: Optional[int] = None, space: str = "w+",
            encoder: str = "auto", align: Optional[bool] = None, device: str = "auto",
            cache: Optional[Union[str, os.PathLike]] = None, quiet: bool = False) -> list["Projected"]:
    """Find the latent that draws each photo: NAME.npy (use it in a scene as ``{file: NAME.npy}``),
    NAME.noise.npz, NAME.png (photo beside reconstruction) and NAME.json in ``out``. Returns each photo's
    figures and files. ``align`` None: photos square at the model's resolution count as aligned faces."""
    from morph.engine.photos import project_files

    _start(quiet)
    paths = [photos] if isinstance(photos, (str, os.PathLike)) else list(photos)
    return project_files([Path(p) for p in paths], model, Path(out), space, steps, encoder, align=align,
                         device=_device(device), cache_dir=Path(cache) if cache else None, quiet=quiet)


def _display(path: Path) -> None:
    """Show an output under the notebook cell that rendered it; nothing outside a Jupyter kernel."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return
    from IPython.display import Image, Video, display

    if path.suffix == ".gif":
        display(Image(filename=str(path)))
    elif path.suffix in (".mp4", ".webm"):
        display(Video(str(path), embed=True, html_attributes="controls loop autoplay muted"))


__all__ = ["MorphError", "check", "frames", "load_model", "project", "render", "render_results"]
