"""Hit and miss counts not yet written to the database, kept where every HTTP process of a server can add to
and read them: LocalTally when one process serves, SharedTally (a file per process, read by all) when several
do. BufferedCounters (backend/storage/counters.py) takes them out in batches and writes them."""
from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import threading
from typing import Callable, Iterator

from backend.runtime.claims import process_alive


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
    """A folder that no longer exists (the server is being torn down and this process never counted there) holds
    nothing this process could take: 0, so that an exiting worker's last flush still writes its usage records."""
    try:
        return take()
    except FileNotFoundError:
        return 0


_NAMES = {"hits": 0, "misses": 1}  # index of each count; its "taken" count sits len(_NAMES) further on
_FILE_BYTES = 8 * 2 * len(_NAMES)


class _CountsFile:
    """One process's counts, in a small file every process can map: int64 [added..., taken...]. `added` is written
    by its process only, `taken` only by a taker holding the tally's lock, so neither needs a lock between
    processes to write; an aligned 8-byte value is read and written whole (one load or store on x86-64 and arm64),
    so a reader never sees half of one."""

    def __init__(self, path: str):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _FILE_BYTES:
                os.ftruncate(fd, _FILE_BYTES)  # a new file reads as zeros; an adopted one keeps its counts
            self._map = mmap.mmap(fd, _FILE_BYTES)
            self.inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)  # the mapping stays valid without the descriptor
        self.counts = memoryview(self._map).cast("q")
        self.lock = threading.Lock()  # between this process's threads, around a read-modify-write of `added`

    def pending(self, index: int) -> int:
        return self.counts[index] - self.counts[index + len(_NAMES)]

    def settled(self) -> bool:
        return all(self.pending(index) == 0 for index in _NAMES.values())

    def close(self) -> None:
        self.counts.release()
        self._map.close()


# Files mapped by this process, by path (its own and other processes'): one mapping per file however many
# SharedTally objects use it. A forked child starts afresh: its parent's file is not its own.
_MAPPED: dict[str, _CountsFile] = {}
_MAPPED_LOCK = threading.Lock()
_FORKS = [0]  # bumped in a forked child, so that a SharedTally there finds its own file anew


def _forget_after_fork() -> None:
    _MAPPED.clear()
    _FORKS[0] += 1


os.register_at_fork(after_in_child=_forget_after_fork)


class SharedTally:
    """The same counts, exact across the HTTP processes of a host, without a lock between processes per count.

    Each process adds to counts of its own (a file `<path>.pid-<pid>`), under a lock of its own
    threads only: a hit used to take the table's flock, and a holder descheduled inside it stalled every process's
    hits (PERFORMANCE_OPTIMIZATIONS.md, section 8). Reading and taking, once per flush and per /stats, go over every
    process's file under the tally's flock: what each has added minus what was taken from it. A file whose process
    has exited is removed once everything in it has been taken (a new process that happens to get its pid adopts
    it instead, counts and all, which is as exact).
    """

    def __init__(self, path: str | os.PathLike):
        """`path`: the files' common name in the host's shared-state folder (`<path>.pid-<pid>`, `<path>.tally`,
        `<path>.batch`)."""
        self.path = str(path)
        self._folder, base = os.path.split(self.path)
        self._prefix = base + ".pid-"
        self._own_file: tuple[int, _CountsFile] | None = None  # (fork generation, this process's file)

    def _file(self, name: str, *, inode: int | None = None) -> _CountsFile:
        """The mapping of a file, made once; made again when the path now names another file (`inode`): one
        removed after its process exited, then made anew by a process that got the same pid."""
        path = os.path.join(self._folder, name)
        counts = _MAPPED.get(path)
        if counts is None or (inode is not None and counts.inode != inode):
            with _MAPPED_LOCK:
                counts = _MAPPED.get(path)
                if counts is None or (inode is not None and counts.inode != inode):
                    if counts is not None:
                        counts.close()  # only takers, under the tally's flock, use another process's file
                    counts = _MAPPED[path] = _CountsFile(path)
        return counts

    def _own(self) -> _CountsFile:
        own = self._own_file
        if own is not None and own[0] == _FORKS[0]:
            return own[1]
        generation = _FORKS[0]
        with self._locked():  # adopting a file is kept apart from a taker deciding to remove it
            counts = self._file(f"{self._prefix}{os.getpid()}")
        self._own_file = (generation, counts)
        return counts

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The tally's flock, between processes and threads alike (a descriptor per call)."""
        fd = os.open(self.path + ".tally", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _files(self) -> Iterator[tuple[str, int]]:
        for name in os.listdir(self._folder):
            if name.startswith(self._prefix) and name[len(self._prefix):].isdigit():
                yield name, int(name[len(self._prefix):])

    def add(self, name: str, amount: int = 1) -> None:
        index = _NAMES[name]
        counts = self._own()
        with counts.lock:
            counts.counts[index] += amount

    def take(self, name: str) -> int:
        return _zero_if_gone(lambda: self._sum(name, take=True))

    def read(self, name: str) -> int:
        return self._sum(name, take=False)

    def _sum(self, name: str, *, take: bool) -> int:
        index, total = _NAMES[name], 0
        with self._locked():
            for file_name, pid in list(self._files()):
                counts = self._file(file_name, inode=os.stat(os.path.join(self._folder, file_name)).st_ino)
                pending = counts.pending(index)
                total += pending
                if take and pending:
                    counts.counts[index + len(_NAMES)] += pending
                if take and pid != os.getpid() and counts.settled() and not process_alive(pid):
                    os.unlink(os.path.join(self._folder, file_name))
                    with _MAPPED_LOCK:
                        _MAPPED.pop(os.path.join(self._folder, file_name)).close()
        return total

    @contextlib.contextmanager
    def batch(self, *, wait: bool = True) -> Iterator[bool]:
        """An exclusive lock on a file beside the counts, held by one process of the host at a time (the kernel
        drops it if the holder dies). Opened per call: a descriptor inherited across fork shares its lock."""
        try:
            fd = os.open(self.path + ".batch", os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            # the server is being torn down and its folder is gone: there are no files left to take counts from,
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
