"""Browsing, searching, exporting, correcting and deleting the analysis cache."""
from __future__ import annotations

import json
from typing import Iterator

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context

from backend.service import url_cache_key
from backend.storage import SORT_NAMES, get_store
from backend.storage.base import MAX_ID
from backend.timeutil import utc_now_iso
from backend.web.auth import require_api_key
from backend.web.errors import ApiError
from backend.web.params import (DEFAULT_PAGE, DEFAULT_SORT, MAX_BPM, MAX_NOTES_LENGTH, MAX_OFFSET, MAX_PAGE,
                                MAX_QUERY_LENGTH, MIN_BPM, int_arg, json_object, optional_text)
from backend.web.responses import cache_row, export_row, normalize_key_name

bp = Blueprint("cache", __name__)


def _page() -> tuple[int, int]:
    return (int_arg("limit", DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE),
            int_arg("offset", 0, minimum=0, maximum=MAX_OFFSET))


@bp.get("/cache")
@require_api_key()
def list_cache():
    limit, offset = _page()
    sort = request.args.get("sort", DEFAULT_SORT)
    if sort not in SORT_NAMES:
        raise ApiError(400, "invalid_parameter",
                       f"'sort' must be one of {', '.join(SORT_NAMES)}, got {sort!r}.")
    store = get_store()
    with store.single_read() as conn:
        rows = store.list_analyses(conn, limit=limit, offset=offset, sort=sort)
    return jsonify([cache_row(row) for row in rows])


@bp.get("/cache/search")
@require_api_key()
def search_cache():
    query = optional_text(request.args.get("q"), "q", max_length=MAX_QUERY_LENGTH)
    if not query:
        raise ApiError(400, "missing_query", "Give the text to look for in titles and artists as ?q=...")
    limit, offset = _page()
    # Keyset paging: the next page is the rows below the last id of this one, as cheap as the first page at any
    # depth (an offset must skip every earlier match).
    before = int_arg("before", 0, minimum=1, maximum=MAX_ID) or None
    store = get_store()
    with store.single_read() as conn:
        rows = store.search_analyses(conn, query, limit=limit, offset=offset, before=before)
    return jsonify([cache_row(row) for row in rows])


@bp.get("/cache/export")
@require_api_key()
def export_cache():
    """Every song, streamed as it is read (a batch of rows at a time), so memory does not grow with the catalog.
    The count comes last: it is the number of songs this document really holds."""
    return Response(stream_with_context(_export_document(get_store().iter_analyses())),
                    content_type="application/json")


def _export_document(rows) -> Iterator[str]:
    yield '{"exported_at": ' + json.dumps(utc_now_iso()) + ', "songs": ['
    count = 0
    for row in rows:
        yield ("," if count else "") + json.dumps(export_row(row), ensure_ascii=False, allow_nan=False)
        count += 1
    yield '], "total_songs": ' + str(count) + "}"


def _analysis_service():
    """Told of every change to a stored analysis once it is committed, so that no host keeps the old row."""
    return current_app.extensions["essentia"].analysis


@bp.delete("/cache/<int:analysis_id>")
@require_api_key(admin=True)
def delete_cached(analysis_id: int):
    store = get_store()
    with store.connection(write=True) as conn:
        deleted = store.delete_analysis(conn, analysis_id)
    if not deleted:
        raise ApiError(404, "not_found", f"No cached song has id {analysis_id}.")
    _analysis_service().rows_changed([analysis_id])
    return jsonify(success=True, message=f"Deleted cached song {analysis_id}.")


@bp.post("/cache/clear")
@require_api_key(admin=True)
def clear_cache():
    store = get_store()
    with store.connection(write=True) as conn:
        removed = store.clear_analyses(conn)
    _analysis_service().rows_changed(None)
    return jsonify(success=True, message=f"Cleared the cache: {removed} songs removed.", removed=removed)


@bp.post("/verify")
@require_api_key(admin=True)
def verify():
    body = json_object()
    manual_bpm = _manual_bpm(body.get("manual_bpm"))
    manual_key = _manual_key(body.get("manual_key"))
    notes = optional_text(body.get("bpm_notes"), "bpm_notes", max_length=MAX_NOTES_LENGTH)
    store = get_store()
    with store.connection(write=True) as conn:
        row = _find_song(store, conn, body)
        row = store.verify_analysis(conn, row["id"], manual_bpm=manual_bpm, manual_key=manual_key,
                                    bpm_notes=notes, verified_at=utc_now_iso())
    _analysis_service().rows_changed([row["id"]])
    return jsonify(success=True, message=f"Song {row['id']} marked as verified.", song=cache_row(row))


def _find_song(store, conn, body):
    song_id, url = body.get("id"), body.get("url")
    if song_id is not None:
        if isinstance(song_id, bool) or not isinstance(song_id, int):
            raise ApiError(400, "invalid_parameter", "'id' must be an integer.")
        row = store.find_analysis_by_id(conn, song_id)
        missing = f"No cached song has id {song_id}."
    elif isinstance(url, str) and url.strip():
        row = _find_by_url(store, conn, url.strip())
        missing = "No cached song has that URL."
    else:
        raise ApiError(400, "missing_song", 'Say which song: "id" (from /cache) or "url".')
    if row is None:
        raise ApiError(404, "not_found", missing)
    return row


def _find_by_url(store, conn, url: str):
    from backend.audio.fetch import FetchError, normalize_url

    try:
        row = store.find_analysis_by_cache_key(conn, url_cache_key(normalize_url(url)))
    except FetchError:
        row = None
    # Uploads are identified by their stable 'upload:sha256:...' preview_url.
    return row if row is not None else store.find_analysis_by_preview_url(conn, url)


def _manual_bpm(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not MIN_BPM <= value <= MAX_BPM:
        raise ApiError(400, "invalid_parameter",
                       f"'manual_bpm' must be a number from {MIN_BPM:g} to {MAX_BPM:g}.")
    return float(value)


def _manual_key(value):
    if value is None:
        return None
    key = normalize_key_name(value) if isinstance(value, str) else None
    if key is None:
        raise ApiError(400, "invalid_parameter",
                       "'manual_key' must be a key like \"A# Minor\" or \"C Major\" (tonic, then Major or Minor).")
    return key
