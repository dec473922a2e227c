"""Scenes → renders → files: the one engine behind ``morph render``, ``preview``, the cluster path and the studio.

It loads the model a scene names (once per command: the scene reader takes the model's dimensions from
:class:`LoadedModels`, the render draws with the same generator), projects its photos, resolves each latent
once, turns each render into a :class:`RenderJob` (every input of its cache keys, decided here), then renders
the missing segments in this process, on a Dask cluster or as one shard of an array job, and joins each
output. ``--force`` means one
thing, decided in :func:`render_scene`: every segment is rendered again (replaced atomically, never
deleted first) and every output is forgotten, so all is rendered and joined afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

import numpy as np
import torch

from morph.core.cache import check_folder, default_cache_dir, lease, sweep
from morph.core.devices import auto_precision
from morph.core.errors import MorphError
from morph.core.files import file_sha256
from morph.core.model import Model, Noise
from morph.core.progress import Progress, log
from morph.engine.cluster import WorkerModel, connect, distinct_segments, missing, render_distributed, shard
from morph.models.loader import load_model
from morph.motion.latents import ModelDims, Project
from morph.motion.schedule import Timeline, camera_poses, sample
from morph.projection import Projection, ScenePhotos, project_scene, projection_status
from morph.projection.scene import photo_lines, photo_plan, scene_model, scene_photos, tune_settings
from morph.render.encode import EncodeSettings, is_frame_file
from morph.render.job import (
    RenderJob,
    RenderPlan,
    RenderStats,
    Work,
    forget_output,
    generate,
    is_up_to_date,
    join,
    output_lock,
    render_segments,
)
from morph.scene import Render, Scene, load_scene, parse_scene, plan_lines, resolve_latents, timelines


@dataclass(frozen=True)
class RenderOptions:
    """How to render, whatever the scene: ``morph render``'s options, resolved once."""

    out: Path = Path("outputs")                 # destination folder
    cache_dir: Path = field(default_factory=default_cache_dir)
    device: torch.device = torch.device("cpu")
    device_name: str = "cpu"                    # as the user gave it (workers resolve their own)
    dtype: Optional[torch.dtype] = None         # None: float32; fp16/bf16 on a GPU
    auto_precision: bool = False                # CUDA's --precision auto: dtype decided per model at start
    compile: bool = False                       # synthesis through torch.compile (devices.Compiled)
    batch_size: Optional[int] = None            # None: auto
    encoders: Optional[int] = None              # ffmpeg processes encoding segments at once; None: auto
    force: bool = False                         # re-render what the cache holds, re-join every output
    wait: bool = True                           # queue behind another run writing the same output
    wait_timeout: Optional[float] = None        # seconds to queue at most (None: as long as it takes)
    quiet: bool = False


@dataclass(frozen=True)
class SceneText:
    """A scene given as YAML text rather than a file (the Python API's string or dict): ``file`` is the file it
    stands for, in whose folder its relative paths are resolved and by whose name its errors are reported."""

    file: Path
    text: str


SceneSource = Union[Path, SceneText]


def scene_path(source: SceneSource) -> Path:
    """The path a scene is known by (its file, or the file a text stands for)."""
    return source.file if isinstance(source, SceneText) else Path(source)


@dataclass(frozen=True)
class RenderResult:
    """What one render did, for the caller (``morph render --json``, ``morph.render``)."""

    scene: Path
    name: str
    path: Path
    stats: RenderStats
    seconds: float

    def summary(self) -> dict:
        s = self.stats
        return {"scene": str(self.scene), "render": self.name, "path": str(self.path),
                "status": "up to date" if s.up_to_date else "written", "frames": s.frames,
                "frames_rendered": s.generated, "segments": s.segments, "segments_from_cache": s.reused,
                "seconds": round(self.seconds, 3)}


def destination(out: Path, render: Render) -> Path:
    """Where a render goes: ``OUT/NAME.FORMAT``, or the folder ``OUT/NAME`` for png."""
    return out / (render.name if render.format == "png" else f"{render.name}.{render.format}")


@dataclass
class LoadedModels:
    """The models a command's scenes name, each loaded (and hashed) once on ``device`` and kept for the
    command: the scene reader reads their dimensions here (:meth:`dims`), the renders draw with them."""

    device: torch.device = torch.device("cpu")
    loaded: dict[Path, Model] = field(default_factory=dict)

    def get(self, path: Path) -> Model:
        """The generator in model file ``path``, loaded on first use."""
        key = Path(path).resolve()
        if key not in self.loaded:
            self.loaded[key] = load_model(path, self.device)
        return self.loaded[key]

    def dims(self, path: Path) -> ModelDims:
        """Dimensions of the model in ``path``: what ``load_scene`` validates a scene against."""
        return ModelDims.of(self.get(path))

    def scene(self, source: SceneSource, cache_dir: Optional[Path] = None) -> Scene:
        """Scene ``source`` (a file or a :class:`SceneText`) validated against its model, which stays loaded
        here, and its ``tune:`` against pivotal tuning's settings."""
        if isinstance(source, SceneText):
            sc = parse_scene(source.text, source.file, self.dims, cache_dir)
        else:
            sc = load_scene(source, self.dims, cache_dir)
        tune_settings(sc)
        return sc


@dataclass
class LoadedScene:
    """A scene with its model loaded, photos projected and latents resolved (once each): the timelines and
    render jobs it draws."""

    path: Path
    scene: Scene
    G: Model
    photos: ScenePhotos
    ws: dict[str, torch.Tensor]          # latent name → W [num_ws, w_dim]
    directions: dict[str, torch.Tensor]  # direction name → W offset [num_ws, w_dim]
    timelines: dict[str, Timeline]
    digest: Optional[str] = None    # SHA-256 of the scene's text; None: of the file at ``path``
    _auto: Optional[tuple[Optional[torch.dtype]]] = field(default=None, repr=False)  # auto_precision's choice

    def dtype(self, options: RenderOptions) -> Optional[torch.dtype]:
        """The compute dtype of this scene's renders: the one asked for, or with ``--precision auto`` on CUDA
        the one :func:`auto_precision` finds fit for this model (checked once, said in one line)."""
        if not options.auto_precision:
            return options.dtype
        if self._auto is None:
            dtype, why = auto_precision(self.G, options.device)
            self._auto = (dtype,)
            if not options.quiet:
                log(f"{self.path.name}: --precision auto chose {why}")
        return self._auto[0]

    def noise(self, name: str) -> Noise:
        """What render ``name`` draws with: the scene's noise mode, a projected photo's maps if it has them."""
        return self.photos.noise(name, self.scene.noise)

    def job(self, name: str, options: RenderOptions) -> RenderJob:
        """Render ``name`` as a job: every input of its cache keys, from this one place."""
        r, G = self.scene.renders[name], self.G
        digest = self.digest or file_sha256(self.path)
        metadata = {"comment": f"morph scene {self.path.name} sha256:{digest[:16]} "
                               f"model sha256:{G.info.sha256[:16]}"}
        return RenderJob(name=name, dest=destination(options.out, r), sample=partial(sample, self.timelines[name]),
                         frames=r.frames, settings=EncodeSettings(format=r.format, fps=r.fps, size=r.size,
                                                                  canvas=r.canvas, encoding=r.encoding),
                         noise=self.noise(name), model_key=self.photos.model_key(G, name),
                         resolution=G.img_resolution, dtype=self.dtype(options), audio=r.audio, metadata=metadata,
                         camera=partial(camera_poses, self.timelines[name]) if r.motion.camera else None,
                         compiled=options.compile)

    def frames(self, name: str, indices: Sequence[int], device: torch.device, batch_size: int = 8) -> np.ndarray:
        """Frames ``indices`` of render ``name`` at the model's resolution, exactly as a render draws them (a
        canvas at the model's scale: widened by the network, or the square padded or cropped)."""
        t = torch.as_tensor(list(indices))
        tl = self.timelines[name]
        canvas, res = self.scene.renders[name].canvas, self.G.img_resolution
        images = np.concatenate(list(generate(self.G, sample(tl, t), batch_size, self.noise(name), device,
                                              camera=camera_poses(tl, t), canvas=canvas and canvas.drawn(res))))
        return canvas.frame(images, res) if canvas else images


def open_scene(path: SceneSource, device: torch.device, cache_dir: Optional[Path] = None, quiet: bool = False,
               scene: Optional[Scene] = None, models: Optional[LoadedModels] = None,
               projections: Optional[dict[Project, Projection]] = None) -> LoadedScene:
    """Scene ``path`` (a file or a :class:`SceneText`; or the already validated ``scene``) ready to draw on
    ``device``: its model loaded once (or taken from ``models``), its photos projected (those already in the
    ``projections`` memo reused, new ones added to it), the model tuned for them with ``tune:`` (cached), each
    latent resolved once and every render's timeline built."""
    models = models or LoadedModels(device)
    sc = scene or models.scene(path, cache_dir)
    G = models.get(sc.model_path)
    memo = {} if projections is None else projections
    specs = scene_photos(sc)
    if not set(specs) <= memo.keys():
        memo.update(project_scene(sc, G, cache_dir, quiet).projections)
    photos = ScenePhotos(sc, {spec: memo[spec] for spec in specs})
    G = scene_model(sc, G, photos, cache_dir, quiet)
    ws, directions = resolve_latents(sc, G, photos.latent)
    digest = hashlib.sha256(path.text.encode()).hexdigest() if isinstance(path, SceneText) else None
    return LoadedScene(scene_path(path), sc, G, photos, ws, directions, timelines(sc, G, ws, directions, cache_dir),
                       digest)


def scene_plan(scene: Scene, models: LoadedModels, cache_dir: Optional[Path] = None) -> tuple[list[str], Optional[dict]]:
    """What ``morph check`` says of a validated scene: the lines of its plan, with whether each photo's projection
    and the tuned generator are in the cache (asked of the model already loaded in ``models``), and
    :func:`photo_plan`'s dict of how the photos are projected and tuned (None without photos)."""
    G = models.get(scene.model_path)
    photos = photo_plan(scene, G, cache_dir)
    lines = plan_lines(scene, lambda photo: projection_status(photo, G, scene.photos, cache_dir))
    return lines[:1] + photo_lines(photos) + lines[1:], photos


def select(renders: dict[Path, Sequence[str]], only: Optional[Iterable[str]]) -> dict[Path, list[str]]:
    """The renders of each scene (``renders``: scene → its render names) to run: all, or those named by
    ``--only``; two scenes may not write one file."""
    only = list(only or ())
    known = {name for names in renders.values() for name in names}
    unknown = [n for n in only if n not in known]
    if unknown:
        raise MorphError(f"no render named {', '.join(unknown)}", "--only", f"the scenes have {', '.join(sorted(known))}")
    selected = {path: [n for n in names if not only or n in only] for path, names in renders.items()}
    owners: dict[str, Path] = {}
    for path, names in selected.items():
        for n in names:
            if n in owners:
                raise MorphError(f"{owners[n]} and {path} both have a render named {n!r}, which would write the same "
                                 "file", "morph render", "rename one, or render them with different --out folders")
            owners[n] = path
    return selected


@dataclass(frozen=True)
class Distribution:
    """Where the missing segments are rendered: a Dask cluster (``client()`` connects on first need), or one
    shard K/N of an array job (rendered here, not joined)."""

    client: Optional[Callable] = None
    shard: Optional[tuple[int, int]] = None
    transfer: bool = False


def render_scene(loaded: LoadedScene, names: Sequence[str], options: RenderOptions,
                 where: Distribution = Distribution()) -> dict[str, RenderStats]:
    """Render ``names`` of a loaded scene into ``options.out``: the missing segments locally, on the cluster
    or as a shard, then (except for a shard) join each output. Returns each render's figures.

    The segments the scene uses are leased for the whole run, so ``morph cache --clear`` in another process
    leaves them alone; ``--force`` renders them again in place (atomically) and forgets the outputs.
    """
    plans = [loaded.job(n, options).plan(options.cache_dir) for n in names]
    for plan in plans:
        check_destination(plan.job.dest, plan.job.settings.format)
    if options.force:
        for plan in plans:
            forget_output(options.cache_dir, plan.job.dest)
    with lease(options.cache_dir, (s.path.name for p in plans for s in p.segments)):
        if where.client is not None or where.shard is not None:
            _render_elsewhere(loaded, plans, options, where)
            if where.shard is not None:
                return {}
        return {plan.job.name: _render_and_join(loaded.G, plan, options, where.client is None)
                for plan in plans}


def _render_elsewhere(loaded: LoadedScene, plans: Sequence[RenderPlan], options: RenderOptions,
                      where: Distribution) -> None:
    """The plans' segments into the cache, on the cluster or (one shard of them) in this process."""
    work = distinct_segments(p for p in plans if options.force or
                             not is_up_to_date(options.cache_dir, p.job.dest, p.key))
    if where.shard is not None:
        work = shard(work, *where.shard)
    todo = work if options.force else missing(work)
    start = time.monotonic()
    label = f"shard {where.shard[0]}/{where.shard[1]}" if where.shard else "cluster"
    progress = Progress(label, sum(w.frames for w in todo), quiet=options.quiet)
    if where.shard is not None:
        try:
            frames = render_segments(loaded.G, todo, options.device, options.batch_size, progress, options.encoders)
        finally:
            progress.close()
        place = "in this process"
    else:
        model = WorkerModel(str(Path(loaded.G.info.path).resolve()), loaded.G.info.sha256, options.device_name,
                            options.batch_size)
        frames = render_distributed(where.client, todo, model, options.cache_dir, progress, where.transfer)
        count = len(where.client().nthreads()) if todo else 0
        place = f"on {count} worker{'s' * (count != 1)}" if todo else "on the cluster"
    if not options.quiet:
        log(f"{label} ({loaded.path.name}): {len(todo)} segments into the cache ({frames} rendered {place}) in "
            f"{time.monotonic() - start:.1f} s" + ("; a plain morph render joins them" if where.shard else ""))


def _render_and_join(G: Model, plan: RenderPlan, options: RenderOptions, local: bool) -> RenderStats:
    """One output: up to date, or its missing segments rendered here and the whole joined (under its lock).
    With ``--force`` a local render renders every segment again (a cluster run has just done so)."""
    job, start = plan.job, time.monotonic()
    with output_lock(job.dest, wait=options.wait, timeout=options.wait_timeout):
        if is_up_to_date(options.cache_dir, job.dest, plan.key):
            stats = RenderStats(frames=job.frames, segments=len(plan.segments), reused=len(plan.segments),
                                up_to_date=True)
        else:
            todo = plan.segments if options.force and local else plan.missing()
            progress = Progress(job.name, sum(s.stop - s.start for s in todo), quiet=options.quiet)
            try:
                generated = render_segments(G, [Work(s, job) for s in todo], options.device, options.batch_size,
                                            progress, options.encoders)
            finally:
                progress.close()
            join(plan, options.cache_dir)
            stats = RenderStats(frames=job.frames, generated=generated, segments=len(plan.segments),
                                reused=len(plan.segments) - len(todo))
    if not options.quiet:
        if stats.up_to_date:
            log(f"{job.name}: {job.dest} is up to date (0 frames rendered)")
        else:
            log(f"{job.name}: {job.dest} written, {stats.frames} frames ({stats.generated} rendered, "
                f"{stats.reused}/{stats.segments} segments from the cache) in {time.monotonic() - start:.1f} s")
    return stats


def check_destination(dest: Path, fmt: str) -> None:
    """MorphError in one line, before any frame is rendered, when the output cannot go where it should: the
    destination folder is a file, or the destination is a folder for a video (a file for png frames), or a
    png destination holds files morph did not write."""
    folder = dest.parent
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise MorphError("is a file, not a folder", parent, "give --out a folder")
            break
    if fmt == "png":
        if dest.exists() and not dest.is_dir():
            raise MorphError("is a file; png frames go into a folder of this name", dest,
                             "move the file away or rename the render")
        if dest.is_dir() and any(not is_frame_file(p) for p in dest.iterdir()):
            raise MorphError("holds files morph did not write, and a png render replaces the whole folder",
                             dest, "move them away, render into another --out, or rename the render")
    elif dest.is_dir():
        raise MorphError(f"is a folder; the {fmt} render writes a file of this name", dest,
                         "move the folder away or rename the render")


def render_scenes(paths: Sequence[SceneSource], only: Optional[Iterable[str]], options: RenderOptions,
                  cluster: Optional[str] = None, workers: Optional[int] = None,
                  shard: Optional[tuple[int, int]] = None, transfer: bool = False) -> list[RenderResult]:
    """``morph render``: validate every scene first (all problems before any work), then render each in turn;
    several scenes share one cluster, connected (or started) only when a segment needs it. Returns what each
    render did (nothing for a shard, which joins no output)."""
    check_folder(options.cache_dir)
    models = LoadedModels(options.device)
    sources = {scene_path(p): p for p in paths}
    scenes = {path: models.scene(source, options.cache_dir) for path, source in sources.items()}
    selected = select({path: list(sc.renders) for path, sc in scenes.items()}, only)
    for path, names in selected.items():  # before any model is loaded or photo projected
        for name in names:
            render = scenes[path].renders[name]
            check_destination(destination(options.out, render), render.format)
    swept = sweep(options.cache_dir, [options.out])
    if swept and not options.quiet:
        log(f"removed {swept} temp files that stopped renders left behind")
    with contextlib.ExitStack() as stack:
        clients: list = []

        def client():
            if not clients:
                clients.append(stack.enter_context(connect(cluster, workers)))
            return clients[0]

        where = Distribution(client if cluster is not None or workers is not None else None, shard, transfer)
        results = []
        for path, sc in scenes.items():
            start = time.monotonic()
            loaded = open_scene(sources[path], options.device, options.cache_dir, options.quiet, scene=sc,
                                models=models)
            for name, stats in render_scene(loaded, selected[path], options, where).items():
                results.append(RenderResult(path, name, destination(options.out, sc.renders[name]), stats,
                                            time.monotonic() - start))
                start = time.monotonic()
        return results


__all__ = ["Distribution", "LoadedModels", "LoadedScene", "RenderOptions", "RenderResult", "SceneText", "destination",
           "open_scene", "render_scene", "render_scenes", "scene_path", "scene_plan", "select"]
