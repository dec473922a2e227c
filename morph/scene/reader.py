"""Scene YAML → a validated :class:`Scene`: every problem of the file reported at once, each as
``file:line:col: key.path: what``.

The reader is one class, :class:`SceneReader`, built from one part per room of the scene language, each a
subclass of :class:`morph.scene.nodes.NodeReader` (YAML nodes → values, problems, names referred to):

- ``sources``: latents (one ``source_NAME`` method per latent source) and directions;
- ``renders``: a render's format, fps, size and sound track, on top of
- ``motion``: its path or around, waves and pushes, itself built on ``music`` (what follows the sound) and
  ``camera`` (poses, orbit, swing);
- ``canvas``: a frame other than a square.

This module reads the top of the file (model, noise, truncation, audio; the photos' ``encoder:``,
``identity:`` and ``tune:`` are read by ``sources``) and checks names and cycles once every part has been read.
A scene whose ``encoder:`` is a pSp / e4e checkpoint and which names no ``model:`` draws with the generator stored
in it, as ``morph project`` does.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable, Optional, Union

import yaml
from yaml.nodes import MappingNode, Node

from morph.checkpoints.psp import is_encoder_checkpoint
from morph.core.errors import MorphError
from morph.core.limits import MAX_RENDER_NAME, MAX_SCENE_BYTES
from morph.core.model import NOISE_MODES
from morph.models.loader import load_model
from morph.models.resolver import BUILTIN, resolve_model
from morph.motion.latents import ModelDims, Project
from morph.scene.nodes import Items, did_you_mean
from morph.scene.renders import RenderReader
from morph.scene.sources import SourceReader
from morph.scene.types import DEFAULTS, TOP_KEYS, Scene, SceneError

_RENDER_NAME = re.compile(r"^[\w.-]+$")


class SceneReader(RenderReader, SourceReader):
    """The whole scene language: every part's words on one set of problems and names."""


def model_dims(path: Path) -> ModelDims:
    """Dimensions of the model in ``path`` (loads it)."""
    return ModelDims.of(load_model(path))


def _order(deps: dict[str, tuple[str, ...]]) -> tuple[list[str], list[list[str]]]:
    """Dependency order of the names (dependencies first), and the cycles found."""
    order: list[str] = []
    cycles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "open":
            cycles.append(trail[trail.index(name):] + [name])
        if state.get(name):
            return
        state[name] = "open"
        for dep in deps[name]:
            visit(dep, trail + [name])
        state[name] = "done"
        order.append(name)

    for name in deps:
        visit(name, [])
    return order, cycles


def _model_dims(r: SceneReader, top: Items, root: Node, dims: Callable[[Path], ModelDims],
                cache_dir: Optional[Path], default: str) -> Optional[Path]:
    """Resolve the scene's model (``default`` when it names none; a URL is downloaded into ``cache_dir``, checked
    against ``sha256:``) and read its dimensions into ``r``; the model's path, or None after reporting."""
    node = top["model"][1] if "model" in top else root
    model = r.text(node, "model", "a model file or builtin") if "model" in top else default
    if model is None:
        return None
    try:
        path = resolve_model(model, r.base, r.option(top, "sha256", "", r.text, "a sha256 digest"), cache_dir)
        if not path.is_file():
            raise MorphError(f"{model}: no such file" + (f" ({path})" if str(path) != model else ""))
        r.dims = dims(path)
        return path
    except MorphError as err:
        r.fail(node, "model", str(err))
        return None


def parse_scene(text: str, file: str | Path, dims: Union[ModelDims, Callable[[Path], ModelDims]] = model_dims,
                cache_dir: Optional[Path] = None) -> Scene:
    """Validate scene ``text`` read from ``file`` (relative paths in it are resolved against its folder).

    ``dims`` are the model's dimensions, or a function reading them from the model file the scene
    names (the default loads the model; a model URL is downloaded into ``cache_dir``). Raises
    :class:`SceneError` listing every problem.
    """
    file = str(file)
    if "\x00" in text:
        at = text.index("\x00")
        line = text.count("\n", 0, at)
        raise SceneError([f"{file}:{line + 1}:{at - (text.rfind(chr(10), 0, at) + 1) + 1}: a NUL byte; a scene is "
                          "a text file (is this the right file?)"])
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise SceneError([f"{file}:1:1: nested too deeply to read; a scene needs only a few levels"]) from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position)
        raise SceneError([f"{file}:{line + 1}:{e.position - (text.rfind(chr(10), 0, e.position) + 1) + 1}: "
                          f"character {e.character!r} is not allowed in YAML"]) from None
    except yaml.MarkedYAMLError as e:
        mark, start = e.problem_mark or e.context_mark, e.context_mark
        extra = f" ({e.context}" + (f" at {start.line + 1}:{start.column + 1}" if start and start is not mark else "") \
            + ")" if e.context and e.problem else ""
        raise SceneError([f"{file}:{mark.line + 1}:{mark.column + 1}: {e.problem or e.context}{extra}"]) from None
    if root is None:
        raise SceneError([f"{file}:1:1: the scene is empty; it needs latents: and renders:"])
    r = SceneReader(file, Path(file).parent, dims if isinstance(dims, ModelDims) else None, cache_dir)
    top = r.mapping(root, "", TOP_KEYS)
    if top is None:
        raise SceneError([p for *_, p in r.problems])
    for key in ("latents", "renders"):
        if key not in top:
            r.fail(root, key, "missing; a scene needs latents: and renders:")
    photos = r.photos(top)
    stored = photos.encoder not in ("auto", "none") and is_encoder_checkpoint(photos.encoder)
    model = r.value(top["model"][1]) if "model" in top else photos.encoder if stored else BUILTIN
    model_path = None if isinstance(dims, ModelDims) else _model_dims(r, top, root, dims, cache_dir, model)
    noise = r.option(top, "noise", "", r.choice, NOISE_MODES, default="const")
    audio = r.option(top, "audio", "", r.audio)
    r.audio_failed = "audio" in top and audio is None  # said in its own line: no "has no sound" per follow:
    psi = r.option(top, "truncation", "", r.number, default=DEFAULTS["truncation"])
    cutoff = r.option(top, "truncation_cutoff", "", r.number, "a layer count from 1 to the number of layers",
                      lambda x: 1 <= x <= (r.dims.num_ws if r.dims else math.inf), True)

    def section(key: str) -> Items:
        return r.option(top, key, "", r.mapping, default={}) or {}

    declared = section("directions")
    for name, (_, node) in declared.items():
        r.direction(name, node, f"directions.{name}")
    latent_nodes = section("latents")
    r.psi, r.cutoff = psi or 1.0, cutoff
    latents = {name: r.latent(node, f"latents.{name}") for name, (_, node) in latent_nodes.items()}
    render_nodes = section("renders")
    if "renders" in top and isinstance(top["renders"][1], MappingNode) and not render_nodes:
        r.fail(top["renders"][1], "renders", "no renders; add at least one")
    renders = {}
    for name, (key_node, node) in render_nodes.items():
        if not _RENDER_NAME.match(name):
            r.fail(key_node, "renders", f"render name {name[:40]!r} is used as a file name: use letters, digits, _ . - only")
        elif name.startswith(".") or len(name) > MAX_RENDER_NAME:
            r.fail(key_node, "renders", f"render name {name[:40]!r} is used as a file name: it may not start with a dot "
                                        f"and has at most {MAX_RENDER_NAME} characters")
        renders[name] = r.render(node, f"renders.{name}", audio)

    for name, node, path in r.latent_refs:
        if name not in latent_nodes:
            r.fail(node, path, f"no latent named {name!r}{did_you_mean(name, latent_nodes)}")
    for name, node, path in r.direction_refs:
        if name.startswith("builtin:") and name not in r.directions:
            r.direction(name, node, path)
        elif name not in declared and not name.startswith("builtin:"):
            r.fail(node, path, f"no direction named {name!r}" +
                   (did_you_mean(name, declared) or "; declare it under directions:"))
    if photos.tune is not None and not any(latent and isinstance(latent.source, Project) for latent in latents.values()):
        r.fail(top["tune"][1], "tune", "tunes the generator to the scene's photos, but it has none: add "
                                       "{project: PHOTO} latents, or remove tune:")
    deps = {name: tuple(d for d in latent.needs() if d in latent_nodes) if latent else ()
            for name, latent in latents.items()}
    order, cycles = _order(deps)
    for names in cycles:
        r.fail(latent_nodes[names[0]][0], f"latents.{names[0]}", f"cycle: {' → '.join(names)}")

    if r.problems or r.dims is None:
        raise SceneError([p for *_, p in sorted(set(r.problems))])
    return Scene(Path(file), str(model), model_path, r.dims, noise, r.directions,
                 {name: latents[name] for name in order}, renders, photos)


def read_scene_text(path: str | Path) -> str:
    """A scene file's text, as ``morph check`` and the studio read it: at most ``MAX_SCENE_BYTES`` (``/dev/zero``
    included), UTF-8; one MorphError line otherwise."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_SCENE_BYTES + 1)
        if len(data) > MAX_SCENE_BYTES:
            raise MorphError(f"larger than {MAX_SCENE_BYTES >> 20} MiB; a scene is a short text file", path,
                             "is this the right file?")
        return data.decode("utf-8")
    except IsADirectoryError:
        raise MorphError("is a folder, not a scene file", where=path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise MorphError(f"cannot read the scene ({getattr(e, 'strerror', None) or e})", where=path) from None


def load_scene(path: str | Path, dims: Union[ModelDims, Callable[[Path], ModelDims]] = model_dims,
               cache_dir: Optional[Path] = None) -> Scene:
    """Read and validate a scene file (see :func:`parse_scene`)."""
    return parse_scene(read_scene_text(path), path, dims, cache_dir)

