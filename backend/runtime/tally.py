"""Hit and miss counts not yet written to the database, kept where every HTTP process of a server can add to
and read them: LocalTally when one process serves, SharedTally (a SharedTable) when several do. BufferedCounters
(backend/storage/counters.py) takes them out in batches and writes them."""
from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from typing import Callable, Iterator

from backend.runtime.sharedtable import SharedTable


class LocalTally:
    """Hit and miss counts not yet written, in this process (one process serves)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts = {"hits": 0, "misses": 0}

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def take(self, name: str) -> int:
        with self._lock:
            taken, self._counts[name] = self._counts[name], 0
            return taken

    def read(self, name: str) -> int:
        return self._counts[name]

    def batch(self, *, wait: bool = True) -> contextlib.AbstractContextManager[bool]:
        """One process: BufferedCounters' own flush lock already keeps batches apart."""
        return contextlib.nullcontext(True)


def _zero_if_gone(take: Callable[[], int]) -> int:
    """A table file that no longer exists (the server is being torn down and this process never mapped it) holds
    nothing this process could take: 0, so that an exiting worker's last flush still writes its usage records."""
    try:
        return take()
    except FileNotFoundError:
        return 0


class SharedTally:
    """The same counts in a SharedTable, so that /stats, whichever HTTP process answers it, includes what every
    process has counted and not yet written."""

    def __init__(self, table: SharedTable):
        self.table = table

    def _update(self, name: str, change: Callable[[int], int | None]) -> int:
        seen: list[int] = []

        def record(_number: float, count: int, _found: bool):
            seen.append(count)
            new = change(count)
            return None if new is None else (0.0, new)

        self.table.update(name, record, is_free=lambda number, count: False, eviction_rank=lambda n, c: 0.0)
        return seen[0]

    def add(self, name: str, amount: int = 1) -> None:
        self._update(name, lambda count: count + amount)

    def take(self, name: str) -> int:
        return _zero_if_gone(lambda: self._update(name, lambda count: 0))

    def read(self, name: str) -> int:
        return self._update(name, lambda count: None)

    @contextlib.contextmanager
    def batch(self, *, wait: bool = True) -> Iterator[bool]:
        """An exclusive lock on a file beside the table, held by one process of the host at a time (the kernel
        drops it if the holder dies). Opened per call: a descriptor inherited across fork shares its lock."""
        try:
            fd = os.open(self.table.path + ".batch", os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            # the server is being torn down and its folder is gone: there is no table left to take counts from,
            # so no other process to keep apart from (the flush still writes this process's usage rows)
            yield True
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing releases the lock
