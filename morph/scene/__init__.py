"""Scenes: the YAML language (``reader`` and its parts), the validated scene as data (``types``), the plan
``morph check`` prints (``plan``) and a scene's latents and timelines on a loaded model (``timelines``)."""

from morph.scene.plan import plan_lines
from morph.scene.reader import load_scene, model_dims, parse_scene, read_scene_text
from morph.scene.timelines import resolve_latents, timelines
from morph.scene.types import Render, Scene, SceneError

__all__ = ["Render", "Scene", "SceneError", "load_scene", "model_dims", "parse_scene", "plan_lines", "read_scene_text",
           "resolve_latents", "timelines"]
