"""Write the training set: composed songs rendered to 30-s clips, and manifest.json describing them.

    nice .venv/bin/python -m benchmarks.trainset.generate --out /tmp/essentia-trainset [--songs N] [--seed S]
        [--renderings R] [--jobs J] [--styles S,...] [--keep] [--wide-tempo] [--varied-harmony]
        [--varied-texture] [--varied-kits] [--varied-loops] [--modal]

Songs are spread evenly over the styles of compose.STYLES; within a style, keys step through all 24 (a fifth and
a mode change apart from one song to the next) and tempos through the style's range by the golden ratio (its
usual centre, or with --wide-tempo the wider range it is still played at, compose.WIDE_TEMPO). Each
song is rendered R times (a different soundfont, mix, room, mastering, loudness and encoder each time). With
--varied-harmony each song's harmonic rhythm (beats per chord) is drawn from its style's choices instead of the one
nearest the style's usual chord length in seconds (compose.Composer.chord_beats); with --varied-texture the slow and
acoustic styles draw their accompaniment (chords struck on every beat, repeated in eighths, finger-picked...) and the
rock, punk and metal drummers their groove, instead of playing their usual one (compose.Composer.texture); with
--varied-kits each clip's drums are played on a kit drawn from those its style is produced with (render.STYLE_KITS:
a TR-808 for trap, brushes for a ballad...) instead of the GM standard kit, every other draw of the rendering
unchanged; with --varied-loops each percussion song plays a loop drawn from compose.DRUM_LOOPS (a rock, funk,
house, dembow, boom-bap or breakbeat groove alone...) instead of the sparse hand-percussion loop; with --modal half
the songs of the loop styles (compose.MODAL_STYLES), drawn, are written in a mode: a major key's songs in
mixolydian (I-bVII-IV...), a minor key's in dorian (i-IV...), annotated by their tonic and third ("C major" for C
mixolydian), as rock, folk and game music often are.

Every run writes its clips into a fresh generation directory under --out and replaces manifest.json atomically
(temporary file + rename) only when all clips are written; the generation directories the new manifest does not
name are removed after that, so a reader of manifest.json always finds every file it names. With --keep the new
songs are added to the current manifest's (--styles limits what is composed), e.g. to grow one style.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, replace
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from benchmarks.crossval import DEFAULT_TRAINSET_DIR
from benchmarks.trainset.compose import MODAL_STYLES, STYLES, WIDE_TEMPO, annotated_tempo, compose
from benchmarks.trainset.render import (CLIP_SECONDS, SOUNDFONTS, Rendering, draw_drum_kit, draw_rendering,
                                        render_clip)
from benchmarks.trainset.theory import MODE_OF_SCALE

MODES = ("major", "minor")
FORMAT_WEIGHTS = {"m4a": 0.5, "mp3": 0.35, "wav": 0.15}
GOLDEN = 0.6180339887498949


@dataclass(frozen=True)
class Variation:
    """What a batch draws instead of each style's usual choice (the --wide-tempo and --varied-* options). The
    default draws nothing, so the first commands rebuild the clips they built; recipe.json records these fields
    under these names."""

    wide_tempo: bool = False      # tempos across compose.WIDE_TEMPO instead of the style's centre
    varied_harmony: bool = False  # beats per chord (compose.Composer.chord_beats)
    varied_texture: bool = False  # accompaniment or band drum groove (compose.Composer.texture)
    varied_kits: bool = False     # each clip's drum kit (render.STYLE_KITS)
    varied_loops: bool = False    # a percussion song's loop: kit grooves too (compose.Composer.drum_loop)
    modal: bool = False           # half the loop styles' songs in mixolydian or dorian (MODAL_SCALE_OF_MODE)


#: The mode a modal song of a major or a minor key is written in (--modal): theory.MODE_OF_SCALE turned around.
MODAL_SCALE_OF_MODE = {mode: scale for scale, mode in MODE_OF_SCALE.items()}
#: Share of the songs of compose.MODAL_STYLES written in a mode with --modal.
MODAL_SHARE = 0.5


def plan(n_songs: int, seed: int, styles: list[str] | None = None, first: dict[str, int] | None = None,
         variation: Variation = Variation()) -> list[dict]:
    """What to compose: style, key and tempo of every song, deterministic in the arguments. `styles` limits the
    styles (default all); `first` numbers each style's songs from that index on (to add to an existing set), and
    the key and tempo sequences continue from there; every item carries `variation` to compose and render by."""
    styles = sorted(styles or STYLES)
    first = first or {}
    rng = np.random.default_rng(seed)
    phase = {s: rng.random() for s in styles}
    modal_draws = np.random.default_rng([seed, 17])  # a generator of its own: the other draws stay as without --modal
    songs = []
    for i in range(n_songs):
        s_idx = i % len(styles)
        style = styles[s_idx]
        k = i // len(styles) + first.get(style, 0)
        key_index = (7 * k + 11 * sorted(STYLES).index(style)) % 24  # stride 7: all 24 keys, modes alternating
        lo, hi = WIDE_TEMPO[style] if variation.wide_tempo else STYLES[style][1]
        bpm = round(lo + (hi - lo) * ((phase[style] + k * GOLDEN) % 1.0))
        mode = MODES[key_index % 2]
        modal = variation.modal and style in MODAL_STYLES and modal_draws.random() < MODAL_SHARE
        songs.append({"index": i, "style": style, "song": f"{style}-{k:03d}", "tonic": key_index // 2,
                      "mode": mode, "modal_scale": MODAL_SCALE_OF_MODE[mode] if modal else None,
                      "bpm": float(bpm), "seed": seed * 100_000 + i, "variation": variation})
    return songs


def make_song(item: dict):
    """Compose the planned song; a seed whose compositions never name their key gives way to the next seeds, and a
    modal song none of whose seeds names its key (a power-chord rock song whose melody seldom plays the third) is
    written in the plain major or minor key instead (the manifest's modal_scale says which)."""
    variation = item["variation"]
    for modal_scale in dict.fromkeys((item.get("modal_scale"), None)):
        for bump in range(5):
            try:
                return compose(item["style"], item["seed"] + bump * 1_000_003, item["tonic"], item["mode"],
                               item["bpm"], varied_harmony=variation.varied_harmony,
                               varied_texture=variation.varied_texture, varied_loops=variation.varied_loops,
                               modal_scale=modal_scale)
            except ValueError:
                continue
    raise ValueError(f"could not compose {item['song']}")


def draw_renderings(item: dict, song, count: int) -> list[Rendering]:
    """How each of the planned song's `count` clips is produced: soundfonts in turn, everything else drawn from
    the song's seed (render.draw_rendering; the drum kit from a generator of its own, so that with or without
    `varied_kits` every other draw is the same)."""
    rng = np.random.default_rng([item["seed"], 7])
    names = sorted(SOUNDFONTS)
    out = []
    for r in range(count):
        soundfont = names[(item["index"] + r) % len(names)]
        fmt = str(rng.choice(list(FORMAT_WEIGHTS), p=list(FORMAT_WEIGHTS.values())))
        rendering = draw_rendering(song, rng, soundfont=soundfont, fmt=fmt)
        if item["variation"].varied_kits:
            kit = draw_drum_kit(song.style, np.random.default_rng([item["seed"], 13, r]))
            rendering = replace(rendering, drum_kit=kit)
        out.append(rendering)
    return out


def render_song(task: tuple[dict, int, str]) -> list[dict]:
    """Compose one song and render its clips into `gen_dir`; manifest entries of the clips written."""
    item, renderings, gen_dir = task
    song = make_song(item)
    return render_clips(song, item["song"], item["seed"], draw_renderings(item, song, renderings), gen_dir)


def render_clips(song, song_id: str, seed: int, renderings: list[Rendering], gen_dir: str) -> list[dict]:
    """Render `song` once per rendering into `gen_dir` as `{song_id}-r{n}.{format}`; the manifest entries of the
    clips written (a clip whose rendering fails is reported and left out)."""
    entries = []
    for r, rendering in enumerate(renderings):
        name = f"{song_id}-r{r}.{rendering.fmt}"
        try:
            data, lufs = render_clip(song, rendering, seed=seed * 10 + r)
        except Exception as exc:  # a failed rendering costs one clip, not the set
            print(f"render failed: {name}: {exc!r}", file=sys.stderr)
            continue
        (Path(gen_dir) / name).write_bytes(data)
        bpm, alt_bpm = annotated_tempo(song)
        entries.append({
            "file": f"{Path(gen_dir).name}/{name}", "format": rendering.fmt, "primary": True,
            "bpm": bpm, "alt_bpm": alt_bpm, "key": song.key, "meter": f"{song.meter}/4",
            "style": song.style, "has_drums": song.has_drums, "song": song_id, "variant": rendering.variant,
            "texture": song.texture, "modal_scale": song.modal_scale,
            "lufs": round(lufs, 2), "duration_s": CLIP_SECONDS, "render": rendering.describe(),
            "seed": seed, "instruments": {str(k): v for k, v in sorted(song.programs.items())},
        })
    return entries


def _worker_init() -> None:
    os.nice(10)  # the machine is shared: rendering yields to interactive work
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"


def _commit() -> str | None:
    """The repository commit the generator ran from ("+dirty" with uncommitted changes), so a set can be rebuilt."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "benchmarks/trainset"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def write_manifest(out: Path, entries: list[dict]) -> None:
    """Replace out/manifest.json atomically: readers see the old list or the new one, never a partial file."""
    tmp = out / f".manifest.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(entries, indent=1))
    os.replace(tmp, out / "manifest.json")


def generate(out: Path, n_songs: int, seed: int, renderings: int = 2, jobs: int = 2,
             styles: list[str] | None = None, keep: bool = False, budget_minutes: float | None = None,
             variation: Variation = Variation()) -> list[dict]:
    """Render `n_songs` new songs into a fresh generation directory and make them the manifest (with `keep`,
    the current manifest's entries too, the new songs numbered after the existing ones of their style). With
    `budget_minutes`, no song starts after that time: the manifest gets the songs finished by then. `variation`
    says what is drawn instead of each style's usual choice (Variation)."""
    out.mkdir(parents=True, exist_ok=True)
    kept: list[dict] = json.loads((out / "manifest.json").read_text()) if keep and (out / "manifest.json").exists() \
        else []
    first: dict[str, int] = {}
    for entry in kept:
        k = int(entry["song"].rsplit("-", 1)[1])
        first[entry["style"]] = max(first.get(entry["style"], 0), k + 1)
    gen_dir = out / f"gen-{seed}-{n_songs}-{int(time.time())}"
    gen_dir.mkdir()
    songs = plan(n_songs, seed, styles, first, variation)
    tasks = [(item, renderings, str(gen_dir)) for item in songs]
    entries: list[dict] = []
    t0 = time.time()
    stop_at = t0 + budget_minutes * 60 if budget_minutes else float("inf")
    todo, pending, done = iter(tasks), deque(), 0
    with Pool(jobs, initializer=_worker_init) as pool:
        def submit() -> None:  # songs start in plan order (styles round-robin) until the budget is spent
            task = next(todo, None) if time.time() < stop_at else None
            if task is not None:
                pending.append(pool.apply_async(render_song, (task,)))

        for _ in range(2 * jobs):
            submit()
        while pending:
            entries += pending.popleft().get()
            done += 1
            submit()
            if done % 10 == 0 or not pending:
                print(f"{done}/{len(tasks)} songs, {len(entries)} clips, {time.time() - t0:.0f} s", file=sys.stderr)
    entries.sort(key=lambda e: e["file"])
    (gen_dir / "recipe.json").write_text(json.dumps({
        "songs": n_songs, "songs_rendered": done, "seed": seed, "renderings": renderings, "styles": styles,
        "first": first, "budget_minutes": budget_minutes, **asdict(variation), "clips": len(entries),
        "generator_commit": _commit(), "seconds": round(time.time() - t0)}, indent=1))
    entries = kept + entries
    write_manifest(out, entries)
    named = {e["file"].split("/", 1)[0] for e in entries}
    for old in out.glob("gen-*"):  # earlier generations that the manifest no longer names
        if old.is_dir() and old.name not in named:
            shutil.rmtree(old, ignore_errors=True)
    return entries


def summary(entries: list[dict]) -> str:
    from collections import Counter

    lines = [f"{len(entries)} clips of {len({e['song'] for e in entries})} songs"]
    for field in ("style", "format"):
        counts = Counter(e[field] for e in entries)
        lines.append(f"  {field}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    keys = Counter(e["key"] for e in entries if e["key"])
    if keys:  # a set of percussion alone has none
        lines.append(f"  keys: {len(keys)} distinct, {min(keys.values())}-{max(keys.values())} clips each")
    lufs = [e["lufs"] for e in entries]
    lines.append(f"  loudness: {min(lufs):.1f} to {max(lufs):.1f} LUFS")
    lines.append(f"  bpm: {min(e['bpm'] for e in entries):.0f} to {max(e['bpm'] for e in entries):.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_TRAINSET_DIR)
    parser.add_argument("--songs", type=int, default=240)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--renderings", type=int, default=2, help="clips per song (default 2)")
    parser.add_argument("--jobs", type=int, default=2, help="rendering processes (default 2)")
    parser.add_argument("--styles", help="comma-separated styles to compose (default: all)")
    parser.add_argument("--budget-minutes", type=float,
                        help="start no song after this many minutes; the manifest gets the songs finished")
    parser.add_argument("--keep", action="store_true",
                        help="add to the current manifest instead of replacing it")
    parser.add_argument("--wide-tempo", action="store_true",
                        help="draw tempos from each style's wider range (compose.WIDE_TEMPO), not its centre")
    parser.add_argument("--varied-harmony", action="store_true",
                        help="draw each song's beats per chord from its style's choices (compose.Composer.chord_beats)")
    parser.add_argument("--varied-texture", action="store_true",
                        help="draw each song's accompaniment (or band drum groove) from its style's textures "
                             "(compose.Composer.texture)")
    parser.add_argument("--varied-kits", action="store_true",
                        help="draw each clip's drum kit from its style's kits (render.STYLE_KITS: drum machines, "
                             "jazz and brush kits...) instead of the standard kit")
    parser.add_argument("--varied-loops", action="store_true",
                        help="draw each percussion song's loop from compose.DRUM_LOOPS (kit grooves alone as well as "
                             "the sparse hand-percussion loop)")
    parser.add_argument("--modal", action="store_true",
                        help="write half the loop styles' songs in a mode (mixolydian in a major key, dorian in a "
                             "minor one), annotated by tonic and third")
    args = parser.parse_args(argv)
    styles = args.styles.split(",") if args.styles else None
    if styles and not set(styles) <= set(STYLES):
        parser.error(f"unknown styles {sorted(set(styles) - set(STYLES))}; known: {', '.join(sorted(STYLES))}")
    if not all(Path(p).is_file() for p in SOUNDFONTS.values()) or not shutil.which("fluidsynth"):
        parser.error("needs the fluidsynth CLI and the soundfonts in render.SOUNDFONTS (Debian: fluidsynth, "
                     "fluid-soundfont-gm, timgm6mb-soundfont, musescore-general-soundfont-small)")
    variation = Variation(wide_tempo=args.wide_tempo, varied_harmony=args.varied_harmony,
                          varied_texture=args.varied_texture, varied_kits=args.varied_kits,
                          varied_loops=args.varied_loops, modal=args.modal)
    entries = generate(args.out, args.songs, args.seed, args.renderings, args.jobs, styles, args.keep,
                       args.budget_minutes, variation)
    print(summary(entries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
