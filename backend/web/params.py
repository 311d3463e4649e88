"""Parsing and validating request parameters into plain values, with 400s that say what was wrong."""
from __future__ import annotations

import json
import re
from typing import Any

from flask import request

from backend.web.errors import ApiError

MAX_TEXT_LENGTH = 500
# NUL and other C0 controls have no place in titles or queries (and NUL cuts strings short in SQLite's FTS).
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def int_arg(name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"'{name}' must be a whole number, got {raw!r}.") from None
    if not minimum <= value <= maximum:
        raise ApiError(400, "invalid_parameter", f"'{name}' must be between {minimum} and {maximum}, got {value}.")
    return value


def optional_text(value: Any, name: str, *, max_length: int = MAX_TEXT_LENGTH) -> str | None:
    """A trimmed string, or None when absent or blank; 400 for a non-string or an over-long one."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, "invalid_parameter", f"'{name}' must be a string.")
    value = value.strip()
    if _CONTROL_CHARACTERS.search(value):
        raise ApiError(400, "invalid_parameter", f"'{name}' contains control characters.")
    if len(value) > max_length:
        raise ApiError(400, "invalid_parameter", f"'{name}' is longer than {max_length} characters.")
    return value or None


def header_text(name: str) -> str | None:
    """A header's value as UTF-8 text. WSGI hands headers over as latin-1, so raw UTF-8 bytes sent by a client
    ("Beyoncé", "坂本龍一") arrive mis-decoded; undo that where the bytes are valid UTF-8."""
    raw = request.headers.get(name)
    if raw is None:
        return None
    try:
        raw = raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    return optional_text(raw, name)


def json_object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json",
                       "The body must be a JSON object (Content-Type: application/json), "
                       'e.g. {"url": "https://example.com/preview.m4a"}.')
    if _surrogate_free(request.get_data()):
        return body
    try:
        # JSON may escape lone UTF-16 surrogates ("\ud800") that no UTF-8 text, URL or database can hold.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "invalid_json", "The JSON body contains text that is not valid Unicode.") from None
    return body


def _surrogate_free(raw: bytes) -> bool:
    """True when the body cannot hold a lone surrogate, so the full check can be skipped: a surrogate needs a
    \\u escape or non-ASCII bytes, and a body with NUL bytes may be UTF-16/32, where escapes look different."""
    return raw.isascii() and b"\\u" not in raw and b"\x00" not in raw


def wants_detail() -> bool:
    if not request.query_string:
        return False  # most requests have no query string; parsing request.args for nothing costs more
    return request.args.get("detail", "").lower() in ("1", "true", "yes")
