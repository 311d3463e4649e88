"""Key estimation on synthesized chord progressions with a known key."""
from __future__ import annotations

import numpy as np
import pytest

from backend.analysis import ANALYSIS_SAMPLE_RATE, perform_audio_analysis
from backend.analysis.key import camelot
from tests import synth

SR = ANALYSIS_SAMPLE_RATE


@pytest.mark.parametrize("tonic", synth.PITCH_CLASSES)
@pytest.mark.parametrize("mode", ["major", "minor"])
def test_chord_progression_key(tonic, mode):
    """All 24 keys: I-IV-V-I / i-iv-V-i block chords with a bass line."""
    res = perform_audio_analysis(synth.chord_progression(tonic, mode, seconds=12), SR)
    assert res.key == f"{tonic} {mode.capitalize()}", res.key
    assert res.mode == mode and res.key_index == synth.PITCH_CLASSES.index(tonic)
    assert res.key_confidence >= 0.5


@pytest.mark.parametrize("cents", [-40, 30])
def test_detuned_progression(cents):
    """A band tuned 30-40 cents off A440 still gets the right key (tuning correction)."""
    sr = SR
    y = synth.chord_progression("D", "minor", seconds=12, sr=sr)
    # playing the samples at a slightly different rate shifts every pitch by `cents`
    ratio = 2 ** (cents / 1200)
    t_new = np.arange(int(len(y) / ratio)) * ratio
    shifted = np.interp(t_new, np.arange(len(y)), y).astype(np.float32)
    assert perform_audio_analysis(shifted, sr).key == "D Minor"


def test_song_with_drums_key():
    res = perform_audio_analysis(synth.song(124, "F", "minor", seconds=12), SR)
    assert res.key == "F Minor"


@pytest.mark.parametrize("pc,mode,code", [(0, "major", "8B"), (9, "minor", "8A"), (7, "major", "9B"),
                                          (4, "minor", "9A"), (5, "major", "7B"), (11, "major", "1B"),
                                          (8, "minor", "1A"), (2, "minor", "7A"), (None, None, None)])
def test_camelot(pc, mode, code):
    assert camelot(pc, mode) == code
