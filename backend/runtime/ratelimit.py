"""A fixed-window rate limiter that prunes itself in amortized O(1) and never holds more than `max_clients`.

Each client has one window: (start time, requests in it). Windows all last `window_seconds`, and a client's
entry is moved to the end of an ordered dict only when its new window starts, so the dict stays sorted by window
start. Expired windows therefore sit at the front, and each call drops the expired ones there: every entry is
dropped at most once, which makes pruning O(1) amortized per call, with no scan of all clients.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Hashable

from backend.roles import RateDecision
from backend.runtime.sharedtable import SharedTable


class RateLimiter:
    """At most `limit` requests per client in each `window_seconds` window. Thread-safe."""

    def __init__(self, limit: int, window_seconds: float = 60.0, *, max_clients: int = 100_000,
                 clock: Callable[[], float] = time.monotonic):
        if limit <= 0:
            raise ValueError("limit must be positive; switch the limiter off instead of setting 0")
        self.limit = limit
        self.window_seconds = window_seconds
        self.max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: OrderedDict[Hashable, list] = OrderedDict()  # client -> [window_start, count]

    def __len__(self) -> int:
        return len(self._windows)

    def hit(self, client: Hashable) -> RateDecision:
        """Count one request by `client` and say whether it may proceed."""
        now = self._clock()
        with self._lock:
            self._prune(now)
            window = self._windows.get(client)
            if window is None:
                if len(self._windows) >= self.max_clients:
                    # Bounded memory: forget the client whose window started longest ago.
                    self._windows.popitem(last=False)
                window = self._windows[client] = [now, 0]
            if window[1] >= self.limit:
                return RateDecision(False, self.limit, 0, window[0] + self.window_seconds - now)
            window[1] += 1
            return RateDecision(True, self.limit, self.limit - window[1], window[0] + self.window_seconds - now)

    def _prune(self, now: float) -> None:
        horizon = now - self.window_seconds
        windows = self._windows
        while windows:
            client, window = next(iter(windows.items()))
            if window[0] > horizon:
                break
            del windows[client]


class SharedRateLimiter:
    """The same fixed-window limit, kept in a SharedTable so that several HTTP processes count together.

    Windows start at a client's first request, as in RateLimiter. The clock must be one every process shares
    (time.monotonic is system-wide on Linux). Memory is the table's, fixed: when a probe run holds only live
    windows, the one that started longest ago is forgotten, as RateLimiter does at its bound.
    """

    def __init__(self, limit: int, window_seconds: float = 60.0, *, table: SharedTable,
                 clock: Callable[[], float] = time.monotonic):
        if limit <= 0:
            raise ValueError("limit must be positive; switch the limiter off instead of setting 0")
        self.limit = limit
        self.window_seconds = window_seconds
        self.table = table
        self._clock = clock

    @property
    def max_clients(self) -> int:
        return self.table.slots

    def __len__(self) -> int:
        now = self._clock()
        return self.table.count(lambda start, count: self._live(start, now))

    def _live(self, start: float, now: float) -> bool:
        # `now` is read before the lock, so another process may have started a window a moment "later". A start
        # a whole window ahead, though, comes from before a reboot (the monotonic clock restarted): not live.
        return start - self.window_seconds < now < start + self.window_seconds

    def hit(self, client: Hashable) -> RateDecision:
        """Count one request by `client` and say whether it may proceed."""
        now = self._clock()
        limit, window_seconds = self.limit, self.window_seconds
        answer: list[RateDecision] = []

        def change(start: float, count: int, found: bool):
            if not (found and self._live(start, now)):
                start, count = now, 0
            if count >= limit:
                answer.append(RateDecision(False, limit, 0, min(window_seconds, start + window_seconds - now)))
                return None
            count += 1
            answer.append(RateDecision(True, limit, limit - count, min(window_seconds, start + window_seconds - now)))
            return start, count

        self.table.update(str(client), change, is_free=lambda start, count: not self._live(start, now),
                          eviction_rank=lambda start, count: start)
        return answer[0]
