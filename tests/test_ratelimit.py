"""The rate limiter: its arithmetic under a fake clock, its memory bound and pruning, its thread safety, and the
429 a client sees through the app (per key in production mode, per address in development mode)."""
from __future__ import annotations

import threading
from collections import OrderedDict

import pytest

from backend.runtime.ratelimit import RateLimiter
from tests.conftest import create_key


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- the limiter on its own -------------------------------------------------------------------------------------

def test_allows_limit_requests_then_refuses_until_the_window_ends():
    clock = FakeClock()
    limiter = RateLimiter(3, 60.0, clock=clock)
    decisions = [limiter.hit("alice") for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, True]
    assert [d.remaining for d in decisions] == [2, 1, 0]
    assert all(d.limit == 3 for d in decisions)
    assert decisions[0].reset_after == pytest.approx(60.0)

    clock.advance(20.5)
    refused = limiter.hit("alice")
    assert not refused.allowed and refused.remaining == 0 and refused.limit == 3
    assert refused.reset_after == pytest.approx(39.5)
    assert refused.retry_after == 40  # whole seconds, rounded up so a retry then succeeds
    assert refused.headers() == {"X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "40"}

    clock.advance(39.4)  # 0.1 s before the window ends: still refused
    assert not limiter.hit("alice").allowed
    clock.advance(0.1)   # the window has ended: a fresh one starts with this request
    fresh = limiter.hit("alice")
    assert fresh.allowed and fresh.remaining == 2 and fresh.reset_after == pytest.approx(60.0)


def test_refused_requests_do_not_extend_the_window():
    clock = FakeClock()
    limiter = RateLimiter(1, 10.0, clock=clock)
    assert limiter.hit("c").allowed
    for _ in range(5):
        clock.advance(1.0)
        assert not limiter.hit("c").allowed
    clock.advance(5.0)  # 10 s after the first request
    assert limiter.hit("c").allowed


def test_retry_after_is_at_least_one_second():
    clock = FakeClock()
    limiter = RateLimiter(1, 10.0, clock=clock)
    limiter.hit("c")
    clock.advance(9.999)
    refused = limiter.hit("c")
    assert not refused.allowed and refused.retry_after == 1


def test_clients_are_counted_separately():
    clock = FakeClock()
    limiter = RateLimiter(2, 60.0, clock=clock)
    assert limiter.hit("a").allowed and limiter.hit("a").allowed
    assert not limiter.hit("a").allowed
    b = limiter.hit("b")
    assert b.allowed and b.remaining == 1


def test_zero_or_negative_limit_is_refused_at_construction():
    with pytest.raises(ValueError):
        RateLimiter(0)
    with pytest.raises(ValueError):
        RateLimiter(-5)


def test_memory_stays_bounded_however_many_clients_appear():
    clock = FakeClock()
    limiter = RateLimiter(5, 60.0, max_clients=1000, clock=clock)
    for i in range(1_000_000):
        limiter.hit(i)
        if i % 100_000 == 0:
            assert len(limiter) <= 1000
    assert len(limiter) == 1000
    # The most recent clients are the ones remembered: a recent one keeps its count.
    assert limiter.hit(999_999).remaining == 3


class _CountingOrderedDict(OrderedDict):
    """An OrderedDict that counts how many entries anyone iterates over (to catch full scans)."""

    visited = 0

    def _count(self, iterator):
        for item in iterator:
            type(self).visited += 1
            yield item

    def __iter__(self):
        return self._count(super().__iter__())

    def items(self):
        return self._count(super().items())

    def keys(self):
        return self._count(super().keys())

    def values(self):
        return self._count(super().values())


def test_expired_windows_are_pruned_without_scanning_live_ones():
    clock = FakeClock()
    limiter = RateLimiter(10, 60.0, clock=clock)
    limiter._windows = _CountingOrderedDict()
    for i in range(500):            # these windows will have expired
        limiter.hit(("old", i))
    clock.advance(30.0)
    for i in range(5000):           # these will still be live
        limiter.hit(("live", i))
    assert len(limiter) == 5500

    clock.advance(31.0)             # 61 s after the first batch, 31 s after the second
    _CountingOrderedDict.visited = 0
    assert limiter.hit("newcomer").allowed
    assert len(limiter) == 5001     # the 500 expired windows are gone, every live one is kept
    assert limiter.hit(("live", 0)).remaining == 8
    assert limiter.hit(("old", 0)).remaining == 9  # an expired client starts afresh
    # Dropping 500 expired entries looked at about 500 entries, not at the 5000 live ones.
    assert _CountingOrderedDict.visited <= 500 + 10, _CountingOrderedDict.visited

    _CountingOrderedDict.visited = 0
    for i in range(100):
        limiter.hit(("live", i))
    assert _CountingOrderedDict.visited <= 100  # nothing expired: O(1) per call


def test_after_the_window_passes_one_hit_leaves_only_live_entries():
    clock = FakeClock()
    limiter = RateLimiter(3, 60.0, clock=clock)
    for i in range(10_000):
        limiter.hit(i)
    clock.advance(60.0)
    limiter.hit("only-live-one")
    assert len(limiter) == 1


def test_concurrent_hits_from_eight_threads_allow_exactly_the_limit():
    limiter = RateLimiter(100, 60.0)
    barrier = threading.Barrier(8)
    allowed = [0] * 8

    def worker(index: int) -> None:
        barrier.wait()
        for _ in range(50):
            if limiter.hit("shared").allowed:
                allowed[index] += 1
            limiter.hit(("own", index))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 100
    for i in range(8):  # each thread's own client used 50 of its 100
        assert limiter.hit(("own", i)).remaining == 49


# -- through the app --------------------------------------------------------------------------------------------

def _assert_rate_headers(response, limit: int, remaining: int) -> None:
    assert response.headers["X-RateLimit-Limit"] == str(limit)
    assert response.headers["X-RateLimit-Remaining"] == str(remaining)
    reset = int(response.headers["X-RateLimit-Reset"])
    assert 1 <= reset <= 60


def test_production_key_is_limited_with_429_and_headers(make_app):
    app = make_app(production=True, rate_limit=3)
    alice = create_key(app, "alice")
    bob = create_key(app, "bob")
    client = app.test_client()

    for expected_remaining in (2, 1, 0):
        response = client.get("/cache", headers={"X-API-Key": alice})
        assert response.status_code == 200
        _assert_rate_headers(response, 3, expected_remaining)

    refused = client.get("/cache", headers={"X-API-Key": alice})
    assert refused.status_code == 429
    assert refused.is_json
    body = refused.get_json()
    assert body["error"] == "rate_limited"
    assert "3" in body["message"] and "minute" in body["message"]
    _assert_rate_headers(refused, 3, 0)
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert retry_after == int(refused.headers["X-RateLimit-Reset"])

    # Another key has its own allowance.
    other = client.get("/cache", headers={"X-API-Key": bob})
    assert other.status_code == 200
    _assert_rate_headers(other, 3, 2)
    # And the limited key stays limited.
    assert client.get("/stats", headers={"X-API-Key": alice}).status_code == 429


def test_production_limit_applies_across_endpoints_of_one_key(make_app):
    app = make_app(production=True, rate_limit=2)
    key = create_key(app, "k")
    client = app.test_client()
    assert client.get("/stats", headers={"X-API-Key": key}).status_code == 200
    assert client.get("/cache/export", headers={"X-API-Key": key}).status_code == 200
    assert client.get("/cache/search?q=x", headers={"X-API-Key": key}).status_code == 429


def test_development_mode_limits_per_client_address(make_app):
    app = make_app(rate_limit=2)
    client = app.test_client()
    first_addr = {"REMOTE_ADDR": "10.1.1.1"}
    assert client.get("/cache", environ_base=first_addr).status_code == 200
    assert client.get("/cache", environ_base=first_addr).status_code == 200
    refused = client.get("/cache", environ_base=first_addr)
    assert refused.status_code == 429 and refused.get_json()["error"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    other = client.get("/cache", environ_base={"REMOTE_ADDR": "10.2.2.2"})
    assert other.status_code == 200
    _assert_rate_headers(other, 2, 1)


def test_development_mode_has_no_limit_unless_configured(make_app):
    client = make_app().test_client()
    for _ in range(80):
        response = client.get("/cache")
        assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response.headers


def test_rate_limit_zero_means_off_in_production(make_app):
    app = make_app(production=True, rate_limit=0)
    assert app.extensions["essentia"].rate_limiter is None
    key = create_key(app, "k")
    client = app.test_client()
    for _ in range(80):
        response = client.get("/cache", headers={"X-API-Key": key})
        assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response.headers


def test_health_is_never_rate_limited(make_app):
    client = make_app(production=True, rate_limit=1).test_client()
    for _ in range(5):
        assert client.get("/health").status_code == 200
