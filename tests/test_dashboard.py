"""The dashboard page through the Flask test client: served at / with a strict Content-Security-Policy, its CSS
and JS served from /static, nothing loaded from another site, no inline script, data never written as HTML.
(tests/test_dashboard_browser.py drives it in a real browser.)"""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from backend.web import dashboard

STATIC = Path(dashboard.__file__).resolve().parent.parent / "static"
# The one absolute URL the page's code may contain: the SVG namespace, an identifier that is never fetched.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


@pytest.fixture
def dash_app(make_app):
    def factory(**overrides):
        app = make_app(**overrides)
        if "dashboard" not in app.blueprints:  # until backend/web/__init__.py registers it
            app.register_blueprint(dashboard.bp)
        return app
    return factory


class _Page(HTMLParser):
    """Collects the tags of a page: scripts, styles, links, attributes."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.inline_script = False
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_script = True


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def _csp(response) -> dict[str, list[str]]:
    policy = {}
    for part in response.headers["Content-Security-Policy"].split(";"):
        words = part.split()
        if words:
            policy[words[0]] = words[1:]
    return policy


def test_the_page_is_html_with_a_strict_policy(dash_app):
    response = dash_app().test_client().get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    policy = _csp(response)
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "'self'" in policy["img-src"]
    for sources in policy.values():
        assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "http:", "https:"} & set(sources)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_the_json_api_keeps_its_own_policy(dash_app):
    response = dash_app().test_client().get("/health")
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_the_page_loads_only_its_own_files(dash_app):
    client = dash_app().test_client()
    html = client.get("/").get_data(as_text=True)
    page = _parse(html)
    assert not page.inline_script
    assert not re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE), "inline event handlers break under the CSP"
    assert " style=" not in html, "inline styles break under the CSP"
    for tag, attrs in page.tags:  # everything the page loads or links to is on this server
        for name in ("src", "href", "action", "srcset", "poster", "data", "formaction"):
            if name in attrs:
                assert re.match(r"^(/[^/]|#|data:,$)", attrs[name]), (tag, name, attrs[name])

    scripts = [attrs["src"] for tag, attrs in page.tags if tag == "script"]
    styles = [attrs["href"] for tag, attrs in page.tags if tag == "link" and attrs.get("rel") == "stylesheet"]
    assert len(scripts) == 1 and len(styles) == 1
    for url, mimetype in ((scripts[0], "text/javascript"), (styles[0], "text/css")):
        assert url.startswith("/static/")
        served = client.get(url)
        assert served.status_code == 200
        assert served.mimetype == mimetype
        assert len(served.data) > 1000


def test_static_code_fetches_nothing_from_elsewhere_and_writes_no_html():
    js = (STATIC / "dashboard.js").read_text(encoding="utf-8")
    css = (STATIC / "dashboard.css").read_text(encoding="utf-8")
    assert re.findall(r"https?://[^\s\"'`]+", js) == [SVG_NAMESPACE]
    assert not re.search(r"https?://", css)
    assert "@import" not in css
    # User-supplied titles must never become markup: text goes in with textContent only.
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink
    # The key stays in sessionStorage and in a header, never in a URL or in localStorage.
    assert "sessionStorage" in js and "localStorage" not in js
    assert "X-API-Key" in js
    assert not re.search(r"[?&](api_?key|key)=", js, re.IGNORECASE)


def test_every_id_the_script_uses_is_in_the_page(dash_app):
    html = dash_app().test_client().get("/").get_data(as_text=True)
    ids = {attrs["id"] for _, attrs in _parse(html).tags if "id" in attrs}
    js = (STATIC / "dashboard.js").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\(\"([a-z0-9-]+)\"\)", js))
    assert used and used <= ids, used - ids


def test_the_script_calls_only_documented_endpoints():
    js = (STATIC / "dashboard.js").read_text(encoding="utf-8")
    paths = set(re.findall(r"(?:api|runAnalysis)\(\s*[`\"](/[a-z_/]*)", js))
    assert paths == {"/health", "/stats", "/analyze_data", "/analyze", "/cache/export", "/verify", "/cache/"}
    assert "/cache?" in js and "/cache/search?" in js


def test_development_mode_hides_the_key_form(dash_app):
    html = dash_app().test_client().get("/").get_data(as_text=True)
    assert 'data-production="0"' in html
    form = next(attrs for tag, attrs in _parse(html).tags if attrs.get("id") == "key-form")
    assert "hidden" in form


def test_production_mode_serves_the_page_without_a_key_and_asks_for_one(dash_app):
    client = dash_app(production=True).test_client()
    response = client.get("/")
    assert response.status_code == 200  # the page holds no data; every call it makes needs the key
    html = response.get_data(as_text=True)
    assert 'data-production="1"' in html
    form = next(attrs for tag, attrs in _parse(html).tags if attrs.get("id") == "key-form")
    assert "hidden" not in form
    key_input = next(attrs for tag, attrs in _parse(html).tags if attrs.get("id") == "api-key")
    assert key_input["type"] == "password"
    assert client.get("/stats").status_code == 401
    assert client.get(next(a["src"] for t, a in _parse(html).tags if t == "script")).status_code == 200


def test_only_get_is_served_at_the_root(dash_app):
    client = dash_app().test_client()
    assert client.post("/").status_code == 405
