#!/usr/bin/env python
"""EssentiaServer performance benchmark: every optimization measured against the naive way, side by side, in one run.

    python performance_test.py                 # full run: a few minutes
    python performance_test.py --quick         # CI: smaller sizes, under a minute on 2 cores
    python performance_test.py --json out.json # also write every figure (and the raw samples' medians) as JSON
    python performance_test.py --only 2,6      # some sections only
    python performance_test.py --profile-hits 2000   # only: cProfile of cache hits in-process, by function
Cache-hit phases use wrk when it is installed (--no-wrk: the built-in Python generator instead).

Sections (the targets of issue 4):
  1. API-key validation: backend.web.auth.KeyValidator (TTL cache) vs one database query per lookup.
  2. Daily quota: SQLiteStore.consume_daily_quota (per-day counter row) vs COUNT(*) over DATE(created_at),
     at two history sizes.
  3. Connection pool: backend.storage.sqlite.SQLiteStore.connection vs a new sqlite3 connection (same PRAGMAs)
     per operation.
  4. Rate limiter: backend.runtime.ratelimit.RateLimiter vs an unbounded dict of per-client timestamp lists, with many
     distinct clients: time per call and tracemalloc peak.
  5. Single flight: 32 concurrent requests for the same new audio through the real app (create_app, process pool)
     vs the same app with single flight switched off.
  6. Load test over HTTP on 127.0.0.1: gunicorn with gunicorn.conf.py vs a naive Flask dev server (one request at
     a time, librosa HPSS + beat_track + chroma_cqt per request, a title+artist dict as its only cache).
  catalog (only with --only catalog): search, every sort order and /stats at 10k/100k/1M cached songs on SQLite
     and PostgreSQL (benchmarks/perf_catalog.py).
  hosts (several hosts; only with --only hosts, needs PostgreSQL and Redis): the rate limiter's Lua script vs the
     `limits` library, Redis cost per role operation, and one embedded host vs two hosts on PostgreSQL + Redis
     (hits by URL and upload, misses, latency of one hit) (benchmarks/perf_hosts.py).

Everything printed is measured in this run; nothing is typed in. Micro-benchmarks report the median of several
repeats. The script never asserts a speed: it prints whether each target is met and exits 0 either way.
Servers it starts are killed (process group) before it exits, whatever happens.
"""
from __future__ import annotations

import argparse
import http.client
import inspect
import itertools
import json
import os
import platform
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Distinct songs for the load test: (bpm, tonic, mode). Every request also gets a unique tag (see tagged()).
SONGS = [(92, "D", "minor"), (128, "F#", "major"), (104, "A", "minor"), (140, "C", "major"),
         (75, "G", "minor"), (118, "E", "major")]
CLIP_SECONDS = 30.0
CLIP_RATE = 44100      # an iTunes-style preview: 30 s, 44.1 kHz stereo AAC in .m4a
NAIVE_SR = 22050

# -- small helpers ----------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def per_call(fn: Callable[[int], Any], calls: int, repeats: int) -> dict[str, Any]:
    """Run fn(i) `calls` times per repeat; per-call seconds of each repeat and their median."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(calls):
            fn(i)
        samples.append((time.perf_counter() - started) / calls)
    return {"median_s": statistics.median(samples), "samples_s": samples, "calls": calls, "repeats": repeats}


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def ratio(naive: float, ours: float) -> float:
    return naive / ours if ours > 0 else float("inf")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tagged(clip: bytes, tag: str) -> bytes:
    """The clip with an MP4 'free' box appended: different bytes (so a different SHA-256, a genuine cache miss that
    is fully decoded and analyzed) for the same audio. Decoders skip 'free' boxes by definition (ISO/IEC 14496-12)."""
    payload = tag.encode()
    return clip + struct.pack(">I4s", 8 + len(payload), b"free") + payload


def make_clip(bpm: float, tonic: str, mode: str, seconds: float = CLIP_SECONDS, sr: int = CLIP_RATE,
              channels: int = 2) -> bytes:
    """A synthesized song (drums + chords) encoded as AAC in .m4a with PyAV, like a phone's preview clip."""
    from tests import synth
    y = synth.song(bpm, tonic, mode, seconds=seconds, sr=sr)
    return synth.encode_with_pyav(y, sr, "mp4", "aac", channels)


def _make_clip_args(args: tuple) -> bytes:
    return make_clip(*args)


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
    out["ours_is"] = ("SQLiteStore.consume_daily_quota in a write transaction (BEGIN IMMEDIATE ... COMMIT): "
                      "check AND count")
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


# -- 6. Load test -----------------------------------------------------------------------------------------------


def http_json(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
              timeout: float = 120.0) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw[:200]
    finally:
        conn.close()


def wait_for_health(port: int, process: subprocess.Popen, deadline_s: float, log_path: Path) -> float:
    started = time.perf_counter()
    while True:
        try:
            if http_json(port, "GET", "/health", timeout=2)[0] == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        if process.poll() is not None or time.perf_counter() - started > deadline_s:
            tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
            raise RuntimeError(f"server on port {port} did not come up:\n{tail}")
        time.sleep(0.1)


def stop_process(process: subprocess.Popen | None) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not exited within 30 s."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def run_load(port: int, make_request: Callable[[int], tuple[str, str, bytes | None, dict]], clients: int, *,
             total: int | None = None, duration: float | None = None) -> dict[str, Any]:
    """`clients` threads, each with one keep-alive http.client connection, sending requests until `total` have
    been sent or `duration` seconds have passed. Latency is measured per request, from send to full body."""
    counter = itertools.count()
    lock = threading.Lock()
    records: list[tuple[float, int, bytes]] = []
    barrier = threading.Barrier(clients + 1)
    stop_at: list[float] = [0.0]

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        local = []
        barrier.wait()
        try:
            while True:
                i = next(counter)
                if total is not None and i >= total:
                    break
                if duration is not None and time.perf_counter() >= stop_at[0]:
                    break
                method, path, body, headers = make_request(i)
                sent = time.perf_counter()
                try:
                    conn.request(method, path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    status = response.status
                except (http.client.HTTPException, OSError):
                    conn.close()
                    status, data = 0, b""
                local.append((time.perf_counter() - sent, status, data))
        finally:
            conn.close()
            with lock:
                records.extend(local)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + (duration or 0)
    barrier.wait()
    started = time.perf_counter()
    stop_at[0] = started + (duration or 0)
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies = [r[0] for r in records if r[1] == 200]
    statuses: dict[str, int] = {}
    for record in records:
        statuses[str(record[1])] = statuses.get(str(record[1]), 0) + 1
    cached = []
    for record in records:
        if record[1] == 200:
            try:
                cached.append(json.loads(record[2]).get("cached"))
            except ValueError:
                cached.append(None)
    durations = []
    for record in records:
        if record[1] == 200:
            try:
                value = json.loads(record[2]).get("analysis_duration")
            except ValueError:
                value = None
            if isinstance(value, (int, float)):
                durations.append(float(value))
    out = {"clients": clients, "requests": len(records), "ok": len(latencies), "statuses": statuses,
           "server_analysis_duration_median_s": statistics.median(durations) if durations else None,
           "wall_s": wall, "throughput_per_s": len(latencies) / wall if wall > 0 else 0.0,
           "cached_true": sum(1 for c in cached if c is True), "cached_false": sum(1 for c in cached if c is False)}
    if latencies:
        out.update(p50_s=percentile(latencies, 50), p95_s=percentile(latencies, 95),
                   p99_s=percentile(latencies, 99), max_s=max(latencies))
    return out


class ClipServer:
    """Serves clips at http://127.0.0.1:<port>/<name>.m4a, standing in for the store's preview URLs."""

    def __init__(self, clips: dict[str, bytes]):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                data = clips.get(self.path.lstrip("/"))
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "audio/mp4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return kids


def _status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def process_cmdline(pid: int) -> str:
    """The command line of a process (empty once it is gone); tests/servers.py uses it too."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _role(pid: int, depth: int, single: bool) -> str:
    """Who a process of the server's tree is: master -> HTTP workers, and master -> pool supervisor -> analysis
    service -> pool workers (backend/runtime/poolservice.py)."""
    if single:
        return "naive server"
    if depth == 0:
        return "gunicorn master"
    command = process_cmdline(pid)
    if "resource_tracker" in command:
        return "multiprocessing resource tracker"
    if "backend.runtime.poolservice" in command:
        return "analysis pool supervisor"
    if "spawn_main" not in command:
        return "gunicorn HTTP worker"
    return "analysis service" if depth == 2 else "analysis pool worker"


def process_tree(root_pid: int) -> list[tuple[int, int]]:
    """(pid, depth) of a process and all its descendants."""
    out, level = [], [(root_pid, 0)]
    while level:
        out.extend(level)
        level = [(child, depth + 1) for pid, depth in level for child in _children(pid)]
    return out


class CpuMeter:
    """CPU seconds used by a server's process tree (per role) and by this process (the load generator)."""

    def __init__(self, root_pid: int, single: bool = False):
        self.root_pid, self.single = root_pid, single

    def snapshot(self) -> tuple[dict[int, tuple[str, float]], float]:
        procs = {}
        for pid, depth in process_tree(self.root_pid):
            cpu = _cpu_seconds(pid)
            if cpu is not None:
                procs[pid] = (_role(pid, depth, self.single), cpu)
        return procs, time.process_time()

    @staticmethod
    def delta(before, after) -> dict[str, float]:
        roles: dict[str, float] = {}
        for pid, (role, cpu) in after[0].items():
            roles[role] = roles.get(role, 0.0) + cpu - before[0].get(pid, (role, 0.0))[1]
        roles["load generator (this process)"] = after[1] - before[1]
        return {role: round(value, 3) for role, value in roles.items()}


class RssSampler(threading.Thread):
    """Samples VmRSS (from /proc/<pid>/status) of a server's process tree every 0.2 s; keeps each process's max."""

    def __init__(self, root_pid: int):
        super().__init__(daemon=True)
        self.root_pid = root_pid
        self.max_kb: dict[int, int] = {}
        self.roles: dict[int, str] = {}
        self._stop_event = threading.Event()

    def sample(self) -> None:
        for pid, depth in process_tree(self.root_pid):
            kb = _status_kb(pid, "VmRSS")
            if kb is not None:
                self.max_kb[pid] = max(kb, self.max_kb.get(pid, 0))
                self.roles.setdefault(pid, _role(pid, depth, False))

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(0.2)

    def stop(self) -> dict[str, Any]:
        self._stop_event.set()
        self.join(timeout=5)
        by_role: dict[str, list[float]] = {}
        for pid, kb in self.max_kb.items():
            by_role.setdefault(self.roles[pid], []).append(round(kb / 1024, 1))
        return {"max_rss_mb_by_role": by_role,
                "total_max_rss_mb": round(sum(self.max_kb.values()) / 1024, 1)}


def start_gunicorn(tmp: Path) -> tuple[subprocess.Popen, int, Path]:
    port = free_port()
    env = {**os.environ, "ESSENTIA_PORT": str(port), "ESSENTIA_HOST": "127.0.0.1",
           "ESSENTIA_DB_PATH": str(tmp / "served.db"), "ESSENTIA_ALLOW_LOOPBACK_URLS": "1",
           "ESSENTIA_LOG_LEVEL": "WARNING"}
    env.pop("ESSENTIA_PRODUCTION", None)
    log_path = tmp / "gunicorn.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"], cwd=ROOT,
                                   env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    return process, port, log_path


def start_naive(tmp: Path) -> tuple[subprocess.Popen, int, Path]:
    port = free_port()
    log_path = tmp / "naive.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--naive-server", str(port)],
                                   cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    return process, port, log_path


def upload_request(body: bytes) -> tuple[str, str, bytes, dict]:
    return "POST", "/analyze_data", body, {"Content-Type": "audio/mp4"}


def url_request(url: str) -> tuple[str, str, bytes, dict]:
    body = json.dumps({"url": url, "title": "Benchmark Song", "artist": "Benchmark Artist"}).encode()
    return "POST", "/analyze", body, {"Content-Type": "application/json"}


_WRK_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def run_wrk(port: int, path: str, body: bytes | None, content_type: str | None, connections: int, duration: float,
            tmp: Path) -> dict[str, Any]:
    """The same measurement with wrk (C, event loop) when it is installed: a load generator that does not share
    Python's GIL, so the server, not the client, is what is measured. Percentiles from wrk --latency."""
    import re
    import shutil

    script = tmp / f"wrk-{port}.lua"
    if body is None:
        script.write_text('wrk.method = "GET"\n')
    else:
        body_path = tmp / f"wrk-body-{port}-{len(body)}"
        body_path.write_bytes(body)
        script.write_text(f'wrk.method = "POST"\nlocal f = io.open("{body_path}", "rb")\nwrk.body = f:read("*all")\n'
                          f'f:close()\nwrk.headers["Content-Type"] = "{content_type}"\n')
    command = [shutil.which("wrk") or "wrk", f"-t{min(2, connections)}", f"-c{connections}",
               f"-d{max(1, round(duration))}s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}{path}"]
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    wall = time.perf_counter() - started
    text = run.stdout

    def seconds(value: str, unit: str) -> float:
        return float(value) * _WRK_UNITS[unit]

    out: dict[str, Any] = {"generator": "wrk", "clients": connections, "wall_s": wall,
                           "command": " ".join(command[:-3] + ["<POST script>", command[-1]])}
    match = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if match:
        out["requests"] = int(match.group(1))
        out["wall_s"] = seconds(match.group(2), match.group(3))
    match = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["throughput_per_s"] = float(match.group(1)) if match else 0.0
    for q in ("50", "75", "90", "99"):
        match = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s|m)", text, re.MULTILINE)
        if match:
            out[f"p{q}_s"] = seconds(match.group(1), match.group(2))
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = int(match.group(1)) if match else 0
    match = re.search(r"Socket errors: (.*)", text)
    out["socket_errors"] = match.group(1).strip() if match else ""
    out["ok"] = out.get("requests", 0) - out["non_2xx"]
    if out["non_2xx"]:  # wrk's rate counts every response; report the successful ones only
        out["throughput_per_s"] = out["ok"] / out["wall_s"] if out["wall_s"] else 0.0
    return out


def measure_hits(name: str, port: int, request: tuple[str, str, bytes, dict], cfg: dict[str, Any],
                 meter: CpuMeter, tmp: Path) -> dict[str, Any]:
    """8 clients repeating one request for cfg["hit_s"] seconds (after an untimed warm-up), with CPU per role."""
    method, path, body, headers = request
    use_wrk = cfg["wrk"]
    if use_wrk:
        run_wrk(port, path, body, headers.get("Content-Type"), 8, cfg["hit_warm_s"], tmp)
    else:
        run_load(port, lambda i: request, 8, duration=cfg["hit_warm_s"])
    before = meter.snapshot()
    if use_wrk:
        result = run_wrk(port, path, body, headers.get("Content-Type"), 8, cfg["hit_s"], tmp)
    else:
        result = run_load(port, lambda i: request, 8, duration=cfg["hit_s"])
        result["generator"] = "python http.client threads (keep-alive)"
    result["cpu_s"] = CpuMeter.delta(before, meter.snapshot())
    server_role = "naive server" if name == "naive" else "gunicorn HTTP worker"
    if result.get("ok"):
        result["server_cpu_ms_per_request"] = 1000 * result["cpu_s"].get(server_role, 0.0) / result["ok"]
    return result


def measure_misses(name: str, port: int, meter: CpuMeter, clips: list[bytes], count: int,
                   sampler: RssSampler | None = None) -> dict[str, Any]:
    """4 clients posting `count` new clips (each request's bytes unique), after one untimed warm-up miss."""
    # Untimed warm-up: one miss, so neither server's first-request costs (imports, JIT) are counted.
    http_json(port, "POST", "/analyze_data", tagged(clips[0], f"{name}-warm"), {"Content-Type": "audio/mp4"},
              timeout=300)
    bodies = [tagged(clips[i % len(clips)], f"{name}-miss-{i}") for i in range(count)]
    if sampler is not None:
        sampler.start()
    before = meter.snapshot()
    result = run_load(port, lambda i: upload_request(bodies[i]), 4, total=count)
    result["cpu_s"] = CpuMeter.delta(before, meter.snapshot())
    result["generator"] = "python http.client threads (keep-alive)"
    if sampler is not None:
        result["rss"] = sampler.stop()
    if result["ok"]:
        cpu = result["cpu_s"]
        analysis_cpu = cpu.get("naive server" if name == "naive" else "analysis pool worker", 0.0)
        result["analysis_cpu_s_per_request"] = analysis_cpu / result["ok"]
        result["http_cpu_s_per_request"] = cpu.get("gunicorn HTTP worker", 0.0) / result["ok"]
    log(f"  {name} misses: {result['ok']}/{result['requests']} ok, {result['throughput_per_s']:.2f}/s, "
        f"p50 {result.get('p50_s', 0):.3f} s, p95 {result.get('p95_s', 0):.3f} s, CPU {result['cpu_s']}")
    return result


def burst_over_http(port: int, body: bytes, clients: int) -> dict[str, Any]:
    """`clients` connections post the same new clip at once; the server's /stats says how many analyses ran
    (single flight within each HTTP process, claims across them)."""
    barrier = threading.Barrier(clients)
    statuses: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        status, _ = http_json(port, "POST", "/analyze_data", body, {"Content-Type": "audio/mp4"}, timeout=300)
        with lock:
            statuses.append(status)

    before = http_json(port, "GET", "/stats")[1]
    threads = [threading.Thread(target=one) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = http_json(port, "GET", "/stats")[1]
    return {"clients": clients, "answered_200": statuses.count(200),
            "analyses_run": after["cache_misses"] - before["cache_misses"],
            "served_as_hits": after["cache_hits"] - before["cache_hits"]}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput (its latencies go with it), plus every run's throughput."""
    ordered = sorted(runs, key=lambda run: run["throughput_per_s"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["throughput_runs_per_s"] = [run["throughput_per_s"] for run in runs]
    chosen["p99_runs_s"] = [run.get("p99_s") for run in runs]
    chosen["cpu_ms_per_request_runs"] = [run.get("server_cpu_ms_per_request") for run in runs]
    chosen["rounds"] = len(runs)
    return chosen


def bench_load(tmp: Path, clips: list[bytes], preview: bytes, naive_proc, naive_port: int, naive_log: Path,
               quick: bool, use_wrk: bool) -> dict[str, Any]:
    """Misses on each server in turn, then hit rounds alternating between the two servers (both up, the idle one
    using no CPU), so that the shared machine's ups and downs hit both alike; medians of the rounds."""
    cfg = {"misses": 8 if quick else 60, "naive_misses": 1 if quick else 8, "hit_s": 1.0 if quick else 8.0,
           "hit_warm_s": 0.3 if quick else 2.0, "hit_rounds": 1 if quick else 3, "wrk": use_wrk}
    # The URL-hit phase's preview is the 10-s clip: a hit costs the same whatever the song's length, and the one
    # analysis that fills each server's cache is then short (the naive one takes seconds).
    clip_server = ClipServer({"preview-1.m4a": preview})
    url = clip_server.url("preview-1.m4a")
    gunicorn = None
    from backend.config import Settings
    served = Settings.from_env()
    out: dict[str, Any] = {"config": cfg, "server": {"http_processes": served.http_processes,
                                                     "threads_each": served.http_threads,
                                                     "analysis_processes": served.workers},
                           "clip": {"seconds": CLIP_SECONDS, "rate": CLIP_RATE, "channels": 2,
                                                   "codec": "AAC in .m4a (PyAV)", "distinct_songs": len(clips),
                                                   "bytes": len(clips[0])}}
    ours: dict[str, Any] = {}
    naive: dict[str, Any] = {}
    try:
        gunicorn, port, gunicorn_log = start_gunicorn(tmp)
        out["gunicorn_start_s"] = wait_for_health(port, gunicorn, 180, gunicorn_log)
        log(f"gunicorn up on 127.0.0.1:{port} in {out['gunicorn_start_s']:.1f} s (pool warmed)")
        out["naive_start_s"] = wait_for_health(naive_port, naive_proc, 300, naive_log)
        ours_meter, naive_meter = CpuMeter(gunicorn.pid), CpuMeter(naive_proc.pid, single=True)
        ours["stats_before"] = http_json(port, "GET", "/stats")[1]

        ours["miss"] = measure_misses("ours", port, ours_meter, clips, cfg["misses"], RssSampler(gunicorn.pid))
        ours["rss_during_misses"] = ours["miss"].pop("rss")
        naive["miss"] = measure_misses("naive", naive_port, naive_meter, clips, cfg["naive_misses"])
        ours["single_flight_http"] = burst_over_http(port, tagged(clips[0], "ours-flight"), 32)
        log(f"  32 concurrent uploads of one new clip over HTTP: {ours['single_flight_http']}")

        # Cache hits by URL (what the phone app does: it has the store's preview URL, title and artist). The first
        # request of each server fills its cache.
        for server_port in (port, naive_port):
            http_json(server_port, "POST", "/analyze", url_request(url)[2], {"Content-Type": "application/json"},
                      timeout=300)
        # Cache hits by upload: the 30-s clip sent again (ours hashes it and finds it; the naive server has no
        # upload cache and would run exactly its miss path again, so its misses stand for it).
        body = tagged(clips[0], "ours-miss-0")
        health = ("GET", "/health", None, {})
        runs: dict[str, list] = {"ours_url": [], "naive_url": [], "ours_upload": [], "ours_health": [],
                                 "naive_health": []}
        for round_number in range(cfg["hit_rounds"]):
            for key, name, server_port, meter, request in (
                    ("ours_url", "ours", port, ours_meter, url_request(url)),
                    ("naive_url", "naive", naive_port, naive_meter, url_request(url)),
                    ("ours_upload", "ours", port, ours_meter, upload_request(body)),
                    # The floor: the cheapest request each stack serves (no cache, no database), to tell the
                    # framework's per-request cost from the application's.
                    ("ours_health", "ours", port, ours_meter, health),
                    ("naive_health", "naive", naive_port, naive_meter, health)):
                result = measure_hits(name, server_port, request, cfg, meter, tmp)
                runs[key].append(result)
                log(f"  round {round_number + 1} {key} hits ({result['generator']}): "
                    f"{result['throughput_per_s']:.0f}/s, p50 {result.get('p50_s', 0) * 1000:.1f} ms, "
                    f"p99 {result.get('p99_s', 0) * 1000:.1f} ms, server CPU "
                    f"{result.get('server_cpu_ms_per_request', 0):.2f} ms/request")
        ours["hit_url"] = median_run(runs["ours_url"])
        naive["hit_url"] = median_run(runs["naive_url"])
        ours["hit_upload"] = median_run(runs["ours_upload"])
        naive["hit_upload"] = {**naive["miss"], "same_as_miss": True}
        ours["health"] = median_run(runs["ours_health"])
        naive["health"] = median_run(runs["naive_health"])
        ours["stats_after"] = http_json(port, "GET", "/stats")[1]
    finally:
        stop_process(gunicorn)
        stop_process(naive_proc)
        clip_server.close()
    out["ours"], out["naive"] = ours, naive
    return out


# -- the naive server (run in its own process by section 6) -----------------------------------------------------


def naive_server_main(port: int) -> None:
    """The old way: a Flask dev server, one request at a time; every upload is written to a temp file, decoded and
    analyzed with librosa (HPSS, beat_track, chroma_cqt argmax); /analyze caches by title+artist in a dict."""
    import urllib.request

    import av
    import librosa
    import numpy as np
    from flask import Flask, jsonify, request

    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]

    def decode(path: str) -> np.ndarray:
        # librosa.load cannot open AAC here (soundfile has no AAC; audioread needs a system ffmpeg), so the naive
        # server decodes with PyAV to mono float32 at 22050 Hz: the cheapest decoder it could use.
        chunks = []
        with av.open(path) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=NAIVE_SR)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        return np.concatenate(chunks).astype(np.float32)

    def analyze(data: bytes) -> dict:
        started = time.perf_counter()
        with tempfile.NamedTemporaryFile(suffix=".m4a") as f:
            f.write(data)
            f.flush()
            y = decode(f.name)
        harmonic, percussive = librosa.effects.hpss(y)
        tempo, _ = librosa.beat.beat_track(y=percussive, sr=NAIVE_SR)
        chroma = librosa.feature.chroma_cqt(y=harmonic, sr=NAIVE_SR).mean(axis=1)
        tonic = int(np.argmax(chroma))
        mode = "Minor" if chroma[(tonic + 3) % 12] > chroma[(tonic + 4) % 12] else "Major"
        return {"bpm": float(np.atleast_1d(tempo)[0]), "key": f"{names[tonic]} {mode}",
                "analysis_duration": time.perf_counter() - started}

    cache: dict[tuple[str, str], dict] = {}
    app = Flask("naive")

    @app.get("/health")
    def health():
        return jsonify(status="healthy")

    @app.post("/analyze_data")
    def analyze_data():
        return jsonify({**analyze(request.get_data()), "cached": False})

    @app.post("/analyze")
    def analyze_url():
        body = request.get_json()
        key = (body.get("title") or "Unknown", body.get("artist") or "Unknown")
        if key in cache:
            return jsonify({**cache[key], "cached": True})
        with urllib.request.urlopen(body["url"], timeout=30) as response:
            result = analyze(response.read())
        cache[key] = result
        return jsonify({**result, "cached": False})

    # Warm librosa/numba up before listening (its first call compiles for ~10 s); not part of any timing.
    sys.path.insert(0, str(ROOT))
    from tests import synth
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        f.write(synth.wav_bytes(synth.song(120, "A", "minor", seconds=4.0, sr=NAIVE_SR), NAIVE_SR))
        f.flush()
        y = decode(f.name)
    librosa.effects.hpss(y)
    librosa.beat.beat_track(y=y, sr=NAIVE_SR)
    librosa.feature.chroma_cqt(y=y, sr=NAIVE_SR)
    app.run(host="127.0.0.1", port=port, threaded=False, debug=False, use_reloader=False)


# -- profile of the cache-hit path (optional, --profile-hits) ----------------------------------------------------


def profile_hits(count: int) -> None:
    """cProfile of `count` URL cache hits through the real app in this process (Flask test client): where a hit's
    CPU goes, by project function (cumulative ms per request, profiler overhead included)."""
    import cProfile
    import pstats

    from backend.app import create_app
    from backend.config import Settings

    clip = make_clip(100, "B", "minor", 10.0)
    server = ClipServer({"p.m4a": clip})
    with tempfile.TemporaryDirectory(prefix="essentia-profile-") as tmp:
        app = create_app(Settings(db_path=str(Path(tmp) / "p.db"), workers=0, allow_loopback_urls=True,
                                  log_level="WARNING"))
        client = app.test_client()
        body = {"url": server.url("p.m4a"), "title": "T", "artist": "A"}
        client.post("/analyze", json=body)
        client.post("/analyze", json=body)
        started = time.perf_counter()
        for _ in range(count):
            client.post("/analyze", json=body)
        plain_ms = (time.perf_counter() - started) / count * 1000
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(count):
            client.post("/analyze", json=body)
        profiler.disable()
        app.extensions["essentia"].counters.flush()  # while the database still exists (atexit would be too late)
        app.extensions["essentia"].executor.shutdown()
        app.extensions["essentia"].store.close()
    server.close()
    stats = pstats.Stats(profiler).stats
    print(f"{count} URL hits through the Flask test client: {plain_ms:.3f} ms per request without the profiler.")
    print("cumulative ms per request under cProfile, project functions and json (profiler overhead included):")
    rows = [(v[3] / count * 1000, f"{k[0].replace(str(ROOT) + '/', '')}:{k[1]} {k[2]}") for k, v in stats.items()
            if str(ROOT / "backend") in k[0] or (k[2] in ("loads", "dumps") and "json/__init__" in k[0])]
    for ms, name in sorted(rows, reverse=True)[:25]:
        print(f"  {ms:7.3f}  {name}")


# -- report -----------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "python": platform.python_version(),
            "platform": platform.platform(), "commit": commit, "loadavg_at_start": load,
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def summary_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(what, ours, naive, ratio, target, met) for the printed table."""
    rows = []
    if "keys" in r:
        k = r["keys"]
        rows.append(("1 API-key validation vs pooled query", fmt_time(k["ours_per_lookup_s"]),
                     fmt_time(k["naive_per_lookup_s"]), f"{k['ratio']:.0f}x", ">= 50x",
                     "yes" if k["ratio"] >= 50 else "no"))
        rows.append(("1 ... vs a new connection per lookup", fmt_time(k["ours_per_lookup_s"]),
                     fmt_time(k["naive_unpooled_per_lookup_s"]), f"{k['ratio_vs_unpooled']:.0f}x", ">= 50x",
                     "yes" if k["ratio_vs_unpooled"] >= 50 else "no"))
    if "quota" in r:
        q = r["quota"]
        for size in q["history_sizes"]:
            s = q["per_size"][str(size)]
            big = size == q["history_sizes"][-1]
            rows.append((f"2 daily quota, {size:,} usage rows", fmt_time(s["ours_per_check_s"]),
                         fmt_time(s["naive_per_check_s"]), f"{s['ratio']:.0f}x", ">= 1000x" if big else "",
                         ("yes" if s["ratio"] >= 1000 else "no") if big else ""))
        rows.append(("2 quota time growth, 10x history", f"{q['ours_growth']:.2f}x", f"{q['naive_growth']:.2f}x",
                     "", "flat (< 2x)", "yes" if q["ours_growth"] < 2 else "no"))
    if "pool" in r:
        p = r["pool"]
        rows.append(("3 connection pool, per SELECT", fmt_time(p["ours_per_op_s"]), fmt_time(p["naive_per_op_s"]),
                     f"{p['ratio']:.1f}x", ">= 10x", "yes" if p["ratio"] >= 10 else "no"))
    if "ratelimit" in r:
        rl = r["ratelimit"]
        rows.append((f"4 rate limiter, {rl['distinct_clients']:,} clients, per call",
                     fmt_time(rl["ours_per_call_s"]), fmt_time(rl["naive_per_call_s"]),
                     f"{rl['time_ratio']:.1f}x", "O(1) amortized",
                     "yes" if rl["ours_per_call_s"] < 2 * rl["ours_per_call_s_at_tenth"] else "no"))
        rows.append(("4 rate limiter, tracemalloc peak", f"{rl['ours_peak_bytes'] / 2**20:.1f} MiB",
                     f"{rl['naive_peak_bytes'] / 2**20:.1f} MiB", f"{rl['memory_ratio']:.1f}x", "bounded",
                     ""))
        rows.append(("4 rate limiter, entries held (len)", f"{rl['ours_len']:,} (bound {rl['max_clients_bound']:,})",
                     f"{rl['naive_len']:,}", "", "bounded",
                     "yes" if rl["ours_len"] <= rl["max_clients_bound"] else "no"))
        rows.append(("4 rate limiter, len with windows expiring", f"{rl['simulated_len']:,} "
                     f"(expected ~{rl['simulated_expected_len']:,})", "", "", "prunes itself",
                     "yes" if rl["simulated_len"] <= 1.1 * rl["simulated_expected_len"] + 1 else "no"))
        if "shared_per_call_s" in rl:
            rows.append((f"4 shared limiter (gunicorn), {rl['distinct_clients']:,} clients, per call",
                         fmt_time(rl["shared_per_call_s"]), fmt_time(rl["naive_per_call_s"]),
                         f"{ratio(rl['naive_per_call_s'], rl['shared_per_call_s']):.1f}x", "O(1) amortized",
                         "yes" if rl["shared_per_call_s"] < 2 * rl["shared_per_call_s_at_tenth"] else "no"))
            rows.append(("4 shared limiter, memory (mapped table) / entries held",
                         f"{rl['shared_table_bytes'] / 2**20:.1f} MiB / {rl['shared_len']:,} "
                         f"(bound {rl['shared_slots']:,})", f"{rl['naive_peak_bytes'] / 2**20:.1f} MiB", "",
                         "bounded", "yes" if rl["shared_len"] <= rl["shared_slots"] else "no"))
    if "single_flight" in r:
        sf = r["single_flight"]
        rows.append((f"5 single flight, {sf['concurrent_requests']} concurrent misses", f"{sf['ours_analyses']} analysis",
                     f"{sf['naive_analyses']} analyses", "", "1 analysis",
                     "yes" if sf["ours_analyses"] == 1 else "no"))
    if "load" in r and "ours" in r["load"] and "naive" in r["load"]:
        o, n = r["load"]["ours"], r["load"]["naive"]
        m, nm = o["miss"], n["miss"]
        rows.append(("6a cache-miss analyses/s, 4 clients, 30-s AAC", f"{m['throughput_per_s']:.2f}/s",
                     f"{nm['throughput_per_s']:.2f}/s", f"{ratio(m['throughput_per_s'], nm['throughput_per_s']):.1f}x",
                     ">= 15/s", "yes" if m["throughput_per_s"] >= 15 else "no"))
        rows.append(("6a cache-miss p50 / p95", f"{fmt_time(m['p50_s'])} / {fmt_time(m['p95_s'])}",
                     f"{fmt_time(nm['p50_s'])} / {fmt_time(nm['p95_s'])}", "", "p95 <= 0.5 s",
                     "yes" if m["p95_s"] <= 0.5 else "no"))
        h, nh = o["hit_url"], n["hit_url"]
        rows.append((f"6b cache-hit req/s, 8 clients ({'wrk' if h['generator'] == 'wrk' else 'Python'}, "
                     f"median of {h['rounds']}), POST /analyze (URL)", f"{h['throughput_per_s']:.0f}/s",
                     f"{nh['throughput_per_s']:.0f}/s", f"{ratio(h['throughput_per_s'], nh['throughput_per_s']):.1f}x",
                     ">= 1500/s", "yes" if h["throughput_per_s"] >= 1500 else "no"))
        rows.append(("6b cache-hit p50 / p99 (URL)", f"{fmt_time(h['p50_s'])} / {fmt_time(h['p99_s'])}",
                     f"{fmt_time(nh['p50_s'])} / {fmt_time(nh['p99_s'])}", "", "p99 <= 20 ms",
                     "yes" if h["p99_s"] <= 0.020 else "no"))
        rows.append(("6 CPU per miss: analysis (pool) / HTTP worker",
                     f"{m['analysis_cpu_s_per_request'] * 1000:.0f} ms / {m['http_cpu_s_per_request'] * 1000:.1f} ms",
                     f"{nm['analysis_cpu_s_per_request'] * 1000:.0f} ms (one process)",
                     f"{ratio(nm['analysis_cpu_s_per_request'], m['analysis_cpu_s_per_request']):.1f}x", "", ""))
        rows.append(("6 CPU per URL hit, server process", f"{h['server_cpu_ms_per_request']:.2f} ms",
                     f"{nh['server_cpu_ms_per_request']:.2f} ms", "", "", ""))
        if "health" in o and "health" in n:
            oh_, nh_ = o["health"], n["health"]
            rows.append(("6 floor: GET /health req/s (CPU per request)",
                         f"{oh_['throughput_per_s']:.0f}/s ({oh_.get('server_cpu_ms_per_request', 0):.2f} ms)",
                         f"{nh_['throughput_per_s']:.0f}/s ({nh_.get('server_cpu_ms_per_request', 0):.2f} ms)",
                         f"{ratio(oh_['throughput_per_s'], nh_['throughput_per_s']):.1f}x", "", ""))
        u, nu = o["hit_upload"], n["hit_upload"]
        rows.append(("6b' repeat upload, 8 clients, POST /analyze_data", f"{u['throughput_per_s']:.0f}/s",
                     f"{nu['throughput_per_s']:.2f}/s", f"{ratio(u['throughput_per_s'], nu['throughput_per_s']):.0f}x",
                     "", ""))
        if "single_flight_http" in o:
            sf = o["single_flight_http"]
            rows.append((f"6c {sf['clients']} concurrent misses, same clip, via gunicorn",
                         f"{sf['analyses_run']} analysis", "", "", "1 analysis",
                         "yes" if sf["analyses_run"] == 1 and sf["answered_200"] == sf["clients"] else "no"))
        rows.append(("6b' repeat upload p50 / p99", f"{fmt_time(u['p50_s'])} / {fmt_time(u['p99_s'])}",
                     f"{fmt_time(nu['p50_s'])} / {fmt_time(nu['p99_s'])}", "", "", ""))
    return rows


def print_table(rows: list[tuple[str, ...]]) -> None:
    header = ("what", "ours", "naive", "ratio", "target", "met")
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def catalog_section(quick: bool) -> dict[str, Any]:
    """Costs that grow with the catalog (benchmarks/perf_catalog.py): 10k/100k/1M songs on both stores."""
    from benchmarks.perf_catalog import SIZES, run
    return run(SIZES[:2] if quick else SIZES, log=log)


def hosts_section(tmp: Path, quick: bool) -> dict[str, Any]:
    """Several hosts (benchmarks/perf_hosts.py): one embedded host vs two on PostgreSQL + Redis."""
    from benchmarks.perf_hosts import several_hosts
    return several_hosts(tmp, quick)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for CI (under a minute on 2 cores)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--only", default="1,2,3,4,5,6",
                        help="comma-separated sections to run (default: 1-6; also catalog and hosts, which need "
                             "PostgreSQL, and Redis for hosts)")
    parser.add_argument("--no-wrk", action="store_true",
                        help="measure cache hits with the built-in Python load generator even if wrk is installed")
    parser.add_argument("--profile-hits", type=int, metavar="N",
                        help="only profile N cache hits in-process (cProfile) and print where the time goes")
    parser.add_argument("--naive-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.naive_server:
        naive_server_main(args.naive_server)
        return 0
    if args.profile_hits:
        profile_hits(args.profile_hits)
        return 0

    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    import shutil
    use_wrk = not args.no_wrk and shutil.which("wrk") is not None
    results: dict[str, Any] = {"mode": "quick" if args.quick else "full",
                               "command": " ".join([Path(sys.executable).name, *sys.argv]),
                               "machine": machine(), "seconds": {}}
    log(f"{results['mode']} run on {results['machine']['nproc']} x {results['machine']['cpu_model']}, "
        f"Python {results['machine']['python']}, commit {results['machine']['commit']}, "
        f"load average {results['machine']['loadavg_at_start']}")
    naive_proc = None
    started_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="essentia-perf-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            clips: list[bytes] = []
            sf_clip = b""
            naive_port, naive_log = 0, tmp / "naive.log"
            pool = prepared = None
            if "5" in sections or "6" in sections:
                # Preparation, nothing timed: the naive server imports librosa and JIT-compiles its pipeline while
                # the clips are synthesized in another process. A full run waits for both before measuring; a
                # quick run measures sections 1-4 meanwhile (their ratios compare like with like, but expect
                # noisier absolute figures).
                prep_started = time.perf_counter()
                if "6" in sections:
                    naive_proc, naive_port, naive_log = start_naive(tmp)
                from concurrent.futures import ProcessPoolExecutor
                songs = SONGS[:1] if args.quick else SONGS
                pool = ProcessPoolExecutor(max_workers=1 if args.quick else min(2, os.cpu_count() or 1))
                prepared = [pool.submit(make_clip, *song) for song in songs]
                prepared.append(pool.submit(make_clip, 100, "B", "minor", 10.0))  # section 5's clip

            def finish_preparation(*, naive_too: bool) -> None:
                nonlocal clips, sf_clip, pool
                if pool is not None:
                    done = [future.result() for future in prepared]
                    clips, sf_clip = done[:-1], done[-1]
                    pool.shutdown()
                    pool = None
                    results["seconds"]["clip_synthesis"] = time.perf_counter() - prep_started
                    log(f"synthesized {len(clips)} distinct 30-s AAC clips ({len(clips[0]):,} bytes each) and a "
                        f"10-s clip in {results['seconds']['clip_synthesis']:.1f} s")
                if naive_too and naive_proc is not None and "naive_ready" not in results["seconds"]:
                    wait_for_health(naive_port, naive_proc, 300, naive_log)
                    results["seconds"]["naive_ready"] = time.perf_counter() - prep_started
                    log(f"naive server warmed up (librosa JIT) {results['seconds']['naive_ready']:.1f} s after start")

            if not args.quick:
                finish_preparation(naive_too=True)
            else:
                results["quick_overlap_note"] = ("sections 1-5 ran while the naive server warmed up (and 1-4 while "
                                                 "the clips were synthesized) in the background; section 6 did not")
            steps = [("1", "keys", lambda: bench_keys(tmp, args.quick)),
                     ("2", "quota", lambda: bench_quota(tmp, args.quick)),
                     ("3", "pool", lambda: bench_pool(tmp, args.quick)),
                     ("4", "ratelimit", lambda: bench_ratelimit(tmp, args.quick)),
                     ("5", "single_flight", lambda: bench_single_flight(tmp, sf_clip, args.quick)),
                     ("6", "load", lambda: bench_load(tmp, clips, sf_clip, naive_proc, naive_port, naive_log, args.quick,
                                                     use_wrk)),
                     # Slow (grows a catalog to 1,000,000 songs on each store): only when asked, --only catalog.
                     ("catalog", "catalog", lambda: catalog_section(args.quick)),
                     # Needs PostgreSQL and Redis (ESSENTIA_TEST_POSTGRES_URL, ESSENTIA_TEST_REDIS_URL): --only hosts
                     ("hosts", "several_hosts", lambda: hosts_section(tmp, args.quick))]
            for number, name, step in steps:
                if number not in sections:
                    continue
                if number in ("5", "6"):
                    finish_preparation(naive_too=number == "6")
                log(f"section {number}: {name}")
                started = time.perf_counter()
                results[name] = step()
                results["seconds"][name] = time.perf_counter() - started
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            stop_process(naive_proc)
    results["seconds"]["total"] = time.perf_counter() - started_all
    try:
        results["machine"]["loadavg_at_end"] = os.getloadavg()
    except OSError:
        pass

    print()
    print(f"EssentiaServer performance ({results['mode']} run, {results['machine']['nproc']} cores, "
          f"{results['machine']['cpu_model']}, Python {results['machine']['python']}, "
          f"{results['seconds']['total']:.0f} s)")
    rows = summary_rows(results)
    if rows:
        print_table(rows)
    if args.quick:
        print("(quick mode: smaller sizes: the quota history is 100,000 rows, not 1,000,000; the rate limiter's "
              "bound is 10,000 against 30,000 clients, not 100,000 against 1,000,000; one naive miss; "
              + results.get("quick_overlap_note", "") + ")")
    if "load" in results and "ours" in results["load"]:
        rss = results["load"]["ours"].get("rss_during_misses")
        if rss:
            print("max RSS while loaded with misses (MB): " +
                  "; ".join(f"{role}: {', '.join(map(str, v))}" for role, v in rss["max_rss_mb_by_role"].items()))
    if "catalog" in results:
        from benchmarks.perf_catalog import report
        print(report(results["catalog"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
