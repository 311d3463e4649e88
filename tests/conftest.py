"""Shared fixtures: the app built per test on a temporary database, its client and CLI runner, and audio
synthesized once per session (nothing is downloaded)."""
from __future__ import annotations

import re

import pytest

from backend.app import create_app
from backend.config import Settings
from tests import synth

SR = 22050


def settings_for(tmp_path, **overrides) -> Settings:
    """Settings for a test app: its own database file, analysis in threads, counters written at once."""
    base = Settings(db_path=str(tmp_path / "essentia-test.db"), workers=0, stats_flush_seconds=0.0,
                    analysis_timeout=120.0)
    return base.replace(**overrides)


@pytest.fixture
def make_app(tmp_path):
    """Build an app with Settings overrides, e.g. make_app(production=True, rate_limit=5)."""
    apps = []

    def factory(**overrides):
        app = create_app(settings_for(tmp_path, **overrides))
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield factory
    for app in apps:
        services = app.extensions["essentia"]
        services.executor.shutdown()
        services.db.close()
        if services.key_changes is not None:
            services.key_changes.close()


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


# -- Redis (ESSENTIA_REDIS_URL): each test gets its own key prefix, and its keys are deleted after it ----------

REDIS_URL_VARIABLE = "ESSENTIA_TEST_REDIS_URL"
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/0"


def services_required() -> bool:
    """CI sets ESSENTIA_REQUIRE_SERVICES=1: a missing PostgreSQL or Redis then fails the run instead of skipping."""
    import os
    return os.environ.get("ESSENTIA_REQUIRE_SERVICES", "") == "1"


def redis_test_url() -> str:
    import os
    return os.environ.get(REDIS_URL_VARIABLE) or DEFAULT_TEST_REDIS_URL




@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis's URL; skips the test when it does not answer (fails instead under ESSENTIA_REQUIRE_SERVICES)."""
    import redis
    url = redis_test_url()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0).ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as error:
        message = f"Redis at {url} ({REDIS_URL_VARIABLE}) does not answer: {error}"
        if services_required():
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture
def redis_prefix(redis_url):
    """A key prefix of this test's own; every key under it is deleted after the test."""
    import uuid

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
