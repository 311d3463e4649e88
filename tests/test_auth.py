"""API keys in production mode: who gets in (401/403 with stable codes), admin-only actions, deactivation within
the key-cache TTL, the validator's cache (one query per key per TTL, negative answers, LRU bound), keys stored only
as hash + prefix, and every authorized request recorded for `keys show`."""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

import backend.storage.sqlite
from backend.web.auth import ApiKey, KeyValidator, hash_key
from tests.conftest import create_key


class FakeClock:
    def __init__(self, now: float = 5000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# Every endpoint but /health, as (method, path, keyword arguments for the test client).
GUARDED = [
    ("POST", "/analyze", {"json": {"url": "https://example.com/a.mp3"}}),
    ("POST", "/analyze_data", {"data": b"not audio", "content_type": "application/octet-stream"}),
    ("GET", "/stats", {}),
    ("GET", "/cache", {}),
    ("GET", "/cache/search?q=blue", {}),
    ("GET", "/cache/export", {}),
    ("DELETE", "/cache/1", {}),
    ("POST", "/cache/clear", {}),
    ("POST", "/verify", {"json": {"id": 1, "manual_bpm": 120}}),
]
ADMIN_ONLY = [g for g in GUARDED if g[1] in ("/cache/1", "/cache/clear", "/verify")]


def call(client, method: str, path: str, key: str | None = None, **kwargs):
    headers = dict(kwargs.pop("headers", {}))
    if key is not None:
        headers["X-API-Key"] = key
    return client.open(path, method=method, headers=headers, **kwargs)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.is_json
    body = response.get_json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


# -- production mode: who gets in ---------------------------------------------------------------------------------

@pytest.fixture
def prod(make_app):
    return make_app(production=True)


@pytest.mark.parametrize("method, path, kwargs", GUARDED, ids=[f"{m} {p}" for m, p, _ in GUARDED])
def test_production_endpoint_without_key_is_401(prod, method, path, kwargs):
    body = assert_error(call(prod.test_client(), method, path, **kwargs), 401, "missing_api_key")
    assert "X-API-Key" in body["message"]


@pytest.mark.parametrize("method, path, kwargs", GUARDED, ids=[f"{m} {p}" for m, p, _ in GUARDED])
def test_production_endpoint_with_made_up_key_is_403(prod, method, path, kwargs):
    create_key(prod, "real", "--admin")  # a real key exists; the made-up one is still refused
    response = call(prod.test_client(), method, path, key="ess_" + "x" * 43, **kwargs)
    assert_error(response, 403, "invalid_api_key")


def test_blank_key_header_counts_as_missing(prod):
    assert_error(call(prod.test_client(), "GET", "/cache", key="   "), 401, "missing_api_key")


def test_health_needs_no_key_in_production(prod):
    response = prod.test_client().get("/health")
    assert response.status_code == 200 and response.get_json()["status"] == "healthy"


def test_valid_key_reaches_every_read_endpoint(prod):
    key = create_key(prod, "reader")
    client = prod.test_client()
    assert call(client, "GET", "/cache", key).get_json() == []
    assert call(client, "GET", "/stats", key).status_code == 200
    assert call(client, "GET", "/cache/search?q=blue", key).status_code == 200
    assert call(client, "GET", "/cache/export", key).get_json()["total_songs"] == 0
    # Past the guard, the handler's own validation answers.
    response = call(client, "POST", "/analyze", key, json={})
    assert response.status_code == 400 and response.get_json()["error"] not in ("missing_api_key", "invalid_api_key")


@pytest.mark.parametrize("method, path, kwargs", ADMIN_ONLY, ids=[f"{m} {p}" for m, p, _ in ADMIN_ONLY])
def test_admin_endpoints_refuse_a_non_admin_key(prod, method, path, kwargs):
    key = create_key(prod, "user")
    body = assert_error(call(prod.test_client(), method, path, key, **kwargs), 403, "admin_required")
    assert "admin" in body["message"]


def test_admin_key_can_delete_verify_and_clear_and_user_key_cannot(prod, song_120_a_minor):
    admin = create_key(prod, "root", "--admin")
    user = create_key(prod, "user")
    client = prod.test_client()
    response = client.post("/analyze_data", data=song_120_a_minor,
                           headers={"Content-Type": "application/octet-stream", "X-API-Key": user,
                                    "X-Song-Title": "One"})
    assert response.status_code == 200, response.get_json()
    song_id = response.get_json()["id"]

    # The user key is refused and nothing changes.
    assert_error(call(client, "POST", "/verify", user, json={"id": song_id, "manual_bpm": 121}), 403,
                 "admin_required")
    assert_error(call(client, "POST", "/cache/clear", user), 403, "admin_required")
    assert_error(call(client, "DELETE", f"/cache/{song_id}", user), 403, "admin_required")
    rows = call(client, "GET", "/cache", user).get_json()
    assert [row["id"] for row in rows] == [song_id] and rows[0]["user_verified"] is False

    # The admin key may.
    verified = call(client, "POST", "/verify", admin, json={"id": song_id, "manual_bpm": 121})
    assert verified.status_code == 200 and verified.get_json()["success"] is True
    assert call(client, "GET", "/cache", user).get_json()[0]["manual_bpm"] == 121
    deleted = call(client, "DELETE", f"/cache/{song_id}", admin)
    assert deleted.status_code == 200 and deleted.get_json()["success"] is True
    assert call(client, "GET", "/cache", user).get_json() == []
    cleared = call(client, "POST", "/cache/clear", admin)
    assert cleared.status_code == 200 and cleared.get_json()["success"] is True


def test_development_mode_needs_no_key(make_app):
    client = make_app().test_client()
    assert client.get("/cache").status_code == 200
    assert client.get("/stats").status_code == 200
    assert client.post("/cache/clear").status_code == 200          # admin-only in production
    assert_error(client.delete("/cache/12345"), 404, "not_found")   # past the guard: the handler answers
    assert client.get("/cache", headers={"X-API-Key": "ess_made_up"}).status_code == 200  # a key is ignored


# -- deactivation and the key cache's TTL -----------------------------------------------------------------------

def _key_id(app, secret: str) -> int:
    output = app.test_cli_runner().invoke(args=["keys", "list"]).output
    for line in output.splitlines():
        if secret[:12] in line:
            return int(line.split()[0])
    raise AssertionError(output)


def test_deactivated_key_is_refused_at_once_with_ttl_zero(make_app):
    app = make_app(production=True, key_cache_ttl=0)
    secret = create_key(app, "alice")
    key_id = _key_id(app, secret)
    client = app.test_client()
    runner = app.test_cli_runner()
    assert call(client, "GET", "/cache", secret).status_code == 200

    assert runner.invoke(args=["keys", "deactivate", str(key_id)]).exit_code == 0
    body = assert_error(call(client, "GET", "/cache", secret), 403, "inactive_api_key")
    assert secret[:12] in body["message"] and secret not in body["message"]

    assert runner.invoke(args=["keys", "activate", str(key_id)]).exit_code == 0
    assert call(client, "GET", "/cache", secret).status_code == 200


def test_deactivated_or_deleted_key_is_refused_at_once_although_cached(make_app):
    """The validator trusts a key for its TTL, but the `keys` command counts its change beside the SQLite file
    (which makes the validator forget its keys) and the quota step reads the key's state unless it was told of no
    change since, so deactivation and deletion bite immediately, well within the promised TTL."""
    app = make_app(production=True)  # default TTL
    validator = app.extensions["essentia"].key_validator
    assert validator.ttl == 300
    clock = FakeClock()
    validator._clock = clock
    secret = create_key(app, "alice")
    client = app.test_client()
    assert call(client, "GET", "/cache", secret).status_code == 200
    lookups = validator.lookups

    key_id = str(_key_id(app, secret))
    assert app.test_cli_runner().invoke(args=["keys", "deactivate", key_id]).exit_code == 0
    clock.advance(1)
    assert_error(call(client, "GET", "/cache", secret), 403, "inactive_api_key")
    assert validator.lookups == lookups + 1  # told of the change: read once more, not after the TTL

    assert app.test_cli_runner().invoke(args=["keys", "activate", key_id]).exit_code == 0
    assert call(client, "GET", "/cache", secret).status_code == 200
    assert app.test_cli_runner().invoke(args=["keys", "delete", key_id, "--yes"]).exit_code == 0
    assert_error(call(client, "GET", "/cache", secret), 403, "invalid_api_key")


def test_unknown_key_answer_is_cached_briefly_then_a_new_key_works(make_app):
    app = make_app(production=True)
    clock = FakeClock()
    validator = app.extensions["essentia"].key_validator
    validator._clock = clock
    client = app.test_client()
    assert_error(call(client, "GET", "/cache", "ess_not_yet"), 403, "invalid_api_key")
    lookups = validator.lookups
    for _ in range(20):  # a flood of the same made-up key costs no more queries
        assert_error(call(client, "GET", "/cache", "ess_not_yet"), 403, "invalid_api_key")
    assert validator.lookups == lookups
    clock.advance(validator.negative_ttl + 0.1)
    assert_error(call(client, "GET", "/cache", "ess_not_yet"), 403, "invalid_api_key")
    assert validator.lookups == lookups + 1


# -- the validator on its own -----------------------------------------------------------------------------------

def _record(key_id: int = 1, *, active: bool = True) -> ApiKey:
    return ApiKey(id=key_id, name="k", prefix="ess_abcdefgh", is_admin=False, active=active, daily_limit=10)


class CountingLookup:
    def __init__(self, known: dict[str, ApiKey]):
        self.known = {hash_key(raw): record for raw, record in known.items()}
        self.calls: list[str] = []

    def __call__(self, key_hash: str) -> ApiKey | None:
        self.calls.append(key_hash)
        return self.known.get(key_hash)


def test_validator_queries_once_per_key_per_ttl():
    clock = FakeClock()
    lookup = CountingLookup({"ess_good": _record(1), "ess_other": _record(2)})
    validator = KeyValidator(lookup, ttl=300, negative_ttl=30, clock=clock)
    for _ in range(50):
        assert validator.validate("ess_good").id == 1
    assert len(lookup.calls) == 1 and validator.lookups == 1
    assert validator.validate("ess_other").id == 2
    assert len(lookup.calls) == 2
    clock.advance(299.9)
    validator.validate("ess_good")
    assert len(lookup.calls) == 2
    clock.advance(0.2)  # past the TTL: asked again, once
    validator.validate("ess_good")
    validator.validate("ess_good")
    assert len(lookup.calls) == 3
    # The lookup is given the hash, never the key itself.
    assert all(call_arg != "ess_good" and call_arg == hash_key("ess_good") for call_arg in lookup.calls[::2])


def test_validator_sees_changes_only_after_the_ttl():
    clock = FakeClock()
    lookup = CountingLookup({"ess_k": _record(1, active=True)})
    validator = KeyValidator(lookup, ttl=60, negative_ttl=5, clock=clock)
    assert validator.validate("ess_k").active is True
    lookup.known[hash_key("ess_k")] = _record(1, active=False)
    clock.advance(59)
    assert validator.validate("ess_k").active is True
    clock.advance(2)
    assert validator.validate("ess_k").active is False


def test_negative_answers_are_cached_for_negative_ttl():
    clock = FakeClock()
    lookup = CountingLookup({})
    validator = KeyValidator(lookup, ttl=300, negative_ttl=30, clock=clock)
    for _ in range(10):
        assert validator.validate("ess_unknown") is None
    assert len(lookup.calls) == 1
    lookup.known[hash_key("ess_unknown")] = _record(7)  # the key gets created meanwhile
    clock.advance(29)
    assert validator.validate("ess_unknown") is None
    assert len(lookup.calls) == 1
    clock.advance(2)  # well before the positive TTL: unknown answers expire sooner
    assert validator.validate("ess_unknown").id == 7
    assert len(lookup.calls) == 2


def test_validator_cache_is_bounded_and_evicts_least_recently_used():
    clock = FakeClock()
    keys = {f"ess_{i}": _record(i) for i in range(10)}
    lookup = CountingLookup(keys)
    validator = KeyValidator(lookup, ttl=300, negative_ttl=30, max_entries=3, clock=clock)
    for raw in ("ess_0", "ess_1", "ess_2"):
        validator.validate(raw)
    validator.validate("ess_0")          # ess_0 is now the most recently used; ess_1 the least
    validator.validate("ess_3")          # evicts ess_1
    assert len(validator._entries) == 3
    calls = len(lookup.calls)
    validator.validate("ess_0")
    validator.validate("ess_2")
    validator.validate("ess_3")
    assert len(lookup.calls) == calls    # still cached
    validator.validate("ess_1")
    assert len(lookup.calls) == calls + 1  # was evicted, asked again
    for i in range(1000):               # a flood of made-up keys never grows the cache past its bound
        validator.validate(f"ess_fake_{i}")
    assert len(validator._entries) == 3


def test_forget_drops_cached_answers():
    lookup = CountingLookup({"ess_a": _record(1)})
    validator = KeyValidator(lookup, ttl=300, clock=FakeClock())
    validator.validate("ess_a")
    validator.forget("ess_a")
    validator.validate("ess_a")
    assert len(lookup.calls) == 2
    validator.forget()
    validator.validate("ess_a")
    assert len(lookup.calls) == 3


def test_the_apps_lookup_is_one_sql_query(make_app, monkeypatch):
    statements: list[str] = []
    original_open = backend.storage.sqlite._open

    def traced_open(path):
        conn = original_open(path)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(backend.storage.sqlite, "_open", traced_open)
    app = make_app(production=True)
    secret = create_key(app, "alice")
    validator = app.extensions["essentia"].key_validator
    with app.app_context():
        statements.clear()
        record = validator.validate(secret)
        assert record is not None and record.name == "alice" and record.active
        queries = [s for s in statements if s.split()[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK")]
        assert len(queries) == 1 and "api_keys" in queries[0], statements
        assert secret not in queries[0]  # looked up by hash
        statements.clear()
        for _ in range(10):
            validator.validate(secret)
        assert statements == []


# -- keys stored as hash + prefix -------------------------------------------------------------------------------

def test_secret_is_never_stored(make_app):
    app = make_app(production=True)
    secret = create_key(app, "alice", "--email", "alice@example.com", "--admin")
    client = app.test_client()
    assert call(client, "GET", "/cache", secret).status_code == 200
    assert call(client, "GET", "/stats", secret).status_code == 200
    app.test_cli_runner().invoke(args=["keys", "show", "1"])
    app.extensions["essentia"].store.close()

    db_path = Path(app.extensions["essentia"].settings.db_path)
    files = [p for p in db_path.parent.iterdir() if p.name.startswith(db_path.name)]
    assert db_path in files
    secret_tail = secret[12:].encode()
    for path in files:  # the database and its -wal/-shm companions
        data = path.read_bytes()
        assert secret.encode() not in data, path
        assert secret_tail not in data and secret_tail[:20] not in data, path

    conn = sqlite3.connect(db_path)
    try:
        key_hash, prefix = conn.execute("SELECT key_hash, key_prefix FROM api_keys").fetchone()
    finally:
        conn.close()
    assert secret.startswith(prefix)
    assert len(prefix) <= 12 and len(prefix) < len(secret) / 3
    assert key_hash == hash_key(secret) and secret not in key_hash


# -- usage is recorded ------------------------------------------------------------------------------------------

def recent_requests(show_output: str) -> list[tuple[str, str]]:
    """(status, endpoint) of the 'recent requests' lines of `keys show`, newest first."""
    return re.findall(r"^\s+\d{4}-\d\d-\d\dT\S+\s+(\d{3})\s+(\S+)\s*$", show_output, re.MULTILINE)


def test_every_authorized_request_is_recorded_for_keys_show(make_app):
    app = make_app(production=True)
    secret = create_key(app, "alice")
    other = create_key(app, "bob")
    client = app.test_client()
    assert call(client, "GET", "/cache", secret).status_code == 200
    assert call(client, "GET", "/stats", secret).status_code == 200
    assert call(client, "GET", "/cache/search?q=blue", secret).status_code == 200
    assert call(client, "GET", "/cache?limit=abc", secret).status_code == 400
    assert call(client, "GET", "/cache/export", other).status_code == 200
    assert call(client, "GET", "/cache", "ess_made_up").status_code == 403  # not anyone's usage

    result = app.test_cli_runner().invoke(args=["keys", "show", str(_key_id(app, secret))])
    assert result.exit_code == 0, result.output
    out = result.output
    assert re.search(r"usage today: 4 of 1000", out), out
    assert re.search(r"usage total: 4\b", out), out
    assert recent_requests(out) == [("400", "/cache"), ("200", "/cache/search"),
                                                      ("200", "/stats"), ("200", "/cache")], out
    assert "/cache/export" not in out  # that was the other key's
    assert secret not in out

    bob = app.test_cli_runner().invoke(args=["keys", "show", str(_key_id(app, other))]).output
    assert "usage today: 1 of 1000" in bob and "usage total: 1" in bob and "/cache/export" in bob


def test_refused_requests_of_a_real_key_are_recorded_too(make_app):
    app = make_app(production=True, rate_limit=1)
    secret = create_key(app, "alice")
    client = app.test_client()
    assert call(client, "GET", "/cache", secret).status_code == 200
    assert call(client, "GET", "/cache", secret).status_code == 429
    assert call(client, "POST", "/cache/clear", secret).status_code == 403
    out = app.test_cli_runner().invoke(args=["keys", "show", "1"]).output
    assert "usage total: 3" in out, out
    assert recent_requests(out) == [("403", "/cache/clear"), ("429", "/cache"), ("200", "/cache")], out


def test_idle_keys_leave_the_cache_after_their_ttl():
    """The cache is keyed by the raw key, so an entry idle past its TTL must not linger: the next miss drops it."""
    clock = FakeClock()
    lookup = CountingLookup({"ess_idle": _record(1), "ess_busy": _record(2)})
    validator = KeyValidator(lookup, ttl=300, negative_ttl=30, clock=clock)
    validator.validate("ess_idle")
    validator.validate("ess_made_up")
    clock.advance(200)
    validator.validate("ess_busy")
    clock.advance(101)  # ess_idle and ess_made_up expired; ess_busy has not
    validator.validate("ess_new")
    assert list(validator._entries) == ["ess_busy", "ess_new"]


def test_overlong_keys_are_refused_without_a_query_or_a_cache_entry():
    lookup = CountingLookup({})
    validator = KeyValidator(lookup, clock=FakeClock())
    assert validator.validate("ess_" + "x" * 5000) is None
    assert lookup.calls == [] and len(validator._entries) == 0
