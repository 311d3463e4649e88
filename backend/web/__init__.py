"""The HTTP layer. Blueprints (analyze, cache, health, docs, dashboard) are thin: they parse a request (params),
call the service or the store, and serialize the answer (responses). Around them: the key check, rate limit and
quota (auth), the request hooks (ids, log line, headers, development-mode guards), errors as JSON (errors), the
OpenAPI document (openapi) and Prometheus metrics (metrics)."""
from flask import Flask


def register_blueprints(app: Flask) -> None:
    from backend.web import analyze, cache, dashboard, docs, health

    for module in (health, analyze, cache, docs, dashboard):
        app.register_blueprint(module.bp)
