"""Small hostile files (checkpoints, .npy/.npz) are refused in one line, each under a 500 MB peak.

Every case runs in its own subprocess under a watchdog that reads the child's RSS from /proc and
stops it past WATCHDOG_MB (the unguarded readers grow to many GB); the peak is the child's
``ru_maxrss`` (``RUSAGE_CHILDREN`` of the watchdog, which has no other child). Importing torch and
morph alone peaks around 300 MB, so PEAK_LIMIT_MB leaves about 200 MB for reading a file of a few kB.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import torch
from test_formats import fake_modules, make_nvidia_generator, random_state  # noqa: F401 (fake_modules: a fixture)

PEAK_LIMIT_MB = 500
WATCHDOG_MB = 1200
SMALL = {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 8, "img_channels": 3,
         "mapping_kwargs": {"num_layers": 2}, "synthesis_kwargs": {"channel_base": 64, "channel_max": 8}}
BUILTIN_W = 128  # the built-in model's w_dim (directions for `morph directions show`)

_WATCH = r"""
import json, resource, subprocess, sys, time
kill_kb, out, err, cmd = int(sys.argv[1]) * 1024, sys.argv[2], sys.argv[3], sys.argv[4:]
with open(out, "wb") as o, open(err, "wb") as e:
    proc = subprocess.Popen(cmd, stdout=o, stderr=e)
    killed, deadline = None, time.monotonic() + 300
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as fh:
                rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            rss = 0
        if rss > kill_kb or time.monotonic() > deadline:
            killed = "memory" if rss > kill_kb else "time"
            proc.kill()
            proc.wait()
        time.sleep(0.01)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": proc.returncode, "peak_mb": peak // (1 << 20 if sys.platform == "darwin" else 1024),
                  "killed": killed}))
"""

_CALL = r"""
import sys
from morph.core.errors import MorphError
path = sys.argv[1]
try:
    exec(sys.argv[2])
except MorphError as err:
    print(err, file=sys.stderr)
    sys.exit(2)
"""


def measure(cmd: list[str], tmp_path: Path) -> tuple[dict, str]:
    """Run ``cmd`` under the watchdog: ({rc, peak_mb, killed}, its stderr)."""
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _WATCH, str(WATCHDOG_MB), str(out), str(err), *cmd],
                          capture_output=True, text=True, env=env, timeout=600)
    return json.loads(done.stdout), err.read_text(errors="replace")


def assert_refused(cmd: list[str], tmp_path: Path, path: Path, *fragments: str) -> str:
    """``cmd`` exits 2 with one stderr line naming ``path`` (and ``fragments``), peaking under PEAK_LIMIT_MB."""
    result, stderr = measure(cmd, tmp_path)
    print(f"{path.name}: rc {result['rc']}, peak {result['peak_mb']} MB")  # shown with pytest -s
    assert not result["killed"], f"stopped by the watchdog ({result['killed']}): {result}"
    assert result["peak_mb"] < PEAK_LIMIT_MB, result
    lines = stderr.strip().splitlines()
    assert result["rc"] == 2 and len(lines) == 1, (result, stderr[-2000:])
    assert lines[0].startswith(f"{path}") and "allow_pickle" not in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "morph.cli", *map(str, args)]


def call(source: str, path: Path) -> list[str]:
    """A Python statement run with ``path`` bound, its MorphError printed as one line and exit code 2."""
    return [sys.executable, "-c", _CALL, str(path), source]


# --- crafted files ---------------------------------------------------------------------------------------------

class _Reduce:
    """Pickles as ``func(*args)``."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def nvidia_pickle(fake, path: Path, kwargs=SMALL, state=None, edit_state=None) -> Path:
    """A small NVIDIA network pickle of ``kwargs`` (see tests/test_formats.py for the writer)."""
    state = dict(state or random_state(kwargs))
    if edit_state:
        edit_state(state)
    path.write_bytes(pickle.dumps({"G_ema": make_nvidia_generator(fake, kwargs, state)}, protocol=2))
    return path


def _zip(path: Path, members: list[tuple[str, bytes, int, int, bool]]) -> Path:
    """A zip of (name, stored bytes, crc32, uncompressed size, deflated) members, written by hand so a member
    can be a precomputed deflate stream."""
    body, central = b"", b""
    for name, data, crc, size, deflated in members:
        raw = name.encode()
        head = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 8 if deflated else 0, 0, 0, crc, len(data), size,
                           len(raw), 0)
        central += struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 8 if deflated else 0, 0, 0, crc, len(data),
                               size, len(raw), 0, 0, 0, 0, 0, len(body)) + raw
        body += head + raw + data
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(body), 0)
    path.write_bytes(body + central + end)
    return path


def _stored(name: str, data: bytes):
    return name, data, zlib.crc32(data), len(data), False


def _deflated_zeros(name: str, head: bytes, zeros: int):
    """A member holding ``head`` then ``zeros`` zero bytes, deflated (2 GB of zeros take about 2 MB)."""
    chunk = 1 << 24
    assert zeros % chunk == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = z.compress(bytes(chunk)) + z.flush(zlib.Z_FULL_FLUSH)  # self-contained: it can be repeated
    data = first + block * (zeros // chunk) + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    crc = zlib.crc32(head)
    zero_chunk = bytes(chunk)
    for _ in range(zeros // chunk):
        crc = zlib.crc32(zero_chunk, crc)
    return name, data, crc, len(head) + zeros, True


def npy_header(shape, descr="<f4") -> bytes:
    text = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    text += " " * (63 - (10 + len(text)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()


INFLATED = 1 << 31  # 2 GiB


# --- checkpoints -----------------------------------------------------------------------------------------------

def test_stride0_numpy_array_in_init_kwargs(fake_modules, tmp_path):
    """numpy.ndarray(shape, dtype, buffer, offset, strides) shows one byte as 20000×20000; old plain() expanded it."""
    kwargs = json.loads(json.dumps(SMALL))
    kwargs["synthesis_kwargs"]["resample_filter"] = _Reduce(np.ndarray, ((20000, 20000), np.dtype("u1"), b"\x01",
                                                                         0, (0, 0)))
    path = nvidia_pickle(fake_modules, tmp_path / "stride0-kwargs.pkl", kwargs, random_state(SMALL))
    assert path.stat().st_size < 100_000
    assert_refused(cli("info", path), tmp_path, path, "numpy")


def test_memo_bomb_in_init_kwargs(fake_modules, tmp_path):
    """2**28 leaves from 28 shared lists: a few hundred bytes that expand exponentially when converted."""
    bomb: list = [1, 3, 3, 1]
    for _ in range(28):
        bomb = [bomb, bomb]
    kwargs = json.loads(json.dumps(SMALL))
    kwargs["synthesis_kwargs"]["resample_filter"] = bomb
    path = nvidia_pickle(fake_modules, tmp_path / "memo-bomb.pkl", kwargs, random_state(SMALL))
    assert path.stat().st_size < 100_000
    assert_refused(cli("info", path), tmp_path, path, "resample_filter")


def test_memo_index_bomb(fake_modules, tmp_path):
    """One LONG_BINPUT 2**28 makes Python's unpickler grow its memo table to 2**29 entries (4 GB)."""
    path = nvidia_pickle(fake_modules, tmp_path / "memo-index.pkl")
    data = path.read_bytes()
    assert data[:2] == b"\x80\x02"
    path.write_bytes(data[:2] + b"K\x00r" + struct.pack("<I", 1 << 28) + b"0" + data[2:])  # push 0, memo it, pop
    assert_refused(cli("info", path), tmp_path, path, "memo index")


def test_stride0_tensor_view_in_nvidia_pickle(fake_modules, tmp_path):
    """A 4-byte storage viewed with stride 0 as [32768, 32768] (4 GB once cloned)."""
    def edit(state):
        state["synthesis.b4.const"] = torch.zeros(1).expand(32768, 32768)
    path = nvidia_pickle(fake_modules, tmp_path / "stride0-tensor.pkl", edit_state=edit)
    assert path.stat().st_size < 100_000
    assert_refused(call("from morph.models.loader import load_model; load_model(path)", path), tmp_path, path,
                   "storage")


def test_stride0_tensor_view_in_torch_zip(tmp_path):
    """The same view in a rosinality-style torch zip (torch.load keeps it a view; converting copied 4 GB)."""
    path = tmp_path / "stride0.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(1).expand(32768, 32768)}}, path)
    assert path.stat().st_size < 5_000
    assert_refused(cli("info", path), tmp_path, path, "stride-0")


def native_file(path: Path, **changes) -> Path:
    from safetensors.torch import save_file

    kwargs = {**SMALL, **changes}
    save_file({}, path, metadata={"format": "morph.stylegan2", "version": "1", "init_kwargs": json.dumps(kwargs)})
    return path


def test_huge_resolution_in_a_tiny_safetensors(tmp_path):
    path = native_file(tmp_path / "res.safetensors", img_resolution=16384,
                       synthesis_kwargs={"channel_base": 32768, "channel_max": 512})
    assert path.stat().st_size < 600
    assert_refused(cli("info", path), tmp_path, path, "img_resolution=16384", "4..4096")


def test_huge_z_dim_in_a_tiny_safetensors(tmp_path):
    path = native_file(tmp_path / "zdim.safetensors", z_dim=2 ** 24, w_dim=64)
    assert path.stat().st_size < 600
    assert_refused(call("from morph.models.loader import load_model; load_model(path)", path), tmp_path, path,
                   "z_dim=16777216")


def test_torch_zip_of_compressed_zeros(tmp_path):
    """A 2 MB torch zip whose one storage inflates to 2 GB."""
    class Storage:
        pass

    storage, numel = Storage(), INFLATED // 4

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel) if obj is storage else None

    buf = io.BytesIO()
    tensor = _Reduce(torch._utils._rebuild_tensor_v2, (storage, 0, (numel,), (1,), False, collections.OrderedDict()))
    Pickler(buf, protocol=2).dump({"g_ema": {"style.1.weight": tensor}})
    path = _zip(tmp_path / "bomb.pt", [_stored("archive/data.pkl", buf.getvalue()),
                                       _deflated_zeros("archive/data/0", b"", INFLATED),
                                       _stored("archive/version", b"3\n"), _stored("archive/byteorder", b"little")])
    assert path.stat().st_size < 3_000_000
    assert_refused(cli("info", path), tmp_path, path, "inflates")


# --- latent and direction files --------------------------------------------------------------------------------

def test_npz_of_compressed_zeros(tmp_path):
    path = _zip(tmp_path / "bomb.npz", [_deflated_zeros("w.npy", npy_header([INFLATED // 4]), INFLATED)])
    assert path.stat().st_size < 3_000_000
    assert_refused(call("from morph.motion.latents import read_w; read_w(path)", path), tmp_path, path, "inflates")


def test_nan_latent(tmp_path):
    path = tmp_path / "nan.npy"
    w = np.zeros((18, 512), np.float32)
    w[3, 7] = np.nan
    np.save(path, w)
    line = assert_refused(call("from morph.motion.latents import load_w; load_w(path, 18, 512)", path), tmp_path, path,
                          "NaN", "[3, 7]")
    assert "write it again" in line


def test_latent_overflowing_float32(tmp_path):
    path = tmp_path / "huge.npy"
    np.save(path, np.full(512, 1e300))
    assert_refused(call("from morph.motion.latents import load_w; load_w(path, 18, 512)", path), tmp_path, path,
                   "too large for float32")


def test_nan_direction(tmp_path):
    path = tmp_path / "nan-direction.npy"
    np.save(path, np.full(BUILTIN_W, np.inf, np.float32))
    assert_refused(call("from morph.directions import read_direction; read_direction(path)", path), tmp_path, path,
                   "infinite")
    assert_refused(cli("directions", "show", path, "--out", tmp_path / "strip.png"), tmp_path, path, "infinite")


def test_object_array_in_direction_npz(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, direction=np.array([1.0, "a", None], dtype=object))
    assert_refused(call("from morph.directions import read_direction; read_direction(path)", path), tmp_path, path,
                   "Python objects", "numpy.save")


def test_string_direction(tmp_path):
    path = tmp_path / "strings.npy"
    np.save(path, np.array(["0.5"] * BUILTIN_W))
    assert_refused(cli("directions", "show", path, "--out", tmp_path / "strip.png"), tmp_path, path, "strings")


def test_complex_direction(tmp_path):
    path = tmp_path / "complex.npy"
    np.save(path, np.ones(BUILTIN_W, np.complex64))
    assert_refused(call("from morph.directions import read_direction; read_direction(path)", path), tmp_path, path,
                   "complex numbers")


def test_text_file_as_direction(tmp_path):
    path = tmp_path / "smile.npy"
    path.write_text("0.1 0.2 0.3\n")
    assert_refused(cli("directions", "show", path, "--out", tmp_path / "strip.png"), tmp_path, path,
                   "not a numpy array file")


def test_scene_check_refuses_unrenderable_arrays(tmp_path):
    """`morph check` reads W files and directions with the same reader: strings and NaN fail there, not at render."""
    np.save(tmp_path / "strings.npy", np.array(["1"] * BUILTIN_W))
    nan = np.zeros(BUILTIN_W, np.float32)
    nan[0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    scene = tmp_path / "scene.yaml"
    scene.write_text("model: builtin\ndirections:\n  s: strings.npy\nlatents:\n  a: {seed: 1}\n  b: {file: nan.npy}\n"
                     "renders:\n  r: {path: [a, b]}\n")
    result, stderr = measure(cli("check", scene), tmp_path)
    assert result["rc"] == 2 and result["peak_mb"] < PEAK_LIMIT_MB, (result, stderr)
    assert "scene.yaml:3:6: directions.s: strings.npy" in stderr and "strings" in stderr, stderr
    assert "scene.yaml:6:13: latents.b.file: nan.npy" in stderr and "NaN" in stderr, stderr
