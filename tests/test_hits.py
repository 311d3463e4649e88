"""Cache hits (issue 12): uploads hashed while received still find the rows stored before; a hit answered from the
JSON serialized at write time is byte for byte what the app built before; the hash-first lookup answers like a
repeat upload, 404 when nothing is cached, 400 for a bad hash, and counts as a hit."""
from __future__ import annotations

import hashlib
import io
import json
import sqlite3

import pytest
from flask import jsonify

from backend.storage.base import ANALYSIS_COLUMNS
from backend.storage.sqlite import register_functions
from backend.web.responses import analysis_response
from tests import synth
from tests.conftest import create_key
from tests.test_api_analyze import assert_analysis_contract

SR = 22050


def supported_format_samples() -> dict[str, bytes]:
    """One short file of every format the README lists (see tests/test_decode.py for their decoding)."""
    y = synth.sine(440.0, 2.0, 44100)
    return {
        "wav": synth.encode(y, 44100, "WAV", "PCM_16"),
        "wav24": synth.encode(y, 44100, "WAV", "PCM_24"),
        "flac": synth.encode(y, 44100, "FLAC", "PCM_16"),
        "ogg": synth.encode(y, 44100, "OGG", "VORBIS"),
        "mp3": synth.encode_with_pyav(y, 44100, "mp3", "mp3", 2),
        "m4a": synth.encode_with_pyav(y, 44100, "mp4", "aac", 2),
    }


def copy_row_under_key(db_path: str, source_id: int, cache_key: str) -> int:
    """A cached row as the code before this change stored it for other bytes: same analysis, another key."""
    columns = [c for c in ANALYSIS_COLUMNS if c != "cache_key"]
    conn = sqlite3.connect(db_path)
    register_functions(conn)  # the schema's triggers call them
    with conn:
        cursor = conn.execute(f"INSERT INTO analyses (cache_key, {', '.join(columns)}) "
                              f"SELECT ?, {', '.join(columns)} FROM analyses WHERE id = ?", (cache_key, source_id))
    conn.close()
    return cursor.lastrowid


def stored_row(app, analysis_id: int):
    store = app.extensions["essentia"].store
    with store.connection() as conn:
        return store.find_analysis_by_id(conn, analysis_id)


def built_answer(app, row, cached: bool) -> bytes:
    """What the app answered for a row before answers were serialized once."""
    with app.app_context():
        return jsonify(analysis_response(row, cached=cached)).get_data()


@pytest.fixture
def analyzed(app, client, song_120_a_minor):
    """An app whose cache holds one analyzed song (uploaded with a non-ASCII title); its first answer."""
    response = client.post("/analyze_data", data={"file": (io.BytesIO(song_120_a_minor), "s.wav"),
                                                  "title": "坂本龍一 Beyoncé", "artist": "Ärtist"})
    assert response.status_code == 200, response.data
    return response.get_json()


def test_a_hit_answers_the_text_serialized_when_the_analysis_was_stored(app, client, analyzed, song_120_a_minor):
    row = stored_row(app, analyzed["id"])
    assert row["response_json"] is not None  # written with the analysis, not on the first hit
    hit = client.post("/analyze_data", data=song_120_a_minor, content_type="audio/wav")
    assert hit.status_code == 200 and hit.mimetype == "application/json"
    assert hit.data == built_answer(app, row, cached=True)  # byte for byte, key order included
    body = hit.get_json()
    assert_analysis_contract(body)
    assert list(body) == list(analysis_response(row, cached=True))  # exactly the contract's fields, in order
    assert body["cached"] is True and body["title"] == "坂本龍一 Beyoncé"
    for field, value in analysis_response(row, cached=True).items():
        assert type(body[field]) is type(value), field  # an int stays an int, a float a float


def test_a_row_without_serialized_text_answers_the_same_and_gets_it(app, client, analyzed, song_120_a_minor):
    conn = sqlite3.connect(app.extensions["essentia"].settings.db_path)
    with conn:
        conn.execute("UPDATE analyses SET response_json = NULL")  # as rows stored before schema 3
    conn.close()
    row = stored_row(app, analyzed["id"])
    hit = client.post("/analyze_data", data=song_120_a_minor, content_type="audio/wav")
    assert hit.data == built_answer(app, row, cached=True)
    assert stored_row(app, analyzed["id"])["response_json"] is not None
    again = client.post("/analyze_data", data=song_120_a_minor, content_type="audio/wav")
    assert again.data == hit.data


def test_a_changed_row_never_answers_its_old_text(make_app, song_120_a_minor):
    app = make_app(production=True)
    admin = create_key(app, "admin", "--admin")
    client = app.test_client()
    first = client.post("/analyze_data", data=song_120_a_minor, content_type="audio/wav",
                        headers={"X-API-Key": admin}).get_json()
    assert first["title"] == "Unknown"
    named = client.post("/analyze_data", data=song_120_a_minor, content_type="audio/wav",
                        headers={"X-API-Key": admin, "X-Song-Title": "Named Later"}).get_json()
    assert named["title"] == "Named Later" and named["cached"] is True
    verified = client.post("/verify", json={"id": first["id"], "manual_bpm": 121.5},
                           headers={"X-API-Key": admin})
    assert verified.status_code == 200
    hit = client.post("/analyze_data", data=song_120_a_minor, content_type="audio/wav",
                      headers={"X-API-Key": admin}).get_json()
    assert hit["manual_bpm"] == 121.5 and hit["user_verified"] is True and hit["title"] == "Named Later"
    assert client.post("/analyze_data", data=song_120_a_minor, content_type="audio/wav",
                       headers={"X-API-Key": admin}).get_json() == hit


def test_detail_is_still_built_from_the_row(app, client, analyzed, song_120_a_minor):
    body = client.post("/analyze_data?detail=1", data=song_120_a_minor, content_type="audio/wav").get_json()
    assert "detail" in body and body["cached"] is True


def test_every_supported_format_hashes_to_the_key_stored_before(app, client, analyzed):
    """Rows stored by the earlier code (key: SHA-256 of the whole body) are hits for raw and multipart uploads."""
    executor = app.extensions["essentia"].executor
    db_path = app.extensions["essentia"].settings.db_path
    for name, data in supported_format_samples().items():
        seeded = copy_row_under_key(db_path, analyzed["id"], "sha256:" + hashlib.sha256(data).hexdigest())
        before = executor.completed
        raw = client.post("/analyze_data", data=data, content_type="application/octet-stream")
        form = client.post("/analyze_data", data={"file": (io.BytesIO(data), f"song.{name}")})
        for response in (raw, form):
            assert response.status_code == 200, (name, response.data)
            assert response.get_json()["cached"] is True and response.get_json()["id"] == seeded, name
        assert executor.completed == before, name  # nothing was decoded or analyzed


# -- the hash-first lookup --------------------------------------------------------------------------------------


def test_hash_first_lookup_answers_exactly_as_a_repeat_upload(app, client, analyzed, song_120_a_minor):
    digest = hashlib.sha256(song_120_a_minor).hexdigest()
    by_hash = client.get(f"/analyze_data/sha256/{digest}")
    upload = client.post("/analyze_data", data=song_120_a_minor, content_type="audio/wav")
    assert by_hash.status_code == 200 and by_hash.data == upload.data
    assert client.get(f"/analyze_data/sha256/{digest.upper()}").data == upload.data


def test_hash_first_lookup_counts_a_hit_and_a_404_counts_nothing(app, client, analyzed, song_120_a_minor):
    before = client.get("/stats").get_json()
    digest = hashlib.sha256(song_120_a_minor).hexdigest()
    assert client.get(f"/analyze_data/sha256/{digest}").status_code == 200
    missing = client.get("/analyze_data/sha256/" + hashlib.sha256(b"never uploaded").hexdigest())
    assert missing.status_code == 404 and missing.is_json
    assert missing.get_json()["error"] == "not_cached" and "POST /analyze_data" in missing.get_json()["message"]
    after = client.get("/stats").get_json()
    assert after["cache_hits"] == before["cache_hits"] + 1 and after["cache_misses"] == before["cache_misses"]


@pytest.mark.parametrize("bad", ["abc", "0" * 63, "0" * 65, "g" * 64, "0" * 63 + "%0A", "0" * 64 + "%20"])
def test_hash_first_lookup_refuses_what_is_not_a_sha256(client, bad):
    response = client.get(f"/analyze_data/sha256/{bad}")
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_sha256"


def test_hash_first_lookup_takes_title_and_artist_like_an_upload(app, client, song_120_a_minor):
    assert client.post("/analyze_data", data=song_120_a_minor, content_type="audio/wav").get_json()["title"] \
        == "Unknown"
    digest = hashlib.sha256(song_120_a_minor).hexdigest()
    body = client.get(f"/analyze_data/sha256/{digest}", headers={"X-Song-Title": "Found"}).get_json()
    assert body["title"] == "Found" and body["cached"] is True


def test_hash_first_lookup_needs_a_key_in_production(make_app, song_120_a_minor):
    app = make_app(production=True)
    key = create_key(app, "client")
    client = app.test_client()
    digest = hashlib.sha256(song_120_a_minor).hexdigest()
    assert client.get(f"/analyze_data/sha256/{digest}").status_code == 401
    assert client.get(f"/analyze_data/sha256/{digest}", headers={"X-API-Key": key}).status_code == 404


def test_uploads_are_hashed_while_received_without_a_second_pass(app, client, song_m4a):
    """The stored key is the SHA-256 of exactly the bytes sent, whatever the transfer (here: a stream)."""
    response = client.post("/analyze_data", input_stream=io.BytesIO(song_m4a), content_type="audio/mp4",
                           headers={"Content-Length": str(len(song_m4a))})
    assert response.status_code == 200, response.data
    row = stored_row(app, response.get_json()["id"])
    assert row["cache_key"] == "sha256:" + hashlib.sha256(song_m4a).hexdigest()
    assert json.loads(row["response_json"] + "")["id"] == row["id"]


def test_under_gunicorn_the_body_is_read_off_the_socket(app, song_m4a, monkeypatch):
    """The fast path is taken with the pinned gunicorn (a gunicorn whose internals differ would fall back to reading
    the stream: still correct, tests/test_hits_gunicorn.py, but slower: this test says so)."""
    import socket
    import threading

    from gunicorn.config import Config
    from gunicorn.http import wsgi
    from gunicorn.http.parser import RequestParser

    from backend.web import upload

    taken = []
    original = upload._gunicorn_body_source
    monkeypatch.setattr(upload, "_gunicorn_body_source", lambda *args: taken.append(original(*args)) or taken[-1])
    server, client = socket.socketpair()
    head = f"POST /analyze_data HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(song_m4a)}\r\n\r\n".encode()
    sender = threading.Thread(target=client.sendall, args=(head + song_m4a,))
    sender.start()
    try:
        cfg = Config()
        request = next(RequestParser(cfg, server, ("127.0.0.1", 1)))
        _, environ = wsgi.create(request, server, ("127.0.0.1", 1), ("127.0.0.1", 8000), cfg)
        with app.request_context(environ):
            received = upload.receive_body(10**8)
        assert taken and taken[0] is not None  # read off the socket, past gunicorn's buffering
        assert received.sha256 == hashlib.sha256(song_m4a).hexdigest() and bytes(received.data) == song_m4a
        assert original(environ, len(song_m4a)) is None  # the body is consumed: gunicorn has nothing left to read
    finally:
        sender.join()
        server.close()
        client.close()
