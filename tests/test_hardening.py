"""Issue 26: the surfaces added last round (studio, downloads, encoder files, sounds) attacked as a user or a
hostile file would. Each test is named for the issue's item it closes; servers run on 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest
from conftest import headless_chromium

from morph.core.errors import MorphError
from morph.models import download as dl
from morph.models.download import cached_downloads, cached_path, download, models_dir

BODY = bytes(range(256)) * 1024  # 256 KiB


# --- a scripted HTTP server ------------------------------------------------------------------------------------

Route = Callable[[http.server.BaseHTTPRequestHandler], None]


@contextlib.contextmanager
def scripted(routes: dict[str, Route]) -> Iterator[tuple[str, list]]:
    """Serve ``routes`` (path → function answering the request) on 127.0.0.1; yields (base URL, requests seen)."""
    seen: list[tuple[str, dict]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            seen.append((self.path, dict(self.headers)))
            route = routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            try:
                route(self)
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def send(body: bytes, status: int = 200, headers: dict | None = None) -> Route:
    def route(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for k, v in {"Content-Length": str(len(body)), **(headers or {})}.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)
    return route


def files(cache: Path) -> list[str]:
    root = models_dir(cache)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --- 2: pins are checked against the bytes -------------------------------------------------------------------

def test_26_02_pin_is_checked_against_the_bytes_once_per_change(tmp_path, monkeypatch):
    digest = hashlib.sha256(BODY).hexdigest()
    with scripted({"/m.pkl": send(BODY, headers={"ETag": '"a"'})}) as (base, seen):
        path = download(f"{base}/m.pkl", tmp_path, sha256=digest, quiet=True)
        import morph.core.files as core_files
        hashed = []
        real = core_files.file_sha256
        monkeypatch.setattr(core_files, "file_sha256", lambda p, *a: hashed.append(p) or real(p, *a))
        assert download(f"{base}/m.pkl", tmp_path, sha256=digest, quiet=True) == path
        assert download(f"{base}/m.pkl", tmp_path, sha256=digest, quiet=True) == path
        assert len(hashed) <= 1  # hashed at most once while the file does not change
        st = path.stat()
        data = bytearray(path.read_bytes())
        data[1000] ^= 1  # flip one bit, keep the size and the mtime
        path.write_bytes(bytes(data))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        with pytest.raises(MorphError, match=f"the pin says {digest}"):
            download(f"{base}/m.pkl", tmp_path, sha256=digest, quiet=True)
        assert len(seen) == 1  # never downloaded again behind the user's back


# --- 8: downloads are bounded ------------------------------------------------------------------------------------

def test_26_08_declared_size_over_the_cap_is_refused_before_writing(tmp_path):
    def huge(h):
        h.send_response(200)
        h.send_header("Content-Length", str(10 ** 15))
        h.end_headers()
        h.wfile.write(b"x" * 1000)

    with scripted({"/big.pkl": huge}) as (base, _):
        with pytest.raises(MorphError, match="more than morph downloads"):
            download(f"{base}/big.pkl", tmp_path, quiet=True)
    assert files(tmp_path) == []


def test_26_08_an_endless_body_stops_at_the_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "MAX_DOWNLOAD_BYTES", 1 << 20)

    def endless(h):
        h.send_response(200)
        h.send_header("Connection", "close")  # no Content-Length: the body ends when the connection does
        h.end_headers()
        for _ in range(64):
            h.wfile.write(b"y" * (1 << 16))

    with scripted({"/endless.pkl": endless}) as (base, _):
        with pytest.raises(MorphError, match="more than morph downloads"):
            download(f"{base}/endless.pkl", tmp_path, quiet=True)
    assert files(tmp_path) == []


def test_26_08_free_space_is_checked_against_the_declared_length(tmp_path, monkeypatch):
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    with scripted({"/m.pkl": send(BODY)}) as (base, _):
        with pytest.raises(OSError) as err:
            download(f"{base}/m.pkl", tmp_path, quiet=True)
    assert err.value.errno == errno.ENOSPC  # the CLI reports OSError as a file-system error, exit 4
    from morph.core.errors import os_error_line
    assert "the disk is full" in os_error_line(err.value) and "\n" not in os_error_line(err.value)


def test_26_08_a_write_failure_is_a_file_system_error_not_a_network_one(tmp_path, monkeypatch):
    real_open = open

    def failing_open(path, mode="r", *args, **kwargs):
        if str(path).endswith(".part") and "b" in mode:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", failing_open)
    with scripted({"/m.pkl": send(BODY)}) as (base, _):
        with pytest.raises(OSError) as err:
            download(f"{base}/m.pkl", tmp_path, quiet=True)
    assert err.value.errno == errno.EROFS and not isinstance(err.value, urllib.request.URLError)


def test_26_08_a_drip_times_out(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "DOWNLOAD_STALL_S", 1.0)

    def drip(h):
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        for _ in range(1000):
            h.wfile.write(b"z")
            h.wfile.flush()
            time.sleep(0.2)

    with scripted({"/drip.pkl": drip}) as (base, _):
        start = time.monotonic()
        with pytest.raises(MorphError, match="stalled"):
            download(f"{base}/drip.pkl", tmp_path, quiet=True)
        assert time.monotonic() - start < 10


# --- 10: records and downloads do not share names --------------------------------------------------------------

def test_26_10_a_file_named_url_does_not_overwrite_the_address_record(tmp_path):
    with scripted({"/x/url": send(BODY, headers={"ETag": '"u"'})}) as (base, _):
        path = download(f"{base}/x/url", tmp_path, quiet=True)
        assert path.name == "url" and path.read_bytes() == BODY
        assert cached_downloads(tmp_path) == [(f"{base}/x/url", path, hashlib.sha256(BODY).hexdigest())]


# --- 14: download edges --------------------------------------------------------------------------------------------

def test_26_14_a_resume_without_a_validator_starts_over(tmp_path):
    first, second = b"A" * 200_000, b"B" * 200_000  # the server changed the file between the two tries
    served = {"n": 0}

    def no_validator(h):
        served["n"] += 1
        body = first if served["n"] == 1 else second
        m = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range") or "")
        start = int(m.group(1)) if m else 0
        h.send_response(206 if m else 200)
        if m:
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        h.send_header("Content-Length", str(len(body) - start))
        h.end_headers()
        if served["n"] == 1:  # the first answer is cut half-way
            h.wfile.write(body[:100_000])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(body[start:])

    with scripted({"/m.pkl": no_validator}) as (base, seen):
        path = download(f"{base}/m.pkl", tmp_path, quiet=True)
    assert path.read_bytes() == second  # not A's first half spliced onto B's second
    assert "Range" not in seen[-1][1]


def test_26_14_a_resume_whose_total_differs_starts_over(tmp_path):
    body = b"C" * 5000

    def ranged(h):
        m = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range") or "")
        start = int(m.group(1)) if m else 0
        h.send_response(206 if m else 200)
        if m:
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        h.send_header("Content-Length", str(len(body) - start))
        h.send_header("ETag", '"c"')
        h.end_headers()
        h.wfile.write(body[start:])

    with scripted({"/m.pkl": ranged}) as (base, seen):
        url = f"{base}/m.pkl"
        part = cached_path(url, tmp_path).with_name("m.pkl.part")
        part.parent.mkdir(parents=True)
        part.write_bytes(b"D" * 1000)
        part.with_name("m.pkl.part.validator").write_text('"c"\n9999\n')  # the first answer promised 9999 bytes
        path = download(url, tmp_path, quiet=True)
    assert path.read_bytes() == body  # the 206 was of a 5000-byte file: not the one the part began
    assert [r[1].get("Range") for r in seen] == ["bytes=1000-", None]


@pytest.mark.parametrize("content_type,body", [("text/html; charset=utf-8", b"<html><body>log in</body></html>"),
                                               ("application/octet-stream", b"\n<!DOCTYPE html><html>sign in")])
def test_26_14_an_html_page_is_not_cached_as_the_model(tmp_path, content_type, body):
    with scripted({"/m.pkl": send(body, headers={"Content-Type": content_type})}) as (base, _):
        with pytest.raises(MorphError, match="web page"):
            download(f"{base}/m.pkl", tmp_path, quiet=True)
    assert files(tmp_path) == []


def test_26_14_an_html_page_cached_by_an_older_morph_says_to_clear(tmp_path):
    url = "http://127.0.0.1:9/m.pkl"
    path = cached_path(url, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"<!doctype html><title>Sign in</title>")
    with pytest.raises(MorphError, match=r"web page.*morph cache --clear --models"):
        download(url, tmp_path, quiet=True)


@pytest.mark.parametrize("url", ["http://[::1/x.pkl", "http://127.0.0.1:99999/x.pkl", "ftp://127.0.0.1/x.pkl"])
def test_26_14_a_malformed_address_is_one_line(tmp_path, url):
    with pytest.raises(MorphError) as err:
        download(url, tmp_path, quiet=True)
    assert "\n" not in str(err.value) and str(err.value).startswith(url)


def test_26_14_a_redirect_to_ftp_is_refused_naming_it(tmp_path):
    def to_ftp(h):
        h.send_response(302)
        h.send_header("Location", "ftp://files.example/m.pkl")
        h.send_header("Content-Length", "0")
        h.end_headers()

    with scripted({"/m.pkl": to_ftp}) as (base, _):
        with pytest.raises(MorphError, match=r"redirected to ftp://files\.example/m\.pkl"):
            download(f"{base}/m.pkl", tmp_path, quiet=True)


def test_26_14_a_redirect_that_leaves_https_is_refused():
    handler = dl._Redirects("https://models.example/m.pkl")
    req = urllib.request.Request("https://models.example/m.pkl")
    with pytest.raises(MorphError, match="never from https to plain http"):
        handler.redirect_request(req, None, 302, "Found", {}, "http://models.example/m.pkl")
    assert handler.redirect_request(req, None, 302, "Found", {}, "https://cdn.example/m.pkl") is not None


def test_26_14_credentials_in_an_address_are_neither_echoed_nor_stored(tmp_path):
    with scripted({"/m.pkl": send(BODY)}) as (base, seen):
        url = base.replace("://", "://alice:s3cret@") + "/m.pkl"
        with pytest.raises(MorphError) as err:
            download(url, tmp_path, quiet=True)
    assert "s3cret" not in str(err.value) and "alice" not in str(err.value) and "***@" in str(err.value)
    assert seen == [] and files(tmp_path) == []


def test_26_14_a_non_ascii_path_is_percent_encoded(tmp_path):
    with scripted({"/n%C3%A9ts/m%20%C3%BC.pkl": send(BODY, headers={"ETag": '"n"'})}) as (base, seen):
        path = download(f"{base}/néts/m ü.pkl", tmp_path, quiet=True)
    assert path.read_bytes() == BODY and seen[0][0] == "/n%C3%A9ts/m%20%C3%BC.pkl"


# --- 3 and 5: encoder files ----------------------------------------------------------------------------------------

def _encoder_file(tmp_path: Path, config: dict | None = None, poison: bool = False) -> Path:
    """A small valid encoder file (or one whose header says ``config`` and holds no tensors worth the name)."""
    import json

    import torch
    from safetensors.torch import save_file

    from morph.projection.encoder import FORMAT, VERSION, Encoder, save_encoder

    path = tmp_path / "enc.safetensors"
    if config is None:
        enc = Encoder(num_ws=4, w_dim=8, img_resolution=16, base=4, max_width=8, pyramid=4)
        if poison:
            with torch.no_grad():
                enc.heads["coarse"].weight[0, 0] = float("nan")
        save_encoder(path, enc, "0" * 64)
    else:
        save_file({"x": torch.zeros(1)}, str(path), metadata={"format": FORMAT, "version": VERSION,
                                                              "config": json.dumps(config), "model_sha256": "0" * 64})
    return path


def test_26_03_an_encoder_with_nan_weights_is_refused_in_one_line(tmp_path):
    from morph.core.errors import CheckpointError
    from morph.projection.encoder import read_encoder

    read_encoder(_encoder_file(tmp_path))  # the same file, finite, reads
    with pytest.raises(CheckpointError, match=r"heads\.coarse\.weight holds NaN or infinite values") as err:
        read_encoder(_encoder_file(tmp_path, poison=True))
    assert "\n" not in str(err.value)


GOOD = {"num_ws": 4, "w_dim": 8, "img_resolution": 16, "img_channels": 3, "base": 4, "max_width": 8, "pyramid": 4}


@pytest.mark.parametrize("change", [{"num_ws": 10 ** 9}, {"base": 30000, "max_width": 30000}, {"pyramid": 10 ** 6},
                                    {"w_dim": -5}, {"img_resolution": 24}, {"w_dim": 8.5}, {"extra": 1},
                                    {"layer_groups": {"coarse": [0, 10 ** 9]}}, {"layer_groups": [1, 2]}])
def test_26_05_every_encoder_header_field_is_bounded_before_building(tmp_path, change):
    from morph.core.errors import CheckpointError
    from morph.projection.encoder import read_encoder

    path = _encoder_file(tmp_path, {**GOOD, **change})
    start = time.monotonic()
    with pytest.raises(CheckpointError) as err:
        read_encoder(path)
    assert time.monotonic() - start < 5 and "\n" not in str(err.value) and str(path) in str(err.value)


# --- the studio: 1, 6, 7, 11, 12, 13 -------------------------------------------------------------------------------

STUDIO_SCENE = """model: builtin
directions:
  mine: mine.npy
latents:
  a: {seed: 1}
  b: {seed: 2, add: {builtin:smile: 1.5}}
renders:
  clip:
    format: gif
    fps: 4
    size: 64
    path: [a, b]
"""


def _studio_missing() -> str:
    for module in ("starlette", "uvicorn", "PIL"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed"
    return ""


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """``morph studio`` on a small seed-only scene (no photos to project), reached through a symlink."""
    if _studio_missing():
        pytest.skip(_studio_missing())
    tmp = tmp_path_factory.mktemp("studio26")
    real = tmp / "real" / "scene.yaml"
    real.parent.mkdir()
    real.write_text(STUDIO_SCENE)
    link = tmp / "scene.yaml"
    link.symlink_to(real)
    from morph.builtin import WEIGHTS_DIR
    shutil.copy(WEIGHTS_DIR / "directions" / "smile.npy", tmp / "mine.npy")
    proc = subprocess.Popen([sys.executable, "-m", "morph.cli", "studio", str(link), "--port", "0", "--device", "cpu",
                             "--cache", str(tmp / "cache"), "--out", str(tmp / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        line = ""
        for line in proc.stdout:
            if "http://" in line:
                break
        m = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)", line)
        assert m, line
        yield {"port": int(m[1]), "token": m[2], "link": link, "real": real, "proc": proc}
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def _request(studio, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
             token: str | None = "header") -> tuple[int, bytes]:
    """A raw request to the studio: ``token`` "header" (X-Morph-Token), "query", "cookie" or None."""
    conn = http.client.HTTPConnection("127.0.0.1", studio["port"], timeout=120)
    h = {"Host": f"127.0.0.1:{studio['port']}", **(headers or {})}
    if token == "header":
        h["X-Morph-Token"] = studio["token"]
    elif token == "cookie":
        h["Cookie"] = f"morph_studio_token={studio['token']}"
    elif token == "query":
        path += ("&" if "?" in path else "?") + f"token={studio['token']}"
    if body is not None:
        h.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=body, headers=h)
    resp = conn.getresponse()
    return resp.status, resp.read()


def _state(studio) -> dict:
    status, data = _request(studio, "GET", "/api/state")
    assert status == 200, data
    return json.loads(data)


def _edit(studio, path: list, value) -> tuple[int, bytes]:
    return _request(studio, "POST", "/api/edit", json.dumps({"path": path, "value": value}).encode())


def _revert(studio) -> None:
    studio["real"].write_text(STUDIO_SCENE)
    assert _request(studio, "POST", "/api/revert", b"{}")[0] == 200


def test_26_01_save_refuses_when_file_changed_on_disk(studio):
    _revert(studio)
    assert _edit(studio, ["latents", "a", "seed"], 7)[0] == 200
    editor = STUDIO_SCENE.replace("seed: 2", "seed: 5")  # an editor saves between two polls of the page
    studio["real"].write_text(editor)
    status, data = _request(studio, "POST", "/api/save", b"{}")
    assert status == 200 and json.loads(data)["saved"] is False and "changed on disk" in json.loads(data)["notice"]
    assert studio["real"].read_text() == editor  # the editor's change is still there
    assert "changed on disk" in _state(studio)["notice"]  # the poll says so too, and keeps the page's edits
    _revert(studio)


def test_26_01_save_writes_through_a_symlinked_scene(studio):
    _revert(studio)
    assert _edit(studio, ["latents", "a", "seed"], 9)[0] == 200
    status, data = _request(studio, "POST", "/api/save", b"{}")
    assert status == 200 and json.loads(data)["saved"] is True, data
    assert studio["link"].is_symlink() and "a: {seed: 9}" in studio["real"].read_text()
    _revert(studio)


def test_26_07_the_studio_reads_at_most_a_mebibyte_of_scene(studio):
    studio["real"].write_text(STUDIO_SCENE + "#" * (1 << 20))
    os.utime(studio["real"], ns=(time.time_ns(), time.time_ns() + 10 ** 9))
    state = _state(studio)
    assert any("larger than 1 MiB" in e for e in state["errors"]), state["errors"]
    _revert(studio)


@pytest.mark.parametrize("how", [None, "cookie", "query"])
def test_26_11_a_post_without_the_token_header_is_refused(studio, how):
    _revert(studio)
    before = studio["real"].read_text()
    status, data = _request(studio, "POST", "/api/edit", b'{"path": ["latents", "a", "seed"], "value": 3}',
                            headers={"Content-Type": "text/plain"}, token=how)
    assert status == 403 and b"X-Morph-Token" in data
    status, _ = _request(studio, "POST", "/api/save", b"{}", token=how)
    assert status == 403 and studio["real"].read_text() == before and not _state(studio)["dirty"]


@pytest.mark.parametrize("headers", [{"Host": "evil.example:1234"}, {"Host": "127.0.0.1:1"},
                                     {"Origin": "http://127.0.0.1:1"}, {"Origin": "null"},
                                     {"Sec-Fetch-Site": "same-site"}, {"Sec-Fetch-Site": "cross-site"}])
def test_26_11_a_foreign_host_or_origin_is_refused_even_with_the_token(studio, headers):
    for method, path, body in (("GET", "/api/state", None), ("POST", "/api/revert", b"{}")):
        status, _ = _request(studio, method, path, body, headers=headers)
        assert status == 403, (method, headers)
    assert _request(studio, "GET", "/api/state", headers={"Host": f"localhost:{studio['port']}"})[0] == 200
    own = {"Origin": f"http://127.0.0.1:{studio['port']}", "Sec-Fetch-Site": "same-origin"}
    assert _request(studio, "POST", "/api/revert", b"{}", headers=own)[0] == 200


@pytest.mark.parametrize("direction", ["/etc/passwd", "../real/scene.yaml", "builtin:nope"])
def test_26_12_look_reads_only_the_scenes_and_builtin_directions(studio, direction):
    _revert(studio)
    q = f"/api/look?latent=a&s=1&direction={urllib.parse.quote(direction)}"
    status, data = _request(studio, "GET", q)
    assert status == 400 and b"scene's directions or builtin" in data and b"root" not in data
    for good in ("mine", "builtin:smile"):
        status, data = _request(studio, "GET", f"/api/look?latent=a&s=1&direction={urllib.parse.quote(good)}")
        assert status == 200 and data[:3] == b"\xff\xd8\xff", good  # a JPEG


@pytest.mark.parametrize("path,body", [("/api/edit", b"not json"), ("/api/edit", b"{}"), ("/api/edit", b"[1, 2]"),
                                       ("/api/edit", json.dumps({"path": ["k"] * 3000, "value": 1}).encode()),
                                       ("/api/edit", b'{"path": [true], "value": 1}'),
                                       ("/api/add", b'{"name": 3}'), ("/api/add", b"x" * (2 << 20))])
def test_26_13_bad_bodies_are_400_in_one_line(studio, path, body):
    status, data = _request(studio, "POST", path, body)
    assert status == 400 and data.count(b"\n") == 0 and data.startswith(b"400: "), data[:200]
    assert _edit(studio, ["latents", "a", "seed"], 4)[0] == 200  # later edits still work
    _revert(studio)


@pytest.mark.parametrize("query", ["/api/frame?render=clip&i=abc", "/api/look?seed=1&psi=1e300",
                                   "/api/look?seed=1&psi=nan", "/api/look?latent=a&direction=mine&s=inf",
                                   "/api/look?seed=abc", "/api/look?latent=nope"])
def test_26_13_bad_queries_and_non_finite_previews_are_400(studio, query):
    _revert(studio)
    status, data = _request(studio, "GET", query)
    assert status == 400 and data.count(b"\n") == 0, data[:200]


def test_26_13_a_deeply_nested_value_is_refused_and_does_not_wedge_later_edits(studio):
    _revert(studio)
    status, data = _edit(studio, ["latents", "a", "seed"], "[" * 3000 + "]" * 3000)
    assert status == 200 and any("nests too deeply" in e for e in json.loads(data)["errors"])
    status, data = _edit(studio, ["latents", "a", "seed"], 6)
    assert status == 200 and json.loads(data)["errors"] == [] and json.loads(data)["dirty"]
    _revert(studio)


def test_26_06_state_answers_while_an_edit_does_slow_work(studio):
    """A slow edit (here: a model given as a URL of a server that holds the answer) runs off the event loop."""
    _revert(studio)
    release = threading.Event()

    def slow(h):
        release.wait(30)
        h.send_error(404)

    with scripted({"/slow.pkl": slow}) as (base, _):
        result = {}
        t = threading.Thread(target=lambda: result.update(r=_edit(studio, ["model"], f"{base}/slow.pkl")))
        t.start()
        time.sleep(1.0)
        start = time.monotonic()
        state = _state(studio)
        answered = time.monotonic() - start
        release.set()
        t.join(60)
    assert answered < 5 and state["busy"], (answered, state["busy"])
    assert result["r"][0] == 200
    _revert(studio)


def _browser_missing() -> str:
    for exe in ("chromium", "chromedriver"):
        if shutil.which(exe) is None:
            return f"{exe} is not installed"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    return ""


ATTACK = """<!doctype html><script>
window.results = [];
const studio = "http://127.0.0.1:%(port)d";
const edit = JSON.stringify({path: ["latents", "a", "seed"], value: 77});
async function go() {
  const tries = [
    ["cookie text/plain", {method: "POST", mode: "no-cors", credentials: "include",
                           headers: {"Content-Type": "text/plain"}, body: edit}],
    ["token header", {method: "POST", credentials: "include",
                      headers: {"Content-Type": "application/json", "X-Morph-Token": "%(token)s"}, body: edit}],
  ];
  for (const [name, init] of tries) {
    try { const r = await fetch(studio + "/api/edit", init); window.results.push(name + ": " + r.status); }
    catch (e) { window.results.push(name + ": blocked"); }
  }
  try { const r = await fetch(studio + "/api/save", {method: "POST", mode: "no-cors", credentials: "include",
                                                     body: "{}"}); window.results.push("save: " + r.status); }
  catch (e) { window.results.push("save: blocked"); }
  try { const r = await fetch(studio + "/api/look?latent=a&s=1&direction=/etc/passwd&token=%(token)s");
        window.results.push("look: " + r.status + " " + (await r.text()).slice(0, 40)); }
  catch (e) { window.results.push("look: blocked"); }
  window.done = true;
}
go();
</script>"""


@pytest.mark.skipif(bool(_browser_missing()), reason=_browser_missing() or "browser present")
def test_26_11_12_a_page_on_another_local_port_cannot_drive_the_studio(studio):
    """A real Chromium that has opened the studio (so it holds the cookie) then opens a page served on another
    port of 127.0.0.1 that knows even the token: nothing it sends edits, saves or reads a file."""
    from selenium.webdriver.support.ui import WebDriverWait

    _revert(studio)
    page = (ATTACK % {"port": studio["port"], "token": studio["token"]}).encode()
    driver = headless_chromium()
    try:
        driver.get(f"http://127.0.0.1:{studio['port']}/?token={studio['token']}")  # sets the cookie
        assert driver.get_cookie("morph_studio_token")
        with scripted({"/": send(page, headers={"Content-Type": "text/html"})}) as (base, _):
            driver.get(base + "/")
            WebDriverWait(driver, 60).until(lambda d: d.execute_script("return window.done === true"))
            results = driver.execute_script("return window.results")
    finally:
        driver.quit()
    state = _state(studio)
    assert not state["dirty"] and "seed: 77" not in studio["real"].read_text(), results
    assert "token header: blocked" in results  # the CORS preflight is refused
    assert not any(r.startswith("look: 200") for r in results), results


# --- 15: steps bounded, 1e9 explained ------------------------------------------------------------------------------

def _problems(text: str, tmp_path: Path) -> str:
    from morph.scene import SceneError, parse_scene

    photo = tmp_path / "p.png"
    from PIL import Image
    Image.new("RGB", (16, 16)).save(photo)
    with pytest.raises(SceneError) as err:
        parse_scene(text, tmp_path / "s.yaml")
    return "\n".join(err.value.problems)


def test_26_15_a_scenes_steps_are_bounded(tmp_path):
    out = _problems("latents:\n  p: {project: p.png, steps: 100000000000}\n"
                    "renders: {r: {around: p, duration: 1}}\n", tmp_path)
    assert "latents.p.steps: expected a whole number of steps, 1 to 100000" in out


def test_26_15_yaml_1e9_read_as_text_says_how_to_write_it(tmp_path):
    out = _problems("latents:\n  p: {project: p.png, steps: 1e9}\nrenders: {r: {around: p, duration: 1}}\n", tmp_path)
    assert "write 1.0e9" in out


def test_26_15_project_steps_and_studio_port_are_checked_first(tmp_path):
    project = subprocess.run([sys.executable, "-m", "morph.cli", "project", "x.png", "--model", "builtin", "--steps",
                              "100000000000", "--out", str(tmp_path)], capture_output=True, text=True)
    assert project.returncode == 2 and "--steps" in project.stderr and len(project.stderr.strip().splitlines()) == 1
    scene = tmp_path / "s.yaml"
    scene.write_text(STUDIO_SCENE.replace("directions:\n  mine: mine.npy\n", ""))
    studio = subprocess.run([sys.executable, "-m", "morph.cli", "studio", str(scene), "--port", "70000"],
                            capture_output=True, text=True)
    assert studio.returncode == 2 and "--port" in studio.stderr and "Traceback" not in studio.stderr


def test_26_13_sigterm_stops_the_studio_with_its_own_line(tmp_path):
    import signal

    if _studio_missing():
        pytest.skip(_studio_missing())
    scene = tmp_path / "s.yaml"
    scene.write_text(STUDIO_SCENE.replace("directions:\n  mine: mine.npy\n", ""))
    proc = subprocess.Popen([sys.executable, "-m", "morph.cli", "studio", str(scene), "--port", "0", "--device", "cpu",
                             "--cache", str(tmp_path / "cache")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert "http://" in proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "morph studio: stopped" in err and "segments" not in err, err


# --- 4: beats in bounded memory ----------------------------------------------------------------------------------

def _click_envelope(seconds: float, bpm: float = 120.0, seed: int = 0):
    """An onset envelope (one value per ONSET_HOP samples) with a sharp onset on every beat, over weak noise."""
    import numpy as np

    from morph.sound.audio import ONSET_HOP, RATE

    rate = RATE / ONSET_HOP
    env = np.random.default_rng(seed).random(int(seconds * rate)).astype(np.float32) * 0.2
    beats = np.arange(0.25, seconds, 60.0 / bpm)
    env[np.round(beats * rate).astype(int)] += 4.0
    return env, beats


def test_26_04_blockwise_beats_follow_the_beat_across_block_seams():
    import numpy as np

    pytest.importorskip("librosa")
    from morph.sound.audio import track_beats

    env, truth = _click_envelope(200.0)  # four blocks: seams at about 55 s, 105 s, 155 s
    found = track_beats(env)
    inner = truth[(truth > 2) & (truth < 198)]
    nearest = np.abs(found[None, :] - inner[:, None]).min(axis=1)
    assert (nearest < 0.02).mean() > 0.98, nearest.max()
    gaps = np.diff(found[(found > 2) & (found < 198)])
    assert np.all(np.abs(gaps - 0.5) < 0.05), gaps[np.abs(gaps - 0.5) >= 0.05]  # no beat doubled or lost at a seam


PEAK_SCRIPT = """
import sys, tracemalloc
import numpy as np
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_hardening import _click_envelope
from morph.sound.audio import Sound
import librosa, librosa.beat  # imported before the baseline is taken
env, truth = _click_envelope(3600.0)
wav = Path(sys.argv[1]) / "hour.wav"
wav.write_bytes(b"stands in for an hour of sound: its analysis is in the cache")
sound = Sound(wav, Path(sys.argv[1]) / "cache")
sound.folder.mkdir(parents=True, exist_ok=True)
np.save(sound.folder / "onset-strength-v2.npy", env)
tracemalloc.start()  # numpy reports its buffers to tracemalloc: the peak is the arrays' high-water mark
beats = sound.events("beats")
print(len(beats), len(truth), tracemalloc.get_traced_memory()[1] >> 20)
"""


def test_26_04_beats_of_an_hour_long_track_stay_under_200_mb():
    """Peak memory allocated while tracking the beats of a 1-hour track (its onset envelope cached, as after
    analysis), measured with tracemalloc in a fresh process: under 200 MB (librosa over the whole envelope
    needs gigabytes: its tempogram alone is 384 values per envelope frame)."""
    pytest.importorskip("librosa")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, tmp, str(Path(__file__).parent)],
                             capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    found, truth, peak_mb = map(int, out.stdout.split())
    print(f"\n1-hour track: {found} beats ({truth} true), beat tracking peaked at {peak_mb} MiB allocated")
    assert abs(found - truth) < truth * 0.01 and peak_mb < 200


# --- 9 and 16: sounds that are empty, NaN, undecodable or not files ------------------------------------------------

MUSIC_SCENE = """audio: {audio}
latents:
  a: {{seed: 1}}
  b: {{seed: 2}}
renders:
  clip:
    format: mp4
    fps: 10
    size: 64
    path: [a, b]
    breathe: {{direction: builtin:smile, strength: [0, 1], follow: loudness}}
    deform: {{layers: fine, amplitude: 0.4, period: 1s, follow: onsets}}
"""


def _scene_problems(tmp_path: Path, audio: str) -> list[str]:
    from morph.motion.latents import ModelDims
    from morph.scene import SceneError, parse_scene

    pytest.importorskip("librosa")
    with pytest.raises(SceneError) as err:
        parse_scene(MUSIC_SCENE.format(audio=audio), tmp_path / "s.yaml", ModelDims(10, 128, 128, 0, 64),
                    tmp_path / "cache")
    return err.value.problems


def test_26_09_an_empty_wav_fails_check(tmp_path):
    import wave

    with wave.open(str(tmp_path / "empty.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(22050)
    problems = _scene_problems(tmp_path, "empty.wav")
    assert len(problems) == 1 and "holds no samples" in problems[0], problems


def test_26_09_a_float_wav_with_nan_samples_is_one_line(tmp_path):
    import struct

    import numpy as np

    from morph.sound.audio import Sound

    data = np.sin(np.arange(22050 * 2) / 10).astype(np.float32)
    data[30000:30010] = np.nan
    raw = data.tobytes()
    (tmp_path / "nan.wav").write_bytes(b"RIFF" + struct.pack("<I", 36 + len(raw)) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 3, 1, 22050, 22050 * 4, 4, 32) + b"data" + struct.pack("<I", len(raw)) + raw)
    with pytest.raises(MorphError, match=r"holds 10 NaN or infinite samples \(first at 1\.36 s\)") as err:
        Sound(tmp_path / "nan.wav", tmp_path / "cache").curve("loudness")
    assert "\n" not in str(err.value)


def test_26_16_undecodable_audio_is_one_line_not_one_per_follow(tmp_path):
    (tmp_path / "noise.mp3").write_bytes(os.urandom(4096))
    problems = _scene_problems(tmp_path, "noise.mp3")
    assert len(problems) == 1 and "noise.mp3" in problems[0] and "has none" not in " ".join(problems), problems


def test_26_16_audio_dev_zero_is_not_a_regular_file(tmp_path):
    problems = _scene_problems(tmp_path, "/dev/zero")
    assert len(problems) == 1 and "/dev/zero is not a regular file" in problems[0], problems


def test_26_03_a_non_finite_projection_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    import numpy as np
    import torch
    from PIL import Image
    from typer.testing import CliRunner

    import morph.engine.photos as photos
    import morph.projection as project
    from morph.cli import app

    photo = tmp_path / "face.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(photo)

    def diverged(images, G, *args, **kwargs):
        return [project.Projection(torch.full((G.num_ws, G.w_dim), float("nan")), [],
                                   np.zeros((64, 64, 3), np.uint8), torch.zeros(1)) for _ in images]

    monkeypatch.setattr(photos, "project_photos", diverged)
    out = CliRunner().invoke(app, ["project", str(photo), "--model", "builtin", "--no-align", "--steps", "0",
                                   "--out", str(tmp_path / "out"), "--quiet"])
    assert isinstance(out.exception, MorphError) and "NaN or infinite latent value" in str(out.exception)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
