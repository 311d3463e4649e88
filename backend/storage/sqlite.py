"""The embedded store: SQLite, with a connection pool, its numbered migrations and the SQL only SQLite speaks.

Connections are opened lazily in the process that uses them (never carried across gunicorn's fork), reused
through a bounded pool, and handed out by `SQLiteStore.connection()`, which commits on success and rolls back on
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

from backend.storage.base import MAX_ID, SHORT_QUERY, Row, SqlStore
from backend.storage.migrations.sqlite import MIGRATIONS

BUSY_TIMEOUT_MS = 10_000


def short_gram_token(gram: str) -> str:
    """The analyses_short token of a case-folded gram: the hex of its UTF-8 bytes, which the FTS5 'ascii'
    tokenizer keeps whole whatever the gram holds (spaces, punctuation, CJK)."""
    return gram.encode().hex()


def short_grams_document(title: str | None, artist: str | None) -> str:
    """The analyses_short document of a song: one token per distinct 1- and 2-character substring of its
    case-folded title and of its artist (never spanning the two)."""
    grams = set()
    for field in (title, artist):
        folded = (field or "").lower()
        grams.update(folded)
        grams.update(folded[i:i + 2] for i in range(len(folded) - 1))
    return " ".join(short_gram_token(gram) for gram in grams)


def register_functions(conn: sqlite3.Connection) -> None:
    """Give `conn` the functions the schema's triggers call (migration 5): every connection that writes
    analyses needs them, including one opened outside the store."""
    conn.create_function("essentia_short_grams", 2, short_grams_document, deterministic=True)


def _open(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    register_functions(conn)
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


class SQLiteStore(SqlStore):
    """The store on one SQLite file: a bounded pool of connections, created lazily in the process that uses it."""

    dialect = "sqlite"
    PLACEHOLDER = "?"
    # Each order matches an index of migration 3 exactly (expression, collation, direction), so a page is read
    # off the index instead of sorting the table.
    SORT_SQL = {
        "newest": "id DESC",
        "oldest": "id ASC",
        "title": "title COLLATE NOCASE ASC, id DESC",
        "artist": "artist COLLATE NOCASE ASC, id DESC",
        "bpm": "COALESCE(manual_bpm, bpm) ASC, id DESC",
        "key": "COALESCE(manual_key, key) ASC, id DESC",
    }

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

    def migrate(self) -> int:
        """Create the file if needed and bring its schema up to date; returns the schema version."""
        with self._lock:
            self._ensure_schema()
        return len(MIGRATIONS)

    def schema_version(self, conn: sqlite3.Connection) -> int:
        return conn.execute("PRAGMA user_version").fetchone()[0]

    def describe(self) -> str:
        return self.path

    def search_analyses(self, conn: sqlite3.Connection, query: str, *, limit: int, offset: int,
                        before: int | None = None) -> list[Row]:
        """Songs whose title or artist contains `query`, case-insensitively (Unicode case folding), newest first,
        with ids below `before` if given. Every query reads an index: the trigram index for three or more
        characters, analyses_short (every 1- and 2-character substring) for shorter ones."""
        below = MAX_ID if before is None else before
        folded = query.lower()
        if len(folded) <= SHORT_QUERY:
            index, term = "analyses_short", '"' + short_gram_token(folded) + '"'
        else:
            # A quoted phrase is literal.
            index, term = "analyses_search", '"' + query.replace('"', '""') + '"'
        # FTS5 yields matches in rowid order, so the newest page is read without collecting every match.
        return conn.execute(
            f"SELECT * FROM analyses WHERE id IN (SELECT rowid FROM {index} WHERE {index} MATCH ? AND rowid < ? "
            f"ORDER BY rowid DESC LIMIT ? OFFSET ?) ORDER BY id DESC",
            (term, below, limit, offset),
        ).fetchall()
