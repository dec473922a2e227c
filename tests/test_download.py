"""Downloads by URL, against a server this test starts on 127.0.0.1: no test reaches any other address."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from loopback import Files, closed_port, serve

from morph.core.errors import MorphError
from morph.models.download import cached_downloads, cached_path, download, models_dir

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


def test_a_content_range_that_starts_elsewhere_is_not_appended(server, tmp_path):
    state, base = server
    url = f"{base}/nets/model.pkl"
    state.cuts["/nets/model.pkl"] = 1
    state.misplaced.add("/nets/model.pkl")  # the resumed answer is 206 from byte 0: appending it would corrupt
    assert download(url, tmp_path, quiet=True).read_bytes() == BODY
    assert state.requests == [("/nets/model.pkl", None), ("/nets/model.pkl", f"bytes={len(BODY) // 2}-"),
                              ("/nets/model.pkl", None)]


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


def failure(url: str, tmp_path: Path) -> str:
    """The error of downloading ``url``, checked to be one line that starts with the URL."""
    with pytest.raises(MorphError) as err:
        download(url, tmp_path, quiet=True)
    line = str(err.value)
    assert "\n" not in line and line.startswith(url), line
    return line


def test_404_is_one_line_naming_the_url(server, tmp_path):
    _, base = server
    url = f"{base}/nets/missing.pkl"
    line = failure(url, tmp_path)
    assert "HTTP 404" in line and "by hand" in line
    assert leftovers(tmp_path) == []


def test_refused_connection(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/model.pkl"
    line = failure(url, tmp_path)
    assert "refused" in line and "curl -L -o model.pkl" in line
    assert leftovers(tmp_path) == []


def test_tls_failure_is_one_line(server, tmp_path):
    _, base = server
    url = base.replace("http://", "https://") + "/nets/model.pkl"  # TLS spoken to a plain HTTP server
    line = failure(url, tmp_path)
    assert "TLS failed" in line and "by hand" in line


def test_dns_failure_is_one_line(monkeypatch, tmp_path):
    import socket

    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)  # offline, without asking any resolver
    url = "https://models.example/ffhq.pkl"
    line = failure(url, tmp_path)
    assert "cannot resolve the host models.example" in line
    assert "curl -L -o ffhq.pkl" in line


FETCH = "import sys; from pathlib import Path; from morph.models.download import download; " \
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


def morph(*args: str, cache: Path, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "MORPH_CACHE": str(cache)}  # nothing may reach ~/.cache in a test
    return subprocess.run([sys.executable, "-m", "morph.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600, **kw)


SCENE = """latents:
  a: {seed: 1}
  b: {seed: 2}
renders:
  clip:
    format: gif
    fps: 10
    size: 64
    path: [a, b]
    transition: {duration: 3f}
    hold: 1f
"""


@pytest.fixture
def builtin_server():
    from morph.builtin import builtin_path

    weights = builtin_path("generator").read_bytes()
    state = Files(files={"/w/generator.safetensors": weights})
    with serve(state) as base:
        yield state, f"{base}/w/generator.safetensors", hashlib.sha256(weights).hexdigest()


def test_render_a_scene_whose_model_is_a_loopback_url(builtin_server, tmp_path):
    state, url, digest = builtin_server
    scene = tmp_path / "scene.yaml"
    scene.write_text(f"model: {url}\nsha256: {digest}\n" + SCENE)
    cache = tmp_path / "cache"
    out = morph("render", str(scene), "--out", str(tmp_path / "out"), "--cache", str(cache), cache=tmp_path / "env")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "out" / "clip.gif").read_bytes().startswith(b"GIF89a")
    assert cached_path(url, cache).is_file()  # downloaded into --cache, not $MORPH_CACHE
    assert not (tmp_path / "env").exists()
    again = morph("render", str(scene), "--out", str(tmp_path / "out"), "--cache", str(cache), cache=tmp_path / "env")
    assert again.returncode == 0 and "up to date" in again.stderr
    assert len(state.requests) == 1  # downloaded once
    listed = morph("cache", "--cache", str(cache), "--models", cache=tmp_path / "env")
    assert listed.returncode == 0 and url in listed.stdout and digest in listed.stdout
    assert "1 downloaded models" in morph("cache", "--cache", str(cache), cache=tmp_path / "env").stdout
    cleared = morph("cache", "--cache", str(cache), "--models", "--clear", cache=tmp_path / "env")
    assert cleared.returncode == 0 and "removed 1 downloads" in cleared.stdout
    assert not cached_path(url, cache).exists()


def test_scene_with_a_wrong_pin_fails_check_in_one_line(builtin_server, tmp_path):
    _, url, digest = builtin_server
    scene = tmp_path / "scene.yaml"
    scene.write_text(f"model: {url}\nsha256: {'f' * 64}\n" + SCENE)
    out = morph("check", str(scene), cache=tmp_path / "cache")
    assert out.returncode == 2
    lines = [line for line in out.stderr.strip().splitlines() if not re.match(r"\d{4}-\d\d-\d\dT", line)]  # not logs
    assert len(lines) == 1 and lines[0].startswith(f"{scene}:1:") and digest in lines[0] and url in lines[0], out.stderr
    assert leftovers(tmp_path / "cache") == []


def test_fetch_by_url_and_list(builtin_server, tmp_path):
    _, url, digest = builtin_server
    out = morph("fetch", url, "--quiet", cache=tmp_path / "cache")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{cached_path(url, tmp_path / 'cache')}  sha256 {digest}"
    listed = morph("fetch", "--list", cache=tmp_path / "cache")
    assert listed.returncode == 0
    assert "ffhq  " in listed.stdout and "stylegan3-r-afhqv2-512x512" in listed.stdout
    assert "not downloaded" in listed.stdout
    bad = morph("fetch", "no-such-network", cache=tmp_path / "cache")
    assert bad.returncode == 2 and "morph fetch --list" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_published_names_resolve_to_nvidia_urls_without_network(tmp_path):
    from morph.models.resolver import PUBLISHED, VGG16_URL, model_url

    assert model_url("ffhq") == "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl"
    assert model_url("FFHQ") == model_url("ffhq")
    assert model_url("stylegan3-t-ffhqu-256x256") == ("https://api.ngc.nvidia.com/v2/models/nvidia/research/"
                                                      "stylegan3/versions/1/files/stylegan3-t-ffhqu-256x256.pkl")
    assert VGG16_URL == "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt"
    assert all(url.startswith("https://") and url.endswith(".pkl") for url in PUBLISHED.values())
    (tmp_path / "ffhq").write_bytes(b"x")
    assert model_url("ffhq", tmp_path) is None  # a file of that name wins
    assert model_url("model.pkl") is None


def test_vgg_auto_downloads_nvidias_file_the_same_way(monkeypatch, builtin_server, tmp_path):
    import morph.models.resolver as resolver

    _, url, _ = builtin_server
    monkeypatch.setattr(resolver, "VGG16_URL", url)  # the loopback server stands in for NVIDIA's
    assert resolver.resolve_vgg(["auto"], tmp_path, quiet=True) == [cached_path(url, tmp_path)]
    assert resolver.resolve_vgg([Path("vgg16.pt")], tmp_path) == [Path("vgg16.pt")]
    with pytest.raises(MorphError, match="auto stands alone"):
        resolver.resolve_vgg(["auto", "x.pth"], tmp_path)
