"""GET /: the web dashboard, one HTML page with its own CSS and JS from backend/static (no build step, no CDN).

The page holds no data: everything it shows comes from the public JSON API, called by dashboard.js with the
same X-API-Key a script would send. So the page itself is public in every mode, like /health; in production
mode it asks for a key and keeps it in sessionStorage, never in the URL.

The JSON API answers with `Content-Security-Policy: default-src 'none'` (backend/web/hooks.py sets it only when
a response has none); this page sets its own policy, as strict as a working page allows: scripts, styles and
API calls from this origin only, no inline script or style, nothing from another site, no framing.
"""
from __future__ import annotations

from flask import Blueprint, current_app, make_response, render_template

from backend import __version__

bp = Blueprint("dashboard", __name__)

DASHBOARD_CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",      # data: only for the empty favicon (so the browser does not ask for one)
    "connect-src 'self'",        # fetch() to this API and nothing else
    "form-action 'none'",        # forms are handled by the script, never submitted
    "base-uri 'none'",
    "frame-ancestors 'none'",
])


@bp.get("/")
def dashboard():
    settings = current_app.extensions["essentia"].settings
    html = render_template("dashboard.html", version=__version__, production=settings.production)
    response = make_response(html)
    response.headers["Content-Security-Policy"] = DASHBOARD_CSP
    response.mimetype = "text/html"
    return response
