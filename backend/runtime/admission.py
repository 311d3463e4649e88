"""The Admission role for the embedded setups: ask the limiter, then the quota (LimiterThenQuota, wherever the two
live), or, when both live in shared tables on one lock, decide both under one acquisition of it (TableAdmission).
On Redis both are decided in one round trip instead (backend/runtime/redis_state.py RedisAdmission)."""
from __future__ import annotations

from typing import Hashable

from backend.roles import AdmissionDecision, Limiter, Quota
from backend.runtime.quota import TableQuota
from backend.runtime.ratelimit import SharedRateLimiter


class LimiterThenQuota:
    """The rate limit (if any), then, for a keyed request it let through, the daily quota."""

    def __init__(self, limiter: Limiter | None, quota: Quota):
        self._limiter = limiter
        self._quota = quota

    def admit(self, client: Hashable, key_id: int | None) -> AdmissionDecision:
        rate = self._limiter.hit(client) if self._limiter is not None else None
        if key_id is None or (rate is not None and not rate.allowed):
            return AdmissionDecision(rate, None)
        return AdmissionDecision(rate, self._quota.consume(key_id))


class TableAdmission:
    """LimiterThenQuota's decisions for the shared-table limiter and quota of several HTTP processes on one host,
    with one flock per keyed request instead of two: under gunicorn a holder that is descheduled makes every other
    process wait, once per lock it takes (PERFORMANCE_OPTIMIZATIONS.md section 8).

    The key is read from the store before the lock (TableQuota.prepare), the window and the quota are then counted
    under it; only a key's first request of the day takes the lock a second time, after reading its count so far
    from the store (TableQuota.count_seeded), as TableQuota alone does."""

    def __init__(self, limiter: SharedRateLimiter, quota: TableQuota):
        if not limiter.table.shares_lock_with(quota.table):
            raise ValueError("the limiter's and the quota's tables must share one lock (SharedTable lock_of)")
        self._limiter = limiter
        self._quota = quota

    def admit(self, client: Hashable, key_id: int | None) -> AdmissionDecision:
        if key_id is None:
            return AdmissionDecision(self._limiter.hit(client), None)
        ticket = self._quota.prepare(key_id)
        with self._limiter.table.held():
            rate = self._limiter.hit(client)
            if not rate.allowed:
                return AdmissionDecision(rate, None)  # refused first: the quota counts nothing
            quota = self._quota.try_count(ticket)
        if quota is None:
            quota = self._quota.count_seeded(ticket)
        return AdmissionDecision(rate, quota)
