"""The scene words for what is drawn: ``latents:`` (one source each, plus ``add:`` edits on ``layers:``),
``directions:``, and how the photos are projected and drawn (``encoder:``, ``identity:``, ``tune:``).

A latent source is one ``source_NAME`` method of :class:`SourceReader` (registered with ``@source``), one
dataclass in ``morph.motion.latents`` and one case in ``morph.motion.latents.resolve``.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

from yaml.nodes import Node

from morph.core.errors import MorphError
from morph.core.limits import MAX_IDENTITY_WEIGHT, MAX_PROJECT_STEPS
from morph.models.resolver import resolve_direction
from morph.motion.latents import SPACES, Blend, File, From, Latent, Mean, Mix, Project, Seed
from morph.render.images import read_image
from morph.scene.nodes import SEED_RULE, STRENGTH_RULE, WEIGHT_RULE, Items, NodeReader, alternatives, is_number
from morph.scene.types import IDENTITY_KEYS, IMAGE_MAGIC, Option, Photos, range_text, runs

# source key → the keys only latents of that source take; filled by @source on SourceReader's methods
SOURCE_OPTIONS: dict[str, tuple[str, ...]] = {}
EDIT_KEYS = ("add", "layers")


def _numeric(text: str) -> bool:
    """Whether Python reads ``text`` as a number (``3e-4``, ``nan``): text YAML 1.1 did not."""
    try:
        float(text)
        return True
    except ValueError:
        return False


def source(key: str, *options: str) -> Callable:
    """Register ``SourceReader.source_KEY(node, items, path)`` as the parser of latents ``{KEY: ...}``."""
    def register(method: Callable) -> Callable:
        SOURCE_OPTIONS[key] = options
        return method
    return register


class SourceReader(NodeReader):
    """Reads latents (each from one registered source) and the directions a scene declares."""

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

    def photos(self, top: Items) -> Photos:
        """``encoder:`` (auto, none, or a morph encoder / pSp / e4e file), ``identity: {file, weight}`` and
        ``tune:`` (true, false, or a mapping of pivotal tuning's settings, whose names the projection checks)."""
        encoder = self.option(top, "encoder", "", self.text, "auto, none or an encoder file")
        if encoder is not None and encoder.strip().lower() in ("auto", "none"):
            encoder = encoder.strip().lower()
        elif encoder is not None:
            found = self.existing(top["encoder"][1], "encoder", "an encoder file",
                                  "give morph's encoder file, a pSp / e4e checkpoint, auto or none")
            encoder = found and str(found)
        identity = self.option(top, "identity", "", self.mapping, IDENTITY_KEYS) or {}
        for key in IDENTITY_KEYS:
            if "identity" in top and key not in identity:
                self.fail(top["identity"][1], "identity", f"needs {key}: (identity: {{file: model_ir_se50.pth, "
                                                          "weight: 0.1}})")
        file = self.option(identity, "file", "identity", self.existing, "ArcFace's model_ir_se50.pth")
        weight = self.option(identity, "weight", "identity", self.number,
                             f"a weight above 0, at most {MAX_IDENTITY_WEIGHT:g}",
                             lambda x: 0 < x <= MAX_IDENTITY_WEIGHT, default=0.0)
        tune = self.option(top, "tune", "", self.tune)
        return Photos(encoder or "auto", file, float(weight or 0.0) if file else 0.0, tune)

    def tune(self, node: Node, path: str) -> Optional[tuple[Option, ...]]:
        """``tune: true`` (the defaults: no options), ``false`` (None), or its options, each a number, true / false
        or a name."""
        value = self.value(node)
        if isinstance(value, bool):
            return () if value else None
        items = self.mapping(node, path)
        options = []
        for key, (key_node, value_node) in (items or {}).items():
            value = self.value(value_node)
            if is_number(value) or isinstance(value, bool) or isinstance(value, str) and value and not _numeric(value):
                options.append(Option(key, value, self.where(key_node, f"{path}.{key}")))
            else:  # the problem as a number states it (YAML reads 3e-4 as text: its hint says so)
                self.number(value_node, f"{path}.{key}", "a number, true / false or a name")
        return None if items is None else tuple(options)

    def latent(self, node: Node, path: str) -> Optional[Latent]:
        """A latent: exactly one source, and the ``add:`` edits on its ``layers:``."""
        known = len(self.problems)
        sources = tuple(SOURCE_OPTIONS)
        items = self.mapping(node, path, sources + EDIT_KEYS + tuple(k for o in SOURCE_OPTIONS.values() for k in o))
        if items is None:
            return None
        given = [k for k in sources if k in items]
        if len(given) > 1:
            self.fail(node, path, f"gives {alternatives(given, 'and')}; a latent has exactly one of "
                                  f"{alternatives(sources)}")
        elif not given and len(self.problems) == known:  # else an unknown key was probably meant as the source
            self.fail(node, path, f"needs one of {alternatives(sources)}")
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
