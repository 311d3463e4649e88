"""Accuracy and speed of the analysis engine on an annotated corpus.

    python benchmarks/accuracy.py [--corpus DIR] [--json out.json] [--repeat N] [--degraded] [--stages] [--baseline]
                                  [--trainset DIR [--skip-dev] [--report FILE]] [--cv-json FILE ...]

The corpus directory holds audio clips and a truth.json list of {file, primary, bpm, alt_bpm, key, meter, style}.
Default: ../shared/corpus relative to the repository root. Every file is decoded with the project's decoder
(backend.audio.decode.decode_audio) and analysed with backend.analysis.perform_audio_analysis, in this one process,
pinned to one thread (BLAS/OpenMP), after a warm-up run that is not timed.

Printed: one row per file, the summary over the primary clips (tempo Acc1 / Acc1-or-alt / Acc2, key exact and
MIREX score, median and p90 seconds per clip for the analysis alone and for decode + analysis), the agreement of
the alternative encodings (mp3/ogg/flac/wav) with their primary clip, and the confidence calibration table;
with --degraded also accuracy and calibration on harder copies of every clip (excerpts, added noise).

With --trainset DIR (the rendered training set, benchmarks/trainset) also the same measures of the committed
analysis on every clip of that set, per style and per format, with the kinds of error (tempo at double/half/other,
key off by a fifth, relative, parallel or other). Those are in-sample figures for any parameter fitted on that set;
cross-validated figures come from the fitting scripts, which write them to a JSON file that --cv-json prints
beside them ({"tempo": {"acc1": .., "by_style": {..}}, "key": {..}}, see print_cv).
"""
from __future__ import annotations

import os

# One core, as the target says: keep numpy/scipy from spreading a clip over several threads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from backend.analysis import ANALYSIS_SAMPLE_RATE, perform_audio_analysis  # noqa: E402
from backend.audio.decode import decode_audio  # noqa: E402

PITCH_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
_FLAT_TO_SHARP = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}


def parse_key(name: str | None) -> tuple[int, str] | None:
    """"A# Minor" / "a# minor" / "Bb major" -> (pitch class, "major"/"minor"); None when absent."""
    if not name:
        return None
    tonic, mode = name.strip().split()
    tonic = tonic[0].upper() + tonic[1:]
    tonic = _FLAT_TO_SHARP.get(tonic, tonic)
    return PITCH_CLASSES.index(tonic), mode.lower()


def mirex_score(est: tuple[int, str] | None, ref: tuple[int, str]) -> float:
    """MIREX key score: 1 same key, 0.5 fifth above/below in the same mode, 0.3 relative, 0.2 parallel, else 0."""
    if est is None:
        return 0.0
    (e, em), (r, rm) = est, ref
    if e == r and em == rm:
        return 1.0
    if em == rm and (e - r) % 12 in (5, 7):
        return 0.5
    if rm == "major" and em == "minor" and (e - r) % 12 == 9:
        return 0.3
    if rm == "minor" and em == "major" and (e - r) % 12 == 3:
        return 0.3
    if e == r and em != rm:
        return 0.2
    return 0.0


def within(est: float | None, ref: float, tol: float = 0.04) -> bool:
    return est is not None and ref > 0 and abs(est / ref - 1.0) <= tol


def tempo_flags(est: float | None, ref: float, alts: list[float]) -> dict[str, bool]:
    acc1 = within(est, ref)
    return {
        "acc1": acc1,
        "acc1_or_alt": acc1 or any(within(est, a) for a in alts),
        "acc2": any(within(est, ref * f) for f in (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)),
    }


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def calibration_rows(pairs: list[tuple[float, bool]]) -> list[dict]:
    """Accuracy per confidence band: the promise is that >= 0.8 is right far more often than < 0.5."""
    bands = [("< 0.5", 0.0, 0.5), ("0.5 - 0.8", 0.5, 0.8), (">= 0.8", 0.8, 1.01)]
    rows = []
    for label, lo, hi in bands:
        hits = [ok for c, ok in pairs if lo <= c < hi]
        rows.append({"band": label, "n": len(hits),
                     "accuracy": (sum(hits) / len(hits)) if hits else None})
    return rows


def tempo_error(est: float | None, ref: float) -> str:
    """The metrical relation of a tempo estimate to the truth: "ok", "x2", "x1/2", "x3", "x1/3", "x3/2", "x2/3",
    "other" or "none" (no estimate)."""
    if est is None:
        return "none"
    for name, factor in (("ok", 1.0), ("x2", 2.0), ("x1/2", 0.5), ("x3", 3.0), ("x1/3", 1 / 3), ("x3/2", 1.5),
                         ("x2/3", 2 / 3)):
        if within(est, ref * factor):
            return name
    return "other"


def key_error(est: tuple[int, str] | None, ref: tuple[int, str]) -> str:
    """How a key estimate relates to the truth: "ok", "fifth" (dominant or subdominant, same mode), "relative",
    "parallel", "other" or "none" (no key given)."""
    if est is None:
        return "none"
    return {1.0: "ok", 0.5: "fifth", 0.3: "relative", 0.2: "parallel"}.get(mirex_score(est, ref), "other")


def run(corpus: Path, repeat: int, degraded: bool = False) -> dict:
    truth = json.loads((corpus / "truth.json").read_text())
    # warm-up: imports, FFT plans, filter banks, so no clip pays for first use
    first = (corpus / truth[0]["file"]).read_bytes()
    warm = decode_audio(first, target_sr=ANALYSIS_SAMPLE_RATE)
    perform_audio_analysis(warm.samples, warm.sample_rate, detail=True)

    rows = []
    for item in truth:
        data = (corpus / item["file"]).read_bytes()
        t0 = time.perf_counter()
        decoded = decode_audio(data, target_sr=ANALYSIS_SAMPLE_RATE)
        t1 = time.perf_counter()
        res = perform_audio_analysis(decoded.samples, decoded.sample_rate, detail=True)  # as the server calls it
        t2 = time.perf_counter()
        analysis_times = [t2 - t1]
        for _ in range(max(0, repeat - 1)):
            ta = time.perf_counter()
            perform_audio_analysis(decoded.samples, decoded.sample_rate, detail=True)
            analysis_times.append(time.perf_counter() - ta)
        analysis_s = statistics.median(analysis_times)
        ref_key = parse_key(item["key"])
        est_key = parse_key(res.key)
        flags = tempo_flags(res.bpm, float(item["bpm"]), [float(a) for a in item.get("alt_bpm", [])])
        rows.append({
            "file": item["file"], "primary": bool(item.get("primary", True)), "style": item.get("style"),
            "truth_bpm": item["bpm"], "alt_bpm": item.get("alt_bpm", []), "truth_key": item["key"],
            "truth_meter": item.get("meter"),
            "bpm": res.bpm, "bpm_confidence": res.bpm_confidence,
            "candidates": [c["bpm"] for c in res.bpm_candidates[:3]],
            "key": res.key, "key_confidence": res.key_confidence, "time_signature": res.time_signature,
            **flags,
            "key_exact": est_key == ref_key, "key_mirex": mirex_score(est_key, ref_key),
            "decode_s": t1 - t0, "analysis_s": analysis_s, "total_s": (t1 - t0) + analysis_s,
        })
    result = {"rows": rows, "summary": summarize(rows)}
    if degraded:
        result["degraded"] = run_degraded(corpus, [t for t in truth if t.get("primary", True)])
    return result


def run_degraded(corpus: Path, items: list[dict]) -> dict:
    """Calibration needs wrong answers to be meaningful: analyse harder copies of every primary clip (an 8 s
    excerpt from 10 s, a 5 s excerpt from 3 s, the clip with white noise at 0 dB SNR) and tabulate accuracy per
    confidence band over all of them. Seeded, so the table is reproducible."""
    rng = np.random.default_rng(20261128)
    pairs_tempo, pairs_key, per_variant = [], [], {}
    for item in items:
        decoded = decode_audio((corpus / item["file"]).read_bytes(), target_sr=ANALYSIS_SAMPLE_RATE)
        y, sr = decoded.samples, decoded.sample_rate
        rms = float(np.sqrt(np.mean(y.astype(np.float64) ** 2))) or 1e-3
        variants = {  # the decoder delivers (channels, n) at the source's rate: cut along time
            "excerpt_8s": y[..., 10 * sr:18 * sr],
            "excerpt_5s": y[..., 3 * sr:8 * sr],
            "noise_0dB": (y + rng.standard_normal(y.shape).astype(np.float32) * rms).astype(np.float32),
        }
        ref_key = parse_key(item["key"])
        for name, v in variants.items():
            res = perform_audio_analysis(v, sr)
            ok_tempo = within(res.bpm, float(item["bpm"]))
            ok_key = parse_key(res.key) == ref_key
            pairs_tempo.append((res.bpm_confidence, ok_tempo))
            pairs_key.append((res.key_confidence, ok_key))
            stats = per_variant.setdefault(name, {"n": 0, "tempo_acc1": 0, "key_exact": 0})
            stats["n"] += 1
            stats["tempo_acc1"] += ok_tempo
            stats["key_exact"] += ok_key
    return {"variants": per_variant, "tempo_calibration": calibration_rows(pairs_tempo),
            "key_calibration": calibration_rows(pairs_key)}


def summarize(rows: list[dict]) -> dict:
    prim = [r for r in rows if r["primary"]]
    n = len(prim)

    def rate(key: str) -> float:
        return sum(bool(r[key]) for r in prim) / n if n else float("nan")

    by_file = {r["file"].rsplit(".", 1)[0]: r for r in prim}
    alternates = [r for r in rows if not r["primary"]]
    agree = [r for r in alternates if (base := by_file.get(r["file"].rsplit(".", 1)[0]))
             and within(r["bpm"], base["bpm"] or 0.0, 0.02) and r["key"] == base["key"]]
    return {
        "clips": n,
        "tempo_acc1": rate("acc1"), "tempo_acc1_or_alt": rate("acc1_or_alt"), "tempo_acc2": rate("acc2"),
        "key_exact": rate("key_exact"),
        "key_mirex": sum(r["key_mirex"] for r in prim) / n if n else float("nan"),
        "analysis_s_median": percentile([r["analysis_s"] for r in prim], 50),
        "analysis_s_p90": percentile([r["analysis_s"] for r in prim], 90),
        "total_s_median": percentile([r["total_s"] for r in prim], 50),
        "total_s_p90": percentile([r["total_s"] for r in prim], 90),
        "alternate_encodings": len(alternates), "alternate_encodings_agreeing": len(agree),
        "tempo_calibration": calibration_rows([(r["bpm_confidence"], r["acc1"]) for r in prim]),
        "key_calibration": calibration_rows([(r["key_confidence"], r["key_exact"]) for r in prim]),
    }


def _fmt_key(k: str | None) -> str:
    return k if k else "-"


def print_report(result: dict) -> None:
    rows, s = result["rows"], result["summary"]
    head = (f"{'file':15s} {'style':11s} {'truth':>6s} {'bpm':>7s} {'conf':>5s} {'A1':>2s} {'Aa':>2s} {'A2':>2s} "
            f"{'truth key':10s} {'key':10s} {'conf':>5s} {'ok':>3s} {'anal s':>7s} {'dec+an s':>8s}")
    print(head)
    print("-" * len(head))
    yes = {True: "y", False: "."}
    for r in rows:
        bpm = f"{r['bpm']:.1f}" if r["bpm"] is not None else "-"
        print(f"{r['file']:15s} {str(r['style'])[:11]:11s} {r['truth_bpm']:6.1f} {bpm:>7s} {r['bpm_confidence']:5.2f} "
              f"{yes[r['acc1']]:>2s} {yes[r['acc1_or_alt']]:>2s} {yes[r['acc2']]:>2s} "
              f"{r['truth_key']:10s} {_fmt_key(r['key']):10s} {r['key_confidence']:5.2f} "
              f"{r['key_mirex']:3.1f} {r['analysis_s']:7.3f} {r['total_s']:8.3f}"
              + ("" if r["primary"] else "   (alternate encoding)"))
    print()
    print(f"Summary over {s['clips']} primary clips")
    print(f"  tempo Acc1            {s['tempo_acc1']:.1%}")
    print(f"  tempo Acc1 or alt     {s['tempo_acc1_or_alt']:.1%}")
    print(f"  tempo Acc2            {s['tempo_acc2']:.1%}")
    print(f"  key exact             {s['key_exact']:.1%}")
    print(f"  key MIREX score       {s['key_mirex']:.1%}")
    print(f"  analysis s/clip       median {s['analysis_s_median']:.3f}  p90 {s['analysis_s_p90']:.3f}")
    print(f"  decode+analysis s     median {s['total_s_median']:.3f}  p90 {s['total_s_p90']:.3f}")
    print(f"  alternate encodings agreeing with their primary clip (bpm within 2%, same key): "
          f"{s['alternate_encodings_agreeing']}/{s['alternate_encodings']}")
    print()
    print_calibration("Confidence calibration (primary clips): accuracy per confidence band",
                      s["tempo_calibration"], s["key_calibration"])
    if "degraded" in result:
        d = result["degraded"]
        print()
        print("Degraded copies (accuracy per variant):")
        for name, v in d["variants"].items():
            print(f"  {name:12s} n={v['n']:3d}  tempo Acc1 {v['tempo_acc1'] / v['n']:.0%}  "
                  f"key exact {v['key_exact'] / v['n']:.0%}")
        print_calibration("Confidence calibration (degraded copies): accuracy per confidence band",
                          d["tempo_calibration"], d["key_calibration"])


def stage_times(corpus: Path, items: list[dict], runs: int = 5) -> dict[str, float]:
    """Median milliseconds of each stage of the analysis over the first primary clips (after a warm-up)."""
    from backend.analysis import descriptors, frontend, key, loudness, tempo

    per_stage: dict[str, list[float]] = {}
    for item in items[:5]:
        decoded = decode_audio((corpus / item["file"]).read_bytes(), target_sr=ANALYSIS_SAMPLE_RATE)
        for _ in range(runs):
            marks = [("start", time.perf_counter())]
            lufs = loudness.integrated_loudness(decoded.samples, decoded.sample_rate)
            marks.append(("loudness (BS.1770, channels at their rate)", time.perf_counter()))
            y = decoded.mono()
            sr = ANALYSIS_SAMPLE_RATE
            marks.append(("downmix + resample", time.perf_counter()))
            S = frontend.stft_magnitude(y)
            marks.append(("STFT (2048/256)", time.perf_counter()))
            fe = frontend.compute_front_end(y, sr)  # includes its own STFT; the STFT time is subtracted below
            marks.append(("front end without STFT (mel, flux, power, harmonic change)", time.perf_counter()))
            t = tempo.estimate_tempo(fe.onset_bands, fe.onset, fe.frame_rate, harmonic=fe.harmonic_change)
            marks.append(("tempo", time.perf_counter()))
            freqs = frontend.bin_frequencies(sr)
            key.estimate_key(fe.S, freqs)
            marks.append(("key", time.perf_counter()))
            cues = descriptors.measure_cues(fe, y, lufs, t.pulse_clarity, t.bpm)
            descriptors.energy(cues)
            descriptors.danceability(cues)
            descriptors.acousticness(cues)
            descriptors.spectral_centroid(fe.S, freqs, fe.frame_rms)
            marks.append(("descriptors", time.perf_counter()))
            durations = {name: (t1 - t0) * 1000 for (_, t0), (name, t1) in zip(marks, marks[1:])}
            durations["front end without STFT (mel, flux, power, harmonic change)"] -= durations["STFT (2048/256)"]
            del S
            for name, ms in durations.items():
                per_stage.setdefault(name, []).append(ms)
    return {name: statistics.median(v) for name, v in per_stage.items()}


def naive_librosa(y: np.ndarray, sr: int) -> tuple[float | None, str | None]:
    """The baseline the issue describes: librosa beat_track for tempo, HPSS then chroma argmax for the tonic
    (mode from the stronger of the minor and major third). For comparison only."""
    import librosa

    tempo_est, _ = librosa.beat.beat_track(y=y, sr=sr)
    harmonic, _ = librosa.effects.hpss(y)
    chroma = librosa.feature.chroma_stft(y=harmonic, sr=sr).mean(axis=1)
    tonic = int(np.argmax(chroma))
    mode = "Minor" if chroma[(tonic + 3) % 12] > chroma[(tonic + 4) % 12] else "Major"
    bpm = float(np.atleast_1d(tempo_est)[0])
    return (bpm if bpm > 0 else None), f"{PITCH_CLASSES[tonic]} {mode}"


def run_baseline(corpus: Path, items: list[dict]) -> dict:
    """Score the naive pipeline on the same primary clips and decoder output."""
    rows = []
    for item in items:
        y = decode_audio((corpus / item["file"]).read_bytes(), target_sr=ANALYSIS_SAMPLE_RATE).mono()
        t0 = time.perf_counter()
        bpm, key_name = naive_librosa(y, ANALYSIS_SAMPLE_RATE)
        seconds = time.perf_counter() - t0
        ref_key = parse_key(item["key"])
        flags = tempo_flags(bpm, float(item["bpm"]), [float(a) for a in item.get("alt_bpm", [])])
        rows.append({**flags, "key_exact": parse_key(key_name) == ref_key,
                     "key_mirex": mirex_score(parse_key(key_name), ref_key), "seconds": seconds})
    n = len(rows)
    return {k: sum(r[k] for r in rows) / n for k in ("acc1", "acc1_or_alt", "acc2", "key_exact", "key_mirex")} | {
        "seconds_median": percentile([r["seconds"] for r in rows], 50)}


def run_trainset(root: Path, max_clips: int | None = None) -> list[dict]:
    """Decode and analyse every clip of the training set once, as the server does; one row per clip. A clip that
    cannot be read or decoded, or whose analysis raises, gets a row with `error` set instead of estimates."""
    from benchmarks.crossval import load_manifest
    from backend.audio.decode import AudioDecodeError

    entries = load_manifest(root)[:max_clips]
    warm = decode_audio(Path(entries[0]["path"]).read_bytes(), target_sr=ANALYSIS_SAMPLE_RATE)
    perform_audio_analysis(warm.samples, ANALYSIS_SAMPLE_RATE, detail=True)
    rows = []
    for entry in entries:
        row = {k: entry.get(k) for k in ("file", "style", "format", "song", "bpm", "alt_bpm", "key", "lufs")}
        try:
            data = Path(entry["path"]).read_bytes()
            t0 = time.perf_counter()
            decoded = decode_audio(data, target_sr=ANALYSIS_SAMPLE_RATE)
            res = perform_audio_analysis(decoded.samples, decoded.sample_rate, detail=True)
            row["total_s"] = time.perf_counter() - t0
        except (OSError, AudioDecodeError) as exc:
            row["error"] = f"not decoded: {type(exc).__name__}: {exc}"
            rows.append(row)
            continue
        except Exception as exc:  # an analysis bug on one clip is reported with the rest, not fatal to the run
            row["error"] = f"analysis raised {type(exc).__name__}: {exc}"
            rows.append(row)
            continue
        row.update(tempo_flags(res.bpm, float(entry["bpm"]), [float(a) for a in entry.get("alt_bpm") or []]))
        row.update(est_bpm=res.bpm, est_key=res.key, est_lufs=getattr(res, "loudness_lufs", None),
                   tempo_error=tempo_error(res.bpm, float(entry["bpm"])))
        ref_key = parse_key(entry.get("key"))
        if ref_key is not None:
            est_key = parse_key(res.key) if res.key and res.key != "Unknown" else None
            row.update(key_exact=est_key == ref_key, key_mirex=mirex_score(est_key, ref_key),
                       key_error=key_error(est_key, ref_key))
        rows.append(row)
    return rows


def trainset_table(rows: list[dict], by: str) -> list[dict]:
    """Accuracy per value of `by` ("style", "format") and overall ("all"), with the kinds of error."""
    from collections import Counter

    groups: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: str(r.get(by))):
        groups.setdefault(str(r.get(by)), []).append(r)
    groups["all"] = rows
    table = []
    for name, members in groups.items():
        ok = [r for r in members if "error" not in r]
        keyed = [r for r in ok if "key_exact" in r]
        n = len(ok)
        table.append({
            by: name, "clips": len(members), "failed": len(members) - n,
            "acc1": sum(r["acc1"] for r in ok) / n if n else float("nan"),
            "acc1_or_alt": sum(r["acc1_or_alt"] for r in ok) / n if n else float("nan"),
            "acc2": sum(r["acc2"] for r in ok) / n if n else float("nan"),
            "keyed": len(keyed),
            "key_exact": sum(r["key_exact"] for r in keyed) / len(keyed) if keyed else None,
            "key_mirex": sum(r["key_mirex"] for r in keyed) / len(keyed) if keyed else None,
            "total_s_median": percentile([r["total_s"] for r in ok], 50),
            "tempo_errors": dict(Counter(r["tempo_error"] for r in ok if r["tempo_error"] != "ok")),
            "key_errors": dict(Counter(r["key_error"] for r in keyed if r["key_error"] != "ok")),
        })
    return table


def format_trainset(root: Path, rows: list[dict]) -> str:
    """The training-set section of the report as text (also written to --report)."""
    songs = len({r["song"] for r in rows})
    out = [f"Training set {root}: {len(rows)} clips of {songs} songs. Committed analysis, decoded as the server does.",
           "These are in-sample figures for any parameter fitted on this set (not cross-validated).", ""]
    for by in ("style", "format"):
        head = (f"{by:12s} {'clips':>5s} {'Acc1':>6s} {'or alt':>6s} {'Acc2':>6s} {'key n':>5s} {'exact':>6s} "
                f"{'MIREX':>6s} {'s/clip':>6s}  tempo errors / key errors")
        out += [head, "-" * len(head)]
        for t in trainset_table(rows, by):
            pct = (lambda v: f"{v:6.1%}" if v is not None and v == v else f"{'-':>6s}")
            errs = " ".join(f"{k}:{v}" for k, v in sorted(t["tempo_errors"].items()))
            kerrs = " ".join(f"{k}:{v}" for k, v in sorted(t["key_errors"].items()))
            failed = f" ({t['failed']} failed)" if t["failed"] else ""
            out.append(f"{t[by][:12]:12s} {t['clips']:5d} {pct(t['acc1'])} {pct(t['acc1_or_alt'])} {pct(t['acc2'])} "
                       f"{t['keyed']:5d} {pct(t['key_exact'])} {pct(t['key_mirex'])} {t['total_s_median']:6.3f}  "
                       f"{errs or '-'} / {kerrs or '-'}{failed}")
        out.append("")
    lufs = [(r["est_lufs"] - r["lufs"]) for r in rows if r.get("est_lufs") is not None and r.get("lufs") is not None]
    if lufs:
        out.append(f"loudness_lufs minus the mastering meter (pyloudnorm, stereo, before encoding): median "
                   f"{statistics.median(lufs):+.2f} LU, range {min(lufs):+.2f} to {max(lufs):+.2f}")
    failures = [r for r in rows if "error" in r]
    for r in failures[:10]:
        out.append(f"failed: {r['file']}: {r['error']}")
    return "\n".join(out)


def print_cv(path: Path) -> None:
    """Print cross-validated figures a fitting script wrote: {"tempo"|"key": {"acc1"..., "by_style": {style:
    {metric: value}}}} plus optional "method"/"grouping" strings saying how they were obtained."""
    cv = json.loads(path.read_text())
    print(f"Cross-validated on the training set (from {path}; {cv.get('grouping', 'grouping not stated')}):")
    if cv.get("method"):
        print(f"  method: {cv['method']}")
    for task in ("tempo", "key"):
        if task not in cv:
            continue
        block = cv[task]
        overall = "  ".join(f"{k} {v:.1%}" for k, v in block.items() if isinstance(v, (int, float)))
        print(f"  {task}: {overall}")
        for style, metrics in sorted(block.get("by_style", {}).items()):
            print(f"    {style:12s} " + "  ".join(f"{k} {v:.1%}" for k, v in metrics.items()
                                              if isinstance(v, (int, float))))


def print_calibration(title: str, tempo_rows: list[dict], key_rows: list[dict]) -> None:
    print(title)
    print(f"  {'band':10s} {'tempo n':>7s} {'Acc1':>6s}   {'key n':>5s} {'exact':>6s}")
    for t, k in zip(tempo_rows, key_rows):
        ta = f"{t['accuracy']:.0%}" if t["accuracy"] is not None else "-"
        ka = f"{k['accuracy']:.0%}" if k["accuracy"] is not None else "-"
        print(f"  {t['band']:10s} {t['n']:7d} {ta:>6s}   {k['n']:5d} {ka:>6s}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO_ROOT.parent / "shared" / "corpus",
                        help="directory with truth.json and the clips (default: ../shared/corpus)")
    parser.add_argument("--json", type=Path, help="also write rows and summary as JSON here")
    parser.add_argument("--repeat", type=int, default=3,
                        help="analysis runs per clip; the median is reported (default 3)")
    parser.add_argument("--degraded", action="store_true",
                        help="also calibrate on harder copies (5 s and 8 s excerpts, 0 dB noise) of every clip")
    parser.add_argument("--stages", action="store_true", help="also time each stage of the analysis")
    parser.add_argument("--baseline", action="store_true",
                        help="also score the naive librosa pipeline on the same clips (slow: ~2 s per clip)")
    parser.add_argument("--trainset", type=Path,
                        help="also score the committed analysis on this rendered training set (its manifest.json)")
    parser.add_argument("--skip-dev", action="store_true", help="with --trainset: skip the dev corpus")
    parser.add_argument("--max-clips", type=int, help="with --trainset: only the first N clips of the manifest")
    parser.add_argument("--report", type=Path, help="with --trainset: also write its tables as text here")
    parser.add_argument("--cv-json", type=Path, action="append", default=[],
                        help="print the cross-validated figures a fitting script wrote here (repeatable)")
    args = parser.parse_args(argv)
    if args.trainset and not (args.trainset / "manifest.json").is_file():
        parser.error(f"no manifest.json in {args.trainset} (python -m benchmarks.trainset.generate --out DIR)")
    result: dict = {}
    if not (args.trainset and args.skip_dev):
        if not (args.corpus / "truth.json").is_file():
            parser.error(f"no truth.json in {args.corpus}")
        result = run(args.corpus, args.repeat, args.degraded)
        print_report(result)
    if args.trainset:
        rows = run_trainset(args.trainset, args.max_clips)
        result["trainset"] = {"rows": rows, "by_style": trainset_table(rows, "style"),
                              "by_format": trainset_table(rows, "format")}
        text = format_trainset(args.trainset, rows)
        print()
        print(text)
        if args.report:
            args.report.write_text(text + "\n")
    for path in args.cv_json:
        print()
        print_cv(path)
    if not result:
        return 0
    if args.baseline and "summary" in result:
        truth = json.loads((args.corpus / "truth.json").read_text())
        b = result["baseline"] = run_baseline(args.corpus, [t for t in truth if t.get("primary", True)])
        s = result["summary"]
        print()
        print("Same primary clips, naive librosa pipeline (beat_track; HPSS + chroma argmax) vs this engine:")
        print(f"  {'system':22s} {'Acc1':>6s} {'or alt':>7s} {'Acc2':>6s} {'key':>6s} {'MIREX':>6s} {'s/clip':>7s}")
        print(f"  {'naive librosa':22s} {b['acc1']:6.1%} {b['acc1_or_alt']:7.1%} {b['acc2']:6.1%} "
              f"{b['key_exact']:6.1%} {b['key_mirex']:6.1%} {b['seconds_median']:7.3f}")
        print(f"  {'EssentiaServer engine':22s} {s['tempo_acc1']:6.1%} {s['tempo_acc1_or_alt']:7.1%} "
              f"{s['tempo_acc2']:6.1%} {s['key_exact']:6.1%} {s['key_mirex']:6.1%} {s['analysis_s_median']:7.3f}")
    if args.stages and "summary" in result:
        truth = json.loads((args.corpus / "truth.json").read_text())
        result["stage_ms"] = stage_times(args.corpus, [t for t in truth if t.get("primary", True)])
        print()
        print("Median milliseconds per stage (first 5 primary clips, 5 runs each):")
        for name, ms in result["stage_ms"].items():
            print(f"  {name:44s} {ms:6.1f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, allow_nan=False, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
