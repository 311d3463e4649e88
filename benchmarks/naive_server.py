"""The naive server of the load benchmark, run in its own process: `python -m benchmarks.naive_server PORT`."""
from __future__ import annotations

import sys
import tempfile
import time

from benchmarks.perf_common import NAIVE_SR, ROOT


def naive_server_main(port: int) -> None:
    """The old way: a Flask dev server, one request at a time; every upload is written to a temp file, decoded and
    analyzed with librosa (HPSS, beat_track, chroma_cqt argmax); /analyze caches by title+artist in a dict."""
    import urllib.request

    import av
    import librosa
    import numpy as np
    from flask import Flask, jsonify, request

    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]

    def decode(path: str) -> np.ndarray:
        # librosa.load cannot open AAC here (soundfile has no AAC; audioread needs a system ffmpeg), so the naive
        # server decodes with PyAV to mono float32 at 22050 Hz: the cheapest decoder it could use.
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
        return {"bpm": float(np.atleast_1d(tempo)[0]), "key": f"{names[tonic]} {mode}",
                "analysis_duration": time.perf_counter() - started}

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


if __name__ == "__main__":
    naive_server_main(int(sys.argv[1]))
