"""Section 6 of performance_test.py: load over HTTP on 127.0.0.1, gunicorn with gunicorn.conf.py vs the naive server
(benchmarks/naive_server.py): misses, URL hits, repeat-upload hits, the /health floor."""
from __future__ import annotations

import http.client
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from benchmarks.perf_common import CLIP_RATE, CLIP_SECONDS, ROOT, free_port, log, percentile, tagged
from benchmarks.proctools import CpuMeter, RssSampler, stop_process


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
            raise RuntimeError(f"server on port {port} did not come up (exit code {process.poll()}):\n{tail}")
        time.sleep(0.1)


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


def start_gunicorn(tmp: Path, name: str = "gunicorn", *, env: dict[str, str] | None = None,
                   command: list[str] | None = None, checkout: Path = ROOT) -> tuple[subprocess.Popen, int, Path]:
    """gunicorn with gunicorn.conf.py (or `command`'s arguments instead, "{port}" in them replaced) on a free port,
    development mode, its database in `tmp`; `env` adds or overrides variables; `checkout` is the tree served."""
    port = free_port()
    full_env = {**os.environ, "ESSENTIA_PORT": str(port), "ESSENTIA_HOST": "127.0.0.1",
                "ESSENTIA_DB_PATH": str(tmp / "served.db"), "ESSENTIA_ALLOW_LOOPBACK_URLS": "1",
                "ESSENTIA_LOG_LEVEL": "WARNING"}
    full_env.pop("ESSENTIA_PRODUCTION", None)
    full_env.update(env or {})
    log_path = tmp / f"{name}.log"
    arguments = [part.replace("{port}", str(port)) for part in command or ["-c", "gunicorn.conf.py"]]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", *arguments], cwd=checkout, env=full_env,
                                   stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    return process, port, log_path


def start_naive(tmp: Path) -> tuple[subprocess.Popen, int, Path]:
    port = free_port()
    log_path = tmp / "naive.log"
    # librosa's numba functions are compiled into a cache of this run's own: a cache file that another process
    # wrote at the same time (a shared virtualenv) crashed librosa.beat with SIGSEGV here.
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR") or str(tmp / "numba-cache")}
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "benchmarks.naive_server", str(port)], env=env,
                                   cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    return process, port, log_path


def upload_request(body: bytes) -> tuple[str, str, bytes, dict]:
    return "POST", "/analyze_data", body, {"Content-Type": "audio/mp4"}


def url_request(url: str) -> tuple[str, str, bytes, dict]:
    body = json.dumps({"url": url, "title": "Benchmark Song", "artist": "Benchmark Artist"}).encode()
    return "POST", "/analyze", body, {"Content-Type": "application/json"}


_WRK_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def run_wrk(port: int, path: str, body: bytes | None, content_type: str | None, connections: int, duration: float,
            tmp: Path, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The same measurement with wrk (C, event loop) when it is installed: a load generator that does not share
    Python's GIL, so the server, not the client, is what is measured. Percentiles from wrk --latency."""
    import re
    import shutil

    script = tmp / f"wrk-{port}.lua"
    if body is None:
        lua = 'wrk.method = "GET"\n'
    else:
        body_path = tmp / f"wrk-body-{port}-{len(body)}"
        body_path.write_bytes(body)
        lua = (f'wrk.method = "POST"\nlocal f = io.open("{body_path}", "rb")\nwrk.body = f:read("*all")\n'
               f'f:close()\nwrk.headers["Content-Type"] = "{content_type}"\n')
    for name, value in (headers or {}).items():
        lua += f'wrk.headers["{name}"] = "{value}"\n'
    script.write_text(lua)
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
    extra = {name: value for name, value in headers.items() if name != "Content-Type"}
    if use_wrk:
        run_wrk(port, path, body, headers.get("Content-Type"), 8, cfg["hit_warm_s"], tmp, extra)
    else:
        run_load(port, lambda i: request, 8, duration=cfg["hit_warm_s"])
    before, waits_before = meter.snapshot(), meter.run_queue_waits()
    if use_wrk:
        result = run_wrk(port, path, body, headers.get("Content-Type"), 8, cfg["hit_s"], tmp, extra)
    else:
        result = run_load(port, lambda i: request, 8, duration=cfg["hit_s"])
        result["generator"] = "python http.client threads (keep-alive)"
    result["cpu_s"] = CpuMeter.delta(before, meter.snapshot())
    result["run_queue_wait_s"] = CpuMeter.wait_delta(waits_before, meter.run_queue_waits())
    server_role = "naive server" if name.startswith("naive") else "gunicorn HTTP worker"
    if result.get("ok"):
        result["server_cpu_ms_per_request"] = 1000 * result["cpu_s"].get(server_role, 0.0) / result["ok"]
        # Time the server's threads were ready to run but had no CPU (the machine's other load, or too many
        # threads for the cores), per request: against the latency, it says how much of the tail is waiting.
        result["server_run_queue_wait_ms_per_request"] = \
            1000 * result["run_queue_wait_s"].get(server_role, 0.0) / result["ok"]
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
