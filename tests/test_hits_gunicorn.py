"""Cache hits through a real gunicorn in production mode (several HTTP processes): bodies read straight off the
socket hash to the keys stored before, on a keep-alive connection, raw, chunked and multipart; N concurrent keyed
hits spread over the processes leave usage N and quota N."""
from __future__ import annotations

import hashlib
import http.client
import sqlite3
import threading
import time
import uuid

import pytest

from tests import synth
from tests.servers import GunicornServer
from tests.test_hits import copy_row_under_key, supported_format_samples


@pytest.fixture
def server(tmp_path):
    instance = GunicornServer(tmp_path, ESSENTIA_PRODUCTION="1", ESSENTIA_HOST="127.0.0.1",
                              ESSENTIA_HTTP_WORKERS="3", ESSENTIA_RATE_LIMIT="100000",
                              ESSENTIA_STATS_FLUSH_SECONDS="0.5")
    yield instance
    instance.stop()


def _multipart(data: bytes, filename: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _json(response: http.client.HTTPResponse) -> dict:
    import json
    return json.loads(response.read())


@pytest.mark.slow
def test_bodies_read_off_the_socket_hash_to_the_keys_stored_before(server):
    key = server.create_key("client")
    wav = synth.wav_bytes(synth.song(110, "E", "minor", seconds=4, sr=22050), 22050)
    status, _, first = server.request("POST", "/analyze_data", wav, {"Content-Type": "audio/wav", "X-API-Key": key})
    assert status == 200, first
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)  # one keep-alive connection for all
    try:
        for name, data in supported_format_samples().items():
            seeded = copy_row_under_key(server.db_path, first["id"], "sha256:" + hashlib.sha256(data).hexdigest())
            form, form_type = _multipart(data, f"song.{name}")
            for body, content_type, chunked in ((data, "application/octet-stream", False),
                                                (iter([data[:1000], data[1000:]]), "audio/x-anything", True),
                                                (form, form_type, False)):
                headers = {"Content-Type": content_type, "X-API-Key": key}
                conn.request("POST", "/analyze_data", body=body, headers=headers, encode_chunked=chunked)
                response = conn.getresponse()
                answer = _json(response)
                assert response.status == 200, (name, content_type, answer)
                assert answer["cached"] is True and answer["id"] == seeded, (name, content_type)
        conn.request("GET", "/health")  # the connection is still in step after every kind of body
        health = conn.getresponse()
        assert health.status == 200 and _json(health)["status"]
    finally:
        conn.close()


@pytest.mark.slow
def test_concurrent_keyed_hits_over_several_processes_leave_usage_n_and_quota_n(server):
    key = server.create_key("counted")
    clip = synth.wav_bytes(synth.song(100, "G", "major", seconds=4, sr=22050), 22050)
    headers = {"Content-Type": "audio/wav", "X-API-Key": key}
    assert server.request("POST", "/analyze_data", clip, headers)[0] == 200  # the miss that fills the cache
    clients, each = 8, 12
    statuses: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        mine = []
        try:
            barrier.wait()
            for _ in range(each):
                conn.request("POST", "/analyze_data", body=clip, headers=headers)
                response = conn.getresponse()
                response.read()
                mine.append(response.status)
        finally:
            conn.close()
            with lock:
                statuses.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * (clients * each)
    expected = 1 + clients * each
    digest = hashlib.sha256(clip).hexdigest()
    assert server.request("GET", f"/analyze_data/sha256/{digest}", headers={"X-API-Key": key})[0] == 200
    expected += 1

    def counts() -> tuple[int, int]:
        conn = sqlite3.connect(server.db_path)
        try:
            key_id = conn.execute("SELECT id FROM api_keys WHERE name = 'counted'").fetchone()[0]
            usage = conn.execute("SELECT COUNT(*) FROM api_usage WHERE key_id = ?", (key_id,)).fetchone()[0]
            quota = conn.execute("SELECT COALESCE(SUM(count), 0) FROM daily_usage WHERE key_id = ?",
                                 (key_id,)).fetchone()[0]
            return usage, quota
        finally:
            conn.close()

    deadline = time.monotonic() + 20  # usage records are written in batches, within the flush interval
    while counts() != (expected, expected) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert counts() == (expected, expected)
    time.sleep(1.5)  # nothing is counted twice by a later flush
    assert counts() == (expected, expected)
