"""Timestamps as the API shows them: UTC, ISO 8601, with a Z."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def utc_now_iso() -> str:
    return utc_now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_today() -> str:
    return utc_now().strftime("%Y-%m-%d")


def seconds_until_utc_midnight() -> int:
    now = utc_now()
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - now).total_seconds()))
