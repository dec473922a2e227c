"""Composes a batch of faces from signed-distance shapes, painting back to front.

All work is elementwise over [N, H, W] arrays, so a face renders identically alone or in any
batch. Image coordinates have y pointing down and span [-1, 1] / ZOOM; the head is drawn in
its own frame (u, v), rotated by ``tilt`` about the neck, with (0, 0) at the centre of the face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from morph.training.toyfaces import palette
from morph.training.toyfaces.params import BALD, LONG, FaceParams, sample_params
from morph.training.toyfaces.shapes import bend, box, circle, coverage, ellipse, length, paint, rotate, segment

Array = np.ndarray

HEAD_Y = -0.06  # image y of the face centre
PIVOT_Y = 0.45  # image y of the neck point the head tilts about
FACE_RY = 0.50  # half height of the face
ZOOM = 1.12  # how much of the image the portrait fills
CHUNK_PIXELS = 1 << 16  # pixels per internal batch: keeps temporaries small enough to stay in cache


def _rgb(r: float, g: float, b: float) -> Array:
    """A fixed colour as [3, 1, 1, 1] planes."""
    return np.array([r, g, b], np.float32).reshape(3, 1, 1, 1)


EYE_WHITE, PUPIL, HIGHLIGHT = _rgb(0.97, 0.96, 0.94), _rgb(0.03, 0.02, 0.02), _rgb(1.0, 1.0, 1.0)
MOUTH_INSIDE, TEETH, LIP_TINT = _rgb(0.32, 0.06, 0.08), _rgb(0.98, 0.97, 0.93), _rgb(0.62, 0.36, 0.36)


def render(params: FaceParams, size: int = 64) -> np.ndarray:
    """Render every face in ``params`` as uint8 RGB images of shape [N, size, size, 3]."""
    out = np.empty((len(params), size, size, 3), np.uint8)
    step = max(1, CHUNK_PIXELS // (size * size))
    for start in range(0, len(params), step):
        canvas = _render_planes(params[start:start + step], size)
        out[start:start + step] = np.moveaxis(np.rint(np.clip(canvas, 0.0, 1.0) * 255.0), 0, -1)
    return out


def render_seed(seed: int, size: int = 64) -> np.ndarray:
    """One random face, [size, size, 3] uint8: the first face of ``sample_params(seed, n)``."""
    return render(sample_params(seed, 1), size)[0]


@dataclass
class _Frame:
    """Per-batch pixel coordinates and per-face geometry, shared by the painting steps."""

    p: FaceParams
    px: float  # size of one pixel in frame units
    x: Array  # image coordinates, [1, 1, W] and [1, H, 1]
    y: Array
    u: Array  # head-frame coordinates, [N, H, W]
    v: Array
    turn: Array  # per-face values broadcastable to [N, H, W]
    rx: Array  # half width of the face
    light: tuple[Array, Array, Array]  # unit light direction (x, y, towards viewer)
    skin: Array  # [3, N, 1, 1]
    hair: Array
    beard: Array  # hair colour, pushed away from the skin's brightness

    def col(self, name: str) -> Array:
        """Parameter ``name`` shaped [N, 1, 1] for broadcasting against pixels."""
        return getattr(self.p, name).astype(np.float32)[:, None, None]

    def cover(self, d: Array) -> Array:
        """Anti-aliased coverage of distance field ``d``."""
        return coverage(d, self.px)

    def shade(self, nx: Array, ny: Array) -> Array:
        """Lambert-like brightness for a bulging surface whose normal leans by (nx, ny)."""
        lx, ly, lz = self.light
        nz = np.sqrt(np.maximum(1.0 - nx * nx - ny * ny, 0.0))
        return 0.68 + 0.42 * (nx * lx + ny * ly + nz * lz)


def _planes(rgb: Array) -> Array:
    """[N, 3] colours -> [3, N, 1, 1] planes."""
    return np.ascontiguousarray(rgb.T, np.float32)[:, :, None, None]


def _frame(p: FaceParams, size: int) -> _Frame:
    """Pixel grid, head frame, light and colours for a chunk of faces."""
    px = 2.0 / (size * ZOOM)
    g = ((np.arange(size, dtype=np.float32) + 0.5 - 0.5 * size) * px).astype(np.float32)
    x, y = g[None, None, :], g[None, :, None]
    tilt = p.tilt.astype(np.float32)[:, None, None]
    u, v = rotate(x, y - PIVOT_Y, tilt)
    v = v + np.float32(PIVOT_Y - HEAD_Y)
    lx, ly, lz = 0.75 * p.light.astype(np.float32), np.float32(-0.35), np.float32(0.8)  # from above, in front
    norm = np.sqrt(lx * lx + ly * ly + lz * lz)
    light = ((lx / norm)[:, None, None], (ly / norm)[:, None, None], (lz / norm)[:, None, None])
    skin, hair = palette.ramp(palette.SKIN, p.skin), palette.hair(p.hair_light, p.hair_red)
    return _Frame(
        p=p, px=px, x=x, y=y, u=u, v=v, turn=p.turn.astype(np.float32)[:, None, None],
        rx=(0.40 * p.face_width.astype(np.float32))[:, None, None], light=light,
        skin=_planes(skin), hair=_planes(hair), beard=_planes(palette.contrast(0.85 * hair, skin)),
    )


def _render_planes(p: FaceParams, size: int) -> Array:
    """Float RGB planes [3, N, H, W] in 0..1 for one chunk of faces."""
    f = _frame(p, size)
    canvas = _background(f, size)
    hair = _hair_shape(f)
    _hair_back(f, canvas, hair)
    _body(f, canvas)
    face_d = _head(f, canvas)
    _nose(f, canvas)
    mouth = _mouth_shape(f)
    _beard(f, canvas, face_d, mouth)
    _mouth(f, canvas, mouth)
    _eyes(f, canvas)
    _hair_front(f, canvas, hair)
    _glasses(f, canvas)
    return canvas


def _background(f: _Frame, size: int) -> Array:
    """A two-colour linear gradient whose direction and strength vary per face."""
    p = f.p
    top = _planes(palette.hsv(p.bg_hue, 0.35, p.bg_value))
    bottom = _planes(palette.hsv((p.bg_hue + 0.06) % 1.0, 0.5, 0.65 * p.bg_value))
    angle = 1.3 * f.col("bg_gradient")
    t = 0.5 + 0.5 * (f.y * np.cos(angle) + f.x * np.sin(angle))
    canvas = np.empty((3, len(p), size, size), np.float32)
    for c in range(3):
        canvas[c] = top[c] + t * (bottom[c] - top[c])
    return canvas


def _body(f: _Frame, canvas: Array) -> None:
    """Neck and shoulders in a shirt with a V neckline (not tilted with the head)."""
    p = f.p
    neck = box(f.x - 0.35 * np.sin(f.col("tilt")), f.y - 0.62, 0.15 * f.col("face_width"), 0.4, 0.06)
    paint(canvas, f.cover(neck), f.skin * 0.78)
    shirt = np.maximum(ellipse(f.x, f.y - 1.26, 0.9, 0.58), (0.9 - 1.5 * np.abs(f.x) - f.y) * (1 / 1.8))
    shirt_rgb = _planes(palette.hsv(p.shirt_hue, 0.55, p.shirt_value))
    paint(canvas, f.cover(shirt), shirt_rgb * (0.85 + 0.25 * f.light[0] * f.x))


def _head(f: _Frame, canvas: Array) -> Array:
    """Ears and the shaded face; returns the face's distance field for later layers."""
    u, v, rx, t = f.u, f.v, f.rx, f.turn
    for side in (-1.0, 1.0):
        ear_u = u - (side * (rx - 0.01) - 0.12 * t)
        paint(canvas, f.cover(ellipse(ear_u, v - 0.06, 0.07, 0.105)), f.skin * (0.9 + 0.1 * side * f.light[0]))
    # an egg: narrower towards the chin, and the side the head turns to is compressed
    taper = 1.0 - (0.1 + 0.3 * f.col("jaw")) * np.square(np.clip(v * (1.0 / FACE_RY), 0.0, 1.0))
    fu = u - 0.03 * t
    half = rx * (1.0 - 0.08 * t * np.sign(fu)) * taper
    d = ellipse(fu, v, half, FACE_RY)
    paint(canvas, f.cover(d), f.skin * f.shade((u - 0.1 * t) / (rx * 1.15), v * (1 / 0.7)))
    return d


def _eye_centre(f: _Frame, side: float) -> tuple[Array, float]:
    """Centre (u, v) of the left (side -1) or right (side 1) eye, following the head turn."""
    return side * 0.16 * (0.5 + 0.5 * f.col("face_width")) + 0.15 * f.turn, -0.03


def _foreshorten(f: _Frame, side: float) -> Array:
    """Horizontal squash of a feature on the side the head turns away to."""
    return 1.0 - 0.45 * np.maximum(side * f.turn, 0.0)


def _eyes(f: _Frame, canvas: Array) -> None:
    """Eye whites, gaze-shifted irises and pupils, upper lids, highlights and eyebrows."""
    u, v = f.u, f.v
    size = f.col("eye_size")
    iris_rgb = _planes(palette.pick(palette.IRIS, f.p.eye_color))
    gx, gy = 0.032 * f.col("gaze_x"), 0.016 * f.col("gaze_y")
    brow_y = -0.15 - 0.035 * f.col("brow_raise")
    brow_r = 0.019 * f.col("brow_thick")
    for side in (-1.0, 1.0):
        cx, cy = _eye_centre(f, side)
        squash = _foreshorten(f, side)
        eu, ev = u - cx, v - cy
        white = ellipse(eu, ev, 0.072 * size * squash, 0.047 * size)
        white_a = f.cover(white)
        paint(canvas, white_a, EYE_WHITE)
        iu, iv = eu - gx * squash, ev - gy
        paint(canvas, np.minimum(white_a, f.cover(ellipse(iu, iv, 0.04 * size * squash, 0.04 * size))), iris_rgb)
        paint(canvas, np.minimum(white_a, f.cover(ellipse(iu, iv, 0.019 * size * squash, 0.019 * size))), PUPIL)
        lid = np.maximum(np.abs(white) - 0.012, ev + 0.01)
        paint(canvas, f.cover(lid), f.skin * 0.12)
        paint(canvas, f.cover(circle(iu - 0.013, iv + 0.014, 0.011 * size)) * white_a, HIGHLIGHT)
        inner, outer = cx - side * 0.06 * squash, cx + side * 0.08 * squash
        brow = segment(u, v, inner, brow_y - 0.005, outer, brow_y + 0.01 - 0.02 * f.col("brow_raise"), brow_r)
        paint(canvas, f.cover(brow), f.hair * 0.8)


def _nose(f: _Frame, canvas: Array) -> None:
    """A shadowed bridge on the unlit side and a soft nostril line, shifted by the head turn."""
    u, v = f.u, f.v
    ns = f.col("nose_size")
    tip = 0.25 * f.turn
    shadow_side = -np.sign(f.light[0] + 0.3 * f.turn + 1e-3)
    bridge = segment(u, v, 0.06 * f.turn + 0.022 * shadow_side, 0.0, tip + 0.03 * shadow_side, 0.1 * ns, 0.014)
    paint(canvas, 0.35 * f.cover(bridge), f.skin * 0.55)
    nostril = ellipse(u - tip, v - 0.125 * ns, 0.048 * ns, 0.02 * ns)
    paint(canvas, 0.45 * f.cover(nostril), f.skin * 0.55)


@dataclass
class _MouthShape:
    """Distance fields of the mouth, shared by the mouth itself and the beard that avoids it."""

    dy_top: Array  # signed distance below the upper lip line
    opening: Array  # distance field of the open mouth (empty when closed)
    gap: Array  # how far the mouth is open at its centre
    stroke: Array  # distance to the lip lines


def _mouth_shape(f: _Frame) -> _MouthShape:
    """Mouth geometry from ``smile``: the lip line bends up (smile) or down (frown) and past
    0.45 the mouth opens into a D shape."""
    smile = f.col("smile")
    half = 0.13 * f.col("mouth_width") * (1.0 + 0.2 * np.maximum(smile, 0.0))
    depth = 0.08 * smile
    gap = 0.14 * np.clip((smile - 0.45) / 0.45, 0.0, 1.0)
    mu, mv = f.u - 0.17 * f.turn, f.v - (0.27 - 0.5 * depth)
    dy_top, over = bend(mu, mv, half, depth)
    dy_bottom, _ = bend(mu, mv, half, depth + gap)
    inside = np.maximum(np.maximum(-dy_top, dy_bottom), np.abs(mu) - half)
    stroke = length(np.minimum(np.abs(dy_top), np.abs(dy_bottom)), over)
    return _MouthShape(dy_top, inside, gap, stroke)


def _mouth(f: _Frame, canvas: Array, m: _MouthShape) -> None:
    """Dark mouth interior, a band of upper teeth, and the lip line."""
    paint(canvas, f.cover(m.opening), MOUTH_INSIDE)
    teeth = np.maximum(m.opening, m.dy_top - (0.02 + 0.4 * m.gap))
    paint(canvas, f.cover(teeth), TEETH)
    paint(canvas, f.cover(m.stroke - 0.02), f.skin * LIP_TINT)


def _beard(f: _Frame, canvas: Array, face_d: Array, m: _MouthShape) -> None:
    """Jaw, chin and moustache in hair colour, leaving bare skin just around the lips."""
    u, v = f.u, f.v
    line = 0.16 - 0.36 * np.square(np.square(u / f.rx))
    beard = np.maximum(face_d - 0.035 * np.clip(4.0 * v, 0.0, 1.0), line - v)
    beard = np.maximum(beard, 0.035 - np.minimum(m.stroke, m.opening))
    alpha = f.cover(beard) * f.col("beard")
    paint(canvas, alpha, f.beard)


@dataclass
class _HairShape:
    """Distance fields shared by the hair behind the head and the hair in front of it."""

    cap: Array  # hair hugging the skull
    long: Array  # hair falling to the shoulders
    shade: Array  # brightness from the light


def _hair_shape(f: _Frame) -> _HairShape:
    """Hair volumes, offset against the head turn (the back of the head shows) and bumpy when curly."""
    u, v, rx = f.u, f.v, f.rx
    curly = f.col("hair_curly")
    hu = u + 0.07 * f.turn
    cap = ellipse(hu, v + 0.07, rx + 0.055 + 0.03 * curly, FACE_RY + 0.04 + 0.03 * curly)
    long_hair = box(hu, v - 0.22, rx + 0.1 + 0.04 * curly, 0.52, 0.18)
    if f.p.hair_curly.any():  # straight hair gains exactly zero, so skipping it changes no pixel
        bumps = (0.025 * curly) * np.sin(26.0 * u + 19.0 * v) * np.sin(19.0 * u - 26.0 * v)
        cap, long_hair = cap + bumps, long_hair + bumps
    return _HairShape(cap, long_hair, f.shade(hu / (rx + 0.1), (v + 0.07) / 0.7))


def _hair_back(f: _Frame, canvas: Array, h: _HairShape) -> None:
    """Hair behind the head: a cap down to the ears, long hair down to the shoulders, or a
    bald head's fringe around the back."""
    style = f.p.hair_style[:, None, None]
    d = np.where(style == LONG, np.minimum(h.cap, h.long), np.maximum(h.cap, f.v))
    d = np.where(style == BALD, np.maximum(d, np.abs(f.v + 0.02) - 0.1), d)
    paint(canvas, f.cover(d), f.hair * h.shade)


def _hair_front(f: _Frame, canvas: Array, h: _HairShape) -> None:
    """Hair over the forehead down to a swept hairline, plus long strands framing the face."""
    u, v, rx = f.u, f.v, f.rx
    style = f.p.hair_style[:, None, None]
    nu = (u - 0.1 * f.turn) / rx
    top = -0.40 + 0.11 * f.col("fringe")
    hairline = np.minimum(top + 0.06 * f.col("part") * nu + 0.12 * nu * nu + 0.5 * np.square(nu * nu), 0.02)
    d = np.maximum(h.cap, v - hairline)
    strands = np.maximum(h.long, -ellipse(u - 0.06 * f.turn, v + 0.12, rx * 0.9, FACE_RY + 0.1))
    d = np.where(style == LONG, np.minimum(d, np.maximum(strands, -0.05 - v)), d)
    paint(canvas, f.cover(d) * (style != BALD), f.hair * h.shade)


def _glasses(f: _Frame, canvas: Array) -> None:
    """Round or rectangular frames around both eyes, with a bridge and temple arms."""
    u, v, rx, t = f.u, f.v, f.rx, f.turn
    round_lens = f.p.glasses_round[:, None, None]
    width = 0.02
    frame = []
    inner_edge = []
    for side in (-1.0, 1.0):
        cx, cy = _eye_centre(f, side)
        squash = _foreshorten(f, side)
        hx = 0.105 * squash
        lens = np.where(round_lens, ellipse(u - cx, v - cy, 0.1 * squash, 0.095), box(u - cx, v - cy, hx, 0.075, 0.03))
        temple = side * rx * (1.0 - 0.08 * side * t) + 0.03 * t  # where the face outline is at eye height
        frame += [np.abs(lens) - width, segment(u, v, cx + side * hx, cy - 0.02, temple, cy - 0.03, width)]
        inner_edge.append(cx - side * hx)
    frame.append(segment(u, v, inner_edge[0], -0.045, inner_edge[1], -0.045, width))
    frame_rgb = _planes(palette.pick(palette.FRAMES, f.p.glasses_color))
    paint(canvas, f.cover(np.minimum.reduce(frame)) * f.col("glasses"), frame_rgb)
