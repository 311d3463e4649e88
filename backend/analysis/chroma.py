"""Pitch evidence for the key: a tuned semitone spectrum of the sustained spectral peaks, and treble and bass chroma
from an approximate note transcription of it.

Why not fold the spectrum straight into 12 bins: a note's 3rd harmonic lies a twelfth above it (its fifth) and the
5th harmonic two octaves and a major third above; folded, every note votes for its own dominant and mediant, and
distortion (which strengthens exactly those partials) pulls the key a fifth away. Instead, as in NNLS chroma (Mauch &
Dixon 2010), the semitone spectrum is explained as a non-negative sum of note templates, each a harmonic series with
decaying partials, and only the notes found are folded into chroma.

Steps, all on the shared STFT (2048 / 256 at 22050 Hz; nothing is recomputed):
1. Sustained spectrum: every FRAME_STEP-th frame between FMIN_HZ and FMAX_HZ, eroded in time (the minimum over the
   neighbouring analysed frames), so a drum hit, which lasts one or two frames, leaves little, and a held or
   repeated note survives.
2. Peaks of that spectrum with parabolic frequency refinement (a lone bass note is placed to a few cents even where
   the 10.8 Hz bins are wider than a semitone).
3. Tuning: the circular mean of the peaks' deviation from the A440 grid, one number per clip.
4. Semitone spectrum per frame (MIDI LOWEST_PITCH..): each peak adds its magnitude to its nearest tuned semitone.
5. Per frame: magnitudes compressed (power COMPRESSION), the frame scaled to unit maximum so loud passages do not
   outvote quiet ones; frames averaged into segments of SEGMENT_SECONDS.
6. Per segment: non-negative least squares against the note templates (multiplicative updates, a few dozen
   iterations on all segments at once), notes folded into a treble and a bass chroma.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .frontend import erode_frames

#: Frequency range of the peaks: 35 Hz reaches the low E of a bass guitar (41 Hz) with its main lobe; above 5 kHz
#: there are few partials that are not cymbals.
FMIN_HZ = 35.0
FMAX_HZ = 5000.0
#: Every FRAME_STEP-th STFT frame is analysed (46 ms apart, half the 93 ms window): the key changes over seconds.
FRAME_STEP = 4
#: The sustained spectrum is the minimum over an analysed frame and SUSTAIN_REACH frames either side (+-46 ms), a
#: span a drum hit (with the 93 ms window it smears over) does not fill but a sixteenth note at 160 BPM does.
SUSTAIN_REACH = 1
#: Semitone grid of the pitch spectrum: MIDI 24 (C1, 32.7 Hz) upwards, N_PITCHES semitones (to F#8, 5.9 kHz).
LOWEST_PITCH = 24
N_PITCHES = 90
#: Peaks this far (in magnitude) below the loudest bin of the clip are not music (-60 dB).
PEAK_FLOOR = 1e-3
#: Peaks this far below the loudest peak of their own frame are left out (-40 dB): after the compression they would
#: weigh under a tenth of it, and skipping them (most peaks of a frame are such noise) halves the cost.
FRAME_PEAK_FLOOR = 1e-2


@dataclass(frozen=True)
class PitchFrames:
    """The semitone spectra of the analysed frames of one clip (what the chroma is computed from)."""

    semitones: np.ndarray     # (n_frames, N_PITCHES) float32 linear peak magnitudes on the tuned semitone grid
    tuning: float             # semitones relative to A440 equal temperament, -0.5..0.5
    frame_rate: float         # analysed frames per second
    sustained_share: float    # share of the band's spectral magnitude that is in sustained peaks (0..1)
    tuning_strength: float    # how consistently the peaks sit at that tuning (0..1; estimate_tuning)


def estimate_tuning(f: np.ndarray, mag: np.ndarray) -> tuple[float, float]:
    """(deviation of the peaks from the A440 equal-tempered grid in semitones, -0.5..0.5; how consistently they sit
    there, 0..1), magnitude-weighted: the angle and the length of the mean of the peaks' deviations as unit vectors
    on the semitone circle. Instruments and voices playing in one tuning line up (rendered songs 0.24-0.75, 10th to
    90th percentile); tuned drums ring at pitches no scale chose (drum loops 0.02-0.12)."""
    total = float(mag.sum()) if f.size else 0.0
    if total <= 0:
        return 0.0, 0.0
    z = np.sum(mag * np.exp(2j * np.pi * 12.0 * np.log2(f / 440.0)))
    if abs(z) <= 1e-12:
        return 0.0, 0.0
    return float(np.angle(z) / (2 * np.pi)), min(float(abs(z)) / total, 1.0)


def _peaks(X: np.ndarray, lo: int, df: float, floor: np.ndarray):
    """Local maxima along frequency of X (rows are bins lo-1.., columns frames) above `floor` (per frame), with
    parabolic refinement on log magnitudes. Returns (frame index, frequency in Hz, magnitude)."""
    a, b, c = X[:-2], X[1:-1], X[2:]
    bins, frames = np.nonzero((b > a) & (b >= c) & (b > floor))
    pa, pb, pc = a[bins, frames], b[bins, frames], c[bins, frames]
    la, lb, lc = np.log(pa + 1e-12), np.log(pb), np.log(pc + 1e-12)
    den = la - 2 * lb + lc
    curved = den < -1e-12
    delta = np.where(curved, 0.5 * (la - lc) / np.where(curved, den, -1.0), 0.0)
    delta = np.clip(delta, -0.5, 0.5)
    return frames, (lo + bins + delta) * df, pb.astype(np.float64)


def pitch_frames(S: np.ndarray, freqs: np.ndarray, frame_rate: float) -> PitchFrames | None:
    """The tuned semitone spectra of the sustained peaks of magnitude spectrogram S (n_bins, n_frames) with bin
    centres `freqs` (Hz) at `frame_rate` frames per second; None when nothing rises above the floor."""
    if S.size == 0 or float(S.max()) <= 0:
        return None
    sel = np.flatnonzero((freqs >= FMIN_HZ) & (freqs <= FMAX_HZ))
    lo, hi = max(int(sel[0]), 1), min(int(sel[-1]), S.shape[0] - 2)
    X = np.ascontiguousarray(S[lo - 1:hi + 2, ::FRAME_STEP])
    H = erode_frames(X, SUSTAIN_REACH)
    df = float(freqs[1] - freqs[0])
    floor = np.maximum(H.max(axis=0) * FRAME_PEAK_FLOOR, float(X.max()) * PEAK_FLOOR)
    frames, f, mag = _peaks(H, lo, df, floor)
    if f.size < 12:
        return None
    sustained_share = float(mag.sum() / max(float(X[1:-1].sum(dtype=np.float64)), 1e-12))
    # one tuning for the clip: the peaks of every 4th analysed frame are thousands, plenty for it
    sub = (frames % 4) == 0
    tuning, strength = estimate_tuning(f[sub], mag[sub]) if np.count_nonzero(sub) >= 12 else estimate_tuning(f, mag)
    pitch = 12.0 * np.log2(f / 440.0) + 69.0 - tuning
    idx = np.round(pitch).astype(np.int64) - LOWEST_PITCH
    ok = (idx >= 0) & (idx < N_PITCHES)
    n = X.shape[1]
    semis = np.bincount(frames[ok] * N_PITCHES + idx[ok], weights=mag[ok], minlength=n * N_PITCHES)
    return PitchFrames(semitones=semis.reshape(n, N_PITCHES).astype(np.float32), tuning=tuning,
                       frame_rate=frame_rate / FRAME_STEP, sustained_share=min(sustained_share, 1.0),
                       tuning_strength=strength)


def segment_spectra(pf: PitchFrames, *, compression: float, segment_seconds: float) -> np.ndarray:
    """(n_segments, N_PITCHES) mean of the frames' compressed, max-normalised semitone spectra per segment.

    Silent frames (no peak) are left out; a clip without any sounding frame gives an empty array."""
    P = pf.semitones.astype(np.float64)
    top = P.max(axis=1)
    P = P[top > 0]
    if P.shape[0] == 0:
        return np.zeros((0, N_PITCHES))
    P = (P / P.max(axis=1, keepdims=True)) ** compression
    per = max(1, int(round(segment_seconds * pf.frame_rate)))
    n_seg = max(1, int(round(P.shape[0] / per)))
    bounds = np.linspace(0, P.shape[0], n_seg + 1).astype(int)
    return np.add.reduceat(P, bounds[:-1], axis=0) / np.diff(bounds)[:, None]


@lru_cache(maxsize=8)
def note_templates(partial_decay: float, n_partials: int, lowest_note: int, n_notes: int) -> np.ndarray:
    """(N_PITCHES, n_notes) dictionary: column j is note `lowest_note + j` as a harmonic series on the semitone grid,
    partial k (1..n_partials) with amplitude partial_decay**(k-1), split between the two nearest semitones; unit
    Euclidean norm per column."""
    W = np.zeros((N_PITCHES, n_notes))
    for j in range(n_notes):
        for k in range(1, n_partials + 1):
            p = lowest_note + j + 12.0 * np.log2(k) - LOWEST_PITCH
            i = int(np.floor(p))
            frac = p - i
            amp = partial_decay ** (k - 1)
            for idx, w in ((i, 1.0 - frac), (i + 1, frac)):
                if 0 <= idx < N_PITCHES:
                    W[idx, j] += amp * w
    W /= np.linalg.norm(W, axis=0, keepdims=True)
    W.setflags(write=False)
    return W


def transcribe(V: np.ndarray, W: np.ndarray, iterations: int = 40) -> np.ndarray:
    """Non-negative H (n_segments, n_notes) minimising ||V - H W^T|| by multiplicative updates (Lee & Seung), all
    segments at once."""
    if V.shape[0] == 0:
        return np.zeros((0, W.shape[1]))
    WtV = V @ W                      # (n_seg, n_notes)
    WtW = W.T @ W
    H = np.maximum(WtV, 1e-9)
    for _ in range(iterations):
        H *= WtV / (H @ WtW + 1e-12)
    return H


def fold(H: np.ndarray, lowest_note: int, weights: np.ndarray) -> np.ndarray:
    """(n_segments, 12) chroma (index 0 = C): note activations times per-note `weights`, summed per pitch class."""
    n_notes = H.shape[1]
    pcs = (lowest_note + np.arange(n_notes)) % 12
    out = np.zeros((H.shape[0], 12))
    for pc in range(12):
        sel = pcs == pc
        out[:, pc] = H[:, sel] @ weights[sel]
    return out
