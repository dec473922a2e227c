"""A validated scene as data: its renders, latents and directions, the words of the scene language, and
the error that lists every problem of a file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from morph.core.errors import MorphError
from morph.motion.latents import Latent, ModelDims
from morph.motion.schedule import Motion
from morph.render.canvas import Canvas
from morph.render.encode import FORMATS, Encoding

DEFAULT_FPS = {fmt: 25 if fmt == "gif" else 30 for fmt in FORMATS}  # output format → default fps
TOP_KEYS = ("model", "sha256", "encoder", "identity", "tune", "truncation", "truncation_cutoff", "noise", "audio",
            "directions", "latents", "renders")
IDENTITY_KEYS = ("file", "weight")
RENDER_KEYS = ("format", "fps", "size", "path", "around", "loop", "transition", "hold", "duration", "deform", "breathe",
               "audio", "add", "camera", "canvas", "codec", "pixel_format", "quality")
ENCODING_KEYS = ("codec", "pixel_format", "quality")  # a video render's encoder choices
QUALITY_KEYS = ("crf", "bitrate", "preset")
TRANSITION_KEYS = ("duration", "interp", "ease", "on", "every")
STEP_KEYS = ("duration", "hold", "ease", "camera")
POSE_KEYS = ("translate", "rotate")                 # a keyframe's camera
CAMERA_KEYS = POSE_KEYS + ("orbit", "swing")        # a render's camera
ORBIT_KEYS = ("radius", "period")
SWING_KEYS = ("degrees", "period")
CAMERA_FAMILIES = ("stylegan3",)                    # families whose input a camera can move
DEFORM_KEYS = ("layers", "amplitude", "period", "seed", "follow")
BREATHE_KEYS = ("direction", "strength", "period", "layers", "follow")
FOLLOW_KEYS = ("feature", "range", "attack", "release")
PUSH_KEYS = ("strength", "layers", "follow")
FOLLOW_DEFAULTS = {"attack": 0.02, "release": 0.25}  # seconds: a quick rise, a visible decay
DEFAULTS = {"transition": 1.0, "interp": "lerp", "ease": "in-out", "hold": 0.0, "period": 4.0, "amplitude": 0.5,
            "truncation": 1.0}
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")



def range_text(r: range) -> str:
    """``5`` or ``0-7``: a layer range as a scene writes it."""
    return str(r.start) if len(r) == 1 else f"{r.start}-{r.stop - 1}"


def runs(values: tuple) -> list[range]:
    """Maximal runs of equal consecutive values."""
    starts = [i for i in range(len(values)) if i == 0 or values[i] != values[i - 1]]
    return [range(a, b) for a, b in zip(starts, starts[1:] + [len(values)])]


class SceneError(MorphError):
    """Every problem found in a scene file, one ``file:line:col: key.path: what`` line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(problems[0])

    def __str__(self) -> str:
        return "\n".join(self.problems)


@dataclass(frozen=True)
class Render:
    """One output file: its format, fps, square size in pixels, and motion."""

    name: str
    format: str
    fps: float
    size: int
    motion: Motion
    where: str
    audio: Optional[Path] = None   # sound track muxed into the video, cut to its length
    canvas: Optional[Canvas] = None  # a frame other than size × size (morph.render.canvas); size is its square's side
    encoding: Encoding = Encoding()  # codec, pixel format and quality of an mp4 / webm / mov render

    @property
    def frames(self) -> int:
        """Number of frames."""
        return self.motion.frames

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return self.frames / self.fps

    @property
    def frame(self) -> str:
        """The frame as ``morph check`` shows it: ``512x512``, or a canvas (``910x512 widen``)."""
        return self.canvas.describe() if self.canvas else f"{self.size}x{self.size}"


@dataclass(frozen=True)
class Option:
    """One ``key: value`` of ``tune:``, whose keys and values the projection layer knows and checks
    (``morph.projection.scene.tune_settings``); ``where`` is its ``file:line:col: path`` for a problem."""

    key: str
    value: Any                     # a finite number or a name
    where: str


@dataclass(frozen=True)
class Photos:
    """How a scene's ``{project: photo}`` latents are projected and drawn: ``encoder:`` (auto, none or a file),
    ``identity:`` (an ArcFace file and the weight of its term in the refinement) and ``tune:`` (None: no
    pivotal tuning; else its options, none for the defaults)."""

    encoder: str = "auto"
    identity: Optional[Path] = None
    identity_weight: float = 0.0
    tune: Optional[tuple[Option, ...]] = None


@dataclass(frozen=True)
class Scene:
    """A validated scene: latents in dependency order, directions as files, renders with frame-exact timing."""

    file: Path
    model: str                     # as written in the file
    model_path: Optional[Path]     # None when dimensions were given instead of read from the model
    dims: ModelDims
    noise: str
    directions: dict[str, Path]    # name (or "builtin:NAME") → file
    latents: dict[str, Latent]
    renders: dict[str, Render]
    photos: Photos = Photos()
