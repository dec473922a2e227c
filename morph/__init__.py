"""morph: render StyleGAN2 and StyleGAN3 latent space into videos and looping GIFs.

The Python API (see :mod:`morph.api`): ``morph.render(scene, out=…)``, ``morph.check(scene)``,
``morph.frames(scene, render, frames)``, ``morph.load_model(name_or_path_or_url)``,
``morph.project(photos, model=…)``; mistakes raise :class:`MorphError` (one line). Importing morph is
cheap: torch and the rest load on the first call.
"""

import types

import morph.render as _rendering
from morph.api import check, frames, load_model, project
from morph.api import render as _render
from morph.core import __version__
from morph.core.errors import MorphError


class _RenderPackage(types.ModuleType):
    """``morph.render`` names both the rendering package (``morph.render.job``, …) and the API's
    :func:`morph.api.render`: Python binds a subpackage to its parent's attribute on import, so the package
    itself is made callable rather than the function being replaced by the first ``import morph.render.x``."""

    def __call__(self, *args, **kwargs):
        return _render(*args, **kwargs)

    __call__.__doc__ = _render.__doc__


_rendering.__class__ = _RenderPackage

__all__ = ["MorphError", "__version__", "check", "frames", "load_model", "project", "render"]
