"""The real thing: gunicorn with gunicorn.conf.py on a free port, a real process pool, production mode with a key
made by the CLI, talked to over HTTP."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url: str, data: bytes | None = None, headers: dict | None = None, method: str | None = None):
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    env = {**os.environ, "ESSENTIA_PORT": str(port), "ESSENTIA_DB_PATH": str(tmp_path / "served.db"),
           "ESSENTIA_PRODUCTION": "1", "ESSENTIA_HOST": "127.0.0.1", "ESSENTIA_WORKERS": "1",
           "ESSENTIA_RATE_LIMIT": "1000"}
    created = subprocess.run([sys.executable, "-m", "flask", "--app", "backend", "keys", "create", "tester",
                              "--admin"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    key = re.search(r"^(ess_\S+)$", created.stdout, re.MULTILINE).group(1)

    log = open(tmp_path / "gunicorn.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if _request(base + "/health")[0] == 200:
                break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log.close()
            pytest.fail("gunicorn did not come up:\n" + (tmp_path / "gunicorn.log").read_text()[-3000:])
        time.sleep(0.2)
    yield base, key
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log.close()


@pytest.mark.slow
def test_gunicorn_serves_the_api_in_production_mode(server, song_m4a):
    base, key = server
    status, _, body = _request(base + "/health")
    assert status == 200 and body["status"] == "healthy"

    status, _, body = _request(base + "/analyze_data", data=song_m4a,
                               headers={"Content-Type": "audio/mp4"})
    assert status == 401 and body["error"] == "missing_api_key"

    auth = {"X-API-Key": key, "Content-Type": "audio/mp4", "X-Song-Title": "Tour"}
    status, headers, body = _request(base + "/analyze_data", data=song_m4a, headers=auth)
    assert status == 200, body
    assert body["cached"] is False and body["key"] == "D Major"
    assert body["bpm"] == pytest.approx(128, rel=0.04)
    assert headers["X-RateLimit-Limit"] == "1000"

    status, _, again = _request(base + "/analyze_data", data=song_m4a, headers=auth)
    assert status == 200 and again["cached"] is True and again["id"] == body["id"]

    status, _, stats = _request(base + "/stats", headers={"X-API-Key": key})
    assert status == 200 and stats["cache_hits"] == 1 and stats["cache_misses"] == 1

    status, _, rows = _request(base + "/cache/search?q=tour", headers={"X-API-Key": key})
    assert status == 200 and [row["id"] for row in rows] == [body["id"]]

    status, _, deleted = _request(f"{base}/cache/{body['id']}", headers={"X-API-Key": key}, method="DELETE")
    assert status == 200 and deleted["success"] is True
