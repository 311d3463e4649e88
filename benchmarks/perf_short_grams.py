"""What the index of short grams (SQLite migration 5, PostgreSQL migration 3) costs: the time to insert songs with
and without it, and its size next to the table's and the trigram index's.

The same benchmark songs as benchmarks/perf_catalog.py are loaded twice into a fresh database of each store, once
through the whole schema and once with the short-gram index removed (its triggers on SQLite, its GIN index on
PostgreSQL), the same way (executemany / COPY, one transaction).

    .venv/bin/python benchmarks/perf_short_grams.py --songs 100000
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.perf_catalog import (  # noqa: E402
    DEFAULT_POSTGRES, _fresh_postgres_database, _insert_postgres, _insert_sqlite, postgres_answers,
)

MB = 1024 * 1024


def _sqlite_sizes(conn) -> dict[str, float]:
    """MB of the table with its B-tree indexes, of the trigram index and of the short-gram index (FTS5 keeps each
    in shadow tables named after it)."""
    def size(tables: str) -> float:
        return conn.execute("SELECT COALESCE(SUM(pgsize), 0) FROM dbstat JOIN sqlite_schema AS s "
                            "ON s.name = dbstat.name WHERE s.tbl_name LIKE ?", (tables,)).fetchone()[0] / MB

    return {"analyses": size("analyses"), "trigram index": size("analyses_search%"),
            "short-gram index": size("analyses_short%")}


def sqlite_cost(songs: int) -> dict[str, float]:
    from backend.storage.sqlite import SQLiteStore

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="essentia-grams-") as tmp:
        for with_grams in (True, False):
            store = SQLiteStore(str(Path(tmp) / f"grams-{with_grams}.db"), pool_size=1)
            store.migrate()
            if not with_grams:
                with store.connection(write=True) as conn:
                    for trigger in ("insert", "delete", "update"):
                        conn.execute(f"DROP TRIGGER analyses_short_{trigger}")
            started = time.perf_counter()
            _insert_sqlite(store, 0, songs)
            out["insert s, with" if with_grams else "insert s, without"] = time.perf_counter() - started
            if with_grams:
                with store.connection() as conn:
                    out.update({f"{name} MB": mb for name, mb in _sqlite_sizes(conn).items()})
            store.close()
    return out


def postgres_cost(songs: int, server_url: str) -> dict[str, float]:
    from backend.storage.postgres import PostgresStore

    out: dict[str, float] = {}
    for with_grams in (True, False):
        url, drop = _fresh_postgres_database(server_url)
        store = PostgresStore(url, pool_size=1)
        try:
            store.migrate()
            if not with_grams:
                with store.connection(write=True) as conn:
                    conn.execute("DROP INDEX analyses_short_grams")
            started = time.perf_counter()
            _insert_postgres(store, 0, songs)
            out["insert s, with" if with_grams else "insert s, without"] = time.perf_counter() - started
            if with_grams:
                with store.single_read() as conn:
                    row = conn.execute(
                        "SELECT pg_table_size('analyses') AS table_size, "
                        "pg_relation_size('analyses_search_trgm') AS trigram, "
                        "pg_relation_size('analyses_short_grams') AS short").fetchone()
                out.update({"analyses MB": row["table_size"] / MB, "trigram index MB": row["trigram"] / MB,
                            "short-gram index MB": row["short"] / MB})
        finally:
            store.close()
            drop()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=100_000)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    args = parser.parse_args(argv)
    for kind in (s.strip() for s in args.stores.split(",") if s.strip()):
        if kind == "postgresql" and not postgres_answers(args.postgres):
            print(f"{kind}: skipped (no server)")
            continue
        figures = sqlite_cost(args.songs) if kind == "sqlite" else postgres_cost(args.songs, args.postgres)
        per_song = (figures["insert s, with"] - figures["insert s, without"]) / args.songs * 1e6
        print(f"{kind}, {args.songs:,} songs: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items())
              + f"; the short-gram index adds {per_song:.0f} us per song inserted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
