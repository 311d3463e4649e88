"""Settings.from_env: documented defaults, every ESSENTIA_* variable parsed, and a bad value stopping start-up with
a message that names the variable."""
from __future__ import annotations

import pytest

from backend.app import create_app
from backend.config import ConfigError, Settings


def test_defaults_without_any_variable():
    settings = Settings.from_env({})
    assert settings.production is False
    assert settings.host == "127.0.0.1"
    assert settings.port == 5050
    assert settings.rate_limit == 0
    assert settings.daily_limit == 1000
    assert settings.key_cache_ttl == 300.0
    assert settings.max_upload_mb == 50.0
    assert settings.max_upload_bytes == 50 * 1024 * 1024
    assert settings.analysis_seconds == 30.0
    assert settings.allow_loopback_urls is False
    assert settings.db_path.endswith("essentia.db")
    assert settings == Settings()


def test_unrelated_variables_are_ignored():
    assert Settings.from_env({"PATH": "/bin", "PORT": "1", "HOME": "/root"}) == Settings()


def test_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("ESSENTIA_PORT", "6060")
    monkeypatch.setenv("ESSENTIA_DAILY_LIMIT", "5")
    settings = Settings.from_env()
    assert settings.port == 6060 and settings.daily_limit == 5


@pytest.mark.parametrize("variable, raw, field, expected", [
    ("ESSENTIA_PRODUCTION", "1", "production", True),
    ("ESSENTIA_PRODUCTION", "0", "production", False),
    ("ESSENTIA_HOST", "192.0.2.7", "host", "192.0.2.7"),
    ("ESSENTIA_PORT", "8080", "port", 8080),
    ("ESSENTIA_PORT", " 5051 ", "port", 5051),
    ("ESSENTIA_DB_PATH", "/var/lib/essentia/songs.db", "db_path", "/var/lib/essentia/songs.db"),
    ("ESSENTIA_DB_POOL_SIZE", "3", "db_pool_size", 3),
    ("ESSENTIA_RATE_LIMIT", "120", "rate_limit", 120),
    ("ESSENTIA_RATE_LIMIT", "0", "rate_limit", 0),
    ("ESSENTIA_DAILY_LIMIT", "250", "daily_limit", 250),
    ("ESSENTIA_DAILY_LIMIT", "0", "daily_limit", 0),
    ("ESSENTIA_KEY_CACHE_TTL", "12.5", "key_cache_ttl", 12.5),
    ("ESSENTIA_KEY_CACHE_TTL", "0", "key_cache_ttl", 0.0),
    ("ESSENTIA_NEGATIVE_KEY_CACHE_TTL", "2", "negative_key_cache_ttl", 2.0),
    ("ESSENTIA_KEY_CACHE_SIZE", "64", "key_cache_size", 64),
    ("ESSENTIA_MAX_UPLOAD_MB", "10", "max_upload_mb", 10.0),
    ("ESSENTIA_MAX_DOWNLOAD_MB", "7.5", "max_download_mb", 7.5),
    ("ESSENTIA_ANALYSIS_SECONDS", "45", "analysis_seconds", 45.0),
    ("ESSENTIA_ALLOW_LOOPBACK_URLS", "1", "allow_loopback_urls", True),
    ("ESSENTIA_FETCH_TIMEOUT", "3", "fetch_timeout", 3.0),
    ("ESSENTIA_MAX_REDIRECTS", "0", "max_redirects", 0),
    ("ESSENTIA_WORKERS", "0", "workers", 0),
    ("ESSENTIA_WORKERS", "4", "workers", 4),
    ("ESSENTIA_QUEUE_DEPTH", "2", "queue_depth", 2),
    ("ESSENTIA_ANALYSIS_TIMEOUT", "90", "analysis_timeout", 90.0),
    ("ESSENTIA_STATS_FLUSH_SECONDS", "0", "stats_flush_seconds", 0.0),
    ("ESSENTIA_CORS_ORIGINS", "https://a.example, https://b.example,", "cors_origins",
     ("https://a.example", "https://b.example")),
    ("ESSENTIA_LOG_LEVEL", "debug", "log_level", "DEBUG"),
])
def test_each_variable_is_parsed(variable, raw, field, expected):
    settings = Settings.from_env({variable: raw})
    assert getattr(settings, field) == expected
    # Nothing else changes (production also switches its own defaults, tested below).
    if field != "production":
        assert settings == Settings().replace(**{field: expected})


def test_max_upload_mb_sets_the_byte_limit():
    assert Settings.from_env({"ESSENTIA_MAX_UPLOAD_MB": "2"}).max_upload_bytes == 2 * 1024 * 1024


@pytest.mark.parametrize("raw, expected", [
    ("1", True), ("true", True), ("TRUE", True), ("yes", True), ("on", True),
    ("0", False), ("false", False), ("No", False), ("off", False),
])
def test_boolean_spellings(raw, expected):
    assert Settings.from_env({"ESSENTIA_ALLOW_LOOPBACK_URLS": raw}).allow_loopback_urls is expected


def test_empty_value_means_default():
    assert Settings.from_env({"ESSENTIA_PORT": "", "ESSENTIA_RATE_LIMIT": "  "}) == Settings()


@pytest.mark.parametrize("variable, raw", [
    ("ESSENTIA_PORT", "abc"),
    ("ESSENTIA_PORT", "70000"),
    ("ESSENTIA_PORT", "0"),
    ("ESSENTIA_PORT", "50.5"),
    ("ESSENTIA_PRODUCTION", "maybe"),
    ("ESSENTIA_PRODUCTION", "2"),
    ("ESSENTIA_RATE_LIMIT", "-1"),
    ("ESSENTIA_RATE_LIMIT", "ten"),
    ("ESSENTIA_DAILY_LIMIT", "-3"),
    ("ESSENTIA_DAILY_LIMIT", "1e3x"),
    ("ESSENTIA_KEY_CACHE_TTL", "-1"),
    ("ESSENTIA_KEY_CACHE_TTL", "five minutes"),
    ("ESSENTIA_KEY_CACHE_TTL", "nan"),
    ("ESSENTIA_KEY_CACHE_SIZE", "0"),
    ("ESSENTIA_MAX_UPLOAD_MB", "0"),
    ("ESSENTIA_MAX_UPLOAD_MB", "-5"),
    ("ESSENTIA_MAX_UPLOAD_MB", "50MB"),
    ("ESSENTIA_ANALYSIS_SECONDS", "1"),
    ("ESSENTIA_ANALYSIS_SECONDS", "10000"),
    ("ESSENTIA_ALLOW_LOOPBACK_URLS", "sometimes"),
    ("ESSENTIA_DB_POOL_SIZE", "0"),
    ("ESSENTIA_WORKERS", "-1"),
    ("ESSENTIA_QUEUE_DEPTH", "0"),
    ("ESSENTIA_FETCH_TIMEOUT", "0"),
    ("ESSENTIA_MAX_REDIRECTS", "-1"),
    ("ESSENTIA_LOG_LEVEL", "LOUD"),
])
def test_invalid_value_raises_config_error_naming_the_variable(variable, raw):
    with pytest.raises(ConfigError) as excinfo:
        Settings.from_env({variable: raw})
    message = str(excinfo.value)
    assert variable in message
    assert raw in message  # the offending value is quoted back
    assert "expected" in message  # and what would be accepted
    assert isinstance(excinfo.value, ValueError)


def test_production_defaults():
    settings = Settings.from_env({"ESSENTIA_PRODUCTION": "1"})
    assert settings.production is True
    assert settings.host == "0.0.0.0"
    assert settings.rate_limit == 60
    assert settings.port == 5050


def test_explicit_values_win_over_production_defaults():
    settings = Settings.from_env({"ESSENTIA_PRODUCTION": "yes", "ESSENTIA_HOST": "127.0.0.1",
                                  "ESSENTIA_RATE_LIMIT": "0"})
    assert settings.host == "127.0.0.1"
    assert settings.rate_limit == 0


def test_development_mode_keeps_limiter_off_and_binds_loopback():
    settings = Settings.from_env({"ESSENTIA_PRODUCTION": "0"})
    assert settings.host == "127.0.0.1" and settings.rate_limit == 0


def test_create_app_mapping_gets_the_same_production_defaults_as_the_environment(tmp_path):
    app = create_app({"production": True, "db_path": str(tmp_path / "x.db"), "workers": 0})  # opens nothing yet
    settings = app.extensions["essentia"].settings
    assert settings.host == "0.0.0.0" and settings.rate_limit == 60
    assert app.extensions["essentia"].rate_limiter.limit == 60


def test_production_defaults_yield_to_explicit_overrides_and_to_the_environment():
    assert Settings.from_env({}, overrides={"production": True, "rate_limit": 0}).rate_limit == 0
    assert Settings.from_env({"ESSENTIA_HOST": "10.0.0.5"}, overrides={"production": True}).host == "10.0.0.5"
    assert Settings.from_env({"ESSENTIA_PRODUCTION": "1"}, overrides={"host": "::1"}).rate_limit == 60


def test_switching_production_off_by_override_drops_its_defaults():
    settings = Settings.from_env({"ESSENTIA_PRODUCTION": "1"}, overrides={"production": False})
    assert settings.host == "127.0.0.1" and settings.rate_limit == 0


def test_create_app_stops_on_a_bad_environment(monkeypatch):
    monkeypatch.setenv("ESSENTIA_PORT", "abc")
    with pytest.raises(ConfigError, match="ESSENTIA_PORT"):
        create_app()


def test_create_app_with_overrides_still_validates_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ESSENTIA_RATE_LIMIT", "-1")
    with pytest.raises(ConfigError, match="ESSENTIA_RATE_LIMIT"):
        create_app({"db_path": str(tmp_path / "x.db")})


def test_create_app_uses_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ESSENTIA_PRODUCTION", "1")
    monkeypatch.setenv("ESSENTIA_RATE_LIMIT", "7")
    monkeypatch.setenv("ESSENTIA_MAX_UPLOAD_MB", "3")
    monkeypatch.setenv("ESSENTIA_DB_PATH", str(tmp_path / "env.db"))
    monkeypatch.setenv("ESSENTIA_WORKERS", "0")
    app = create_app()
    try:
        services = app.extensions["essentia"]
        assert services.settings.production is True
        assert services.rate_limiter is not None and services.rate_limiter.limit == 7
        assert app.config["MAX_CONTENT_LENGTH"] == 3 * 1024 * 1024
        client = app.test_client()
        assert client.get("/cache").status_code == 401  # production mode: a key is needed
        assert client.get("/health").get_json()["port"] == 5050
        assert services.store.path == str(tmp_path / "env.db")
    finally:
        services.executor.shutdown()
        services.store.close()


@pytest.mark.parametrize("variable", ["ESSENTIA_MAX_UPLOAD_MB", "ESSENTIA_MAX_DOWNLOAD_MB",
                                      "ESSENTIA_KEY_CACHE_TTL", "ESSENTIA_FETCH_TIMEOUT",
                                      "ESSENTIA_ANALYSIS_TIMEOUT"])
def test_infinite_numbers_are_refused_naming_the_variable(variable):
    """backend/config.py: float('inf') passes the `> 0` / `>= 0` checks. ESSENTIA_MAX_UPLOAD_MB=inf then makes
    create_app crash with OverflowError (int(inf) in max_upload_bytes) instead of a ConfigError naming the
    variable; ESSENTIA_KEY_CACHE_TTL=inf means a deactivated key is never refused."""
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: "inf"})


def test_create_app_with_infinite_upload_limit_fails_with_config_error(monkeypatch, tmp_path):
    monkeypatch.setenv("ESSENTIA_MAX_UPLOAD_MB", "inf")
    with pytest.raises(ConfigError, match="ESSENTIA_MAX_UPLOAD_MB"):
        create_app({"db_path": str(tmp_path / "x.db"), "workers": 0})
