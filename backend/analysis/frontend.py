"""The shared spectral front end: one STFT that every estimator reuses.

Everything downstream (onset and harmonic-change envelopes for tempo, chroma for key, descriptors) is derived from
the magnitude spectrogram computed here once, so the cost of the analysis is essentially one FFT pass over the clip.

Conventions: `sr` in Hz, frames are `HOP` samples apart (frame rate `sr / HOP`), the spectrogram is
(n_bins, n_frames) float32 magnitudes.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

#: FFT size: 2048 samples = 93 ms at 22050 Hz, 10.8 Hz bins; fine enough to separate semitones above ~150 Hz.
N_FFT = 2048
#: Hop: 256 samples = 11.6 ms (86 frames/s); the tempo lag grid needs this resolution (1 frame ~ 1.4% at 120 BPM).
HOP = 256
#: Mel bands used for the onset (novelty) envelope.
N_MELS = 48


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample mono float32 audio with soxr (high quality); a no-op when the rates match."""
    if sr_in == sr_out or y.size == 0:
        return y.astype(np.float32, copy=False)
    import soxr

    out = soxr.resample(y, sr_in, sr_out, quality="HQ")
    return np.asarray(out, dtype=np.float32)


def _frozen(a: np.ndarray) -> np.ndarray:
    """Cached arrays are shared by every analysis (and thread): make accidental writes fail loudly."""
    a.setflags(write=False)
    return a


@lru_cache(maxsize=4)
def _window(n_fft: int) -> np.ndarray:
    """Periodic Hann window (the STFT convention)."""
    return _frozen((0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32))


def stft_magnitude(y: np.ndarray, *, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """Magnitude STFT, (1 + n_fft/2, n_frames) float32, frames centred (signal zero-padded by n_fft/2)."""
    pad = n_fft // 2
    yp = np.pad(y.astype(np.float32, copy=False), (pad, pad))
    if yp.size < n_fft:
        yp = np.pad(yp, (0, n_fft - yp.size))
    frames = np.lib.stride_tricks.sliding_window_view(yp, n_fft)[::hop]
    n = frames.shape[0]
    out = np.empty((n, n_fft // 2 + 1), dtype=np.float32)
    # windowed frames go through a small reused buffer: the FFT then reads from cache instead of a 20 MB copy
    chunk = 128
    buf = np.empty((min(chunk, n), n_fft), dtype=np.float32)
    win = _window(n_fft)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        np.multiply(frames[start:start + m], win, out=buf[:m])
        np.abs(scipy.fft.rfft(buf[:m], axis=1, overwrite_x=True, workers=1), out=out[start:start + m])
    return out.T


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale (Auditory Toolbox): linear below 1 kHz (3 mel per 200 Hz), logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(f < 1000.0, f * 3.0 / 200.0, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / log_step)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    """Inverse of hz_to_mel."""
    m = np.asarray(m, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(m < 15.0, m * 200.0 / 3.0, 1000.0 * np.exp(log_step * (m - 15.0)))


def mel_band_edges(sr: int, n_mels: int = N_MELS) -> np.ndarray:
    """The n_mels + 2 band edge frequencies in Hz, equally spaced in mel from 30 Hz to 8 kHz (or Nyquist)."""
    fmax = min(8000.0, sr / 2.0)
    return mel_to_hz(np.linspace(hz_to_mel(30.0), hz_to_mel(fmax), n_mels + 2))


@lru_cache(maxsize=4)
def mel_filterbank(sr: int, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, 1 + n_fft/2) triangular filters on the Slaney mel scale, each of unit area ("Slaney" norm)."""
    edges = mel_band_edges(sr, n_mels)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (upper - lower))
    return _frozen(weights.astype(np.float32))


@lru_cache(maxsize=4)
def bin_frequencies(sr: int, n_fft: int = N_FFT) -> np.ndarray:
    return _frozen(np.fft.rfftfreq(n_fft, 1.0 / sr).astype(np.float32))


@dataclass(frozen=True)
class FrontEnd:
    """What every estimator shares. Arrays are read-only by convention."""

    sr: int
    hop: int
    n_fft: int
    S: np.ndarray            # (n_bins, n_frames) magnitude spectrogram
    mel: np.ndarray          # (N_MELS, n_frames) log-compressed mel magnitudes
    onset_bands: np.ndarray  # (n_bands, n_frames) half-wave-rectified spectral flux per band group
    onset: np.ndarray        # (n_frames,) summed onset envelope
    frame_rms: np.ndarray    # (n_frames,) RMS of the signal per frame (linear)
    bin_power: np.ndarray    # (n_bins,) power spectrum summed over frames
    harmonic_change: np.ndarray  # (n_frames,) chord/bass-note change: chroma novelty (see harmonic_change)

    @property
    def frame_rate(self) -> float:
        """Frames per second of every frame-rate array here."""
        return self.sr / self.hop


#: Mel-band groups for the multi-band flux: kick/bass, snare body and low chords, mid (voices, snare crack),
#: high (hi-hats, cymbals, snare noise). Separate bands keep a loud bass line from masking the hi-hat grid.
BAND_EDGES_HZ = (0.0, 150.0, 500.0, 3000.0, 1e9)


#: Range and span of the harmonic-change envelope: above the kick drum's thump (bass notes count by their upper
#: partials) to the top of chord voicings; the chroma of the HARMONIC_SPAN frames before each frame (93 ms) is
#: compared with that of the span after it.
HARMONIC_FMIN_HZ = 80.0
HARMONIC_FMAX_HZ = 2000.0
HARMONIC_SPAN = 8
#: Only what sounds this long counts as pitch: the spectrum is the minimum over each frame and HARMONIC_REACH frames
#: either side (9 frames, 104 ms), which a drum hit (about one 93 ms window) does not fill and a held note does.
HARMONIC_REACH = 4


@lru_cache(maxsize=4)
def chroma_folding(sr: int, n_fft: int = N_FFT) -> tuple[int, np.ndarray]:
    """(first bin, (12, bins) 0/1 matrix) folding the STFT bins of the harmonic-change range onto the nearest
    pitch class. Coarse at the low end (10.8 Hz bins), which is fine for telling one chord from the next."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    sel = np.flatnonzero((freqs >= HARMONIC_FMIN_HZ) & (freqs <= HARMONIC_FMAX_HZ))
    pc = np.round(12.0 * np.log2(freqs[sel] / 440.0)).astype(np.int64) % 12
    fold = np.zeros((12, sel.size), np.float32)
    fold[pc, np.arange(sel.size)] = 1.0
    return int(sel[0]), _frozen(fold)


def erode_frames(X: np.ndarray, reach: int) -> np.ndarray:
    """Minimum over each frame (last axis) and `reach` frames either side (edges use the frames that exist): what
    lasts that long survives, a drum hit does not. Shifted minima in X's own memory layout (the STFT is stored
    frame by frame, so a copy into rows would cost more than the minima): several times faster here than
    scipy.ndimage.minimum_filter1d on these short spans."""
    out = X.copy(order="K")
    n = X.shape[-1]
    for k in range(1, reach + 1):
        if k >= n:
            break
        np.minimum(out[..., k:], X[..., :-k], out=out[..., k:])
        np.minimum(out[..., :-k], X[..., k:], out=out[..., :-k])
    return out


def harmonic_change(S: np.ndarray, sr: int) -> np.ndarray:
    """Where the harmony moves (Goto's chord-change cue for drumless beat tracking): 1 - cosine similarity of the
    mean chroma of the HARMONIC_SPAN frames before each frame and of those from it on, on the sustained part of
    the spectrum (drum hits are too short to leave any). A new chord or bass note moves it; a repeated chord
    leaves it near 0."""
    first, fold = chroma_folding(sr)
    X = np.sqrt(S[first:first + fold.shape[1]])
    C = fold @ erode_frames(X, HARMONIC_REACH)
    norms = np.linalg.norm(C, axis=0, keepdims=True)
    # a frame weighs by how much of it is sustained (a chord's quiet tail as much as its attack; a drum hit, or
    # the noise between hits, little), so the chroma means compared below are those of pitched sound
    share = np.minimum(norms / np.maximum(np.linalg.norm(fold @ X, axis=0, keepdims=True), 1e-9), 1.0)
    # a frame's level: quiet tails count, but a kick's fading thump under loud hits does not make a tune
    level = np.minimum(norms / max(float(np.percentile(norms, 90)), 1e-9), 1.0)
    C *= share * level / np.maximum(norms, 1e-9)
    n, w = C.shape[1], HARMONIC_SPAN
    csum = np.concatenate([np.zeros((12, 1), np.float32), np.cumsum(C, axis=1, dtype=np.float32)], axis=1)
    idx = np.arange(n)
    lo, hi = np.maximum(idx - w, 0), np.minimum(idx + w, n)
    before = csum[:, idx] - csum[:, lo]
    after = csum[:, hi] - csum[:, idx]
    norm = np.linalg.norm(before, axis=0) * np.linalg.norm(after, axis=0)
    cos = np.einsum("ij,ij->j", before, after) / np.maximum(norm, 1e-9)
    # scaled by how pitched the neighbourhood is (the geometric mean of the two spans' weighted chroma per frame),
    # so unpitched material gives a small envelope (its mean tells the tempo model how far to trust it)
    pitched = np.sqrt(norm) / (2.0 * w)
    return np.where(norm > 1e-9, (1.0 - cos) * pitched, 0.0).astype(np.float32)


def compute_front_end(y: np.ndarray, sr: int) -> FrontEnd:
    """Compute the shared front end of mono float32 `y` at `sr` Hz (at least one frame, even for empty input)."""
    S = stft_magnitude(y)
    mfb = mel_filterbank(sr)
    # log(1 + C*x) compresses dynamics so a quiet hi-hat and a loud kick both register (C=1000 for |x|~1e-3..1).
    mel = np.log1p(1000.0 * (mfb @ S))
    flux = np.maximum(0.0, np.diff(mel, axis=1, prepend=mel[:, :1]))
    centers = mel_band_edges(sr, mfb.shape[0])[1:-1]  # band centre frequencies, to group bands
    bands = []
    for lo, hi in zip(BAND_EDGES_HZ[:-1], BAND_EDGES_HZ[1:]):
        sel = (centers >= lo) & (centers < hi)
        bands.append(flux[sel].mean(axis=0) if np.any(sel) else np.zeros(flux.shape[1], np.float32))
    onset_bands = np.asarray(bands, dtype=np.float32)
    onset = onset_bands.mean(axis=0)
    # one pass over |X|^2 gives both the per-frame RMS (Parseval, no second framing of the signal) and the
    # long-term power spectrum the descriptors use
    bin_power = np.einsum("ij,ij->i", S, S).astype(np.float64)
    win = _window(N_FFT)
    frame_sum = np.einsum("ij,ij->j", S, S).astype(np.float64)
    frame_power = (2.0 * frame_sum - S[0].astype(np.float64) ** 2 - S[-1].astype(np.float64) ** 2) / (
        N_FFT * float(np.sum(win.astype(np.float64) ** 2)))
    frame_rms = np.sqrt(np.maximum(frame_power, 0.0)).astype(np.float32)
    return FrontEnd(sr=sr, hop=HOP, n_fft=N_FFT, S=S, mel=mel.astype(np.float32), onset_bands=onset_bands,
                    onset=onset.astype(np.float32), frame_rms=frame_rms, bin_power=bin_power,
                    harmonic_change=harmonic_change(S, sr))
