"""A cache hit answered with JSON serialized once, when the analysis was stored (analyses.response_json), instead of
rebuilding the object and encoding it on every hit.

The stored text is exactly what `jsonify(analysis_response(row, cached=...))` writes (compact separators, non-ASCII
kept, key order kept) without the last member, "cached", the one field that differs per request: a hit appends
it. tests/test_prebuilt.py checks the two agree byte for byte. A row without stored text (stored before schema 3,
or changed since: a trigger clears it) is answered from its columns as before, and its text is stored then.
"""
from __future__ import annotations

import json
import sqlite3

from flask import Response, current_app

from backend.web.responses import analysis_response

_CACHED_MEMBER = {True: ',"cached":true}\n', False: ',"cached":false}\n'}


def serialize_answer(row: sqlite3.Row) -> str:
    """The answer for `row` without its "cached" member, as jsonify writes it in production (compact)."""
    body = analysis_response(row, cached=False)
    del body["cached"]
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def prebuilt_answer(stored: str, *, cached: bool) -> bytes:
    """The full answer from the stored text: "cached" appended as the last member, then jsonify's newline."""
    return (stored[:-1] + _CACHED_MEMBER[cached]).encode()


def answer_response(stored: str | None, *, cached: bool) -> Response | None:
    """The response from the stored text, or None when it cannot be used here (no text stored, or the app writes
    indented JSON: Flask does in debug mode)."""
    if not stored:
        return None
    provider = current_app.json
    compact = getattr(provider, "compact", None)
    if compact is False or (compact is None and current_app.debug) or getattr(provider, "ensure_ascii", False):
        return None
    return current_app.response_class(prebuilt_answer(stored, cached=cached), mimetype="application/json")
