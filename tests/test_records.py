"""records: what a stored row becomes; no number a client sees is ever NaN or Infinity."""
from __future__ import annotations

import json
import math

from backend.web.responses import analysis_response, cache_row


def _row(**overrides):
    row = {"id": 1, "title": "T", "artist": "A", "preview_url": "http://x/a.m4a", "bpm": 120.0,
           "bpm_confidence": 0.9, "key": "A Minor", "key_confidence": 0.8, "energy": 0.5, "danceability": 0.5,
           "acousticness": 0.5, "spectral_centroid": 1000.0, "analyzed_at": "2026-01-01T00:00:00Z",
           "analysis_duration": 1.0, "user_verified": 0, "manual_bpm": None, "manual_key": None,
           "bpm_notes": None, "result_json": json.dumps({"result": {"bpm_candidates": [60.0, 120.0]}}),
           "detail_json": None}
    row.update(overrides)
    return row


def test_non_finite_columns_become_null():
    body = cache_row(_row(manual_bpm=math.inf, energy=math.nan))
    assert body["manual_bpm"] is None and body["energy"] is None and body["bpm"] == 120.0


def test_non_finite_tokens_in_stored_json_become_null():
    """Rows written before allow_nan=False may hold NaN/Infinity tokens; they are read back as null."""
    stored = '{"result": {"bpm_candidates": [NaN, 120.0], "loudness_lufs": -Infinity, "detail": {"x": [Infinity]}}}'
    body = analysis_response(_row(result_json=stored), cached=True, detail=True)
    assert body["bpm_candidates"] == [None, 120.0] and body["loudness_lufs"] is None
    assert body["detail"] == {"x": [None]}
    body = analysis_response(_row(detail_json='{"onsets": [NaN, 1.5]}'), cached=True, detail=True)
    assert body["detail"] == {"onsets": [None, 1.5]}
    json.dumps(body, allow_nan=False)
