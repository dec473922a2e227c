"""StyleGAN2 in plain PyTorch: NVIDIA's generator semantics and state-dict names, safe checkpoint loading."""

from .loading import ModelInfo, load_generator
from .networks import Generator, images_to_uint8

__all__ = ["Generator", "ModelInfo", "images_to_uint8", "load_generator"]
