"""The real thing: gunicorn with gunicorn.conf.py on a free port, a real process pool, production mode with a key
made by the CLI, talked to over HTTP."""
from __future__ import annotations

import os

import pytest

from tests.servers import GunicornServer, create_key_cli


@pytest.fixture
def server(tmp_path):
    env = {"ESSENTIA_PRODUCTION": "1", "ESSENTIA_RATE_LIMIT": "1000", "ESSENTIA_DB_PATH": str(tmp_path / "p.db")}
    # The key is made before the server starts, as an operator would.
    key = create_key_cli({**os.environ, **env}, "tester", "--admin")
    instance = GunicornServer(tmp_path, **env)
    yield instance, key
    instance.stop()


@pytest.mark.slow
def test_gunicorn_serves_the_api_in_production_mode(server, song_m4a):
    server, key = server
    status, _, body = server.request("GET", "/health")
    assert status == 200 and body["status"] == "healthy"

    status, _, body = server.request("POST", "/analyze_data", song_m4a, {"Content-Type": "audio/mp4"})
    assert status == 401 and body["error"] == "missing_api_key"

    auth = {"X-API-Key": key, "Content-Type": "audio/mp4", "X-Song-Title": "Tour"}
    status, headers, body = server.request("POST", "/analyze_data", song_m4a, auth)
    assert status == 200, body
    assert body["cached"] is False and body["key"] == "D Major"
    assert body["bpm"] == pytest.approx(128, rel=0.04)
    assert headers["X-RateLimit-Limit"] == "1000"

    status, _, again = server.request("POST", "/analyze_data", song_m4a, auth)
    assert status == 200 and again["cached"] is True and again["id"] == body["id"]

    status, _, stats = server.request("GET", "/stats", headers={"X-API-Key": key})
    assert status == 200 and stats["cache_hits"] == 1 and stats["cache_misses"] == 1

    status, _, rows = server.request("GET", "/cache/search?q=tour", headers={"X-API-Key": key})
    assert status == 200 and [row["id"] for row in rows] == [body["id"]]

    status, _, deleted = server.request("DELETE", f"/cache/{body['id']}", headers={"X-API-Key": key})
    assert status == 200 and deleted["success"] is True
