"""Sound: a sound file decoded by ffmpeg and analysed into per-frame features and beat/onset frames, and the tracks synthesised for tests and demos."""
