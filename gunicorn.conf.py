"""gunicorn settings for EssentiaServer: `gunicorn -c gunicorn.conf.py` (what ./serve.sh runs).

One worker process owns HTTP, with threads for concurrent requests; CPU-heavy decoding and analysis run in that
worker's process pool (ESSENTIA_WORKERS processes), so the in-memory rate limiter and key cache are exact.
Everything is configured through the same ESSENTIA_* variables as the app (see README).
"""
from backend.config import Settings

_settings = Settings.from_env()  # a bad ESSENTIA_* value stops start-up here, naming the variable

wsgi_app = "backend.app:create_app()"
bind = [f"[{_settings.host}]:{_settings.port}" if ":" in _settings.host else f"{_settings.host}:{_settings.port}"]
workers = 1
worker_class = "gthread"
threads = _settings.http_threads
timeout = 120            # a worker silent this long is restarted (covers a slow warm-up on a busy machine)
graceful_timeout = 30
keepalive = 5
accesslog = None          # the app writes one structured line per request (backend/security.py)
errorlog = "-"
loglevel = _settings.log_level.lower()

limit_request_field_size = 16 * 1024
control_socket_disable = True  # one shared path in $HOME would clash between instances; nothing here uses it


def post_worker_init(worker):
    """Start and warm the analysis pool in the serving process, after the fork, before the first request."""
    worker.wsgi.extensions["essentia"].executor.start(wait=True)


def worker_exit(server, worker):
    services = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("essentia")
    if services is not None:
        services.counters.flush()
        services.executor.shutdown()
