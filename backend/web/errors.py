"""Errors are data: every error response is JSON with a stable `error` code and a `message` a person can act on.

Every error a client may see derives from ServiceError, which carries the HTTP status, the code and the
message (and, when needed, response headers and extra JSON fields): ApiError (raised by the web layer and the
service), FetchError (backend/audio/fetch.py), AudioDecodeError (backend/audio/decode.py), ExecutorError
(backend/runtime/executor.py) and SharedStateUnavailable (backend/runtime/redis_state.py). One handler renders
them all. This module imports Flask only inside the functions that need it, so that the audio and runtime
modules, which run in the analysis processes too, can derive from ServiceError without loading Flask there.
"""
from __future__ import annotations

import logging
import queue
import sqlite3
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from flask import Flask, Response

log = logging.getLogger(__name__)

# Codes for the HTTP errors Flask/Werkzeug raise themselves (unknown route, wrong method, body too large...).
_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    408: "request_timeout", 413: "payload_too_large", 415: "unsupported_media_type", 429: "rate_limited",
}


class ServiceError(Exception):
    """An error the client should see. Subclasses set `status`, `code` and `message` (as class attributes or
    in their constructor); `headers` and `fields` add response headers and JSON fields."""

    status: int = 500
    code: str = "internal_error"
    message: str = "The server hit an unexpected error; it has been logged."

    @property
    def headers(self) -> Mapping[str, str]:
        return {}

    @property
    def fields(self) -> Mapping[str, Any]:
        return {}

    def to_response(self) -> Response:
        from flask import jsonify

        response = jsonify(error=self.code, message=self.message, **self.fields)
        response.status_code = self.status
        response.headers.update(self.headers)
        return response


class ApiError(ServiceError):
    """A ServiceError made on the spot: ApiError(404, "not_found", "No cached song has id 3.")."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 **fields: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self._headers = headers or {}
        self._fields = fields

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def fields(self) -> Mapping[str, Any]:
        return self._fields


def register_error_handlers(app: Flask) -> None:
    from werkzeug.exceptions import HTTPException

    # Here, not at module level: the analysis processes import this module for ServiceError, and the storage
    # package would bring Flask into them.
    from backend.storage.base import StorageUnavailable

    app.register_error_handler(ServiceError, lambda error: error.to_response())

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        message = error.description or error.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"The request body is larger than this server accepts ({limit // (1024 * 1024)} MB)." \
                if limit else "The request body is too large."
        response = ApiError(status, _HTTP_CODES.get(status, "http_error"), message).to_response()
        if status == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(sqlite3.OperationalError)
    @app.errorhandler(queue.Empty)
    @app.errorhandler(StorageUnavailable)
    def storage_error(error: Exception):
        # Disk full, read-only file, a lock held too long, every pooled connection busy, the database server
        # unreachable: the server's condition, not the client's mistake. The transaction was rolled back, so
        # nothing stored is lost; the pool reconnects by itself when the server is back.
        log.error("storage unavailable: %s", error)
        retry_after = getattr(error, "retry_after", 5)
        return ApiError(503, "storage_unavailable",
                        "The database cannot take this request right now (busy, full, read-only or unreachable); "
                        "nothing already stored was lost. Try again shortly.",
                        headers={"Retry-After": str(retry_after)}).to_response()

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        # The details go to the log, never to the client.
        log.exception("unhandled error")
        return ApiError(500, "internal_error", "The server hit an unexpected error; it has been logged.").to_response()
