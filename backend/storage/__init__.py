"""Storage: the one Store interface and its two implementations, chosen once from Settings.

- `SQLiteStore` (backend/storage/sqlite.py): the embedded default, one file at ESSENTIA_DB_PATH.
- `PostgresStore` (backend/storage/postgres.py): when ESSENTIA_DATABASE_URL=postgresql://... is set, for several
  hosts on one database.

Both run the same SQL where the dialects agree (backend/storage/base.py) and their own only where they differ
(search, sort orders, migrations). Callers own transactions: `with store.connection(write=True) as conn:` then
`store.insert_analysis(conn, ...)`.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from typing import Any, Iterable, Iterator, Protocol, Sequence

from flask import current_app

from backend.config import Settings
from backend.storage.base import SORT_NAMES, Row, StorageUnavailable

__all__ = ["SORT_NAMES", "Row", "Store", "StorageUnavailable", "get_db_connection", "get_store", "open_store"]


class Store(Protocol):
    """What the rest of the app sees of the database, whichever it is."""

    dialect: str

    def connection(self, *, write: bool = False) -> AbstractContextManager[Any]:
        """A pooled connection in a transaction: commit on success, roll back on any error."""
    def single_read(self) -> AbstractContextManager[Any]:
        """A pooled connection for one read statement, outside a transaction."""
    def migrate(self) -> int:
        """Bring the schema up to date (safe to repeat, safe for hosts starting together); the version."""
    def schema_version(self, conn: Any) -> int: ...
    def describe(self) -> str:
        """Where the data lives, for people (a path, or host:port/db without credentials)."""
    def close(self) -> None: ...

    # analysis cache
    def find_analysis_by_cache_key(self, conn: Any, cache_key: str) -> Row | None: ...
    def find_analysis_by_id(self, conn: Any, analysis_id: int) -> Row | None: ...
    def find_analysis_by_preview_url(self, conn: Any, preview_url: str) -> Row | None: ...
    def insert_analysis(self, conn: Any, values: dict[str, Any], *, replace: bool = False) -> Row: ...
    def fill_unknown_metadata(self, conn: Any, analysis_id: int, title: str | None, artist: str | None,
                              unknown: str) -> None: ...
    def list_analyses(self, conn: Any, *, limit: int, offset: int, sort: str = "newest") -> list[Row]: ...
    def count_analyses(self, conn: Any) -> int: ...
    def search_analyses(self, conn: Any, query: str, *, limit: int, offset: int) -> list[Row]: ...
    def delete_analysis(self, conn: Any, analysis_id: int) -> bool: ...
    def clear_analyses(self, conn: Any) -> int: ...
    def analyses_after(self, conn: Any, after_id: int, limit: int) -> list[Row]: ...
    def iter_analyses(self, *, batch: int = ...) -> Iterator[Row]: ...
    def verify_analysis(self, conn: Any, analysis_id: int, *, manual_bpm: float | None, manual_key: str | None,
                        bpm_notes: str | None, verified_at: str) -> Row | None: ...
    # stats
    def add_to_stats(self, conn: Any, *, hits: int, misses: int, now: str) -> None: ...
    def read_stats(self, conn: Any) -> dict[str, Any]: ...
    # API keys
    def insert_key(self, conn: Any, *, name: str, email: str | None, key_hash: str, key_prefix: str,
                   is_admin: bool, daily_limit: int, created_at: str) -> int: ...
    def find_key_by_hash(self, conn: Any, key_hash: str) -> Row | None: ...
    def get_key(self, conn: Any, key_id: int) -> Row | None: ...
    def list_keys(self, conn: Any) -> list[Row]: ...
    def set_key_active(self, conn: Any, key_id: int, active: bool) -> bool: ...
    def set_key_daily_limit(self, conn: Any, key_id: int, daily_limit: int) -> bool: ...
    def delete_key(self, conn: Any, key_id: int) -> bool: ...
    # quota and usage
    def consume_daily_quota(self, conn: Any, key_id: int, day: str) -> int | None: ...
    def record_usage(self, conn: Any, rows: Iterable[Sequence[Any]]) -> None: ...
    def usage_today(self, conn: Any, key_id: int, day: str) -> int: ...
    def usage_total(self, conn: Any, key_id: int) -> int: ...
    def recent_usage(self, conn: Any, key_id: int, limit: int = 10) -> list[Row]: ...


def open_store(settings: Settings) -> Store:
    """The store Settings configure: PostgreSQL if a database URL is set, else SQLite at db_path. Nothing is
    connected yet (pools open lazily, after gunicorn forks)."""
    if settings.database_url:
        from backend.storage.postgres import PostgresStore  # psycopg is imported only when it is used

        return PostgresStore(settings.database_url, settings.db_pool_size, timeout=settings.db_timeout)
    from backend.storage.sqlite import SQLiteStore

    return SQLiteStore(settings.db_path, settings.db_pool_size)


def get_store() -> Store:
    """The current app's store."""
    return current_app.extensions["essentia"].store


@contextmanager
def get_db_connection(*, write: bool = False) -> Iterator[Any]:
    """A pooled connection of the current app's store, in a transaction (see Store.connection)."""
    with get_store().connection(write=write) as conn:
        yield conn
