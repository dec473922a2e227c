"""The ``morph`` command line as a user runs it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import morph

from morph.checkpoints.loading import load_generator


def test_help_lists_every_command():
    out = morph("--help")
    assert out.returncode == 0
    for command in ("info", "convert"):
        assert command in out.stdout


def test_info_describes_nvidia_pickle(stylegan2_fixtures):
    out = morph("info", str(stylegan2_fixtures / "B_nvidia.pkl"), "--json")
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout)
    assert facts["format"] == "nvidia-pkl"
    assert (facts["resolution"], facts["num_ws"], facts["w_dim"], facts["z_dim"], facts["c_dim"]) == (64, 10, 128, 128, 0)
    assert facts["architecture"] == "skip" and facts["mapping_layers"] == 8
    assert len(facts["sha256"]) == 64 and facts["parameters"] > 1_000_000


@pytest.mark.parametrize("content,expect", [(b"", "empty"), (b"\x80\x04K\x01.", "not a StyleGAN2 checkpoint"),
                                            (b"hello world, not a model", "not a")])
def test_info_on_bad_files_gives_one_line_and_exit_2(tmp_path, content, expect):
    bad = tmp_path / "model.pkl"
    bad.write_bytes(content)
    out = morph("info", str(bad))
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.pkl" in lines[0] and expect in lines[0], out.stderr


def test_info_on_directory_and_missing_file(tmp_path):
    for target in (tmp_path, tmp_path / "nope.pkl"):
        out = morph("info", str(target))
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_convert_round_trip_renders_identically(stylegan2_fixtures, tmp_path):
    dest = tmp_path / "B.safetensors"
    out = morph("convert", str(stylegan2_fixtures / "B_tf.pkl"), str(dest))
    assert out.returncode == 0, out.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["B.safetensors"]  # no temp file left behind
    src, conv = load_generator(stylegan2_fixtures / "B_tf.pkl"), load_generator(dest)
    assert conv.info.format == "morph" and conv.init_kwargs == src.init_kwargs
    ws = src.mapping(torch.randn(2, src.z_dim, generator=torch.Generator().manual_seed(0)), None)
    assert torch.equal(src.synthesis(ws), conv.synthesis(ws))
