"""benchmarks/trainset/scores.py: chorales by a person, annotated only where the score leaves no doubt, become
Songs the training set's renderer plays (music21, which reads the scores, is a tool of that benchmark only: these
tests build the scores' contents by hand)."""
from benchmarks.trainset.render import CLIP_SECONDS
from benchmarks.trainset.scores import RENDERED_SECONDS, STYLE, TEMPO_RANGE, Score, annotation, chorale_song


def _score(sharps=-2, meter=(4, 4), last_bass=43, voices=4):
    # two bars of four voices in quarter notes: a G minor chord, then D major, repeated
    notes = [(float(b), 1.0, pitch, v) for b in range(8)
             for v, pitch in enumerate((67, 62, 58, 43) if b % 2 == 0 else (66, 62, 57, 50))]
    return Score(sharps=sharps, meter=meter, last_bass=last_bass, notes=notes, length=8.0, voices=voices)


def test_the_key_is_the_last_bass_note_in_the_mode_the_signature_gives_it():
    assert annotation(_score(sharps=-2, last_bass=43)) == (7, "minor")     # two flats ending on G: G minor
    assert annotation(_score(sharps=-2, last_bass=46)) == (10, "major")    # ... on B flat: B flat major
    assert annotation(_score(sharps=3, last_bass=57)) == (9, "major")      # three sharps ending on A: A major
    assert annotation(_score(sharps=3, last_bass=54)) == (6, "minor")      # ... on F sharp: F sharp minor


def test_ambiguous_chorales_are_left_out():
    assert annotation(_score(sharps=-2, last_bass=48)) is None  # ends on C under two flats: Dorian, or a mode
    assert annotation(_score(sharps=-2, last_bass=50)) is None  # ends on the dominant (a Phrygian cadence)
    assert annotation(_score(meter=(3, 2))) is None             # the beat is the half note, or the bar
    assert annotation(_score(meter=(6, 8))) is None
    assert annotation(Score(sharps=0, meter=(4, 4), last_bass=48, notes=[], length=0.0, voices=4)) is None


def test_a_chorale_becomes_a_song_sung_again_until_the_clip_is_full():
    score = _score()
    song = chorale_song(score, index=3, seed=40)
    assert song.style == STYLE and song.key == "G minor" and song.meter == 4 and not song.has_drums
    assert TEMPO_RANGE[0] <= song.bpm <= TEMPO_RANGE[1] and song.alt_bpm == []
    beats = RENDERED_SECONDS * song.bpm / 60.0
    assert RENDERED_SECONDS > CLIP_SECONDS
    assert max(n.start for n in song.notes) < beats <= max(n.start + n.dur for n in song.notes) + 1.0
    verse = sorted((n.start, n.pitch) for n in song.notes if n.start < score.length)
    again = sorted((n.start - score.length, n.pitch) for n in song.notes if score.length <= n.start < 2 * score.length)
    assert verse == again == sorted((s, p) for s, _, p, _ in score.notes)
    assert set(song.programs) == {0, 1, 2, 3}
    assert chorale_song(score, index=3, seed=40) == song  # drawn from (seed, index): rebuilt the same
    assert chorale_song(score, index=4, seed=40).bpm != song.bpm


def test_a_score_of_many_voices_never_lands_on_the_drum_channel():
    song = chorale_song(_score(voices=11), index=0, seed=40)
    assert 9 not in song.programs and len(song.programs) == 11
