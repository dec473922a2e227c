"""The cache folder: its whole layout and its rules. Every kind of entry has its subfolder here and nowhere else
(``folder``); every cached file (segments, projections) carries a record of its size, content hash and frame
count and is verified before reuse; running renders hold leases that ``--clear`` respects; temp files that
killed processes left behind are swept.

Layout under the root (``$MORPH_CACHE``, else ``$XDG_CACHE_HOME/morph``, else ``~/.cache/morph``)::

    segments/     encoded segments, named by the SHA-256 of everything that decides their pixels
    projections/  projected photos (W+, noise, figures), named by photo, model and settings
    outputs/      one record per output file: what it was rendered from, so an unchanged render is skipped
    audio/        a sound file's analysis, one folder per file SHA-256
    models/       downloads, one folder per URL, beside ``addresses/`` (which URL each folder holds)
    leases/       the segments running renders use

A record is ``NAME.json`` beside ``NAME``, written after the file is complete, so a file without one (a
crash between the two) counts as damaged and is rebuilt, never trusted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterable, Iterator, Optional

from morph.core.errors import MorphError
from morph.core.files import atomic_path, file_sha256
from morph.core.progress import log

SEGMENTS, PROJECTIONS, OUTPUTS, LEASES = "segments", "projections", "outputs", "leases"
AUDIO, MODELS = "audio", "models"
KINDS = (SEGMENTS, PROJECTIONS, OUTPUTS, LEASES, AUDIO, MODELS)
RECORD = ".json"
STALE_SECONDS = 3600          # a temp file untouched this long belongs to a process that is gone
CLEAR_LOCK = ".clear.lock"    # held exclusively while clearing, shared while a render takes its lease


def default_cache_dir() -> Path:
    """``$MORPH_CACHE``, else ``$XDG_CACHE_HOME/morph``, else ``~/.cache/morph``."""
    if os.environ.get("MORPH_CACHE"):
        return Path(os.environ["MORPH_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "morph"


def folder(kind: str, cache_dir: Optional[Path] = None) -> Path:
    """The subfolder that holds entries of ``kind`` (one of ``KINDS``) under ``cache_dir`` (default: the root)."""
    assert kind in KINDS, kind
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / kind


def output_record(cache_dir: Path, dest: Path) -> Path:
    """Where the record of output file ``dest`` lives (keyed by its absolute path)."""
    return folder(OUTPUTS, cache_dir) / (hashlib.sha256(str(dest.resolve()).encode()).hexdigest()[:32] + ".json")


def record_path(path: Path) -> Path:
    """Where the record of cached file ``path`` lives."""
    return path.with_name(path.name + RECORD)


def seal(path: Path, frames: Optional[int] = None) -> None:
    """Record a finished cache file: its size, SHA-256 and (for segments) frame count."""
    st = path.stat()
    with atomic_path(record_path(path)) as tmp:
        tmp.write_text(json.dumps({"bytes": st.st_size, "sha256": file_sha256(path), "frames": frames}))


def damage(path: Path, frames: Optional[int] = None) -> Optional[str]:
    """Why cached file ``path`` cannot be reused (None when it is whole and, if given, holds ``frames``)."""
    try:
        record = json.loads(record_path(path).read_text())
        size, digest, held = int(record["bytes"]), str(record["sha256"]), record.get("frames")
    except FileNotFoundError:
        return "it has no record"
    except (OSError, ValueError, KeyError, TypeError):
        return "its record is unreadable"
    actual = path.stat().st_size
    if actual != size:
        return f"{actual} bytes, {size} recorded"
    if frames is not None and held != frames:
        return f"{held} frames recorded, {frames} planned"
    if file_sha256(path) != digest:
        return "its content differs from what was written"
    return None


def remove(path: Path) -> None:
    """Delete a cached file and its record."""
    path.unlink(missing_ok=True)
    record_path(path).unlink(missing_ok=True)


def reusable(path: Path, frames: Optional[int] = None, label: str = "cache") -> bool:
    """True when ``path`` holds a whole cached file; a damaged one is reported in one log line and removed."""
    if not path.is_file():
        record_path(path).unlink(missing_ok=True)
        return False
    why = damage(path, frames)
    if why is None:
        return True
    log(f"{label}: cached {path.parent.name}/{path.name[:16]}… is damaged ({why}); removed, making it again")
    remove(path)
    return False


# --- leases ----------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _locked(path: Path, mode: int) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, mode)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def lease(cache_dir: Path, names: Iterable[str]) -> Iterator[None]:
    """For the block, the cache files ``names`` (of ``segments/``) are in use: ``clear`` leaves them alone.

    The lease is a file locked by this process; one whose lock nobody holds is stale (its process died)."""
    folder = cache_dir / LEASES
    path = folder / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.json"
    with _locked(cache_dir / CLEAR_LOCK, fcntl.LOCK_SH):  # no clear runs while the lease is taken
        folder.mkdir(parents=True, exist_ok=True)
        fh = open(path, "w")
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(json.dumps(sorted(set(names))))
        fh.flush()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        fh.close()


def _leased(cache_dir: Path) -> set[str]:
    """Names held by running renders' leases; stale leases are removed."""
    held: set[str] = set()
    for path in (cache_dir / LEASES).glob("*.json"):
        try:
            with open(path) as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:  # its render is running
                    held.update(json.loads(fh.read() or "[]"))
                    continue
                path.unlink(missing_ok=True)
        except (OSError, ValueError):
            continue
    return held


# --- what is in the cache --------------------------------------------------------------------------------------

def entries(cache_dir: Path, kind: str = SEGMENTS) -> list[Path]:
    """The cached files of ``kind`` (not their records, not temp files)."""
    folder = cache_dir / kind
    return sorted(p for p in folder.glob("*") if p.is_file() and not p.name.startswith(".")
                  and not p.name.endswith(RECORD))


def check_folder(cache_dir: Path) -> None:
    """MorphError in one line unless ``cache_dir`` is a folder (or can become one)."""
    for path in (cache_dir, *(folder(k, cache_dir) for k in KINDS)):
        if path.exists() and not path.is_dir():
            raise MorphError("is a file, not a folder", path, "give --cache a folder, or move the file away")


def clear(cache_dir: Path, older_than_days: Optional[float] = None) -> tuple[int, int, int]:
    """Delete cached segments (those unused for ``older_than_days``, if given), never those a running render
    holds; returns (removed, kept, in use)."""
    cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
    with _locked(cache_dir / CLEAR_LOCK, fcntl.LOCK_EX):
        held = _leased(cache_dir)
        files = entries(cache_dir)
        busy = [p for p in files if p.name in held]
        gone = [p for p in files if p.name not in held and (cutoff is None or p.stat().st_mtime < cutoff)]
        for p in gone:
            remove(p)
    return len(gone), len(files) - len(gone), len(busy)


def verify(cache_dir: Path) -> tuple[int, list[tuple[Path, str]]]:
    """Check every cached segment and projection against its record; the damaged ones are removed.
    Returns (checked, [(file, why)])."""
    bad = []
    files = entries(cache_dir, SEGMENTS) + entries(cache_dir, PROJECTIONS)
    with _locked(cache_dir / CLEAR_LOCK, fcntl.LOCK_EX):
        held = _leased(cache_dir)
        for path in files:
            why = damage(path)
            if why is not None and path.name not in held:
                remove(path)
                bad.append((path, why))
    return len(files), bad


def sweep(cache_dir: Path, out_folders: Iterable[Path] = (), now: Optional[float] = None) -> int:
    """Remove temp files and folders that killed processes left (``.*.part`` in the cache and output folders,
    ``morph-*`` in the system temp folder) once untouched for ``STALE_SECONDS``; returns how many."""
    now = time.time() if now is None else now
    folders = [cache_dir / k for k in (SEGMENTS, PROJECTIONS, OUTPUTS)] + list(out_folders)
    candidates = [p for f in folders for p in f.glob(".*.part")]
    candidates += list(Path(tempfile.gettempdir()).glob("morph-join-*")) + \
        list(Path(tempfile.gettempdir()).glob("morph-segment-*"))
    removed = 0
    for path in candidates:
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime < STALE_SECONDS:
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed += 1
    return removed
