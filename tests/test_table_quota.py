"""TableQuota (backend/runtime/quota.py): counts in the shared table reach daily_usage in batches, exactly; a new
table starts from the store's count; threads of several "processes" (tables mapping one file) never pass the
limit together. The contract it shares with StoreQuota is in tests/test_roles.py."""
from __future__ import annotations

import threading

from backend.runtime.quota import TableQuota
from backend.runtime.sharedtable import SharedTable
from backend.timeutil import utc_today
from tests.conftest import create_key


def store_with_key(make_app, daily_limit: int):
    """The store of a production app holding one key (id 1) with this daily limit."""
    app = make_app(production=True)
    create_key(app, "alice", "--daily-limit", str(daily_limit))
    return app.extensions["essentia"].store


def _usage_today(store, key_id: int, day: str) -> int:
    with store.connection() as conn:
        return store.usage_today(conn, key_id, day)


def test_counts_reach_the_store_on_flush_and_only_once(make_app, tmp_path):
    store = store_with_key(make_app, 0)
    quota = TableQuota(store, SharedTable(tmp_path / "quota", slots=64))
    assert all(quota.consume(1).allowed for _ in range(7))
    assert _usage_today(store, 1, utc_today()) == 0  # not written per request
    quota.flush()
    assert _usage_today(store, 1, utc_today()) == 7
    quota.flush()
    assert _usage_today(store, 1, utc_today()) == 7 and quota.pending(1, utc_today()) == 0


def test_a_new_table_starts_from_the_count_in_the_store(make_app, tmp_path):
    store = store_with_key(make_app, 5)
    first = TableQuota(store, SharedTable(tmp_path / "first", slots=64))
    assert all(first.consume(1).allowed for _ in range(3))
    first.flush()
    restarted = TableQuota(store, SharedTable(tmp_path / "second", slots=64))
    assert [restarted.consume(1).allowed for _ in range(3)] == [True, True, False]


def test_a_new_day_counts_from_zero(make_app, tmp_path):
    store = store_with_key(make_app, 2)
    day = ["2026-11-30"]
    quota = TableQuota(store, SharedTable(tmp_path / "quota", slots=64), today=lambda: day[0])
    assert [quota.consume(1).allowed for _ in range(3)] == [True, True, False]
    day[0] = "2026-12-01"
    assert [quota.consume(1).allowed for _ in range(3)] == [True, True, False]
    quota.flush()
    assert _usage_today(store, 1, "2026-11-30") == 2 and _usage_today(store, 1, "2026-12-01") == 2


def test_concurrent_requests_of_several_processes_never_pass_the_limit(make_app, tmp_path):
    """Four quotas on one table file stand for four HTTP processes (each maps the file and flocks it itself)."""
    store = store_with_key(make_app, 50)
    quotas = [TableQuota(store, SharedTable(tmp_path / "quota", slots=64)) for _ in range(4)]
    allowed = []
    lock = threading.Lock()

    def client(quota: TableQuota) -> None:
        mine = [quota.consume(1).allowed for _ in range(30)]
        with lock:
            allowed.extend(mine)

    threads = [threading.Thread(target=client, args=(quotas[i % 4],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 50 and len(allowed) == 240
    for quota in quotas:
        quota.flush()
    assert _usage_today(store, 1, utc_today()) == 50


def test_a_failed_write_keeps_the_counts_for_the_next_flush(make_app, tmp_path, monkeypatch):
    store = store_with_key(make_app, 0)
    quota = TableQuota(store, SharedTable(tmp_path / "quota", slots=64))
    assert all(quota.consume(1).allowed for _ in range(4))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store, "add_daily_usage", broken)  # on this store object only
    quota.flush()
    assert quota.pending(1, utc_today()) == 4
    monkeypatch.undo()
    quota.flush()
    assert _usage_today(store, 1, utc_today()) == 4


def test_a_key_state_is_kept_until_a_change_is_counted(make_app, tmp_path, monkeypatch):
    """With the change counter, the key is read once, not per request; a counted change makes it read again, and
    a state read while a change was being counted is not kept."""
    from backend.runtime.filechanges import FileInvalidation

    store = store_with_key(make_app, 0)
    now = [0.0]
    quota = TableQuota(store, SharedTable(tmp_path / "quota", slots=64),
                       key_changes=FileInvalidation(tmp_path / "key-changes"), clock=lambda: now[0])
    cli = FileInvalidation(tmp_path / "key-changes")  # another process, e.g. the `keys` command
    reads = []
    get_key = store.get_key

    def counted_get_key(conn, key_id):
        reads.append(key_id)
        return get_key(conn, key_id)

    monkeypatch.setattr(store, "get_key", counted_get_key)
    assert all(quota.consume(1).allowed for _ in range(5))
    assert len(reads) == 1
    with store.connection(write=True) as conn:
        store.set_key_active(conn, 1, False)
    cli.announce([1])
    assert not quota.consume(1).allowed and len(reads) == 2

    def get_key_during_a_change(conn, key_id):
        reads.append(key_id)
        row = get_key(conn, key_id)
        if key_id == 1:
            cli.announce([1])  # the key changes while this process reads it,
            quota.consume(2)   # and another thread of this process catches up with the count meanwhile
        return row

    cli.announce([1])
    monkeypatch.setattr(store, "get_key", get_key_during_a_change)
    quota.consume(1)
    monkeypatch.setattr(store, "get_key", counted_get_key)
    quota.consume(1)
    assert reads.count(1) == 4  # the state read during the change was not kept: read again
    quota.consume(1)
    assert reads.count(1) == 4
    now[0] = 61.0  # a change no counter told (an edit in SQL) is seen within a minute
    quota.consume(1)
    assert reads.count(1) == 5
