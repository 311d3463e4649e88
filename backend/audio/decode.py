"""Decode uploaded audio bytes to channel-first float32 samples at the source's own rate, entirely in memory.

One entry point, :func:`decode_audio`. It recognizes the container from its first bytes, refuses what is not
audio, detects uploads cut off before the end (the container declares more audio than the bytes hold), and
decodes only the analysis window, so a tiny file that expands to hours costs no more than a 30-second clip.

libsndfile (soundfile) reads WAV/FLAC/OGG/AIFF exactly and quickly; everything else (MP3, AAC in MP4/m4a,
ADTS, Matroska) goes through PyAV, whose wheels bundle FFmpeg.

Why the channels at the native rate, not a mono signal at the analysis rate: loudness (ITU-R BS.1770) is defined
on the channels (a mono downmix of real stereo reads 3.7-10.8 LU low), and its K-weighting covers the whole
audible band, which a 22.05 kHz analysis signal has lost. So the decoder hands over what the file holds, bounded
to the analysis window (30 s of 44.1 kHz stereo is 10 MB), and `perform_audio_analysis` measures loudness on it
before it downmixes and resamples once (soxr) for the estimators. This is also the cheaper order: the decoder
copies each channel into its row in one batched copy and never resamples. `DecodedAudio.mono()` gives the
downmix at the analysis rate for callers that want only that. Sources with more than
``_MAX_CHANNEL_RATE`` samples per second over all channels (e.g. 8 channels at 192 kHz) are folded to mono while
decoding, as before, so memory stays bounded by the same 92 MB as a mono file at the highest rate.

Every failure caused by the input is raised as :class:`AudioDecodeError` carrying a stable ``code``, a
``message`` a person can act on and the HTTP ``status`` the server should answer.
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from backend.web.errors import ServiceError

__all__ = ["AudioDecodeError", "DecodedAudio", "decode_audio", "sniff_format"]

# Formats libsndfile reads natively; everything else recognized goes to PyAV.
_SNDFILE_FORMATS = frozenset({"wav", "flac", "ogg", "aiff", "caf"})

# Sample rates outside this range are not music files, whatever the header says.
_MIN_RATE, _MAX_RATE = 1000, 768_000

# Corrupt packets we tolerate before giving up on a compressed stream (each costs a little time).
_MAX_DECODE_ERRORS = 200

# Channels x rate above this are folded to mono while decoding: the memory of a window then stays what a mono
# file at the highest rate needs (30 s x 768 kHz x 4 bytes = 92 MB). 7.1 at 96 kHz still keeps its channels.
_MAX_CHANNEL_RATE = 768_000


class AudioDecodeError(ServiceError):
    """The bytes are not audio we can analyze.

    ``code`` is stable and machine-readable: ``empty_audio`` (400), ``unsupported_format`` (415),
    ``undecodable_audio`` (422) or ``truncated_audio`` (422). ``status`` is the HTTP status to answer.
    """

    _STATUS = {
        "empty_audio": 400,
        "unsupported_format": 415,
        "undecodable_audio": 422,
        "truncated_audio": 422,
    }

    def __init__(self, code: str, message: str, status: int | None = None, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else self._STATUS.get(code, 422)
        self.detail = detail  # the decoder's own words, for logs only: never put it in a response

    def __repr__(self) -> str:
        return f"AudioDecodeError({self.code!r}, {self.message!r}, status={self.status})"


@dataclass(frozen=True)
class DecodedAudio:
    """The analyzed window as channel-first float32 samples at the source's rate, plus what we learned about the
    source. Pass ``samples, sample_rate`` to ``perform_audio_analysis``."""

    samples: np.ndarray  # float32, (channels, n) channel-first, C-contiguous, finite, in [-1, 1], at sample_rate
    sample_rate: int  # the source's own rate (the samples are not resampled)
    source_format: str  # "wav", "flac", "ogg", "aiff", "caf", "mp3", "m4a", "aac", "webm"
    source_sample_rate: int
    channels: int  # channels in the source; samples has one row per channel, or one row if they were folded
    source_duration: float | None  # duration of the whole file in seconds, when the container says
    window_start: float  # seconds into the file where the analyzed samples start
    window_end: float  # seconds into the file where they end
    analysis_rate: int  # the caller's target_sr: the rate mono() delivers

    def mono(self) -> np.ndarray:
        """The channels averaged into one float32 signal, resampled (soxr, high quality) to ``analysis_rate``,
        clipped to [-1, 1]: the kind of signal the estimators work on, for callers that want only that."""
        mono = _downmix(self.samples.T)
        if self.sample_rate != self.analysis_rate:
            mono = soxr.resample(mono, self.sample_rate, self.analysis_rate, quality="HQ").astype(np.float32,
                                                                                                   copy=False)
            np.clip(mono, -1.0, 1.0, out=mono)  # the filter can ring slightly past full scale
        return mono


# --------------------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------------------

def decode_audio(data: bytes, *, target_sr: int, window_seconds: float = 30.0) -> DecodedAudio:
    """Decode at most ``window_seconds`` of ``data`` to channel-first float32 at the source's own rate.

    ``target_sr`` is the rate the caller analyses at: ``DecodedAudio.mono()`` delivers the downmix at that rate,
    and ``perform_audio_analysis(out.samples, out.sample_rate)`` resamples to its own rate after measuring
    loudness on the channels.

    Files no longer than the window are decoded whole. Longer files are decoded on one window of
    ``window_seconds`` centred in the file when its duration is known (intros and outros are rarely
    representative), else on the first ``window_seconds``; only that window is decoded.

    Raises :class:`AudioDecodeError` for every problem with the input and nothing else (``ValueError`` only
    for invalid arguments, a programming error of the caller).
    """
    if target_sr <= 0 or window_seconds <= 0:
        raise ValueError("target_sr and window_seconds must be positive")
    if not data:
        raise AudioDecodeError("empty_audio", "The upload is empty: send the bytes of an audio file.")
    fmt = sniff_format(data)
    if fmt is None:
        raise AudioDecodeError(
            "unsupported_format",
            "The upload is not audio we can read: send WAV, FLAC, OGG/Vorbis, MP3 or AAC (.m4a/.mp4).",
        )
    _check_not_truncated(data, fmt)
    try:
        return _decode(data, fmt, target_sr, window_seconds)
    except AudioDecodeError:
        raise
    except MemoryError:
        raise AudioDecodeError("undecodable_audio", f"The {fmt} file is too large to decode.") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise many types; none may escape as a 500
        raise AudioDecodeError(
            "undecodable_audio", f"The {fmt} file is damaged or uses an encoding we cannot decode.",
            detail=f"{type(exc).__name__}: {exc}"[:300],
        ) from None


def _decode(data: bytes, fmt: str, target_sr: int, window_seconds: float) -> DecodedAudio:
    if fmt in _SNDFILE_FORMATS:
        try:
            return _decode_sndfile(data, fmt, target_sr, window_seconds)
        except AudioDecodeError:
            raise
        except Exception:  # noqa: BLE001 - e.g. a WAV holding MP3 or ADPCM: FFmpeg may still read it
            pass
    return _decode_pyav(data, fmt, target_sr, window_seconds)


# --------------------------------------------------------------------------------------------------------------
# Format recognition
# --------------------------------------------------------------------------------------------------------------

_MP4_TOP_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")


def sniff_format(data: bytes) -> str | None:
    """Name the audio container of ``data`` from its magic bytes, or None when it is not one we decode."""
    head = data[:12]
    if head[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b"caff":
        return "caf"
    if head[:4] == b"OggS":
        return "ogg"
    if head[4:8] in _MP4_TOP_BOXES and len(data) >= 8:
        return "m4a"
    if head[:4] == b"\x1aE\xdf\xa3":
        return "webm"
    start = _skip_id3(data)
    if data[start:start + 4] == b"fLaC":
        return "flac"
    # After an ID3 tag encoders sometimes pad before the first frame; bare data must start with one.
    if _find_mp3_sync(data, start, 4096 if start else 1) is not None:
        return "mp3"
    if _is_adts(data, start):
        return "aac"
    return None


def _skip_id3(data: bytes) -> int:
    """Offset just past any ID3v2 tags at the start (MP3 and some FLAC files carry them)."""
    pos = 0
    for _ in range(16):  # stacked tags happen; thousands of them are an attack on this loop
        if data[pos:pos + 3] != b"ID3" or len(data) < pos + 10:
            break
        size = 0
        for b in data[pos + 6:pos + 10]:
            size = (size << 7) | (b & 0x7F)  # syncsafe integer
        footer = 10 if data[pos + 5] & 0x10 else 0
        pos += 10 + size + footer
    return pos


_MP3_BITRATES = {  # kbit/s by (MPEG-1?, layer)
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


@dataclass(frozen=True)
class _Mp3Frame:
    length: int  # bytes, header included
    mpeg1: bool
    mono: bool


def _mp3_frame(data: bytes, pos: int) -> _Mp3Frame | None:
    """Parse the MPEG audio frame header at ``pos``; None when there is no valid header there."""
    if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return None
    b1, b2, b3 = data[pos + 1], data[pos + 2], data[pos + 3]
    version, layer_bits = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_index, rate_index, padding = b2 >> 4, (b2 >> 2) & 3, (b2 >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None  # reserved values; free-format (index 0) is too rare to be worth the ambiguity
    layer = 4 - layer_bits
    mpeg1 = version == 3
    bitrate = _MP3_BITRATES[(mpeg1, layer)][bitrate_index] * 1000
    rate = _MP3_RATES[version][rate_index]
    if layer == 1:
        length = (12 * bitrate // rate + padding) * 4
    elif layer == 3 and not mpeg1:
        length = 72 * bitrate // rate + padding
    else:
        length = 144 * bitrate // rate + padding
    return _Mp3Frame(length=length, mpeg1=mpeg1, mono=(b3 >> 6) == 3)


def _find_mp3_sync(data: bytes, start: int, scan: int) -> int | None:
    """Offset of the first MPEG audio frame in ``data[start:start + scan]`` that is followed by another one.

    Requiring two consecutive valid headers keeps random bytes that happen to start with 0xFFE from passing.
    """
    limit = min(len(data), start + scan)
    pos = data.find(b"\xff", start, limit)
    while pos != -1:
        frame = _mp3_frame(data, pos)
        if frame is not None:
            nxt = pos + frame.length
            # A single frame file is fine only if it ends exactly at the end of the data.
            if nxt >= len(data) - 128 or _mp3_frame(data, nxt) is not None:
                return pos
        pos = data.find(b"\xff", pos + 1, limit)
    return None


def _is_adts(data: bytes, start: int) -> bool:
    """True when ``data[start:]`` begins with two ADTS (raw AAC) frames."""
    def frame_len(pos: int) -> int | None:
        if pos + 7 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xF6 != 0xF0:
            return None
        n = ((data[pos + 3] & 0x03) << 11) | (data[pos + 4] << 3) | (data[pos + 5] >> 5)
        return n if n >= 7 else None

    first = frame_len(start)
    if first is None:
        return False
    return start + first >= len(data) or frame_len(start + first) is not None


# --------------------------------------------------------------------------------------------------------------
# Truncation: the container declares more audio than the bytes hold
# --------------------------------------------------------------------------------------------------------------

def _truncated(fmt: str) -> AudioDecodeError:
    return AudioDecodeError(
        "truncated_audio",
        f"The {fmt} file is incomplete: its header declares more audio than the upload contains. "
        "The upload or download was probably cut off; send the whole file.",
    )


def _check_not_truncated(data: bytes, fmt: str) -> None:
    """Raise ``truncated_audio`` when the container's own bookkeeping says bytes are missing.

    Header arithmetic only (cheap); FLAC is checked during decoding because its total length is in samples.
    OGG declares no length, but every complete stream ends with a page flagged end-of-stream.
    """
    if fmt == "wav":
        _check_wav(data)
    elif fmt == "m4a":
        _check_mp4(data)
    elif fmt == "mp3":
        _check_mp3(data)
    elif fmt == "ogg":
        _check_ogg(data)


def _check_wav(data: bytes) -> None:
    """The 'data' chunk must fit in the upload (size 0 / 0xFFFFFFFF are 'unknown' placeholders of streamers)."""
    if data[:4] not in (b"RIFF", b"RIFX"):
        return  # RF64 keeps its sizes in a ds64 chunk; libsndfile validates it
    endian = ">" if data[:4] == b"RIFX" else "<"
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos:pos + 4]
        (size,) = struct.unpack(endian + "I", data[pos + 4:pos + 8])
        if chunk_id == b"data":
            present = len(data) - (pos + 8)
            if size not in (0, 0xFFFFFFFF) and size > present + 1:  # +1: the optional pad byte
                raise _truncated("wav")
            return
        pos += 8 + size + (size & 1)
    # No data chunk at all: libsndfile reports it as undecodable.


# Real files have a handful of top-level boxes (fragmented ones: two per fragment, a few thousand per hour);
# a flood of tiny boxes would make FFmpeg call back into Python for each one.
_MAX_BOXES = 20_000


def _check_mp4(data: bytes) -> None:
    """Walk the top-level boxes: one that extends past the end, or no 'moov' index at all, means cut off."""
    pos, seen_moov, seen_mdat = 0, False, False
    for count in range(_MAX_BOXES + 1):
        if pos + 8 > len(data):
            break
        if count == _MAX_BOXES:
            raise AudioDecodeError("undecodable_audio", f"The m4a file has more than {_MAX_BOXES} top-level "
                                                        "boxes: it is not a file we can decode.")
        size, box = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            if pos + 16 > len(data):
                raise _truncated("m4a")
            (size,) = struct.unpack(">Q", data[pos + 8:pos + 16])
            header = 16
        elif size == 0:
            size = len(data) - pos  # "extends to the end of the file"
        if size < header or not _is_box_name(box):
            break  # trailing junk or padding after the boxes: not our concern
        seen_moov |= box == b"moov"
        seen_mdat |= box == b"mdat"
        if pos + size > len(data):
            raise _truncated("m4a")
        pos += size
    if seen_mdat and not seen_moov:
        raise _truncated("m4a")  # the index comes last in files written without 'faststart'


def _is_box_name(box: bytes) -> bool:
    return all(32 <= c < 127 for c in box)


def _check_mp3(data: bytes) -> None:
    """Compare the Xing/Info header's declared byte (or frame) count with what the upload holds."""
    start = _skip_id3(data)
    first = _find_mp3_sync(data, start, 4096 if start else 1)
    if first is None:
        return
    frame = _mp3_frame(data, first)
    assert frame is not None
    side_info = (32 if not frame.mono else 17) if frame.mpeg1 else (17 if not frame.mono else 9)
    tag = first + 4 + side_info
    if data[tag:tag + 4] not in (b"Xing", b"Info") or tag + 16 > len(data):
        return  # no Xing/Info header: the stream declares no length, so it cannot be caught being short
    (flags,) = struct.unpack(">I", data[tag + 4:tag + 8])
    fields = data[tag + 8:tag + 16]
    declared_frames = struct.unpack(">I", fields[:4])[0] if flags & 1 else None
    byte_field = fields[4:8] if flags & 1 else fields[:4]
    declared_bytes = struct.unpack(">I", byte_field)[0] if flags & 2 else None
    slack = 3 * frame.length  # encoder padding and rounding: tolerate a frame or two
    bytes_short = bool(declared_bytes) and declared_bytes > len(data) - first + slack
    if declared_frames and (bytes_short or not declared_bytes):
        # Count the frames really present: exact whatever an encoder put in its byte count (some include
        # the ID3 tag), and only needed when the byte count is missing or already says bytes are missing.
        present = _count_mp3_frames(data, first + frame.length, stop_at=declared_frames)
        if present is not None and declared_frames > present + 2:
            raise _truncated("mp3")
    elif bytes_short:
        raise _truncated("mp3")


def _check_ogg(data: bytes) -> None:
    """A complete Ogg stream ends with an end-of-stream page; look for one, whole, in the last 64 KiB."""
    if len(data) < 28 or data[4] != 0 or 27 + data[26] > len(data):
        return  # not even a well-formed first page: the decoder will call it undecodable
    max_page = 27 + 255 + 255 * 255
    pos = data.find(b"OggS", max(0, len(data) - max_page - 4096))
    while pos != -1:
        if pos + 27 <= len(data) and data[pos + 4] == 0:  # stream structure version 0
            segments = data[pos + 26]
            table_end = pos + 27 + segments
            if table_end <= len(data) and data[pos + 5] & 0x04:  # header type: end of stream
                if table_end + sum(data[pos + 27:table_end]) <= len(data):
                    return
        pos = data.find(b"OggS", pos + 1)
    raise _truncated("ogg")


def _count_mp3_frames(data: bytes, pos: int, *, stop_at: int) -> int | None:
    """Count the complete MPEG audio frames from ``pos`` on (stopping once ``stop_at`` are found),
    resynchronizing after junk (a tag, a glitch). None when the stream is too mangled to count: then we
    cannot say it is truncated, and the decoder decides."""
    count, resyncs = 0, 0
    while pos < len(data) and count < stop_at:
        frame = _mp3_frame(data, pos)
        if frame is None:
            resyncs += 1
            if resyncs > 32:  # each resync scans up to 64 KiB: bound the work on hostile input
                return None
            nxt = _find_mp3_sync(data, pos + 1, scan=65536)
            if nxt is None:
                break
            pos = nxt
            continue
        if pos + frame.length > len(data):
            break
        count += 1
        pos += frame.length
    return count


# --------------------------------------------------------------------------------------------------------------
# Decoding: libsndfile
# --------------------------------------------------------------------------------------------------------------

def _plan_window(total_frames: int | None, rate: int, window_seconds: float) -> tuple[int, int | None]:
    """(first frame, frame count or None for 'to the end') of the window to decode."""
    length = int(round(window_seconds * rate))
    if total_frames is None or total_frames <= 0:
        return 0, length
    if total_frames <= length:
        return 0, None
    return (total_frames - length) // 2, length


def _decode_sndfile(data: bytes, fmt: str, target_sr: int, window_seconds: float) -> DecodedAudio:
    with sf.SoundFile(io.BytesIO(data)) as f:
        rate, channels, frames = int(f.samplerate), int(f.channels), int(f.frames)
        _check_stream_shape(fmt, rate, channels)
        if fmt == "flac" and frames > 0:
            _check_flac_end(f, frames)
        start, count = _plan_window(frames, rate, window_seconds)
        if start:
            f.seek(start)
        samples = _read_channels(f, count, fold=channels * rate > _MAX_CHANNEL_RATE)
    if samples.size == 0:
        raise AudioDecodeError("undecodable_audio", f"The {fmt} file contains no audio samples.")
    return _finish(samples, rate, target_sr, fmt, channels, frames / rate if frames > 0 else None, start / rate)


def _read_channels(f: sf.SoundFile, count: int | None, *, fold: bool) -> np.ndarray:
    """Read ``count`` frames (None: to the end) as channel-first float32, a block at a time (``fold``: averaged
    into one row per block, so a many-channel file never holds more than one block of all its channels)."""
    parts = []
    for block in f.blocks(blocksize=1 << 17, frames=-1 if count is None else count, dtype="float32",
                          always_2d=True):
        parts.append(_downmix(block)[None, :] if fold else block.T)  # each block is a fresh array
    if not parts:
        return np.zeros((1, 0), np.float32)
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


def _check_stream_shape(fmt: str, rate: int, channels: int) -> None:
    if channels <= 0 or not _MIN_RATE <= rate <= _MAX_RATE:
        raise AudioDecodeError("undecodable_audio", f"The {fmt} header declares {channels} channels at "
                                                    f"{rate} Hz: that is not playable audio.")


def _check_flac_end(f: sf.SoundFile, frames: int) -> None:
    """STREAMINFO declares the total sample count; the last samples must really be there."""
    try:
        f.seek(max(0, frames - 1024))
        got = len(f.read(1024, dtype="float32", always_2d=True))
    except Exception:  # noqa: BLE001 - libsndfile fails the seek when the target is past the data
        got = 0
    if got < min(frames, 1024) - 1:
        raise _truncated("flac")
    f.seek(0)


# --------------------------------------------------------------------------------------------------------------
# Decoding: PyAV (FFmpeg)
# --------------------------------------------------------------------------------------------------------------

def _decode_pyav(data: bytes, fmt: str, target_sr: int, window_seconds: float) -> DecodedAudio:
    import av  # imported lazily: only compressed formats need FFmpeg

    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise AudioDecodeError("undecodable_audio", f"The {fmt} file is damaged: its header cannot be read.",
                               detail=str(exc)[:300]) from None
    with container:
        if not container.streams.audio:
            raise AudioDecodeError("undecodable_audio", f"The {fmt} file contains no audio stream.")
        stream = container.streams.audio[0]
        rate, channels = int(stream.rate or 0), int(stream.channels or 0)
        _check_stream_shape(fmt, rate, max(channels, 1))  # some containers only know channels once decoding
        duration = _pyav_duration(container, stream)
        samples, first_time, rate, channels = _decode_window(container, stream, duration, window_seconds, rate,
                                                             channels)
    if samples.size == 0:
        raise AudioDecodeError("undecodable_audio", f"The {fmt} stream decoded to no audio.")
    return _finish(samples, rate, target_sr, fmt, channels, duration, first_time)


def _decode_window(container, stream, duration: float | None, window_seconds: float, rate: int, channels: int):
    """Decode the middle window when the duration is known and longer than the window, else from the start."""
    start_s = 0.0
    if duration is not None and duration > window_seconds:
        start_s = (duration - window_seconds) / 2
        if not _seek(container, stream, start_s):
            start_s = 0.0
    samples, first_time, rate, channels = _read_window(container, stream, start_s, window_seconds, rate, channels)
    if start_s > 0 and samples.shape[1] < (window_seconds - 0.5) * rate:
        # The declared duration overstated the audio (an MP3 length guessed from its first bitrate): the
        # middle window ran into the end. Take the last full window that exists instead.
        retry = max(0.0, first_time + samples.shape[1] / rate - window_seconds)
        if _seek(container, stream, retry):
            samples, first_time, rate, channels = _read_window(container, stream, retry, window_seconds, rate,
                                                                 channels)
    return samples, first_time, rate, channels


def _pyav_duration(container, stream) -> float | None:
    """Whole-file duration in seconds from the stream or the container, None when neither knows."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _seek(container, stream, seconds: float) -> bool:
    """Seek to (at or before) ``seconds``; on failure rewind to the start and return False."""
    import av

    try:
        container.seek(int(seconds / stream.time_base), stream=stream, backward=True, any_frame=False)
        return True
    except (av.FFmpegError, OverflowError, ValueError, ZeroDivisionError, TypeError):
        pass
    try:
        container.seek(0, stream=stream)
    except av.FFmpegError:
        pass  # reading continues from wherever the demuxer is
    return False


@dataclass(frozen=True)
class _Layout:
    """How the samples of the kept frames are laid out; frames that differ (broken concatenations) are skipped."""

    rate: int
    sample_format: str  # FFmpeg name: "fltp", "s16", ...
    planar: bool
    channels: int

    @property
    def dtype(self) -> type:
        return _SAMPLE_DTYPES[self.sample_format.rstrip("p")]

    def matches(self, frame) -> bool:
        return (frame.sample_rate == self.rate and frame.format.name == self.sample_format
                and frame.layout.nb_channels == self.channels)


_SAMPLE_DTYPES = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "s64": np.int64, "flt": np.float32,
                  "dbl": np.float64}
_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


class _ChannelWindow:
    """A preallocated channel-first buffer that decoded frames are copied into.

    Planar float32 frames (what FFmpeg's AAC and MP3 decoders give) are copied byte for byte into their rows as
    they arrive, while they are still in the CPU cache: one memoryview assignment per plane, 3.7 ms for 30 s of
    stereo against 5.9 ms for the batched path below. Other sample formats need a conversion: those frames are
    held briefly and converted in batches, measured about twice as fast as converting each frame as it is
    decoded (and than ``to_ndarray``), while memory stays bounded by the batch size. With ``fold`` the channels
    are summed into a single row instead (sources too wide to keep, see _MAX_CHANNEL_RATE).
    """

    # frames held before copying (~1.5 s of 44.1 kHz AAC): small enough that the held frames are still in the
    # CPU cache when they are copied; measured faster than 256 (~6 s) or 16
    _BATCH = 64

    def __init__(self, layout: _Layout, capacity: int, *, fold: bool) -> None:
        self.layout = layout
        self.buffer = np.empty((1 if fold else layout.channels, capacity), np.float32)  # only [:, :_copied] is read
        self.held = 0  # samples per channel accepted (copied or pending)
        self._copied = 0
        self._pending: list[tuple[object, int, int]] = []  # (frame, first sample, count)
        direct = not fold and layout.planar and layout.sample_format == "fltp"
        self._rows = [memoryview(row).cast("B") for row in self.buffer] if direct else None

    @property
    def full(self) -> bool:
        return self.held >= self.buffer.shape[1]

    def add(self, frame, skip: int = 0) -> None:
        """Accept the samples of ``frame`` from ``skip`` on, up to the buffer's capacity."""
        take = min(frame.samples - skip, self.buffer.shape[1] - self.held)
        if take > 0 and self._rows is not None:
            start, stop, at = 4 * skip, 4 * (skip + take), 4 * self.held  # float32: 4 bytes a sample
            for row, plane in zip(self._rows, frame.planes):
                row[at:at + stop - start] = memoryview(plane)[start:stop]
            self.held += take
            self._copied = self.held
        elif take > 0:
            self._pending.append((frame, skip, take))
            self.held += take
            if len(self._pending) >= self._BATCH:
                self._copy()

    def _copy(self) -> None:
        # One concatenate per channel over the whole batch instead of a copy per frame: with ~1,300 frames in a
        # 30 s clip, the per-frame numpy calls were most of the Python cost of decoding.
        if not self._pending:
            return
        layout = self.layout
        dtype = np.dtype(layout.dtype)
        per_channel: list[list[np.ndarray]] = [[] for _ in range(layout.channels)]
        for frame, skip, take in self._pending:
            planes = frame.planes
            if layout.planar:  # plane buffers may be padded: view exactly the samples
                for views, plane in zip(per_channel, planes):
                    views.append(np.frombuffer(plane, dtype=dtype, count=take, offset=skip * dtype.itemsize))
            else:
                n = frame.samples
                packed = np.frombuffer(planes[0], dtype=dtype, count=n * layout.channels)
                packed = packed.reshape(n, layout.channels)[skip:skip + take]
                for c, views in enumerate(per_channel):
                    views.append(packed[:, c])
        count = self.held - self._copied
        dst = self.buffer[:, self._copied:self._copied + count]
        if dst.shape[0] == layout.channels:
            for row, views in zip(dst, per_channel):
                np.concatenate(views, out=row, casting="unsafe")
        else:  # folded: the first channel cast into the row, the others added in their own dtype
            np.concatenate(per_channel[0], out=dst[0], casting="unsafe")
            for views in per_channel[1:]:
                np.add(dst[0], np.concatenate(views), out=dst[0], casting="unsafe")
        self._copied += count
        self._pending.clear()

    def samples(self) -> np.ndarray:
        """(rows, n) float32 in [-1, 1] (integer formats scaled, u8 re-centred; a folded row is the average)."""
        self._copy()
        out = self.buffer[:, :self._copied]
        summed = self.layout.channels if out.shape[0] == 1 else 1  # channels added into each row
        base = self.layout.sample_format.rstrip("p")
        if base == "u8":
            out -= np.float32(128.0 * summed)
        scale = 1.0 / (summed * _INT_SCALE.get(base, 1.0))
        if scale != 1.0:
            out *= np.float32(scale)
        return out


def _read_window(container, stream, start_s: float, window_seconds: float, rate: int, channels: int):
    """Decode frames from the current position until ``window_seconds`` of audio from ``start_s`` is held.

    Returns (channel-first samples at the native rate, time of the first kept sample, native rate, channels). Frames that
    fail to decode are skipped (up to a bound); the part before ``start_s`` (seeks land early) is trimmed.
    """
    import av

    window: _ChannelWindow | None = None
    errors = 0
    first_time: float | None = None
    packets = container.demux(stream)
    while window is None or not window.full:
        try:
            frames = next(packets).decode()
        except StopIteration:
            break
        except av.FFmpegError:
            errors += 1  # a damaged packet: skip it, as players do
            if errors > _MAX_DECODE_ERRORS:
                break
            continue
        for frame in frames:
            if window is None:
                layout = _Layout(frame.sample_rate or rate, frame.format.name, frame.format.is_planar,
                                 frame.layout.nb_channels or channels or 1)
                window = _ChannelWindow(layout, int(round(window_seconds * layout.rate)),
                                        fold=layout.channels * layout.rate > _MAX_CHANNEL_RATE)
            elif not window.layout.matches(frame):
                continue
            skip = 0
            if first_time is None:
                skip, first_time = _lead_in(frame, start_s, window.layout.rate)
                if skip >= frame.samples:
                    first_time = None
                    continue
            window.add(frame, skip)
            if window.full:
                break
    if window is None or window.held == 0:
        return np.zeros((1, 0), np.float32), 0.0, rate, channels
    return window.samples(), first_time or 0.0, window.layout.rate, window.layout.channels


def _lead_in(frame, start_s: float, rate: int) -> tuple[int, float]:
    """(samples of this frame before ``start_s``, time of the first sample kept)."""
    if frame.pts is None or frame.time_base is None:
        return 0, start_s
    t = float(frame.pts * frame.time_base)
    if t >= start_s:
        return 0, max(t, 0.0)
    skip = int(round((start_s - t) * rate))
    return skip, t + skip / rate


# --------------------------------------------------------------------------------------------------------------
# Shared tail: sanitize, package
# --------------------------------------------------------------------------------------------------------------

def _downmix(block: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) block into one float32 channel.

    Summing column views is several times faster than ``mean(axis=1)`` on interleaved data.
    """
    if block.ndim == 1:
        return block.astype(np.float32)
    mono = block[:, 0].astype(np.float32)  # a contiguous copy we may modify
    for c in range(1, block.shape[1]):
        mono += block[:, c]
    if block.shape[1] > 1:
        mono *= np.float32(1.0 / block.shape[1])
    return mono


def _finish(samples: np.ndarray, rate: int, target_sr: int, fmt: str, channels: int,
            duration: float | None, start: float) -> DecodedAudio:
    """Replace non-finite samples, clip to [-1, 1], package the result (channel-first, at the native rate)."""
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    # A sum is finite only if every sample is: one cheap pass for the usual case, the mask only when needed.
    with np.errstate(invalid="ignore", over="ignore"):
        total = samples.sum()
    if not np.isfinite(total):
        samples[~np.isfinite(samples)] = 0.0
    np.clip(samples, -1.0, 1.0, out=samples)
    n = samples.shape[1]
    if n == 0:
        raise AudioDecodeError("undecodable_audio", f"The {fmt} file contains no audio samples.")
    return DecodedAudio(
        samples=samples,
        sample_rate=int(rate),
        source_format=fmt,
        source_sample_rate=int(rate),
        channels=int(channels),
        source_duration=float(duration) if duration is not None else None,
        window_start=float(start),
        window_end=float(start + n / rate),
        analysis_rate=int(target_sr),
    )
