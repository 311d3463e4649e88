"""Tonal harmony the composers share: scales, chords named by roman numeral, phrase templates, voice leading.

Pitches are MIDI numbers; pitch classes are 0..11 with 0 = C. A chord is named relative to the tonic ("V/V",
"bVI", "iio") and realised in a key as a root pitch class and its chord tones.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

PITCH_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10),
          # the church modes rock, folk and game music are written in, named by their tonic and their third
          "mixolydian": (0, 2, 4, 5, 7, 9, 10), "dorian": (0, 2, 3, 5, 7, 9, 10)}
#: Modal scale -> the mode its key is annotated in: a song in C mixolydian is "C major" (its tonic and its major
#: third), D dorian is "D minor", as annotators and DJ software name such songs.
MODE_OF_SCALE = {"mixolydian": "major", "dorian": "minor"}

QUALITIES = {
    "maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "dom7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11),
    "min7": (0, 3, 7, 10), "hdim7": (0, 3, 6, 10),
}

#: Roman numeral -> (root in semitones above the tonic, quality). Major- and minor-key names share one table:
#: a borrowed chord has the name its home mode gives it ("iv" in major is the minor key's iv).
CHORDS = {
    "I": (0, "maj"), "Imaj7": (0, "maj7"), "ii": (2, "min"), "ii7": (2, "min7"), "iii": (4, "min"),
    "IV": (5, "maj"), "IVmaj7": (5, "maj7"), "V": (7, "maj"), "V7": (7, "dom7"), "vi": (9, "min"),
    "vi7": (9, "min7"), "viio": (11, "dim"),
    # modal mixture (borrowed from the parallel minor) and the Neapolitan
    "iv": (5, "min"), "bVI": (8, "maj"), "bVII": (10, "maj"), "bIII": (3, "maj"), "bII": (1, "maj"),
    # secondary dominants: V7 of the chord named after the slash
    "V/V": (2, "dom7"), "V/vi": (4, "dom7"), "V/IV": (0, "dom7"), "V/ii": (9, "dom7"), "V/iv": (0, "dom7"),
    "V/III": (10, "dom7"), "V/VI": (3, "dom7"),
    # minor-key diatonic chords (V and V7 above are the harmonic-minor dominant)
    "i": (0, "min"), "i7": (0, "min7"), "iio": (2, "hdim7"), "III": (3, "maj"), "v": (7, "min"), "VI": (8, "maj"),
    "VII": (10, "maj"),
}

#: Phrases as composers write them, one chord per slot, each ending in a named cadence. "half" ends on V,
#: "authentic" on I after V, "relative" tonicises the relative key (vi in major, III in minor) and cadences there.
PHRASES = {
    "major": {
        "half": [["I", "vi", "IV", "V"], ["I", "IV", "V/V", "V"], ["I", "iii", "IV", "V"], ["I", "iv", "I", "V"],
                 ["I", "bVII", "IV", "V"], ["I", "vi", "ii", "V"], ["I", "V/IV", "IV", "V"]],
        "authentic": [["I", "IV", "V7", "I"], ["I", "ii", "V7", "I"], ["I", "V/V", "V7", "I"],
                      ["I", "iv", "V7", "I"], ["I", "bVI", "bVII", "I"], ["vi", "ii", "V7", "I"],
                      ["I", "V/ii", "ii", "V7", "I", "IV", "V7", "I"], ["IV", "iv", "I", "V7", "I", "vi", "V7", "I"],
                      ["I", "V/vi", "vi", "IV", "I", "ii", "V7", "I"]],
        "relative": [["I", "iii", "V/vi", "vi"], ["I", "ii", "V/vi", "vi"], ["IV", "V/vi", "vi", "vi"]],
    },
    "minor": {
        "half": [["i", "iv", "i", "V"], ["i", "VI", "iv", "V"], ["i", "VII", "VI", "V"], ["i", "III", "iv", "V"],
                 ["i", "IV", "iv", "V"], ["i", "v", "iv", "V"], ["i", "bII", "V", "V"]],
        "authentic": [["i", "iv", "V7", "i"], ["i", "iio", "V7", "i"], ["i", "VI", "V7", "i"],
                      ["i", "bII", "V7", "i"], ["i", "VII", "III", "VI", "iio", "V7", "i", "i"],
                      ["i", "V/iv", "iv", "V7", "i", "VI", "V7", "i"], ["iv", "V7", "i", "i"]],
        "relative": [["i", "iv", "VII", "III"], ["i", "V/III", "III", "III"], ["i", "VI", "V/III", "III"]],
    },
}

#: Four-chord loops of groove styles, each starting on the tonic so the loop names its key.
LOOPS = {
    "major": [["I", "V", "vi", "IV"], ["I", "IV", "vi", "V"], ["I", "bVII", "IV", "I"], ["I", "vi", "IV", "V"],
              ["I", "IV", "I", "V"], ["I", "iii", "IV", "iv"], ["I", "ii", "IV", "V"]],
    "minor": [["i", "VI", "III", "VII"], ["i", "iv", "VI", "V"], ["i", "VII", "VI", "VII"], ["i", "iv", "v", "i"],
              ["i", "VI", "iv", "V"], ["i", "i", "VI", "V"], ["i", "III", "VII", "iv"]],
}

#: Four-chord loops of songs in a mode, each starting on the tonic; the mode's own degree sounds in every loop (the
#: flat seventh of mixolydian in bVII or v, the raised sixth of dorian in IV or ii).
MODAL_LOOPS = {
    "mixolydian": [["I", "bVII", "IV", "I"], ["I", "bVII", "I", "IV"], ["I", "v", "bVII", "IV"],
                   ["I", "IV", "bVII", "IV"], ["I", "vi", "bVII", "I"]],
    "dorian": [["i", "IV", "i", "IV"], ["i", "bVII", "IV", "i"], ["i", "ii", "bIII", "IV"], ["i", "IV", "bVII", "i"],
               ["i", "v", "IV", "i"]],
}

#: Major and minor key profiles (tonic first) used to check that a composition names its key unambiguously:
#: Krumhansl-Kessler's probe-tone ratings and Temperley's Kostka-Payne corpus frequencies.
KEY_PROFILES = {
    "krumhansl": (np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]),
                  np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])),
    "temperley": (np.array([.748, .060, .488, .082, .670, .460, .096, .715, .104, .366, .057, .400]),
                  np.array([.712, .084, .474, .618, .049, .460, .105, .747, .404, .067, .133, .330])),
}


def modal_profiles(profiles: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(mixolydian, dorian) versions of (major, minor) key profiles: the weights of the seventh degrees (major) or
    of the sixth degrees (minor) swapped, so a profile expects the mode's own scale."""
    mixolydian, dorian = profiles[0].copy(), profiles[1].copy()
    mixolydian[[10, 11]] = mixolydian[[11, 10]]
    dorian[[8, 9]] = dorian[[9, 8]]
    return mixolydian, dorian


@dataclass(frozen=True)
class Chord:
    """A chord realised in a key: its name, root pitch class and the pitch classes it holds (root first)."""

    name: str
    root: int
    pcs: tuple[int, ...]


def realise(name: str, tonic: int) -> Chord:
    degree, quality = CHORDS[name]
    root = (tonic + degree) % 12
    return Chord(name, root, tuple((root + i) % 12 for i in QUALITIES[quality]))


def key_name(tonic: int, mode: str) -> str:
    """"A minor" / "F# major", as the dev corpus's truth.json writes keys."""
    return f"{PITCH_CLASSES[tonic]} {mode}"


def local_scale(tonic: int, mode: str, chord: Chord) -> list[int]:
    """Pitch classes a melody may use over `chord`: the scale of `mode` (a key of SCALES) with the chord's tones
    replacing the scale degree each one alters (F# over V/V in C, the raised leading tone over V in minor)."""
    scale = [(tonic + s) % 12 for s in SCALES[mode]]
    for pc in chord.pcs:
        if pc in scale:
            continue
        # replace the scale note a semitone away (the one this chromatic tone alters)
        for candidate in ((pc - 1) % 12, (pc + 1) % 12):
            if candidate in scale and candidate not in chord.pcs:
                scale[scale.index(candidate)] = pc
                break
    return sorted(set(scale))


def voice_lead(chord: Chord, previous: tuple[int, ...] | None, low: int, high: int, voices: int = 4,
               rng: np.random.Generator | None = None) -> tuple[int, ...]:
    """The voicing of `chord` (sorted pitches in [low, high]) that moves least from `previous`, with the root and
    third present, no gap wider than an octave between upper voices, and the seventh when the chord has one."""
    pitches = [p for p in range(low, high + 1) if p % 12 in chord.pcs]
    required = {chord.pcs[0], chord.pcs[1]} | ({chord.pcs[3]} if len(chord.pcs) > 3 else set())
    best, best_cost = None, float("inf")
    for combo in itertools.combinations(pitches, voices):
        if not required <= {p % 12 for p in combo}:
            continue
        if any(b - a > 12 or b == a for a, b in zip(combo, combo[1:])):
            continue
        if previous is None:
            cost = abs(np.mean(combo) - (low + high) / 2)
        else:
            cost = sum(abs(a - b) for a, b in zip(combo, previous))
        if rng is not None:
            cost += rng.uniform(0, 0.5)  # break ties differently per song
        if cost < best_cost:
            best, best_cost = combo, cost
    if best is None:  # range too narrow for the rules: take the closest tones, root first
        best = tuple(sorted(pitches[:voices]))
    return tuple(best)


def pitch_class_histogram(notes) -> np.ndarray:
    """Duration-weighted pitch-class histogram of tonal notes (drum-channel notes excluded)."""
    hist = np.zeros(12)
    for n in notes:
        if n.channel != 9:
            hist[n.pitch % 12] += n.dur * (n.vel / 100.0)
    return hist


def best_key(hist: np.ndarray, profiles: tuple[np.ndarray, np.ndarray] = KEY_PROFILES["krumhansl"]
             ) -> tuple[int, str, float]:
    """(tonic, mode, margin): the key whose (major, minor) profile correlates best with `hist`, and its lead in
    correlation over the runner-up."""
    scores = []
    for mode, profile in zip(("major", "minor"), profiles):
        for tonic in range(12):
            scores.append((float(np.corrcoef(hist, np.roll(profile, tonic))[0, 1]), tonic, mode))
    scores.sort(reverse=True)
    return scores[0][1], scores[0][2], scores[0][0] - scores[1][0]
