"""Energy, acousticness and danceability on rendered pairs whose order is known.

    python benchmarks/descriptor_pairs.py [--out /tmp/descriptor-pairs] [--quick] [--cues]

The descriptors are calibrated here, not on the dev corpus: one arrangement (composed with mido) is rendered with
FluidSynth twice, changing only what should move a descriptor, and the two renderings are mastered to the same
loudness with the same chain, so the order of each pair is known in advance:

- timbre pairs: the same riff on distorted or overdriven guitar (GM 31/30) vs nylon guitar (25), acoustic grand
  piano (1) or string ensemble (49), same drums (or none), same loudness: energy(distorted) > energy(clean),
  acousticness(clean) > acousticness(distorted);
- level pairs: the same rendering mastered 8 LU louder: energy(louder) >= energy(quieter);
- density pairs: the same chords in eighth notes vs half notes: energy(denser) >= energy(sparser);
- groove pairs: the same drum and bass groove played tight vs with random timing (sd 35 ms):
  danceability(tight) > danceability(loose).

Across tempos (70-180), keys, soundfonts (FluidR3, TimGM6mb, MuseScore General) and loudness targets
(-20..-8 LUFS). It prints each pair, the fraction ordered right per kind, and the separation of two groups like
the issue's check: metal-like renderings (distorted guitars, drums, saturated and limited to -16..-8 LUFS)
against soft ones (solo piano, nylon guitar or strings, slow, no drums, -22..-14 LUFS): medians and AUC of
energy and acousticness. Generated audio goes under --out (default in /tmp), never into the repository.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from backend.analysis import descriptors, loudness, perform_audio_analysis  # noqa: E402

SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2",
              "/usr/share/sounds/sf3/MuseScore_General.sf3")
RATE = 44100
# GM programs, 0-based as MIDI sends them (GM numbers them from 1)
DISTORTED, OVERDRIVEN, NYLON, PIANO, STRINGS = 30, 29, 24, 0, 48
PICKED_BASS, ACOUSTIC_BASS = 34, 32
CLEAN = {"nylon": NYLON, "piano": PIANO, "strings": STRINGS}
HEAVY = {"distorted": DISTORTED, "overdriven": OVERDRIVEN}
KICK, SNARE, HAT, CRASH = 36, 38, 42, 49


# --------------------------------------------------------------------------------------------------------------
# composing
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Arrangement:
    """One composition: chords per bar in a key, at a tempo, with a rhythm for the chord instrument."""

    bpm: float
    tonic: int            # MIDI note of the tonic, around E2..B2 so guitars sit in their range
    minor: bool
    bars: int = 12
    chord_rhythm: str = "eighths"  # "eighths" (riff), "quarters", "halves" or "whole" (sustained)
    drums: bool = True
    seed: int = 0


_MINOR_DEGREES = [(0, "m"), (8, "M"), (3, "M"), (10, "M")]   # i VI III VII
_MAJOR_DEGREES = [(0, "M"), (7, "M"), (9, "m"), (5, "M")]    # I V vi IV


def _chord_notes(root: int, quality: str) -> list[int]:
    third = 3 if quality == "m" else 4
    return [root, root + 7, root + 12, root + 12 + third]  # root, fifth, octave, tenth: one voicing for all


def _events(arr: Arrangement, program: int, bass_program: int, jitter_s: float, rng: np.random.Generator):
    """(time in seconds, channel, note, velocity, duration) of every note, before timing jitter is applied."""
    beat = 60.0 / arr.bpm
    degrees = _MINOR_DEGREES if arr.minor else _MAJOR_DEGREES
    step = {"eighths": 0.5, "quarters": 1.0, "halves": 2.0, "whole": 4.0}[arr.chord_rhythm]
    notes = []
    for bar in range(arr.bars):
        offset, quality = degrees[bar % len(degrees)]
        root = arr.tonic + offset
        t0 = bar * 4 * beat
        if program >= 0:
            for k in range(int(4 / step)):
                accent = 100 if k % 2 == 0 else 88
                for n in _chord_notes(root, quality):
                    notes.append((t0 + k * step * beat, 0, n, accent, step * beat * 0.95))
        for k in range(8 if arr.drums else 2):  # bass: eighths with drums, half notes without
            length = (0.5 if arr.drums else 2.0) * beat
            notes.append((t0 + k * length, 1, root - 12, 96, length * 0.9))
        if arr.drums:
            for k in range(8):
                t = t0 + k * 0.5 * beat
                notes.append((t, 9, HAT, 70 + 20 * (k % 2 == 0), 0.1))
                if k in (0, 4) or (k == 5 and bar % 2):
                    notes.append((t, 9, KICK, 110, 0.2))
                if k in (2, 6):
                    notes.append((t, 9, SNARE, 105, 0.2))
            if bar % 4 == 0:
                notes.append((t0, 9, CRASH, 100, 1.0))
    if jitter_s > 0:  # a loose player: every onset off by a random amount, durations kept
        notes = [(max(0.0, t + rng.normal(0.0, jitter_s)), c, n, v, d) for t, c, n, v, d in notes]
    return notes, {0: program, 1: bass_program}


def write_midi(path: Path, arr: Arrangement, program: int, bass_program: int, *, jitter_s: float = 0.0) -> None:
    import mido

    rng = np.random.default_rng(arr.seed + 7919)
    notes, programs = _events(arr, program, bass_program, jitter_s, rng)
    ticks_per_beat = 960
    tempo = mido.bpm2tempo(120)  # the MIDI clock runs at 120: times below are in seconds, converted at 120
    messages = []
    for t, ch, note, vel, dur in notes:
        messages.append((t, 1, mido.Message("note_on", channel=ch, note=note, velocity=vel)))
        messages.append((t + dur, 0, mido.Message("note_off", channel=ch, note=note, velocity=0)))
    messages.sort(key=lambda m: (m[0], m[1]))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=tempo))
    for ch, prog in programs.items():
        if prog >= 0:
            track.append(mido.Message("program_change", channel=ch, program=prog))
    now = 0
    for t, _, msg in messages:
        tick = int(round(t * ticks_per_beat * 2))  # 2 beats per second at 120 BPM
        track.append(msg.copy(time=tick - now))
        now = tick
    midi = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    midi.tracks.append(track)
    midi.save(str(path))


def render(midi: Path, wav: Path, soundfont: str) -> np.ndarray:
    """FluidSynth to a stereo WAV at RATE; returns channel-first float32 (the reverb tail trimmed at 1 s)."""
    subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.5", "-r", str(RATE), "-F", str(wav), soundfont, str(midi)],
                   check=True, capture_output=True)
    y, _ = sf.read(str(wav), dtype="float32", always_2d=True)
    return np.ascontiguousarray(y.T)


# --------------------------------------------------------------------------------------------------------------
# mastering (numpy only)
# --------------------------------------------------------------------------------------------------------------

def _block_gain(level: np.ndarray, threshold: float, ratio: float) -> np.ndarray:
    over = np.maximum(0.0, 20 * np.log10(np.maximum(level, 1e-9)) - threshold)
    return 10 ** (-over * (1 - 1 / ratio) / 20)


def _apply_blockwise(y: np.ndarray, gain: np.ndarray, block: int) -> np.ndarray:
    centres = (np.arange(gain.size) + 0.5) * block
    g = np.interp(np.arange(y.shape[1]), centres, gain)
    return (y * g).astype(np.float32)


def compress(y: np.ndarray, *, threshold_db: float, ratio: float, block_s: float = 0.01) -> np.ndarray:
    """A feed-forward RMS compressor on 10 ms blocks, linked stereo, smoothed over ~50 ms."""
    block = max(1, int(block_s * RATE))
    n = y.shape[1] // block * block
    rms = np.sqrt(np.mean(y[:, :n].reshape(y.shape[0], -1, block) ** 2, axis=(0, 2)))
    rms = np.convolve(rms, np.ones(5) / 5, mode="same")
    return _apply_blockwise(y, _block_gain(rms, threshold_db, ratio), block)


def limit(y: np.ndarray, ceiling: float = 0.98) -> np.ndarray:
    """A brick-wall peak limiter on 2 ms blocks (the gain falls before each peak block), then a hard clip."""
    block = int(0.002 * RATE)
    n = -(-y.shape[1] // block) * block
    padded = np.pad(np.abs(y).max(axis=0), (0, n - y.shape[1]))
    peak = padded.reshape(-1, block).max(axis=1)
    peak = np.maximum.reduce([np.roll(peak, s) for s in (-2, -1, 0, 1, 2)])  # look ahead and hold
    gain = np.minimum(1.0, ceiling / np.maximum(peak, 1e-9))
    return np.clip(_apply_blockwise(y, gain, block), -ceiling, ceiling)


def master(y: np.ndarray, target_lufs: float, *, drive: float = 0.0, squash: bool = False) -> np.ndarray:
    """Saturation (tanh, `drive` > 0), optional heavy compression, then gain and limiting to `target_lufs`."""
    y = y - y.mean(axis=1, keepdims=True)
    if drive > 0:
        y = np.tanh(drive * y / max(1e-9, float(np.abs(y).max()))).astype(np.float32)
    if squash:
        y = compress(y, threshold_db=-24.0, ratio=4.0)
    for _ in range(4):  # the limiter takes loudness away: gain up again, a few rounds
        now = loudness.integrated_loudness(y, RATE)
        if now is None:
            return y
        y = limit(y * np.float32(10 ** ((target_lufs - now) / 20)))
    return y


# --------------------------------------------------------------------------------------------------------------
# the pairs
# --------------------------------------------------------------------------------------------------------------

@dataclass
class Clip:
    name: str
    audio: np.ndarray
    result: object = None


def analyse(clip: Clip, show_cues: bool) -> Clip:
    clip.result = perform_audio_analysis(clip.audio, RATE)
    if show_cues:
        print(f"    {clip.name}: {_format_cues(cues_of(clip.audio))}")
    return clip


def cues_of(audio: np.ndarray) -> descriptors.Cues:
    """The descriptor cues of channel-first audio at RATE, computed the way perform_audio_analysis does."""
    from backend.analysis import ANALYSIS_SAMPLE_RATE, frontend, tempo

    mono = audio.mean(axis=0)
    x = frontend.resample(mono - mono.mean(), RATE, ANALYSIS_SAMPLE_RATE)
    fe = frontend.compute_front_end(x, ANALYSIS_SAMPLE_RATE)
    t = tempo.estimate_tempo(fe.onset_bands, fe.onset, fe.frame_rate, harmonic=fe.harmonic_change)
    return descriptors.measure_cues(fe, x, loudness.integrated_loudness(audio, RATE), t.pulse_clarity, t.bpm)


def _format_cues(c: descriptors.Cues) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in vars(c).items())


class Renderer:
    def __init__(self, out: Path) -> None:
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def __call__(self, arr: Arrangement, program: int, bass: int, soundfont: str, *, jitter_s: float = 0.0):
        self.count += 1
        stem = self.out / f"r{self.count:04d}"
        write_midi(stem.with_suffix(".mid"), arr, program, bass, jitter_s=jitter_s)
        y = render(stem.with_suffix(".mid"), stem.with_suffix(".wav"), soundfont)
        stem.with_suffix(".wav").unlink()
        stem.with_suffix(".mid").unlink()
        return y


def timbre_pairs(rend: Renderer, rng: np.random.Generator, n: int):
    for i in range(n):
        arr = Arrangement(bpm=float(rng.choice([80, 100, 120, 140, 160, 180])), tonic=int(rng.integers(40, 48)),
                          minor=bool(rng.integers(2)), chord_rhythm=str(rng.choice(["eighths", "quarters"])),
                          drums=bool(rng.integers(2)), seed=i)
        sf2 = SOUNDFONTS[i % len(SOUNDFONTS)]
        heavy_name = list(HEAVY)[i % 2]
        clean_name = list(CLEAN)[i % 3]
        target = float(rng.uniform(-20, -8))
        heavy = master(rend(arr, HEAVY[heavy_name], PICKED_BASS, sf2), target)
        clean = master(rend(arr, CLEAN[clean_name], PICKED_BASS, sf2), target)
        tag = f"{arr.bpm:.0f}bpm {'drums' if arr.drums else 'no drums'} {arr.chord_rhythm} {target:.0f} LUFS"
        yield Clip(f"{heavy_name} {tag}", heavy), Clip(f"{clean_name} {tag}", clean)


def level_pairs(rend: Renderer, rng: np.random.Generator, n: int):
    for i in range(n):
        arr = Arrangement(bpm=float(rng.choice([70, 100, 130])), tonic=int(rng.integers(40, 48)), minor=True,
                          drums=bool(i % 2), seed=100 + i)
        program = [DISTORTED, NYLON, PIANO, STRINGS][i % 4]
        y = rend(arr, program, PICKED_BASS, SOUNDFONTS[i % len(SOUNDFONTS)])
        quiet = float(rng.uniform(-24, -16))
        yield Clip(f"prog {program} {quiet + 8:.0f} LUFS", master(y, quiet + 8)), \
            Clip(f"prog {program} {quiet:.0f} LUFS", master(y, quiet))


def density_pairs(rend: Renderer, rng: np.random.Generator, n: int):
    for i in range(n):
        base = dict(bpm=float(rng.choice([80, 110, 140])), tonic=int(rng.integers(40, 48)), minor=False,
                    drums=False, seed=200 + i)
        program = [PIANO, NYLON, DISTORTED][i % 3]
        sf2 = SOUNDFONTS[i % len(SOUNDFONTS)]
        target = float(rng.uniform(-20, -12))
        dense = master(rend(Arrangement(chord_rhythm="eighths", **base), program, ACOUSTIC_BASS, sf2), target)
        sparse = master(rend(Arrangement(chord_rhythm="halves", **base), program, ACOUSTIC_BASS, sf2), target)
        yield Clip(f"prog {program} eighths", dense), Clip(f"prog {program} halves", sparse)


def groove_pairs(rend: Renderer, rng: np.random.Generator, n: int):
    for i in range(n):
        arr = Arrangement(bpm=float(rng.choice([100, 115, 120, 125])), tonic=int(rng.integers(40, 48)),
                          minor=True, drums=True, seed=300 + i)
        sf2 = SOUNDFONTS[i % len(SOUNDFONTS)]
        target = float(rng.uniform(-16, -9))
        tight = master(rend(arr, -1, PICKED_BASS, sf2), target)
        loose = master(rend(arr, -1, PICKED_BASS, sf2, jitter_s=0.035), target)
        yield Clip(f"tight {arr.bpm:.0f}", tight), Clip(f"loose {arr.bpm:.0f}", loose)


def group_clips(rend: Renderer, rng: np.random.Generator, n: int, show_cues: bool = False):
    """(metal-like, soft) renderings for the separation check."""
    metal, soft = [], []
    for i in range(n):
        sf2 = SOUNDFONTS[i % len(SOUNDFONTS)]
        arr = Arrangement(bpm=float(rng.uniform(100, 190)), tonic=int(rng.integers(40, 46)), minor=True,
                          chord_rhythm="eighths", drums=True, seed=400 + i)
        y = rend(arr, list(HEAVY.values())[i % 2], PICKED_BASS, sf2)
        metal.append(analyse(Clip(f"metal {i}", master(y, float(rng.uniform(-16, -8)), drive=2.0, squash=True)),
                             show_cues))
        arr = Arrangement(bpm=float(rng.uniform(55, 85)), tonic=int(rng.integers(45, 57)), minor=bool(i % 2),
                          chord_rhythm=str(rng.choice(["halves", "whole", "quarters"])), drums=False, seed=500 + i)
        program = list(CLEAN.values())[i % 3]
        y = rend(arr, program, ACOUSTIC_BASS if program != PIANO else -1, sf2)
        soft.append(analyse(Clip(f"soft {i}", master(y, float(rng.uniform(-22, -14)))), show_cues))
    return metal, soft


def auc(high: list[float], low: list[float]) -> float:
    """Probability that a random member of `high` scores above a random member of `low` (ties count half)."""
    wins = sum((h > l_) + 0.5 * (h == l_) for h in high for l_ in low)
    return wins / (len(high) * len(low))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/descriptor-pairs"), help="scratch directory")
    parser.add_argument("--quick", action="store_true", help="a few pairs of each kind (a smoke run)")
    parser.add_argument("--cues", action="store_true", help="also print the raw cues of every clip")
    parser.add_argument("--seed", type=int, default=20261130)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rend = Renderer(args.out)
    n = 3 if args.quick else 12
    checks = [
        ("timbre: energy distorted > clean", timbre_pairs, "energy", 1),
        ("timbre: acousticness clean > distorted", None, "acousticness", -1),
        ("level: energy louder >= quieter", level_pairs, "energy", 1),
        ("density: energy denser >= sparser", density_pairs, "energy", 1),
        ("groove: danceability tight > loose", groove_pairs, "danceability", 1),
    ]
    rendered: dict[str, list] = {}
    summary = []
    for title, make, field, sign in checks:
        if make is not None:
            rendered[title] = pairs = [(analyse(a, args.cues), analyse(b, args.cues)) for a, b in make(rend, rng, n)]
        else:
            pairs = rendered[checks[0][0]]
        print(f"\n{title}")
        right = 0
        for a, b in pairs:
            va, vb = getattr(a.result, field), getattr(b.result, field)
            ok = (va - vb) * sign > 0 or (">=" in title and va == vb)
            right += ok
            print(f"  {'ok ' if ok else 'BAD'} {a.name:42s} {va:5.3f}   {b.name:42s} {vb:5.3f}")
        summary.append((title, right, len(pairs)))
    metal, soft = group_clips(rend, rng, n, args.cues)
    print("\nSummary (pairs ordered right)")
    for title, right, total in summary:
        print(f"  {title:42s} {right:3d}/{total:<3d} {100 * right / total:5.1f}%")
    print(f"\nMetal-like ({len(metal)}) vs soft ({len(soft)}) renderings")
    for field in ("energy", "acousticness", "danceability"):
        hi = [getattr(c.result, field) for c in metal]
        lo = [getattr(c.result, field) for c in soft]
        print(f"  {field:13s} median metal {statistics.median(hi):.3f}  soft {statistics.median(lo):.3f}  "
              f"AUC {auc(hi, lo) if field != 'acousticness' else auc(lo, hi):.3f}")
    print(f"  loudness      median metal {statistics.median(c.result.loudness_lufs for c in metal):.1f}  "
          f"soft {statistics.median(c.result.loudness_lufs for c in soft):.1f} LUFS")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
