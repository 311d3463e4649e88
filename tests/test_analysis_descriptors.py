"""Descriptors carry the meanings users know (energy, acousticness, danceability): orderings a listener would
notice, on pairs synthesized here that differ only in the cause under test; monotone formulas; values in [0, 1].
(Loudness: tests/test_loudness.py. Calibration on FluidSynth renderings: benchmarks/descriptor_pairs.py.)"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from backend.analysis import ANALYSIS_SAMPLE_RATE, descriptors, loudness, perform_audio_analysis
from tests import synth

SR = 44100  # rendered like real files: stereo at 44.1 kHz, through the same entry point as the server's


# --------------------------------------------------------------------------------------------------------------
# synthesized instruments: the same notes and rhythm, different sound
# --------------------------------------------------------------------------------------------------------------

RIFF = [(40, 47, 52), (40, 47, 52), (43, 50, 55), (38, 45, 50)]  # power chords E5 E5 G5 D5, one per bar


def _hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def _note_times(bpm: float, seconds: float, per_beat: float, jitter_s: float, seed: int) -> list[tuple[float, int]]:
    """(onset time, bar index) of every chord hit; `jitter_s` moves each onset by a random amount."""
    rng = np.random.default_rng(seed)
    step = 60.0 / bpm / per_beat
    times = np.arange(0.0, seconds, step)
    bars = (times // (4 * 60.0 / bpm)).astype(int)
    if jitter_s:
        times = np.clip(times + rng.normal(0.0, jitter_s, times.size), 0.0, seconds)
    return list(zip(times, bars))


def distorted_guitar(bpm: float = 120, seconds: float = 12.0, *, per_beat: float = 2) -> np.ndarray:
    """Palm-muted power-chord chugs: a sawtooth chord driven hard into tanh (clipping), as an amp does."""
    n = int(seconds * SR)
    y = np.zeros(n, np.float32)
    hit = int(60.0 / bpm / per_beat * SR)
    t = np.arange(hit) / SR
    env = np.minimum(1.0, t / 0.003) * (0.55 + 0.45 * np.exp(-t / 0.08))
    for start, bar in _note_times(bpm, seconds, per_beat, 0.0, 0):
        chord = RIFF[bar % len(RIFF)]
        saw = sum(2.0 * ((_hz(m) * t) % 1.0) - 1.0 for m in chord)
        i = int(start * SR)
        seg = np.tanh(6.0 * saw * env).astype(np.float32)
        y[i:i + hit] += seg[: n - i]
    return y


def piano_like(bpm: float = 120, seconds: float = 12.0, *, per_beat: float = 2, jitter_s: float = 0.0,
               seed: int = 0) -> np.ndarray:
    """The same chords struck on a piano-like instrument: a few decaying harmonics per note."""
    n = int(seconds * SR)
    y = np.zeros(n, np.float32)
    length = int(1.5 * SR)
    t = np.arange(length) / SR
    for start, bar in _note_times(bpm, seconds, per_beat, jitter_s, seed):
        chord = RIFF[bar % len(RIFF)]
        tone = sum((0.5 ** h) * np.sin(2 * np.pi * _hz(m + 12) * (h + 1) * t) for m in chord for h in range(5))
        tone = tone * np.minimum(1.0, t / 0.004) * np.exp(-t / 0.5)
        i = int(start * SR)
        y[i:i + length] += tone[: n - i].astype(np.float32)
    return y


def drums(bpm: float = 120, seconds: float = 12.0, *, jitter_s: float = 0.0, seed: int = 0) -> np.ndarray:
    """A rock groove (kick 1 and 3, snare 2 and 4, hi-hat eighths) with every hit moved by `jitter_s` (s.d.)."""
    rng = np.random.default_rng(seed)
    steady = synth.drum_pattern(bpm, seconds, SR, seed=seed)
    if not jitter_s:
        return steady
    # re-place the hits one eighth-note slice at a time: each slice starts at a random offset
    out = np.zeros_like(steady)
    step = int(60.0 / bpm / 2 * SR)
    for start in range(0, steady.size, step):
        shift = int(rng.normal(0.0, jitter_s) * SR)
        piece = steady[start:start + step]
        to = min(max(0, start + shift), out.size - piece.size)
        out[to:to + piece.size] += piece
    return out


def at_lufs(y: np.ndarray, target: float) -> np.ndarray:
    """`y` as a stereo pair (channel-first) scaled to `target` LUFS (peaks may exceed 1: tests measure, not play)."""
    stereo = np.stack([y, y]).astype(np.float32)
    return (stereo * np.float32(10 ** ((target - loudness.integrated_loudness(stereo, SR)) / 20))).astype(np.float32)


def analyse(y: np.ndarray):
    res = perform_audio_analysis(y, SR)
    for name in ("energy", "danceability", "acousticness"):
        v = getattr(res, name)
        assert isinstance(v, float) and math.isfinite(v) and 0.0 <= v <= 1.0, (name, v)
    return res


# --------------------------------------------------------------------------------------------------------------
# orderings a listener would notice
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("with_drums", [False, True])
@pytest.mark.parametrize("level", [-18.0, -10.0])
def test_distorted_guitar_is_more_energetic_and_less_acoustic_than_piano(with_drums, level):
    beat = drums(120) * 0.5 if with_drums else 0.0
    heavy = analyse(at_lufs(distorted_guitar(120) + beat, level))
    clean = analyse(at_lufs(piano_like(120) + beat, level))
    assert heavy.loudness_lufs == pytest.approx(clean.loudness_lufs, abs=0.05)  # same loudness: timbre decides
    assert heavy.energy > clean.energy + 0.15
    assert clean.acousticness > heavy.acousticness + 0.3


def test_loud_distorted_riff_reads_as_high_energy_and_not_acoustic():
    res = analyse(at_lufs(distorted_guitar(160) + 0.6 * drums(160), -12.0))
    assert res.energy >= 0.7 and res.acousticness <= 0.2


def test_soft_piano_reads_as_acoustic_and_low_energy():
    res = analyse(at_lufs(piano_like(70, per_beat=0.5), -20.0))
    assert res.acousticness >= 0.6 and res.energy <= 0.35


@pytest.mark.parametrize("make", [distorted_guitar, piano_like], ids=["distorted", "piano"])
def test_louder_never_lowers_energy(make):
    y = make(110)
    values = [analyse(at_lufs(y, level)).energy for level in (-30.0, -22.0, -16.0, -10.0, -6.0)]
    assert values == sorted(values) and values[-1] > values[0] + 0.3


@pytest.mark.parametrize("make", [distorted_guitar, piano_like], ids=["distorted", "piano"])
def test_denser_never_lowers_energy(make):
    sparse = analyse(at_lufs(make(100, per_beat=0.5), -16.0)).energy
    dense = analyse(at_lufs(make(100, per_beat=2), -16.0)).energy
    assert dense >= sparse


@pytest.mark.parametrize("seed", [0, 1])
def test_steady_groove_is_more_danceable_than_the_same_groove_played_loosely(seed):
    tight = analyse(at_lufs(drums(120, seed=seed), -14.0))
    loose = analyse(at_lufs(drums(120, jitter_s=0.035, seed=seed), -14.0))
    assert tight.danceability > loose.danceability + 0.1
    assert tight.danceability >= 0.6


def test_groove_is_more_danceable_than_rubato_piano():
    groove = analyse(at_lufs(drums(120) + 0.3 * piano_like(120), -14.0))
    rubato = analyse(at_lufs(piano_like(70, per_beat=0.5, jitter_s=0.12), -14.0))
    assert groove.danceability > rubato.danceability + 0.2


def test_noise_is_neither_danceable_nor_acoustic():
    res = analyse(at_lufs(synth.white_noise(8, SR), -14.0))
    assert res.danceability <= 0.3 and res.acousticness <= 0.3


# --------------------------------------------------------------------------------------------------------------
# the formulas: monotone in every cause, bounded, neutral where they should be
# --------------------------------------------------------------------------------------------------------------

BASE = descriptors.Cues(loudness_lufs=-14.0, loudness_range_db=5.0, crest_db=12.0, onset_density=0.05,
                        flatness=0.01, hf_share=0.02, sub_share=0.02, pulse_clarity=0.5, bpm=120.0)


def _sweep(field: str, values, descriptor) -> list[float]:
    return [descriptor(dataclasses.replace(BASE, **{field: v})) for v in values]


@pytest.mark.parametrize("field,values,direction", [
    ("loudness_lufs", [-60, -30, -20, -14, -8, -3, 0], 1),
    ("onset_density", [0.0, 0.02, 0.05, 0.1, 0.2, 0.5], 1),
    ("flatness", [1e-6, 1e-4, 1e-3, 1e-2, 0.05, 0.2, 1.0], 1),
    ("loudness_range_db", [0, 2, 5, 10, 20, 40], -1),
    ("crest_db", [3, 6, 9, 12, 18, 30], -1),
])
def test_energy_is_monotone_in_its_causes(field, values, direction):
    got = _sweep(field, values, descriptors.energy)
    assert got == sorted(got, reverse=direction < 0) and abs(got[-1] - got[0]) > 0.1
    assert all(0.0 <= v <= 1.0 for v in got)


@pytest.mark.parametrize("field,values", [
    ("flatness", [1e-6, 1e-4, 1e-3, 1e-2, 0.05, 0.2, 1.0]),
    ("loudness_range_db", [40, 20, 10, 5, 2, 0]),
    ("crest_db", [30, 18, 12, 9, 6, 3]),
    ("sub_share", [0.0, 0.05, 0.2, 0.4, 0.8]),
    ("hf_share", [0.0, 0.02, 0.1, 0.2, 0.5]),
])
def test_acousticness_falls_with_each_cue_of_produced_sound(field, values):
    got = _sweep(field, values, descriptors.acousticness)
    assert got == sorted(got, reverse=True) and got[0] - got[-1] > 0.1
    assert all(0.0 <= v <= 1.0 for v in got)


def test_danceability_rises_with_pulse_clarity_and_prefers_dance_tempos():
    clarity = _sweep("pulse_clarity", [0.0, 0.1, 0.3, 0.5, 0.8, 1.0], descriptors.danceability)
    assert clarity == sorted(clarity) and clarity[-1] - clarity[0] > 0.5
    tempos = _sweep("bpm", [40.0, 60.0, 90.0, 120.0], descriptors.danceability)
    assert tempos == sorted(tempos) and tempos[-1] > tempos[0]
    fast = _sweep("bpm", [120.0, 150.0, 200.0, 280.0], descriptors.danceability)
    assert fast == sorted(fast, reverse=True)
    assert descriptors.danceability(dataclasses.replace(BASE, bpm=None)) == 0.0


def test_extreme_and_degenerate_cues_stay_in_range():
    extremes = [dataclasses.replace(BASE, **{f.name: v}) for f in dataclasses.fields(BASE)
                for v in (0.0, -1e9, 1e9, float("nan"), float("inf")) if f.name != "bpm"]
    for cues in extremes:
        for descriptor in (descriptors.energy, descriptors.acousticness, descriptors.danceability):
            v = descriptor(cues)
            assert math.isfinite(v) and 0.0 <= v <= 1.0, (cues, descriptor.__name__, v)


# --------------------------------------------------------------------------------------------------------------
# what was true before and still is
# --------------------------------------------------------------------------------------------------------------

def test_descriptors_on_synthesized_audio():
    chords = perform_audio_analysis(synth.chord_progression("C", "major", seconds=12), ANALYSIS_SAMPLE_RATE)
    beat = perform_audio_analysis(synth.drum_pattern(120, seconds=12), ANALYSIS_SAMPLE_RATE)
    noise = perform_audio_analysis(synth.white_noise(seconds=8), ANALYSIS_SAMPLE_RATE)
    assert chords.acousticness > 0.6 and chords.acousticness > beat.acousticness
    assert beat.danceability > chords.danceability
    assert beat.danceability > noise.danceability
    # brightness: hi-hats and noise are brighter than piano chords
    assert noise.spectral_centroid > beat.spectral_centroid > chords.spectral_centroid > 200.0


def test_spectral_centroid_of_a_sine_is_its_frequency():
    res = perform_audio_analysis(synth.sine(1000.0, seconds=5), ANALYSIS_SAMPLE_RATE)
    assert res.spectral_centroid == pytest.approx(1000.0, rel=0.03)
