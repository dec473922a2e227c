"""A scene's ``{project: photo}`` latents: how each is projected (:func:`scene_settings`), whether ``morph check``
finds it cached (:func:`projection_status`), and the projected photos a render draws with (:class:`ScenePhotos`);
the scene's ``encoder:``, ``identity:`` and ``tune:`` (:func:`tune_settings`, :func:`scene_model`, and what
``morph check`` says of them: :func:`photo_plan`).

With ``tune:`` every latent of the scene (photos, seeds, blends...) is drawn by the one generator pivotal tuning
makes for all the scene's photos together (:func:`morph.projection.tuning.tuned_model`, cached): that model's file
hash is the render's model key, so a tuned render never reuses an untuned one's segments. The same photos, settings
and order as ``morph project A B ... --tune`` give the same cached projections and the same tuned generator.

A scene render draws every frame with the optimised noise of its first projected keyframe (held for the whole
render: the scheduler gives W frames, not the keyframe weights a per-frame noise blend would need), so a
projected face renders identically every time; the noise's hash joins the render's cache key.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, get_type_hints

import torch

from morph.core.errors import MorphError
from morph.core.limits import MAX_PROJECT_STEPS
from morph.core.model import Model, Noise
from morph.motion.latents import From, Project
from morph.projection.encoder import encoder_for, encoder_sha256, find_encoder
from morph.projection.losses import LOSSES
from morph.projection.optimiser import REFINE_STEPS, Projection
from morph.projection.project import project_photos, resolve_settings
from morph.projection.store import Settings, cache_path, load_projection
from morph.projection.tuning import TuneSettings, tuned_model, tuned_path
from morph.render.images import read_image
from morph.scene.nodes import SEED_RULE, alternatives, did_you_mean
from morph.scene.types import Photos, SceneError

SCENE_STEPS = 1000  # steps for a scene's {project: photo}
SCENE_BATCH = 8     # a scene's photos are projected this many at a time (memory at 1024 px)


# tune: options with a narrower rule than their type's (what each must be, the test)
TUNE_RULES = {"steps": (f"a whole number of steps, 1 to {MAX_PROJECT_STEPS}", lambda x: 1 <= x <= MAX_PROJECT_STEPS),
              "locality_every": ("a whole number of steps, at least 1", lambda x: x >= 1),
              "lr": ("a learning rate above 0", lambda x: x > 0), "seed": SEED_RULE,
              "rampdown": ("a fraction of the steps, 0 to 1", lambda x: 0 <= x <= 1),
              "locality_radius": ("a fraction of the way, 0 to 1", lambda x: 0 <= x <= 1),
              "loss": (f"auto or one of {alternatives(LOSSES)} (LPIPS needs --vgg: morph project)",
                       lambda x: x in ("auto", *LOSSES))}
TYPE_RULES = {bool: "true or false", int: "a whole number ≥ 0", float: "a number ≥ 0", str: "a name"}


def scene_photos(scene) -> list[Project]:
    """The scene's distinct photos, in the order its latents name them (the order of tuning's pivots)."""
    return list(dict.fromkeys(l.source for l in scene.latents.values() if isinstance(l.source, Project)))


def scene_settings(spec: Project, resolution: int, encoder: str = "", identity_weight: float = 0.0) -> Settings:
    """How a scene's ``{project: photo, steps, space}`` is projected: defaults unless the scene says (fewer
    steps after the ``encoder`` with this sha256, if any; ``identity:``'s weight); a square photo at the model's
    own resolution is taken as an already aligned face (what ``morph project`` makes)."""
    h, w = read_image(spec.image).shape[:2]
    return Settings(space=spec.space or Settings.space, steps=spec.steps or (REFINE_STEPS if encoder else SCENE_STEPS),
                    align=not (h == w == resolution), encoder=encoder, identity_weight=identity_weight)


def projection_status(spec: Project, G: Optional[Model], photos: Photos = Photos(),
                      cache_dir: Optional[Path] = None) -> str:
    """For ``morph check``: "cached", "needs projection (N steps)", or that plus why it will fail (an
    unreadable photo), on the already loaded generator ``G`` (None: a scene validated without a model), with
    the scene's ``encoder:`` and ``identity:`` (``photos``), in the cache at ``cache_dir``."""
    if G is None:
        return f"needs projection ({spec.steps or SCENE_STEPS} steps)"
    encoder = find_encoder(photos.encoder, Path(G.info.path))
    needs = f"needs projection ({spec.steps or (REFINE_STEPS if encoder else SCENE_STEPS)} steps" \
            + (" after the encoder)" if encoder else ")")
    try:
        return "cached" if _projection_path(spec, G, photos, cache_dir).is_file() else needs
    except MorphError as err:
        return f"{needs}, which will fail: {err.message}"


def _projection_path(spec: Project, G: Model, photos: Photos, cache_dir: Optional[Path]) -> Path:
    """Where the photo's projection by ``G`` with the scene's ``encoder:`` and ``identity:`` is cached (a
    :class:`MorphError` when the photo or a file the settings name cannot be read)."""
    encoder = find_encoder(photos.encoder, Path(G.info.path))
    settings = resolve_settings(scene_settings(spec, G.img_resolution, encoder_sha256(encoder) if encoder else "",
                                               photos.identity_weight), Path(G.info.path), arcface=photos.identity)
    return cache_path(spec.image, G.info.sha256, settings, cache_dir)


def tune_status(scene, G: Optional[Model], cache_dir: Optional[Path] = None) -> Optional[str]:
    """For ``morph check``: with ``tune:``, "cached" when the generator tuned for the scene's photos is, else
    how many steps tuning will take (None without ``tune:``). The tuned file's key holds every pivot, so it
    is known only once every photo's projection is cached."""
    settings = tune_settings(scene)
    if settings is None or G is None:
        return None
    pivots = []
    for spec in scene_photos(scene):
        try:
            pivot = load_projection(_projection_path(spec, G, scene.photos, cache_dir))
        except MorphError:
            pivot = None
        if pivot is None:
            return f"needs tuning ({settings.steps} steps, after the photos are projected)"
        pivots.append(pivot)
    return ("cached" if tuned_path(G, pivots, settings, (), cache_dir).is_file()
            else f"needs tuning ({settings.steps} steps)")


def _tune_value(key: str, kind: type, value: Any) -> Optional[Any]:
    """``value`` as tune option ``key`` of type ``kind`` takes it, or None when it does not fit."""
    if kind is float and type(value) is int:
        value = float(value)
    if type(value) is not kind or kind in (int, float) and value < 0:
        return None
    rule = TUNE_RULES.get(key)
    return value if rule is None or rule[1](value) else None


def tune_settings(scene) -> Optional[TuneSettings]:
    """The scene's ``tune:`` as :class:`TuneSettings` (None: no tuning); a :class:`SceneError` with one
    ``file:line:col: tune.KEY: what`` line per unknown key or unfit value."""
    if scene.photos.tune is None:
        return None
    kinds = get_type_hints(TuneSettings)
    values, problems = {}, []
    for option in scene.photos.tune:
        kind = kinds.get(option.key)
        if kind is None:
            problems.append(f"{option.where}: unknown key {option.key!r}" + (did_you_mean(option.key, kinds) or
                            f"; tune: takes {alternatives(kinds)}"))
            continue
        value = _tune_value(option.key, kind, option.value)
        if value is None:
            what = TUNE_RULES.get(option.key, (TYPE_RULES.get(kind, getattr(kind, "__name__", str(kind))),))[0]
            problems.append(f"{option.where}: expected {what}, got {option.value!r}")
        values[option.key] = value
    if problems:
        raise SceneError(problems)
    return TuneSettings(**values)


def scene_model(scene, G: Model, photos: "ScenePhotos", cache_dir: Optional[Path] = None, quiet: bool = False) -> Model:
    """What the scene draws with: ``G``, or with ``tune:`` the generator tuned for all its photos together (their
    projections the pivots, in :func:`scene_photos` order), from the cache when it holds it."""
    settings = tune_settings(scene)
    if settings is None:
        return G
    return tuned_model(G, [photos.projections[spec] for spec in scene_photos(scene)], settings, (), cache_dir,
                       quiet)[0]


def photo_plan(scene, G: Model, cache_dir: Optional[Path] = None) -> Optional[dict]:
    """What ``morph check`` says of the scene's photos (None without any): the encoder file giving the first
    guess, the identity term, the tuning settings and whether the tuned generator is in the cache at
    ``cache_dir`` (``--json``: this dict)."""
    if not scene_photos(scene):
        return None
    encoder, tune = find_encoder(scene.photos.encoder, G.info.path), tune_settings(scene)
    identity = scene.photos.identity
    return {"photos": len(scene_photos(scene)), "encoder": str(encoder) if encoder else None,
            "identity": {"file": str(identity), "weight": scene.photos.identity_weight} if identity else None,
            "tune": asdict(tune) if tune else None, "tuned": tune_status(scene, G, cache_dir)}


def photo_lines(plan: Optional[dict]) -> list[str]:
    """:func:`photo_plan` in the words ``morph check`` prints."""
    if plan is None:
        return []
    line = f"photos: {plan['photos']}, " + (f"first guess by the encoder {plan['encoder']}" if plan["encoder"]
                                           else "no encoder (from w_avg)")
    if plan["identity"]:
        term = plan["identity"]
        line += f"; identity term {term['weight']:g} × (1 − ArcFace similarity, {term['file']})"
    lines = [line]
    if plan["tune"]:
        lines.append(f"tune: one generator for all the photos, drawing every latent ({plan['tuned']}): "
                     + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in plan["tune"].items()))
    return lines


@dataclass
class ScenePhotos:
    """A scene's projected photos: the latent callback for ``scene.timelines`` and each render's noise."""

    scene: object
    projections: dict[Project, Projection]

    def latent(self, spec: Project) -> torch.Tensor:
        """The ``Projector`` callback: the photo's W+ [num_ws, w_dim]."""
        return self.projections[spec].ws(self.scene.dims.num_ws)

    def noise_maps(self, render: str) -> Optional[list[torch.Tensor]]:
        """The noise of the render's first keyframe that is a projected photo (directly or ``from:`` one), held
        for the whole render; None when no keyframe is, or the model has no noise inputs (its own noise)."""
        for key in self.scene.renders[render].motion.path.keys:
            latent = self.scene.latents[key]
            while isinstance(latent.source, From):
                latent = self.scene.latents[latent.source.name]
            if isinstance(latent.source, Project):
                return self.projections[latent.source].noise or None
        return None

    def noise(self, render: str, mode: str) -> Noise:
        """What the render draws with: the scene's noise ``mode``, with :meth:`noise_maps` when it has them."""
        maps = self.noise_maps(render)
        return Noise(mode, None if maps is None else tuple(maps))

    def model_key(self, G, render: str) -> str:
        """The model's key for the render cache: its file hash, plus the hash of the render's projected noise
        maps when it has them, so cached segments never mix noises."""
        maps = self.noise_maps(render)
        return G.info.sha256 if maps is None else f"{G.info.sha256}+noise:{noise_digest(maps)}"


def project_scene(scene, G, cache_dir: Optional[Path] = None, quiet: bool = False) -> ScenePhotos:
    """Every ``{project: photo}`` of a scene, the missing ones projected together in one batch (cached), from
    the scene's ``encoder:`` (auto: the model's own encoder when it has one), with its ``identity:`` term."""
    specs, photos = scene_photos(scene), scene.photos
    encoder = encoder_for(G, photos.encoder) if specs else None
    groups: dict[Settings, list[Project]] = {}
    for spec in specs:
        groups.setdefault(scene_settings(spec, G.img_resolution, encoder.sha256 if encoder else "",
                                         photos.identity_weight), []).append(spec)
    done: dict[Project, Projection] = {}
    for settings, group in groups.items():
        done.update(zip(group, project_photos([spec.image for spec in group], G, settings, cache_dir=cache_dir,
                                              batch_size=min(len(group), SCENE_BATCH), quiet=quiet,
                                              encoder=encoder, arcface=photos.identity)))
    return ScenePhotos(scene, done)


def noise_digest(maps: Sequence[torch.Tensor]) -> str:
    """SHA-256 of noise maps (part of a render's cache key when they replace the model's)."""
    digest = hashlib.sha256()
    for m in maps:
        digest.update(m.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


__all__ = ["SCENE_BATCH", "SCENE_STEPS", "ScenePhotos", "noise_digest", "photo_lines", "photo_plan", "project_scene",
           "projection_status", "scene_model", "scene_photos", "scene_settings", "tune_settings", "tune_status"]
