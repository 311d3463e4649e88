"""Every SQL statement of the app, written once for both dialects. `SqlStore` holds the statements on which
SQLite and PostgreSQL agree; `sqlite.SQLiteStore` and `postgres.PostgresStore` add a connection pool and the
few statements that differ (search, sort orders, schema version). Statements are written with `?` placeholders
and turned into the driver's style once (`_sql`). Methods take an open connection (see `connection()`) and
return plain rows (read as row["column"] on both stores) or values; transactions belong to the caller."""
from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence

from backend.roles import Row

# Columns a new analysis row is written with, in order.
ANALYSIS_COLUMNS = (
    "cache_key", "source_kind", "preview_url", "content_sha256", "title", "artist",
    "bpm", "bpm_confidence", "key", "key_confidence", "energy", "danceability", "acousticness",
    "spectral_centroid", "analysis_duration", "analyzed_at", "result_json", "detail_json",
)
# Every column of an analyses row (what a copy between stores carries).
ALL_ANALYSIS_COLUMNS = ("id", *ANALYSIS_COLUMNS, "user_verified", "manual_bpm", "manual_key", "bpm_notes",
                        "verified_at")

# Orders the cache listing may be sorted by (API names). Each dialect maps them to SQL that its indexes serve.
SORT_NAMES = ("newest", "oldest", "title", "artist", "bpm", "key")

# Ids are signed 64-bit on both stores: an id outside that range names no row (and would overflow the driver).
MAX_ID = 2**63 - 1

# Search queries of up to this many characters (case-folded) have no trigram: each store answers them from an
# index of every 1- and 2-character substring of title and artist instead.
SHORT_QUERY = 2

EXPORT_BATCH = 1000  # rows /cache/export reads per statement while it streams


class StorageUnavailable(Exception):
    """The store cannot be reached or cannot take the request now (server down, connections lost, every pooled
    connection busy). Nothing committed is lost; the caller may retry after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: int = 5):
        super().__init__(message)
        self.retry_after = retry_after


@functools.lru_cache(maxsize=512)
def in_placeholder_style(statement: str, placeholder: str) -> str:
    """`statement`, written with `?` placeholders, for a driver using `placeholder` (e.g. psycopg's %s, where a
    literal % is written %%). Our statements carry no literal `?`."""
    if placeholder == "?":
        return statement
    return statement.replace("%", "%%").replace("?", placeholder)


def _valid_rowid(value: int) -> bool:
    return 0 < value <= MAX_ID


def escape_like(text: str) -> str:
    """`text` as a LIKE pattern matching itself anywhere (with ESCAPE '\\')."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class SqlStore:
    """The SQL both dialects share. Subclasses supply `connection()`, `single_read()`, `migrate()`, `close()`,
    `schema_version()`, `SORT_SQL` and `search_analyses()`."""

    dialect = "sql"
    PLACEHOLDER = "?"
    SORT_SQL: dict[str, str] = {}

    # -- plumbing --------------------------------------------------------------------------------------------

    def _sql(self, statement: str) -> str:
        """`statement` (written with ?) in this driver's placeholder style."""
        return in_placeholder_style(statement, self.PLACEHOLDER)

    def _execute(self, conn, statement: str, params: Sequence[Any] = ()):
        return conn.execute(self._sql(statement), params)

    def _one(self, conn, statement: str, params: Sequence[Any] = ()) -> Row | None:
        return self._execute(conn, statement, params).fetchone()

    def _all(self, conn, statement: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._execute(conn, statement, params).fetchall()

    def _rowcount(self, conn, statement: str, params: Sequence[Any] = ()) -> int:
        return self._execute(conn, statement, params).rowcount

    @contextmanager
    def connection(self, *, write: bool = False) -> Iterator[Any]:  # pragma: no cover - subclasses
        raise NotImplementedError
        yield

    # -- analysis cache --------------------------------------------------------------------------------------

    def find_analysis_by_cache_key(self, conn, cache_key: str) -> Row | None:
        return self._one(conn, "SELECT * FROM analyses WHERE cache_key = ?", (cache_key,))

    def find_analysis_by_id(self, conn, analysis_id: int) -> Row | None:
        if not _valid_rowid(analysis_id):
            return None
        return self._one(conn, "SELECT * FROM analyses WHERE id = ?", (analysis_id,))

    def find_analysis_by_preview_url(self, conn, preview_url: str) -> Row | None:
        return self._one(conn, "SELECT * FROM analyses WHERE preview_url = ? ORDER BY id LIMIT 1", (preview_url,))

    def insert_analysis(self, conn, values: dict[str, Any], *, replace: bool = False) -> Row:
        """Store a new analysis and return its row. If another request stored the same content first, keep theirs
        (same content, same answer) and return it; with `replace`, overwrite its measurements instead (a forced
        re-analysis), keeping its id, metadata and any user corrections."""
        placeholders = ", ".join("?" for _ in ANALYSIS_COLUMNS)
        measured = [c for c in ANALYSIS_COLUMNS
                    if c not in ("cache_key", "source_kind", "preview_url", "title", "artist")]
        on_conflict = ("DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in measured)) if replace \
            else "DO NOTHING"
        self._execute(
            conn,
            f"INSERT INTO analyses ({', '.join(ANALYSIS_COLUMNS)}) VALUES ({placeholders}) "
            f"ON CONFLICT (cache_key) {on_conflict}",
            [values[column] for column in ANALYSIS_COLUMNS],
        )
        return self.find_analysis_by_cache_key(conn, values["cache_key"])

    def fill_unknown_metadata(self, conn, analysis_id: int, title: str | None, artist: str | None,
                              unknown: str) -> None:
        """Give a cached song the title/artist a later request supplied, where it had none."""
        if title:
            self._execute(conn, "UPDATE analyses SET title = ? WHERE id = ? AND title = ?",
                          (title, analysis_id, unknown))
        if artist:
            self._execute(conn, "UPDATE analyses SET artist = ? WHERE id = ? AND artist = ?",
                          (artist, analysis_id, unknown))

    def store_response_json(self, conn, row: Row, response_json: str) -> bool:
        """Keep `response_json` (built from `row`) as the row's serialized answer, unless the row has changed since
        it was read (then the answer would be stale: nothing is written) or already has one. True if written."""
        return self._rowcount(
            conn,
            "UPDATE analyses SET response_json = ? WHERE id = ? AND response_json IS NULL "
            "AND analyzed_at IS NOT DISTINCT FROM ? AND title IS NOT DISTINCT FROM ? "
            "AND artist IS NOT DISTINCT FROM ? AND preview_url IS NOT DISTINCT FROM ? "
            "AND user_verified IS NOT DISTINCT FROM ? AND manual_bpm IS NOT DISTINCT FROM ? "
            "AND manual_key IS NOT DISTINCT FROM ? AND bpm_notes IS NOT DISTINCT FROM ?",
            (response_json, row["id"], row["analyzed_at"], row["title"], row["artist"], row["preview_url"],
             row["user_verified"], row["manual_bpm"], row["manual_key"], row["bpm_notes"]),
        ) > 0

    def list_analyses(self, conn, *, limit: int, offset: int, sort: str = "newest") -> list[Row]:
        """One page of the cache in a whitelisted order. The page's ids are found on the order's index alone
        (skipping `offset` index entries, not `offset` whole rows), then only those rows are read."""
        order = self.SORT_SQL[sort]
        return self._all(
            conn,
            f"SELECT * FROM analyses WHERE id IN (SELECT id FROM analyses ORDER BY {order} LIMIT ? OFFSET ?) "
            f"ORDER BY {order}",
            (limit, offset),
        )

    def count_analyses(self, conn) -> int:
        """Songs in the cache: a counter the schema keeps exact in the same transaction as every insert and
        delete (triggers), so reading it costs the same at any catalog size."""
        row = self._one(conn, "SELECT value FROM stats WHERE name = 'cached_songs'")
        return 0 if row is None else row["value"]

    def search_analyses(self, conn, query: str, *, limit: int, offset: int,
                        before: int | None = None) -> list[Row]:  # pragma: no cover
        raise NotImplementedError

    def delete_analysis(self, conn, analysis_id: int) -> bool:
        if not _valid_rowid(analysis_id):
            return False
        return self._rowcount(conn, "DELETE FROM analyses WHERE id = ?", (analysis_id,)) > 0

    def clear_analyses(self, conn) -> int:
        return self._rowcount(conn, "DELETE FROM analyses")

    def analyses_after(self, conn, after_id: int, limit: int) -> list[Row]:
        """Up to `limit` songs with ids above `after_id`, in id order: one step of a walk over the whole cache
        that costs the same per step at any size (keyset, not OFFSET)."""
        return self._all(conn, "SELECT * FROM analyses WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))

    def iter_analyses(self, *, batch: int = EXPORT_BATCH) -> Iterator[Row]:
        """Every song in id order, read `batch` rows at a time, each batch on a pooled connection borrowed only
        for that statement: memory stays bounded by `batch` and no connection is held between batches."""
        after = 0
        while True:
            with self.single_read() as conn:
                rows = self.analyses_after(conn, after, batch)
            yield from rows
            if len(rows) < batch:
                return
            after = rows[-1]["id"]

    def verify_analysis(self, conn, analysis_id: int, *, manual_bpm: float | None, manual_key: str | None,
                        bpm_notes: str | None, verified_at: str) -> Row | None:
        self._execute(
            conn,
            "UPDATE analyses SET user_verified = 1, manual_bpm = ?, manual_key = ?, bpm_notes = ?, "
            "verified_at = ? WHERE id = ?",
            (manual_bpm, manual_key, bpm_notes, verified_at, analysis_id),
        )
        return self.find_analysis_by_id(conn, analysis_id)

    # -- stats -----------------------------------------------------------------------------------------------

    def add_to_stats(self, conn, *, hits: int, misses: int, now: str) -> None:
        self._execute(conn, "UPDATE stats SET value = value + ? WHERE name = 'cache_hits'", (hits,))
        self._execute(conn, "UPDATE stats SET value = value + ? WHERE name = 'cache_misses'", (misses,))
        self._execute(conn, "UPDATE stats_meta SET last_updated = ? WHERE id = 1", (now,))

    def read_stats(self, conn) -> dict[str, Any]:
        counters = {row["name"]: row["value"] for row in self._all(conn, "SELECT name, value FROM stats")}
        last_updated = self._one(conn, "SELECT last_updated FROM stats_meta WHERE id = 1")["last_updated"]
        return {"cache_hits": counters.get("cache_hits", 0), "cache_misses": counters.get("cache_misses", 0),
                "last_updated": last_updated}

    # -- API keys --------------------------------------------------------------------------------------------

    def insert_key(self, conn, *, name: str, email: str | None, key_hash: str, key_prefix: str, is_admin: bool,
                   daily_limit: int, created_at: str) -> int:
        return self._one(
            conn,
            "INSERT INTO api_keys (name, email, key_hash, key_prefix, is_admin, active, daily_limit, created_at) "
            "VALUES (?, ?, ?, ?, ?, 1, ?, ?) RETURNING id",
            (name, email, key_hash, key_prefix, int(is_admin), daily_limit, created_at),
        )["id"]

    def find_key_by_hash(self, conn, key_hash: str) -> Row | None:
        return self._one(
            conn,
            "SELECT id, name, key_hash, key_prefix, is_admin, active, daily_limit FROM api_keys WHERE key_hash = ?",
            (key_hash,),
        )

    def get_key(self, conn, key_id: int) -> Row | None:
        if not _valid_rowid(key_id):
            return None
        return self._one(conn, "SELECT * FROM api_keys WHERE id = ?", (key_id,))

    def list_keys(self, conn) -> list[Row]:
        return self._all(conn, "SELECT * FROM api_keys ORDER BY id")

    def set_key_active(self, conn, key_id: int, active: bool) -> bool:
        return self._rowcount(conn, "UPDATE api_keys SET active = ? WHERE id = ?", (int(active), key_id)) > 0

    def set_key_daily_limit(self, conn, key_id: int, daily_limit: int) -> bool:
        return self._rowcount(conn, "UPDATE api_keys SET daily_limit = ? WHERE id = ?", (daily_limit, key_id)) > 0

    def delete_key(self, conn, key_id: int) -> bool:
        return self._rowcount(conn, "DELETE FROM api_keys WHERE id = ?", (key_id,)) > 0

    # -- quota and usage -------------------------------------------------------------------------------------

    def consume_daily_quota(self, conn, key_id: int, day: str) -> int | None:
        """Count one request against the key's quota for `day`, reading the key's current limit (0 = unlimited);
        return the new count, or None when the quota is used up or the key is gone or inactive (nothing is
        counted then). One statement on two primary keys, whatever the history size."""
        row = self._one(
            conn,
            "INSERT INTO daily_usage (key_id, day, count) "
            "SELECT id, ?, 1 FROM api_keys WHERE id = ? AND active = 1 "
            "ON CONFLICT (key_id, day) DO UPDATE SET count = daily_usage.count + 1 "
            "WHERE (SELECT daily_limit FROM api_keys WHERE id = excluded.key_id) = 0 "
            "OR daily_usage.count < (SELECT daily_limit FROM api_keys WHERE id = excluded.key_id) "
            "RETURNING count",
            (day, key_id),
        )
        return None if row is None else row["count"]

    def record_usage(self, conn, rows: Iterable[Sequence[Any]]) -> None:
        """Append usage records: (key_id, endpoint, status, created_at) each. Rows of deleted keys are skipped."""
        conn.cursor().executemany(
            self._sql("INSERT INTO api_usage (key_id, endpoint, status, created_at) "
                      "SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM api_keys WHERE id = ?)"),
            [(*row, row[0]) for row in rows],
        )

    def add_daily_usage(self, conn, key_id: int, day: str, count: int) -> None:
        """Add `count` requests, already checked against the limit elsewhere (runtime/quota.py), to the key's count
        for `day`. Nothing is added for a deleted key."""
        self._execute(
            conn,
            "INSERT INTO daily_usage (key_id, day, count) SELECT id, ?, ? FROM api_keys WHERE id = ? "
            "ON CONFLICT (key_id, day) DO UPDATE SET count = daily_usage.count + excluded.count",
            (day, count, key_id),
        )

    def raise_daily_usage(self, conn, rows: Iterable[Sequence[Any]]) -> None:
        """Raise each key's count for a day to at least the one given, never lowering it: (key_id, day, count)
        each, as counted elsewhere (the Redis quota). Rows of deleted keys are skipped."""
        conn.cursor().executemany(
            self._sql("INSERT INTO daily_usage (key_id, day, count) "
                      "SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM api_keys WHERE id = ?) "
                      "ON CONFLICT (key_id, day) DO UPDATE SET count = CASE "
                      "WHEN excluded.count > daily_usage.count THEN excluded.count ELSE daily_usage.count END"),
            [(*row, row[0]) for row in rows],
        )

    def usage_today(self, conn, key_id: int, day: str) -> int:
        row = self._one(conn, "SELECT count FROM daily_usage WHERE key_id = ? AND day = ?", (key_id, day))
        return 0 if row is None else row["count"]

    def usage_total(self, conn, key_id: int) -> int:
        return self._one(conn, "SELECT COUNT(*) AS n FROM api_usage WHERE key_id = ?", (key_id,))["n"]

    def recent_usage(self, conn, key_id: int, limit: int = 10) -> list[Row]:
        return self._all(
            conn,
            "SELECT endpoint, status, created_at FROM api_usage WHERE key_id = ? "
            "ORDER BY created_at DESC, id DESC LIMIT ?",
            (key_id, limit),
        )
