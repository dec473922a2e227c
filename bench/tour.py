"""The scene the render benchmarks share: a looping slerp tour through three seeds of about N frames."""

from __future__ import annotations

from pathlib import Path

SCENE = """model: {model}
truncation: 0.7
latents:
  a: {{seed: 1}}
  b: {{seed: 2}}
  c: {{seed: 3}}
renders:
  tour:
    format: mp4
    fps: {fps}
    size: {size}
    path: [a, b, c]
    transition: {{duration: {step}f, interp: slerp}}
    loop: true
"""


def write_tour(path: Path, model: str, size: int, frames: int, fps: float = 30) -> Path:
    """Write the tour scene (render ``tour``, three transitions of ``frames // 3`` frames) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SCENE.format(model=model, size=size, fps=fps, step=max(1, frames // 3)))
    return path
