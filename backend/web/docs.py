"""GET /openapi.json: the OpenAPI 3.1 description of this API (backend/web/openapi.py), public in every mode so that
clients can discover how to authenticate."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template, request

from backend import __version__
from backend.web.openapi import openapi_spec

bp = Blueprint("docs", __name__)


@bp.get("/openapi.json")
def openapi_document():
    return jsonify(openapi_spec(__version__))


# A runnable example per operation, shown on /docs ("try it" from a terminal). {base} is this server's address.
TRY_IT = {
    "dashboard": 'open {base}/   # in a browser',
    "health": 'curl -s {base}/health',
    "openapi": 'curl -s {base}/openapi.json',
    "stats": 'curl -s {key}{base}/stats',
    "metrics": 'curl -s {key}{base}/metrics',
    "analyzeUrl": ("curl -s {key}-H 'Content-Type: application/json' \\\n"
                   "     -d '{{\"url\": \"https://example.com/preview.m4a\", \"title\": \"Halo\", "
                   "\"artist\": \"Beyoncé\"}}' {base}/analyze"),
    "analyzeData": ("curl -s {key}--data-binary @song.m4a -H 'Content-Type: audio/mp4' \\\n"
                    "     -H 'X-Song-Title: Halo' -H 'X-Song-Artist: Beyoncé' '{base}/analyze_data?detail=1'\n"
                    "curl -s {key}-F file=@song.mp3 -F title=Halo -F artist=Beyoncé {base}/analyze_data"),
    "analyzeDataByHash": ("curl -s {key}{base}/analyze_data/sha256/$(sha256sum song.m4a | cut -d' ' -f1)\n"
                          "# 404 not_cached: upload it once with POST /analyze_data"),
    "listCache": "curl -s {key}'{base}/cache?limit=20&offset=0&sort=newest'",
    "searchCache": "curl -s {key}'{base}/cache/search?q=beyonce'",
    "exportCache": "curl -s {key}{base}/cache/export > cache.json",
    "deleteCached": "curl -s {key}-X DELETE {base}/cache/3",
    "clearCache": "curl -s {key}-X POST {base}/cache/clear",
    "verify": ("curl -s {key}-H 'Content-Type: application/json' \\\n"
               "     -d '{{\"id\": 3, \"manual_bpm\": 87, \"manual_key\": \"Bb Minor\", \"bpm_notes\": \"half-time\"}}' "
               "{base}/verify"),
}

DOCS_CSP = "default-src 'none'; style-src 'self'; frame-ancestors 'none'"


def _operations(spec: dict) -> list[dict]:
    """The operations in document order, flattened for the template."""
    operations = []
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            responses = []
            for status, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                codes = schema.get("allOf", [{}, {}])[1].get("properties", {}).get("error", {}).get("enum", []) \
                    if "allOf" in schema else []
                responses.append({"status": status, "description": response.get("description", ""),
                                  "codes": codes})
            operations.append({
                "method": method.upper(), "path": path, "id": operation["operationId"],
                "summary": operation.get("summary", ""), "description": operation.get("description", ""),
                "admin": operation.get("x-admin-key-required", False),
                "public": operation.get("security") == [{}] or not operation.get("security"),
                "parameters": [p for p in operation.get("parameters", []) if "name" in p],
                "body_types": list(operation.get("requestBody", {}).get("content", {})),
                "responses": responses,
                "example": TRY_IT.get(operation["operationId"], ""),
            })
    return operations


@bp.get("/docs")
def docs_page():
    """The OpenAPI description rendered for people: every endpoint, its parameters and answers, and an example."""

    spec = openapi_spec(__version__)
    production = current_app.extensions["essentia"].settings.production
    key = "-H \"X-API-Key: $ESSENTIA_KEY\" " if production else ""
    operations = _operations(spec)
    base = request.host_url.rstrip("/")
    for operation in operations:
        operation["example"] = operation["example"].format(base=base, key="" if operation["public"] else key)
    response = current_app.make_response(render_template("docs.html", spec=spec, operations=operations,
                                                          production=production))
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response
