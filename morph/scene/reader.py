"""Scene YAML → a validated :class:`Scene`: every problem of the file reported at once, each as
``file:line:col: key.path: what``.

A latent source is one ``source_NAME`` method of :class:`_Reader` (registered with ``@source``), one
dataclass in ``morph.motion.latents`` and one case in ``morph.motion.latents.resolve``.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from morph.render.encode import VIDEO_FORMATS, audio_problem
from morph.core.errors import MorphError
from morph.render.images import read_image
from morph.core.limits import (MAX_AMPLITUDE, MAX_FPS, MAX_FRAMES, MAX_RENDER_NAME, MAX_ROTATE, MAX_SCENE_BYTES, MAX_SECONDS,
                      MAX_PROJECT_STEPS, MAX_SIZE, MAX_STRENGTH, MAX_TRANSLATE, MIN_FPS, MIN_SIZE)
from morph.motion.latents import SPACES, Blend, File, From, Latent, Mean, Mix, ModelDims, Project, Seed, read_w, w_shape_problem
from morph.core.model import LAYER_GROUPS, NOISE_MODES
from morph.models.resolver import BUILTIN, resolve_direction, resolve_model
from morph.motion.schedule import (EASINGS, INTERPS, Breathe, Camera, Cue, Cycle, Deform, Motion, Orbit, Path as KeyPath, Pose,
                        Swing, cycle)
from morph.scene.canvas import read_canvas
from morph.scene.music import MusicReader
from morph.scene.types import (BREATHE_KEYS, CAMERA_FAMILIES, CAMERA_KEYS, DEFAULT_FPS, DEFAULTS, DEFORM_KEYS, IMAGE_MAGIC,
                    ORBIT_KEYS, POSE_KEYS, RENDER_KEYS, STEP_KEYS, SWING_KEYS, TOP_KEYS, TRANSITION_KEYS, Render, Scene,
                    SceneError, range_text, runs)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|f)\s*$")
_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")
_RENDER_NAME = re.compile(r"^[\w.-]+$")


# source key → the keys only latents of that source take; filled by @source on the _Reader's methods
SOURCE_OPTIONS: dict[str, tuple[str, ...]] = {}
EDIT_KEYS = ("add", "layers")


def source(key: str, *options: str) -> Callable:
    """Register ``_Reader.source_KEY(node, items, path)`` as the parser of latents ``{KEY: ...}``."""
    def register(method: Callable) -> Callable:
        SOURCE_OPTIONS[key] = options
        return method
    return register


def model_dims(path: Path) -> ModelDims:
    """Dimensions of the model in ``path`` (loads it)."""
    from morph.models.loader import load_model

    return ModelDims.of(load_model(path))


def _did_you_mean(word: Any, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _alternatives(options: Iterable[str], word: str = "or") -> str:
    options = list(options)
    return options[0] if len(options) == 1 else ", ".join(options[:-1]) + f" {word} {options[-1]}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


Items = dict[str, tuple[Node, Node]]  # key → (key node, value node)
SEED_RULE = ("a seed (an integer from 0 to 2**32 - 1)", lambda x: 0 <= x < 2 ** 32)
STRENGTH_RULE = (f"a strength from -{MAX_STRENGTH:g} to {MAX_STRENGTH:g}", lambda x: abs(x) <= MAX_STRENGTH)
WEIGHT_RULE = (f"a weight from -{MAX_STRENGTH:g} to {MAX_STRENGTH:g}", lambda x: abs(x) <= MAX_STRENGTH)


class _Reader(MusicReader):
    """Walks a scene's YAML nodes into values, recording one ``file:line:col: path: what`` line per problem
    and the names referred to, which are checked once every name is known."""

    def __init__(self, file: str, base: Path, dims: Optional[ModelDims]):
        self.scene_file, self.base, self.dims = file, base, dims
        self.psi, self.cutoff = DEFAULTS["truncation"], None  # the scene's, for seed latents
        self.constructor = yaml.constructor.SafeConstructor()
        self.problems: list[tuple[int, int, str]] = []
        self.latent_refs: list[tuple[str, Node, str]] = []
        self.direction_refs: list[tuple[str, Node, str]] = []
        self.directions: dict[str, Path] = {}

    # plain values ----------------------------------------------------------------------------------------------

    def where(self, node: Node, path: str) -> str:
        mark = node.start_mark
        return f"{self.scene_file}:{mark.line + 1}:{mark.column + 1}" + (f": {path}" if path else "")

    def fail(self, node: Node, path: str, message: str) -> None:
        self.problems.append((node.start_mark.line, node.start_mark.column, f"{self.where(node, path)}: {message}"))

    def value(self, node: Node) -> Any:
        """The Python value of a scalar node (None for a mapping or list)."""
        if not isinstance(node, ScalarNode):
            return None
        try:
            return self.constructor.construct_object(node)
        except yaml.YAMLError:
            return node.value

    def show(self, node: Node) -> str:
        if isinstance(node, (MappingNode, SequenceNode)):
            return "a mapping" if isinstance(node, MappingNode) else "a list"
        value = self.value(node)
        return "nothing" if value is None else repr(value) if isinstance(value, str) else str(value).lower()

    def mapping(self, node: Node, path: str, keys: Optional[Iterable[str]] = None) -> Optional[Items]:
        """The entries of a mapping (YAML merge keys applied); unknown keys are reported and left out."""
        if not isinstance(node, MappingNode):
            self.fail(node, path, f"expected a mapping, got {self.show(node)}")
            return None
        explicit = [k for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]
        try:
            self.constructor.flatten_mapping(node)
        except yaml.YAMLError as e:
            self.fail(node, path, f"bad merge key: {getattr(e, 'problem', e)}")
            return None
        out: Items = {}
        first: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node)
            if isinstance(key, bool) and keys is not None and key_node.value in keys:
                key = key_node.value  # YAML 1.1 reads on/off/yes/no as booleans; as a known key, a name
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                self.fail(key_node, path, f"expected a name as key, got {self.show(key_node)}; quote it")
                continue
            key = str(key)
            if any(key_node is k for k in explicit):
                if key in first:
                    self.fail(key_node, path, f"duplicate key {key!r} (first at line {first[key].start_mark.line + 1})")
                first[key] = key_node
            if keys is not None and key not in keys:
                self.fail(key_node, path, f"unknown key {key!r}" + (_did_you_mean(key, keys) or
                                                                   f"; expected {_alternatives(keys)}"))
                continue
            out[key] = (key_node, value_node)
        return out

    def sequence(self, node: Node, path: str) -> Optional[list[Node]]:
        if not isinstance(node, SequenceNode):
            self.fail(node, path, f"expected a list, got {self.show(node)}")
            return None
        return list(node.value)

    def text(self, node: Node, path: str, what: str = "a name") -> Optional[str]:
        value = self.value(node)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)
        self.fail(node, path, f"expected {what}, got {self.show(node)}")
        return None

    def choice(self, node: Node, path: str, options: Iterable[str]) -> Optional[str]:
        options = list(options)
        value = self.text(node, path, f"one of {_alternatives(options)}")
        if value is not None and value not in options:
            self.fail(node, path, f"{value!r} is not one of {_alternatives(options)}{_did_you_mean(value, options)}")
            return None
        return value

    def number(self, node: Node, path: str, what: str = "a number", ok: Callable[[float], bool] = lambda x: True,
               integer: bool = False) -> Optional[float]:
        value = self.value(node)
        if _is_number(value) and (not integer or isinstance(value, int)) and ok(value):
            return value
        exponent = isinstance(value, str) and re.fullmatch(r"([-+]?\d+)[eE]([-+]?\d+)", value)  # YAML 1.1: text
        self.fail(node, path, f"expected {what}, got {self.show(node)}"
                  + (f" (YAML reads {value} as text: write {exponent[1]}.0e{exponent[2]})" if exponent else ""))
        return None

    def option(self, items: Items, key: str, path: str, read: Callable[..., Any], *args: Any,
               default: Any = None) -> Any:
        """``read(value node, path.key, *args)`` if ``key`` is given, else ``default``."""
        return read(items[key][1], f"{path}.{key}" if path else key, *args) if key in items else default

    def boolean(self, node: Node, path: str) -> Optional[bool]:
        value = self.value(node)
        if isinstance(value, bool):
            return value
        self.fail(node, path, f"expected true or false, got {self.show(node)}")
        return None

    def duration(self, node: Node, path: str, fps: float, positive: bool = True) -> Optional[float]:
        """Seconds (``1.5``, ``1.5s``) or frames (``45f``) → frames, unrounded."""
        value = self.value(node)
        match = _DURATION.match(value) if isinstance(value, str) else None
        if _is_number(value):
            frames, shown = value * fps, f"{value:g} s"
        elif match and (match[2] == "s" or float(match[1]).is_integer()):
            frames = float(match[1]) * (fps if match[2] == "s" else 1)
            shown = f"{match[1]} {'s' if match[2] == 's' else 'frames'}"
        else:
            self.fail(node, path, "expected a duration in seconds (1.5 or 1.5s) or frames (45f), "
                                  f"got {self.show(node)}")
            return None
        if frames < 0 or (positive and frames == 0):
            self.fail(node, path, f"expected a {'positive' if positive else 'non-negative'} duration, got {shown}")
            return None
        if positive and round(frames) == 0:
            self.fail(node, path, f"{shown} is shorter than one frame at {fps:g} fps")
            return None
        if frames > MAX_SECONDS * fps:
            self.fail(node, path, f"{shown} is longer than {MAX_SECONDS // 60} minutes, the most one duration can be")
            return None
        return frames

    def layers(self, node: Node, path: str) -> Optional[range]:
        """``5``, ``0-7``, ``8-`` (to the last), ``coarse``/``middle``/``fine``/``all`` → w indices
        (None when the model's dimensions are unknown)."""
        value = self.value(node)
        match = _RANGE.match(value) if isinstance(value, str) else None
        if isinstance(value, str) and value in LAYER_GROUPS + ("all",):
            found = self.all_layers() if value == "all" or not self.dims else self.dims.group(value)
            if found is not None and not found:
                self.fail(node, path, f"the {self.dims.resolution} px model has no {value} layers")
                return None
            return found
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            first, last = value, value
        elif match and match[1]:
            first, last = int(match[1]), int(match[2]) if match[2] else None
        else:
            self.fail(node, path, f"expected layers (5, 0-7, 8-, coarse, middle, fine or all), got {self.show(node)}"
                      + _did_you_mean(value, LAYER_GROUPS + ("all",)))
            return None
        if last is not None and last < first:
            self.fail(node, path, f"layer range {value} is empty (it ends before it starts)")
            return None
        if self.dims is None:
            return None
        if max(first, last or 0) >= self.dims.num_ws:
            self.fail(node, path, f"layer{'' if last == first else ' range'} {value} is outside the model's layers "
                                  f"0-{self.dims.num_ws - 1}")
            return None
        return range(first, self.dims.num_ws if last is None else last + 1)

    def all_layers(self) -> Optional[range]:
        return range(self.dims.num_ws) if self.dims else None

    def existing(self, node: Node, path: str, what: str = "a file path", hint: str = "") -> Optional[Path]:
        """An existing file, ``~`` expanded, relative to the scene's folder; ``hint`` follows a missing one."""
        text = self.text(node, path, what)
        if text is None:
            return None
        full = Path(text).expanduser()
        full = full if full.is_absolute() else self.base / full
        if full.is_dir():
            self.fail(node, path, f"{text} is a folder; expected {what}")
            return None
        if full.exists() and not full.is_file():  # /dev/zero, a FIFO: never read
            self.fail(node, path, f"{text} is not a regular file; expected {what}")
            return None
        if not full.is_file():
            self.fail(node, path, f"{text}: no such file" + (f" ({full})" if str(full) != text else "")
                      + (f"; {hint}" if hint else ""))
            return None
        return full

    def w_file(self, node: Node, path: str) -> Optional[Path]:
        """A .npy/.npz file whose array fits the model as W or W+."""
        found = self.existing(node, path)
        if found is None or self.dims is None:
            return found
        try:
            problem = w_shape_problem(read_w(found, mmap=True).shape, self.dims.num_ws, self.dims.w_dim)
        except MorphError as err:
            problem = err.message
        if problem:
            self.fail(node, path, f"{node.value} {problem}")
            return None
        return found

    # names -----------------------------------------------------------------------------------------------------

    def latent_ref(self, node: Node, path: str, name: Optional[str] = None) -> Optional[str]:
        name = name if name is not None else self.text(node, path, "a latent name")
        if name is not None:
            self.latent_refs.append((name, node, path))
        return name

    def direction_ref(self, node: Node, path: str, name: Optional[str] = None) -> Optional[str]:
        name = name if name is not None else self.text(node, path, "a direction name")
        if name is not None:
            self.direction_refs.append((name, node, path))
        return name

    def direction(self, name: str, node: Node, path: str) -> None:
        """Record direction ``name``'s file: a .npy/.npz path, or ``builtin:NAME``."""
        text = self.text(node, path, "a .npy file or builtin:NAME")
        if text is None or not text.startswith("builtin:"):
            found = text and self.w_file(node, path)
        else:
            try:
                found = resolve_direction(text)
            except (MorphError, ValueError, KeyError) as err:
                self.fail(node, path, str(err))
                return
            if not found.is_file():
                self.fail(node, path, f"{text}: the built-in direction's file is not installed ({found})")
                return
        if found:
            self.directions[name] = found

    # latents ---------------------------------------------------------------------------------------------------

    def latent(self, node: Node, path: str) -> Optional[Latent]:
        known = len(self.problems)
        sources = tuple(SOURCE_OPTIONS)
        items = self.mapping(node, path, sources + EDIT_KEYS + tuple(k for o in SOURCE_OPTIONS.values() for k in o))
        if items is None:
            return None
        given = [k for k in sources if k in items]
        if len(given) > 1:
            self.fail(node, path, f"gives {_alternatives(given, 'and')}; a latent has exactly one of "
                                  f"{_alternatives(sources)}")
        elif not given and len(self.problems) == known:  # else an unknown key was probably meant as the source
            self.fail(node, path, f"needs one of {_alternatives(sources)}")
        if len(given) != 1:
            return None
        kind = given[0]
        for owner, options in SOURCE_OPTIONS.items():
            for key in options:
                if key in items and kind != owner:
                    self.fail(items[key][0], path, f"{key} only applies to {owner} latents")
        if "layers" in items and "add" not in items:
            self.fail(items["layers"][0], path, "layers only applies together with add")
        source = getattr(self, f"source_{kind}")(node, items, path)
        edits = []
        for direction, (key_node, strength) in (self.option(items, "add", path, self.mapping) or {}).items():
            self.direction_ref(key_node, f"{path}.add", direction)
            edits.append((direction, self.number(strength, f"{path}.add.{direction}", *STRENGTH_RULE)))
        layers = self.option(items, "layers", path, self.layers)
        if source is None or any(k is None for _, k in edits):
            return None
        return Latent(source, tuple(edits), layers, self.where(node, path))

    @source("seed", "truncation", "class")
    def source_seed(self, node: Node, items: Items, path: str) -> Optional[Seed]:
        seed = self.number(items["seed"][1], f"{path}.seed", *SEED_RULE, integer=True)
        psi = self.option(items, "truncation", path, self.number, default=self.psi)
        classes = self.dims.c_dim if self.dims else None
        label = None
        if "class" in items and classes == 0:
            self.fail(items["class"][0], path, "class given, but the model is not conditional")
        elif "class" in items:
            label = self.number(items["class"][1], f"{path}.class", f"a class from 0 to {(classes or 1) - 1}",
                                lambda x: 0 <= x < (classes or math.inf), integer=True)
        elif classes:
            self.fail(node, path, f"the model is conditional: give class: 0 to {classes - 1}")
        if None in (seed, psi) or classes and label is None:
            return None
        return Seed(int(seed), float(psi), self.cutoff, label)

    @source("file")
    def source_file(self, node: Node, items: Items, path: str) -> Optional[File]:
        found = self.w_file(items["file"][1], f"{path}.file")
        return found and File(found)

    @source("project", "steps", "space")
    def source_project(self, node: Node, items: Items, path: str) -> Optional[Project]:
        """A photo, with the projection's optional ``steps`` and ``space`` (w+ or w)."""
        steps = self.option(items, "steps", path, self.number, f"a whole number of steps, 1 to {MAX_PROJECT_STEPS}",
                            lambda x: 0 < x <= MAX_PROJECT_STEPS, True)
        space = self.option(items, "space", path, self.choice, SPACES)
        node, path = items["project"][1], f"{path}.project"
        found = self.existing(node, path, "an image file")
        if found is None:
            return None
        with found.open("rb") as fh:
            head = fh.read(16)
        if not (head.startswith(IMAGE_MAGIC) or head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
            self.fail(node, path, f"{node.value} is not an image (PNG, JPEG, WebP, GIF, BMP or TIFF)")
            return None
        try:
            read_image(found)  # what projection will read: a damaged photo fails here, not mid-render
        except MorphError as err:
            self.fail(node, path, f"{node.value}: {err.message}")
            return None
        if ("steps" in items and steps is None) or ("space" in items and space is None):
            return None
        return Project(found, None if steps is None else int(steps), space)

    @source("mean")
    def source_mean(self, latent: Node, latent_items: Items, latent_path: str) -> Optional[Mean]:
        node, path = latent_items["mean"][1], f"{latent_path}.mean"
        items = self.sequence(node, path)
        if items == []:
            self.fail(node, path, "expected a list of latent names, got an empty list")
        names = tuple(self.latent_ref(item, f"{path}[{i}]") for i, item in enumerate(items or []))
        return Mean(names) if names and None not in names else None

    @source("blend")
    def source_blend(self, latent: Node, latent_items: Items, latent_path: str) -> Optional[Blend]:
        node, path = latent_items["blend"][1], f"{latent_path}.blend"
        items = self.mapping(node, path)
        if items == {}:
            self.fail(node, path, "expected latent names with weights, e.g. {peter: 0.5, brad: 0.5}")
        weights = tuple((self.latent_ref(key_node, path, name), self.number(value, f"{path}.{name}", *WEIGHT_RULE))
                        for name, (key_node, value) in (items or {}).items())
        return Blend(weights) if weights and all(k is not None for _, k in weights) else None

    @source("mix")
    def source_mix(self, latent: Node, latent_items: Items, latent_path: str) -> Optional[Mix]:
        node, path = latent_items["mix"][1], f"{latent_path}.mix"
        items = self.mapping(node, path)
        if items is None:
            return None
        owners: list[Optional[str]] = [None] * (self.dims.num_ws if self.dims else 0)
        rest, complete = None, self.dims is not None
        for key, (key_node, value) in items.items():
            name = self.latent_ref(value, f"{path}.{key}")
            if key == "rest":
                rest = name
                continue
            layers = self.layers(key_node, path)
            complete = complete and layers is not None and name is not None
            for i in layers or ():
                if owners[i] is not None:
                    self.fail(key_node, path, f"layer {i} is given twice")
                    complete = False
                owners[i] = name
        missing = tuple(i for i, owner in enumerate(owners) if owner is None)
        if complete and missing and rest is None:
            gaps = ", ".join(range_text(range(missing[r.start], missing[r.stop - 1] + 1))
                             for r in runs(tuple(i - j for j, i in enumerate(missing))))
            self.fail(node, path, f"layers {gaps} have no source; add them, or rest: NAME")
            return None
        return Mix(tuple(owner or rest for owner in owners)) if complete else None

    @source("from")
    def source_from(self, latent: Node, latent_items: Items, latent_path: str) -> Optional[From]:
        node, path = latent_items["from"][1], f"{latent_path}.from"
        name = self.latent_ref(node, path)
        return name and From(name)

    # renders ---------------------------------------------------------------------------------------------------

    def audio(self, node: Node, path: str) -> Optional[Path]:
        """A sound file for ``audio:`` (any format ffmpeg reads: mp3, wav, aac, ogg, flac …)."""
        found = self.existing(node, path, "an audio file path",
                              "give an audio file (mp3, wav, …) relative to the scene's folder")
        problem = found and audio_problem(found)
        if problem:
            self.fail(node, path, f"{node.value}: {problem}; give an audio file ffmpeg reads (mp3, wav, ogg, …)")
            return None
        return found

    def render(self, node: Node, path: str, audio: Optional[Path] = None) -> Optional[Render]:
        """A render; ``audio`` is the scene's sound track, used by mp4/webm renders that name none."""
        items = self.mapping(node, path, RENDER_KEYS)
        if items is None:
            return None
        fmt = self.option(items, "format", path, self.choice, DEFAULT_FPS, default="mp4")
        fps = self.option(items, "fps", path, self.number, "a positive number", lambda x: x > 0,
                          default=DEFAULT_FPS.get(fmt, 30))
        if fps is not None and not MIN_FPS <= fps <= MAX_FPS:
            self.fail(items["fps"][1], f"{path}.fps", f"{fps:g} fps is outside {MIN_FPS} to {MAX_FPS}")
            fps = None
        size = self.option(items, "size", path, self.number, "a positive integer (pixels)", lambda x: x > 0, True,
                           default=self.dims and self.dims.resolution)
        if size is not None and not MIN_SIZE <= size <= MAX_SIZE:
            self.fail(items["size"][1], f"{path}.size", f"{size} px is outside {MIN_SIZE} to {MAX_SIZE}")
            size = None
        if size is not None and size % 2 and fmt in VIDEO_FORMATS:
            self.fail(items["size"][1], f"{path}.size", f"{fmt} needs an even size, got {size}")
        canvas = read_canvas(self, items["canvas"][1], f"{path}.canvas", fmt, size, "size" in items) \
            if "canvas" in items else None
        if canvas is not None:
            size = canvas.square
        if "audio" in items and fmt is not None and fmt not in VIDEO_FORMATS:
            self.fail(items["audio"][0], f"{path}.audio", f"a {fmt} render has no sound track; "
                                                           f"use format {_alternatives(VIDEO_FORMATS)}, or drop audio")
        elif "audio" in items:
            audio = self.audio(items["audio"][1], f"{path}.audio")
            if audio is None:
                return None
        self.sound = audio  # what follow: and transition.on read, in any format
        motion = self.motion(node, path, items, fps or 30)
        if None in (fmt, fps, size, motion) or ("canvas" in items and canvas is None):
            return None
        if motion.frames > MAX_FRAMES:
            self.fail(node, path, f"{motion.frames} frames ({motion.frames / fps / 3600:.1f} h at {fps:g} fps); "
                                  f"a render has at most {MAX_FRAMES}: split it into several renders")
            return None
        return Render(path.split(".", 1)[1], fmt, float(fps), int(size), motion, self.where(node, path),
                      audio if fmt in VIDEO_FORMATS else None, canvas=canvas)

    def motion(self, node: Node, path: str, items: Items, fps: float) -> Optional[Motion]:
        if ("path" in items) == ("around" in items):
            self.fail(node, path, "give either path or around, not both" if "path" in items else
                      "needs path: [keyframes...] or around: LATENT")
            return None
        base = "path" if "path" in items else "around"
        for key in ("loop", "transition", "hold", "duration"):
            if key in items and (key == "duration") != (base == "around"):
                self.fail(items[key][0], path, f"{key} does not apply to {base} renders")
        deform = self.option(items, "deform", path, self.deform, fps)
        breathe = self.option(items, "breathe", path, self.breathe, fps)
        pushes = self.option(items, "add", path, self.pushes, fps, default=())
        camera = self.option(items, "camera", path, self.camera, fps)
        cue, poses = None, []
        if base == "around":
            follows = [w.follow for w in (deform, breathe, *(pushes or ())) if w and w.follow]
            moves = [w for w in (deform, breathe, camera and camera.orbit, camera and camera.swing) if w]
            waves = ("deform" in items or "breathe" in items or bool(follows or moves)
                     or ("camera" in items and camera is None))
            keys = self.still(node, path, items, fps, waves, self.analysis(node, path).frames(fps) if follows else
                              max((w.cycle.frames for w in moves), default=None))  # the whole sound
        else:
            keys, cue, poses = self.key_path(path, items, fps)
        if keys is None or pushes is None or any(k in items and v is None for k, v in
                                                 (("deform", deform), ("breathe", breathe), ("camera", camera))):
            return None
        if camera or any(poses):  # a pose per key of the path (a path on beats cycles through its steps)
            camera = camera or Camera(((0.0, 0.0, 0.0),))
            poses = [(poses and poses[i % len(poses)]) or camera.poses[0] for i in range(len(keys.keys))]
            camera = replace(camera, poses=tuple(poses))
        if keys.loop:  # a whole number of periods per loop, so the last frame flows into the first
            deform, breathe = (w and replace(w, cycle=cycle(w.cycle.frames, keys.frames, True))
                               for w in (deform, breathe))
            if camera:
                camera = replace(camera, **{k: replace(m, cycle=cycle(m.cycle.frames, keys.frames, True))
                                            for k, m in (("orbit", camera.orbit), ("swing", camera.swing)) if m})
        return Motion(keys, deform, breathe, pushes, cue, camera)

    def still(self, node: Node, path: str, items: Items, fps: float, waves: bool,
              period: Optional[float]) -> Optional[KeyPath]:
        """One latent held for ``duration`` (default: the longest wave period), always looping."""
        name = self.latent_ref(items["around"][1], f"{path}.around")
        frames = self.option(items, "duration", path, self.duration, fps, default=period)
        if "duration" not in items and not waves:
            self.fail(node, path, "an around render needs a duration, a deform, a breathe or a camera orbit/swing")
        if name is None or frames is None:
            return None
        return KeyPath((name,), (round(frames),), (), (), loop=True)

    def key_path(self, path: str, items: Items,
                 fps: float) -> tuple[Optional[KeyPath], Optional[Cue], list[Optional[Pose]]]:
        """The keyframe path, the sound's events it is timed by (if any), and the camera pose each step of the
        path gives (None where it gives none)."""
        loop = self.option(items, "loop", path, self.boolean, default=False)
        transition = self.option(items, "transition", path, self.mapping, TRANSITION_KEYS, default={}) or {}
        t_path = f"{path}.transition"
        interp = self.option(transition, "interp", t_path, self.choice, INTERPS, default=DEFAULTS["interp"])
        move = self.option(transition, "duration", t_path, self.duration, fps, default=DEFAULTS["transition"] * fps)
        ease = self.ease(transition, t_path, interp, DEFAULTS["ease"])
        hold = self.option(items, "hold", path, self.duration, fps, False, default=DEFAULTS["hold"] * fps)
        steps = self.sequence(items["path"][1], f"{path}.path")
        if steps is not None and len(steps) < 2:
            self.fail(items["path"][1], f"{path}.path",
                      f"a path needs at least two keyframes, got {len(steps)}; for one latent use around: NAME")
        if steps is None or len(steps) < 2:
            return None, None, []
        keys, holds, moves, eases, poses = [], [], [], [], []
        for i, step in enumerate(steps):  # a step's duration and ease are those of the transition into it
            s_path = f"{path}.path[{i}]"
            name, options = self.step(step, s_path)
            o_path = f"{s_path}.{name}"
            if "duration" in options and i == 0 and loop is False:
                self.fail(options["duration"][0], o_path, "the first keyframe has no transition into it "
                                                         "(the path does not loop)")
            keys.append(name)
            holds.append(self.option(options, "hold", o_path, self.duration, fps, False, default=hold))
            moves.append(self.option(options, "duration", o_path, self.duration, fps, default=move))
            eases.append(self.ease(options, o_path, interp, ease))
            poses.append(self.option(options, "camera", o_path, self.pose))
        moves, eases = (moves[1:] + moves[:1], eases[1:] + eases[:1]) if loop else (moves[1:], eases[1:])
        if "on" in transition:  # timing from the sound
            timed = None if None in keys + [interp, ease] else self.cue_path(
                transition, t_path, steps, items, tuple(keys),
                self.option(transition, "duration", t_path, self.duration, fps), ease, interp, fps)
            return (*(timed or (None, None)), poses)
        if "every" in transition:
            self.fail(transition["every"][0], t_path, "every applies only with on: beats or on: onsets")
        if None in keys + holds + moves + eases + [loop, interp]:
            return None, None, []
        return KeyPath(tuple(keys), tuple(round(h) for h in holds), tuple(round(m) for m in moves), tuple(eases),
                       interp, loop), None, poses

    def step(self, node: Node, path: str) -> tuple[Optional[str], Items]:
        """A path item: ``NAME`` or ``NAME: {duration, hold, ease, camera}``."""
        if not isinstance(node, MappingNode):
            return self.latent_ref(node, path), {}
        items = self.mapping(node, path)
        if items is None or len(items) != 1:
            self.fail(node, path, "expected a latent name, or NAME: {duration, hold, ease, camera}")
            return None, {}
        (name, (key_node, value)), = items.items()
        return self.latent_ref(key_node, path, name), self.mapping(value, f"{path}.{name}", STEP_KEYS) or {}

    def ease(self, items: Items, path: str, interp: Optional[str], default: Optional[str]) -> Optional[str]:
        """The easing given in ``items``, else ``default``; spline paths take none (they are smooth throughout)."""
        if interp == "spline":
            if "ease" in items:
                self.fail(items["ease"][0], path, "ease does not apply to spline paths, whose speed is smooth "
                                                  "through every keyframe")
            return "linear"
        return self.option(items, "ease", path, self.choice, EASINGS, default=default)

    def period(self, items: Items, path: str, fps: float) -> Optional[float]:
        frames = self.option(items, "period", path, self.duration, fps, default=DEFAULTS["period"] * fps)
        if frames is not None and frames < 2:
            self.fail(items["period"][1], f"{path}.period", f"a period must last at least 2 frames at {fps:g} fps")
            return None
        return frames

    def deform(self, node: Node, path: str, fps: float) -> Optional[Deform]:
        """A deform whose cycle is one period (fitted to the loop later)."""
        items = self.mapping(node, path, DEFORM_KEYS)
        if items is None:
            return None
        layers = self.option(items, "layers", path, self.layers, default=self.all_layers())
        amplitude = self.option(items, "amplitude", path, self.number, f"a positive number up to {MAX_AMPLITUDE:g}",
                                lambda x: 0 < x <= MAX_AMPLITUDE, default=DEFAULTS["amplitude"])
        seed = self.option(items, "seed", path, self.number, *SEED_RULE, True, default=0)
        period = self.period(items, path, fps)
        follow = self.option(items, "follow", path, self.follow, fps)
        if None in (layers, amplitude, seed, period) or "follow" in items and follow is None:
            return None
        return Deform(layers, float(amplitude), int(seed), Cycle(1, period), follow,
                      follow is None or "period" in items)

    def breathe(self, node: Node, path: str, fps: float) -> Optional[Breathe]:
        """A breathe whose cycle is one period (fitted to the loop later)."""
        items = self.mapping(node, path, BREATHE_KEYS)
        if items is None:
            return None
        for key in ("direction", "strength"):
            if key not in items:
                self.fail(node, path, f"missing {key}")
        direction = self.option(items, "direction", path, self.direction_ref)
        strength = self.option(items, "strength", path, self.strength)
        layers = self.option(items, "layers", path, self.layers, default=self.all_layers())
        period = self.period(items, path, fps)
        follow = self.option(items, "follow", path, self.follow, fps)
        if None in (direction, strength, layers, period) or "follow" in items and follow is None:
            return None
        return Breathe(direction, *strength, layers, Cycle(1, period), follow, follow is None or "period" in items)

    def pose(self, node: Node, path: str, items: Optional[Items] = None) -> Optional[Pose]:
        """A camera pose ``{translate: [X, Y], rotate: DEGREES}`` (either may be left out: 0); only models whose
        input can move (StyleGAN3) take one."""
        if self.dims and self.dims.family not in CAMERA_FAMILIES:
            self.fail(node, path, f"camera moves need a StyleGAN3 model, whose Fourier input can be translated and "
                                  f"rotated; this model is {self.dims.family}, whose input is a learned constant; drop camera")
            return None
        items = self.mapping(node, path, POSE_KEYS) if items is None else items
        if items is None:
            return None
        translate = self.option(items, "translate", path, self.translate, default=(0.0, 0.0))
        rotate = self.option(items, "rotate", path, self.number, f"degrees from -{MAX_ROTATE:g} to {MAX_ROTATE:g}",
                             lambda x: abs(x) <= MAX_ROTATE, default=0.0)
        return None if translate is None or rotate is None else (*translate, float(rotate))

    def translate(self, node: Node, path: str) -> Optional[tuple[float, float]]:
        """``[X, Y]`` in image widths."""
        what = f"[X, Y] in image widths, each from -{MAX_TRANSLATE:g} to {MAX_TRANSLATE:g}"
        if not isinstance(node, SequenceNode) or len(node.value) != 2:
            self.fail(node, path, f"expected {what}, got {self.show(node)}")
            return None
        xy = [self.number(n, f"{path}[{i}]", what, lambda x: abs(x) <= MAX_TRANSLATE) for i, n in enumerate(node.value)]
        return None if None in xy else (float(xy[0]), float(xy[1]))

    def camera(self, node: Node, path: str, fps: float) -> Optional[Camera]:
        """A render's camera: a pose for keyframes that give none, and periodic ``orbit`` / ``swing`` moves."""
        items = self.mapping(node, path, CAMERA_KEYS)
        if items is None:
            return None
        pose = self.pose(node, path, {k: v for k, v in items.items() if k in POSE_KEYS})
        if pose is None:
            return None
        orbit = self.option(items, "orbit", path, self.periodic, fps, ORBIT_KEYS, "radius",
                            (f"a radius from 0 to {MAX_TRANSLATE:g} image widths", lambda x: 0 < x <= MAX_TRANSLATE),
                            0.05)
        swing = self.option(items, "swing", path, self.periodic, fps, SWING_KEYS, "degrees",
                            ("degrees from 0 to 360", lambda x: 0 < x <= 360), 5.0)
        if ("orbit" in items and orbit is None) or ("swing" in items and swing is None):
            return None
        return Camera((pose,), orbit and Orbit(*orbit), swing and Swing(*swing))

    def periodic(self, node: Node, path: str, fps: float, keys: tuple[str, ...], size: str,
                 rule: tuple[str, Callable[[float], bool]], default: float) -> Optional[tuple[float, Cycle]]:
        """A periodic camera move ``{SIZE, period}``: its size and its cycle (one period, fitted to a loop later)."""
        items = self.mapping(node, path, keys)
        if items is None:
            return None
        amount = self.option(items, size, path, self.number, *rule, default=default)
        period = self.period(items, path, fps)
        return None if amount is None or period is None else (float(amount), Cycle(1, period))

    def strength(self, node: Node, path: str) -> Optional[tuple[float, float]]:
        """``HIGH`` (swinging from 0) or ``[LOW, HIGH]``."""
        if isinstance(node, SequenceNode) and len(node.value) == 2:
            low, high = (self.number(n, f"{path}[{i}]", *STRENGTH_RULE) for i, n in enumerate(node.value))
            return None if low is None or high is None else (float(low), float(high))
        high = self.number(node, path, f"a strength: HIGH or [LOW, HIGH], each from -{MAX_STRENGTH:g} to "
                                       f"{MAX_STRENGTH:g}", STRENGTH_RULE[1])
        return None if high is None else (0.0, float(high))


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


def _model_dims(r: _Reader, top: Items, root: Node, dims: Callable[[Path], ModelDims],
                cache_dir: Optional[Path]) -> Optional[Path]:
    """Resolve the scene's model (a URL is downloaded into ``cache_dir``, checked against ``sha256:``) and read
    its dimensions into ``r``; the model's path, or None after reporting."""
    node = top["model"][1] if "model" in top else root
    model = r.text(node, "model", "a model file or builtin") if "model" in top else BUILTIN
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
    r = _Reader(file, Path(file).parent, dims if isinstance(dims, ModelDims) else None)
    r.cache_dir = cache_dir
    top = r.mapping(root, "", TOP_KEYS)
    if top is None:
        raise SceneError([p for *_, p in r.problems])
    for key in ("latents", "renders"):
        if key not in top:
            r.fail(root, key, "missing; a scene needs latents: and renders:")
    model = r.value(top["model"][1]) if "model" in top else BUILTIN
    model_path = None if isinstance(dims, ModelDims) else _model_dims(r, top, root, dims, cache_dir)
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
            r.fail(node, path, f"no latent named {name!r}{_did_you_mean(name, latent_nodes)}")
    for name, node, path in r.direction_refs:
        if name.startswith("builtin:") and name not in r.directions:
            r.direction(name, node, path)
        elif name not in declared and not name.startswith("builtin:"):
            r.fail(node, path, f"no direction named {name!r}" +
                   (_did_you_mean(name, declared) or "; declare it under directions:"))
    deps = {name: tuple(d for d in latent.needs() if d in latent_nodes) if latent else ()
            for name, latent in latents.items()}
    order, cycles = _order(deps)
    for names in cycles:
        r.fail(latent_nodes[names[0]][0], f"latents.{names[0]}", f"cycle: {' → '.join(names)}")

    if r.problems or r.dims is None:
        raise SceneError([p for *_, p in sorted(set(r.problems))])
    return Scene(Path(file), str(model), model_path, r.dims, noise, r.directions,
                 {name: latents[name] for name in order}, renders)


def load_scene(path: str | Path, dims: Union[ModelDims, Callable[[Path], ModelDims]] = model_dims,
               cache_dir: Optional[Path] = None) -> Scene:
    """Read and validate a scene file (see :func:`parse_scene`)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_SCENE_BYTES + 1)
        if len(data) > MAX_SCENE_BYTES:
            raise MorphError(f"larger than {MAX_SCENE_BYTES >> 20} MiB; a scene is a short text file", path,
                             "is this the right file?")
        text = data.decode("utf-8")
    except IsADirectoryError:
        raise MorphError("is a folder, not a scene file", where=path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise MorphError(f"cannot read the scene ({getattr(e, 'strerror', None) or e})", where=path) from None
    return parse_scene(text, path, dims, cache_dir)
