"""benchmarks/window_consistency.py: the label-free check on real recordings (does a song keep its key and tempo
from one 30-s window to the next?) counts what it says it counts."""
import numpy as np
import soundfile as sf

from benchmarks.window_consistency import main, song_figures, summarise
from tests import synth


def _window(key, bpm, **more):
    return {"key": key, "bpm": bpm, "energy": 0.5, "acousticness": 0.5, "danceability": 0.5,
            "bpm_confidence": 0.9, "key_confidence": 0.8, "seconds": 0.05, **more}


def test_song_figures_count_the_song_key_unknown_and_octave_flips():
    wins = [_window("A Minor", 120.0), _window("A Minor", 121.0), _window("C Major", 60.0),
            _window("Unknown", 90.0), _window("A Minor", 119.0)]
    f = song_figures(wins)
    assert f["modal_key"] == "A Minor"
    assert f["key_modal"] == 3 and f["unknown"] == 1
    assert f["key_pairs"] == 4 and f["key_pairs_same"] == 1  # only the first two windows agree with their next
    assert f["key_relations"] == {"relative": 1, "unknown": 1}
    assert f["median_bpm"] == 119.0
    assert f["tempo_same"] == 3  # 120, 121, 119 within 4 % of 119
    assert f["tempo_level"] == 4  # ... and 60 is its half; 90 is unrelated


def test_summary_pools_windows_over_songs():
    songs = []
    for wins in ([_window("E Minor", 100.0)] * 3, [_window("E Minor", 100.0), _window("Unknown", None)]):
        songs.append({**song_figures(wins), "window_results": wins})
    s = summarise(songs)
    assert s["songs"] == 2 and s["windows"] == 5
    assert s["key_modal_share"] == 4 / 5 and s["unknown_share"] == 1 / 5
    assert s["key_next_same"] == 2 / 3  # pairs: 2 agreeing in the first song, 1 with an Unknown in the second
    assert s["tempo_same_share"] == 4 / 5


def test_a_steady_synthesized_song_keeps_its_key_and_tempo_in_every_window(tmp_path, capsys):
    sr = 22050
    y = synth.song(100.0, "D", "major", seconds=95.0, sr=sr)  # three full 30-s windows
    sf.write(tmp_path / "steady.wav", np.stack([y, y], axis=1), sr)
    sf.write(tmp_path / "short.wav", y[: 40 * sr], sr)  # one window: not a song to compare
    out = tmp_path / "figures.json"
    assert main([str(tmp_path), "--json", str(out)]) == 0
    import json

    data = json.loads(out.read_text())
    assert [s["name"] for s in data["songs"]] == ["steady.wav"]
    song = data["songs"][0]
    assert song["windows"] == 3 and song["modal_key"] == "D Major" and song["key_modal"] == 3
    assert abs(song["median_bpm"] / 100.0 - 1) < 0.04 and song["tempo_same"] == 3
    assert "all" in capsys.readouterr().out
