"""One keyed admit() on the embedded host's shared tables: LimiterThenQuota (a flock for the rate limit, one for the
quota) against TableAdmission (one flock for both), on the same two tables, alternating rounds in one run.

The store is an in-memory stand-in whose key read costs nothing, so the figures are the tables' share of a request.

    .venv/bin/python benchmarks/perf_admission.py [--rounds 7] [--calls 20000]
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.app import SHARED_LIMITER_SLOTS, SHARED_QUOTA_SLOTS  # noqa: E402
from backend.runtime.admission import LimiterThenQuota, TableAdmission  # noqa: E402
from backend.runtime.quota import TableQuota  # noqa: E402
from backend.runtime.ratelimit import SharedRateLimiter  # noqa: E402
from backend.runtime.sharedtable import SharedTable  # noqa: E402


class FreeStore:
    """Answers TableQuota's two reads at once: an active key without a daily limit, nothing counted today."""

    @contextlib.contextmanager
    def single_read(self):
        yield None

    def get_key(self, conn, key_id):
        return {"active": True, "daily_limit": 0}

    def usage_today(self, conn, key_id, day):
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="perf-admission-")
    limits = SharedTable(folder + "/rate-limits", slots=SHARED_LIMITER_SLOTS)
    quota = TableQuota(FreeStore(), SharedTable(folder + "/quota", slots=SHARED_QUOTA_SLOTS, lock_of=limits),
                       flush_seconds=0)
    limiter = SharedRateLimiter(10 ** 9, table=limits)
    contenders = {"LimiterThenQuota": LimiterThenQuota(limiter, quota), "TableAdmission": TableAdmission(limiter, quota)}
    rounds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, admission in contenders.items():
            admission.admit("key:1", 1)  # warm
            start = time.perf_counter()
            for _ in range(args.calls):
                admission.admit("key:1", 1)
            rounds[name].append((time.perf_counter() - start) / args.calls * 1e6)
    for name, times in rounds.items():
        print(f"{name:17s} median {statistics.median(times):6.2f} µs per keyed admit "
              f"(rounds: {', '.join(f'{t:.1f}' for t in times)})")
    print(f"TableAdmission / LimiterThenQuota: "
          f"{statistics.median(rounds['TableAdmission']) / statistics.median(rounds['LimiterThenQuota']):.2f}x")


if __name__ == "__main__":
    main()
