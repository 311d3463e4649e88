"""The shared roles (backend/roles.py): every implementation satisfies its protocol and keeps the same contract,
and create_app picks one implementation per role from the settings.

A new implementation (e.g. on Redis) joins a contract by adding a fixture parameter below."""
from __future__ import annotations

import time

import pytest

from backend.app import build_roles
from backend.runtime.admission import LimiterThenQuota, TableAdmission
from backend.storage.sqlite import SQLiteStore
from backend.roles import (QUOTA_EXHAUSTED, QUOTA_KEY_INACTIVE, QUOTA_KEY_UNKNOWN, Claims, Executor, Limiter,
                           Quota, Tally)
from backend.runtime.claims import ContentClaims, SingleProcessClaims
from backend.runtime.executor import AnalysisExecutor
from backend.runtime.poolservice import PoolClient
from backend.runtime.quota import TableQuota
from backend.runtime.ratelimit import RateLimiter, SharedRateLimiter
from backend.runtime.redis_state import (RedisClaims, RedisEvents, RedisQuota, RedisRateLimiter, RedisTally,
                                         connect)
from backend.runtime.sharedtable import SharedTable
from backend.runtime.tally import LocalTally, SharedTally
from backend.web.auth import StoreQuota
from tests.conftest import create_key, deactivated_and_deleted_keys, settings_for


def _redis(request) -> dict:
    """Keyword arguments of a Redis implementation: a client of the test Redis and this test's own prefix."""
    return {"client": connect(request.getfixturevalue("redis_url")), "prefix": request.getfixturevalue("redis_prefix")}


@pytest.fixture(params=["memory", "shared table", "redis"])
def limiter(request, tmp_path) -> Limiter:
    if request.param == "memory":
        return RateLimiter(3, 60.0)
    if request.param == "redis":
        return RedisRateLimiter(3, 60.0, **_redis(request))
    return SharedRateLimiter(3, 60.0, table=SharedTable(tmp_path / "limits", slots=64))


@pytest.fixture(params=["memory", "shared table", "redis"])
def tally(request, tmp_path) -> Tally:
    if request.param == "memory":
        return LocalTally()
    if request.param == "redis":
        return RedisTally(**_redis(request))
    return SharedTally(tmp_path / "counters")


@pytest.fixture(params=["one process", "shared table", "redis"])
def claims(request, tmp_path) -> Claims:
    if request.param == "one process":
        return SingleProcessClaims()
    if request.param == "redis":
        redis_args = _redis(request)
        return RedisClaims(**redis_args, events=RedisEvents(**redis_args))
    return ContentClaims(SharedTable(tmp_path / "claims", slots=64))


@pytest.fixture(params=["store", "shared table", "redis"])
def quota_and_app(request, make_app, tmp_path):
    if request.param == "redis":
        app = make_app(production=True, redis_url=request.getfixturevalue("redis_url"),
                       redis_prefix=request.getfixturevalue("redis_prefix"))
        return app.extensions["essentia"].quota, app
    app = make_app(production=True)
    store = app.extensions["essentia"].store
    if request.param == "store":
        return StoreQuota(store), app
    return TableQuota(store, SharedTable(tmp_path / "quota", slots=64), flush_seconds=0.0), app


# -- each implementation is its role -----------------------------------------------------------------------------

def test_every_limiter_tally_and_claims_implementation_satisfies_its_protocol(limiter, tally, claims):
    assert isinstance(limiter, Limiter)
    assert isinstance(tally, Tally)
    assert isinstance(claims, Claims)


def test_both_executors_satisfy_the_executor_protocol(tmp_path):
    assert isinstance(AnalysisExecutor(workers=0, queue_depth=1, timeout=1.0), Executor)
    assert isinstance(PoolClient(str(tmp_path), timeout=1.0), Executor)


def test_every_quota_satisfies_the_quota_protocol(quota_and_app):
    assert isinstance(quota_and_app[0], Quota)


def test_a_class_missing_a_method_does_not_pass_for_a_role():
    class HalfTally:
        def add(self, name: str, amount: int = 1) -> None: ...

    assert not isinstance(HalfTally(), Tally)


# -- contracts ---------------------------------------------------------------------------------------------------

def test_limiter_allows_its_limit_per_client_then_refuses_with_the_time_to_wait(limiter):
    decisions = [limiter.hit("key:1") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert all(d.limit == 3 for d in decisions)
    assert 1 <= decisions[-1].retry_after <= 60
    assert decisions[-1].headers()["X-RateLimit-Remaining"] == "0"
    assert limiter.hit("key:2").allowed  # another client has its own window


def test_tally_adds_reads_and_takes_without_losing_counts(tally):
    tally.add("hits")
    tally.add("hits", 4)
    tally.add("misses")
    assert tally.read("hits") == 5 and tally.read("misses") == 1
    assert tally.take("hits") == 5
    assert tally.read("hits") == 0 and tally.read("misses") == 1
    tally.add("hits", 2)
    assert tally.take("hits") == 2


def test_claims_can_be_taken_renewed_and_released_by_their_holder(claims):
    assert claims.try_claim("sha256:abc", ttl=60.0)
    assert claims.try_claim("sha256:abc", ttl=60.0)  # the holder may renew its own claim
    claims.release("sha256:abc")
    claims.release("sha256:never-claimed")  # releasing what is not held is harmless
    assert claims.try_claim("sha256:abc", ttl=60.0)
    claims.release("sha256:abc")


def test_claims_wait_returns_within_the_time_given(claims):
    started = time.monotonic()
    claims.wait("sha256:abc", 0.2)
    assert time.monotonic() - started < 1.0


def test_quota_counts_to_the_limit_then_refuses_as_exhausted(quota_and_app):
    quota, app = quota_and_app
    create_key(app, "alice", "--daily-limit", "2")
    decisions = [quota.consume(1) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert decisions[-1].refusal == QUOTA_EXHAUSTED and decisions[-1].daily_limit == 2


def test_quota_tells_a_deactivated_key_from_a_deleted_one(quota_and_app):
    quota, app = quota_and_app
    deactivated_and_deleted_keys(app)
    assert quota.consume(1).refusal == QUOTA_KEY_INACTIVE
    assert quota.consume(2).refusal == QUOTA_KEY_UNKNOWN
    assert not quota.consume(1).allowed and not quota.consume(2).allowed


def test_quota_of_zero_is_unlimited(quota_and_app):
    quota, app = quota_and_app
    create_key(app, "alice", "--daily-limit", "0")
    assert all(quota.consume(1).allowed for _ in range(50))


# -- one choice per role, made in create_app ---------------------------------------------------------------------

def test_one_process_gets_the_in_memory_implementations(tmp_path):
    settings = settings_for(tmp_path, rate_limit=5)
    roles = build_roles(settings, SQLiteStore(settings.db_path, 1))
    assert isinstance(roles.executor, AnalysisExecutor)
    assert isinstance(roles.rate_limiter, RateLimiter)
    assert isinstance(roles.tally, LocalTally)
    assert isinstance(roles.claims, SingleProcessClaims)
    assert isinstance(roles.quota, StoreQuota)


def test_several_http_processes_get_the_shared_table_implementations(tmp_path):
    settings = settings_for(tmp_path, rate_limit=5, shared_state_dir=str(tmp_path / "shared"))
    roles = build_roles(settings, SQLiteStore(settings.db_path, 1))
    assert isinstance(roles.executor, PoolClient)
    assert isinstance(roles.rate_limiter, SharedRateLimiter)
    assert isinstance(roles.tally, SharedTally)
    assert isinstance(roles.claims, ContentClaims)
    assert isinstance(roles.quota, TableQuota)
    assert isinstance(roles.admission, TableAdmission)  # both under one flock per keyed request
    assert roles.quota.table.shares_lock_with(roles.rate_limiter.table)


def test_several_http_processes_without_a_rate_limit_ask_the_quota_alone(tmp_path):
    settings = settings_for(tmp_path, rate_limit=0, shared_state_dir=str(tmp_path / "shared"))
    roles = build_roles(settings, SQLiteStore(settings.db_path, 1))
    assert isinstance(roles.quota, TableQuota)
    assert isinstance(roles.admission, LimiterThenQuota)


def test_several_http_processes_on_a_shared_database_keep_the_stores_quota(tmp_path):
    # The shared table is one host's: hosts sharing PostgreSQL without Redis must count the quota in the database.
    settings = settings_for(tmp_path, rate_limit=5, shared_state_dir=str(tmp_path / "shared"),
                            database_url="postgresql://postgres@127.0.0.1:5432/postgres")
    roles = build_roles(settings, SQLiteStore(settings.db_path, 1))
    assert isinstance(roles.quota, StoreQuota)
    assert isinstance(roles.rate_limiter, SharedRateLimiter)


def test_several_hosts_get_the_redis_implementations(tmp_path, redis_url, redis_prefix):
    settings = settings_for(tmp_path, rate_limit=5, redis_url=redis_url, redis_prefix=redis_prefix)
    roles = build_roles(settings, SQLiteStore(settings.db_path, 1))
    assert isinstance(roles.rate_limiter, RedisRateLimiter)
    assert isinstance(roles.quota, RedisQuota)
    assert isinstance(roles.tally, RedisTally)
    assert isinstance(roles.claims, RedisClaims)
    roles.key_changes.close()


def test_no_rate_limit_means_no_limiter(tmp_path):
    settings = settings_for(tmp_path, rate_limit=0)
    assert build_roles(settings, SQLiteStore(settings.db_path, 1)).rate_limiter is None
