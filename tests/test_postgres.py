"""The app on PostgreSQL: end to end on both stores, migrations taken in turn, failure made explicit (bad URL,
server unreachable at start-up, connections lost while running and recovered without a restart), and the copy
of an embedded SQLite database into PostgreSQL."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from backend.config import ConfigError, Settings
from backend.storage import StorageUnavailable
from backend.storage.base import ALL_ANALYSIS_COLUMNS
from backend.storage.migrations.postgres import MIGRATIONS
from backend.storage.postgres import PostgresStore
from tests.conftest import create_key
from tests.servers import TcpProxy, free_port
from tests.test_api_analyze import post_audio
from tests.test_store_contract import insert, song

ROOT = Path(__file__).resolve().parent.parent


# -- end to end on each store ----------------------------------------------------------------------------------

@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_analyze_then_hit_search_and_stats_on_each_store(make_app, store, song_120_a_minor):
    client = make_app(store=store).test_client()
    first = post_audio(client, song_120_a_minor, title="Déjà Vu", artist="Beyoncé")
    again = post_audio(client, song_120_a_minor)
    assert first.status_code == again.status_code == 200
    assert first.get_json()["cached"] is False and again.get_json()["cached"] is True
    assert again.get_json()["id"] == first.get_json()["id"] and again.get_json()["bpm"] == first.get_json()["bpm"]
    found = client.get("/cache/search?q=BEYONC%C3%89").get_json()
    assert [row["title"] for row in found] == ["Déjà Vu"]
    assert client.get("/cache?sort=title").get_json()[0]["artist"] == "Beyoncé"
    stats = client.get("/stats").get_json()
    assert (stats["cache_hits"], stats["cache_misses"], stats["total_cached_songs"]) == (1, 1, 1)
    export = client.get("/cache/export").get_json()
    assert export["total_songs"] == 1 and export["songs"][0]["title"] == "Déjà Vu"


def test_keys_and_quota_work_on_postgresql(make_app):
    app = make_app(store="postgresql", production=True)
    secret = create_key(app, "alice", "--daily-limit", "2")
    client = app.test_client()
    statuses = [client.get("/cache", headers={"X-API-Key": secret}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    shown = app.test_cli_runner().invoke(args=["keys", "show", "1"]).output
    assert "usage today: 2 of 2" in shown and "usage total: 3" in shown


# -- migrations ------------------------------------------------------------------------------------------------

def test_hosts_starting_together_migrate_in_turn(postgres_url):
    stores = [PostgresStore(postgres_url) for _ in range(4)]
    results, errors = [], []
    barrier = threading.Barrier(len(stores))

    def start(store):
        try:
            barrier.wait()
            results.append(store.migrate())
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=start, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and results == [len(MIGRATIONS)] * 4
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(len(MIGRATIONS),)]
        assert conn.execute("SELECT COUNT(*) FROM stats").fetchone()[0] == 3  # seeded once


def test_init_db_migrates_postgresql_when_a_url_is_set(postgres_url):
    env = {**os.environ, "ESSENTIA_DATABASE_URL": postgres_url, "ESSENTIA_WORKERS": "0", "PYTHONPATH": str(ROOT)}
    for _ in range(2):
        result = subprocess.run([sys.executable, "-m", "flask", "--app", "backend", "init-db"], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "PostgreSQL at 127.0.0.1" in result.stdout and f"schema version {len(MIGRATIONS)}" in result.stdout


# -- failure is explicit ---------------------------------------------------------------------------------------

def test_an_invalid_database_url_names_the_variable_and_hides_the_password():
    for bad in ("mysql://u:secret@h/db", "postgresql://u:secret@h:notaport/db", "sqlite:///x.db"):
        with pytest.raises(ConfigError, match="ESSENTIA_DATABASE_URL") as caught:
            Settings.from_env({"ESSENTIA_DATABASE_URL": bad})
        assert "secret" not in str(caught.value)
    assert Settings.from_env({"ESSENTIA_DATABASE_URL": "postgresql://u@h:5433/db"}).database_url.endswith("/db")


def test_init_db_with_postgresql_unreachable_says_so_and_exits_non_zero():
    url = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/essentia"
    env = {**os.environ, "ESSENTIA_DATABASE_URL": url, "ESSENTIA_DB_TIMEOUT": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "backend", "init-db"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "ESSENTIA_DATABASE_URL" in result.stderr and "unavailable" in result.stderr
    assert "secret" not in result.stderr and "Traceback" not in result.stderr


def test_gunicorn_refuses_to_start_when_postgresql_is_unreachable(tmp_path):
    env = {**os.environ, "ESSENTIA_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/x",
           "ESSENTIA_DB_TIMEOUT": "1", "ESSENTIA_PORT": str(free_port()), "ESSENTIA_WORKERS": "0",
           "ESSENTIA_HTTP_WORKERS": "1"}
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "gunicorn"), "-c", "gunicorn.conf.py"], env=env,
                            capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert result.returncode != 0
    assert "ESSENTIA_DATABASE_URL" in result.stderr and "unavailable" in result.stderr


def wait_for_status(client, path: str, status: int, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while True:
        response = client.get(path)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_postgresql_lost_while_running_answers_503_then_recovers_without_a_restart(make_app, postgres_url):
    server = psycopg.conninfo.conninfo_to_dict(postgres_url)
    proxy = TcpProxy((server.get("host", "127.0.0.1"), int(server.get("port", 5432))))
    proxy.start()
    proxied = postgres_url.replace(f":{server.get('port', 5432)}/", f":{proxy.port}/", 1)
    app = make_app(store="postgresql", database_url=proxied, db_timeout=1.0)
    client = app.test_client()
    store = app.extensions["essentia"].store
    insert(store, song(1, title="Committed before"))
    assert client.get("/cache").status_code == 200
    try:
        proxy.cut()
        down = client.get("/cache")
        assert down.status_code == 503 and down.get_json()["error"] == "storage_unavailable"
        assert int(down.headers["Retry-After"]) > 0
        still_down = client.get("/stats")  # still down: still 503, never a 500
        assert still_down.status_code == 503, still_down.get_json()
    finally:
        proxy.start()
    back = wait_for_status(client, "/cache", 200)
    assert back.status_code == 200 and [row["title"] for row in back.get_json()] == ["Committed before"]
    assert client.get("/stats").status_code == 200


def test_terminated_sessions_cost_at_most_one_503_and_lose_nothing(make_app, postgres_url):
    app = make_app(store="postgresql")
    client = app.test_client()
    insert(app.extensions["essentia"].store, song(1))
    assert client.get("/cache").status_code == 200
    dbname = psycopg.conninfo.conninfo_to_dict(postgres_url)["dbname"]
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        terminated = admin.execute("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                   "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,)).fetchone()[0]
    assert terminated >= 1
    statuses = [client.get("/cache").status_code for _ in range(3)]
    assert statuses[0] in (200, 503) and statuses[1:] == [200, 200]
    assert len(client.get("/cache").get_json()) == 1


def test_store_reports_an_unreachable_server_as_storage_unavailable():
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/x", timeout=1.0)
    with pytest.raises(StorageUnavailable, match="ESSENTIA_DATABASE_URL"):
        store.migrate()


# -- copy-to ---------------------------------------------------------------------------------------------------

def fill_embedded(app) -> dict:
    """An embedded store with a bit of everything: songs (one verified), keys (one inactive, one admin), usage,
    daily counters and stats."""
    store = app.extensions["essentia"].store
    alice = create_key(app, "alice", "--daily-limit", "7")
    create_key(app, "root", "--admin")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["keys", "deactivate", "2"]).exit_code == 0
    rows = insert(store, song(1, title="Halo", artist="Beyoncé"), song(2, title="坂本龍一"), song(3))
    client = app.test_client()
    with store.connection(write=True) as conn:
        store.verify_analysis(conn, rows[0]["id"], manual_bpm=79.5, manual_key="B Major", bpm_notes="slow",
                              verified_at="2026-01-02T00:00:00Z")
        store.delete_analysis(conn, rows[2]["id"])  # ids with a gap
    for _ in range(3):
        assert client.get("/cache", headers={"X-API-Key": alice}).status_code == 200
    app.extensions["essentia"].counters.count_hit()
    app.extensions["essentia"].counters.flush()
    return {"alice": alice}


def table(url_or_store, sql: str) -> list:
    if isinstance(url_or_store, str):
        with psycopg.connect(url_or_store) as conn:
            return [tuple(row) for row in conn.execute(sql).fetchall()]
    with url_or_store.connection() as conn:
        return [tuple(row) for row in conn.execute(sql).fetchall()]


COMPARED = [f"SELECT {', '.join(ALL_ANALYSIS_COLUMNS)} FROM analyses ORDER BY id",
            "SELECT * FROM api_keys ORDER BY id",
            "SELECT * FROM api_usage ORDER BY id", "SELECT * FROM daily_usage ORDER BY key_id, day",
            "SELECT name, value FROM stats ORDER BY name", "SELECT last_updated FROM stats_meta"]


def test_copy_to_moves_everything_and_the_keys_keep_working(make_app, postgres_url):
    embedded = make_app(production=True)
    secrets = fill_embedded(embedded)
    result = embedded.test_cli_runner().invoke(args=["db", "copy-to", postgres_url])
    assert result.exit_code == 0, result.output
    assert "2 songs, 2 keys, 3 usage records" in result.output
    source = embedded.extensions["essentia"].store
    for sql in COMPARED:
        assert table(postgres_url, sql) == table(source, sql), sql

    served = make_app(store="postgresql", database_url=postgres_url, production=True)
    client = served.test_client()
    listed = client.get("/cache", headers={"X-API-Key": secrets["alice"]})
    assert listed.status_code == 200
    assert [(r["title"], r["manual_bpm"], r["user_verified"]) for r in listed.get_json()] == [
        ("坂本龍一", None, False), ("Halo", 79.5, True)]
    stats = client.get("/stats", headers={"X-API-Key": secrets["alice"]}).get_json()
    assert (stats["cache_hits"], stats["total_cached_songs"]) == (1, 2)
    # New rows continue after the copied ids instead of colliding with them.
    assert insert(served.extensions["essentia"].store, song(10))[0]["id"] == 3
    assert create_key(served, "bob").startswith("ess_")


def test_copy_to_refuses_a_database_that_holds_data(make_app, postgres_url):
    embedded = make_app()
    fill_embedded(embedded)
    runner = embedded.test_cli_runner()
    assert runner.invoke(args=["db", "copy-to", postgres_url]).exit_code == 0
    before = table(postgres_url, COMPARED[0])
    again = runner.invoke(args=["db", "copy-to", postgres_url])
    assert again.exit_code == 1 and "already holds data" in again.output and "2 analyses" in again.output
    assert table(postgres_url, COMPARED[0]) == before


def test_copy_to_rejects_what_is_not_a_postgresql_url(app):
    result = app.test_cli_runner().invoke(args=["db", "copy-to", "mysql://x/y"])
    assert result.exit_code == 2 and "PostgreSQL URL" in result.output


@pytest.mark.parametrize("required, exit_code, outcome", [("1", 1, "1 error"), ("0", 0, "1 skipped")])
def test_a_missing_postgresql_skips_its_tests_unless_services_are_required(required, exit_code, outcome):
    env = {**os.environ, "ESSENTIA_TEST_POSTGRES_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/postgres",
           "ESSENTIA_REQUIRE_SERVICES": required}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/test_store_contract.py::test_each_store_is_the_store_role[postgresql]"],
                            env=env, capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert result.returncode == exit_code and outcome in result.stdout, result.stdout[-2000:]


def test_search_is_planned_with_its_word_never_as_a_prepared_statement(postgres_url):
    """psycopg prepares a statement after five runs; a prepared search's generic plan cannot see the pattern and
    walks the whole table for a rare word. The search must stay unprepared however often it runs."""
    store = PostgresStore(postgres_url, pool_size=1)
    store.migrate()
    insert(store, song(1, title="Halo"))
    try:
        with store.single_read() as conn:
            for _ in range(8):
                assert len(store.search_analyses(conn, "halo", limit=50, offset=0)) == 1
                store.find_analysis_by_cache_key(conn, song(1)["cache_key"])
            prepared = [row["statement"] for row in
                        conn.execute("SELECT statement FROM pg_prepared_statements").fetchall()]
        assert any("cache_key" in text for text in prepared)  # the test can see prepared statements
        assert not any("search_text" in text for text in prepared)
    finally:
        store.close()
