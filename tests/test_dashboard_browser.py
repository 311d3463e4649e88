"""The dashboard in a real browser: gunicorn (gunicorn.conf.py, a real process pool) on a free port, Debian's
chromium driven headless by Playwright for Python. Development mode: upload synthesized clips, see the result
and the charts, hit the cache, search, correct a BPM, export, sort, delete, analyze a URL; screenshots go to
test-artifacts/screenshots/ (docs/screenshots/ with ESSENTIA_UPDATE_SCREENSHOTS=1). Production mode: the page asks for a key, shows 401/403 readably, and sends the key (kept in
sessionStorage) as X-API-Key, never in a URL.

The browser is the system's (/usr/bin/chromium, from `apt-get install chromium`), never one downloaded by
Playwright. Without it, or without the playwright package, the test is skipped with the reason.
"""
from __future__ import annotations

import csv
import functools
import http.server
import io
import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from tests.servers import GunicornServer

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("ESSENTIA_TEST_CHROMIUM", "/usr/bin/chromium")
# Screenshots go to test-artifacts/ on every run; ESSENTIA_UPDATE_SCREENSHOTS=1 refreshes the README's copies.
SCREENSHOTS = ROOT / ("docs/screenshots" if os.environ.get("ESSENTIA_UPDATE_SCREENSHOTS") == "1"
                      else "test-artifacts/screenshots")
WSGI_APP = "tests.test_dashboard_browser:dashboard_app()"  # overrides gunicorn.conf.py's wsgi_app
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def dashboard_app():
    """The WSGI app gunicorn serves in this test (`tests.test_dashboard_browser:dashboard_app()`): the usual
    app, with the dashboard blueprint registered if backend/web/__init__.py does not register it yet."""
    from backend.web import dashboard
    from backend.app import create_app

    app = create_app()
    if "dashboard" not in app.blueprints:
        app.register_blueprint(dashboard.bp)
    return app


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; the browser comes from apt)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def served(tmp_path):
    """Development mode: no keys; /analyze may fetch from loopback (the test serves a clip there)."""
    server = GunicornServer(tmp_path, app=WSGI_APP, ESSENTIA_PRODUCTION="0", ESSENTIA_RATE_LIMIT="0",
                            ESSENTIA_STATS_FLUSH_SECONDS="0", ESSENTIA_ALLOW_LOOPBACK_URLS="1")
    try:
        yield server.base
    finally:
        server.stop()


@pytest.fixture
def served_production(tmp_path):
    """Production mode, with an admin key and an ordinary one made by the CLI."""
    server = GunicornServer(tmp_path, app=WSGI_APP, ESSENTIA_PRODUCTION="1", ESSENTIA_RATE_LIMIT="1000",
                            ESSENTIA_STATS_FLUSH_SECONDS="0")
    try:
        keys = {"admin": server.create_key("dashboard admin", "--admin"), "user": server.create_key("app")}
        yield server.base, keys
    finally:
        server.stop()


@pytest.fixture
def file_server(tmp_path):
    """A plain HTTP server on loopback for the files in tmp_path/www; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_dashboard_in_a_real_browser(browser, served, file_server, tmp_path):
    from playwright.sync_api import expect

    from tests import synth

    wav = tmp_path / "groove_120_a_minor.wav"
    wav.write_bytes(synth.wav_bytes(synth.song(120, "A", "minor", seconds=10, sr=22050), 22050))
    other = tmp_path / "morning_chords.wav"
    other.write_bytes(synth.wav_bytes(synth.song(96, "C", "major", seconds=8, sr=22050), 22050))

    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    problems: list[str] = []  # console errors include CSP violations: the page must cause none
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    page.goto(served + "/")
    expect(page.locator("#stat-status")).to_have_text("healthy")
    expect(page.locator("#stat-songs")).to_have_text("0")
    expect(page.locator("#cache-empty")).to_be_visible()

    # Analyze a first clip; with no title given, the file name is used.
    page.set_input_files("#file-input", str(other))
    expect(page.locator("#result-title")).to_have_text("morning chords", timeout=45_000)
    expect(page.locator("#result-key")).to_have_text("C Major")
    expect(page.locator("#result-camelot")).to_have_text("8B")
    expect(page.locator("#cache-body tr")).to_have_count(1)

    # Analyze: a non-ASCII artist travels in the multipart form (a header could not carry it).
    page.fill("#song-title", "Dashboard Groove")
    page.fill("#song-artist", "Synthé Ωμέγα")
    page.set_input_files("#file-input", str(wav))
    expect(page.locator("#result-title")).to_have_text("Dashboard Groove", timeout=45_000)
    expect(page.locator("#result-artist")).to_have_text("Synthé Ωμέγα")
    bpm = float(page.locator("#result-bpm").text_content())
    assert bpm == pytest.approx(120, rel=0.04)
    expect(page.locator("#result-key")).to_have_text("A Minor")
    expect(page.locator("#result-camelot")).to_have_text("8A")
    assert page.locator("#result-candidates li").count() >= 2
    assert page.locator("#result-bars [role=meter]").count() == 3

    # Charts: the envelope path, a beat grid, 12 chroma bars, 24 key-profile bars.
    expect(page.locator("#charts")).to_be_visible()
    assert len(page.locator("#onset-chart path.onset-line").get_attribute("d")) > 100
    assert page.locator("#onset-chart line.beat").count() >= 8
    assert page.locator("#chroma-chart rect.bar").count() == 12
    assert page.locator("#chroma-chart rect.bar.tonic").count() == 1
    assert page.locator("#keys-chart rect.bar.major, #keys-chart rect.bar.minor").count() >= 24
    assert page.locator("#keys-chart rect.chosen").count() == 1
    box = page.locator("#onset-chart").bounding_box()
    assert box["width"] > 300 and box["height"] > 100

    # The overview counts the analysis; the cache table shows the song.
    expect(page.locator("#stat-songs")).to_have_text("2")
    expect(page.locator("#stat-misses")).to_have_text("2")
    expect(page.locator("#cache-body tr")).to_have_count(2)
    expect(page.locator("#page-info")).to_have_text("1–2 of 2")
    page.locator("#song-artist").blur()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard-overview-result.png"), full_page=True)

    # The same bytes again: answered from the cache, counted as a hit.
    page.set_input_files("#file-input", str(wav))
    expect(page.locator("#result-meta")).to_contain_text("from the cache")
    expect(page.locator("#stat-hits")).to_have_text("1")
    expect(page.locator("#cache-body tr")).to_have_count(2)

    # Search: a miss shows the empty state, a hit (by the Greek artist name) shows the row.
    page.fill("#cache-search", "no such song")
    expect(page.locator("#cache-empty")).to_be_visible()
    expect(page.locator("#cache-body tr")).to_have_count(0)
    page.fill("#cache-search", "ωμέγα")
    expect(page.locator("#page-info")).to_have_text("1–1 matches")
    expect(page.locator("#cache-body tr")).to_have_count(1)
    expect(page.locator("#cache-body .row-open")).to_have_text("Dashboard Groove")

    # Correct the BPM (and the key) through /verify; the table shows the corrected values.
    page.locator("#cache-body .row-open").click()
    expect(page.locator("#song-dialog")).to_be_visible()
    page.fill("#verify-bpm", "60")
    page.fill("#verify-key", "a min")
    page.fill("#verify-notes", "half-time feel")
    page.click("#verify-save")
    expect(page.locator("#dialog-status")).to_contain_text("verified")
    expect(page.locator("#cache-body .bpm-value")).to_have_text("60.0")
    expect(page.locator("#cache-body .key-cell")).to_have_text("A Minor")
    expect(page.locator("#cache-body .verified")).to_have_count(1)
    page.screenshot(path=str(SCREENSHOTS / "dashboard-cache-verify.png"), full_page=False)
    page.click("#dialog-close")
    expect(page.locator("#song-dialog")).to_be_hidden()

    assert problems == [], problems

    # A wrong correction is refused by the server and the reason is shown (the browser logs the 400).
    page.locator("#cache-body .row-open").click()
    page.fill("#verify-key", "H minor")
    page.click("#verify-save")
    expect(page.locator("#dialog-status")).to_contain_text("invalid_parameter")
    page.click("#dialog-close")
    assert all("status of 400" in problem for problem in problems), problems
    problems.clear()

    # Export CSV, built in the page from /cache/export: the correction is applied.
    page.fill("#cache-search", "")
    expect(page.locator("#page-info")).to_have_text("1–2 of 2")
    expect(page.locator("#cache-body tr")).to_have_count(2)
    page.locator("#cache-search").blur()
    page.locator("#cache").screenshot(path=str(SCREENSHOTS / "dashboard-cache.png"))
    with page.expect_download() as download_info:
        page.click("#export-csv")
    text = Path(download_info.value.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted((r["title"], r["artist"], round(float(r["bpm"])), r["key"]) for r in rows) == [
        ("Dashboard Groove", "Synthé Ωμέγα", 60, "A Minor"), ("morning chords", "Unknown", 96, "C Major")]

    with page.expect_download() as download_info:
        page.click("#export-json")
    exported = json.loads(Path(download_info.value.path()).read_text(encoding="utf-8"))
    assert exported["total_songs"] == 2 and len(exported["songs"]) == 2

    # Sorting goes through /cache?sort=...
    page.select_option("#cache-sort", "oldest")
    expect(page.locator("#cache-body tr").first.locator(".row-open")).to_have_text("morning chords")
    page.select_option("#cache-sort", "bpm")  # the corrected 60 BPM sorts before 96
    expect(page.locator("#cache-body tr").first.locator(".row-open")).to_have_text("Dashboard Groove")

    # Delete: two clicks (no blocking confirm()), then the row and the count are gone.
    page.locator("#cache-body .row-open", has_text="Dashboard Groove").click()
    page.click("#delete-song")
    expect(page.locator("#delete-song")).to_have_text("Click again to delete")
    page.click("#delete-song")
    expect(page.locator("#song-dialog")).to_be_hidden()
    expect(page.locator("#cache-body tr")).to_have_count(1)
    expect(page.locator("#cache-body .row-open")).to_have_text("morning chords")
    expect(page.locator("#stat-songs")).to_have_text("1")

    # Analyze a URL (POST /analyze): the clip served on loopback.
    www_base, www_root = file_server
    shutil.copy(wav, www_root / "preview.wav")
    page.fill("#song-title", "From a URL")
    page.fill("#song-artist", "")
    page.fill("#song-url", www_base + "/preview.wav")
    page.click("#url-form button[type=submit]")
    expect(page.locator("#result-title")).to_have_text("From a URL", timeout=45_000)
    expect(page.locator("#result-key")).to_have_text("A Minor")
    expect(page.locator("#cache-body tr")).to_have_count(2)
    expect(page.locator("#stat-songs")).to_have_text("2")

    # Narrow screen: the layout still fits (no horizontal scrolling of the page).
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")

    assert problems == [], problems
    context.close()



@pytest.mark.slow
def test_dashboard_in_production_mode_asks_for_a_key_and_sends_it(browser, served_production, tmp_path):
    from playwright.sync_api import expect

    from tests import synth

    base, keys = served_production
    wav = tmp_path / "clip.wav"
    wav.write_bytes(synth.wav_bytes(synth.song(100, "D", "major", seconds=6, sr=22050), 22050))

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    api_calls: list[tuple[str, str | None]] = []
    page.on("request", lambda r: api_calls.append((r.url, r.headers.get("x-api-key")))
            if r.resource_type == "fetch" else None)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    # Without a key: the page says so, readably, and points at the key field.
    page.goto(base + "/")
    expect(page.locator("#mode-badge")).to_have_text("production")
    expect(page.locator("#key-form")).to_be_visible()
    expect(page.locator("#notice")).to_contain_text("needs an API key")
    expect(page.locator("#notice")).to_contain_text("401 missing_api_key")
    expect(page.locator("#stat-status")).to_have_text("healthy")  # /health needs no key

    # A wrong key: 403, shown as such.
    page.fill("#api-key", "ess_not-a-real-key")
    page.click("#key-form button[type=submit]")
    expect(page.locator("#notice")).to_contain_text("403 invalid_api_key")

    # An ordinary key: browsing and analyzing work, deleting is refused with the reason.
    page.fill("#api-key", keys["user"])
    page.click("#key-form button[type=submit]")
    expect(page.locator("#key-state")).to_have_text(f"using {keys['user'][:12]}…")
    expect(page.locator("#notice")).to_be_hidden()
    expect(page.locator("#stat-songs")).to_have_text("0")
    page.set_input_files("#file-input", str(wav))
    expect(page.locator("#result-key")).to_have_text("D Major", timeout=45_000)
    expect(page.locator("#cache-body tr")).to_have_count(1)
    page.locator("#cache-body .row-open").click()
    page.click("#delete-song")
    page.click("#delete-song")
    expect(page.locator("#dialog-status")).to_contain_text("403 admin_required")
    page.fill("#verify-bpm", "50")
    page.click("#verify-save")
    expect(page.locator("#dialog-status")).to_contain_text("admin flag")
    page.click("#dialog-close")

    # The admin key (kept in sessionStorage, never in a URL): the same actions succeed.
    page.fill("#api-key", keys["admin"])
    page.click("#key-form button[type=submit]")
    assert page.evaluate("sessionStorage.getItem('essentia.apiKey')") == keys["admin"]
    page.locator("#cache-body .row-open").click()
    page.fill("#verify-bpm", "50")
    page.click("#verify-save")
    expect(page.locator("#cache-body .bpm-value")).to_have_text("50.0")
    page.click("#delete-song")
    page.click("#delete-song")
    expect(page.locator("#cache-body tr")).to_have_count(0)
    expect(page.locator("#stat-songs")).to_have_text("0")

    # Every API call carried the key of its moment in a header; no URL ever held one.
    assert api_calls
    assert all(keys["admin"] not in url and keys["user"] not in url and "key" not in url.lower()
               for url, _ in api_calls)
    sent = [key for url, key in api_calls if not url.endswith("/health")]
    assert keys["user"] in sent and keys["admin"] in sent
    assert page.url == base + "/"
    assert errors == [], errors
    context.close()
