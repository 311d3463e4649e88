"""Several gunicorn HTTP processes behave as one server: one analysis pool serves them all, and the rate limit,
single flight and the Prometheus counts span all of them (backend/runtime/poolservice.py, backend/runtime/sharedtable.py and
prometheus_client's multiprocess files). A killed analysis service is started again."""
from __future__ import annotations

import http.client
import os
import re
import signal
import threading
import time

import pytest

from tests import synth
from benchmarks.proctools import process_cmdline
from tests.servers import GunicornServer, children


@pytest.fixture
def server(tmp_path):
    instance = GunicornServer(tmp_path, ESSENTIA_HTTP_WORKERS="3", ESSENTIA_WORKERS="2", ESSENTIA_RATE_LIMIT="40")
    yield instance
    instance.stop()


def _metric(server: GunicornServer, line_start: str) -> float:
    """One sample of /metrics (0 when the series does not exist yet)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    match = re.search("^" + re.escape(line_start) + r" ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _upload(server: GunicornServer, clip: bytes):
    return server.request("POST", "/analyze_data", clip, {"Content-Type": "audio/wav"})


@pytest.mark.slow
def test_three_http_processes_share_one_pool_of_two(server):
    http_workers = server.http_worker_pids()
    assert len(http_workers) == 3
    assert all(children(pid) == [] for pid in http_workers)  # no pool of their own
    assert len(server.analysis_pool_pids()) == 2
    assert _metric(server, "essentia_analysis_workers_alive") == 2.0


@pytest.mark.slow
def test_a_killed_analysis_service_is_started_again(server):
    os.kill(server.analysis_service_pid(), signal.SIGKILL)
    clip = synth.wav_bytes(synth.song(97, "C", "minor", seconds=6.0))
    deadline = time.monotonic() + 60
    while True:  # while it restarts: 503 analysis_unavailable, JSON, with Retry-After
        status, headers, body = _upload(server, clip)
        if status == 200:
            break
        if status == 429:  # a slow restart on a busy machine outlasts the rate limit of 40 a minute: wait as told
            assert time.monotonic() < deadline, "the analysis service did not come back"
            time.sleep(min(float(headers["Retry-After"]), 5.0))
            continue
        assert status == 503 and body["error"] == "analysis_unavailable" and headers["Retry-After"]
        assert time.monotonic() < deadline, "the analysis service did not come back"
        # As a client should: wait what Retry-After says. (Polling every 0.2 s ran into the fixture's 40/min rate
        # limit whenever a loaded machine took more than ~8 s to restart the pool.)
        time.sleep(float(headers["Retry-After"]))
    assert body["bpm"] > 0 and len(server.analysis_pool_pids()) == 2


@pytest.mark.slow
def test_the_rate_limit_counts_requests_to_every_process(server):
    # Each request on a new connection: the processes take turns accepting, so all of them count.
    statuses = [server.request("GET", "/cache?limit=1")[0] for _ in range(60)]
    assert statuses.count(200) == 40 and statuses.count(429) == 20


@pytest.mark.slow
def test_concurrent_uploads_of_one_song_to_several_processes_run_one_analysis(server):
    clip = synth.wav_bytes(synth.song(118, "G", "major", seconds=8.0))
    results = []

    def upload():
        results.append(_upload(server, clip))

    threads = [threading.Thread(target=upload) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert [status for status, _, _ in results] == [200] * 12
    assert len({body["id"] for _, _, body in results}) == 1
    status, _, stats = server.request("GET", "/stats")  # exact at once, whichever process answers
    assert (stats["cache_misses"], stats["cache_hits"]) == (1, 11)
    assert _metric(server, 'essentia_cache_lookups_total{outcome="miss"}') == 1.0
    assert _metric(server, 'essentia_cache_lookups_total{outcome="hit"}') == 11.0


@pytest.mark.slow
def test_metrics_add_up_across_processes(server):
    before = _metric(server, 'essentia_http_requests_total{endpoint="/openapi.json",method="GET",status="200"}')
    for _ in range(25):
        assert server.request("GET", "/openapi.json")[0] == 200
    after = _metric(server, 'essentia_http_requests_total{endpoint="/openapi.json",method="GET",status="200"}')
    assert after - before == 25
    assert _metric(server, "essentia_analysis_workers_alive") == 2.0  # the one pool, not a sum per process


@pytest.mark.slow
def test_a_reload_keeps_the_pool_and_a_stop_takes_everything_down(server):
    supervisor = [pid for pid in children(server.process.pid) if pid not in server.http_worker_pids()
                  and "backend.runtime.poolservice" in process_cmdline(pid)][0]
    with open(f"/proc/{supervisor}/environ", "rb") as handle:
        environment = dict(item.split(b"=", 1) for item in handle.read().split(b"\0") if b"=" in item)
    state_dir = environment[b"ESSENTIA_SHARED_STATE_DIR"].decode()
    os.kill(server.process.pid, signal.SIGHUP)  # gunicorn re-reads its config and replaces its workers
    time.sleep(2)
    server.wait_healthy()
    status, _, body = _upload(server, synth.wav_bytes(synth.song(104, "D", "minor", seconds=6.0)))
    assert status == 200 and body["bpm"] > 0
    assert supervisor in children(server.process.pid)  # the same pool served it
    server.stop()
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{supervisor}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{supervisor}")
    assert not os.path.exists(state_dir)
