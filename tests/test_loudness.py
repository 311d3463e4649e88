"""Integrated loudness follows ITU-R BS.1770-4 on the decoded channels at their own rate.

Known answers from the standard (a 997 Hz sine), the gates, the channel weights, the per-rate K-weighting, and
agreement with pyloudnorm 0.2.0 (an independent implementation, a test-only dependency) on noise and
music-like signals, through the whole decode path as well.
"""
from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
import scipy.signal

from backend.analysis import ANALYSIS_SAMPLE_RATE, loudness, perform_audio_analysis
from backend.audio.decode import decode_audio
from tests import synth


def sine(seconds: float, sr: int, dbfs: float = 0.0, freq: float = 997.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def pink_noise(seconds: float, sr: int, seed: int) -> np.ndarray:
    """Noise with a 1/f power spectrum (the long-term spectrum of much music), 0.1 RMS."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spectrum[1:] /= np.sqrt(f[1:])
    spectrum[0] = 0
    y = np.fft.irfft(spectrum, n)
    return (0.1 * y / np.sqrt(np.mean(y ** 2))).astype(np.float32)


def music_like(seconds: float, sr: int, *, variant: int = 0) -> np.ndarray:
    """Drums over chords, with loud and quiet passages so the gates have something to do."""
    y = synth.song(100 + 12 * variant, ["A", "E", "C"][variant % 3], "minor", seconds=seconds, sr=sr)
    envelope = np.ones_like(y)
    envelope[len(y) // 3:len(y) // 2] = 0.1  # a passage 20 dB down: below the relative gate
    return 0.5 * y * envelope


def reference(channels: np.ndarray, sr: int) -> float:
    """pyloudnorm's integrated loudness of channel-first audio (it wants frames x channels, float64)."""
    x = np.asarray(channels, np.float64)
    return pyloudnorm.Meter(sr).integrated_loudness(x.T if x.ndim == 2 and x.shape[0] > 1 else x.reshape(-1))


# --------------------------------------------------------------------------------------------------------------
# known answers
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sr", [44100, 48000])
def test_full_scale_997_hz_sine_in_one_channel_reads_minus_3_01(sr):
    tone = sine(10, sr)
    assert loudness.integrated_loudness(tone, sr) == pytest.approx(-3.01, abs=0.02)
    left_only = np.stack([tone, np.zeros_like(tone)])
    assert loudness.integrated_loudness(left_only, sr) == pytest.approx(-3.01, abs=0.02)


@pytest.mark.parametrize("sr", [44100, 48000])
def test_full_scale_997_hz_sine_in_both_channels_reads_0(sr):
    tone = sine(10, sr)
    assert loudness.integrated_loudness(np.stack([tone, tone]), sr) == pytest.approx(0.0, abs=0.02)


@pytest.mark.parametrize("sr", [8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000])
def test_minus_20_dbfs_sine_reads_minus_23_at_every_rate(sr):
    assert loudness.integrated_loudness(sine(10, sr, -20.0), sr) == pytest.approx(-23.0, abs=0.05)


def test_level_changes_are_exact():
    sr = 48000
    noise = pink_noise(10, sr, seed=1)
    base = loudness.integrated_loudness(noise, sr)
    assert loudness.integrated_loudness(noise * np.float32(10 ** (-6 / 20)), sr) == pytest.approx(base - 6, abs=1e-3)


# --------------------------------------------------------------------------------------------------------------
# gates
# --------------------------------------------------------------------------------------------------------------

def test_silence_between_tones_is_gated_out():
    sr = 48000
    tone = sine(20, sr, -20.0)
    gap = np.zeros(10 * sr, np.float32)
    y = np.concatenate([tone, gap, tone])
    reading = loudness.integrated_loudness(y, sr)
    # the blocks that straddle an edge (3/4, 1/2, 1/4 tone) pass the gates, as the standard says: -0.07 LU here
    assert reading == pytest.approx(-23.0, abs=0.1)
    assert reading == pytest.approx(reference(y, sr), abs=0.05)
    # without the gates the 10 s gap would pull the reading down by 1 LU
    assert reading - (-23.0 + 10 * np.log10(40 / 50)) > 0.8


def test_relative_gate_drops_a_quiet_passage_but_not_a_moderate_one():
    sr = 48000
    loud = sine(20, sr, -20.0)
    quiet = sine(20, sr, -45.0)   # 25 LU down: above the -70 absolute gate, below the -10 LU relative gate
    moderate = sine(20, sr, -26.0)  # 6 LU down: kept
    assert loudness.integrated_loudness(np.concatenate([loud, quiet]), sr) == pytest.approx(-23.0, abs=0.1)
    both = loudness.integrated_loudness(np.concatenate([loud, moderate]), sr)
    expected = 10 * np.log10((10 ** (-23.0 / 10) + 10 ** (-29.0 / 10)) / 2)  # the power average of the halves
    assert both == pytest.approx(expected, abs=0.05)


def test_absolute_gate_makes_near_silence_silent():
    sr = 44100
    assert loudness.integrated_loudness(np.zeros((2, 5 * sr), np.float32), sr) is None
    assert loudness.integrated_loudness(sine(5, sr, -75.0), sr) is None
    assert loudness.integrated_loudness(sine(5, sr, -60.0), sr) == pytest.approx(-63.0, abs=0.05)


def test_dc_offset_does_not_count():
    sr = 44100
    tone = sine(5, sr, -20.0)
    assert loudness.integrated_loudness(tone + np.float32(0.3), sr) == pytest.approx(-23.0, abs=0.02)
    assert loudness.integrated_loudness(np.full(5 * sr, 0.5, np.float32), sr) is None


def test_clip_shorter_than_one_block_is_one_block():
    sr = 48000
    assert loudness.integrated_loudness(sine(0.3, sr, -20.0), sr) == pytest.approx(-23.0, abs=0.1)


# --------------------------------------------------------------------------------------------------------------
# channels and K-weighting
# --------------------------------------------------------------------------------------------------------------

def test_surround_51_weights():
    sr = 48000
    noise = pink_noise(8, sr, seed=2)
    silent = np.zeros_like(noise)

    def only(channel: int) -> float:
        layout = [silent] * 6
        layout[channel] = noise
        return loudness.integrated_loudness(np.stack(layout), sr)

    front = only(0)
    assert only(1) == pytest.approx(front, abs=1e-6) and only(2) == pytest.approx(front, abs=1e-6)
    assert only(3) is None  # the LFE is not measured
    assert only(4) - front == pytest.approx(10 * np.log10(1.41), abs=1e-3)  # surrounds +1.5 dB
    assert only(5) - front == pytest.approx(10 * np.log10(1.41), abs=1e-3)
    # a full 5.1 mix against pyloudnorm's five-channel meter (L R C Ls Rs) with the LFE left out
    mix = np.stack([pink_noise(8, sr, seed=s) * g for s, g in zip(range(10, 16), (1, 1, 0.7, 2, 0.5, 0.5))])
    ours = loudness.integrated_loudness(mix, sr)
    assert ours == pytest.approx(reference(mix[[0, 1, 2, 4, 5]], sr), abs=0.1)


def test_k_weighting_at_48k_is_the_standards_filter():
    kw = loudness.k_weighting(48000)
    # ITU-R BS.1770-4, table 1 (pre-filter) and table 2 (RLB)
    np.testing.assert_allclose(kw[0], [1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0,
                                       -1.69065929318241, 0.73248077421585], atol=1e-8)
    np.testing.assert_allclose(kw[1], [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621], atol=1e-8)


@pytest.mark.parametrize("sr", [8000, 11025, 16000, 22050, 32000, 44100, 88200, 96000, 192000])
def test_k_weighting_is_redesigned_for_each_rate(sr):
    """The response at every rate matches the standard's 48 kHz response below 0.45 x the rate."""
    freqs = np.geomspace(20.0, min(0.45 * sr, 20000.0), 60)
    ours = np.abs(scipy.signal.sosfreqz(loudness.k_weighting(sr), freqs, fs=sr)[1])
    standard = np.abs(scipy.signal.sosfreqz(loudness.k_weighting(48000), freqs, fs=48000)[1])
    assert np.max(np.abs(20 * np.log10(ours / standard))) < 0.04
    # and the same 48 kHz design used unchanged at this rate would be measurably wrong: the check has teeth
    if sr not in (44100, 88200, 96000, 192000):
        wrong = np.abs(scipy.signal.sosfreqz(loudness.k_weighting(48000), freqs, fs=sr)[1])
        assert np.max(np.abs(20 * np.log10(wrong / standard))) > 0.5


# --------------------------------------------------------------------------------------------------------------
# agreement with pyloudnorm
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sr", [44100, 48000])
@pytest.mark.parametrize("kind", ["pink", "music"])
@pytest.mark.parametrize("stereo", [False, True])
def test_agrees_with_pyloudnorm(sr, kind, stereo):
    make = (lambda seed: pink_noise(12, sr, seed)) if kind == "pink" else (lambda v: music_like(12, sr, variant=v))
    y = np.stack([make(3), 0.5 * make(4)]) if stereo else make(3)
    assert loudness.integrated_loudness(y, sr) == pytest.approx(reference(y, sr), abs=0.1)


# --------------------------------------------------------------------------------------------------------------
# through the decoder: the server's path
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("container,codec", [("mp4", "aac"), ("mp3", "libmp3lame")])
def test_stereo_file_through_the_decoder_reads_like_the_source(container, codec):
    sr = 44100
    # a wide stereo mix: different music in each channel, as panned instruments and stereo reverb make it
    left, right = music_like(12, sr, variant=0), music_like(12, sr, variant=1)
    # band-limited to 15 kHz, as the energy of real masters is: codecs' own low-pass then changes nothing
    sos = scipy.signal.butter(8, 15000, fs=sr, output="sos")
    left, right = (scipy.signal.sosfilt(sos, ch).astype(np.float32) for ch in (left, right))
    source = reference(np.stack([left, right]), sr)
    # at 128 kbit/s LAME drops enough of the hi-hats to read 0.4 LU low: encode as a good file would be
    data = synth.encode_with_pyav(np.stack([left, right]), sr, container, codec, bit_rate=256_000)
    decoded = decode_audio(data, target_sr=ANALYSIS_SAMPLE_RATE)
    assert decoded.sample_rate == sr and decoded.samples.shape[0] == 2
    result = perform_audio_analysis(decoded.samples, decoded.sample_rate)
    assert result.loudness_lufs == pytest.approx(reference(decoded.samples, sr), abs=0.1)
    assert result.loudness_lufs == pytest.approx(source, abs=0.3)  # the codec changes little
    # the old way (a mono downmix at the analysis rate) reads well below: what the channels fix
    assert perform_audio_analysis(decoded.mono(), ANALYSIS_SAMPLE_RATE).loudness_lufs < source - 2.0
