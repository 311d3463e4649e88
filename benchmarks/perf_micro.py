"""Micro-benchmarks of performance_test.py, sections 1-5: API-key validation, daily quota, connection pool, rate
limiter, single flight; each against the naive way, in this process."""
from __future__ import annotations

import inspect
import statistics
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

from benchmarks.perf_common import per_call, percentile, ratio, tagged


# -- 1. API-key validation --------------------------------------------------------------------------------------


def make_keys_db(path: Path, count: int):
    from backend.storage.sqlite import SQLiteStore
    from backend.web.auth import display_prefix, generate_key, hash_key
    from backend.timeutil import utc_now_iso

    db = SQLiteStore(str(path))
    raws = [generate_key() for _ in range(count)]
    with db.connection(write=True) as conn:
        for i, raw in enumerate(raws):
            db.insert_key(conn, name=f"client {i}", email=None, key_hash=hash_key(raw),
                             key_prefix=display_prefix(raw), is_admin=False, daily_limit=0,
                             created_at=utc_now_iso())
    return db, raws


def bench_keys(tmp: Path, quick: bool) -> dict[str, Any]:
    from backend.storage.sqlite import _open as open_connection
    from backend.web.auth import KeyValidator, hash_key, key_from_row, lookup_key_in

    db, raws = make_keys_db(tmp / "keys.db", 100)
    lookup = lookup_key_in(db)
    validator = KeyValidator(lookup)
    n = len(raws)
    for raw in raws:  # fill the cache, as the first request of each client does
        assert validator.validate(raw) is not None
    queries_before = validator.lookups
    repeats = 3 if quick else 7
    ours = per_call(lambda i: validator.validate(raws[i % n]), 5_000 if quick else 20_000, repeats)
    queries_during = validator.lookups - queries_before
    naive = per_call(lambda i: lookup(hash_key(raws[i % n])), 1_000 if quick else 4_000, repeats)

    def unpooled(i: int) -> None:
        conn = open_connection(db.path)  # the pool's own opener: same PRAGMAs, just not reused
        try:
            key_hash = hash_key(raws[i % n])
            key_from_row(db.find_key_by_hash(conn, key_hash), key_hash)
        finally:
            conn.close()

    naive_unpooled = per_call(unpooled, 300 if quick else 1_000, repeats)
    db.close()
    return {
        "keys": n,
        "ours_per_lookup_s": ours["median_s"], "naive_per_lookup_s": naive["median_s"],
        "ratio": ratio(naive["median_s"], ours["median_s"]),
        "naive_unpooled_per_lookup_s": naive_unpooled["median_s"],
        "ratio_vs_unpooled": ratio(naive_unpooled["median_s"], ours["median_s"]),
        "db_queries_during_cached_run": queries_during,
        "naive_is": "SHA-256 of the key + one indexed SELECT by hash through the connection pool, every lookup",
        "naive_unpooled_is": "the same query on a new sqlite3 connection (with PRAGMAs) per lookup, as a server "
                             "without a pool or key cache does",
        "ours": ours, "naive": naive, "naive_unpooled": naive_unpooled, "target_ratio": 50,
    }


# -- 2. Daily quota ---------------------------------------------------------------------------------------------

NAIVE_QUOTA_SQL = "SELECT COUNT(*) FROM api_usage WHERE key_id = ? AND DATE(created_at) = DATE('now')"


def _fill_usage(db, key_id: int, rows: int, offset: int) -> None:
    """Append `rows` usage rows for one key, spread over the past year (a few hundred fall on today), in SQL."""
    with db.connection(write=True) as conn:
        conn.execute(
            "WITH RECURSIVE c(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM c WHERE i < ?) "
            "INSERT INTO api_usage (key_id, endpoint, status, created_at) "
            "SELECT ?, '/analyze', 200, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || (i % 365) || ' days', "
            "'-' || (i % 3600) || ' seconds') FROM c",
            (offset, offset + rows - 1, key_id),
        )


def bench_quota(tmp: Path, quick: bool) -> dict[str, Any]:
    from backend.storage.sqlite import SQLiteStore
    from backend.timeutil import utc_today

    # The key is unlimited (daily_limit 0), so every call counts. Older store versions took the limit as an argument.
    if "daily_limit" in inspect.signature(SQLiteStore.consume_daily_quota).parameters:
        def consume(db, conn, key_id, day):
            return db.consume_daily_quota(conn, key_id, day, 0)
    else:
        def consume(db, conn, key_id, day):
            return db.consume_daily_quota(conn, key_id, day)
    big = 100_000 if quick else 1_000_000
    sizes = [big // 10, big]
    repeats = 3 if quick else 5
    out: dict[str, Any] = {"history_sizes": sizes, "per_size": {}, "target_ratio": 1000,
                           "history_is": "all usage rows belong to the key being checked (a heavy client)",
                           "naive_sql": NAIVE_QUOTA_SQL,
                           "method": "one database per history size; repeats alternate between the sizes so "
                                     "that machine noise hits both alike"}
    key_id = 1
    day = utc_today()
    dbs = {}
    for size in sizes:
        db, _ = make_keys_db(tmp / f"quota-{size}.db", 2)
        started = time.perf_counter()
        _fill_usage(db, key_id, size, 0)
        with db.connection() as conn:
            total = conn.execute("SELECT COUNT(*) FROM api_usage WHERE key_id = ?", (key_id,)).fetchone()[0]
            today_rows = conn.execute(NAIVE_QUOTA_SQL, (key_id,)).fetchone()[0]
        dbs[size] = db
        out["per_size"][str(size)] = {"usage_rows": total, "rows_today": today_rows,
                                      "fill_s": time.perf_counter() - started, "ours_samples_s": [],
                                      "naive_samples_s": []}

    def ours_call(db) -> Callable[[int], None]:
        def call(_i: int) -> None:
            with db.connection(write=True) as conn:
                consume(db, conn, key_id, day)
        return call

    def naive_call(db) -> Callable[[int], None]:
        def call(_i: int) -> None:
            with db.connection() as conn:
                conn.execute(NAIVE_QUOTA_SQL, (key_id,)).fetchone()
        return call

    for _ in range(repeats):
        for size in sizes:
            entry = out["per_size"][str(size)]
            entry["ours_samples_s"].append(per_call(ours_call(dbs[size]), 500 if quick else 2_000, 1)["median_s"])
            naive_calls = max(2, min(50, int(200_000 / size)))
            entry["naive_samples_s"].append(per_call(naive_call(dbs[size]), naive_calls, 1)["median_s"])
            entry["naive_calls_per_repeat"] = naive_calls
    for size in sizes:
        entry = out["per_size"][str(size)]
        entry["ours_per_check_s"] = statistics.median(entry["ours_samples_s"])
        entry["naive_per_check_s"] = statistics.median(entry["naive_samples_s"])
        entry["ratio"] = ratio(entry["naive_per_check_s"], entry["ours_per_check_s"])
        dbs[size].close()
    small, large = (out["per_size"][str(s)] for s in sizes)
    out["ours_growth"] = large["ours_per_check_s"] / small["ours_per_check_s"]
    out["naive_growth"] = large["naive_per_check_s"] / small["naive_per_check_s"]
    out["ratio"] = large["ratio"]
    out["ours_is"] = "SQLiteStore.consume_daily_quota in a write transaction (BEGIN IMMEDIATE ... COMMIT): check AND count"
    return out


# -- 3. Connection pool -----------------------------------------------------------------------------------------


def bench_pool(tmp: Path, quick: bool) -> dict[str, Any]:
    from backend.storage.sqlite import _open as open_connection
    from backend.web.auth import hash_key

    db, raws = make_keys_db(tmp / "pool.db", 1000)
    hashes = [hash_key(raw) for raw in raws]
    n = len(hashes)

    def ours_call(i: int) -> None:
        with db.connection() as conn:
            db.find_key_by_hash(conn, hashes[i % n])

    def naive_call(i: int) -> None:
        conn = open_connection(db.path)  # the pool's own opener: same PRAGMAs, just not reused
        try:
            db.find_key_by_hash(conn, hashes[i % n])
        finally:
            conn.close()

    repeats = 3 if quick else 7
    ours_call(0)
    ours = per_call(ours_call, 3_000 if quick else 10_000, repeats)
    naive = per_call(naive_call, 300 if quick else 3_000, repeats)
    db.close()
    return {"operation": "one indexed SELECT by key hash (api_keys, 1000 rows)",
            "ours_is": "SQLiteStore.connection() (pooled; BEGIN ... COMMIT around the SELECT)",
            "naive_is": "sqlite3.connect + the same PRAGMAs (busy_timeout, foreign_keys, synchronous) + close",
            "ours_per_op_s": ours["median_s"], "naive_per_op_s": naive["median_s"],
            "ratio": ratio(naive["median_s"], ours["median_s"]), "ours": ours, "naive": naive, "target_ratio": 10}


# -- 4. Rate limiter --------------------------------------------------------------------------------------------


class NaiveLimiter:
    """The naive way: a dict of every client ever seen -> list of request timestamps in the last window."""

    def __init__(self, limit: int, window_seconds: float = 60.0):
        self.limit = limit
        self.window = window_seconds
        self.requests: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def hit(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            stamps = [t for t in self.requests.get(client, ()) if t > now - self.window]
            allowed = len(stamps) < self.limit
            if allowed:
                stamps.append(now)
            self.requests[client] = stamps
            return allowed

    def __len__(self) -> int:
        return len(self.requests)


def _drive(limiter, clients: list[str]) -> float:
    started = time.perf_counter()
    hit = limiter.hit
    for client in clients:
        hit(client)
    return (time.perf_counter() - started) / len(clients)


def _peak(make, clients: list[str]) -> tuple[int, int]:
    """tracemalloc peak (bytes) of creating a limiter and sending one request from each client; its final len()."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    limiter = make()
    for client in clients:
        limiter.hit(client)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, len(limiter)


def bench_ratelimit(tmp: Path, quick: bool) -> dict[str, Any]:
    from backend.app import SHARED_LIMITER_SLOTS
    from backend.runtime.ratelimit import RateLimiter, SharedRateLimiter
    from backend.runtime.sharedtable import SharedTable

    # Full: the server's default bound (100,000) against 1,000,000 clients. Quick: a 10,000 bound against 30,000
    # clients, the same shape at a tenth of the cost.
    total = 30_000 if quick else 1_000_000
    clients = [f"addr:10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}#{i}" for i in range(total)]
    limit = 60
    bound = 10_000 if quick else RateLimiter(limit).max_clients

    def ours_limiter(**kw):
        return RateLimiter(limit, max_clients=bound, **kw)
    repeats = 1  # one pass over 1,000,000 clients is already seconds per variant
    small = clients[: total // 10]

    ours_small = statistics.median(_drive(ours_limiter(), small) for _ in range(repeats))
    ours_times, naive_times = [], []
    ours_len = naive_len = 0
    for _ in range(repeats):
        limiter = ours_limiter()
        ours_times.append(_drive(limiter, clients))
        ours_len = len(limiter)
        del limiter
        naive = NaiveLimiter(limit)
        naive_times.append(_drive(naive, clients))
        naive_len = len(naive)
        del naive
    ours_peak, _ = _peak(ours_limiter, clients)
    naive_peak, _ = _peak(lambda: NaiveLimiter(limit), clients)

    # Time-based pruning, on a simulated clock: a new client every `step` seconds, so that one 60-s window holds
    # half the bound; expired windows must be dropped for len() to stay there.
    step = 60.0 / (bound / 2)
    fake_now = [0.0]

    def tick() -> float:
        fake_now[0] += step
        return fake_now[0]

    # Where ours spends its time: the decision object it returns on every call.
    from backend.roles import RateDecision
    started = time.perf_counter()
    for _ in range(100_000):
        RateDecision(True, limit, 1, 1.0)
    decision_s = (time.perf_counter() - started) / 100_000

    pruned = ours_limiter(clock=tick)
    for client in clients:
        pruned.hit(client)

    # What gunicorn's HTTP processes use: the same windows in a file-backed table they all map (fixed size).
    table = SharedTable(tmp / "rate-limits", slots=SHARED_LIMITER_SLOTS)
    shared = SharedRateLimiter(limit, table=table)
    shared_small = _drive(SharedRateLimiter(limit, table=SharedTable(tmp / "rate-limits-small",
                                                                     slots=SHARED_LIMITER_SLOTS)), small)
    shared_s = _drive(shared, clients)
    return {
        "shared_per_call_s": shared_s, "shared_per_call_s_at_tenth": shared_small, "shared_len": len(shared),
        "shared_slots": table.slots, "shared_table_bytes": table.nbytes,
        "shared_note": "SharedRateLimiter (backend/runtime/sharedtable.py): what runs under gunicorn; its memory is the "
                       "mapped table, fixed at shared_table_bytes whatever the number of clients",
        "distinct_clients": total, "limit_per_minute": limit, "max_clients_bound": bound,
        "ours_per_call_s": statistics.median(ours_times), "naive_per_call_s": statistics.median(naive_times),
        "ours_per_call_s_at_tenth": ours_small, "ours_per_call_samples_s": ours_times,
        "naive_per_call_samples_s": naive_times,
        "time_ratio": ratio(statistics.median(naive_times), statistics.median(ours_times)),
        "ours_len": ours_len, "naive_len": naive_len,
        "ours_peak_bytes": ours_peak, "naive_peak_bytes": naive_peak,
        "memory_ratio": ratio(naive_peak, ours_peak),
        "ours_decision_object_s": decision_s,
        "simulated_step_s": step, "simulated_len": len(pruned), "simulated_expected_len": int(60.0 / step),
        "simulated_note": "a new client every step seconds on a simulated clock: 60-s windows expire, so len() "
                          "stays near 60/step, below the bound, by pruning alone",
    }


# -- 5. Single flight -------------------------------------------------------------------------------------------


class _NoSingleFlight:
    """The naive way: every caller runs its own analysis."""

    def do(self, key: str, fn: Callable[[], Any]) -> tuple[Any, bool]:
        return fn(), False


def _burst(app, body: bytes, clients: int) -> dict[str, Any]:
    barrier = threading.Barrier(clients)
    answers: list[tuple[int, bool | None, float]] = []
    lock = threading.Lock()

    def one() -> None:
        client = app.test_client()
        barrier.wait()
        started = time.perf_counter()
        response = client.post("/analyze_data", data=body, content_type="audio/mp4")
        elapsed = time.perf_counter() - started
        data = response.get_json(silent=True) or {}
        with lock:
            answers.append((response.status_code, data.get("cached"), elapsed))

    threads = [threading.Thread(target=one) for _ in range(clients)]
    executor = app.extensions["essentia"].executor
    before = executor.completed
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"clients": clients, "analyses_run": executor.completed - before, "wall_s": wall,
            "statuses": sorted({str(a[0]): sum(1 for b in answers if b[0] == a[0]) for a in answers}.items()),
            "answered_200": sum(1 for a in answers if a[0] == 200),
            "answered_from_shared_or_cache": sum(1 for a in answers if a[1] is True),
            "p50_latency_s": percentile([a[2] for a in answers], 50)}


def bench_single_flight(tmp: Path, clip: bytes, quick: bool) -> dict[str, Any]:
    from backend.app import create_app
    from backend.config import Settings

    clients = 32
    # A quick run uses the in-process thread pool (workers=0) to skip starting processes; single flight lives in
    # the service, above the executor, so the count is the same either way.
    settings = Settings(db_path=str(tmp / "singleflight.db"), workers=0 if quick else 2, queue_depth=64,
                        stats_flush_seconds=0.0, analysis_timeout=300.0, log_level="WARNING")
    app = create_app(settings)
    services = app.extensions["essentia"]
    try:
        started = time.perf_counter()
        services.executor.start(wait=True)
        warm_s = time.perf_counter() - started
        ours = _burst(app, tagged(clip, "single-flight-ours"), clients)
        services.analysis.flights = _NoSingleFlight()
        naive = _burst(app, tagged(clip, "single-flight-naive"), clients)
    finally:
        services.executor.shutdown()
        services.store.close()
    return {"concurrent_requests": clients, "pool_workers": settings.workers,
            "pool_kind": "threads in this process" if settings.workers == 0 else "process pool (spawn)",
            "pool_start_s": warm_s,
            "clip": "10-s synthesized song, 44.1 kHz stereo AAC in .m4a",
            "ours": ours, "naive": naive, "ours_analyses": ours["analyses_run"],
            "naive_analyses": naive["analyses_run"],
            "naive_is": "the same app with AnalysisService.flights replaced by a pass-through (no single flight)"}
