"""The training-set composer (benchmarks/trainset): deterministic, in its annotated key, on its annotated tempo.

No FluidSynth needed: the checks read the MIDI the composer writes.
"""
from __future__ import annotations

import io
from collections import Counter

import mido
import numpy as np
import pytest

from benchmarks.trainset import drums
from benchmarks.trainset.compose import (DRUM_CHANNEL, DRUM_LOOPS, KEYLESS_STYLES, MODAL_STYLES, STYLES, TEXTURES,
                                         WIDE_TEMPO, Composer, Song, annotated_tempo, compose, to_midi)
from benchmarks.trainset.generate import Variation, draw_renderings, make_song, plan, summary
from benchmarks.trainset.render import KITS, STYLE_KITS, style_kits
from benchmarks.trainset.theory import KEY_PROFILES, PITCH_CLASSES



def midi_notes(midi_bytes: bytes) -> tuple[float, list[tuple[float, float, int, int]]]:
    """(bpm, [(onset s, duration s, pitch, channel)]) read back from a type-0 MIDI file."""
    midi = mido.MidiFile(file=io.BytesIO(midi_bytes))
    tempo = next(m.tempo for m in midi.tracks[0] if m.type == "set_tempo")
    now, sounding, notes = 0.0, {}, []
    for msg in midi:  # iterating a MidiFile yields delta times in seconds
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            sounding[(msg.channel, msg.note)] = now
        elif msg.type in ("note_off", "note_on"):
            start = sounding.pop((msg.channel, msg.note), None)
            if start is not None:
                notes.append((start, now - start, msg.note, msg.channel))
    return mido.tempo2bpm(tempo), notes


def midi_bytes(song) -> bytes:
    buf = io.BytesIO()
    to_midi(song).save(file=buf)
    return buf.getvalue()


TIMEKEEPERS = {drums.CLOSED_HAT, drums.PEDAL_HAT, drums.OPEN_HAT, drums.RIDE, drums.RIDE_BELL, drums.SHAKER,
               drums.TAMBOURINE}


def profile_key(notes, profiles) -> str:
    """The key whose profile correlates best with the duration-weighted pitch-class histogram of the MIDI notes."""
    hist = np.zeros(12)
    for _, dur, pitch, channel in notes:
        if channel != 9:
            hist[pitch % 12] += dur
    scores = {f"{PITCH_CLASSES[t]} {mode}": np.corrcoef(hist, np.roll(profile, t))[0, 1]
              for mode, profile in zip(("major", "minor"), profiles) for t in range(12)}
    return max(scores, key=scores.get)


def test_same_seed_same_song_and_midi():
    a = compose("swing", 42, 9, "minor", 150)
    b = compose("swing", 42, 9, "minor", 150)
    assert a.notes == b.notes and a.programs == b.programs
    assert midi_bytes(a) == midi_bytes(b)
    assert compose("swing", 43, 9, "minor", 150).notes != a.notes


# Every style once, keys spread over all twelve tonics and both modes; then the same songs at both ends of the
# style's wide tempo range (generate.py --wide-tempo), and at those ends with a drawn harmonic rhythm
# (--varied-harmony); the styles with a choice of accompaniment also with it drawn (--varied-texture), from
# several seeds so that each plays more than one.
CASES = [(style, i % 12, ("major", "minor")[i % 2], sum(STYLES[style][1]) / 2, False, False)
         for i, style in enumerate(STYLES)]
CASES += [(style, tonic, mode, WIDE_TEMPO[style][end], varied, False) for style, tonic, mode, *_ in CASES
          for end in (0, 1) for varied in (False, True)]
CASES += [(style, (tonic + shift) % 12, mode, WIDE_TEMPO[style][end], True, True)
          for style, tonic, mode, *_ in CASES[:len(STYLES)] if style in TEXTURES
          for end in (0, 1) for shift in (0, 5, 7)]


@pytest.mark.parametrize("style,tonic,mode,bpm,varied,textured", CASES)
def test_composition_is_in_its_key_and_on_its_tempo_grid(style, tonic, mode, bpm, varied, textured):
    # as the generator composes it: a seed whose attempts never name the key (a few metal riffs in major) gives way
    # to the next seeds
    song = make_song({"style": style, "seed": 7 + tonic, "tonic": tonic, "mode": mode, "bpm": bpm,
                      "variation": Variation(varied_harmony=varied, varied_texture=textured)})
    assert_on_tempo_grid_and_in_key(song, style, tonic, mode, bpm)


def assert_on_tempo_grid_and_in_key(song: Song, style: str, tonic: int, mode: str, bpm: float) -> None:
    tempo, notes = midi_notes(midi_bytes(song))
    assert tempo == pytest.approx(bpm, rel=1e-4)
    # onsets on the grid of the annotated beat (16ths, 32nds, triplets: 1/24 of a beat), within a MIDI tick;
    # the later strings of a strummed chord (a few ms after the first, same channel) are not onsets of their own
    grid = 60.0 / bpm / 24
    last: dict[int, float] = {}
    onsets = []
    for start, _, _, channel in sorted(notes):
        if channel == 9 or start - last.get(channel, -1.0) > 0.06:
            onsets.append(start)
        last[channel] = start
    offsets = np.array([(start / grid) - round(start / grid) for start in onsets])
    assert np.max(np.abs(offsets)) * grid < 0.002
    # the beat is the annotated one: more drum hits on the beat than on any other 16th of it (the timekeepers,
    # hats, ride and shakers, left out: a drum'n'bass stepper's ride and pedal hat fill the off-beats)
    beat = 60.0 / bpm
    if song.has_drums:
        sixteenth = Counter(round(s / beat * 4) % 4 for s, _, pitch, ch in notes
                            if ch == 9 and pitch not in TIMEKEEPERS
                            if abs(s / beat * 4 - round(s / beat * 4)) < 0.01)
        assert sixteenth[0] == max(sixteenth.values())
    if style in KEYLESS_STYLES:
        assert song.key is None and all(ch == 9 for *_, ch in notes)
    else:
        assert song.key == f"{PITCH_CLASSES[tonic]} {mode}"
        tonal = notes + [(0.0, n.dur * beat, n.pitch, 0) for n in song.sub_bass]
        for profiles in KEY_PROFILES.values():
            assert profile_key(tonal, profiles) == song.key


def _chord_lengths(style: str, bpm: float, varied: bool) -> set[float]:
    """Beats per chord of twenty chorales (or other `style` songs) composed at `bpm`."""
    lengths = set()
    for seed in range(20):
        composer = Composer(Song(style, seed, bpm, [], 0, "major", 4), np.random.default_rng(seed),
                            varied_harmony=varied)
        STYLES[style][0](composer)
        lengths |= {slot.dur for slot in composer.timeline}
    return lengths


def test_varied_harmony_changes_chords_on_every_beat_or_every_other_at_any_tempo():
    # the nearest chord length (1.6 s for a chorale) gives one harmonic rhythm per tempo
    assert _chord_lengths("chorale", 90, varied=False) == {2}
    assert _chord_lengths("chorale", 45, varied=False) == {1}
    # drawn, both of the chorale's choices happen at either tempo
    assert _chord_lengths("chorale", 90, varied=True) == {1, 2}
    assert _chord_lengths("chorale", 45, varied=True) == {1, 2}


def test_varied_texture_plays_each_accompaniment_of_a_style_and_only_the_usual_one_without_it():
    def texture(style, seed, varied):  # as the generator composes (a seed whose song misses its key gives way)
        return make_song({"style": style, "seed": seed, "tonic": seed % 12, "mode": "major", "bpm": 80.0,
                          "variation": Variation(varied_texture=varied)}).texture

    for style, textures in TEXTURES.items():
        drawn = {texture(style, seed, True) for seed in range(30)}
        usual = {texture(style, seed, False) for seed in range(5)}
        assert drawn == set(textures) and usual == {textures[0]}, style
    assert compose("pop", 1, 0, "major", 120, varied_texture=True).texture is None  # no choice, nothing drawn


def test_each_texture_of_a_style_writes_its_own_accompaniment(monkeypatch):
    """The composers pick their accompaniment by comparing names: a misspelt one would fall through to another
    branch and play that texture under a wrong label. Forced in turn (no draw, so every other choice is the same),
    each texture of a style must write different notes."""
    forced = {}

    def texture(self):
        self.song.texture = forced["name"]
        return self.song.texture

    monkeypatch.setattr(Composer, "texture", texture)
    for style, textures in TEXTURES.items():
        written = {}
        for name in textures:
            forced["name"] = name
            song = compose(style, 3, 2, "minor", 90)
            written[name] = tuple((n.start, n.dur, n.pitch, n.channel) for n in song.notes)
        assert len(set(written.values())) == len(textures), style


def test_varied_loops_plays_every_drum_loop_and_only_the_sparse_one_without_it():
    def loop(seed, varied):
        return make_song({"style": "percussion", "seed": seed, "tonic": 0, "mode": "major", "bpm": 100.0,
                          "variation": Variation(varied_loops=varied)}).texture

    assert {loop(seed, True) for seed in range(120)} == set(DRUM_LOOPS)
    assert {loop(seed, False) for seed in range(5)} == {"sparse"}
    # the loops are the percussion style's alone: other styles compose as before
    assert compose("rock", 3, 2, "minor", 120, varied_loops=True).notes == compose("rock", 3, 2, "minor", 120).notes


def force_drum_loop(monkeypatch, name: str) -> None:
    def drum_loop(self):
        self.song.texture = name
        return name

    monkeypatch.setattr(Composer, "drum_loop", drum_loop)


@pytest.mark.parametrize("name", sorted(DRUM_LOOPS))
@pytest.mark.parametrize("bpm", [70.0, 160.0])
def test_each_drum_loop_is_on_its_beat_and_has_no_pitch(name, bpm, monkeypatch):
    force_drum_loop(monkeypatch, name)
    song = compose("percussion", 11, None, None, bpm)
    assert song.texture == name
    assert_on_tempo_grid_and_in_key(song, "percussion", 0, "major", bpm)


def test_each_drum_loop_writes_its_own_groove(monkeypatch):
    written = set()
    for name in DRUM_LOOPS:
        force_drum_loop(monkeypatch, name)
        written.add(tuple((n.start, n.pitch) for n in compose("percussion", 11, None, None, 100.0).notes))
    assert len(written) == len(DRUM_LOOPS)


def test_ballad_with_chords_on_beats_strikes_a_chord_on_every_beat_and_none_between():
    songs = [s for s in (compose("ballad", seed, 4, "major", 60, varied_texture=True) for seed in range(40))
             if s.texture == "chords_on_beats"]
    for song in songs:
        starts = Counter(n.start for n in song.notes if n.channel == 1)  # the piano's chords
        assert set(starts) == {float(b) for b in range(int(max(starts)) + 1)} and max(starts) > 30
        assert min(starts.values()) >= 3  # a chord, not a single note
    between = [n.start % 1 for s in songs for n in s.notes if n.channel == 4]  # the soft broken-chord notes
    assert between and set(between) == {0.5}


def test_half_time_styles_name_the_other_metrical_level():
    trap = compose("trap", 1, 0, "minor", 70)  # composed at its half-time pulse, annotated at the double
    assert annotated_tempo(trap) == (140.0, [70.0])
    assert annotated_tempo(compose("hiphop", 1, 0, "minor", 80)) == (80.0, [160.0])
    assert compose("dnb", 1, 0, "minor", 170).alt_bpm == [85.0]
    assert compose("waltz", 1, 0, "major", 150).meter == 3
    assert compose("pop", 1, 0, "major", 120).alt_bpm == []


def test_808_sub_bass_sits_in_the_sub_bass_band():
    songs = [compose(style, seed, seed % 12, "minor", 75) for style in ("trap", "hiphop") for seed in range(8)]
    hz = [440.0 * 2 ** ((n.pitch - 69) / 12) for song in songs for n in song.sub_bass]
    assert hz and 41.0 <= min(hz) and max(hz) < 80.0


def drum_programs(midi: mido.MidiFile) -> list[int]:
    return [m.program for m in midi.tracks[0] if m.type == "program_change" and m.channel == DRUM_CHANNEL]


def test_drum_kit_is_the_drum_channels_program_and_absent_without_one():
    song = compose("trap", 5, 2, "minor", 72)
    assert drum_programs(to_midi(song, drum_kit=KITS["tr808"])) == [25]
    assert drum_programs(to_midi(song)) == []  # the standard kit: the MIDI of the sets rendered before kits
    assert drum_programs(to_midi(compose("strings", 5, 2, "minor", 72), drum_kit=KITS["tr808"])) == []


def test_varied_kits_draws_each_styles_kits_and_changes_nothing_else():
    for style, kits in STYLE_KITS.items():
        assert style in STYLES and set(kits) <= set(KITS)
    items = plan(6 * len(STYLES), seed=4, variation=Variation(varied_kits=True))
    drawn: dict[str, set[str]] = {}
    for item in items:
        song = make_song(item)
        varied = draw_renderings(item, song, 2)
        plain = draw_renderings({**item, "variation": Variation()}, song, 2)
        for a, b in zip(varied, plain):
            assert b.drum_kit == "standard"
            assert a.describe() == {**b.describe(), "drum_kit": a.drum_kit}
            drawn.setdefault(item["style"], set()).add(a.drum_kit)
    assert drawn["trap"] == {"tr808", "electronic"} and drawn["swing"] == {"jazz", "brush"}
    for style, kits in drawn.items():
        assert kits <= set(style_kits(style))


def test_plan_gives_every_style_every_key():
    songs = plan(24 * len(STYLES), seed=3)
    for style in STYLES:
        keys = Counter((s["tonic"], s["mode"]) for s in songs if s["style"] == style)
        assert len(keys) == 24
        lo, hi = STYLES[style][1]
        assert all(lo <= s["bpm"] <= hi for s in songs if s["style"] == style)
    assert len({s["song"] for s in songs}) == len(songs)


def test_wide_tempo_plan_reaches_past_each_styles_centre():
    centre = plan(10 * len(STYLES), seed=3)
    wide = plan(10 * len(STYLES), seed=3, variation=Variation(wide_tempo=True))
    assert set(WIDE_TEMPO) == set(STYLES)
    for style in STYLES:
        lo, hi = WIDE_TEMPO[style]
        assert lo <= STYLES[style][1][0] and STYLES[style][1][1] <= hi
        tempos = [s["bpm"] for s in wide if s["style"] == style]
        assert all(lo <= t <= hi for t in tempos)
        assert min(tempos) < STYLES[style][1][0] or max(tempos) > STYLES[style][1][1]
    assert [(s["style"], s["tonic"], s["mode"]) for s in centre] == [(s["style"], s["tonic"], s["mode"]) for s in wide]


def _pitch_share(song, degree: int) -> float:
    """Share of the song's pitched note time on the pitch class `degree` semitones above its tonic."""
    hist = np.zeros(12)
    for n in song.notes + song.sub_bass:
        if n.channel != DRUM_CHANNEL:
            hist[(n.pitch - song.tonic) % 12] += n.dur
    return float(hist[degree] / hist.sum())


def _first_composed(*args, **kwargs):
    """The first of a few seeds whose composition names its key (generate.make_song moves on the same way)."""
    for seed in range(11, 31):
        try:
            return compose(args[0], seed, *args[1:], **kwargs)
        except ValueError:
            continue
    raise AssertionError(f"no composition of {args} {kwargs}")


@pytest.mark.parametrize("style", sorted(MODAL_STYLES))
def test_a_modal_song_plays_its_modes_own_degree_and_is_annotated_by_tonic_and_third(style):
    mixolydian = _first_composed(style, 7, "major", 100, modal_scale="mixolydian")  # G mixolydian: F, no F#
    assert mixolydian.key == "G major" and mixolydian.modal_scale == "mixolydian"
    assert _pitch_share(mixolydian, 10) > 0.02 and _pitch_share(mixolydian, 11) == 0.0
    assert mixolydian.notes and min(n.start for n in mixolydian.notes if n.channel != DRUM_CHANNEL) == 0.0
    dorian = _first_composed(style, 2, "minor", 100, modal_scale="dorian")          # D dorian: B, no Bb
    assert dorian.key == "D minor" and _pitch_share(dorian, 9) > 0.02 and _pitch_share(dorian, 8) == 0.0
    plain = compose(style, 11, 7, "major", 100)
    assert plain.modal_scale is None and _pitch_share(plain, 10) < _pitch_share(mixolydian, 10)


def test_only_loop_styles_are_modal_and_only_in_their_modes_third():
    with pytest.raises(ValueError):
        compose("ballad", 1, 0, "major", 70, modal_scale="mixolydian")  # phrase styles cadence in major or minor
    with pytest.raises(ValueError):
        compose("rock", 1, 0, "minor", 120, modal_scale="mixolydian")   # mixolydian has a major third


def test_modal_plan_writes_half_the_loop_styles_in_a_mode_and_changes_nothing_else():
    plain = plan(20 * len(STYLES), seed=5)
    modal = plan(20 * len(STYLES), seed=5, variation=Variation(modal=True))
    assert all(item["modal_scale"] is None for item in plain)
    for style in STYLES:
        scales = [item["modal_scale"] for item in modal if item["style"] == style]
        if style not in MODAL_STYLES:
            assert set(scales) == {None}
            continue
        assert 4 <= sum(s is not None for s in scales) <= 16
    assert all(item["modal_scale"] in (None, {"major": "mixolydian", "minor": "dorian"}[item["mode"]])
               for item in modal)
    drop = ("variation", "modal_scale")
    assert [{k: v for k, v in a.items() if k not in drop} for a in plain] == \
        [{k: v for k, v in b.items() if k not in drop} for b in modal]


def test_a_modal_song_no_seed_of_which_names_its_key_is_written_in_the_plain_key(monkeypatch):
    from benchmarks.trainset import generate

    def plain_only(*args, modal_scale=None, **kwargs):
        if modal_scale:
            raise ValueError("never names its key")
        return compose(*args, **kwargs)

    item = next(i for i in plan(40, seed=5, styles=["rock"], variation=Variation(modal=True)) if i["modal_scale"])
    monkeypatch.setattr(generate, "compose", plain_only)
    song = make_song(item)
    assert song.modal_scale is None and song.key == f"{PITCH_CLASSES[item['tonic']]} {item['mode']}"


def test_benchmark_names_the_kind_of_error():
    from benchmarks.accuracy import key_error, parse_key, tempo_error, trainset_table

    assert [tempo_error(e, 90.0) for e in (91.0, 180.0, 45.0, 135.0, 270.0, 117.0, None)] == \
        ["ok", "x2", "x1/2", "x3/2", "x3", "other", "none"]
    ref = parse_key("A minor")
    assert [key_error(parse_key(k), ref) for k in ("A minor", "E minor", "D minor", "C major", "A major",
                                                   "F# major")] == \
        ["ok", "fifth", "fifth", "relative", "parallel", "other"]
    rows = [{"style": "trap", "song": "t1", "acc1": False, "acc1_or_alt": True, "acc2": True, "total_s": 0.1,
             "tempo_error": "x2", "key_exact": True, "key_mirex": 1.0, "key_error": "ok"},
            {"style": "trap", "song": "t2", "error": "AudioDecodeError: empty"},
            {"style": "percussion", "song": "p1", "acc1": True, "acc1_or_alt": True, "acc2": True, "total_s": 0.2,
             "tempo_error": "ok"}]
    table = {t["style"]: t for t in trainset_table(rows, "style")}
    assert table["trap"]["failed"] == 1 and table["trap"]["acc1"] == 0.0 and table["trap"]["tempo_errors"] == {"x2": 1}
    assert table["percussion"]["keyed"] == 0 and table["percussion"]["key_exact"] is None
    assert table["all"]["clips"] == 3 and table["all"]["acc1"] == 0.5


def test_benchmark_prints_cross_validated_figures_a_fit_script_wrote(tmp_path, capsys):
    from benchmarks.accuracy import print_cv

    path = tmp_path / "cv.json"
    path.write_text('{"grouping": "5 folds by song", "tempo": {"acc1": 0.9, "by_style": {"trap": {"acc1": 0.75}}},'
                    ' "key": {"exact": 0.97}}')
    print_cv(path)
    out = capsys.readouterr().out
    assert "Cross-validated" in out and "5 folds by song" in out
    assert "acc1 90.0%" in out and "trap" in out and "acc1 75.0%" in out and "exact 97.0%" in out


def test_summary_of_a_set_of_percussion_alone_names_no_keys():
    entries = [{"song": f"percussion-{i:03d}", "style": "percussion", "format": "m4a", "key": None, "lufs": -12.0,
                "bpm": 100.0 + i} for i in range(3)]
    text = summary(entries)
    assert "3 clips of 3 songs" in text and "keys" not in text
