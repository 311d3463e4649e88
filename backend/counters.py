"""Cache hit/miss counters and API usage records, buffered in memory and written in batches.

A cache hit should cost a hash, one indexed SELECT and JSON, not a write transaction. So counters and usage rows
collect here and reach the database together, at most every `flush_seconds` (on the next request after that, on
/stats, and at exit). One gunicorn worker process owns HTTP, so these in-memory counts are exact; what a hard kill
can lose is at most the last `flush_seconds` of counts, never a stored analysis.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from backend import store
from backend.db import Database
from backend.timeutil import utc_now_iso

log = logging.getLogger(__name__)


class BufferedCounters:
    def __init__(self, db: Database, *, flush_seconds: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self._db = db
        self.flush_seconds = flush_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        self._usage: list[tuple] = []
        self._last_flush = clock()

    def count_hit(self) -> None:
        with self._lock:
            self._hits += 1
        self.flush_if_due()

    def count_miss(self) -> None:
        with self._lock:
            self._misses += 1
        self.flush_if_due()

    def record_usage(self, key_id: int, endpoint: str, status: int) -> None:
        with self._lock:
            self._usage.append((key_id, endpoint, status, utc_now_iso()))
        self.flush_if_due()

    def pending(self) -> tuple[int, int]:
        """Hits and misses not yet written to the database."""
        with self._lock:
            return self._hits, self._misses

    def flush_if_due(self) -> None:
        if self._clock() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write what has been counted. Concurrent callers do not flush twice; on failure nothing is lost."""
        if not self._flush_lock.acquire(blocking=False):
            return
        try:
            with self._lock:
                hits, misses, usage = self._hits, self._misses, self._usage
                self._hits, self._misses, self._usage = 0, 0, []
                self._last_flush = self._clock()
            if not (hits or misses or usage):
                return
            try:
                with self._db.connection(write=True) as conn:
                    if hits or misses:
                        store.add_to_stats(conn, hits=hits, misses=misses, now=utc_now_iso())
                    if usage:
                        store.record_usage(conn, usage)
            except Exception:
                log.exception("could not write counters; keeping them for the next flush")
                with self._lock:
                    self._hits += hits
                    self._misses += misses
                    self._usage[:0] = usage
        finally:
            self._flush_lock.release()
