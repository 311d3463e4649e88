"""gunicorn settings for EssentiaServer: `gunicorn -c gunicorn.conf.py` (what ./serve.sh runs).

ESSENTIA_HTTP_WORKERS processes serve HTTP (default: two per core, at most four), each with a few threads. One
Python process cannot answer more than one core's worth of requests (the GIL; see PERFORMANCE_OPTIMIZATIONS.md),
and with keep-alive a client's connection stays with the process that accepted it, so more processes than cores
keep both cores busy however connections happen to be spread. Decoding and analysis run in one pool of
ESSENTIA_WORKERS processes for the whole server (backend/runtime/poolservice.py), started here by the master.

State that must be exact across the HTTP processes (rate-limit windows, who is analyzing what, Prometheus counts)
lives in a private directory made here, in the master, before the workers fork; the database is shared anyway.
Everything is configured through the same ESSENTIA_* variables as the app (see README).
"""
import gc
import os
import shutil
import sys

from backend.config import Settings
from backend.runtime.poolservice import make_state_dir, start_supervisor, stop_supervisor, sweep_abandoned_state_dirs

# gunicorn runs this file again on SIGHUP (reload): what must survive that is kept in the environment.
_OWN_DIR_VAR, _SUPERVISOR_VAR = "_ESSENTIA_OWN_STATE_DIR", "_ESSENTIA_POOL_SUPERVISOR_PID"

_settings = Settings.from_env()  # a bad ESSENTIA_* value stops start-up here, naming the variable
if _settings.redis_url:
    from backend.runtime.redis_state import require_reachable
    require_reachable(_settings.redis_url)  # several hosts' shared state: no start without it
if _settings.database_url:
    # Before any worker forks: hosts that start together migrate PostgreSQL in turn, and a server that cannot be
    # reached stops start-up here with a message naming ESSENTIA_DATABASE_URL (and a non-zero exit).
    from backend.storage import StorageUnavailable, open_store
    try:
        open_store(_settings).migrate()
    except StorageUnavailable as error:
        sys.exit(f"Cannot start: {error}")
if not _settings.shared_state_dir:
    sweep_abandoned_state_dirs()  # left by servers killed together with their pool supervisor
    os.environ[_OWN_DIR_VAR] = make_state_dir()  # mode 0700: this user only; names this master as its owner
    os.environ["ESSENTIA_SHARED_STATE_DIR"] = os.environ[_OWN_DIR_VAR]  # the workers' create_app() reads it
_state_dir = os.environ["ESSENTIA_SHARED_STATE_DIR"]
# prometheus_client reads this when first imported (in the workers, after the fork): counts go to files there.
_metrics_dir = os.path.join(_state_dir, "metrics")
os.makedirs(_metrics_dir, exist_ok=True)
if _SUPERVISOR_VAR not in os.environ:  # first start, not a reload: counts of an earlier run must not add up
    for _stale in os.listdir(_metrics_dir):
        if _stale.endswith(".db"):
            os.remove(os.path.join(_metrics_dir, _stale))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir

wsgi_app = "backend.app:create_app()"
bind = [f"[{_settings.host}]:{_settings.port}" if ":" in _settings.host else f"{_settings.host}:{_settings.port}"]
workers = _settings.http_processes
worker_class = "gthread"
threads = _settings.http_threads
timeout = 120            # a worker silent this long is restarted (covers a slow warm-up on a busy machine)
graceful_timeout = 30
keepalive = 5
accesslog = None          # the app writes one structured line per request (backend/web/hooks.py)
errorlog = "-"
loglevel = _settings.log_level.lower()

limit_request_field_size = 16 * 1024
control_socket_disable = True  # one shared path in $HOME would clash between instances; nothing here uses it


def on_starting(server):
    """Start the analysis pool before any HTTP worker: the workers wait for it to answer (it warms up first)."""
    os.environ[_SUPERVISOR_VAR] = str(start_supervisor(_state_dir, workers=_settings.workers,
                                                       queue_depth=_settings.queue_depth,
                                                       timeout=_settings.analysis_timeout))


def post_worker_init(worker):
    services = worker.wsgi.extensions["essentia"]
    services.executor.start(wait=True)
    # Everything built so far (Flask, numpy, the app: ~90,000 objects) lives as long as the worker: out of the
    # collector's sight, a full collection no longer walks it. One took 50-200 ms, every request of the process
    # waiting behind it: the largest single cause of the hit latency tail (PERFORMANCE_OPTIMIZATIONS.md).
    gc.freeze()
    services.counters.start_background_flush()
    from backend.web.hooks import request_log  # here, not at the top: the master need not import Flask
    request_log(worker.wsgi).start_background_flush()  # the request's thread no longer formats and writes its line
    if hasattr(services.quota, "start_background_flush"):  # the shared-table quota writes in batches
        services.quota.start_background_flush()


def worker_exit(server, worker):
    services = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("essentia")
    if services is not None:
        services.counters.flush()
        services.quota.flush()
        from backend.web.hooks import request_log
        request_log(worker.wsgi).flush()
        services.executor.shutdown()


def on_exit(server):
    if os.environ.get(_SUPERVISOR_VAR):
        stop_supervisor(int(os.environ[_SUPERVISOR_VAR]))
    if os.environ.get(_OWN_DIR_VAR):
        shutil.rmtree(os.environ[_OWN_DIR_VAR], ignore_errors=True)
