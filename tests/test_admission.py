"""The Admission role (backend/roles.py): a request's rate limit and daily quota decided together, the same way
by every implementation (in memory + the store, the shared table, Redis in one round trip); and on Redis what
the single round trip must keep: one EVALSHA per keyed hit, exact limits and quotas across hosts, and a quota
that stays exact when Redis loses its data."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
import redis

from backend.roles import QUOTA_EXHAUSTED, QUOTA_KEY_INACTIVE, QUOTA_KEY_UNKNOWN, Admission
from backend.runtime.admission import LimiterThenQuota, TableAdmission
from backend.runtime.quota import TableQuota
from backend.runtime.ratelimit import RateLimiter, SharedRateLimiter
from backend.runtime.redis_state import RedisAdmission
from backend.runtime.sharedtable import SharedTable
from backend.web.auth import StoreQuota
from tests.conftest import create_key, deactivated_and_deleted_keys


@pytest.fixture(params=["memory + store", "shared table", "shared tables on one lock", "redis"])
def admission_and_app(request, make_app, tmp_path):
    """An Admission with a rate limit of 3 per minute, and the production app whose store holds the keys."""
    if request.param == "redis":
        app = make_app(production=True, rate_limit=3, redis_url=request.getfixturevalue("redis_url"),
                       redis_prefix=request.getfixturevalue("redis_prefix"))
        return app.extensions["essentia"].admission, app
    app = make_app(production=True)
    store = app.extensions["essentia"].store
    if request.param == "memory + store":
        return LimiterThenQuota(RateLimiter(3, 60.0), StoreQuota(store)), app
    if request.param == "shared table":
        table = SharedTable(tmp_path / "shared", slots=64)
        return LimiterThenQuota(SharedRateLimiter(3, 60.0, table=table),
                                TableQuota(store, table, flush_seconds=0.0)), app
    return _table_admission(store, tmp_path, limit=3), app


def _table_admission(store, tmp_path, *, limit: int) -> TableAdmission:
    """As build_roles makes it under gunicorn: two tables, the quota's on the limiter's lock."""
    limits = SharedTable(tmp_path / "rate-limits", slots=64)
    return TableAdmission(SharedRateLimiter(limit, 60.0, table=limits),
                          TableQuota(store, SharedTable(tmp_path / "quota", slots=64, lock_of=limits),
                                     flush_seconds=0.0))


def test_every_admission_satisfies_the_protocol(admission_and_app):
    assert isinstance(admission_and_app[0], Admission)


def test_a_keyed_request_is_counted_by_the_limiter_and_the_quota_together(admission_and_app):
    admission, app = admission_and_app
    create_key(app, "alice", "--daily-limit", "2")
    decisions = [admission.admit("key:1", 1) for _ in range(4)]
    assert [d.rate.allowed for d in decisions] == [True, True, True, False]
    assert [d.rate.remaining for d in decisions] == [2, 1, 0, 0]
    assert [d.quota.allowed for d in decisions[:3]] == [True, True, False]
    assert decisions[2].quota.refusal == QUOTA_EXHAUSTED and decisions[2].quota.daily_limit == 2
    assert decisions[3].quota is None  # refused by the limiter first: the quota was not asked
    assert 1 <= decisions[3].rate.retry_after <= 60


def test_a_request_the_limiter_refuses_is_not_counted_against_the_quota(admission_and_app):
    admission, app = admission_and_app
    create_key(app, "alice", "--daily-limit", "5")
    assert [admission.admit("addr:one", 1).rate.allowed for _ in range(4)] == [True, True, True, False]
    # Three were counted; a client with a window of its own has exactly two left of the key's five.
    assert [admission.admit("addr:two", 1).quota.allowed for _ in range(3)] == [True, True, False]


def test_a_changed_key_is_refused_and_still_counted_by_the_limiter(admission_and_app):
    admission, app = admission_and_app
    deactivated_and_deleted_keys(app)
    assert admission.admit("key:1", 1).quota.refusal == QUOTA_KEY_INACTIVE
    assert admission.admit("key:2", 2).quota.refusal == QUOTA_KEY_UNKNOWN
    assert [admission.admit("key:1", 1).rate.remaining for _ in range(2)] == [1, 0]


def test_a_request_without_a_key_is_only_rate_limited(admission_and_app):
    admission, _ = admission_and_app
    decisions = [admission.admit("addr:10.0.0.1", None) for _ in range(4)]
    assert [d.rate.allowed for d in decisions] == [True, True, True, False]
    assert all(d.quota is None for d in decisions)


def test_without_a_rate_limit_only_the_quota_counts(make_app):
    app = make_app(production=True)
    create_key(app, "alice", "--daily-limit", "1")
    admission = LimiterThenQuota(None, StoreQuota(app.extensions["essentia"].store))
    first, second = admission.admit("key:1", 1), admission.admit("key:1", 1)
    assert first.rate is None and first.quota.allowed
    assert second.quota.refusal == QUOTA_EXHAUSTED


# -- on the shared tables of one host -----------------------------------------------------------------------------

class FlockCounter:
    """Counts the exclusive flocks the shared tables take, by wrapping the fcntl module they call."""

    def __init__(self, monkeypatch):
        import backend.runtime.sharedtable as sharedtable
        self.taken = 0
        real = sharedtable.fcntl

        def flock(fd, operation):
            self.taken += operation == real.LOCK_EX
            return real.flock(fd, operation)

        monkeypatch.setattr(sharedtable, "fcntl", SimpleNamespace(flock=flock, LOCK_EX=real.LOCK_EX,
                                                                  LOCK_UN=real.LOCK_UN))


def test_a_keyed_request_takes_the_shared_tables_lock_once(make_app, tmp_path, monkeypatch):
    app = make_app(production=True)
    create_key(app, "alice", "--daily-limit", "100")
    store = app.extensions["essentia"].store
    admission = _table_admission(store, tmp_path, limit=100)
    assert admission.admit("key:1", 1).quota.allowed  # maps the files and starts the key's day from the store
    counter = FlockCounter(monkeypatch)
    for _ in range(5):
        assert admission.admit("key:1", 1).quota.allowed
    assert counter.taken == 5
    # The same tables asked one after the other (what build_roles gave before) take two.
    quota = TableQuota(store, admission._quota.table, flush_seconds=0.0)
    LimiterThenQuota(admission._limiter, quota).admit("key:1", 1)
    assert counter.taken == 7


def test_a_keys_first_request_of_the_day_reads_the_store_outside_the_lock(make_app, tmp_path, monkeypatch):
    app = make_app(production=True)
    create_key(app, "alice", "--daily-limit", "3")
    store = app.extensions["essentia"].store
    admission = _table_admission(store, tmp_path, limit=100)
    limits = admission._limiter.table
    held_while_reading = []

    def usage_today(*args):
        held_while_reading.append(limits._lock_owner._depth)
        return 2  # two counted today already (by requests before a restart)
    monkeypatch.setattr(store, "usage_today", usage_today)
    assert [admission.admit("key:1", 1).quota.allowed for _ in range(2)] == [True, False]
    assert held_while_reading == [0]  # read once, with the table's lock free


def test_table_admission_wants_tables_on_one_lock(make_app, tmp_path):
    store = make_app(production=True).extensions["essentia"].store
    with pytest.raises(ValueError):
        TableAdmission(SharedRateLimiter(3, 60.0, table=SharedTable(tmp_path / "a", slots=64)),
                       TableQuota(store, SharedTable(tmp_path / "b", slots=64)))


# -- on Redis -----------------------------------------------------------------------------------------------------

def _redis_app(make_app, request, **overrides):
    return make_app(production=True, redis_url=request.getfixturevalue("redis_url"),
                    redis_prefix=request.getfixturevalue("redis_prefix"), **overrides)


class CommandCounter:
    """Counts the Redis round trips this thread makes (commands, and pipelines as one), by wrapping redis-py."""

    def __init__(self, monkeypatch):
        self.commands: list[str] = []
        thread = threading.get_ident()
        run_command, run_pipeline = redis.Redis.execute_command, redis.client.Pipeline.execute

        def counted_command(client, *args, **options):
            if threading.get_ident() == thread:
                self.commands.append(str(args[0]).upper())
            return run_command(client, *args, **options)

        def counted_pipeline(pipe, *args, **options):
            if threading.get_ident() == thread:
                self.commands.append("PIPELINE")
            return run_pipeline(pipe, *args, **options)

        monkeypatch.setattr(redis.Redis, "execute_command", counted_command)
        monkeypatch.setattr(redis.client.Pipeline, "execute", counted_pipeline)


def test_a_keyed_hit_on_redis_is_one_evalsha(make_app, request, monkeypatch, song_120_a_minor):
    app = _redis_app(make_app, request, rate_limit=100, stats_flush_seconds=60.0)
    key = create_key(app, "alice")
    client = app.test_client()
    headers = {"X-API-Key": key, "Content-Type": "audio/wav"}
    assert client.post("/analyze_data", data=song_120_a_minor, headers=headers).status_code == 200  # the miss
    assert client.post("/analyze_data", data=song_120_a_minor, headers=headers).get_json()["cached"]
    counter = CommandCounter(monkeypatch)
    for _ in range(5):
        response = client.post("/analyze_data", data=song_120_a_minor, headers=headers)
        assert response.status_code == 200 and response.get_json()["cached"] is True
        assert response.headers["X-RateLimit-Limit"] == "100"
    assert counter.commands == ["EVALSHA"] * 5  # rate limit + quota in one script; the hit count waits


def test_two_apps_on_one_redis_share_an_exact_rate_limit_and_quota(make_app, request):
    """Two apps on one store and one Redis prefix stand in for two hosts; threads spread requests over both."""
    host_a = _redis_app(make_app, request, rate_limit=30)
    host_b = _redis_app(make_app, request, rate_limit=30)
    limited = create_key(host_a, "rate-bound", "--daily-limit", "100")
    budgeted = create_key(host_a, "quota-bound", "--daily-limit", "12")
    answers: dict[str, list] = {limited: [], budgeted: []}

    def ask(app, key):
        client = app.test_client()
        for _ in range(10):
            response = client.get("/cache?limit=1", headers={"X-API-Key": key})
            answers[key].append((response.status_code, (response.get_json() or {}).get("error")))

    threads = [threading.Thread(target=ask, args=(app, key)) for app in (host_a, host_b, host_a, host_b)
               for key in (limited, budgeted)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    outcomes = {key: sorted((error or "ok") for _, error in answers[key]) for key in answers}
    assert outcomes[limited] == ["ok"] * 30 + ["rate_limited"] * 10  # 40 asked, 30 a minute
    # 12 a day; the quota's refusals still count in the rate limit, so the last 10 meet the limiter first.
    assert outcomes[budgeted] == ["daily_quota_exceeded"] * 18 + ["ok"] * 12 + ["rate_limited"] * 10


def test_redis_losing_its_data_keeps_the_quota_exact(make_app, request, redis_client, redis_prefix):
    """Deleting the test's prefix stands in for FLUSHALL (or a restart of a Redis that keeps nothing on disk)."""
    host_a = _redis_app(make_app, request, rate_limit=1000)
    host_b = _redis_app(make_app, request, rate_limit=1000)
    key = create_key(host_a, "budget", "--daily-limit", "10")
    ask = lambda n: (host_a if n % 2 else host_b).test_client().get("/cache?limit=1", headers={"X-API-Key": key})
    assert [ask(n).status_code for n in range(6)] == [200] * 6
    redis_client.delete(*redis_client.keys(redis_prefix + "*"))
    answers = [ask(n) for n in range(6)]
    assert [a.status_code for a in answers] == [200] * 4 + [429] * 2
    assert answers[-1].get_json()["error"] == "daily_quota_exceeded"
    assert answers[0].headers["X-RateLimit-Remaining"] == "999"  # the rate window did start again


def test_redis_admission_is_what_build_roles_gives_several_hosts(make_app, request):
    assert isinstance(_redis_app(make_app, request, rate_limit=5).extensions["essentia"].admission,
                      RedisAdmission)
