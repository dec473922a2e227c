"""``morph compare A B``: how alike two face photos are, measured as the inversion papers measure it.

Both photos are FFHQ-aligned to 256×256 (the encoders' and identity network's input; ``align=False``: only
resized) and compared there: PSNR, LPIPS (with VGG weights) and identity similarity, ArcFace IR-SE50's as pSp's
identity loss computes it (:mod:`morph.projection.arcface`) when its weights are given, else the cosine of
dlib's face descriptors (when dlib is installed); a figure that cannot be measured is None, with the reason.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np

from morph.projection.align import aligned_face
from morph.projection.arcface import identity_features, load_arcface
from morph.projection.quality import identity, identity_available, lpips_scores, psnr

SIZE = 256


def compare(a: str | os.PathLike, b: str | os.PathLike, arcface: Optional[str | os.PathLike] = None,
            vgg: Sequence[str | os.PathLike] = (), align: bool = True, face: Optional[int] = None) -> dict[str, Any]:
    """``{"psnr", "lpips", "identity", "identity_model", "notes"}`` for photos ``a`` and ``b`` (see the module doc)."""
    faces = np.stack([aligned_face(p, SIZE, align, face) for p in (a, b)])
    row: dict[str, Any] = {"psnr": float(psnr(faces[:1], faces[1:])[0]), "lpips": None, "identity": None,
                           "identity_model": None, "notes": []}
    if vgg:
        row["lpips"] = float(lpips_scores(faces[:1], faces[1:], vgg)[0])
    else:
        row["notes"].append("LPIPS needs VGG weights (--vgg auto)")
    if arcface is not None:
        features = identity_features(load_arcface(arcface), faces)
        row["identity"], row["identity_model"] = float(features[0] @ features[1]), "arcface"
    elif identity_available():
        found = identity(faces[0], faces[1])
        row["identity_model"] = "dlib"
        if found is None:
            row["notes"].append("dlib finds no face in one of the aligned photos")
        else:
            row["identity"] = found["identity"]
    else:
        row["notes"].append("identity needs --identity model_ir_se50.pth, or dlib (pip install 'morph-gan[align]')")
    return row


def lines(row: dict[str, Any]) -> list[str]:
    """The figures, one line each, as ``morph compare`` prints them."""
    model = {"arcface": "ArcFace IR-SE50, pSp's crop", "dlib": "dlib descriptors, cosine"}.get(row["identity_model"])
    return [f"psnr      {row['psnr']:.2f} dB",
            f"lpips     {row['lpips']:.4f}" if row["lpips"] is not None else "lpips     not measured",
            f"identity  {row['identity']:.4f} ({model})" if row["identity"] is not None else "identity  not measured",
            *(f"note      {n}" for n in row["notes"])]


__all__ = ["compare", "lines"]
