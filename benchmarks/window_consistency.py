"""Label-free check on real recordings: does a song keep its key and its tempo from one 30-s window to the next?

    nice python benchmarks/window_consistency.py DIR_OR_FILE [...] [--window 30] [--max-windows 8] [--json FILE]

Nobody annotated these recordings, and nothing here claims what their key or tempo is. What can be measured without
annotations is whether the analysis agrees with itself: a song rarely changes key or tempo every 30 seconds, so
the windows of one song should mostly get the same answer (the issue's check on real band recordings: the song's
key in >= 85 % of its windows, "Unknown" counting as a disagreement). A song that does modulate or change tempo
lowers every version's figure alike, so the figures are for comparing versions of the analysis on the same files,
not absolute accuracy.

Every file of at least two windows is decoded whole with the server's decoder, cut into consecutive
non-overlapping windows (at most --max-windows, taken from the middle of the file) and each window analysed by
perform_audio_analysis, as an upload of that window would be. Printed per source (the first directory level under
each argument) and overall:
- key: the share of windows whose key is the song's most frequent key (the issue's figure), the share of
  consecutive windows that agree, the share of "Unknown", and how the disagreements relate (fifth, relative,
  parallel, other);
- tempo: the share of windows within 4 % of the song's median tempo, and within 4 % of it or of its double, half,
  triple or third (the rest are not octave flips: the window's periodicity is unrelated);
- medians of energy, acousticness and danceability, and of the two confidences.

Free recordings that Debian packages as game soundtracks make a ready set (about six hours, orchestral, rock,
electronic, chiptune; their licences are in each package's copyright file; nothing is copied into this
repository):

    mkdir -p /tmp/real && cd /tmp/real && apt-get download wesnoth-1.16-music warzone2100-music supertux-data \\
        hedgewars-data extremetuxracer-data lincity-ng-data xmoto-data pingus-data \\
        && for f in *.deb; do mkdir -p "${f%%_*}" && dpkg-deb -x "$f" "${f%%_*}"; done
    nice .venv/bin/python benchmarks/window_consistency.py /tmp/real/*
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from backend.analysis import ANALYSIS_SAMPLE_RATE, perform_audio_analysis  # noqa: E402
from backend.audio.decode import AudioDecodeError, decode_audio  # noqa: E402
from benchmarks.accuracy import key_error, parse_key, tempo_flags  # noqa: E402

AUDIO_SUFFIXES = {".ogg", ".opus", ".mp3", ".flac", ".wav", ".m4a", ".aac"}
#: Smaller files are sound effects, not songs (a 60-s Vorbis file at the lowest usual bit rate is ~500 kB).
MIN_BYTES = 400_000


def audio_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
                  and p.stat().st_size >= MIN_BYTES)


def windows_of(path: Path, seconds: float, most: int) -> list[dict]:
    """Each window's analysis as a dict (empty when the file is shorter than two windows or cannot be read)."""
    try:
        decoded = decode_audio(path.read_bytes(), target_sr=ANALYSIS_SAMPLE_RATE, window_seconds=24 * 3600.0)
    except (OSError, AudioDecodeError) as exc:
        print(f"  skip {path}: {exc}", file=sys.stderr)
        return []
    x, sr = decoded.samples, decoded.sample_rate
    size = int(seconds * sr)
    count = min(most, x.shape[1] // size)
    if count < 2:
        return []
    first = (x.shape[1] - count * size) // 2
    out = []
    for i in range(count):
        t0 = time.perf_counter()
        res = perform_audio_analysis(x[:, first + i * size: first + (i + 1) * size], sr)
        out.append({**res.to_dict(), "seconds": time.perf_counter() - t0})
    return out


def song_figures(wins: list[dict]) -> dict:
    """Self-agreement of one song's windows."""
    keys = [w["key"] if w["key"] not in (None, "Unknown") else None for w in wins]
    known = [k for k in keys if k]
    modal = Counter(known).most_common(1)[0][0] if known else None
    pairs = list(zip(keys, keys[1:]))
    relations = Counter(key_error(parse_key(k), parse_key(modal)) if k else "unknown"
                        for k in keys if modal and k != modal)
    bpms = [w["bpm"] for w in wins if w["bpm"]]
    centre = statistics.median(bpms) if bpms else None
    # the song's tempo, or it at another metrical level: Acc1 and Acc2 against the song's median
    flags = [tempo_flags(w["bpm"], centre, []) if centre else {"acc1": False, "acc2": False} for w in wins]
    same, level = [f["acc1"] for f in flags], [f["acc2"] for f in flags]
    return {"windows": len(wins), "modal_key": modal,
            "key_modal": sum(k == modal and k is not None for k in keys),
            "key_pairs": len(pairs), "key_pairs_same": sum(a is not None and a == b for a, b in pairs),
            "unknown": sum(k is None for k in keys), "key_relations": dict(relations),
            "median_bpm": centre, "tempo_same": sum(same), "tempo_level": sum(level)}


def summarise(songs: list[dict]) -> dict:
    wins = [w for s in songs for w in s["window_results"]]
    n = sum(s["windows"] for s in songs)
    pairs = sum(s["key_pairs"] for s in songs)
    relations: Counter = Counter()
    for s in songs:
        relations.update(s["key_relations"])

    def med(field: str) -> float | None:
        vals = [w[field] for w in wins if w.get(field) is not None]
        return statistics.median(vals) if vals else None

    return {"songs": len(songs), "windows": n,
            "key_modal_share": sum(s["key_modal"] for s in songs) / n if n else None,
            "key_next_same": sum(s["key_pairs_same"] for s in songs) / pairs if pairs else None,
            "unknown_share": sum(s["unknown"] for s in songs) / n if n else None,
            "key_disagreements": dict(relations),
            "tempo_same_share": sum(s["tempo_same"] for s in songs) / n if n else None,
            "tempo_level_share": sum(s["tempo_level"] for s in songs) / n if n else None,
            **{f"median_{f}": med(f) for f in ("energy", "acousticness", "danceability", "bpm_confidence",
                                               "key_confidence", "seconds")}}


def print_table(groups: dict[str, dict]) -> None:
    head = (f"{'source':24s} {'songs':>5s} {'wins':>5s} {'key=song':>8s} {'next=':>6s} {'Unknwn':>6s} "
            f"{'bpm=':>6s} {'octave':>6s} {'energy':>6s} {'acoust':>6s} {'dance':>6s} {'bpmcf':>6s} {'keycf':>6s}")
    print(head)
    print("-" * len(head))
    for name, g in groups.items():
        def pct(v):
            return f"{v:6.1%}" if v is not None else f"{'-':>6s}"

        def num(v):
            return f"{v:6.2f}" if v is not None else f"{'-':>6s}"

        print(f"{name[:24]:24s} {g['songs']:5d} {g['windows']:5d} {pct(g['key_modal_share']):>8s} "
              f"{pct(g['key_next_same'])} {pct(g['unknown_share'])} {pct(g['tempo_same_share'])} "
              f"{pct(g['tempo_level_share'])} {num(g['median_energy'])} {num(g['median_acousticness'])} "
              f"{num(g['median_danceability'])} {num(g['median_bpm_confidence'])} {num(g['median_key_confidence'])}")
    every = groups.get("all")
    if every:
        print(f"key disagreements with the song's key: {every['key_disagreements']}; "
              f"median {every['median_seconds']:.3f} s of analysis per window")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, help="files, or directories searched for audio files")
    ap.add_argument("--window", type=float, default=30.0, help="seconds per window (default 30)")
    ap.add_argument("--max-windows", type=int, default=8, help="windows per song at most (default 8)")
    ap.add_argument("--json", type=Path, help="write every window's analysis and the figures here")
    args = ap.parse_args(argv)

    songs: list[dict] = []
    t0 = time.time()
    for root in args.paths:
        for path in audio_files(root):
            wins = windows_of(path, args.window, args.max_windows)
            if not wins:
                continue
            rel = path.relative_to(root) if root.is_dir() else Path(path.name)
            source = root.name if root.is_dir() else path.parent.name
            songs.append({"file": str(path), "source": source, "name": str(rel), **song_figures(wins),
                          "window_results": wins})
            print(f"  {len(songs)} songs ({time.time() - t0:.0f} s)", file=sys.stderr, end="\r")
    if not songs:
        print("no file of two windows or more found")
        return 1
    print(file=sys.stderr)
    groups = {src: summarise([s for s in songs if s["source"] == src]) for src in sorted({s["source"] for s in songs})}
    groups["all"] = summarise(songs)
    print_table(groups)
    if args.json:
        args.json.write_text(json.dumps({"groups": groups, "songs": songs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
