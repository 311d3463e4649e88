"""Request hygiene: request ids, structured logs, security headers, development mode refusing foreign pages,
and storage failures answered as 503 without losing what is stored."""
from __future__ import annotations

import json
import logging
import time
import os
import re

import pytest

from backend.web.hooks import new_request_id
from tests.test_api_analyze import post_audio


def test_every_response_has_a_request_id_and_security_headers(client):
    response = client.get("/health")
    assert len(response.headers["X-Request-ID"]) >= 16
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    echoed = client.get("/health", headers={"X-Request-ID": "phone-42.abc"})
    assert echoed.headers["X-Request-ID"] == "phone-42.abc"
    hostile = client.get("/health", headers={"X-Request-ID": "x\" injected"})
    assert hostile.headers["X-Request-ID"] != "x\" injected"
    errors = client.get("/nope")
    assert errors.status_code == 404 and errors.headers["X-Request-ID"]


def test_one_structured_log_line_per_request_with_key_prefix_only(make_app, caplog):
    from tests.conftest import create_key

    app = make_app(production=True)
    secret = create_key(app, "logger")
    with caplog.at_level(logging.INFO, logger="essentia.requests"):
        app.test_client().get("/stats", headers={"X-API-Key": secret, "X-Request-ID": "req-1"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "essentia.requests"]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "req-1" and line["endpoint"] == "/stats" and line["status"] == 200
    assert line["latency_ms"] >= 0 and line["key"] == secret[:12]
    assert secret not in caplog.text


def test_queued_log_lines_are_written_by_the_flush_with_their_requests_time(make_app, caplog):
    from backend.web.hooks import request_log

    app = make_app()
    lines = request_log(app)
    lines.flush_seconds = 3600  # the background thread exists but does not write during the test
    lines.start_background_flush()
    with caplog.at_level(logging.INFO, logger="essentia.requests"):
        before = time.time()
        for number in range(3):
            app.test_client().get("/health", headers={"X-Request-ID": f"queued-{number}"})
        after = time.time()
        assert not [r for r in caplog.records if r.name == "essentia.requests"]  # the requests wrote nothing
        time.sleep(0.05)
        lines.flush()
    records = [r for r in caplog.records if r.name == "essentia.requests"]
    assert [json.loads(r.getMessage())["request_id"] for r in records] == ["queued-0", "queued-1", "queued-2"]
    assert all(before <= r.created <= after for r in records)  # when each request finished, not when written
    assert json.loads(records[0].getMessage())["endpoint"] == "/health"


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
])
def test_development_mode_refuses_cross_site_changes(client, headers):
    response = client.post("/cache/clear", headers=headers)
    assert response.status_code == 403 and response.get_json()["error"] == "cross_site_request"


def test_development_mode_allows_same_origin_and_tools(client):
    assert client.post("/cache/clear").status_code == 200                       # curl sends no Origin
    same = client.post("/cache/clear", headers={"Origin": "http://localhost"})
    assert same.status_code == 200
    assert client.get("/cache", headers={"Origin": "https://evil.example"}).status_code == 200  # reads are CORS-protected


def test_development_mode_refuses_rebound_host_names(client):
    response = client.get("/cache", headers={"Host": "attacker.example:5050"})
    assert response.status_code == 403 and response.get_json()["error"] == "host_not_allowed"


def test_production_mode_does_not_apply_the_development_host_check(make_app):
    client = make_app(production=True).test_client()
    assert client.get("/health", headers={"Host": "api.example.com"}).status_code == 200


def _limit_database_pages(app, pages: int) -> None:
    """Simulate a full disk: SQLite refuses to grow the file past `pages` pages on every pooled connection."""
    db = app.extensions["essentia"].store
    held = [db._acquire() for _ in range(db.pool_size)]
    for conn in held:
        conn.execute(f"PRAGMA max_page_count = {pages}")
        db._release(conn)


def test_full_disk_answers_503_keeps_stored_data_and_recovers(make_app, song_120_a_minor, song_96_c_major):
    app = make_app(db_pool_size=2)
    client = app.test_client()
    stored = post_audio(client, song_120_a_minor).get_json()
    with app.extensions["essentia"].store.connection() as conn:
        used = conn.execute("PRAGMA page_count").fetchone()[0]
    _limit_database_pages(app, used)

    full = post_audio(client, song_96_c_major)
    assert full.status_code == 503
    assert full.get_json()["error"] == "storage_unavailable" and full.headers["Retry-After"]
    assert "Traceback" not in full.get_data(as_text=True)

    assert client.get("/health").status_code == 200
    rows = client.get("/cache").get_json()
    assert [row["id"] for row in rows] == [stored["id"]]

    _limit_database_pages(app, 1_000_000)
    recovered = post_audio(client, song_96_c_major)
    assert recovered.status_code == 200
    with app.extensions["essentia"].store.connection() as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_read_only_database_answers_503_and_reads_still_work(make_app, song_120_a_minor, song_96_c_major):
    app = make_app(db_pool_size=1)
    client = app.test_client()
    post_audio(client, song_120_a_minor)
    db = app.extensions["essentia"].store
    conn = db._acquire()
    conn.execute("PRAGMA query_only = ON")  # what a read-only mount looks like to the app
    db._release(conn)
    response = post_audio(client, song_96_c_major)
    assert response.status_code == 503 and response.get_json()["error"] == "storage_unavailable"
    assert len(client.get("/cache").get_json()) == 1


def test_generated_request_ids_are_unique_hex_and_differ_after_fork():
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports its first id and leaves at once
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert re.fullmatch(r"[0-9a-f]{32}", child_id) and child_id[:16] != new_request_id()[:16]
