"""StyleGAN2 in plain PyTorch: NVIDIA's generator semantics and state-dict names, safe checkpoint loading."""

from .loading import ModelInfo, load_generator
from .networks import Generator, constant_noise, images_to_uint8

__all__ = ["Generator", "ModelInfo", "constant_noise", "images_to_uint8", "load_generator"]
