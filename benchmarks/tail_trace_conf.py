"""gunicorn.conf.py with a tracer around it, for benchmarks/perf_tail.py: where the hit latency tail comes from.

`gunicorn -c benchmarks/tail_trace_conf.py` serves exactly as gunicorn.conf.py does (it runs that file), and each
HTTP worker also records, until it exits, into ESSENTIA_TAIL_TRACE_DIR/trace-<pid>.json:
- per request (gunicorn's pre/post_request hooks): wall time in the handler, the thread's CPU time, and the time the
  thread waited on a CPU run queue (/proc/self/task/<tid>/schedstat); the rest is time blocked (the GIL, a lock,
  the socket);
- gthread's hand-offs: a kept-alive socket turning readable -> a pool thread starting on it ("dispatch"), and a pool
  thread done -> the main thread taking the connection back ("hand_back"); the client waits for both;
- every wait for and hold of a shared table's lock (thread lock + flock), and every garbage collection's pause.
It patches gthread's worker and SharedTable in the worker process only: a diagnosis tool, never for serving.
"""
import gc
import json
import os
import threading
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
exec(compile(open(os.path.join(_ROOT, "gunicorn.conf.py")).read(), "gunicorn.conf.py", "exec"))  # noqa: S102

_served_post_worker_init, _served_worker_exit = post_worker_init, worker_exit  # noqa: F821 (from the exec)
_TRACE: dict[str, list] = {"requests": [], "gc": [], "lock_wait": [], "lock_hold": [], "dispatch": [],
                           "hand_back": []}


def _run_queue_seconds() -> float:
    with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


def _trace_gc() -> None:
    started: dict[int, float] = {}

    def pause(phase, info):
        if phase == "start":
            started[threading.get_ident()] = time.perf_counter()
        elif threading.get_ident() in started:
            _TRACE["gc"].append((info["generation"], time.perf_counter() - started.pop(threading.get_ident())))

    gc.callbacks.append(pause)


def _trace_table_locks() -> None:
    from contextlib import contextmanager

    from backend.runtime import sharedtable

    held = sharedtable.SharedTable.held

    @contextmanager
    def traced(self):
        # Only the outermost held() of a thread takes the locks: nested ones would count a zero wait.
        outermost = not self._lock_owner._thread_lock._is_owned()
        asked = time.perf_counter()
        with held(self):
            got = time.perf_counter()
            try:
                yield
            finally:
                if outermost:
                    _TRACE["lock_wait"].append(got - asked)
                    _TRACE["lock_hold"].append(time.perf_counter() - got)

    sharedtable.SharedTable.held = traced


def _trace_hand_offs(worker) -> None:
    readable, handle, finish = worker.on_client_socket_readable, worker.handle, worker.finish_request

    def on_readable(conn, client):
        conn.trace_readable = time.perf_counter()
        return readable(conn, client)

    def traced_handle(conn):
        if getattr(conn, "trace_readable", None) is not None:
            _TRACE["dispatch"].append(time.perf_counter() - conn.trace_readable)
            conn.trace_readable = None
        try:
            return handle(conn)
        finally:
            conn.trace_done = time.perf_counter()

    def traced_finish(conn, future):
        if getattr(conn, "trace_done", None) is not None:
            _TRACE["hand_back"].append(time.perf_counter() - conn.trace_done)
        return finish(conn, future)

    worker.on_client_socket_readable, worker.handle, worker.finish_request = on_readable, traced_handle, traced_finish


def post_worker_init(worker):
    _served_post_worker_init(worker)
    _trace_gc()
    _trace_table_locks()
    _trace_hand_offs(worker)


def pre_request(worker, req):
    req.trace_start = (time.perf_counter(), time.thread_time(), _run_queue_seconds())


def post_request(worker, req, environ, resp):
    wall, cpu, queued = req.trace_start
    _TRACE["requests"].append((time.perf_counter() - wall, time.thread_time() - cpu, _run_queue_seconds() - queued))


def worker_exit(server, worker):
    _served_worker_exit(server, worker)
    with open(os.path.join(os.environ["ESSENTIA_TAIL_TRACE_DIR"], f"trace-{os.getpid()}.json"), "w") as f:
        json.dump(_TRACE, f)
