"""benchmarks/trainset/human.py: music people wrote is annotated with the tempo its file states, only over stretches
where that tempo holds in a meter of quarters, and only where notes fill the window (the files are built here)."""
import zlib

import mido
import numpy as np
import pytest

from benchmarks.trainset import human
from benchmarks.trainset.human import (RENDERED_SECONDS, Groove, groove_chart, midi_windows, mma_grooves, pick_grooves,
                                       project_tempo, read_midi)
from benchmarks.trainset.theory import PITCH_CLASSES


def _midi(path, sections, ticks_per_beat=480):
    """A type-1 MIDI file: per section (bpm, (numerator, denominator), beats), a tempo and meter event, then a
    piano note and a kick on every quarter; a repeated tempo event in the middle of the first section."""
    meta, notes = mido.MidiTrack(), mido.MidiTrack()
    notes.append(mido.Message("program_change", channel=0, program=24))
    tick = 0
    for s, (bpm, (num, den), beats) in enumerate(sections):
        meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=tick - sum(m.time for m in meta)))
        meta.append(mido.MetaMessage("time_signature", numerator=num, denominator=den, time=0))
        if s == 0:
            meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=ticks_per_beat * 8))
        tick += beats * ticks_per_beat
    for _ in range(sum(beats for _, _, beats in sections)):
        notes.append(mido.Message("note_on", channel=0, note=60, velocity=80, time=0))
        notes.append(mido.Message("note_on", channel=9, note=36, velocity=90, time=0))
        notes.append(mido.Message("note_off", channel=0, note=60, velocity=0, time=ticks_per_beat // 2))
        notes.append(mido.Message("note_off", channel=9, note=36, velocity=0, time=ticks_per_beat // 2))
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    midi.tracks += [meta, notes]
    midi.save(path)
    return path


def test_windows_lie_in_one_tempo_and_meter_of_quarters_and_say_that_tempo(tmp_path):
    beats_at = lambda bpm: int(RENDERED_SECONDS * bpm / 60) + 1  # noqa: E731 - one window's worth of beats
    path = _midi(tmp_path / "song.mid", [(100, (4, 4), 2 * beats_at(100)), (90, (6, 8), beats_at(90)),
                                         (140, (3, 4), beats_at(140))])
    notes, programs, stretches = read_midi(path)
    assert [(s.bpm, s.meter) for s in stretches] == [(100.0, (4, 4)), (90.0, (6, 8)), (140.0, (3, 4))]
    assert programs == {0: 24}
    windows = midi_windows(path, most=5)
    assert [(song.bpm, song.meter) for _, song in windows] == [(100.0, 4), (100.0, 4), (140.0, 3)]
    for start, song in windows:
        assert min(n.start for n in song.notes) == pytest.approx(0.0)
        assert max(n.start for n in song.notes) < RENDERED_SECONDS * song.bpm / 60
        assert song.has_drums and song.key is None and song.programs == {0: 24}
    assert midi_windows(path, most=1) == windows[:1]


def test_a_window_with_long_rests_is_skipped(tmp_path):
    path = _midi(tmp_path / "song.mid", [(120, (4, 4), 300)])
    midi = mido.MidiFile(path)
    for message in [m for m in midi.tracks[1] if m.type == "note_on"][:160]:  # 80 beats of rest, then music
        message.velocity = 0
    midi.save(path)
    # a window is 72 beats at 120 BPM; it may rest on a fifth of them, so the first starts on the bar at 68
    assert [start for start, _ in midi_windows(path, most=3)] == [68, 140, 212]


def test_project_tempo_is_stated_unless_automated(tmp_path):
    plain = b'<lmms-project><head bpm="128" timesig_numerator="4" timesig_denominator="4"/></lmms-project>'
    automated = (b'<lmms-project><head timesig_numerator="3" timesig_denominator="4"><bpm value="96" id="7"/>'
                 b'</head><song><track><automationpattern><object id="7"/></automationpattern></track></song>'
                 b'</lmms-project>')
    (tmp_path / "a.mmp").write_bytes(plain)
    (tmp_path / "b.mmpz").write_bytes(len(automated).to_bytes(4, "big") + zlib.compress(automated))
    (tmp_path / "c.mmpz").write_bytes(len(automated).to_bytes(4, "big") + zlib.compress(automated.replace(
        b'<object id="7"/>', b'<object id="8"/>')))
    h2 = b"<song><bpm>98</bpm><BPMTimeLine>%s</BPMTimeLine></song>"
    (tmp_path / "d.h2song").write_bytes(h2 % b"")
    (tmp_path / "e.h2song").write_bytes(h2 % b"<newBPM><BAR>4</BAR><BPM>120</BPM></newBPM>")
    assert project_tempo(tmp_path / "a.mmp") == (128.0, (4, 4))
    assert project_tempo(tmp_path / "b.mmpz") is None
    assert project_tempo(tmp_path / "c.mmpz") == (96.0, (3, 4))
    assert project_tempo(tmp_path / "d.h2song") == (98.0, (4, 4))
    assert project_tempo(tmp_path / "e.h2song") is None


def test_mma_grooves_in_quarters_are_kept_and_the_rest_left_out(tmp_path):
    (tmp_path / "rumba.mma").write_text(
        "Begin Doc\n A latin groove.\nEnd\nTime 4\nTimesig 4 4\n"
        "DefGroove Rumba   Basic rumba.\nDefGroove RumbaFast   For faster pieces: double the \\\n"
        "    tempo to get it right.\nDefGroove RumbaIntro   A 4 bar introduction.\nDefGroove RumbaEnd  Ending.\n"
        "Time 3\nDefGroove RumbaWaltz   In three.\nTime 2\nTimesig 6 8\nDefGroove Rumba68  Two dotted beats.\n")
    (tmp_path / "jig.mma").write_text("Begin Doc\n Written in 3: the tempo is a dotted quarter.\nEnd\nTime 3\n"
                                      "DefGroove Jig  A jig.\n")
    assert [(g.library_file, g.name, g.meter) for g in mma_grooves(tmp_path)] == [
        (f"{tmp_path.name}/rumba", "Rumba", 4), (f"{tmp_path.name}/rumba", "RumbaWaltz", 3)]


def test_a_groove_chart_plays_the_groove_long_enough_at_its_tempo():
    text, tonic = groove_chart(Groove("stdlib/rumba", "Rumba", 3), 120.0, np.random.default_rng(0))
    chart = text.splitlines()
    assert chart[:2] == ["Tempo 120", "Groove Rumba"]
    bars = [line.split() for line in chart[2:]]
    assert [int(n) for n, _ in bars] == list(range(1, len(bars) + 1))
    assert (len(bars) - 1) * 3 >= RENDERED_SECONDS * 120 / 60
    names = PITCH_CLASSES
    chords = [chord for _, chord in bars]
    # the key is the major key of the chart's I: its tonic chord is played, and its V7 leads to it
    assert names[tonic] in chords and f"{names[(tonic + 7) % 12]}7" in chords
    assert all(chord.rstrip("m7") in names for chord in chords)


def test_at_most_the_asked_grooves_of_each_file_are_drawn():
    grooves = [Groove(f"lib/{f}", f"{f}{i}", 4) for f in "ab" for i in range(5)] + [Groove("lib/c", "c0", 3)]
    picked = pick_grooves(grooves, 2, seed=1)
    assert [g.library_file for g in picked] == ["lib/a", "lib/a", "lib/b", "lib/b", "lib/c"]
    assert picked == pick_grooves(grooves, 2, seed=1) and len(set(picked)) == 5


@pytest.mark.parametrize("drums_only", [False, True])
def test_a_groove_window_has_its_charts_key_unless_it_is_drums_alone(tmp_path, monkeypatch, drums_only):
    path = _midi(tmp_path / "groove.mid", [(120, (4, 4), 80)])
    if drums_only:
        midi = mido.MidiFile(path)
        for message in midi.tracks[1]:  # the piano falls silent (its events keep their times)
            if message.type == "note_on" and message.channel == 0:
                message.velocity = 0
        midi.save(path)
    keys = []
    monkeypatch.setattr(human, "render_clips", lambda song, *args: keys.append(song.key) or [])
    human._render_windows(path, 0, 1, str(tmp_path), 1, style="mma", song_id="mma-x", source="test", tonic=2)
    assert keys == [None if drums_only else "D major"]
