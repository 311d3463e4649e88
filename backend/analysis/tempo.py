"""Tempo: harmonic periodicity of the multi-band onset envelope, then a learned choice of the metrical level.

Pipeline (all on the shared front end's onset bands, 86 frames/s):

1. Periodicity (`periodicity`). Each band's onset envelope (kick, low-mid, mid, hi-hat) is normalised on its own,
   so a quiet hi-hat grid counts as much as a loud bass. Two views of every band:
   - the autocorrelation (ACF), made tolerant to human timing (max over +-1 frame) and only partly unbiased (the
     overlap divisor never drops below half the clip, so on a 5-s loop the long lags do not turn into noise);
   - the Fourier magnitude (DFT tempogram over the whole clip), which peaks at the beat rate and its harmonics.
   Harmonic summation makes sparse material robust: a loop with rests between hits still puts ACF peaks at 1, 2 and
   4 beat periods, and DFT peaks at 1..4 times the beat rate, even when no single lag or frequency stands out.
   The ACF comb leans to slower levels and the DFT comb to faster ones; their product (`salience`) keeps what both
   agree on (Peeters' combination; the comb versions in the manner of Percival & Tzanetakis' enhanced ACF).
2. Candidates (`candidates`). The strongest peaks of both saliences and their metrical relatives (x1/3 .. x3).
3. The metrical level (`level_features`, `LevelModel`). A conditional logit (softmax over each clip's
   candidates) whose score is a linear term plus a few tanh units over interpretable cues per candidate:
   the periodicity at the level (ACF, DFT, their combs, kick band vs hi-hat band), at the sub-beat (half period;
   the hi-hat band alone at half and a quarter of it, so hats in eighths of a slow backbeat are told from trap's
   sixteenths, which its annotation counts as eighths of the double tempo)
   and the balance against the double and half tempo, a log-normal tempo prior (log2 tempo and its square: the
   fitted centre and width), onsets per beat (and its square), syncopation at 1.5 beats, ternary bar evidence,
   and the prior's interaction with how percussive the clip is (struck, spiky onsets vs legato strings), and
   where the harmony moves (frontend.harmonic_change, Goto's chord-change cue for drumless music): chord and
   bass-note changes recurring at 1, 2 and 4 beats and at half a beat, falling on or off the beat grid, and how
   many there are per beat, counted in proportion to how pitched the clip is (drums alone have no chords to
   follow; the clip's level is not a cue of its own: as one, it made drum-only decisions depend on the random
   start). Onsets alone cannot tell a slow piece with running eighths from a fast one; its chords change on its
   beats and bars, not on every eighth. The hidden units let cues combine (a linear score cannot say "fast
   and drumless and dense figuration means the eighths, not the beat"); on the 336-song training set they lifted
   leave-one-style-out Acc1 from 73 to 82 %, and the harmonic-change cues lifted the 592-clip set's song folds
   from 95.4 to 96.8 % and its held-out styles from 72.3 to 76.2 % (means of three random starts;
   benchmarks/ANALYSIS_RESULTS.md). The committed network is nine 10-unit networks fitted from different random
   starts and averaged (90 units, each output weight a ninth), because a single start's decisions on borderline
   drum-only and slow material moved with the start (and those of three starts averaged, on the 1920-clip set). The
   weights, feature means and scales live in models/tempo_level.json, fitted by benchmarks/fit_tempo.py on a
   rendered training set with grouped cross-validation (its figures are in that file's "fit" record and in
   benchmarks/ANALYSIS_RESULTS.md).
   One number is fitted afterwards, on other material: the prior's shift (`LevelModel.prior_shift`, a score per
   octave of tempo). The training set's tempos are the composer's, and music people wrote (tempos their files
   state: benchmarks/trainset/human.py), held out from that fit, was read at the half too often; the shift is the
   maximum-likelihood one on that music with the network fixed (benchmarks/fit_tempo_prior.py), checked on sets
   it never saw (benchmarks/ANALYSIS_RESULTS.md, sixteenth session).
4. Precision: the chosen period is refined on the ACF peak at 4 (or 3, 2) beats with parabolic interpolation.

Confidence. Every candidate's `score` is the calibrated probability that it is the annotated tempo (the level a
listener taps), and `confidence` is the top candidate's score: one number. The calibration is a logistic map of
the softmax probability and the pulse strength, fitted on cross-validated predictions (models/tempo_level.json,
"calibration"); the other candidates keep their softmax ratio to the winner, capped so the scores sum to <= 1.

Output tempo is in beats per minute, 30..300 BPM.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.ndimage import maximum_filter1d

MIN_BPM = 30.0
MAX_BPM = 300.0
#: Hypotheses are restricted to the range where people tap beats.
HYP_MIN_BPM = 40.0
HYP_MAX_BPM = 250.0

#: Log-spaced tempo grid (0.23% steps) on which the salience is evaluated.
_GRID = np.exp(np.linspace(np.log(MIN_BPM), np.log(MAX_BPM), 1000))

#: Metrical relatives of a salience peak considered as hypotheses.
_RELATIVES = (1 / 3, 1 / 2, 2 / 3, 1.0, 3 / 2, 2.0, 3.0)

#: Multiples summed by the harmonic combs: ACF at 1, 2, 4 periods; DFT at 1..4 times the rate (weights 1/k).
_ACF_COMB = (1.0, 2.0, 4.0)
_DFT_COMB = (1.0, 2.0, 3.0, 4.0)

#: Mean harmonic change (frontend.harmonic_change) from which chord-change cues count in full: rendered music with
#: chords sits at 0.0015-0.015, synthesized drum loops alone at 0.00004-0.001.
HARMONIC_TRUSTED_LEVEL = 0.002

#: Centre of the log2-tempo features (the prior's learned centre is relative to it).
PRIOR_REF_BPM = 120.0

MODEL_PATH = Path(__file__).resolve().parent / "models" / "tempo_level.json"


@dataclass(frozen=True)
class TempoEstimate:
    bpm: float | None                 # None when there is no periodic pulse
    confidence: float                 # 0..1: calibrated probability that bpm is the annotated tempo
    candidates: list[dict] = field(default_factory=list)  # [{"bpm", "score"}], best first, score as confidence
    pulse_clarity: float = 0.0        # 0..1: mean autocorrelation at the beat period
    beat_period_frames: float | None = None
    meter: int | None = None          # 3 or 4 when the bar level is clear


def normalised_envelope(env: np.ndarray, frame_rate: float) -> np.ndarray:
    """Onset envelope minus its ~1 s moving average, half-wave rectified, zero-mean, unit variance."""
    n = env.size
    w = max(3, int(round(frame_rate)) | 1)
    local = np.convolve(env, np.ones(w) / w, mode="same")
    e = np.maximum(0.0, env - local)
    e = e - e.mean() if n else e
    sd = float(np.std(e))
    return e / sd if sd > 1e-12 else np.zeros(n)


def autocorrelation(env: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocorrelation r[0..max_lag] normalised so r[0] = 1 (zeros for a zero signal).

    Divided by the overlap (unbiased, so bar-length lags of a 30-s clip are not penalised), but never by less than
    half the clip: on a short loop the longest lags rest on a few products and would otherwise dominate."""
    n = env.size
    if n < 2:
        return np.zeros(max_lag + 1)
    nfft = 1 << int(np.ceil(np.log2(2 * n)))
    spec = np.fft.rfft(env, nfft)
    r = np.fft.irfft(spec.real ** 2 + spec.imag ** 2, nfft)[: max_lag + 1]
    if r.size < max_lag + 1:
        r = np.pad(r, (0, max_lag + 1 - r.size))
    r = r / np.maximum(n - np.arange(max_lag + 1), n / 2.0)
    return r / r[0] if r[0] > 1e-12 else np.zeros(max_lag + 1)


def _at(r: np.ndarray, lag: float | np.ndarray) -> np.ndarray:
    """Linear interpolation of r at fractional lag(s); 0 beyond the end."""
    return np.interp(lag, np.arange(r.size), r, right=0.0)


@dataclass(frozen=True)
class Periodicity:
    """Everything the level decision needs; `*_grid` arrays are on the `_GRID` tempo axis."""

    acfs: np.ndarray       # (bands, lags) per-band autocorrelation, jitter-tolerant (max over +-1 frame)
    acf: np.ndarray        # (lags,) mean autocorrelation of the active bands (plain, for refinement and meter)
    dfts: np.ndarray       # (bands, bins) per-band DFT magnitude, each band's maximum in 30..1200 BPM = 1
    dft_bpm: np.ndarray    # (bins,) tempo of each DFT bin
    active: np.ndarray     # (bands,) bool: the band has onsets at all (silent bands are left out of means)
    acf_grid: np.ndarray   # mean ACF at each grid tempo
    dft_grid: np.ndarray   # mean DFT at each grid tempo
    salience: np.ndarray   # max(acf, 0) * dft at each grid tempo
    comb: np.ndarray       # harmonic-summed version: max(ACF comb, 0) * DFT comb
    onset_rate: float      # onsets per second
    band_rates: np.ndarray  # (bands,) onsets per second in each band (kick .. hi-hat)
    peakiness: float       # mean of the top 5% of the normalised envelopes: ~2 legato .. 5+ struck and sparse
    high_share: float      # share of the spectral flux above 3 kHz: cymbals and hats make it high
    frame_rate: float
    envelope: np.ndarray   # mean of the active bands' normalised envelopes (for pulse trains)
    backbeat: np.ndarray   # (lags,) kick-to-snare cross-correlation (see _backbeat)
    harmonic_acf: np.ndarray  # (lags,) jitter-tolerant ACF of the harmonic-change envelope, times the trust
    harmonic_env: np.ndarray  # normalised harmonic-change envelope (chord and bass-note changes), times the trust
    harmonic_rate: float      # harmonic changes per second
    harmonic_trust: float     # 0..1: how far the chord-change cues count (0 for drums alone, 1 with moving chords)

    def pulse_train(self, bpm: float, env: np.ndarray | None = None) -> tuple[float, float]:
        """(on, off): the mean envelope on a beat grid of `bpm` at its best phase, and on the grid shifted by half
        a beat (the off-beats). A sparse loop still lines its hits up with the true grid (Percival & Tzanetakis'
        pulse-train evaluation); a level twice too fast leaves its off-beats empty."""
        env = self.envelope if env is None else env
        period = 60.0 * self.frame_rate / bpm
        count = int((env.size - period) / period)
        if count < 2:
            return 0.0, 0.0
        phases = np.arange(int(np.ceil(period)))
        idx = np.rint(phases[:, None] + np.arange(count)[None, :] * period).astype(np.int64)
        scores = env[idx].mean(axis=1)
        best = int(np.argmax(scores))
        off = int(round(best + period / 2.0)) % phases.size
        return float(scores[best]), float(scores[off])

    def acf_at(self, bpm: float | np.ndarray, k: float = 1.0, band: int | None = None) -> np.ndarray:
        """ACF at k beat periods of `bpm` (mean of the bands, or one band)."""
        lag = k * 60.0 * self.frame_rate / np.asarray(bpm, dtype=np.float64)
        if band is not None:
            return _at(self.acfs[band], lag)
        return np.mean([_at(r, lag) for r in self.acfs[self.active]], axis=0)

    def dft_at(self, bpm: float | np.ndarray) -> np.ndarray:
        """Mean normalised DFT magnitude at `bpm` (beats per minute as a frequency)."""
        return np.mean([np.interp(bpm, self.dft_bpm, d, right=0.0) for d in self.dfts[self.active]], axis=0)

    def acf_comb_at(self, bpm: float | np.ndarray) -> np.ndarray:
        return sum(self.acf_at(bpm, k) for k in _ACF_COMB) / len(_ACF_COMB)

    def dft_comb_at(self, bpm: float | np.ndarray) -> np.ndarray:
        w = np.array([1.0 / k for k in _DFT_COMB])
        return sum(wk * self.dft_at(np.asarray(bpm) * k) for wk, k in zip(w, _DFT_COMB)) / w.sum()


def periodicity(onset_bands: np.ndarray, onset: np.ndarray, frame_rate: float,
                harmonic: np.ndarray | None = None) -> Periodicity | None:
    """Compute the per-band ACF/DFT periodicity (and that of the harmonic-change envelope, when given); None when
    no band has any variation."""
    n = onset_bands.shape[1]
    envs = np.array([normalised_envelope(b.astype(np.float64), frame_rate) if np.std(b) > 1e-9 else np.zeros(n)
                     for b in onset_bands])
    active = np.any(envs != 0.0, axis=1)
    if not active.any():
        return None
    max_lag = int(4 * 60.0 * frame_rate / HYP_MIN_BPM) + 4  # 4 beats at the slowest hypothesis
    raw = np.array([autocorrelation(e, max_lag) for e in envs])
    acfs = maximum_filter1d(raw, size=3, axis=1)
    nfft = 1 << int(np.ceil(np.log2(max(4 * n, 8192))))  # zero-padding: <= 0.3 BPM bins before interpolation
    dft_bpm = np.arange(nfft // 2 + 1) * frame_rate / nfft * 60.0
    usable = (dft_bpm >= MIN_BPM) & (dft_bpm <= 4 * MAX_BPM)
    mags = np.abs(np.fft.rfft(envs * np.hanning(n), nfft, axis=1))
    dfts = mags / np.maximum(mags[:, usable].max(axis=1, keepdims=True), 1e-12)
    top5 = max(1, n // 20)
    peak = float(np.mean([np.mean(np.partition(e, n - top5)[n - top5:]) for e in envs[active]]))
    flux = onset_bands.astype(np.float64).mean(axis=1)
    h_env, h_level = np.zeros(n), 0.0
    if harmonic is not None and harmonic.size == n and np.std(harmonic) > 1e-9:
        h_env, h_level = normalised_envelope(harmonic.astype(np.float64), frame_rate), float(np.mean(harmonic))
    # the ACF does not know how loud its envelope was: the faint chroma wobble of drums alone (a kick's thump,
    # a tom) would look like chord changes, so every chord-change cue counts in proportion to how pitched the
    # clip is, and drums alone are decided as before
    trust = min(h_level / HARMONIC_TRUSTED_LEVEL, 1.0)
    h_acf = trust * maximum_filter1d(autocorrelation(h_env, max_lag), size=3)
    per = Periodicity(acfs=acfs, acf=raw[active].mean(axis=0), dfts=dfts, dft_bpm=dft_bpm, active=active,
                      acf_grid=np.zeros(0), dft_grid=np.zeros(0), salience=np.zeros(0), comb=np.zeros(0),
                      onset_rate=onset_rate(onset, frame_rate), peakiness=peak,
                      band_rates=np.array([onset_rate(b, frame_rate) for b in onset_bands]),
                      high_share=float(flux[-1] / max(flux.sum(), 1e-12)), frame_rate=frame_rate,
                      envelope=envs[active].mean(axis=0), backbeat=_backbeat(envs, max_lag),
                      harmonic_acf=h_acf, harmonic_env=trust * h_env,
                      harmonic_rate=onset_rate(harmonic, frame_rate) if h_env.any() else 0.0,
                      harmonic_trust=trust)
    acf_grid, dft_grid = per.acf_at(_GRID), per.dft_at(_GRID)
    comb = np.maximum(per.acf_comb_at(_GRID), 0.0) * per.dft_comb_at(_GRID)
    return Periodicity(**{**per.__dict__, "acf_grid": acf_grid, "dft_grid": dft_grid,
                          "salience": np.maximum(acf_grid, 0.0) * dft_grid, "comb": comb})


def _backbeat(envs: np.ndarray, max_lag: int) -> np.ndarray:
    """Kick-to-snare evidence per lag: the cross-correlation of the lowest band with each of the next two
    (snare body, snare crack), averaged over both directions (kick then snare, snare then kick), the larger of the
    two bands, jitter-tolerant. With a backbeat it peaks at one beat and is low at two beats and at half a beat."""
    n = envs.shape[1]
    nfft = 1 << int(np.ceil(np.log2(2 * n)))
    spec = np.fft.rfft(envs[:3], nfft, axis=1)
    overlap = np.maximum(n - np.arange(max_lag + 1), n / 2.0)
    out = np.zeros(max_lag + 1)
    for b in (1, 2):
        xc = np.fft.irfft(np.conj(spec[0]) * spec[b], nfft)
        both = 0.5 * (xc[: max_lag + 1] + np.r_[xc[0], xc[::-1][: max_lag]]) / overlap
        out = np.maximum(out, both)
    return maximum_filter1d(out, size=3)


def onset_rate(onset: np.ndarray, frame_rate: float) -> float:
    """Onsets per second: local maxima above a 1 s moving average plus half a standard deviation, >= 50 ms apart."""
    n = onset.size
    if n < 3:
        return 0.0
    e = onset.astype(np.float64)
    w = max(3, int(round(frame_rate)))
    threshold = np.convolve(e, np.ones(w) / w, mode="same") + 0.5 * e.std()
    peaks = np.flatnonzero((e[1:-1] > e[:-2]) & (e[1:-1] >= e[2:]) & (e[1:-1] > threshold[1:-1])) + 1
    min_gap = int(0.05 * frame_rate)
    count, last = 0, -min_gap - 1
    for p in peaks:
        if p - last >= min_gap:
            count += 1
            last = p
    return count / (n / frame_rate)


def _top_peaks(curve: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` highest local maxima of `curve` inside the hypothesis range."""
    inside = (_GRID >= HYP_MIN_BPM) & (_GRID <= HYP_MAX_BPM)
    is_peak = np.zeros_like(curve, dtype=bool)
    is_peak[1:-1] = (curve[1:-1] >= curve[:-2]) & (curve[1:-1] > curve[2:])
    peaks = np.flatnonzero(is_peak & inside & (curve > 0))
    return peaks[np.argsort(-curve[peaks])][:count]


def candidates(per: Periodicity) -> list[float]:
    """Top peaks of both saliences and their metrical relatives, each snapped to its local salience maximum
    (+-3%), at least 3% apart."""
    sal = per.salience + per.comb
    out: list[float] = []
    for i in np.concatenate([_top_peaks(per.salience, 3), _top_peaks(per.comb, 3)]):
        for m in _RELATIVES:
            t = _GRID[i] * m
            if not HYP_MIN_BPM <= t <= HYP_MAX_BPM:
                continue
            near = np.flatnonzero(np.abs(np.log(_GRID / t)) < 0.03)
            t = float(_GRID[near[np.argmax(sal[near])]])
            if all(abs(t / h - 1) >= 0.03 for h in out):
                out.append(t)
    return out


#: Names of the level-decision features, in the order of `level_features`' columns.
FEATURES = (
    "log_acf", "log_acf_comb", "log_dft", "log_dft_comb",  # periodicity at the level
    "acf_low", "acf_high",                                 # kick band vs hi-hat band at the beat period
    "acf_half",                                            # sub-beat: the ACF at half the period
    "acf_high_half", "acf_high_quarter",                   # the hi-hat band at half and a quarter of the period
    "log_up", "log_down",                                  # salience of this level vs its double and half tempo
    "log2_tempo", "log2_tempo_sq",                         # log-normal tempo prior
    "events_per_beat", "events_per_beat_sq",               # onsets per beat (log2) and its square
    "syncopation", "ternary",
    "percussive_x_tempo",                                  # prior shift for struck vs legato material
    "pulse_on", "pulse_off_ratio",                         # beat grid at its best phase; its off-beats vs it
    "sub_off_ratio",                                       # the same off-beat ratio one level down (at 2x)
    "backbeat", "backbeat_double",                         # kick-to-snare at one beat, at two beats
    "hats_x_tempo", "hats_x_tempo_sq",                     # prior shift and width with cymbal/hat content
    "kicks_per_beat", "kicks_per_beat_sq",                 # onsets per beat in the kick band (log2), squared
    "hats_per_beat", "hats_per_beat_sq",                   # onsets per beat in the hi-hat band (log2), squared
    "harm_acf", "harm_acf_2", "harm_acf_4", "harm_acf_half",  # chord changes recurring at 1, 2, 4, 1/2 beats
    "harm_off_ratio", "harm_per_beat",                     # changes off the beat grid vs on it; changes per beat
)


_LOG2_TEMPO = FEATURES.index("log2_tempo")


def level_features(per: Periodicity, bpms: list[float] | np.ndarray) -> np.ndarray:
    """(len(bpms), len(FEATURES)) cue matrix of the candidate tempi (see the module docstring)."""
    t = np.asarray(bpms, dtype=np.float64)
    floor = 1e-2

    def comb_sal(x: np.ndarray) -> np.ndarray:
        return np.maximum(per.acf_comb_at(x), 0.0) * per.dft_comb_at(x) + np.maximum(per.acf_at(x), 0.0) * per.dft_at(x)

    sal = comb_sal(t)
    r1, r15, r2, r3, r4 = (per.acf_at(t, k) for k in (1.0, 1.5, 2.0, 3.0, 4.0))
    bands = per.acfs.shape[0]
    lt = np.log2(t / PRIOR_REF_BPM)
    epb = np.log2(max(per.onset_rate, 0.1) * 60.0 / t)
    band_r = [[per.acf_at(t, k, b) for b in np.flatnonzero(per.active)] for k in (1.0, 1.5, 2.0)]
    sync = np.max(np.array(band_r[1]) - 0.5 * (np.array(band_r[0]) + np.array(band_r[2])), axis=0)
    perc = np.clip((per.peakiness - 3.4) / 0.3, -2.0, 2.0)
    cols = [
        np.log(np.maximum(r1, 0.0) + floor),
        np.log(np.maximum(per.acf_comb_at(t), 0.0) + floor),
        np.log(per.dft_at(t) + floor),
        np.log(per.dft_comb_at(t) + floor),
        per.acf_at(t, 1.0, 0),
        per.acf_at(t, 1.0, bands - 1),
        per.acf_at(t, 0.5),
        per.acf_at(t, 0.5, bands - 1),
        per.acf_at(t, 0.25, bands - 1),
        np.log((comb_sal(2.0 * t) + floor) / (sal + floor)),
        np.log((comb_sal(0.5 * t) + floor) / (sal + floor)),
        lt, lt ** 2,
        epb, epb ** 2,
        sync,
        r3 - np.maximum(r2, r4),
        perc * lt,
    ]
    def off_ratio(bpm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pulses = np.array([per.pulse_train(b) for b in bpm]).reshape(-1, 2)
        return pulses[:, 0], np.clip(pulses[:, 1] / np.maximum(pulses[:, 0], 0.05), -1.0, 2.0)

    on, off = off_ratio(t)
    cols += [on, off, off_ratio(2.0 * t)[1]]
    lag = 60.0 * per.frame_rate / t
    hats = np.clip((per.high_share - 0.25) / 0.05, -2.0, 2.0)
    kpb = np.log2(max(per.band_rates[0], 0.1) * 60.0 / t)
    hpb = np.log2(max(per.band_rates[-1], 0.1) * 60.0 / t)
    cols += [_at(per.backbeat, lag), _at(per.backbeat, 2.0 * lag), hats * lt, hats * lt ** 2, kpb, kpb ** 2, hpb,
             hpb ** 2]
    h_pulses = np.array([per.pulse_train(b, per.harmonic_env) for b in t]).reshape(-1, 2)
    cols += [_at(per.harmonic_acf, k * lag) for k in (1.0, 2.0, 4.0, 0.5)]
    cols += [np.clip(h_pulses[:, 1] / np.maximum(h_pulses[:, 0], 0.05), -1.0, 2.0),
             per.harmonic_trust * np.log2(max(per.harmonic_rate, 0.1) * 60.0 / t)]
    return np.stack(cols, axis=1)


@dataclass(frozen=True)
class LevelModel:
    """The fitted level decision: a score per candidate from its standardised features (a linear term plus a
    small hidden layer of tanh units, so cues can combine: e.g. sub-bass and hi-hat rolls move the tempo prior
    differently than either alone), a softmax over the clip's candidates, then calibration of the top
    probability into P(correct) with the pulse strength."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray                    # (features,) linear term
    calibration: tuple[float, float, float]  # a, b, c in sigmoid(a * logit(p) + b * log(clarity) + c)
    hidden: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # W (units, features), b (units,), v (units,)
    prior_shift: float = 0.0  # score per octave above PRIOR_REF_BPM, fitted afterwards on music people wrote

    def scores(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.scale
        s = z @ self.weights
        if self.hidden is not None:
            w_in, bias, w_out = self.hidden
            s = s + np.tanh(z @ w_in.T + bias) @ w_out
        return s + self.prior_shift * x[:, _LOG2_TEMPO]

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        s = self.scores(x)
        p = np.exp(s - s.max())
        return p / p.sum()

    def confidence(self, p_top: float, clarity: float) -> float:
        a, b, c = self.calibration
        p = float(np.clip(p_top, 1e-4, 1 - 1e-4))
        z = a * np.log(p / (1 - p)) + b * np.log(max(clarity, 1e-3)) + c
        return float(1.0 / (1.0 + np.exp(-z)))


@lru_cache(maxsize=2)
def load_model(path: str | None = None) -> LevelModel:
    """The committed level model (read once); its feature list must match FEATURES."""
    data = json.loads(Path(path or MODEL_PATH).read_text())
    if tuple(data["features"]) != FEATURES:
        raise ValueError(f"{path or MODEL_PATH}: features {data['features']} do not match {FEATURES}")
    cal = data["calibration"]
    hidden = data.get("hidden")
    return LevelModel(mean=np.array(data["mean"]), scale=np.array(data["scale"]), weights=np.array(data["weights"]),
                      calibration=(float(cal["a"]), float(cal["b"]), float(cal["c"])),
                      hidden=None if hidden is None else (np.array(hidden["W"]), np.array(hidden["b"]),
                                                          np.array(hidden["v"])),
                      prior_shift=float(data.get("prior_shift", {}).get("value", 0.0)))


def _refine(acf: np.ndarray, period: float) -> float:
    """Sharpen the beat period: locate the ACF peak near the longest usable multiple of it (4, 3, 2 or 1 beats)
    with parabolic interpolation and divide back, so one frame of error is spread over several beats."""
    for k in (4, 3, 2, 1):
        centre = k * period
        lo, hi = int(np.floor(centre * 0.97)), int(np.ceil(centre * 1.03))
        if lo < 1 or hi + 1 >= acf.size:
            continue
        i = lo + int(np.argmax(acf[lo:hi + 1]))
        if i in (lo, hi) or acf[i] <= 0:
            continue
        a, b, c = acf[i - 1], acf[i], acf[i + 1]
        den = a - 2 * b + c
        delta = 0.5 * (a - c) / den if den < 0 else 0.0
        return (i + float(np.clip(delta, -0.5, 0.5))) / k
    return period


def estimate_tempo(onset_bands: np.ndarray, onset: np.ndarray, frame_rate: float, *,
                   harmonic: np.ndarray | None = None, model: LevelModel | None = None) -> TempoEstimate:
    """Estimate the tempo from (n_bands, n_frames) onset envelopes and their sum, sampled at `frame_rate` fps, and
    the harmonic-change envelope (frontend.harmonic_change) when there is one."""
    n_frames = onset_bands.shape[1]
    if n_frames < frame_rate * 2:
        return TempoEstimate(bpm=None, confidence=0.0)
    per = periodicity(onset_bands, onset, frame_rate, harmonic)
    if per is None or per.salience.max() <= 1e-4:
        return TempoEstimate(bpm=None, confidence=0.0)
    hyps = candidates(per)
    if not hyps:
        return TempoEstimate(bpm=None, confidence=0.0)
    model = model or load_model()
    prob = model.probabilities(level_features(per, hyps))
    order = np.argsort(-prob)
    best = hyps[int(order[0])]
    period = _refine(per.acf, 60.0 * frame_rate / best)
    bpm = 60.0 * frame_rate / period
    clarity = float(np.clip(_at(per.acf, period), 0.0, 1.0))
    confidence = model.confidence(float(prob[order[0]]), clarity)
    # the others keep their softmax ratio to the winner, capped so that all scores sum to at most 1
    top, rest = float(prob[order[0]]), max(1e-9, 1.0 - float(prob[order[0]]))
    every = [{"bpm": hyps[i], "score": float(prob[i]) * min(confidence / top, (1.0 - confidence) / rest)}
             for i in order]
    every[0] = {"bpm": bpm, "score": confidence}
    cands = every[:4]
    for factor in (0.5, 2.0):  # always offer half and double, so a client can propose them
        alt = bpm * factor
        if not MIN_BPM <= alt <= MAX_BPM or any(abs(c["bpm"] / alt - 1) < 0.04 for c in cands):
            continue
        known = [c for c in every if abs(c["bpm"] / alt - 1) < 0.04]
        cands.append(known[0] if known else {"bpm": alt, "score": 0.0})
    cands[1:] = sorted(cands[1:], key=lambda c: -c["score"])
    return TempoEstimate(bpm=bpm, confidence=confidence, candidates=cands, pulse_clarity=clarity,
                         beat_period_frames=period, meter=_meter(per.acf, period))


def _meter(acf: np.ndarray, period: float) -> int | None:
    """3 or 4 beats per bar from the ACF at 2, 3 and 4 beats; None when the bar level is unclear."""
    r2, r3, r4 = (float(_at(acf, k * period)) for k in (2, 3, 4))
    if max(r3, r4) < 0.1:
        return None
    ternary = r3 - max(r2, r4)
    if ternary > 0.12:
        return 3
    if ternary < -0.03:
        return 4
    return None


def beat_times(onset: np.ndarray, frame_rate: float, period: float | None) -> np.ndarray:
    """Beat positions in seconds: the best phase of a fixed grid, each beat nudged to the onset peak within 10%."""
    if period is None or period <= 1 or onset.size < period * 2:
        return np.zeros(0)
    n = onset.size
    # score every integer phase at once: onset summed over the grid ph, ph + period, ph + 2 period, ...
    idx = np.round(np.arange(int(round(period)))[:, None] + np.arange(int(n / period) + 1)[None, :] * period)
    idx = idx.astype(np.int64)
    phase_scores = np.where(idx < n, onset[np.minimum(idx, n - 1)], 0.0).sum(axis=1)
    grid = np.arange(int(np.argmax(phase_scores)), n, period)
    half = max(1, int(0.1 * period))
    out = []
    for g in grid:
        c = int(round(g))
        lo, hi = max(0, c - half), min(n, c + half + 1)
        out.append(lo + int(np.argmax(onset[lo:hi])) if hi > lo else c)
    return np.unique(np.asarray(out, dtype=np.float64)) / frame_rate
