"""Request hooks around every view: a request id and one structured log line per request, security headers,
and, in development mode (no keys), refusal of cross-site and DNS-rebinding requests so that a web page the
developer visits cannot drive the local server."""
from __future__ import annotations

import itertools
import json
import logging
import os
import re
import secrets
import time
from urllib.parse import urlsplit

from flask import Flask, current_app, g, request

from backend.web.errors import ApiError

log = logging.getLogger("essentia.requests")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


def _reset_request_ids() -> None:
    global _id_prefix, _id_counter
    _id_prefix, _id_counter = secrets.token_hex(8), itertools.count()


_reset_request_ids()
os.register_at_fork(after_in_child=_reset_request_ids)  # forked workers must not repeat each other's ids


def new_request_id() -> str:
    """32 hex characters, unique rather than secret: a random per-process prefix and a counter. (uuid4 cost a
    getrandom system call per request; next() on itertools.count is atomic, so threads get distinct ids.)"""
    return f"{_id_prefix}{next(_id_counter):016x}"


def register_request_hooks(app: Flask) -> None:
    app.before_request(_start_request)
    app.after_request(_finish_request)


def _start_request():
    g.started = time.perf_counter()
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID.match(incoming) else new_request_id()
    settings = current_app.extensions["essentia"].settings
    if not settings.production:
        _refuse_foreign_pages(settings)


def _hostname(host_header: str) -> str:
    return (urlsplit("//" + host_header).hostname or "").lower()


def _refuse_foreign_pages(settings) -> None:
    """Development mode has no keys, so only the developer's own tools may talk to it."""
    allowed_hosts = _LOOPBACK_NAMES | {settings.host.lower()}
    if _hostname(request.host) not in allowed_hosts:
        # A page on another name that resolves to us (DNS rebinding) must not read or change anything.
        raise ApiError(403, "host_not_allowed",
                       f"Development mode answers only requests to {', '.join(sorted(allowed_hosts))}.")
    if request.method not in _STATE_CHANGING:
        return
    origin = request.headers.get("Origin")
    if origin and origin not in settings.cors_origins and urlsplit(origin).netloc.lower() != request.host.lower():
        raise ApiError(403, "cross_site_request",
                       "Cross-site requests cannot change this server in development mode.")
    if not origin and request.headers.get("Sec-Fetch-Site") == "cross-site":
        raise ApiError(403, "cross_site_request",
                       "Cross-site requests cannot change this server in development mode.")


def _finish_request(response):
    # One pass over the headers instead of a scan per setdefault; a view's own value still wins.
    present = {name.lower() for name, _ in response.headers}
    for name, value in SECURITY_HEADERS.items():
        if name.lower() not in present:
            response.headers.add(name, value)
    request_id = getattr(g, "request_id", None) or new_request_id()
    response.headers["X-Request-ID"] = request_id
    key = getattr(g, "api_key", None)
    started = getattr(g, "started", None)
    elapsed = time.perf_counter() - started if started else 0.0
    endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
    current_app.extensions["essentia"].metrics.observe_request(endpoint, request.method, response.status_code,
                                                               elapsed)
    if not log.isEnabledFor(logging.INFO):
        return response  # formatting the line costs more than the rest of a cache hit's bookkeeping
    log.info(json.dumps({
        "request_id": request_id,
        "method": request.method,
        "endpoint": request.path,
        "status": response.status_code,
        "latency_ms": round(elapsed * 1000, 2),
        "key": key.prefix if key is not None else None,
        "client": request.remote_addr,
    }, ensure_ascii=False))
    return response
