"""Projection: photos to W/W+ and noise (the encoder's first guess, the optimiser, its cache), the figures of each projected photo, FFHQ alignment."""
