"""The floor of the stack for URL hits: a minimal Flask app that parses the JSON body of POST /analyze and answers
a fixed 1 KB JSON object, served by gunicorn with the same worker settings as ours (section 7). Whatever ours
costs beyond this is the application's own work."""
from __future__ import annotations

from flask import Flask, jsonify, request

# A fixed answer of about the size of an analysis (1 KB): the same fields, fixed values.
ANSWER = {
    "id": 1, "title": "Benchmark Song", "artist": "Benchmark Artist",
    "preview_url": "http://127.0.0.1:8000/preview-1.m4a", "bpm": 100.0, "bpm_confidence": 0.9, "key": "B Minor",
    "key_confidence": 0.8, "energy": 0.6, "danceability": 0.7, "acousticness": 0.2, "spectral_centroid": 2000.0,
    "analyzed_at": "2026-01-01T00:00:00.000Z", "analysis_duration": 0.5, "user_verified": False, "manual_bpm": None,
    "manual_key": None, "bpm_notes": None, "bpm_candidates": [100.0, 50.0, 200.0], "mode": "minor", "key_index": 11,
    "camelot": "10A", "loudness_lufs": -14.0, "time_signature": 4, "duration": 10.0,
    "analysis_window": {"start": 0.0, "seconds": 10.0}, "source": {"codec": "aac", "sample_rate": 44100,
                                                                   "channels": 2}, "cached": True,
    "padding": "x" * 351,
}

app = Flask("floor")


@app.post("/analyze")
def analyze():
    body = request.get_json()
    if not isinstance(body, dict) or "url" not in body:
        return jsonify(error="missing_url"), 400
    return jsonify(ANSWER)


@app.get("/health")
def health():
    return jsonify(status="healthy")
