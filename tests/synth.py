"""Synthesized test audio with known answers: clicks, drum patterns and chords in a known key.

Every test makes its own audio from these functions; nothing is downloaded. All functions return mono
float32 arrays in [-1, 1] unless they say otherwise.
"""
from __future__ import annotations

import io

import numpy as np
import soundfile as sf

PITCH_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]

# Scale degrees (semitones above the tonic) of the chords in I-IV-V-I (major) and i-iv-V-i (harmonic minor).
_MAJOR_PROGRESSION = [(0, 4, 7), (5, 9, 12), (7, 11, 14), (0, 4, 7)]
_MINOR_PROGRESSION = [(0, 3, 7), (5, 8, 12), (7, 11, 14), (0, 3, 7)]


def _silence(seconds: float, sr: int) -> np.ndarray:
    return np.zeros(int(round(seconds * sr)), dtype=np.float32)


def _add_at(signal: np.ndarray, event: np.ndarray, start: int) -> None:
    end = min(len(signal), start + len(event))
    if start < end:
        signal[start:end] += event[: end - start]


def _decay(n: int, sr: int, tau_s: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (tau_s * sr)).astype(np.float32)


def click_track(bpm: float, seconds: float = 12.0, sr: int = 22050, *, accent_every: int = 4) -> np.ndarray:
    """Short 1 kHz clicks on every beat; every `accent_every`-th click is louder (the downbeat)."""
    y = _silence(seconds, sr)
    n = int(0.02 * sr)
    t = np.arange(n) / sr
    click = (np.sin(2 * np.pi * 1000 * t) * _decay(n, sr, 0.004)).astype(np.float32)
    period = 60.0 / bpm
    for i, beat_time in enumerate(np.arange(0.0, seconds, period)):
        gain = 1.0 if accent_every and i % accent_every == 0 else 0.6
        _add_at(y, gain * click, int(round(beat_time * sr)))
    return _normalize(y)


def _kick(sr: int) -> np.ndarray:
    n = int(0.25 * sr)
    t = np.arange(n) / sr
    freq = 50 + 100 * np.exp(-t / 0.03)  # pitch drop gives the "thump"
    phase = 2 * np.pi * np.cumsum(freq) / sr
    return (np.sin(phase) * _decay(n, sr, 0.08)).astype(np.float32)


def _snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.18 * sr)
    t = np.arange(n) / sr
    body = np.sin(2 * np.pi * 190 * t) * _decay(n, sr, 0.03)
    noise = rng.standard_normal(n) * _decay(n, sr, 0.05)
    return (0.5 * body + 0.6 * noise).astype(np.float32)


def _hihat(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.05 * sr)
    noise = np.diff(rng.standard_normal(n + 1))  # differentiated noise: bright, hat-like
    return (0.25 * noise * _decay(n, sr, 0.01)).astype(np.float32)


def drum_pattern(bpm: float, seconds: float = 12.0, sr: int = 22050, *, half_time: bool = False,
                 seed: int = 0) -> np.ndarray:
    """A 4/4 rock pattern: kick on beats 1 and 3, snare on 2 and 4, closed hi-hat on every eighth note.

    With `half_time=True` the snare falls only on beat 3 and the kick only on beat 1, the groove that makes
    estimators read half the tempo; the hi-hat still marks eighth notes at `bpm`.
    """
    rng = np.random.default_rng(seed)
    y = _silence(seconds, sr)
    kick, snare, hat = _kick(sr), _snare(sr, rng), _hihat(sr, rng)
    beat = 60.0 / bpm
    n_beats = int(seconds / beat) + 1
    for b in range(n_beats):
        start = b * beat
        pos = b % 4
        if half_time:
            if pos == 0:
                _add_at(y, kick, int(start * sr))
            if pos == 2:
                _add_at(y, snare, int(start * sr))
        else:
            if pos in (0, 2):
                _add_at(y, kick, int(start * sr))
            if pos in (1, 3):
                _add_at(y, snare, int(start * sr))
        for eighth in (0.0, 0.5):
            _add_at(y, hat, int((start + eighth * beat) * sr))
    return _normalize(y)


def _tone(freq: float, n: int, sr: int) -> np.ndarray:
    """A piano-like tone: a few decaying harmonics."""
    t = np.arange(n) / sr
    tone = sum((0.6 ** h) * np.sin(2 * np.pi * freq * (h + 1) * t) for h in range(4))
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-t / 1.2)
    return (tone * envelope).astype(np.float32)


def midi_to_hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def chord_progression(tonic: str | int, mode: str = "major", seconds: float = 12.0, sr: int = 22050, *,
                      chord_seconds: float = 1.5, bass: bool = True) -> np.ndarray:
    """Block chords I-IV-V-I (or i-iv-V-i) in the given key, repeated to fill `seconds`.

    `tonic` is a pitch-class name ("A#") or number (0 = C); `mode` is "major" or "minor".
    """
    pc = PITCH_CLASSES.index(tonic) if isinstance(tonic, str) else int(tonic) % 12
    progression = _MAJOR_PROGRESSION if mode == "major" else _MINOR_PROGRESSION
    y = _silence(seconds, sr)
    n = int(chord_seconds * sr)
    root_midi = 60 + pc if pc < 6 else 48 + pc  # keep chords around middle C
    for i, start in enumerate(np.arange(0.0, seconds, chord_seconds)):
        chord = progression[i % len(progression)]
        voice = sum(_tone(midi_to_hz(root_midi + step), n, sr) for step in chord)
        if bass:
            voice = voice + 0.8 * _tone(midi_to_hz(root_midi - 12 + chord[0]), n, sr)
        _add_at(y, voice, int(start * sr))
    return _normalize(y)


def song(bpm: float, tonic: str | int = "A", mode: str = "minor", seconds: float = 12.0, sr: int = 22050,
         *, half_time: bool = False) -> np.ndarray:
    """Drums at `bpm` over a chord progression in the given key, chords changing every bar."""
    drums = drum_pattern(bpm, seconds, sr, half_time=half_time)
    chords = chord_progression(tonic, mode, seconds, sr, chord_seconds=4 * 60.0 / bpm)
    return _normalize(0.6 * drums + 0.5 * chords)


def sine(freq: float = 440.0, seconds: float = 5.0, sr: int = 22050, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def white_noise(seconds: float = 5.0, sr: int = 22050, amplitude: float = 0.3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amplitude * rng.uniform(-1, 1, int(seconds * sr))).astype(np.float32)


def _normalize(y: np.ndarray, peak: float = 0.9) -> np.ndarray:
    top = float(np.max(np.abs(y))) if y.size else 0.0
    return (y * (peak / top)).astype(np.float32) if top > 0 else y.astype(np.float32)


def encode(y: np.ndarray, sr: int = 22050, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    """Encode samples (mono, or frames x channels) to WAV/FLAC/OGG bytes with libsndfile."""
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def wav_bytes(y: np.ndarray, sr: int = 22050) -> bytes:
    return encode(y, sr, "WAV", "PCM_16")


def encode_with_pyav(y: np.ndarray, sr: int = 44100, container: str = "mp4", codec: str = "aac",
                     channels: int = 1, *, layout: str | None = None, bit_rate: int | None = None) -> bytes:
    """Encode to a compressed container (m4a/AAC, mp3) in memory with PyAV, as a phone would send it.

    A mono signal is copied to every channel of `layout` ("mono", "stereo", "5.1", ...; default from
    `channels`); a channel-first (channels, n) array with one row per channel is encoded as it is."""
    import av

    buf = io.BytesIO()
    y = np.atleast_2d(np.asarray(y, np.float32))
    layout = layout or ("mono" if max(channels, y.shape[0]) == 1 else "stereo")
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=sr, layout=layout)
        if bit_rate:
            stream.bit_rate = bit_rate
        nb_channels = stream.codec_context.layout.nb_channels
        planes = y if y.shape[0] == nb_channels else np.repeat(y[:1], nb_channels, axis=0)
        step = 1024
        for start in range(0, planes.shape[1], step):
            chunk = np.ascontiguousarray(planes[:, start:start + step])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = sr
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def waltz(bpm: float, tonic: str | int = "D", mode: str = "major", seconds: float = 15.0, sr: int = 22050,
          *, seed: int = 0) -> np.ndarray:
    """3/4 "oom-pah-pah": a bass note (with a soft kick) on beat 1, the chord on beats 2 and 3, I-IV-V-I per bar.

    Beats are `bpm` per minute; bars are three beats long.
    """
    pc = PITCH_CLASSES.index(tonic) if isinstance(tonic, str) else int(tonic) % 12
    progression = _MAJOR_PROGRESSION if mode == "major" else _MINOR_PROGRESSION
    y = _silence(seconds, sr)
    beat = 60.0 / bpm
    n = int(beat * sr)
    kick = 0.5 * _kick(sr)
    root_midi = 60 + pc if pc < 6 else 48 + pc
    for b in range(int(seconds / beat) + 1):
        start = int(round(b * beat * sr))
        chord = progression[(b // 3) % len(progression)]
        if b % 3 == 0:
            _add_at(y, 1.2 * _tone(midi_to_hz(root_midi - 12 + chord[0]), n, sr), start)
            _add_at(y, kick, start)
        else:
            _add_at(y, 0.5 * sum(_tone(midi_to_hz(root_midi + step), n, sr) for step in chord), start)
    return _normalize(y)


def breakbeat(bpm: float, seconds: float = 15.0, sr: int = 22050, *, seed: int = 0) -> np.ndarray:
    """Drum'n'bass "two-step": kick on beat 1 and on the "and" of beat 2, snare on beats 2 and 4, hi-hat eighths.

    At 170-180 BPM many listeners nod at half speed; the snare backbeat on 2 and 4 marks the notated tempo.
    """
    rng = np.random.default_rng(seed)
    y = _silence(seconds, sr)
    kick, snare, hat = _kick(sr), _snare(sr, rng), _hihat(sr, rng)
    beat = 60.0 / bpm
    for b in range(int(seconds / beat) + 1):
        start = b * beat
        pos = b % 4
        if pos == 0:
            _add_at(y, kick, int(start * sr))
        if pos == 1:
            _add_at(y, 0.8 * kick, int((start + 0.5 * beat) * sr))
        if pos in (1, 3):
            _add_at(y, snare, int(start * sr))
        for eighth in (0.0, 0.5):
            _add_at(y, hat, int((start + eighth * beat) * sr))
    return _normalize(y)


#: Instruments `drum_loop` can place, by name.
_LOOP_SOUNDS = ("kick", "snare", "hat", "rim")


def _rim(sr: int) -> np.ndarray:
    """A short woody click (rim shot / clave): 1.6 kHz and 2.5 kHz partials decaying in ~10 ms."""
    n = int(0.04 * sr)
    t = np.arange(n) / sr
    return (0.5 * (np.sin(2 * np.pi * 1600 * t) + 0.6 * np.sin(2 * np.pi * 2500 * t))
            * _decay(n, sr, 0.01)).astype(np.float32)


def drum_loop(bpm: float, pattern: dict[str, list[float]], *, beats_per_bar: int = 4, seconds: float = 15.0,
              sr: int = 22050, swing: float = 0.0, jitter_ms: float = 0.0, seed: int = 0) -> np.ndarray:
    """A bar-long drum pattern repeated for `seconds`.

    `pattern` maps an instrument ("kick", "snare", "hat", "rim") to hit positions in beats from the bar start
    (0 <= position < beats_per_bar), e.g. {"kick": [0, 2.5], "snare": [1, 3]}. Hits on the second eighth of a beat
    are delayed by `swing` x a sixteenth; every hit moves by a random +-`jitter_ms` (a human player) and gets a
    random gain in 0.75..1.
    """
    rng = np.random.default_rng(seed)
    sounds = {"kick": _kick(sr), "snare": _snare(sr, rng), "hat": _hihat(sr, rng), "rim": _rim(sr)}
    y = _silence(seconds, sr)
    beat = 60.0 / bpm
    bar = beats_per_bar * beat
    for bar_start in np.arange(0.0, seconds, bar):
        for name, positions in pattern.items():
            for pos in positions:
                frac = pos % 1.0
                shift = swing * 0.25 if abs(frac - 0.5) < 1e-6 else 0.0
                t = bar_start + (pos + shift) * beat + rng.uniform(-1, 1) * jitter_ms / 1000.0
                if t >= 0:
                    _add_at(y, rng.uniform(0.75, 1.0) * sounds[name], int(round(t * sr)))
    return _normalize(y)


def _tom(freq: float, sr: int) -> np.ndarray:
    """A tuned tom: a sine at `freq` that starts 15 % sharp (the skin's tension as it is struck) and rings ~0.2 s."""
    n = int(0.5 * sr)
    t = np.arange(n) / sr
    f = freq * (1 + 0.15 * np.exp(-t / 0.02))
    return (np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.18)).astype(np.float32)


def tom_groove(bpm: float, tom_hz: tuple[float, float, float], seconds: float = 15.0, sr: int = 22050, *,
               seed: int = 0) -> np.ndarray:
    """Drums alone with pitch: a rock groove (kick, snare, eighth hats) and a fill on three tuned toms (low, mid,
    high `tom_hz`) in every bar. The toms ring long enough to pass for notes."""
    y = drum_loop(bpm, {"kick": [0, 2.5], "snare": [1, 3], "hat": [i / 2 for i in range(8)]}, seconds=seconds,
                  sr=sr, seed=seed)
    low, mid, high = (_tom(f, sr) for f in tom_hz)
    beat = 60.0 / bpm
    for bar_start in np.arange(0.0, seconds, 4 * beat):
        for pos, tom in ((0.5, low), (2.0, high), (3.25, mid), (3.5, mid), (3.75, low)):
            _add_at(y, 0.8 * tom, int(round((bar_start + pos * beat) * sr)))
    return _normalize(y)


def dembow(bpm: float, seconds: float = 15.0, sr: int = 22050, *, seed: int = 0) -> np.ndarray:
    """Reggaeton's dembow: kick on every beat, snare on the "a" of 1 and the "and" of 2 (3+3+2 sixteenths), with
    a bass note under every bar. Listeners tap the kick (`bpm`, about 90-100), not the snare's double-time pulse."""
    pattern = {"kick": [0, 1, 2, 3], "snare": [0.75, 1.5, 2.75, 3.5], "hat": [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5]}
    drums = drum_loop(bpm, pattern, seconds=seconds, sr=sr, seed=seed)
    bass = chord_progression("A", "minor", seconds, sr, chord_seconds=4 * 60.0 / bpm)
    return _normalize(0.8 * drums + 0.3 * bass)


def _power_chord(freq: float, n: int, sr: int) -> np.ndarray:
    """A distorted power chord (root, fifth, octave) chugged short: clipped sawtooth-like partials."""
    t = np.arange(n) / sr
    raw = sum(np.sin(2 * np.pi * f * h * t) / h for f in (freq, freq * 1.5, freq * 2) for h in range(1, 6))
    env = np.minimum(1.0, t / 0.003) * np.exp(-t / 0.08)
    return (np.tanh(4.0 * raw) * env).astype(np.float32)


def metal(bpm: float, seconds: float = 15.0, sr: int = 22050, *, seed: int = 0) -> np.ndarray:
    """Fast metal: palm-muted power-chord eighths, kick on 1, snare on 2 and 4, crash-like hat on the beats.
    Played at 180-190 BPM, it is counted at `bpm` (the snare backbeat), not at half."""
    drums = drum_loop(bpm, {"kick": [0, 2], "snare": [1, 3], "hat": [0, 1, 2, 3]}, seconds=seconds, sr=sr,
                      seed=seed)
    y = _silence(seconds, sr)
    eighth = 30.0 / bpm
    n = int(eighth * sr)
    root = midi_to_hz(40)  # E2
    for i, t in enumerate(np.arange(0.0, seconds, eighth)):
        _add_at(y, (1.0 if i % 2 == 0 else 0.8) * _power_chord(root, n, sr), int(round(t * sr)))
    return _normalize(0.7 * drums + 0.4 * _normalize(y))


def ballad(bpm: float, tonic: str | int = "E", mode: str = "major", seconds: float = 20.0,
           sr: int = 22050) -> np.ndarray:
    """A slow piano ballad: a bass note and chord on every beat (louder on beat 1), a soft arpeggio note on every
    eighth between them, chords changing every bar. Listeners tap the chords (`bpm`), not the arpeggio eighths."""
    pc = PITCH_CLASSES.index(tonic) if isinstance(tonic, str) else int(tonic) % 12
    progression = _MAJOR_PROGRESSION if mode == "major" else _MINOR_PROGRESSION
    y = _silence(seconds, sr)
    beat = 60.0 / bpm
    n = int(2 * beat * sr)
    root_midi = 60 + pc if pc < 6 else 48 + pc
    for b in range(int(seconds / beat) + 1):
        chord = progression[(b // 4) % len(progression)]
        start = int(round(b * beat * sr))
        gain = 1.0 if b % 4 == 0 else 0.7
        _add_at(y, gain * (sum(_tone(midi_to_hz(root_midi + s), n, sr) for s in chord)
                           + _tone(midi_to_hz(root_midi - 12 + chord[0]), n, sr)), start)
        _add_at(y, 0.25 * _tone(midi_to_hz(root_midi + 12 + chord[b % 3]), n // 2, sr),
                int(round((b + 0.5) * beat * sr)))
    return _normalize(y)
