"""GET /health (liveness, no key needed) and GET /stats (cache counters)."""
from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, jsonify

from backend import __version__
from backend.storage import get_db_connection, get_store
from backend.timeutil import utc_now_iso
from backend.web.auth import require_api_key

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    services = current_app.extensions["essentia"]
    return jsonify(status="healthy", running=True, port=services.settings.port, version=__version__,
                   uptime=round(time.monotonic() - services.started_at, 3), timestamp=utc_now_iso())


@bp.get("/stats")
@require_api_key()
def stats():
    services = current_app.extensions["essentia"]
    store = get_store()
    # While settled, no process (on any host sharing the tally) is between taking counts and committing them, so
    # the stored counts plus those still pending are exact, whichever process or host answers.
    with services.counters.settled(), get_db_connection() as conn:
        counts = store.read_stats(conn)
        songs = store.count_analyses(conn)
        pending_hits, pending_misses = services.counters.pending()
    hits, misses = counts["cache_hits"] + pending_hits, counts["cache_misses"] + pending_misses
    total = hits + misses
    return jsonify(
        total_analyses=total,
        cache_hits=hits,
        cache_misses=misses,
        cache_hit_rate=f"{(100.0 * hits / total) if total else 0.0:.1f}%",
        last_updated=counts["last_updated"],
        total_cached_songs=songs,
        queue_depth=services.executor.pending(),
    )


@bp.get("/metrics")
@require_api_key(admin=True)
def metrics():
    """Prometheus text format; in production mode an admin key is needed, like other operator endpoints."""
    services = current_app.extensions["essentia"]
    return Response(services.metrics.render(), content_type=services.metrics.content_type)
