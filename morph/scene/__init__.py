"""Scenes: the YAML language (``reader``), the validated scene as data (``types``), the plan ``morph check``
prints (``plan``) and each render's timeline on a loaded model (``timelines``)."""

from morph.scene.plan import describe
from morph.scene.reader import load_scene, model_dims, parse_scene
from morph.scene.timelines import timelines
from morph.scene.types import Render, Scene, SceneError

__all__ = ["Render", "Scene", "SceneError", "describe", "load_scene", "model_dims", "parse_scene", "timelines"]
