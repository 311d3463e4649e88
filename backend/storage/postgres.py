"""The shared store: PostgreSQL through psycopg 3 and psycopg_pool, for several hosts on one database.

The pool is opened lazily in the process that uses it (never carried across gunicorn's fork). `connection()`
keeps the SQLite store's contract: a pooled connection inside a transaction that commits on success and rolls
back on any error. A lost or unreachable server surfaces as `StorageUnavailable` (the app answers 503 with
Retry-After); broken connections are dropped at once, so the store recovers without a restart when the server
is back. Nothing committed can be lost by that: a transaction either committed on the server or rolled back.
"""
from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from typing import Iterator

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from backend.storage.base import MAX_ID as _MAX_ID, SHORT_QUERY, Row, SqlStore, StorageUnavailable, escape_like
from backend.storage.migrations.postgres import MIGRATIONS

log = logging.getLogger(__name__)

# Any constant shared by every host: pg_advisory_xact_lock(MIGRATION_LOCK) makes hosts migrate one at a time.
MIGRATION_LOCK = 0x455353454E544941  # "ESSENTIA"
SETTING = "ESSENTIA_DATABASE_URL"
# Newest songs a search of one or two characters tests before it asks the short-gram index (see _search_short).
SHORT_WINDOW = 5000


def describe_url(url: str) -> str:
    """host:port/dbname of a connection URL, without user or password (for messages and logs)."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "an unparsable URL"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


class PostgresStore(SqlStore):
    dialect = "postgresql"
    PLACEHOLDER = "%s"
    # Each order matches an index of migration 1 exactly (expression, direction, NULLS FIRST as SQLite sorts).
    SORT_SQL = {
        "newest": "id DESC",
        "oldest": "id ASC",
        "title": "lower(title) ASC, id DESC",
        "artist": "lower(artist) ASC, id DESC",
        "bpm": "COALESCE(manual_bpm, bpm) ASC NULLS FIRST, id DESC",
        "key": "COALESCE(manual_key, key) ASC NULLS FIRST, id DESC",
    }

    def __init__(self, url: str, pool_size: int = 8, *, timeout: float = 5.0):
        """`timeout`: seconds to wait for a connection (the server down, or every pooled connection busy)
        before the request is answered 503; also the connect timeout."""
        self.url = url
        self.pool_size = pool_size
        self.timeout = timeout
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._pid: int | None = None
        self._migrated = False

    def describe(self) -> str:
        return "PostgreSQL at " + describe_url(self.url)

    def _unavailable(self, error: Exception) -> StorageUnavailable:
        return StorageUnavailable(f"PostgreSQL at {describe_url(self.url)} ({SETTING}) is unavailable: "
                                  f"{str(error).strip() or type(error).__name__}")

    def _connect_kwargs(self) -> dict:
        return {"autocommit": True, "row_factory": dict_row, "connect_timeout": max(1, round(self.timeout))}

    # -- schema ----------------------------------------------------------------------------------------------

    def migrate(self) -> int:
        """Bring the schema up to date on a connection of its own (so it can run before gunicorn forks);
        returns the schema version. Hosts starting together serialize on an advisory lock, and each migration
        commits with its version number or not at all. Raises StorageUnavailable if the server is unreachable."""
        try:
            with psycopg.connect(self.url, **self._connect_kwargs()) as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                             "(id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)")
                conn.execute("INSERT INTO schema_version (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
                version = conn.execute("SELECT version FROM schema_version WHERE id = 1").fetchone()["version"]
                for number in range(version, len(MIGRATIONS)):
                    conn.execute(MIGRATIONS[number])
                    conn.execute("UPDATE schema_version SET version = %s WHERE id = 1", (number + 1,))
        except psycopg.OperationalError as error:
            raise self._unavailable(error) from None
        self._migrated = True
        return len(MIGRATIONS)

    def schema_version(self, conn) -> int:
        return conn.execute("SELECT version FROM schema_version WHERE id = 1").fetchone()["version"]

    # -- connections -----------------------------------------------------------------------------------------

    def _pool_here(self) -> ConnectionPool:
        with self._lock:
            if self._pid != os.getpid():
                # A pool made by a parent process must not be used by a child: make this process's own.
                self._pid = os.getpid()
                self._pool = ConnectionPool(self.url, min_size=1, max_size=self.pool_size,
                                            kwargs=self._connect_kwargs(), open=False, timeout=self.timeout,
                                            name=f"essentia-{self._pid}")
                self._pool.open(wait=False)
            if not self._migrated:
                self.migrate()
            return self._pool

    @contextmanager
    def connection(self, *, write: bool = False) -> Iterator[psycopg.Connection]:
        """Lend a pooled connection inside a transaction: commit on success, roll back on any error.
        (`write` is accepted for the SQLite store's contract; PostgreSQL's row locks need no up-front lock.)"""
        pool = self._pool_here()
        try:
            with pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.OperationalError as error:
            self._drop_broken(pool)
            raise self._unavailable(error) from error

    @contextmanager
    def single_read(self) -> Iterator[psycopg.Connection]:
        """Lend a pooled connection for ONE read statement, in autocommit: one round trip, no BEGIN/COMMIT."""
        pool = self._pool_here()
        try:
            with pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as error:
            self._drop_broken(pool)
            raise self._unavailable(error) from error

    def _drop_broken(self, pool: ConnectionPool) -> None:
        """After a failure, test the idle connections and drop the dead ones (the server restarted, or our
        sessions were terminated): the next request gets a fresh connection instead of another dead one."""
        try:
            pool.check()
        except Exception:  # noqa: BLE001 - checking is best effort; the pool reconnects by itself anyway
            log.debug("pool check failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close()
            self._pool, self._pid = None, None

    # -- the SQL only PostgreSQL speaks ----------------------------------------------------------------------

    def search_analyses(self, conn, query: str, *, limit: int, offset: int, before: int | None = None
                        ) -> list[Row]:
        """Songs whose title or artist contains `query`, case-insensitively (Unicode, by the database's
        locale), newest first, with ids below `before` if given. The trigram GIN index answers rare words of three
        or more characters; for common ones the planner walks the primary key backwards and stops at the page.
        Shorter queries: see `_search_short`."""
        below = _MAX_ID if before is None else before
        if len(query.lower()) <= SHORT_QUERY:
            return self._search_short(conn, query, limit=limit, offset=offset, below=below)
        # Never a prepared statement: its generic plan cannot see the pattern, and would walk the whole table
        # for a rare word (psycopg prepares a statement after a few runs). Planned with the pattern, each search
        # takes the path that suits its word.
        return conn.execute(
            "SELECT * FROM analyses WHERE search_text LIKE lower(%s) AND id < %s ORDER BY id DESC LIMIT %s OFFSET %s",
            (escape_like(query), below, limit, offset), prepare=False,  # \ is PostgreSQL's default LIKE escape
        ).fetchall()

    def _search_short(self, conn, query: str, *, limit: int, offset: int, below: int) -> list[Row]:
        """A search of one or two characters, in two steps the code chooses, because the planner cannot: it has
        no estimate of how often a pair occurs and walked the whole table for a rare one. First the newest
        SHORT_WINDOW songs (or more for a deep offset) are tested with strpos(): a common pair fills its page
        there. Otherwise the pair is rare among recent songs and the short-gram GIN index (migration 3) finds
        every match, which are few; the gram function's high COST keeps the planner on that index."""
        window = max(SHORT_WINDOW, 10 * (offset + limit))
        if chr(31) not in query:  # the separator in search_text: a match there would span title and artist
            rows = conn.execute(
                "SELECT * FROM (SELECT * FROM analyses WHERE id < %s ORDER BY id DESC LIMIT %s) AS newest "
                "WHERE strpos(search_text, lower(%s)) > 0 ORDER BY id DESC LIMIT %s OFFSET %s",
                (below, window, query, limit, offset), prepare=False,
            ).fetchall()
            if len(rows) == limit:
                return rows  # the first offset + limit matches below `below` all lie in the window
        return conn.execute(
            "SELECT * FROM analyses WHERE essentia_short_grams(title, artist) @> ARRAY[lower(%s)] AND id < %s "
            "ORDER BY id DESC LIMIT %s OFFSET %s", (query, below, limit, offset), prepare=False,
        ).fetchall()
