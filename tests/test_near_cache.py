"""The near cache of hit rows (backend/runtime/nearcache.py): a repeat hit is answered without asking the store, and
a change made by one process (a correction, a deletion, a cleared cache, metadata filled in) is seen by every
other. Two apps stand in for two processes: on one store and one Redis prefix (two hosts), or on one SQLite file
(two HTTP processes of one host, told by the change counter beside the file)."""
from __future__ import annotations

import hashlib
import os
import time

import pytest

from backend.roles import Invalidation
from backend.runtime.filechanges import FileInvalidation
from backend.runtime.nearcache import NearCache
from tests.conftest import create_key


@pytest.fixture(params=["redis", "sqlite-file"])
def two_hosts(make_app, request):
    """(app A, app B, admin key): production apps sharing a store, with Redis or on one SQLite file alone."""
    def host():
        if request.param == "sqlite-file":
            return make_app(production=True)
        return make_app(production=True, redis_url=request.getfixturevalue("redis_url"),
                        redis_prefix=request.getfixturevalue("redis_prefix"))

    host_a, host_b = host(), host()
    return host_a, host_b, create_key(host_a, "admin", "--admin")


class StoreReads:
    """Counts the analysis lookups an app makes in its store."""

    def __init__(self, app, monkeypatch):
        self.count = 0
        store = app.extensions["essentia"].store
        find = store.find_analysis_by_cache_key

        def counted(conn, cache_key):
            self.count += 1
            return find(conn, cache_key)

        monkeypatch.setattr(store, "find_analysis_by_cache_key", counted)


def _by_hash(app, key, clip, **headers):
    digest = hashlib.sha256(clip).hexdigest()
    return app.test_client().get(f"/analyze_data/sha256/{digest}", headers={"X-API-Key": key, **headers})


def _upload(app, key, clip):
    return app.test_client().post("/analyze_data", data=clip, headers={"X-API-Key": key, "Content-Type": "audio/wav"})


def _until(condition, seconds: float = 2.0) -> float:
    """Seconds until condition() held (fails after `seconds`)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "the change never reached the other host"
        time.sleep(0.005)
    return time.monotonic() - started


def test_a_repeat_hit_is_answered_without_asking_the_store(two_hosts, monkeypatch, song_120_a_minor):
    host_a, host_b, key = two_hosts
    assert _upload(host_a, key, song_120_a_minor).get_json()["cached"] is False
    reads = StoreReads(host_b, monkeypatch)
    answers = [_upload(host_b, key, song_120_a_minor) for _ in range(5)]
    assert all(a.status_code == 200 and a.get_json()["cached"] is True for a in answers)
    assert reads.count == 1  # the first hit read the row; the next four were answered from the near cache
    assert len({a.get_data() for a in answers}) == 1


def test_a_correction_on_one_host_is_served_by_the_other(two_hosts, song_120_a_minor):
    host_a, host_b, key = two_hosts
    song_id = _upload(host_a, key, song_120_a_minor).get_json()["id"]
    assert _by_hash(host_b, key, song_120_a_minor).get_json()["manual_bpm"] is None  # kept by B now
    corrected = host_a.test_client().post("/verify", json={"id": song_id, "manual_bpm": 77.0, "manual_key": "F#m"},
                                          headers={"X-API-Key": key})
    assert corrected.status_code == 200
    waited = _until(lambda: _by_hash(host_b, key, song_120_a_minor).get_json()["manual_bpm"] == 77.0)
    assert waited < 0.5
    answer = _by_hash(host_b, key, song_120_a_minor).get_json()
    assert answer["user_verified"] is True and answer["manual_key"] == "F# Minor"


def test_a_deletion_on_one_host_is_never_served_by_the_other_after_its_message(two_hosts, song_120_a_minor):
    host_a, host_b, key = two_hosts
    song_id = _upload(host_a, key, song_120_a_minor).get_json()["id"]
    assert _by_hash(host_b, key, song_120_a_minor).status_code == 200
    assert host_a.test_client().delete(f"/cache/{song_id}", headers={"X-API-Key": key}).status_code == 200
    _until(lambda: _by_hash(host_b, key, song_120_a_minor).status_code == 404)
    assert all(_by_hash(host_b, key, song_120_a_minor).status_code == 404 for _ in range(3))
    assert _by_hash(host_a, key, song_120_a_minor).status_code == 404  # the deleting host forgot at once


def test_a_cleared_cache_on_one_host_empties_the_others(two_hosts, song_120_a_minor, song_96_c_major):
    host_a, host_b, key = two_hosts
    for clip in (song_120_a_minor, song_96_c_major):
        _upload(host_a, key, clip)
        assert _by_hash(host_b, key, clip).status_code == 200
    assert host_a.test_client().post("/cache/clear", headers={"X-API-Key": key}).get_json()["removed"] == 2
    _until(lambda: _by_hash(host_b, key, song_96_c_major).status_code == 404)
    assert _by_hash(host_b, key, song_120_a_minor).status_code == 404


def test_a_title_filled_in_on_one_host_is_served_by_the_other(two_hosts, song_120_a_minor):
    host_a, host_b, key = two_hosts
    assert _upload(host_a, key, song_120_a_minor).get_json()["title"] == "Unknown"
    assert _by_hash(host_b, key, song_120_a_minor).get_json()["title"] == "Unknown"
    assert _by_hash(host_a, key, song_120_a_minor, **{"X-Song-Title": "Night Drive"}).get_json()["title"] == \
        "Night Drive"
    _until(lambda: _by_hash(host_b, key, song_120_a_minor).get_json()["title"] == "Night Drive")


def test_on_postgresql_without_redis_there_is_no_near_cache(make_app):
    """Several hosts may share the database, and nothing would tell them of each other's changes."""
    assert make_app(store="postgresql").extensions["essentia"].analysis.near_cache is None


def test_the_invalidations_satisfy_the_protocol(two_hosts):
    services = two_hosts[0].extensions["essentia"]
    if services.key_changes is not None:
        assert isinstance(services.key_changes, Invalidation)
    assert isinstance(services.analysis.row_changes, Invalidation)
    assert services.analysis.row_changes.connected


def test_rows_analyzed_again_by_the_cli_are_read_again_by_the_server(make_app, monkeypatch, tmp_path,
                                                                     song_120_a_minor):
    """The CLI opens the same SQLite file, so its changes are counted beside it too."""
    server, cli_app = make_app(production=True), make_app(production=True)
    key = create_key(server, "admin", "--admin")
    assert _upload(server, key, song_120_a_minor).status_code == 200
    reads = StoreReads(server, monkeypatch)
    assert _by_hash(server, key, song_120_a_minor).status_code == 200
    assert _by_hash(server, key, song_120_a_minor).status_code == 200
    assert reads.count == 1  # kept after the first hit
    clip = tmp_path / "song.wav"
    clip.write_bytes(song_120_a_minor)
    result = cli_app.test_cli_runner().invoke(args=["analyze", "--force", str(clip)])
    assert result.exit_code == 0, result.output
    assert _by_hash(server, key, song_120_a_minor).status_code == 200
    assert reads.count == 2  # the row analyzed again was read again, not served from what was kept


# -- the change counter beside a SQLite file -----------------------------------------------------------------------

def test_a_change_counted_by_one_process_makes_another_forget_everything(tmp_path):
    path = tmp_path / "db-changes"
    here, there = FileInvalidation(path), FileInvalidation(path)
    forgotten = []
    here.listen(lambda analysis_id: None, forget_all=lambda: forgotten.append("all"))
    assert here.connected and forgotten == ["all"]  # the first look starts from nothing kept
    there.announce([7])
    assert forgotten == ["all"]  # heard on the next look, not before
    assert here.connected and forgotten == ["all", "all"]
    assert here.connected and forgotten == ["all", "all"]  # once per change


def test_changes_counted_in_forked_processes_all_count(tmp_path):
    path = tmp_path / "db-changes"
    counter = FileInvalidation(path)
    counter.listen(lambda analysis_id: None, forget_all=lambda: None)
    pids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:  # the child maps the file itself, as a gunicorn worker does after the fork
            try:
                for _ in range(50):
                    counter.announce_all()
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        assert os.waitpid(pid, 0)[1] == 0
    assert FileInvalidation(path)._count() == 200  # no add lost another's


def test_a_row_read_while_another_process_counted_a_change_is_not_kept(tmp_path):
    """Asking the counter may make the cache forget; asked while the row is being kept, it must not deadlock."""
    path = tmp_path / "db-changes"
    here, there = FileInvalidation(path), FileInvalidation(path)
    cache = NearCache(max_rows=10, max_age=60.0, usable=lambda: here.connected)
    here.listen(cache.forget_ids, forget_all=cache.forget_all)

    def read_during_a_change():
        there.announce_all()
        return _row(1, bpm=100.0)

    assert cache.get_or_load("k", read_during_a_change)["bpm"] == 100.0
    assert len(cache) == 0
    assert cache.get_or_load("k", lambda: _row(1, bpm=101.0))["bpm"] == 101.0
    assert cache.get_or_load("k", lambda: _row(1, bpm=102.0))["bpm"] == 101.0  # kept now


def test_an_unreadable_counter_keeps_nothing(tmp_path):
    counter = FileInvalidation(tmp_path / "missing-folder" / "db-changes")
    assert not counter.connected
    cache = NearCache(max_rows=10, max_age=60.0, usable=lambda: counter.connected)
    assert cache.get_or_load("k", lambda: _row(1)) == _row(1)
    assert len(cache) == 0


# -- the cache itself ---------------------------------------------------------------------------------------------

def _row(analysis_id: int, bpm: float = 120.0) -> dict:
    return {"id": analysis_id, "bpm": bpm}


def test_a_row_read_while_a_change_was_announced_is_not_kept():
    """The reader that lost the race must not put the old row back after the message made the cache forget."""
    cache = NearCache(max_rows=10, max_age=60.0)

    def read_during_a_change():
        cache.forget_ids([1])  # the message arrives while the old row is being read
        return _row(1, bpm=100.0)

    assert cache.get_or_load("k", read_during_a_change)["bpm"] == 100.0
    assert cache.get_or_load("k", lambda: _row(1, bpm=101.0))["bpm"] == 101.0  # read again, and kept now
    assert cache.get_or_load("k", lambda: _row(1, bpm=102.0))["bpm"] == 101.0


def test_rows_are_kept_at_most_max_rows_and_max_age():
    now = [0.0]
    cache = NearCache(max_rows=2, max_age=60.0, clock=lambda: now[0])
    for n in range(3):
        cache.get_or_load(f"k{n}", lambda n=n: _row(n))
    assert len(cache) == 2
    assert cache.get_or_load("k0", lambda: _row(0, bpm=1.0))["bpm"] == 1.0  # the oldest was dropped
    now[0] = 61.0
    assert cache.get_or_load("k2", lambda: _row(2, bpm=2.0))["bpm"] == 2.0  # too old: read again


def test_nothing_is_served_or_kept_while_changes_cannot_be_heard():
    heard = [True]
    cache = NearCache(max_rows=10, max_age=60.0, usable=lambda: heard[0])
    cache.get_or_load("k", lambda: _row(1, bpm=1.0))
    heard[0] = False
    assert cache.get_or_load("k", lambda: _row(1, bpm=2.0))["bpm"] == 2.0
    heard[0] = True
    cache.forget_all()  # what a reconnection does
    assert cache.get_or_load("k", lambda: _row(1, bpm=3.0))["bpm"] == 3.0
