"""The W-path scheduler: interpolation, easing, paths, loops, splines and waves, as properties (hypothesis)."""

from __future__ import annotations

import itertools
import math
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from morph.motion.schedule import (
    EASINGS,
    INTERPS,
    Breathe,
    Cycle,
    Deform,
    KeyPath,
    Motion,
    chunks,
    cycle,
    ease,
    lerp,
    sample,
    slerp,
    timeline,
)

quick = settings(max_examples=60, deadline=None)  # the whole file runs in seconds on 2 cores


def tensors(seed: int, *shape: int, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def keys_for(path: KeyPath, seed: int, layers: int = 3, dim: int = 5, dtype=torch.float32) -> dict[str, torch.Tensor]:
    stack = tensors(seed, len(path.keys), layers, dim, dtype=dtype)
    return dict(zip(path.keys, stack))


def no_offsets(seed: int, count: int) -> torch.Tensor:
    raise AssertionError("no deform in this motion")


def seeded_offsets(seed: int, count: int) -> torch.Tensor:
    return tensors(seed, count, 5)


@st.composite
def paths(draw, interps=INTERPS, loop=None, eases=tuple(EASINGS), min_move=1):
    m = draw(st.integers(2, 5))
    loop = draw(st.booleans()) if loop is None else loop
    interp = draw(st.sampled_from(interps))
    n = m if loop else m - 1
    moves = tuple(draw(st.lists(st.integers(min_move, 12), min_size=n, max_size=n)))
    holds = tuple(draw(st.lists(st.integers(0, 4), min_size=m, max_size=m)))
    chosen = ("linear",) * n if interp == "spline" else tuple(draw(st.lists(st.sampled_from(eases), min_size=n,
                                                                           max_size=n)))
    return KeyPath(tuple(f"k{i}" for i in range(m)), holds, moves, chosen, interp, loop)


def frames_of(tl) -> torch.Tensor:
    return sample(tl, torch.arange(tl.frames, dtype=torch.float64))


def steps(frames: torch.Tensor) -> torch.Tensor:
    return (frames[1:] - frames[:-1]).flatten(1).norm(dim=1)


# --- interpolation and easing ----------------------------------------------------------------------------------

@quick
@given(st.integers(0, 2 ** 31), st.integers(1, 4), st.integers(1, 16), st.sampled_from(["random", "same", "opposite",
                                                                                        "zero"]))
def test_lerp_and_slerp_hit_their_endpoints_exactly(seed, rows, dim, kind):
    a = tensors(seed, rows, dim)
    b = {"random": tensors(seed + 1, rows, dim), "same": a.clone(), "opposite": -a, "zero": torch.zeros_like(a)}[kind]
    for fn in (lerp, slerp):
        assert torch.equal(fn(a, b, torch.zeros(rows, 1)), a)
        assert torch.equal(fn(a, b, torch.ones(rows, 1)), b)


@quick
@given(st.integers(0, 2 ** 31), st.integers(1, 4), st.integers(2, 64), st.floats(0, 1), st.floats(0.01, 100))
def test_slerp_keeps_the_norm_of_equal_norm_endpoints(seed, rows, dim, t, radius):
    a, b = tensors(seed, rows, dim, dtype=torch.float64), tensors(seed + 1, rows, dim, dtype=torch.float64)
    a, b = radius * a / a.norm(dim=1, keepdim=True), radius * b / b.norm(dim=1, keepdim=True)
    out = slerp(a, b, torch.full((rows, 1), t, dtype=torch.float64))
    torch.testing.assert_close(out.norm(dim=1), torch.full((rows,), radius, dtype=torch.float64))


@quick
@given(st.sampled_from(list(EASINGS)), st.floats(0, 1), st.floats(0, 1))
def test_easings_are_monotone_with_fixed_ends(name, u, v):
    lo, hi = sorted((u, v))
    eased = ease(torch.tensor([0.0, lo, hi, 1.0], dtype=torch.float64), name)
    assert eased[0] == 0 and eased[3] == 1
    assert 0 <= eased[1] <= eased[2] <= 1


# --- paths -----------------------------------------------------------------------------------------------------

@quick
@given(paths(), st.integers(0, 1000))
def test_paths_start_and_end_on_their_keys_and_hold_them_exactly(path, seed):
    keys = keys_for(path, seed)
    tl = timeline(Motion(path), keys, {}, no_offsets)
    frames = frames_of(tl)
    assert len(frames) == path.frames == sum(path.holds) + sum(path.moves) + (0 if path.loop else 1)
    for i, (name, arrival) in enumerate(zip(path.keys, tl.keyframes)):
        for t in range(arrival, arrival + path.holds[i] + 1):  # arrival, then every held frame
            if t < tl.frames:
                assert torch.equal(frames[t], keys[name]), (name, t)
    if not path.loop:
        assert torch.equal(frames[-1], keys[path.keys[-1]])


@quick
@given(paths(loop=True), st.integers(0, 1000))
def test_loops_frame_n_equals_frame_0_before_the_seam_is_cut(path, seed):
    tl = timeline(Motion(path), keys_for(path, seed), {}, no_offsets)
    ends = sample(tl, torch.tensor([0.0, float(tl.frames)], dtype=torch.float64))
    assert torch.equal(ends[0], ends[1])


@quick
@given(st.one_of(paths(interps=("lerp",), loop=True, eases=("linear", "out", "in-out"), min_move=2),
                 paths(interps=("slerp",), loop=True, eases=("out", "in-out"), min_move=2)),
       st.integers(0, 1000))
def test_loop_seam_step_is_no_larger_than_the_largest_step_inside(path, seed):
    keys = keys_for(path, seed)
    if path.interp == "slerp":  # equal-norm rows: slerp moves at constant speed
        keys = {k: v / v.norm(dim=-1, keepdim=True) for k, v in keys.items()}
    tl = timeline(Motion(path), keys, {}, no_offsets)
    frames = frames_of(tl)
    seam = (frames[0] - frames[-1]).norm()
    assert seam <= steps(frames).max() * (1 + 1e-5) + 1e-6


def velocity_jump(tl, t: float, eps: float = 1e-6) -> float:
    """|right − left| finite-difference velocity at time t (the seam of a loop at t = frames counts too)."""
    left_t = tl.frames if tl.frames and t == 0 and tl.bounds[-1] == tl.frames else t
    at = sample(tl, torch.tensor([left_t - eps, left_t, t, t + eps], dtype=torch.float64))
    left, right = (at[1] - at[0]) / eps, (at[3] - at[2]) / eps
    return float((right - left).abs().max())


@quick
@given(paths(interps=("spline",)), st.integers(0, 1000))
def test_spline_passes_through_every_keyframe_with_continuous_velocity(path, seed):
    keys = keys_for(path, seed, dtype=torch.float64)
    tl = timeline(Motion(path), keys, {}, no_offsets)
    scale = max(float(v.abs().max()) for v in keys.values())
    for name, arrival in zip(path.keys, tl.keyframes):
        assert torch.equal(sample(tl, torch.tensor([float(arrival)]))[0], keys[name])
        for t in (arrival, arrival + path.holds[path.keys.index(name)]):
            if not path.loop and t in (0, float(tl.bounds[-1])):
                continue  # an open path starts and ends at rest: there is no other side
            assert velocity_jump(tl, t) < 1e-3 * scale, (name, t)


def test_lerp_path_does_have_a_velocity_jump_at_a_keyframe():  # the spline test above can tell the difference
    path = KeyPath(("a", "b", "c"), (0, 0, 0), (10, 10), ("linear", "linear"), "lerp")
    keys = {"a": torch.zeros(1, 2, dtype=torch.float64), "b": torch.ones(1, 2, dtype=torch.float64),
            "c": torch.tensor([[3.0, -1.0]], dtype=torch.float64)}
    assert velocity_jump(timeline(Motion(path), keys, {}, no_offsets), 10) > 0.1
    spline = timeline(Motion(KeyPath(path.keys, path.holds, path.moves, path.eases, "spline")), keys, {}, no_offsets)
    assert velocity_jump(spline, 10) < 1e-6


def test_per_transition_durations_place_each_keyframe():
    path = KeyPath(("a", "b", "c"), (2, 0, 3), (5, 7, 4), ("linear", "in", "out"), "slerp", loop=True)
    tl = timeline(Motion(path), keys_for(path, 0), {}, no_offsets)
    assert tl.keyframes == (0, 7, 14) and tl.frames == 2 + 5 + 7 + 3 + 4


# --- waves: deform and breathe ---------------------------------------------------------------------------------

@st.composite
def waving(draw, still=False):
    stills = st.builds(lambda n: KeyPath(("k0",), (n,), (), (), loop=True), st.integers(2, 40))
    path = draw(stills if still else st.one_of(paths(), stills))
    layers = draw(st.integers(0, 2))
    span = range(layers, draw(st.integers(layers + 1, 3)))
    fit = cycle(draw(st.floats(2, 30)), path.frames, path.loop)
    deform = Deform(span, draw(st.floats(0.1, 2)), draw(st.integers(0, 99)), fit) if draw(st.booleans()) else None
    breathe = Breathe("d", draw(st.floats(-2, 0)), draw(st.floats(0, 3)), span, fit) if draw(st.booleans()) else None
    return Motion(path, deform, breathe)


def wave_frames(motion: Motion, seed: int, times=None) -> torch.Tensor:
    tl = timeline(motion, keys_for(motion.path, seed), {"d": tensors(seed, 3, 5)}, seeded_offsets)
    return frames_of(tl) if times is None else sample(tl, torch.tensor(times, dtype=torch.float64))


@quick
@given(waving(), st.integers(0, 1000))
def test_waves_close_loops_exactly(motion, seed):
    if motion.path.loop:
        ends = wave_frames(motion, seed, [0.0, float(motion.frames)])
        assert torch.equal(ends[0], ends[1])


@quick
@given(waving(still=True).filter(lambda m: m.frames % 2 == 0), st.integers(0, 1000))
def test_wave_loop_seam_step_is_no_larger_than_the_largest_step_inside(motion, seed):
    # Steps of a loop of sinusoids lie on an ellipse whose norm has period π: with an even frame count the
    # seam step's norm is also an inside step's.
    frames = wave_frames(motion, seed)
    assert (frames[0] - frames[-1]).norm() <= steps(frames).max() * (1 + 1e-5) + 1e-6


def test_cycle_fits_whole_periods_into_a_loop():
    assert cycle(30, 100, loop=True) == Cycle(3, 100)
    assert cycle(300, 100, loop=True) == Cycle(1, 100)
    assert cycle(30, 100, loop=False) == Cycle(1, 30)


def test_breathe_swings_from_low_to_high_on_its_layers_only():
    base = tensors(0, 4, 6)
    direction = tensors(1, 4, 6)
    still = KeyPath(("a",), (40,), (), (), loop=True)
    motion = Motion(still, breathe=Breathe("smile", 0.5, 2.5, range(1, 3), Cycle(1, 40)))
    tl = timeline(motion, {"a": base}, {"smile": direction}, no_offsets)
    f = frames_of(tl)
    torch.testing.assert_close(f[0, 1:3], base[1:3] + 0.5 * direction[1:3])
    torch.testing.assert_close(f[20, 1:3], base[1:3] + 2.5 * direction[1:3])
    assert torch.equal(f[:, [0, 3]], base[[0, 3]].expand(40, 2, 6))


def test_deform_moves_only_its_layers_and_is_seeded():
    base = tensors(0, 4, 5)
    motion = Motion(KeyPath(("a",), (24,), (), (), loop=True), Deform(range(0, 2), 0.7, 3, Cycle(1, 24)))
    run = lambda m: frames_of(timeline(m, {"a": base}, {}, seeded_offsets))  # noqa: E731
    f = run(motion)
    assert torch.equal(f[:, 2:], base[2:].expand(24, 2, 5))
    assert (f[:, :2] - base[:2]).abs().max() > 0.1
    assert torch.equal(run(motion), f)
    assert not torch.equal(run(Motion(motion.path, Deform(range(0, 2), 0.7, 4, Cycle(1, 24)))), f)


# --- production in chunks --------------------------------------------------------------------------------------

@quick
@given(waving(), st.integers(0, 1000), st.integers(1, 50))
def test_chunks_concatenate_to_the_frames_deterministically(motion, seed, size):
    keys = keys_for(motion.path, seed)
    make = lambda: timeline(motion, keys, {"d": tensors(seed, 3, 5)}, seeded_offsets)  # noqa: E731
    parts = list(chunks(make(), size))
    assert all(len(p) <= size for p in parts) and sum(map(len, parts)) == motion.frames
    assert torch.equal(torch.cat(parts), frames_of(make()))


def test_a_two_hour_video_is_produced_lazily():
    n = 2 * 3600 * 30  # 216,000 frames of [18, 512]: 8 GB at once, 2.4 MB per chunk
    path = KeyPath(("a", "b"), (0, 0), (n // 2, n // 2), ("in-out", "in-out"), "slerp", loop=True)
    tl = timeline(Motion(path), {"a": tensors(0, 18, 512), "b": tensors(1, 18, 512)}, {}, no_offsets)
    start = time.perf_counter()
    first = list(itertools.islice(chunks(tl, 64), 3))
    assert [c.shape for c in first] == [torch.Size([64, 18, 512])] * 3
    assert time.perf_counter() - start < 2
    last = sample(tl, torch.tensor([float(n - 1)]))
    assert math.isfinite(float(last.sum()))


def test_invalid_paths_are_refused():
    keys = {"a": torch.zeros(1, 2), "b": torch.ones(1, 2)}
    for bad in (KeyPath(("a", "b"), (0, 0), (0,), ("linear",)), KeyPath(("a", "b"), (0, 0), (3,), ("in",), "spline")):
        with pytest.raises(ValueError):
            timeline(Motion(bad), keys, {}, no_offsets)
