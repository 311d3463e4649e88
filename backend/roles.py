"""The shared roles of a server, one typing.Protocol each, and the small records they answer with.

Each role has several implementations; `create_app` (backend/app.py, `build_roles`) picks one per role from
Settings, and the rest of the code sees only these protocols:

  Executor  runs decode + analysis        AnalysisExecutor (a pool in this process), PoolClient (the host's
                                          one pool, behind the pool service)
  Limiter   requests per client a minute  RateLimiter (in memory), SharedRateLimiter (memory-mapped table),
                                          RedisRateLimiter (several hosts)
  Quota     a key's daily allowance       StoreQuota (the store's daily_usage table), TableQuota (memory-mapped
                                          table, written to the store in batches), RedisQuota
  Admission rate limit + quota of one     LimiterThenQuota (any Limiter and Quota, one after the other),
            request, decided together     TableAdmission (shared tables, one flock), RedisAdmission (both in one
                                          Redis round trip)
  Tally     hit/miss counts not yet       LocalTally (in memory), SharedTally (memory-mapped table), RedisTally
            written to the store
  Claims    which process analyzes a      SingleProcessClaims (one process), ContentClaims (memory-mapped table),
            song (single flight across    RedisClaims (a lease across hosts)
            processes)
  Invalidation  records changed, told to  RedisKeyInvalidation (API keys), RedisAnalysisInvalidation (analysis
            every process                 rows: the near caches), FileInvalidation (a counter beside the SQLite
                                          file); none on PostgreSQL without Redis
  Store     the database                  SQLiteStore (ESSENTIA_DB_PATH), PostgresStore (ESSENTIA_DATABASE_URL),
                                          backend/storage/

The Redis implementations are in backend/runtime/redis_state.py.

With several hosts the shared roles move to Redis (ESSENTIA_REDIS_URL) and the store to PostgreSQL
(ESSENTIA_DATABASE_URL); docs/ARCHITECTURE.md describes who runs where.
"""
from __future__ import annotations

import math
from contextlib import AbstractContextManager
from typing import (TYPE_CHECKING, Any, Callable, Hashable, Iterable, Iterator, Mapping, NamedTuple, Protocol, Sequence,
                    runtime_checkable)

if TYPE_CHECKING:
    from backend.runtime.executor import JobFailure, JobResult


# -- records the roles answer with -------------------------------------------------------------------------------

class RateDecision(NamedTuple):
    """One answer of a limiter (a NamedTuple: it is built on every request, and this is the cheapest record)."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until the client's window ends and its count starts again

    @property
    def retry_after(self) -> int:
        """Whole seconds to wait before a retry can succeed (at least 1)."""
        return max(1, math.ceil(self.reset_after))

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.retry_after),
        }


class QuotaDecision(NamedTuple):
    """One answer of a quota: whether the request may proceed, and if not, why."""

    allowed: bool
    refusal: str | None = None      # None when allowed; else one of the QUOTA_* reasons below
    daily_limit: int | None = None  # the key's current daily limit, when the quota knows it (0 = unlimited)


class AdmissionDecision(NamedTuple):
    """What an Admission decided for one request: the rate limit's answer and the quota's."""

    rate: RateDecision | None    # None: no rate limit is configured
    quota: QuotaDecision | None  # None: no key to count, or the rate limit refused first (nothing was counted)


QUOTA_EXHAUSTED = "exhausted"        # the key has used today's allowance
QUOTA_KEY_INACTIVE = "inactive_key"  # deactivated since the key validator cached it
QUOTA_KEY_UNKNOWN = "unknown_key"    # deleted since the key validator cached it


# -- the roles ---------------------------------------------------------------------------------------------------

@runtime_checkable
class Executor(Protocol):
    """Decodes and analyzes audio bytes away from the request threads, with a bounded queue."""

    def run(self, data: bytes, window_seconds: float) -> JobResult | JobFailure:
        """The analysis of `data` (the `window_seconds` it analyzes), or why this audio cannot be analyzed;
        raises ExecutorError (503) when the analysis could not run at all (busy, timed out, worker crashed, pool
        gone)."""
        ...

    def pending(self) -> int:
        """Analyses submitted and not finished (running or queued)."""
        ...

    def workers_alive(self) -> int:
        """Analysis processes (or threads) alive now."""
        ...

    def start(self, *, wait: bool = True) -> None:
        """Get the workers running and warmed up; with `wait`, return once they are."""
        ...

    def shutdown(self) -> None:
        """Let go of the workers (or the connection to them) held by this process."""
        ...


@runtime_checkable
class Limiter(Protocol):
    """At most `limit` requests per client in each `window_seconds` window, counted by every process that shares
    the limiter."""

    limit: int
    window_seconds: float

    def hit(self, client: Hashable) -> RateDecision:
        """Count one request by `client` and say whether it may proceed."""
        ...


@runtime_checkable
class Quota(Protocol):
    """A key's daily allowance (its `daily_limit` requests per UTC day; 0 = unlimited), consumed atomically."""

    def consume(self, key_id: int) -> QuotaDecision:
        """Count one request against the key's allowance for today, unless it is used up or the key is gone or
        inactive (nothing is counted then)."""
        ...

    def flush(self) -> None:
        """Write counts that wait in this process to the store (at exit and periodically)."""
        ...


@runtime_checkable
class Admission(Protocol):
    """Whether one request may proceed: the client's rate limit, then, when it has a key and the limiter let it
    through, the key's daily quota (the same order and counting as asking a Limiter and then a Quota: a request
    the limiter refuses is not counted against the quota; one the quota refuses still counts in the limiter)."""

    def admit(self, client: Hashable, key_id: int | None) -> AdmissionDecision:
        """Count one request by `client` (e.g. "key:7", "addr:10.0.0.1") and, with `key_id`, one against that
        key's quota; both decisions."""
        ...


@runtime_checkable
class Tally(Protocol):
    """Named counts (e.g. "hits", "misses") that every process of a server adds to, taken out in batches."""

    def add(self, name: str, amount: int = 1) -> None:
        ...

    def take(self, name: str) -> int:
        """The count, reset to zero in the same step (nothing added meanwhile is lost)."""
        ...

    def read(self, name: str) -> int:
        ...

    def batch(self, *, wait: bool = True) -> AbstractContextManager[bool]:
        """Held while counts are taken out and written to the store, and while /stats reads the store and what is
        still here, so that no reader sees counts that are in neither place; one holder at a time among all the
        processes that share the tally. Gives True once held; with wait=False, False at once if another holds
        it (and after a few seconds of waiting, False too: a holder that died)."""
        ...


@runtime_checkable
class Claims(Protocol):
    """Single flight across processes: which process analyzes a cache key while others wait for its result."""

    def try_claim(self, key: str, ttl: float) -> bool:
        """Claim `key` for this process for at most `ttl` seconds; False if another live process holds it (the
        holder may renew its own claim)."""
        ...

    def release(self, key: str) -> None:
        """End this process's claim on `key` (another process's claim is left alone)."""
        ...

    def wait(self, key: str, seconds: float) -> None:
        """Block until the claim on `key` may have ended, or at most `seconds`; implementations that cannot be
        told return after a short poll interval."""
        ...


@runtime_checkable
class Invalidation(Protocol):
    """Tells every process that records changed, so that what it keeps of them (a key cache, a near cache) is
    forgotten: the announcing process at once, the others when the message arrives."""

    def listen(self, forget_id: Callable[[int], None], forget_all: Callable[[], None]) -> None:
        """Call `forget_id(id)` for each record changed anywhere; `forget_all()` when all changed, and whenever
        messages may have been missed."""
        ...

    def announce(self, ids: Iterable[int]) -> None:
        ...

    def announce_all(self) -> None:
        ...

    @property
    def connected(self) -> bool:
        """Whether this process hears the messages now (what it keeps may be trusted only then)."""
        ...

    def close(self) -> None:
        """Stop listening and let go of what listening holds (a subscriber thread, a mapped file)."""
        ...


# -- the store ---------------------------------------------------------------------------------------------------

Row = Mapping[str, Any]  # a stored row, read as row["column"] (sqlite3.Row, or psycopg's dict rows)


@runtime_checkable
class Store(Protocol):
    """The database: SQLiteStore (one file, the embedded default) or PostgresStore (ESSENTIA_DATABASE_URL), in
    backend/storage/. Callers own transactions: `with store.connection(write=True) as conn:` then
    `store.insert_analysis(conn, ...)`; rows are read as row["column"] on both."""

    dialect: str

    def connection(self, *, write: bool = False) -> AbstractContextManager[Any]:
        """A pooled connection in a transaction: commit on success, roll back on any error."""
        ...

    def single_read(self) -> AbstractContextManager[Any]:
        """A pooled connection for one read statement, outside a transaction."""
        ...

    def migrate(self) -> int:
        """Bring the schema up to date (safe to repeat, safe for hosts starting together); the version."""
        ...

    def schema_version(self, conn: Any) -> int: ...

    def describe(self) -> str:
        """Where the data lives, for people (a path, or host:port/db without credentials)."""
        ...

    def close(self) -> None: ...

    # analysis cache
    def find_analysis_by_cache_key(self, conn: Any, cache_key: str) -> Row | None: ...

    def find_analysis_by_id(self, conn: Any, analysis_id: int) -> Row | None: ...

    def find_analysis_by_preview_url(self, conn: Any, preview_url: str) -> Row | None: ...

    def insert_analysis(self, conn: Any, values: dict[str, Any], *, replace: bool = False) -> Row: ...

    def fill_unknown_metadata(self, conn: Any, analysis_id: int, title: str | None, artist: str | None,
                              unknown: str) -> None: ...

    def store_response_json(self, conn: Any, row: Row, response_json: str) -> bool: ...

    def list_analyses(self, conn: Any, *, limit: int, offset: int, sort: str = "newest") -> list[Row]: ...

    def count_analyses(self, conn: Any) -> int: ...

    def search_analyses(self, conn: Any, query: str, *, limit: int, offset: int,
                        before: int | None = None) -> list[Row]: ...

    def delete_analysis(self, conn: Any, analysis_id: int) -> bool: ...

    def clear_analyses(self, conn: Any) -> int: ...

    def analyses_after(self, conn: Any, after_id: int, limit: int) -> list[Row]: ...

    def iter_analyses(self, *, batch: int = ...) -> Iterator[Row]: ...

    def verify_analysis(self, conn: Any, analysis_id: int, *, manual_bpm: float | None, manual_key: str | None,
                        bpm_notes: str | None, verified_at: str) -> Row | None: ...

    # stats
    def add_to_stats(self, conn: Any, *, hits: int, misses: int, now: str) -> None: ...

    def read_stats(self, conn: Any) -> dict[str, Any]: ...

    # API keys
    def insert_key(self, conn: Any, *, name: str, email: str | None, key_hash: str, key_prefix: str,
                   is_admin: bool, daily_limit: int, created_at: str) -> int: ...

    def find_key_by_hash(self, conn: Any, key_hash: str) -> Row | None: ...

    def get_key(self, conn: Any, key_id: int) -> Row | None: ...

    def list_keys(self, conn: Any) -> list[Row]: ...

    def set_key_active(self, conn: Any, key_id: int, active: bool) -> bool: ...

    def set_key_daily_limit(self, conn: Any, key_id: int, daily_limit: int) -> bool: ...

    def delete_key(self, conn: Any, key_id: int) -> bool: ...

    # quota and usage
    def consume_daily_quota(self, conn: Any, key_id: int, day: str) -> int | None: ...

    def record_usage(self, conn: Any, rows: Iterable[Sequence[Any]]) -> None: ...

    def add_daily_usage(self, conn: Any, key_id: int, day: str, count: int) -> None: ...

    def raise_daily_usage(self, conn: Any, rows: Iterable[Sequence[Any]]) -> None: ...

    def usage_today(self, conn: Any, key_id: int, day: str) -> int: ...

    def usage_total(self, conn: Any, key_id: int) -> int: ...

    def recent_usage(self, conn: Any, key_id: int, limit: int = 10) -> list[Row]: ...

