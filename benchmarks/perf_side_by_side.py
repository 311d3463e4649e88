"""Hits of two checkouts side by side in one run, e.g. main against a branch:

    python -m benchmarks.perf_side_by_side --checkout main=/path/to/main --checkout branch=. \\
        --log-levels WARNING,INFO --rounds 3 --seconds 8

Each checkout (at each log level) is served by its own gunicorn.conf.py, in development mode and in production mode
with a key (daily limit and rate limit never reached, both counted on every request), all servers up at once.
Each phase (repeat upload, repeat upload with a key, URL hit) runs on every server in turn, wrk -t2 -c8 as section
7 of performance_test.py, the order reversed every other round, so that a machine load that changes during the run
falls on each alike. Printed per round and as medians: rate, p50 / p99, server CPU per request.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.perf_common import SONGS, log, make_clip
from benchmarks.perf_hits import create_key_cli
from benchmarks.perf_load import ClipServer, http_json, run_wrk, start_gunicorn, url_request, wait_for_health
from benchmarks.proctools import CpuMeter, stop_process

PHASES = ("upload", "production", "url")


def _servers(tmp: Path, name: str, checkout: Path, level: str, clip: bytes, url: str, processes: list) -> list:
    """Start one checkout's development and production servers; the phases they serve."""
    common = {"ESSENTIA_DB_PATH": str(tmp / f"{name}.db"), "ESSENTIA_WORKERS": "1", "ESSENTIA_LOG_LEVEL": level}
    dev, dev_port, dev_log = start_gunicorn(tmp, f"{name}-development", env=common, checkout=checkout)
    processes.append(dev)
    wait_for_health(dev_port, dev, 180, dev_log)
    status, answer = http_json(dev_port, "POST", "/analyze_data", clip, {"Content-Type": "audio/mp4"}, timeout=600)
    if status != 200:
        raise RuntimeError(f"{name}: the upload that fills the cache failed: {status} {answer}")
    http_json(dev_port, "POST", "/analyze", url_request(url)[2], {"Content-Type": "application/json"}, timeout=600)
    key = create_key_cli({**os.environ, **common}, "benchmark", "--daily-limit", str(10**9), checkout=checkout)
    prod, prod_port, prod_log = start_gunicorn(tmp, f"{name}-production", checkout=checkout, env={
        **common, "ESSENTIA_PRODUCTION": "1", "ESSENTIA_RATE_LIMIT": str(10**9)})
    processes.append(prod)
    wait_for_health(prod_port, prod, 180, prod_log)
    return [("upload", name, dev_port, dev.pid, ("/analyze_data", clip, "audio/mp4", {})),
            ("production", name, prod_port, prod.pid, ("/analyze_data", clip, "audio/mp4", {"X-API-Key": key})),
            ("url", name, dev_port, dev.pid, ("/analyze", url_request(url)[2], "application/json", {}))]


def run(checkouts: dict[str, Path], levels: list[str], rounds: int, seconds: float, tmp: Path,
        kinds: tuple[str, ...] = PHASES) -> dict[str, Any]:
    clip = make_clip(*SONGS[0])
    clip_server = ClipServer({"preview.m4a": clip})
    processes: list = []
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        phases = []
        for name, checkout in checkouts.items():
            for level in levels:
                phases += _servers(tmp, f"{name}-{level}", checkout, level, clip, clip_server.url("preview.m4a"),
                                   processes)
        phases = sorted((phase for phase in phases if phase[0] in kinds), key=lambda phase: PHASES.index(phase[0]))
        loads = []
        for number in range(rounds):
            loads.append(os.getloadavg())
            for kind, name, port, pid, (path, body, content_type, headers) in (phases if number % 2 == 0
                                                                               else phases[::-1]):
                run_wrk(port, path, body, content_type, 8, 2, tmp, headers)  # warm-up
                meter = CpuMeter(pid)
                before = meter.snapshot()
                result = run_wrk(port, path, body, content_type, 8, seconds, tmp, headers)
                cpu = CpuMeter.delta(before, meter.snapshot()).get("gunicorn HTTP worker", 0.0)
                result["server_cpu_ms_per_request"] = 1000 * cpu / result["ok"] if result.get("ok") else 0.0
                results.setdefault(f"{kind} {name}", []).append(result)
                log(f"round {number + 1} {kind} {name}: {result['throughput_per_s']:.0f}/s, p50 "
                    f"{result.get('p50_s', 0) * 1000:.2f} ms, p99 {result.get('p99_s', 0) * 1000:.2f} ms, server CPU "
                    f"{result['server_cpu_ms_per_request']:.2f} ms/request")
    finally:
        for process in processes:
            stop_process(process)
        clip_server.close()
    medians = {name: {"throughput_per_s": statistics.median(r["throughput_per_s"] for r in runs),
                      "p99_ms": statistics.median(r.get("p99_s", 0) * 1000 for r in runs),
                      "p99_rounds_ms": [round(r.get("p99_s", 0) * 1000, 1) for r in runs],
                      "server_cpu_ms_per_request": statistics.median(r["server_cpu_ms_per_request"] for r in runs)}
               for name, runs in results.items()}
    for name, median in medians.items():
        log(f"median {name}: {median['throughput_per_s']:.0f}/s, p99 {median['p99_ms']:.1f} ms "
            f"{median['p99_rounds_ms']}, server CPU {median['server_cpu_ms_per_request']:.2f} ms/request")
    return {"load_by_round": loads, "loadavg_at_end": os.getloadavg(), "medians": medians, "runs": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--log-levels", default="WARNING")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--phases", default=",".join(PHASES), help=f"some of {', '.join(PHASES)}")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    checkouts = {name: Path(path).resolve() for name, path in (item.split("=", 1) for item in args.checkout)}
    with tempfile.TemporaryDirectory(prefix="essentia-side-by-side-") as tmp:
        out = run(checkouts, args.log_levels.split(","), args.rounds, args.seconds, Path(tmp),
                  tuple(args.phases.split(",")))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
