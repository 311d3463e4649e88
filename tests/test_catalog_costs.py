"""Costs that must not grow with the catalog: /cache/export streams in batches, every sort order and the search
read an index instead of sorting or scanning the table, /stats reads a maintained count. (The timings at 10k,
100k and 1M songs are in benchmarks/perf_catalog.py.)"""
from __future__ import annotations

import json

import pytest

from backend.storage.sqlite import SQLiteStore
from tests.test_store_contract import insert, song


def test_export_streams_batch_by_batch(make_app):
    app = make_app()
    store = app.extensions["essentia"].store
    insert(store, *(song(n) for n in range(1, 2501)))
    reads = []
    original = store.analyses_after

    def counted(conn, after_id, limit):
        reads.append(after_id)
        return original(conn, after_id, limit)

    store.analyses_after = counted
    response = app.test_client().get("/cache/export", buffered=False)
    assert response.status_code == 200 and response.is_streamed
    chunks = iter(response.response)
    first = next(chunks)
    assert first.startswith(b'{"exported_at": ') and len(reads) == 0  # the head goes out before any row is read
    second = next(chunks)
    assert len(reads) == 1  # one batch read, not the whole catalog
    body = first + second + b"".join(chunks)
    assert len(reads) == 3  # 1000 + 1000 + 500 rows
    document = json.loads(body)
    assert document["total_songs"] == len(document["songs"]) == 2500
    assert document["songs"][0]["title"] == "Song 1" and document["songs"][-1]["title"] == "Song 2500"


def test_an_empty_export_is_a_valid_document(client):
    document = client.get("/cache/export").get_json()
    assert document["songs"] == [] and document["total_songs"] == 0 and "exported_at" in document


@pytest.fixture
def sqlite_store(tmp_path):
    store = SQLiteStore(str(tmp_path / "plans.db"))
    store.migrate()
    yield store
    store.close()


def _plan(conn, sql: str, params=()) -> str:
    return " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))


@pytest.mark.parametrize("sort", list(SQLiteStore.SORT_SQL))
def test_every_sort_order_walks_an_index_without_sorting(sqlite_store, sort):
    order = SQLiteStore.SORT_SQL[sort]
    with sqlite_store.connection() as conn:
        plan = _plan(conn, f"SELECT id FROM analyses ORDER BY {order} LIMIT 50 OFFSET 5000")
    assert "TEMP B-TREE" not in plan and "SCAN analyses" in plan, plan
    if sort in ("title", "artist"):
        assert "COVERING INDEX" in plan, plan  # skipping rows costs index entries, not table rows


def test_search_reads_the_trigram_index_newest_first(sqlite_store):
    with sqlite_store.connection() as conn:
        plan = _plan(conn, "SELECT rowid FROM analyses_search WHERE analyses_search MATCH ? ORDER BY rowid DESC "
                           "LIMIT 50", ('"love"',))
    assert "VIRTUAL TABLE INDEX" in plan and "TEMP B-TREE" not in plan, plan


def test_a_short_search_reads_the_gram_index_newest_first_not_the_table(sqlite_store):
    insert(sqlite_store, song(1, title="坂"), song(2))
    statements = []
    with sqlite_store.connection() as conn:
        conn.set_trace_callback(statements.append)
        assert [row["id"] for row in sqlite_store.search_analyses(conn, "坂", limit=50, offset=0)] == [1]
        conn.set_trace_callback(None)
        search, = [sql for sql in statements if sql.startswith("SELECT") and "analyses_short MATCH" in sql]
        plan = _plan(conn, search)
    assert "VIRTUAL TABLE INDEX" in plan and "SEARCH analyses USING INTEGER PRIMARY KEY" in plan, plan
    # No step reads the table (SCAN analyses) or sorts (TEMP B-TREE): FTS5 hands out rowids newest first.
    assert "SCAN analyses" not in plan.split(" | ") and "TEMP B-TREE" not in plan, plan


def test_the_song_count_is_read_not_counted(sqlite_store):
    insert(sqlite_store, song(1), song(2))
    with sqlite_store.connection() as conn:
        conn.execute("DELETE FROM analyses WHERE id = 1")
        assert sqlite_store.count_analyses(conn) == 1
        plan = _plan(conn, "SELECT value FROM stats WHERE name = 'cached_songs'")
    assert plan.startswith("SEARCH stats"), plan


def _postgres_catalog(url: str, songs: int):
    """A migrated PostgreSQL store holding `songs` benchmark songs, analyzed as autovacuum would leave it."""
    from benchmarks.perf_catalog import song_rows
    from backend.storage.base import ANALYSIS_COLUMNS
    from backend.storage.postgres import PostgresStore

    store = PostgresStore(url, pool_size=1)
    store.migrate()
    with store.connection(write=True) as conn:
        with conn.cursor().copy(f"COPY analyses ({', '.join(ANALYSIS_COLUMNS)}) FROM STDIN") as copy:
            for row in song_rows(0, songs):
                copy.write_row(row)
    with store.single_read() as conn:
        conn.execute("VACUUM ANALYZE analyses")  # what autovacuum does after a load: the visibility map
    return store


def test_every_sort_order_on_postgresql_is_an_index_only_scan(postgres_url):
    from backend.storage.postgres import PostgresStore

    store = _postgres_catalog(postgres_url, 20_000)
    try:
        with store.single_read() as conn:
            for sort, order in PostgresStore.SORT_SQL.items():
                plan = " | ".join(row["QUERY PLAN"] for row in conn.execute(
                    f"EXPLAIN SELECT id FROM analyses ORDER BY {order} LIMIT 50 OFFSET 5000").fetchall())
                assert "Index Only Scan" in plan and "Sort" not in plan, (sort, plan)
    finally:
        store.close()


def test_a_rare_short_search_on_postgresql_reads_the_gram_index(postgres_url):
    store = _postgres_catalog(postgres_url, 20_000)
    try:
        with store.single_read() as conn:
            statements = []
            execute = conn.execute

            def explained(sql, params=None, **kwargs):
                statements.append((sql, params))
                return execute(sql, params, **kwargs)

            conn.execute = explained
            common = store.search_analyses(conn, "Ka", limit=50, offset=0)
            assert len(common) == 50 and len(statements) == 1  # a common pair fills its page among the newest
            assert all("ka" in (row["title"] + "|" + row["artist"]).lower() for row in common)
            statements.clear()
            found = store.search_analyses(conn, "坂", limit=50, offset=0)  # one artist in 5,000
            conn.execute = execute
            assert found and all("坂" in row["artist"] for row in found)
            plans = [" | ".join(row["QUERY PLAN"] for row in execute("EXPLAIN " + sql, params).fetchall())
                     for sql, params in statements]
        # First the newest songs, a bounded walk of the primary key (too few matches there), then the gram index.
        window, index = plans
        assert "Index Scan Backward using analyses_pkey" in window and "Limit" in window, window
        assert "Bitmap Index Scan on analyses_short_grams" in index and "Seq Scan" not in index, index
    finally:
        store.close()
