"""The studio's web server: one scene file, a token-guarded JSON API and the static page.

Framework: Starlette on uvicorn. Starlette is a small, well-kept ASGI toolkit (routing, static files,
middleware, a thread pool for blocking handlers, all we need and little else) and uvicorn its usual
server; both are pure Python wheels, so ``morph[studio]`` installs anywhere morph does. The frame
handlers are blocking torch calls and run in Starlette's thread pool; the generator itself is
serialised by a lock in :mod:`morph.studio.frames`.

Security: like Jupyter, a random token is in the URL printed at start; every request needs it (query
``token=``, header ``X-Morph-Token`` or the cookie the page sets), otherwise 403. The server binds
127.0.0.1 unless ``--host`` names another address.
"""

from __future__ import annotations

import hmac
import secrets
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from morph.core.errors import MorphError
from morph.core.files import atomic_path
from morph.scene import SceneError
from morph.studio import frames as engine
from morph.studio.controls import controls, mix_text
from morph.studio.edits import Edit, apply, compose, value_text

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "morph_studio_token"
PREVIEW = 256  # px: previews are at most this size (full size follows when scrubbing stops)


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
    lock: threading.RLock = field(default_factory=threading.RLock)
    shown_controls: list = field(default_factory=list)  # the last valid scene's, kept while the text is invalid

    # the scene -------------------------------------------------------------------------------------------------

    def reload(self) -> None:
        """Read the file (again): its text becomes the working text, unsaved edits are dropped."""
        with self.lock:
            try:
                self.mtime = self.file.stat().st_mtime_ns
                self.disk_text = self.file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                self.errors, self.version = [f"{self.file}: cannot read the scene ({e})"], self.version + 1
                return
            self.update(self.disk_text)

    def poll(self) -> None:
        """Reload when the file changed on disk (an editor saved it)."""
        try:
            mtime = self.file.stat().st_mtime_ns
        except OSError:
            return
        if mtime != self.mtime:
            dirty = self.text != self.disk_text
            self.reload()
            self.notice = "the file changed on disk" + ("; unsaved edits were dropped" if dirty else "")

    def update(self, text: str) -> None:
        """Make ``text`` the working text; if it validates, the scene drawn from now on."""
        with self.lock:
            self.text, self.version = text, self.version + 1
            try:
                scene = self.frames.parse(text, self.file)
                self.prepared, self.prepared_at = self.frames.prepare(scene), self.version
                self.errors = []
            except MorphError as err:
                self.errors = str(err).splitlines()

    def edit(self, path: list, value: object = None, owners: Optional[list[str]] = None) -> None:
        """Apply one edit from the page (a value as YAML text or JSON, or a mix's per-layer owners)."""
        with self.lock:
            text = mix_text(owners, dict(self.frames.dims.groups)) if owners is not None else value_text(value)
            self.update(apply(self.text, Edit(tuple(path), text)))
            self.notice = ""

    def save(self) -> bool:
        """Validate the working text as ``morph check`` would and write it atomically; False if invalid."""
        with self.lock:
            try:
                self.frames.parse(self.text, self.file)
            except SceneError as err:
                self.errors = err.problems
                return False
            mode = self.file.stat().st_mode if self.file.exists() else None
            with atomic_path(self.file) as tmp:
                tmp.write_text(self.text, encoding="utf-8")
                if mode is not None:
                    tmp.chmod(mode)  # the file keeps its permissions
            self.disk_text, self.mtime = self.text, self.file.stat().st_mtime_ns
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
                if not self.errors:
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
                    "dirty": self.text != self.disk_text, "notice": self.notice, "renders": renders,
                    "controls": ctrl, "latents": latents, "directions": directions,
                    "model": {"resolution": dims.resolution, "num_ws": dims.num_ws},
                    "groups": {g: [r.start, r.stop] for g, r in dims.groups},
                    "render": self.job.state() if self.job else None}


def _image(data: bytes, fmt: str) -> Response:
    return Response(data, media_type=f"image/{fmt.lower()}", headers={"Cache-Control": "no-store"})


def _size(quality: str, full: int, resolution: int) -> tuple[int, str]:
    """(pixels, format) of a picture: previews at most PREVIEW px as JPEG, full size as PNG."""
    return (min(resolution, PREVIEW), "JPEG") if quality == "preview" else (full, "PNG")


def make_app(studio: Studio, token: str) -> Starlette:
    """The ASGI app over ``studio``; every route needs ``token``."""

    def guard(app):
        """Plain ASGI middleware: 403 without the token; the page's response sets it as a cookie."""
        async def check(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            request = Request(scope)
            given = (request.query_params.get("token") or request.headers.get("x-morph-token")
                     or request.cookies.get(COOKIE) or "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                response = PlainTextResponse("403: this page needs the token from the URL morph studio printed", 403)
                return await response(scope, receive, send)

            async def send_with_cookie(message):
                if message["type"] == "http.response.start" and scope["path"] == "/":
                    cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
                    message = {**message, "headers": [*message["headers"], (b"set-cookie", cookie.encode())]}
                await send(message)

            await app(scope, receive, send_with_cookie)
        return check

    def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    def state(request: Request) -> Response:
        studio.poll()
        return JSONResponse(studio.state())

    async def edit(request: Request) -> Response:
        body = await request.json()
        try:
            studio.edit(body["path"], body.get("value"), body.get("owners"))
        except MorphError as err:
            studio.errors = [str(err)]
        return JSONResponse(studio.state())

    def save(request: Request) -> Response:
        saved = studio.save()
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
        index = min(max(int(q.get("i", "0")), 0), r.frames - 1)
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
        try:
            if "seed" in q:
                psi = float(q.get("psi", "1"))
                w, key = f.seed(int(q["seed"]), psi), ("seed", int(q["seed"]), psi)
            else:
                w, key = p.ws[q["latent"]], (at, q["latent"])
            strength = float(q.get("s", "0"))
            if q.get("direction") and strength:
                w = w + strength * f.direction(p.scene, q["direction"])
                key += (q["direction"], strength)
        except (KeyError, ValueError, MorphError) as err:
            return PlainTextResponse(f"bad request: {err}", 400)
        size, fmt = _size("preview", 0, f.dims.resolution)
        data = f.memo.get(("look",) + key, lambda: engine.encode(engine.resize(f.look(w, p.scene.noise), size), fmt))
        return _image(data, fmt)

    async def add(request: Request) -> Response:
        body = await request.json()
        try:
            studio.edit(["latents", body["name"]], body["text"])
        except MorphError as err:
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
              Mount("/static", StaticFiles(directory=STATIC))]
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
    print(f"morph studio: {scene} at http://{shown}:{sock.getsockname()[1]}/?token={token}", flush=True)
    config = uvicorn.Config(make_app(studio, token), log_level="warning", lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
