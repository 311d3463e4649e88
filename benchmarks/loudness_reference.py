"""Our integrated loudness against a reference ITU-R BS.1770-4 meter (pyloudnorm 0.2.0) on real files.

    python benchmarks/loudness_reference.py [--corpus DIR | FILES...]   (default: the audio files in ../shared/corpus)

For each file: ours is `perform_audio_analysis` on what `decode_audio` delivers (the server's path); the
reference is pyloudnorm over every channel of the same window, decoded independently (libsndfile for
WAV/FLAC/OGG, PyAV for the rest). Also printed: a mono copy of the left channel (re-encoded as AAC in memory)
measured both ways, and what the old path (a mono downmix at the analysis rate) read. pyloudnorm's RLB
high-pass has unity passband gain where the standard's printed 48 kHz filter has +0.043 dB, so an offset of
about +0.04 LU is expected.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from backend.analysis import ANALYSIS_SAMPLE_RATE, perform_audio_analysis  # noqa: E402
from backend.audio.decode import decode_audio  # noqa: E402
from tests.synth import encode_with_pyav  # noqa: E402


def reference_channels(data: bytes, name: str) -> tuple[np.ndarray, int]:
    """(channel-first float64 samples, rate) of the whole file, decoded without our decoder."""
    if name.endswith((".wav", ".flac", ".ogg")):
        import soundfile as sf

        x, rate = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
        return x.T, int(rate)
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray() for f in container.decode(stream)]
        rate, planar = int(stream.rate), stream.format.is_planar
    if not planar:  # packed: (1, n * channels) per frame
        frames = [f.reshape(-1, stream.channels).T for f in frames]
    return np.concatenate(frames, axis=1).astype(np.float64), rate


def pyloudnorm_lufs(x: np.ndarray, rate: int) -> float:
    import pyloudnorm

    return pyloudnorm.Meter(rate).integrated_loudness(x.T if x.shape[0] > 1 else x[0])


def compare(data: bytes, name: str) -> tuple[float, float, float, int, int]:
    """(ours, reference, old mono-downmix reading, channels, rate) for one file."""
    decoded = decode_audio(data, target_sr=ANALYSIS_SAMPLE_RATE)
    ours = perform_audio_analysis(decoded.samples, decoded.sample_rate).loudness_lufs
    old = perform_audio_analysis(decoded.mono(), ANALYSIS_SAMPLE_RATE).loudness_lufs
    x, rate = reference_channels(data, name)
    first = int(round(decoded.window_start * rate))
    ref = pyloudnorm_lufs(x[:, first:first + decoded.samples.shape[1]], rate)
    return ours, ref, old, decoded.channels, rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--corpus", type=Path, default=REPO_ROOT.parent / "shared" / "corpus")
    args = parser.parse_args(argv)
    files = args.files or sorted(p for p in args.corpus.iterdir()
                                 if p.suffix in (".m4a", ".mp3", ".ogg", ".flac", ".wav"))
    worst = 0.0
    print(f"{'file':24s} {'ch':>3s} {'rate':>6s} {'ours':>7s} {'pyln':>7s} {'diff':>6s}   old (mono @ 22.05 kHz)")
    for path in files:
        data = path.read_bytes()
        rows = [(path.name, *compare(data, path.name))]
        x, rate = reference_channels(data, path.name)
        rows.append((f"{path.stem} left, mono AAC", *compare(encode_with_pyav(x[0], rate, bit_rate=192_000), "x.m4a")))
        for name, ours, ref, old, channels, rate in rows:
            worst = max(worst, abs(ours - ref))
            print(f"{name:24s} {channels:3d} {rate:6d} {ours:7.2f} {ref:7.2f} {ours - ref:+6.2f}   {old:7.2f}")
    print(f"largest |ours - pyloudnorm|: {worst:.3f} LU over {2 * len(files)} measurements")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
