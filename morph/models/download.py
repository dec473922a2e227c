"""Files by URL, downloaded once into morph's model cache: resumable, verified, locked, renamed when complete.

Each URL gets a folder ``<cache>/models/<hash of the URL>/`` holding the file under its own name,
``NAME.sha256`` (``sha256sum`` format, recorded at the first download) and, while a download is
unfinished, ``NAME.part``. morph's own records start with a dot (``.url``: the address; ``.checked``:
the digest last computed from the bytes, keyed by the file's size, mtime, ctime and inode), a name no
download gets (:func:`file_name` strips leading dots), so a file called ``url`` cannot overwrite them.
An interrupted download resumes with an HTTP ``Range`` request (``If-Range`` on the server's strong
``ETag``/``Last-Modified``) only when the server gave such a validator; the answer's ``Content-Range``
must start exactly where the part ends and name the length first announced, else it starts over. A
per-URL ``flock`` makes concurrent processes do one download: the others wait and then find the file.

What a server can make it do is bounded: at most ``MAX_DOWNLOAD_BYTES`` (declared or sent), free disk
space checked against the declared length before a byte is written, a stall (fewer than
``DOWNLOAD_STALL_BYTES`` in ``DOWNLOAD_STALL_S``) ends it, redirects go only to http(s) and never from
https to http, and an HTML page where a file was expected is refused before it takes the file's name.
A ``sha256:`` pin is always compared with the file's bytes, hashed again whenever the file changed.

The standard library's ``urllib`` is enough here: one GET with a ``Range`` header is all the HTTP
this needs, and the work that matters (resume validation, locking, hashing, atomic rename) would
be the same on top of ``requests`` or ``httpx``, which would only add a dependency.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import http.client
import os
import re
import shutil
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator, Optional, TextIO

from morph.core import cache
from morph.core.cache import MODELS
from morph.core.errors import MorphError
from morph.core.files import atomic_path, file_sha256
from morph.core.limits import DOWNLOAD_STALL_BYTES, DOWNLOAD_STALL_S, MAX_DOWNLOAD_BYTES
from morph.core.progress import Progress, log

CHUNK = 1 << 20            # bytes per read; also the progress unit (MiB)
TIMEOUT = 60.0             # seconds without a byte before a connection counts as dead
RETRIES = 3                # automatic resumes after a cut connection, per download
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
URL_RECORD, CHECKED = ".url", ".checked"  # dot names: never a download's (see file_name)
_HTML = (b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")  # how a web page, not a model, begins


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


def check_url(url: str) -> str:
    """``url`` as it is requested: http(s) with a host, no credentials, path and query percent-encoded; a one-line
    MorphError for an address that is none (``http://[::1/x``, a bad port, ``user:password@``)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (parsing it raises ValueError for a bad one)
    except ValueError as e:
        raise MorphError(f"not a valid address ({e})", shown(url), "check the URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise MorphError("not an http(s) address with a host", shown(url), "give an https:// or http:// URL")
    if parts.username is not None or parts.password is not None:
        raise MorphError("the address carries a user name or password, which morph neither sends nor stores",
                         shown(url), "download the file by hand and give its path instead of the URL")
    safe = "/%:@!$&'()*+,;=~-._"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc.encode("idna").decode("ascii"),
                                    urllib.parse.quote(parts.path, safe=safe),
                                    urllib.parse.quote(parts.query, safe=safe + "?"), ""))


def shown(url: str) -> str:
    """``url`` as messages and records show it: any ``user:password@`` replaced by ``***@``."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@?#]*@", r"\1***@", url)


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
    if isinstance(reason, UnicodeError):
        return f"the host name {urllib.parse.urlsplit(url).hostname!r} is not valid"
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


class _Disk(Exception):
    """Writing the part failed: a file-system error (``err``), not a network one."""
    def __init__(self, err: OSError):
        super().__init__(str(err))
        self.err = err


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects only to http(s), never from https to http; remembers where it went (``last``)."""
    def __init__(self, url: str):
        self.last = url

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        target = urllib.parse.urlsplit(newurl).scheme.lower()
        if target not in ("http", "https") or (urllib.parse.urlsplit(req.full_url).scheme.lower() == "https"
                                                and target == "http"):
            raise MorphError(f"the server redirected to {shown(newurl)}, which morph refuses (only http(s), and never "
                             "from https to plain http)", shown(self.last), "give the final address yourself if you "
                             "trust it")
        self.last = newurl
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _validator(path: Path) -> tuple[Optional[str], Optional[int]]:
    """(strong ETag or Last-Modified, total length) the first answer promised for a part; (None, None) if none."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None, None
    tag = lines[0].strip() if lines and lines[0].strip() else None
    length = int(lines[1]) if len(lines) > 1 and lines[1].strip().isdigit() else None
    return tag, length


def _restart(part: Path, validator: Path) -> None:
    part.unlink(missing_ok=True)
    validator.unlink(missing_ok=True)


def _room(folder: Path, needed: int, url: str) -> None:
    """OSError ENOSPC (exit 4, as every full disk) when ``folder``'s disk has less than ``needed`` bytes free."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise OSError(errno.ENOSPC, f"{shown(url)} announces {needed} more bytes, the disk has {free} free",
                      str(folder))


def _too_big(url: str, size: int) -> MorphError:
    return MorphError(f"the server announces or sent {size} bytes, more than morph downloads "
                      f"({MAX_DOWNLOAD_BYTES} bytes)", shown(url), "download it by hand if it really is that large")


def _fetch_part(url: str, part: Path, validator: Path, progress_label: str, quiet: bool,
                stream: Optional[TextIO], redirects: _Redirects) -> None:
    """Append the rest of ``url`` to ``part`` (resuming from its size when the server promises the same file);
    _Cut if cut short, _Disk if writing fails, MorphError when too big, stalled or an HTML page."""
    tag, promised = _validator(validator)
    if part.exists() and tag is None:  # no validator: the server cannot promise the rest is of the same file
        _restart(part, validator)
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "morph", "Accept-Encoding": "identity"}
    if have:
        headers["Range"], headers["If-Range"] = f"bytes={have}-", tag
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.build_opener(redirects).open(req, timeout=TIMEOUT)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the part is no prefix the server knows: start over
            _restart(part, validator)
            return _fetch_part(url, part, validator, progress_label, quiet, stream, redirects)
        raise
    with resp:
        total: Optional[int]
        if have and resp.status == 206:
            span = _content_range(resp.headers.get("Content-Range"))
            if span is None or span[0] != have or (promised is not None and span[1] != promised):
                resp.close()  # not the bytes asked for, or of a file of another length: start over
                _restart(part, validator)
                return _fetch_part(url, part, validator, progress_label, quiet, stream, redirects)
            total = span[1] if span[1] is not None else promised
            mode = "ab"
        else:  # 200: the whole file (a first request, or a server that ignored the range)
            have, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            tag = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
            try:
                if tag and not tag.startswith("W/"):  # weak ETags may not be used with If-Range
                    validator.write_text(f"{tag}\n{'' if total is None else total}\n")
                else:
                    validator.unlink(missing_ok=True)
            except OSError as err:
                raise _Disk(err) from None
            if "html" in (resp.headers.get("Content-Type") or "").lower():
                _restart(part, validator)
                raise MorphError("the server sent a web page (Content-Type "
                                 f"{resp.headers.get('Content-Type')}), not a file", shown(url),
                                 "open the address in a browser: it may need a login or show an error")
        if total is not None and total > MAX_DOWNLOAD_BYTES:
            _restart(part, validator)
            raise _too_big(url, total)
        if total is not None:
            try:
                _room(part.parent, total - have, url)
            except OSError as err:
                raise _Disk(err) from None
        progress = Progress(progress_label, -(-total // CHUNK) if total else 0, unit="MiB", quiet=quiet,
                            stream=stream)
        done = have
        progress.advance(done // CHUNK)
        window_start, window_bytes = time.monotonic(), 0  # the stall watch: bytes since window_start
        try:
            try:
                out = open(part, mode)
            except OSError as err:
                raise _Disk(err) from None
            with out:
                while True:
                    try:
                        block = resp.read1(CHUNK)
                    except (http.client.IncompleteRead, ConnectionError, TimeoutError, socket.timeout) as err:
                        raise _Cut(f"after {done}{f' of {total}' if total else ''} bytes "
                                   f"({type(err).__name__})") from None
                    if not block:
                        break
                    if done + len(block) > MAX_DOWNLOAD_BYTES:
                        out.close()
                        _restart(part, validator)
                        raise _too_big(url, done + len(block))
                    try:
                        out.write(block)
                    except OSError as err:
                        raise _Disk(err) from None
                    done += len(block)
                    window_bytes += len(block)
                    now = time.monotonic()
                    if window_bytes >= DOWNLOAD_STALL_BYTES:
                        window_start, window_bytes = now, 0
                    elif now - window_start > DOWNLOAD_STALL_S:
                        raise MorphError(f"the download stalled: fewer than {DOWNLOAD_STALL_BYTES} bytes in "
                                         f"{DOWNLOAD_STALL_S:g} s (at {done} bytes); the partial file is kept and "
                                         "the next try resumes it", shown(url), "try again later")
                    progress.advance(done // CHUNK - progress.done)
        finally:
            progress.close()
        if total is not None and done < total:
            raise _Cut(f"after {done} of {total} bytes")
        if total is not None and done > total:  # more than the Content-Range/Content-Length promised
            _restart(part, validator)
            raise _Cut(f"with {done} bytes, more than the {total} announced; starting over")


def _is_html(path: Path) -> bool:
    """Whether the file begins like a web page (a login or error page served with 200), not a model."""
    with open(path, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    return head.startswith(_HTML)


def _checked_sha256(path: Path) -> str:
    """The file's sha256 from its bytes: hashed once per change of the file (the record ``.checked`` is keyed by
    size, mtime, ctime and inode, and ctime changes on any write, even one that restores the mtime)."""
    st = path.stat()
    key = f"{path.name} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {st.st_ino}"
    record = path.parent / CHECKED
    with contextlib.suppress(OSError):
        line = record.read_text()
        if line.rsplit(" ", 1)[0] == key and _HEX64.match(line.rsplit(" ", 1)[-1].strip()):
            return line.rsplit(" ", 1)[-1].strip()
    digest = file_sha256(path)
    with contextlib.suppress(OSError), atomic_path(record) as tmp:  # only a cache: a read-only folder hashes each time
        tmp.write_text(f"{key} {digest}\n")
    return digest


def download(url: str, cache_dir: Optional[Path] = None, sha256: Optional[str] = None, quiet: bool = False,
             stream: Optional[TextIO] = None, retries: int = RETRIES) -> Path:
    """The cached file of ``url``, downloaded first if it is not there; ``sha256`` pins its content.

    A pin that the file does not match is refused (MorphError) and a file this call downloaded is
    removed; a network failure is one MorphError naming the URL, what happened and how to fetch
    the file by hand (an unfinished ``.part`` is kept, so the next call resumes it).
    """
    url = url.strip()
    request_url = check_url(url)
    pin = check_pin(sha256, shown(url))
    dest = cached_path(url, cache_dir)
    folder = dest.parent
    stream = stream or sys.stderr
    with _url_lock(folder, shown(url), quiet, stream):
        if dest.is_file():
            if _is_html(dest):
                raise MorphError(f"the cached download {dest} is a web page, not a model", shown(url),
                                 "clear it (morph cache --clear --models) and check the address")
            if pin:
                digest = _checked_sha256(dest)
                if digest != pin:
                    raise MorphError(f"the cached download {dest} has sha256 {digest}, the pin says {pin}",
                                     shown(url), "fix the pin, or delete the cached file (morph cache --clear "
                                     "--models) to fetch it again")
            return dest
        try:
            return _download(url, request_url, dest, pin, quiet, stream, retries)
        finally:
            _tidy(folder, dest)


def _download(url: str, request_url: str, dest: Path, pin: Optional[str], quiet: bool, stream: TextIO,
              retries: int) -> Path:
    """Fetch ``request_url`` (``url`` percent-encoded) into ``dest`` (see :func:`download`); the caller holds the
    URL's lock."""
    folder = dest.parent
    part, validator = folder / f"{dest.name}.part", folder / f"{dest.name}.part.validator"
    if not quiet:
        log(f"downloading {shown(url)} into {folder}" + (" (resuming)" if part.exists() else ""), stream)
    for attempt in range(retries + 1):
        redirects = _Redirects(request_url)
        try:
            _fetch_part(request_url, part, validator, dest.name, quiet, stream, redirects)
            break
        except _Disk as fault:  # the file system's error, reported as such (exit 4), not as the network's
            raise fault.err from None
        except _Cut as cut:
            if attempt == retries:
                raise MorphError(f"the connection was cut {cut}; the partial file is kept and the next try resumes "
                                 "it", shown(url), _by_hand(shown(url), dest)) from None
            if not quiet:
                log(f"{shown(url)}: the connection was cut {cut}; resuming", stream)
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
            raise MorphError(_failure(redirects.last, err), shown(url), _by_hand(shown(url), dest)) from None
    if _is_html(part):
        _restart(part, validator)
        raise MorphError("the server sent a web page, not a file; nothing was kept", shown(url),
                         "open the address in a browser: it may need a login or show an error")
    digest = file_sha256(part)
    if pin and digest != pin:
        part.unlink()
        validator.unlink(missing_ok=True)
        raise MorphError(f"the downloaded file has sha256 {digest}, the pin says {pin}; it was deleted", shown(url),
                         "check the pin, or the address (the server may now serve another file)")
    (folder / f"{dest.name}.sha256").write_text(f"{digest}  {dest.name}\n")
    (folder / URL_RECORD).write_text(shown(url) + "\n")
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
        url = ""
        for record in (URL_RECORD, "url"):  # ``url``: where morph before issue 26 kept it (it may be a download)
            with contextlib.suppress(OSError, UnicodeDecodeError), open(folder / record, "rb") as fh:
                url = url or fh.read(4096).decode().strip()
        if not is_url(url) or "\n" in url:
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
           "check_url", "file_name", "is_url", "models_dir", "recorded_sha256", "shown", "url_folder"]
