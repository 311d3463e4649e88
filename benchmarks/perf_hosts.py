"""Several hosts: what the shared services (PostgreSQL for the store, Redis for the shared state) cost per request.

    .venv/bin/python -m benchmarks.perf_hosts --limiter      # the rate limiter on Redis: our Lua vs `limits`
    .venv/bin/python -m benchmarks.perf_hosts --hosts        # one embedded host vs two hosts on the services
    .venv/bin/python -m benchmarks.perf_hosts --breakdown    # where a keyed hit's time goes, step by step
    (performance_test.py runs the same as its "several hosts" section)

The two-host run needs PostgreSQL and Redis: ESSENTIA_TEST_POSTGRES_URL (a server URL; a database is made for
the run and dropped after) and ESSENTIA_TEST_REDIS_URL, by default the local ones on their standard ports.

The `limits` library (what Flask-Limiter builds on) is measured only when it is importable (`pip install limits`);
the project does not depend on it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import redis

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _microseconds_per_call(call: Callable[[int], Any], calls: int, repeats: int = 5) -> dict[str, float]:
    """Median and best of `repeats` runs of `calls` calls, in µs per call."""
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(calls):
            call(i)
        runs.append((time.perf_counter() - started) / calls * 1e6)
    return {"median_us": round(statistics.median(runs), 1), "best_us": round(min(runs), 1)}


def _delete_prefix(client, prefix: str) -> None:
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)


def bench_limiter(redis_url: str = DEFAULT_REDIS_URL, *, calls: int = 5000, clients: int = 100) -> dict[str, Any]:
    """µs per rate-limit decision with everything the 429 headers need (allowed, remaining, reset), on Redis:
    RedisRateLimiter (one EVALSHA) vs the `limits` library's fixed window (hit, then get_window_stats for the
    headers) and its moving window, each over `clients` rotating client names with a limit never reached."""
    from backend.runtime.redis_state import RedisRateLimiter, connect

    prefix = f"essentia-bench:{uuid.uuid4().hex[:8]}:"
    client = connect(redis_url)
    names = [f"key:{n}" for n in range(clients)]
    results: dict[str, Any] = {"calls": calls, "clients": clients}
    try:
        ours = RedisRateLimiter(10**9, 60.0, client=client, prefix=prefix)
        ours.hit("warm-up")
        results["lua_one_round_trip"] = _microseconds_per_call(lambda i: ours.hit(names[i % clients]), calls)
        try:
            from limits import parse
            from limits.storage import storage_from_string
            from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
        except ImportError:
            results["limits"] = "not installed (pip install limits to compare)"
            return results
        item = parse("1000000000/minute")
        fixed = FixedWindowRateLimiter(storage_from_string(redis_url, key_prefix=prefix + "fixed"))
        moving = MovingWindowRateLimiter(storage_from_string(redis_url, key_prefix=prefix + "moving"))

        def limits_with_headers(strategy):
            def call(i: int):
                allowed = strategy.hit(item, names[i % clients])
                return allowed, strategy.get_window_stats(item, names[i % clients])
            return call

        fixed.hit(item, "warm-up")
        results["limits_fixed_hit_only"] = _microseconds_per_call(lambda i: fixed.hit(item, names[i % clients]),
                                                                  calls)
        results["limits_fixed_hit_and_stats"] = _microseconds_per_call(limits_with_headers(fixed), calls)
        results["limits_moving_hit_and_stats"] = _microseconds_per_call(limits_with_headers(moving), calls // 5)
    finally:
        _delete_prefix(client, prefix)
        client.close()
    return results


def _command_stats(client) -> dict[str, tuple[int, int]]:
    """Redis's own count of calls and microseconds spent, per command (INFO commandstats)."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): (value["calls"], value["usec"]) for name, value in stats.items()}


def bench_redis_roles(tmp: Path, redis_url: str = DEFAULT_REDIS_URL, *, calls: int = 3000) -> dict[str, Any]:
    """Per role operation: µs per call as a host sees it (round trip included) and Redis's own CPU µs per call
    (INFO commandstats; other clients of the same Redis add to it, so run this on a quiet one), plus how fast a
    changed key reaches another process's key cache."""
    from backend.runtime.redis_state import (RedisAdmission, RedisClaims, RedisEvents, RedisQuota, RedisRateLimiter,
                                             RedisTally, connect)
    from backend.storage.sqlite import SQLiteStore
    from backend.web.auth import StoreQuotaRecords

    prefix = f"essentia-bench:{uuid.uuid4().hex[:8]}:"
    client = connect(redis_url)
    store = SQLiteStore(str(tmp / "roles.db"), 1)
    store.migrate()
    with store.connection(write=True) as conn:  # active keys without a daily limit, for the admission
        key_ids = [store.insert_key(conn, name=f"k{n}", email=None, key_hash=f"{n:064x}", key_prefix="ess_x",
                                    is_admin=False, daily_limit=0, created_at="2026-01-01T00:00:00Z")
                   for n in range(100)]
    limiter = RedisRateLimiter(10**9, 60.0, client=client, prefix=prefix)
    quota = RedisQuota(client=client, prefix=prefix, flush_seconds=3600, records=StoreQuotaRecords(store))
    admission = RedisAdmission(limiter, quota, client=client)
    tally = RedisTally(client=client, prefix=prefix, flush_seconds=3600)  # as served: sent in batches
    claims = RedisClaims(client=client, prefix=prefix, events=RedisEvents(client=client, prefix=prefix))
    day = time.strftime("%Y-%m-%d", time.gmtime())

    def claim_and_release(i: int) -> None:
        claims.try_claim(f"sha256:{i}", 60.0)
        claims.release(f"sha256:{i}")

    operations = {
        "rate_limit_hit": (lambda i: limiter.hit(f"key:{i % 100}"), ["evalsha"]),
        "quota_consume": (lambda i: quota.count(i % 100, day, 0), ["evalsha"]),
        "admission_rate_limit_and_quota": (lambda i: admission.admit(f"key:{i % 100}", key_ids[i % 100]),
                                           ["evalsha"]),
        "tally_add": (lambda i: tally.add("hits"), ["incrby"]),
        "claim_and_release": (claim_and_release, ["set", "evalsha"]),
    }
    out: dict[str, Any] = {"calls": calls}
    try:
        for name, (operation, commands) in operations.items():
            operation(-1)  # loads the script
            before = _command_stats(client)
            timing = _microseconds_per_call(operation, calls, repeats=1)
            after = _command_stats(client)
            server_us = sum(after.get(c, (0, 0))[1] - before.get(c, (0, 0))[1] for c in commands)
            out[name] = {"client_us": timing["median_us"], "redis_cpu_us": round(server_us / calls, 2)}
        out["key_invalidation_ms"] = _key_invalidation_latency(redis_url, prefix)
    finally:
        _delete_prefix(client, prefix)
        client.close()
    return out


def _key_invalidation_latency(redis_url: str, prefix: str, messages: int = 50) -> dict[str, float]:
    """From `announce` on one client to the handler running in another process's subscriber, in ms."""
    from backend.runtime.redis_state import RedisEvents, RedisKeyInvalidation, connect

    arrived: dict[int, float] = {}
    done = threading.Event()

    def forget_id(key_id: int) -> None:
        arrived[key_id] = time.perf_counter()
        if len(arrived) == messages:
            done.set()

    RedisKeyInvalidation(RedisEvents(client=connect(redis_url), prefix=prefix)).listen(forget_id, lambda: None)
    sender = RedisKeyInvalidation(RedisEvents(client=connect(redis_url), prefix=prefix))
    sent = {}
    for key_id in range(messages):
        sent[key_id] = time.perf_counter()
        sender.announce([key_id])
        time.sleep(0.005)
    done.wait(5.0)
    delays = sorted(1000 * (arrived[k] - sent[k]) for k in arrived)
    return {"p50": round(statistics.median(delays), 3), "max": round(max(delays), 3), "received": len(delays)}


# -- where a keyed hit's time goes ------------------------------------------------------------------------------

# The steps of a keyed hit, as (label, module or object path, attribute): each is wrapped by a timer in-process.
_HIT_STEPS = [
    ("key check", "key_validator", "validate"),
    ("admission (rate limit + quota)", "admission", "admit"),
    ("rate limit", "rate_limiter", "hit"),
    ("quota", "quota", "consume"),
    ("lookup (store)", "analysis", "_lookup"),
    ("tally (hit count)", "counters", "count_hit"),
    ("usage record", "counters", "record_usage"),
]


def _wrap_timer(owner: Any, attribute: str, spent: list[float]) -> None:
    """Replace owner.attribute by a wrapper that appends each call's seconds to `spent`."""
    inner = getattr(owner, attribute)

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    setattr(owner, attribute, timed)


def bench_breakdown(tmp: Path, *, requests: int = 2000, redis_url: str = DEFAULT_REDIS_URL,
                    postgres_url: str = DEFAULT_POSTGRES_URL) -> dict[str, Any]:
    """One process (Flask's test client, one request at a time, no network between client and app), production
    mode with a key, a rate limit and a daily quota: µs per keyed upload hit in each step of the guard and the
    service, on the embedded setup (SQLite, in-memory roles) and on the services (PostgreSQL + Redis). Medians
    per step; 'whole request' is the test client's round trip, so what is left is Flask, hooks and the answer."""
    from backend.app import create_app
    from backend.config import Settings
    from benchmarks.perf_common import make_clip

    clip = make_clip(120, "A", "minor", seconds=6.0)
    database_url = _make_database(postgres_url, tmp)
    prefix = f"essentia-bench:{uuid.uuid4().hex[:8]}:"
    base = Settings(db_path=str(tmp / "breakdown.db"), workers=0, production=True, rate_limit=10**6,
                    stats_flush_seconds=2.0, log_level="WARNING")
    setups = {"embedded": base,
              "postgres_redis": base.replace(database_url=database_url, redis_url=redis_url, redis_prefix=prefix)}
    out: dict[str, Any] = {"requests": requests}
    try:
        for name, settings in setups.items():
            app = create_app(settings)
            services = app.extensions["essentia"]
            runner = app.test_cli_runner()
            created = runner.invoke(args=["keys", "create", "bench", "--daily-limit", "0"])
            key = next(line for line in created.output.splitlines() if line.startswith("ess_"))
            client = app.test_client()
            headers = {"X-API-Key": key, "Content-Type": "audio/mp4"}
            first = client.post("/analyze_data", data=clip, headers=headers)
            assert first.status_code == 200, first.get_data()[:300]
            for _ in range(50):  # warm-up: caches, connections, scripts
                client.post("/analyze_data", data=clip, headers=headers)
            spent: dict[str, list[float]] = {}
            for label, owner_name, attribute in _HIT_STEPS:
                owner = getattr(services, owner_name, None)
                if owner is not None and hasattr(owner, attribute):
                    spent[label] = []
                    _wrap_timer(owner, attribute, spent[label])
            whole = []
            for _ in range(requests):
                started = time.perf_counter()
                response = client.post("/analyze_data", data=clip, headers=headers)
                whole.append(time.perf_counter() - started)
                assert response.status_code == 200
            steps = {label: round(1e6 * statistics.median(times), 1) for label, times in spent.items() if times}
            steps["whole request"] = round(1e6 * statistics.median(whole), 1)
            out[name] = steps
            services.quota.flush()
            services.counters.flush()
            services.executor.shutdown()
            if services.key_changes is not None:
                services.key_changes.close()
            services.store.close()
            log(f"{name}: {steps}")
    finally:
        _drop_database(postgres_url, database_url)
        client = redis.Redis.from_url(redis_url)
        _delete_prefix(client, prefix)
        client.close()
    return out


def _host_env(tmp: Path, name: str, port: int, env: dict[str, str]) -> dict[str, str]:
    folder = tmp / name
    folder.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "ESSENTIA_PORT": str(port), "ESSENTIA_HOST": "127.0.0.1",
            "ESSENTIA_DB_PATH": str(folder / "served.db"), "ESSENTIA_ALLOW_LOOPBACK_URLS": "1",
            "ESSENTIA_LOG_LEVEL": "WARNING", **env}


def _start_host(tmp: Path, name: str, env: dict[str, str]):
    """A gunicorn host on 127.0.0.1 with `env` over the environment; returns (process, port, its environment)."""
    from benchmarks.perf_common import free_port
    from benchmarks.perf_load import wait_for_health

    port = free_port()
    full_env = _host_env(tmp, name, port, env)
    log_path = tmp / name / "gunicorn.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"], cwd=ROOT,
                                   env=full_env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for_health(port, process, 300, log_path)
    return process, port, full_env


def _create_key(env: dict[str, str]) -> str:
    created = subprocess.run([sys.executable, "-m", "flask", "--app", "backend", "keys", "create", "bench",
                              "--daily-limit", "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    return next(line for line in created.stdout.splitlines() if line.startswith("ess_"))


def _sequential_latency(ports: list[int], request, count: int) -> dict[str, float]:
    """One client sending `count` requests one at a time, alternating over `ports` on keep-alive connections:
    the latency of a hit without queueing, in ms (p50, p99)."""
    import http.client

    from benchmarks.perf_common import percentile

    method, path, body, headers = request
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for port in ports]
    latencies: list[float] = []
    try:
        for i in range(count):
            conn = connections[i % len(connections)]
            started = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                latencies.append(time.perf_counter() - started)
    finally:
        for conn in connections:
            conn.close()
    return {"p50_ms": round(1000 * percentile(latencies, 50), 3), "p99_ms": round(1000 * percentile(latencies, 99), 3),
            "ok": len(latencies)}


def _throughput(ports: list[int], request, clients: int, seconds: float) -> float:
    """Requests per second answered 200 by `clients` keep-alive clients spread evenly over `ports` (as a load
    balancer would spread them), all at once."""
    from benchmarks.perf_load import run_load

    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda p=port: results.append(
        run_load(p, lambda i: request, clients // len(ports), duration=seconds))) for port in ports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return round(sum(r["throughput_per_s"] for r in results), 1)


def _misses_per_second(ports: list[int], batch: list[tuple], clients: int) -> float:
    """New songs analyzed per second: `clients` clients sending the requests of `batch` (each a new song), spread
    over `ports`."""
    from benchmarks.perf_load import run_load

    per_port = len(batch) // len(ports)
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda n=n, port=port: results.append(run_load(
        port, lambda i: batch[n * per_port + i], max(1, clients // len(ports)), total=per_port)))
        for n, port in enumerate(ports)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return round(sum(r["ok"] for r in results) / wall, 2)


def bench_hosts(tmp: Path, *, quick: bool = False, redis_url: str = DEFAULT_REDIS_URL,
                postgres_url: str = DEFAULT_POSTGRES_URL) -> dict[str, Any]:
    """Cache hits (upload and URL) and misses per second, and the latency of one hit, for one embedded host
    (SQLite, memory-mapped shared state: 4 HTTP processes, 2 analysis processes) against two hosts on PostgreSQL
    + Redis (2 + 2 HTTP processes, 1 + 1 analysis processes): the same cores, so the ratio is the services' cost.
    Production mode with an API key (key check, rate limit, daily quota on every request, as clients meet it).
    All three servers run at once and the rounds alternate between the two setups, so that the shared machine's
    ups and downs hit both alike; medians of the rounds."""
    from benchmarks.perf_common import make_clip, tagged
    from benchmarks.perf_load import ClipServer, http_json, upload_request, url_request
    from benchmarks.proctools import stop_process

    cfg = {"hit_s": 2.0 if quick else 5.0, "rounds": 1 if quick else 3, "clients": 8,
           "latency_requests": 200 if quick else 600, "misses": 4 if quick else 8}
    preview = make_clip(120, "A", "minor", seconds=10.0)
    clips = [tagged(preview, f"miss-{n}") for n in range(cfg["misses"] * 2 * cfg["rounds"])]
    clip_server = ClipServer({"preview.m4a": preview})
    database_url = _make_database(postgres_url, tmp)
    prefix = f"essentia-bench:{uuid.uuid4().hex[:8]}:"
    common = {"ESSENTIA_PRODUCTION": "1", "ESSENTIA_RATE_LIMIT": "1000000"}
    setups = {
        "one_embedded_host": [{"ESSENTIA_HTTP_WORKERS": "4", "ESSENTIA_WORKERS": "2", **common}],
        "two_hosts_postgres_redis": [{"ESSENTIA_HTTP_WORKERS": "2", "ESSENTIA_WORKERS": "1",
                                      "ESSENTIA_DATABASE_URL": database_url, "ESSENTIA_REDIS_URL": redis_url,
                                      "ESSENTIA_REDIS_PREFIX": prefix, **common}] * 2,
    }
    out: dict[str, Any] = {"config": cfg}
    processes: list = []
    try:
        ports: dict[str, list[int]] = {}
        requests: dict[str, dict[str, tuple]] = {}
        for name, hosts in setups.items():
            started = [_start_host(tmp, f"{name}-{n}", env) for n, env in enumerate(hosts)]
            processes += [process for process, _, _ in started]
            ports[name] = [port for _, port, _ in started]
            key = {"X-API-Key": _create_key(started[0][2])}
            url_req = url_request(clip_server.url("preview.m4a"))
            upload_req = upload_request(tagged(preview, "hit"))
            requests[name] = {"url_hit": (*url_req[:3], {**url_req[3], **key}),
                              "upload_hit": (*upload_req[:3], {**upload_req[3], **key})}
            for request in requests[name].values():  # fill the cache (one miss each)
                http_json(ports[name][0], request[0], request[1], request[2], request[3], timeout=300)
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in setups}
        used = 0
        for round_number in range(cfg["rounds"]):
            for name in setups:
                result: dict[str, Any] = {}
                for label, request in requests[name].items():
                    _throughput(ports[name], request, cfg["clients"], cfg["hit_s"] / 3)  # warm-up
                    result[f"{label}_per_s"] = _throughput(ports[name], request, cfg["clients"], cfg["hit_s"])
                    result[f"{label}_latency"] = _sequential_latency(ports[name], request, cfg["latency_requests"])
                key = requests[name]["url_hit"][3]
                batch = [(*upload_request(clip)[:3], {**upload_request(clip)[3], "X-API-Key": key["X-API-Key"]})
                         for clip in clips[used:used + cfg["misses"]]]
                used += cfg["misses"]
                result["misses_per_s"] = _misses_per_second(ports[name], batch, 4)
                rounds[name].append(result)
                log(f"round {round_number + 1} {name}: {result}")
        for name, results in rounds.items():
            out[name] = _median_of(results)
    finally:
        for process in processes:
            stop_process(process)
        clip_server.close()
        _drop_database(postgres_url, database_url)
        client = redis.Redis.from_url(redis_url)
        _delete_prefix(client, prefix)
        client.close()
    one, two = out["one_embedded_host"], out["two_hosts_postgres_redis"]
    out["ratios"] = {label: round(two[f"{label}_per_s"] / one[f"{label}_per_s"], 2)
                     for label in ("url_hit", "upload_hit")}
    out["ratios"]["misses"] = round(two["misses_per_s"] / one["misses_per_s"], 2)
    out["added_ms_per_hit"] = {
        label: {q: round(two[f"{label}_latency"][q] - one[f"{label}_latency"][q], 3) for q in ("p50_ms", "p99_ms")}
        for label in ("url_hit", "upload_hit")}
    return out


def _median_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Field by field median of the rounds (nested dicts too)."""
    merged: dict[str, Any] = {}
    for field, value in results[0].items():
        if isinstance(value, dict):
            merged[field] = _median_of([r[field] for r in results])
        else:
            merged[field] = round(statistics.median(r[field] for r in results), 3)
    return merged


def _make_database(server_url: str, tmp: Path) -> str:
    """A new, empty PostgreSQL database for this run; returns its URL."""
    import psycopg
    name = f"essentia_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


def _drop_database(server_url: str, database_url: str) -> None:
    import psycopg
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def several_hosts(tmp: Path, quick: bool) -> dict[str, Any]:
    """performance_test.py's "several hosts" section: the limiter choice, the Redis cost per role operation, and
    one embedded host against two hosts on PostgreSQL + Redis."""
    redis_url = os.environ.get("ESSENTIA_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    postgres_url = os.environ.get("ESSENTIA_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    calls = 1000 if quick else 5000
    return {"limiter": bench_limiter(redis_url, calls=calls), "redis_roles": bench_redis_roles(tmp, redis_url, calls=calls),
            "hosts": bench_hosts(tmp, quick=quick, redis_url=redis_url, postgres_url=postgres_url)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=os.environ.get("ESSENTIA_TEST_REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument("--limiter", action="store_true", help="rate limiter on Redis: our Lua vs `limits`")
    parser.add_argument("--roles", action="store_true", help="µs per Redis role operation, host and Redis CPU")
    parser.add_argument("--hosts", action="store_true", help="one embedded host vs two hosts on the services")
    parser.add_argument("--breakdown", action="store_true", help="µs per step of a keyed hit, in-process")
    parser.add_argument("--postgres-url", default=os.environ.get("ESSENTIA_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args(argv)
    if args.limiter:
        print(json.dumps(bench_limiter(args.redis_url, calls=args.calls), indent=2))
    if args.roles:
        with tempfile.TemporaryDirectory(prefix="essentia-roles-") as tmp:
            print(json.dumps(bench_redis_roles(Path(tmp), args.redis_url, calls=args.calls), indent=2))
    if args.breakdown:
        with tempfile.TemporaryDirectory(prefix="essentia-breakdown-") as tmp:
            print(json.dumps(bench_breakdown(Path(tmp), redis_url=args.redis_url, postgres_url=args.postgres_url),
                             indent=2))
    if args.hosts:
        with tempfile.TemporaryDirectory(prefix="essentia-hosts-") as tmp:
            print(json.dumps(bench_hosts(Path(tmp), quick=args.quick, redis_url=args.redis_url,
                                         postgres_url=args.postgres_url), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
