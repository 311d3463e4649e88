"""Shared pieces of the performance benchmark: timing helpers, the synthesized preview clips."""
from __future__ import annotations

import socket
import statistics
import struct
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent

# Distinct songs for the load test: (bpm, tonic, mode). Every request also gets a unique tag (see tagged()).
SONGS = [(92, "D", "minor"), (128, "F#", "major"), (104, "A", "minor"), (140, "C", "major"),
         (75, "G", "minor"), (118, "E", "major")]
CLIP_SECONDS = 30.0
CLIP_RATE = 44100      # an iTunes-style preview: 30 s, 44.1 kHz stereo AAC in .m4a
NAIVE_SR = 22050


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def per_call(fn: Callable[[int], Any], calls: int, repeats: int, *,
             clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Run fn(i) `calls` times per repeat; per-call seconds of each repeat and their median (wall-clock, or e.g.
    this thread's CPU time with clock=time.thread_time)."""
    samples = []
    for _ in range(repeats):
        started = clock()
        for i in range(calls):
            fn(i)
        samples.append((clock() - started) / calls)
    return {"median_s": statistics.median(samples), "samples_s": samples, "calls": calls, "repeats": repeats}


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def ratio(naive: float, ours: float) -> float:
    return naive / ours if ours > 0 else float("inf")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tagged(clip: bytes, tag: str) -> bytes:
    """The clip with an MP4 'free' box appended: different bytes (so a different SHA-256, a genuine cache miss that
    is fully decoded and analyzed) for the same audio. Decoders skip 'free' boxes by definition (ISO/IEC 14496-12)."""
    payload = tag.encode()
    return clip + struct.pack(">I4s", 8 + len(payload), b"free") + payload


def make_clip(bpm: float, tonic: str, mode: str, seconds: float = CLIP_SECONDS, sr: int = CLIP_RATE,
              channels: int = 2) -> bytes:
    """A synthesized song (drums + chords) encoded as AAC in .m4a with PyAV, like a phone's preview clip."""
    from tests import synth
    y = synth.song(bpm, tonic, mode, seconds=seconds, sr=sr)
    return synth.encode_with_pyav(y, sr, "mp4", "aac", channels)


def _make_clip_args(args: tuple) -> bytes:
    return make_clip(*args)
