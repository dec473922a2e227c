"""The base of the scene reader: YAML nodes → plain values (names, numbers, durations, layer ranges, files),
each problem recorded as one ``file:line:col: key.path: what`` line, and the latent and direction names a
scene refers to, checked once every name is known (``morph.scene.reader``).

Every other part of the reader (``sources``, ``motion``, ``camera``, ``music``, ``canvas``, ``renders``) is a
subclass of :class:`NodeReader` that adds the words of one part of the scene language; ``reader`` joins them.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from morph.core.errors import MorphError
from morph.core.limits import MAX_SECONDS, MAX_STRENGTH
from morph.core.model import LAYER_GROUPS
from morph.motion.latents import ModelDims, read_w, w_shape_problem
from morph.scene.types import DEFAULTS

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|f)\s*$")
_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")

Items = dict[str, tuple[Node, Node]]  # key → (key node, value node)
SEED_RULE = ("a seed (an integer from 0 to 2**32 - 1)", lambda x: 0 <= x < 2 ** 32)
STRENGTH_RULE = (f"a strength from -{MAX_STRENGTH:g} to {MAX_STRENGTH:g}", lambda x: abs(x) <= MAX_STRENGTH)
WEIGHT_RULE = (f"a weight from -{MAX_STRENGTH:g} to {MAX_STRENGTH:g}", lambda x: abs(x) <= MAX_STRENGTH)


def did_you_mean(word: Any, options: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the option closest to a misspelt ``word`` (empty when none is close)."""
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def alternatives(options: Iterable[str], word: str = "or") -> str:
    """``a, b or c``: options as a sentence lists them."""
    options = list(options)
    return options[0] if len(options) == 1 else ", ".join(options[:-1]) + f" {word} {options[-1]}"


def is_number(value: Any) -> bool:
    """A finite int or float, not a boolean (YAML reads ``yes`` as True)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class NodeReader:
    """Walks a scene's YAML nodes into values, recording one ``file:line:col: path: what`` line per problem
    and the names referred to, which are checked once every name is known."""

    def __init__(self, file: str, base: Path, dims: Optional[ModelDims], cache_dir: Optional[Path] = None):
        self.scene_file, self.base, self.dims, self.cache_dir = file, base, dims, cache_dir
        self.psi, self.cutoff = DEFAULTS["truncation"], None  # the scene's, for seed latents
        self.sound: Optional[Path] = None  # the current render's sound file, which follow: and transition.on read
        self.audio_failed = False  # the scene's audio: was reported unusable (its followers then say nothing more)
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
                self.fail(key_node, path, f"unknown key {key!r}" + (did_you_mean(key, keys) or
                                                                   f"; expected {alternatives(keys)}"))
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
        value = self.text(node, path, f"one of {alternatives(options)}")
        if value is not None and value not in options:
            self.fail(node, path, f"{value!r} is not one of {alternatives(options)}{did_you_mean(value, options)}")
            return None
        return value

    def number(self, node: Node, path: str, what: str = "a number", ok: Callable[[float], bool] = lambda x: True,
               integer: bool = False) -> Optional[float]:
        value = self.value(node)
        if is_number(value) and (not integer or isinstance(value, int)) and ok(value):
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
        if is_number(value):
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
                      + did_you_mean(value, LAYER_GROUPS + ("all",)))
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

    def period(self, items: Items, path: str, fps: float) -> Optional[float]:
        """A periodic move's ``period`` in frames (the scene language's default when not given), at least 2."""
        frames = self.option(items, "period", path, self.duration, fps, default=DEFAULTS["period"] * fps)
        if frames is not None and frames < 2:
            self.fail(items["period"][1], f"{path}.period", f"a period must last at least 2 frames at {fps:g} fps")
            return None
        return frames

