"""Model and direction names → files: ``builtin`` → the shipped weights, an ``https://`` URL or one of NVIDIA's published
networks by short name (``ffhq``) → a file downloaded once into the cache, else a path relative to where it
was written.

This is the one place that turns what a user writes after ``model:`` / ``--model`` into a file on
disk; the network packages never look up names themselves. A downloaded file goes through the same
safe readers as a local one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

from morph.builtin import builtin_path, direction_path
from morph.core.errors import CheckpointError, MorphError
from morph.core.files import file_sha256
from morph.models.download import check_pin, download, is_url

BUILTIN = "builtin"
_ADA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"
_NGC = "https://api.ngc.nvidia.com/v2/models/nvidia/research/{family}/versions/1/files/{name}.pkl"
# NVIDIA's published generators, from the READMEs of stylegan2-ada-pytorch (its "pretrained" folder) and
# stylegan3 (the NGC files, StyleGAN3 -t/-r and the StyleGAN2 ones "compatible with this codebase").
# No checksums here: NVIDIA publishes none; the first download records the file's sha256 beside it.
PUBLISHED: dict[str, str] = {
    **{name: f"{_ADA}{name}.pkl" for name in
       ("ffhq", "metfaces", "afhqcat", "afhqdog", "afhqwild", "cifar10", "brecahad")},
    **{name: _NGC.format(family="stylegan3", name=name) for name in (
        "stylegan3-t-ffhq-1024x1024", "stylegan3-t-ffhqu-1024x1024", "stylegan3-t-ffhqu-256x256",
        "stylegan3-r-ffhq-1024x1024", "stylegan3-r-ffhqu-1024x1024", "stylegan3-r-ffhqu-256x256",
        "stylegan3-t-metfaces-1024x1024", "stylegan3-t-metfacesu-1024x1024",
        "stylegan3-r-metfaces-1024x1024", "stylegan3-r-metfacesu-1024x1024",
        "stylegan3-t-afhqv2-512x512", "stylegan3-r-afhqv2-512x512")},
    **{name: _NGC.format(family="stylegan2", name=name) for name in (
        "stylegan2-ffhq-1024x1024", "stylegan2-ffhq-512x512", "stylegan2-ffhq-256x256",
        "stylegan2-ffhqu-1024x1024", "stylegan2-ffhqu-256x256",
        "stylegan2-metfaces-1024x1024", "stylegan2-metfacesu-1024x1024", "stylegan2-afhqv2-512x512",
        "stylegan2-afhqcat-512x512", "stylegan2-afhqdog-512x512", "stylegan2-afhqwild-512x512",
        "stylegan2-brecahad-512x512", "stylegan2-cifar10-32x32",
        "stylegan2-celebahq-256x256", "stylegan2-lsundog-256x256")},
}
# The VGG16 (with LPIPS) that stylegan2-ada-pytorch's projector downloads: ``--vgg auto``.
VGG16_URL = f"{_ADA}metrics/vgg16.pt"


def is_builtin(model: str | os.PathLike | None) -> bool:
    """True for the model names that mean the built-in generator (``builtin``, any case)."""
    return isinstance(model, str) and model.strip().lower() == BUILTIN


def published_url(name: str) -> Optional[str]:
    """The URL of NVIDIA's published network ``name`` (``ffhq``, ``stylegan3-r-afhqv2-512x512``, any case)."""
    return PUBLISHED.get(name.strip().lower()) if isinstance(name, str) else None


def model_url(model: str | os.PathLike, base: Path = Path(".")) -> Optional[str]:
    """The address ``model`` is downloaded from: itself if it is a URL, a published network's for its short name
    (unless a file of that name exists at ``base``), else None."""
    if is_url(model):
        return str(model).strip()
    url = published_url(model) if isinstance(model, str) else None
    return url if url and not (base / Path(model).expanduser()).exists() else None


def resolve_model(model: str | os.PathLike, base: Path = Path("."), sha256: Optional[str] = None,
                  cache_dir: Optional[Path] = None, quiet: bool = False) -> Path:
    """The file a model spec names: ``builtin`` → the shipped generator (a one-line error if this install
    lacks it), a URL or a published network's name → its download in ``cache_dir`` (fetched on first use,
    checked against ``sha256`` if given), ``~`` expanded, a relative path taken from ``base`` (a scene's folder)."""
    if is_builtin(model):
        path = builtin_path("generator")
        if not path.is_file():
            raise CheckpointError("the built-in generator's weights are not installed", path,
                                  "reinstall morph, or train them: python -m morph.training.train_generator")
    elif (url := model_url(model, base)) is not None:
        return download(url, cache_dir, sha256, quiet)
    elif isinstance(model, str) and "://" in model:
        raise MorphError(f"unsupported address {model!r}", "model", "give an https:// or http:// URL, or a file")
    else:
        path = Path(model).expanduser()
        path = path if path.is_absolute() else base / path
    if sha256 is not None and path.is_file():
        verify_sha256(path, sha256)
    return path


def is_builtin_file(path: str | os.PathLike) -> bool:
    """Whether a checkpoint path is the shipped built-in generator."""
    return Path(path).resolve() == builtin_path("generator").resolve()


def resolve_direction(spec: str | os.PathLike, base: Path = Path(".")) -> Path:
    """The file a direction spec names: ``builtin:NAME`` → the shipped direction (a one-line error listing
    the ones there are), else a path relative to ``base``."""
    if isinstance(spec, str) and spec.startswith(f"{BUILTIN}:"):
        return direction_path(spec.split(":", 1)[1])
    path = Path(spec).expanduser()
    return path if path.is_absolute() else base / path


def resolve_vgg(paths: Sequence[str | os.PathLike], cache_dir: Optional[Path] = None,
                quiet: bool = False) -> list[str | os.PathLike]:
    """``--vgg`` as files: ``auto`` → NVIDIA's ``vgg16.pt`` (the VGG16 + LPIPS file stylegan2-ada-pytorch's projector
    downloads), fetched once into the cache like a model; anything else is passed on as written.

    That file is TorchScript; :mod:`morph.projection.vgg` reads only its weights (through
    :func:`morph.checkpoints.torchscript.read_torchscript` and the allow-list unpickler, ``code/`` never opened) and
    computes LPIPS with morph's own VGG16. Its sha256 is recorded at the first download; NVIDIA publishes
    none to pin.
    """
    if [str(p) for p in paths] != ["auto"]:
        if "auto" in map(str, paths):
            raise MorphError("auto stands alone: it fetches NVIDIA's vgg16.pt", "--vgg",
                             "give --vgg auto, or the files themselves")
        return list(paths)

    return [download(VGG16_URL, cache_dir, quiet=quiet)]


def verify_sha256(path: Path, sha256: str) -> None:
    """MorphError unless the file at ``path`` has the pinned ``sha256``."""
    pin = check_pin(sha256, path)
    digest = file_sha256(path)
    if digest != pin:
        raise MorphError(f"sha256 is {digest}, the pin says {pin}", path, "fix the pin, or point at the right file")


__all__ = ["BUILTIN", "PUBLISHED", "VGG16_URL", "is_builtin", "is_builtin_file", "model_url", "published_url", "resolve_model",
           "resolve_direction", "resolve_vgg", "verify_sha256"]
