"""morph.training.toyfaces: deterministic procedural faces, their labels, and where each attribute shows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from morph.training.toyfaces import (
    ATTRIBUTES,
    BALD,
    CONTINUOUS,
    LONG,
    SHORT,
    TEAM_NAMES,
    FaceParams,
    ambiguous,
    grid,
    labels,
    render,
    render_seed,
    sample_params,
    team_params,
    write_png,
)
from morph.training.toyfaces.compose import CHUNK_PIXELS
from morph.training.toyfaces.params import _SAMPLERS, DEFAULTS
from morph.training.toyfaces.shapes import circle, coverage, ellipse


def _frontal(n: int, seed: int = 0, **changes) -> FaceParams:
    """Random faces looking straight ahead, so features sit at known rows."""
    return sample_params(seed, n).replace(tilt=0.0, turn=0.0, **changes)


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per image, how many pixels differ clearly (by more than 60 summed over RGB)."""
    return (np.abs(a.astype(np.int32) - b.astype(np.int32)).sum(-1) > 60).sum(axis=(1, 2))


def _row_share(a: np.ndarray, b: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Per image, the share of the absolute pixel difference that falls in rows [lo, hi) * height."""
    diff = np.abs(a.astype(np.int32) - b.astype(np.int32)).sum(axis=(2, 3))
    h = a.shape[1]
    return diff[:, int(lo * h):int(hi * h)].sum(1) / np.maximum(diff.sum(1), 1)


def test_fields_defaults_and_samplers_agree():
    names = [f.name for f in dataclasses.fields(FaceParams)]
    assert list(DEFAULTS) == names
    assert list(_SAMPLERS) == names


def test_shape_and_dtype():
    p = sample_params(0, 3)
    for size in (64, 128):
        images = render(p, size)
        assert images.shape == (3, size, size, 3) and images.dtype == np.uint8
    assert render_seed(4, 32).shape == (32, 32, 3)


def test_same_seed_same_bytes():
    assert render(sample_params(7, 5)).tobytes() == render(sample_params(7, 5)).tobytes()
    assert render_seed(11).tobytes() == render_seed(11).tobytes()
    assert render_seed(11).tobytes() != render_seed(12).tobytes()
    rng_params = sample_params(np.random.default_rng(7), 5)
    assert np.array_equal(rng_params.smile, sample_params(7, 5).smile)


def test_sampling_is_prefix_stable():
    short, long = sample_params(3, 4), sample_params(3, 50)
    for name, column in short.columns().items():
        assert np.array_equal(column, getattr(long, name)[:4]), name


def test_face_renders_the_same_alone_or_in_any_batch():
    n = CHUNK_PIXELS // 64 ** 2 + 5  # spans two internal chunks
    p = sample_params(5, n)
    batch = render(p)
    for i in (0, 3, n - 1):
        assert np.array_equal(render(p[i])[0], batch[i])
    order = np.random.default_rng(0).permutation(n)
    assert np.array_equal(render(p[order]), batch[order])


def test_label_balance_and_independence():
    p = sample_params(2024, 2000)
    y = labels(p)
    assert set(y) == set(ATTRIBUTES) | set(CONTINUOUS)
    table = np.stack([y[a] for a in ATTRIBUTES]).astype(float)
    rates = table.mean(1)
    assert np.all((rates > 0.25) & (rates < 0.75)), dict(zip(ATTRIBUTES, rates))
    corr = np.corrcoef(table)
    off_diagonal = corr[~np.eye(len(ATTRIBUTES), dtype=bool)]
    assert np.abs(off_diagonal).max() < 0.1
    for name in CONTINUOUS:
        assert y[name].dtype == np.float32 and y[name].shape == (2000,)


def test_ambiguous_bands():
    p = FaceParams.from_records([dict(smile=0.26, turn=0.05), dict(smile=0.9, turn=-0.8),
                                 dict(hair_style=BALD, beard=False), dict(hair_style=BALD, beard=True)])
    amb = ambiguous(p)
    assert set(amb) == set(ATTRIBUTES)
    assert amb["smile"].tolist() == [True, False, False, False]
    assert amb["turn_left"].tolist() == [True, False, True, True]
    assert amb["hair_dark"].tolist() == [False, False, True, True]
    y = labels(p)
    assert y["smile"][1] and y["turn_left"][1] and not y["turn_left"][0]


def test_glasses_change_only_the_eye_band():
    p = _frontal(12, glasses=False)
    off, on = render(p), render(p.replace(glasses=True))
    assert (_changed(on, off) > 50).all()
    assert (_row_share(on, off, 0.36, 0.55) > 0.97).all()


def test_smile_changes_the_mouth():
    p = _frontal(12, beard=False)
    frown, grin = render(p.replace(smile=-0.6)), render(p.replace(smile=0.9))
    assert (_changed(grin, frown) > 30).all()
    assert (_row_share(grin, frown, 0.55, 0.75) > 0.97).all()
    # the big smile shows teeth: near-white pixels appear in the mouth band
    teeth = lambda im: (im[:, int(0.55 * 64):int(0.75 * 64)].min(axis=-1) > 215).sum(axis=(1, 2))
    assert (teeth(grin) > teeth(frown)).all()


def test_beard_covers_the_lower_face():
    p = _frontal(12, beard=False)
    shaved, bearded = render(p), render(p.replace(beard=True))
    assert (_changed(bearded, shaved) > 100).all()
    assert (_row_share(bearded, shaved, 0.45, 0.85) > 0.95).all()


@pytest.mark.parametrize("field, a, b, pixels", [
    ("hair_light", 0.05, 0.95, 300), ("hair_style", SHORT, LONG, 200), ("turn", -0.7, 0.7, 100),
])
def test_hair_and_pose_are_visible(field, a, b, pixels):
    p = sample_params(9, 12).replace(hair_style=SHORT)
    assert (_changed(render(p.replace(**{field: a})), render(p.replace(**{field: b}))) > pixels).all()


def test_edges_are_anti_aliased():
    size = 64
    px = 2.0 / size
    g = (np.arange(size, dtype=np.float32) + 0.5) * px - 1.0
    x, y = g[None, :], g[:, None]
    for d, area in ((circle(x, y, 0.6), np.pi * 0.36), (ellipse(x, y, 0.7, 0.4), np.pi * 0.28)):
        cov = coverage(d, px)
        partial = (cov > 0) & (cov < 1)
        assert partial.sum() > 50  # a ring of in-between pixels around the outline
        assert abs(cov.sum() * px * px - area) / area < 0.01  # ... that keeps the area right
    # a rendered face: the 64 px image matches the 128 px image averaged down to 64
    p = team_params(["ada", "eli"])
    small, big = render(p, 64).astype(float), render(p, 128).astype(float)
    down = big.reshape(2, 64, 2, 64, 2, 3).mean(axis=(2, 4))
    assert np.abs(small - down).mean() < 4.0
    # and its pixels take many in-between values, not just a few flat colours
    assert len(np.unique(render(p[0], 64).reshape(-1, 3), axis=0)) > 300


def test_team_is_six_distinct_fixed_people():
    assert TEAM_NAMES == ("ada", "ben", "chen", "dana", "eli", "fay")
    images = render(team_params())
    assert len({im.tobytes() for im in images}) == 6
    assert np.array_equal(render(team_params(["dana"]))[0], images[3])
    with pytest.raises(KeyError):
        team_params(["zed"])


def test_hand_built_params():
    p = FaceParams.from_records([{}, dict(smile=1.0, glasses=True)])
    assert len(p) == 2 and p.smile.dtype == np.float32 and p.glasses.dtype == bool
    assert p.face_width[0] == DEFAULTS["face_width"]
    assert len(FaceParams.concat([p, p[1]])) == 3
    with pytest.raises(ValueError):
        FaceParams.from_records([dict(smiles=1.0)])
    with pytest.raises(ValueError):
        p.replace(smile=[0.1, 0.2, 0.3])


def test_png_writer(tmp_path):
    import zlib

    path = tmp_path / "grid.png"
    images = render(sample_params(1, 3), 16)
    write_png(path, grid(images, cols=2))
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    raw = zlib.decompress(data[data.index(b"IDAT") + 4:data.index(b"IEND") - 8])
    assert len(raw) == (2 * 18 + 2) * (1 + (2 * 18 + 2) * 3)
