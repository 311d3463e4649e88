"""Cache hit/miss counters and API usage records, buffered in memory and written in batches.

A cache hit should cost a hash, one indexed SELECT and JSON, not a write transaction. So counters and usage rows
collect here and reach the database together, at most every `flush_seconds`: on /stats, at exit, and either on the
next request after that (one process) or, under gunicorn, from a background thread only (so an idle HTTP process
does not sit on its counts, and no request waits for a write).
With several HTTP processes the hit and miss counts wait in shared memory (SharedTally), so /stats is exact
whichever process answers; usage records wait in their own process. What a hard kill can lose is at most the
last `flush_seconds` of counts, never a stored analysis.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from backend.roles import Store, Tally
from backend.runtime.periodic import every
from backend.runtime.tally import LocalTally
from backend.timeutil import utc_now_iso

log = logging.getLogger(__name__)


class BufferedCounters:
    def __init__(self, store: Store, *, flush_seconds: float = 2.0, clock: Callable[[], float] = time.monotonic,
                 tally: Tally | None = None):
        self._store = store
        self.flush_seconds = flush_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._tally = tally or LocalTally()
        self._usage: list[tuple] = []
        self._last_flush = clock()
        self._background = False  # True once start_background_flush runs: requests then never flush

    def count_hit(self) -> None:
        self._tally.add("hits")
        self._flush_inline_if_due()

    def count_miss(self) -> None:
        self._tally.add("misses")
        self._flush_inline_if_due()

    def record_usage(self, key_id: int, endpoint: str, status: int) -> None:
        with self._lock:
            self._usage.append((key_id, endpoint, status, utc_now_iso()))
        self._flush_inline_if_due()

    def _flush_inline_if_due(self) -> None:
        """Without a background flusher, the request that finds a flush due makes it. With one (gunicorn), no
        request ever waits for the write transaction (nor for another process's, on SQLite's lock): that wait
        was part of the hits' latency tail."""
        if not self._background:
            self.flush_if_due()

    def pending(self) -> tuple[int, int]:
        """Hits and misses not yet written to the database."""
        return self._tally.read("hits"), self._tally.read("misses")

    def start_background_flush(self) -> None:
        """Flush every `flush_seconds` from a daemon thread of this process (started after gunicorn's fork)."""
        if self.flush_seconds <= 0:
            return
        self._background = True
        every(self.flush_seconds, self.flush_if_due, name="counters-flush")

    def flush_if_due(self) -> None:
        if self._clock() - self._last_flush >= self.flush_seconds:
            self.flush()

    @contextmanager
    def settled(self) -> Iterator[None]:
        """Flush, then keep every other flush (in this process, and in every process or host that shares the
        tally) waiting until the caller has read the store: the store's counts plus pending() are then exact."""
        with self._flush_lock, self._tally.batch():
            self._flush_held()
            yield

    def flush(self) -> None:
        """Write what has been counted. Concurrent callers do not flush twice. Never raises (it runs after
        responses and in a background thread): what cannot be written now, e.g. with the tally's Redis gone,
        waits for the next flush."""
        if not self._flush_lock.acquire(blocking=False):
            return
        try:
            with self._tally.batch(wait=False) as held:
                if held:  # else another process is flushing: these counts go with the next batch
                    self._flush_held()
        except Exception:
            log.exception("could not flush counters; they wait for the next flush")
        finally:
            self._flush_lock.release()

    def _flush_held(self) -> None:
        """The flush itself, with both locks held."""
        hits = self._tally.take("hits")
        try:
            misses = self._tally.take("misses")
        except Exception:
            self._tally.add("hits", hits)  # the tally failed between the two: put the first back
            raise
        with self._lock:
            usage, self._usage = self._usage, []
            self._last_flush = self._clock()
        if not (hits or misses or usage):
            return
        try:
            with self._store.connection(write=True) as conn:
                if hits or misses:
                    self._store.add_to_stats(conn, hits=hits, misses=misses, now=utc_now_iso())
                if usage:
                    self._store.record_usage(conn, usage)
        except Exception:
            log.exception("could not write counters; keeping them for the next flush")
            with self._lock:
                self._usage[:0] = usage
            self._tally.add("hits", hits)
            self._tally.add("misses", misses)
