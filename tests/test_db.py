"""The SQLite layer: migrations, WAL, transactions that commit or roll back, the bounded pool, fork safety, and
concurrent writers that wait instead of failing with "database is locked"."""
from __future__ import annotations

import sqlite3
import threading

import pytest

from backend.storage.migrations.sqlite import MIGRATIONS
from backend.storage.sqlite import SQLiteStore, migrate


@pytest.fixture
def db(tmp_path):
    database = SQLiteStore(str(tmp_path / "sub" / "dir" / "test.db"), pool_size=4)
    yield database
    database.close()


def _names(conn, kind: str) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = ?", (kind,))}


def test_first_connection_creates_the_file_and_the_schema(db, tmp_path):
    with db.connection() as conn:
        tables = _names(conn, "table")
        indexes = _names(conn, "index")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    assert (tmp_path / "sub" / "dir" / "test.db").exists()
    assert {"analyses", "api_keys", "api_usage", "daily_usage", "stats", "stats_meta", "analyses_search"} <= tables
    # The lookups the app makes are indexed.
    assert {"analyses_content_sha256", "api_usage_key_time"} <= indexes
    assert version == len(MIGRATIONS) >= 1


def test_lookups_use_indexes(db):
    with db.connection() as conn:
        def plan(sql, *params):
            return " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
        for sql, params in [
            ("SELECT * FROM analyses WHERE cache_key = ?", ("k",)),
            ("SELECT * FROM analyses WHERE content_sha256 = ?", ("h",)),
            ("SELECT id, key_hash, active FROM api_keys WHERE key_hash = ?", ("h",)),
            ("SELECT COUNT(*) FROM api_usage WHERE key_id = ?", (1,)),
            ("SELECT count FROM daily_usage WHERE key_id = ? AND day = ?", (1, "d")),
        ]:
            text = plan(sql, *params)
            assert text.startswith("SEARCH") and "SCAN" not in text, (sql, text)


def test_running_migrations_again_is_a_no_op(db):
    with db.connection(write=True) as conn:
        conn.execute("INSERT INTO api_keys (name, key_hash, key_prefix, daily_limit, created_at) "
                     "VALUES ('k', 'h', 'ess_1234', 5, 'now')")
        conn.execute("UPDATE stats SET value = 7 WHERE name = 'cache_hits'")
    raw = sqlite3.connect(db.path, isolation_level=None)
    try:
        assert migrate(raw) == len(MIGRATIONS)
        assert migrate(raw) == len(MIGRATIONS)
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert raw.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0] == 1
        # The seed rows were not inserted twice, and data was kept.
        assert raw.execute("SELECT COUNT(*) FROM stats").fetchone()[0] == 3
        assert raw.execute("SELECT value FROM stats WHERE name = 'cache_hits'").fetchone()[0] == 7
    finally:
        raw.close()
    # A second store on the same file (a restarted server) starts without error and sees the data.
    again = SQLiteStore(db.path)
    try:
        with again.connection() as conn:
            assert conn.execute("SELECT name FROM api_keys").fetchone()[0] == "k"
    finally:
        again.close()


def test_wal_mode_busy_timeout_and_foreign_keys(db):
    with db.connection() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_commits_on_success(db):
    with db.connection(write=True) as conn:
        conn.execute("UPDATE stats SET value = 42 WHERE name = 'cache_misses'")
    # Seen from an independent connection: the transaction really committed.
    raw = sqlite3.connect(db.path)
    try:
        assert raw.execute("SELECT value FROM stats WHERE name = 'cache_misses'").fetchone()[0] == 42
    finally:
        raw.close()


def test_rolls_back_on_an_exception_and_the_connection_stays_usable(db):
    with pytest.raises(RuntimeError, match="boom"):
        with db.connection(write=True) as conn:
            conn.execute("UPDATE stats SET value = 99 WHERE name = 'cache_hits'")
            conn.execute("INSERT INTO api_keys (name, key_hash, key_prefix, daily_limit, created_at) "
                         "VALUES ('k', 'h', 'p', 1, 'now')")
            raise RuntimeError("boom")
    with db.connection() as conn:
        assert conn.execute("SELECT value FROM stats WHERE name = 'cache_hits'").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0] == 0
    with db.connection(write=True) as conn:
        conn.execute("UPDATE stats SET value = 1 WHERE name = 'cache_hits'")
    with db.connection() as conn:
        assert conn.execute("SELECT value FROM stats WHERE name = 'cache_hits'").fetchone()[0] == 1


def test_sql_error_rolls_back_the_whole_transaction(db):
    with pytest.raises(sqlite3.IntegrityError):
        with db.connection(write=True) as conn:
            conn.execute("UPDATE stats SET value = 5 WHERE name = 'cache_hits'")
            conn.execute("INSERT INTO stats (name, value) VALUES ('cache_hits', 1)")  # duplicate primary key
    with db.connection() as conn:
        assert conn.execute("SELECT value FROM stats WHERE name = 'cache_hits'").fetchone()[0] == 0


def test_connections_are_reused(db):
    seen = set()
    for _ in range(20):
        with db.connection() as conn:
            seen.add(id(conn))
    assert len(seen) == 1


def test_pool_never_hands_out_more_than_pool_size(tmp_path):
    db = SQLiteStore(str(tmp_path / "pool.db"), pool_size=2)
    got = {}
    acquired = threading.Event()
    try:
        first_cm, second_cm = db.connection(), db.connection()
        first, second = first_cm.__enter__(), second_cm.__enter__()
        assert first is not second

        def third():
            with db.connection() as conn:
                got["conn"] = conn
                acquired.set()

        thread = threading.Thread(target=third)
        thread.start()
        assert not acquired.wait(0.15), "a third connection was handed out while two were lent"
        second_cm.__exit__(None, None, None)
        assert acquired.wait(5)
        thread.join(5)
        assert got["conn"] is second  # the returned connection was reused, no new one opened
        first_cm.__exit__(None, None, None)

        seen = set()
        for _ in range(10):
            with db.connection() as conn:
                seen.add(id(conn))
        assert seen <= {id(first), id(second)}
    finally:
        db.close()


def test_connection_is_not_reused_across_a_fork(db):
    with db.connection() as conn:
        parent_conn = conn
    with db.connection() as conn:
        assert conn is parent_conn  # same process: reused
    db._pid = -1  # as if this code now ran in a forked child
    with db.connection() as conn:
        child_conn = conn
        assert conn.execute("SELECT COUNT(*) FROM stats").fetchone()[0] == 3
    assert child_conn is not parent_conn
    with db.connection() as conn:
        assert conn is child_conn  # the child's own pool is reused from then on


def test_concurrent_writers_all_succeed(tmp_path):
    path = str(tmp_path / "concurrent.db")
    pools = [SQLiteStore(path, pool_size=3), SQLiteStore(path, pool_size=3)]  # two pools: like two processes
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)
    per_thread = 25

    def writer(index: int) -> None:
        db = pools[index % 2]
        try:
            barrier.wait()
            for _ in range(per_thread):
                # Read-modify-write: only correct if writers are really serialized.
                with db.connection(write=True) as conn:
                    value = conn.execute("SELECT value FROM stats WHERE name = 'cache_hits'").fetchone()[0]
                    conn.execute("UPDATE stats SET value = ? WHERE name = 'cache_hits'", (value + 1,))
                    conn.execute("INSERT INTO api_keys (name, key_hash, key_prefix, daily_limit, created_at) "
                                 "VALUES (?, lower(hex(randomblob(16))), 'p', 1, 'now')", (f"t{index}",))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        with pools[0].connection() as conn:
            assert conn.execute("SELECT value FROM stats WHERE name = 'cache_hits'").fetchone()[0] == 8 * per_thread
            assert conn.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0] == 8 * per_thread
    finally:
        for pool in pools:
            pool.close()


def test_single_read_lends_a_pooled_connection_outside_any_transaction(tmp_path):
    db = SQLiteStore(str(tmp_path / "r.db"), pool_size=1)
    with db.single_read() as conn:
        assert not conn.in_transaction
        assert conn.execute("SELECT COUNT(*) FROM analyses").fetchone()[0] == 0
    with db.single_read() as again:
        assert again is conn  # back in the pool
    with db.single_read() as conn:
        conn.execute("BEGIN")  # misuse: left inside a transaction
    with db.connection(write=True) as fresh:  # ... so it was not pooled, and the file is not locked
        assert fresh is not conn
        fresh.execute("DELETE FROM analyses")
