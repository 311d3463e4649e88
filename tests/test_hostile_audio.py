"""Hostile and broken uploads through the API: each gets a 4xx JSON error naming the problem, nothing is cached,
and the server stays healthy."""
from __future__ import annotations

import io
import struct
import zipfile

import numpy as np
import pytest
import soundfile as sf

from tests import synth
from tests.test_api_analyze import post_audio


def _wav_header(*, channels=1, rate=44100, bits=16, data_bytes=0) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", data_bytes))


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("song.wav", b"not really")
    return buf.getvalue()


HOSTILE = {
    "one byte": (b"\x00", 415, None),
    "random bytes": (np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes(), 415, None),
    "text": (b"Hello, this is a text file.\n" * 100, 415, "unsupported_format"),
    "html": (b"<!doctype html><html><body>" + b"x" * 2000 + b"</body></html>", 415, "unsupported_format"),
    "png": (b"\x89PNG\r\n\x1a\n" + bytes(4000), 415, "unsupported_format"),
    "zip": (_zip(), 415, "unsupported_format"),
    "wav claiming 10 hours": (_wav_header(data_bytes=10 * 3600 * 44100 * 2) + bytes(44100 * 2), 422,
                              "truncated_audio"),
    "wav with 0 channels": (_wav_header(channels=0, data_bytes=1000) + bytes(1000), None, None),
    "wav with 0 Hz": (_wav_header(rate=0, data_bytes=1000) + bytes(1000), None, None),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_upload_gets_a_clear_4xx_and_the_server_stays_healthy(client, name):
    payload, status, code = HOSTILE[name]
    response = post_audio(client, payload)
    assert 400 <= response.status_code < 500, (name, response.status_code, response.get_data()[:200])
    if status:
        assert response.status_code == status
    body = response.get_json()
    assert body["error"] and body["message"]
    if code:
        assert body["error"] == code
    assert "Traceback" not in body["message"] and "/" not in body["message"].split(" ")[0]
    assert client.get("/health").get_json()["status"] == "healthy"
    assert client.get("/cache").get_json() == []


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "m4a"])
@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_uploads_cut_off_midway_answer_truncated_audio(client, fmt, fraction):
    y = synth.song(120, "A", "minor", seconds=8, sr=44100)
    data = {"wav": lambda: synth.wav_bytes(y, 44100),
            "flac": lambda: synth.encode(y, 44100, "FLAC"),
            "mp3": lambda: synth.encode_with_pyav(y, 44100, "mp3", "libmp3lame"),
            "m4a": lambda: synth.encode_with_pyav(y, 44100, "mp4", "aac")}[fmt]()
    response = post_audio(client, data[: int(len(data) * fraction)])
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"] == "truncated_audio"
    assert client.get("/cache").get_json() == []


def _long_silent_flac(hours: float, sr: int = 8000) -> bytes:
    buf = io.BytesIO()
    chunk = np.zeros(sr * 60, dtype=np.int16)
    with sf.SoundFile(buf, "w", samplerate=sr, channels=1, format="FLAC", subtype="PCM_16") as out:
        for _ in range(int(hours * 60)):
            out.write(chunk)
    return buf.getvalue()


def test_decompression_bomb_decodes_only_the_window(client):
    bomb = _long_silent_flac(hours=1.0)   # a few hundred KB that would decode to an hour of audio
    assert len(bomb) < 2_000_000
    response = post_audio(client, bomb)
    assert response.status_code == 422
    assert response.get_json()["error"] == "silent_audio"


def test_long_file_with_music_is_analyzed_on_its_window_not_whole(make_app):
    client = make_app(analysis_seconds=10).test_client()
    song = synth.song(100, "D", "major", seconds=10, sr=22050)
    long = np.tile(song, 12)  # two minutes
    body = post_audio(client, synth.encode(long, 22050, "FLAC")).get_json()
    assert body["analysis_window"]["seconds"] == pytest.approx(10, abs=0.1)
    assert body["source"]["duration"] == pytest.approx(120, abs=0.5)


class _CountingStream(io.RawIOBase):
    """A body that would be 200 MB; counts what the server actually reads."""

    def __init__(self, size: int):
        self.size, self.position, self.read_bytes = size, 0, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self.position

    def seek(self, offset, whence=io.SEEK_SET):
        self.position = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence] + offset
        return self.position

    def readinto(self, buffer):
        n = max(0, min(len(buffer), self.size - self.position))
        buffer[:n] = b"\0" * n
        self.position += n
        self.read_bytes += n
        return n


def test_200_mb_upload_is_refused_413_before_it_is_read(client):
    stream = _CountingStream(200 * 1024 * 1024)
    response = client.post("/analyze_data", input_stream=stream,
                           headers={"Content-Type": "application/octet-stream",
                                    "Content-Length": str(stream.size)})
    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"
    assert stream.read_bytes < 1024 * 1024


@pytest.mark.parametrize("channels, rate, bits", [(1, 8000, 16), (2, 96000, 24), (6, 48000, 16), (2, 44100, 32),
                                                  (1, 22050, 8)])
def test_unusual_but_valid_files_decode(client, channels, rate, bits):
    y = synth.song(110, "B", "minor", seconds=6, sr=rate)
    frames = np.repeat(y[:, None], channels, axis=1)
    subtype = {8: "PCM_U8", 16: "PCM_16", 24: "PCM_24", 32: "PCM_32"}[bits]
    response = post_audio(client, synth.encode(frames, rate, "WAV", subtype))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["key"] == "B Minor"
    assert body["source"]["channels"] == channels and body["source"]["sample_rate"] == rate


def test_m4a_with_index_after_the_media_decodes(client):
    # PyAV's mp4 muxer writes the moov box at the end unless told to move it: exactly the case to cover.
    data = synth.encode_with_pyav(synth.song(125, "C#", "major", seconds=6, sr=44100), 44100, "mp4", "aac")
    assert data.index(b"moov") > data.index(b"mdat")
    response = post_audio(client, data)
    assert response.status_code == 200
    assert response.get_json()["key"] == "C# Major"
