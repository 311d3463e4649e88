"""GET /openapi.json: the OpenAPI 3.1 description of this API (backend/openapi.py), public in every mode so that
clients can discover how to authenticate."""
from __future__ import annotations

from flask import Blueprint, jsonify

from backend import __version__
from backend.openapi import openapi_spec

bp = Blueprint("docs", __name__)


@bp.get("/openapi.json")
def openapi_document():
    return jsonify(openapi_spec(__version__))
