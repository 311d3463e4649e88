"""The shared spectral front end: one STFT that every estimator reuses.

Everything downstream (onset envelope for tempo, chroma for key, descriptors) is derived from the magnitude
spectrogram computed here once, so the cost of the analysis is essentially one FFT pass over the clip.

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

    @property
    def frame_rate(self) -> float:
        """Frames per second of every frame-rate array here."""
        return self.sr / self.hop


#: Mel-band groups for the multi-band flux: kick/bass, snare body and low chords, mid (voices, snare crack),
#: high (hi-hats, cymbals, snare noise). Separate bands keep a loud bass line from masking the hi-hat grid.
BAND_EDGES_HZ = (0.0, 150.0, 500.0, 3000.0, 1e9)


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
                    onset=onset.astype(np.float32), frame_rms=frame_rms, bin_power=bin_power)
