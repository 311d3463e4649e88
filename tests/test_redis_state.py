"""What the Redis implementations do beyond the shared contracts: a Redis that is gone answers with one specific
exception (the web layer's 503), service resumes by itself when Redis is back, and a changed key reaches every
process's key cache."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from backend.config import ConfigError, Settings
from backend.storage.counters import BufferedCounters
from backend.storage.sqlite import SQLiteStore
from backend.runtime.redis_state import (RedisClaims, RedisEvents, RedisKeyInvalidation, RedisQuota,
                                         RedisRateLimiter, RedisTally, SharedStateUnavailable, connect, ping)
from tests.servers import ROOT, free_port


class NoRecords:
    """A store with one active key and no counts yet, for the quota (the store is not what these tests test)."""

    def key_state(self, key_id: int):
        return True, 9

    def count(self, key_id: int, day: str) -> int:
        return 0

    def raise_counts(self, rows) -> None:
        pass


def _every_role(url: str, prefix: str):
    client = connect(url, socket_timeout=0.5)
    return client, {
        "limiter": lambda: RedisRateLimiter(5, 60.0, client=client, prefix=prefix).hit("key:1"),
        "quota": lambda: RedisQuota(client=client, prefix=prefix, records=NoRecords(),
                                    flush_seconds=3600).consume(1),
        "tally": lambda: RedisTally(client=client, prefix=prefix).add("hits"),
        "claims": lambda: RedisClaims(client=client, prefix=prefix,
                                      events=RedisEvents(client=client, prefix=prefix)).try_claim("url:a", 5.0),
        "ping": lambda: ping(client),
    }


def test_every_role_says_shared_state_unavailable_when_redis_is_unreachable(redis_prefix):
    _, roles = _every_role(f"redis://127.0.0.1:{free_port()}/0", redis_prefix)  # nothing listens there
    for name, call in roles.items():
        with pytest.raises(SharedStateUnavailable) as caught:
            call()
        assert caught.value.status == 503 and caught.value.code == "shared_state_unavailable", name
        assert caught.value.retry_after >= 1


def test_service_resumes_without_a_restart_when_redis_comes_back(redis_proxy, redis_prefix):
    client, roles = _every_role(f"redis://127.0.0.1:{redis_proxy.port}/0", redis_prefix)
    with pytest.raises(SharedStateUnavailable):
        roles["limiter"]()  # not there yet
    redis_proxy.start()
    assert roles["limiter"]().allowed  # the same client, now connected
    redis_proxy.cut()  # lost while running
    with pytest.raises(SharedStateUnavailable):
        roles["tally"]()
    redis_proxy.start()
    for call in roles.values():
        call()
    client.close()


def test_a_killed_connection_is_replaced_on_the_next_call(redis_client, redis_prefix):
    limiter = RedisRateLimiter(10, 60.0, client=redis_client, prefix=redis_prefix)
    assert limiter.hit("key:1").remaining == 9
    redis_client.client_kill_filter(_type="normal", skipme=False)  # every normal connection, ours included
    assert limiter.hit("key:1").remaining == 8


def test_a_changed_key_is_forgotten_by_every_process_at_once(redis_url, redis_prefix):
    forgotten: list[int] = []
    arrived = threading.Event()

    def forget_id(key_id: int) -> None:
        forgotten.append(key_id)
        arrived.set()

    receiving_host = RedisKeyInvalidation(RedisEvents(client=connect(redis_url), prefix=redis_prefix))
    receiving_host.listen(forget_id, forget_all=lambda: None)
    sending_host = RedisKeyInvalidation(RedisEvents(client=connect(redis_url), prefix=redis_prefix))
    started = time.monotonic()
    sending_host.announce([42])
    assert arrived.wait(2.0)
    assert forgotten == [42]
    assert time.monotonic() - started < 0.2  # milliseconds, not the key cache's TTL


def test_a_process_that_lost_its_subscription_forgets_its_whole_key_cache(redis_url, redis_prefix, redis_client):
    reconnections = []
    forgotten = []
    events = RedisEvents(client=connect(redis_url), prefix=redis_prefix)
    RedisKeyInvalidation(events).listen(forgotten.append, forget_all=lambda: reconnections.append(1))
    assert reconnections == [1]
    redis_client.client_kill_filter(_type="pubsub", skipme=False)
    deadline = time.monotonic() + 5.0
    while len(reconnections) < 2:
        assert time.monotonic() < deadline, "the subscriber did not reconnect"
        time.sleep(0.05)
    assert events.connected.wait(2.0)
    RedisKeyInvalidation(RedisEvents(client=redis_client, prefix=redis_prefix)).announce([7])
    deadline = time.monotonic() + 2.0
    while forgotten != [7]:
        assert time.monotonic() < deadline, "no message after the reconnection"
        time.sleep(0.02)


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "redis://", "redis://host:port/0", "127.0.0.1:6379"])
def test_an_invalid_redis_url_stops_start_up_naming_the_variable(url):
    with pytest.raises(ConfigError, match="ESSENTIA_REDIS_URL"):
        Settings.from_env({"ESSENTIA_REDIS_URL": url})


def test_gunicorn_will_not_start_when_redis_does_not_answer(tmp_path):
    port = free_port()
    env = {**os.environ, "ESSENTIA_REDIS_URL": f"redis://127.0.0.1:{port}/0", "ESSENTIA_PORT": str(free_port()),
           "ESSENTIA_DB_PATH": str(tmp_path / "db.sqlite"), "ESSENTIA_WORKERS": "1"}
    started = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert started.returncode != 0
    assert f"ESSENTIA_REDIS_URL: Redis at 127.0.0.1:{port} does not answer" in started.stderr


def test_a_flush_while_redis_is_gone_neither_raises_nor_loses_counts(redis_proxy, redis_prefix, tmp_path):
    """Counters are flushed after responses and from a background thread: a lost Redis must not turn a response
    into a 500 or end the thread, and the counts it holds are written once it is back."""
    redis_proxy.start()
    store = SQLiteStore(str(tmp_path / "stats.db"), 2)
    tally = RedisTally(client=connect(f"redis://127.0.0.1:{redis_proxy.port}/0", socket_timeout=0.5),
                       prefix=redis_prefix)
    counters = BufferedCounters(store, flush_seconds=3600, tally=tally)
    counters.count_hit()
    counters.count_hit()
    counters.count_miss()
    redis_proxy.cut()
    counters.flush()  # nothing raised
    redis_proxy.start()
    counters.flush()
    with store.connection() as conn:
        stats = store.read_stats(conn)
    assert (stats["cache_hits"], stats["cache_misses"]) == (2, 1)
    store.close()


def test_hit_counts_wait_in_the_process_yet_a_stats_reader_on_another_host_sees_them(redis_url, redis_prefix):
    """A hit costs no Redis round trip (counts are sent every flush_seconds), but a reader that holds the batch
    with wait=True (/stats) first has every process send what it holds."""
    hosts = []
    for _ in range(2):
        client = connect(redis_url)
        events = RedisEvents(client=client, prefix=redis_prefix)
        hosts.append((RedisTally(client=client, prefix=redis_prefix, events=events, flush_seconds=3600), events))
    (host_a, events_a), (host_b, events_b) = hosts
    events_a.start()
    for _ in range(3):
        host_a.add("hits")
    host_a.add("misses")
    assert connect(redis_url).get(redis_prefix + "tally:hits") is None  # nothing sent yet
    with host_b.batch() as held:
        assert held
        assert (host_b.take("hits"), host_b.take("misses")) == (3, 1)
    assert host_a.read("hits") == 0
    events_a.close()
    events_b.close()
