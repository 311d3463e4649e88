"""Descriptors: documented, monotone, in range (loudness: tests/test_loudness.py)."""
from __future__ import annotations

import numpy as np
import pytest

from backend.analysis import ANALYSIS_SAMPLE_RATE, descriptors, perform_audio_analysis
from backend.analysis.frontend import bin_frequencies
from tests import synth

SR = ANALYSIS_SAMPLE_RATE


def test_energy_is_monotone_in_loudness_and_density():
    grid = [descriptors.energy(l, d) for l in (-60.0, -30.0, -15.0, -5.0, 3.0) for d in (0.0, 0.05, 0.1, 0.3)]
    assert all(0.0 <= e <= 1.0 for e in grid)
    for d in (0.0, 0.1):
        values = [descriptors.energy(l, d) for l in (-60.0, -30.0, -15.0, -5.0)]
        assert values == sorted(values) and values[-1] > values[0]
    for l in (-30.0, -10.0):
        values = [descriptors.energy(l, d) for d in (0.0, 0.05, 0.1, 0.2)]
        assert values == sorted(values) and values[-1] > values[0]
    assert descriptors.energy(None, 0.0) == 0.0


def test_danceability_rewards_a_clear_pulse_at_a_danceable_tempo():
    assert descriptors.danceability(0.9, None) == 0.0
    assert descriptors.danceability(0.9, 120) > descriptors.danceability(0.3, 120)
    assert descriptors.danceability(0.9, 120) > descriptors.danceability(0.9, 50) > 0.0
    assert all(0.0 <= descriptors.danceability(c, b) <= 1.0 for c in (0, 0.5, 1, 2) for b in (30, 120, 300))


def test_acousticness_cues():
    freqs = bin_frequencies(SR)
    piano_like = np.where((freqs > 100) & (freqs < 2000), 1.0, 1e-4)
    bright = np.where(freqs > 5000, 1.0, 1e-4) + piano_like
    subby = np.where(freqs < 60, 5.0, 1e-4) + piano_like
    calm = descriptors.acousticness(piano_like, freqs, 0.03)
    assert calm > 0.9
    assert descriptors.acousticness(bright, freqs, 0.03) < calm
    assert descriptors.acousticness(subby, freqs, 0.03) < calm
    assert descriptors.acousticness(piano_like, freqs, 0.2) < calm
    assert descriptors.acousticness(np.zeros_like(freqs), freqs, 0.0) == 0.0


def test_descriptors_on_synthesized_audio():
    chords = perform_audio_analysis(synth.chord_progression("C", "major", seconds=12), SR)
    drums = perform_audio_analysis(synth.drum_pattern(120, seconds=12), SR)
    noise = perform_audio_analysis(synth.white_noise(seconds=8), SR)
    assert chords.acousticness > 0.8 > drums.acousticness
    assert drums.danceability > chords.danceability
    assert drums.danceability > noise.danceability
    # brightness: hi-hats and noise are brighter than piano chords
    assert noise.spectral_centroid > drums.spectral_centroid > chords.spectral_centroid > 200.0


def test_spectral_centroid_of_a_sine_is_its_frequency():
    res = perform_audio_analysis(synth.sine(1000.0, seconds=5), SR)
    assert res.spectral_centroid == pytest.approx(1000.0, rel=0.03)
