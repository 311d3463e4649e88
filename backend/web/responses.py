"""How a stored analysis becomes the JSON clients see. Mobile clients decode these with strict types, so the
field names and types here are a contract (see README, "Responses")."""
from __future__ import annotations

import json
import math
import re
import sqlite3
from typing import Any

UNKNOWN = "Unknown"
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_KEY_PATTERN = re.compile(r"^\s*([A-Ga-g])\s*([#b♯♭]?)\s*(major|minor|maj|min|m)?\s*$", re.IGNORECASE)


def _finite_columns(values: dict[str, Any]) -> dict[str, Any]:
    """Column values (flat scalars) that JSON can carry: NaN and infinities become None."""
    return {key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in values.items()}


# Stored JSON is read with NaN/Infinity tokens as null, so what it yields is already finite: Python's json
# writes non-finite floats only as those tokens (never as a literal like 1e999), and our rows are written with
# allow_nan=False anyway. That spares a cache hit a recursive walk over the whole stored result.
_STORED_JSON = json.JSONDecoder(parse_constant=lambda _token: None)


def normalize_key_name(text: str) -> str | None:
    """'a# minor', 'Bb min', 'F#m', 'C' -> 'A# Minor', 'A# Minor', 'F# Minor', 'C Major'; None if not a key."""
    match = _KEY_PATTERN.match(text or "")
    if not match:
        return None
    letter = match.group(1).upper()
    accidental = {"♯": "#", "♭": "b"}.get(match.group(2), match.group(2))
    shift = {"#": 1, "b": -1}.get(accidental, 0)
    tonic = PITCH_CLASSES[(PITCH_CLASSES.index(letter) + shift) % 12]
    mode = (match.group(3) or "major").lower()
    return f"{tonic} {'Minor' if mode in ('minor', 'min', 'm') else 'Major'}"


# Audible audio can still have no beat (a drone) or no tonal centre (noise, drums alone). Strict clients need
# a number and a string, so such fields carry these documented sentinels (confidence 0), as other
# audio-feature APIs do; the database keeps NULL.
NO_TEMPO_BPM = 0.0
NO_KEY = UNKNOWN


def _bpm(value: float | None) -> float:
    return NO_TEMPO_BPM if value is None else value


def _key(value: str | None) -> str:
    return value or NO_KEY


def _stored_result(row: sqlite3.Row) -> dict[str, Any]:
    try:
        return _STORED_JSON.decode(row["result_json"])
    except (TypeError, ValueError):
        return {}


def _manual_fields(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "user_verified": bool(row["user_verified"]),
        "manual_bpm": row["manual_bpm"],
        "manual_key": row["manual_key"],
        "bpm_notes": row["bpm_notes"],
    }


def cache_row(row: sqlite3.Row) -> dict[str, Any]:
    """One row of /cache and /cache/search: the stored measurements, metadata and corrections."""
    return _finite_columns({
        "id": row["id"],
        "title": row["title"],
        "artist": row["artist"],
        "preview_url": row["preview_url"],
        "bpm": _bpm(row["bpm"]),
        "bpm_confidence": row["bpm_confidence"],
        "key": _key(row["key"]),
        "key_confidence": row["key_confidence"],
        "energy": row["energy"],
        "danceability": row["danceability"],
        "acousticness": row["acousticness"],
        "spectral_centroid": row["spectral_centroid"],
        "analyzed_at": row["analyzed_at"],
        "analysis_duration": row["analysis_duration"],
        **_manual_fields(row),
    })


def analysis_response(row: sqlite3.Row, *, cached: bool, detail: bool = False) -> dict[str, Any]:
    """The object /analyze and /analyze_data answer, the same on a miss and on a hit: a cache row plus the
    fields only the full analysis has."""
    stored = _stored_result(row)
    result = stored.get("result", {})
    body = cache_row(row)
    body.update({
        "bpm_candidates": result.get("bpm_candidates", []),
        "mode": result.get("mode"),
        "key_index": result.get("key_index"),
        "camelot": result.get("camelot"),
        "loudness_lufs": result.get("loudness_lufs"),
        "time_signature": result.get("time_signature"),
        "duration": result.get("duration"),
        "analysis_window": stored.get("window"),
        "source": stored.get("source"),
        "cached": cached,
    })
    if detail:
        body["detail"] = _stored_detail(row, result)
    return body


def _stored_detail(row: sqlite3.Row, result: dict[str, Any]) -> Any:
    """The chart arrays: in their own column since schema 2, inside the result before."""
    if row["detail_json"]:
        try:
            return _STORED_JSON.decode(row["detail_json"])
        except ValueError:
            return None
    return result.get("detail")


def export_row(row: sqlite3.Row) -> dict[str, Any]:
    """One song of /cache/export: the user's corrections where they made them, never a null."""
    bpm = row["manual_bpm"] if row["manual_bpm"] is not None else row["bpm"]
    return _finite_columns({
        "title": row["title"],
        "artist": row["artist"],
        "bpm": _bpm(bpm),
        "key": _key(row["manual_key"] or row["key"]),
        "energy": row["energy"],
        "danceability": row["danceability"],
        "acousticness": row["acousticness"],
        "analyzed_at": row["analyzed_at"],
    })
