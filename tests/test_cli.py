"""The key lifecycle and init-db through the real Flask CLI, as an operator runs them."""
from __future__ import annotations

from backend.storage.migrations.sqlite import MIGRATIONS

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import create_key

SECRET = re.compile(r"^ess_[A-Za-z0-9_-]{40,}$")


def run(app, *args: str, input: str | None = None):
    return app.test_cli_runner().invoke(args=list(args), input=input)


def ok(app, *args: str) -> str:
    result = run(app, *args)
    assert result.exit_code == 0, result.output
    return result.output


def line_of(listing: str, key_id: int) -> str:
    for line in listing.splitlines():
        if line.split() and line.split()[0] == str(key_id):
            return line
    raise AssertionError(f"key {key_id} not in:\n{listing}")


def test_create_prints_the_secret_once(app):
    out = ok(app, "keys", "create", "alice")
    secrets_printed = [line for line in out.splitlines() if SECRET.match(line)]
    assert len(secrets_printed) == 1, out
    secret = secrets_printed[0]
    assert out.count(secret) == 1
    assert "Created key 1 for alice" in out and "not shown again" in out
    # A second key is a different secret.
    assert create_key(app, "bob") != secret


def test_create_options_show_up_in_list_and_show(app):
    secret = create_key(app, "alice", "--email", "alice@example.com", "--daily-limit", "5", "--admin")
    create_key(app, "bob")
    create_key(app, "carol", "--daily-limit", "0")
    listing = ok(app, "keys", "list")
    alice = line_of(listing, 1)
    assert "alice" in alice and "<alice@example.com>" in alice and "admin" in alice and "active" in alice
    assert "5/day" in alice and secret[:12] in alice
    bob = line_of(listing, 2)
    assert "[user, active]" in bob and "1000/day" in bob and "@" not in bob
    assert "unlimited" in line_of(listing, 3)

    show = ok(app, "keys", "show", "1")
    assert "alice@example.com" in show and "admin" in show
    assert "usage today: 0 of 5" in show and "usage total: 0" in show and "recent requests: none" in show
    assert re.search(r"created: \d{4}-\d\d-\d\dT", show)


def test_admin_flag_is_printed_at_creation(app):
    assert "(admin)" in ok(app, "keys", "create", "root", "--admin")
    assert "(admin)" not in ok(app, "keys", "create", "user")


def test_default_daily_limit_comes_from_settings(make_app):
    app = make_app(daily_limit=7)
    create_key(app, "alice")
    assert "7/day" in line_of(ok(app, "keys", "list"), 1)


def test_list_and_show_never_reveal_the_secret(app):
    secret = create_key(app, "alice")
    for output in (ok(app, "keys", "list"), ok(app, "keys", "show", "1")):
        assert secret not in output
        assert secret[12:20] not in output
        assert secret[:12] in output  # the display prefix identifies it


def test_list_when_empty_says_how_to_create_one(app):
    out = ok(app, "keys", "list")
    assert "No API keys" in out and "keys create" in out


def test_deactivate_and_activate(make_app):
    app = make_app(production=True, key_cache_ttl=0)
    secret = create_key(app, "alice")
    client = app.test_client()
    out = ok(app, "keys", "deactivate", "1")
    assert "Key 1 deactivated" in out
    assert "INACTIVE" in line_of(ok(app, "keys", "list"), 1)
    assert client.get("/cache", headers={"X-API-Key": secret}).get_json()["error"] == "inactive_api_key"
    assert "Key 1 activated" in ok(app, "keys", "activate", "1")
    assert "[user, active]" in line_of(ok(app, "keys", "list"), 1)
    assert client.get("/cache", headers={"X-API-Key": secret}).status_code == 200


def test_deactivate_tells_that_running_servers_apply_it_now(app):
    create_key(app, "alice")
    assert "Every running server applies it now" in ok(app, "keys", "deactivate", "1")


def test_a_limit_set_with_the_cli_applies_at_once_to_a_server_that_kept_the_key(make_app, tmp_path):
    """Under gunicorn the quota keeps each key's state until a `keys` command counts a change beside the file."""
    server = make_app(production=True, shared_state_dir=str(tmp_path / "shared"))
    (tmp_path / "shared").mkdir()
    cli_app = make_app(production=True)
    secret = create_key(cli_app, "alice")
    client = server.test_client()
    assert client.get("/cache", headers={"X-API-Key": secret}).status_code == 200  # the state is kept now
    ok(cli_app, "keys", "limit", "1", "1")
    assert client.get("/cache", headers={"X-API-Key": secret}).get_json()["error"] == "daily_quota_exceeded"
    ok(cli_app, "keys", "deactivate", "1")
    assert client.get("/cache", headers={"X-API-Key": secret}).get_json()["error"] == "inactive_api_key"


def test_limit(app):
    create_key(app, "alice")
    assert "Key 1 daily limit set to 25" in ok(app, "keys", "limit", "1", "25")
    assert "25/day" in line_of(ok(app, "keys", "list"), 1)
    assert "set to unlimited" in ok(app, "keys", "limit", "1", "0")
    assert "unlimited" in line_of(ok(app, "keys", "list"), 1)
    bad = run(app, "keys", "limit", "1", "-4")
    assert bad.exit_code != 0 and "-4" in bad.output
    assert "unlimited" in line_of(ok(app, "keys", "list"), 1)


def test_negative_daily_limit_at_creation_is_refused(app):
    result = run(app, "keys", "create", "alice", "--daily-limit", "-1")
    assert result.exit_code != 0 and "daily-limit" in result.output
    assert "No API keys" in ok(app, "keys", "list")


def test_delete_with_yes_removes_the_key_and_its_history(make_app):
    app = make_app(production=True, key_cache_ttl=0)
    secret = create_key(app, "alice")
    keep = create_key(app, "bob")
    client = app.test_client()
    assert client.get("/cache", headers={"X-API-Key": secret}).status_code == 200
    assert "Key 1 deleted" in ok(app, "keys", "delete", "1", "--yes")
    listing = ok(app, "keys", "list")
    assert "alice" not in listing and "bob" in listing
    with app.extensions["essentia"].store.connection() as conn:
        assert conn.execute("SELECT COUNT(*) FROM api_usage WHERE key_id = 1").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM daily_usage WHERE key_id = 1").fetchone()[0] == 0
    assert client.get("/cache", headers={"X-API-Key": secret}).get_json()["error"] == "invalid_api_key"
    assert client.get("/cache", headers={"X-API-Key": keep}).status_code == 200


def test_delete_asks_and_no_keeps_the_key(app):
    create_key(app, "alice")
    result = run(app, "keys", "delete", "1", input="n\n")
    assert "Delete key 1 (alice)" in result.output
    assert result.exit_code != 0  # aborted
    assert "alice" in ok(app, "keys", "list")
    result = run(app, "keys", "delete", "1", input="y\n")
    assert result.exit_code == 0 and "Key 1 deleted" in result.output
    assert "No API keys" in ok(app, "keys", "list")


@pytest.mark.parametrize("command", [
    ["keys", "show", "999"], ["keys", "activate", "999"], ["keys", "deactivate", "999"],
    ["keys", "limit", "999", "5"], ["keys", "delete", "999", "--yes"], ["keys", "delete", "999"],
])
def test_unknown_id_is_a_clear_error(app, command):
    create_key(app, "alice")
    result = run(app, *command, input="y\n")
    assert result.exit_code == 1
    assert "No API key has id 999" in result.output
    assert "Traceback" not in result.output
    assert "[user, active]" in line_of(ok(app, "keys", "list"), 1)  # nothing else was touched


@pytest.mark.parametrize("command", [["keys", "show", "abc"], ["keys", "limit", "1", "many"],
                                     ["keys", "create"]])
def test_malformed_arguments_are_usage_errors(app, command):
    result = run(app, *command)
    assert result.exit_code == 2 and "Usage" in result.output


def test_init_db_from_the_command_line_creates_the_database(tmp_path):
    """`flask --app backend init-db` on a fresh path: creates the file and the schema; a second run is harmless.
    """
    db_path = tmp_path / "fresh" / "essentia.db"
    env = {**os.environ, "ESSENTIA_DB_PATH": str(db_path), "ESSENTIA_WORKERS": "0",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    for _ in range(2):
        result = subprocess.run([sys.executable, "-m", "flask", "--app", "backend", "init-db"], env=env,
                                capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
        assert result.returncode == 0, result.stdout + result.stderr
        assert str(db_path) in result.stdout and f"schema version {len(MIGRATIONS)}" in result.stdout
    conn = sqlite3.connect(db_path)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        conn.close()
    assert {"analyses", "api_keys", "api_usage", "daily_usage"} <= tables


def test_new_secret_works_against_the_api_right_away(make_app):
    app = make_app(production=True)
    client = app.test_client()
    secret = create_key(app, "alice")
    response = client.get("/cache", headers={"X-API-Key": secret})
    assert response.status_code == 200 and response.get_json() == []
    admin = create_key(app, "root", "--admin")
    assert client.post("/cache/clear", headers={"X-API-Key": admin}).status_code == 200
    assert client.post("/cache/clear", headers={"X-API-Key": secret}).status_code == 403


def test_the_flask_command_line_manages_keys_for_a_production_server(make_app, tmp_path):
    """`flask --app backend ...` in a subprocess, on the same database file a production app serves."""
    app = make_app(production=True)
    env = {**os.environ, "ESSENTIA_DB_PATH": app.extensions["essentia"].settings.db_path, "ESSENTIA_WORKERS": "0",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    flask = [sys.executable, "-m", "flask", "--app", "backend"]

    def flask_cli(*args: str) -> str:
        result = subprocess.run([*flask, *args], env=env, capture_output=True, text=True, timeout=60,
                                cwd=str(tmp_path))
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    assert "schema version" in flask_cli("init-db")
    out = flask_cli("keys", "create", "mobile-app", "--email", "dev@example.com", "--daily-limit", "3")
    secret = next(line for line in out.splitlines() if SECRET.match(line))
    assert secret[:12] in flask_cli("keys", "list") and secret not in flask_cli("keys", "list")

    client = app.test_client()
    assert client.get("/cache", headers={"X-API-Key": secret}).status_code == 200
    assert client.get("/stats", headers={"X-API-Key": secret}).status_code == 200
    app.extensions["essentia"].counters.flush()
    show = flask_cli("keys", "show", "1")
    assert "usage today: 2 of 3" in show and "usage total: 2" in show and "/stats" in show


def test_init_db_runs_through_the_apps_cli_runner(app):
    """backend/cli.py init_db is a plain click.command: app.cli (an AppGroup) does not push an app context for it,
    so `app.test_cli_runner().invoke(args=["init-db"])` dies with "Working outside of application context"
    (only the `flask` executable's FlaskGroup happens to push one). The keys commands work because AppGroup wraps
    them with with_appcontext."""
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0, repr(result.exception)
    assert f"schema version {len(MIGRATIONS)}" in result.output
