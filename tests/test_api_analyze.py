"""/analyze_data and /analyze end to end through the Flask app: the response contract, caching, formats, errors."""
from __future__ import annotations

import io
import json
import math
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests import synth
from tests.conftest import SR

NUMBER = (int, float)

# The contract existing mobile clients decode with strict types: field -> allowed types.
ANALYSIS_CONTRACT = {
    "id": (int,), "title": (str,), "artist": (str,),
    "bpm": NUMBER, "bpm_confidence": NUMBER, "key": (str,), "key_confidence": NUMBER,
    "energy": NUMBER, "danceability": NUMBER, "acousticness": NUMBER, "spectral_centroid": NUMBER,
    "cached": (bool,), "analysis_duration": NUMBER, "analyzed_at": (str,),
}


def assert_analysis_contract(body: dict) -> None:
    for field, types in ANALYSIS_CONTRACT.items():
        assert field in body, f"missing {field}"
        value = body[field]
        assert isinstance(value, types) and not (isinstance(value, bool) and bool not in types), (field, value)
        if isinstance(value, float):
            assert math.isfinite(value), field
    for field in ("bpm_confidence", "key_confidence", "energy", "danceability", "acousticness"):
        assert 0.0 <= body[field] <= 1.0, (field, body[field])
    assert body["spectral_centroid"] > 0
    assert body["analysis_duration"] >= 0
    datetime.fromisoformat(body["analyzed_at"].replace("Z", "+00:00"))
    tonic, mode = body["key"].rsplit(" ", 1)
    assert tonic in synth.PITCH_CLASSES and mode in ("Major", "Minor"), body["key"]
    json.dumps(body, allow_nan=False)


def post_audio(client, data: bytes, *, title: str | None = None, artist: str | None = None,
               content_type: str = "application/octet-stream", query: str = ""):
    headers = {"Content-Type": content_type}
    if title is not None:
        headers["X-Song-Title"] = title.encode("utf-8").decode("latin-1")  # raw UTF-8 bytes on the wire
    if artist is not None:
        headers["X-Song-Artist"] = artist.encode("utf-8").decode("latin-1")
    return client.post("/analyze_data" + query, data=data, headers=headers)


def test_raw_upload_is_analyzed_then_served_from_cache(client, song_120_a_minor):
    first = post_audio(client, song_120_a_minor, title="Night Drive", artist="Synth Band")
    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    assert_analysis_contract(body)
    assert body["cached"] is False
    assert body["title"] == "Night Drive" and body["artist"] == "Synth Band"
    assert body["bpm"] == pytest.approx(120, rel=0.04)
    assert body["key"] == "A Minor"
    assert body["camelot"] == "8A" and body["mode"] == "minor" and body["key_index"] == 9
    assert body["analysis_window"]["start"] == 0.0
    assert body["analysis_window"]["end"] == pytest.approx(12.0, abs=0.1)

    second = post_audio(client, song_120_a_minor)
    assert second.status_code == 200
    again = second.get_json()
    assert again["cached"] is True
    assert again["id"] == body["id"]
    for field in ("bpm", "key", "energy", "danceability", "analyzed_at", "title"):
        assert again[field] == body[field]
    assert set(again) == set(body)


def test_multipart_upload_with_utf8_form_fields(client, song_96_c_major):
    response = client.post("/analyze_data", data={
        "file": (io.BytesIO(song_96_c_major), "song.wav"), "title": "坂本龍一 — Energy Flow",
        "artist": "Beyoncé"}, content_type="multipart/form-data")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert_analysis_contract(body)
    assert body["title"] == "坂本龍一 — Energy Flow"
    assert body["artist"] == "Beyoncé"
    assert body["key"] == "C Major"
    assert body["bpm"] == pytest.approx(96, rel=0.04)


def test_utf8_headers_are_stored_and_returned_intact(client, song_96_c_major):
    body = post_audio(client, song_96_c_major, title="Halo", artist="Beyoncé").get_json()
    assert body["artist"] == "Beyoncé"
    rows = client.get("/cache").get_json()
    assert rows[0]["artist"] == "Beyoncé"


def test_missing_metadata_defaults_to_unknown_and_is_filled_in_later(client, song_120_a_minor):
    body = post_audio(client, song_120_a_minor).get_json()
    assert body["title"] == "Unknown" and body["artist"] == "Unknown"
    later = post_audio(client, song_120_a_minor, title="Found Title").get_json()
    assert later["cached"] is True
    assert later["title"] == "Found Title" and later["artist"] == "Unknown"


def test_same_title_different_audio_makes_two_rows(client, song_120_a_minor, song_96_c_major):
    a = post_audio(client, song_120_a_minor, title="Same Name", artist="Same Artist").get_json()
    b = post_audio(client, song_96_c_major, title="Same Name", artist="Same Artist").get_json()
    assert a["id"] != b["id"]
    assert b["cached"] is False
    assert a["key"] == "A Minor" and b["key"] == "C Major"
    assert len(client.get("/cache").get_json()) == 2


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3", "m4a"])
def test_compressed_formats_decode_from_memory(client, fmt):
    y = synth.song(110, "E", "minor", seconds=10, sr=44100)
    if fmt == "flac":
        data = synth.encode(y, 44100, "FLAC")
    elif fmt == "ogg":
        data = synth.encode(y, 44100, "OGG", "VORBIS")
    elif fmt == "mp3":
        data = synth.encode_with_pyav(y, 44100, "mp3", "libmp3lame")
    else:
        data = synth.encode_with_pyav(y, 44100, "mp4", "aac", channels=2)
    response = post_audio(client, data, content_type="audio/mpeg" if fmt == "mp3" else "audio/" + fmt)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert_analysis_contract(body)
    assert body["key"] == "E Minor"
    assert body["source"]["format"] == fmt


def test_long_file_is_analyzed_on_a_window_and_says_which(make_app):
    client = make_app(analysis_seconds=8).test_client()
    data = synth.wav_bytes(synth.song(100, "G", "major", seconds=20, sr=SR), SR)
    body = post_audio(client, data).get_json()
    window = body["analysis_window"]
    assert window["seconds"] == pytest.approx(8, abs=0.1)
    assert 0 < window["start"] and window["end"] <= 20.0
    assert body["source"]["duration"] == pytest.approx(20, abs=0.1)


def test_detail_returns_chart_arrays_only_when_asked(client, song_120_a_minor):
    plain = post_audio(client, song_120_a_minor).get_json()
    assert "detail" not in plain
    detailed = post_audio(client, song_120_a_minor, query="?detail=1").get_json()
    assert len(detailed["detail"]["chroma"]) == 12
    assert detailed["detail"]["beat_times"]


@pytest.mark.parametrize("payload, code, status", [
    (b"", "empty_audio", 400),
    (b"x", None, 415),
    (b"this is plainly a text file, not a song\n" * 20, "unsupported_format", 415),
    (b"<html><body>nope</body></html>", "unsupported_format", 415),
    (b"\x89PNG\r\n\x1a\n" + bytes(200), "unsupported_format", 415),
])
def test_bad_uploads_get_clear_json_errors(client, payload, code, status):
    response = post_audio(client, payload)
    assert response.status_code == status
    body = response.get_json()
    assert isinstance(body["message"], str) and body["message"]
    if code:
        assert body["error"] == code


def test_truncated_upload_is_refused_and_not_cached(client, song_120_a_minor):
    cut = song_120_a_minor[: len(song_120_a_minor) // 2]
    response = post_audio(client, cut)
    assert response.status_code == 422
    assert response.get_json()["error"] == "truncated_audio"
    assert client.get("/cache").get_json() == []


def test_silence_and_too_short_audio_answer_422(client):
    silent = post_audio(client, synth.wav_bytes(synth._silence(5.0, SR), SR))
    assert silent.status_code == 422 and silent.get_json()["error"] == "silent_audio"
    short = post_audio(client, synth.wav_bytes(synth.sine(440, 0.5, SR), SR))
    assert short.status_code == 422 and short.get_json()["error"] == "audio_too_short"
    assert "at least" in short.get_json()["message"]


def test_upload_over_the_size_limit_is_413_json(make_app):
    client = make_app(max_upload_mb=0.5).test_client()
    response = post_audio(client, b"\0" * (600 * 1024))
    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"


def test_multipart_without_file_is_400(client):
    response = client.post("/analyze_data", data={"title": "x"}, content_type="multipart/form-data")
    assert response.status_code == 400 and response.get_json()["error"] == "missing_file"


# -- /analyze with a URL ----------------------------------------------------------------------------------------

class _AudioHandler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.hits.append(self.path)
        data = self.files.get(self.path.split("?")[0])
        if data is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def audio_server(song_120_a_minor):
    handler = type("Handler", (_AudioHandler,), {"files": {"/song.wav": song_120_a_minor}, "hits": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_analyze_url_downloads_analyzes_and_caches_by_normalized_url(make_app, audio_server):
    base, handler = audio_server
    client = make_app(allow_loopback_urls=True).test_client()
    first = client.post("/analyze", json={"url": base + "/song.wav", "title": "From URL", "artist": "Beyoncé"})
    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    assert_analysis_contract(body)
    assert body["cached"] is False and body["artist"] == "Beyoncé"
    assert body["key"] == "A Minor"
    assert body["preview_url"] == base + "/song.wav"

    # Same URL written differently: scheme/host case and a fragment do not change the cache key.
    variant = base.replace("http://", "HTTP://") + "/song.wav#t=10"
    second = client.post("/analyze", json={"url": variant})
    assert second.status_code == 200
    assert second.get_json()["cached"] is True and second.get_json()["id"] == body["id"]
    assert handler.hits == ["/song.wav"]


def test_analyze_url_refuses_loopback_unless_allowed(client, audio_server):
    base, handler = audio_server
    response = client.post("/analyze", json={"url": base + "/song.wav"})
    assert 400 <= response.status_code < 500
    assert response.get_json()["error"] == "blocked_address"
    assert handler.hits == []


def test_analyze_url_download_failure_is_a_json_error(make_app, audio_server):
    base, _ = audio_server
    client = make_app(allow_loopback_urls=True).test_client()
    response = client.post("/analyze", json={"url": base + "/missing.wav"})
    assert response.status_code == 502
    assert response.get_json()["error"] == "download_failed"


@pytest.mark.parametrize("body, code", [
    ({"title": "no url"}, "missing_url"),
    ({"url": ""}, "missing_url"),
    ({"url": 42}, "missing_url"),
    ({"url": "ftp://example.com/a.mp3"}, "invalid_url"),
    ({"url": "file:///etc/passwd"}, "invalid_url"),
    ({"url": "http://example.com/a.mp3", "title": ["not", "text"]}, "invalid_parameter"),
])
def test_analyze_rejects_bad_requests(client, body, code):
    response = client.post("/analyze", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"] == code


def test_analyze_rejects_non_json_bodies(client):
    for data, ctype in ((b"{not json", "application/json"), (b"url=x", "application/x-www-form-urlencoded"),
                        (b"[1, 2]", "application/json")):
        response = client.post("/analyze", data=data, content_type=ctype)
        assert response.status_code == 400
        assert response.get_json()["error"] == "invalid_json"


def test_rows_stored_before_the_detail_column_still_answer_detail(make_app, song_120_a_minor, tmp_path):
    """Schema 1 kept the chart arrays inside result_json; after migrating, those rows still answer ?detail=1."""
    import sqlite3

    from backend.storage.migrations.sqlite import MIGRATIONS
    from backend.storage.sqlite import _split_statements

    app = make_app()
    client = app.test_client()
    body = post_audio(client, song_120_a_minor, query="?detail=1").get_json()
    db = app.extensions["essentia"].store
    with db.connection(write=True) as conn:   # make the row look like schema 1 wrote it
        row = conn.execute("SELECT result_json, detail_json FROM analyses WHERE id = ?", (body["id"],)).fetchone()
        legacy = json.loads(row["result_json"])
        legacy["result"]["detail"] = json.loads(row["detail_json"])
        conn.execute("UPDATE analyses SET result_json = ?, detail_json = NULL WHERE id = ?",
                     (json.dumps(legacy), body["id"]))
    assert len(MIGRATIONS) >= 2 and _split_statements(MIGRATIONS[1])
    again = post_audio(client, song_120_a_minor, query="?detail=1").get_json()
    assert again["cached"] is True
    assert again["detail"]["chroma"] == body["detail"]["chroma"]
    assert sqlite3.connect(db.path).execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_lone_surrogates_are_refused_however_the_json_body_spells_them(client):
    """The fast path skips the surrogate check only for plain-ASCII bodies without \\u escapes; every other
    spelling (UTF-8 bytes of a surrogate, UTF-16 text, an escape) still gets the full check."""
    spellings = ['{"url": "http://example.com/\\ud800.mp3"}'.encode(),
                 '{"url": "http://example.com/\ud800.mp3"}'.encode("utf-8", "surrogatepass"),
                 '{"url": "http://example.com/\ud800.mp3"}'.encode("utf-16-le", "surrogatepass"),
                 '{"url": "http://example.com/\\ud800.mp3"}'.encode("utf-16-le")]
    for body in spellings:
        response = client.post("/analyze", data=body, content_type="application/json")
        assert response.status_code == 400 and response.get_json()["error"] == "invalid_json", body
