"""Admin commands through Flask's CLI: `flask --app backend init-db` and `flask --app backend keys ...`."""
from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from backend.runtime.redis_state import SharedStateUnavailable
from backend.storage import StorageUnavailable
from backend.web.auth import display_prefix, generate_key, hash_key
from backend.timeutil import utc_now_iso, utc_today

keys = AppGroup("keys", help="Create and manage API keys (production mode needs them).")
db = AppGroup("db", help="Move the store between databases.")


def _store():
    return current_app.extensions["essentia"].store


def _announce_key_change(key_id: int) -> str:
    """Tell every running server at once (with Redis, or through the change counter beside a SQLite file); returns
    a note for the operator on how soon it applies (empty on PostgreSQL without Redis: the store's quota check sees
    a change at the next request)."""
    services = current_app.extensions["essentia"]
    ttl = services.settings.key_cache_ttl
    if services.key_changes is None:
        return ""
    try:
        services.key_changes.announce([key_id])
    except SharedStateUnavailable:
        return f" Redis did not answer: running hosts apply it within {ttl:g} s."
    return " Every running server applies it now."


def _key_row_or_exit(conn, key_id: int):
    row = _store().get_key(conn, key_id)
    if row is None:
        raise click.ClickException(f"No API key has id {key_id}.")
    return row


def _describe(row) -> str:
    flags = ["admin" if row["is_admin"] else "user", "active" if row["active"] else "INACTIVE"]
    limit = "unlimited" if row["daily_limit"] == 0 else f"{row['daily_limit']}/day"
    email = f" <{row['email']}>" if row["email"] else ""
    return f"{row['id']:>4}  {row['key_prefix']}…  {row['name']}{email}  [{', '.join(flags)}]  {limit}"


@click.command("init-db")
@with_appcontext
def init_db() -> None:
    """Create the database (SQLite file, or the schema in PostgreSQL) and bring its schema up to date."""
    store = _store()
    try:
        version = store.migrate()
    except StorageUnavailable as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Database ready at {store.describe()} (schema version {version}).")


@keys.command("create")
@click.argument("name")
@click.option("--email", default=None, help="Contact address of the key's owner.")
@click.option("--daily-limit", type=click.IntRange(min=0), default=None,
              help="Requests per UTC day; 0 = unlimited. Default: ESSENTIA_DAILY_LIMIT.")
@click.option("--admin", is_flag=True, help="May delete, clear and verify cached songs.")
def create_key(name: str, email: str | None, daily_limit: int | None, admin: bool) -> None:
    """Create a key. It is printed once and cannot be shown again."""
    store = _store()
    if daily_limit is None:
        daily_limit = current_app.extensions["essentia"].settings.daily_limit
    raw_key = generate_key()
    with store.connection(write=True) as conn:
        key_id = store.insert_key(conn, name=name, email=email, key_hash=hash_key(raw_key),
                                  key_prefix=display_prefix(raw_key), is_admin=admin, daily_limit=daily_limit,
                                  created_at=utc_now_iso())
    click.echo(f"Created key {key_id} for {name}{' (admin)' if admin else ''}. Store it now; it is not shown again:")
    click.echo(raw_key)


@keys.command("list")
def list_keys() -> None:
    """List keys (prefixes only)."""
    store = _store()
    with store.connection() as conn:
        rows = store.list_keys(conn)
    if not rows:
        click.echo("No API keys yet. Create one with: flask --app backend keys create NAME")
    for row in rows:
        click.echo(_describe(row))


@keys.command("show")
@click.argument("key_id", type=int)
def show_key(key_id: int) -> None:
    """Show one key with its usage today, in total, and its recent requests."""
    store = _store()
    current_app.extensions["essentia"].counters.flush()
    with store.connection() as conn:
        row = _key_row_or_exit(conn, key_id)
        today = store.usage_today(conn, key_id, utc_today())
        total = store.usage_total(conn, key_id)
        recent = store.recent_usage(conn, key_id)
    click.echo(_describe(row))
    click.echo(f"created: {row['created_at']}")
    limit = "unlimited" if row["daily_limit"] == 0 else str(row["daily_limit"])
    click.echo(f"usage today: {today} of {limit}")
    click.echo(f"usage total: {total}")
    click.echo("recent requests:" if recent else "recent requests: none")
    for use in recent:
        click.echo(f"  {use['created_at']}  {use['status']}  {use['endpoint']}")


def _set_active(key_id: int, active: bool) -> None:
    store = _store()
    with store.connection(write=True) as conn:
        _key_row_or_exit(conn, key_id)
        store.set_key_active(conn, key_id, active)
    note = _announce_key_change(key_id)
    if not note and not active:
        ttl = current_app.extensions["essentia"].settings.key_cache_ttl
        note = f" A running server stops accepting it within {ttl:g} s."
    click.echo(f"Key {key_id} {'activated' if active else 'deactivated'}.{note}")


@keys.command("activate")
@click.argument("key_id", type=int)
def activate_key(key_id: int) -> None:
    """Let a key be used again."""
    _set_active(key_id, True)


@keys.command("deactivate")
@click.argument("key_id", type=int)
def deactivate_key(key_id: int) -> None:
    """Stop a key from being accepted (its history is kept)."""
    _set_active(key_id, False)


@keys.command("limit")
@click.argument("key_id", type=int)
@click.argument("daily_limit", type=click.IntRange(min=0))
def limit_key(key_id: int, daily_limit: int) -> None:
    """Set a key's daily quota (0 = unlimited)."""
    store = _store()
    with store.connection(write=True) as conn:
        _key_row_or_exit(conn, key_id)
        store.set_key_daily_limit(conn, key_id, daily_limit)
    note = _announce_key_change(key_id)
    click.echo(f"Key {key_id} daily limit set to {'unlimited' if daily_limit == 0 else daily_limit}.{note}")


@keys.command("delete")
@click.argument("key_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_key(key_id: int, yes: bool) -> None:
    """Delete a key and its usage history."""
    store = _store()
    with store.connection() as conn:
        row = _key_row_or_exit(conn, key_id)
    if not yes:
        click.confirm(f"Delete key {key_id} ({row['name']}) and its usage history?", abort=True)
    with store.connection(write=True) as conn:
        store.delete_key(conn, key_id)
    click.echo(f"Key {key_id} deleted.{_announce_key_change(key_id)}")


@click.command("analyze")
@click.argument("paths", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Analyze again even when a file is already in the cache.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True),
              help="Also write the results to a .csv or .json file.")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Parallel processes (default: CPU cores).")
@with_appcontext
def analyze_files(paths: tuple[str, ...], force: bool, out: str | None, jobs: int | None) -> None:
    """Analyze audio files and folders (recursively) into the cache, with a progress bar."""
    from pathlib import Path

    from backend.batch import analyze_paths, default_jobs, write_results

    if out and Path(out).suffix.lower() not in (".csv", ".json"):
        raise click.BadParameter("must end in .csv or .json", param_hint="--out")
    settings = current_app.extensions["essentia"].settings
    report = analyze_paths(paths, store=_store(), window_seconds=settings.analysis_seconds,
                           jobs=jobs or default_jobs(), force=force)
    if force and report.analyzed:  # rows analyzed again: running hosts must not keep the old ones
        current_app.extensions["essentia"].analysis.rows_changed([row["id"] for row in report.analyzed])
    for row in report.analyzed:
        bpm = "no tempo" if row["bpm"] is None else f"{row['bpm']:.1f} BPM"
        click.echo(f"{row['file']}: {bpm}, {row['key'] or 'no key'} ({row['camelot'] or '-'})")
    click.echo(f"Analyzed {len(report.analyzed)}, skipped {len(report.skipped)} already cached"
               f"{' (use --force to redo them)' if report.skipped else ''}, failed {len(report.failed)}.")
    if report.failed:
        click.echo("Could not analyze:", err=True)
        for path, reason in report.failed:
            click.echo(f"  {path}: {reason}", err=True)
    if out:
        write_results(report, Path(out))
        click.echo(f"Results written to {out}.")


@db.command("copy-to")
@click.argument("url")
@click.option("--from", "source_path", type=click.Path(dir_okay=False), default=None,
              help="The SQLite file to copy. Default: ESSENTIA_DB_PATH.")
def copy_to(url: str, source_path: str | None) -> None:
    """Copy the embedded SQLite database into an empty PostgreSQL database at URL (postgresql://...): songs,
    corrections, API keys, usage and stats. Then start the servers with ESSENTIA_DATABASE_URL=URL."""
    from pathlib import Path

    from backend.config import ConfigError, Settings
    from backend.storage.copy import TargetNotEmpty, copy_sqlite_to_postgres
    from backend.storage.postgres import PostgresStore
    from backend.storage.sqlite import SQLiteStore

    try:
        Settings.from_env({"ESSENTIA_DATABASE_URL": url})
    except ConfigError:
        raise click.BadParameter("expected a PostgreSQL URL, postgresql://user:password@host:5432/dbname",
                                 param_hint="URL") from None
    path = source_path or current_app.extensions["essentia"].settings.db_path
    if not Path(path).is_file():
        raise click.ClickException(f"No SQLite database at {path} (set ESSENTIA_DB_PATH or --from).")
    source, target = SQLiteStore(path, pool_size=1), PostgresStore(url, pool_size=1)
    try:
        report = copy_sqlite_to_postgres(
            source, target, progress=lambda table, rows: click.echo(f"  {table}: {rows} rows"))
    except (TargetNotEmpty, StorageUnavailable) as error:
        raise click.ClickException(str(error)) from None
    finally:
        source.close()
        target.close()
    click.echo(f"Copied {path} into {target.describe()}: {report.rows['analyses']} songs, "
               f"{report.rows['api_keys']} keys, {report.rows['api_usage']} usage records, "
               f"{report.cache_hits} hits and {report.cache_misses} misses.")


def register_commands(app: Flask) -> None:
    app.cli.add_command(init_db)
    app.cli.add_command(db)
    app.cli.add_command(keys)
    app.cli.add_command(analyze_files)
