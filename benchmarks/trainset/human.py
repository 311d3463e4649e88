"""Music people wrote, with the tempo the file states: a labelled tempo set the generator never composed.

    mkdir -p /tmp/humandeb && cd /tmp/humandeb && apt-get download openttd-openmsx lmms-common hydrogen-data
    for f in *.deb; do mkdir -p /tmp/human/${f%%_*} && dpkg-deb -x $f /tmp/human/${f%%_*}; done
    apt-get install -y --no-install-recommends lmms hydrogen mma   # their engines render their projects
    P=/tmp/human/lmms-common/usr/share/lmms/projects
    nice .venv/bin/python -m benchmarks.trainset.human --out /tmp/essentia-human /tmp/human/openttd-openmsx \
        $P/demos $P/shorties /tmp/human/hydrogen-data/usr/share/hydrogen/data/demo_songs
    L=/usr/share/mma/lib
    nice .venv/bin/python -m benchmarks.trainset.human --out /tmp/essentia-mma2 --mma-library $L/stdlib \
        --mma-library $L/casio --mma-library $L/yamaha --mma-library $L/kara --mma-library $L/pflib
    nice .venv/bin/python benchmarks/accuracy.py --trainset /tmp/essentia-human --skip-dev --repeat 1

Four sources, all free software that Debian packages, none committed:
- MIDI files (OpenMSX, OpenTTD's music: blues, boogie, train songs), rendered like the training set
  (soundfont, mix, room, mastering and encoder drawn by generate.draw_renderings from the window's seed);
- LMMS projects (its demo songs: house, reggae, reggaeton, chiptune, rock) and Hydrogen songs (drum machine
  demos), rendered by their own engines and samples, cut into windows and encoded as the training set is;
- the grooves of MMA's accompaniment library (rhythms people wrote for rumba, foxtrot, bluegrass, ska, western
  swing...), each played over a drawn chord chart at a drawn tempo; `mma` writes the MIDI, rendered as the first.

Annotated only where it is unambiguous: the tempo the composer set, as the quarter-note rate of a meter in
quarters (2/4, 3/4, 4/4; other meters left out), and only over a stretch where the tempo does not change.
Whether the quarter is the beat a listener taps is the composer's notation, not a listening test, so a reading
at its half or double is an octave error here as in the issue's sets and is reported apart (Acc2). The key is
annotated only for the MMA grooves, whose chord chart is drawn here (the major key of its I, CHARTS): a MIDI key
signature is often missing or wrong, and a project states none. Each file is one song in the manifest (its
windows share a group in cross-validation); style names the source.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import mido
import numpy as np
import soundfile as sf
import soxr

from benchmarks.trainset.compose import DRUM_CHANNEL, Note, Song
from benchmarks.trainset.generate import (FORMAT_WEIGHTS, Variation, _commit, _worker_init, draw_renderings,
                                          render_clips, write_manifest)
from benchmarks.trainset.render import CLIP_SECONDS, SAMPLE_RATE, encode
from benchmarks.trainset.theory import PITCH_CLASSES

#: Seconds of music a MIDI window renders: the clip and the longest offset render.draw_rendering draws.
RENDERED_SECONDS = CLIP_SECONDS + 6.0
#: A window counts when at least this share of its beats has a note starting in it (no long rests or fades).
MIN_BEAT_COVERAGE = 0.8
#: Shortest clip cut from a rendered project (Hydrogen's demos last about 20 s); windows are CLIP_SECONDS long.
MIN_CLIP_SECONDS = 15.0
#: A project window quieter than this (RMS, dBFS) is an intro, a break or the fade: left out.
MIN_WINDOW_DBFS = -35.0


@dataclass(frozen=True)
class Stretch:
    """Beats [start, end) of a MIDI file at one tempo and one meter."""

    start: float
    end: float
    bpm: float
    meter: tuple[int, int]


def read_midi(path: Path) -> tuple[list[Note], dict[int, int], list[Stretch]]:
    """Notes (in quarter notes from the start), each channel's first program, and the stretches of constant tempo
    and meter."""
    midi = mido.MidiFile(str(path))
    tpb = midi.ticks_per_beat
    tick, sounding = 0, {}
    notes, programs = [], {}
    changes: list[tuple[float, str, object]] = []
    for msg in mido.merge_tracks(midi.tracks):
        tick += msg.time
        beat = tick / tpb
        if msg.type == "set_tempo":
            changes.append((beat, "bpm", round(mido.tempo2bpm(msg.tempo), 2)))
        elif msg.type == "time_signature":
            changes.append((beat, "meter", (msg.numerator, msg.denominator)))
        elif msg.type == "program_change":
            programs.setdefault(msg.channel, msg.program)
        elif msg.type == "note_on" and msg.velocity > 0:
            sounding.setdefault((msg.channel, msg.note), []).append((beat, msg.velocity))
        elif msg.type in ("note_on", "note_off") and sounding.get((msg.channel, msg.note)):
            start, vel = sounding[(msg.channel, msg.note)].pop(0)
            notes.append(Note(start, max(beat - start, 0.05), msg.note, vel, msg.channel))
    end = tick / tpb
    stretches, bpm, meter, since = [], 120.0, (4, 4), 0.0
    for beat, kind, value in changes + [(end, "end", None)]:
        if beat > since:
            if stretches and (stretches[-1].bpm, stretches[-1].meter) == (bpm, meter):
                since = stretches.pop().start   # a repeated tempo or meter event does not end a stretch
            stretches.append(Stretch(since, beat, bpm, meter))
            since = beat
        if kind == "bpm":
            bpm = float(value)
        elif kind == "meter":
            meter = value
    notes.sort(key=lambda n: n.start)
    return notes, programs, stretches


def beat_coverage(onsets: np.ndarray, start: float, beats: float) -> float:
    """Share of the whole beats of [start, start + beats) with a note starting in them."""
    hit = np.unique(np.floor(onsets[(onsets >= start) & (onsets < start + beats)] - start).astype(int))
    return len(hit) / max(int(beats), 1)


def midi_windows(path: Path, most: int, style: str = "openmsx") -> list[tuple[float, Song]]:
    """Up to `most` non-overlapping windows of RENDERED_SECONDS as Songs (notes shifted to start at 0), each on a
    stretch of one tempo in a meter of quarters with notes on nearly every beat; with the beat each starts at."""
    notes, programs, stretches = read_midi(path)
    onsets = np.array([n.start for n in notes])
    out = []
    for stretch in stretches:
        numerator, denominator = stretch.meter
        if denominator != 4 or numerator not in (2, 3, 4):
            continue
        beats = RENDERED_SECONDS * stretch.bpm / 60.0
        start = stretch.start
        while start + beats <= stretch.end and len(out) < most:
            if beat_coverage(onsets, start, beats) >= MIN_BEAT_COVERAGE:
                window = [Note(n.start - start, n.dur, n.pitch, n.vel, n.channel)
                          for n in notes if start <= n.start < start + beats]
                channels = {n.channel for n in window}
                song = Song(style=style, seed=0, bpm=stretch.bpm, alt_bpm=[], tonic=None, mode=None,
                            meter=numerator, notes=window,
                            programs={c: programs.get(c, 0) for c in sorted(channels) if c != DRUM_CHANNEL})
                out.append((start, song))
                start += beats
            else:
                start += numerator
    return out


def render_midi(task: tuple[str, int, int, str, int]) -> list[dict]:
    """The windows of one MIDI file rendered into `gen_dir` (one clip each); their manifest entries."""
    path, index, seed, gen_dir, most = task
    return _render_windows(Path(path), index, seed, gen_dir, most, style="openmsx",
                           song_id=f"openmsx-{Path(path).stem}", source=f"openttd-openmsx: {Path(path).name}")


def _render_windows(path: Path, index: int, seed: int, gen_dir: str, most: int, *, style: str, song_id: str,
                    source: str, name: str | None = None, tonic: int | None = None) -> list[dict]:
    """Render up to `most` windows of a MIDI file (midi_windows) as clips of `song_id`; `tonic` names the major key
    they are in, when the file's maker knows it (a window of drums alone gets none)."""
    entries = []
    for w, (start, song) in enumerate(midi_windows(path, most, style)):
        if tonic is not None and any(n.channel != DRUM_CHANNEL for n in song.notes):  # a metronome has no key
            song.tonic, song.mode = tonic, "major"
        item = {"seed": seed * 100_000 + index * 10 + w, "index": index + w, "variation": Variation()}
        song.seed = item["seed"]
        clips = render_clips(song, f"{name or song_id}-w{w}", item["seed"], draw_renderings(item, song, 1), gen_dir)
        entries += [{**e, "song": song_id, "source": f"{source} from beat {start:g}"} for e in clips]
    return entries


@dataclass(frozen=True)
class Groove:
    """One groove of MMA's library: the file that defines it, its name and its beats per bar."""

    library_file: str
    name: str
    meter: int


#: Words in a groove's or its file's description that say its tempo does not count quarter notes (a 6/8 or 2/4
#: piece written in 3 or 4 at a multiple of its tempo): such grooves are left out.
OTHER_BEAT_HINTS = ("double the tempo", "double up", "tempo three times", "dotted quarter", "6/8", "12/8", "2/4",
                    "5/4", "multiply")
#: Parts of an arrangement, not grooves a song is played in.
NOT_A_GROOVE = ("intro", "end", "fill", "break")
#: Quarter-note tempos a groove is rendered at (drawn per groove): where the quarter is the beat a listener taps.
GROOVE_TEMPO = {4: (76.0, 152.0), 3: (84.0, 168.0)}
#: Chord charts (scale degrees of the major scale, lower case for minor chords), one chord per bar.
#: Each has the tonic chord on its strong bars and its dominant seventh leading back to it, so the key is the major
#: key of its I (a loop starting on vi, which a listener may hear in the relative minor, is not one of them).
CHARTS = (("I", "vi", "IV", "V7"), ("I", "IV", "I", "V7"), ("ii7", "V7", "I", "I"), ("I", "V7", "vi", "IV"),
          ("I", "I", "IV", "IV", "I", "I", "V7", "V7"))


def mma_grooves(library: Path) -> list[Groove]:
    """The grooves of the MMA library files in `library` counted in quarters (Time 3 or 4, no hint in their
    description that the beat is another note), arrangement parts (intros, endings, fills) left out."""
    grooves = []
    for path in sorted(library.glob("*.mma")):
        text = path.read_text(errors="replace")
        doc = text.split("End", 1)[0].lower() if "Begin Doc" in text else ""
        if any(hint in doc for hint in OTHER_BEAT_HINTS):
            continue
        meter, lines = None, text.splitlines()
        for i, line in enumerate(lines):
            words = line.split()
            if words[:1] == ["Time"] and len(words) > 1:
                meter = int(words[1]) if words[1].isdigit() else None
            elif words[:1] == ["Timesig"] and words[2:3] != ["4"]:
                meter = None
            if words[:1] != ["DefGroove"] or len(words) < 2 or meter not in GROOVE_TEMPO:
                continue
            parts = [line]
            while parts[-1].rstrip().endswith("\\") and i + 1 < len(lines):  # continued on the next line
                parts[-1] = parts[-1].rstrip()[:-1]
                i += 1
                parts.append(lines[i])
            description = " ".join(" ".join(parts).split())
            name = words[1]
            if not any(part in name.lower() for part in NOT_A_GROOVE) and \
                    not any(hint in description.lower() for hint in OTHER_BEAT_HINTS):
                grooves.append(Groove(f"{library.name}/{path.stem}", name, meter))
    return grooves


def groove_chart(groove: Groove, bpm: float, rng: np.random.Generator) -> tuple[str, int]:
    """An MMA file playing `groove` at `bpm` over a drawn chord chart in a drawn major key, long enough for a
    RENDERED_SECONDS window after its first bar; and that key's tonic pitch class."""
    steps = {"i": 0, "ii": 2, "iii": 4, "iv": 5, "v": 7, "vi": 9}
    tonic, chart = int(rng.integers(12)), CHARTS[int(rng.integers(len(CHARTS)))]
    bars = int(np.ceil(RENDERED_SECONDS * bpm / 60.0 / groove.meter)) + 2
    lines = [f"Tempo {bpm:g}", f"Groove {groove.name}"]
    for bar in range(bars):
        degree = chart[bar % len(chart)]
        numeral = degree.rstrip("7")
        root = PITCH_CLASSES[(tonic + steps[numeral.lower()]) % 12]
        quality = ("m" if numeral.islower() else "") + ("7" if degree.endswith("7") else "")
        lines.append(f"{bar + 1} {root}{quality}")
    return "\n".join(lines) + "\n", tonic


def render_groove(task: tuple[str, str, int, int, str, str]) -> list[dict]:
    """One MMA groove played over a chord chart (mma writes the MIDI), rendered into `gen_dir` as one clip."""
    library, name, meter, index, seed, gen_dir = task
    groove = Groove(library, name, meter)
    rng = np.random.default_rng([seed, index])
    bpm = float(round(rng.uniform(*GROOVE_TEMPO[meter])))
    with tempfile.TemporaryDirectory(prefix="mma-") as tmp:
        source, midi = Path(tmp) / "song.mma", Path(tmp) / "song.mid"
        chart, tonic = groove_chart(groove, bpm, rng)
        source.write_text(chart)
        try:
            subprocess.run(["mma", str(source), "-f", str(midi)], check=True, cwd=tmp, timeout=120,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"mma failed: {name}: {exc!r}", file=sys.stderr)
            return []
        return _render_windows(midi, index, seed, gen_dir, 1, style="mma", song_id=f"mma-{library}", tonic=tonic,
                               source=f"mma library: {library}.mma, groove {name} at {bpm:g} BPM",
                               name=f"mma-{index:04d}-{name}")


def pick_grooves(grooves: list[Groove], per_file: int, seed: int) -> list[Groove]:
    """At most `per_file` grooves of each library file, drawn (a file's grooves vary one pattern)."""
    rng = np.random.default_rng(seed)
    by_file: dict[str, list[Groove]] = {}
    for groove in grooves:
        by_file.setdefault(groove.library_file, []).append(groove)
    return [members[i] for _, members in sorted(by_file.items())
            for i in sorted(rng.permutation(len(members))[:per_file])]


def project_tempo(path: Path) -> tuple[float, tuple[int, int]] | None:
    """(bpm, meter) an LMMS or Hydrogen project states; None when its tempo is automated or changes on the way."""
    raw = path.read_bytes()
    if path.suffix == ".mmpz":
        raw = zlib.decompress(raw[4:])   # LMMS: a 4-byte length, then zlib
    elif raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    root = ET.fromstring(raw)
    if path.suffix == ".h2song":
        if any(float(t.text or 0) != float(root.findtext("bpm")) for t in root.iter("BPM")):  # its timeline
            return None
        return float(root.findtext("bpm")), (4, 4)
    head = root.find("head")
    bpm = head.find("bpm") if head is not None else None
    if bpm is not None and any(o.get("id") == bpm.get("id") for o in root.iter("object")):
        return None   # the tempo follows an automation track
    return float(head.get("bpm") or bpm.get("value")), (int(head.get("timesig_numerator", 4)),
                                                          int(head.get("timesig_denominator", 4)))


def render_project(path: Path, wav: Path) -> None:
    """Render a whole project to `wav` with its own program (LMMS offscreen, Hydrogen's h2cli)."""
    if path.suffix == ".h2song":
        cmd = ["h2cli", "-s", str(path), "-o", str(wav)]
    else:
        cmd = ["lmms", "--allowroot", "render", str(path), "-f", "wav", "-o", str(wav)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900,
                   env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})


def render_project_task(task: tuple[str, int, int, str, int]) -> list[dict]:
    """Windows of one project's rendering, encoded into `gen_dir`; their manifest entries."""
    path, index, seed, gen_dir, most = task
    path = Path(path)
    stated = project_tempo(path)
    if stated is None or stated[0] <= 0 or stated[1][1] != 4 or stated[1][0] not in (2, 3, 4):
        return []
    source = "hydrogen" if path.suffix == ".h2song" else "lmms"
    song_id = f"{source}-{path.stem}"
    with tempfile.TemporaryDirectory(prefix="human-") as tmp:
        wav = Path(tmp) / "song.wav"
        try:
            render_project(path, wav)
            y, sr = sf.read(wav, dtype="float32", always_2d=True)
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            print(f"render failed: {path}: {exc!r}", file=sys.stderr)
            return []
    if sr != SAMPLE_RATE:
        y = soxr.resample(y, sr, SAMPLE_RATE)
    if y.shape[1] == 1:
        y = np.repeat(y, 2, axis=1)
    rng = np.random.default_rng([seed, index])
    frames, entries = int(CLIP_SECONDS * SAMPLE_RATE), []
    for start in range(0, len(y), frames):
        clip = y[start:start + frames]
        if len(clip) < MIN_CLIP_SECONDS * SAMPLE_RATE or len(entries) >= most:
            break
        if 20 * np.log10(np.sqrt(np.mean(clip ** 2)) + 1e-12) < MIN_WINDOW_DBFS:
            continue
        fmt = str(rng.choice(list(FORMAT_WEIGHTS), p=list(FORMAT_WEIGHTS.values())))
        peak = float(np.max(np.abs(clip)))
        name = f"{song_id}-w{len(entries)}.{fmt}"
        (Path(gen_dir) / name).write_bytes(encode(clip * (0.89 / peak if peak > 0.89 else 1.0), fmt))
        entries.append({
            "file": f"{Path(gen_dir).name}/{name}", "format": fmt, "primary": True, "bpm": stated[0], "alt_bpm": [],
            "key": None, "meter": f"{stated[1][0]}/4", "style": source, "has_drums": None, "song": song_id,
            "variant": f"own engine from {start / SAMPLE_RATE:.0f} s", "duration_s": round(len(clip) / SAMPLE_RATE, 2),
            "source": f"{source}: {path.name}"})
    return entries


def find_sources(roots: list[Path]) -> tuple[list[Path], list[Path]]:
    """(MIDI files, LMMS and Hydrogen projects) under `roots`, sorted."""
    files = sorted({p for root in roots for p in root.rglob("*") if p.is_file()})
    midis = [p for p in files if p.suffix.lower() in (".mid", ".midi")]
    projects = [p for p in files if p.suffix in (".mmp", ".mmpz", ".h2song")]
    return midis, projects


def _run(task: tuple) -> list[dict]:
    """One pool serves every kind of source: each task is (function, its arguments)."""
    function, arguments = task
    return function(arguments)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="*", type=Path, help="directories holding .mid, .mmp(z) and .h2song files")
    parser.add_argument("--mma-library", type=Path, action="append", default=[],
                        help="a directory of MMA groove files (/usr/share/mma/lib/stdlib): one clip per groove")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--grooves-per-file", type=int, default=2, help="MMA grooves per library file (default 2)")
    parser.add_argument("--windows", type=int, default=3, help="at most this many clips per file (default 3)")
    parser.add_argument("--seed", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)

    midis, projects = find_sources(args.roots)
    args.out.mkdir(parents=True, exist_ok=True)
    gen_dir = args.out / f"gen-human-{args.seed}-{int(time.time())}"
    gen_dir.mkdir()
    t0 = time.time()
    entries: list[dict] = []
    tasks = [(render_midi, (str(p), i * 10, args.seed, str(gen_dir), args.windows)) for i, p in enumerate(midis)]
    tasks += [(render_project_task, (str(p), i, args.seed, str(gen_dir), args.windows))
              for i, p in enumerate(projects)]
    grooves = pick_grooves([g for library in args.mma_library for g in mma_grooves(library)],
                           args.grooves_per_file, args.seed)
    tasks += [(render_groove, (g.library_file, g.name, g.meter, i, args.seed, str(gen_dir)))
              for i, g in enumerate(grooves)]
    with Pool(args.jobs, initializer=_worker_init) as pool:
        for done, clips in enumerate(pool.imap(_run, tasks), 1):
            entries += clips
            print(f"{done}/{len(tasks)} files, {len(entries)} clips, {time.time() - t0:.0f} s", file=sys.stderr)
    entries.sort(key=lambda e: e["file"])
    (gen_dir / "recipe.json").write_text(json.dumps({
        "midi_files": len(midis), "projects": len(projects), "grooves": len(grooves), "clips": len(entries),
        "seed": args.seed, "grooves_per_file": args.grooves_per_file,
        "windows": args.windows, "generator_commit": _commit(), "seconds": round(time.time() - t0)}, indent=1))
    write_manifest(args.out, entries)
    print(f"{len(entries)} clips of {len({e['song'] for e in entries})} files in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
