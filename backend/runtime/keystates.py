"""This process's copy of API keys' states as the store has them, for the quotas that would otherwise read the key
on every request (TableQuota on one host, RedisQuota on several): each state is kept at most `ttl` seconds and
forgotten at once when the process is told the key changed (`forget`, `forget_all`, wired to an Invalidation). A
state read while a change was told is not kept, so a late reader cannot put an old state back."""
from __future__ import annotations

import threading
import time
from typing import Callable

KeyState = tuple[bool, int]  # (active, daily limit); None where the key does not exist

MAX_KEPT_KEYS = 10_000  # states kept per process (a few bytes each); past it they are all read again


class KeyStates:
    def __init__(self, read: Callable[[int], KeyState | None], *, ttl: float,
                 keep: Callable[[KeyState | None], bool] = lambda state: True,
                 fresh: Callable[[], bool] = lambda: True, clock: Callable[[], float] = time.monotonic):
        """`read(key_id)` asks the store; `keep(state)` says which states may be kept; `fresh()` whether changes
        can be heard now (asking may make this copy forget, so it is asked outside the lock)."""
        self._read = read
        self.ttl = ttl
        self._keep = keep
        self._fresh = fresh
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[int, tuple[float, KeyState | None]] = {}  # key id -> (kept until, state)
        self._generation = 0  # moved by every forget: a state read before it is not kept

    def get(self, key_id: int) -> KeyState | None:
        fresh = self._fresh()
        now = self._clock()
        kept = self._states.get(key_id) if fresh else None
        if kept is not None and kept[0] > now:
            return kept[1]
        generation = self._generation
        state = self._read(key_id)
        if fresh and self._keep(state) and self._fresh():
            with self._lock:
                if generation == self._generation:
                    if len(self._states) >= MAX_KEPT_KEYS:
                        self._states.clear()
                    self._states[key_id] = (now + self.ttl, state)
        return state

    def forget(self, key_id: int) -> None:
        """The key changed (deactivated, deleted, new limit): read its state from the store on its next use."""
        with self._lock:
            self._generation += 1
            self._states.pop(key_id, None)

    def forget_all(self) -> None:
        """Any key may have changed (or changes may have been missed): read every state again."""
        with self._lock:
            self._generation += 1
            self._states.clear()
