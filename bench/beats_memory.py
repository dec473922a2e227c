"""Peak memory of beat tracking, whole-envelope librosa (morph before issue 26) against morph's blockwise tracker,
on synthetic click-track onset envelopes of growing length. Prints MiB and the ratio; run:
    PYTHONPATH=. python bench/beats_memory.py 2 4 8      (minutes)"""

from __future__ import annotations

import sys
import tracemalloc

import librosa
import numpy as np

from morph.sound.audio import ONSET_HOP, RATE, track_beats


def peak(fn) -> int:
    """MiB at the high-water mark of what ``fn()`` allocates (numpy buffers included)."""
    tracemalloc.start()
    fn()
    high = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return high >> 20


def main(minutes: list[float]) -> None:
    rate = RATE / ONSET_HOP
    for m in minutes:
        env = np.random.default_rng(0).random(int(m * 60 * rate)).astype(np.float32) * 0.2
        env[np.round(np.arange(0.25, m * 60, 0.5) * rate).astype(int)] += 4.0
        whole = peak(lambda: librosa.beat.beat_track(onset_envelope=env, sr=RATE, hop_length=ONSET_HOP))
        blocks = peak(lambda: track_beats(env))
        print(f"{m:g} min: whole-envelope librosa {whole} MiB, blockwise {blocks} MiB, ratio {whole / max(blocks, 1):.1f}x")


if __name__ == "__main__":
    main([float(a) for a in sys.argv[1:]] or [2.0, 4.0, 8.0])
