"""Copy an embedded SQLite store into PostgreSQL, for a user who outgrows one machine
(`flask --app backend db copy-to postgresql://...`).

Everything moves: analyses with their verified corrections, API keys (hashes, prefixes, limits, active flags),
usage records and daily counters, and the hit/miss stats; ids are kept, so key ids and song ids mean the same
afterwards. The source is read in one snapshot (a running server may keep writing to it) and the target written
in one transaction with COPY, so a failed copy leaves the target as it was. The target must be empty: copying
into a database that already holds data would mix two histories, so that is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from backend.storage.base import ALL_ANALYSIS_COLUMNS
from backend.storage.postgres import PostgresStore
from backend.storage.sqlite import SQLiteStore

# In dependency order (keys before what refers to them), with the columns both schemas have.
TABLES: dict[str, tuple[str, ...]] = {
    "api_keys": ("id", "name", "email", "key_hash", "key_prefix", "is_admin", "active", "daily_limit",
                 "created_at"),
    "analyses": ALL_ANALYSIS_COLUMNS,
    "api_usage": ("id", "key_id", "endpoint", "status", "created_at"),
    "daily_usage": ("key_id", "day", "count"),
}
IDENTITY_TABLES = ("api_keys", "analyses", "api_usage")  # their id sequences continue after the copied ids


class TargetNotEmpty(Exception):
    """The PostgreSQL database already holds data; nothing was copied."""


@dataclass
class CopyReport:
    rows: dict[str, int]
    cache_hits: int
    cache_misses: int


def _target_contents(store: PostgresStore, conn) -> dict[str, int]:
    """Rows already in the target's tables, and its hit/miss counts: all zero for an empty database."""
    found = {table: conn.execute(f"SELECT COUNT(*) AS n FROM {table}").fetchone()["n"] for table in TABLES}
    stats = store.read_stats(conn)
    found.update(cache_hits=stats["cache_hits"], cache_misses=stats["cache_misses"])
    return {name: number for name, number in found.items() if number}


def copy_sqlite_to_postgres(source: SQLiteStore, target: PostgresStore, *,
                            progress: Callable[[str, int], None] = lambda table, rows: None) -> CopyReport:
    """Copy every row of `source` into the empty `target` (migrated first); raise TargetNotEmpty if it holds
    anything. `progress(table, rows)` is called after each table."""
    target.migrate()
    copied: dict[str, int] = {}
    with target.connection(write=True) as dst, source.connection() as src:
        existing = _target_contents(target, dst)
        if existing:
            held = ", ".join(f"{number} {name}" for name, number in existing.items())
            raise TargetNotEmpty(f"{target.describe()} already holds data ({held}); copy-to only fills an empty "
                                 f"database. Point it at a new database (createdb ...) or empty this one.")
        for table, columns in TABLES.items():
            names = ", ".join(columns)
            rows = 0
            with dst.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in src.execute(f"SELECT {names} FROM {table}"):
                    copy.write_row(tuple(row))
                    rows += 1
            copied[table] = rows
            progress(table, rows)
        stats = source.read_stats(src)
        target.add_to_stats(dst, hits=stats["cache_hits"], misses=stats["cache_misses"], now=stats["last_updated"])
        for table in IDENTITY_TABLES:
            dst.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)")
    with target.single_read() as conn:
        conn.execute("ANALYZE")  # fresh planner statistics, so search and sorting pick their indexes at once
    return CopyReport(rows=copied, cache_hits=stats["cache_hits"], cache_misses=stats["cache_misses"])
