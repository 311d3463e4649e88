"""/health, /stats, the cache browsing endpoints, /verify, and JSON for every error."""
from __future__ import annotations

import json
import math
from datetime import datetime

import pytest

from tests import synth
from tests.conftest import SR
from tests.test_api_analyze import post_audio

CACHE_ROW_CONTRACT = {
    "id": (int,), "title": (str,), "artist": (str,), "preview_url": (str,), "bpm": (int, float),
    "bpm_confidence": (int, float), "key": (str,), "key_confidence": (int, float), "energy": (int, float),
    "danceability": (int, float), "acousticness": (int, float), "spectral_centroid": (int, float),
    "analyzed_at": (str,), "analysis_duration": (int, float), "user_verified": (bool,),
}
NULLABLE = {"manual_bpm": (int, float), "manual_key": (str,), "bpm_notes": (str,)}


def assert_cache_row(row: dict) -> None:
    for field, types in CACHE_ROW_CONTRACT.items():
        assert isinstance(row[field], types), (field, row[field])
        assert not isinstance(row[field], bool) or bool in types, field
    for field, types in NULLABLE.items():
        assert field in row and (row[field] is None or isinstance(row[field], types)), field


@pytest.fixture
def three_songs(client):
    """Three analyzed songs (different audio), returned as their /analyze_data bodies, oldest first."""
    songs = [("Blue Monday", "New Order", 120, "D", "minor"), ("Halo", "Beyoncé", 80, "A", "major"),
             ("Blue Train", "John Coltrane", 140, "F", "major")]
    bodies = []
    for title, artist, bpm, tonic, mode in songs:
        data = synth.wav_bytes(synth.song(bpm, tonic, mode, seconds=8, sr=SR), SR)
        response = post_audio(client, data, title=title, artist=artist)
        assert response.status_code == 200, response.get_json()
        bodies.append(response.get_json())
    return bodies


def test_health_contract(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "healthy" and body["running"] is True
    assert isinstance(body["port"], int) and body["port"] == 5050
    assert isinstance(body["version"], str) and isinstance(body["uptime"], (int, float))
    datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))


def test_stats_count_hits_and_misses(client, song_120_a_minor):
    empty = client.get("/stats").get_json()
    assert empty == {**empty, "total_analyses": 0, "cache_hits": 0, "cache_misses": 0, "cache_hit_rate": "0.0%",
                     "total_cached_songs": 0}
    post_audio(client, song_120_a_minor)
    post_audio(client, song_120_a_minor)
    post_audio(client, song_120_a_minor)
    body = client.get("/stats").get_json()
    assert body["cache_misses"] == 1 and body["cache_hits"] == 2 and body["total_analyses"] == 3
    assert body["cache_hit_rate"] == "66.7%"
    assert isinstance(body["cache_hit_rate"], str) and isinstance(body["last_updated"], str)
    assert body["total_cached_songs"] == 1


def test_cache_lists_rows_newest_first_with_pagination(client, three_songs):
    rows = client.get("/cache").get_json()
    assert [row["title"] for row in rows] == ["Blue Train", "Halo", "Blue Monday"]
    for row in rows:
        assert_cache_row(row)
        json.dumps(row, allow_nan=False)
    assert rows[0]["preview_url"].startswith("upload:sha256:")
    page = client.get("/cache?limit=1&offset=1").get_json()
    assert [row["title"] for row in page] == ["Halo"]
    by_title = client.get("/cache?sort=title").get_json()
    assert [row["title"] for row in by_title] == ["Blue Monday", "Blue Train", "Halo"]


@pytest.mark.parametrize("query", ["limit=0", "limit=-1", "limit=abc", "limit=100000", "offset=-5",
                                   "offset=1.5", "sort=drop_table"])
def test_cache_rejects_bad_paging(client, query):
    response = client.get("/cache?" + query)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_parameter"


def test_search_matches_title_or_artist_case_insensitively(client, three_songs):
    def titles(q):
        response = client.get("/cache/search", query_string={"q": q})
        assert response.status_code == 200
        rows = response.get_json()
        for row in rows:
            assert_cache_row(row)
        return sorted(row["title"] for row in rows)

    assert titles("blue") == ["Blue Monday", "Blue Train"]
    assert titles("COLTRANE") == ["Blue Train"]
    assert titles("beyoncé") == ["Halo"]
    assert titles("ha") == ["Halo"]          # short queries work too
    assert titles("no such song") == []
    assert titles('"; DROP TABLE analyses; --') == []
    assert titles("%") == []                 # LIKE wildcards are literal
    newest = client.get("/cache/search?q=blue&limit=1").get_json()
    assert [row["title"] for row in newest] == ["Blue Train"]
    below = client.get("/cache/search", query_string={"q": "blue", "limit": 1, "before": newest[0]["id"]})
    assert [row["title"] for row in below.get_json()] == ["Blue Monday"]  # keyset paging
    assert client.get("/cache/search?q=blue&before=0").status_code == 400
    assert len(client.get("/cache").get_json()) == 3


def test_search_needs_a_query(client):
    response = client.get("/cache/search")
    assert response.status_code == 400 and response.get_json()["error"] == "missing_query"


def test_delete_and_clear(client, three_songs):
    target = three_songs[0]["id"]
    response = client.delete(f"/cache/{target}")
    assert response.status_code == 200
    assert response.get_json()["success"] is True and isinstance(response.get_json()["message"], str)
    assert target not in [row["id"] for row in client.get("/cache").get_json()]
    assert client.get("/cache/search?q=monday").get_json() == []   # the search index follows deletions

    missing = client.delete(f"/cache/{target}")
    assert missing.status_code == 404 and missing.get_json()["error"] == "not_found"

    cleared = client.post("/cache/clear")
    assert cleared.status_code == 200 and cleared.get_json()["success"] is True
    assert client.get("/cache").get_json() == []
    assert client.get("/stats").get_json()["total_cached_songs"] == 0


def test_export_has_every_song_and_no_nulls(client, three_songs):
    client.post("/verify", json={"id": three_songs[1]["id"], "manual_bpm": 160})
    body = client.get("/cache/export").get_json()
    assert body["total_songs"] == 3 and isinstance(body["exported_at"], str)
    assert len(body["songs"]) == 3
    for song in body["songs"]:
        assert set(song) == {"title", "artist", "bpm", "key", "energy", "danceability", "acousticness",
                             "analyzed_at"}
        assert all(value is not None for value in song.values())
    halo = next(song for song in body["songs"] if song["title"] == "Halo")
    assert halo["bpm"] == 160  # the user's correction is what they export


def test_verify_stores_corrections_and_analysis_responses_carry_them(client, song_120_a_minor):
    body = post_audio(client, song_120_a_minor).get_json()
    response = client.post("/verify", json={"id": body["id"], "manual_bpm": 60, "manual_key": "c minor",
                                            "bpm_notes": "half-time feel"})
    assert response.status_code == 200, response.get_json()
    song = response.get_json()["song"]
    assert song["user_verified"] is True and song["manual_bpm"] == 60.0 and song["manual_key"] == "C Minor"
    assert song["bpm_notes"] == "half-time feel"

    again = post_audio(client, song_120_a_minor).get_json()
    assert again["cached"] is True and again["user_verified"] is True
    assert again["manual_bpm"] == 60.0 and again["manual_key"] == "C Minor"
    assert again["bpm"] == body["bpm"]  # the measurement is kept beside the correction


def test_verify_by_upload_identifier(client, song_120_a_minor):
    body = post_audio(client, song_120_a_minor).get_json()
    response = client.post("/verify", json={"url": body["preview_url"], "manual_key": "Bb Major"})
    assert response.status_code == 200
    assert response.get_json()["song"]["manual_key"] == "A# Major"


@pytest.mark.parametrize("payload, status, code", [
    ({"id": 999, "manual_bpm": 120}, 404, "not_found"),
    ({"url": "https://example.com/never-analyzed.m4a"}, 404, "not_found"),
    ({"manual_bpm": 120}, 400, "missing_song"),
    ({"id": "1"}, 400, "invalid_parameter"),
    ({"id": 1, "manual_bpm": 5000}, 400, "invalid_parameter"),
    ({"id": 1, "manual_bpm": -3}, 400, "invalid_parameter"),
    ({"id": 1, "manual_bpm": True}, 400, "invalid_parameter"),
    ({"id": 1, "manual_key": "H minor"}, 400, "invalid_parameter"),
    ({"id": 1, "manual_key": 7}, 400, "invalid_parameter"),
])
def test_verify_validates(client, song_120_a_minor, payload, status, code):
    post_audio(client, song_120_a_minor)
    response = client.post("/verify", json=payload)
    assert response.status_code == status
    assert response.get_json()["error"] == code


@pytest.mark.parametrize("method, path, status", [
    ("get", "/no/such/endpoint", 404),
    ("get", "/analyze", 405),
    ("put", "/cache/clear", 405),
    ("delete", "/cache/not-a-number", 404),
])
def test_http_errors_are_json(client, method, path, status):
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response.is_json
    body = response.get_json()
    assert body["error"] and body["message"]


def test_no_nan_reaches_any_response(client, song_120_a_minor):
    post_audio(client, song_120_a_minor)
    for path in ("/cache", "/cache/export", "/stats", "/health", "/cache/search?q=unknown"):
        text = client.get(path).get_data(as_text=True)
        assert "NaN" not in text and "Infinity" not in text
        json.loads(text, parse_constant=lambda c: pytest.fail(f"{path} has {c}"))
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in client.get("/stats").get_json().values()
                   if isinstance(v, float))


def test_cors_is_off_by_default_and_echoes_only_configured_origins(make_app):
    plain = make_app().test_client().get("/health", headers={"Origin": "https://app.example"})
    assert "Access-Control-Allow-Origin" not in plain.headers
    client = make_app(cors_origins=("https://app.example",)).test_client()
    allowed = client.options("/analyze_data", headers={"Origin": "https://app.example",
                                                       "Access-Control-Request-Method": "POST"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "X-API-Key" in allowed.headers["Access-Control-Allow-Headers"]
    other = client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
