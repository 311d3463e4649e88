"""State shared by several HTTP processes (backend/runtime/sharedtable.py): the rate limiter and the analysis claims must
count across processes exactly, stay within their fixed memory, and survive a process killed at any moment."""
from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import struct
import time

import pytest

from backend.runtime.claims import ContentClaims
from backend.runtime.ratelimit import SharedRateLimiter
from backend.runtime.sharedtable import SharedTable
from backend.runtime.tally import SharedTally

FORK = multiprocessing.get_context("fork")


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _hammer(path: str, limit: int, hits: int, results) -> None:
    limiter = SharedRateLimiter(limit, 60.0, table=SharedTable(path, slots=1024))
    results.put(sum(limiter.hit("key:7").allowed for _ in range(hits)))


def test_processes_share_one_limit_exactly(tmp_path):
    path = str(tmp_path / "limits")
    results = FORK.Queue()
    workers = [FORK.Process(target=_hammer, args=(path, 150, 100, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    allowed = sum(results.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(30)
    assert allowed == 150  # 400 attempts by four processes, one shared budget


def test_window_counts_down_then_resets(tmp_path):
    clock = FakeClock()
    limiter = SharedRateLimiter(3, 60.0, table=SharedTable(tmp_path / "limits", slots=64), clock=clock)
    decisions = [limiter.hit("addr:1") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[-1].retry_after == 60
    assert limiter.hit("addr:2").allowed  # another client has its own window
    clock.now += 59.5
    assert not limiter.hit("addr:1").allowed and limiter.hit("addr:1").retry_after == 1
    clock.now += 0.5
    assert limiter.hit("addr:1").allowed and len(limiter) == 1  # addr:2's window ended too


def test_memory_is_fixed_whatever_the_number_of_clients(tmp_path):
    clock = FakeClock()
    table = SharedTable(tmp_path / "limits", slots=256)
    limiter = SharedRateLimiter(5, 60.0, table=table, clock=clock)
    for client in range(5000):
        assert limiter.hit(f"addr:{client}").allowed
    assert len(limiter) <= 256
    assert os.path.getsize(tmp_path / "limits") == table.nbytes
    # The newest client is tracked: the evicted ones are those whose windows started longest ago.
    for _ in range(4):
        limiter.hit("addr:4999")
    assert not limiter.hit("addr:4999").allowed


def test_a_window_from_before_a_reboot_does_not_count(tmp_path):
    clock = FakeClock(now=5000.0)
    path = tmp_path / "limits"
    limiter = SharedRateLimiter(1, 60.0, table=SharedTable(path, slots=64), clock=clock)
    assert limiter.hit("addr:1").allowed and not limiter.hit("addr:1").allowed
    clock.now = 10.0  # the monotonic clock starts again after a reboot; the file is still there
    rebooted = SharedRateLimiter(1, 60.0, table=SharedTable(path, slots=64), clock=clock)
    assert rebooted.hit("addr:1").allowed


def test_a_table_file_of_another_layout_is_started_afresh(tmp_path):
    path = tmp_path / "limits"
    path.write_bytes(b"not a table" * 100)
    limiter = SharedRateLimiter(2, 60.0, table=SharedTable(path, slots=64))
    assert limiter.hit("addr:1").remaining == 1


def _hold_lock_forever(path: str, ready) -> None:
    table = SharedTable(path, slots=64)
    table.update("x", lambda number, count, found: (1.0, 1), lambda n, c: True, lambda n, c: n)
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as if killed inside the critical section
    ready.set()
    time.sleep(60)


def test_a_process_killed_while_holding_the_lock_does_not_wedge_the_others(tmp_path):
    path = str(tmp_path / "limits")
    ready = FORK.Event()
    holder = FORK.Process(target=_hold_lock_forever, args=(path, ready))
    holder.start()
    assert ready.wait(30)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    limiter = SharedRateLimiter(5, 60.0, table=SharedTable(path, slots=64))
    assert limiter.hit("addr:1").allowed


def _claim_and_report(path: str, key: str, results, hold_seconds: float, ttl: float = 60.0) -> None:
    claims = ContentClaims(SharedTable(path, slots=64))
    results.put(claims.try_claim(key, ttl=ttl))
    time.sleep(hold_seconds)


def test_one_process_at_a_time_holds_a_claim(tmp_path):
    path = str(tmp_path / "claims")
    claims = ContentClaims(SharedTable(path, slots=64))
    assert claims.try_claim("sha256:abc", ttl=60.0)
    assert claims.try_claim("sha256:abc", ttl=60.0)  # the holder may renew its own claim

    results = FORK.Queue()
    other = FORK.Process(target=_claim_and_report, args=(path, "sha256:abc", results, 0.0))
    other.start()
    assert results.get(timeout=30) is False
    other.join(10)

    claims.release("sha256:abc")
    other = FORK.Process(target=_claim_and_report, args=(path, "sha256:abc", results, 0.0))
    other.start()
    assert results.get(timeout=30) is True
    other.join(10)


def test_a_claim_ends_with_its_process_or_its_time(tmp_path):
    path = str(tmp_path / "claims")
    results = FORK.Queue()
    holder = FORK.Process(target=_claim_and_report, args=(path, "url:x", results, 60.0))
    holder.start()
    assert results.get(timeout=30) is True
    claims = ContentClaims(SharedTable(path, slots=64))
    assert not claims.try_claim("url:x", ttl=60.0)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    assert claims.try_claim("url:x", ttl=60.0)  # its process is gone: free at once


    results = FORK.Queue()
    brief = FORK.Process(target=_claim_and_report, args=(path, "url:y", results, 60.0, 0.5))
    brief.start()
    assert results.get(timeout=30) is True
    assert not claims.try_claim("url:y", ttl=60.0)
    time.sleep(0.6)
    assert claims.try_claim("url:y", ttl=60.0)  # its process lives on, but the claim ran out of time
    os.kill(brief.pid, signal.SIGKILL)
    brief.join(10)


def test_table_rejects_a_size_that_is_not_a_power_of_two(tmp_path):
    with pytest.raises(ValueError):
        SharedTable(tmp_path / "t", slots=1000)


def _count_hits(path: str, times: int) -> None:
    tally = SharedTally(path)
    for _ in range(times):
        tally.add("hits")


def test_hit_counts_of_all_processes_add_up_until_taken(tmp_path):
    path = str(tmp_path / "counters")
    workers = [FORK.Process(target=_count_hits, args=(path, 250)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    tally = SharedTally(path)
    assert tally.read("hits") == 1000 and tally.read("misses") == 0
    assert tally.take("hits") == 1000  # what a flush writes to the database...
    assert tally.read("hits") == 0     # ...is no longer pending


def _count_hits_and_report(path: str, times: int, done) -> None:
    _count_hits(path, times)
    done.put(os.getpid())


def test_counts_of_processes_that_exited_are_taken_once_and_their_files_removed(tmp_path):
    path = str(tmp_path / "counters")
    done = FORK.Queue()
    workers = [FORK.Process(target=_count_hits_and_report, args=(path, 100, done)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert sorted(done.get(timeout=10) for _ in workers) == sorted(worker.pid for worker in workers)
    tally = SharedTally(path)
    tally.add("hits", 5)  # this process's own count, next to theirs
    assert tally.take("hits") == 305
    assert tally.take("hits") == 0
    left = [name for name in os.listdir(tmp_path) if ".pid-" in name]
    assert left == [f"counters.pid-{os.getpid()}"]  # the exited ones are gone; this process's stays


def _write_counts(path: str, hits_added: int, hits_taken: int) -> None:
    """A counts file as SharedTally lays it out (int64 hits, misses added; hits, misses taken)."""
    with open(path, "wb") as f:
        f.write(struct.pack("=4q", hits_added, 0, hits_taken, 0))


def _take_and_report(path: str, results) -> None:
    results.put(SharedTally(path).take("hits"))


def test_a_new_file_under_an_old_name_is_read_afresh(tmp_path):
    # A process exits; another takes its counts and removes its file; a later process that gets the same pid
    # makes a new file under the same name. A reader that had mapped the old file must read the new one.
    gone = FORK.Process(target=lambda: None)
    gone.start()
    gone.join(10)
    name = str(tmp_path / f"counters.pid-{gone.pid}")
    _write_counts(name, 5, 0)
    tally = SharedTally(tmp_path / "counters")
    assert tally.read("hits") == 5  # mapped here
    results = FORK.Queue()
    taker = FORK.Process(target=_take_and_report, args=(str(tmp_path / "counters"), results))
    taker.start()
    taker.join(30)
    assert results.get(timeout=10) == 5 and not os.path.exists(name)
    _write_counts(name, 7, 0)
    assert tally.read("hits") == 7 and tally.take("hits") == 7


def _add_many(path: str, times: int) -> None:
    tally = SharedTally(path)
    for _ in range(times):
        tally.add("hits")
        tally.add("misses", 2)


def test_counts_taken_while_processes_add_lose_and_repeat_nothing(tmp_path):
    path = str(tmp_path / "counters")
    tally = SharedTally(path)
    workers = [FORK.Process(target=_add_many, args=(path, 3000)) for _ in range(3)]
    for worker in workers:
        worker.start()
    hits = misses = 0
    while any(worker.is_alive() for worker in workers):
        hits += tally.take("hits")
        misses += tally.take("misses")
    for worker in workers:
        worker.join(60)
    hits += tally.take("hits")
    misses += tally.take("misses")
    assert (hits, misses) == (9000, 18000)


def test_a_table_whose_folder_is_gone_is_not_brought_back(tmp_path):
    # An HTTP worker exiting after its server's shared-state folder was removed must not recreate the folder.
    folder = tmp_path / "essentia-shared-gone"
    tally = SharedTally(folder / "counters")
    assert tally.take("hits") == 0  # nothing to take, and no error in an exiting worker's last flush
    with tally.batch() as held:  # the flush's cross-process lock: nobody is left to keep apart from
        assert held
    with pytest.raises(FileNotFoundError):
        SharedRateLimiter(1, 60.0, table=SharedTable(folder / "limits", slots=16)).hit("addr:1")
    assert not folder.exists()


def _read_then_write_across_two_tables(folder: str, times: int) -> None:
    first = SharedTable(folder + "/first", slots=64)
    second = SharedTable(folder + "/second", slots=64, lock_of=first)
    never_free = dict(is_free=lambda number, count: False, eviction_rank=lambda number, count: 0.0)
    for _ in range(times):
        with first.held():  # a read and a later write of the other table, with nothing between them
            seen = []
            second.update("n", lambda number, count, found: seen.append(count), **never_free)
            second.update("n", lambda number, count, found: (0.0, seen[0] + 1), **never_free)
            first.update("n", lambda number, count, found: (0.0, count + 1), **never_free)


def test_tables_on_one_lock_change_together_across_processes(tmp_path):
    workers = [FORK.Process(target=_read_then_write_across_two_tables, args=(str(tmp_path), 3000)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    counts = []
    for name in ("first", "second"):
        table = SharedTable(tmp_path / name, slots=64)
        table.update("n", lambda number, count, found: counts.append(count), is_free=lambda n, c: False,
                     eviction_rank=lambda n, c: 0.0)
    assert counts == [12_000, 12_000]  # no increment lost, though each took two updates of `second`
