"""Scenes: the YAML language (``reader``), the validated scene as data (``types``), the plan ``morph check``
prints (``plan``) and each render's timeline on a loaded model (``timelines``)."""

from .plan import describe
from .reader import load_scene, model_dims, parse_scene
from .timelines import timelines
from .types import Render, Scene, SceneError

__all__ = ["Render", "Scene", "SceneError", "describe", "load_scene", "model_dims", "parse_scene", "timelines"]
