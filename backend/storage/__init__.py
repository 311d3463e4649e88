"""Storage: the two implementations of the Store role (backend/roles.py), chosen once from Settings.

- `SQLiteStore` (backend/storage/sqlite.py): the embedded default, one file at ESSENTIA_DB_PATH.
- `PostgresStore` (backend/storage/postgres.py): when ESSENTIA_DATABASE_URL=postgresql://... is set, for several
  hosts on one database.

Both run the same SQL where the dialects agree (backend/storage/base.py) and their own only where they differ
(search, sort orders, migrations). Callers own transactions: `with store.connection(write=True) as conn:` then
`store.insert_analysis(conn, ...)`.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from flask import current_app

from backend.config import Settings
from backend.roles import Row, Store
from backend.storage.base import SORT_NAMES, StorageUnavailable

__all__ = ["SORT_NAMES", "Row", "Store", "StorageUnavailable", "get_db_connection", "get_store", "open_store"]


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
