"""API keys: generation, hashing, the TTL-cached validator, and the guard every endpoint but /health passes.

Keys are 256-bit random secrets, so a fast hash (SHA-256) is the right storage: nothing short of the key
itself finds it. The database keeps the hash and a short display prefix, never the key.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from flask import current_app, g, request

from backend.roles import (QUOTA_EXHAUSTED, QUOTA_KEY_INACTIVE, QUOTA_KEY_UNKNOWN, QuotaDecision, RateDecision,
                           Store)
from backend.web.errors import ApiError
from backend.timeutil import seconds_until_utc_midnight, utc_today

KEY_PREFIX = "ess_"
DISPLAY_PREFIX_LENGTH = 12  # "ess_" + 8 characters: enough to tell keys apart, useless to an attacker
MAX_KEY_LENGTH = 128  # generate_key() makes 47 characters; anything much longer is not one of ours


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    is_admin: bool
    active: bool
    daily_limit: int


def generate_key() -> str:
    """A new secret key, e.g. 'ess_3q2...'. Shown once to whoever creates it."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def display_prefix(raw_key: str) -> str:
    return raw_key[:DISPLAY_PREFIX_LENGTH]


class KeyValidator:
    """Answers "which key is this?" from a bounded, TTL-limited cache, falling back to one database query.

    Known keys are cached for `ttl` seconds, unknown ones for `negative_ttl` (briefly, so a key created a moment
    ago soon works, while a flood of made-up keys costs no queries). A key deactivated in the database stops
    working within `ttl`. The cache holds at most `max_entries`, evicting the least recently used.

    The cache is keyed by the raw key, not its SHA-256: hashing costs more than the rest of a cached answer, so
    a hash-keyed cache could not be much faster than the query it saves. This is safe because the match is
    exact (a dict compares the full string, never a truncated fingerprint), the key is in this process's
    memory for every request that carries it anyway, and it is kept no longer than its entry is useful: every
    miss first drops the entries idle for longer than their TTL, and misses happen at least once per `ttl`
    while any request arrives. The database and the lookup still see only the hash.
    """

    def __init__(self, lookup: Callable[[str], ApiKey | None], *, ttl: float = 300.0, negative_ttl: float = 30.0,
                 max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self._lookup = lookup
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()  # serializes writers; readers rely on OrderedDict's atomic C methods
        self._entries: OrderedDict[str, tuple[float, ApiKey | None]] = OrderedDict()  # raw key -> (expires, key)
        self.lookups = 0  # database queries made, for tests and benchmarks

    def validate(self, raw_key: str) -> ApiKey | None:
        """The key record for `raw_key` (active or not), or None if no such key exists."""
        now = self._clock()
        cached = self._entries.get(raw_key)
        if cached is not None and cached[0] > now:
            # No lock on a hit: under the GIL each OrderedDict call is atomic, and a writer may only have
            # evicted the entry in between, which leaves nothing to move.
            try:
                self._entries.move_to_end(raw_key)
            except KeyError:
                pass
            return cached[1]
        if len(raw_key) > MAX_KEY_LENGTH:
            return None  # longer than any key we issue: no such key, and no big made-up strings in the cache
        # Query outside the lock: a slow database must not serialize every request.
        record = self._lookup(hash_key(raw_key))
        self.lookups += 1
        expires = now + (self.ttl if record is not None else self.negative_ttl)
        with self._lock:
            self._drop_idle(now)
            self._entries[raw_key] = (expires, record)
            self._entries.move_to_end(raw_key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return record

    def _drop_idle(self, now: float) -> None:
        """Drop expired entries from the least recently used end. Any entry idle for longer than its TTL is
        there behind only expired ones (an entry expires at most a TTL after its last use), so raw keys do not
        outlive their use by more than a TTL; each entry is dropped once, so this is amortized O(1)."""
        while self._entries:
            oldest = next(iter(self._entries))
            if self._entries[oldest][0] > now:
                return
            del self._entries[oldest]

    def forget_id(self, key_id: int) -> None:
        """Drop every cached entry of the key with this id (it was deleted or deactivated)."""
        with self._lock:
            # list() snapshots in one C call, so lock-free hits moving entries cannot break the iteration.
            entries = list(self._entries.items())
            for raw_key, (_, record) in entries:
                if record is not None and record.id == key_id:
                    self._entries.pop(raw_key, None)

    def forget(self, raw_key: str | None = None) -> None:
        """Drop one key (or all) from the cache, e.g. after this process changed it."""
        with self._lock:
            if raw_key is None:
                self._entries.clear()
            else:
                self._entries.pop(raw_key, None)


def key_from_row(row, expected_hash: str) -> ApiKey | None:
    """Turn a stored key row into an ApiKey, confirming the hash in constant time."""
    if row is None or not hmac.compare_digest(row["key_hash"], expected_hash):
        return None
    return ApiKey(id=row["id"], name=row["name"], prefix=row["key_prefix"], is_admin=bool(row["is_admin"]),
                  active=bool(row["active"]), daily_limit=row["daily_limit"])


# -- the request guard ------------------------------------------------------------------------------------------

def require_api_key(*, admin: bool = False):
    """Guard a view: API key (production mode), then the rate limiter and the daily quota, asked of the
    Admission role in one call (on Redis, one round trip).

    In development mode no key is needed and the limiter (if configured) counts per client address. The key
    that passed is left in `g.api_key` so the request is recorded for `keys show`.
    """
    def decorator(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            services = current_app.extensions["essentia"]
            key = _authenticate(services, admin=admin) if services.settings.production else None
            client = f"key:{key.id}" if key else f"addr:{request.remote_addr}"
            decision = services.admission.admit(client, key.id if key else None)
            _check_rate(services, decision.rate)
            if decision.quota is not None:
                _check_quota(services, key, decision.quota)
            return view(*args, **kwargs)
        return guarded
    return decorator


def _authenticate(services, *, admin: bool) -> ApiKey:
    raw_key = request.headers.get("X-API-Key", "").strip()
    if not raw_key:
        _limit_anonymous(services)
        raise ApiError(401, "missing_api_key", "This server needs an API key: send it in the X-API-Key header.")
    key = services.key_validator.validate(raw_key)
    if key is None:
        _limit_anonymous(services)
        raise ApiError(403, "invalid_api_key", "The API key is not valid.")
    if not key.active:
        raise ApiError(403, "inactive_api_key", f"The API key {key.prefix}… has been deactivated.")
    g.api_key = key
    if admin and not key.is_admin:
        raise ApiError(403, "admin_required", "This action needs an API key with the admin flag.")
    return key


def _limit_anonymous(services) -> None:
    """Requests without a valid key are limited per address too, so guessing keys is slow and cheap."""
    _check_rate(services, services.admission.admit(f"addr:{request.remote_addr}", None).rate)


def _check_rate(services, decision: RateDecision | None) -> None:
    """Headers for the limiter's decision; 429 if it refused (None: no rate limit configured)."""
    if decision is None:
        return
    g.rate_limit_headers = decision.headers()
    if not decision.allowed:
        services.metrics.rate_limited.inc()
        raise ApiError(429, "rate_limited",
                       f"Too many requests: the limit is {decision.limit} per minute. "
                       f"Retry in {decision.retry_after} s.",
                       headers={**decision.headers(), "Retry-After": str(decision.retry_after)})


def _check_quota(services, key: ApiKey, decision: QuotaDecision) -> None:
    if decision.allowed:
        return
    if decision.refusal in (QUOTA_KEY_UNKNOWN, QUOTA_KEY_INACTIVE):
        # Deleted or deactivated since the validator cached it: refuse now rather than wait for the TTL.
        services.key_validator.forget_id(key.id)
        if decision.refusal == QUOTA_KEY_UNKNOWN:
            raise ApiError(403, "invalid_api_key", "The API key is not valid.")
        raise ApiError(403, "inactive_api_key", f"The API key {key.prefix}… has been deactivated.")
    retry = seconds_until_utc_midnight()
    limit = key.daily_limit if decision.daily_limit is None else decision.daily_limit
    raise ApiError(429, "daily_quota_exceeded",
                   f"This API key has used its daily quota of {limit} requests; "
                   f"it resets at midnight UTC (in {retry} s).",
                   headers={"Retry-After": str(retry)})


class StoreQuota:
    """The Quota role on the store: one statement counts the request in the key's daily_usage row unless the
    key's current limit is reached (so a changed limit applies at once on every process and host)."""

    def __init__(self, store: Store, *, today: Callable[[], str] = utc_today):
        self._store = store
        self._today = today

    def flush(self) -> None:
        """Nothing waits: every request is counted in the store as it comes."""

    def consume(self, key_id: int) -> QuotaDecision:
        store = self._store
        with store.connection(write=True) as conn:
            if store.consume_daily_quota(conn, key_id, self._today()) is not None:
                return QuotaDecision(True)
            current = store.get_key(conn, key_id)
        if current is None:
            return QuotaDecision(False, QUOTA_KEY_UNKNOWN)
        if not current["active"]:
            return QuotaDecision(False, QUOTA_KEY_INACTIVE, current["daily_limit"])
        return QuotaDecision(False, QUOTA_EXHAUSTED, current["daily_limit"])


class StoreQuotaRecords:
    """What the Redis quota reads from and writes to the store (backend/runtime/redis_state.py QuotaRecords)."""

    def __init__(self, store: Store):
        self._store = store

    def key_state(self, key_id: int) -> tuple[bool, int] | None:
        with self._store.connection() as conn:
            row = self._store.get_key(conn, key_id)
        return None if row is None else (bool(row["active"]), row["daily_limit"])

    def count(self, key_id: int, day: str) -> int:
        with self._store.connection() as conn:
            return self._store.usage_today(conn, key_id, day)

    def raise_counts(self, rows: list[tuple[int, str, int]]) -> None:
        with self._store.connection(write=True) as conn:
            self._store.raise_daily_usage(conn, rows)


def lookup_key_in(store: Store) -> Callable[[str], ApiKey | None]:
    """The validator's database lookup: one indexed query by hash."""
    def lookup(key_hash: str) -> ApiKey | None:
        with store.connection() as conn:
            return key_from_row(store.find_key_by_hash(conn, key_hash), key_hash)
    return lookup
