"""Device and precision choices: CPU always works, GPUs when present, half precision opt-in."""

from __future__ import annotations

import pytest
import torch

from morph.core.devices import resolve_device, resolve_precision
from morph.core.errors import MorphError
from morph.stylegan2 import Generator

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def small_generator() -> Generator:
    torch.manual_seed(0)
    G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                  mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=1024, channel_max=64, num_fp16_res=2, conv_clamp=256))
    return G.eval()


def test_auto_and_cpu():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_missing_is_one_clear_line():
    with pytest.raises(MorphError, match="CUDA is not available") as err:
        resolve_device("cuda")
    assert "\n" not in str(err.value) and str(err.value).startswith("--device")


def test_bad_names():
    with pytest.raises(MorphError, match="unknown device"):
        resolve_device("tpu9")
    with pytest.raises(MorphError, match="unknown precision"):
        resolve_precision("fp8", torch.device("cpu"))


def test_half_precision_is_gpu_only():
    assert resolve_precision("fp32", torch.device("cpu")) == torch.float32
    with pytest.raises(MorphError, match="only on a GPU"):
        resolve_precision("fp16", torch.device("cpu"))


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 0.1), (torch.float16, 0.02)])
def test_reduced_precision_blocks_stay_close(dtype, tol, batch):
    """bf16/fp16 in the blocks NVIDIA marks fp16 (num_fp16_res) changes pixels only a little (fp16 takes
    NVIDIA's overflow pre-normalisation path, here on the CPU); the image stays fp32."""
    G = small_generator()
    ws = G.mapping(torch.randn(batch, 32, generator=torch.Generator().manual_seed(1)), None, truncation_psi=0.7)
    with torch.no_grad():
        ref = G.synthesis(ws)
        low = G.synthesis(ws, dtype=dtype)
    assert low.dtype == torch.float32
    assert 0 < float((low - ref).abs().max()) < tol * float(ref.abs().max())


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("precision,tol", [("fp32", 1e-3), ("fp16", 5e-2), ("bf16", 1e-1)])
def test_cuda_matches_cpu(precision, tol):
    G = small_generator()
    ws = G.mapping(torch.randn(4, 32, generator=torch.Generator().manual_seed(2)), None)
    with torch.no_grad():
        ref = G.synthesis(ws)
        dev = resolve_device("cuda")
        out = G.to(dev).synthesis(ws.to(dev), dtype=resolve_precision(precision, dev)).cpu()
    assert float((out - ref).abs().max()) < tol * float(ref.abs().max())
