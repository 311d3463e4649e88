"""Costs that grow with the catalog: the endpoints a dashboard or client calls, timed at 10k, 100k and 1M cached
songs on both stores (SQLite, and PostgreSQL when one answers).

Rows are inserted directly (executemany on SQLite, COPY on PostgreSQL), through the real schema (its indexes and
triggers), growing one database from the smallest size to the largest. Each endpoint is called in-process with
Flask's test client: one warm-up call, then the median of 5. Target: every figure <= 50 ms at 1,000,000 songs.

    .venv/bin/python benchmarks/perf_catalog.py                      # 10k, 100k, 1M on both stores
    .venv/bin/python benchmarks/perf_catalog.py --sizes 10000,100000 --stores sqlite
    .venv/bin/python performance_test.py --only catalog              # the same, as a performance_test section
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.storage.base import ANALYSIS_COLUMNS  # noqa: E402

SIZES = (10_000, 100_000, 1_000_000)
REPEATS = 5
TARGET_MS = 50.0
COMMON_WORD = "love"        # in about 5 % of titles
RARE_WORD = "quixotic"      # in about 1 title in 50,000
ABSENT_WORD = "xylophonist"  # in none: the search must look at everything and find nothing
DEFAULT_POSTGRES = os.environ.get("ESSENTIA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

# (label, path): what a dashboard or client calls.
ENDPOINTS: list[tuple[str, str]] = [
    ("search common, page 1", f"/cache/search?q={COMMON_WORD}&limit=50"),
    ("search common, offset 1000", f"/cache/search?q={COMMON_WORD}&limit=50&offset=1000"),
    ("search rare", f"/cache/search?q={RARE_WORD}&limit=50"),
    ("search absent", f"/cache/search?q={ABSENT_WORD}&limit=50"),
    ("search non-ASCII", "/cache/search?q=beyonc%C3%A9&limit=50"),
    ("search 2 letters", "/cache/search?q=zq&limit=50"),                  # in no song
    ("search 2 letters, rare", "/cache/search?q=QU&limit=50"),            # only in "quixotic": 1 in 50,000
    ("search 2 letters, offset 1000", "/cache/search?q=ka&limit=50&offset=1000"),
    ("search 1 letter", "/cache/search?q=k&limit=50"),
    ("search 1 CJK character", "/cache/search?q=%E5%9D%82&limit=50"),    # 坂: one artist in 5,000
    *[(f"sort={sort}, offset 5000", f"/cache?sort={sort}&limit=50&offset=5000")
      for sort in ("newest", "oldest", "title", "artist", "bpm", "key")],
    ("sort=title, page 1", "/cache?sort=title&limit=50"),
    ("/stats", "/stats"),
]

_SYLLABLES = ["ka", "lo", "mi", "ne", "ra", "su", "to", "vi", "do", "re", "sa", "la", "ti", "po", "an", "el", "or",
              "un", "ba", "fe"]


def _words(rng: random.Random, count: int) -> list[str]:
    return ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(count)]


def song_rows(start: int, stop: int, seed: int = 11) -> Iterator[tuple]:
    """Rows start..stop-1 (the same rows for the same numbers, whichever store), in ANALYSIS_COLUMNS order."""
    vocabulary = _words(random.Random(seed), 3000)
    artists = [" ".join(_words(random.Random(seed + 1 + i), 2)).title() for i in range(5000)]
    artists[:3] = ["Beyoncé", "坂本龍一", "Sigur Rós"]
    result_json = json.dumps({"result": {"bpm_candidates": [120.0, 60.0], "mode": "minor", "camelot": "8A",
                                         "loudness_lufs": -9.5, "duration": 30.0}, "window": [0, 30],
                              "source": {"format": "mp4"}})
    for n in range(start, stop):
        rng = random.Random(n * 7919 + seed)
        words = [rng.choice(vocabulary) for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.05:
            words.insert(rng.randrange(len(words) + 1), COMMON_WORD.title())
        if n % 50_000 == 25_000:
            words.append(RARE_WORD)
        bpm = None if rng.random() < 0.02 else round(rng.uniform(60, 180), 2)
        yield (f"sha256:{n:064x}", "upload", f"upload:sha256:{n:064x}", f"{n:064x}", " ".join(words).capitalize(),
               artists[rng.randrange(len(artists))], bpm, 0.8, rng.choice(["A Minor", "C Major", None, "F# Minor"]),
               0.5, rng.random(), rng.random(), rng.random(), 1500.0, 1.2, "2026-01-01T00:00:00Z", result_json, None)


def _insert_sqlite(store, start: int, stop: int) -> None:
    sql = (f"INSERT INTO analyses ({', '.join(ANALYSIS_COLUMNS)}) "
           f"VALUES ({', '.join('?' for _ in ANALYSIS_COLUMNS)})")
    with store.connection(write=True) as conn:
        conn.executemany(sql, song_rows(start, stop))
    with store.connection(write=True) as conn:
        conn.execute("ANALYZE")  # what a long-running database would have; SQLite does not do it on its own


def _insert_postgres(store, start: int, stop: int) -> None:
    with store.connection(write=True) as conn:
        with conn.cursor().copy(f"COPY analyses ({', '.join(ANALYSIS_COLUMNS)}) FROM STDIN") as copy:
            for row in song_rows(start, stop):
                copy.write_row(row)
    with store.single_read() as conn:
        conn.execute("VACUUM ANALYZE analyses")  # what autovacuum does after a bulk load


def _median_ms(client, path: str) -> float:
    response = client.get(path)  # warm-up
    assert response.status_code == 200, (path, response.status_code, response.get_data(as_text=True)[:300])
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return statistics.median(times)


def _fresh_postgres_database(server_url: str) -> tuple[str, Callable[[], None]]:
    import psycopg

    name = "essentia_perf_catalog_" + uuid.uuid4().hex[:8]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlsplit(server_url)._replace(path="/" + name).geturl(), drop


def measure_store(kind: str, sizes: tuple[int, ...], *, postgres_url: str = DEFAULT_POSTGRES,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Grow one database of `kind` ("sqlite" or "postgresql") through `sizes`; at each size, time every
    endpoint. Returns {"sizes": {size: {label: ms}}, "insert_s": {size: seconds}}."""
    from backend.app import create_app
    from backend.config import Settings

    out: dict[str, Any] = {"sizes": {}, "insert_s": {}}
    with tempfile.TemporaryDirectory(prefix="essentia-catalog-") as tmp:
        drop = None
        overrides: dict[str, Any] = {}
        if kind == "postgresql":
            url, drop = _fresh_postgres_database(postgres_url)
            overrides["database_url"] = url
        app = create_app(Settings(db_path=str(Path(tmp) / "catalog.db"), workers=0, stats_flush_seconds=0.0,
                                  log_level="WARNING", **overrides))
        store = app.extensions["essentia"].store
        client = app.test_client()
        insert = _insert_postgres if kind == "postgresql" else _insert_sqlite
        try:
            have = 0
            for size in sorted(sizes):
                started = time.perf_counter()
                insert(store, have, size)
                out["insert_s"][size] = time.perf_counter() - started
                have = size
                log(f"{kind}: {size:,} songs inserted in {out['insert_s'][size]:.0f} s; timing the endpoints")
                out["sizes"][size] = {label: _median_ms(client, path) for label, path in ENDPOINTS}
                songs = client.get("/stats").get_json()["total_cached_songs"]
                assert songs == size, (songs, size)
        finally:
            store.close()
            app.extensions["essentia"].executor.shutdown()
            if drop is not None:
                drop()
    return out


def postgres_answers(url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001 - any failure means "not here"
        return False


def run(sizes: tuple[int, ...] = SIZES, stores: tuple[str, ...] = ("sqlite", "postgresql"), *,
        postgres_url: str = DEFAULT_POSTGRES, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every store's table; a store that is not reachable is reported as skipped."""
    results: dict[str, Any] = {"sizes": list(sizes), "repeats": REPEATS, "target_ms": TARGET_MS, "stores": {}}
    for kind in stores:
        if kind == "postgresql" and not postgres_answers(postgres_url):
            results["stores"][kind] = {"skipped": f"no PostgreSQL at {urlsplit(postgres_url).netloc}"}
            continue
        results["stores"][kind] = measure_store(kind, sizes, postgres_url=postgres_url, log=log)
    return results


def report(results: dict[str, Any]) -> str:
    """The table: one row per endpoint, one column per store and size, in milliseconds (median of 5)."""
    sizes = results["sizes"]
    measured = {k: v for k, v in results["stores"].items() if "sizes" in v}
    header = ["endpoint (ms, median of 5)"] + [f"{kind} {size // 1000:,}k" for kind in measured for size in sizes]
    lines = [header]
    for label, _ in ENDPOINTS:
        lines.append([label] + [f"{measured[kind]['sizes'][size][label]:.1f}" for kind in measured for size in sizes])
    lines.append(["insert (s)"] + [f"{measured[kind]['insert_s'][size]:.0f}" for kind in measured for size in sizes])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = "\n".join("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                               for i, cell in enumerate(row)) for row in lines)
    worst = [(ms, label, kind) for kind in measured for label, ms in measured[kind]["sizes"][max(sizes)].items()]
    if worst:
        ms, label, kind = max(worst)
        text += (f"\nslowest at {max(sizes):,} songs: {label} on {kind}, {ms:.1f} ms "
                 f"(target <= {results['target_ms']:.0f} ms)")
    for kind, value in results["stores"].items():
        if "skipped" in value:
            text += f"\n{kind}: skipped ({value['skipped']})"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated catalog sizes")
    parser.add_argument("--stores", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="a PostgreSQL server URL (a database is "
                        "created there for the run and dropped after)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    stores = tuple(s.strip() for s in args.stores.split(",") if s.strip())
    results = run(sizes, stores, postgres_url=args.postgres,
                  log=lambda line: print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True))
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
