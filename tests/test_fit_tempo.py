"""benchmarks/fit_tempo.py: several training directories are fitted together, and two generator runs that number
their songs alike stay two songs (so a song fold never holds one run's clip and tests on the other's)."""
import json

from benchmarks import fit_tempo
from tests import synth


def _training_dir(root, bpm):
    root.mkdir()
    (root / "pop-000-r0.wav").write_bytes(synth.wav_bytes(synth.click_track(bpm, seconds=14.0)))
    (root / "manifest.json").write_text(json.dumps([{"file": "pop-000-r0.wav", "song": "pop-000", "style": "pop",
                                                     "bpm": bpm, "alt_bpm": []}]))
    return root


def test_two_directories_are_fitted_together_and_keep_their_songs_apart(tmp_path, monkeypatch):
    monkeypatch.setattr(fit_tempo, "CACHE_DIR", tmp_path / "cache")
    one, two = _training_dir(tmp_path / "run-a", 100.0), _training_dir(tmp_path / "run-b", 130.0)
    samples = fit_tempo.trainset_samples([one, two])
    whole = [s for s in samples if not s.excerpt]
    assert sorted((s.song, s.bpm) for s in whole) == [("run-a/pop-000", 100.0), ("run-b/pop-000", 130.0)]
    assert {s.song for s in samples} == {"run-a/pop-000", "run-b/pop-000"}  # excerpts stay in their clip's song
    # one directory keeps its songs' own names, as fits before several directories were possible did
    assert {s.song for s in fit_tempo.trainset_samples([one])} == {"pop-000"}
