"""Music our composer never wrote: Bach's four-part chorales from music21's corpus, rendered like the training set.

    pip install music21==10.5.1          # a tool of this benchmark only, not a dependency of the server
    nice .venv/bin/python -m benchmarks.trainset.scores --out /tmp/essentia-chorales [--pieces N] [--seed S]
        [--renderings R] [--jobs J]
    nice .venv/bin/python benchmarks/accuracy.py --trainset /tmp/essentia-chorales --skip-dev --repeat 1

The composer in compose.py writes voice-led harmony by rule; a model fitted on it can learn the rules' habits.
These 300-odd harmonisations were written by a person, with his modulations, suspensions and cadences, so they
test whether the key and the drumless tempo carry to harmony the generator did not produce. Each chorale becomes a
`compose.Song` (every voice on a choir, organ, string, brass or wind ensemble drawn from the seed; the chorale
sung again, as its next verse, until the clip is full) and is rendered by the training set's own renderer
(soundfont, mix, room, mastering, encoder drawn as in generate.py).

Annotated only where it is unambiguous:
- key: the tonic is the last bass note (every chorale ends on its tonic chord, a minor one often with a major
  third), the mode is what the key signature says of that tonic (its major tonic, or its relative minor's);
  a chorale whose last bass note is neither (a Dorian signature, a Phrygian ending on the dominant) is left out;
- tempo: the quarter note, the beat of a chorale in 3/4 or 4/4, at a tempo drawn from 60-100 BPM; chorales in
  other meters (3/2) are left out.
The manifest has the training set's fields (benchmarks/crossval.py), style "bach_chorale", one song per chorale.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from benchmarks.trainset.compose import Note, Song
from benchmarks.trainset.generate import Variation, _commit, _worker_init, draw_renderings, render_clips, write_manifest
from benchmarks.trainset.render import CLIP_SECONDS

STYLE = "bach_chorale"
TEMPO_RANGE = (60.0, 100.0)
#: Ensembles a chorale is played on: GM programs of its voices, top to bottom (the last one for every lower voice).
ENSEMBLES = {
    "choir": (52,), "organ": (19,), "reed_organ": (20,), "strings": (48, 48, 48, 42),
    "brass": (56, 60, 57, 58), "winds": (68, 71, 69, 70), "piano": (0,),
}
#: Seconds of music rendered: the clip and the longest offset render.draw_rendering draws.
RENDERED_SECONDS = CLIP_SECONDS + 6.0


def chorale_paths() -> list[Path]:
    """The Bach scores of music21's corpus in MusicXML (the chorales and a few other harmonisations)."""
    from music21 import corpus

    return sorted(p for p in corpus.getComposer("bach") if p.suffix in (".mxl", ".xml"))


@dataclass(frozen=True)
class Score:
    """What a chorale's score says that the set needs (read_score)."""

    sharps: int                 # key signature: sharps (> 0) or flats (< 0)
    meter: tuple[int, int]      # time signature (numerator, denominator)
    last_bass: int              # MIDI pitch of the lowest note of the last bass note
    notes: list[tuple[float, float, int, int]]  # (onset in quarters, duration, MIDI pitch, voice), ties joined
    length: float               # quarters
    voices: int


def read_score(path: Path) -> Score | None:
    """The chorale's key signature, time signature, last bass note and notes (music21 reads the MusicXML)."""
    from music21 import converter

    score = converter.parse(str(path))
    signatures = score.recurse().getElementsByClass("TimeSignature")
    keys = score.recurse().getElementsByClass("KeySignature")
    bass = score.parts[-1].flatten().notes if score.parts else []
    if not signatures or not keys or not bass:
        return None
    score = score.stripTies()
    notes = [(float(n.offset), float(n.quarterLength), int(p.midi), voice)
             for voice, part in enumerate(score.parts) for n in part.flatten().notes for p in n.pitches]
    return Score(sharps=int(keys[0].sharps), meter=(signatures[0].numerator, signatures[0].denominator),
                 last_bass=min(p.midi for p in bass[-1].pitches), notes=notes, length=float(score.highestTime),
                 voices=len(score.parts))


def annotation(score: Score) -> tuple[int, str] | None:
    """(tonic pitch class, mode), or None when the key or the beat is ambiguous (see the module docstring)."""
    if score.meter not in ((3, 4), (4, 4)) or not score.notes or score.length <= 0:
        return None
    last, major = score.last_bass % 12, (7 * score.sharps) % 12
    if last == major:
        return major, "major"
    if last == (major + 9) % 12:
        return last, "minor"
    return None


def chorale_song(score: Score, index: int, seed: int) -> Song | None:
    """The chorale as a Song at a drawn tempo on a drawn ensemble, sung again until RENDERED_SECONDS are filled;
    None when it is not annotated unambiguously."""
    found = annotation(score)
    if found is None:
        return None
    rng = np.random.default_rng([seed, index])
    bpm = round(float(rng.uniform(*TEMPO_RANGE)), 1)
    programs = ENSEMBLES[str(rng.choice(sorted(ENSEMBLES)))]
    channel_of = {v: v if v < 9 else v + 1 for v in range(score.voices)}  # channel 9 is the drums
    beats = RENDERED_SECONDS * bpm / 60.0
    song = Song(style=STYLE, seed=seed, bpm=bpm, alt_bpm=[], tonic=found[0], mode=found[1], meter=score.meter[0],
                programs={channel_of[v]: programs[min(v, len(programs) - 1)] for v in range(score.voices)})
    verse = 0
    while verse * score.length < beats:
        for start, dur, pitch, voice in score.notes:
            at = verse * score.length + start
            if at < beats:
                song.notes.append(Note(at, dur, pitch, int(np.clip(rng.normal(76, 6), 50, 100)), channel_of[voice]))
        verse += 1
    return song


def render_chorale(task: tuple[str, int, int, int, str]) -> list[dict]:
    path, index, seed, renderings, gen_dir = task
    score = read_score(Path(path))
    song = chorale_song(score, index, seed) if score else None
    if song is None:
        return []
    item = {"seed": seed * 100_000 + index, "index": index, "variation": Variation()}
    entries = render_clips(song, f"{STYLE}-{Path(path).stem}", item["seed"],
                           draw_renderings(item, song, renderings), gen_dir)
    # one song per harmonisation: "bwv112.5" and its variant scoring "bwv112.5-sc" are one group in CV
    group = f"{STYLE}-{Path(path).stem.split('-')[0]}"
    return [{**e, "song": group, "source": f"music21 corpus: bach/{Path(path).name}"} for e in entries]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pieces", type=int, help="at most this many scores (default: all)")
    parser.add_argument("--seed", type=int, default=40)
    parser.add_argument("--renderings", type=int, default=1, help="clips per chorale (default 1)")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)

    paths = chorale_paths()[: args.pieces]
    args.out.mkdir(parents=True, exist_ok=True)
    gen_dir = args.out / f"gen-chorales-{args.seed}-{int(time.time())}"
    gen_dir.mkdir()
    t0 = time.time()
    entries: list[dict] = []
    tasks = [(str(p), i, args.seed, args.renderings, str(gen_dir)) for i, p in enumerate(paths)]
    with Pool(args.jobs, initializer=_worker_init) as pool:
        for done, clips in enumerate(pool.imap(render_chorale, tasks), 1):
            entries += clips
            if done % 20 == 0 or done == len(tasks):
                print(f"{done}/{len(tasks)} scores, {len(entries)} clips, {time.time() - t0:.0f} s", file=sys.stderr)
    entries.sort(key=lambda e: e["file"])
    (gen_dir / "recipe.json").write_text(json.dumps({
        "scores": len(paths), "clips": len(entries), "seed": args.seed, "renderings": args.renderings,
        "generator_commit": _commit(), "seconds": round(time.time() - t0)}, indent=1))
    write_manifest(args.out, entries)
    print(f"{len(entries)} clips of {len({e['song'] for e in entries})} chorales in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
