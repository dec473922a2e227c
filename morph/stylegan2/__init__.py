"""StyleGAN2 in plain PyTorch: NVIDIA's generator semantics and state-dict names (the math only; files are
read by ``morph.checkpoints``)."""

from morph.stylegan2.networks import Generator, layer_groups

__all__ = ["Generator", "layer_groups"]
