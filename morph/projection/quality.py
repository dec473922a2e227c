"""How close a projection came, per photo: PSNR; LPIPS when VGG weights are given; the identity similarity
of dlib's face-recognition descriptors for real photos (``morph[align]``); on the built-in model, the
attributes its classifier reads the same way in the photo and the reconstruction.

Identity: dlib's ResNet descriptor (``dlib_face_recognition_resnet_model_v1.dat``, CC0, shipped in
``face_recognition_models``) of the aligned photo and of the reconstruction; the figure is their cosine
similarity, and their Euclidean distance is reported too (dlib calls faces the same person below 0.6).
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from morph.builtin import load_builtin_classifier
from morph.projection.align import _dlib_models, _predictor_path
from morph.projection.arcface import identity_features
from morph.projection.losses import make_distance

IDENTITY_SAME = 0.6  # dlib's distance threshold for "same person"


def _recognition_path() -> Optional[Path]:
    """dlib's face-recognition model inside ``face_recognition_models`` (found without importing that package)."""
    landmarks = _predictor_path()
    path = landmarks.with_name("dlib_face_recognition_resnet_model_v1.dat") if landmarks else None
    return path if path is not None and path.is_file() else None


def identity_available() -> bool:
    """Whether dlib and its face-recognition model are installed."""
    return importlib.util.find_spec("dlib") is not None and _recognition_path() is not None


@lru_cache(maxsize=1)
def _recognizer():
    import dlib

    return dlib.face_recognition_model_v1(str(_recognition_path()))


def face_descriptor(image: np.ndarray) -> Optional[np.ndarray]:
    """dlib's 128-d descriptor of the largest face in uint8 RGB [H, W, 3]; None when no face is found."""
    detector, predictor = _dlib_models()
    image = np.ascontiguousarray(image)
    rects = list(detector(image, 1))
    if not rects:
        return None
    rect = max(rects, key=lambda r: r.width() * r.height())
    return np.array(_recognizer().compute_face_descriptor(image, predictor(image, rect)))


def identity(photo: np.ndarray, recon: np.ndarray) -> Optional[dict[str, float]]:
    """{"identity": cosine similarity, "identity_distance": Euclidean distance} of the two faces' descriptors;
    None when either has no face dlib can find."""
    a, b = face_descriptor(photo), face_descriptor(recon)
    if a is None or b is None:
        return None
    return {"identity": float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))),
            "identity_distance": float(np.linalg.norm(a - b))}


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Peak signal-to-noise ratio (dB) of uint8 image pairs [N, H, W, C]."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(axis=1)
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))


def attribute_agreement(classifier, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pair, the share of the classifier's binary attributes it reads the same way (p > 0.5) in both."""
    pa, pb = classifier.predict(a)["probs"], classifier.predict(b)["probs"]
    return ((pa > 0.5) == (pb > 0.5)).mean(axis=1)


def lpips_scores(targets: np.ndarray, recon: np.ndarray, vgg: Sequence[str | os.PathLike]) -> np.ndarray:
    """LPIPS per pair of uint8 images [N, H, W, C] with the ``--vgg`` weights."""
    def tensor(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1
        return t.repeat(1, 3, 1, 1) if t.shape[1] == 1 else t

    with torch.no_grad():
        return make_distance("lpips", torch.device("cpu"), vgg)(tensor(targets))(tensor(recon)).numpy()


def figures(targets: np.ndarray, recon: np.ndarray, builtin: bool, vgg: Sequence[str | os.PathLike] = (),
            real: bool = True, arcface=None) -> list[dict[str, Any]]:
    """Per photo: ``psnr``; ``lpips`` (with ``vgg``); ``identity`` and ``identity_distance`` for ``real``
    photos when dlib is installed (None where no face was found), or with ``arcface`` (a loaded
    :class:`morph.projection.arcface.ArcFace`, ``--identity``) ``identity`` as pSp measures it and
    ``identity_model: "arcface"``; ``attributes_agreeing`` of ``attributes`` on the ``builtin`` model."""
    out: list[dict[str, Any]] = [{"psnr": float(s)} for s in psnr(targets, recon)]
    if vgg:
        for row, d in zip(out, lpips_scores(targets, recon, vgg)):
            row["lpips"] = float(d)
    if builtin:
        clf = load_builtin_classifier()
        count = len(clf.attributes)
        for row, share in zip(out, attribute_agreement(clf, targets, recon)):
            row["attributes_agreeing"], row["attributes"] = round(share * count), count
    elif arcface is not None:
        fa, fb = identity_features(arcface, targets), identity_features(arcface, recon)
        for row, a, b in zip(out, fa, fb):
            row["identity"], row["identity_model"] = float(a @ b), "arcface"
    elif real and identity_available():
        for row, a, b in zip(out, targets, recon):
            row.update(identity(a, b) or {"identity": None})
    return out


__all__ = ["IDENTITY_SAME", "attribute_agreement", "face_descriptor", "figures", "identity", "identity_available",
           "lpips_scores", "psnr"]
