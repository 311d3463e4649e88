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
  7. Cache hits (issue 12): where a repeat upload's time goes, step by step, in process; then wrk with 8
     connections against our server (repeat uploads, URLs, hash-first lookups; development mode, and production
     mode with a key), the Flask floor under the same gunicorn settings, and a naive upload-cache server.
  hosts (several hosts; only with --only hosts, needs PostgreSQL and Redis): the rate limiter's Lua script vs the
     `limits` library, Redis cost per role operation, and one embedded host vs two hosts on PostgreSQL + Redis
     (hits by URL and upload, misses, latency of one hit).
  catalog (only with --only catalog): search, every sort order and /stats at 10k/100k/1M cached songs on SQLite
     and PostgreSQL.

The sections live in benchmarks/: perf_micro.py (1-5), perf_load.py (6), perf_hits.py (7), perf_hosts.py (hosts),
perf_catalog.py (catalog), naive_server.py (the
naive servers of sections 6 and 7, each in its own process), floor_app.py (section 7's Flask floor), proctools.py (process trees, CPU and RSS per role; tests/servers.py uses it
too), perf_profile.py (--profile-hits), report.py (the printed table), perf_common.py (timing helpers, clips).

Everything printed is measured in this run; nothing is typed in. Micro-benchmarks report the median of several
repeats. The script never asserts a speed: it prints whether each target is met and exits 0 either way.
Servers it starts are killed (process group) before it exits, whatever happens.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import perf_catalog, perf_hosts  # noqa: E402
from benchmarks.naive_server import naive_server_main  # noqa: E402
from benchmarks.perf_common import SONGS, log, make_clip  # noqa: E402
from benchmarks.perf_hits import bench_hits, breakdown  # noqa: E402
from benchmarks.perf_load import bench_load, start_naive, wait_for_health  # noqa: E402
from benchmarks.perf_micro import bench_keys, bench_pool, bench_quota, bench_ratelimit, bench_single_flight  # noqa: E402
from benchmarks.perf_profile import profile_hits  # noqa: E402
from benchmarks.proctools import stop_process  # noqa: E402
from benchmarks.report import machine, print_table, summary_rows  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for CI (under a minute on 2 cores)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--only", default="1,2,3,4,5,6,7",
                        help="comma-separated sections to run (default: 1-7; also catalog and hosts, "
                             "which need PostgreSQL, and Redis for hosts)")
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
            if sections & {"5", "6", "7"}:
                # Preparation, nothing timed: the naive server imports librosa and JIT-compiles its pipeline while
                # the clips are synthesized in another process. A full run waits for both before measuring; a
                # quick run measures sections 1-4 meanwhile (their ratios compare like with like, but expect
                # noisier absolute figures).
                prep_started = time.perf_counter()
                if "6" in sections:
                    naive_proc, naive_port, naive_log = start_naive(tmp)
                from concurrent.futures import ProcessPoolExecutor
                songs = SONGS[:1] if args.quick or not sections & {"5", "6"} else SONGS  # 7 needs one clip
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
                     ("7", "hits", lambda: {"breakdown": breakdown(tmp, clips[0], args.quick),
                                            "wire": bench_hits(tmp, clips[0], sf_clip, args.quick, use_wrk)}),
                     # Needs PostgreSQL and Redis (ESSENTIA_TEST_POSTGRES_URL, ESSENTIA_TEST_REDIS_URL): --only hosts
                     ("hosts", "several_hosts", lambda: perf_hosts.several_hosts(tmp, args.quick)),
                     # Slow (grows a catalog to 1,000,000 songs on each store): only when asked, --only catalog.
                     ("catalog", "catalog", lambda: perf_catalog.run(
                         perf_catalog.SIZES[:2] if args.quick else perf_catalog.SIZES, log=log))]
            for number, name, step in steps:
                if number not in sections:
                    continue
                if number in ("5", "6", "7"):
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
        print(perf_catalog.report(results["catalog"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
