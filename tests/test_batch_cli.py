"""`flask --app backend analyze PATH...`: folders recursively, progress, cache skipping, --force, --out, failures."""
from __future__ import annotations

import csv
import json

import pytest

from tests import synth


@pytest.fixture
def music(tmp_path):
    folder = tmp_path / "music"
    (folder / "album").mkdir(parents=True)
    (folder / "Daft Synth - Groove.wav").write_bytes(synth.wav_bytes(synth.song(120, "A", "minor", seconds=8)))
    (folder / "album" / "ballad.m4a").write_bytes(
        synth.encode_with_pyav(synth.song(96, "C", "major", seconds=8, sr=44100), 44100, "mp4", "aac"))
    (folder / "album" / "corrupt.mp3").write_bytes(b"definitely not an mp3" * 50)
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff" + bytes(100))  # not audio by name: ignored
    return folder


def test_batch_analyzes_folders_into_the_cache_and_reports_failures(app, runner, music, tmp_path):
    out = tmp_path / "results.csv"
    result = runner.invoke(args=["analyze", str(music), str(tmp_path / "missing"), "--out", str(out), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    assert "Analyzed 2, skipped 0" in result.output and "failed 2" in result.output
    assert "corrupt.mp3: unsupported_format" in result.output
    assert "missing: no such file or folder" in result.output
    assert "2/3" in result.output or "3/3" in result.output          # the progress line
    rows = {row["title"]: row for row in csv.DictReader(out.open())}
    assert set(rows) == {"Groove", "ballad"}
    assert rows["Groove"]["artist"] == "Daft Synth" and rows["Groove"]["key"] == "A Minor"
    assert float(rows["Groove"]["bpm"]) == pytest.approx(120, rel=0.04)
    assert rows["ballad"]["key"] == "C Major"

    # The same cache the API serves: uploading the same file is a hit.
    client = app.test_client()
    listed = client.get("/cache").get_json()
    assert {row["title"] for row in listed} == {"Groove", "ballad"}
    upload = client.post("/analyze_data", data=(music / "Daft Synth - Groove.wav").read_bytes(),
                         headers={"Content-Type": "audio/wav"})
    assert upload.get_json()["cached"] is True


def test_batch_skips_cached_files_unless_forced(app, runner, music, tmp_path):
    first = runner.invoke(args=["analyze", str(music / "Daft Synth - Groove.wav")])
    assert "Analyzed 1" in first.output
    again = runner.invoke(args=["analyze", str(music / "Daft Synth - Groove.wav")])
    assert "Analyzed 0, skipped 1 already cached" in again.output
    client = app.test_client()
    song_id = client.get("/cache").get_json()[0]["id"]
    client.post("/verify", json={"id": song_id, "manual_bpm": 60})
    out = tmp_path / "forced.json"
    forced = runner.invoke(args=["analyze", str(music / "Daft Synth - Groove.wav"), "--force", "--out", str(out)])
    assert "Analyzed 1, skipped 0" in forced.output
    payload = json.loads(out.read_text())
    assert payload["analyzed"][0]["id"] == song_id             # re-analysis updates the same row...
    row = client.get("/cache").get_json()
    assert len(row) == 1 and row[0]["manual_bpm"] == 60.0       # ...and keeps the user's correction


def test_batch_rejects_an_unknown_output_format(runner, music, tmp_path):
    result = runner.invoke(args=["analyze", str(music), "--out", str(tmp_path / "x.xml")])
    assert result.exit_code != 0 and ".csv or .json" in result.output
