"""Settings: the one place configuration is read from the environment (ESSENTIA_* variables).

Every value has a documented default; an invalid value stops start-up with a message naming the variable.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent


# What production mode changes unless the environment or create_app's mapping says otherwise.
PRODUCTION_DEFAULTS: Mapping[str, Any] = {"host": "0.0.0.0", "rate_limit": 60}


class ConfigError(ValueError):
    """A setting has a value the server cannot run with; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    production: bool = False
    host: str = "127.0.0.1"
    port: int = 5050
    http_workers: int = 0                   # gunicorn HTTP processes; 0 = auto (see http_processes)
    http_threads: int = 4                   # threads serving requests in each HTTP process (few: see GIL note)
    db_path: str = str(PROJECT_ROOT / "instance" / "essentia.db")
    db_pool_size: int = 8
    # postgresql://user:password@host:port/dbname puts the store on PostgreSQL (several hosts); empty = SQLite.
    database_url: str = ""
    db_timeout: float = 5.0                 # PostgreSQL: seconds to wait for a connection before answering 503
    # Requests per minute per client; 0 switches the limiter off. Default: 60 in production, off in development.
    rate_limit: int = 0
    daily_limit: int = 1000                 # default daily quota for new keys; 0 = unlimited
    key_cache_ttl: float = 300.0            # seconds a validated key is trusted before it is looked up again
    negative_key_cache_ttl: float = 30.0    # unknown keys are remembered more briefly
    key_cache_size: int = 10_000
    max_upload_mb: float = 50.0
    max_download_mb: float = 50.0
    analysis_seconds: float = 30.0          # analysis window for longer files
    allow_loopback_urls: bool = False       # tests only: lets /analyze fetch from 127.0.0.1
    fetch_timeout: float = 15.0
    max_redirects: int = 5
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)  # analysis processes in all; 0 = in-thread
    queue_depth: int = 16                   # analyses waiting beyond this answer 503 server_busy
    analysis_timeout: float = 60.0          # seconds one analysis may take
    stats_flush_seconds: float = 2.0        # in-memory hit/miss counters reach the database this often
    cors_origins: tuple[str, ...] = ()      # production CORS allow-list; empty = CORS off
    log_level: str = "INFO"
    # Where the HTTP processes keep what they share (rate-limit windows, analysis claims, metrics, the analysis
    # pool's socket). gunicorn.conf.py makes a private one; empty = one process (tests, the CLI), state in memory.
    shared_state_dir: str = ""
    # Shared state of several hosts (rate limits, quotas, hit/miss counts, claims, key changes) on Redis, e.g.
    # redis://redis.internal:6379/0; empty = on this machine. Keys start with redis_prefix, so that several
    # servers can share one Redis.
    redis_url: str = ""
    redis_prefix: str = "essentia:"

    @property
    def http_processes(self) -> int:
        """HTTP processes gunicorn runs: ESSENTIA_HTTP_WORKERS, or by default two per core, at most four. One
        Python process cannot use more than one core for HTTP (the GIL), and with keep-alive connections each
        stays with the process that accepted it: more processes than cores keep both cores busy however the
        clients' connections happen to be spread."""
        return self.http_workers or max(1, min(4, 2 * (os.cpu_count() or 1)))

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_download_bytes(self) -> int:
        return int(self.max_download_mb * 1024 * 1024)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *,
                 overrides: Mapping[str, Any] | None = None) -> "Settings":
        """Read ESSENTIA_* variables from `env` (default: os.environ); raise ConfigError on a bad value.

        `overrides` (Settings field -> value, e.g. create_app's mapping) win over the environment. Production mode
        then fills in its own defaults (PRODUCTION_DEFAULTS: bind every interface, 60 requests a minute) for
        what neither set, whichever of the two switched production on."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, (parse, check, hint) in _PARSERS.items():
            var = "ESSENTIA_" + name.upper()
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            shown = "(hidden: it may hold a password)" if name in _SECRET_VALUES else repr(raw)
            try:
                value = parse(raw.strip())
            except ValueError:
                raise ConfigError(f"{var}={shown} is not valid: expected {hint}") from None
            if not check(value):
                raise ConfigError(f"{var}={shown} is out of range: expected {hint}")
            values[name] = value
        values.update(overrides or {})
        if values.get("production"):
            for name, value in PRODUCTION_DEFAULTS.items():
                values.setdefault(name, value)
        return cls(**values)

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def _parse_origins(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _parse_redis_url(raw: str) -> str:
    """A Redis URL redis-py can use (redis://, rediss:// with a host, or unix:// with a path)."""
    parts = urlsplit(raw)
    if not (parts.scheme in ("redis", "rediss") and parts.hostname or parts.scheme == "unix" and parts.path):
        raise ValueError(raw)
    parts.port  # raises ValueError for a port that is not a number from 0 to 65535
    return raw


def _parse_database_url(raw: str) -> str:
    """A PostgreSQL connection URL that libpq can parse; anything else is refused at start-up."""
    if not raw.startswith(("postgresql://", "postgres://")):
        raise ValueError(raw)
    urlsplit(raw).port  # raises ValueError for a port that is not a number from 0 to 65535
    from psycopg.conninfo import conninfo_to_dict  # only when a URL is set: the embedded default needs no psycopg
    try:
        conninfo_to_dict(raw)
    except Exception:  # psycopg.ProgrammingError, kept generic so config imports no driver
        raise ValueError(raw) from None
    return raw


def _always(_: Any) -> bool:
    return True


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _non_negative(value: float) -> bool:
    return math.isfinite(value) and value >= 0


# Settings whose value is never repeated in an error message (logs are read by more people than the config).
_SECRET_VALUES = {"database_url", "redis_url"}

_Parser = tuple[Callable[[str], Any], Callable[[Any], bool], str]
_PARSERS: dict[str, _Parser] = {
    "production": (_parse_bool, _always, "0 or 1"),
    "host": (str, _always, "an address to bind, e.g. 127.0.0.1"),
    "port": (int, lambda p: 1 <= p <= 65535, "an integer port from 1 to 65535"),
    "http_workers": (int, lambda n: 0 <= n <= 64, "an integer from 0 to 64 (0 = automatic)"),
    "http_threads": (int, lambda n: 1 <= n <= 256, "an integer from 1 to 256"),
    "db_path": (str, _always, "a file path"),
    "db_pool_size": (int, lambda n: 1 <= n <= 64, "an integer from 1 to 64"),
    "database_url": (_parse_database_url, _always, "a PostgreSQL URL, postgresql://user:password@host:5432/dbname"),
    "db_timeout": (float, _positive, "seconds, a number > 0"),
    "rate_limit": (int, _non_negative, "requests per minute, an integer >= 0 (0 = off)"),
    "daily_limit": (int, _non_negative, "requests per day, an integer >= 0 (0 = unlimited)"),
    "key_cache_ttl": (float, _non_negative, "seconds, a number >= 0"),
    "negative_key_cache_ttl": (float, _non_negative, "seconds, a number >= 0"),
    "key_cache_size": (int, _positive, "an integer > 0"),
    "max_upload_mb": (float, _positive, "megabytes, a number > 0"),
    "max_download_mb": (float, _positive, "megabytes, a number > 0"),
    "analysis_seconds": (float, lambda s: math.isfinite(s) and 5 <= s <= 600, "seconds, a number from 5 to 600"),
    "allow_loopback_urls": (_parse_bool, _always, "0 or 1"),
    "fetch_timeout": (float, _positive, "seconds, a number > 0"),
    "max_redirects": (int, _non_negative, "an integer >= 0"),
    "workers": (int, lambda n: 0 <= n <= 64, "an integer from 0 to 64 (0 = analyze in the request thread)"),
    "queue_depth": (int, _positive, "an integer > 0"),
    "analysis_timeout": (float, _positive, "seconds, a number > 0"),
    "stats_flush_seconds": (float, _non_negative, "seconds, a number >= 0"),
    "cors_origins": (_parse_origins, _always, "a comma-separated list of origins"),
    "shared_state_dir": (str, _always, "a directory path"),
    "redis_url": (_parse_redis_url, _always, "a Redis URL, redis://host:6379/0 (rediss:// for TLS, unix:///path)"),
    "redis_prefix": (str, _always, "a key prefix, e.g. essentia:"),
    "log_level": (str.upper, lambda s: s in ("DEBUG", "INFO", "WARNING", "ERROR"), "DEBUG, INFO, WARNING or ERROR"),
}
