"""The store contract: every operation of the Store interface behaves the same on SQLite and on PostgreSQL
(each PostgreSQL test runs on a database of its own, see conftest.postgres_url)."""
from __future__ import annotations

import pytest

from backend.roles import Store
from backend.storage import SORT_NAMES

pytestmark = pytest.mark.usefixtures("any_store")


def song(n: int, **changes) -> dict:
    """The values of an analyses row, distinct per `n`."""
    values = {
        "cache_key": f"sha256:{n:064x}", "source_kind": "upload", "preview_url": f"upload:sha256:{n:064x}",
        "content_sha256": f"{n:064x}", "title": f"Song {n}", "artist": f"Artist {n % 3}",
        "bpm": 60.0 + n, "bpm_confidence": 0.5, "key": "A Minor", "key_confidence": 0.25,
        "energy": 0.123456789012345, "danceability": 0.5, "acousticness": 0.5, "spectral_centroid": 1234.5,
        "analysis_duration": 1.25, "analyzed_at": f"2026-01-01T00:00:{n % 60:02d}Z", "result_json": "{}",
        "detail_json": None,
    }
    values.update(changes)
    return values


def insert(store, *songs: dict) -> list:
    with store.connection(write=True) as conn:
        return [store.insert_analysis(conn, values) for values in songs]


def new_key(store, *, daily_limit: int = 0, name: str = "k") -> int:
    with store.connection(write=True) as conn:
        return store.insert_key(conn, name=name, email="a@example.org", key_hash=f"hash-{name}",
                                key_prefix="ess_abcdefgh", is_admin=False, daily_limit=daily_limit,
                                created_at="2026-01-01T00:00:00Z")


def count(store) -> int:
    with store.connection() as conn:
        return store.count_analyses(conn)


# -- migrations and transactions -------------------------------------------------------------------------------

def test_each_store_is_the_store_role(any_store):
    assert isinstance(any_store, Store)


def test_migrating_again_keeps_the_version_and_the_data(any_store):
    insert(any_store, song(1))
    version = any_store.migrate()
    assert any_store.migrate() == version >= 1
    with any_store.connection() as conn:
        assert any_store.schema_version(conn) == version
        assert any_store.find_analysis_by_cache_key(conn, song(1)["cache_key"])["title"] == "Song 1"


def test_a_transaction_commits_on_success_and_rolls_back_on_error(any_store):
    with pytest.raises(RuntimeError):
        with any_store.connection(write=True) as conn:
            any_store.insert_analysis(conn, song(1))
            raise RuntimeError("boom")
    insert(any_store, song(2))
    with any_store.single_read() as conn:
        assert any_store.find_analysis_by_cache_key(conn, song(1)["cache_key"]) is None
        assert any_store.find_analysis_by_cache_key(conn, song(2)["cache_key"]) is not None
    assert count(any_store) == 1


# -- the analysis cache ----------------------------------------------------------------------------------------

def test_insert_and_find_by_cache_key_id_and_preview_url(any_store):
    row, = insert(any_store, song(7))
    with any_store.single_read() as conn:
        by_key = any_store.find_analysis_by_cache_key(conn, song(7)["cache_key"])
    with any_store.connection() as conn:
        by_id = any_store.find_analysis_by_id(conn, row["id"])
        by_url = any_store.find_analysis_by_preview_url(conn, song(7)["preview_url"])
        assert any_store.find_analysis_by_id(conn, 2**70) is None and any_store.find_analysis_by_id(conn, 0) is None
    for found in (by_key, by_id, by_url):
        assert found["id"] == row["id"] and found["title"] == "Song 7"
        assert found["energy"] == 0.123456789012345  # double precision: no float32 rounding
        assert found["detail_json"] is None and found["user_verified"] == 0


def test_a_second_insert_of_the_same_content_keeps_the_first_unless_replacing(any_store):
    first, = insert(any_store, song(1))
    again, = insert(any_store, song(1, title="Other", bpm=99.0))
    assert again["id"] == first["id"] and again["title"] == "Song 1" and again["bpm"] == 61.0
    with any_store.connection(write=True) as conn:
        any_store.verify_analysis(conn, first["id"], manual_bpm=120.0, manual_key=None, bpm_notes="x",
                                  verified_at="now")
        replaced = any_store.insert_analysis(conn, song(1, title="Other", bpm=99.0), replace=True)
    assert replaced["id"] == first["id"] and replaced["bpm"] == 99.0
    assert replaced["title"] == "Song 1" and replaced["manual_bpm"] == 120.0  # metadata and corrections kept
    assert count(any_store) == 1


def test_unknown_metadata_is_filled_in_later(any_store):
    row, = insert(any_store, song(1, title="Unknown", artist="Someone"))
    with any_store.connection(write=True) as conn:
        any_store.fill_unknown_metadata(conn, row["id"], "Named", "Ignored", "Unknown")
        row = any_store.find_analysis_by_id(conn, row["id"])
    assert (row["title"], row["artist"]) == ("Named", "Someone")


@pytest.mark.parametrize("sort", SORT_NAMES)
def test_every_sort_order_pages_through_every_song_once(any_store, sort):
    songs = [song(1, title="beta", bpm=None), song(2, title="Alpha", bpm=120.0), song(3, title="alpha", bpm=90.0),
             song(4, title="Gamma", bpm=90.0, key=None), song(5, title="delta", bpm=200.0, key="C Major")]
    rows = insert(any_store, *songs)
    with any_store.connection(write=True) as conn:  # a correction changes where a song sorts by bpm and key
        any_store.verify_analysis(conn, rows[4]["id"], manual_bpm=10.0, manual_key="B Major", bpm_notes=None,
                                  verified_at="now")
    with any_store.single_read() as conn:
        pages = [any_store.list_analyses(conn, limit=2, offset=offset, sort=sort) for offset in (0, 2, 4)]
    ids = [row["id"] for page in pages for row in page]
    assert sorted(ids) == sorted(row["id"] for row in rows) and [len(p) for p in pages] == [2, 2, 1]
    by_id = {row["id"]: row for page in pages for row in page}

    def expected_key(row):
        bpm = row["manual_bpm"] if row["manual_bpm"] is not None else row["bpm"]
        key = row["manual_key"] or row["key"]
        return {"newest": (-row["id"],), "oldest": (row["id"],),
                "title": (row["title"].lower(), -row["id"]), "artist": (row["artist"].lower(), -row["id"]),
                "bpm": (bpm is not None, bpm or 0, -row["id"]),
                "key": (key is not None, key or "", -row["id"])}[sort]

    assert ids == sorted(ids, key=lambda i: expected_key(by_id[i]))


def test_the_song_count_follows_inserts_deletes_and_clears(any_store):
    assert count(any_store) == 0
    rows = insert(any_store, song(1), song(2), song(3), song(1))  # the repeat stores nothing
    assert count(any_store) == 3
    with any_store.connection(write=True) as conn:
        assert any_store.delete_analysis(conn, rows[0]["id"]) is True
        assert any_store.delete_analysis(conn, rows[0]["id"]) is False
        assert any_store.delete_analysis(conn, -1) is False
    assert count(any_store) == 2
    with any_store.connection(write=True) as conn:
        assert any_store.clear_analyses(conn) == 2
    assert count(any_store) == 0
    insert(any_store, song(9))
    assert count(any_store) == 1


SEARCH_SONGS = [
    song(1, title="Halo", artist="Beyoncé"),
    song(2, title="戦場のメリークリスマス", artist="坂本龍一"),
    song(3, title="100% Pure_Love", artist="Crystal Waters"),
    song(4, title='Say "Hello"', artist="Adele"),
    song(5, title="Love Story", artist="Taylor Swift"),
    song(6, title="Crazy in Love", artist="BEYONCÉ"),
]


@pytest.mark.parametrize("query, titles", [
    ("beyoncé", ["Crazy in Love", "Halo"]),           # non-ASCII, case-insensitive both ways
    ("BEYONCÉ", ["Crazy in Love", "Halo"]),
    ("坂本龍一", ["戦場のメリークリスマス"]),
    ("メリー", ["戦場のメリークリスマス"]),
    ("love", ["Crazy in Love", "Love Story", "100% Pure_Love"]),   # newest first
    ("LO", ["Crazy in Love", "Love Story", 'Say "Hello"', "100% Pure_Love", "Halo"]),  # short queries
    ("0%", ["100% Pure_Love"]),                      # LIKE wildcards are literal
    ("e_L", ["100% Pure_Love"]),
    ("%", ["100% Pure_Love"]),
    ('"Hello"', ['Say "Hello"']),                     # quotes are literal
    ("nothing like it", []),
    # one or two characters: no trigram, an index of every 1- and 2-character substring instead
    ("坂", ["戦場のメリークリスマス"]),                    # one CJK character: a common short query
    ("場の", ["戦場のメリークリスマス"]),
    ("é", ["Crazy in Love", "Halo"]),                   # non-ASCII case folding both ways, one character
    ("É", ["Crazy in Love", "Halo"]),
    ("cÉ", ["Crazy in Love", "Halo"]),
    ("T", ["Love Story", "100% Pure_Love"]),            # artists too (Crystal Waters)
    ("z", ["Crazy in Love"]),
    ("N ", ["Crazy in Love"]),                          # a space is a character like any other
    ("_", ["100% Pure_Love"]),                          # LIKE wildcards are literal
    ('"', ['Say "Hello"']),
    ("hl", []),                                          # both letters in "Halo", never next to each other
    ("oB", []),                                          # "Halo" ends with o, "Beyoncé" starts with b: no spanning
    ("q", []),
])
def test_search_finds_substrings_of_titles_and_artists(any_store, query, titles):
    insert(any_store, *SEARCH_SONGS)
    with any_store.single_read() as conn:
        found = any_store.search_analyses(conn, query, limit=50, offset=0)
    assert [row["title"] for row in found] == titles


def test_short_search_follows_renames_and_deletes(any_store):
    renamed, deleted, _ = insert(any_store, song(1, title="Unknown", artist="Someone"), song(2, title="Zq"),
                                 song(3, title="Kept"))
    with any_store.connection(write=True) as conn:
        any_store.fill_unknown_metadata(conn, renamed["id"], "Ørsted", None, "Unknown")
        any_store.delete_analysis(conn, deleted["id"])
    with any_store.single_read() as conn:
        def titles(query):
            return [row["title"] for row in any_store.search_analyses(conn, query, limit=50, offset=0)]

        assert titles("ø") == titles("Ør") == ["Ørsted"]
        assert titles("nk") == [] and titles("zq") == [] and titles("Q") == []
        assert titles("ke") == ["Kept"]


def test_search_pages_newest_first(any_store):
    insert(any_store, *(song(n, title=f"Common word {n}") for n in range(1, 8)))
    with any_store.single_read() as conn:
        pages = [any_store.search_analyses(conn, "common", limit=3, offset=offset) for offset in (0, 3, 6)]
    assert [[row["title"] for row in page] for page in pages] == [
        ["Common word 7", "Common word 6", "Common word 5"], ["Common word 4", "Common word 3", "Common word 2"],
        ["Common word 1"]]


@pytest.mark.parametrize("query", ["common", "co", "w"])  # the trigram index, and the index of short grams
def test_search_pages_by_keyset_below_the_last_id_seen(any_store, query):
    rows = insert(any_store, *(song(n, title=f"Common word {n}") for n in range(1, 8)), song(99, title="Other"))
    pages, before = [], None
    with any_store.single_read() as conn:
        while True:
            page = any_store.search_analyses(conn, query, limit=3, offset=0, before=before)
            if not page:
                break
            pages.append([row["title"] for row in page])
            before = page[-1]["id"]
    assert pages == [["Common word 7", "Common word 6", "Common word 5"],
                     ["Common word 4", "Common word 3", "Common word 2"], ["Common word 1"]]
    assert rows[-1]["title"] == "Other"


def test_iterating_every_song_reads_in_batches_in_id_order(any_store):
    rows = insert(any_store, *(song(n) for n in range(1, 8)))
    assert [row["id"] for row in any_store.iter_analyses(batch=3)] == [row["id"] for row in rows]
    with any_store.single_read() as conn:
        assert [r["id"] for r in any_store.analyses_after(conn, rows[2]["id"], 2)] == [rows[3]["id"], rows[4]["id"]]


def test_verify_records_the_correction(any_store):
    row, = insert(any_store, song(1))
    with any_store.connection(write=True) as conn:
        verified = any_store.verify_analysis(conn, row["id"], manual_bpm=128.5, manual_key="C# Minor",
                                             bpm_notes="half time", verified_at="2026-02-02T00:00:00Z")
    assert (verified["user_verified"], verified["manual_bpm"], verified["manual_key"], verified["bpm_notes"],
            verified["verified_at"]) == (1, 128.5, "C# Minor", "half time", "2026-02-02T00:00:00Z")


# -- stats, keys, quota, usage ---------------------------------------------------------------------------------

def test_stats_add_up(any_store):
    with any_store.connection(write=True) as conn:
        any_store.add_to_stats(conn, hits=3, misses=1, now="2026-03-03T00:00:00Z")
        any_store.add_to_stats(conn, hits=2, misses=0, now="2026-03-04T00:00:00Z")
    with any_store.connection() as conn:
        assert any_store.read_stats(conn) == {"cache_hits": 5, "cache_misses": 1,
                                              "last_updated": "2026-03-04T00:00:00Z"}


def test_keys_are_created_found_listed_changed_and_deleted(any_store):
    first, second = new_key(any_store, name="one", daily_limit=5), new_key(any_store, name="two")
    assert second > first > 0
    with any_store.connection(write=True) as conn:
        found = any_store.find_key_by_hash(conn, "hash-one")
        assert (found["id"], found["key_prefix"], found["active"], found["daily_limit"]) == (first, "ess_abcdefgh",
                                                                                              1, 5)
        assert any_store.find_key_by_hash(conn, "nope") is None
        assert [row["name"] for row in any_store.list_keys(conn)] == ["one", "two"]
        assert any_store.set_key_active(conn, first, False) and any_store.set_key_daily_limit(conn, first, 9)
        assert not any_store.set_key_active(conn, 999, False)
        key = any_store.get_key(conn, first)
        assert (key["active"], key["daily_limit"], key["email"]) == (0, 9, "a@example.org")
        assert any_store.get_key(conn, 2**64) is None
        assert any_store.delete_key(conn, second) and not any_store.delete_key(conn, second)
        assert any_store.get_key(conn, second) is None


def test_the_daily_quota_counts_to_the_limit_and_refuses_inactive_or_deleted_keys(any_store):
    limited, unlimited = new_key(any_store, name="l", daily_limit=2), new_key(any_store, name="u")
    with any_store.connection(write=True) as conn:
        assert [any_store.consume_daily_quota(conn, limited, "2026-01-01") for _ in range(3)] == [1, 2, None]
        assert any_store.consume_daily_quota(conn, limited, "2026-01-02") == 1  # a new day
        assert [any_store.consume_daily_quota(conn, unlimited, "2026-01-01") for _ in range(3)] == [1, 2, 3]
        assert any_store.usage_today(conn, limited, "2026-01-01") == 2
        assert any_store.usage_today(conn, limited, "2025-01-01") == 0
        any_store.set_key_daily_limit(conn, limited, 3)  # a raised limit applies at once
        assert any_store.consume_daily_quota(conn, limited, "2026-01-01") == 3
        any_store.set_key_active(conn, unlimited, False)
        assert any_store.consume_daily_quota(conn, unlimited, "2026-01-01") is None
        assert any_store.consume_daily_quota(conn, 12345, "2026-01-01") is None


def test_usage_is_recorded_totalled_and_listed_newest_first(any_store):
    kept, deleted = new_key(any_store, name="kept"), new_key(any_store, name="gone")
    with any_store.connection(write=True) as conn:
        any_store.delete_key(conn, deleted)
        any_store.record_usage(conn, [(kept, "/analyze", 200, "2026-01-01T00:00:01Z"),
                                      (deleted, "/analyze", 200, "2026-01-01T00:00:02Z"),  # skipped
                                      (kept, "/cache", 404, "2026-01-01T00:00:03Z")])
    with any_store.connection() as conn:
        assert any_store.usage_total(conn, kept) == 2 and any_store.usage_total(conn, deleted) == 0
        recent = any_store.recent_usage(conn, kept, limit=5)
    assert [(r["endpoint"], r["status"], r["created_at"]) for r in recent] == [
        ("/cache", 404, "2026-01-01T00:00:03Z"), ("/analyze", 200, "2026-01-01T00:00:01Z")]


def test_deleting_a_key_deletes_its_usage(any_store):
    key = new_key(any_store)
    with any_store.connection(write=True) as conn:
        any_store.record_usage(conn, [(key, "/analyze", 200, "t")])
        any_store.consume_daily_quota(conn, key, "d")
        any_store.delete_key(conn, key)
    with any_store.connection() as conn:
        assert any_store.usage_total(conn, key) == 0 and any_store.usage_today(conn, key, "d") == 0
