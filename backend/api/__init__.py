"""HTTP blueprints: thin layers that parse a request, call the service or store, and serialize the answer."""
from flask import Flask


def register_blueprints(app: Flask) -> None:
    from backend.api import analyze, cache, dashboard, docs, health

    for module in (health, analyze, cache, docs, dashboard):
        app.register_blueprint(module.bp)
