"""Latent algebra and the schedule: pure functions on tensors that turn a scene's latents and motion into W frames and camera poses."""
