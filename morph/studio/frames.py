"""The studio's one adapter over the engine: a model loaded once, a scene opened by the engine's
:func:`morph.engine.scenes.open_scene` (photos projected once per studio, each latent resolved once per scene
text), single frames drawn exactly as ``morph render`` draws them, seed and direction looks, and the
``morph render`` run itself.

Nothing else in ``morph.studio`` imports morph's rendering modules.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image

from morph.builtin import WEIGHTS_DIR
from morph.core.cache import default_cache_dir
from morph.core.devices import resolve_device
from morph.core.errors import MorphError
from morph.core.model import Noise
from morph.engine.scenes import LoadedModels, LoadedScene, open_scene
from morph.models.resolver import resolve_direction
from morph.motion.latents import ModelDims, Project, load_w, seed_w
from morph.motion.schedule import sample
from morph.projection import Projection
from morph.projection.scene import tune_settings
from morph.render.job import generate
from morph.scene import Scene, model_dims, parse_scene

FRAME_CACHE_BYTES = 64 << 20  # encoded pictures kept in memory (a loop played twice is drawn once)


class Frames:
    """One generator on one device, kept across requests; draws and projections are serialised, so that
    concurrent requests do not fight over the CPU's threads."""
    def __init__(self, models: LoadedModels, model_path: Path, cache_dir: Path, quiet: bool = False):
        self.models, self.G = models, models.get(model_path)
        self.model_path, self.device, self.cache_dir, self.quiet = Path(model_path), models.device, cache_dir, quiet
        self.dims = ModelDims.of(self.G)
        self.lock = threading.RLock()
        self._projections: dict[Project, Projection] = {}
        self.memo = Memo()

    # scenes ----------------------------------------------------------------------------------------------------

    def parse(self, text: str, file: Path) -> Scene:
        """Validate scene text as ``morph check`` does (raises ``SceneError``; ``tune:`` included), this model's
        dimensions reused."""
        scene = parse_scene(text, file, lambda path: self.dims if self._same(path) else model_dims(path),
                            self.cache_dir)
        tune_settings(scene)
        return scene

    def _same(self, path: Optional[Path]) -> bool:
        return path is not None and Path(path).resolve() == self.model_path.resolve()

    def prepare(self, scene: Scene) -> LoadedScene:
        """The scene opened by the engine on this model: photos projected (cached on disk and here), each
        latent resolved once, every render's timeline built."""
        if not self._same(scene.model_path):
            raise MorphError(f"the studio draws with {self.model_path}, the scene now names {scene.model}",
                             scene.file, "restart morph studio to change the model")
        with self.lock:  # projecting runs the synthesis, and the projections memo is shared
            return open_scene(scene.file, self.device, self.cache_dir, self.quiet, scene=scene, models=self.models,
                              projections=self._projections)

    # pictures --------------------------------------------------------------------------------------------------

    def frame(self, p: LoadedScene, render: str, index: int, size: int) -> np.ndarray:
        """Frame ``index`` of ``render`` at ``size`` px, drawn by the engine exactly as ``morph render`` draws it
        (its projected noise included), then scaled with Lanczos like the encoder's scaler. A canvas is shown
        whole: ``size`` is then its square image's side."""
        with self.lock:
            image = p.frames(render, [index], self.device)[0]
        r = p.scene.renders[render]
        if r.canvas is None:
            return resize(image, size)
        return resize(image, (round(r.canvas.width * size / r.size), round(r.canvas.height * size / r.size)))

    def look(self, p: LoadedScene, w: torch.Tensor) -> np.ndarray:
        """One latent [num_ws, w_dim] drawn by the scene's model (tuned, with ``tune:``) with the scene's noise, as
        uint8 [H, W, 3]."""
        with self.lock:
            return next(iter(generate(p.G, w[None], 1, Noise(p.scene.noise), self.device)))[0]

    def seed(self, seed: int, psi: float) -> torch.Tensor:
        """W+ of a seed at truncation ``psi`` (the scene's ``{seed: N}``)."""
        return seed_w(self.G, seed, psi)

    def direction(self, scene: Scene, name: str) -> torch.Tensor:
        """A direction of the scene, or ``builtin:NAME``, as [num_ws, w_dim]."""
        path = scene.directions.get(name) or resolve_direction(name)
        return load_w(path, self.G.num_ws, self.G.w_dim)

    def latent(self, p: LoadedScene, render: str, index: int) -> torch.Tensor:
        """The W+ [num_ws, w_dim] frame ``index`` of ``render`` is drawn from (its waves included)."""
        return sample(p.timelines[render], torch.tensor([float(index)], dtype=torch.float64))[0]


class Memo:
    """Encoded pictures by key, least recently used out first once they hold more than ``limit`` bytes."""
    def __init__(self, limit: int = FRAME_CACHE_BYTES):
        self.limit, self.size = limit, 0
        self.lock = threading.Lock()
        self.items: OrderedDict[tuple, bytes] = OrderedDict()

    def get(self, key: tuple, make: Callable[[], bytes]) -> bytes:
        """The bytes for ``key``, made by ``make()`` the first time."""
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        data = make()
        with self.lock:
            if key in self.items:  # made meanwhile by another request
                return self.items[key]
            self.items[key] = data
            self.size += len(data)
            while self.size > self.limit:
                self.size -= len(self.items.popitem(last=False)[1])
        return data


def open_frames(scene: Path, device: str, cache_dir: Optional[Path]) -> Frames:
    """The frames of scene file ``scene``'s model on ``device`` (auto, cpu, cuda...), loaded once, projections
    cached in ``cache_dir`` (morph's default cache when None); a scene invalid from the start fails as
    ``morph check``."""
    cache_dir = cache_dir or default_cache_dir()
    models = LoadedModels(resolve_device(device))
    return Frames(models, models.scene(scene, cache_dir).model_path, cache_dir)


def builtin_directions() -> list[str]:
    """``builtin:NAME`` of every shipped direction."""
    return [f"builtin:{p.stem}" for p in sorted((WEIGHTS_DIR / "directions").glob("*.npy"))]


def resize(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """``image`` scaled to ``size`` × ``size`` (or ``size`` (width, height)) with Lanczos (unchanged at its own size)."""
    width, height = (size, size) if isinstance(size, int) else size
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.LANCZOS))


def encode(image: np.ndarray, fmt: str) -> bytes:
    """PNG (exact) or JPEG (fast, for previews) bytes of a uint8 image."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **({"quality": 85} if fmt == "JPEG" else {"compress_level": 1}))
    return buf.getvalue()


# --- the render button -----------------------------------------------------------------------------------------

@dataclass
class RenderRun:
    """A ``morph render`` of the scene file in a child process, followed through its JSON progress stream."""
    out: Path
    done: int = 0
    total: int = 0
    current: str = ""
    files: dict[str, str] = field(default_factory=dict)   # render name → output path
    error: str = ""
    running: bool = True

    def state(self) -> dict:
        return {"running": self.running, "done": self.done, "total": self.total, "current": self.current,
                "files": self.files, "error": self.error}

    def read(self, line: str) -> None:
        """One line of the child's stderr: a progress or error event (``--progress json``), or plain text."""
        try:
            event = json.loads(line)
        except ValueError:
            event = {"event": "text", "message": line}
        if not isinstance(event, dict):
            return
        if event.get("event") == "progress":
            self.done, self.total, self.current = int(event["done"]), int(event["total"]), str(event["task"])
        elif event.get("event") == "error":
            self.error = str(event.get("message", ""))


def start_render(scene_file: Path, out: Path, cache_dir: Path, device: str) -> RenderRun:
    """Run ``morph render SCENE --out OUT --cache CACHE --device DEVICE --progress json --json`` (the command
    itself, so the result is exactly its file): its stderr's JSON lines give the frame counts, its stdout's
    report the files written."""
    job = RenderRun(out)
    proc = subprocess.Popen([sys.executable, "-m", "morph.cli", "render", str(scene_file), "--out", str(out),
                             "--cache", str(cache_dir), "--device", device, "--progress", "json", "--json"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    report: list[str] = []

    def follow() -> None:
        reader = threading.Thread(target=lambda: report.append(proc.stdout.read()), daemon=True)
        reader.start()
        last = ""
        for line in proc.stderr:
            if line.strip():
                last = line.strip()
                job.read(last)
        reader.join()
        code = proc.wait()
        try:
            job.files = {r["render"]: r["path"] for r in json.loads("".join(report) or "{}").get("renders", [])}
        except (ValueError, KeyError, TypeError, AttributeError):
            job.files = {}
        if code and not job.error:
            job.error = last or f"morph render exited {code}"
        job.running = False

    threading.Thread(target=follow, daemon=True).start()
    return job
