"""The Admission role for setups whose limiter and quota live in different places (memory, the shared table,
the store): ask the one, then the other. On Redis both are decided in one round trip instead
(backend/runtime/redis_state.py RedisAdmission)."""
from __future__ import annotations

from typing import Hashable

from backend.roles import AdmissionDecision, Limiter, Quota


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
