"""The studio's routes for sound, undo, keyframes, snapshots and the direction mixer, added after the core
routes of :mod:`morph.studio.server` (the same token guard covers them).

- ``POST /api/edits``: several edits as one undo step (``{"edits": [{path, value | owners}], "gesture": id}``);
  the page sends every edit this way, so each can be undone.
- ``POST /api/undo``, ``POST /api/redo``: the working text before / after a step, byte for byte.
- ``POST /api/keyframe``: a latent added to a render's path at a frame, or the entry of a keyframe removed or
  moved (keyframe k is entry k mod the entries written: a path timed by beats cycles through them).
- ``GET /api/sound``, ``GET /api/audio``: a render's sound curves (JSON) and its file (range requests).
- ``GET /api/snapshot``: a frame as PNG with the latent and the settings in its text chunks.
- ``GET /api/saved``: a frame as the saved file draws it (A/B against the edits).
- ``GET /api/mix``: a latent (or a point between two seeds) moved along several directions, each on its layers.
"""

from __future__ import annotations

import base64
import inspect
import io
import json
from typing import Optional

import numpy as np
import torch
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from morph.core.errors import MorphError
from morph.render.images import png_bytes
from morph.studio import frames as engine
from morph.studio import paths
from morph.studio.controls import mix_text
from morph.studio.edits import Edit, apply, value_text
from morph.studio.history import History
from morph.studio.sound import sound_file, track


def layer_range(text: str, num_ws: int) -> range:
    """``5`` or ``2-7`` (inclusive, as a scene writes layers) → a range inside the model's ``num_ws`` layers."""
    first, _, last = text.partition("-")
    layers = range(int(first), int(last or first) + 1)
    if not (0 <= layers.start < layers.stop <= num_ws):
        raise ValueError(f"layers {text} are outside 0-{num_ws - 1}")
    return layers


def snapshot_png(image: np.ndarray, w: torch.Tensor, settings: dict) -> bytes:
    """PNG bytes of ``image`` whose compressed text chunks hold ``morph:latent`` (the W+ as float32, base64 of
    little-endian bytes, with its shape) and ``morph:settings`` (JSON: scene, render, frame, truncation …)."""
    w32 = w.detach().to(torch.float32).cpu().numpy()
    latent = {"shape": list(w32.shape), "dtype": "<f4", "data": base64.b64encode(w32.astype("<f4").tobytes()).decode()}
    return png_bytes(image, {"morph:settings": json.dumps(settings), "morph:latent": json.dumps(latent)},
                     compress_text=True)


def read_snapshot_latent(data: bytes) -> np.ndarray:
    """The W+ a snapshot PNG carries (``snapshot_png``'s ``morph:latent``)."""
    latent = json.loads(Image.open(io.BytesIO(data)).text["morph:latent"])
    return np.frombuffer(base64.b64decode(latent["data"]), latent["dtype"]).reshape(latent["shape"])


def bad_requests(handler):
    """``handler`` answering a malformed request (a missing field, a number that is not one) with a one-line 400
    instead of a 500; a plain function still runs in the thread pool, as Starlette runs it."""
    is_async = inspect.iscoroutinefunction(handler)

    async def run(request: Request) -> Response:
        try:
            return await handler(request) if is_async else await run_in_threadpool(handler, request)
        except (KeyError, TypeError, ValueError) as err:
            return PlainTextResponse(f"bad request: {type(err).__name__} {err}", 400)
    return run


def extra_routes(studio) -> list[Route]:
    """The routes above over ``studio`` (a :class:`morph.studio.server.Studio`)."""
    history = History()

    def state(**more) -> JSONResponse:
        return JSONResponse({**studio.state(), "history": history.counts(), **more})

    def change(make, gesture: Optional[str] = None) -> None:
        """Replace the working text with ``make(text)`` as one undo step; a MorphError is shown, nothing kept.
        ``work`` is taken before ``lock``, as the studio's own reload and update take them: the other order
        deadlocks against a reload."""
        with studio.work:
            with studio.lock:
                try:
                    text = make(studio.text)
                except MorphError as err:
                    studio.errors = [str(err)]
                    return
                if text == studio.text:
                    return
                history.record(studio.text, gesture)
            studio.update(text)
            studio.notice = ""

    def one(text: str, edit: dict) -> str:
        value = mix_text(edit["owners"], dict(studio.frames.dims.groups)) if edit.get("owners") is not None \
            else value_text(edit.get("value"))
        return apply(text, Edit(tuple(edit["path"]), value))

    async def edits(request: Request) -> Response:
        body = await request.json()

        def make(text: str) -> str:
            for edit in body["edits"]:
                text = one(text, edit)
            return text
        await run_in_threadpool(change, make, body.get("gesture"))
        return state()

    def step(move):
        def handler(request: Request) -> Response:
            with studio.work:  # work before lock, as in change
                with studio.lock:
                    text = move(studio.text)
                if text is not None:
                    studio.update(text)
                studio.notice = "nothing to " + move.__name__ if text is None else move.__name__ + " done"
            return state()
        return handler

    async def keyframe(request: Request) -> Response:
        body = await request.json()
        render = str(body["render"])
        if "remove" in body:
            make = lambda text: paths.remove(text, render, int(body["remove"]) % paths.count(text, render))
        elif "move" in body:
            make = lambda text: paths.move(text, render, int(body["move"]) % paths.count(text, render), int(body["by"]))
        else:
            p, _ = studio.current()
            if p is None or render not in p.scene.renders:
                return state()
            reached = sum(1 for f in p.timelines[render].keyframes if f <= int(body["frame"]))
            make = lambda text: paths.insert(text, render, (reached - 1) % paths.count(text, render) + 1,
                                             str(body["latent"]))
        await run_in_threadpool(change, make)
        return state()

    def _render(request: Request):
        p, at = studio.current()
        name = request.query_params.get("render", "")
        return (p, at, name) if p is not None and name in p.scene.renders else (None, at, name)

    def sound(request: Request) -> Response:
        p, _, name = _render(request)
        if p is None:
            return PlainTextResponse("no such render", 404)
        try:
            return JSONResponse(track(p.scene.renders[name], studio.frames.cache_dir))
        except MorphError as err:
            return JSONResponse({"audio": False, "error": str(err)})

    def audio(request: Request) -> Response:
        p, _, name = _render(request)
        path = sound_file(p.scene.renders[name]) if p is not None else None
        if path is None or not path.is_file():
            return PlainTextResponse("this render has no sound", 404)
        return FileResponse(path, headers={"Cache-Control": "no-store"})

    def snapshot(request: Request) -> Response:
        p, at, name = _render(request)
        if p is None:
            return PlainTextResponse("no such render", 404)
        r = p.scene.renders[name]
        index = min(max(int(request.query_params.get("i", "0")), 0), r.frames - 1)
        f = studio.frames
        image = f.frame(p, name, index, r.size)
        settings = {"scene": str(p.scene.file), "render": name, "frame": index, "fps": r.fps, "size": r.size,
                    "model": p.scene.model, "noise": p.scene.noise, "version": at,
                    "key": _key_at(p.timelines[name].keyframes, list(r.motion.path.keys), index)}
        data = snapshot_png(image, f.latent(p, name, index), settings)
        filename = f"{p.scene.file.stem}-{name}-{index:05d}.png"
        return Response(data, media_type="image/png",
                        headers={"Cache-Control": "no-store", "Content-Disposition": f'attachment; filename="{filename}"'})

    def mix(request: Request) -> Response:
        """``latent=NAME`` or ``seed=X`` (a point between seeds ⌊X⌋ and ⌊X⌋+1, at ``psi``), plus ``d=DIR:S:LAYERS``
        for each direction (strength S on layers ``a-b``)."""
        p, at = studio.current()
        if p is None:
            return PlainTextResponse("the scene is invalid", 409)
        f, q = studio.frames, request.query_params
        try:
            if "seed" in q:
                x, psi = float(q["seed"]), float(q.get("psi", "1"))
                if not (np.isfinite(x) and 0 <= x < 2 ** 31 - 1 and np.isfinite(psi)):
                    raise ValueError(f"seed {q['seed']} at ψ {q.get('psi')}")
                low, u = int(x), x - int(x)
                w = f.seed(low, psi) if u == 0 else torch.lerp(f.seed(low, psi), f.seed(low + 1, psi), u)
            else:
                w = p.ws[q["latent"]].clone()
            for spec in q.getlist("d"):
                name, strength, layers = spec.rsplit(":", 2)
                s = float(strength)
                if not np.isfinite(s):
                    raise ValueError(f"strength {strength}")
                rows = layer_range(layers, w.shape[0])
                w[rows.start:rows.stop] += s * f.direction(p.scene, name)[rows.start:rows.stop].to(w.dtype)
        except (KeyError, ValueError, MorphError) as err:
            return PlainTextResponse(f"bad request: {err}", 400)
        size, fmt = min(f.dims.resolution, 256), "JPEG"
        key = ("mix", at, str(request.query_params))
        data = f.memo.get(key, lambda: engine.encode(engine.resize(f.look(p, w), size), fmt))
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    saved: dict = {"mtime": None, "prepared": None}

    def saved_frame(request: Request) -> Response:
        """Frame ``i`` of ``render`` as the saved file draws it (the B of an A/B against the working text)."""
        with studio.lock:
            text, mtime = studio.disk_text, studio.mtime
        try:
            if saved["mtime"] != mtime:
                scene = studio.frames.parse(text, studio.file)
                saved.update(mtime=mtime, prepared=studio.frames.prepare(scene))
        except MorphError as err:
            return PlainTextResponse(f"the saved file is invalid: {str(err).splitlines()[0]}", 409)
        p, name = saved["prepared"], request.query_params.get("render", "")
        if name not in p.scene.renders:
            return PlainTextResponse("the saved file has no such render", 404)
        r = p.scene.renders[name]
        index = min(max(int(request.query_params.get("i", "0")), 0), r.frames - 1)
        size = min(r.size, 256) if request.query_params.get("quality") == "preview" else r.size
        fmt = "JPEG" if size < r.size else "PNG"
        data = studio.frames.memo.get(("saved", mtime, name, index, size),
                                      lambda: engine.encode(studio.frames.frame(p, name, index, size), fmt))
        return Response(data, media_type=f"image/{fmt.lower()}", headers={"Cache-Control": "no-store"})

    def undo(text: str) -> Optional[str]:
        return history.undo(text)

    def redo(text: str) -> Optional[str]:
        return history.redo(text)

    routes = {"/api/edits": (edits, "POST"), "/api/undo": (step(undo), "POST"), "/api/redo": (step(redo), "POST"),
              "/api/keyframe": (keyframe, "POST"), "/api/sound": (sound, "GET"), "/api/audio": (audio, "GET"),
              "/api/snapshot": (snapshot, "GET"), "/api/mix": (mix, "GET"), "/api/saved": (saved_frame, "GET")}
    return [Route(path, bad_requests(handler), methods=[method]) for path, (handler, method) in routes.items()]


def _key_at(keyframes: tuple, keys: list, index: int) -> Optional[str]:
    """The key reached last at or before frame ``index`` (keys cycle on a path timed by beats)."""
    reached = sum(1 for f in keyframes if f <= index)
    return keys[(reached - 1) % len(keys)] if reached and keys else None
