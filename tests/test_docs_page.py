"""/docs: the OpenAPI description rendered for people, self-hosted (no CDN), with an example per endpoint."""
from __future__ import annotations

import re


def test_docs_page_lists_every_operation_with_an_example(client):
    spec = client.get("/openapi.json").get_json()
    response = client.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            assert f'id="{operation["operationId"]}"' in html, (method, path)
    documented = [op["operationId"] for methods in spec["paths"].values() for op in methods.values()]
    without_example = {"docs"}  # the page itself: you are looking at it
    assert html.count("<h3>Try it</h3>") == len(set(documented) - without_example)
    assert "curl -s http://localhost/health" in html
    assert "X-API-Key: $ESSENTIA_KEY" not in html             # development mode needs no key
    assert not re.search(r"(src|href)=\"https?://", html)      # nothing loaded from elsewhere
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert client.get("/static/docs.css").status_code == 200


def test_docs_page_shows_the_key_header_in_production(make_app):
    client = make_app(production=True).test_client()
    html = client.get("/docs").get_data(as_text=True)   # public, like /openapi.json: clients learn how to log in
    assert "production mode" in html and "X-API-Key: $ESSENTIA_KEY" in html
    health = html.split('id="health"')[1].split("</section>")[0]
    assert "X-API-Key" not in health
