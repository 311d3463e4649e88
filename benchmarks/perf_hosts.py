"""Several hosts: what the shared services (Redis for the shared state) cost per request.

    .venv/bin/python -m benchmarks.perf_hosts --limiter      # the rate limiter on Redis: our Lua vs `limits`

The `limits` library (what Flask-Limiter builds on) is measured only when it is importable (`pip install limits`);
the project does not depend on it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from typing import Any, Callable

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--limiter", action="store_true", help="rate limiter on Redis: our Lua vs `limits`")
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args(argv)
    if args.limiter:
        print(json.dumps(bench_limiter(args.redis_url, calls=args.calls), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
