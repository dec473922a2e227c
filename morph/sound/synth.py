"""Sound tracks made by the repo, not downloaded: clicks at chosen times, a tone rising in loudness, and the
music of ``scenes/music.yaml`` (a drum loop, a bass line and chords that swell), as 16-bit mono WAV files.

``python -m morph.sound.synth scenes/music.wav`` writes the example's sound again (the same bytes every time).
"""

from __future__ import annotations

import argparse
import wave
from pathlib import Path
from typing import Sequence

import numpy as np

from morph.core.files import atomic_path

RATE = 16000  # Hz: small files, and the example's highest partials stay below 8 kHz


def clicks(times: Sequence[float], seconds: float, rate: int = RATE, level: float = 0.9) -> np.ndarray:
    """Short decaying noise bursts (5 ms) starting at ``times`` (seconds), silence elsewhere."""
    y = np.zeros(int(round(seconds * rate)), np.float64)
    burst = np.random.default_rng(0).uniform(-1, 1, int(0.005 * rate)) * np.linspace(1, 0, int(0.005 * rate))
    for t in times:
        start = int(round(t * rate))
        part = burst[:len(y) - start]
        y[start:start + len(part)] += level * part
    return y


def tone(seconds: float, freq: float = 440.0, start: float = 0.01, stop: float = 0.8,
         rate: int = RATE) -> np.ndarray:
    """A sine of ``freq`` Hz whose amplitude rises from ``start`` to ``stop`` evenly in decibels."""
    t = np.arange(int(round(seconds * rate))) / rate
    return np.geomspace(start, stop, len(t)) * np.sin(2 * np.pi * freq * t)


def music(seconds: float = 8.0, bpm: float = 120.0, rate: int = RATE) -> np.ndarray:
    """The example's track: a kick on every beat (with a click on each bar's first), soft hats between, a bass
    line and chords that swell and fade."""
    t = np.arange(int(round(seconds * rate))) / rate
    beat = 60.0 / bpm
    y = np.zeros_like(t)
    for i, start in enumerate(np.arange(0, seconds, beat)):
        u = t - start
        on = (u >= 0) & (u < beat)
        kick = np.sin(2 * np.pi * (50 * u + 60 * (1 - np.exp(-u * 30)) / 30)) * np.exp(-u * 12)
        y[on] += 0.6 * kick[on]
        y += 0.5 * clicks([start], seconds, rate, 1.0)[:len(y)] * (i % 4 == 0)  # a click on the first beat of a bar
        hat = (u >= beat / 2) & (u < beat / 2 + 0.03)
        y[hat] += 0.04 * np.random.default_rng(i).uniform(-1, 1, hat.sum()) * np.exp(-(u[hat] - beat / 2) * 80)
    roots = (55.0, 55.0, 43.65, 49.0)                     # A, A, F, G: one per bar of four beats
    root = np.array([roots[int(x // (4 * beat)) % len(roots)] for x in t])
    swell = 0.5 - 0.5 * np.cos(2 * np.pi * t / seconds)    # quiet, loud in the middle, quiet
    phase = 2 * np.pi * np.cumsum(root) / rate
    y += 0.25 * np.sin(phase) * (0.2 + 0.8 * swell)
    for ratio in (4.0, 5.0, 6.0):                          # the chord: root two octaves up, its third and fifth
        y += 0.1 * swell * np.sin(ratio * phase)
    return np.clip(y, -1, 1)


def write_wav(dest: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    """``samples`` (floats in −1…1) as a 16-bit mono WAV at ``dest``, written atomically."""
    pcm = (np.clip(samples, -1, 1) * 32767).round().astype("<i2")
    with atomic_path(Path(dest)) as tmp:
        with wave.open(str(tmp), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(pcm.tobytes())
    return Path(dest)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="write the example scene's synthesised music as a WAV file")
    parser.add_argument("out", type=Path, nargs="?", default=Path("scenes/music.wav"))
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--bpm", type=float, default=120.0)
    args = parser.parse_args(argv)
    print(write_wav(args.out, music(args.seconds, args.bpm)))


if __name__ == "__main__":
    main()
