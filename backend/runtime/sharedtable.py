"""A small fixed-size table in a memory-mapped file, shared by the gunicorn worker processes of one server.

With several HTTP processes, state that must be exact across all of them (rate-limit windows, who is analyzing
what) cannot live in one process's dict. This table holds it in shared memory instead: a file mapped by every
process, each record (64-bit key hash, a float, an integer), found by hashing with a short linear probe.

Why it is safe:
- Mutual exclusion is flock(2) on the mapped file (between processes; each process opens the file itself, so
  each has its own lock) plus a threading.Lock (between the threads of one process, which flock does not
  separate). The kernel drops a flock when its process dies, so a worker killed inside the critical section
  cannot wedge the others.
- Memory is fixed by the slot count, whatever the number of distinct keys: callers decide what a free slot is
  (an expired window, a released claim) and which live record to evict when a probe run is full.
- A record written half-way by a process that died mid-update is at worst one stale or lost count.
- Tables whose records must change together (a request's rate-limit window and its key's quota) can share one
  lock (`lock_of`): `held()` then covers updates of both under one flock instead of one each.
"""
from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

_MAGIC = b"ESSTAB01"
_HEADER = struct.Struct("<8sQ")          # magic, slot count
_RECORD = struct.Struct("<Qdq")          # key hash (0 = never used), a float, an integer
PROBES = 16                              # slots examined per operation: O(1) per call


def key_hash(key: str) -> int:
    """A stable 64-bit hash (Python's hash() differs between processes); never 0, which marks an unused slot."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") or 1


class SharedTable:
    """Records keyed by a string's 64-bit hash, in a file every process of the server maps."""

    def __init__(self, path: str | os.PathLike, slots: int = 1 << 17, *, lock_of: SharedTable | None = None):
        """`lock_of`: take that table's lock (its thread lock and the flock of its file) instead of one's own."""
        if slots <= 0 or slots & (slots - 1):
            raise ValueError("slots must be a power of two")
        self.path = str(path)
        self.slots = slots
        self._size = _HEADER.size + slots * _RECORD.size
        self._lock_owner: SharedTable = lock_of._lock_owner if lock_of is not None else self
        self._thread_lock = threading.RLock()  # reentrant: updates run inside a held() of the same thread
        self._depth = 0                        # nesting of held() by the thread that holds the lock (owner only)
        self._pid: int | None = None
        self._fd = -1
        self._map: mmap.mmap | None = None

    @property
    def nbytes(self) -> int:
        return self._size

    def _attach(self) -> mmap.mmap:
        # Each process maps the file itself (after gunicorn's fork): its own descriptor is its own flock. The folder
        # is made before any worker starts; once it is gone the server is being torn down, and a late attach (an
        # exiting worker's last flush) must fail rather than bring the folder back (FileNotFoundError).
        if self._pid == os.getpid() and self._map is not None:
            return self._map
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size != self._size:
                    os.ftruncate(fd, 0)           # another layout (or a new file): start empty
                    os.ftruncate(fd, self._size)
                mapped = mmap.mmap(fd, self._size)
                if mapped[:_HEADER.size] != _HEADER.pack(_MAGIC, self.slots):
                    mapped[:] = bytes(self._size)
                    _HEADER.pack_into(mapped, 0, _MAGIC, self.slots)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._map, self._pid = fd, mapped, os.getpid()
        return mapped

    def shares_lock_with(self, other: SharedTable) -> bool:
        return self._lock_owner is other._lock_owner

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold this table's lock for a block: every update in it, of this table or of one sharing its lock, by
        this thread, takes no further lock. The flock is taken once, by the outermost held()."""
        owner = self._lock_owner
        with owner._thread_lock:
            if owner._depth == 0:
                owner._attach()
                fcntl.flock(owner._fd, fcntl.LOCK_EX)
            owner._depth += 1
            try:
                yield
            finally:
                owner._depth -= 1
                if owner._depth == 0:
                    fcntl.flock(owner._fd, fcntl.LOCK_UN)

    @contextmanager
    def _locked(self) -> Iterator[mmap.mmap]:
        with self.held():
            yield self._attach()  # a table on another's lock maps its own file (its init takes that file's flock)

    def update(self, key: str, change: Callable[[float, int, bool], tuple[float, int] | None],
               is_free: Callable[[float, int], bool], eviction_rank: Callable[[float, int], float]) -> None:
        """Atomically replace the record of `key` by `change(number, count, found)`.

        `found` is False when `key` has no record; `change` then sees (0.0, 0). It returns the new (number,
        count), or None to leave the table as it is. A new record takes the first slot of the probe run that
        `is_free` says holds nothing live, else the one with the lowest `eviction_rank`.
        """
        wanted = key_hash(key)
        mask = self.slots - 1
        with self._locked() as mapped:
            target = free = evict = None
            evict_rank = 0.0
            for step in range(PROBES):
                slot = (wanted + step) & mask
                offset = _HEADER.size + slot * _RECORD.size
                stored, number, count = _RECORD.unpack_from(mapped, offset)
                if stored == wanted:
                    target, found = offset, (number, count)
                    break
                if stored == 0 or is_free(number, count):
                    if free is None:
                        free = offset
                    if stored == 0:
                        break  # never used: the key cannot sit further along the run
                elif free is None:
                    rank = eviction_rank(number, count)
                    if evict is None or rank < evict_rank:
                        evict, evict_rank = offset, rank
            if target is not None:
                new = change(*found, True)
            else:
                target = free if free is not None else evict
                new = change(0.0, 0, False)
            if new is not None:
                _RECORD.pack_into(mapped, target, wanted, new[0], new[1])

    def remove(self, key: str, *, only_if: Callable[[float, int], bool] = lambda number, count: True) -> None:
        """Free the record of `key` (if `only_if` agrees)."""
        self.update(key, lambda number, count, found: (0.0, 0) if found and only_if(number, count) else None,
                    is_free=lambda number, count: False, eviction_rank=lambda number, count: 0.0)

    def count(self, live: Callable[[float, int], bool]) -> int:
        """How many records `live` accepts (a full scan: for tests and benchmarks, not per request)."""
        with self._locked() as mapped:
            total = 0
            for stored, number, count in _RECORD.iter_unpack(mapped[_HEADER.size:]):
                if stored and live(number, count):
                    total += 1
            return total

    def close(self) -> None:
        with self._lock_owner._thread_lock:
            if self._map is not None and self._pid == os.getpid():
                self._map.close()
                os.close(self._fd)
            self._map, self._fd, self._pid = None, -1, None
