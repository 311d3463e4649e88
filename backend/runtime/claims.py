"""Single flight: one analysis per song, however many requests ask for it at once.

Two layers, because threads and processes need different tools:
- SingleFlight: the threads of one process share one execution and its result (or its exception).
- Claims (backend/roles.py): which process analyzes a cache key. SingleProcessClaims when one process serves
  (SingleFlight alone is then exact); ContentClaims when several HTTP processes of one host serve: the first
  to claim a key analyzes it, the others wait until its result is in the database or the claim ends without
  one (the analysis failed, or its process died: a claim names its process, so a claim whose process is gone
  is free at once, and every claim expires).
"""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

from backend.runtime.sharedtable import SharedTable

POLL_SECONDS = 0.025  # how often a process waiting on another's claim looks again (a table cannot notify)


def _pause(seconds: float) -> None:
    time.sleep(max(0.0, min(seconds, POLL_SECONDS)))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SingleProcessClaims:
    """Claims when one process is the whole server: every claim is this process's, because SingleFlight already
    lets only one of its threads analyze a key at a time."""

    def try_claim(self, key: str, ttl: float) -> bool:
        return True

    def release(self, key: str) -> None:
        return None

    def wait(self, key: str, seconds: float) -> None:
        _pause(seconds)


class ContentClaims:
    """Claims kept in a SharedTable that every HTTP process of this host maps; the owner is a process id."""

    def __init__(self, table: SharedTable, *, clock: Callable[[], float] = time.monotonic):
        self.table = table
        self._clock = clock

    def _held(self, expires: float, owner: int, now: float) -> bool:
        return owner != 0 and now < expires and _process_alive(owner)

    def try_claim(self, key: str, ttl: float) -> bool:
        """Claim `key` for this process for at most `ttl` seconds; False if another live process holds it."""
        now, me = self._clock(), os.getpid()
        claimed: list[bool] = []

        def change(expires: float, owner: int, found: bool):
            if found and owner != me and self._held(expires, owner, now):
                claimed.append(False)
                return None
            claimed.append(True)
            return now + ttl, me

        self.table.update(key, change, is_free=lambda expires, owner: not self._held(expires, owner, now),
                          eviction_rank=lambda expires, owner: expires)
        return claimed[0]

    def release(self, key: str) -> None:
        me = os.getpid()
        self.table.remove(key, only_if=lambda expires, owner: owner == me)

    def wait(self, key: str, seconds: float) -> None:
        """A table cannot notify a waiter: sleep one short poll interval (at most `seconds`)."""
        _pause(seconds)


class SingleFlight:
    """Concurrent calls with the same key share one execution: the first runs it, the rest wait for its result
    (or its exception). Once it finishes the key is free again."""

    def __init__(self):
        self._lock = threading.Lock()
        self._flights: dict[str, Future] = {}

    def do(self, key: str, fn: Callable[[], Any]) -> tuple[Any, bool]:
        """Run `fn` once for all concurrent callers of `key`; returns (result, shared) where shared is True for
        callers that waited on another's execution."""
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = Future()
        if not leader:
            return flight.result(), True
        try:
            result = fn()
        except BaseException as error:
            flight.set_exception(error)
            raise
        else:
            flight.set_result(result)
            return result, False
        finally:
            with self._lock:
                del self._flights[key]
