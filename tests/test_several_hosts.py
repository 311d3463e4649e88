"""Two hosts behind one load balancer behave as one service: two real gunicorn servers (host A on 127.0.0.1,
host B on 127.0.0.2, each with its own shared-state folder and analysis pool) on one store and one Redis (a key
prefix of the test's own). A song analyzed on one is a hit on the other, one song uploaded to both at once is
analyzed once, the rate limit and the daily quota count both hosts' requests exactly, a deactivated key is
refused on both at once, /stats agree, a host killed mid-analysis loses nothing, and losing Redis's data (what
a restart does) keeps limits and quotas right."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import redis

from tests import synth
from tests.servers import ROOT, GunicornServer

pytestmark = pytest.mark.slow


@pytest.fixture
def start_hosts(tmp_path, redis_url, redis_prefix, request):
    """start_hosts(**env) -> (host A, host B), sharing one store and one Redis prefix; both stopped after."""
    started: list[GunicornServer] = []

    def start(**env: str) -> tuple[GunicornServer, GunicornServer]:
        shared = {"ESSENTIA_REDIS_URL": redis_url, "ESSENTIA_REDIS_PREFIX": redis_prefix,
                  "ESSENTIA_HTTP_WORKERS": "2", "ESSENTIA_WORKERS": "1", **shared_store_env(tmp_path, request),
                  **env}
        for name, host in (("a", "127.0.0.1"), ("b", "127.0.0.2")):
            folder = tmp_path / name
            folder.mkdir(exist_ok=True)
            started.append(GunicornServer(folder, host=host, **shared))
        return started[-2], started[-1]

    yield start
    for server in started:
        server.stop()


def shared_store_env(tmp_path, request) -> dict[str, str]:
    """The hosts' one store: a PostgreSQL database of this test's own when the store supports it, else one
    SQLite file both hosts open (the same machine stands in for both)."""
    try:
        database_url = request.getfixturevalue("postgres_url")
    except pytest.FixtureLookupError:
        database_url = None
    if database_url:
        return {"ESSENTIA_DATABASE_URL": database_url}
    return {"ESSENTIA_DB_PATH": str(tmp_path / "shared.db")}


def _production(**env: str) -> dict[str, str]:
    return {"ESSENTIA_PRODUCTION": "1", **env}


def _upload(host: GunicornServer, clip: bytes, key: str | None = None):
    headers = {"Content-Type": "audio/wav", **({"X-API-Key": key} if key else {})}
    return host.request("POST", "/analyze_data", clip, headers)


def _key_id(host: GunicornServer, key: str) -> int:
    listed = subprocess.run([sys.executable, "-m", "flask", "--app", "backend", "keys", "list"], cwd=ROOT,
                            env=host.env, capture_output=True, text=True, timeout=120)
    for line in listed.stdout.splitlines():
        if key[:12] in line:
            return int(line.split()[0])
    raise AssertionError(listed.stdout + listed.stderr)


def test_a_song_analyzed_on_one_host_is_a_hit_on_the_other_and_stats_agree(start_hosts):
    host_a, host_b = start_hosts()
    clip = synth.wav_bytes(synth.song(120, "A", "minor", seconds=8.0))
    status, _, first = _upload(host_a, clip)
    assert status == 200 and first["cached"] is False
    status, _, second = _upload(host_b, clip)
    assert status == 200 and second["cached"] is True and second["id"] == first["id"]
    stats = [host.request("GET", "/stats")[2] for host in (host_a, host_b, host_a, host_b)]
    assert all((s["cache_misses"], s["cache_hits"], s["total_cached_songs"]) == (1, 1, 1) for s in stats)


def test_one_new_song_uploaded_to_both_hosts_at_once_is_analyzed_once(start_hosts):
    host_a, host_b = start_hosts()
    clip = synth.wav_bytes(synth.song(104, "E", "minor", seconds=8.0))
    results = []

    def upload(host):
        results.append(_upload(host, clip))

    threads = [threading.Thread(target=upload, args=(host_a if n % 2 else host_b,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert [status for status, _, _ in results] == [200] * 10
    assert len({body["id"] for _, _, body in results}) == 1
    assert sum(body["cached"] is False for _, _, body in results) == 1
    stats = host_b.request("GET", "/stats")[2]
    assert (stats["cache_misses"], stats["cache_hits"]) == (1, 9)


def test_the_rate_limit_is_exact_across_both_hosts(start_hosts):
    host_a, host_b = start_hosts(**_production(ESSENTIA_RATE_LIMIT="12"))
    key = host_a.create_key("limited")
    answers = [(host_a if n % 2 else host_b).request("GET", "/cache?limit=1", headers={"X-API-Key": key})
               for n in range(20)]
    statuses = [status for status, _, _ in answers]
    assert statuses.count(200) == 12 and statuses.count(429) == 8
    remaining = [int(headers["X-RateLimit-Remaining"]) for status, headers, _ in answers if status == 200]
    assert remaining == list(range(11, -1, -1))  # one count down, whichever host answered
    refused = next(headers for status, headers, _ in answers if status == 429)
    assert refused["X-RateLimit-Limit"] == "12" and 1 <= int(refused["Retry-After"]) <= 60


def test_a_deactivated_key_is_refused_on_both_hosts_at_once(start_hosts):
    host_a, host_b = start_hosts(**_production(ESSENTIA_KEY_CACHE_TTL="300"))
    key = host_a.create_key("soon-gone")
    for host in (host_a, host_b, host_a, host_b):  # cached on every HTTP process of both
        assert host.request("GET", "/cache?limit=1", headers={"X-API-Key": key})[0] == 200
    deactivated = subprocess.run([sys.executable, "-m", "flask", "--app", "backend", "keys", "deactivate",
                                  str(_key_id(host_a, key))], cwd=ROOT, env=host_a.env, capture_output=True,
                                 text=True, timeout=120)
    assert deactivated.returncode == 0, deactivated.stderr
    time.sleep(0.5)  # the message reaches every process in milliseconds; the key cache's TTL is 300 s
    for host in (host_a, host_b, host_a, host_b):
        status, _, body = host.request("GET", "/cache?limit=1", headers={"X-API-Key": key})
        assert (status, body["error"]) == (403, "inactive_api_key")


def test_losing_redis_data_keeps_the_daily_quota_and_the_rate_limit(start_hosts, redis_url, redis_prefix):
    host_a, host_b = start_hosts(**_production(ESSENTIA_RATE_LIMIT="5", ESSENTIA_STATS_FLUSH_SECONDS="0.2"))
    key = host_a.create_key("quota", "--daily-limit", "8")
    ask = lambda n: (host_a if n % 2 else host_b).request("GET", "/cache?limit=1", headers={"X-API-Key": key})
    assert [ask(n)[0] for n in range(6)] == [200] * 5 + [429]  # rate limit 5 per minute
    time.sleep(0.5)  # the quota counts reach the store (every 0.2 s here)
    client = redis.Redis.from_url(redis_url)
    client.delete(*client.keys(redis_prefix + "*"))  # what a Redis restart (or FLUSHALL) does to our keys
    answers = [ask(n) for n in range(6)]
    # A new rate-limit window starts (5 more, counted before the quota), but the quota of 8 has 3 left: nobody got
    # a fresh allowance.
    assert [status for status, _, _ in answers] == [200] * 3 + [429] * 3
    assert [body["error"] for _, _, body in answers[3:]] == ["daily_quota_exceeded"] * 2 + ["rate_limited"]


def test_a_lost_redis_is_a_brief_503_and_service_resumes_by_itself(start_hosts, redis_proxy):
    """Both hosts reach Redis through a relay that the test cuts and starts again."""
    redis_proxy.start()
    host_a, host_b = start_hosts(ESSENTIA_REDIS_URL=f"redis://127.0.0.1:{redis_proxy.port}/0",
                                 **_production(ESSENTIA_RATE_LIMIT="100"))
    key = host_a.create_key("steady")
    ask = lambda host: host.request("GET", "/cache?limit=1", headers={"X-API-Key": key})
    assert ask(host_a)[0] == 200 and ask(host_b)[0] == 200
    redis_proxy.cut()
    for host in (host_a, host_b):
        status, headers, body = ask(host)
        assert (status, body["error"]) == (503, "shared_state_unavailable")
        assert int(headers["Retry-After"]) >= 1
    redis_proxy.start()
    for host in (host_a, host_b, host_a, host_b):
        assert ask(host)[0] == 200


def test_a_host_killed_during_an_analysis_loses_nothing_and_the_other_serves_every_song(start_hosts):
    host_a, host_b = start_hosts()
    songs = [synth.wav_bytes(synth.song(90 + 10 * n, "C", "major", seconds=8.0)) for n in range(3)]
    ids = [_upload(host_a, song)[2]["id"] for song in songs[:2]]
    in_flight = threading.Thread(target=lambda: _safe_upload(host_a, songs[2]), daemon=True)
    in_flight.start()
    time.sleep(0.3)  # A has claimed song 3 and is analyzing it
    os.killpg(host_a.process.pid, signal.SIGKILL)
    host_a.process.wait(30)
    for song, song_id in zip(songs[:2], ids):
        status, _, body = _upload(host_b, song)
        assert status == 200 and body["cached"] is True and body["id"] == song_id
    started = time.monotonic()
    status, _, body = _upload(host_b, songs[2])  # A's claim ends with its lease; B analyzes it
    assert status == 200 and body["bpm"] > 0
    assert time.monotonic() - started < 60
    assert len(host_b.request("GET", "/cache?limit=10")[2]) == 3
    assert host_b.request("GET", "/stats")[2]["total_cached_songs"] == 3


def _safe_upload(host, clip):
    try:
        _upload(host, clip)
    except OSError:
        pass  # the host is killed mid-request, on purpose

