"""backend.audio.decode: every supported format decodes from memory; hostile or broken input gets a clear error."""
from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from backend.audio.decode import AudioDecodeError, DecodedAudio, decode_audio, sniff_format
from tests.synth import encode, encode_with_pyav, sine, song, white_noise

SR = 22050  # the analysis rate asked for throughout (DecodedAudio.mono() delivers it)


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------

def dominant_hz(y: np.ndarray, sr: int) -> float:
    """Frequency of the strongest spectral peak (Hann-windowed FFT)."""
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.argmax(spec) * sr / len(y))


def multichannel(y: np.ndarray, channels: int) -> np.ndarray:
    return np.repeat(y[:, None], channels, axis=1) if channels > 1 else y


def m4a_faststart(data: bytes, tmp_path) -> bytes:
    """Remux an m4a so its index (moov) comes before the media data, as streaming-friendly encoders write it.

    FFmpeg's faststart pass re-reads its output by name, hence the temporary file.
    """
    import av

    path = tmp_path / "faststart.m4a"
    with av.open(io.BytesIO(data)) as src, av.open(str(path), "w", format="mp4",
                                                   options={"movflags": "faststart"}) as dst:
        out_stream = dst.add_stream_from_template(src.streams.audio[0])
        for packet in src.demux(src.streams.audio[0]):
            if packet.dts is None:
                continue  # the flush packet
            packet.stream = out_stream
            dst.mux(packet)
    return path.read_bytes()


def top_level_boxes(data: bytes) -> list[bytes]:
    names, pos = [], 0
    while pos + 8 <= len(data):
        size, name = struct.unpack(">I4s", data[pos:pos + 8])
        names.append(name)
        if size < 8:
            break
        pos += size
    return names


def wav_header(*, channels: int, rate: int, bits: int = 16, data_size: int, fmt_tag: int = 1) -> bytes:
    """A canonical 44-byte WAV header with whatever (possibly absurd) values the test wants."""
    block_align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block_align, block_align, bits)
    riff_size = min(36 + data_size, 0xFFFFFFFF)
    return (b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", data_size))


def expect_error(data: bytes, code: str, status: int) -> AudioDecodeError:
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(data, target_sr=SR)
    err = info.value
    assert err.code == code, err
    assert err.status == status
    assert isinstance(err.message, str) and len(err.message) > 20
    assert "Errno" not in err.message and "<none>" not in err.message  # no decoder internals in responses
    return err


def check_result(out: DecodedAudio, seconds: float, *, tol: float = 0.1) -> None:
    """The contract: channel-first float32 at the source's rate, one row per channel, finite, in [-1, 1], the
    window it claims; mono() is the same audio at the analysis rate."""
    assert isinstance(out, DecodedAudio)
    x = out.samples
    assert out.sample_rate == out.source_sample_rate and out.analysis_rate == SR
    assert x.dtype == np.float32 and x.ndim == 2 and x.flags.c_contiguous
    assert x.shape[0] == out.channels
    assert np.isfinite(x).all()
    assert float(np.max(np.abs(x))) <= 1.0
    assert abs(x.shape[1] / out.sample_rate - seconds) < tol
    assert abs((out.window_end - out.window_start) - x.shape[1] / out.sample_rate) < 0.05
    mono = out.mono()
    assert mono.dtype == np.float32 and mono.ndim == 1 and float(np.max(np.abs(mono))) <= 1.0
    assert abs(len(mono) / SR - seconds) < tol


# ---------------------------------------------------------------------------------------------------------------
# happy paths
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_wav_sample_formats(subtype):
    y = sine(440.0, seconds=3.0, sr=44100)
    out = decode_audio(encode(y, 44100, "WAV", subtype), target_sr=SR)
    check_result(out, 3.0)
    assert out.source_format == "wav" and out.source_sample_rate == 44100 and out.channels == 1
    assert out.source_duration == pytest.approx(3.0, abs=1e-3)
    assert dominant_hz(out.mono(), SR) == pytest.approx(440.0, abs=2.0)
    # level is preserved (0.5 peak sine), so energy-like features mean the same across formats
    assert float(np.max(np.abs(out.samples))) == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("fmt,subtype,name", [("FLAC", "PCM_16", "flac"), ("FLAC", "PCM_24", "flac"),
                                              ("OGG", "VORBIS", "ogg")])
def test_libsndfile_formats(fmt, subtype, name):
    out = decode_audio(encode(sine(330.0, 4.0, 44100), 44100, fmt, subtype), target_sr=SR)
    check_result(out, 4.0)
    assert out.source_format == name
    assert dominant_hz(out.mono(), SR) == pytest.approx(330.0, abs=2.0)


@pytest.mark.parametrize("channels", [1, 2])
def test_m4a_aac(channels):
    data = encode_with_pyav(sine(523.25, 4.0, 44100), 44100, "mp4", "aac", channels)
    assert top_level_boxes(data)[-1] == b"moov"  # PyAV writes the index last: the iPhone-unfriendly layout
    out = decode_audio(data, target_sr=SR)
    check_result(out, 4.0, tol=0.15)
    assert out.source_format == "m4a" and out.channels == channels and out.source_sample_rate == 44100
    assert dominant_hz(out.mono(), SR) == pytest.approx(523.25, abs=2.0)


def test_m4a_with_index_first(tmp_path):
    data = m4a_faststart(encode_with_pyav(sine(440.0, 3.0, 44100), 44100, "mp4", "aac", 2), tmp_path)
    assert top_level_boxes(data).index(b"moov") < top_level_boxes(data).index(b"mdat")
    out = decode_audio(data, target_sr=SR)
    check_result(out, 3.0, tol=0.15)
    assert dominant_hz(out.mono(), SR) == pytest.approx(440.0, abs=2.0)


@pytest.mark.parametrize("channels", [1, 2])
def test_mp3(channels):
    data = encode_with_pyav(sine(440.0, 4.0, 44100), 44100, "mp3", "libmp3lame", channels)
    out = decode_audio(data, target_sr=SR)
    check_result(out, 4.0, tol=0.15)
    assert out.source_format == "mp3" and out.channels == channels
    assert dominant_hz(out.mono(), SR) == pytest.approx(440.0, abs=2.0)


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000])
def test_sample_rates(rate):
    out = decode_audio(encode(sine(440.0, 2.0, rate), rate, "WAV", "PCM_16"), target_sr=SR)
    check_result(out, 2.0)
    assert out.source_sample_rate == rate
    assert dominant_hz(out.mono(), SR) == pytest.approx(440.0, abs=2.0)


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_compressed_sample_rates(rate):
    mp3 = decode_audio(encode_with_pyav(sine(440.0, 2.0, rate), rate, "mp3", "libmp3lame"), target_sr=SR)
    m4a = decode_audio(encode_with_pyav(sine(440.0, 2.0, rate), rate, "mp4", "aac"), target_sr=SR)
    for out in (mp3, m4a):
        check_result(out, 2.0, tol=0.2)
        assert out.source_sample_rate == rate


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_surround_51_keeps_every_channel(fmt):
    y = multichannel(sine(440.0, 2.0, 48000), 6)
    out = decode_audio(encode(y, 48000, fmt, "PCM_16"), target_sr=SR)
    check_result(out, 2.0)
    assert out.channels == 6 and out.samples.shape[0] == 6
    np.testing.assert_allclose(np.max(np.abs(out.samples), axis=1), 0.5, atol=0.01)
    assert float(np.max(np.abs(out.mono()))) == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("fmt", ["WAV", "m4a"])
def test_stereo_channels_are_kept_apart_and_mono_is_their_average(fmt):
    left, right = sine(440.0, 2.0, 44100), np.zeros(2 * 44100, np.float32)
    if fmt == "WAV":
        data = encode(np.stack([left, right], axis=1), 44100, "WAV", "FLOAT")
    else:
        data = encode_with_pyav(np.stack([left, right]), 44100, "mp4", "aac")
    out = decode_audio(data, target_sr=44100)
    assert out.channels == 2 and out.sample_rate == 44100
    if fmt == "WAV":  # lossless and at the same rate: exact
        np.testing.assert_array_equal(out.samples[0], left)
        np.testing.assert_array_equal(out.samples[1], right)
        np.testing.assert_allclose(out.mono(), left / 2, atol=1e-6)
    else:
        rms = np.sqrt(np.mean(out.samples.astype(np.float64) ** 2, axis=1))
        assert rms[0] == pytest.approx(0.5 / np.sqrt(2), rel=0.02) and rms[1] < 0.01


def test_samples_come_at_the_source_rate_and_mono_at_the_requested_one():
    data = encode(sine(440.0, 2.0, 44100), 44100, "WAV", "PCM_16")
    for target in (11025, 22050, 44100, 48000):
        out = decode_audio(data, target_sr=target)
        assert out.sample_rate == 44100 and out.samples.shape == (1, 2 * 44100)
        assert out.analysis_rate == target and abs(len(out.mono()) - 2 * target) <= 2


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
@pytest.mark.parametrize("rate,rows", [(96000, 8), (192000, 1)])
def test_very_wide_sources_are_folded_to_one_row(fmt, rate, rows):
    """8 channels at 192 kHz would need 184 MB for 30 s: such sources are averaged while decoding; 7.1 at
    96 kHz (74 MB) keeps its channels."""
    out = decode_audio(encode(multichannel(sine(440.0, 1.0, rate), 8), rate, fmt, "PCM_16"), target_sr=SR)
    assert out.channels == 8 and out.sample_rate == rate and out.samples.shape == (rows, rate)
    assert np.isfinite(out.samples).all()
    np.testing.assert_allclose(np.max(np.abs(out.samples), axis=1), 0.5, atol=0.01)
    assert dominant_hz(out.mono(), SR) == pytest.approx(440.0, abs=2.0)


def test_non_finite_samples_become_zero():
    y = sine(440.0, 1.0, SR)
    y[100], y[200], y[300] = np.nan, np.inf, -np.inf
    y[400] = 7.5  # float WAVs may exceed full scale
    out = decode_audio(encode(y, SR, "WAV", "FLOAT"), target_sr=SR)
    assert np.isfinite(out.samples).all()
    assert out.samples[0, 100] == 0.0 and out.samples[0, 200] == 0.0 and out.samples[0, 300] == 0.0
    assert float(np.max(np.abs(out.samples))) <= 1.0


def test_sniff_format_names():
    y = sine(440.0, 0.5, 44100)
    assert sniff_format(encode(y, 44100, "WAV")) == "wav"
    assert sniff_format(encode(y, 44100, "FLAC")) == "flac"
    assert sniff_format(encode(y, 44100, "OGG")) == "ogg"
    assert sniff_format(encode_with_pyav(y, 44100, "mp3", "libmp3lame")) == "mp3"
    assert sniff_format(encode_with_pyav(y, 44100, "mp4", "aac")) == "m4a"
    assert sniff_format(b"hello world, this is text") is None


# ---------------------------------------------------------------------------------------------------------------
# the analysis window
# ---------------------------------------------------------------------------------------------------------------

def test_short_file_is_decoded_whole():
    out = decode_audio(encode(song(120, seconds=12.0, sr=SR), SR, "FLAC"), target_sr=SR, window_seconds=30.0)
    check_result(out, 12.0)
    assert out.window_start == 0.0 and out.window_end == pytest.approx(12.0, abs=1e-3)


def _marked_file(seconds: int, sr: int) -> np.ndarray:
    """A tone whose pitch says where it is: 200 Hz + 10 Hz per second into the file (steps each second)."""
    return np.concatenate([sine(200.0 + 10.0 * s, 1.0, sr) for s in range(seconds)])


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3", "m4a"])
def test_long_file_uses_the_middle_window(fmt):
    sr = 16000
    y = _marked_file(90, sr)
    data = {
        "wav": lambda: encode(y, sr, "WAV", "PCM_16"),
        "flac": lambda: encode(y, sr, "FLAC"),
        "ogg": lambda: encode(y, sr, "OGG"),
        "mp3": lambda: encode_with_pyav(y, sr, "mp3", "libmp3lame"),
        "m4a": lambda: encode_with_pyav(y, sr, "mp4", "aac"),
    }[fmt]()
    out = decode_audio(data, target_sr=SR, window_seconds=20.0)
    check_result(out, 20.0, tol=0.05)
    assert out.source_duration == pytest.approx(90.0, abs=0.2)
    assert out.window_start == pytest.approx(35.0, abs=0.1)
    assert out.window_end == pytest.approx(55.0, abs=0.1)
    # the decoded audio really is the window it claims: second 40 of the file sits 5 s into the window
    second = out.mono()[int(5.2 * SR):int(5.8 * SR)]
    assert dominant_hz(second, SR) == pytest.approx(200.0 + 10.0 * 40, abs=6.0)


def test_window_is_configurable():
    data = encode(sine(440.0, 20.0, 8000), 8000, "WAV", "PCM_16")
    out = decode_audio(data, target_sr=SR, window_seconds=5.0)
    check_result(out, 5.0)
    assert out.window_start == pytest.approx(7.5)


def _silent_mp3_hours(hours: float) -> bytes:
    """A long silent MP3 built by repeating one encoded 8 kbit/s frame: 72 bytes per 72 ms, hours long.

    There is no Xing/Info frame, so the length is only known from the bitrate (as for many real files).
    """
    frames = _mp3_frames(np.zeros(8000 * 3, np.float32), 8000, 8000)
    silent = frames[len(frames) // 2]
    per_frame_seconds = 576 / 8000  # MPEG-2.5 layer III
    return silent * int(hours * 3600 / per_frame_seconds)


def test_eight_hour_file_decodes_only_the_window():
    data = _silent_mp3_hours(8.0)
    assert len(data) < 40_000_000
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        out = decode_audio(data, target_sr=SR, window_seconds=30.0)
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000  # numpy memory for one window, not for eight hours (which would be ~900 MB)
    check_result(out, 30.0, tol=0.1)
    assert out.source_duration == pytest.approx(8 * 3600.0, rel=0.02)
    assert out.window_start == pytest.approx(4 * 3600.0 - 15.0, rel=0.02)
    assert elapsed < 2.0


def test_long_flac_decodes_only_the_window():
    sr = 8000
    buf = io.BytesIO()
    import soundfile as sf

    with sf.SoundFile(buf, "w", samplerate=sr, channels=1, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros(sr * 60, np.float32)
        for _ in range(60):  # one hour of silence: a few hundred kilobytes
            f.write(block)
    data = buf.getvalue()
    t0 = time.perf_counter()
    out = decode_audio(data, target_sr=SR)
    assert time.perf_counter() - t0 < 2.0
    check_result(out, 30.0)
    assert out.source_duration == pytest.approx(3600.0)
    assert out.window_start == pytest.approx(1785.0)


# ---------------------------------------------------------------------------------------------------------------
# not audio, broken audio
# ---------------------------------------------------------------------------------------------------------------

def test_empty_upload():
    expect_error(b"", "empty_audio", 400)


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("song.txt", "not a song" * 100)
    return buf.getvalue()


@pytest.mark.parametrize("data", [
    b"\x00",
    b"\xff",
    np.random.default_rng(1).bytes(4096),
    np.random.default_rng(2).bytes(100_000),
    b"Hello, this is a text file and not a song at all.\n" * 20,
    b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body>nope</body></html>",
    b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(200),
    _zip_bytes(),
    b"%PDF-1.7\n" + bytes(500),
    b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"text after an id3 tag",
], ids=["1byte-nul", "1byte-ff", "random4k", "random100k", "text", "html", "png", "zip", "pdf", "id3-only"])
def test_not_audio_is_unsupported(data):
    expect_error(data, "unsupported_format", 415)


@pytest.mark.parametrize("channels,rate", [(0, 44100), (1, 0), (0, 0)])
def test_zero_channels_or_rate_is_undecodable(channels, rate):
    expect_error(wav_header(channels=channels, rate=rate, data_size=1000) + bytes(1000), "undecodable_audio", 422)


@pytest.mark.parametrize("data", [
    b"OggS" + np.random.default_rng(3).bytes(3000),
    b"fLaC" + np.random.default_rng(4).bytes(3000),
    b"RIFF\x24\x00\x00\x00WAVEjunk",
    wav_header(channels=1, rate=44100, data_size=0),
    wav_header(channels=1, rate=44100, data_size=100, fmt_tag=0x1234) + bytes(100),
], ids=["ogg-garbage", "flac-garbage", "wav-no-chunks", "wav-no-samples", "wav-unknown-codec"])
def test_recognized_container_with_broken_content(data):
    expect_error(data, "undecodable_audio", 422)


def test_m4a_without_audio_samples():
    # an MP4 box structure with an empty index and no media: recognized as m4a, decodes to nothing
    moov = struct.pack(">I4s", 8, b"moov")
    data = struct.pack(">I4s4sI4s", 20, b"ftyp", b"M4A ", 0, b"isom") + moov
    err = expect_error(data, "undecodable_audio", 422)
    assert "m4a" in err.message


def test_wav_header_claiming_hours_with_little_data():
    ten_hours = 10 * 3600 * 44100 * 2
    data = wav_header(channels=1, rate=44100, data_size=ten_hours) + bytes(88200)
    expect_error(data, "truncated_audio", 422)


# ---------------------------------------------------------------------------------------------------------------
# truncated uploads: the container declares more audio than the bytes hold
# ---------------------------------------------------------------------------------------------------------------

_Y = song(120, seconds=15.0, sr=44100)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> dict[str, bytes]:
    m4a = encode_with_pyav(_Y, 44100, "mp4", "aac", 2)
    return {
        "wav": encode(_Y, 44100, "WAV", "PCM_16"),
        "wav24": encode(multichannel(_Y, 2), 44100, "WAV", "PCM_24"),
        "flac": encode(multichannel(_Y, 2), 44100, "FLAC"),
        "mp3": encode_with_pyav(_Y, 44100, "mp3", "libmp3lame", 2),
        "m4a": m4a,
        "m4a-faststart": m4a_faststart(m4a, tmp_path_factory.mktemp("m4a")),
        "ogg": encode(multichannel(_Y, 2), 44100, "OGG"),
    }


@pytest.mark.parametrize("name", ["wav", "wav24", "flac", "mp3", "m4a", "m4a-faststart", "ogg"])
def test_complete_files_are_not_mistaken_for_truncated(encoded, name):
    check_result(decode_audio(encoded[name], target_sr=SR), 15.0, tol=0.15)


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.9, 0.98])
@pytest.mark.parametrize("name", ["wav", "wav24", "flac", "mp3", "m4a", "m4a-faststart", "ogg"])
def test_truncated_uploads(encoded, name, cut):
    data = encoded[name]
    err = expect_error(data[:int(len(data) * cut)], "truncated_audio", 422)
    assert "incomplete" in err.message


def test_mp3_with_trailing_tag_is_not_truncated(encoded):
    id3v1 = b"TAG" + b"Title".ljust(30, b"\x00") + bytes(95)
    check_result(decode_audio(encoded["mp3"] + id3v1, target_sr=SR), 15.0, tol=0.15)


def _id3v2(payload_size: int) -> bytes:
    """An ID3v2.4 tag holding one big (fake) picture frame, as files with album art carry."""
    frame = b"APIC" + payload_size.to_bytes(4, "big") + b"\0\0" + bytes(payload_size)
    size = len(frame)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x04\x00\x00" + syncsafe + frame


def test_mp3_with_album_art(encoded):
    mp3 = encoded["mp3"]
    tagged = _id3v2(200_000) + mp3[mp3.index(b"\xff\xfb"):]  # replace the encoder's small tag with a big one
    out = decode_audio(tagged, target_sr=SR)
    check_result(out, 15.0, tol=0.15)
    assert out.source_format == "mp3"
    for cut in (0.5, 0.9):  # and cut: detected although the tag is larger than what is missing
        expect_error(tagged[:int(len(tagged) * cut)], "truncated_audio", 422)


@pytest.mark.parametrize("rate", [1, 100, 10_000_000])
def test_absurd_sample_rate_is_undecodable(rate):
    expect_error(wav_header(channels=1, rate=rate, data_size=1000) + bytes(1000), "undecodable_audio", 422)


def test_wav_with_streaming_placeholder_size_is_not_truncated():
    samples = (sine(440.0, 1.0, 8000) * 32767).astype("<i2").tobytes()
    data = wav_header(channels=1, rate=8000, data_size=0xFFFFFFFF) + samples
    out = decode_audio(data, target_sr=SR)
    assert out.source_sample_rate == 8000


# ---------------------------------------------------------------------------------------------------------------
# fuzz: whatever the bytes, the only exception is AudioDecodeError
# ---------------------------------------------------------------------------------------------------------------

def _mutations(data: bytes, rng: np.random.Generator, count: int):
    for i in range(count):
        buf = bytearray(data)
        kind = i % 3
        if kind == 0:  # flip bytes, headers included
            for pos in rng.integers(0, min(len(buf), 4096), size=8):
                buf[pos] = int(rng.integers(0, 256))
        elif kind == 1:  # overwrite a run in the body
            pos = int(rng.integers(0, len(buf) - 64))
            buf[pos:pos + 64] = rng.bytes(64)
        else:  # cut anywhere
            del buf[int(rng.integers(1, len(buf))):]
        yield bytes(buf)


@pytest.mark.parametrize("name", ["wav", "flac", "mp3", "m4a", "m4a-faststart"])
def test_mutated_files_raise_only_decode_errors(encoded, name):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    for data in _mutations(encoded[name], rng, 30):
        try:
            out = decode_audio(data, target_sr=SR)
        except AudioDecodeError as err:
            assert err.status in (400, 415, 422)
            continue
        assert np.isfinite(out.samples).all() and out.samples.dtype == np.float32


def test_ogg_and_noise_mutations(encoded):
    rng = np.random.default_rng(7)
    ogg = encode(white_noise(3.0, 44100), 44100, "OGG")
    for data in _mutations(ogg, rng, 30):
        try:
            out = decode_audio(data, target_sr=SR)
        except AudioDecodeError:
            continue
        assert np.isfinite(out.samples).all()


# ---------------------------------------------------------------------------------------------------------------
# MP3 without a Xing header: FFmpeg guesses the duration from the first frames' bitrate
# ---------------------------------------------------------------------------------------------------------------

def _mp3_frames(y: np.ndarray, sr: int, bit_rate: int) -> list[bytes]:
    """The MPEG frames of a CBR MP3 at ``bit_rate``, Info frame dropped."""
    import av

    from backend.audio.decode import _mp3_frame, _skip_id3

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=sr, layout="mono")
        stream.bit_rate = bit_rate
        for i in range(0, len(y), 1152):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(y[None, i:i + 1152]), format="fltp",
                                               layout="mono")
            frame.sample_rate = sr
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = buf.getvalue()
    pos, frames = _skip_id3(data), []
    while (frame := _mp3_frame(data, pos)) is not None:
        frames.append(data[pos:pos + frame.length])
        pos += frame.length
    return frames[1:]


@pytest.mark.parametrize("first_rate,rest_rate", [(32_000, 320_000), (320_000, 32_000)])
def test_mp3_with_a_wrong_duration_guess_still_fills_the_window(first_rate, rest_rate):
    head = _mp3_frames(sine(440.0, 2.0, 44100), 44100, first_rate)[:30]
    rest = _mp3_frames(sine(440.0, 60.0, 44100), 44100, rest_rate)
    out = decode_audio(b"".join(head + rest), target_sr=SR, window_seconds=30.0)
    check_result(out, 30.0, tol=0.05)  # whatever the guess (3x too long or too short), a full window
    assert out.window_end <= 62.0


@pytest.mark.parametrize("sr,layout,channels", [(48000, "5.1", 6), (96000, "stereo", 2), (8000, "mono", 1)])
def test_unusual_m4a(sr, layout, channels):
    out = decode_audio(encode_with_pyav(sine(440.0, 3.0, sr), sr, "mp4", "aac", layout=layout), target_sr=SR)
    check_result(out, 3.0, tol=0.25)  # AAC priming + last-frame padding: 2048 samples, 0.26 s at 8 kHz
    assert out.channels == channels and out.source_sample_rate == sr
    assert dominant_hz(out.mono(), SR) == pytest.approx(440.0, abs=2.0)


def test_wav_extensible_51_at_96k_24bit():
    y = multichannel(sine(440.0, 2.0, 96000), 6)
    out = decode_audio(encode(y, 96000, "WAVEX", "PCM_24"), target_sr=SR)
    check_result(out, 2.0)
    assert out.channels == 6 and out.source_sample_rate == 96000 and out.source_format == "wav"


@pytest.mark.parametrize("name,data", [
    ("ff-flood", b"\xff" * 8_000_000),
    ("id3-then-ff-flood", b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff" * 8_000_000),
    ("stacked-id3", b"ID3\x04\x00\x00\x00\x00\x00\x00" * 500_000),
    ("million-mp4-boxes",
     struct.pack(">I4s4sI", 16, b"ftyp", b"M4A ", 0) + struct.pack(">I4s", 8, b"free") * 1_000_000),
    ("ogg-page-flood", b"OggS" * 2_000_000),
])
def test_hostile_inputs_are_refused_quickly(name, data):
    t0 = time.perf_counter()
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(data, target_sr=SR)
    assert info.value.status in (415, 422)
    assert time.perf_counter() - t0 < 2.0, name
