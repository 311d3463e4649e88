"""The SQLite connection pool, the schema and its numbered migrations.

Connections are opened lazily in the process that uses them (never carried across gunicorn's fork), reused
through a bounded pool, and handed out by `Database.connection()`, which commits on success and rolls back on
error. Write transactions start with BEGIN IMMEDIATE so concurrent writers queue on the busy timeout instead of
failing with "database is locked" half-way through.
"""
from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from flask import current_app

BUSY_TIMEOUT_MS = 10_000

# Each entry moves the schema from version i to i+1 (PRAGMA user_version). Append; never edit a shipped one.
MIGRATIONS: list[str] = [
    # 1: analysis cache, API keys, usage, stats
    """
    CREATE TABLE analyses (
        id INTEGER PRIMARY KEY,
        cache_key TEXT NOT NULL UNIQUE,          -- 'url:<normalized url>' or 'sha256:<hex of the audio bytes>'
        source_kind TEXT NOT NULL CHECK (source_kind IN ('url', 'upload')),
        preview_url TEXT NOT NULL,               -- the URL, or 'upload:sha256:<hex>' for uploads
        content_sha256 TEXT,
        title TEXT NOT NULL,
        artist TEXT NOT NULL,
        bpm REAL,
        bpm_confidence REAL NOT NULL,
        key TEXT,
        key_confidence REAL NOT NULL,
        energy REAL NOT NULL,
        danceability REAL NOT NULL,
        acousticness REAL NOT NULL,
        spectral_centroid REAL NOT NULL,
        analysis_duration REAL NOT NULL,
        analyzed_at TEXT NOT NULL,
        result_json TEXT NOT NULL,               -- every field of the analysis, for the full response
        user_verified INTEGER NOT NULL DEFAULT 0,
        manual_bpm REAL,
        manual_key TEXT,
        bpm_notes TEXT,
        verified_at TEXT
    );
    CREATE INDEX analyses_content_sha256 ON analyses (content_sha256);
    CREATE INDEX analyses_analyzed_at ON analyses (analyzed_at);

    -- Substring search over title and artist: a trigram index answers LIKE '%q%' case-insensitively.
    CREATE VIRTUAL TABLE analyses_search USING fts5 (
        title, artist, content='analyses', content_rowid='id', tokenize='trigram'
    );
    CREATE TRIGGER analyses_search_insert AFTER INSERT ON analyses BEGIN
        INSERT INTO analyses_search (rowid, title, artist) VALUES (new.id, new.title, new.artist);
    END;
    CREATE TRIGGER analyses_search_delete AFTER DELETE ON analyses BEGIN
        INSERT INTO analyses_search (analyses_search, rowid, title, artist)
        VALUES ('delete', old.id, old.title, old.artist);
    END;
    CREATE TRIGGER analyses_search_update AFTER UPDATE OF title, artist ON analyses BEGIN
        INSERT INTO analyses_search (analyses_search, rowid, title, artist)
        VALUES ('delete', old.id, old.title, old.artist);
        INSERT INTO analyses_search (rowid, title, artist) VALUES (new.id, new.title, new.artist);
    END;

    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        email TEXT,
        key_hash TEXT NOT NULL UNIQUE,           -- SHA-256 of the key: keys are random, so a fast hash is right
        key_prefix TEXT NOT NULL,                -- shown in listings and logs, never enough to use
        is_admin INTEGER NOT NULL DEFAULT 0,
        active INTEGER NOT NULL DEFAULT 1,
        daily_limit INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );

    CREATE TABLE api_usage (
        id INTEGER PRIMARY KEY,
        key_id INTEGER NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
        endpoint TEXT NOT NULL,
        status INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX api_usage_key_time ON api_usage (key_id, created_at);

    -- The quota counter: one row per key and UTC day, so the check costs the same however long the history.
    CREATE TABLE daily_usage (
        key_id INTEGER NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
        day TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (key_id, day)
    ) WITHOUT ROWID;

    CREATE TABLE stats (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT INTO stats (name, value) VALUES ('cache_hits', 0), ('cache_misses', 0);
    CREATE TABLE stats_meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_updated TEXT NOT NULL
    );
    INSERT INTO stats_meta (id, last_updated) VALUES (1, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));
    """,
    # 2: the chart arrays (?detail=1) move out of result_json, so a cache hit parses only the small summary
    """
    ALTER TABLE analyses ADD COLUMN detail_json TEXT;
    """,
    # 3: a cache hit's answer, serialized once (backend/web/prebuilt.py). Any other change to the row (metadata
    # filled in, a verification, a re-analysis) clears it, so it is never older than the row; NULL means "build
    # it from the row" (rows stored before this migration, or changed since).
    """
    ALTER TABLE analyses ADD COLUMN response_json TEXT;
    CREATE TRIGGER analyses_response_stale AFTER UPDATE ON analyses
    WHEN new.response_json IS NOT NULL AND new.response_json IS old.response_json BEGIN
        UPDATE analyses SET response_json = NULL WHERE id = new.id;
    END;
    """,
]


def _open(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: a crash loses no committed transaction's integrity
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the resulting version. Safe to call on every start."""
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number in range(version, len(MIGRATIONS)):
            for statement in _split_statements(MIGRATIONS[number]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number + 1}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)


def _split_statements(script: str) -> list[str]:
    """Split a migration into statements (sqlite3.complete_statement knows about trigger bodies)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements


class Database:
    """A bounded pool of SQLite connections to one file, created lazily in the process that uses it."""

    def __init__(self, path: str, pool_size: int = 8):
        self.path = path
        self.pool_size = pool_size
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._created = 0
        self._migrated = False

    def _reset_after_fork(self) -> None:
        # Connections made by a parent process must not be used by a child: start an empty pool.
        self._pid = os.getpid()
        self._idle = queue.LifoQueue()
        self._created = 0

    def _acquire(self) -> sqlite3.Connection:
        with self._lock:
            if self._pid != os.getpid():
                self._reset_after_fork()
            if not self._migrated:
                self._ensure_schema()
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                pass
            if self._created < self.pool_size:
                self._created += 1
                return _open(self.path)
        return self._idle.get(timeout=BUSY_TIMEOUT_MS / 1000)

    def _release(self, conn: sqlite3.Connection) -> None:
        if self._pid == os.getpid():
            self._idle.put(conn)
        else:
            conn.close()

    def _ensure_schema(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = _open(self.path)
        try:
            # Two processes opening a new file at once can collide on the switch to WAL, which SQLite reports
            # as "locked" without waiting on the busy timeout; the loser simply tries again.
            for attempt in range(50):
                try:
                    migrate(conn)
                    break
                except sqlite3.OperationalError as error:
                    if "locked" not in str(error) or attempt == 49:
                        raise
                    time.sleep(0.05)
        finally:
            conn.close()
        self._migrated = True

    @contextmanager
    def connection(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """Lend a pooled connection inside a transaction: commit on success, roll back on any error.

        `write=True` takes the write lock up front (BEGIN IMMEDIATE); reads use a deferred transaction so a
        multi-statement read sees one consistent snapshot.
        """
        conn = self._acquire()
        reusable = False
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                reusable = True
                raise
            conn.execute("COMMIT")
            reusable = True
        finally:
            # A connection whose ROLLBACK or COMMIT failed is in an unknown state: close it, do not pool it.
            if reusable:
                self._release(conn)
            else:
                self._discard(conn)

    @contextmanager
    def single_read(self) -> Iterator[sqlite3.Connection]:
        """Lend a pooled connection for ONE read statement, outside any transaction: SQLite runs a lone statement
        as its own consistent snapshot, so the BEGIN and COMMIT round trips (half the cost of a cache hit's
        lookup) buy nothing there. Writes and multi-statement reads use connection()."""
        conn = self._acquire()
        try:
            yield conn
        finally:
            if conn.in_transaction:  # not for writes, but never pool a connection left inside one
                self._discard(conn)
            else:
                self._release(conn)

    def _discard(self, conn: sqlite3.Connection) -> None:
        try:
            conn.close()
        finally:
            with self._lock:
                if self._pid == os.getpid():
                    self._created -= 1

    def close(self) -> None:
        with self._lock:
            while True:
                try:
                    self._idle.get_nowait().close()
                except queue.Empty:
                    break
            self._created = 0


def get_db() -> Database:
    """The current app's database."""
    return current_app.extensions["essentia"].db


@contextmanager
def get_db_connection(*, write: bool = False) -> Iterator[sqlite3.Connection]:
    """A pooled connection of the current app's database, in a transaction (see Database.connection)."""
    with get_db().connection(write=write) as conn:
        yield conn
