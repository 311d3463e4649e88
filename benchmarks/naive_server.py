"""The naive servers of the load benchmark, each run in its own process:

    python -m benchmarks.naive_server PORT                       # section 6: misses, URL hits by title+artist
    python -m benchmarks.naive_server PORT --upload-cache DB     # section 7: repeat-upload hits from SQLite
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
import tempfile
import time

from benchmarks.perf_common import NAIVE_SR, ROOT


PITCH_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def decode(path: str):
    """Mono float32 at 22050 Hz. librosa.load cannot open AAC here (soundfile has no AAC; audioread needs a system
    ffmpeg), so the naive server decodes with PyAV: the cheapest decoder it could use."""
    import av
    import numpy as np

    chunks = []
    with av.open(path) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=NAIVE_SR)
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.float32)


def analyze(data: bytes) -> dict:
    """The naive analysis: the bytes to a temp file, decoded, librosa HPSS + beat_track + chroma_cqt argmax."""
    import librosa
    import numpy as np

    started = time.perf_counter()
    with tempfile.NamedTemporaryFile(suffix=".m4a") as f:
        f.write(data)
        f.flush()
        y = decode(f.name)
    harmonic, percussive = librosa.effects.hpss(y)
    tempo, _ = librosa.beat.beat_track(y=percussive, sr=NAIVE_SR)
    chroma = librosa.feature.chroma_cqt(y=harmonic, sr=NAIVE_SR).mean(axis=1)
    tonic = int(np.argmax(chroma))
    mode = "Minor" if chroma[(tonic + 3) % 12] > chroma[(tonic + 4) % 12] else "Major"
    return {"bpm": float(np.atleast_1d(tempo)[0]), "key": f"{PITCH_NAMES[tonic]} {mode}",
            "analysis_duration": time.perf_counter() - started}


def naive_server_main(port: int) -> None:
    """The old way: a Flask dev server, one request at a time; every upload is written to a temp file, decoded and
    analyzed with librosa (HPSS, beat_track, chroma_cqt argmax); /analyze caches by title+artist in a dict."""
    import urllib.request

    import librosa
    from flask import Flask, jsonify, request

    cache: dict[tuple[str, str], dict] = {}
    app = Flask("naive")

    @app.get("/health")
    def health():
        return jsonify(status="healthy")

    @app.post("/analyze_data")
    def analyze_data():
        return jsonify({**analyze(request.get_data()), "cached": False})

    @app.post("/analyze")
    def analyze_url():
        body = request.get_json()
        key = (body.get("title") or "Unknown", body.get("artist") or "Unknown")
        if key in cache:
            return jsonify({**cache[key], "cached": True})
        with urllib.request.urlopen(body["url"], timeout=30) as response:
            result = analyze(response.read())
        cache[key] = result
        return jsonify({**result, "cached": False})

    # Warm librosa/numba up before listening (its first call compiles for ~10 s); not part of any timing.
    sys.path.insert(0, str(ROOT))
    from tests import synth
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        f.write(synth.wav_bytes(synth.song(120, "A", "minor", seconds=4.0, sr=NAIVE_SR), NAIVE_SR))
        f.flush()
        y = decode(f.name)
    librosa.effects.hpss(y)
    librosa.beat.beat_track(y=y, sr=NAIVE_SR)
    librosa.feature.chroma_cqt(y=y, sr=NAIVE_SR)
    app.run(host="127.0.0.1", port=port, threaded=False, debug=False, use_reloader=False)


def naive_upload_cache_main(port: int, db_path: str) -> None:
    """A one-file server as a newcomer writes it, with an upload cache: Flask's threaded dev server; the body is
    read with request.get_data() and hashed; a new SQLite connection per operation (look up, then a stats write
    per hit); the stored JSON is parsed and answered with jsonify. A miss is analyzed like section 6's and stored
    (never timed: the benchmark seeds the cache)."""
    from flask import Flask, jsonify, request

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(db_path, timeout=30)

    conn = connect()
    conn.executescript("CREATE TABLE IF NOT EXISTS uploads (sha256 TEXT PRIMARY KEY, result TEXT NOT NULL);"
                       "CREATE TABLE IF NOT EXISTS stats (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
                       "INSERT OR IGNORE INTO stats VALUES ('cache_hits', 0);")
    conn.close()
    app = Flask("naive-upload-cache")

    @app.get("/health")
    def health():
        return jsonify(status="healthy")

    @app.post("/analyze_data")
    def analyze_data():
        data = request.get_data()
        digest = hashlib.sha256(data).hexdigest()
        conn = connect()
        row = conn.execute("SELECT result FROM uploads WHERE sha256 = ?", (digest,)).fetchone()
        conn.close()
        if row is not None:
            conn = connect()
            conn.execute("UPDATE stats SET value = value + 1 WHERE name = 'cache_hits'")
            conn.commit()
            conn.close()
            return jsonify({**json.loads(row[0]), "cached": True})
        answer = analyze(data)
        conn = connect()
        with conn:
            conn.execute("INSERT OR IGNORE INTO uploads VALUES (?, ?)", (digest, json.dumps(answer)))
        conn.close()
        return jsonify({**answer, "cached": False})

    app.run(host="127.0.0.1", port=port, threaded=True, debug=False, use_reloader=False)


def seed_upload_cache(db_path: str, body: bytes, answer: dict) -> None:
    """Store `answer` as the cached analysis of `body` in a naive upload-cache server's database."""
    conn = sqlite3.connect(db_path, timeout=30)
    with conn:
        conn.execute("INSERT OR REPLACE INTO uploads VALUES (?, ?)", (hashlib.sha256(body).hexdigest(),
                                                                      json.dumps(answer)))
    conn.close()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--upload-cache":
        naive_upload_cache_main(int(sys.argv[1]), sys.argv[3])
    else:
        naive_server_main(int(sys.argv[1]))
