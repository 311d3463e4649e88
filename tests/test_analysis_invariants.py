"""Invariants of perform_audio_analysis: every field present, in range, finite and JSON-safe, on any input."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from backend.analysis import (ANALYSIS_SAMPLE_RATE, MIN_ANALYSIS_SECONDS, AnalysisResult,
                              perform_audio_analysis)
from tests import synth

SR = ANALYSIS_SAMPLE_RATE
FIELDS = {f.name for f in dataclasses.fields(AnalysisResult)}


def check_invariants(res: AnalysisResult) -> dict:
    """Assert the contract every client relies on; return the JSON-safe dict."""
    d = res.to_dict()
    assert set(d) == FIELDS
    json.dumps(d, allow_nan=False)  # raises on NaN/Infinity
    for name in ("bpm_confidence", "key_confidence", "energy", "danceability", "acousticness"):
        v = d[name]
        assert isinstance(v, float) and 0.0 <= v <= 1.0, (name, v)
    assert d["bpm"] is None or (isinstance(d["bpm"], float) and 30.0 <= d["bpm"] <= 300.0)
    if d["bpm"] is None:
        assert d["bpm_confidence"] == 0.0
    for c in d["bpm_candidates"]:
        assert set(c) == {"bpm", "score"} and 30.0 <= c["bpm"] <= 300.0 and 0.0 <= c["score"] <= 1.0
    if d["bpm_candidates"]:
        assert d["bpm_candidates"][0]["bpm"] == d["bpm"]
        scores = [c["score"] for c in d["bpm_candidates"]]
        assert scores == sorted(scores, reverse=True)
        for factor in (0.5, 2.0):  # the half/double alternative is always offered when it is a tempo
            alt = d["bpm"] * factor
            if 30.0 <= alt <= 300.0:
                assert any(abs(c["bpm"] / alt - 1) < 0.04 for c in d["bpm_candidates"]), (factor, d["bpm_candidates"])
    if d["key"] is None:
        assert d["mode"] is None and d["key_index"] is None and d["camelot"] is None
    else:
        assert d["mode"] in ("major", "minor") and 0 <= d["key_index"] <= 11
        assert d["key"] == f"{synth.PITCH_CLASSES[d['key_index']]} {d['mode'].capitalize()}"
        assert d["camelot"][-1] == ("B" if d["mode"] == "major" else "A")
        assert 1 <= int(d["camelot"][:-1]) <= 12
    assert d["spectral_centroid"] >= 0.0 and d["duration"] >= 0.0
    assert d["loudness_lufs"] is None or (-100.0 < d["loudness_lufs"] < 10.0)
    assert d["time_signature"] in (None, 3, 4)
    assert isinstance(d["silent"], bool) and isinstance(d["too_short"], bool)
    return d


def test_module_constants():
    assert ANALYSIS_SAMPLE_RATE in (11025, 16000, 22050, 44100)
    assert 0.5 <= MIN_ANALYSIS_SECONDS <= 10.0


@pytest.mark.parametrize("y", [
    np.zeros(0, np.float32),
    np.zeros(1, np.float32),
    np.zeros((2, 0), np.float32),
    np.full(SR * 5, np.nan, np.float32),
    np.array([np.inf, -np.inf, 0.5] * 1000, np.float32),
], ids=["empty", "one-sample", "empty-stereo", "all-nan", "inf-mixed"])
def test_degenerate_arrays_never_raise(y):
    res = perform_audio_analysis(y, SR)
    d = check_invariants(res)
    assert d["bpm"] is None


def test_silence():
    res = perform_audio_analysis(np.zeros(SR * 10, np.float32), SR)
    d = check_invariants(res)
    assert res.silent is True and res.too_short is False
    assert d["bpm"] is None and d["bpm_confidence"] == 0.0
    assert d["key"] is None and d["key_confidence"] == 0.0
    assert d["energy"] == 0.0 and d["danceability"] == 0.0
    assert abs(d["duration"] - 10.0) < 1e-3


def test_near_silent_dither_is_silent():
    y = (np.random.default_rng(1).standard_normal(SR * 5) * 1e-6).astype(np.float32)
    assert perform_audio_analysis(y, SR).silent is True


def test_dc_offset_alone_is_silent_and_does_not_disturb_music():
    dc = np.full(SR * 5, 0.5, np.float32)
    assert perform_audio_analysis(dc, SR).silent is True
    y = synth.song(120, "A", "minor", seconds=10)
    clean = perform_audio_analysis(y, SR)
    shifted = perform_audio_analysis(0.5 * y + 0.4, SR)
    check_invariants(shifted)
    assert shifted.key == clean.key
    assert shifted.bpm is not None and abs(shifted.bpm / clean.bpm - 1) < 0.02


def test_too_short():
    y = synth.drum_pattern(120, seconds=0.1)
    res = perform_audio_analysis(y, SR)
    d = check_invariants(res)
    assert res.too_short is True and res.silent is False
    assert d["bpm"] is None and d["bpm_confidence"] == 0.0
    assert abs(d["duration"] - 0.1) < 0.01
    just_enough = perform_audio_analysis(synth.drum_pattern(120, seconds=MIN_ANALYSIS_SECONDS + 0.5), SR)
    assert just_enough.too_short is False


def test_sine_has_no_tempo_and_honest_key():
    res = perform_audio_analysis(synth.sine(440.0, seconds=8), SR)
    d = check_invariants(res)
    assert res.silent is False
    assert d["bpm"] is None or d["bpm_confidence"] < 0.3
    # one pitch class (and its harmonics) is not a key
    assert d["key"] is None and d["key_confidence"] == 0.0
    # a full-scale-ish sine (0.5 peak) measures about -9 LUFS (a 1 kHz full-scale sine is -3.0)
    assert -12.0 < d["loudness_lufs"] < -6.0


@pytest.mark.parametrize("freq", [110.0, 196.0, 261.63, 329.63, 523.25])
def test_a_lone_tone_at_any_pitch_has_no_key(freq):
    # the transcription can explain a pure tone as the third or fifth partial of a lower note (a 262 Hz sine read
    # "F Minor" at confidence 1.0): one pitch class as measured is still no key
    d = check_invariants(perform_audio_analysis(synth.sine(freq, seconds=8), SR))
    assert d["key"] is None and d["key_confidence"] == 0.0


def test_white_noise_low_confidences():
    res = perform_audio_analysis(synth.white_noise(seconds=8), SR)
    d = check_invariants(res)
    assert d["bpm_confidence"] < 0.3
    assert d["key"] is None and d["key_confidence"] == 0.0  # a flat chroma has no tonal content
    assert d["acousticness"] < 0.5  # broadband noise is not an acoustic instrument


def test_clipping_keeps_the_answer():
    y = synth.song(128, "D", "major", seconds=10)
    clipped = np.clip(y * 8.0, -1.0, 1.0).astype(np.float32)
    res = perform_audio_analysis(clipped, SR)
    check_invariants(res)
    assert res.bpm is not None and abs(res.bpm / 128 - 1) < 0.04
    assert res.key == "D Major"


def test_loudness_full_scale_1k_sine_is_minus_3_lufs():
    """BS.1770 calibration: a 0 dBFS 1 kHz sine in one channel reads -3.01 LUFS."""
    res = perform_audio_analysis(synth.sine(1000.0, seconds=5, sr=48000, amplitude=1.0), 48000)
    assert abs(res.loudness_lufs - (-3.01)) < 0.1


def test_louder_means_more_energy():
    y = synth.song(120, "C", "major", seconds=10)
    quiet = perform_audio_analysis(0.05 * y, SR)
    loud = perform_audio_analysis(y, SR)
    assert loud.loudness_lufs - quiet.loudness_lufs == pytest.approx(26.0, abs=0.2)
    assert loud.energy > quiet.energy


@pytest.mark.parametrize("channels", [2, 6])
def test_channel_first_multichannel(channels):
    y = synth.song(120, "E", "minor", seconds=10)
    multi = np.stack([y] * channels).astype(np.float32)
    res = perform_audio_analysis(multi, SR)
    check_invariants(res)
    assert res.key == "E Minor"
    assert res.bpm is not None and abs(res.bpm / 120 - 1) < 0.04
    assert abs(res.duration - 10.0) < 1e-2


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 32000, 44100, 48000, 88200, 96000])
def test_unusual_sample_rates(rate):
    y = synth.song(100, "G", "major", seconds=10, sr=rate)
    res = perform_audio_analysis(y, rate)
    check_invariants(res)
    assert abs(res.duration - 10.0) < 1e-2
    assert res.bpm is not None and abs(res.bpm / 100 - 1) < 0.04, res.bpm
    assert res.key == "G Major"


def test_detail_arrays_are_small_and_json_safe():
    res = perform_audio_analysis(synth.song(120, "A", "minor", seconds=12), SR, detail=True)
    d = check_invariants(res)
    det = d["detail"]
    assert 0 < len(det["onset_envelope"]) <= 512 and det["onset_frame_rate"] > 0
    assert len(det["chroma"]) == 12 and len(det["key_correlations"]) == 24
    beats = det["beat_times"]
    assert len(beats) > 10 and all(b2 > b1 for b1, b2 in zip(beats, beats[1:]))
    assert np.median(np.diff(beats)) == pytest.approx(0.5, rel=0.05)
    assert perform_audio_analysis(synth.song(120, seconds=5), SR).detail is None
    silent = perform_audio_analysis(np.zeros(SR * 5, np.float32), SR, detail=True).to_dict()["detail"]
    assert set(silent) == set(det) and silent["beat_times"] == [] and len(silent["chroma"]) == 12


def test_to_dict_replaces_non_finite():
    res = AnalysisResult(bpm=float("nan"), bpm_confidence=0.0, bpm_candidates=[{"bpm": float("inf"), "score": 1.0}],
                         key=None, key_confidence=0.0, mode=None, key_index=None, camelot=None, energy=0.0,
                         danceability=0.0, acousticness=0.0, spectral_centroid=0.0, loudness_lufs=float("-inf"),
                         duration=1.0, time_signature=None, silent=True, too_short=True)
    json.dumps(res.to_dict(), allow_nan=False)


def test_long_input_is_analysed_on_a_bounded_central_window():
    from backend.analysis import MAX_ANALYSIS_SECONDS

    y = np.tile(synth.song(120, "A", "minor", seconds=16), int(MAX_ANALYSIS_SECONDS // 16) + 2)
    res = perform_audio_analysis(y, SR)
    check_invariants(res)
    assert res.duration == pytest.approx(MAX_ANALYSIS_SECONDS, abs=0.01)
    assert res.key == "A Minor" and abs(res.bpm / 120 - 1) < 0.04


def test_frames_by_channels_layout_is_accepted():
    y = synth.song(120, "E", "minor", seconds=10)
    res = perform_audio_analysis(np.stack([y, y], axis=1), SR)  # (n, 2), as soundfile returns it
    assert abs(res.duration - 10.0) < 1e-2 and res.key == "E Minor"


@pytest.mark.parametrize("rate", [0, -44100, 1, 100, float("nan"), float("inf"), 10**9, "fast"])
def test_nonsense_sample_rate_gives_an_empty_result(rate):
    y = synth.song(120, seconds=5)
    res = perform_audio_analysis(y, rate)
    d = check_invariants(res)
    assert d["bpm"] is None and d["key"] is None and res.too_short is True
