"""--profile-hits of performance_test.py: cProfile of URL cache hits through the real app, in this process."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.perf_common import ROOT, make_clip
from benchmarks.perf_load import ClipServer


def profile_hits(count: int) -> None:
    """cProfile of `count` URL cache hits through the real app in this process (Flask test client): where a hit's
    CPU goes, by project function (cumulative ms per request, profiler overhead included)."""
    import cProfile
    import pstats

    from backend.app import create_app
    from backend.config import Settings

    clip = make_clip(100, "B", "minor", 10.0)
    server = ClipServer({"p.m4a": clip})
    with tempfile.TemporaryDirectory(prefix="essentia-profile-") as tmp:
        app = create_app(Settings(db_path=str(Path(tmp) / "p.db"), workers=0, allow_loopback_urls=True,
                                  log_level="WARNING"))
        client = app.test_client()
        body = {"url": server.url("p.m4a"), "title": "T", "artist": "A"}
        client.post("/analyze", json=body)
        client.post("/analyze", json=body)
        started = time.perf_counter()
        for _ in range(count):
            client.post("/analyze", json=body)
        plain_ms = (time.perf_counter() - started) / count * 1000
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(count):
            client.post("/analyze", json=body)
        profiler.disable()
        app.extensions["essentia"].counters.flush()  # while the database still exists (atexit would be too late)
        app.extensions["essentia"].executor.shutdown()
        app.extensions["essentia"].store.close()
    server.close()
    stats = pstats.Stats(profiler).stats
    print(f"{count} URL hits through the Flask test client: {plain_ms:.3f} ms per request without the profiler.")
    print("cumulative ms per request under cProfile, project functions and json (profiler overhead included):")
    rows = [(v[3] / count * 1000, f"{k[0].replace(str(ROOT) + '/', '')}:{k[1]} {k[2]}") for k, v in stats.items()
            if str(ROOT / "backend") in k[0] or (k[2] in ("loads", "dumps") and "json/__init__" in k[0])]
    for ms, name in sorted(rows, reverse=True)[:25]:
        print(f"  {ms:7.3f}  {name}")
