"""performance_test.py --quick runs end to end and writes every section's figures. It never judges speed: the
machine is shared, so only the shape of the report is checked (every section present, every figure positive)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_benchmark_writes_every_section(tmp_path):
    out = tmp_path / "perf.json"
    run = subprocess.run([sys.executable, str(ROOT / "performance_test.py"), "--quick", "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(out.read_text())

    keys = figures["keys"]
    assert keys["ours_per_lookup_s"] > 0 and keys["naive_per_lookup_s"] > 0 and keys["ratio"] > 0

    quota = figures["quota"]
    assert len(quota["history_sizes"]) == 2
    for size in quota["history_sizes"]:
        row = quota["per_size"][str(size)]
        assert row["usage_rows"] == size
        assert row["ours_per_check_s"] > 0 and row["naive_per_check_s"] > 0 and row["ratio"] > 0

    pool = figures["pool"]
    assert pool["ours_per_op_s"] > 0 and pool["naive_per_op_s"] > 0 and pool["ratio"] > 0

    limiter = figures["ratelimit"]
    assert limiter["ours_per_call_s"] > 0 and limiter["naive_per_call_s"] > 0
    assert limiter["ours_peak_bytes"] > 0 and limiter["naive_peak_bytes"] > 0
    assert 0 < limiter["ours_len"] <= limiter["max_clients_bound"]  # the bound is a property, not a speed
    assert limiter["naive_len"] == limiter["distinct_clients"]

    flight = figures["single_flight"]
    assert flight["ours_analyses"] >= 1 and flight["naive_analyses"] >= 1
    assert flight["ours"]["answered_200"] == flight["concurrent_requests"]

    load = figures["load"]
    for server in ("ours", "naive"):
        for phase in ("miss", "hit_url", "hit_upload"):
            result = load[server][phase]
            assert result["ok"] > 0, (server, phase, result)
            assert result["throughput_per_s"] > 0 and result["p50_s"] > 0 and result["p99_s"] > 0
    assert load["ours"]["miss"]["cached_false"] == load["ours"]["miss"]["ok"]  # misses really were misses
    assert load["ours"]["miss"]["analysis_cpu_s_per_request"] > 0
    after, before = load["ours"]["stats_after"], load["ours"]["stats_before"]
    assert after["cache_hits"] - before["cache_hits"] >= load["ours"]["hit_url"]["ok"]  # hits really were hits
    rss = load["ours"]["rss_during_misses"]["max_rss_mb_by_role"]
    assert all(value > 0 for values in rss.values() for value in values)
