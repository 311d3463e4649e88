"""The Flask app factory. Nothing runs at import time; `create_app()` wires settings, storage, the guard's
state, the executor and the blueprints into one app. Database connections and the process pool are created
lazily, in the process that serves (never before gunicorn forks)."""
from __future__ import annotations

import atexit
import logging
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from flask import Flask, current_app, g, request

from backend.config import Settings
from backend.roles import Admission, Claims, Executor, Invalidation, Limiter, Quota, Store, Tally
from backend.runtime.admission import LimiterThenQuota, TableAdmission
from backend.runtime.claims import ContentClaims, SingleProcessClaims
from backend.runtime.executor import AnalysisExecutor
from backend.runtime.filechanges import FileInvalidation
from backend.runtime.poolservice import PoolClient
from backend.runtime.quota import TableQuota
from backend.runtime.ratelimit import RateLimiter, SharedRateLimiter
from backend.runtime.nearcache import NearCache
from backend.runtime.redis_state import (RedisAdmission, RedisAnalysisInvalidation, RedisClaims, RedisEvents,
                                         RedisKeyInvalidation, RedisQuota, RedisRateLimiter, RedisTally, connect)
from backend.runtime.sharedtable import SharedTable
from backend.runtime.tally import LocalTally, SharedTally
from backend.service import AnalysisService
from backend.storage import open_store
from backend.storage.counters import BufferedCounters
from backend.web import register_blueprints
from backend.web.auth import KeyValidator, StoreQuota, StoreQuotaRecords, lookup_key_in
from backend.web.errors import register_error_handlers
from backend.web.hooks import register_request_hooks
from backend.web.metrics import Metrics


# Shared tables' sizes: clients tracked at once by the rate limiter (24 bytes each: 3 MiB), analyses in flight.
SHARED_LIMITER_SLOTS = 1 << 17
SHARED_CLAIM_SLOTS = 1 << 12
SHARED_QUOTA_SLOTS = 1 << 14  # keys counted per day at once (24 bytes each: 384 KiB)
# The near cache of hit rows (with Redis, or on a SQLite file): rows kept per HTTP process (a row is ~6-7 KB with
# its chart data: ~14 MB), and the longest a row is kept if a change could not be announced.
NEAR_CACHE_ROWS = 2048
NEAR_CACHE_SECONDS = 60.0


@dataclass(frozen=True)
class Roles:
    """One implementation of each shared role (backend/roles.py), chosen by build_roles."""
    executor: Executor
    rate_limiter: Limiter | None  # None: no rate limit configured
    quota: Quota
    admission: Admission  # the two above, asked together by the request guard
    tally: Tally
    claims: Claims
    key_changes: Invalidation | None = None  # tells every process that a key changed (Redis, or beside the SQLite file)
    row_changes: Invalidation | None = None  # ... that an analysis row changed (likewise)


@dataclass
class Services:
    """Everything a request needs besides Flask itself; lives in app.extensions['essentia']."""
    settings: Settings
    store: Store
    key_validator: KeyValidator
    rate_limiter: Limiter | None
    quota: Quota
    admission: Admission
    counters: BufferedCounters
    metrics: Metrics
    executor: Executor
    analysis: AnalysisService
    started_at: float
    key_changes: Invalidation | None = None


def create_app(config: Settings | Mapping[str, Any] | None = None) -> Flask:
    """Build the app. `config` is a mapping of Settings fields overriding the environment's (ESSENTIA_* variables),
    None for the environment alone (both get the production defaults when production is on), or a Settings
    taken exactly as it is."""
    settings = config if isinstance(config, Settings) else Settings.from_env(overrides=config)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = 1024 * 1024  # text fields of a multipart form; files are not counted
    app.json.ensure_ascii = False  # "Beyoncé" stays readable in curl; still valid JSON
    app.json.sort_keys = False

    store = open_store(settings)
    roles = build_roles(settings, store)
    executor = roles.executor
    metrics = Metrics(queue_depth=executor.pending, workers_alive=executor.workers_alive)
    counters = BufferedCounters(store, flush_seconds=settings.stats_flush_seconds, tally=roles.tally)
    key_validator = KeyValidator(lookup_key_in(store), ttl=settings.key_cache_ttl,
                                 negative_ttl=settings.negative_key_cache_ttl, max_entries=settings.key_cache_size)
    if roles.key_changes is not None:
        roles.key_changes.listen(key_validator.forget_id, forget_all=key_validator.forget)
    app.extensions["essentia"] = Services(
        settings=settings,
        store=store,
        key_validator=key_validator,
        rate_limiter=roles.rate_limiter,
        quota=roles.quota,
        admission=roles.admission,
        counters=counters,
        metrics=metrics,
        executor=executor,
        analysis=AnalysisService(settings=settings, store=store, executor=executor, counters=counters,
                                 metrics=metrics, claims=roles.claims, near_cache=_near_cache(roles),
                                 row_changes=roles.row_changes),
        started_at=time.monotonic(),
        key_changes=roles.key_changes,
    )
    # Flush what is still buffered at exit, without keeping every app a process ever built (tests build many).
    atexit.register(_flush_at_exit, weakref.ref(counters))
    atexit.register(_flush_at_exit, weakref.ref(roles.quota))

    register_error_handlers(app)
    register_request_hooks(app)
    register_blueprints(app)
    app.after_request(_finish_response)

    from backend.cli import register_commands
    register_commands(app)
    return app


def build_roles(settings: Settings, store: Store) -> Roles:
    """The one place an implementation is chosen for each role. Today the choice is between one process (tests,
    the CLI: everything in memory) and several HTTP processes on one host (gunicorn sets shared_state_dir: a
    memory-mapped table and the host's pool service) and several hosts (ESSENTIA_REDIS_URL: Redis)."""
    if settings.redis_url:
        return _redis_roles(settings, store)
    limiter = _rate_limiter(settings)
    key_changes = _file_changes(settings, "key-changes")
    quota = _quota(settings, store, lock_of=limiter.table if isinstance(limiter, SharedRateLimiter) else None,
                   key_changes=key_changes)
    return Roles(executor=_executor(settings), rate_limiter=limiter, quota=quota,
                 admission=_admission(limiter, quota), tally=_tally(settings), claims=_claims(settings),
                 key_changes=key_changes, row_changes=_file_changes(settings, "changes"))


def _file_changes(settings: Settings, suffix: str) -> Invalidation | None:
    """On a SQLite file, every process that opens it (HTTP workers, the CLI) counts changes in files beside it:
    `-changes` for analysis rows, `-key-changes` for keys. PostgreSQL without Redis may be shared by several hosts,
    which no file reaches: nothing is kept there."""
    if settings.database_url or settings.db_path == ":memory:":
        return None
    return FileInvalidation(f"{settings.db_path}-{suffix}")


def _redis_roles(settings: Settings, store: Store) -> Roles:
    """Several hosts (ESSENTIA_REDIS_URL): every shared role on Redis, on one client per process. Under gunicorn
    create_app runs in each HTTP process after the fork, so no connection is shared between processes."""
    client, prefix = connect(settings.redis_url), settings.redis_prefix
    events = RedisEvents(client=client, prefix=prefix)
    # Everything that listens subscribes before the first listen() starts this process's subscriber.
    tally = RedisTally(client=client, prefix=prefix, events=events, flush_seconds=settings.stats_flush_seconds)
    claims = RedisClaims(client=client, prefix=prefix, events=events)
    key_changes = RedisKeyInvalidation(events)
    quota = RedisQuota(client=client, prefix=prefix, records=StoreQuotaRecords(store),
                       flush_seconds=settings.stats_flush_seconds, key_ttl=settings.key_cache_ttl)
    key_changes.listen(quota.forget_key, forget_all=quota.forget_all_keys)
    limiter = RedisRateLimiter(settings.rate_limit, client=client, prefix=prefix) if settings.rate_limit > 0 else None
    return Roles(executor=_executor(settings), rate_limiter=limiter, quota=quota,
                 admission=RedisAdmission(limiter, quota, client=client), tally=tally, claims=claims,
                 key_changes=key_changes, row_changes=RedisAnalysisInvalidation(events))


def _near_cache(roles: Roles) -> NearCache | None:
    """Hit rows kept in the process only where every change to a row reaches every process: Redis announces it
    to every host, the change counter beside a SQLite file to every process that opens the file. A hit then skips
    its SELECT (~40 µs on SQLite, a round trip on PostgreSQL)."""
    if roles.row_changes is None:
        return None
    return NearCache(max_rows=NEAR_CACHE_ROWS, max_age=NEAR_CACHE_SECONDS,
                     usable=lambda: roles.row_changes.connected)


def _executor(settings: Settings) -> Executor:
    """Under gunicorn, the server's one analysis pool (a service the master started); otherwise a pool of this
    process's own."""
    if settings.shared_state_dir:
        return PoolClient(settings.shared_state_dir, timeout=settings.analysis_timeout)
    return AnalysisExecutor(workers=settings.workers, queue_depth=settings.queue_depth,
                            timeout=settings.analysis_timeout)


def _rate_limiter(settings: Settings) -> Limiter | None:
    """In memory when one process serves HTTP (exact and cheapest); in shared memory when several do, so that
    they count together."""
    if settings.rate_limit <= 0:
        return None
    if settings.shared_state_dir:
        return SharedRateLimiter(settings.rate_limit, table=_shared_table(settings, "rate-limits",
                                                                          SHARED_LIMITER_SLOTS))
    return RateLimiter(settings.rate_limit)


def _admission(limiter: Limiter | None, quota: Quota) -> Admission:
    """Limiter and quota both in shared tables on one lock: one flock per keyed request; otherwise one, then the
    other."""
    if isinstance(limiter, SharedRateLimiter) and isinstance(quota, TableQuota):
        return TableAdmission(limiter, quota)
    return LimiterThenQuota(limiter, quota)


def _quota(settings: Settings, store: Store, *, lock_of: SharedTable | None = None,
           key_changes: Invalidation | None = None) -> Quota:
    """One process: the store's conditional upsert per request. Several HTTP processes on one host: counted in the
    shared table, written in batches (backend/runtime/quota.py: as exact, without a write transaction per request).
    A shared database (ESSENTIA_DATABASE_URL) may serve several hosts, and the table is one host's: without Redis
    they keep the store's quota. `lock_of`: the limiter's table, whose lock the quota's table shares (TableAdmission)."""
    if not settings.shared_state_dir or settings.database_url:
        return StoreQuota(store)
    return TableQuota(store, _shared_table(settings, "quota", SHARED_QUOTA_SLOTS, lock_of=lock_of),
                      flush_seconds=settings.stats_flush_seconds, key_changes=key_changes)


def _tally(settings: Settings) -> Tally:
    if not settings.shared_state_dir:
        return LocalTally()  # one process: its own counts are all there is
    return SharedTally(Path(settings.shared_state_dir) / "counters")


def _claims(settings: Settings) -> Claims:
    if not settings.shared_state_dir:
        return SingleProcessClaims()  # one process: SingleFlight alone is exact
    return ContentClaims(_shared_table(settings, "claims", SHARED_CLAIM_SLOTS))


def _shared_table(settings: Settings, name: str, slots: int, *, lock_of: SharedTable | None = None) -> SharedTable:
    return SharedTable(Path(settings.shared_state_dir) / name, slots=slots, lock_of=lock_of)


def _flush_at_exit(buffer_ref: "weakref.ref[BufferedCounters | Quota]") -> None:
    buffer = buffer_ref()
    if buffer is not None:
        buffer.flush()


def _finish_response(response):
    """Rate-limit and CORS headers, and the usage record of a request made with a key."""
    response.headers.update(getattr(g, "rate_limit_headers", {}))
    services = current_app.extensions["essentia"]
    _add_cors_headers(response, services.settings.cors_origins)
    key = getattr(g, "api_key", None)
    if key is not None:
        services.counters.record_usage(key.id, request.path, response.status_code)
    return response


def _add_cors_headers(response, allowed_origins: tuple[str, ...]) -> None:
    """CORS is off unless origins are configured; then only those origins are echoed back."""
    origin = request.headers.get("Origin")
    if not origin or origin not in allowed_origins:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Vary"] = "Origin"
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, X-API-Key, X-Song-Title, X-Song-Artist"
        response.headers["Access-Control-Max-Age"] = "600"
