"""StyleGAN2 in plain PyTorch: NVIDIA's generator semantics and state-dict names, safe checkpoint loading."""

from ..model import ModelInfo
from .loading import load_generator
from .networks import Generator, images_to_uint8, layer_groups

__all__ = ["Generator", "ModelInfo", "images_to_uint8", "layer_groups", "load_generator"]
