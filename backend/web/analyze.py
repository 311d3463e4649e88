"""POST /analyze (a URL) and POST /analyze_data (the audio itself): both answer the same analysis object."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from backend.web.params import header_text, json_object, optional_text, wants_detail
from backend.web.auth import require_api_key
from backend.web.errors import ApiError
from backend.web.responses import analysis_response

bp = Blueprint("analyze", __name__)


def _service():
    return current_app.extensions["essentia"].analysis


def _answer(row, cached: bool):
    return jsonify(analysis_response(row, cached=cached, detail=wants_detail()))


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
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file") or next(iter(request.files.values()), None)
        if upload is None:
            raise ApiError(400, "missing_file", "The multipart form has no file: send it as -F file=@song.m4a.")
        data = upload.read()
        title = optional_text(request.form.get("title"), "title")
        artist = optional_text(request.form.get("artist"), "artist")
    else:
        # Any other content type is taken as the audio itself (curl --data-binary sends a form type by default).
        data = request.get_data(cache=False)
        title, artist = header_text("X-Song-Title"), header_text("X-Song-Artist")
    if not data:
        raise ApiError(400, "empty_audio", "The request has no audio: send the file as the body or as -F file=@...")
    row, cached = _service().analyze_upload(data, title=title, artist=artist)
    return _answer(row, cached)
