"""Rendering: a render job's content-addressed segments, frames generated in batches and streamed into ffmpeg, image files, wide-frame canvases and the pixels drawn onto stills."""
