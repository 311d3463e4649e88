"""POST /analyze (a URL), POST /analyze_data (the audio itself) and GET /analyze_data/sha256/<hex> (the audio's
hash, asked before uploading it): all answer the same analysis object."""
from __future__ import annotations

import re

from flask import Blueprint, current_app, jsonify, request

from backend.web.params import header_text, json_object, optional_text, wants_detail
from backend.web.auth import require_api_key
from backend.web.errors import ApiError
from backend.web.prebuilt import answer_response
from backend.web.responses import analysis_response
from backend.web.upload import receive_body, receive_file

bp = Blueprint("analyze", __name__)


def _service():
    return current_app.extensions["essentia"].analysis


_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


def _answer(row, cached: bool):
    detail = wants_detail()
    prebuilt = None if detail else answer_response(row["response_json"], cached=cached)
    return prebuilt or jsonify(analysis_response(row, cached=cached, detail=detail))


@bp.post("/analyze")
@require_api_key()
def analyze_url():
    body = json_object()
    url = body.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ApiError(400, "missing_url", 'Send the audio\'s address as "url" in the JSON body.')
    row, cached = _service().analyze_url(url.strip(), title=optional_text(body.get("title"), "title"),
                                         artist=optional_text(body.get("artist"), "artist"))
    return _answer(row, cached)


@bp.post("/analyze_data")
@require_api_key()
def analyze_data():
    max_bytes = current_app.extensions["essentia"].settings.max_upload_bytes
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file") or next(iter(request.files.values()), None)
        if upload is None:
            raise ApiError(400, "missing_file", "The multipart form has no file: send it as -F file=@song.m4a.")
        received = receive_file(upload, max_bytes)
        title = optional_text(request.form.get("title"), "title")
        artist = optional_text(request.form.get("artist"), "artist")
    else:
        # Any other content type is taken as the audio itself (curl --data-binary sends a form type by default).
        received = receive_body(max_bytes)
        title, artist = header_text("X-Song-Title"), header_text("X-Song-Artist")
    if not received.data:
        raise ApiError(400, "empty_audio", "The request has no audio: send the file as the body or as -F file=@...")
    row, cached = _service().analyze_upload(received.data, title=title, artist=artist, sha256=received.sha256)
    return _answer(row, cached)


@bp.get("/analyze_data/sha256/<digest>")
@require_api_key()
def analyze_data_by_hash(digest: str):
    """What a repeat upload of audio with this SHA-256 would answer, without the upload; 404 if not cached."""
    if not _SHA256_HEX.fullmatch(digest):
        raise ApiError(400, "invalid_sha256", "The path must end with the SHA-256 of the audio file: 64 hex digits "
                                              "(e.g. the first word of `sha256sum song.m4a`).")
    row = _service().cached_upload(digest.lower(), title=header_text("X-Song-Title"),
                                   artist=header_text("X-Song-Artist"))
    if row is None:
        raise ApiError(404, "not_cached", "No analysis of audio with this SHA-256 is cached yet: upload the file "
                                          "to POST /analyze_data to have it analyzed.")
    return _answer(row, True)
