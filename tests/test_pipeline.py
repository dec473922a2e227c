"""The render pipeline: several ffmpeg processes at once (``--encoders``), a bounded pool between generator and
encoders, uint8 frames made on the device, the GPU batch size and the device script's smoke run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from morph.core.cache import damage
from morph.core.errors import MorphError
from morph.core.model import Noise, images_to_uint8
from morph.render import encode, job
from morph.render.encode import EncoderPool, EncodeSettings, auto_encoders, decode_frames, pool_buffer_frames
from morph.render.job import auto_batch_size, encode_segments, generate
from morph.stylegan2 import Generator

ROOT = Path(__file__).resolve().parents[1]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def G() -> Generator:
    """A random 32 px StyleGAN2 (fine ToRGB layers zeroed, so frames are smooth enough for 4:2:0 video)."""
    torch.manual_seed(0)
    G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=512, channel_max=32))
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.startswith(("synthesis.b16.torgb.weight", "synthesis.b32.torgb.weight")):
                p.zero_()
    return G.eval()


def path_ws(G: Generator, n: int) -> torch.Tensor:
    """``n`` W frames along a smooth path between two seeds."""
    with torch.no_grad():
        ends = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(3)), None,
                         truncation_psi=0.7)
    t = torch.linspace(0, 1, n)[:, None, None]
    return ends[0] * (1 - t) + ends[1] * t


def render(G: Generator, folder: Path, ws: torch.Tensor, settings: EncodeSettings, encoders: int,
           per_segment: int = 7, batch: int = 3) -> list[Path]:
    """``ws`` cut into segments of ``per_segment`` frames, encoded into ``folder`` with ``encoders`` at once."""
    folder.mkdir()
    starts = range(0, len(ws), per_segment)
    paths = [folder / f"seg{i:03d}{encode.SEGMENT_SUFFIX[settings.format]}" for i in range(len(starts))]
    work = ((p, ws[s:s + per_segment], None) for p, s in zip(paths, starts))
    assert encode_segments(G, work, settings, Noise(), torch.device("cpu"), batch, encoders=encoders) == len(ws)
    return paths


@pytest.mark.parametrize("fmt", ["png", "mp4"])
def test_frames_arrive_in_order_and_identical_whatever_the_number_of_encoders(G, tmp_path, fmt):
    """With 1, 2 or 4 encoders at once the segments decode to the same frames, sealed with their counts; a
    lossless segment holds exactly the generated frames in order, and mp4 segments are the same bytes."""
    ws = path_ws(G, 40)  # 6 segments: five of 7 frames and one of 5, in batches of 3
    settings = EncodeSettings(format=fmt, fps=10, size=32)
    runs = {n: render(G, tmp_path / f"enc{n}", ws, settings, n) for n in (1, 2, 4)}
    decoded = {n: [decode_frames(p, 32) for p in paths] for n, paths in runs.items()}
    for n, paths in runs.items():
        assert all(damage(p, 7 if i < 5 else 5) is None for i, p in enumerate(paths))
        for a, b in zip(decoded[n], decoded[1], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{n} encoders")
        if fmt == "mp4":
            assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in runs[1]], f"{n} encoders"
    if fmt == "png":
        expected = np.concatenate(list(generate(G, ws, 3, Noise(), torch.device("cpu"))))
        np.testing.assert_array_equal(np.concatenate(decoded[4]), expected)


def test_generated_frames_are_nvidias_uint8_mapping(G):
    """The device-side conversion (and grey → RGB) yields exactly ``images_to_uint8`` of the images."""
    ws = path_ws(G, 5)
    frames = np.concatenate(list(generate(G, ws, 2, Noise(), torch.device("cpu"))))
    with torch.no_grad():
        expected = images_to_uint8(G.synthesize(ws, Noise())).numpy()
    assert frames.flags.c_contiguous and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, expected)


def test_the_pool_runs_encoders_at_once_and_holds_bounded_frames(G, tmp_path):
    """With a generator far faster than ffmpeg, the pool keeps its encoders busy together, never more of them,
    and never holds more than its buffer plus one batch, however many segments pass through it."""
    frame = np.zeros((4, 32, 32, 3), np.uint8)
    settings = EncodeSettings(format="mp4", fps=10, size=64)  # upscaled: ffmpeg is the slow side
    seen = []
    with EncoderPool(3, buffer_frames=16, done=lambda p, n: seen.append((p.name, n))) as pool:
        for i in range(12):
            feed = pool.open(tmp_path / f"s{i}.mp4", settings, 32, 20)
            for _ in range(5):
                feed.write(frame)
            feed.close()
    assert pool.peak_running == 3
    assert pool.peak_buffered <= 16 + 4
    assert sorted(seen) == sorted((f"s{i}.mp4", 20) for i in range(12))
    assert all(encode.count_frames(tmp_path / f"s{i}.mp4")[0] == 20 for i in range(12))


def test_a_render_recycles_a_few_batch_buffers_and_its_frames_are_unchanged(G, tmp_path, monkeypatch):
    """A render's frames land in the pool's batch buffers, allocated once and reused batch after batch (memory
    flat with the render's length), and are exactly the frames ``generate`` makes in fresh memory."""
    pools = []

    class Recorded(EncoderPool):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            pools.append(self)

    monkeypatch.setattr(job, "EncoderPool", Recorded)
    monkeypatch.setattr(job, "pool_buffer_frames", lambda *_: 4)  # a small pool: buffers must come back
    ws = path_ws(G, 60)  # 9 segments of 7 frames (the last 4), each in batches of 3
    paths = render(G, tmp_path / "out", ws, EncodeSettings(format="png", fps=10, size=32), 2)
    (pool,) = pools
    assert pool.allocated <= pool.slots == 4  # ⌈4 / 3⌉ + 2
    expected = [frames for s in range(0, 60, 7) for frames in generate(G, ws[s:s + 7], 3, Noise(), torch.device("cpu"))]
    np.testing.assert_array_equal(np.concatenate([decode_frames(p, 32) for p in paths]), np.concatenate(expected))


@pytest.mark.parametrize("channels", [3, 1])
def test_uint8_conversion_into_given_memory_is_the_same_bytes(channels):
    """``images_to_uint8`` into a frame buffer through a reused scratch buffer gives exactly the bytes of the
    plain conversion (grey repeated into RGB), out-of-range and rounding-edge values included."""
    img = torch.rand(4, channels, 8, 8, generator=torch.Generator().manual_seed(0)) * 3 - 1.5
    img[0, 0, 0, :5] = torch.tensor([-1.0, 1.0, 127 / 127.5 - 128 / 127.5, 0.5 / 127.5, float("inf")])
    expected = images_to_uint8(img).expand(4, 8, 8, 3)
    out = torch.zeros(4, 8, 8, 3, dtype=torch.uint8)
    scratch = torch.full((6, channels, 8, 8), float("nan"))[:4]
    assert images_to_uint8(img, out=out, scratch=scratch) is out
    assert torch.equal(out, expected)


def test_an_encoder_failure_stops_the_render_in_one_line_and_leaves_nothing(G, tmp_path, monkeypatch):
    monkeypatch.setattr(encode, "ffmpeg_exe", lambda: "false")  # every ffmpeg exits 1 at once
    with pytest.raises(MorphError, match="ffmpeg failed") as err:
        render(G, tmp_path / "out", path_ws(G, 20), EncodeSettings(format="mp4", fps=10, size=32), 2)
    assert "\n" not in str(err.value)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_generator_error_kills_every_encoder_and_keeps_finished_segments(G, tmp_path):
    """An exception in the generator (a bug, Ctrl-C) aborts the open segments, removing their temp files; the
    segments finished before it stay whole and sealed."""
    class Failing(torch.nn.Module):
        img_resolution = 32
        calls = 0

        def synthesize(self, ws, noise, dtype=None):
            Failing.calls += 1
            if Failing.calls > 5:
                raise KeyboardInterrupt
            return G.synthesize(ws, noise, dtype=dtype)

    folder = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        render(Failing(), folder, path_ws(G, 40), EncodeSettings(format="mp4", fps=10, size=32), 4, batch=2)
    left = sorted(p.name for p in folder.iterdir() if not p.name.endswith(".json"))
    assert left == ["seg000.mp4", "seg001.mp4"][:len(left)]  # frames 0-9 were generated; 10-13 were not whole
    assert all(damage(folder / name, 7) is None for name in left)
    assert not [p for p in folder.iterdir() if ".tmp" in p.name or p.name.startswith(".")]


def test_auto_encoders_and_buffer(monkeypatch):
    assert auto_encoders("cpu") == 1
    monkeypatch.setattr(encode, "usable_cores", lambda: 16)
    assert auto_encoders("cuda") == 8
    monkeypatch.setattr(encode, "usable_cores", lambda: 3)
    assert auto_encoders("cuda") == 1
    assert pool_buffer_frames(4, 60, 8, 1024 * 1024 * 3) == 240          # four segments of 1024 px frames
    assert pool_buffer_frames(16, 60, 8, 1024 * 1024 * 3) == (1 << 30) // (1024 * 1024 * 3)  # capped in bytes
    assert pool_buffer_frames(1, 4, 32, 100) == 64                         # never under two batches


def test_gpu_batch_size_follows_free_memory(G, monkeypatch):
    per_frame = G.activation_size() * 4
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (per_frame * 4 * 5, 1 << 40))
    assert auto_batch_size(G, torch.device("cuda")) == 5
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 << 40, 1 << 40))
    assert auto_batch_size(G, torch.device("cuda")) == 32


def test_device_script_smoke_run_passes_on_the_cpu(tmp_path):
    """``bench/device.sh --smoke``: every row of the GPU run at tiny sizes, here, so its first GPU run works."""
    proc = subprocess.run(["bash", str(ROOT / "bench" / "device.sh"), "--smoke"], capture_output=True, text=True,
                          cwd=ROOT, env={**__import__("os").environ, "OUT": str(tmp_path)}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (tmp_path / "device.md").read_text()
    for row in ("sg2 ", "compile sg2", "precision auto", "sg3 ", "render e2e", "project", "train_sharp"):
        assert row in table, table
    assert "FAIL" not in table, table


@needs_cuda
@pytest.mark.gpu
def test_cuda_frames_match_the_cpu_ones(G, tmp_path):
    """The pinned, asynchronous CUDA path hands over the same frames as the CPU path (within fp32 rounding)."""
    ws = path_ws(G, 9)
    cpu = np.concatenate(list(generate(G, ws, 4, Noise(), torch.device("cpu"))))
    cuda = np.concatenate(list(generate(G.to("cuda"), ws, 4, Noise(), torch.device("cuda"))))
    G.to("cpu")
    assert cuda.shape == cpu.shape and np.abs(cuda.astype(int) - cpu).max() <= 1


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precision_stays_within_tolerance_of_fp32(precision):
    """The precision tolerance (``devices.PRECISION_TOLERANCE_DB``): a 256 px StyleGAN2, random weights, frames
    in reduced precision against fp32 as uint8 PSNR."""
    from morph.core.devices import PRECISION_TOLERANCE_DB, precision_psnr, resolve_precision

    torch.manual_seed(0)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3,
                  synthesis_kwargs=dict(channel_base=16384, channel_max=256, num_fp16_res=4, conv_clamp=256))
    device = torch.device("cuda")
    G = G.eval().to(device)
    ws = G.mapping(torch.randn(8, 512, device=device, generator=torch.Generator(device).manual_seed(1)), None,
                   truncation_psi=0.7)
    assert precision_psnr(G, ws, resolve_precision(precision, device)) >= PRECISION_TOLERANCE_DB


def test_precision_psnr_measures_reduced_precision_and_refuses_non_finite(G):
    """The tolerance check runs on the CPU too: fp32 against itself is exact, bf16 differs a little, and a
    model whose pixels overflow is refused in one line rather than given a number."""
    from morph.core.devices import precision_psnr

    ws = path_ws(G, 4)
    assert precision_psnr(G, ws, torch.float32) == float("inf")
    assert 20 < precision_psnr(G, ws, torch.bfloat16) < float("inf")

    class Overflowing(torch.nn.Module):
        def synthesize(self, ws, noise, dtype=None):
            img = G.synthesize(ws, noise)
            return img if dtype is None else img * float("inf")

    with pytest.raises(MorphError, match="non-finite pixels"):
        precision_psnr(Overflowing(), ws, torch.float16)


def compiled_against_eager(G: Generator, device: torch.device) -> tuple[float, torch.Tensor]:
    """PSNR of ``--compile``'s frames against eager ones, 7 frames in batches of 3 (the last padded), and the
    compiled images."""
    from morph.core.devices import Compiled, frames_psnr

    ws = path_ws(G, 7).to(device)
    twin = Compiled(G)
    with torch.inference_mode():
        eager = G.synthesize(ws, Noise())
        images = torch.cat([twin.synthesize(ws[i:i + 3], Noise()) for i in range(0, 7, 3)])
    return frames_psnr(eager, images, "compiled", "--compile"), images


@pytest.mark.slow
def test_compiled_frames_match_eager_ones_within_tolerance(G):
    """``--compile`` (torch.compile, inductor through gcc on the CPU): the same frames as eager synthesis within
    ``COMPILE_TOLERANCE_DB``, a segment's smaller last batch included (padded to the compiled batch, cut back)."""
    from morph.core.devices import COMPILE_TOLERANCE_DB

    psnr, images = compiled_against_eager(G, torch.device("cpu"))
    assert images.shape == (7, 3, 32, 32)
    assert psnr >= COMPILE_TOLERANCE_DB


@needs_cuda
@pytest.mark.gpu
def test_compiled_cuda_frames_match_eager_ones_within_tolerance(G):
    from morph.core.devices import COMPILE_TOLERANCE_DB

    try:
        psnr, _ = compiled_against_eager(G.to("cuda"), torch.device("cuda"))
    finally:
        G.to("cpu")
    assert psnr >= COMPILE_TOLERANCE_DB


def test_compiled_and_auto_precision_renders_are_keyed_apart(G, tmp_path):
    """A compiled render's segments never pass for eager ones (and eager keys are those of before), and a render's
    dtype is part of its keys."""
    from morph.render.job import RenderJob

    def keys(**kwargs) -> list[str]:
        job = RenderJob(name="r", dest=tmp_path / "r.mp4", sample=lambda t: path_ws(G, 40)[t], frames=40,
                        settings=EncodeSettings(fps=10, size=32), noise=Noise(), model_key="m", resolution=32,
                        **kwargs)
        return [s.key for s in job.plan(tmp_path).segments]

    eager = keys()
    assert eager == keys(compiled=False) and eager != keys(compiled=True) and eager != keys(dtype=torch.float16)


def test_precision_auto_is_fp32_on_the_cpu_and_checks_the_model_on_cuda(G, monkeypatch):
    """``--precision auto``: fp32 off CUDA (the CPU's renders unchanged); on CUDA the first half precision whose
    frames stay within the tolerance of fp32, else fp32, and the figures that decided it."""
    from morph.core import devices

    assert devices.resolve_precision("auto", torch.device("cpu")) is torch.float32
    assert devices.resolve_precision("auto", torch.device("cuda")) is None  # decided per model
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(devices, "PRECISION_TOLERANCE_DB", 0.0)
    dtype, why = devices.auto_precision(G, torch.device("cpu"))
    assert dtype is torch.float16 and why.startswith("fp16: fp16 ")
    monkeypatch.setattr(devices, "PRECISION_TOLERANCE_DB", 1000.0)
    dtype, why = devices.auto_precision(G, torch.device("cpu"))
    assert dtype is None and why.startswith("fp32: fp16 ") and "bf16 " in why
