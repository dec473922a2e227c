"""Sound → per-frame curves a scene can follow: loudness, onset strength, band energies, chroma, beats, onsets.

The file is decoded by the ffmpeg morph ships (every format it reads) to mono float PCM at ``RATE``; librosa
(the ``morph-gan[audio]`` extra) only analyses. Curves at the analysis rate are cached by the file's SHA-256 in
``<cache>/audio/``, then resampled to a render's frames. Loudness and band energies are put on 0…1 by a fixed
scale (−60…0 dB of full scale), onset strength by a fixed flux in dB, chroma per frame: none depends on the rest
of the track, so editing part of a sound changes only the frames around the edit.
"""

from __future__ import annotations

import importlib.util
import io
import re
import subprocess
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch

from morph.core import cache
from morph.core.errors import MorphError
from morph.core.files import atomic_path, file_sha256
from morph.core.limits import MAX_SECONDS
from morph.core.progress import log
from morph.motion.schedule import Follow
from morph.render.encode import ffmpeg_exe

RATE = 22050                 # Hz: the PCM every file is decoded to
N_FFT, HOP = 2048, 256       # loudness, bands, chroma: 93 ms windows every 11.6 ms
ONSET_FFT, ONSET_HOP = 512, 128  # onsets and beats: short windows, so an onset is placed within 6 ms
FLOOR_DB = -60.0             # loudness and bands: FLOOR_DB … 0 dB of a full-scale sine → 0 … 1
ONSET_FULL_DB = 12.0         # onset strength: a mean rise of this many dB over the mel bands → 1
ONSET_FLOOR_DB = -80.0       # mel power below this (power 1 = 0 dB) counts as silence
BLOCK = 4096                 # STFT frames analysed at once (tens of seconds), so memory does not grow with the sound
BEAT_BLOCK_S = 60.0          # beats are tracked on this much of the onset envelope at a time ...
BEAT_OVERLAP_S = 10.0        # ... each block overlapping the next by this much, stitched in the overlap's middle
TEMPO_WINDOW_S = 8.0         # the tempogram's autocorrelation window (librosa's ac_size) ...
TEMPO_CHUNK = 1024           # ... computed for this many envelope frames at a time and averaged over a block
ANALYSIS_VERSION = "2"       # bump when an analysis changes, so cached curves are recomputed
BANDS = {"bass": (20.0, 250.0), "mid": (250.0, 4000.0), "treble": (4000.0, RATE / 2)}
NOTES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
EVENTS = ("beats", "onsets")
FEATURES = ("loudness", "onsets", *BANDS, "band:LOW-HIGH", "chroma:NOTE")  # as the scene language writes them
_BAND = re.compile(r"^band:(\d+(?:\.\d*)?)-(\d+(?:\.\d*)?)$")


def feature_problem(name: str) -> Optional[str]:
    """Why ``name`` is not a feature (None when it is)."""
    if name in ("loudness", "onsets") or name in BANDS:
        return None
    if name.startswith("chroma:"):
        return None if name[7:] in NOTES else f"{name!r}: the note is one of {', '.join(NOTES)}"
    band = _BAND.match(name)
    if band:
        low, high = float(band[1]), float(band[2])
        return None if 0 <= low < high <= RATE / 2 else f"{name!r}: a band runs from LOW to HIGH Hz, 0 ≤ LOW < HIGH ≤ {RATE // 2}"
    return f"{name!r} is not a feature; expected {', '.join(FEATURES[:-1])} or {FEATURES[-1]} (bands in Hz)"


def require_librosa() -> None:
    """MorphError in one line unless librosa (the ``morph-gan[audio]`` extra) is installed; imports nothing."""
    if importlib.util.find_spec("librosa") is None:
        raise MorphError("following a sound needs librosa", hint="pip install 'morph-gan[audio]'")


def _librosa():
    require_librosa()
    import librosa

    return librosa


def decode(path: Path) -> np.ndarray:
    """The sound in ``path`` as mono float32 PCM at ``RATE`` Hz (at most MAX_SECONDS), decoded by ffmpeg."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:a:0",
                           "-t", str(MAX_SECONDS), "-ac", "1", "-ar", str(RATE), "-f", "f32le", "-"],
                          capture_output=True)
    if proc.returncode != 0:
        last = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no audio stream"])[-1]
        raise MorphError(f"ffmpeg cannot decode the sound ({last})", path, "give an audio file ffmpeg reads")
    pcm = np.frombuffer(proc.stdout, np.float32).copy()
    if not len(pcm):
        raise MorphError("the sound holds no samples", path, "give a sound that is not empty")
    bad = np.flatnonzero(~np.isfinite(pcm))
    if len(bad):
        raise MorphError(f"the sound holds {len(bad)} NaN or infinite samples (first at {bad[0] / RATE:.2f} s)", path,
                         "export it again (as 16-bit PCM, say)")
    return pcm


def _db_scale(power: np.ndarray, full_scale: float) -> np.ndarray:
    """Power → 0…1: FLOOR_DB … 0 dB relative to ``full_scale``."""
    db = 10 * np.log10(np.maximum(power / full_scale, 1e-12))
    return np.clip((db - FLOOR_DB) / -FLOOR_DB, 0, 1)


class Sound:
    """One sound file's analysis: curves at the analysis rate, each computed once and cached by the file's hash."""

    def __init__(self, path: Path, cache_dir: Optional[Path] = None):
        self.path = Path(path)
        self.sha256 = file_sha256(self.path)
        self.folder = cache.folder(cache.AUDIO, cache_dir) / self.sha256

    @cached_property
    def pcm(self) -> np.ndarray:
        return decode(self.path)

    def cached(self, name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """Array ``name`` from the cache, or computed and stored there (atomically)."""
        dest = self.folder / f"{re.sub(r'[^A-Za-z0-9.-]', '_', name)}-v{ANALYSIS_VERSION}.npy"
        if dest.is_file():
            try:
                return np.load(dest, allow_pickle=False)
            except (OSError, ValueError, EOFError):  # damaged: made again below
                pass
        log(f"{self.path.name}: analysing its {name} (once; cached by the file's sha256)")
        array = np.ascontiguousarray(compute())
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        with atomic_path(dest) as tmp:
            tmp.write_bytes(buffer.getvalue())
        return array

    @property
    def seconds(self) -> float:
        """Duration of the decoded sound."""
        return float(self.cached("samples", lambda: np.array([len(self.pcm)]))[0]) / RATE

    def frames(self, fps: float) -> int:
        """Frames a render of the whole sound has at ``fps`` (at least one)."""
        return max(1, round(self.seconds * fps))

    def spectra(self, n_fft: int, hop: int, reduce: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``reduce(power)`` of the centred STFT's power [bins, frames], computed BLOCK frames at a time and joined
        along the frames: the same numbers as one STFT of the whole sound, in bounded memory."""
        stft = _librosa().stft
        return np.concatenate([reduce(np.abs(stft(chunk, n_fft=n_fft, hop_length=hop, center=False)) ** 2)
                               for chunk in _blocks(np.pad(self.pcm, n_fft // 2), n_fft, hop)], axis=-1)

    def curve(self, feature: str) -> tuple[np.ndarray, int]:
        """(values in 0…1 at the analysis rate, hop in samples) of ``feature`` (see ``feature_problem``)."""
        if feature == "loudness":
            return _db_scale(self.cached("mean-square", self._mean_square), 0.5), HOP  # full-scale sine: 1/√2 RMS
        if feature == "onsets":
            return np.clip(self.cached("onset-strength", self._onset_strength) / ONSET_FULL_DB, 0, 1), ONSET_HOP
        if feature.startswith("chroma:"):
            chroma = self.cached("chroma", lambda: self.spectra(N_FFT, HOP, lambda power: _librosa().feature.chroma_stft(
                S=power, sr=RATE, n_fft=N_FFT, tuning=0.0)))
            return chroma[NOTES.index(feature[7:])].astype(np.float64), HOP
        low, high = BANDS.get(feature) or tuple(map(float, _BAND.match(feature).groups()))
        window = np.hanning(N_FFT + 1)[:-1]  # the periodic Hann window librosa uses
        full_scale = N_FFT * np.sum(window ** 2) / 4  # a full-scale sine's power over the positive bins
        freqs = np.fft.rfftfreq(N_FFT, 1 / RATE)
        band = lambda: self.spectra(N_FFT, HOP, lambda power: power[(freqs >= low) & (freqs < high)].sum(axis=0))
        return _db_scale(self.cached(f"band-{low:g}-{high:g}", band).astype(np.float64), full_scale), HOP

    def _mean_square(self) -> np.ndarray:
        """Mean square of the samples in each N_FFT window, centred every HOP (the ends mirrored, as librosa's RMS)."""
        padded = np.pad(self.pcm, N_FFT // 2, mode="reflect")
        frame = np.lib.stride_tricks.sliding_window_view
        return np.concatenate([np.mean(frame(chunk.astype(np.float64), N_FFT)[::HOP] ** 2, axis=1)
                               for chunk in _blocks(padded, N_FFT, HOP)])

    def _onset_strength(self) -> np.ndarray:
        """Mean rise in dB over the mel bands (spectral flux) on short windows, quieter than ONSET_FLOOR_DB ignored."""
        lib = _librosa()
        mel_filters = lib.filters.mel(sr=RATE, n_fft=ONSET_FFT, n_mels=64)
        mel = self.spectra(ONSET_FFT, ONSET_HOP, lambda power: mel_filters @ power)
        db = np.maximum(lib.power_to_db(mel, ref=1.0, top_db=None), ONSET_FLOOR_DB)
        return lib.onset.onset_strength(S=db, sr=RATE, hop_length=ONSET_HOP, center=False)

    def events(self, kind: str) -> np.ndarray:
        """Times in seconds of the sound's ``beats`` (librosa's dynamic-programming tracker) or ``onsets``."""
        envelope = self.cached("onset-strength", self._onset_strength)
        if kind == "beats":
            found = lambda: track_beats(envelope)
        else:
            found = lambda: _librosa().onset.onset_detect(onset_envelope=envelope, sr=RATE, hop_length=ONSET_HOP,
                                                   units="time")
        return self.cached(kind, lambda: np.asarray(found(), np.float64))

    def per_frame(self, feature: str, fps: float, frames: int) -> np.ndarray:
        """``feature`` at each of ``frames`` video frames (frame i shows time i / fps; 0 after the sound ends)."""
        values, hop = self.curve(feature)
        return resample(values, RATE / hop, fps, frames, np.maximum if feature == "onsets" else np.add)

    def event_frames(self, kind: str, fps: float, frames: int) -> np.ndarray:
        """The distinct frames (< ``frames``) nearest the ``kind`` events, in order."""
        at = np.unique(np.round(self.events(kind) * fps).astype(np.int64))
        return at[(at >= 0) & (at < frames)]


def track_beats(envelope: np.ndarray) -> np.ndarray:
    """Beat times in seconds of an onset envelope (one value per ONSET_HOP samples), tracked by librosa's
    dynamic-programming tracker on BEAT_BLOCK_S-second blocks that overlap by BEAT_OVERLAP_S: its tempogram over
    a whole track needs memory in proportion to the track's length (gigabytes for twenty minutes), over a block a
    fixed amount. Each block keeps the beats up to the middle of its overlap with the next (where both blocks see
    the same music on both sides); a beat closer than half the median beat interval to the one before it (the
    two trackers placing one beat twice at a seam) is dropped. The tempo is each block's own, so a track whose
    tempo drifts is followed."""
    lib = _librosa()
    rate = RATE / ONSET_HOP
    block, half = int(BEAT_BLOCK_S * rate), int(BEAT_OVERLAP_S * rate) // 2
    found, start = [], 0
    while True:
        stop = min(start + block, len(envelope))
        part = envelope[start:stop]
        beats = lib.beat.beat_track(onset_envelope=part, sr=RATE, hop_length=ONSET_HOP, bpm=_tempo(part))[1] + start
        low = start + half if start else 0
        high = stop - half if stop < len(envelope) else stop
        found.append(beats[(beats >= low) & (beats < high)])
        if stop == len(envelope):
            break
        start = stop - 2 * half
    frames = np.concatenate(found).astype(np.int64)
    if len(frames) > 2:
        frames = frames[np.concatenate([[True], np.diff(frames) >= np.median(np.diff(frames)) / 2])]
    return frames * (ONSET_HOP / RATE)


def _tempo(envelope: np.ndarray) -> float:
    """The tempo (BPM) librosa's estimator picks from the mean tempogram of ``envelope``, that mean summed
    TEMPO_CHUNK frames at a time: its whole tempogram holds TEMPO_WINDOW_S seconds of lags (over a thousand
    values) for every frame, hundreds of MB for a minute."""
    lib = _librosa()
    window = int(lib.time_to_frames(TEMPO_WINDOW_S, sr=RATE, hop_length=ONSET_HOP))
    total = np.zeros((window, 1))
    for first in range(0, len(envelope), TEMPO_CHUNK):
        total += lib.feature.tempogram(onset_envelope=envelope[first:first + TEMPO_CHUNK], sr=RATE,
                                       hop_length=ONSET_HOP, win_length=window).sum(axis=1, keepdims=True)
    return float(lib.feature.tempo(tg=total / max(len(envelope), 1), sr=RATE, hop_length=ONSET_HOP)[0])


def _blocks(padded: np.ndarray, n_fft: int, hop: int) -> Iterator[np.ndarray]:
    """The stretches of ``padded`` that hold BLOCK consecutive analysis windows each (the last fewer)."""
    frames = 1 + (len(padded) - n_fft) // hop
    for first in range(0, frames, BLOCK):
        count = min(BLOCK, frames - first)
        yield padded[first * hop:(first + count - 1) * hop + n_fft]


def resample(values: np.ndarray, rate: float, fps: float, frames: int, reduce: np.ufunc = np.add) -> np.ndarray:
    """Curve ``values`` sampled at ``rate`` Hz → ``frames`` values at ``fps``: each frame takes the analysis
    frames within half a frame of its time (their mean for ``np.add``, their peak for ``np.maximum``), or the
    curve interpolated at its time where none fall so close; 0 past the end."""
    times = np.arange(len(values)) / rate
    centres = np.arange(frames) / fps
    edges = np.searchsorted(times, np.concatenate([centres - 0.5 / fps, centres[-1:] + 0.5 / fps]))
    counts = np.diff(edges)
    out = np.interp(centres, times, values, right=0.0) if len(values) else np.zeros(frames)
    full = counts > 0
    if full.any():
        # the windows tile the time line, so each run of analysis frames ends where the next frame's starts
        sums = reduce.reduceat(values[:edges[-1]], edges[:-1][full])
        out[full] = sums / counts[full] if reduce is np.add else sums
    return out


def smooth(curve: np.ndarray, attack: float, release: float) -> np.ndarray:
    """One-pole envelope follower: rises with time constant ``attack`` frames, falls with ``release`` (0: at
    once). Causal, so an edit of the sound changes only the frames after it (and those the decay reaches)."""
    rise = 1 - np.exp(-1 / attack) if attack > 0 else 1.0
    fall = 1 - np.exp(-1 / release) if release > 0 else 1.0
    out = np.empty_like(curve, dtype=np.float64)
    level = float(curve[0]) if len(curve) else 0.0
    for i, x in enumerate(curve.astype(np.float64)):
        level += (rise if x > level else fall) * (x - level)
        out[i] = level
    return out


def envelope(follow: Follow, frames: int, cache_dir: Optional[Path] = None) -> torch.Tensor:
    """The per-frame gain of a :class:`morph.motion.schedule.Follow`: its feature smoothed, its window low…high → 0…1."""
    curve = Sound(follow.sound, cache_dir).per_frame(follow.feature, follow.fps, frames)
    gain = (smooth(curve, follow.attack, follow.release) - follow.low) / (follow.high - follow.low)
    return torch.from_numpy(np.clip(gain, 0, 1))
