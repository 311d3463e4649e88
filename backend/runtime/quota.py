"""TableQuota: the daily quota counted in the memory-mapped table that a host's HTTP processes share, and written to
the store in batches, so that a keyed request costs one indexed read and one table update instead of a write
transaction (which also queued every keyed request of every process behind SQLite's one write lock).

Why it stays exact (on one host, which is where the shared table lives; several hosts use StoreQuota or Redis):
- Each key and UTC day has one record, `used` (everything counted today) and `pending` (the part not yet written
  to daily_usage). A request is allowed and counted in ONE atomic table update (flock + thread lock, see
  SharedTable): `used < limit` then `used + 1`, so N concurrent requests of all processes count N and never pass
  the limit, exactly as the store's conditional upsert did.
- A record is created from the store's count for that day (read before the update; if another process created it
  meanwhile, its record wins and the read is ignored). At that moment nothing of that key and day is pending
  anywhere: pending counts live only in the record, and a record with pending counts is never freed.
- A flush takes `pending` out atomically and adds it to daily_usage in one transaction; if the write fails it is
  put back. A record whose pending is 0 holds nothing the store lacks, but it is still not reused for another key
  on the day it counts (its `used` may be ahead of a commit in flight); records of past days with nothing pending
  are free. Only a probe run full of live records (16 neighbours, in a table of 16,384: thousands of keys active
  at once) could evict one; the count of that key then restarts from the store.
- The limit and the key's state are read from the store (an indexed read, no transaction), so a changed limit or
  a deactivated key applies at once, as before. With `key_changes` (the change counter beside a SQLite file,
  which every `keys` command of the CLI moves), each process keeps what it read per key until the counter moves
  (at most KEY_STATE_SECONDS, for a change made in SQL), and asks the counter before each request, not the store.
What a hard kill of a process can lose is what it had not flushed yet for keys no other process touched since:
at most `flush_seconds` of counts in daily_usage; enforcement itself never loses them (they stay in the table).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, NamedTuple

from backend.roles import (QUOTA_EXHAUSTED, QUOTA_KEY_INACTIVE, QUOTA_KEY_UNKNOWN, Invalidation, QuotaDecision,
                           Store)
from backend.runtime.keystates import KeyState, KeyStates
from backend.runtime.periodic import every
from backend.runtime.sharedtable import SharedTable
from backend.timeutil import utc_today

log = logging.getLogger(__name__)


class QuotaTicket(NamedTuple):
    """What the store said of a key, read before the table's lock (TableQuota.prepare)."""

    key_id: int
    day: str
    limit: int | None                # 0 or None: no daily limit
    refusal: QuotaDecision | None    # the key is unknown or inactive: nothing to count


KEY_STATE_SECONDS = 60.0  # the longest a key state is kept: bounds a change no counter told (an edit in SQL)

_DAY_SCALE = 1 << 24  # the record's float holds day number * _DAY_SCALE + pending (exact: far below 2**53)


def _day_number(day: str) -> int:
    """'2026-11-30' -> 20261130: increasing with the day, small enough for the float encoding."""
    return int(day.replace("-", ""))


class TableQuota:
    """The Quota role in a SharedTable (one host), flushed to the store every `flush_seconds` (see module doc)."""

    def __init__(self, store: Store, table: SharedTable, *, flush_seconds: float = 2.0,
                 today: Callable[[], str] = utc_today, key_changes: Invalidation | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._store = store
        self.table = table
        self.flush_seconds = flush_seconds
        self._today = today
        # Without a change counter nothing is kept: every request reads the key (so a change applies at once).
        heard = (lambda: key_changes.connected) if key_changes is not None else (lambda: False)
        self._key_states = KeyStates(self._read_key, ttl=KEY_STATE_SECONDS, fresh=heard, clock=clock)
        if key_changes is not None:
            key_changes.listen(self._key_states.forget, forget_all=self._key_states.forget_all)
        self._touched: set[tuple[int, str]] = set()  # (key id, day) this process counted since its last flush
        self._touched_lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def consume(self, key_id: int) -> QuotaDecision:
        ticket = self.prepare(key_id)
        decision = self.try_count(ticket)
        return decision if decision is not None else self.count_seeded(ticket)

    # consume() in three steps, so that TableAdmission can run the middle one under the lock it holds for the rate
    # limit: the store's reads stay outside any lock of the table.

    def prepare(self, key_id: int) -> QuotaTicket:
        """The key's state, read from the store or kept since the last change counted (no lock of the table)."""
        day = self._today()
        state = self._key_states.get(key_id)
        if state is None:
            return QuotaTicket(key_id, day, 0, QuotaDecision(False, QUOTA_KEY_UNKNOWN))
        active, daily_limit = state
        if not active:
            return QuotaTicket(key_id, day, 0, QuotaDecision(False, QUOTA_KEY_INACTIVE, daily_limit))
        return QuotaTicket(key_id, day, daily_limit, None)

    def _read_key(self, key_id: int) -> KeyState | None:
        with self._store.single_read() as conn:
            key = self._store.get_key(conn, key_id)
        return None if key is None else (bool(key["active"]), key["daily_limit"])

    def try_count(self, ticket: QuotaTicket) -> QuotaDecision | None:
        """Count one request in the table (one update), or None when the key has no record there yet today."""
        if ticket.refusal is not None:
            return ticket.refusal
        return self._decision(ticket, self._count(ticket.key_id, ticket.day, ticket.limit, seed=None))

    def count_seeded(self, ticket: QuotaTicket) -> QuotaDecision:
        """Start the key's record from what the store has counted today (read before the table's lock), and count."""
        with self._store.single_read() as conn:
            seed = self._store.usage_today(conn, ticket.key_id, ticket.day)
        return self._decision(ticket, self._count(ticket.key_id, ticket.day, ticket.limit, seed=seed))

    def _decision(self, ticket: QuotaTicket, allowed: bool | None) -> QuotaDecision | None:
        if allowed is None:
            return None
        if not allowed:
            return QuotaDecision(False, QUOTA_EXHAUSTED, ticket.limit)
        with self._touched_lock:
            self._touched.add((ticket.key_id, ticket.day))
        return QuotaDecision(True)

    def _count(self, key_id: int, day: str, limit: int, *, seed: int | None) -> bool | None:
        """Count one request if the limit allows: True/False, or None when there is no record and no seed."""
        base = _day_number(day) * _DAY_SCALE
        outcome: list[bool | None] = []

        def change(number: float, used: int, found: bool):
            if not found:
                if seed is None:
                    outcome.append(None)
                    return None
                number, used = float(base), seed
            if limit and used >= limit:
                outcome.append(False)
                return None if found else (number, used)
            outcome.append(True)
            return number + 1, used + 1

        today = _day_number(self._today())
        self.table.update(f"quota:{key_id}:{day}", change,
                          is_free=lambda number, used: _free(number, today),
                          eviction_rank=lambda number, used: number)
        return outcome[0]

    def pending(self, key_id: int, day: str) -> int:
        """Counts of this key and day not yet written to the store (for tests)."""
        seen: list[int] = []

        def read(number: float, used: int, found: bool):
            seen.append(int(number) % _DAY_SCALE if found else 0)
            return None

        self.table.update(f"quota:{key_id}:{day}", read, is_free=lambda n, u: False, eviction_rank=lambda n, u: n)
        return seen[0]

    def flush(self) -> None:
        """Write the pending counts of the keys this process counted (and whatever other processes left pending on
        the same keys) to daily_usage in one transaction; on failure they stay pending."""
        if not self._flush_lock.acquire(blocking=False):
            return
        try:
            with self._touched_lock:
                touched, self._touched = self._touched, set()
            taken = [(key_id, day, self._take(key_id, day)) for key_id, day in touched]
            taken = [entry for entry in taken if entry[2]]
            if not taken:
                return
            try:
                with self._store.connection(write=True) as conn:
                    for key_id, day, count in taken:
                        self._store.add_daily_usage(conn, key_id, day, count)
            except Exception:
                log.exception("could not write quota counts; keeping them for the next flush")
                for key_id, day, count in taken:
                    self._give_back(key_id, day, count)
                with self._touched_lock:
                    self._touched.update((key_id, day) for key_id, day, _ in taken)
        finally:
            self._flush_lock.release()

    def start_background_flush(self) -> None:
        """Flush every `flush_seconds` from a daemon thread of this process (started after gunicorn's fork)."""
        if self.flush_seconds > 0:
            every(self.flush_seconds, self.flush, name="quota-flush")

    def _take(self, key_id: int, day: str) -> int:
        taken: list[int] = []

        def change(number: float, used: int, found: bool):
            pending = int(number) % _DAY_SCALE if found else 0
            taken.append(pending)
            return (number - pending, used) if pending else None

        self.table.update(f"quota:{key_id}:{day}", change, is_free=lambda n, u: False, eviction_rank=lambda n, u: n)
        return taken[0]

    def _give_back(self, key_id: int, day: str, count: int) -> None:
        def change(number: float, used: int, found: bool):
            if not found:  # evicted meanwhile: its count restarts from the store, which lacks these
                return float(_day_number(day) * _DAY_SCALE + count), used + count
            return number + count, used

        self.table.update(f"quota:{key_id}:{day}", change, is_free=lambda n, u: False, eviction_rank=lambda n, u: n)


def _free(number: float, today: int) -> bool:
    """A record may be reused when it counts a past day and has nothing pending."""
    return int(number) // _DAY_SCALE < today and int(number) % _DAY_SCALE == 0
