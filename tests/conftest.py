"""Shared fixtures: the app built per test on a temporary database, its client and CLI runner, and audio
synthesized once per session (nothing is downloaded)."""
from __future__ import annotations

import os
import re
import uuid
from urllib.parse import urlsplit

import pytest

from backend.app import create_app
from backend.config import Settings
from tests import synth
from tests.servers import TcpProxy

SR = 22050


def settings_for(tmp_path, **overrides) -> Settings:
    """Settings for a test app: its own database file, analysis in threads, counters written at once."""
    base = Settings(db_path=str(tmp_path / "essentia-test.db"), workers=0, stats_flush_seconds=0.0,
                    analysis_timeout=120.0)
    return base.replace(**overrides)


@pytest.fixture
def make_app(tmp_path, request):
    """Build an app with Settings overrides, e.g. make_app(production=True, rate_limit=5). `store="postgresql"`
    puts it on a PostgreSQL database of its own (see postgres_url) instead of a temporary SQLite file."""
    apps = []

    def factory(*, store: str = "sqlite", **overrides):
        if store == "postgresql":
            overrides.setdefault("database_url", request.getfixturevalue("postgres_url"))
        app = create_app(settings_for(tmp_path, **overrides))
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield factory
    for app in apps:
        services = app.extensions["essentia"]
        services.executor.shutdown()
        services.store.close()
        for changes in (services.key_changes, services.analysis.row_changes):
            if changes is not None:
                changes.close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def create_key(app, *args: str) -> str:
    """Create an API key through the real CLI and return the secret it printed."""
    result = app.test_cli_runner().invoke(args=["keys", "create", *args])
    assert result.exit_code == 0, result.output
    match = re.search(r"^(ess_\S+)$", result.output, re.MULTILINE)
    assert match, result.output
    return match.group(1)


def deactivated_and_deleted_keys(app) -> tuple[int, int]:
    """Create two keys through the CLI, deactivate the first and delete the second; their ids."""
    create_key(app, "alice")
    create_key(app, "bob")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["keys", "deactivate", "1"]).exit_code == 0
    assert runner.invoke(args=["keys", "delete", "2", "--yes"]).exit_code == 0
    return 1, 2


# -- audio, synthesized once per session ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def song_120_a_minor() -> bytes:
    return synth.wav_bytes(synth.song(120, "A", "minor", seconds=12, sr=SR), SR)


@pytest.fixture(scope="session")
def song_96_c_major() -> bytes:
    return synth.wav_bytes(synth.song(96, "C", "major", seconds=12, sr=SR), SR)


@pytest.fixture(scope="session")
def song_m4a() -> bytes:
    return synth.encode_with_pyav(synth.song(128, "D", "major", seconds=10, sr=44100), 44100, "mp4", "aac", 2)


# -- services (storage): PostgreSQL, a database of its own per test -------------------------------------------
# Tests that need a service skip when it is not running, unless ESSENTIA_REQUIRE_SERVICES=1 (CI), where a
# missing service fails them: a green CI run then means they really ran.

POSTGRES_URL = os.environ.get("ESSENTIA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_SERVICES = os.environ.get("ESSENTIA_REQUIRE_SERVICES") == "1"


def missing_service(message: str) -> None:
    """Fail (ESSENTIA_REQUIRE_SERVICES=1) or skip the current test because a service it needs is not there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (ESSENTIA_REQUIRE_SERVICES=1: services must run)", pytrace=False)
    pytest.skip(message)


def url_with_database(url: str, dbname: str) -> str:
    """The same server URL, naming another database."""
    return urlsplit(url)._replace(path="/" + dbname).geturl()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The URL of the test PostgreSQL server's maintenance database (ESSENTIA_TEST_POSTGRES_URL)."""
    try:
        import psycopg
    except ImportError:
        missing_service("psycopg is not installed")
    problem = None
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            pass
    except psycopg.OperationalError as error:
        problem = str(error).strip()
    if problem is not None:
        missing_service(f"PostgreSQL is not reachable at {POSTGRES_URL}: {problem}")
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A URL to a new, empty database on the test server, dropped after the test."""
    import psycopg

    name = "essentia_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url_with_database(postgres_server, name)
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, tmp_path):
    """Each store implementation in turn, migrated and empty; closed after the test."""
    from backend.storage.postgres import PostgresStore
    from backend.storage.sqlite import SQLiteStore

    if request.param == "sqlite":
        store = SQLiteStore(str(tmp_path / "contract.db"), pool_size=4)
    else:
        store = PostgresStore(request.getfixturevalue("postgres_url"), pool_size=4)
    store.migrate()
    yield store
    store.close()


# -- services (Redis, ESSENTIA_REDIS_URL): a key prefix of its own per test, its keys deleted after -------------

REDIS_URL = os.environ.get("ESSENTIA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis (ESSENTIA_TEST_REDIS_URL); skips, or fails under ESSENTIA_REQUIRE_SERVICES=1, if it is not
    there."""
    import redis
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2.0, socket_timeout=2.0).ping()
    except (redis.exceptions.RedisError, OSError) as error:
        missing_service(f"Redis is not reachable at {REDIS_URL}: {error}")
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url):
    """A key prefix of this test's own; every key under it is deleted after the test."""
    import redis
    prefix = f"essentia-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def redis_client(redis_url):
    from backend.runtime.redis_state import connect
    client = connect(redis_url)
    yield client
    client.close()


@pytest.fixture
def redis_proxy(redis_url):
    """A relay to the test Redis on a port of its own, that the test can cut and start again."""
    parts = urlsplit(redis_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 6379))
    yield proxy
    try:
        proxy.cut()
    except Exception:
        pass
