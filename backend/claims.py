"""Which process is analyzing what: single flight across the HTTP processes of one server.

SingleFlight (executor.py) makes concurrent requests in one process share one analysis. With several HTTP
processes, the first process to claim a cache key here analyzes it; the others wait until its result is in the
database (they poll it) or until the claim ends without one (the analysis failed, or its process died: the claim
names its process, so a claim whose process is gone is free at once, and every claim expires).
"""
from __future__ import annotations

import os
import time
from typing import Callable

from backend.sharedtable import SharedTable


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ContentClaims:
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
