"""From a composed Song to an encoded 30-s clip: FluidSynth rendering, an 808 layer, reverb, mastering, encoding.

Everything a rendering varies is in a `Rendering` (soundfont, drum kit, channel volumes, reverb, compression,
saturation, target loudness, encoder), drawn from a seed by `draw_rendering`, so a clip can be rebuilt exactly.
"""
from __future__ import annotations

import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyloudnorm
import soundfile as sf
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d
from scipy.signal import fftconvolve, lfilter

from benchmarks.trainset.compose import DRUM_CHANNEL, Note, Song, to_midi
# the project's encoders, shared with the decoder's tests
from tests.synth import encode as encode_with_libsndfile
from tests.synth import encode_with_pyav

SAMPLE_RATE = 44100
CLIP_SECONDS = 30.0
SOUNDFONTS = {
    "FluidR3_GM": "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "TimGM6mb": "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "MuseScore_General": "/usr/share/sounds/sf3/MuseScore_General.sf3",
}
FORMATS = {"m4a": ("mp4", "aac"), "mp3": ("mp3", "libmp3lame"), "wav": (None, None)}
#: GM drum kits (bank-128 presets that all three soundfonts have), by name.
KITS = {"standard": 0, "room": 8, "power": 16, "electronic": 24, "tr808": 25, "jazz": 32, "brush": 40,
        "orchestra": 48}
#: style -> the kits its drums are plausibly produced with (generate.py --varied-kits draws one per rendering):
#: drum machines for the electronic styles, a jazz kit or brushes for swing and bossa, a big room or power kit
#: for rock. Styles not named here draw from the standard and room kits.
STYLE_KITS: dict[str, tuple[str, ...]] = {
    "ballad": ("standard", "room", "brush"), "pop": ("standard", "room", "electronic"),
    "rock": ("standard", "room", "power"), "punk": ("standard", "room", "power"),
    "metal": ("power", "standard", "room"),
    "waltz": ("standard", "brush", "orchestra"), "swing": ("jazz", "brush"), "bossa": ("jazz", "brush", "standard"),
    "funk": ("standard", "room", "electronic"), "dnb": ("electronic", "tr808", "standard"),
    "house": ("tr808", "electronic"), "synthpop": ("electronic", "tr808"), "reggaeton": ("tr808", "electronic"),
    "trap": ("tr808", "electronic"), "hiphop": ("standard", "tr808", "electronic"),
    "percussion": ("standard", "room", "jazz", "orchestra"),
}


@dataclass
class Rendering:
    """How one clip of a song is produced. `variant` names the differences in a few words."""

    soundfont: str
    volumes: dict[int, int] = field(default_factory=dict)
    pans: dict[int, int] = field(default_factory=dict)
    synth_effects: bool = False  # FluidSynth's own reverb and chorus (as a plain GM rendering has them)
    offset_s: float = 0.0  # where the 30-s window starts in the rendered song
    reverb_rt60_s: float = 0.0  # 0 = dry
    reverb_wet: float = 0.0
    compress: bool = False
    saturation: float = 0.0  # tanh drive above 1 (0 = none)
    target_lufs: float = -14.0
    fmt: str = "m4a"
    bitrate: int = 160_000
    drum_kit: str = "standard"  # a key of KITS

    @property
    def variant(self) -> str:
        parts = [self.soundfont + ("/fx" if self.synth_effects else ""), f"{self.target_lufs:.0f}LUFS"]
        if self.drum_kit != "standard":
            parts.append(f"kit-{self.drum_kit}")
        if self.reverb_rt60_s:
            parts.append(f"reverb{self.reverb_rt60_s:.1f}s")
        if self.compress:
            parts.append("comp")
        if self.saturation:
            parts.append(f"sat{self.saturation:.1f}")
        parts.append(self.fmt + (f"{self.bitrate // 1000}k" if self.fmt != "wav" else ""))
        return "+".join(parts)

    def describe(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("volumes", "pans")}


def draw_rendering(song: Song, rng: np.random.Generator, *, soundfont: str, fmt: str) -> Rendering:
    """A random but plausible production of `song`: mix, room, dynamics processing and loudness."""
    heavy = song.style in {"rock", "punk", "metal"}
    volumes = {ch: int(rng.integers(80, 121)) for ch in song.programs}
    if song.has_drums:
        volumes[DRUM_CHANNEL] = int(rng.integers(85, 128))
    # spread the parts across the stereo field; bass and drums stay near the centre
    pans = {ch: int(np.clip(64 + rng.normal(0, 8 if ch in (2, DRUM_CHANNEL) else 28), 0, 127)) for ch in volumes}
    reverb = rng.random() < (0.35 if heavy else 0.5)
    return Rendering(
        soundfont=soundfont, volumes=volumes, pans=pans, synth_effects=bool(rng.random() < 0.5), offset_s=float(rng.uniform(0.0, 5.0)),
        reverb_rt60_s=float(rng.uniform(0.4, 2.4)) if reverb else 0.0,
        reverb_wet=float(rng.uniform(0.08, 0.3)) if reverb else 0.0,
        compress=bool(rng.random() < (0.9 if heavy else 0.55)),
        saturation=float(rng.uniform(1.5, 4.0)) if rng.random() < (0.6 if heavy else 0.2) else 0.0,
        target_lufs=float(rng.uniform(-20.0, -8.0)),
        fmt=fmt, bitrate=int(rng.choice([96_000, 128_000, 160_000, 192_000, 256_000])),
    )


def style_kits(style: str) -> tuple[str, ...]:
    """The kits `style` is produced with: its STYLE_KITS entry, or the standard and room kits."""
    return STYLE_KITS.get(style, ("standard", "room"))


def draw_drum_kit(style: str, rng: np.random.Generator) -> str:
    """One of the kits `style` is produced with (style_kits), drawn evenly."""
    kits = style_kits(style)
    return kits[int(rng.integers(len(kits)))]


def fluidsynth(song: Song, rendering: Rendering, rng: np.random.Generator) -> np.ndarray:
    """(frames, 2) float32 of the song's MIDI rendered offline by the fluidsynth CLI (its own reverb and chorus
    as the rendering says)."""
    with tempfile.TemporaryDirectory(prefix="trainset-") as tmp:
        mid, wav = Path(tmp) / "song.mid", Path(tmp) / "song.wav"
        to_midi(song, volumes=rendering.volumes, pans=rendering.pans, humanize=rng,
                drum_kit=KITS[rendering.drum_kit]).save(mid)
        effects = "1" if rendering.synth_effects else "0"
        subprocess.run(["fluidsynth", "-ni", "-q", "-F", str(wav), "-T", "wav", "-O", "float",
                        "-r", str(SAMPLE_RATE), "-g", "0.35", "-R", effects, "-C", effects,
                        SOUNDFONTS[rendering.soundfont], str(mid)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
        y, _ = sf.read(wav, dtype="float32", always_2d=True)
    return y


def sub_bass_808(notes: list[Note], bpm: float, frames: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A TR-808-style sub bass: a sine that drops from an octave above to its pitch in 40 ms, then decays."""
    out = np.zeros(frames, dtype=np.float64)
    spb = 60.0 / bpm
    for n in notes:
        start = int(round(n.start * spb * sr))
        length = min(int(n.dur * spb * sr), frames - start)
        if length <= 0:
            continue
        t = np.arange(length) / sr
        f0 = 440.0 * 2 ** ((n.pitch - 69) / 12)
        freq = f0 * (1 + np.exp(-t / 0.04))
        phase = 2 * np.pi * np.cumsum(freq) / sr
        env = np.minimum(1.0, t / 0.003) * np.exp(-t / 0.9) * np.minimum(1.0, (length - np.arange(length)) / 400)
        out[start:start + length] += (n.vel / 127) * np.sin(phase) * env
    return np.tanh(1.5 * out).astype(np.float32)


def reverb(y: np.ndarray, rt60_s: float, wet: float, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A room: convolution with exponentially decaying noise (independent per channel, so it also widens),
    reaching -60 dB after `rt60_s`, mixed in at `wet`."""
    n = int(rt60_s * sr)
    t = np.arange(n) / sr
    decay = 10 ** (-3 * t / rt60_s)
    ir = rng.standard_normal((n, y.shape[1])) * decay[:, None]
    ir[: int(0.01 * sr)] *= np.linspace(0, 1, int(0.01 * sr))[:, None]  # a short pre-delay ramp
    ir /= np.sqrt(np.sum(ir ** 2, axis=0, keepdims=True))
    tail = np.stack([fftconvolve(y[:, c], ir[:, c])[: len(y)] for c in range(y.shape[1])], axis=1)
    return ((1 - wet) * y + wet * tail).astype(np.float32)


def compress(y: np.ndarray, sr: int = SAMPLE_RATE, threshold_db: float = -24.0, ratio: float = 4.0,
             attack_s: float = 0.01, release_s: float = 0.15) -> np.ndarray:
    """A feed-forward RMS compressor on 5 ms blocks: gain reduction above `threshold_db` (relative to full scale)
    by `ratio`, smoothed with one-pole attack/release filters (fast down, slow up)."""
    block = int(0.005 * sr)
    n_blocks = len(y) // block + 1
    padded = np.pad(np.mean(y ** 2, axis=1), (0, n_blocks * block - len(y)))
    level_db = 10 * np.log10(padded.reshape(n_blocks, block).mean(axis=1) + 1e-12)
    target = -np.maximum(level_db - threshold_db, 0.0) * (1 - 1 / ratio)
    a_att, a_rel = np.exp(-block / (attack_s * sr)), np.exp(-block / (release_s * sr))
    # attack/release: smooth with the slow filter, then let the fast one pull the gain down where needed
    slow = lfilter([1 - a_rel], [1, -a_rel], target)
    fast = lfilter([1 - a_att], [1, -a_att], target)
    gain_db = np.minimum(slow, fast)
    gain = 10 ** (np.interp(np.arange(len(y)) / block, np.arange(n_blocks), gain_db) / 20)
    makeup = 10 ** (-np.median(gain_db) / 20)
    return (y * (gain * makeup)[:, None]).astype(np.float32)


def limit(y: np.ndarray, ceiling: float = 0.89, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A look-ahead brickwall limiter: no sample exceeds `ceiling` (about -1 dBFS). The gain is the running
    minimum of the needed gain, averaged over the same window, so it never rises above what any peak needs."""
    window = int(0.004 * sr) | 1
    peak = maximum_filter1d(np.max(np.abs(y), axis=1), window)
    need = np.minimum(1.0, ceiling / np.maximum(peak, 1e-9))
    gain = uniform_filter1d(minimum_filter1d(need, window), window)
    return np.clip(y * gain[:, None], -ceiling, ceiling).astype(np.float32)


def master(y: np.ndarray, rendering: Rendering, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, float]:
    """Compression and saturation as drawn, then gain and limiting until the integrated loudness is within
    0.3 LU of the target (or the limiter cannot go louder). Returns the clip and its measured loudness."""
    meter = pyloudnorm.Meter(sr)
    if rendering.compress:
        y = compress(y, sr)
    if rendering.saturation:
        y = y / (np.max(np.abs(y)) + 1e-9)
        y = (np.tanh(rendering.saturation * y) / np.tanh(rendering.saturation)).astype(np.float32)
    lufs = meter.integrated_loudness(y)
    for _ in range(4):
        y = limit(y * 10 ** ((rendering.target_lufs - lufs) / 20))
        lufs = meter.integrated_loudness(y)
        if abs(lufs - rendering.target_lufs) < 0.3:
            break
    return y, float(lufs)


def encode(y: np.ndarray, fmt: str, bitrate: int = 160_000, sr: int = SAMPLE_RATE) -> bytes:
    """Stereo samples (frames, 2) to file bytes: 16-bit WAV, AAC in MP4 (.m4a) or MP3, encoded with PyAV."""
    if fmt == "wav":
        return encode_with_libsndfile(y, sr, "WAV", "PCM_16")
    container, codec = FORMATS[fmt]
    return encode_with_pyav(np.ascontiguousarray(y.T), sr, container, codec, 2, bit_rate=bitrate)


def render_clip(song: Song, rendering: Rendering, seed: int) -> tuple[bytes, float]:
    """The encoded 30-s clip of `song` as `rendering` says, and its integrated loudness before encoding."""
    rng = np.random.default_rng(seed)
    y = fluidsynth(song, rendering, rng)
    if song.sub_bass:
        y = y + 0.5 * sub_bass_808(song.sub_bass, song.bpm, len(y))[:, None]
    start = int(rendering.offset_s * SAMPLE_RATE)
    frames = int(CLIP_SECONDS * SAMPLE_RATE)
    y = y[start:start + frames]
    if len(y) < frames:
        y = np.pad(y, ((0, frames - len(y)), (0, 0)))
    if rendering.reverb_rt60_s:
        y = reverb(y, rendering.reverb_rt60_s, rendering.reverb_wet, rng)
    fade = int(0.02 * SAMPLE_RATE)
    y[:fade] *= np.linspace(0, 1, fade)[:, None]
    y[-fade:] *= np.linspace(1, 0, fade)[:, None]
    y, lufs = master(y, rendering)
    return encode(y, rendering.fmt, rendering.bitrate), lufs
