"""Perceptual descriptors on the shared front end: energy, danceability, acousticness, spectral centroid.

Each is a documented, monotone mapping of measurable quantities into 0..1 (centroid in Hz). They are
descriptive heuristics, not trained models: the definitions below are the whole story.
"""
from __future__ import annotations

import math

import numpy as np


def _clip01(x: float) -> float:
    return float(min(1.0, max(0.0, x))) if math.isfinite(x) else 0.0


def spectral_centroid(S: np.ndarray, freqs: np.ndarray, frame_rms: np.ndarray) -> float:
    """Magnitude-weighted mean frequency in Hz, averaged over frames weighted by their RMS (0..Nyquist)."""
    tot = S.sum(axis=0)
    active = tot > 1e-9
    if not np.any(active):
        return 0.0
    per_frame = (freqs @ S[:, active]) / tot[active]
    w = frame_rms[active]
    if w.sum() <= 0:
        return float(per_frame.mean())
    return float(np.sum(per_frame * w) / w.sum())


def onset_density(onset: np.ndarray) -> float:
    """Mean spectral flux per frame (log-mel units, >= 0): ~0.04 for a solo piano, ~0.1 for a dance track,
    ~0.15 and more for busy funk; 0 for a static sound."""
    return float(onset.mean()) if onset.size else 0.0


def _density01(density: float) -> float:
    """Onset density mapped linearly to 0..1: 0.03 (sparse, legato) -> 0, 0.15 (busy) -> 1."""
    return _clip01((density - 0.03) / 0.12)


def energy(loudness_lufs: float | None, density: float) -> float:
    """0..1: 60% loudness (-35 LUFS -> 0, -5 LUFS -> 1, linear in dB) + 40% onset density (_density01).

    Louder or busier audio never scores lower.
    """
    loud = 0.0 if loudness_lufs is None else _clip01((loudness_lufs + 35.0) / 30.0)
    return _clip01(0.6 * loud + 0.4 * _density01(density))


def danceability(pulse_clarity: float, bpm: float | None) -> float:
    """0..1: how steady and strong the beat is (pulse clarity: the autocorrelation peak at the beat period),
    scaled by how well the tempo suits dancing (1 near 90..135 BPM, falling off by octave distance, floor 0.4).
    """
    if bpm is None:
        return 0.0
    octaves_off = max(0.0, math.log2(90.0 / bpm), math.log2(bpm / 135.0))
    tempo_fit = max(0.4, 1.0 - 0.6 * octaves_off)
    return _clip01(math.sqrt(_clip01(pulse_clarity)) * tempo_fit)


def acousticness(bin_power: np.ndarray, freqs: np.ndarray, density: float) -> float:
    """0..1: the absence of three cues of produced/electronic sound, multiplied (any one strong cue is enough):

    - high-frequency share: fraction of spectral power above 5 kHz (0 -> acoustic, >= 15% -> not);
    - sub-bass share: fraction of power below 60 Hz (808s, synth bass; >= 25% -> not acoustic);
    - busy, percussive onsets: onset density (_density01: 0.03 -> no cue, 0.15 -> full cue).

    `bin_power` is the power spectrum summed over frames, `freqs` its bin frequencies in Hz.
    """
    total = float(bin_power.sum())
    if total <= 0:
        return 0.0
    hf = float(bin_power[freqs >= 5000.0].sum()) / total
    sub = float(bin_power[freqs < 60.0].sum()) / total
    cues = [_clip01(hf / 0.15), _clip01(sub / 0.25), _density01(density)]
    return _clip01(float(np.prod([1.0 - c for c in cues])))
