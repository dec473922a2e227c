"""What ``morph cache`` shows and does: the segment cache and the downloaded models, each answer a report
(a dict a script reads as JSON) with the lines a person reads."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from morph.core import cache as store
from morph.core.errors import MorphError
from morph.models.download import cached_downloads, cached_path, clear_downloads, models_dir, recorded_sha256
from morph.models.resolver import PUBLISHED


def downloads(root: Path) -> list[dict]:
    """The downloaded models under ``root``: url, path, bytes, sha256."""
    return [{"url": url, "path": str(path), "bytes": path.stat().st_size, "sha256": digest}
            for url, path, digest in cached_downloads(root)]


def cache_report(root: Path, clear: bool = False, older_than: Optional[float] = None, verify: bool = False,
                 models: bool = False) -> tuple[dict, list[str]]:
    """Show, verify or clear the segment cache at ``root`` (with ``models``, the downloads): (report, lines)."""
    store.check_folder(root)
    if older_than is not None and not clear:
        raise MorphError("--older-than applies only with --clear", "--older-than")
    if models:
        return _models_report(root, clear, older_than)
    if verify:
        checked, bad = store.verify(root)
        return ({"folder": str(root), "checked": checked, "removed": [{"path": str(p), "why": why} for p, why in bad]},
                [f"{path}: damaged ({why}); removed" for path, why in bad]
                + [f"{root}: {checked} cached files checked, {len(bad)} damaged and removed"])
    if clear:
        removed, kept, busy = store.clear(root, older_than)
        return ({"folder": str(root), "removed": removed, "kept": kept, "in_use": busy},
                [f"{root}: removed {removed} segments, {kept} left"
                 + (f" ({busy} in use by a running render)" if busy else "")])
    files = store.entries(root)
    size = sum(p.stat().st_size for p in files)
    found = downloads(root)
    lines = [f"{root}: {len(files)} segments, {size / 1e6:.1f} MB"]
    if found:
        lines.append(_models_line(root, found) + " (morph cache --models)")
    return {"folder": str(root), "segments": len(files), "bytes": size, "models": found}, lines


def _models_line(root: Path, found: list[dict]) -> str:
    return f"{models_dir(root)}: {len(found)} downloaded models, {sum(d['bytes'] for d in found) / 1e6:.1f} MB"


def _models_report(root: Path, clear: bool, older_than: Optional[float]) -> tuple[dict, list[str]]:
    """``morph cache --models``: list or clear the downloads under ``root/models``."""
    if clear:
        removed, kept = clear_downloads(root, older_than)
        return ({"folder": str(models_dir(root)), "removed": removed, "kept": kept},
                [f"{models_dir(root)}: removed {removed} downloads, {kept} left"])
    found = downloads(root)
    return ({"folder": str(models_dir(root)), "models": found},
            [_models_line(root, found)] + [f"  {d['bytes'] / 1e6:9.1f} MB  sha256 {d['sha256'] or '?'}  {d['url']}\n"
                                           f"{'':14}-> {d['path']}" for d in found])


def published(cache_dir: Optional[Path] = None) -> list[dict]:
    """``morph fetch --list``: each published network's name and URL, and its file and sha256 if downloaded."""
    rows = []
    for name, url in PUBLISHED.items():
        here = cached_path(url, cache_dir)
        rows.append({"name": name, "url": url, "path": str(here) if here.is_file() else None,
                     "sha256": recorded_sha256(here) if here.is_file() else None})
    return rows


__all__ = ["cache_report", "downloads", "published"]
