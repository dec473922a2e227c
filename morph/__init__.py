"""morph: render StyleGAN2 latent space into videos and looping GIFs."""

__version__ = "0.1.0"
