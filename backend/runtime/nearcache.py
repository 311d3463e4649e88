"""A per-process copy of recently hit analysis rows, so that a cache hit need not ask the database; used only where
every change to a row is announced to every process, which makes it forget that row (with Redis:
backend/runtime/redis_state.py RedisAnalysisInvalidation; on a SQLite file: backend/runtime/filechanges.py, whose
counter is read before each use, so there a change is seen at the process's next request).

How stale an answer can be:
- after a change committed on any host, until its message reaches this process (the changing process forgets
  at once; others within the message's delivery, about 0.35 ms on one machine). A row read from the store while a
  change was announced is not kept (the generation below), so a late reader cannot put an old row back;
- while this process's subscriber is disconnected, nothing is served from here or kept (`usable`), and after it
  reconnects everything is forgotten, since messages may have been missed;
- a change whose message could not be sent (Redis unreachable from the changing host only) is seen within
  `max_age` seconds, the longest any row is kept.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Iterable

from backend.roles import Row


class NearCache:
    """A bounded LRU of cache key -> stored row, each kept at most `max_age` seconds."""

    def __init__(self, *, max_rows: int, max_age: float, usable: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.monotonic):
        self.max_rows = max_rows
        self.max_age = max_age
        self._usable = usable
        self._clock = clock
        self._lock = threading.Lock()
        self._rows: OrderedDict[str, tuple[float, Row]] = OrderedDict()  # cache key -> (expires, row)
        self._keys_by_id: dict[int, str] = {}
        self._generation = 0  # bumped by every forget: a row read before it must not be kept

    def get_or_load(self, cache_key: str, load: Callable[[], Row | None]) -> Row | None:
        """The kept row of `cache_key`, else `load()` (kept for the next time unless a change was announced
        while it ran)."""
        if not self._usable():
            return load()
        now = self._clock()
        with self._lock:
            entry = self._rows.get(cache_key)
            if entry is not None and entry[0] > now:
                self._rows.move_to_end(cache_key)
                return entry[1]
            generation = self._generation
        row = load()
        if row is not None:
            self._keep(cache_key, row, generation, now + self.max_age)
        return row

    def _keep(self, cache_key: str, row: Row, generation: int, expires: float) -> None:
        # Asked before the lock: asking may make this cache forget (a change counter that moved), which takes it.
        if not self._usable():
            return
        with self._lock:
            if generation != self._generation:
                return
            self._rows[cache_key] = (expires, row)
            self._rows.move_to_end(cache_key)
            self._keys_by_id[row["id"]] = cache_key
            while len(self._rows) > self.max_rows:
                _, (_, oldest) = self._rows.popitem(last=False)
                self._keys_by_id.pop(oldest["id"], None)

    def forget_ids(self, analysis_ids: Iterable[int]) -> None:
        """These analyses changed or were deleted."""
        with self._lock:
            self._generation += 1
            for analysis_id in analysis_ids:
                cache_key = self._keys_by_id.pop(analysis_id, None)
                if cache_key is not None:
                    self._rows.pop(cache_key, None)

    def forget_all(self) -> None:
        """Every analysis may have changed (the cache was cleared, or messages may have been missed)."""
        with self._lock:
            self._generation += 1
            self._rows.clear()
            self._keys_by_id.clear()

    def __len__(self) -> int:
        return len(self._rows)
