"""The analysis engine: samples in, numbers out. Knows nothing about HTTP.

`perform_audio_analysis(y, sr)` measures loudness (loudness.py, ITU-R BS.1770-4) on the channels as given at
their own rate, then downmixes, resamples once to ANALYSIS_SAMPLE_RATE, computes one spectral front end
(frontend.py) and runs the estimators on it: tempo.py, key.py, descriptors.py. The decoder
(backend.audio.decode) therefore hands over the decoded channels at the source's rate, not a mono signal.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np

from . import descriptors, frontend, key as key_mod, loudness, tempo as tempo_mod

log = logging.getLogger(__name__)

#: The rate the decoder should deliver. 22050 Hz keeps everything up to 11 kHz: all the harmonic content the key
#: needs (< 5 kHz), the hi-hats the tempo needs and a spectral centroid that still means "brightness", at half the
#: FFT cost of 44.1 kHz. Lower rates (11025/16000) would cut the cymbals and bias centroid and loudness.
ANALYSIS_SAMPLE_RATE: int = 22050

#: Shortest audio the estimators can handle: the tempo needs a few beat periods to correlate (3 s is 4 beats at
#: 80 BPM). Shorter input is reported with too_short=True and no tempo.
MIN_ANALYSIS_SECONDS: float = 3.0

#: Longer input is analysed on its central MAX_ANALYSIS_SECONDS (memory and time stay bounded: a 10-minute array
#: would otherwise need ~0.7 GB and 3 s); the decoder normally delivers a 30 s window anyway.
MAX_ANALYSIS_SECONDS: float = 120.0

# Sample rates outside this range are not audio (the contract is 8..96 kHz; the margin costs nothing).
_MIN_RATE, _MAX_RATE = 1000.0, 768000.0

# An integrated loudness below this (or none at all: every block under BS.1770's -70 LUFS gate) is "silent".
_SILENT_LUFS = -70.0


@dataclass(frozen=True)
class AnalysisResult:
    """What one analysis found. Confidences are 0..1 and mean "how often an answer like this is right" (see the
    calibration table in benchmarks/ANALYSIS_RESULTS.md)."""

    bpm: float | None              # beats per minute (30..300), None when there is no periodic pulse
    bpm_confidence: float          # 0..1: calibrated probability that bpm is the annotated (tapped) tempo; 0 when
    #                                bpm is None
    bpm_candidates: list[dict]     # [{"bpm", "score"}] best first; score = the same calibrated probability for that
    #                                candidate (the first one's score is bpm_confidence),
    #                                always including half and double of the winner
    key: str | None                # "A# Minor": tonic with sharps + " Major"/" Minor"; None without tonal content
    key_confidence: float          # 0..1 (calibrated probability that the key is exactly right); 0 when key is None
    mode: str | None               # "major" / "minor"
    key_index: int | None          # tonic pitch class, 0 = C .. 11 = B
    camelot: str | None            # Camelot wheel code: "8B" = C major, "8A" = A minor
    energy: float                  # 0..1, intensity and activity: louder, denser, more compressed, distorted or
    #                                noisy -> higher (death metal ~0.95, a quiet solo piano ~0.05); descriptors.py
    danceability: float            # 0..1, a steady, strong, regular beat (pulse clarity) at a danceable tempo
    acousticness: float            # 0..1, confidence the track is acoustic: distortion, synthetic or noisy timbre,
    #                                heavy compression, sub-bass and cymbal-heavy highs lower it
    spectral_centroid: float       # Hz, 0..ANALYSIS_SAMPLE_RATE/2
    loudness_lufs: float | None    # integrated loudness (ITU-R BS.1770-4, LUFS) of the channels as given, at
    #                                their own rate (a mono downmix passed in would read up to ~3 LU low);
    #                                None for silence
    duration: float                # seconds of audio analysed (at most MAX_ANALYSIS_SECONDS, the central part)
    time_signature: int | None     # 3 or 4 beats per bar, None when the bar level is unclear
    silent: bool                   # no audible content (below BS.1770's -70 LUFS gate): all estimates empty
    too_short: bool                # shorter than MIN_ANALYSIS_SECONDS: no tempo (key and descriptors still given)
    detail: dict | None = None     # with detail=True: onset_envelope (<= 512 points, 0..1) and onset_frame_rate
    #                                (points per second), beat_times (s), chroma (12, C first, max 1),
    #                                key_correlations ({"C Major": r, ...}, 24 keys), tuning_semitones

    def to_dict(self) -> dict:
        """JSON-safe dict: plain floats/ints/str/None/lists, no NaN or Infinity, floats rounded."""
        return _json_safe(asdict(self))


def _json_safe(value, digits: int = 4):
    if isinstance(value, dict):
        return {str(k): _json_safe(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, digits) for v in value]
    if isinstance(value, np.ndarray):
        return [_json_safe(v, digits) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return round(f, digits) if math.isfinite(f) else None
    return value


def _fin(x: float | None, default: float = 0.0) -> float:
    return float(x) if x is not None and math.isfinite(float(x)) else default


def _empty_result(duration: float, *, silent: bool, too_short: bool, loudness_lufs: float | None = None,
                  detail: bool = False) -> AnalysisResult:
    return AnalysisResult(bpm=None, bpm_confidence=0.0, bpm_candidates=[], key=None, key_confidence=0.0, mode=None,
                          key_index=None, camelot=None, energy=0.0, danceability=0.0, acousticness=0.0,
                          spectral_centroid=0.0, loudness_lufs=loudness_lufs, duration=_fin(duration),
                          time_signature=None, silent=silent, too_short=too_short,
                          detail=_empty_detail() if detail else None)


def _empty_detail() -> dict:
    """The detail structure with nothing in it, so chart clients always find the same keys."""
    names = [f"{p} Major" for p in key_mod.PITCH_CLASSES] + [f"{p} Minor" for p in key_mod.PITCH_CLASSES]
    return {"onset_envelope": [], "onset_frame_rate": 0.0, "beat_times": [], "chroma": [0.0] * 12,
            "key_correlations": {n: 0.0 for n in names}, "tuning_semitones": 0.0}


def _as_channels(y) -> np.ndarray:
    """Channel-first float32 2-D array ((n, channels) is transposed), non-finite samples zeroed."""
    a = np.asarray(y, dtype=np.float32)
    if a.ndim == 0:
        a = a.reshape(1)
    if a.ndim == 1:
        a = a[None, :]
    elif a.ndim > 2:
        a = a.reshape(a.shape[0], -1)
    elif a.shape[0] > a.shape[1]:
        a = a.T
    a = np.ascontiguousarray(a)
    with np.errstate(invalid="ignore", over="ignore"):
        total = a.sum()
    if np.isfinite(total):  # finite only if every sample is: the mask only when needed
        return a
    return np.where(np.isfinite(a), a, np.float32(0.0))


def _downmix(channels: np.ndarray) -> np.ndarray:
    """The average of the (finite, channel-first) channels as a new float32 array, its DC removed: DC is
    inaudible and would dominate the 0 Hz bin, the peak floor and the centroid. Row by row (three times faster
    than ``mean(axis=0)``), four passes over the samples for stereo."""
    if channels.shape[0] == 1:
        return channels[0] - channels[0].mean()
    mono = np.add(channels[0], channels[1])
    for row in channels[2:]:
        mono += row
    mono -= mono.mean()
    mono *= np.float32(1.0 / channels.shape[0])
    return mono


def perform_audio_analysis(y: np.ndarray, sr: int, *, detail: bool = False) -> AnalysisResult:
    """Analyse mono (n,) or channel-first (channels, n) float audio at `sr` Hz (8..96 kHz).

    Never raises and never returns NaN: on unexpected internal failure it logs and returns an empty result.
    """
    try:
        rate = float(sr)
    except (TypeError, ValueError):
        rate = float("nan")
    if not (math.isfinite(rate) and _MIN_RATE <= rate <= _MAX_RATE):
        # not an audio sample rate: nothing can be measured, and nothing should be guessed
        return _empty_result(0.0, silent=False, too_short=True, detail=detail)
    try:
        return _analyse(y, int(round(rate)), detail)
    except Exception:  # the contract is "never raise": a bug here must not become a 500 for one odd file
        log.exception("analysis failed")
        try:
            duration = np.asarray(y).shape[-1] / rate
        except Exception:
            duration = 0.0
        return _empty_result(duration, silent=False, too_short=duration < MIN_ANALYSIS_SECONDS, detail=detail)


def _analyse(y, sr: int, detail: bool) -> AnalysisResult:
    channels = _as_channels(y)
    limit = int(MAX_ANALYSIS_SECONDS * sr)
    if channels.shape[1] > limit:
        start = (channels.shape[1] - limit) // 2
        channels = channels[:, start:start + limit]
    n = channels.shape[1]
    duration = n / sr
    too_short = duration < MIN_ANALYSIS_SECONDS
    # loudness on the channels at their own rate (BS.1770 is defined there; it removes each channel's DC itself)
    lufs = loudness.integrated_loudness(channels, sr) if n else None
    if lufs is None or lufs < _SILENT_LUFS:
        return _empty_result(duration, silent=True, too_short=too_short, detail=detail)

    mono = _downmix(channels)
    x = frontend.resample(mono, sr, ANALYSIS_SAMPLE_RATE)
    asr = ANALYSIS_SAMPLE_RATE
    fe = frontend.compute_front_end(x, asr)
    freqs = frontend.bin_frequencies(asr)

    if too_short:
        tempo = tempo_mod.TempoEstimate(bpm=None, confidence=0.0)
    else:
        tempo = tempo_mod.estimate_tempo(fe.onset_bands, fe.onset, fe.frame_rate, harmonic=fe.harmonic_change)
    k = key_mod.estimate_key(fe.S, freqs)

    cues = descriptors.measure_cues(fe, x, lufs, tempo.pulse_clarity, tempo.bpm)
    result = AnalysisResult(
        bpm=None if tempo.bpm is None else round(float(tempo.bpm), 2),
        bpm_confidence=round(_fin(tempo.confidence), 3),
        bpm_candidates=[{"bpm": round(_fin(c["bpm"]), 2), "score": round(_fin(c["score"]), 3)}
                        for c in tempo.candidates],
        key=k.name,
        key_confidence=round(_fin(k.confidence), 3),
        mode=k.mode,
        key_index=k.key_index,
        camelot=k.camelot,
        energy=round(descriptors.energy(cues), 3),
        danceability=round(descriptors.danceability(cues), 3),
        acousticness=round(descriptors.acousticness(cues), 3),
        spectral_centroid=round(_fin(descriptors.spectral_centroid(fe.S, freqs, fe.frame_rms)), 1),
        loudness_lufs=round(max(lufs, -99.0), 2),
        duration=round(duration, 3),
        time_signature=tempo.meter,
        silent=False,
        too_short=too_short,
        detail=_detail(fe, tempo, k) if detail else None,
    )
    return result


def _detail(fe: frontend.FrontEnd, tempo: tempo_mod.TempoEstimate, k: key_mod.KeyEstimate) -> dict:
    """Small arrays for charts: onset envelope (<= 512 points) with its rate, beat times, chroma, key scores."""
    env = fe.onset
    step = max(1, int(math.ceil(env.size / 512)))
    usable = env[: (env.size // step) * step]
    down = usable.reshape(-1, step).max(axis=1) if usable.size else np.zeros(0)
    top = float(down.max()) if down.size else 0.0
    beats = tempo_mod.beat_times(env, fe.frame_rate, tempo.beat_period_frames)
    names = [f"{p} Major" for p in key_mod.PITCH_CLASSES] + [f"{p} Minor" for p in key_mod.PITCH_CLASSES]
    return {
        "onset_envelope": [round(float(v / top), 4) if top > 0 else 0.0 for v in down],
        "onset_frame_rate": round(fe.frame_rate / step, 4),
        "beat_times": [round(float(t), 3) for t in beats],
        "chroma": [round(float(v), 4) for v in k.chroma],
        "key_correlations": {n: round(float(c), 4) for n, c in zip(names, k.correlations)},
        "tuning_semitones": round(float(k.tuning), 3),
    }


__all__ = ["ANALYSIS_SAMPLE_RATE", "MIN_ANALYSIS_SECONDS", "MAX_ANALYSIS_SECONDS", "AnalysisResult",
           "perform_audio_analysis"]
