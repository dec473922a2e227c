"""StyleGAN3 (alias-free) in plain PyTorch: NVIDIA's generator semantics and state-dict names."""

from morph.stylegan3.networks import FAMILY, Generator, camera_transform, camera_transforms

__all__ = ["FAMILY", "Generator", "camera_transform", "camera_transforms"]
