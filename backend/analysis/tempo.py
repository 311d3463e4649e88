"""Tempo: periodicity of the multi-band onset envelope, then an explicit choice of the metrical level.

Output tempo is in beats per minute (quarter-note level as a listener would tap it), 30..300 BPM.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_BPM = 30.0
MAX_BPM = 300.0


@dataclass(frozen=True)
class TempoEstimate:
    bpm: float | None                 # None when there is no periodic pulse
    confidence: float                 # 0..1
    candidates: list[dict] = field(default_factory=list)  # [{"bpm", "score"}], best first
    pulse_clarity: float = 0.0        # 0..1: height of the beat-period autocorrelation peak
    beat_period_frames: float | None = None
    meter: int | None = None          # 3 or 4 when the bar level is clear
    acf: np.ndarray | None = None     # summed normalised autocorrelation (lag in frames)


def _normalised_envelope(env: np.ndarray, frame_rate: float) -> np.ndarray:
    """Remove the slowly varying level (moving average over ~1 s) and scale to unit variance."""
    n = env.size
    w = max(3, int(round(frame_rate)) | 1)
    kernel = np.ones(w, dtype=np.float64) / w
    local = np.convolve(env, kernel, mode="same")
    e = np.maximum(0.0, env - local)
    sd = float(np.std(e))
    return (e - e.mean()) / sd if sd > 1e-12 and n > 1 else np.zeros(n)


def autocorrelation(env: np.ndarray, max_lag: int) -> np.ndarray:
    """Unbiased-normalised autocorrelation r[0..max_lag] (r[0] = 1 for a non-zero signal)."""
    n = env.size
    if n < 2:
        return np.zeros(max_lag + 1)
    nfft = 1 << int(np.ceil(np.log2(2 * n)))
    spec = np.fft.rfft(env, nfft)
    r = np.fft.irfft(spec * np.conj(spec), nfft)[: max_lag + 1]
    # unbiased: divide by the number of overlapping samples, so long lags are not penalised by the window
    overlap = np.maximum(n - np.arange(max_lag + 1), 1)
    r = r / overlap
    return r / r[0] if r[0] > 1e-12 else np.zeros(max_lag + 1)


def _interp(r: np.ndarray, lag: float) -> float:
    if lag < 0 or lag > r.size - 1:
        return 0.0
    i = int(lag)
    f = lag - i
    return float(r[i] * (1 - f) + r[min(i + 1, r.size - 1)] * f)


def _log_prior(bpm: np.ndarray, centre: float = 110.0, octave_sigma: float = 0.9) -> np.ndarray:
    """Log-normal tempo prior: the distribution of tempi listeners tap, centred ~110 BPM, ~0.9 octave wide."""
    return np.exp(-0.5 * (np.log2(bpm / centre) / octave_sigma) ** 2)


def estimate_tempo(onset_bands: np.ndarray, frame_rate: float) -> TempoEstimate:
    """Estimate the tempo from (n_bands, n_frames) onset envelopes sampled at `frame_rate` frames/s."""
    n_frames = onset_bands.shape[1]
    max_lag = int(min(n_frames - 1, round(frame_rate * 60.0 / MIN_BPM * 4)))
    if n_frames < frame_rate * 2 or max_lag < frame_rate * 60.0 / MIN_BPM:
        return TempoEstimate(bpm=None, confidence=0.0)
    acfs = []
    for env in onset_bands:
        if np.std(env) > 1e-9:
            acfs.append(autocorrelation(_normalised_envelope(env.astype(np.float64), frame_rate), max_lag))
    if not acfs:
        return TempoEstimate(bpm=None, confidence=0.0)
    r = np.mean(acfs, axis=0)

    bpms = np.exp(np.linspace(np.log(MIN_BPM * 1.3), np.log(MAX_BPM * 0.9), 600))
    lags = 60.0 * frame_rate / bpms
    sal = np.array([_interp(r, L) for L in lags])
    sal = np.maximum(sal, 0.0)
    score = sal * _log_prior(bpms)
    peaks = [i for i in range(1, len(score) - 1) if score[i] >= score[i - 1] and score[i] > score[i + 1]]
    if not peaks or score.max() <= 1e-6:
        return TempoEstimate(bpm=None, confidence=0.0, acf=r)
    peaks.sort(key=lambda i: -score[i])
    best = peaks[0]
    bpm = float(bpms[best])
    clarity = float(np.clip(sal[best], 0.0, 1.0))
    total = sum(score[i] for i in peaks[:5])
    dominance = float(score[best] / total) if total > 0 else 0.0
    confidence = float(np.clip(clarity * 2.0, 0, 1) * dominance)
    cands = [{"bpm": float(bpms[i]), "score": float(score[i] / score[best])} for i in peaks[:5]]
    # make sure the half and double of the winner are listed
    for factor in (0.5, 2.0):
        alt = bpm * factor
        if MIN_BPM <= alt <= MAX_BPM and not any(abs(c["bpm"] / alt - 1) < 0.04 for c in cands):
            L = 60.0 * frame_rate / alt
            s = max(0.0, _interp(r, L)) * float(_log_prior(np.array([alt]))[0])
            cands.append({"bpm": alt, "score": float(s / score[best])})
    cands.sort(key=lambda c: -c["score"])
    period = 60.0 * frame_rate / bpm
    meter = _meter(r, period)
    return TempoEstimate(bpm=bpm, confidence=confidence, candidates=cands, pulse_clarity=clarity,
                         beat_period_frames=period, meter=meter, acf=r)


def _meter(r: np.ndarray, period: float) -> int | None:
    """3 or 4 beats per bar from the autocorrelation at 3 and 4 beat periods; None when neither stands out."""
    three = _interp(r, 3 * period)
    four = _interp(r, 4 * period)
    if max(three, four) <= 0.05:
        return None
    if four >= three * 1.15:
        return 4
    if three >= four * 1.15:
        return 3
    return None


def beat_times(onset: np.ndarray, frame_rate: float, period: float | None) -> np.ndarray:
    """Beat positions in seconds: the best phase of a fixed grid, each beat nudged to the nearby onset peak."""
    if period is None or period <= 1 or onset.size < period * 2:
        return np.zeros(0)
    n = onset.size
    p = int(round(period))
    phase_scores = []
    for ph in range(p):
        idx = np.round(np.arange(ph, n, period)).astype(int)
        phase_scores.append(float(onset[idx[idx < n]].sum()))
    ph = int(np.argmax(phase_scores))
    grid = np.arange(ph, n, period)
    out = []
    half = max(1, int(0.1 * period))
    for g in grid:
        c = int(round(g))
        lo, hi = max(0, c - half), min(n, c + half + 1)
        out.append(lo + int(np.argmax(onset[lo:hi])) if hi > lo else c)
    return np.asarray(out, dtype=np.float64) / frame_rate
