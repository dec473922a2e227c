"""Photos → square face crops framed as the FFHQ data set was made (eye and mouth landmarks → an oriented,
padded square), so a projection sees faces where the generator draws them.

Landmarks come from dlib's 68-point shape predictor (the optional ``morph[align]`` extra: ``dlib-bin``
plus the CC0 model file in ``face_recognition_models``). Images are decoded by the ffmpeg that
``imageio-ffmpeg`` ships, so no imaging library is needed.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from morph.core.errors import MorphError
from morph.render.images import read_image

ALIGN_HINT = "pip install 'morph[align]', or pass --no-align for images that are already aligned faces"


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W, 3] → [size, size, 3], antialiased bilinear (the caller makes it square first)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def center_square(image: np.ndarray, size: int) -> np.ndarray:
    """The central square of an image, resized to ``size`` (as NVIDIA's projector prepares its target)."""
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return resize(image[top:top + s, left:left + s], size)


# --- landmarks -------------------------------------------------------------------------------------------------

def _predictor_path() -> Optional[Path]:
    """The 68-point model file inside ``face_recognition_models`` (found without importing it: its
    ``__init__`` needs ``pkg_resources``, which new setuptools no longer has)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def _dlib_models():
    """(face detector, landmark predictor), loaded once; MorphError naming the extra when missing."""
    predictor = _predictor_path()
    if importlib.util.find_spec("dlib") is None or predictor is None:
        raise MorphError("face alignment needs dlib and its landmark model, which are not installed",
                         hint=ALIGN_HINT)
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor))


def face_landmarks(image: np.ndarray, where: str | os.PathLike, face: Optional[int] = None) -> np.ndarray:
    """68 (x, y) landmarks [68, 2] of the largest face, or of face number ``face`` (1 = leftmost)."""
    detector, predictor = _dlib_models()
    try:  # small faces need the image upsampled, which also finds more false faces: only if nothing else
        rects = list(detector(image, 0)) or list(detector(image, 1))
    except RuntimeError as e:
        raise MorphError(f"face detection failed ({e})", where=where) from None
    if not rects:
        raise MorphError("no face found", where=where, hint="use a sharper, frontal photo, or --no-align if the "
                                                            "image is already an aligned face")
    if face is None:
        rect = max(rects, key=lambda r: r.width() * r.height())
    else:
        rects.sort(key=lambda r: r.left())
        if not 1 <= face <= len(rects):
            raise MorphError(f"--face {face}: the photo has {len(rects)} face(s)", where=where,
                             hint=f"give 1 to {len(rects)}, counted from the left")
        rect = rects[face - 1]
    shape = predictor(image, rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


# --- the FFHQ crop ---------------------------------------------------------------------------------------------

def ffhq_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FFHQ's crop from 68 landmarks: centre ``c`` and half-axes ``x`` (rightwards), ``y`` (downwards) of an
    oriented square; eye-to-eye and eye-to-mouth vectors set its angle and size, as NVIDIA made the data set."""
    eye_left, eye_right = landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)
    mouth_avg = (landmarks[48] + landmarks[54]) / 2
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye, eye_to_mouth = eye_right - eye_left, mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x = x / np.hypot(*x) * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    return eye_avg + eye_to_mouth * 0.1, x, y


def warp_square(image: np.ndarray, c: np.ndarray, x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """Resample the oriented square (centre ``c``, half-axes ``x``, ``y``) to ``size``² pixels; the image is
    first shrunk by area averaging when the square is much larger (no aliasing), and mirrored at its edges
    (FFHQ pads with reflections, too)."""
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    shrink = int(np.floor(np.hypot(*x) * 2 / size * 0.5))
    if shrink > 1:
        img = F.avg_pool2d(img, shrink, ceil_mode=True)
        c, x, y = (c + 0.5) / shrink - 0.5, x / shrink, y / shrink
    h, w = img.shape[2:]
    # Output pixel centres at 2× the size, then averaged down by 2: a 2×2 supersample per pixel.
    s = (torch.arange(2 * size, dtype=torch.float64) + 0.5) / (2 * size) * 2 - 1
    v, u = torch.meshgrid(s, s, indexing="ij")
    px = c[0] + u * x[0] + v * y[0]
    py = c[1] + u * x[1] + v * y[1]
    grid = torch.stack([(px + 0.5) / w * 2 - 1, (py + 0.5) / h * 2 - 1], dim=-1)[None].float()
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    out = F.avg_pool2d(out, 2)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def aligned_face(path: str | os.PathLike, size: int, align: bool = True, face: Optional[int] = None) -> np.ndarray:
    """The photo at ``path`` as a uint8 [size, size, 3] face crop: FFHQ-aligned, or (``align=False``) its
    central square resized."""
    image = read_image(path)
    if not align:
        return center_square(image, size)
    return warp_square(image, *ffhq_frame(face_landmarks(image, path, face)), size)
