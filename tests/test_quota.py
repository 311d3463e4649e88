"""The daily quota per key: the 429 a client sees, `keys limit`, per-key counts, and a check whose cost does not
grow with the usage history."""
from __future__ import annotations

import sqlite3

import pytest

import backend.storage.sqlite
from backend.web.auth import require_api_key
from backend.timeutil import utc_today
from tests.conftest import create_key


class FakeClock:
    def __init__(self, now: float = 5000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def get(client, key: str, path: str = "/cache"):
    return client.get(path, headers={"X-API-Key": key})


def cli(app, *args: str):
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_third_request_over_a_limit_of_two_is_429_daily_quota(make_app):
    app = make_app(production=True)
    key = create_key(app, "alice", "--daily-limit", "2")
    client = app.test_client()
    assert get(client, key).status_code == 200
    assert get(client, key, "/stats").status_code == 200
    refused = get(client, key)
    assert refused.status_code == 429
    body = refused.get_json()
    assert body["error"] == "daily_quota_exceeded"
    assert "daily quota" in body["message"] and "2" in body["message"]
    assert "midnight UTC" in body["message"]
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 24 * 3600
    # It stays refused, and refused requests do not use up more quota.
    assert get(client, key, "/cache/export").status_code == 429
    assert "usage today: 2 of 2" in cli(app, "keys", "show", "1")


def test_keys_limit_zero_makes_a_key_unlimited(make_app):
    app = make_app(production=True, key_cache_ttl=0)
    key = create_key(app, "alice", "--daily-limit", "2")
    client = app.test_client()
    assert [get(client, key).status_code for _ in range(3)] == [200, 200, 429]
    assert "unlimited" in cli(app, "keys", "limit", "1", "0")
    assert all(get(client, key).status_code == 200 for _ in range(20))
    out = cli(app, "keys", "show", "1")
    assert "of unlimited" in out and "usage today: 22" in out, out


def test_raising_the_limit_allows_exactly_the_difference(make_app):
    app = make_app(production=True, key_cache_ttl=0)
    key = create_key(app, "alice", "--daily-limit", "1")
    client = app.test_client()
    assert [get(client, key).status_code for _ in range(2)] == [200, 429]
    cli(app, "keys", "limit", "1", "3")
    assert [get(client, key).status_code for _ in range(3)] == [200, 200, 429]


def test_a_new_limit_reaches_a_running_server_within_the_key_ttl(make_app):
    app = make_app(production=True)  # default TTL: the key record is cached
    clock = FakeClock()
    validator = app.extensions["essentia"].key_validator
    validator._clock = clock
    key = create_key(app, "alice", "--daily-limit", "1")
    client = app.test_client()
    assert [get(client, key).status_code for _ in range(2)] == [200, 429]
    cli(app, "keys", "limit", "1", "0")
    clock.now += validator.ttl + 1
    assert get(client, key).status_code == 200


def test_each_key_has_its_own_quota(make_app):
    app = make_app(production=True)
    alice = create_key(app, "alice", "--daily-limit", "1")
    bob = create_key(app, "bob", "--daily-limit", "2")
    client = app.test_client()
    assert get(client, alice).status_code == 200
    assert get(client, alice).status_code == 429
    assert get(client, bob).status_code == 200
    assert get(client, bob).status_code == 200
    assert get(client, bob).status_code == 429


def test_default_quota_for_new_keys_comes_from_settings(make_app):
    app = make_app(production=True, daily_limit=3)
    key = create_key(app, "alice")
    client = app.test_client()
    assert [get(client, key).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_development_mode_has_no_quota(make_app):
    app = make_app(daily_limit=1)
    create_key(app, "alice", "--daily-limit", "1")
    client = app.test_client()
    assert all(client.get("/cache").status_code == 200 for _ in range(5))


def test_quota_is_counted_per_utc_day(make_app):
    app = make_app(production=True)
    key = create_key(app, "alice", "--daily-limit", "1")
    db = app.extensions["essentia"].store
    with db.connection(write=True) as conn:  # yesterday's requests used up yesterday's quota
        conn.execute("INSERT INTO daily_usage (key_id, day, count) VALUES (1, '2000-01-01', 1)")
    client = app.test_client()
    assert get(client, key).status_code == 200
    assert get(client, key).status_code == 429


@pytest.fixture
def traced(monkeypatch):
    """Record every SQL statement and count SQLite VM instructions on the app's pooled connections."""
    recorder = {"on": False, "statements": [], "steps": 0}

    def on_statement(sql):
        if recorder["on"]:
            recorder["statements"].append(sql)

    def on_step():
        if recorder["on"]:
            recorder["steps"] += 1
        return 0

    original_open = backend.storage.sqlite._open

    def traced_open(path):
        conn = original_open(path)
        conn.set_trace_callback(on_statement)
        conn.set_progress_handler(on_step, 1)
        return conn

    monkeypatch.setattr(backend.storage.sqlite, "_open", traced_open)
    return recorder


def test_quota_check_cost_does_not_grow_with_history(make_app, traced):
    app = make_app(production=True)
    busy = create_key(app, "busy", "--daily-limit", "1000000")
    fresh = create_key(app, "fresh", "--daily-limit", "1000000")

    # A long history for key 1: 200,000 usage records and a year of daily counters, written directly.
    conn = sqlite3.connect(app.extensions["essentia"].settings.db_path)
    try:
        with conn:
            conn.executemany("INSERT INTO api_usage (key_id, endpoint, status, created_at) VALUES (1, '/cache', 200, ?)",
                             ((f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T00:00:{i % 60:02d}.{i:06d}Z",)
                              for i in range(200_000)))
            conn.executemany("INSERT INTO daily_usage (key_id, day, count) VALUES (1, ?, 500)",
                             ((f"2025-{m:02d}-{d:02d}",) for m in range(1, 13) for d in range(1, 29)))
            assert conn.execute("SELECT COUNT(*) FROM api_usage WHERE key_id = 1").fetchone()[0] == 200_000
    finally:
        conn.close()

    @require_api_key()
    def view():
        return "ok"

    def check(secret: str) -> tuple[list[str], int]:
        with app.test_request_context("/cache", headers={"X-API-Key": secret}):
            view()  # warm: the key is validated and cached, today's counter row exists
            traced.update(on=True, statements=[], steps=0)
            assert view() == "ok"
            traced["on"] = False
        return traced["statements"], traced["steps"]

    busy_statements, busy_steps = check(busy)
    fresh_statements, fresh_steps = check(fresh)

    for statements in (busy_statements, fresh_statements):
        joined = " ".join(statements)
        assert "daily_usage" in joined, statements
        assert "api_usage" not in joined, statements  # the history table is never read by the check
        assert len([s for s in statements if "daily_usage" in s]) == 1, statements
    # The same work, instruction for instruction, with or without a long history.
    assert busy_steps == fresh_steps, (busy_steps, fresh_steps)

    with app.extensions["essentia"].store.connection() as conn:
        counts = dict(conn.execute("SELECT key_id, count FROM daily_usage WHERE day = ?", (utc_today(),)).fetchall())
    assert counts == {1: 2, 2: 2}
