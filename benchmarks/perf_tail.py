"""Where the hit latency tail comes from: `python -m benchmarks.perf_tail [--seconds 10] [--json out.json]`.

Serves gunicorn.conf.py under benchmarks/tail_trace_conf.py (the same server, with a tracer), one server per kind
of hit (repeat upload in development mode, the same with a key in production mode, URL hit), loads each with wrk (8
connections, as section 7 of performance_test.py), stops it, and reads what its workers recorded: per request, the
handler's wall time split into thread CPU, CPU run-queue wait and the rest (blocked: GIL, locks, socket), for all
requests and for the slowest 1 %; gthread's two hand-offs; the shared tables' lock waits; garbage collections.
The load average is printed with each phase: on a shared machine it decides most of what the tail is.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.perf_common import SONGS, log, make_clip
from benchmarks.perf_hits import create_key_cli
from benchmarks.perf_load import ClipServer, http_json, run_wrk, start_gunicorn, url_request, wait_for_health
from benchmarks.proctools import stop_process

TRACED = ["-c", "benchmarks/tail_trace_conf.py"]


def _ms(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q) * 1000) if len(values) else 0.0


def summarize(trace_dir: Path) -> dict[str, Any]:
    """Every worker's trace of one server, merged."""
    merged: dict[str, list] = {}
    for path in trace_dir.glob("trace-*.json"):
        for name, values in json.loads(path.read_text()).items():
            merged.setdefault(name, []).extend(values)
    requests = np.array(merged.get("requests") or [(0.0, 0.0, 0.0)])
    wall, cpu, queued = requests[:, 0], requests[:, 1], requests[:, 2]
    slowest = wall >= np.percentile(wall, 99)

    def split(mask: np.ndarray) -> dict[str, float]:
        return {"wall_ms": float(wall[mask].mean() * 1000), "cpu_ms": float(cpu[mask].mean() * 1000),
                "run_queue_ms": float(queued[mask].mean() * 1000),
                "blocked_ms": float((wall - cpu - queued)[mask].mean() * 1000)}

    out: dict[str, Any] = {"requests": len(requests), "handler_p50_ms": _ms(wall, 50), "handler_p99_ms": _ms(wall, 99),
                           "all": split(np.ones(len(wall), bool)), "slowest_1_percent": split(slowest)}
    for name in ("dispatch", "hand_back", "lock_wait", "lock_hold"):
        values = np.array(merged.get(name) or [])
        out[name] = {"count": len(values), "p50_ms": _ms(values, 50), "p99_ms": _ms(values, 99),
                     "max_ms": float(values.max() * 1000) if len(values) else 0.0,
                     "over_1ms": int((values > 0.001).sum())}
    pauses = merged.get("gc") or []
    out["gc"] = {f"gen{generation}": {"count": len(times), "total_ms": sum(times) * 1000,
                                      "max_ms": max(times, default=0.0) * 1000}
                 for generation in (0, 1, 2) for times in [[t for g, t in pauses if g == generation]]}
    return out


def trace_phase(tmp: Path, name: str, clip: bytes, url: str, seconds: float) -> dict[str, Any]:
    trace_dir = tmp / f"trace-{name}"
    trace_dir.mkdir()
    common = {"ESSENTIA_DB_PATH": str(tmp / f"{name}.db"), "ESSENTIA_WORKERS": "1",
              "ESSENTIA_TAIL_TRACE_DIR": str(trace_dir)}
    seeder, port, log_path = start_gunicorn(tmp, f"{name}-seed", env=common)
    try:
        wait_for_health(port, seeder, 180, log_path)
        status, answer = http_json(port, "POST", "/analyze_data", clip, {"Content-Type": "audio/mp4"}, timeout=600)
        assert status == 200, answer
        http_json(port, "POST", "/analyze", url_request(url)[2], {"Content-Type": "application/json"}, timeout=600)
    finally:
        stop_process(seeder)
    for stale in trace_dir.glob("*"):
        stale.unlink()
    env, headers = dict(common), {}
    if name == "upload_production":
        headers["X-API-Key"] = create_key_cli({**os.environ, **common}, "tail", "--daily-limit", str(10**9))
        env.update(ESSENTIA_PRODUCTION="1", ESSENTIA_RATE_LIMIT=str(10**9))
    path, body, content_type = (("/analyze", url_request(url)[2], "application/json") if name == "url_development"
                                else ("/analyze_data", clip, "audio/mp4"))
    server, port, log_path = start_gunicorn(tmp, name, env=env, command=TRACED)
    try:
        wait_for_health(port, server, 180, log_path)
        run_wrk(port, path, body, content_type, 8, 2, tmp, headers)  # warm-up, then what is traced
        load_before = os.getloadavg()
        result = run_wrk(port, path, body, content_type, 8, seconds, tmp, headers)
    finally:
        stop_process(server)
    out = {"wrk": {key: result.get(key) for key in ("throughput_per_s", "p50_s", "p99_s", "non_2xx")},
           "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "trace": summarize(trace_dir)}
    log(f"{name}: {result['throughput_per_s']:.0f}/s, p99 {result.get('p99_s', 0) * 1000:.1f} ms, load "
        f"{load_before[0]:.1f} -> {out['loadavg_after'][0]:.1f}; slowest 1 % of handlers: "
        + ", ".join(f"{k} {v:.2f}" for k, v in out["trace"]["slowest_1_percent"].items())
        + f"; dispatch p99 {out['trace']['dispatch']['p99_ms']:.2f} ms, hand-back p99 "
          f"{out['trace']['hand_back']['p99_ms']:.2f} ms; table lock waits {out['trace']['lock_wait']['count']} "
          f"(p99 {out['trace']['lock_wait']['p99_ms']:.2f} ms, over 1 ms {out['trace']['lock_wait']['over_1ms']}); "
          + "; gc " + ", ".join(f"{generation} {g['count']} pauses, max {g['max_ms']:.1f} ms"
                                for generation, g in out["trace"]["gc"].items()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--phases", default="upload_development,upload_production,url_development")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    clip = make_clip(*SONGS[0])
    clips = ClipServer({"preview.m4a": clip})
    results = {}
    try:
        with tempfile.TemporaryDirectory(prefix="essentia-tail-") as tmp:
            for name in args.phases.split(","):
                results[name] = trace_phase(Path(tmp), name, clip, clips.url("preview.m4a"), args.seconds)
    finally:
        clips.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
