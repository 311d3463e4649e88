"""The OpenAPI 3.1 description of the whole HTTP API, built in one place and served at GET /openapi.json.

This is the contract existing clients rely on (README, "Endpoints"): every path, method, parameter, request body,
status code, response header and JSON schema. `tests/test_openapi.py` checks that the app's routes and this
description agree and fuzzes the running app from it (schemathesis), so a change to a route or a response shape
that is not made here too fails CI. Schemas are strict where the contract is strict (required fields, types,
0..1 ranges, the error codes each status can carry) and open (`additionalProperties`) where the server may add
fields later without breaking clients.
"""
from __future__ import annotations

from typing import Any

from backend.storage import SORT_NAMES
from backend.web.params import (DEFAULT_PAGE, DEFAULT_SORT, MAX_BPM, MAX_NOTES_LENGTH, MAX_OFFSET, MAX_PAGE, MAX_QUERY_LENGTH,
                                MAX_TEXT_LENGTH, MIN_BPM)
from backend.web.responses import UNKNOWN, pitch_classes

# -- shared pieces ------------------------------------------------------------------------------------------------


def _key_patterns() -> tuple[str, str]:
    """A key the client may send ("A# Minor": sharps only, as the server writes keys), and a key the server may
    answer (the same, or "Unknown" when the audio has no tonal centre)."""
    tonics = "|".join(pitch_classes())
    return f"^({tonics}) (Major|Minor)$", f"^(({tonics}) (Major|Minor)|{UNKNOWN})$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` or null (OpenAPI 3.1 is JSON Schema 2020-12: no `nullable`, a type list or anyOf instead)."""
    return {"anyOf": [schema, {"type": "null"}]}


_UNIT = {"type": "number", "minimum": 0, "maximum": 1}
_TIMESTAMP = {"type": "string", "format": "date-time", "description": "ISO 8601 / RFC 3339, UTC"}
_COMMON_HEADERS = {
    "X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"},
    "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
    "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
    "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"},
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "headers": dict(_COMMON_HEADERS), "content": _json(schema)}


def _error(description: str, codes: list[str], *, retry_after: bool = False, allow: bool = False) -> dict[str, Any]:
    """An error response: the shared Error shape with `error` limited to the codes this status can carry."""
    headers = dict(_COMMON_HEADERS)
    if retry_after:
        headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    if allow:
        headers["Allow"] = {"description": "The methods the path accepts.", "schema": {"type": "string"}}
    codes = sorted(set(codes))
    return {
        "description": description + " Codes: " + ", ".join(f"`{code}`" for code in codes) + ".",
        "headers": headers,
        "content": _json({"allOf": [_ref("Error"), {"properties": {"error": {"enum": codes}}}]}),
    }


# Error codes by situation (the server's sources: backend/web/*, backend/audio/*, backend/runtime/executor.py,
# backend/service.py).
_DEV_HOST_403 = ["host_not_allowed"]                       # development mode: Host must be a loopback name
_CROSS_SITE_403 = ["cross_site_request"]                   # development mode: state-changing request from a page
_KEY_403 = ["invalid_api_key", "inactive_api_key"]         # production mode
_ADMIN_403 = ["admin_required"]
_RATE_429 = ["rate_limited", "daily_quota_exceeded"]
_STORAGE_503 = ["storage_unavailable"]
_EXECUTOR_503 = ["server_busy", "analysis_wait_timeout", "analysis_worker_crashed", "analysis_unavailable"]
_DECODE_422 = ["undecodable_audio", "truncated_audio", "silent_audio", "audio_too_short", "analysis_timeout"]
_FETCH_400 = ["invalid_url", "blocked_address", "too_many_redirects"]


def _responses(ok: dict[str, Any], *, guarded: bool = True, admin: bool = False, state_changing: bool = False,
               storage: bool = True, extra: dict[int, tuple[str, list[str]]] | None = None,
               retry_after_503: bool = True, extra_503: list[str] | None = None,
               extra_413: bool = False) -> dict[str, Any]:
    """Every status an operation can answer. `extra` adds {status: (description, codes)} (merged with the
    common ones for the same status)."""
    entries: dict[int, tuple[str, list[str]]] = {}

    def add(status: int, description: str, codes: list[str]) -> None:
        if status in entries:
            old_description, old_codes = entries[status]
            entries[status] = (old_description, old_codes + codes)
        else:
            entries[status] = (description, list(codes))

    for status, (description, codes) in (extra or {}).items():
        add(status, description, codes)
    if state_changing:
        add(400, "The request is malformed.", ["bad_request"])
        add(413, "The request body is larger than the server accepts (ESSENTIA_MAX_UPLOAD_MB).",
            ["payload_too_large"])
    forbidden = list(_DEV_HOST_403)
    if state_changing:
        forbidden += _CROSS_SITE_403
    if guarded:
        add(401, "Production mode: no X-API-Key header.", ["missing_api_key"])
        forbidden += _KEY_403 + (_ADMIN_403 if admin else [])
        add(429, "Too many requests for this key (production) or client address (development, when "
                 "ESSENTIA_RATE_LIMIT is set), or the key's daily quota is used up.", _RATE_429)
    add(403, "Forbidden: development mode answers only loopback Host names and refuses cross-site state-changing "
             "requests; production mode refuses unknown, deactivated and (for admin actions) non-admin keys.",
        forbidden)
    add(500, "The server's own fault (never the client's mistake); details are logged, never sent.",
        ["internal_error"])
    unavailable = (_STORAGE_503 if (storage or guarded) else []) + (extra_503 or [])
    if unavailable:
        add(503, "The server cannot take the request right now; retry after Retry-After seconds.", unavailable)

    responses: dict[str, Any] = {"200": ok}
    for status in sorted(entries):
        description, codes = entries[status]
        responses[str(status)] = _error(description, codes, retry_after=status == 429 or (
            status == 503 and retry_after_503))
    return responses


# -- components ---------------------------------------------------------------------------------------------------

def _schemas() -> dict[str, Any]:
    key_name_pattern, result_key_pattern = _key_patterns()
    analysis_window = {
        "type": "object",
        "description": "The part of the input that was analyzed, in seconds.",
        "required": ["start", "end", "seconds"],
        "properties": {
            "start": {"type": "number", "minimum": 0},
            "end": {"type": "number", "minimum": 0},
            "seconds": {"type": "number", "minimum": 0},
        },
        "additionalProperties": True,
    }
    source = {
        "type": "object",
        "description": "The input as decoded: container format, sample rate (Hz), channels, duration (s).",
        "properties": {
            "format": {"type": "string"},
            "sample_rate": {"type": "integer", "minimum": 1},
            "channels": {"type": "integer", "minimum": 1},
            "duration": _nullable({"type": "number", "minimum": 0}),
        },
        "additionalProperties": True,
    }
    detail = {
        "type": "object",
        "description": "With ?detail=1: small arrays for charts (the same keys for every input, empty when "
                       "there is nothing to show).",
        "properties": {
            "onset_envelope": {"type": "array", "maxItems": 512, "items": _UNIT},
            "onset_frame_rate": {"type": "number", "minimum": 0},
            "beat_times": {"type": "array", "items": {"type": "number", "minimum": 0}},
            "chroma": {"type": "array", "items": {"type": "number"}},
            "key_correlations": {"type": "object", "additionalProperties": {"type": "number"}},
            "tuning_semitones": {"type": "number"},
        },
        "additionalProperties": True,
    }
    manual = {
        "user_verified": {"type": "boolean", "description": "True once corrected through POST /verify."},
        "manual_bpm": _nullable({"type": "number", "minimum": MIN_BPM, "maximum": MAX_BPM}),
        "manual_key": _nullable({"type": "string", "pattern": key_name_pattern}),
        "bpm_notes": _nullable({"type": "string", "maxLength": MAX_NOTES_LENGTH}),
    }
    core = {
        "id": {"type": "integer", "minimum": 1, "description": "For /verify and DELETE /cache/{id}."},
        "title": {"type": "string", "description": "As sent (UTF-8); \"Unknown\" when not given."},
        "artist": {"type": "string", "description": "As sent (UTF-8); \"Unknown\" when not given."},
        "preview_url": {"type": "string",
                        "description": "The URL analyzed, or `upload:sha256:<hex>` for an upload."},
        "bpm": {"type": "number", "minimum": 0,
                "description": "Tempo in beats per minute; 0.0 (confidence 0) when the audio has no beat."},
        "bpm_confidence": _UNIT,
        "key": {"type": "string", "pattern": result_key_pattern,
                "description": "Tonic with sharps and mode, e.g. \"A# Minor\"; \"Unknown\" (confidence 0) only "
                               "when the audio has no pitch (silence, noise, drums alone, a single tone)."},
        "key_confidence": _UNIT,
        "energy": _UNIT,
        "danceability": _UNIT,
        "acousticness": _UNIT,
        "spectral_centroid": {"type": "number", "minimum": 0, "description": "Brightness, in Hz."},
        "analyzed_at": _TIMESTAMP,
        "analysis_duration": {"type": "number", "minimum": 0,
                              "description": "Seconds the decode and analysis took."},
    }
    required_core = list(core) + list(manual)
    return {
        "Error": {
            "type": "object",
            "description": "Every error: a stable machine-readable code and a message a person can act on.",
            "required": ["error", "message"],
            "properties": {
                "error": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                "message": {"type": "string", "minLength": 1},
            },
            "additionalProperties": True,
        },
        "Health": {
            "type": "object",
            "required": ["status", "running", "port", "version", "uptime", "timestamp"],
            "properties": {
                "status": {"type": "string", "const": "healthy"},
                "running": {"type": "boolean", "const": True},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "version": {"type": "string", "minLength": 1},
                "uptime": {"type": "number", "minimum": 0, "description": "Seconds since the app started."},
                "timestamp": _TIMESTAMP,
            },
            "additionalProperties": True,
        },
        "Stats": {
            "type": "object",
            "required": ["total_analyses", "cache_hits", "cache_misses", "cache_hit_rate", "last_updated",
                         "total_cached_songs"],
            "properties": {
                "total_analyses": {"type": "integer", "minimum": 0},
                "cache_hits": {"type": "integer", "minimum": 0},
                "cache_misses": {"type": "integer", "minimum": 0},
                "cache_hit_rate": {"type": "string", "pattern": r"^[0-9]{1,3}\.[0-9]%$",
                                   "description": "A STRING such as \"70.1%\" (clients decode it as text)."},
                "last_updated": _TIMESTAMP,
                "total_cached_songs": {"type": "integer", "minimum": 0},
                "queue_depth": {"type": "integer", "minimum": 0,
                                "description": "Analyses running or waiting in the pool."},
            },
            "additionalProperties": True,
        },
        "BpmCandidate": {
            "type": "object",
            "required": ["bpm", "score"],
            "properties": {"bpm": {"type": "number", "minimum": 0}, "score": _UNIT},
            "additionalProperties": True,
        },
        "AnalysisWindow": analysis_window,
        "AudioSource": source,
        "AnalysisDetail": detail,
        "Analysis": {
            "type": "object",
            "description": "What /analyze and /analyze_data answer, the same on a miss and on a hit. Fields "
                           "derived from the stored result (mode, camelot, loudness...) are null when the "
                           "estimate does not exist.",
            "required": required_core + ["bpm_candidates", "cached"],
            "properties": {
                **core,
                "bpm_candidates": {"type": "array", "items": _ref("BpmCandidate"),
                                   "description": "Best first, including the half/double alternative."},
                "mode": _nullable({"type": "string", "enum": ["major", "minor"]}),
                "key_index": _nullable({"type": "integer", "minimum": 0, "maximum": 11}),
                "camelot": _nullable({"type": "string", "pattern": "^(1[0-2]|[1-9])[AB]$"}),
                "loudness_lufs": _nullable({"type": "number", "maximum": 10}),
                "time_signature": _nullable({"type": "integer", "enum": [3, 4]}),
                "duration": _nullable({"type": "number", "minimum": 0}),
                "analysis_window": _nullable(_ref("AnalysisWindow")),
                "source": _nullable(_ref("AudioSource")),
                "cached": {"type": "boolean", "description": "True when served from the cache."},
                "detail": _nullable(_ref("AnalysisDetail")),
                **manual,
            },
            "additionalProperties": True,
        },
        "CacheRow": {
            "type": "object",
            "description": "One row of /cache and /cache/search.",
            "required": required_core,
            "properties": {**core, **manual},
            "additionalProperties": True,
        },
        "CacheRows": {"type": "array", "items": _ref("CacheRow")},
        "ExportSong": {
            "type": "object",
            "description": "Corrections applied (manual_bpm/manual_key win); never a null.",
            "required": ["title", "artist", "bpm", "key", "energy", "danceability", "acousticness",
                         "analyzed_at"],
            "properties": {
                "title": {"type": "string"},
                "artist": {"type": "string"},
                "bpm": {"type": "number", "minimum": 0},
                "key": {"type": "string", "pattern": result_key_pattern},
                "energy": _UNIT,
                "danceability": _UNIT,
                "acousticness": _UNIT,
                "analyzed_at": _TIMESTAMP,
            },
            "additionalProperties": True,
        },
        "Export": {
            "type": "object",
            "required": ["total_songs", "exported_at", "songs"],
            "properties": {
                "total_songs": {"type": "integer", "minimum": 0},
                "exported_at": _TIMESTAMP,
                "songs": {"type": "array", "items": _ref("ExportSong")},
            },
            "additionalProperties": True,
        },
        "Success": {
            "type": "object",
            "required": ["success", "message"],
            "properties": {"success": {"type": "boolean", "const": True}, "message": {"type": "string"}},
            "additionalProperties": True,
        },
        "ClearResult": {
            "allOf": [_ref("Success"), {
                "type": "object",
                "required": ["removed"],
                "properties": {"removed": {"type": "integer", "minimum": 0}},
            }],
        },
        "VerifyResult": {
            "allOf": [_ref("Success"), {
                "type": "object",
                "required": ["song"],
                "properties": {"song": _ref("CacheRow")},
            }],
        },
        "AnalyzeUrlRequest": {
            "type": "object",
            "required": ["url"],
            "properties": {
                "url": {"type": "string", "format": "uri", "minLength": 1,
                        "description": "http or https only; private, loopback, link-local and metadata "
                                       "addresses are refused (checked again on every redirect)."},
                "title": {"type": "string", "maxLength": MAX_TEXT_LENGTH},
                "artist": {"type": "string", "maxLength": MAX_TEXT_LENGTH},
            },
            "additionalProperties": True,
            "examples": [{"url": "https://example.com/preview.m4a", "title": "Halo", "artist": "Beyoncé"}],
        },
        "UploadForm": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream",
                         "description": "The audio file (WAV, FLAC, OGG/Vorbis, MP3, AAC in .m4a/.mp4)."},
                "title": {"type": "string", "maxLength": MAX_TEXT_LENGTH},
                "artist": {"type": "string", "maxLength": MAX_TEXT_LENGTH},
            },
        },
        "VerifyRequest": {
            "type": "object",
            "description": "Which song (`id` or `url`, the URL or `upload:sha256:<hex>` from /cache) and the "
                           "corrections. Keys are normalized (\"Bb minor\" -> \"A# Minor\").",
            "anyOf": [{"required": ["id"]}, {"required": ["url"]}],
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "url": {"type": "string", "minLength": 1},
                "manual_bpm": _nullable({"type": "number", "minimum": MIN_BPM, "maximum": MAX_BPM}),
                "manual_key": _nullable({"type": "string",
                                         "description": "A key: tonic (sharps, flats, ♯/♭) then major/minor "
                                                        "(maj, min, m), e.g. \"Bb Minor\", \"F#m\", \"C\"."}),
                "bpm_notes": _nullable({"type": "string", "maxLength": MAX_NOTES_LENGTH}),
            },
            "additionalProperties": True,
            "examples": [{"id": 1, "manual_bpm": 87, "manual_key": "Bb Minor", "bpm_notes": "half-time"}],
        },
    }


def _headers() -> dict[str, Any]:
    return {
        "Retry-After": {"description": "Seconds to wait before retrying.", "required": True,
                        "schema": {"type": "integer", "minimum": 0}},
        "X-RateLimit-Limit": {"description": "Requests allowed per minute (when the rate limiter is on).",
                              "schema": {"type": "integer", "minimum": 1}},
        "X-RateLimit-Remaining": {"description": "Requests left in the current window.",
                                  "schema": {"type": "integer", "minimum": 0}},
        "X-RateLimit-Reset": {"description": "Seconds until the window frees a request.",
                              "schema": {"type": "integer", "minimum": 0}},
        "X-Request-ID": {"description": "The request's id (the client's own X-Request-ID when it is a safe "
                                        "token), also in the server's log line for the request.",
                         "schema": {"type": "string"}},
    }


# -- parameters ---------------------------------------------------------------------------------------------------

_DETAIL = {
    "name": "detail", "in": "query", "required": False,
    "description": "`1`, `true` or `yes` adds `detail` (onset envelope, beat times, chroma, key correlations).",
    "schema": {"type": "string", "enum": ["0", "1", "true", "false", "yes", "no"]},
}
_LIMIT = {"name": "limit", "in": "query", "required": False,
          "description": f"Rows per page (400 outside 1..{MAX_PAGE}).",
          "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE}}
_OFFSET = {"name": "offset", "in": "query", "required": False, "description": "Rows to skip.",
           "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0}}
_SORT = {"name": "sort", "in": "query", "required": False,
         "schema": {"type": "string", "enum": list(SORT_NAMES), "default": DEFAULT_SORT}}
_BEFORE = {"name": "before", "in": "query", "required": False,
           "description": "Keyset paging: only rows whose id is below this one (pass the last id of the previous "
                          "page). Page 100 costs what page 1 does; a large offset must skip every earlier match.",
           "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}}
_QUERY = {"name": "q", "in": "query", "required": True,
          "description": "Text to find anywhere in titles or artists, case-insensitively (Unicode: "
                         "\"É\" finds \"Beyoncé\"), from one character (e.g. one CJK character) up; "
                         "400 when missing or blank.",
          "schema": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_LENGTH, "pattern": r"\S"},
          "example": "beyoncé"}
_SONG_ID = {"name": "id", "in": "path", "required": True, "description": "The cached song's id.",
            "schema": {"type": "integer", "minimum": 1, "maximum": 2 ** 63 - 1}, "example": 1}
_SHA256 = {"name": "digest", "in": "path", "required": True,
           "description": "The SHA-256 of the audio file's bytes, 64 hex digits (the first word of `sha256sum FILE`).",
           "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
           "example": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
_TITLE_HEADER = {"name": "X-Song-Title", "in": "header", "required": False,
                 "description": "Title, UTF-8 bytes allowed (raw body uploads only).",
                 "schema": {"type": "string", "maxLength": MAX_TEXT_LENGTH}}
_ARTIST_HEADER = {"name": "X-Song-Artist", "in": "header", "required": False,
                  "description": "Artist, UTF-8 bytes allowed (raw body uploads only).",
                  "schema": {"type": "string", "maxLength": MAX_TEXT_LENGTH}}

_REQUEST_ID = {"name": "X-Request-ID", "in": "header", "required": False,
               "description": "A request id of the client's own (1-64 of A-Z a-z 0-9 . _ -), echoed in the "
                              "X-Request-ID response header and logged; any other value is replaced by a new id.",
               "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}, "example": "ios-7f3a9c"}

_KEYED = [{}, {"ApiKeyAuth": []}]  # development mode: no key; production mode: X-API-Key required
_PUBLIC: list[dict[str, list[str]]] = []


def _op(operation_id: str, summary: str, responses: dict[str, Any], *, tags: list[str], description: str = "",
        parameters: list[dict[str, Any]] | None = None, body: dict[str, Any] | None = None,
        security: list[dict[str, list[str]]] | None = None, admin: bool = False) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": tags}
    if description:
        operation["description"] = description
    operation["parameters"] = [*(parameters or []), _REQUEST_ID]
    if body is not None:
        operation["requestBody"] = body
    operation["security"] = _KEYED if security is None else security
    if admin:
        operation["x-admin-key-required"] = True
    operation["responses"] = responses
    return operation


# -- the document -------------------------------------------------------------------------------------------------

def openapi_spec(version: str) -> dict[str, Any]:
    """The complete OpenAPI 3.1 document for this server at `version` (a fresh dict on every call)."""
    analyze_extra = {
        400: ("The request cannot be analyzed as sent.", ["invalid_parameter", "empty_audio"]),
        413: ("Too large.", ["payload_too_large"]),
        415: ("The audio is not in a supported format (WAV, FLAC, OGG/Vorbis, MP3, AAC in .m4a/.mp4).",
              ["unsupported_format"]),
        422: ("The audio could not be analyzed (damaged, truncated, silent, too short, too slow).", _DECODE_422),
    }
    analysis_ok = _ok("The analysis (from the cache when `cached` is true).", _ref("Analysis"))

    url_extra = dict(analyze_extra)
    url_extra[400] = ("Bad JSON, no url, a non-http(s) or unusable URL, a blocked (private, loopback, link-local, "
                      "metadata) address, or too many redirects.",
                      analyze_extra[400][1] + ["invalid_json", "missing_url"] + _FETCH_400)
    url_extra[413] = ("The request body or the download is too large.", ["payload_too_large", "download_too_large"])
    url_extra[422] = ("The audio could not be analyzed (damaged, truncated, silent, too short, too slow), or the "
                      "URL's host does not resolve.", _DECODE_422 + ["unresolvable_host"])
    url_extra[502] = ("The download failed (the server refused, reset the connection or answered an error).",
                      ["download_failed"])
    url_extra[504] = ("The download did not finish in time.", ["download_timeout"])

    data_extra = dict(analyze_extra)
    data_extra[400] = ("No audio, a multipart form without a file, or bad metadata.",
                       analyze_extra[400][1] + ["missing_file"])

    by_hash_extra = {
        400: ("The path does not end with 64 hex digits, or bad metadata.", ["invalid_sha256", "invalid_parameter"]),
        404: ("No analysis of audio with this SHA-256 is cached yet: upload the file to POST /analyze_data.",
              ["not_cached"]),
    }
    cache_extra = {400: ("Invalid limit, offset or sort.", ["invalid_parameter"])}
    search_extra = {400: ("No query, or invalid limit, offset or q.", ["missing_query", "invalid_parameter"])}
    verify_extra = {
        400: ("Bad JSON, no song given, or an invalid id, manual_bpm (20..400), manual_key or bpm_notes.",
              ["invalid_json", "missing_song", "invalid_parameter"]),
        404: ("No cached song has that id or URL.", ["not_found"]),
    }
    delete_extra = {404: ("No cached song has that id.", ["not_found"])}

    raw_audio = {"schema": {"type": "string", "format": "binary"}}
    upload_body = {
        "required": True,
        "description": "The audio bytes as the body (`application/octet-stream` or `audio/*`; any other "
                       "non-multipart type is also read as audio), with title and artist in the X-Song-Title and "
                       "X-Song-Artist headers; or a multipart form (`file`, `title`, `artist`). Cached by the "
                       "SHA-256 of the audio bytes.",
        "content": {
            "application/octet-stream": raw_audio,
            "audio/*": raw_audio,
            "multipart/form-data": {
                "schema": _ref("UploadForm"),
                "encoding": {"file": {"contentType": "application/octet-stream, audio/*"}},
            },
        },
    }

    paths = {
        "/health": {"get": _op(
            "health", "Liveness: status, version, uptime (no key needed in any mode)",
            _responses(_ok("The server is up.", _ref("Health")), guarded=False, storage=False),
            tags=["service"], security=_PUBLIC)},
        "/openapi.json": {"get": _op(
            "openapi", "This OpenAPI 3.1 document (no key needed in any mode)",
            _responses(_ok("The document.", {
                "type": "object", "required": ["openapi", "info", "paths"],
                "properties": {"openapi": {"type": "string", "pattern": r"^3\.1\.\d+$"}},
            }), guarded=False, storage=False),
            tags=["service"], security=_PUBLIC)},
        "/": {"get": _op(
            "dashboard", "The web dashboard: an HTML page that drives this API from the browser (no key needed to "
                         "load it)",
            _responses({"description": "An HTML page.", "headers": dict(_COMMON_HEADERS),
                        "content": {"text/html": {"schema": {"type": "string"}}}}, guarded=False, storage=False),
            tags=["service"], security=_PUBLIC)},
        "/docs": {"get": _op(
            "docs", "This description rendered as a web page, with a runnable example per endpoint (no key needed)",
            _responses({"description": "An HTML page.", "headers": dict(_COMMON_HEADERS),
                        "content": {"text/html": {"schema": {"type": "string"}}}}, guarded=False, storage=False),
            tags=["service"], security=_PUBLIC)},
        "/stats": {"get": _op(
            "stats", "Cache counters: analyses, hits, misses, hit rate (a string), cached songs",
            _responses(_ok("The counters.", _ref("Stats"))), tags=["cache"])},
        "/metrics": {"get": _op(
            "metrics", "Prometheus metrics (text format): requests, latency, analysis time, cache outcomes, queue "
                       "depth, live pool workers, rate-limit rejections; needs an admin key in production",
            _responses({"description": "Prometheus text exposition format 0.0.4.",
                        "headers": dict(_COMMON_HEADERS),
                        "content": {"text/plain": {"schema": {"type": "string"}}}}, admin=True, storage=False),
            tags=["service"], admin=True)},
        "/analyze": {"post": _op(
            "analyzeUrl", "Download the audio at a URL and analyze it (cached by the normalized URL)",
            _responses(analysis_ok, state_changing=True, extra=url_extra, extra_503=_EXECUTOR_503),
            tags=["analysis"], parameters=[_DETAIL],
            body={"required": True, "content": _json(_ref("AnalyzeUrlRequest"))})},
        "/analyze_data": {"post": _op(
            "analyzeData", "Analyze uploaded audio: the raw body or a multipart form",
            _responses(analysis_ok, state_changing=True, extra=data_extra, extra_503=_EXECUTOR_503),
            tags=["analysis"], parameters=[_DETAIL, _TITLE_HEADER, _ARTIST_HEADER], body=upload_body)},
        "/analyze_data/sha256/{digest}": {"get": _op(
            "analyzeDataByHash", "The cached analysis of audio by its SHA-256, without uploading it",
            _responses(analysis_ok, extra=by_hash_extra),
            description="Ask before uploading: a client that has the file sends its SHA-256 and gets exactly what a "
                        "repeat upload of the same bytes would answer (a cache hit, counted in /stats), or 404 "
                        "`not_cached`, and then uploads it to POST /analyze_data. X-Song-Title and X-Song-Artist "
                        "fill in a cached song's unknown title or artist, as on an upload.",
            tags=["analysis"], parameters=[_SHA256, _DETAIL, _TITLE_HEADER, _ARTIST_HEADER])},
        "/cache": {"get": _op(
            "listCache", "The cached analyses, a page at a time",
            _responses(_ok("A page of rows.", _ref("CacheRows")), extra=cache_extra),
            tags=["cache"], parameters=[_LIMIT, _OFFSET, _SORT])},
        "/cache/search": {"get": _op(
            "searchCache", "Cached analyses whose title or artist contains q (case-insensitive)",
            _responses(_ok("A page of matching rows, newest first.", _ref("CacheRows")), extra=search_extra),
            tags=["cache"], parameters=[_QUERY, _LIMIT, _OFFSET, _BEFORE])},
        "/cache/export": {"get": _op(
            "exportCache", "Every cached song with the user's corrections applied, for backup or a spreadsheet",
            _responses(_ok("The export.", _ref("Export"))), tags=["cache"])},
        "/cache/{id}": {"delete": _op(
            "deleteCached", "Delete one cached analysis (admin key in production mode)",
            _responses(_ok("Deleted.", _ref("Success")), admin=True, state_changing=True, extra=delete_extra),
            tags=["cache"], parameters=[_SONG_ID], admin=True)},
        "/cache/clear": {"post": _op(
            "clearCache", "Delete every cached analysis (admin key in production mode)",
            _responses(_ok("Cleared.", _ref("ClearResult")), admin=True, state_changing=True),
            tags=["cache"], admin=True)},
        "/verify": {"post": _op(
            "verify", "Mark a cached song as verified and store manual corrections (admin key in production)",
            _responses(_ok("Verified; the updated row.", _ref("VerifyResult")), admin=True, state_changing=True,
                       extra=verify_extra),
            tags=["cache"], body={"required": True, "content": _json(_ref("VerifyRequest"))}, admin=True)},
    }

    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "EssentiaServer",
            "version": version,
            "summary": "Self-hosted music analysis: tempo, key, energy, danceability, acousticness.",
            "description": (
                "Every response is JSON. Every error is `{\"error\": \"<stable_code>\", \"message\": \"...\"}` with "
                "a 4xx status for the client's mistakes and 5xx only for the server's own faults. No number is "
                "ever NaN or Infinity.\n\n"
                "**Modes.** Development mode (the default) needs no key, answers only requests addressed to a "
                "loopback name and refuses cross-site state-changing requests (403). Production mode "
                "(`ESSENTIA_PRODUCTION=1`) needs an `X-API-Key` header on every endpoint but /health and "
                "/openapi.json (401 without one, 403 for an unknown or deactivated key); deleting, clearing and "
                "verifying need an admin key (operations marked `x-admin-key-required`). Each key has a rate "
                "limit (429 with Retry-After and X-RateLimit-*) and a daily quota (429 `daily_quota_exceeded`)."
            ),
            "license": {"name": "Proprietary", "identifier": "LicenseRef-Proprietary"},
        },
        "tags": [
            {"name": "analysis", "description": "Analyze audio by URL or upload."},
            {"name": "cache", "description": "Browse, search, export, correct and delete cached analyses."},
            {"name": "service", "description": "Liveness and this description."},
        ],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "headers": _headers(),
            "securitySchemes": {
                "ApiKeyAuth": {
                    "type": "apiKey", "in": "header", "name": "X-API-Key",
                    "description": "Production mode only (ESSENTIA_PRODUCTION=1); development mode ignores it. "
                                   "Created with `flask --app backend keys create NAME [--admin]`.",
                },
            },
        },
    }
