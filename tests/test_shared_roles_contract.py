"""The shared roles under concurrency, for every implementation that shares (tests/test_roles.py has the basic
contracts): exact limits and tallies under threads and across processes, windows that end, quotas that hand out
each count once, one winner among processes that claim a song, claims of a crashed owner that end, and on
Redis: leases renewed while the owner works, waiters woken by the release, quotas re-seeded from the store after
Redis lost them. The Redis runs use the test Redis (ESSENTIA_TEST_REDIS_URL) with a key prefix of their own; they
skip when it does not answer, and fail instead under ESSENTIA_REQUIRE_SERVICES=1."""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
from datetime import timedelta

import pytest

from backend.runtime.claims import ContentClaims
from backend.runtime.ratelimit import RateLimiter, SharedRateLimiter
from backend.runtime.redis_state import (RedisClaims, RedisEvents, RedisQuota, RedisRateLimiter, RedisTally,
                                         connect)
from backend.runtime.sharedtable import SharedTable
from backend.runtime.tally import LocalTally, SharedTally
from backend.timeutil import utc_now
from backend.web.auth import StoreQuota, StoreQuotaRecords

FORK = multiprocessing.get_context("fork")


# -- how to build each implementation (also in a forked child: everything is passed as plain values) ----------

def build_limiter(kind: str, place: str, limit: int, window: float):
    if kind == "memory":
        return RateLimiter(limit, window)
    if kind == "shared-table":
        return SharedRateLimiter(limit, window, table=SharedTable(os.path.join(place, "limits"), slots=1024))
    url, prefix = place.split("|")
    return RedisRateLimiter(limit, window, client=connect(url), prefix=prefix)


def build_tally(kind: str, place: str):
    if kind == "memory":
        return LocalTally()
    if kind == "shared-table":
        return SharedTally(os.path.join(place, "tally"))
    url, prefix = place.split("|")
    return RedisTally(client=connect(url), prefix=prefix)


def build_claims(kind: str, place: str):
    if kind == "shared-table":
        return ContentClaims(SharedTable(os.path.join(place, "claims"), slots=64))
    url, prefix = place.split("|")
    client = connect(url)
    return RedisClaims(client=client, prefix=prefix, events=RedisEvents(client=client, prefix=prefix),
                       lease_seconds=1.0)


@pytest.fixture
def place_for(tmp_path, request):
    """Where an implementation keeps its state: a folder for the shared table, 'url|prefix' for Redis."""
    def place(kind: str) -> str:
        if kind == "redis":
            url = request.getfixturevalue("redis_url")
            return f"{url}|{request.getfixturevalue('redis_prefix')}"
        return str(tmp_path)
    return place


# -- rate limiter ------------------------------------------------------------------------------------------------

LIMITERS = ["memory", "shared-table", "redis"]


@pytest.mark.parametrize("kind", LIMITERS)
def test_limiter_window_ends_and_the_count_starts_again(kind, place_for):
    limiter = build_limiter(kind, place_for(kind), 2, 0.4)
    assert limiter.hit("addr:9").allowed and limiter.hit("addr:9").allowed
    denied = limiter.hit("addr:9")
    assert not denied.allowed and 0 < denied.reset_after <= 0.4 and denied.retry_after == 1
    time.sleep(denied.reset_after + 0.05)
    again = limiter.hit("addr:9")
    assert again.allowed and again.remaining == 1


@pytest.mark.parametrize("kind", LIMITERS)
def test_limiter_is_exact_under_threads(kind, place_for):
    limiter = build_limiter(kind, place_for(kind), 100, 60.0)
    allowed = []

    def hammer():
        allowed.append(sum(limiter.hit("key:7").allowed for _ in range(40)))

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 100  # 240 attempts, one budget


def _limiter_in_child(kind: str, place: str, results) -> None:
    limiter = build_limiter(kind, place, 150, 60.0)
    results.put(sum(limiter.hit("key:3").allowed for _ in range(100)))


@pytest.mark.parametrize("kind", ["shared-table", "redis"])
def test_limiter_is_exact_across_processes(kind, place_for):
    results = FORK.Queue()
    children = [FORK.Process(target=_limiter_in_child, args=(kind, place_for(kind), results)) for _ in range(4)]
    for child in children:
        child.start()
    allowed = sum(results.get(timeout=60) for _ in children)
    for child in children:
        child.join(30)
    assert allowed == 150


# -- tally -------------------------------------------------------------------------------------------------------

TALLIES = ["memory", "shared-table", "redis"]


@pytest.mark.parametrize("kind", TALLIES)
def test_tally_loses_no_count_under_threads(kind, place_for):
    tally = build_tally(kind, place_for(kind))
    taken = []

    def count():
        for _ in range(200):
            tally.add("hits")

    def flush():
        for _ in range(20):
            taken.append(tally.take("hits"))

    threads = [threading.Thread(target=count) for _ in range(4)] + [threading.Thread(target=flush)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(taken) + tally.take("hits") == 800


def _hold_batch(kind: str, place: str, held, release) -> None:
    tally = build_tally(kind, place)
    with tally.batch() as got:
        assert got
        held.set()
        release.wait(10)


@pytest.mark.parametrize("kind", ["shared-table", "redis"])
def test_one_process_at_a_time_holds_the_tallys_batch(kind, place_for):
    """What keeps /stats exact: a flush in another process is never half done while /stats reads."""
    place, held, release = place_for(kind), FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold_batch, args=(kind, place, held, release))
    holder.start()
    try:
        assert held.wait(20)
        tally = build_tally(kind, place)
        with tally.batch(wait=False) as got:
            assert not got
        release.set()
        holder.join(20)
        with tally.batch(wait=False) as got:
            assert got
    finally:
        release.set()
        holder.join(20)


# -- claims (single flight across processes / hosts) -------------------------------------------------------------

CLAIMS = ["shared-table", "redis"]


def _claim_in_child(kind: str, place: str, start, results) -> None:
    claims = build_claims(kind, place)
    start.wait(10)
    won = claims.try_claim("sha256:abc", 30.0)
    results.put(won)
    time.sleep(0.5)  # hold it while the others try
    if won:
        claims.release("sha256:abc")


@pytest.mark.parametrize("kind", CLAIMS)
def test_one_process_among_many_wins_a_claim(kind, place_for):
    place, start, results = place_for(kind), FORK.Event(), FORK.Queue()
    children = [FORK.Process(target=_claim_in_child, args=(kind, place, start, results)) for _ in range(6)]
    for child in children:
        child.start()
    start.set()
    outcomes = [results.get(timeout=30) for _ in children]
    for child in children:
        child.join(30)
    assert sorted(outcomes) == [False] * 5 + [True]
    assert build_claims(kind, place).try_claim("sha256:abc", 30.0)  # released: free again


def _claim_and_die(kind: str, place: str, claimed) -> None:
    claims = build_claims(kind, place)
    claims.try_claim("url:dies", 30.0)
    claimed.set()
    time.sleep(60)


@pytest.mark.parametrize("kind", CLAIMS)
def test_a_crashed_owners_claim_ends_by_itself(kind, place_for):
    place, claimed = place_for(kind), FORK.Event()
    child = FORK.Process(target=_claim_and_die, args=(kind, place, claimed))
    child.start()
    assert claimed.wait(20)
    claims = build_claims(kind, place)
    assert not claims.try_claim("url:dies", 30.0)
    os.kill(child.pid, 9)
    child.join(10)
    deadline = time.monotonic() + 5.0  # the Redis lease in these tests is 1 s; a dead pid frees the table's at once
    while not claims.try_claim("url:dies", 30.0):
        assert time.monotonic() < deadline, "the dead owner's claim never ended"
        time.sleep(0.05)


def test_redis_claim_outlives_its_lease_while_the_owner_works(place_for):
    place = place_for("redis")
    owner, other = build_claims("redis", place), build_claims("redis", place)
    assert owner.try_claim("url:long", 30.0)
    time.sleep(2.5)  # the lease is 1 s: the owner renews it
    assert not other.try_claim("url:long", 30.0)
    owner.release("url:long")
    assert other.try_claim("url:long", 30.0)


def test_redis_waiters_wake_when_the_claim_is_released(place_for):
    place = place_for("redis")
    owner, waiter = build_claims("redis", place), build_claims("redis", place)
    waiter.prepare()
    assert owner.try_claim("url:song", 30.0)
    assert not waiter.try_claim("url:song", 30.0)
    threading.Timer(0.2, owner.release, args=("url:song",)).start()
    started = time.monotonic()
    waiter.wait("url:song", 10.0)
    woke_after = time.monotonic() - started
    assert 0.15 <= woke_after < 0.6  # woken by the release, not by the 1 s slice
    assert waiter.try_claim("url:song", 30.0)


# -- quota -------------------------------------------------------------------------------------------------------

#: Tomorrow (UTC): a day that has not ended, as in service (a day that is over is tested on its own below).
DAY = (utc_now() + timedelta(days=1)).strftime("%Y-%m-%d")


@pytest.fixture
def key_store(any_store):
    """Each store (SQLite, PostgreSQL) with one key whose daily limit is 50; returns (store, key id)."""
    with any_store.connection(write=True) as conn:
        key_id = any_store.insert_key(conn, name="q", email=None, key_hash="h" * 64, key_prefix="ess_q",
                                      is_admin=False, daily_limit=50, created_at="2026-11-30T00:00:00Z")
    return any_store, key_id


def _redis_quota(request, store, **options) -> RedisQuota:
    return RedisQuota(client=connect(request.getfixturevalue("redis_url")),
                      prefix=request.getfixturevalue("redis_prefix"), records=StoreQuotaRecords(store), **options)


@pytest.mark.parametrize("kind", ["store", "redis"])
def test_quota_allows_exactly_the_daily_limit_under_threads(kind, key_store, request):
    store, key_id = key_store
    quota = StoreQuota(store) if kind == "store" else _redis_quota(request, store, flush_seconds=0)
    decisions = []

    def spend():
        for _ in range(20):
            decisions.append(quota.consume(key_id))

    threads = [threading.Thread(target=spend) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(d.allowed for d in decisions) == 50  # 100 attempts, a limit of 50
    quota.flush()
    with store.connection() as conn:
        assert store.usage_today(conn, key_id, store_day()) == 50  # the store holds the count either way


def store_day() -> str:
    from backend.timeutil import utc_today
    return utc_today()


def test_redis_quota_is_reseeded_from_the_store_after_redis_loses_it(key_store, request, redis_client,
                                                                     redis_prefix):
    store, key_id = key_store
    quota = _redis_quota(request, store, flush_seconds=0)
    assert [quota.count(key_id, DAY, 10) for _ in range(6)] == [1, 2, 3, 4, 5, 6]
    with store.connection() as conn:
        assert store.usage_today(conn, key_id, DAY) == 6  # written through (flush_seconds=0 here)
    redis_client.delete(*redis_client.keys(redis_prefix + "*"))  # what a restart or FLUSHALL does
    fresh_host = _redis_quota(request, store, flush_seconds=0)  # knows nothing but the store
    assert [fresh_host.count(key_id, DAY, 10) for _ in range(5)] == [7, 8, 9, 10, None]


def test_redis_quota_counts_from_the_store_on_first_use(key_store, request):
    store, key_id = key_store
    with store.connection(write=True) as conn:
        store.raise_daily_usage(conn, [(key_id, DAY, 9)])  # counted earlier today, e.g. before Redis was used
    quota = _redis_quota(request, store, flush_seconds=0)
    assert quota.count(key_id, DAY, 10) == 10
    assert quota.count(key_id, DAY, 10) is None


def test_redis_quota_still_counts_a_day_that_is_over(key_store, request):
    """A host whose clock lags (or a count for a past day) must not have its count expire the moment it is seeded:
    that found the count missing on every request and let each one through uncounted."""
    store, key_id = key_store
    over = (utc_now() - timedelta(days=2)).strftime("%Y-%m-%d")
    quota = _redis_quota(request, store, flush_seconds=0)
    assert [quota.count(key_id, over, 3) for _ in range(4)] == [1, 2, 3, None]
    with store.connection() as conn:
        assert store.usage_today(conn, key_id, over) == 3


def test_the_store_count_is_only_ever_raised(key_store):
    store, key_id = key_store
    with store.connection(write=True) as conn:
        store.raise_daily_usage(conn, [(key_id, DAY, 5)])
        store.raise_daily_usage(conn, [(key_id, DAY, 3), (999, DAY, 4)])  # lower, and a key that does not exist
        assert store.usage_today(conn, key_id, DAY) == 5
        assert store.usage_today(conn, 999, DAY) == 0


def test_redis_quota_another_hosts_floor_restores_what_the_store_had_not_seen(key_store, request, redis_client,
                                                                              redis_prefix):
    """Host B counted up to 8 and its counts had not reached the store yet when Redis lost them: B's next call
    raises the count back, so A (which seeded from the stale store) cannot hand out B's requests again."""
    store, key_id = key_store
    host_a = _redis_quota(request, store, flush_seconds=3600)
    host_b = _redis_quota(request, store, flush_seconds=3600)
    assert [host_a.count(key_id, DAY, 10) for _ in range(3)] == [1, 2, 3]
    host_a.flush()
    assert [host_b.count(key_id, DAY, 10) for _ in range(5)] == [4, 5, 6, 7, 8]
    redis_client.delete(*redis_client.keys(redis_prefix + "*"))
    assert host_a.count(key_id, DAY, 10) == 4  # seeded from the store's 3: B's five are not there yet
    assert host_b.count(key_id, DAY, 10) == 9  # B raises it to what it saw (8), then counts
    assert host_a.count(key_id, DAY, 10) == 10
    assert host_b.count(key_id, DAY, 10) is None


def test_redis_quota_sees_a_changed_limit_once_told(key_store, request):
    store, key_id = key_store
    quota = _redis_quota(request, store, flush_seconds=0)
    assert quota.consume(key_id).allowed
    with store.connection(write=True) as conn:
        store.set_key_daily_limit(conn, key_id, 1)
    assert quota.consume(key_id).allowed  # the limit it knew (50) holds until it is told or its TTL ends
    quota.forget_key(key_id)
    refused = quota.consume(key_id)
    assert not refused.allowed and refused.daily_limit == 1
