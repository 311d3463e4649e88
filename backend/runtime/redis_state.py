"""Shared state on Redis, for several hosts behind a load balancer (ESSENTIA_REDIS_URL): the rate limiter, the
daily quota (and the two as one Admission), the hit/miss tally, single flight across hosts (claims), and the
invalidation of what processes keep (key caches, near caches of analysis rows).

Every object takes a key prefix, so that several servers (or tests) can share one Redis. Every call that needs
Redis and cannot reach it raises SharedStateUnavailable, which the web layer answers with 503 JSON and
Retry-After; redis-py reconnects by itself on the next call, so service resumes without a restart.

Costs per request, in Redis round trips: a keyed request's rate limit + quota 1 (one EVALSHA; 2 more once per key
and day, or after Redis lost the count), a request without a key 1 (the rate limit) or 0 (no limit), tally 0 (hits
and misses are sent once per ESSENTIA_STATS_FLUSH_SECONDS per process), claims 2 per miss (claim, release),
invalidations 0 (a message per change, pushed to every process); and per process every
ESSENTIA_STATS_FLUSH_SECONDS, 1 to send its counts and 4 to write them (batch lock, two GETDEL, unlock); /stats
asks every process for its counts (one message, one answer each). Redis must not evict these keys: run it with
`maxmemory-policy noeviction`.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import threading
import time
import uuid
from calendar import timegm
from typing import Callable, Hashable, Iterable, Iterator, NamedTuple, Protocol
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from backend.roles import (QUOTA_EXHAUSTED, QUOTA_KEY_INACTIVE, QUOTA_KEY_UNKNOWN, AdmissionDecision, QuotaDecision,
                           RateDecision)
from backend.runtime.keystates import KeyStates
from backend.timeutil import utc_today
from backend.web.errors import ServiceError

log = logging.getLogger(__name__)

SOCKET_TIMEOUT = 2.0    # seconds: a Redis call answers in well under a millisecond; longer means it is gone
# Seconds a claim waiter sleeps between looks if no wake-up message arrives, and the subscriber's longest wait for
# a message: shorter than SOCKET_TIMEOUT, so that a quiet channel is never taken for a dead connection.
WAIT_SLICE = 1.0
LEASE_SECONDS = 10.0    # a claim lives this long unless its owner renews it: a crashed host's claims end by then

_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class _DaemonThread:
    """A daemon thread running `target` forever, started once per process on first need (and again in a forked
    child: threads do not survive a fork)."""

    def __init__(self, target: Callable[[], None], name: str):
        self._target, self._name = target, name
        self._lock = threading.Lock()
        self._pid = 0

    def ensure_started(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
        threading.Thread(target=self._target, name=self._name, daemon=True).start()


class SharedStateUnavailable(ServiceError):
    """Redis, which holds the shared state, cannot be reached right now; the request may be retried shortly
    (503 with Retry-After; redis-py reconnects on a later request)."""

    status = 503
    code = "shared_state_unavailable"
    retry_after = 2

    def __init__(self, detail: str = ""):
        self.message = ("The shared state service (Redis) cannot be reached right now; nothing stored was lost. "
                        "Try again shortly.")
        super().__init__(f"{self.message} ({detail})" if detail else self.message)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def _unavailable(error: BaseException) -> SharedStateUnavailable:
    log.error("redis unreachable: %s", error)
    return SharedStateUnavailable(str(error))


def connect(url: str, *, socket_timeout: float = SOCKET_TIMEOUT) -> redis.Redis:
    """A client for `url` (redis://, rediss:// or unix://). Makes no connection yet: call it after gunicorn forks,
    so that no socket is shared between processes. Raises ValueError for a URL redis-py cannot use."""
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"{url!r} is not a Redis URL (redis://host:port/db, rediss://... or unix://path)")
    # One retry at once: enough to replace a connection Redis closed (a restart, CLIENT KILL, an idle timeout),
    # and a Redis that is really gone fails the request within two socket timeouts instead of redis-py's default
    # three retries with backoff.
    return redis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
                                health_check_interval=30, retry=Retry(NoBackoff(), 1))


def require_reachable(url: str, variable: str = "ESSENTIA_REDIS_URL") -> None:
    """At start-up: return if Redis at `url` answers, else raise SystemExit with a message naming `variable`
    (the server must not start half-configured)."""
    parts = urlsplit(url)
    where = parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"
    client = connect(url, socket_timeout=3.0)
    try:
        client.ping()
    except (redis.exceptions.RedisError, OSError) as error:
        raise SystemExit(f"{variable}: Redis at {where} does not answer ({error}). Start Redis, or unset "
                         f"{variable} to keep the shared state on this machine.") from None
    finally:
        client.close()


def ping(client: redis.Redis) -> None:
    """Raise SharedStateUnavailable unless Redis answers."""
    try:
        client.ping()
    except _UNREACHABLE as error:
        raise _unavailable(error) from None


# -- rate limiter ----------------------------------------------------------------------------------------------

# The Lua below is written as functions, so that the admission script (rate limit + quota in one round trip)
# runs exactly the code the two scripts run alone.

# A fixed window per client that starts at its first request, as in RateLimiter. PEXPIRE runs on Redis's clock,
# so hosts whose clocks differ still share one window. Denied requests are not counted (the window ends when it
# would have anyway). Returns allowed (0/1), the count, and the milliseconds left in the window.
_RATE_LIMIT_FUNCTION = """
local function rate_limit(key, limit, window)
  local count = tonumber(redis.call('GET', key) or '0')
  local allowed = 0
  if count < limit then
    allowed = 1
    count = redis.call('INCR', key)
    if count == 1 then redis.call('PEXPIRE', key, window) end
  end
  local left = redis.call('PTTL', key)
  if left < 0 then redis.call('PEXPIRE', key, window); left = window end
  return allowed, count, left
end
"""
_RATE_LIMIT_LUA = _RATE_LIMIT_FUNCTION + """
local allowed, count, left = rate_limit(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
return {allowed, count, left}
"""


class RedisRateLimiter:
    """At most `limit` requests per client in each `window_seconds` window, counted by every host together.

    One atomic round trip per request (a Lua script run by EVALSHA; redis-py sends the script again if Redis
    restarted and forgot it). Memory: one short key per client seen in the last window, expired by Redis.
    Chosen over the `limits` library (what Flask-Limiter builds on) by cost per request: `limits` needs three
    round trips for what the 429 headers show (hit, then the count and the time left), 683 µs against this
    script's 284 µs on the test machine (PERFORMANCE_OPTIMIZATIONS.md, section 9).
    """

    def __init__(self, limit: int, window_seconds: float = 60.0, *, client: redis.Redis, prefix: str):
        if limit <= 0:
            raise ValueError("limit must be positive; switch the limiter off instead of setting 0")
        self.limit = limit
        self.window_seconds = window_seconds
        self._window_ms = max(1, int(round(window_seconds * 1000)))
        self._prefix = prefix + "rate:"
        self._script = client.register_script(_RATE_LIMIT_LUA)

    def hit(self, client: Hashable) -> RateDecision:
        """Count one request by `client` and say whether it may proceed."""
        try:
            answer = self._script(keys=[self.key(client)], args=self.args)
        except _UNREACHABLE as error:
            raise _unavailable(error) from None
        return self.decision(answer)

    def key(self, client: Hashable) -> str:
        """The Redis key of `client`'s window."""
        return self._prefix + str(client)

    @property
    def args(self) -> list[int]:
        """ARGV of rate_limit (the script's function): the limit, the window in ms."""
        return [self.limit, self._window_ms]

    def decision(self, answer) -> RateDecision:
        """The RateDecision for rate_limit's (allowed, count, ms left)."""
        allowed, count, left_ms = answer[:3]
        return RateDecision(bool(allowed), self.limit, max(0, self.limit - count), left_ms / 1000.0)


# -- daily quota -----------------------------------------------------------------------------------------------

# The count of one key for one day (`key`), against `limit` (0 = none); `day_end`: the day's end (unix seconds);
# `floor`: the highest count this host has seen for it (see RedisQuota). Returns -1 when the count is missing (to
# be seeded from the store), 0 when the quota is used up, else the new count.
_QUOTA_FUNCTION = """
local function quota_count(key, limit, day_end, floor)
  local stored = redis.call('GET', key)
  if not stored then return -1 end
  local count = tonumber(stored)
  if count < floor then
    count = floor
    redis.call('SET', key, count, 'EXAT', day_end)
  end
  if limit > 0 and count >= limit then return 0 end
  return redis.call('INCR', key)
end
"""
_QUOTA_LUA = _QUOTA_FUNCTION + """
return quota_count(KEYS[1], tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]))
"""


class QuotaCall(NamedTuple):
    """One count asked of the quota script: whose, which day, against which limit, and the script's KEYS/ARGV."""

    key_id: int
    day: str
    limit: int
    name: str
    args: list


@functools.lru_cache(maxsize=8)
def _end_of_day(day: str) -> int:
    """Unix seconds of the midnight (UTC) that ends `day` (YYYY-MM-DD), plus an hour for clocks that lag."""
    return timegm(time.strptime(day, "%Y-%m-%d")) + 86400 + 3600


#: A count lives in Redis at least this long (seconds), whatever its day: a count for a day already over (a host
#: whose clock lags by more than the hour above, or a caller counting a past day) would otherwise expire the moment
#: it is seeded, and every request would find it missing and go through uncounted.
_MIN_COUNT_SECONDS = 600


def _count_expiry(day: str) -> int:
    """When Redis may drop `day`'s counts: the end of the day, or a little past now if that has gone by."""
    return max(_end_of_day(day), int(time.time()) + _MIN_COUNT_SECONDS)


class QuotaRecords(Protocol):
    """What the Redis quota needs from the store (backend/web/auth.py StoreQuotaRecords implements it)."""

    def key_state(self, key_id: int) -> tuple[bool, int] | None:
        """(active, daily limit) of the key, or None if there is no such key."""
        ...

    def count(self, key_id: int, day: str) -> int:
        """The key's stored count of requests on `day`."""
        ...

    def raise_counts(self, rows: list[tuple[int, str, int]]) -> None:
        """Raise stored counts to at least (key_id, day, count) each (never lower them), in one transaction."""
        ...


class RedisQuota:
    """Each key's daily allowance, counted atomically by every host in one round trip (INCR in a Lua script).

    Redis keeps nothing on disk here, so the store's daily usage table stays the record that survives: every
    count a host sees is written there (batched, every `flush_seconds`, as the highest count seen: never lowered),
    and a count that Redis lacks (its first use today, or Redis restarted or was flushed) is seeded from the
    store with SET NX before counting, so a restart does not hand out a fresh allowance.

    How exact that is: let C be the count Redis had when it lost the key. Some host saw C (the host that counted
    the last request) and remembers it as its floor; each host passes its floor with every call and Redis is
    raised to it. Redis restarts at max(store count, seeding host's floor), and the store count is at most
    `flush_seconds` of requests behind C. So the only requests that can be allowed twice are those counted in the
    last `flush_seconds` before the loss, and only until the host that saw C next serves that key; with no
    request in the last `flush_seconds` before the loss (or that host serving next) the count is exact.

    The key's limit and state (active, deleted) come from the store once per `key_ttl` per process, and again at
    once when the key changes anywhere (`forget_key`, called on key-change messages), as in the key cache.
    """

    def __init__(self, *, client: redis.Redis, prefix: str, records: QuotaRecords, flush_seconds: float = 2.0,
                 key_ttl: float = 300.0, today: Callable[[], str] = utc_today):
        self._client = client
        self._prefix = prefix + "quota:"
        self._script = client.register_script(_QUOTA_LUA)
        self._records = records
        self.flush_seconds = flush_seconds
        self._today = today
        self._lock = threading.Lock()
        self._key_states = KeyStates(records.key_state, ttl=key_ttl,  # only active keys' states are kept
                                     keep=lambda state: state is not None and state[0])
        self._floors: dict[tuple[int, str], int] = {}   # highest count seen per (key id, day): this host's floor
        self._unwritten: dict[tuple[int, str], int] = {}  # counts not yet written to the store
        self._flusher = _DaemonThread(self._flush_forever, "quota-flush")

    def consume(self, key_id: int) -> QuotaDecision:
        """Count one request against the key's allowance for today, unless it is used up or the key is gone or
        inactive (nothing is counted then)."""
        usable = self.usable(key_id)
        if not usable.allowed:
            return usable
        call = self.call(key_id, usable.daily_limit)
        try:
            answer = self._script(keys=[call.name], args=call.args)
        except _UNREACHABLE as error:
            raise _unavailable(error) from None
        return self.finish(call, answer)

    def usable(self, key_id: int) -> QuotaDecision:
        """Whether the key may be counted at all: a refusal (key deleted or inactive), or allowed with its daily
        limit. From this process's copy of the key's state, read from the store once per key_ttl."""
        state = self._key_states.get(key_id)
        if state is None:
            return QuotaDecision(False, QUOTA_KEY_UNKNOWN)
        active, daily_limit = state
        if not active:
            return QuotaDecision(False, QUOTA_KEY_INACTIVE, daily_limit)
        return QuotaDecision(True, None, daily_limit)

    def call(self, key_id: int, limit: int, day: str | None = None) -> QuotaCall:
        """What to ask the quota script (alone, or inside the admission script) to count one request."""
        day = day or self._today()
        end = _count_expiry(day)
        return QuotaCall(key_id, day, limit, f"{self._prefix}{key_id}:{day}", [limit, end,
                                                                                 self._floors.get((key_id, day), 0)])

    def finish(self, call: QuotaCall, answer: int) -> QuotaDecision:
        """The decision for the script's `answer` to `call`: a missing count (-1) is seeded from the store and
        counted again; a count is remembered as this host's floor and written to the store in the next batch."""
        count = self._counted(call, answer)
        if count is None:
            return QuotaDecision(False, QUOTA_EXHAUSTED, call.limit)
        return QuotaDecision(True)

    def forget_key(self, key_id: int) -> None:
        """The key changed (deactivated, deleted, new limit): read its state from the store on its next use."""
        self._key_states.forget(key_id)

    def forget_all_keys(self) -> None:
        """Key changes may have been missed (no connection for a while): read every key's state again."""
        self._key_states.forget_all()

    def count(self, key_id: int, day: str, limit: int) -> int | None:
        """Count one request of key `key_id` on `day` against `limit` (0 = unlimited); the new count, or None
        when the quota is used up (nothing is counted then)."""
        call = self.call(key_id, limit, day)
        try:
            answer = self._script(keys=[call.name], args=call.args)
        except _UNREACHABLE as error:
            raise _unavailable(error) from None
        return self._counted(call, answer)

    def _counted(self, call: QuotaCall, answer: int) -> int | None:
        key_id, day = call.key_id, call.day
        try:
            if answer == -1:
                seed = max(self._records.count(key_id, day), call.args[2])
                self._client.set(call.name, seed, nx=True, exat=call.args[1])
                answer = self._script(keys=[call.name], args=call.args)
        except _UNREACHABLE as error:
            raise _unavailable(error) from None
        if answer == 0:
            return None
        with self._lock:
            if answer > self._floors.get((key_id, day), 0):
                self._floors[(key_id, day)] = answer
                self._unwritten[(key_id, day)] = answer
        self._start_flusher()
        return answer

    def flush(self) -> None:
        """Write the counts seen since the last flush to the store; on failure they wait for the next one."""
        with self._lock:
            rows, self._unwritten = self._unwritten, {}
            today = self._today()
            for old in [k for k in self._floors if k[1] < today and k not in rows]:
                del self._floors[old]  # yesterday's floors are no use any more
        if not rows:
            return
        try:
            self._records.raise_counts([(key_id, day, count) for (key_id, day), count in rows.items()])
        except Exception:
            log.exception("could not write quota counts; keeping them for the next flush")
            with self._lock:
                for k, count in rows.items():
                    self._unwritten[k] = max(count, self._unwritten.get(k, 0))

    def _start_flusher(self) -> None:
        """Write at once when flush_seconds is 0 (tests); otherwise from a daemon thread of this process."""
        if self.flush_seconds <= 0:
            self.flush()
        else:
            self._flusher.ensure_started()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.flush_seconds)
            self.flush()


# -- admission: rate limit + quota in one round trip ------------------------------------------------------------

# KEYS: the client's rate window, the key's count for the day. ARGV: rate_limit's (limit, window ms), then
# quota_count's (limit, day end, floor). Returns rate_limit's three values and quota_count's answer, or -2 there
# when the rate limit refused (the quota is then not counted, as when a Limiter and a Quota are asked in turn).
_ADMISSION_LUA = _RATE_LIMIT_FUNCTION + _QUOTA_FUNCTION + """
local allowed, count, left = rate_limit(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
if allowed == 0 then return {0, count, left, -2} end
return {1, count, left, quota_count(KEYS[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]))}
"""


class RedisAdmission:
    """A keyed request's rate limit and daily quota in one EVALSHA: the limiter's and the quota's own Lua
    functions, run in turn in one script, with the quota's state (the key's limit, this host's floors, the
    counts waiting for the store) kept by the RedisQuota it is given. Every behaviour of the two alone is kept
    (Redis's clock, re-seeding after a loss, refusal of changed keys); only the round trips are saved.

    A second round trip happens only when the key's count is missing in Redis (its first request of the day, or
    Redis lost it): then it is seeded from the store as RedisQuota does."""

    def __init__(self, limiter: RedisRateLimiter | None, quota: RedisQuota, *, client: redis.Redis):
        self._limiter = limiter
        self._quota = quota
        self._script = client.register_script(_ADMISSION_LUA)

    def admit(self, client: Hashable, key_id: int | None) -> AdmissionDecision:
        limiter = self._limiter
        if key_id is None:
            return AdmissionDecision(limiter.hit(client) if limiter is not None else None, None)
        if limiter is None:
            return AdmissionDecision(None, self._quota.consume(key_id))
        usable = self._quota.usable(key_id)
        if not usable.allowed:  # a changed key: still counted by the limiter, which answers first
            rate = limiter.hit(client)
            return AdmissionDecision(rate, usable if rate.allowed else None)
        call = self._quota.call(key_id, usable.daily_limit)
        try:
            answer = self._script(keys=[limiter.key(client), call.name], args=[*limiter.args, *call.args])
        except _UNREACHABLE as error:
            raise _unavailable(error) from None
        rate = limiter.decision(answer)
        if not rate.allowed:
            return AdmissionDecision(rate, None)
        return AdmissionDecision(rate, self._quota.finish(call, answer[3]))


# -- hit/miss tally --------------------------------------------------------------------------------------------


# Let go of a lock only if this holder still has it (it may have expired and been taken by another).
_UNLOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
BATCH_LOCK_SECONDS = 5.0  # a flush holds the batch lock for one store commit; a dead holder's lock ends by then


class RedisTally:
    """Hit and miss counts not yet written to the store, shared by every host: whichever host flushes takes
    them all (GETDEL) under a lock that /stats also takes, so /stats agrees on every host.

    A hit must not wait for Redis, so each process adds up its counts in memory and sends them (one pipelined
    round trip) every `flush_seconds`, before it takes counts out, and whenever a reader that needs every count
    (`batch(wait=True)`: /stats) asks all processes for theirs: a message that each process answers once it has
    sent its counts; the reader waits for as many answers as Redis delivered the message to (at most
    WAIT_SLICE). With `flush_seconds` 0 every add is sent at once. What a hard kill loses is what the process
    had not sent: at most `flush_seconds` of counts, as with the other buffered counters."""

    TOPIC = "tally"

    def __init__(self, *, client: redis.Redis, prefix: str, events: RedisEvents | None = None,
                 flush_seconds: float = 0.0):
        self._client = client
        self._prefix = prefix + "tally:"
        self._unlock = client.register_script(_UNLOCK_LUA)
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._unsent: dict[str, int] = {}
        self._sender = _DaemonThread(self._send_forever, "tally-send")
        self._events = events
        if events is not None:
            events.subscribe(self.TOPIC, self._asked_for_counts)

    @contextlib.contextmanager
    def batch(self, *, wait: bool = True) -> Iterator[bool]:
        """A lock in Redis (SET NX with an expiry), one holder among all hosts; waiters look again every 2 ms.
        With `wait` (a reader that must see every count), every process is first asked to send its counts."""
        if wait:
            self._gather()
        name, token = self._prefix + "batch-lock", uuid.uuid4().hex
        give_up = time.monotonic() + BATCH_LOCK_SECONDS
        try:
            while not self._client.set(name, token, nx=True, px=int(BATCH_LOCK_SECONDS * 1000)):
                if not wait or time.monotonic() >= give_up:
                    yield False
                    return
                time.sleep(0.002)
        except _UNREACHABLE as error:
            raise _unavailable(error) from None
        try:
            yield True
        finally:
            try:
                self._unlock(keys=[name], args=[token])
            except _UNREACHABLE as error:
                log.warning("could not release the tally's batch lock (it expires by itself): %s", error)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._unsent[name] = self._unsent.get(name, 0) + amount
        if self.flush_seconds <= 0:
            self.send()
        else:
            self._sender.ensure_started()

    def take(self, name: str) -> int:
        self.send()
        try:
            return int(self._client.getdel(self._prefix + name) or 0)
        except _UNREACHABLE as error:
            raise _unavailable(error) from None

    def read(self, name: str) -> int:
        try:
            sent = int(self._client.get(self._prefix + name) or 0)
        except _UNREACHABLE as error:
            raise _unavailable(error) from None
        with self._lock:
            return sent + self._unsent.get(name, 0)

    def send(self) -> None:
        """Send this process's counts to Redis (one round trip; nothing when there are none). On failure they
        stay here, and SharedStateUnavailable is raised."""
        with self._lock:
            counts, self._unsent = {n: c for n, c in self._unsent.items() if c}, {}
        if not counts:
            return
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for name, amount in counts.items():
                    pipe.incrby(self._prefix + name, amount)
                pipe.execute()
        except _UNREACHABLE as error:
            # INCRBY is not idempotent: after a lost connection some may have landed. Keeping them all risks a
            # count twice, dropping them loses some; the counts are statistics, so keep them (no loss).
            with self._lock:
                for name, amount in counts.items():
                    self._unsent[name] = self._unsent.get(name, 0) + amount
            raise _unavailable(error) from None

    def _gather(self) -> None:
        """Ask every process that shares this tally to send its counts, and wait for their answers."""
        if self._events is None:
            self.send()
            return
        self._events.start()
        nonce = uuid.uuid4().hex
        answers = self._prefix + "sent:" + nonce
        try:
            asked = self._client.publish(self._events.channel(self.TOPIC), nonce)
            give_up = time.monotonic() + WAIT_SLICE
            while asked > 0 and time.monotonic() < give_up:
                if self._client.blpop([answers], timeout=max(0.01, give_up - time.monotonic())) is None:
                    log.warning("tally: %d process(es) did not send their counts in time", asked)
                    break
                asked -= 1
            self._client.delete(answers)
        except _UNREACHABLE as error:
            raise _unavailable(error) from None

    def _asked_for_counts(self, nonce: str) -> None:
        """A reader wants every count (runs on the events thread): send ours, then answer."""
        answers = self._prefix + "sent:" + nonce
        try:
            self.send()
        finally:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.rpush(answers, 1)
                pipe.pexpire(answers, int(WAIT_SLICE * 2000))
                pipe.execute()

    def _send_forever(self) -> None:
        while True:
            time.sleep(self.flush_seconds)
            try:
                self.send()
            except SharedStateUnavailable:
                pass  # logged; the counts wait for the next round


# -- messages between processes ---------------------------------------------------------------------------------


class _PubSub(redis.client.PubSub):
    """redis-py's subscriber, which reconnects and subscribes again by itself; this one also says that it did,
    since messages sent while it was away are lost."""

    def __init__(self, client: redis.Redis, reconnected: Callable[[], None]):
        super().__init__(client.connection_pool, ignore_subscribe_messages=True)
        self._reconnected = reconnected

    def on_connect(self, connection) -> None:
        super().on_connect(connection)
        self._reconnected()


class RedisEvents:
    """One subscriber connection per process that receives what other hosts announce (a claim released, a key
    changed) and calls this process's handlers from a daemon thread, started on first use (after the fork).

    Messages sent while this process was disconnected are lost, so after every (re)connection the `on_connect`
    handlers run: e.g. the key cache forgets everything, since it cannot know what changed meanwhile.
    """

    def __init__(self, *, client: redis.Redis, prefix: str):
        self._client = client
        self.prefix = prefix
        self._lock = threading.Lock()
        self._handlers: dict[str, list[Callable[[str], None]]] = {}
        self._on_connect: list[Callable[[], None]] = []
        self._listener = _DaemonThread(self._listen_forever, "redis-events")
        self._closed = threading.Event()
        self.connected = threading.Event()

    def channel(self, topic: str) -> str:
        return f"{self.prefix}events:{topic}"

    def subscribe(self, topic: str, handler: Callable[[str], None]) -> None:
        """Call `handler(message)` for every message published on `topic` by any process."""
        with self._lock:
            self._handlers.setdefault(self.channel(topic), []).append(handler)

    def on_connect(self, handler: Callable[[], None]) -> None:
        with self._lock:
            self._on_connect.append(handler)

    def publish(self, topic: str, message: str) -> None:
        try:
            self._client.publish(self.channel(topic), message)
        except _UNREACHABLE as error:
            raise _unavailable(error) from None

    def start(self) -> None:
        """Start listening in this process (again after a fork: threads do not survive it)."""
        self._listener.ensure_started()
        self.connected.wait(SOCKET_TIMEOUT)  # so that a message sent right after this call is not missed

    def close(self) -> None:
        """Stop listening (the thread ends within WAIT_SLICE)."""
        self._closed.set()

    def _listen_forever(self) -> None:
        while not self._closed.is_set():
            pubsub = _PubSub(self._client, reconnected=self._run_on_connect)
            try:
                subscribed = {self.channel("hello")}  # always one channel, so that get_message has a connection
                with self._lock:
                    subscribed.update(self._handlers)
                pubsub.subscribe(*subscribed)
                self.connected.set()
                self._run_on_connect()
                while not self._closed.is_set():
                    message = pubsub.get_message(timeout=WAIT_SLICE)
                    if message is not None:
                        self._dispatch(message)
                    with self._lock:
                        added = [c for c in self._handlers if c not in subscribed]
                    if added:
                        pubsub.subscribe(*added)
                        subscribed.update(added)
            except _UNREACHABLE as error:
                log.warning("redis events: connection lost (%s); reconnecting", error)
            except Exception:
                log.exception("redis events: unexpected error; reconnecting")
            finally:
                self.connected.clear()
                try:
                    pubsub.close()
                except Exception:
                    pass
            self._closed.wait(0.5)

    def _run_on_connect(self) -> None:
        for handler in list(self._on_connect):
            try:
                handler()
            except Exception:
                log.exception("redis events: on-connect handler failed")

    def _dispatch(self, message: dict) -> None:
        channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
        data = message["data"].decode() if isinstance(message["data"], bytes) else str(message["data"])
        for handler in self._handlers.get(channel, ()):
            try:
                handler(data)
            except Exception:
                log.exception("redis events: handler for %s failed", channel)


# -- single flight across hosts --------------------------------------------------------------------------------

# Release or renew a claim only if this owner still holds it (its lease may have expired and another taken it).
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
"""
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class RedisClaims:
    """Which host analyzes what: the first to claim a cache key gets a lease (SET NX PX) and analyzes; the others
    wait for it in `wait` and wake the moment it releases (a message on one channel), then find the result in the
    store. The owner renews its lease every `lease_seconds / 3` while it works, up to the claim's `ttl`; a crashed
    host stops renewing, so its claims end within `lease_seconds` and another host takes over."""

    TOPIC = "claims"

    def __init__(self, *, client: redis.Redis, prefix: str, events: RedisEvents,
                 lease_seconds: float = LEASE_SECONDS):
        self._client = client
        self._prefix = prefix + "claim:"
        self._events = events
        self.lease_seconds = lease_seconds
        self._release_script = client.register_script(_RELEASE_LUA)
        self._renew_script = client.register_script(_RENEW_LUA)
        self._owner = f"{socket.gethostname()}:{os.getpid()}:"
        self._lock = threading.Lock()
        self._held: dict[str, tuple[str, float]] = {}  # cache key -> (token, renew until)
        self._waiters: dict[str, list[threading.Event]] = {}
        self._renewer = _DaemonThread(self._renew_forever, "claims-renew")
        events.subscribe(self.TOPIC, self._released)

    def try_claim(self, key: str, ttl: float) -> bool:
        """Claim `key` for this process for at most `ttl` seconds (renewed lease by lease); False if another
        process (on any host) holds it."""
        lease_ms = int(min(ttl, self.lease_seconds) * 1000)
        with self._lock:
            held = self._held.get(key)
        try:
            if held is not None and self._renew_script(keys=[self._prefix + key], args=[held[0], lease_ms]):
                return True
            token = self._owner + uuid.uuid4().hex
            if not self._client.set(self._prefix + key, token, nx=True, px=lease_ms):
                return False
        except _UNREACHABLE as error:
            raise _unavailable(error) from None
        with self._lock:
            self._held[key] = (token, time.monotonic() + ttl)
        self._renewer.ensure_started()
        return True

    def release(self, key: str) -> None:
        """End this process's claim of `key` (if it still holds it) and wake every waiter on any host."""
        with self._lock:
            held = self._held.pop(key, None)
        if held is None:
            return
        try:
            self._release_script(keys=[self._prefix + key], args=[held[0], self._events.channel(self.TOPIC), key])
        except _UNREACHABLE as error:
            # The lease expires by itself; waiters then find it free.
            log.warning("could not release claim %s: %s", key, error)

    def wait(self, key: str, seconds: float) -> None:
        """Block until a claim of `key` is released or `seconds` pass (a missed message costs at most
        WAIT_SLICE: callers loop, trying to claim and looking for the result between waits)."""
        self._events.start()
        event = threading.Event()
        with self._lock:
            self._waiters.setdefault(key, []).append(event)
        try:
            # A release between the caller's failed claim and this registration would be missed: look once more.
            if not self._client.exists(self._prefix + key):
                return
            event.wait(min(seconds, WAIT_SLICE))
        except _UNREACHABLE as error:
            raise _unavailable(error) from None
        finally:
            with self._lock:
                waiters = self._waiters.get(key, [])
                if event in waiters:
                    waiters.remove(event)
                if not waiters:
                    self._waiters.pop(key, None)

    def prepare(self) -> None:
        """Start listening for releases now, so that the first waiter's wake-up is not missed."""
        self._events.start()

    def _released(self, key: str) -> None:
        with self._lock:
            events = list(self._waiters.get(key, ()))
        for event in events:
            event.set()

    def _renew_forever(self) -> None:
        while True:
            time.sleep(self.lease_seconds / 3)
            now = time.monotonic()
            with self._lock:
                held = list(self._held.items())
            for key, (token, until) in held:
                if now >= until:
                    continue  # the claim's own ttl is over: let the lease run out
                try:
                    self._renew_script(keys=[self._prefix + key], args=[token, int(self.lease_seconds * 1000)])
                except _UNREACHABLE as error:
                    log.warning("could not renew claim %s: %s", key, error)


# -- invalidation: API keys, analysis rows -------------------------------------------------------------------


class RedisInvalidation:
    """Tells every process on every host that some records changed (by id), or all of them, so that what it
    keeps of them is forgotten at once. A message costs nothing per request; a process that was disconnected
    may have missed some, so on each (re)connection it forgets everything. The topic names what changed."""

    TOPIC = ""
    _ALL = "*"

    def __init__(self, events: RedisEvents):
        self._events = events
        self._here: list[tuple[Callable[[int], None], Callable[[], None]]] = []

    def listen(self, forget_id: Callable[[int], None], forget_all: Callable[[], None]) -> None:
        """Call `forget_id(id)` for each record changed anywhere, `forget_all()` when all changed and after each
        (re)connection."""
        self._here.append((forget_id, forget_all))
        self._events.subscribe(self.TOPIC, lambda message: forget_all() if message == self._ALL
                               else forget_id(int(message)))
        self._events.on_connect(forget_all)
        self._events.start()

    def announce(self, ids: Iterable[int]) -> None:
        """Tell every process that these records changed: this one at once, the others through Redis."""
        for record_id in ids:
            for forget_id, _ in self._here:
                forget_id(int(record_id))
            self._events.publish(self.TOPIC, str(int(record_id)))

    def announce_all(self) -> None:
        """Tell every process that every record changed."""
        for _, forget_all in self._here:
            forget_all()
        self._events.publish(self.TOPIC, self._ALL)

    @property
    def connected(self) -> bool:
        """Whether this process hears the messages now (what it keeps may be trusted only then)."""
        return self._events.connected.is_set()

    def close(self) -> None:
        self._events.close()


class RedisKeyInvalidation(RedisInvalidation):
    """API keys (deactivated, deleted, new limit): every key cache, and the quota's copy of the key's limit,
    forgets the key. A changed key is refused everywhere within the cache's TTL at the latest; with Redis up,
    within milliseconds (benchmarks/perf_hosts.py --roles)."""

    TOPIC = "keys"


class RedisAnalysisInvalidation(RedisInvalidation):
    """Analysis rows (corrected, deleted, cleared, re-analyzed, metadata filled in): every process's near cache
    (backend/runtime/nearcache.py) forgets the row."""

    TOPIC = "analyses"
