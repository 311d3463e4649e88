"""The shared roles of a server, one typing.Protocol each, and the small records they answer with.

Each role has several implementations; `create_app` (backend/app.py, `build_roles`) picks one per role from
Settings, and the rest of the code sees only these protocols:

  Executor  runs decode + analysis        AnalysisExecutor (a pool in this process), PoolClient (the host's
                                          one pool, behind the pool service)
  Limiter   requests per client a minute  RateLimiter (in memory), SharedRateLimiter (memory-mapped table)
  Quota     a key's daily allowance       StoreQuota (the store's daily_usage table), TableQuota (memory-mapped
                                          table, written to the store in batches)
  Tally     hit/miss counts not yet       LocalTally (in memory), SharedTally (memory-mapped table)
            written to the store
  Claims    which process analyzes a      SingleProcessClaims (one process), ContentClaims (memory-mapped table)
            song (single flight across
            processes)

With several hosts the shared roles move to Redis (ESSENTIA_REDIS_URL) and the store to PostgreSQL
(ESSENTIA_DATABASE_URL); docs/ARCHITECTURE.md describes who runs where.
"""
from __future__ import annotations

import math
from typing import Any, Hashable, NamedTuple, Protocol, runtime_checkable


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


QUOTA_EXHAUSTED = "exhausted"        # the key has used today's allowance
QUOTA_KEY_INACTIVE = "inactive_key"  # deactivated since the key validator cached it
QUOTA_KEY_UNKNOWN = "unknown_key"    # deleted since the key validator cached it


# -- the roles ---------------------------------------------------------------------------------------------------

@runtime_checkable
class Executor(Protocol):
    """Decodes and analyzes audio bytes away from the request threads, with a bounded queue."""

    def run(self, data: bytes, window_seconds: float) -> dict[str, Any]:
        """The analysis of `data` (its first `window_seconds` of interest), as a job result; raises ExecutorError
        (503-family) when the analysis could not run at all (busy, timed out, worker crashed, pool gone)."""
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


# -- Store: the storage helper adds the Store protocol here (backend/storage/, issue 11) --------------------------
