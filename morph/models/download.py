"""Files by URL, downloaded once into morph's model cache: resumable, verified, locked, renamed when complete.

Each URL gets a folder ``<cache>/models/<hash of the URL>/`` holding the file under its own name,
``NAME.sha256`` (``sha256sum`` format, recorded at the first download), ``url`` (the address) and,
while a download is unfinished, ``NAME.part``. An interrupted download resumes with an HTTP
``Range`` request (``If-Range`` on the server's ``ETag``/``Last-Modified``) whose ``Content-Range``
must start exactly where the part ends, else it starts over. A per-URL ``flock`` makes concurrent
processes do one download: the others wait and then find the file.

The standard library's ``urllib`` is enough here: one GET with a ``Range`` header is all the HTTP
this needs, and the work that matters (resume validation, locking, hashing, atomic rename) would
be the same on top of ``requests`` or ``httpx``, which would only add a dependency.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import os
import re
import socket
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator, Optional, TextIO

from morph.core import cache
from morph.core.cache import MODELS
from morph.core.errors import MorphError
from morph.core.progress import Progress, log

CHUNK = 1 << 20            # bytes per read; also the progress unit (MiB)
TIMEOUT = 60.0             # seconds without a byte before a connection counts as dead
RETRIES = 3                # automatic resumes after a cut connection, per download
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def is_url(spec: object) -> bool:
    """True for the specs that are downloaded: ``http://`` and ``https://`` addresses."""
    return isinstance(spec, str) and spec.strip().lower().startswith(("https://", "http://"))


def models_dir(cache_dir: Optional[Path] = None) -> Path:
    """Where downloads live: ``<cache>/models`` (the cache is ``cache_dir``, else ``$MORPH_CACHE``, else
    ``~/.cache/morph``)."""
    return cache.folder(cache.MODELS, cache_dir)


def url_folder(url: str, cache_dir: Optional[Path] = None) -> Path:
    """The cache folder of ``url``: one per address, so two URLs with the same file name never collide."""
    return models_dir(cache_dir) / hashlib.sha256(url.encode()).hexdigest()[:16]


def file_name(url: str) -> str:
    """The name a download is stored under: the last path component of ``url`` (``download`` if none)."""
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    name = re.sub(r"[^\w.+-]", "_", name).lstrip(".")
    return name or "download"


def cached_path(url: str, cache_dir: Optional[Path] = None) -> Path:
    """Where ``url``'s file is (or will be) in the cache."""
    return url_folder(url, cache_dir) / file_name(url)


def recorded_sha256(path: Path) -> Optional[str]:
    """The sha256 recorded beside a downloaded file (``NAME.sha256``), or None."""
    try:
        digest = (path.parent / f"{path.name}.sha256").read_text().split()[0].lower()
    except (OSError, IndexError):
        return None
    return digest if _HEX64.match(digest) else None


def check_pin(sha256: Optional[str], where: str) -> Optional[str]:
    """A pinned sha256 normalised to 64 lower-case hex digits; MorphError if it is not one."""
    if sha256 is None:
        return None
    pin = str(sha256).strip().lower().removeprefix("sha256:")
    if not _HEX64.match(pin):
        raise MorphError(f"sha256 {sha256!r} is not 64 hexadecimal digits", where,
                         "copy the full digest that sha256sum prints, or leave the pin out")
    return pin


def _by_hand(url: str, path: Path) -> str:
    return (f"download it by hand (curl -L -o {path.name} '{url}') and give that file's path instead of the URL"
            f" (or put it at {path})")


def _failure(url: str, err: BaseException) -> str:
    """What went wrong with a request, in a few words."""
    if isinstance(err, urllib.error.HTTPError):
        return f"the server answered HTTP {err.code} {err.reason}"
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    host = urllib.parse.urlsplit(url).netloc
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host {urllib.parse.urlsplit(url).hostname} (offline, or a typo in the address?)"
    if isinstance(reason, ConnectionRefusedError):
        return f"the connection to {host} was refused (no server listening there)"
    if isinstance(reason, ssl.SSLError):
        return f"TLS failed with {host} ({' '.join(str(getattr(reason, 'reason', None) or reason).split())[:100]})"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"{host} did not answer within {TIMEOUT:.0f} s"
    return f"the request failed ({type(reason).__name__}: {' '.join(str(reason).split())[:100]})"


@contextlib.contextmanager
def _url_lock(folder: Path, url: str, quiet: bool, stream: Optional[TextIO]) -> Iterator[None]:
    """Hold the per-URL lock; says so when another process holds it and this one waits."""
    lock = folder / ".lock"
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        with open(lock, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not quiet:
                    log(f"waiting for another morph process downloading {url}", stream)
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                if lock.exists() and os.stat(lock).st_ino == os.fstat(fh.fileno()).st_ino:
                    yield
                    return
            finally:  # (a lock file that the holder removed while tidying up is taken again, fresh)
                fcntl.flock(fh, fcntl.LOCK_UN)


def _tidy(folder: Path, dest: Path) -> None:
    """Remove a URL's folder that holds nothing worth keeping (no file, no partial download); under its lock."""
    if dest.exists() or (folder / f"{dest.name}.part").exists():
        return
    for leftover in (folder / f"{dest.name}.part.validator", folder / ".lock"):
        leftover.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


def _content_range(value: Optional[str]) -> Optional[tuple[int, Optional[int]]]:
    """(first byte, total length or None) of a ``Content-Range: bytes A-B/T`` header; None if malformed."""
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    return (int(m.group(1)), None if m.group(3) == "*" else int(m.group(3))) if m else None


class _Cut(Exception):
    """The connection ended before the body did."""


def _fetch_part(url: str, part: Path, validator: Path, progress_label: str, quiet: bool,
                stream: Optional[TextIO]) -> None:
    """Append the rest of ``url`` to ``part`` (resuming from its size when the server allows); _Cut if cut short."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "morph", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        if validator.is_file():
            headers["If-Range"] = validator.read_text().strip()
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=TIMEOUT)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the part is no prefix the server knows: start over
            part.unlink()
            validator.unlink(missing_ok=True)
            return _fetch_part(url, part, validator, progress_label, quiet, stream)
        raise
    with resp:
        total: Optional[int]
        if have and resp.status == 206:
            span = _content_range(resp.headers.get("Content-Range"))
            if span is None or span[0] != have:  # not the bytes asked for: start over
                resp.close()
                part.unlink()
                validator.unlink(missing_ok=True)
                return _fetch_part(url, part, validator, progress_label, quiet, stream)
            total = span[1]
            mode = "ab"
        else:  # 200: the whole file (a first request, or a server that ignored the range)
            have, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            tag = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
            if tag and not tag.startswith("W/"):  # weak ETags may not be used with If-Range
                validator.write_text(tag)
            else:
                validator.unlink(missing_ok=True)
        progress = Progress(progress_label, -(-total // CHUNK) if total else 0, unit="MiB", quiet=quiet,
                            stream=stream)
        done = have
        progress.advance(done // CHUNK)
        try:
            with open(part, mode) as out:
                while True:
                    try:
                        block = resp.read(CHUNK)
                    except (http.client.IncompleteRead, ConnectionError, TimeoutError, socket.timeout) as err:
                        raise _Cut(f"after {done}{f' of {total}' if total else ''} bytes "
                                   f"({type(err).__name__})") from None
                    if not block:
                        break
                    out.write(block)
                    done += len(block)
                    progress.advance(done // CHUNK - progress.done)
        finally:
            progress.close()
        if total is not None and done < total:
            raise _Cut(f"after {done} of {total} bytes")


def download(url: str, cache_dir: Optional[Path] = None, sha256: Optional[str] = None, quiet: bool = False,
             stream: Optional[TextIO] = None, retries: int = RETRIES) -> Path:
    """The cached file of ``url``, downloaded first if it is not there; ``sha256`` pins its content.

    A pin that the file does not match is refused (MorphError) and a file this call downloaded is
    removed; a network failure is one MorphError naming the URL, what happened and how to fetch
    the file by hand (an unfinished ``.part`` is kept, so the next call resumes it).
    """
    from morph.core.files import file_sha256

    url = url.strip()
    pin = check_pin(sha256, url)
    dest = cached_path(url, cache_dir)
    folder = dest.parent
    stream = stream or sys.stderr
    with _url_lock(folder, url, quiet, stream):
        if dest.is_file():
            recorded = recorded_sha256(dest) or file_sha256(dest)
            if pin and recorded != pin:
                raise MorphError(f"the cached download {dest} has sha256 {recorded}, the pin says {pin}", url,
                                 "fix the pin, or delete the cached file (morph cache --clear --models) to fetch "
                                 "it again")
            return dest
        try:
            return _download(url, dest, pin, quiet, stream, retries)
        finally:
            _tidy(folder, dest)


def _download(url: str, dest: Path, pin: Optional[str], quiet: bool, stream: TextIO, retries: int) -> Path:
    """Fetch ``url`` into ``dest`` (see :func:`download`); the caller holds the URL's lock."""
    from morph.core.files import file_sha256

    folder = dest.parent
    part, validator = folder / f"{dest.name}.part", folder / f"{dest.name}.part.validator"
    if not quiet:
        log(f"downloading {url} into {folder}" + (" (resuming)" if part.exists() else ""), stream)
    for attempt in range(retries + 1):
        try:
            _fetch_part(url, part, validator, dest.name, quiet, stream)
            break
        except _Cut as cut:
            if attempt == retries:
                raise MorphError(f"the connection was cut {cut}; the partial file is kept and the next try resumes "
                                 "it", url, _by_hand(url, dest)) from None
            if not quiet:
                log(f"{url}: the connection was cut {cut}; resuming", stream)
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
            raise MorphError(_failure(url, err), url, _by_hand(url, dest)) from None
    digest = file_sha256(part)
    if pin and digest != pin:
        part.unlink()
        validator.unlink(missing_ok=True)
        raise MorphError(f"the downloaded file has sha256 {digest}, the pin says {pin}; it was deleted", url,
                         "check the pin, or the address (the server may now serve another file)")
    (folder / f"{dest.name}.sha256").write_text(f"{digest}  {dest.name}\n")
    (folder / "url").write_text(url + "\n")
    validator.unlink(missing_ok=True)
    os.replace(part, dest)
    if not quiet:
        log(f"{dest.name}: {dest.stat().st_size / 1e6:.1f} MB, sha256 {digest} (recorded at this first "
            f"download; pin it with sha256: to refuse any other file)", stream)
    return dest


def cached_downloads(cache_dir: Optional[Path] = None) -> list[tuple[str, Path, Optional[str]]]:
    """(URL, file, recorded sha256) of every finished download in the cache."""
    out = []
    for folder in sorted(p for p in models_dir(cache_dir).glob("*") if p.is_dir()):
        try:
            url = (folder / "url").read_text().strip()
        except OSError:
            continue
        path = folder / file_name(url)
        if path.is_file():
            out.append((url, path, recorded_sha256(path)))
    return out


def clear_downloads(cache_dir: Optional[Path] = None, older_than_days: Optional[float] = None) -> tuple[int, int]:
    """Delete downloads (finished and partial) not modified for ``older_than_days`` (all if None), skipping any a
    process is fetching right now; (removed, kept)."""
    import shutil
    import time

    cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
    removed = kept = 0
    for folder in sorted(p for p in models_dir(cache_dir).glob("*") if p.is_dir()):
        newest = max((f.stat().st_mtime for f in folder.iterdir() if f.name != ".lock"), default=0.0)
        if cutoff is not None and newest >= cutoff:
            kept += 1
            continue
        with open(folder / ".lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                kept += 1
                continue
            shutil.rmtree(folder, ignore_errors=True)  # the lock goes too: a waiter re-takes a fresh one
        removed += 1
    return removed, kept


__all__ = ["MODELS", "cached_downloads", "cached_path", "check_pin", "clear_downloads", "download",
           "file_name", "is_url", "models_dir", "recorded_sha256", "url_folder"]
