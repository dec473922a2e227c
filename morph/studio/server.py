"""The studio's web server: one scene file, a token-guarded JSON API and the static page.

Framework: Starlette on uvicorn. Starlette is a small, well-kept ASGI toolkit (routing, static files,
middleware, a thread pool for blocking handlers, all we need and little else) and uvicorn its usual
server; both are pure Python wheels, so ``morph[studio]`` installs anywhere morph does. The frame
handlers are blocking torch calls and run in Starlette's thread pool; the generator itself is
serialised by a lock in :mod:`morph.studio.frames`.

Security: like Jupyter, a random token is in the URL printed at start; every request needs it (query
``token=``, header ``X-Morph-Token`` or the cookie the page sets), otherwise 403. A request that changes
anything (every POST) needs it in the ``X-Morph-Token`` header: a cookie or a query is not enough, since a
cookie's ``SameSite`` ignores ports and any other local page could send it. Every request must name the
studio in ``Host`` (a loopback name, or the ``--host`` given, with the studio's port: DNS rebinding) and
come from the studio's own page (``Origin``, ``Sec-Fetch-Site``) when the browser says where it comes
from. The server binds 127.0.0.1 unless ``--host`` names another address.

Slow work (a scene edit that projects photos or downloads a model) runs in the thread pool under its own
lock, so ``/api/state`` keeps answering and tells the page what is being done (``busy``).
"""

from __future__ import annotations

import hmac
import json
import math
import os
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from morph.core.errors import MorphError, os_error_line
from morph.core.files import atomic_path
from morph.core.limits import MAX_EDIT_DEPTH, MAX_REQUEST_BYTES, MAX_STRENGTH
from morph.core.progress import log
from morph.core.runtime import Terminated
from morph.scene import SceneError, read_scene_text
from morph.studio import frames as engine
from morph.studio.controls import controls, mix_text
from morph.studio.edits import Edit, apply, compose, value_text
from morph.studio.routes import extra_routes

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "morph_studio_token"
PREVIEW = 256  # px: previews are at most this size (full size follows when scrubbing stops)
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")  # the names a Host header may give (with the studio's port)


class BadRequest(Exception):
    """A request the API cannot take (not JSON, a wrong field): 400 with this one line."""


@dataclass
class Studio:
    """The scene being edited: the file's text, the working text with the page's edits, the last valid scene."""

    file: Path
    frames: engine.Frames
    out: Path
    device_name: str
    disk_text: str = ""
    text: str = ""
    mtime: int = 0
    version: int = 0
    errors: list[str] = field(default_factory=list)
    notice: str = ""
    prepared: Optional[engine.LoadedScene] = None
    prepared_at: int = 0           # the version the prepared scene was made from (key of cached frames)
    job: Optional[engine.RenderRun] = None
    busy: str = ""                 # the slow work under way, shown by the page
    lock: threading.RLock = field(default_factory=threading.RLock)  # the fields above: held only briefly
    work: threading.RLock = field(default_factory=threading.RLock)  # slow work (parse, project, download, save)
    shown_controls: list = field(default_factory=list)  # the last valid scene's, kept while the text is invalid

    # the scene -------------------------------------------------------------------------------------------------

    def reload(self) -> None:
        """Read the file (again): its text becomes the working text, unsaved edits are dropped."""
        with self.work:
            try:
                mtime = self.file.stat().st_mtime_ns
                text = read_scene_text(self.file)
            except (OSError, MorphError) as e:
                with self.lock:
                    self.errors, self.version = [str(e) if isinstance(e, MorphError) else os_error_line(e)], \
                        self.version + 1
                return
            with self.lock:
                self.mtime, self.disk_text = mtime, text
            self.update(text)

    def poll(self) -> None:
        """Reload when the file changed on disk (an editor saved it) and the page has no unsaved edits; with
        unsaved edits, say so (Save then refuses to overwrite the file). Skipped while slow work runs."""
        try:
            mtime = self.file.stat().st_mtime_ns
        except OSError:
            return
        if mtime == self.mtime or not self.work.acquire(blocking=False):
            return
        try:
            if self.text == self.disk_text:
                self.reload()
                self.notice = "the file changed on disk"
            else:
                self.mtime = mtime
                self.notice = ("the file changed on disk: Save will not overwrite it; Revert loads it (dropping the "
                               "edits made here)")
        finally:
            self.work.release()

    def update(self, text: str) -> None:
        """Make ``text`` the working text; if it validates, the scene drawn from now on. The slow part (parse,
        project photos, download a model) holds only ``work``, so the state stays readable meanwhile."""
        with self.work:
            with self.lock:
                self.text, self.version = text, self.version + 1
                version = self.version
            self.busy = "preparing the scene (projecting photos or fetching files can take a while)"
            prepared, errors = None, []
            try:
                prepared = self.frames.prepare(self.frames.parse(text, self.file))
            except MorphError as err:
                errors = str(err).splitlines()
            finally:
                self.busy = ""
            with self.lock:
                if prepared is not None:
                    self.prepared, self.prepared_at = prepared, version
                self.errors = errors

    def edit(self, path: list, value: object = None, owners: Optional[list[str]] = None) -> None:
        """Apply one edit from the page (a value as YAML text or JSON, or a mix's per-layer owners); an edit that
        would leave text the next edit cannot read (broken or too deeply nested YAML) is refused (MorphError)."""
        with self.work:
            text = mix_text(owners, dict(self.frames.dims.groups)) if owners is not None else value_text(value)
            edited = apply(self.text, Edit(tuple(path), text))
            compose(edited)
            self.update(edited)
            self.notice = ""

    def save(self) -> bool:
        """Validate the working text as ``morph check`` would and write it atomically, through a symlink to the
        file it names; False (with the reason in ``notice`` or ``errors``) if it is invalid, or if the file
        changed on disk since it was read: an editor's change is never overwritten unseen."""
        with self.work:
            try:
                self.frames.parse(self.text, self.file)
            except SceneError as err:
                self.errors = err.problems
                return False
            target = Path(os.path.realpath(self.file))  # a symlinked scene stays a link; its target is written
            try:
                on_disk = read_scene_text(target) if target.exists() else ""
            except MorphError as err:
                self.notice = f"not saved: {err}"
                return False
            if on_disk != self.disk_text:
                self.notice = ("not saved: the file changed on disk since the studio read it; Revert loads it "
                               "(dropping the edits made here), or copy your edits over by hand")
                return False
            try:
                mode = target.stat().st_mode if target.exists() else None
                with atomic_path(target) as tmp:
                    tmp.write_text(self.text, encoding="utf-8")
                    if mode is not None:
                        tmp.chmod(mode)  # the file keeps its permissions
                mtime = target.stat().st_mtime_ns
            except OSError as err:
                self.notice = f"not saved: {os_error_line(err)}"
                return False
            with self.lock:
                self.disk_text, self.mtime = self.text, mtime
                self.notice = f"saved {self.file.name}"
                self.version += 1
            return True

    def current(self) -> tuple[Optional[engine.LoadedScene], int]:
        """The scene drawn now and the version it was made from, read together."""
        with self.lock:
            return self.prepared, self.prepared_at

    # what the page shows ---------------------------------------------------------------------------------------

    def state(self) -> dict:
        with self.lock:
            p, dims = self.prepared, self.frames.dims
            renders, ctrl, latents, directions = [], [], [], engine.builtin_directions()
            if p is not None:
                if not self.errors and self.prepared_at == self.version:  # (not while a newer text is prepared)
                    self.shown_controls = controls(p.scene, compose(self.text))
                ctrl = self.shown_controls
                for name, r in p.scene.renders.items():
                    tl = p.timelines[name]
                    renders.append({"name": name, "frames": r.frames, "fps": r.fps, "size": r.size,
                                    "format": r.format, "keyframes": list(tl.keyframes),
                                    "keys": list(r.motion.path.keys), "frame": r.frame})
                latents = list(p.scene.latents)
                directions = list(dict.fromkeys(list(p.scene.directions) + directions))
            return {"version": self.version, "file": str(self.file), "name": self.file.name, "errors": self.errors,
                    "dirty": self.text != self.disk_text, "notice": self.notice, "busy": self.busy, "renders": renders,
                    "controls": ctrl, "latents": latents, "directions": directions,
                    "model": {"resolution": dims.resolution, "num_ws": dims.num_ws},
                    "groups": {g: [r.start, r.stop] for g, r in dims.groups},
                    "render": self.job.state() if self.job else None}


def _image(data: bytes, fmt: str) -> Response:
    return Response(data, media_type=f"image/{fmt.lower()}", headers={"Cache-Control": "no-store"})


def _size(quality: str, full: int, resolution: int) -> tuple[int, str]:
    """(pixels, format) of a picture: previews at most PREVIEW px as JPEG, full size as PNG."""
    return (min(resolution, PREVIEW), "JPEG") if quality == "preview" else (full, "PNG")


def _forbidden(why: str) -> PlainTextResponse:
    return PlainTextResponse(f"403: {why}", 403)


def refusal(scope: dict, token: str, port: Optional[int], host: str) -> Optional[str]:
    """Why the request in ``scope`` is refused (None when it may go on): a wrong or missing token (in the
    ``X-Morph-Token`` header for a POST), a ``Host`` that is not the studio's, or a page other than the studio's."""
    request = Request(scope)
    headers = request.headers
    names = set(LOOPBACK) | ({f"[{host}]" if ":" in host else host} - {"0.0.0.0", "[::]"})
    name, _, given_port = headers.get("host", "").rpartition(":")
    if name.lower() not in names or (port is not None and given_port != str(port)):
        return "the Host header does not name this studio (open the URL morph studio printed)"
    origin = headers.get("origin")
    if origin is not None and origin != f"http://{headers['host']}":
        return f"requests from {origin[:80]} are not the studio's own page"
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return "requests from another page (another port or site) are refused"
    if request.method == "POST":
        given = headers.get("x-morph-token") or ""
    else:
        given = request.query_params.get("token") or headers.get("x-morph-token") or request.cookies.get(COOKIE) or ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        return ("this request needs the token in the X-Morph-Token header" if request.method == "POST" else
                "this page needs the token from the URL morph studio printed")
    return None


async def _json_body(request: Request) -> dict:
    """The request's body as a JSON object (at most MAX_REQUEST_BYTES); BadRequest in one line otherwise."""
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > MAX_REQUEST_BYTES:
        raise BadRequest(f"the body must be at most {MAX_REQUEST_BYTES} bytes of JSON")
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise BadRequest(f"the body must be at most {MAX_REQUEST_BYTES} bytes of JSON")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _edit_path(body: dict) -> list:
    """The ``path`` of an edit: 1..MAX_EDIT_DEPTH keys (strings) and list indices (whole numbers)."""
    path = body.get("path")
    if (not isinstance(path, list) or not 1 <= len(path) <= MAX_EDIT_DEPTH
            or not all(isinstance(k, str) or (isinstance(k, int) and not isinstance(k, bool)) for k in path)):
        raise BadRequest(f"path must be a list of 1 to {MAX_EDIT_DEPTH} keys and indices")
    return path


def _number(q, name: str, default: str, bound: float) -> float:
    """Query parameter ``name`` as a finite number within ±``bound``; BadRequest otherwise."""
    try:
        value = float(q.get(name, default))
    except ValueError:
        raise BadRequest(f"{name} must be a number") from None
    if not math.isfinite(value) or abs(value) > bound:
        raise BadRequest(f"{name} must be a finite number within ±{bound:g}")
    return value


def _whole(q, name: str, default: str) -> int:
    text = q.get(name, default)
    if not text.lstrip("-").isdigit() or len(text) > 12:
        raise BadRequest(f"{name} must be a whole number")
    return int(text)


def make_app(studio: Studio, token: str, port: Optional[int] = None, host: str = "127.0.0.1") -> Starlette:
    """The ASGI app over ``studio``; every route needs ``token`` (see :func:`refusal`); ``port``: the one the
    studio listens on, which the ``Host`` header must name (None: any, for in-process tests)."""

    def guard(app):
        """Plain ASGI middleware: 403 unless :func:`refusal` lets the request in; the page's response sets the
        token as a cookie; a BadRequest anywhere is a 400 with its one line."""
        async def check(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            why = refusal(scope, token, port, host)
            if why is not None:
                log(f"studio: {scope.get('method', '?')} {scope['path']} refused: {why}")
                return await _forbidden(why)(scope, receive, send)

            start = time.monotonic()

            async def send_with_cookie(message):
                if message["type"] == "http.response.start":
                    if scope["path"] == "/":
                        cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
                        message = {**message, "headers": [*message["headers"], (b"set-cookie", cookie.encode())]}
                    if scope["method"] != "GET" or message["status"] >= 400:  # edits, saves, renders and refusals
                        log(f"studio: {scope['method']} {scope['path']} -> {message['status']} "
                            f"({(time.monotonic() - start) * 1000:.0f} ms)")
                await send(message)

            try:
                await app(scope, receive, send_with_cookie)
            except BadRequest as err:
                await PlainTextResponse(f"400: {err}", 400)(scope, receive, send)
        return check

    def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    def state(request: Request) -> Response:
        studio.poll()
        return JSONResponse(studio.state())

    async def edit(request: Request) -> Response:
        body = await _json_body(request)
        path, owners = _edit_path(body), body.get("owners")
        if owners is not None and not (isinstance(owners, list) and all(isinstance(o, str) for o in owners)):
            raise BadRequest("owners must be a list of latent names")
        try:
            await run_in_threadpool(studio.edit, path, body.get("value"), owners)
        except MorphError as err:  # the scene's own trouble (a merge key, broken YAML): shown as its errors
            studio.errors = [str(err)]
        return JSONResponse(studio.state())

    def save(request: Request) -> Response:
        saved = studio.save()
        log(f"studio: {studio.notice or 'not saved: the scene has errors'}" if not saved else
            f"studio: saved {studio.file}")
        return JSONResponse({"saved": saved, **studio.state()})

    def revert(request: Request) -> Response:
        studio.reload()
        studio.notice = "reverted to the file"
        return JSONResponse(studio.state())

    def frame(request: Request) -> Response:
        q = request.query_params
        p, at = studio.current()
        name = q.get("render", "")
        if p is None or name not in p.scene.renders:
            return PlainTextResponse("no such render", 404)
        r = p.scene.renders[name]
        index = min(max(_whole(q, "i", "0"), 0), r.frames - 1)
        size, fmt = _size(q.get("quality", "full"), r.size, studio.frames.dims.resolution)
        data = studio.frames.memo.get((at, name, index, size, fmt),
                                    lambda: engine.encode(studio.frames.frame(p, name, index, size), fmt))
        return _image(data, fmt)

    def look(request: Request) -> Response:
        """A seed (``seed=N``) or a latent of the scene (``latent=NAME``), moved ``s`` along ``direction``."""
        q = request.query_params
        p, at = studio.current()
        if p is None:
            return PlainTextResponse("the scene is invalid", 409)
        f = studio.frames
        direction = q.get("direction")
        if direction and direction not in p.scene.directions and direction not in engine.builtin_directions():
            raise BadRequest("direction must be one of the scene's directions or builtin:NAME")
        try:
            if "seed" in q:
                psi, seed = _number(q, "psi", "1", MAX_STRENGTH), _whole(q, "seed", "0")
                w, key = f.seed(seed, psi), ("seed", seed, psi, p.G.info.sha256)
            else:
                w, key = p.ws[q["latent"]], (at, q["latent"])
            strength = _number(q, "s", "0", MAX_STRENGTH)
            if direction and strength:
                w = w + strength * f.direction(p.scene, direction)
                key += (direction, strength)
        except (KeyError, ValueError, MorphError) as err:
            raise BadRequest(" ".join(str(err).split())) from None
        if not bool(torch.isfinite(w).all()):
            raise BadRequest("that latent is not finite")
        size, fmt = _size("preview", 0, f.dims.resolution)
        data = f.memo.get(("look",) + key, lambda: engine.encode(engine.resize(f.look(p, w), size), fmt))
        return _image(data, fmt)

    async def add(request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body.get("name"), str) or not isinstance(body.get("text"), str):
            raise BadRequest("name and text must be strings")
        try:
            await run_in_threadpool(studio.edit, ["latents", body["name"]], body["text"])
        except MorphError as err:  # the scene's own trouble (a merge key, broken YAML): shown as its errors
            studio.errors = [str(err)]
        return JSONResponse(studio.state())

    def render(request: Request) -> Response:
        if studio.job and studio.job.running:
            return JSONResponse(studio.state())
        studio.job = engine.start_render(studio.file, studio.out, studio.frames.cache_dir, studio.device_name)
        return JSONResponse(studio.state())

    def output(request: Request) -> Response:
        job = studio.job
        name = request.path_params["name"]
        if job is None or name not in job.files:
            return PlainTextResponse("not rendered yet", 404)
        path = Path(job.files[name])
        path = path if path.is_absolute() else Path.cwd() / path
        return FileResponse(path) if path.is_file() else PlainTextResponse("a folder of PNGs: " + str(path), 404)

    routes = [Route("/", index), Route("/api/state", state), Route("/api/edit", edit, methods=["POST"]),
              Route("/api/save", save, methods=["POST"]), Route("/api/revert", revert, methods=["POST"]),
              Route("/api/frame", frame), Route("/api/look", look), Route("/api/add", add, methods=["POST"]),
              Route("/api/render", render, methods=["POST"]), Route("/outputs/{name}", output),
              *extra_routes(studio), Mount("/static", StaticFiles(directory=STATIC))]
    return Starlette(routes=routes, middleware=[Middleware(guard)])


def serve(scene: Path, host: str = "127.0.0.1", port: int = 8765, device: str = "auto",
          cache: Optional[Path] = None, out: Path = Path("outputs")) -> None:
    """Load the scene's model and photos, bind ``host:port`` (0: any free port), print the URL, serve."""
    import uvicorn

    frames = engine.open_frames(scene, device, cache)
    studio = Studio(scene, frames, out.resolve(), device)
    studio.reload()
    token = secrets.token_urlsafe(24)
    try:
        sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as e:
        raise MorphError(f"cannot listen on {host}:{port} ({e.strerror})", "--port",
                         "choose another port (0 picks a free one)") from None
    shown = f"[{host}]" if ":" in host else host
    try:
        print(f"morph studio: {scene} at http://{shown}:{sock.getsockname()[1]}/?token={token}", flush=True)
        config = uvicorn.Config(make_app(studio, token, sock.getsockname()[1], host), log_level="warning",
                                lifespan="off")
        uvicorn.Server(config).run(sockets=[sock])
    except Terminated:  # uvicorn shut down cleanly, then passed SIGTERM on: the studio's own line, not a render's
        print("morph studio: stopped (SIGTERM); edits not saved in the page were not written", file=sys.stderr)
        raise SystemExit(143) from None
