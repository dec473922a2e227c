"""Downloads by URL, against a server this test starts on 127.0.0.1: no test reaches any other address."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from loopback import Files, closed_port, serve
from morph.download import cached_downloads, cached_path, download, models_dir
from morph.errors import MorphError

BODY = bytes(range(256)) * 4096  # 1 MiB: several reads, cut half-way


@pytest.fixture
def server():
    state = Files(files={"/nets/model.pkl": BODY})
    with serve(state) as base:
        yield state, base


def leftovers(cache: Path) -> list[str]:
    """Every file under the model cache, relative to it."""
    root = models_dir(cache)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_download_once_records_sha256(server, tmp_path):
    state, base = server
    url = f"{base}/nets/model.pkl"
    log = io.StringIO()
    path = download(url, tmp_path, stream=log)
    assert path == cached_path(url, tmp_path) and path.name == "model.pkl"
    assert path.read_bytes() == BODY
    digest = hashlib.sha256(BODY).hexdigest()
    assert (path.parent / "model.pkl.sha256").read_text().split()[0] == digest
    assert "recorded at this first download" in log.getvalue()
    assert download(url, tmp_path, sha256=digest.upper()) == path  # cached: no second request
    assert len(state.requests) == 1
    assert cached_downloads(tmp_path) == [(url, path, digest)]
    assert not [n for n in leftovers(tmp_path) if n.endswith((".part", ".validator"))]


def test_resume_after_the_server_cuts_the_stream(server, tmp_path):
    state, base = server
    state.cuts["/nets/model.pkl"] = 1
    path = download(f"{base}/nets/model.pkl", tmp_path, quiet=True)
    assert path.read_bytes() == BODY
    assert state.requests == [("/nets/model.pkl", None), ("/nets/model.pkl", f"bytes={len(BODY) // 2}-")]


def test_cut_connection_keeps_the_part_and_the_next_call_resumes(server, tmp_path):
    state, base = server
    url = f"{base}/nets/model.pkl"
    state.cuts["/nets/model.pkl"] = 1
    with pytest.raises(MorphError) as err:
        download(url, tmp_path, quiet=True, retries=0)
    line = str(err.value)
    assert "\n" not in line and url in line and "cut" in line and "curl" in line
    part = cached_path(url, tmp_path).with_name("model.pkl.part")
    assert part.stat().st_size == len(BODY) // 2
    assert not cached_path(url, tmp_path).exists()
    assert download(url, tmp_path, quiet=True).read_bytes() == BODY
    assert state.requests[-1] == ("/nets/model.pkl", f"bytes={len(BODY) // 2}-")


def test_a_resumed_range_that_does_not_fit_starts_over(server, tmp_path):
    state, base = server
    url = f"{base}/nets/model.pkl"
    part = cached_path(url, tmp_path).with_name("model.pkl.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)  # a part of another file version: its ETag no longer matches
    (part.parent / "model.pkl.part.validator").write_text('"stale"')
    assert download(url, tmp_path, quiet=True).read_bytes() == BODY
    assert state.requests == [("/nets/model.pkl", "bytes=1000-")]  # If-Range failed: the server sent it all


def test_wrong_pin_is_refused_and_nothing_is_left(server, tmp_path):
    _, base = server
    url = f"{base}/nets/model.pkl"
    with pytest.raises(MorphError) as err:
        download(url, tmp_path, sha256="0" * 64, quiet=True)
    line = str(err.value)
    assert "\n" not in line and url in line and hashlib.sha256(BODY).hexdigest() in line and "0" * 64 in line
    assert leftovers(tmp_path) == []
    with pytest.raises(MorphError, match="64 hexadecimal"):
        download(url, tmp_path, sha256="abc", quiet=True)


def test_404_is_one_line_naming_the_url(server, tmp_path):
    _, base = server
    url = f"{base}/nets/missing.pkl"
    with pytest.raises(MorphError) as err:
        download(url, tmp_path, quiet=True)
    line = str(err.value)
    assert "\n" not in line and line.startswith(url) and "HTTP 404" in line and "by hand" in line
    assert leftovers(tmp_path) == []


def test_refused_connection(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/model.pkl"
    with pytest.raises(MorphError) as err:
        download(url, tmp_path, quiet=True)
    line = str(err.value)
    assert "\n" not in line and line.startswith(url) and "refused" in line and "curl -L -o model.pkl" in line
    assert leftovers(tmp_path) == []


FETCH = "import sys; from pathlib import Path; from morph.download import download; " \
        "print(download(sys.argv[1], Path(sys.argv[2])))"


def test_two_processes_fetching_one_url_do_one_download(server, tmp_path):
    state, base = server
    url = f"{base}/nets/model.pkl"
    state.hold["/nets/model.pkl"] = release = threading.Event()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    first = subprocess.Popen([sys.executable, "-c", FETCH, url, str(tmp_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    assert state.started.wait(120), "the first process never started downloading"
    second = subprocess.Popen([sys.executable, "-c", FETCH, url, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    waiting = second.stderr.readline()  # the second process says it waits for the first
    release.set()
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    assert "waiting for another morph process" in waiting
    assert outs[0][0] == outs[1][0] == f"{cached_path(url, tmp_path)}\n"
    assert [r for r in state.requests if r[0] == "/nets/model.pkl"] == [("/nets/model.pkl", None)]
    assert cached_path(url, tmp_path).read_bytes() == BODY
