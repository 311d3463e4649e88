"""Section 7 of performance_test.py: cache hits at the speed of the wire (issue 12).

7a, in this process: where a repeat upload's time goes, step by step (receive, hash, look up, serialize,
bookkeeping in development and production mode), on the app's own code, with the body parsed off a real loopback
socket by gunicorn's own HTTP parser, as a gunicorn worker receives it.

7b, over HTTP with wrk (8 connections), all servers up at once and measured in alternation, so that the shared
machine's load hits each alike: repeat-upload hits, URL hits and hash-first lookups (development mode),
repeat-upload hits with a key (production mode), the Flask floor (benchmarks/floor_app.py under the same gunicorn
settings) and the naive upload-cache server (benchmarks/naive_server.py --upload-cache). Ratios are taken
within each round, then their median is reported.
"""
from __future__ import annotations

import hashlib
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.perf_common import ROOT, free_port, log, per_call
from benchmarks.perf_load import ClipServer, http_json, measure_hits, start_gunicorn, upload_request, url_request, \
    wait_for_health
from benchmarks.proctools import CpuMeter, stop_process

TARGETS = {"upload_vs_naive": 3.75, "production_vs_development": 0.8, "url_vs_floor": 0.7,
           "sha_vs_url": 1.0, "p99_s": 0.020}


# -- 7a. per-request breakdown, in process --------------------------------------------------------------------


# The client: its own process (a thread here would compete with the server code for the GIL), sending the whole
# request again each time a byte arrives on its stdin.
_SENDER = """import socket, sys
connection = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
raw = open(sys.argv[2], "rb").read()
while sys.stdin.buffer.read(1):
    connection.sendall(raw)
"""


class WireRequests:
    """Raw HTTP requests sent over a loopback TCP connection by a client process and read here with gunicorn's own
    parser into a WSGI environ: what a gunicorn worker's view sees, the body still on the socket."""

    def __init__(self, raw: bytes, tmp: Path):
        from gunicorn.config import Config
        from gunicorn.http.parser import RequestParser

        request_path = tmp / f"wire-request-{id(self)}"
        request_path.write_bytes(raw)
        listener = socket.create_server(("127.0.0.1", 0))
        self.sender = subprocess.Popen([sys.executable, "-c", _SENDER, str(listener.getsockname()[1]),
                                        str(request_path)], stdin=subprocess.PIPE)
        listener.settimeout(60)
        self.server, self.peer = listener.accept()
        listener.close()
        self.server.settimeout(None)
        self.cfg = Config()
        self.parser = RequestParser(self.cfg, self.server, self.peer)

    def environ(self) -> dict[str, Any]:
        """Have one request sent and parse its head; the body is read by whoever consumes wsgi.input."""
        from gunicorn.http import wsgi

        self.sender.stdin.write(b"x")
        self.sender.stdin.flush()
        request = next(self.parser)
        _response, environ = wsgi.create(request, self.server, self.peer, ("127.0.0.1", 8000), self.cfg)
        return environ

    def close(self) -> None:
        self.sender.stdin.close()
        self.sender.wait(timeout=30)
        self.server.close()


def raw_request(method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1:8000", f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _call_app(app, environ: dict[str, Any]) -> bytes:
    statuses: list[str] = []
    chunks = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    try:
        body = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    assert statuses and statuses[0].startswith("200"), (statuses, body[:200])
    return body


def _seed_app(tmp: Path, clip: bytes):
    """A database holding the clip's analysis (one real miss, in-process)."""
    from backend.app import create_app
    from backend.config import Settings

    db_path = tmp / "breakdown.db"
    app = create_app(Settings(db_path=str(db_path), workers=0, log_level="WARNING", stats_flush_seconds=2.0))
    response = app.test_client().post("/analyze_data", data=clip, content_type="audio/mp4")
    assert response.status_code == 200, response.data[:300]
    services = app.extensions["essentia"]
    services.counters.flush()
    services.executor.shutdown()
    services.store.close()
    return db_path


def _served_app(tmp: Path, db_path: Path, *, production: bool):
    """The app as a gunicorn worker builds it (shared state in a folder: the memory-mapped tally and limiter)."""
    from backend.app import create_app
    from backend.config import Settings

    shared = tmp / ("shared-production" if production else "shared-development")
    shared.mkdir(exist_ok=True)
    settings = Settings(db_path=str(db_path), workers=1, log_level="WARNING", shared_state_dir=str(shared),
                        production=production, host="127.0.0.1", rate_limit=10**9 if production else 0)
    return create_app(settings)


def _create_key(app) -> str:
    from backend.timeutil import utc_now_iso
    from backend.web.auth import display_prefix, generate_key, hash_key

    raw = generate_key()
    store = app.extensions["essentia"].store
    with store.connection(write=True) as conn:
        store.insert_key(conn, name="benchmark", email=None, key_hash=hash_key(raw), key_prefix=display_prefix(raw),
                         is_admin=False, daily_limit=10**9, created_at=utc_now_iso())
    return raw


def full_collection_cost() -> dict[str, Any]:
    """What a full garbage collection costs a process holding the app (all its requests wait for it), before and
    after gc.freeze(), which gunicorn.conf.py calls in each worker once the app is built."""
    import gc

    def timed() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.thread_time()
        gc.collect()
        return time.perf_counter() - wall, time.thread_time() - cpu

    tracked = len(gc.get_objects())
    before_wall, before_cpu = min(timed() for _ in range(3))
    gc.freeze()
    try:
        after_wall, after_cpu = min(timed() for _ in range(3))
        left = len(gc.get_objects())
    finally:
        gc.unfreeze()
    return {"gc_tracked_objects": tracked, "gc_full_collection_cpu_s": before_cpu,
            "gc_full_collection_wall_s": before_wall, "gc_tracked_objects_after_freeze": left,
            "gc_full_collection_after_freeze_cpu_s": after_cpu, "gc_full_collection_after_freeze_wall_s": after_wall}


def breakdown(tmp: Path, clip: bytes, quick: bool) -> dict[str, Any]:
    """Median time per step of a repeat upload, and of the whole request, in development and production mode."""
    from flask import jsonify

    from backend.service import upload_cache_key
    from backend.web.hooks import new_request_id
    from backend.web.prebuilt import answer_response
    from backend.web.responses import analysis_response
    from backend.web.upload import receive_body

    db_path = _seed_app(tmp, clip)
    dev, prod = _served_app(tmp, db_path, production=False), _served_app(tmp, db_path, production=True)
    raw_key = _create_key(prod)
    headers = {"Content-Type": "audio/mp4"}
    wire = WireRequests(raw_request("POST", "/analyze_data", clip, headers), tmp)
    keyed_wire = WireRequests(raw_request("POST", "/analyze_data", clip, {**headers, "X-API-Key": raw_key}), tmp)
    services, prod_services = dev.extensions["essentia"], prod.extensions["essentia"]
    digest = hashlib.sha256(clip).hexdigest()
    store = services.store
    with store.single_read() as conn:
        row = store.find_analysis_by_cache_key(conn, upload_cache_key(digest))
    key = prod_services.key_validator.validate(raw_key)

    max_bytes = services.settings.max_upload_bytes

    def receive(_i: int) -> None:
        """Read the body off the socket and hash it as it arrives (backend/web/upload.py)."""
        with dev.request_context(wire.environ()):
            assert receive_body(max_bytes).sha256 == digest

    def hash_body(_i: int) -> None:
        """The hash alone (receive includes it): the floor of receive + hash."""
        hashlib.sha256(clip).hexdigest()

    def lookup(_i: int) -> None:
        with store.single_read() as conn:
            store.find_analysis_by_cache_key(conn, upload_cache_key(digest))

    def serialize(_i: int) -> None:
        """The answer from the text serialized when the analysis was stored (backend/web/prebuilt.py)."""
        with dev.app_context():
            answer_response(row["response_json"], cached=True).get_data()

    def serialize_from_columns(_i: int) -> None:
        """The answer built from the row's columns, as every hit did before (and a row without stored text)."""
        with dev.app_context():
            jsonify(analysis_response(row, cached=True)).get_data()

    def bookkeeping(_i: int) -> None:
        new_request_id()
        services.counters.count_hit()
        services.metrics.cache.labels("hit").inc()
        services.metrics.observe_request("/analyze_data", "POST", 200, 0.001)

    def production_bookkeeping(_i: int) -> None:
        prod_services.key_validator.validate(raw_key)
        prod_services.rate_limiter.hit(f"key:{key.id}")
        prod_services.quota.consume(key.id)
        prod_services.counters.record_usage(key.id, "/analyze_data", 200)

    def whole(_i: int) -> None:
        _call_app(dev, wire.environ())

    def whole_production(_i: int) -> None:
        _call_app(prod, keyed_wire.environ())

    calls, repeats = (50, 3) if quick else (300, 7)
    steps = {"receive_and_hash": receive, "hash_alone": hash_body, "lookup": lookup, "serialize": serialize,
             "serialize_from_columns": serialize_from_columns,
             "bookkeeping_development": bookkeeping, "bookkeeping_production_extra": production_bookkeeping,
             "whole_request_development": whole, "whole_request_production": whole_production}
    out: dict[str, Any] = {"body_bytes": len(clip), "calls": calls, "repeats": repeats,
                           "method": "CPU time of this thread (time.thread_time: time spent descheduled on a busy "
                                     "machine is not counted) per call, median of repeats of `calls` calls; the body "
                                     "comes off a loopback TCP socket through gunicorn's parser (receive, whole "
                                     "requests); wall-clock medians beside them"}
    try:
        whole(0), whole_production(0)  # warm both paths once
        for name, step in steps.items():
            out[f"{name}_s"] = per_call(step, calls, repeats, clock=time.thread_time)["median_s"]
            out[f"{name}_wall_s"] = per_call(step, calls, 1)["median_s"]
    finally:
        wire.close()
        keyed_wire.close()
        for app in (dev, prod):
            app_services = app.extensions["essentia"]
            app_services.counters.flush()
            if hasattr(app_services.quota, "flush"):
                app_services.quota.flush()
            app_services.store.close()
    out.update(full_collection_cost())
    parts = ("receive_and_hash", "lookup", "serialize", "bookkeeping_development")
    out["sum_of_steps_development_s"] = sum(out[f"{name}_s"] for name in parts)
    return out


# -- 7b. wrk over HTTP ----------------------------------------------------------------------------------------


def create_key_cli(env: dict[str, str], name: str, *flags: str, checkout: Path = ROOT) -> str:
    """Create an API key with the real `flask --app backend keys create` (of `checkout`) and return the secret."""
    import re

    created = subprocess.run([sys.executable, "-m", "flask", "--app", "backend", "keys", "create", name, *flags],
                             cwd=checkout, env=env, capture_output=True, text=True, timeout=120)
    if created.returncode != 0:
        raise RuntimeError(created.stderr)
    return re.search(r"^(ess_\S+)$", created.stdout, re.MULTILINE).group(1)


def _start_naive_upload_cache(tmp: Path) -> tuple[subprocess.Popen, int, Path, Path]:
    port = free_port()
    db_path, log_path = tmp / "naive-upload-cache.db", tmp / "naive-upload-cache.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "benchmarks.naive_server", str(port), "--upload-cache",
                                    str(db_path)], cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return process, port, log_path, db_path


def _sha_request(digest: str) -> tuple[str, str, None, dict]:
    return "GET", f"/analyze_data/sha256/{digest}", None, {}


def bench_hits(tmp: Path, clip: bytes, preview: bytes, quick: bool, use_wrk: bool) -> dict[str, Any]:
    """Hit rates and latencies of every server side by side (see the module docstring)."""
    from backend.config import Settings

    cfg = {"hit_s": 1.0 if quick else 10.0, "hit_warm_s": 0.3 if quick else 2.0, "hit_rounds": 1 if quick else 3,
           "wrk": use_wrk}
    served = Settings.from_env()
    out: dict[str, Any] = {"config": cfg, "loadavg_at_start": os.getloadavg(),
                           "server": {"http_processes": served.http_processes, "threads_each": served.http_threads},
                           "upload_bytes": len(clip)}
    clip_server = ClipServer({"preview-1.m4a": preview})
    url = clip_server.url("preview-1.m4a")
    processes: list[subprocess.Popen] = []
    db_path = tmp / "hits.db"
    try:
        common = {"ESSENTIA_DB_PATH": str(db_path), "ESSENTIA_WORKERS": "1"}
        dev, dev_port, dev_log = start_gunicorn(tmp, "hits-development", env=common)
        processes.append(dev)
        wait_for_health(dev_port, dev, 180, dev_log)
        # A client with a daily limit it never reaches: the quota is checked and counted on every request.
        raw_key = create_key_cli({**os.environ, **common}, "benchmark", "--daily-limit", str(10**9))
        prod, prod_port, prod_log = start_gunicorn(tmp, "hits-production", env={
            **common, "ESSENTIA_PRODUCTION": "1", "ESSENTIA_HOST": "127.0.0.1", "ESSENTIA_RATE_LIMIT": str(10**9)})
        processes.append(prod)
        no_config = tmp / "floor.gunicorn.conf.py"  # not ./gunicorn.conf.py, which gunicorn reads by default
        no_config.write_text("")
        floor, floor_port, floor_log = start_gunicorn(tmp, "hits-floor", command=[
            "-c", str(no_config), "--no-control-socket", "-k", "gthread", "-w", str(served.http_processes),
            "--threads", str(served.http_threads), "--keep-alive", "5", "--bind", "127.0.0.1:{port}", "benchmarks.floor_app:app"])
        processes.append(floor)
        naive, naive_port, naive_log, naive_db = _start_naive_upload_cache(tmp)
        processes.append(naive)

        # Fill the cache: one upload miss and one URL miss on the development server (the production server
        # shares its database); the naive server is seeded with the same answer for the same bytes.
        status, answer = http_json(dev_port, "POST", "/analyze_data", clip, {"Content-Type": "audio/mp4"},
                                   timeout=600)
        if status != 200:
            raise RuntimeError(f"the upload that fills the cache failed: {status} {answer}")
        http_json(dev_port, "POST", "/analyze", url_request(url)[2], {"Content-Type": "application/json"},
                  timeout=600)
        for port, process, log_path in ((prod_port, prod, prod_log), (naive_port, naive, naive_log),
                                        (floor_port, floor, floor_log)):
            wait_for_health(port, process, 180, log_path)
        from benchmarks.naive_server import seed_upload_cache
        seed_upload_cache(str(naive_db), clip, {k: v for k, v in answer.items() if k != "cached"})

        digest = hashlib.sha256(clip).hexdigest()
        sha_available = http_json(dev_port, "GET", f"/analyze_data/sha256/{digest}")[0] == 200
        keyed = ("POST", "/analyze_data", clip, {"Content-Type": "audio/mp4", "X-API-Key": raw_key})
        phases = [("upload_development", "ours", dev_port, dev.pid, upload_request(clip)),
                  ("url_development", "ours", dev_port, dev.pid, url_request(url)),
                  *([("sha_development", "ours", dev_port, dev.pid, _sha_request(digest))] if sha_available else []),
                  ("upload_production", "ours", prod_port, prod.pid, keyed),
                  ("url_floor", "floor", floor_port, floor.pid, url_request(url)),
                  ("upload_naive", "naive", naive_port, naive.pid, upload_request(clip))]
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in phases}
        load_by_round = []
        for round_number in range(cfg["hit_rounds"]):
            load_by_round.append(os.getloadavg())
            # Every other round runs the phases in reverse, so that a machine load that rises or falls during a
            # round does not favour the phases that come first.
            for name, kind, port, pid, request in (phases if round_number % 2 == 0 else phases[::-1]):
                meter = CpuMeter(pid, single=kind == "naive")
                result = measure_hits("naive" if kind == "naive" else name, port, request, cfg, meter, tmp)
                runs[name].append(result)
                log(f"  round {round_number + 1} {name} ({result['generator']}): "
                    f"{result['throughput_per_s']:.0f}/s, p50 {result.get('p50_s', 0) * 1000:.1f} ms, "
                    f"p99 {result.get('p99_s', 0) * 1000:.1f} ms, server CPU "
                    f"{result.get('server_cpu_ms_per_request', 0):.2f} ms/request, run-queue wait "
                    f"{result.get('server_run_queue_wait_ms_per_request', 0):.2f} ms/request")
        out["load_by_round"] = load_by_round
        out["phases"] = {name: _median_phase(results) for name, results in runs.items()}
        out["ratios"] = _ratios(runs)
        out["stats_after"] = http_json(dev_port, "GET", "/stats")[1]
    finally:
        for process in processes:
            stop_process(process)
        clip_server.close()
    out["loadavg_at_end"] = os.getloadavg()
    return out


def _median_phase(results: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(results, key=lambda run: run["throughput_per_s"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["throughput_runs_per_s"] = [run["throughput_per_s"] for run in results]
    chosen["p99_runs_s"] = [run.get("p99_s") for run in results]
    chosen["rounds"] = len(results)
    return chosen


def _ratios(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Each ratio within each round (the two phases ran minutes apart at most), then the median over rounds."""
    pairs = {"upload_vs_naive": ("upload_development", "upload_naive"),
             "production_vs_development": ("upload_production", "upload_development"),
             "url_vs_floor": ("url_development", "url_floor"),
             "sha_vs_url": ("sha_development", "url_development")}
    out: dict[str, Any] = {}
    for name, (top, bottom) in pairs.items():
        if top not in runs or bottom not in runs:
            continue
        per_round = [a["throughput_per_s"] / b["throughput_per_s"] if b["throughput_per_s"] else 0.0
                     for a, b in zip(runs[top], runs[bottom])]
        # The same comparison by server CPU per request (what each request costs, whatever else the machine was
        # doing): throughput ratios on a shared machine move with its load, CPU ratios much less.
        cpu = [b["server_cpu_ms_per_request"] / a["server_cpu_ms_per_request"]
               if a.get("server_cpu_ms_per_request") else 0.0 for a, b in zip(runs[top], runs[bottom])]
        out[name] = {"median": statistics.median(per_round), "rounds": per_round, "target": TARGETS[name],
                     "by_cpu_median": statistics.median(cpu), "by_cpu_rounds": cpu}
    return out
