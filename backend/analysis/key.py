"""Key: whole-range and bass chroma from an approximate note transcription (chroma.py) and the triads found in them,
scored against fitted key profiles.

The score of a key is a linear function of three views of the clip rotated to that key's tonic: the mean whole-range
chroma and the mean bass chroma (12 weights per mode each) and the histogram of triads found per 1-s segment (24
weights per mode: how much each chord relative to the tonic, I, ii, V/V, bVII..., speaks for the key), plus a bias
for minor. With a published profile and no other view this is the classic correlation method (Krumhansl). The
chords carry what a chroma sum cannot: keys a fifth apart share six pitch classes, but not their chord vocabulary.

The committed model (models/key_model.json: chroma settings, 97 weights, confidence calibration) was chosen and
fitted by benchmarks/fit_key.py on the rendered training set (FluidSynth, 20 styles, all 24 keys with borrowed chords,
secondary dominants and cadences on V and the relative key, drawn harmonic rhythm and accompaniment, drum kits drawn
per style, drum loops alone, and since 2026-12-02 a batch of 250 songs half of which are in mixolydian or dorian)
and on a 6-s and a 12-s excerpt of every clip (each weighing a tenth of a clip), never on the dev corpus. The modal
batch teaches the profiles only, not the confidence, and the drum loops weigh three clips each in the confidence's
calibration (benchmarks/ANALYSIS_RESULTS.md, fifteenth session: why). Command: `nice .venv/bin/python
benchmarks/fit_key.py --trainset /tmp/essentia-v2 /tmp/essentia-loopstrain --decision-only /tmp/essentia-modal
--keyless-weight 3 --corpus ../shared/corpus --only c0.5-d0.9-p10-b52/fitted --l2 1e-3 --write-model` (the sets of
benchmarks/trainset/README.md). Song folds over all 2098 keyed clips 96.9 / 98.0 (the 1848 of v2 98.6 / 99.0, the
modal batch's 110 modal songs 70.0 %); the table below is the model before the modal batch, on v2 alone:

| decision | grouped CV by song (exact / MIREX) | leave one style out | 6-s / 12-s excerpts (exact) |
|---|---|---|---|
| this model (transcription; chroma, bass, triads; fitted with excerpts) | 99.2 % / 99.4 % | 99.1 % | 77.9 % / 92.8 % |
| the same fitted on the whole clips only (the previous model) | 99.1 % / 99.3 % | 99.1 % | 73.9 % / 91.8 % |
| the same chroma views without the triads, fitted (2026-12-01, tenth session) | 97.6 % / 98.4 % | 97.3 % | |
| best published profile (Temperley + bass view, plain folded chroma) | 88.4 % / 91.9 % | (not fitted) | |

The excerpts matter beyond short clips: on Bach's chorales (benchmarks/trainset/scores.py), music the composer never
wrote and the fit never saw, the model before the modal batch read 80.8 % exact / 88.0 % MIREX against 76.0 % /
84.4 % fitted on the whole clips only. On 320 keyed clips rendered after the fit (benchmarks/ANALYSIS_RESULTS.md):
99.1 % exact, 99.4 % MIREX (without the modal batch 98.4 / 98.6); on 47 held-out modal songs 74.5 % (without it
17.0 %). Dev corpus (validation only): 30/30 exact. The first and second 15-s halves of a training clip get the
same key in 88.5 % of clips (dev corpus 100 %). Remaining errors (song folds, v2): 9 fifths, 3 relatives, 10
parallel, 3 other; trap, punk and funk are the hardest styles. Cost ~6-8 ms per 30-s clip
(one core). Two chords alone stay ambiguous (a chord and the one a fourth up are I-IV of one key or V-I of the next):
no feature here hears which came first, so a clip that short gets a lower confidence (below).

Confidence: the calibrated probability that the key is exactly right, a logistic function of the score margin over
the runner-up, of two measures of how pitched the clip is (the sustained share and the triad share, below), of how
long it is (up to 30 s), of how much its chroma moves from one second to the next (chroma_change) and of how in tune
its peaks are with each other (the tuning strength), fitted on the
out-of-fold predictions of the songs and their excerpts and on the drum loops that pass the no-key gate (every key
they get is wrong); capped at 0.5 when neither third of the tonic is heard (bare power chords: the mode is a guess).
The margin alone said 0.7-1.0 for a drum loop whose tuned kick and toms the gate let through: drums keep the same
"chord" from bar to bar, so one key wins by far, however little that key means. Measured on the held-out clips: drum
loops that get a key, median confidence 0.99 -> 0.50 (standard, room and jazz kits 0.04-0.18; the orchestra kit's
tuned percussion 0.71); songs, mean confidence 0.97 -> 0.91 at 98.1 % exact (the price: funk, punk and metal, whose
triad share is low, read 0.2-0.8 where they are mostly right). The length term (2026-12-01, twelfth session) lowers
the confidence of short clips: out of fold, the 6- and 12-s excerpts answered at >= 0.8 are right 91 % of the time
(mean confidence 0.95), those under 0.5 63 % (mean 0.31); whole clips at >= 0.8, 99.7 %. The chroma-change term
(same day): drum loops repeat one bar, whose tuned drums keep one "chord"; on the 128 held-out drum loops the 41
that get a key have median confidence 0.68 -> 0.62, 16 -> 11 over 0.8, the held-out songs the same (98.1 % exact,
mean confidence 0.94-0.95). The in-tune term (2026-12-02, fourteenth session): how consistently the clip's peaks sit
at one deviation from the A440 grid (chroma.estimate_tuning); a band plays in one tuning (held-out songs 0.24-0.75,
10th to 90th percentile), tom heads and tuned kicks ring where no scale put them (drum loops through the gate
0.02-0.12). Every weight but the intercept is held at 0 or more (it now carries what the triad share did, whose
weight went to 0). Held-out drum loops: median 0.62 -> 0.53, 11 -> 4 of 41 over 0.8; songs 98.4 % exact, mean
confidence 0.95, those at >= 0.8 right 100 %. The drum loops weighed three times (2026-12-02, fifteenth session):
profiles that tell modes apart leave larger margins, and at weight 1 the held-out loops through the gate read 9 of 41
over 0.8; at 3 they read median 0.34 and 4 over 0.8, and songs mean confidence 0.90, those at >= 0.8 right 100 %
(those under 0.5 are right more often than their confidence says: the safe side).

"Unknown" (no key) is kept for material without sustained pitch: silence, noise, drums alone (see has_pitch), or a
single pitch class (a lone tone and its harmonics). Anything else with a tonal centre, e.g. distorted power chords,
gets its best key with an honest, possibly low, confidence.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import chroma as chroma_mod
from .frontend import HOP

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

# Published key profiles (index 0 = tonic), as (major, minor): candidates for the fitted model and its fallback.
PROFILES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # Krumhansl & Kessler (1982), probe-tone ratings.
    "krumhansl": ((6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88),
                  (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)),
    # Temperley (1999), "What's key for key?".
    "temperley": ((5.0, 2.0, 3.5, 2.0, 4.5, 4.0, 2.0, 4.5, 2.0, 3.5, 1.5, 4.0),
                  (5.0, 2.0, 3.5, 4.5, 2.0, 4.0, 2.0, 4.5, 3.5, 2.0, 1.5, 4.0)),
    # Faraldo et al. (2016), profiles derived from electronic dance music ("edma").
    "edma": ((0.16519551, 0.04749026, 0.08293076, 0.06687112, 0.09994645, 0.09274123, 0.05294487, 0.13159476,
              0.05218986, 0.07443653, 0.06940723, 0.0642515),
             (0.17235348, 0.05336489, 0.0761009, 0.10043649, 0.05621498, 0.08527853, 0.0497915, 0.13451001,
              0.07458916, 0.05003023, 0.09187879, 0.05545106)),
    # Faraldo (2017) "bgate" profiles, as used by Essentia's KeyExtractor.
    "bgate": ((1.00, 0.00, 0.42, 0.00, 0.53, 0.37, 0.00, 0.77, 0.00, 0.38, 0.21, 0.30),
              (1.00, 0.00, 0.36, 0.39, 0.00, 0.38, 0.00, 0.74, 0.27, 0.00, 0.42, 0.23)),
}

MODEL_PATH = Path(__file__).resolve().parent / "models" / "key_model.json"

#: No key without sustained pitch. Measured on the rendered training set (first 194 clips) and synthesized audio:
#: - sustained share (the share of the band's spectral magnitude in peaks that last over +-46 ms): every clip with a
#:   key 0.14 or more (funk and house the lowest; a dev-corpus funk clip 0.128), drum kits alone 0.03-0.12 (one at
#:   0.17), white noise 0.26;
#: - chroma flatness (median over segments of median / maximum of the segment's chroma): clips with a key 0.51 at
#:   most (distorted metal and funk the flattest), drum kits 0.38-0.79 (tuned toms make some look pitched), white
#:   noise 0.9, brown noise 0.69.
#: No key when the sustained share is under MIN_SUSTAINED_SHARE, the flatness over MAX_FLATNESS, or both are
#: borderline (share under WEAK_SUSTAINED_SHARE with flatness over WEAK_MAX_FLATNESS). The limits leave room on the
#: music side: a drum loop given a low-confidence key costs less than a song answered "Unknown".
MIN_SUSTAINED_SHARE = 0.1
MAX_FLATNESS = 0.62
WEAK_SUSTAINED_SHARE = 0.125
WEAK_MAX_FLATNESS = 0.45
#: Without either third of the tonic (minor or major) at this share of the strongest pitch class, as with bare power
#: chords, nothing in the pitch content tells major from minor: the confidence is capped at a coin toss (0.5).
THIRD_SHARE = 0.15
#: A pitch class counts as present at this share of the strongest; fewer than two present is one note and its
#: harmonics (a lone tone: the transcription leaves at most ~0.16 on the notes that share a partial with it), no key.
#: A bare power chord (root + fifth) has two.
PRESENT_SHARE = 0.3


@dataclass(frozen=True)
class KeyModel:
    """Chroma settings and the linear key scorer (see the module docstring); loaded from models/key_model.json."""

    compression: float          # power applied to peak magnitudes (0.5 = square root)
    segment_seconds: float      # frames are averaged into segments this long before the transcription
    partial_decay: float        # amplitude ratio of successive partials in the note templates
    n_partials: int             # partials per note template
    lowest_note: int            # MIDI number of the lowest transcribed note
    n_notes: int                # transcribed notes (semitones upwards from lowest_note)
    bass_below: int             # notes below this MIDI number form the bass view
    treble_profiles: np.ndarray  # (2, 12) major, minor weights of the whole-range chroma (index 0 = tonic)
    bass_profiles: np.ndarray   # (2, 12) the same for the bass chroma
    minor_bias: float           # added to every minor key's score
    calibration: tuple[float, ...]  # (a, b, c, d, e, f, g): see confidence()
    chord_sharpness: float = 20.0    # softmax sharpness of the per-segment triad posterior (see chord_histogram)
    chord_bass_weight: float = 0.5   # weight of the bass chroma on a triad's root in its segment score
    chord_profiles: np.ndarray = field(default_factory=lambda: np.zeros((2, 24)))  # (2, 24) major, minor weights
    #                                of the triad histogram rotated to the tonic (12 major triads, then 12 minor)

    @classmethod
    def from_dict(cls, d: dict) -> "KeyModel":
        return cls(compression=float(d["compression"]), segment_seconds=float(d["segment_seconds"]),
                   partial_decay=float(d["partial_decay"]), n_partials=int(d["n_partials"]),
                   lowest_note=int(d["lowest_note"]), n_notes=int(d["n_notes"]), bass_below=int(d["bass_below"]),
                   treble_profiles=np.asarray(d["treble_profiles"], dtype=np.float64).reshape(2, 12),
                   bass_profiles=np.asarray(d["bass_profiles"], dtype=np.float64).reshape(2, 12),
                   minor_bias=float(d["minor_bias"]),
                   calibration=tuple(float(v) for v in d["calibration"]),
                   chord_sharpness=float(d.get("chord_sharpness", 20.0)),
                   chord_bass_weight=float(d.get("chord_bass_weight", 0.5)),
                   chord_profiles=np.asarray(d.get("chord_profiles", np.zeros((2, 24))),
                                             dtype=np.float64).reshape(2, 24))

    def to_dict(self) -> dict:
        return {"compression": self.compression, "segment_seconds": self.segment_seconds,
                "partial_decay": self.partial_decay, "n_partials": self.n_partials, "lowest_note": self.lowest_note,
                "n_notes": self.n_notes, "bass_below": self.bass_below,
                "treble_profiles": np.round(self.treble_profiles, 6).tolist(),
                "bass_profiles": np.round(self.bass_profiles, 6).tolist(),
                "minor_bias": round(self.minor_bias, 6), "calibration": [round(v, 6) for v in self.calibration],
                "chord_sharpness": self.chord_sharpness, "chord_bass_weight": self.chord_bass_weight,
                "chord_profiles": np.round(self.chord_profiles, 6).tolist()}


@lru_cache(maxsize=1)
def default_model() -> KeyModel:
    """The committed model (read once per process)."""
    d = json.loads(MODEL_PATH.read_text())
    return KeyModel.from_dict(d["model"] if "model" in d else d)


@dataclass(frozen=True)
class KeyEstimate:
    key_index: int | None        # tonic pitch class, 0 = C
    mode: str | None             # "major" / "minor"
    confidence: float            # 0..1, calibrated probability that the key is exactly right
    chroma: np.ndarray           # (12,) whole-range chroma of the transcribed notes, max 1 (zeros when none)
    correlations: np.ndarray     # (24,) correlation of the chroma with each key's profile: 0..11 major, 12..23 minor
    tuning: float                # semitones relative to A440 equal temperament, -0.5..0.5

    @property
    def name(self) -> str | None:
        if self.key_index is None or self.mode is None:
            return None
        return f"{PITCH_CLASSES[self.key_index]} {'Major' if self.mode == 'major' else 'Minor'}"

    @property
    def camelot(self) -> str | None:
        return camelot(self.key_index, self.mode)


def camelot(key_index: int | None, mode: str | None) -> str | None:
    """Camelot wheel code: C major = 8B, A minor = 8A; neighbours on the wheel are a fifth apart."""
    if key_index is None or mode is None:
        return None
    major_pc = key_index if mode == "major" else (key_index + 3) % 12
    number = ((7 * major_pc) % 12 + 7) % 12 + 1
    return f"{number}{'B' if mode == 'major' else 'A'}"


def chroma_views(pf: chroma_mod.PitchFrames, model: KeyModel) -> tuple[np.ndarray, np.ndarray]:
    """(n_segments, 12) whole-range and bass chroma of a clip, each segment scaled to unit sum (zeros if empty)."""
    V = chroma_mod.segment_spectra(pf, compression=model.compression, segment_seconds=model.segment_seconds)
    W = chroma_mod.note_templates(model.partial_decay, model.n_partials, model.lowest_note, model.n_notes)
    H = chroma_mod.transcribe(V, W)
    notes = model.lowest_note + np.arange(model.n_notes)
    whole = chroma_mod.fold(H, model.lowest_note, np.ones(model.n_notes))
    bass = chroma_mod.fold(H, model.lowest_note, (notes < model.bass_below).astype(np.float64))
    return _unit_sum(whole), _unit_sum(bass)


def _unit_sum(C: np.ndarray) -> np.ndarray:
    s = C.sum(axis=1, keepdims=True)
    return np.divide(C, s, out=np.zeros_like(C), where=s > 0)


def _triad_templates() -> np.ndarray:
    """(24, 12): rows 0..11 the major triads on C..B, rows 12..23 the minor triads (root, third, fifth = 1)."""
    T = np.zeros((24, 12))
    for root in range(12):
        T[root, [root, (root + 4) % 12, (root + 7) % 12]] = 1.0
        T[12 + root, [root, (root + 3) % 12, (root + 7) % 12]] = 1.0
    return T


TRIADS = _triad_templates()


def chord_histogram(whole_seg: np.ndarray, bass_seg: np.ndarray, model: KeyModel) -> np.ndarray:
    """(24,) how much of the clip each triad (major C..B, minor C..B) accounts for: per segment a softmax over the
    triads' scores (chroma on the triad's notes, plus the bass on its root), averaged, scaled to sum 12 (the size of
    a standardized chroma's squares). The chords say what a chroma sum cannot: B major with its own F# major chord
    is told from E major, whose chroma it nearly shares, by which triads occur together."""
    if whole_seg.shape[0] == 0:
        return np.zeros(24)
    scores = whole_seg @ TRIADS.T + model.chord_bass_weight * np.tile(bass_seg, 2)
    z = model.chord_sharpness * (scores - scores.max(axis=1, keepdims=True))
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return 12.0 * p.mean(axis=0)


def rotations(profile: np.ndarray) -> np.ndarray:
    """(12, 12): row k is `profile` (index 0 = tonic) rotated to tonic k."""
    return np.asarray([np.roll(profile, k) for k in range(12)])


def standardized(c: np.ndarray) -> np.ndarray:
    """A chroma shifted to zero mean and scaled to unit standard deviation (zeros when it is flat)."""
    sd = float(c.std())
    return (c - c.mean()) / sd if sd > 1e-12 else np.zeros_like(c)


def _rotated_chords(weights: np.ndarray) -> np.ndarray:
    """(12, 24): row k applies 24 tonic-relative triad weights to the triad histogram of tonic k."""
    return np.hstack([rotations(weights[:12]), rotations(weights[12:])])


def key_scores(whole: np.ndarray, bass: np.ndarray, chords: np.ndarray, model: KeyModel) -> np.ndarray:
    """(24,) score per key (0..11 major C..B, 12..23 minor) of a clip's mean whole-range and bass chroma and its
    triad histogram."""
    zw, zb = standardized(whole), standardized(bass)
    scores = np.concatenate([rotations(model.treble_profiles[m]) @ zw + rotations(model.bass_profiles[m]) @ zb
                             + _rotated_chords(model.chord_profiles[m]) @ chords for m in (0, 1)])
    scores[12:] += model.minor_bias
    return scores


def profile_correlations(c: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """(24,) Pearson correlation of chroma `c` with each rotation of the (2, 12) major/minor `profiles`."""
    zc = standardized(c)
    rows = np.concatenate([rotations(standardized(profiles[m])) for m in (0, 1)])
    return rows @ zc / 12.0


def chroma_flatness(whole_seg: np.ndarray) -> float:
    """Median over segments of (median / maximum) of each segment's chroma: ~0.9 for noise, ~0.1-0.45 for music."""
    top = whole_seg.max(axis=1)
    ok = top > 0
    if not np.any(ok):
        return 1.0
    return float(np.median(np.median(whole_seg[ok], axis=1) / top[ok]))


def _pitch_classes_present(chroma: np.ndarray) -> int:
    top = float(chroma.max()) if chroma.size else 0.0
    return int(np.count_nonzero(chroma >= PRESENT_SHARE * top)) if top > 0 else 0


def spectrum_chroma(pf: chroma_mod.PitchFrames) -> np.ndarray:
    """(12,) the clip's peak magnitudes folded onto pitch classes as measured, before the transcription: a pure
    tone has one pitch class here, where the note templates can explain it as a partial of lower notes."""
    return chroma_mod.fold(pf.semitones.mean(axis=0, keepdims=True), chroma_mod.LOWEST_PITCH,
                           np.ones(pf.semitones.shape[1]))[0]


def has_pitch(whole_seg: np.ndarray, sustained_share: float, measured: np.ndarray) -> bool:
    """Whether a clip shows sustained pitched content: enough sustained peaks (not percussion), segment chroma that
    are not flat (not noise, not drums) and more than one pitch class (not a lone tone) both in the transcription
    (a tone's harmonics are its own note there) and in `measured`, the spectrum before it (spectrum_chroma): a
    sine's subharmonic "notes" are the transcription's (a 262 Hz sine read 0.38 on the F whose third partial it
    could be, and got "F Minor" at confidence 1.0)."""
    if _pitch_classes_present(whole_seg.mean(axis=0)) < 2:
        return False
    if _pitch_classes_present(measured) < 2:
        return False
    flatness = chroma_flatness(whole_seg)
    if sustained_share < MIN_SUSTAINED_SHARE or flatness > MAX_FLATNESS:
        return False
    return not (sustained_share < WEAK_SUSTAINED_SHARE and flatness > WEAK_MAX_FLATNESS)


def triad_share(whole_seg: np.ndarray) -> float:
    """Median over segments of the best triad's share of the segment's chroma (each segment sums to 1): chords and
    their bass put 0.35-0.8 of it on three pitch classes (distorted power chords the least), drums spread it
    (0.3-0.5)."""
    if whole_seg.shape[0] == 0:
        return 0.0
    return float(np.median((whole_seg @ TRIADS.T).max(axis=1)))


def chroma_change(whole_seg: np.ndarray) -> float:
    """Median over consecutive segments of how much the segment chroma (each summing to 1) changes, as an L1
    distance: music moves (held-out rendered songs 0.31-0.87, 10th to 90th percentile), a drum loop repeats its bar
    (held-out loops that pass the no-key gate 0.15-0.31). CHANGE_CENTRE for a clip of one segment."""
    if whole_seg.shape[0] < 2:
        return CHANGE_CENTRE
    return float(np.median(np.abs(np.diff(whole_seg, axis=0)).sum(axis=1)))


#: Centres of the pitch-evidence terms of the confidence (typical of songs at the low end of each), and the length
#: of clip the duration term is zero at (a preview's 30 s; longer clips count as 30 s).
SUSTAINED_CENTRE, TRIAD_CENTRE, SECONDS_CENTRE, CHANGE_CENTRE, IN_TUNE_CENTRE = 0.2, 0.5, 30.0, 0.4, 0.4
#: Terms of the confidence (calibration_terms): a model's calibration has at most this many weights.
N_CALIBRATION_TERMS = 7


def clip_evidence(whole_seg: np.ndarray, sustained_share: float, segment_seconds: float,
                  tuning_strength: float) -> tuple[float, ...]:
    """What the confidence weighs besides the score margin, in calibration_terms' order: the sustained share, the
    triad share, the seconds heard (segments that sound), the chroma change of a clip's segment chroma and how
    consistently its peaks sit on one tuning (chroma.PitchFrames.tuning_strength)."""
    return (sustained_share, triad_share(whole_seg), whole_seg.shape[0] * segment_seconds, chroma_change(whole_seg),
            tuning_strength)


def calibration_terms(margin, sustained_share, triads, seconds=SECONDS_CENTRE, change=CHANGE_CENTRE,
                      in_tune=IN_TUNE_CENTRE) -> np.ndarray:
    """(..., 7) what the confidence weighs, for one clip or arrays of them (benchmarks/fit_key.py fits the weights on
    these): the margin (best score minus the runner-up's), 1, ln(sustained share / SUSTAINED_CENTRE), triad share
    - TRIAD_CENTRE, ln(seconds heard / SECONDS_CENTRE), at most 0 (two chords of a 6-s clip say less about the key
    than a 30-s preview's phrase, however clear each chord is), chroma_change - CHANGE_CENTRE (a loop whose
    tuned drums repeat one "chord" every bar wins one key by far, however little that key means) and tuning
    strength - IN_TUNE_CENTRE (tuned drums ring at pitches no scale chose; a band plays in one tuning)."""
    margin, sustained_share, triads, seconds, change, in_tune = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (margin, sustained_share, triads, seconds, change, in_tune)))
    return np.stack([margin, np.ones_like(margin), np.log(np.maximum(sustained_share, 1e-3) / SUSTAINED_CENTRE),
                     triads - TRIAD_CENTRE, np.log(np.clip(seconds, 1.0, SECONDS_CENTRE) / SECONDS_CENTRE),
                     change - CHANGE_CENTRE, in_tune - IN_TUNE_CENTRE], axis=-1)


def confidence(scores: np.ndarray, calibration: tuple[float, ...], sustained_share: float, triads: float,
               seconds: float = SECONDS_CENTRE, change: float = CHANGE_CENTRE,
               in_tune: float = IN_TUNE_CENTRE) -> float:
    """Calibrated probability that the best-scoring key is right: sigmoid(a * margin + b + c * ln(sustained share /
    SUSTAINED_CENTRE) + d * (triad share - TRIAD_CENTRE) + e * ln(seconds / SECONDS_CENTRE) + f * (chroma change -
    CHANGE_CENTRE) + g * (tuning strength - IN_TUNE_CENTRE)) with calibration (a, b, c, d, e, f, g)
    (calibration_terms). A shorter calibration leaves the missing weights at zero ((a, b) is the margin alone)."""
    top2 = np.sort(scores)[-2:]
    weights = np.asarray((tuple(calibration) + (0.0,) * N_CALIBRATION_TERMS)[:N_CALIBRATION_TERMS])
    z = float(calibration_terms(top2[1] - top2[0], sustained_share, triads, seconds, change, in_tune) @ weights)
    return float(1.0 / (1.0 + np.exp(-z)))


def estimate_key(S: np.ndarray, freqs: np.ndarray, *, model: KeyModel | None = None) -> KeyEstimate:
    """Estimate the key from a magnitude spectrogram `S` (n_bins, n_frames; hop frontend.HOP) with bin centres
    `freqs` in Hz. No key (key_index None, confidence 0) for silence, noise, unpitched percussion or a lone tone."""
    model = model or default_model()
    empty = KeyEstimate(None, None, 0.0, np.zeros(12), np.zeros(24), 0.0)
    sr = 2.0 * float(freqs[-1]) if freqs.size > 1 else 0.0
    pf = chroma_mod.pitch_frames(S, freqs, sr / HOP) if sr > 0 else None
    if pf is None:
        return empty
    whole_seg, bass_seg = chroma_views(pf, model)
    if whole_seg.shape[0] == 0:
        return empty
    whole, bass = whole_seg.mean(axis=0), bass_seg.mean(axis=0)
    shown = whole / whole.max() if whole.max() > 0 else whole
    corr = profile_correlations(whole, model.treble_profiles)
    if not has_pitch(whole_seg, pf.sustained_share, spectrum_chroma(pf)):
        return KeyEstimate(None, None, 0.0, shown, corr, pf.tuning)
    scores = key_scores(whole, bass, chord_histogram(whole_seg, bass_seg, model), model)
    best = int(np.argmax(scores))
    tonic = best % 12
    conf = confidence(scores, model.calibration, *clip_evidence(whole_seg, pf.sustained_share, model.segment_seconds,
                                                                pf.tuning_strength))
    if max(whole[(tonic + 3) % 12], whole[(tonic + 4) % 12]) < THIRD_SHARE * float(whole.max()):
        conf = min(conf, 0.5)  # the mode is a guess: the linear scores extrapolate on such sparse chroma
    return KeyEstimate(tonic, "major" if best < 12 else "minor", conf, shown, corr, pf.tuning)
