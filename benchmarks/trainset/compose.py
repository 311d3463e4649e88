"""Deterministic composition of annotated songs: notes in beats at a known tempo, key and meter.

`compose(style, seed, tonic, mode, bpm)` returns a Song whose notes were written by that style's composer: a
harmonic plan of phrases with cadences (or a groove's four-chord loop), a bass on the chord roots, an
accompaniment texture (block chords with suspensions, arpeggios, Alberti bass, strumming, power chords, comping),
a melody that puts chord tones on the beats and passing or neighbour tones between them, and drums. The same
arguments always give the same notes. `to_midi` writes the song as a type-0 MIDI file for FluidSynth.

Times are in beats of the composed tempo: the beat a listener taps for half-time hip-hop (whose double is given as
alt_bpm). Trap is composed at its half-time pulse but annotated the way ../shared/corpus annotates it (and producers
set the session tempo): at the double, 130-160, with the half-time pulse as alt_bpm (see `annotated_tempo`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import mido
import numpy as np

from benchmarks.trainset import drums as drumkit
from benchmarks.trainset.theory import (KEY_PROFILES, LOOPS, MODAL_LOOPS, MODE_OF_SCALE, PHRASES, Chord, best_key,
                                        key_name, local_scale, modal_profiles, pitch_class_histogram, realise,
                                        voice_lead)

DRUM_CHANNEL = 9
#: Triads a seventh-chord style (bossa, jazz) plays as sevenths.
SEVENTHS = {"I": "Imaj7", "ii": "ii7", "IV": "IVmaj7", "vi": "vi7", "i": "i7", "V": "V7"}
#: Seconds of music composed per song: the rendered clip is a 30 s window starting up to 5 s in.
COMPOSED_SECONDS = 37.0
#: Width (octaves of chord duration) of the preference for a style's usual chord length when the harmonic rhythm
#: is drawn (Composer.chord_beats with varied_harmony): one octave keeps each of a style's choices likely.
HARMONY_SPREAD_OCTAVES = 1.0


@dataclass(frozen=True)
class Note:
    start: float  # beats
    dur: float  # beats
    pitch: int
    vel: int
    channel: int


@dataclass(frozen=True)
class Slot:
    """One chord of the harmonic plan: where it starts, how long it lasts, and the cadence it closes (if any)."""

    start: float
    dur: float
    chord: Chord
    cadence: str | None = None


@dataclass
class Song:
    style: str
    seed: int
    bpm: float
    alt_bpm: list[float]
    tonic: int | None
    mode: str | None
    meter: int  # beats per bar
    programs: dict[int, int] = field(default_factory=dict)  # MIDI channel -> GM program
    notes: list[Note] = field(default_factory=list)
    sub_bass: list[Note] = field(default_factory=list)  # 808 notes, synthesised by the renderer, not FluidSynth
    texture: str | None = None  # the accompaniment played, for styles with a choice (TEXTURES)
    modal_scale: str | None = None  # "mixolydian" / "dorian" for a song in a mode (its key names its tonic and
    #                                 third: MODE_OF_SCALE), None for the major or minor scale

    @property
    def scale(self) -> str | None:
        """The scale the melody and bass draw from (a key of theory.SCALES)."""
        return self.modal_scale or self.mode

    @property
    def key(self) -> str | None:
        return key_name(self.tonic, self.mode) if self.tonic is not None else None

    @property
    def has_drums(self) -> bool:
        return any(n.channel == DRUM_CHANNEL for n in self.notes)

    @property
    def seconds_per_beat(self) -> float:
        return 60.0 / self.bpm


class Composer:
    """Parts a style assembles: each method appends notes for the whole song to `song.notes`."""

    def __init__(self, song: Song, rng: np.random.Generator, *, varied_harmony: bool = False,
                 varied_texture: bool = False, varied_loops: bool = False):
        self.song, self.rng = song, rng
        self.varied_harmony = varied_harmony  # see chord_beats
        self.varied_texture = varied_texture  # see texture
        self.varied_loops = varied_loops      # see drum_loop
        self.n_bars = int(np.ceil(COMPOSED_SECONDS * song.bpm / 60.0 / song.meter))
        self.n_beats = self.n_bars * song.meter
        self.timeline: list[Slot] = []
        self.sevenths = False  # jazz and bossa harmony: diatonic sevenths instead of triads

    # ---- harmony -------------------------------------------------------------------------------------------
    def plan_phrases(self, beats_per_chord: float) -> None:
        """Phrases in a classical order: a half cadence, an authentic cadence, a move to the relative key, home."""
        s = self.song
        order = ["half", "authentic", "relative", "authentic"]
        if self.rng.random() < 0.4:
            order = ["authentic", "half", "authentic", "relative", "half", "authentic"]
        names, cadences, i = [], [], 0
        while len(names) * beats_per_chord < self.n_beats:
            kind = order[i % len(order)]
            options = PHRASES[s.mode][kind]
            phrase = options[int(self.rng.integers(len(options)))]
            names += phrase
            cadences += [None] * (len(phrase) - 1) + [kind]
            i += 1
        self._fill(names, cadences, beats_per_chord)

    def plan_loop(self, beats_per_chord: float) -> None:
        """A groove's four-chord loop, repeated (one of its mode's for a modal song)."""
        options = MODAL_LOOPS[self.song.modal_scale] if self.song.modal_scale else LOOPS[self.song.mode]
        loop = options[int(self.rng.integers(len(options)))]
        n = int(np.ceil(self.n_beats / beats_per_chord))
        self._fill([loop[i % 4] for i in range(n)], [None] * n, beats_per_chord)

    def _fill(self, names: list[str], cadences: list[str | None], beats_per_chord: float) -> None:
        if self.sevenths:
            names = [SEVENTHS.get(n, n) for n in names]
        self.timeline = [Slot(i * beats_per_chord, beats_per_chord, realise(name, self.song.tonic), cad)
                         for i, (name, cad) in enumerate(zip(names, cadences)) if i * beats_per_chord < self.n_beats]

    def chord_beats(self, target_seconds: float, choices: tuple[float, ...] | None = None) -> float:
        """The harmonic rhythm (beats per chord): the choice whose duration is nearest `target_seconds`, or with
        `varied_harmony` one drawn at random, the nearer ones likelier (weights falling as a Gaussian in octaves
        of duration, HARMONY_SPREAD_OCTAVES wide).

        Why the draw: the nearest duration alone keeps every song's chords about `target_seconds` long whatever
        its tempo, so a chorale at 90 BPM changes chord every two beats and one at 50 on every beat, and the chord
        rate says nothing about where the beat is. Composers choose harmonic rhythm in beats and bars, slower
        pieces only tending to more chords per beat."""
        m = self.song.meter
        choices = choices or (m / 2 if m == 4 else m, m, 2 * m)
        spb = self.song.seconds_per_beat
        if not self.varied_harmony:
            return min(choices, key=lambda b: abs(b * spb - target_seconds))
        octaves = np.log2(np.array(choices, dtype=float) * spb / target_seconds)
        weights = np.exp(-0.5 * (octaves / HARMONY_SPREAD_OCTAVES) ** 2)
        return float(choices[int(self.rng.choice(len(choices), p=weights / weights.sum()))])

    def texture(self) -> str:
        """The accompaniment the song's style plays (recorded in song.texture): its usual one (the first of
        TEXTURES[style]), or with `varied_texture` one drawn from all of them.

        Why: one texture per style lets a model learn "arpeggio eighths under a slow melody means a ballad" and
        nothing about how a ballad whose piano strikes its chords on every beat, or repeats them in eighths, is
        tapped. Players choose among these at any tempo, and the beat stays where the chords and melody put it."""
        return self._choose(TEXTURES[self.song.style], self.varied_texture)

    def drum_loop(self) -> str:
        """The loop a percussion song plays (recorded in song.texture): the sparse hand-percussion loop, or with
        `varied_loops` one drawn from DRUM_LOOPS, which adds the kit grooves of the band and dance styles.

        Why: drum loops people send are mostly a kit groove alone; without these the only drums without harmony
        a model sees are the sparse loop, and every groove it knows comes with chords that say where the bar is.
        An option of its own, not a texture, so that the --varied-texture batches rendered before it rebuild."""
        return self._choose(tuple(DRUM_LOOPS), self.varied_loops)

    def _choose(self, options: tuple[str, ...], drawn: bool) -> str:
        self.song.texture = options[int(self.rng.integers(len(options)))] if drawn else options[0]
        return self.song.texture

    def chord_at(self, beat: float) -> Slot:
        for slot in self.timeline:
            if slot.start <= beat < slot.start + slot.dur:
                return slot
        return self.timeline[-1]

    def add(self, start: float, dur: float, pitch: int, vel: float, channel: int) -> None:
        if start < self.n_beats and 0 <= pitch <= 127:
            self.song.notes.append(Note(round(start, 6), max(dur, 0.05), int(pitch),
                                        int(np.clip(vel, 1, 127)), channel))

    # ---- bass ----------------------------------------------------------------------------------------------
    def bass(self, channel: int, program: int, rhythm: list[tuple[float, float]], *, low: int = 33,
             fifths: bool = False, octaves: bool = False, vel: int = 90) -> None:
        """Chord roots in a bass register; `rhythm` is (offset, dur) per chord slot; optional fifths/octaves on
        the off positions."""
        self.song.programs[channel] = program
        for slot in self.timeline:
            root = low + (slot.chord.root - low) % 12
            for j, (off, dur) in enumerate(rhythm):
                if off >= slot.dur:
                    continue
                pitch = root
                if fifths and j % 2 == 1:
                    pitch = root + 7 if root + 7 <= low + 19 else root - 5
                if octaves and j % 2 == 1:
                    pitch = root + 12
                self.add(slot.start + off, min(dur, slot.dur - off), pitch, vel + self.rng.integers(-8, 8), channel)

    def walking_bass(self, channel: int, program: int = 32) -> None:
        """Quarter notes: the root on the chord's first beat, chord and scale tones between, a chromatic or
        dominant approach into the next root."""
        s = self.song
        s.programs[channel] = program
        low, high = 31, 55
        for k, slot in enumerate(self.timeline):
            nxt = self.timeline[k + 1].chord.root if k + 1 < len(self.timeline) else s.tonic
            root = low + 5 + (slot.chord.root - low - 5) % 12
            target = low + 5 + (nxt - low - 5) % 12
            beats = int(slot.dur)
            scale = local_scale(s.tonic, s.scale, slot.chord)
            pitch = root
            for b in range(beats):
                if b == 0:
                    pitch = root
                elif b == beats - 1:
                    pitch = target + (1 if self.rng.random() < 0.5 else -1)  # chromatic approach
                else:
                    options = [p for p in range(pitch - 4, pitch + 5) if p % 12 in scale and p != pitch
                               and low <= p <= high]
                    tones = [p for p in options if p % 12 in slot.chord.pcs]
                    pitch = int(self.rng.choice(tones or options or [root]))
                self.add(slot.start + b, 0.9, pitch, 85 + self.rng.integers(-10, 10), channel)

    def sub_808(self) -> None:
        """An 808 sub-bass (synthesised by the renderer): a long note on each chord root, re-triggered half a
        beat before the next chord, tuned where producers tune it (E1..D#2, 41-78 Hz: the sub-bass band a club
        system feels; an octave higher it would sound like a bass guitar's register)."""
        for slot in self.timeline:
            root = 28 + (slot.chord.root - 28) % 12
            self.song.sub_bass.append(Note(slot.start, slot.dur - 0.75, root, 110, -1))
            self.song.sub_bass.append(Note(slot.start + slot.dur - 0.5, 0.45, root, 90, -1))

    # ---- accompaniment -------------------------------------------------------------------------------------
    def block_chords(self, channel: int, program: int, *, low: int = 52, high: int = 76, voices: int = 4,
                     rhythm: list[tuple[float, float]] | None = None, vel: int = 70, suspensions: bool = True,
                     passing: bool = False) -> list[tuple[int, ...]]:
        """Voice-led chords. With `suspensions`, a voice that steps down into a tone of the new chord from a
        tone foreign to it holds the old note for half the chord first (4-3, 9-8, 7-6). With `passing`, a voice
        that leaps a third fills it with the scale step between, on the second half of the chord."""
        s = self.song
        s.programs[channel] = program
        rhythm = rhythm or [(0.0, None)]
        previous, voicings = None, []
        for slot in self.timeline:
            voicing = voice_lead(slot.chord, previous, low, high, voices, self.rng)
            scale = local_scale(s.tonic, s.scale, slot.chord)
            for v, pitch in enumerate(voicing):
                held = previous[v] if previous else None
                suspended = (suspensions and held is not None and 1 <= held - pitch <= 2
                             and held % 12 not in slot.chord.pcs and held % 12 in scale and v >= 1
                             and self.rng.random() < 0.7)
                for off, dur in rhythm:
                    if off >= slot.dur:
                        continue
                    d = slot.dur - off if dur is None else min(dur, slot.dur - off)
                    velocity = vel + self.rng.integers(-6, 6)
                    half = max(0.25, np.floor(d * 2) / 4)  # the resolution, on a 16th near mid-chord
                    if suspended and off == 0.0 and d >= 1.0:
                        self.add(slot.start, half, held, velocity, channel)
                        self.add(slot.start + half, d - half, pitch, velocity - 5, channel)
                    elif passing and held is not None and abs(pitch - held) in (3, 4) and off == 0.0 and d >= 1:
                        step = [p for p in range(min(held, pitch) + 1, max(held, pitch)) if p % 12 in scale]
                        if step and self.rng.random() < 0.6:
                            self.add(slot.start, half, held, velocity, channel)
                            self.add(slot.start + half, d - half, step[0], velocity - 8, channel)
                            continue
                        self.add(slot.start + off, d, pitch, velocity, channel)
                    else:
                        self.add(slot.start + off, d, pitch, velocity, channel)
            previous = voicing
            voicings.append(voicing)
        return voicings

    def arpeggio(self, channel: int, program: int, *, pattern: list[int], step: float, low: int = 48,
                 high: int = 72, vel: int = 70, sustain: float = 1.0, between_beats: bool = False) -> None:
        """Broken chords: `pattern` indexes the voicing (bottom = 0) on every `step` beats (Alberti: 0,2,1,2);
        with `between_beats`, only the notes off the beat (under chords struck on it)."""
        self.song.programs[channel] = program
        previous = None
        for slot in self.timeline:
            voicing = voice_lead(slot.chord, previous, low, high, 3, self.rng)
            previous = voicing
            n = int(round(slot.dur / step))
            for i in range(n):
                pitch = voicing[pattern[i % len(pattern)] % len(voicing)]
                on_beat = (i * step) % 1 == 0
                if between_beats and on_beat:
                    continue
                accent = 8 if on_beat else 0
                self.add(slot.start + i * step, step * sustain, pitch, vel + accent + self.rng.integers(-6, 6),
                         channel)

    def strum(self, channel: int, program: int, *, pattern: str, vel: int = 75) -> None:
        """Guitar strumming: a six-string voicing strummed down ('D') or up ('U') on 8th-note positions of
        `pattern` (one character per 8th of a bar, '.' = no strum), strings a few milliseconds apart."""
        s = self.song
        s.programs[channel] = program
        spread = 0.012 / s.seconds_per_beat  # 12 ms between strings, in beats
        previous = None
        for slot in self.timeline:
            voicing = voice_lead(slot.chord, previous, 43, 71, 5, self.rng)
            previous = voicing
            bass = 40 + (slot.chord.root - 40) % 12
            strings = (bass,) + tuple(p for p in voicing if p != bass)
            for i, c in enumerate(pattern):
                off = i * 0.5
                if c == "." or off >= slot.dur:
                    continue
                order = strings if c == "D" else strings[::-1][:4]  # up-strums catch the top strings
                for j, pitch in enumerate(order):
                    self.add(slot.start + off + j * spread, 0.5 if i + 1 < len(pattern) else 0.9, pitch,
                             vel - (12 if c == "U" else 0) + self.rng.integers(-5, 5), channel)

    def power_chords(self, channel: int, program: int, *, rhythm: list[tuple[float, float]], vel: int = 100,
                     low: int = 40) -> None:
        """Distorted-guitar power chords: root, fifth and octave, played on `rhythm` ((offset, dur) per bar)."""
        self.song.programs[channel] = program
        for slot in self.timeline:
            root = low + (slot.chord.root - low) % 12
            for off, dur in rhythm:
                if off >= slot.dur:
                    continue
                for interval in (0, 7, 12):
                    self.add(slot.start + off, dur, root + interval, vel + self.rng.integers(-8, 4), channel)

    def comping(self, channel: int, program: int, *, vel: int = 65, swing: bool = True) -> None:
        """Jazz comping: rootless shell voicings (third and seventh plus one colour tone) on syncopated
        positions, a Charleston rhythm or a push to the next bar."""
        self.song.programs[channel] = program
        previous = None
        off8 = 2 / 3 if swing else 0.5
        patterns = [[(0.0, 1.0), (1 + off8, 0.6)], [(1 + off8, 0.8), (3 + off8, 0.6)], [(0.0, 0.8), (2.0, 0.8)],
                    [(off8, 1.0), (2 + off8, 0.8)]]
        for slot in self.timeline:
            voicing = voice_lead(slot.chord, previous, 53, 72, 3, self.rng)
            previous = voicing
            rhythm = patterns[int(self.rng.integers(len(patterns)))]
            for off, dur in rhythm:
                if off < slot.dur:
                    for pitch in voicing:
                        self.add(slot.start + off, dur, pitch, vel + self.rng.integers(-8, 8), channel)

    # ---- melody --------------------------------------------------------------------------------------------
    def melody(self, channel: int, program: int, *, cells: list[list[float]], low: int = 62, high: int = 81,
               vel: int = 85, rest_prob: float = 0.1, start_bar: int = 0, swing: bool = False) -> None:
        """A melody that outlines the key: chord tones on the beats (tonic and dominant preferred), passing and
        neighbour tones between them, the tonic held at the end of authentic cadences; rhythm from `cells`
        (a bar each, note lengths in beats), a bar's rhythm often repeated as a motif."""
        s = self.song
        s.programs[channel] = program
        tonic_pc, fifth_pc, third_pc = s.tonic, (s.tonic + 7) % 12, (s.tonic + (4 if s.mode == "major" else 3)) % 12
        weight = {tonic_pc: 3.0, fifth_pc: 2.0, third_pc: 1.5}
        onsets: list[tuple[float, float]] = []
        motif = None
        for bar in range(start_bar, self.n_bars):
            if motif is None or self.rng.random() < 0.45:
                motif = cells[int(self.rng.integers(len(cells)))]
            t = bar * s.meter
            for d in motif:
                if self.rng.random() >= rest_prob:
                    onsets.append((t, d))
                t += d
        pitch = (low + high) // 2
        pitch = low + (tonic_pc - low) % 12 if low + (tonic_pc - low) % 12 >= pitch - 6 else pitch
        for i, (t, d) in enumerate(onsets):
            slot = self.chord_at(t)
            scale = local_scale(s.tonic, s.scale, slot.chord)
            strong = abs(t - round(t)) < 1e-6
            last_of_cadence = slot.cadence == "authentic" and t + d >= slot.start + slot.dur - 1e-6
            if last_of_cadence or (slot.cadence == "authentic" and t == slot.start):
                options = [p for p in range(low, high + 1) if p % 12 == tonic_pc]
                pitch = min(options, key=lambda p: abs(p - pitch))
                d = slot.start + slot.dur - t  # hold the tonic to the end of the cadence
            elif strong:
                options = [p for p in range(low, high + 1) if p % 12 in slot.chord.pcs and abs(p - pitch) <= 7]
                if options:
                    w = np.array([weight.get(p % 12, 1.0) / (1 + abs(p - pitch) / 3) for p in options])
                    pitch = int(options[int(self.rng.choice(len(options), p=w / w.sum()))])
            else:
                # move by step toward the next strong note's chord: a passing tone; else a neighbour tone
                nxt = onsets[i + 1][0] if i + 1 < len(onsets) else t + 1
                target_pcs = self.chord_at(nxt).chord.pcs
                up = [p for p in range(pitch + 1, pitch + 3) if p % 12 in scale]
                down = [p for p in range(pitch - 2, pitch) if p % 12 in scale]
                direction = self.rng.choice([1, -1])
                nearest_target = min((p for p in range(low, high + 1) if p % 12 in target_pcs),
                                     key=lambda p: abs(p - pitch), default=pitch)
                if nearest_target > pitch:
                    direction = 1
                elif nearest_target < pitch:
                    direction = -1
                choice = (up if direction > 0 else down) or up or down
                if choice:
                    pitch = int(np.clip(choice[-1] if direction < 0 else choice[0], low, high))
            start = t
            if swing and abs((t % 1) - 0.5) < 1e-6:
                start = t - 0.5 + 2 / 3
            self.add(start, d * 0.9, pitch, vel + (6 if strong else 0) + self.rng.integers(-8, 8), channel)

    # ---- drums ---------------------------------------------------------------------------------------------
    def drums(self, pattern: dict[int, str], *, bars: range | None = None, vel_scale: float = 1.0,
              fills: bool = True, crash_every: int = 8, swing: bool = False) -> None:
        """Drum hits from a one-bar pattern (see drums.py: one character per step, steps spread evenly over the
        bar), a fill in the last bar of every four and a crash on the first beat of every `crash_every` bars."""
        bars = bars if bars is not None else range(self.n_bars)
        m = self.song.meter
        for bar in bars:
            fill = fills and bar % 4 == 3 and self.rng.random() < 0.6
            for note, steps in pattern.items():
                n = len(steps)
                for i, c in enumerate(steps):
                    if c == ".":
                        continue
                    off = i * m / n
                    if fill and off >= m / 2 and note in drumkit.FILL_REPLACES:
                        continue
                    if swing and abs((off % 1) - 0.5) < 1e-6:
                        off += 1 / 6
                    self.add(bar * m + off, 0.25, note, drumkit.VELOCITY[c] * vel_scale + self.rng.integers(-6, 6),
                             DRUM_CHANNEL)
            if fill:
                toms = [drumkit.HIGH_TOM, drumkit.MID_TOM, drumkit.LOW_TOM, drumkit.SNARE]
                for i in range(int(m / 2 * 4)):
                    off = m / 2 + i * 0.25
                    self.add(bar * m + off, 0.25, toms[(i // 2) % 4], 95 * vel_scale, DRUM_CHANNEL)
            if crash_every and bar % crash_every == 0:
                self.add(bar * m, 1.0, drumkit.CRASH, 100 * vel_scale, DRUM_CHANNEL)


# --------------------------------------------------------------------------------------------------------------
# Styles. Each composer takes a Composer whose song has tempo, key and meter set, and writes every part.
# --------------------------------------------------------------------------------------------------------------
#: Rhythms ((offset in the chord, duration), beats) that strike a chord again on every beat, or every eighth, of it
#: however long it lasts (Composer.block_chords skips offsets past the chord's end).
ON_EVERY_BEAT = [(float(b), 0.9) for b in range(16)]
ON_EVERY_EIGHTH = [(b / 2, 0.45) for b in range(32)]
#: style -> the accompaniments its composer can play (Composer.texture), the usual one first.
TEXTURES = {
    "ballad": ("arpeggio", "chords_on_beats", "chords_in_eighths", "held_chords"),
    "strings": ("held", "repeated_eighths", "pizzicato_bass"),
    "piano_solo": ("broken_chords", "chords_on_beats"),
    "guitar_folk": ("strummed", "finger_picked"),
    "rock": ("backbeat", "quarter_hats", "ride_eighths", "sixteenth_hats"),
    "punk": ("backbeat", "skank"),
    "metal": ("backbeat", "skank", "double_kick"),
}


def _ballad(c: Composer) -> None:
    """A slow song: bass on the roots, a piano accompaniment (broken chords in eighths; with varied textures also
    chords struck on every beat with soft broken-chord notes between, chords repeated in eighths, or chords struck
    once and held), a pad, a melody and sometimes soft drums."""
    c.plan_phrases(c.chord_beats(3.0))
    c.bass(2, int(c.rng.choice([32, 33, 35])), [(0.0, 4.0)], low=36)
    texture = c.texture()
    piano = int(c.rng.choice([0, 0, 4, 1]))
    if texture == "arpeggio":
        c.arpeggio(1, piano, pattern=[0, 1, 2, 1, 2, 1, 0, 1], step=0.5, low=48, high=70)
    elif texture == "chords_on_beats":
        c.block_chords(1, piano, rhythm=ON_EVERY_BEAT, low=48, high=67, voices=4, vel=64, suspensions=False)
        if c.rng.random() < 0.6:
            c.arpeggio(4, piano, pattern=[2, 1, 2, 0], step=0.5, low=60, high=79, vel=42, between_beats=True)
    elif texture == "chords_in_eighths":
        c.block_chords(1, piano, rhythm=ON_EVERY_EIGHTH, low=50, high=67, voices=3, vel=54, suspensions=False)
    else:
        c.block_chords(1, piano, low=48, high=67, voices=4, vel=60)
    c.block_chords(3, int(c.rng.choice([48, 49, 89, 88])), low=55, high=74, voices=3, vel=55)
    c.melody(0, int(c.rng.choice([73, 53, 40, 71, 0])), cells=[[1, 1, 2], [2, 1, 1], [1.5, 0.5, 2], [3, 1], [4],
                                                                [1, 0.5, 0.5, 2]], low=62, high=81, start_bar=1)
    if c.rng.random() < 0.45:
        c.drums(drumkit.BALLAD, bars=range(2, c.n_bars), vel_scale=0.75, crash_every=0)


def _strings(c: Composer) -> None:
    """A string orchestra: cellos on the roots, four voice-led parts held (with varied textures also repeated in
    eighths, or over a pizzicato bass on every beat), a melody above."""
    c.plan_phrases(c.chord_beats(2.5, (1, 2, 4)))
    texture = c.texture()
    if texture == "pizzicato_bass":
        c.bass(2, 45, ON_EVERY_BEAT, low=36, vel=82)
    else:
        c.bass(2, 42, [(0.0, 8.0)], low=36, vel=75)  # cellos on the roots
    eighths = texture == "repeated_eighths"
    c.block_chords(1, int(c.rng.choice([48, 49, 48])), low=53, high=79, voices=4, vel=58 if eighths else 68,
                   passing=True, rhythm=ON_EVERY_EIGHTH if eighths else None)
    c.melody(0, int(c.rng.choice([40, 48, 41])), cells=[[2, 2], [3, 1], [4], [1, 1, 2], [2, 1, 1]],
             low=67, high=86, vel=78, rest_prob=0.05)


def _chorale(c: Composer) -> None:
    """Homophonic four-part writing (choir, organ or strings): a chord per beat or two, voice-led, with
    suspensions and passing tones, the bass on the roots."""
    c.plan_phrases(c.chord_beats(1.6, (1, 2)))
    program = int(c.rng.choice([52, 19, 52, 19, 49, 91]))
    c.bass(2, program, [(0.0, 8.0)], low=40, vel=72)
    c.block_chords(1, program, low=55, high=79, voices=3, vel=72, passing=True)


def _piano_solo(c: Composer) -> None:
    """Solo piano: a left hand of broken chords (Alberti or rising and falling; with varied textures also the
    chord struck on every beat, as in a hymn), bass notes, a melody in the right hand."""
    c.plan_phrases(c.chord_beats(2.2))
    program = int(c.rng.choice([0, 0, 1, 6]))
    if c.texture() == "chords_on_beats":
        c.block_chords(1, program, rhythm=ON_EVERY_BEAT, low=45, high=64, voices=3, vel=58, suspensions=False)
    elif c.rng.random() < 0.5:  # Alberti bass in 8ths or 16ths
        step = 0.5 if c.song.bpm > 100 else 0.25
        c.arpeggio(1, program, pattern=[0, 2, 1, 2], step=step, low=45, high=64, vel=60)
    else:  # broken-chord arpeggio rising and falling
        c.arpeggio(1, program, pattern=[0, 1, 2, 1], step=0.5, low=40, high=64, vel=62)
    c.bass(2, program, [(0.0, 2.0)], low=31, vel=58)
    c.melody(0, program, cells=[[1, 1, 1, 1], [0.5, 0.5, 1, 2], [1.5, 0.5, 1, 1], [2, 2], [1, 0.5, 0.5, 1, 1]],
             low=65, high=86, vel=80)


def _guitar_folk(c: Composer) -> None:
    """Acoustic guitar strummed (with varied textures also finger-picked: the thumb alternating bass notes on the
    beats, the fingers between), sometimes a bass, a melody and soft drums."""
    c.plan_phrases(c.chord_beats(2.4, (2, 4)))
    program = int(c.rng.choice([25, 25, 24]))
    if c.texture() == "finger_picked":
        c.arpeggio(1, program, pattern=[0, 2, 1, 2], step=0.5, low=40, high=67, vel=64)
    else:
        c.strum(1, program, pattern=str(c.rng.choice(["D.DUD.DU", "D.D.DUDU", "D..UD.DU", "DUDUDUDU"])))
    if c.rng.random() < 0.5:
        c.bass(2, 32, [(0.0, 1.5), (2.0, 1.5)], low=33, fifths=True, vel=80)
    if c.rng.random() < 0.5:
        c.melody(0, int(c.rng.choice([53, 73, 22, 40])), cells=[[1, 1, 2], [0.5, 0.5, 1, 2], [2, 2], [1, 1, 1, 1]],
                 start_bar=2)
    if c.rng.random() < 0.4:
        c.drums(drumkit.FOLK, vel_scale=0.7, fills=False, crash_every=0)


def _pop(c: Composer) -> None:
    c.plan_loop(c.chord_beats(2.0, (2, 4)))
    c.bass(2, int(c.rng.choice([33, 34, 38])), [(0.0, 0.45), (1.5, 0.45), (2.0, 0.45), (3.0, 0.9)], low=33)
    c.block_chords(1, int(c.rng.choice([0, 4, 90, 27])), rhythm=[(0.0, 1.4), (1.5, 0.4), (2.5, 1.4)],
                   low=55, high=74, voices=3, vel=65)
    c.block_chords(3, int(c.rng.choice([89, 48, 50])), low=52, high=72, voices=3, vel=45, suspensions=False)
    c.melody(0, int(c.rng.choice([80, 53, 65, 73, 81])), cells=[[1, 0.5, 0.5, 2], [0.5] * 4 + [2],
                                                                [1.5, 0.5, 1, 1], [1, 1, 2]], start_bar=1)
    c.drums(drumkit.POP if c.rng.random() < 0.6 else drumkit.ROCK)


#: The drum grooves of the band styles by texture (TEXTURES): a rock song's drummer may keep the hats on the
#: beats, ride in eighths or play busy 16ths; a punk or thrash drummer the skank beat; a metal one a double kick.
ROCK_GROOVES = {"backbeat": drumkit.ROCK, "quarter_hats": drumkit.ROCK_QUARTER_HATS,
                "ride_eighths": drumkit.ROCK_RIDE, "sixteenth_hats": drumkit.ROCK_16}
PUNK_GROOVES = {"backbeat": drumkit.PUNK, "skank": drumkit.SKANK}
METAL_GROOVES = {"skank": drumkit.SKANK, "double_kick": drumkit.METAL_DOUBLE_KICK}


def _rock(c: Composer) -> None:
    c.plan_loop(c.chord_beats(2.0, (2, 4)))
    guitar = int(c.rng.choice([29, 30, 27]))
    c.bass(2, 34, [(i * 0.5, 0.45) for i in range(8)], low=28)
    c.power_chords(1, guitar, rhythm=[(0.0, 0.9), (1.0, 0.45), (1.5, 0.9), (2.5, 0.45), (3.0, 0.9)])
    c.melody(0, int(c.rng.choice([29, 81, 65])), cells=[[1, 1, 2], [0.5, 0.5, 1, 2], [2, 1, 1]], start_bar=2,
             rest_prob=0.2)
    c.drums(ROCK_GROOVES[c.texture()])


def _punk(c: Composer) -> None:
    c.plan_loop(c.chord_beats(1.3, (2, 4, 8)))
    c.bass(2, 34, [(i * 0.5, 0.45) for i in range(8)], low=28, vel=100)
    c.power_chords(1, int(c.rng.choice([30, 29])), rhythm=[(i * 0.5, 0.45) for i in range(8)], vel=105)
    c.drums(PUNK_GROOVES[c.texture()])
    c.melody(0, 30, cells=[[1, 1, 2], [2, 2], [1, 1, 1, 1]], low=59, high=76, rest_prob=0.3, start_bar=4)


def _metal(c: Composer) -> None:
    """Palm-muted power chords in eighths or gallops; the drums' usual backbeat follows the guitar (eighth kicks,
    or the gallop's rhythm), the other grooves (TEXTURES) do not."""
    c.plan_loop(c.chord_beats(1.3, (2, 4, 8)))
    gallop = c.rng.random() < 0.5
    rhythm = ([(b + o, d) for b in range(4) for o, d in ((0.0, 0.45), (0.5, 0.2), (0.75, 0.2))] if gallop
              else [(i * 0.5, 0.4) for i in range(8)])
    c.power_chords(1, 30, rhythm=rhythm, vel=110, low=40)
    c.power_chords(3, 30, rhythm=[(0.0, 1.9), (2.0, 1.9)], vel=85, low=52)
    c.bass(2, 34, [(i * 0.5, 0.45) for i in range(8)], low=28, vel=100)
    texture = c.texture()
    usual = drumkit.METAL_GALLOP if gallop else drumkit.METAL
    c.drums(usual if texture == "backbeat" else METAL_GROOVES[texture])


def _waltz(c: Composer) -> None:
    c.plan_phrases(c.chord_beats(2.5, (3, 6)))
    c.bass(2, int(c.rng.choice([32, 42, 0])), [(0.0, 0.9)], low=36, vel=88)
    c.block_chords(1, int(c.rng.choice([0, 21, 48, 46])), rhythm=[(1.0, 0.8), (2.0, 0.8)], low=55, high=72,
                   voices=3, vel=58, suspensions=False)
    c.melody(0, int(c.rng.choice([40, 73, 21, 0, 71])), cells=[[2, 1], [1, 1, 1], [3], [1.5, 0.5, 1]])
    if c.rng.random() < 0.3:
        c.drums(drumkit.WALTZ, vel_scale=0.7, fills=False, crash_every=0)


def _swing(c: Composer) -> None:
    c.plan_phrases(c.chord_beats(2.0, (2, 4)))
    c.walking_bass(2, 32)
    c.comping(1, int(c.rng.choice([0, 26, 4])))
    c.melody(0, int(c.rng.choice([65, 66, 56, 11])), cells=[[0.5] * 8, [1, 0.5, 0.5, 2], [0.5, 0.5, 1, 1, 1],
                                                            [1.5, 0.5, 2]], swing=True, rest_prob=0.15, start_bar=1)
    c.drums(drumkit.SWING, swing=True, fills=False, vel_scale=0.8)


def _dnb(c: Composer) -> None:
    c.plan_loop(c.chord_beats(2.7, (4, 8)))
    c.bass(2, int(c.rng.choice([38, 39, 87])), [(0.0, 1.4), (2.5, 1.4)], low=28, vel=100)
    c.block_chords(1, int(c.rng.choice([89, 90, 95, 50])), low=55, high=76, voices=3, vel=55, suspensions=False)
    grooves = (drumkit.DNB, drumkit.DNB_AMEN, drumkit.DNB_ROLLER, drumkit.DNB_STEPPER)
    c.drums(grooves[int(c.rng.integers(len(grooves)))])
    if c.rng.random() < 0.5:
        c.melody(0, int(c.rng.choice([81, 80, 4])), cells=[[2, 2], [1, 1, 2], [4]], start_bar=4)


def _house(c: Composer) -> None:
    c.plan_loop(c.chord_beats(2.0, (4, 8)))
    c.bass(2, int(c.rng.choice([38, 39])), [(0.5, 0.4), (1.5, 0.4), (2.5, 0.4), (3.5, 0.4)], low=33, octaves=True)
    c.block_chords(1, int(c.rng.choice([0, 4, 90, 81])), rhythm=[(0.5, 0.3), (1.75, 0.3), (3.0, 0.3)],
                   low=57, high=76, voices=3, vel=70, suspensions=False)
    c.block_chords(3, 89, low=50, high=70, voices=3, vel=40, suspensions=False)
    if c.rng.random() < 0.5:
        c.melody(0, int(c.rng.choice([80, 81, 11])), cells=[[0.5] * 8, [1, 0.5, 0.5, 1, 1], [0.75, 0.75, 0.5, 2]],
                 start_bar=4)
    c.drums(drumkit.HOUSE)


def _funk(c: Composer) -> None:
    c.plan_loop(c.chord_beats(2.5, (4, 8)))
    c.bass(2, int(c.rng.choice([36, 37, 33])),
           [(0.0, 0.4), (0.75, 0.2), (1.5, 0.2), (2.0, 0.4), (2.75, 0.2), (3.25, 0.2), (3.5, 0.4)], low=28,
           octaves=True, vel=100)
    c.block_chords(1, int(c.rng.choice([7, 27, 4])), rhythm=[(0.25, 0.15), (1.0, 0.2), (1.75, 0.15), (2.5, 0.2),
                                                              (3.25, 0.15)], low=58, high=76, voices=3, vel=72,
                   suspensions=False)
    if c.rng.random() < 0.6:
        c.block_chords(3, 61, rhythm=[(1.5, 0.25), (3.5, 0.4)], low=58, high=79, voices=3, vel=80,
                       suspensions=False)
    c.drums(drumkit.FUNK)


def _reggaeton(c: Composer) -> None:
    c.plan_loop(c.chord_beats(2.2, (4, 8)))
    c.bass(2, int(c.rng.choice([38, 39, 87])), [(0.0, 0.7), (0.75, 0.2), (1.5, 0.45), (2.0, 0.7), (2.75, 0.2),
                                                 (3.5, 0.45)], low=31, vel=96)
    c.block_chords(1, int(c.rng.choice([90, 80, 4, 24])), rhythm=[(0.0, 0.4), (0.75, 0.3), (1.5, 0.4),
                                                                   (2.0, 0.4), (2.75, 0.3), (3.5, 0.4)],
                   low=57, high=76, voices=3, vel=60, suspensions=False)
    c.melody(0, int(c.rng.choice([80, 81, 53, 73])), cells=[[0.5, 0.5, 0.5, 0.5, 1, 1], [0.75, 0.75, 0.5, 2],
                                                            [1, 1, 0.5, 0.5, 1]], start_bar=2, rest_prob=0.15)
    c.drums(drumkit.DEMBOW)


def _hiphop(c: Composer) -> None:
    """Half-time hip-hop at the tempo a listener nods to (70-92): kick and snare backbeat at that tempo,
    swung 16th hats, a sampled-sounding Rhodes/strings loop and a bass (or an 808) on the roots."""
    c.plan_loop(c.chord_beats(2.8, (4, 8)))
    if c.rng.random() < 0.5:
        c.bass(2, int(c.rng.choice([33, 38, 32])), [(0.0, 0.9), (1.75, 0.5), (2.5, 0.9)], low=31, vel=95)
    else:
        c.sub_808()
    c.block_chords(1, int(c.rng.choice([4, 5, 48, 0, 11])), low=55, high=74, voices=3, vel=60)
    grooves = (drumkit.BOOM_BAP, drumkit.HIPHOP_16, drumkit.HIPHOP_SPARSE, drumkit.HIPHOP_SHUFFLE)
    c.drums(grooves[int(c.rng.integers(len(grooves)))], swing=c.rng.random() < 0.5, crash_every=0)


def _trap(c: Composer) -> None:
    """Trap at the half-time tempo (65-80): clap on 2 and 4, hi-hats in 16ths with rolls in 32nds and 16th
    triplets, an 808 sub-bass on the chord roots, a dark pad or bell loop."""
    c.plan_loop(c.chord_beats(3.0, (4, 8)))
    c.block_chords(1, int(c.rng.choice([88, 10, 14, 89, 0])), low=57, high=79, voices=3, vel=55,
                   suspensions=False)
    c.drums(drumkit.TRAP, crash_every=0, fills=False)
    # hi-hat rolls: in the last beat of some bars the 16ths become 32nds or 16th triplets
    for bar in range(c.n_bars):
        if c.rng.random() < 0.6:
            beat = bar * c.song.meter + int(c.rng.choice([1, 3]))
            step = float(c.rng.choice([1 / 8, 1 / 6]))
            for i in range(int(round(1 / step))):
                c.add(beat + i * step, 0.1, drumkit.CLOSED_HAT, 60 + 4 * i, DRUM_CHANNEL)
    c.sub_808()


#: The loops of the percussion style (Composer.drum_loop): the sparse hand-percussion loop, then kit grooves alone,
#: each tapped at the tempo it is composed at (trap's is left out: its annotation is the double of its pulse).
DRUM_LOOPS = {
    "sparse": None, "backbeat": drumkit.ROCK, "pop": drumkit.POP, "quarter_hats": drumkit.ROCK_QUARTER_HATS,
    "ride_eighths": drumkit.ROCK_RIDE, "sixteenth_hats": drumkit.ROCK_16, "funk": drumkit.FUNK,
    "four_on_the_floor": drumkit.HOUSE, "dembow": drumkit.DEMBOW, "boom_bap": drumkit.BOOM_BAP,
    "hiphop_16": drumkit.HIPHOP_16, "hiphop_sparse": drumkit.HIPHOP_SPARSE, "shuffle": drumkit.HIPHOP_SHUFFLE,
    "breakbeat": drumkit.DNB_AMEN, "two_step": drumkit.DNB, "bossa": drumkit.BOSSA,
}


def _percussion(c: Composer) -> None:
    """Drum loops with rests: the sparse loop (a kick/snare skeleton marks the beat, hand percussion fills some
    steps) or, drawn with varied loops, a kit groove alone; every fourth bar (or the second half of bars) drops
    out. No pitched instruments, so no key."""
    loop = c.drum_loop()
    pattern = drumkit.sparse_loop(c.rng) if loop == "sparse" else DRUM_LOOPS[loop]
    for bar in range(c.n_bars):
        rest = c.rng.random()
        if bar % 4 == 3 and rest < 0.5:
            c.add(bar * c.song.meter, 0.25, drumkit.KICK, 100, DRUM_CHANNEL)  # a lone hit, then silence
            continue
        sub = {note: steps[:len(steps) // 2].ljust(len(steps), ".") if rest < 0.25 and bar % 2 == 1 else steps
               for note, steps in pattern.items()}
        c.drums(sub, bars=range(bar, bar + 1), fills=False, crash_every=0)


def _baroque(c: Composer) -> None:
    """Baroque keyboard/strings: a chord per beat or two, 16th-note broken-chord figuration, an 8th-note bass
    on roots and fifths, a melody in 8ths and quarters."""
    c.plan_phrases(c.chord_beats(1.4, (1, 2)))
    program = int(c.rng.choice([6, 6, 48, 19, 0]))
    c.arpeggio(1, program, pattern=[0, 1, 2, 1], step=0.25, low=55, high=74, vel=62)
    c.bass(2, int(c.rng.choice([program, 42, 32])), [(0.0, 0.45), (0.5, 0.45), (1.0, 0.45), (1.5, 0.45)],
           low=36, fifths=True, vel=72)
    if c.rng.random() < 0.6:
        c.melody(0, int(c.rng.choice([program, 73, 40, 68])), cells=[[0.5] * 8, [1, 0.5, 0.5, 1, 1],
                                                                     [0.5, 0.5, 1, 0.5, 0.5, 1]], low=67, high=86)


def _bossa(c: Composer) -> None:
    """Bossa nova: seventh chords on nylon guitar in the syncopated comping rhythm, the bass on the root and
    fifth of beats one and three, a rim-click pattern and shaker."""
    c.sevenths = True
    c.plan_phrases(c.chord_beats(1.8, (2, 4)))
    c.block_chords(1, 24, rhythm=[(0.0, 0.4), (0.75, 0.4), (1.5, 0.4), (2.5, 0.4), (3.25, 0.4)],
                   low=52, high=70, voices=4, vel=62, suspensions=False)
    c.bass(2, int(c.rng.choice([32, 33])), [(0.0, 1.4), (1.5, 0.4), (2.0, 1.4), (3.5, 0.4)], low=33, fifths=True,
           vel=82)
    c.melody(0, int(c.rng.choice([73, 65, 53, 11])), cells=[[1.5, 0.5, 2], [1, 1, 1, 1], [0.5, 1, 0.5, 2], [4]],
             start_bar=2, rest_prob=0.1)
    c.drums(drumkit.BOSSA if c.rng.random() < 0.5 else drumkit.BOSSA_RIDE, vel_scale=0.75, fills=False,
            crash_every=0)


def _synthpop(c: Composer) -> None:
    c.plan_loop(c.chord_beats(2.0, (4, 8)))
    c.bass(2, int(c.rng.choice([38, 39, 81])), [(i * 0.5, 0.4) for i in range(8)], low=33, octaves=True)
    c.block_chords(1, int(c.rng.choice([90, 88, 50, 94])), low=55, high=76, voices=3, vel=55, suspensions=False)
    c.arpeggio(3, int(c.rng.choice([80, 81, 98])), pattern=[0, 1, 2, 1], step=0.25, low=62, high=84, vel=50)
    c.melody(0, int(c.rng.choice([80, 81, 53])), cells=[[1, 0.5, 0.5, 2], [0.5] * 4 + [2], [1, 1, 2]], start_bar=2)
    c.drums(drumkit.SYNTHPOP)


#: style -> (composer, bpm range, meter, alternative metrical level as a factor of bpm or None, has key)
STYLES: dict[str, tuple] = {
    "ballad": (_ballad, (60, 80), 4, None),
    "strings": (_strings, (50, 80), 4, None),
    "chorale": (_chorale, (50, 80), 4, None),
    "piano_solo": (_piano_solo, (60, 150), 4, None),
    "guitar_folk": (_guitar_folk, (80, 130), 4, None),
    "pop": (_pop, (90, 135), 4, None),
    "rock": (_rock, (90, 140), 4, None),
    "punk": (_punk, (160, 200), 4, 0.5),
    "metal": (_metal, (160, 200), 4, 0.5),
    "waltz": (_waltz, (84, 180), 3, None),
    "swing": (_swing, (110, 200), 4, None),
    "dnb": (_dnb, (160, 178), 4, 0.5),
    "house": (_house, (118, 128), 4, None),
    "funk": (_funk, (92, 120), 4, None),
    "reggaeton": (_reggaeton, (88, 100), 4, None),
    "hiphop": (_hiphop, (70, 92), 4, 2.0),
    "trap": (_trap, (65, 80), 4, 2.0),
    "percussion": (_percussion, (80, 130), 4, None),
    "baroque": (_baroque, (70, 110), 4, None),
    "bossa": (_bossa, (120, 145), 4, None),
    "synthpop": (_synthpop, (108, 132), 4, None),
}
KEYLESS_STYLES = {"percussion"}
#: Styles whose composer plays a four-chord loop (Composer.plan_loop) and a third somewhere: the ones that may be
#: written in a mode (generate.py --modal). The phrase styles' cadences are a major or minor key's; metal plays
#: power chords alone, whose mode nothing in the notes names.
MODAL_STYLES = {"pop", "rock", "punk", "dnb", "house", "funk", "reggaeton", "hiphop", "trap", "synthpop"}
#: style -> the wider tempo range the style is still played at (generate.py --wide-tempo). The ranges above are
#: each style's centre; a model fitted on them alone can learn "this style, this tempo" and read an unusually slow
#: ballad or fast rock song an octave off, so part of the training set is composed across these.
WIDE_TEMPO: dict[str, tuple[int, int]] = {
    "ballad": (55, 95), "strings": (45, 100), "chorale": (45, 95), "piano_solo": (50, 170),
    "guitar_folk": (70, 150), "pop": (80, 150), "rock": (80, 175), "punk": (140, 220), "metal": (120, 210),
    "waltz": (72, 200), "swing": (90, 240), "dnb": (155, 185), "house": (110, 135), "funk": (85, 130),
    "reggaeton": (80, 110), "hiphop": (65, 100), "trap": (60, 85), "percussion": (70, 160),
    "baroque": (55, 130), "bossa": (100, 160), "synthpop": (95, 140),
}
#: Styles annotated at a multiple of the tempo they are composed at (the dev corpus's convention for trap).
ANNOTATED_TEMPO_FACTOR = {"trap": 2.0}


def annotated_tempo(song: "Song") -> tuple[float, list[float]]:
    """(bpm, alt_bpm) as the manifest states them: the composed tempo, or its annotated multiple with the composed
    tempo as the alternative."""
    factor = ANNOTATED_TEMPO_FACTOR.get(song.style)
    if factor is None:
        return song.bpm, song.alt_bpm
    return round(song.bpm * factor, 2), [song.bpm]


def compose(style: str, seed: int, tonic: int | None, mode: str | None, bpm: float, *,
            varied_harmony: bool = False, varied_texture: bool = False, varied_loops: bool = False,
            modal_scale: str | None = None, max_attempts: int = 12, min_margin: float = 0.02) -> Song:
    """The song `style`'s composer writes from `seed` at `bpm` in `tonic` `mode` (ignored for key-less styles);
    `varied_harmony` draws the harmonic rhythm (Composer.chord_beats), `varied_texture` the accompaniment
    (Composer.texture), `varied_loops` a percussion song's loop (Composer.drum_loop); `modal_scale` ("mixolydian"
    with mode "major", "dorian" with "minor"; MODAL_STYLES only) writes the song in that mode.

    A composition whose pitch-class histogram does not point at its own key (by correlation with the
    Krumhansl-Kessler and with Temperley's profiles, each by at least `min_margin` over the runner-up; for a modal
    song, with those profiles turned into the mode's, theory.modal_profiles) is rejected and rewritten from the
    next sub-seed, so the annotated key is the one the notes support. Raises ValueError when no attempt
    qualifies."""
    composer_fn, _, meter, alt_factor = STYLES[style]
    keyless = style in KEYLESS_STYLES
    if modal_scale and (style not in MODAL_STYLES or MODE_OF_SCALE[modal_scale] != mode):
        raise ValueError(f"{style} is not composed in {modal_scale} {mode}")
    profile_sets = [modal_profiles(p) if modal_scale else p for p in KEY_PROFILES.values()]
    alt = [round(bpm * alt_factor, 2)] if alt_factor else []
    for attempt in range(max_attempts):
        rng = np.random.default_rng([seed, attempt])
        song = Song(style, seed, float(bpm), alt, None if keyless else tonic % 12, None if keyless else mode, meter,
                    modal_scale=modal_scale)
        composer_fn(Composer(song, rng, varied_harmony=varied_harmony, varied_texture=varied_texture,
                             varied_loops=varied_loops))
        song.notes.sort(key=lambda n: (n.start, n.channel, n.pitch))
        if keyless:
            return song
        hist = pitch_class_histogram(song.notes + song.sub_bass)
        if all(best_key(hist, profiles)[:2] == (song.tonic, song.mode) and best_key(hist, profiles)[2] >= min_margin
               for profiles in profile_sets):
            return song
    raise ValueError(f"no {style} composition from seed {seed} names {key_name(tonic % 12, mode)} unambiguously")


def to_midi(song: Song, *, volumes: dict[int, int] | None = None, pans: dict[int, int] | None = None,
            humanize: np.random.Generator | None = None, drum_kit: int = 0,
            ticks_per_beat: int = 960) -> mido.MidiFile:
    """A type-0 MIDI file of `song` at its tempo; `volumes` and `pans` set each channel's CC7 and CC10 (the mix,
    0..127, pan 64 = centre), `humanize` (a generator) shifts onsets by a few milliseconds and velocities by a few
    steps, as players do; `drum_kit` selects the GM drum kit (the program of the drum channel: 0 Standard,
    25 TR-808...; 0 writes no program change, as before kits were drawn)."""
    spb = song.seconds_per_beat
    events = []
    for n in song.notes:
        start, end = n.start, n.start + n.dur
        vel = n.vel
        if humanize is not None:
            jitter = humanize.normal(0, 0.006 if n.channel == DRUM_CHANNEL else 0.010) / spb
            start = max(0.0, start + jitter)
            end = max(start + 0.02, end + jitter)
            vel = int(np.clip(vel + humanize.integers(-6, 7), 1, 127))
        on, off = int(round(start * ticks_per_beat)), int(round(end * ticks_per_beat))
        events.append((on, 1, mido.Message("note_on", channel=n.channel, note=n.pitch, velocity=vel)))
        events.append((off, 0, mido.Message("note_off", channel=n.channel, note=n.pitch, velocity=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(song.bpm)))
    track.append(mido.MetaMessage("time_signature", numerator=song.meter, denominator=4))
    for channel, program in sorted(song.programs.items()):
        track.append(mido.Message("program_change", channel=channel, program=program))
    if drum_kit and song.has_drums:
        track.append(mido.Message("program_change", channel=DRUM_CHANNEL, program=drum_kit))
    for channel, volume in sorted((volumes or {}).items()):
        track.append(mido.Message("control_change", channel=channel, control=7, value=int(np.clip(volume, 0, 127))))
    for channel, pan in sorted((pans or {}).items()):
        track.append(mido.Message("control_change", channel=channel, control=10, value=int(np.clip(pan, 0, 127))))
    now = 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    midi = mido.MidiFile(type=0, ticks_per_beat=ticks_per_beat)
    midi.tracks.append(track)
    return midi
