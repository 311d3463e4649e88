"""The Invalidation role for every process that opens one SQLite file (gunicorn's HTTP workers, the CLI): a change
counter in a small memory-mapped file beside the database, `<database>-changes`, the way SQLite keeps its own
`-wal` and `-shm` files there.

One counter per kind of record: `-changes` for analysis rows, `-key-changes` for API keys. A process that
commits a change adds one to the counter. A process about to serve from its near cache (or its kept key states)
first compares the counter with the value it last saw (an 8-byte read from shared memory, well under a
microsecond, no lock) and forgets every kept row when it moved. So a change is seen by every process from its next
request on, whoever made it. Changes are rare (corrections, deletions, a cleared cache, metadata filled in), so
forgetting all rows on any change costs no more than one re-read of each row that is asked for again.
"""
from __future__ import annotations

import fcntl
import logging
import mmap
import os
import struct
import threading
from typing import Callable, Iterable

log = logging.getLogger(__name__)

_COUNTER = struct.Struct("<Q")


class FileInvalidation:
    """A change counter shared through `path`; see the module docstring."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self._pid: int | None = None
        self._map: mmap.mmap | None = None
        self._seen: int | None = None
        self._listeners: list[Callable[[], None]] = []  # forget_all of each listener
        self._attach_lock = threading.Lock()

    def _mapped(self) -> mmap.mmap:
        # Each process maps the file itself (after gunicorn's fork). The map keeps a duplicate of the descriptor,
        # hence the explicit unlock: closing ours alone would leave the flock held.
        if self._pid == os.getpid() and self._map is not None:
            return self._map
        with self._attach_lock:
            if self._pid != os.getpid() or self._map is None:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    try:
                        if os.fstat(fd).st_size != _COUNTER.size:
                            os.ftruncate(fd, _COUNTER.size)  # a new or foreign file: a new count, all forget
                        self._map = mmap.mmap(fd, _COUNTER.size)
                    finally:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                finally:
                    os.close(fd)
                self._pid = os.getpid()
        return self._map

    def _count(self) -> int:
        return _COUNTER.unpack_from(self._mapped(), 0)[0]

    def listen(self, forget_id: Callable[[int], None], forget_all: Callable[[], None]) -> None:
        """Every change is heard as a change to all records (`forget_id` is not needed)."""
        self._listeners.append(forget_all)
        self._catch_up()

    def announce(self, ids: Iterable[int]) -> None:
        self.announce_all()

    def announce_all(self) -> None:
        try:
            mapped = self._mapped()
            fd = os.open(self.path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # the add must not lose another process's add
                try:
                    _COUNTER.pack_into(mapped, 0, (_COUNTER.unpack_from(mapped, 0)[0] + 1) % (1 << 64))
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        except (OSError, ValueError):
            log.warning("could not count a change in %s; other processes see it when what they keep expires",
                        self.path, exc_info=True)
            self._forget()  # this process at least
            return
        self._catch_up()  # this process forgets at once

    def close(self) -> None:
        """Unmap the file (its duplicate descriptor goes with it); a later use maps it again."""
        with self._attach_lock:
            if self._map is not None and self._pid == os.getpid():
                self._map.close()
            self._map, self._pid = None, None

    @property
    def connected(self) -> bool:
        """Asked before every near-cache read and keep: True once this process has caught up with the counter
        (forgetting everything if it moved); False if the file cannot be read, so nothing is served or kept."""
        return self._catch_up()

    def _catch_up(self) -> bool:
        try:
            count = self._count()
        except (OSError, ValueError):
            return False
        if count != self._seen:
            self._forget()  # before _seen moves: no other thread may take the new count as caught up early
            self._seen = count
        return True

    def _forget(self) -> None:
        for forget_all in list(self._listeners):
            forget_all()
