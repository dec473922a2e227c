"""Latent directions: a linear SVM's unit normal on labelled latents (InterFaceGAN's recipe, in W or W+),
GANSpace-style PCA of mapped samples, conditional edits, and direction files with a JSON sidecar.

scikit-learn is imported inside the two functions that fit with it: it is slow to import, and most commands
that read direction files never fit one.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np
import torch

from morph.core.arrays import npz_names, read_arrays, require_finite
from morph.core.errors import MorphError
from morph.core.files import atomic_path
from morph.core.model import Noise
from morph.motion.latents import SPACES, finite_float32, map_z, read_w, z_from_seed
from morph.render.job import generate

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
LATENTS_FILE, Z_FILE, SCORES_FILE = "latents.npy", "z.npy", "scores.npz"  # what ``morph sample`` writes


@dataclass(frozen=True)
class Fit:
    """A trained direction: its unit normal (``[w_dim]`` or ``[num_ws, w_dim]``) and how well it separates."""

    direction: np.ndarray
    accuracy: float      # on the held-out validation samples
    positives: int       # samples used per class
    negatives: int
    validation: int      # how many of them were held out


# --- training --------------------------------------------------------------------------------------------------

def as_space(latents: np.ndarray, space: str) -> np.ndarray:
    """Latents as SVM features: W ``[N, w_dim]`` stays; W+ ``[N, num_ws, w_dim]`` is flattened. A W+ stack
    whose layers are all equal (mapped, untruncated samples) counts as W."""
    x = np.asarray(latents, dtype=np.float64)
    if space not in SPACES:
        raise MorphError(f"unknown latent space {space!r}", hint="use w or w+")
    if x.ndim == 3 and space == "w":
        if not np.allclose(x, x[:, :1], atol=1e-6):
            raise MorphError("the latents differ between layers (W+), so they cannot train a W direction",
                             hint="use --space w+")
        x = x[:, 0]
    if x.ndim == 2 and space == "w+":
        raise MorphError("the latents are W ([N, w_dim]), so they cannot train a W+ direction",
                         hint="use --space w, or latents of shape [N, num_ws, w_dim]")
    if x.ndim not in (2, 3):
        raise MorphError(f"latents have shape {list(x.shape)}; expected [N, w_dim] or [N, num_ws, w_dim]")
    return x.reshape(len(x), -1)


def extremes(scores: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the highest and the lowest ``ratio`` fraction of ``scores`` (a count if ``ratio`` > 1),
    InterFaceGAN's way of keeping only confidently labelled samples."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    count = int(ratio) if ratio > 1 else int(len(scores) * ratio)
    if ratio <= 0 or count < 2 or 2 * count > len(scores):
        raise MorphError(f"ratio {ratio:g} of {len(scores)} samples keeps {count} per side; "
                         "need at least 2 per side and no overlap", hint="sample more latents or change --ratio")
    order = np.argsort(-scores, kind="stable")
    return order[:count], order[-count:]


def fit_normal(positive: np.ndarray, negative: np.ndarray, split: float = 0.7, seed: int = 0) -> tuple[np.ndarray, float, int]:
    """A linear SVM between two sets of feature rows: (unit normal pointing to ``positive``, validation accuracy,
    validation count). Each class is shuffled and split ``split``/``1 - split`` into training and validation."""
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(seed)
    parts = []
    for rows, label in ((positive, 1), (negative, 0)):
        rows = rows[rng.permutation(len(rows))]
        cut = max(1, min(len(rows) - 1, int(round(len(rows) * split)))) if split < 1 else len(rows)
        parts.append((rows[:cut], rows[cut:], label))
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([np.full(len(p[0]), p[2]) for p in parts])
    x_val = np.concatenate([p[1] for p in parts])
    y_val = np.concatenate([np.full(len(p[1]), p[2]) for p in parts])
    svm = LinearSVC(C=1.0, dual="auto", max_iter=20000).fit(x_train, y_train)
    normal = svm.coef_.reshape(-1)
    norm = np.linalg.norm(normal)
    if not np.isfinite(norm) or norm == 0:
        raise MorphError("the SVM found no separating direction (the two sets are identical?)")
    accuracy = float((svm.predict(x_val) == y_val).mean()) if len(x_val) else float("nan")
    return normal / norm, accuracy, len(x_val)


def train_labelled(positive: np.ndarray, negative: np.ndarray, split: float = 0.7, space: str = "w",
                   seed: int = 0) -> Fit:
    """The direction from latents labelled positive to latents labelled negative (e.g. two sorted folders)."""
    if len(positive) < 2 or len(negative) < 2:
        raise MorphError(f"{len(positive)} positive and {len(negative)} negative samples; need at least 2 of each")
    pos, neg = as_space(positive, space), as_space(negative, space)
    normal, accuracy, n_val = fit_normal(pos, neg, split, seed)
    shape = np.asarray(positive).shape[1:] if space == "w+" else np.asarray(positive).shape[-1:]
    return Fit(normal.reshape(shape).astype(np.float32), accuracy, len(pos), len(neg), n_val)


def train_svm(latents: np.ndarray, scores: np.ndarray, ratio: float = 0.02, split: float = 0.7, space: str = "w",
              seed: int = 0) -> Fit:
    """InterFaceGAN's recipe: sort by score, keep the top and bottom ``ratio`` as positives and negatives,
    fit a linear SVM on ``split`` of them, report accuracy on the rest; the unit normal is the direction."""
    latents = np.asarray(latents)
    if len(latents) != len(np.asarray(scores).reshape(-1)):
        raise MorphError(f"{len(latents)} latents but {len(np.asarray(scores).reshape(-1))} scores")
    top, bottom = extremes(scores, ratio)
    return train_labelled(latents[top], latents[bottom], split, space, seed)


# --- hand-sorted folders ---------------------------------------------------------------------------------------

def folder_indices(folder: str | os.PathLike) -> np.ndarray:
    """Sample indices of the images in ``folder``, from their names (``000042.png`` as ``morph sample`` wrote it)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MorphError("no such folder", where=folder)
    indices = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        match = re.match(r"(\d+)", path.stem)
        if not match:
            raise MorphError("the image's name does not start with its sample index", where=path,
                             hint="keep the names morph sample wrote (000042.png)")
        indices.append(int(match.group(1)))
    if not indices:
        raise MorphError("holds no images", where=folder, hint="sort the images morph sample wrote into it")
    return np.array(sorted(set(indices)))


def train_folders(latents: np.ndarray, positive: str | os.PathLike, negative: str | os.PathLike,
                  split: float = 0.7, space: str = "w", seed: int = 0) -> Fit:
    """A direction from images sorted by hand into a ``positive`` and a ``negative`` folder; ``latents``
    holds the samples' latents in index order."""
    pos, neg = folder_indices(positive), folder_indices(negative)
    both = np.intersect1d(pos, neg)
    if len(both):
        raise MorphError(f"samples {', '.join(map(str, both[:5]))} are in both folders", where=negative)
    high = max(pos.max(), neg.max())
    if high >= len(latents):
        raise MorphError(f"sample {high} is out of range: the latents file holds {len(latents)}")
    return train_labelled(latents[pos], latents[neg], split, space, seed)


# --- PCA -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Components:
    """Principal directions of W: unit ``vectors`` [k, w_dim], their ``ratio`` of the variance and the samples'
    ``std`` along each."""

    vectors: np.ndarray
    ratio: np.ndarray
    std: np.ndarray


def pca(ws: np.ndarray | Iterable[np.ndarray], k: int, batch: int = 10000) -> Components:
    """GANSpace-style PCA of W samples ``[N, w_dim]`` (an array, or an iterable of batches for large N),
    fitted incrementally; components sorted by explained variance."""
    from sklearn.decomposition import IncrementalPCA

    batches = _chunks(ws, batch) if isinstance(ws, np.ndarray) else iter(ws)
    model = IncrementalPCA(n_components=k)
    pending: Optional[np.ndarray] = None  # each partial_fit needs at least k rows: small batches are merged
    for chunk in batches:
        chunk = np.asarray(chunk, dtype=np.float64).reshape(len(chunk), -1)
        if pending is not None and len(pending) >= k and len(chunk) >= k:
            model.partial_fit(pending)
            pending = chunk
        else:
            pending = chunk if pending is None else np.concatenate([pending, chunk])
    if pending is None or len(pending) < k:
        raise MorphError(f"{0 if pending is None else len(pending)} samples cannot give {k} components",
                         hint="sample more (--n)")
    model.partial_fit(pending)
    return Components(model.components_.astype(np.float32), model.explained_variance_ratio_,
                      np.sqrt(model.explained_variance_))


def _chunks(array: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(array), size):
        yield array[start:start + size]


# --- conditional edits -----------------------------------------------------------------------------------------

def condition(primary: np.ndarray, others: Sequence[np.ndarray], eps: float = 1e-6) -> np.ndarray:
    """``primary`` made orthogonal to every direction in ``others`` (Gram-Schmidt on them, then their span
    removed) and renormalised: the edit that leaves the conditioned attributes alone, to first order."""
    primary = np.asarray(primary, dtype=np.float64)
    shape = _direction_shape(primary)
    basis: list[np.ndarray] = []
    for other in others:
        other = np.asarray(other, dtype=np.float64)
        if _direction_shape(other) != shape:
            raise MorphError(f"cannot condition a direction of shape {list(shape)} on one of shape "
                             f"{list(_direction_shape(other))}", hint="use directions of the same space (W or W+)")
        v = other.reshape(-1)
        for b in basis:
            v = v - (v @ b) * b
        if np.linalg.norm(v) > eps * max(np.linalg.norm(other), 1.0):
            basis.append(v / np.linalg.norm(v))
    d = primary.reshape(-1)
    for b in basis:
        d = d - (d @ b) * b
    norm = np.linalg.norm(d)
    if norm <= eps:
        raise MorphError("the direction lies in the span of the directions it is conditioned on; nothing is left")
    return (d / norm).reshape(shape).astype(np.float32)


def _direction_shape(d: np.ndarray) -> tuple[int, ...]:
    """``[1, w_dim]`` (InterFaceGAN) counts as ``[w_dim]``."""
    return tuple(d.shape[1:]) if d.ndim == 2 and d.shape[0] == 1 else tuple(d.shape)


# --- sampling --------------------------------------------------------------------------------------------------

def seeds_z(seed: int, n: int, z_dim: int) -> np.ndarray:
    """``[n, z_dim]`` float32: sample i is seed ``seed + i`` drawn as NVIDIA's ``generate.py`` does, so a scene
    can name it as ``{seed: SEED+i}``."""
    return np.stack([z_from_seed(seed + i, z_dim)[0].numpy() for i in range(n)]) if n else np.zeros((0, z_dim), np.float32)


def map_batches(G, z: np.ndarray, psi: float = 1.0, batch: int = 4096) -> Iterator[np.ndarray]:
    """W ``[b, w_dim]`` of ``z`` through G's mapping, batch by batch (class 0 of a conditional model)."""
    for start in range(0, len(z), batch):
        yield map_z(G, torch.from_numpy(np.asarray(z[start:start + batch], np.float32)), psi=psi)[:, 0].numpy()


def w_images(G, w: np.ndarray, batch: int = 32, device: torch.device | str = "cpu") -> Iterator[np.ndarray]:
    """uint8 images ``[b, H, W, 3]`` of W latents ``[N, w_dim]`` (every layer the same), batch by batch."""
    ws = torch.from_numpy(np.asarray(w, np.float32)).unsqueeze(1).expand(-1, G.num_ws, -1)
    return generate(G, ws, batch, Noise("const"), torch.device(device))


def strength_sweep(w: torch.Tensor, direction: torch.Tensor, strengths: Sequence[float]) -> torch.Tensor:
    """``[len(strengths), num_ws, w_dim]``: ``w + s·direction`` for each strength (both ``[num_ws, w_dim]``)."""
    s = torch.as_tensor(list(strengths), dtype=w.dtype).view(-1, 1, 1)
    return w.unsqueeze(0) + s * direction.unsqueeze(0)


# --- files -----------------------------------------------------------------------------------------------------

def sidecar(path: str | os.PathLike) -> Path:
    """The metadata file beside an array file: ``smile.npy`` → ``smile.json``."""
    return Path(path).with_suffix(".json")


def save_array(path: str | os.PathLike, array: np.ndarray, meta: Optional[dict] = None) -> Path:
    """Write ``array`` as ``.npy`` and ``meta`` (if given) as its JSON sidecar, each atomically."""
    path = Path(path)
    if path.suffix != ".npy":
        raise MorphError("direction and latent files are written as .npy", where=path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(array))
    if meta is not None:
        with atomic_path(sidecar(path)) as tmp:
            tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=_json_default) + "\n")
    return path


def load_scores(spec: str, latents_path: str | os.PathLike) -> tuple[str, np.ndarray]:
    """(attribute name, ``[N]`` scores) for ``--scores``: a ``.npy`` (or single-array ``.npz``) of one score
    per sample, or the name of an array in the ``scores.npz`` that ``morph sample --classifier`` wrote beside
    the latents."""
    if spec.endswith((".npy", ".npz")):
        return Path(spec).stem, np.asarray(read_w(spec), dtype=np.float64).reshape(-1)
    table = Path(latents_path).with_name(SCORES_FILE)
    if not table.is_file():
        raise MorphError(f"no {SCORES_FILE} beside the latents to take {spec!r} from", where=table.parent,
                         hint="sample with --classifier builtin, or give a .npy of scores")
    try:
        with zipfile.ZipFile(table) as zf:
            names = npz_names(zf)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise MorphError(f"cannot read the scores ({' '.join(str(e).split())})", where=table) from None
    if spec not in names:
        raise MorphError(f"no scores named {spec!r}", where=table, hint=f"choose from {', '.join(names)}")
    scores = read_arrays(table, [spec])[spec]
    require_finite(scores, table, "score")
    return spec, np.asarray(scores, dtype=np.float64)


def spread(latents: np.ndarray, direction: np.ndarray, space: str) -> float:
    """Standard deviation of the latents along a unit ``direction``: how far strength 1 moves, in the data's terms."""
    return float(np.std(as_space(latents, space) @ np.asarray(direction, np.float64).reshape(-1)))


def read_meta(path: str | os.PathLike) -> dict:
    """The JSON sidecar of an array file, or ``{}`` when it has none (directions from elsewhere)."""
    meta = sidecar(path)
    if not meta.is_file():
        return {}
    try:
        return json.loads(meta.read_text())
    except (OSError, ValueError) as e:
        raise MorphError(f"unreadable metadata ({e})", where=meta) from None


def read_direction(path: str | os.PathLike) -> np.ndarray:
    """A direction file in any common shape as float32: ``[w_dim]``, InterFaceGAN's ``[1, w_dim]`` (→ ``[w_dim]``),
    or ``[num_ws, w_dim]`` (e.g. ``*-latent-direction.npy``, ``[18, 512]``)."""
    array = finite_float32(read_w(path), path)
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim not in (1, 2) or not np.isfinite(array).all() or not np.any(array):
        raise MorphError(f"is not a direction (shape {list(array.shape)}, needs [w_dim] or [num_ws, w_dim], "
                         "finite and not all zero)", where=path)
    return array


def train_direction(latents: Path, out: Path, scores: Optional[str] = None, positive: Optional[Path] = None,
                    negative: Optional[Path] = None, space: str = "w", ratio: float = 0.02, split: float = 0.7,
                    conditions: Sequence[Path] = (), seed: int = 0) -> tuple[str, Fit, Path]:
    """``morph directions train``: a linear SVM direction from ``latents`` and their ``scores`` (InterFaceGAN's
    recipe) or from the ``positive`` / ``negative`` folders of hand-sorted samples, made orthogonal to
    ``conditions``, written as ``out/ATTR.npy`` with its metadata. Returns (attribute, fit, file)."""
    if (scores is None) == (positive is None and negative is None) or (positive is None) != (negative is None):
        raise MorphError("give either --scores ATTR or both --positive DIR and --negative DIR", "directions train")
    if not 0 < split <= 1:
        raise MorphError(f"split {split:g} is not in (0, 1]", "--split")
    ws = read_w(latents)
    if scores is not None:
        attribute, values = load_scores(scores, latents)
        fit = train_svm(ws, values, ratio, split, space, seed)
        source = {"method": "svm", "scores": scores, "ratio": ratio}
    else:
        attribute = positive.name
        fit = train_folders(ws, positive, negative, split, space, seed)
        source = {"method": "svm-folders", "positive": str(positive), "negative": str(negative)}
    direction = condition(fit.direction, [read_direction(c) for c in conditions]) if conditions else fit.direction
    dest = out / f"{attribute}.npy"
    save_array(dest, direction, {**source, "attribute": attribute, "space": space, "accuracy": fit.accuracy,
                                 "positives": fit.positives, "negatives": fit.negatives, "validation": fit.validation,
                                 "split": split, "spread": spread(ws, direction, space),
                                 "conditioned_on": [str(c) for c in conditions], "latents": str(latents),
                                 "model_sha256": read_meta(latents).get("model_sha256")})
    return attribute, fit, dest


def _json_default(value):
    """numpy scalars and arrays, and paths, in a sidecar's JSON."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
