"""Every SQL statement of the app. Functions take an open connection (see db.Database.connection) and return
plain rows or values; transactions belong to the caller."""
from __future__ import annotations

import sqlite3
from typing import Any, Iterable, Sequence

Row = sqlite3.Row

# Columns a new analysis row is written with, in order.
ANALYSIS_COLUMNS = (
    "cache_key", "source_kind", "preview_url", "content_sha256", "title", "artist",
    "bpm", "bpm_confidence", "key", "key_confidence", "energy", "danceability", "acousticness",
    "spectral_centroid", "analysis_duration", "analyzed_at", "result_json", "detail_json",
)

# Orders the cache listing may be sorted by: API name -> SQL (whitelisted, never interpolated from input).
SORT_ORDERS = {
    "newest": "id DESC",
    "oldest": "id ASC",
    "title": "title COLLATE NOCASE ASC, id DESC",
    "artist": "artist COLLATE NOCASE ASC, id DESC",
    "bpm": "COALESCE(manual_bpm, bpm) ASC, id DESC",
    "key": "COALESCE(manual_key, key) ASC, id DESC",
}

# -- analysis cache -------------------------------------------------------------------------------------------

# SQLite integers are signed 64-bit: an id outside that range names no row (and would overflow the driver).
_MAX_ROWID = 2**63 - 1


def _valid_rowid(value: int) -> bool:
    return 0 < value <= _MAX_ROWID


def find_analysis_by_cache_key(conn: sqlite3.Connection, cache_key: str) -> Row | None:
    return conn.execute("SELECT * FROM analyses WHERE cache_key = ?", (cache_key,)).fetchone()


def find_analysis_by_id(conn: sqlite3.Connection, analysis_id: int) -> Row | None:
    if not _valid_rowid(analysis_id):
        return None
    return conn.execute("SELECT * FROM analyses WHERE id = ?", (analysis_id,)).fetchone()


def find_analysis_by_preview_url(conn: sqlite3.Connection, preview_url: str) -> Row | None:
    return conn.execute("SELECT * FROM analyses WHERE preview_url = ? ORDER BY id LIMIT 1",
                        (preview_url,)).fetchone()


def insert_analysis(conn: sqlite3.Connection, values: dict[str, Any], *, replace: bool = False) -> Row:
    """Store a new analysis and return its row. If another request stored the same content first, keep theirs
    (same content, same answer) and return it; with `replace`, overwrite its measurements instead (a forced
    re-analysis), keeping its id, metadata and any user corrections."""
    placeholders = ", ".join("?" for _ in ANALYSIS_COLUMNS)
    measured = [c for c in ANALYSIS_COLUMNS if c not in ("cache_key", "source_kind", "preview_url", "title", "artist")]
    on_conflict = ("DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in measured)) if replace \
        else "DO NOTHING"
    conn.execute(
        f"INSERT INTO analyses ({', '.join(ANALYSIS_COLUMNS)}) VALUES ({placeholders}) "
        f"ON CONFLICT (cache_key) {on_conflict}",
        [values[column] for column in ANALYSIS_COLUMNS],
    )
    return find_analysis_by_cache_key(conn, values["cache_key"])


def fill_unknown_metadata(conn: sqlite3.Connection, analysis_id: int, title: str | None,
                          artist: str | None, unknown: str) -> None:
    """Give a cached song the title/artist a later request supplied, where it had none."""
    if title:
        conn.execute("UPDATE analyses SET title = ? WHERE id = ? AND title = ?", (title, analysis_id, unknown))
    if artist:
        conn.execute("UPDATE analyses SET artist = ? WHERE id = ? AND artist = ?", (artist, analysis_id, unknown))


def store_response_json(conn: sqlite3.Connection, row: Row, response_json: str) -> bool:
    """Keep `response_json` (built from `row`) as the row's serialized answer, unless the row has changed since
    it was read (then the answer would be stale: nothing is written) or already has one. True if written."""
    return conn.execute(
        "UPDATE analyses SET response_json = ? WHERE id = ? AND response_json IS NULL AND analyzed_at IS ? "
        "AND title IS ? AND artist IS ? AND preview_url IS ? AND user_verified IS ? AND manual_bpm IS ? "
        "AND manual_key IS ? AND bpm_notes IS ?",
        (response_json, row["id"], row["analyzed_at"], row["title"], row["artist"], row["preview_url"],
         row["user_verified"], row["manual_bpm"], row["manual_key"], row["bpm_notes"]),
    ).rowcount > 0


def list_analyses(conn: sqlite3.Connection, *, limit: int, offset: int, sort: str = "newest") -> list[Row]:
    order = SORT_ORDERS[sort]
    return conn.execute(f"SELECT * FROM analyses ORDER BY {order} LIMIT ? OFFSET ?", (limit, offset)).fetchall()


def count_analyses(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM analyses").fetchone()[0]


def search_analyses(conn: sqlite3.Connection, query: str, *, limit: int, offset: int) -> list[Row]:
    """Songs whose title or artist contains `query`, case-insensitively, newest first."""
    if len(query) >= 3:
        # The trigram index answers substring queries of three or more characters; a quoted phrase is literal.
        phrase = '"' + query.replace('"', '""') + '"'
        return conn.execute(
            "SELECT a.* FROM analyses_search s JOIN analyses a ON a.id = s.rowid "
            "WHERE analyses_search MATCH ? ORDER BY a.id DESC LIMIT ? OFFSET ?",
            (phrase, limit, offset),
        ).fetchall()
    pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return conn.execute(
        "SELECT * FROM analyses WHERE title LIKE ? ESCAPE '\\' OR artist LIKE ? ESCAPE '\\' "
        "ORDER BY id DESC LIMIT ? OFFSET ?",
        (pattern, pattern, limit, offset),
    ).fetchall()


def delete_analysis(conn: sqlite3.Connection, analysis_id: int) -> bool:
    if not _valid_rowid(analysis_id):
        return False
    return conn.execute("DELETE FROM analyses WHERE id = ?", (analysis_id,)).rowcount > 0


def clear_analyses(conn: sqlite3.Connection) -> int:
    return conn.execute("DELETE FROM analyses").rowcount


def all_analyses(conn: sqlite3.Connection) -> list[Row]:
    return conn.execute("SELECT * FROM analyses ORDER BY id").fetchall()


def verify_analysis(conn: sqlite3.Connection, analysis_id: int, *, manual_bpm: float | None,
                    manual_key: str | None, bpm_notes: str | None, verified_at: str) -> Row | None:
    conn.execute(
        "UPDATE analyses SET user_verified = 1, manual_bpm = ?, manual_key = ?, bpm_notes = ?, verified_at = ? "
        "WHERE id = ?",
        (manual_bpm, manual_key, bpm_notes, verified_at, analysis_id),
    )
    return find_analysis_by_id(conn, analysis_id)


# -- stats ----------------------------------------------------------------------------------------------------


def add_to_stats(conn: sqlite3.Connection, *, hits: int, misses: int, now: str) -> None:
    conn.execute("UPDATE stats SET value = value + ? WHERE name = 'cache_hits'", (hits,))
    conn.execute("UPDATE stats SET value = value + ? WHERE name = 'cache_misses'", (misses,))
    conn.execute("UPDATE stats_meta SET last_updated = ? WHERE id = 1", (now,))


def read_stats(conn: sqlite3.Connection) -> dict[str, Any]:
    counters = {row["name"]: row["value"] for row in conn.execute("SELECT name, value FROM stats")}
    last_updated = conn.execute("SELECT last_updated FROM stats_meta WHERE id = 1").fetchone()[0]
    return {"cache_hits": counters.get("cache_hits", 0), "cache_misses": counters.get("cache_misses", 0),
            "last_updated": last_updated}


# -- API keys -------------------------------------------------------------------------------------------------


def insert_key(conn: sqlite3.Connection, *, name: str, email: str | None, key_hash: str, key_prefix: str,
               is_admin: bool, daily_limit: int, created_at: str) -> int:
    cursor = conn.execute(
        "INSERT INTO api_keys (name, email, key_hash, key_prefix, is_admin, active, daily_limit, created_at) "
        "VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
        (name, email, key_hash, key_prefix, int(is_admin), daily_limit, created_at),
    )
    return cursor.lastrowid


def find_key_by_hash(conn: sqlite3.Connection, key_hash: str) -> Row | None:
    return conn.execute(
        "SELECT id, name, key_hash, key_prefix, is_admin, active, daily_limit FROM api_keys WHERE key_hash = ?",
        (key_hash,),
    ).fetchone()


def get_key(conn: sqlite3.Connection, key_id: int) -> Row | None:
    if not _valid_rowid(key_id):
        return None
    return conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()


def list_keys(conn: sqlite3.Connection) -> list[Row]:
    return conn.execute("SELECT * FROM api_keys ORDER BY id").fetchall()


def set_key_active(conn: sqlite3.Connection, key_id: int, active: bool) -> bool:
    return conn.execute("UPDATE api_keys SET active = ? WHERE id = ?", (int(active), key_id)).rowcount > 0


def set_key_daily_limit(conn: sqlite3.Connection, key_id: int, daily_limit: int) -> bool:
    return conn.execute("UPDATE api_keys SET daily_limit = ? WHERE id = ?", (daily_limit, key_id)).rowcount > 0


def delete_key(conn: sqlite3.Connection, key_id: int) -> bool:
    return conn.execute("DELETE FROM api_keys WHERE id = ?", (key_id,)).rowcount > 0


# -- quota and usage ------------------------------------------------------------------------------------------


def consume_daily_quota(conn: sqlite3.Connection, key_id: int, day: str) -> int | None:
    """Count one request against the key's quota for `day`, reading the key's current limit (0 = unlimited);
    return the new count, or None when the quota is used up or the key is gone or inactive (nothing is counted
    then). One statement on two primary keys, whatever the history size."""
    row = conn.execute(
        "INSERT INTO daily_usage (key_id, day, count) "
        "SELECT id, ?, 1 FROM api_keys WHERE id = ? AND active = 1 "
        "ON CONFLICT (key_id, day) DO UPDATE SET count = count + 1 "
        "WHERE (SELECT daily_limit FROM api_keys WHERE id = excluded.key_id) = 0 "
        "OR daily_usage.count < (SELECT daily_limit FROM api_keys WHERE id = excluded.key_id) "
        "RETURNING count",
        (day, key_id),
    ).fetchone()
    return None if row is None else row[0]


def add_daily_usage(conn: sqlite3.Connection, key_id: int, day: str, count: int) -> None:
    """Add `count` requests, already checked against the limit elsewhere (runtime/quota.py), to the key's count
    for `day`. Nothing is added for a deleted key."""
    conn.execute(
        "INSERT INTO daily_usage (key_id, day, count) SELECT id, ?, ? FROM api_keys WHERE id = ? "
        "ON CONFLICT (key_id, day) DO UPDATE SET count = daily_usage.count + excluded.count",
        (day, count, key_id),
    )


def record_usage(conn: sqlite3.Connection, rows: Iterable[Sequence[Any]]) -> None:
    """Append usage records: (key_id, endpoint, status, created_at) each. Rows of deleted keys are skipped."""
    conn.executemany(
        "INSERT INTO api_usage (key_id, endpoint, status, created_at) "
        "SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM api_keys WHERE id = ?1)",
        [tuple(row) for row in rows],
    )


def usage_today(conn: sqlite3.Connection, key_id: int, day: str) -> int:
    row = conn.execute("SELECT count FROM daily_usage WHERE key_id = ? AND day = ?", (key_id, day)).fetchone()
    return 0 if row is None else row[0]


def usage_total(conn: sqlite3.Connection, key_id: int) -> int:
    return conn.execute("SELECT COUNT(*) FROM api_usage WHERE key_id = ?", (key_id,)).fetchone()[0]


def recent_usage(conn: sqlite3.Connection, key_id: int, limit: int = 10) -> list[Row]:
    return conn.execute(
        "SELECT endpoint, status, created_at FROM api_usage WHERE key_id = ? ORDER BY created_at DESC, id DESC "
        "LIMIT ?",
        (key_id, limit),
    ).fetchall()
