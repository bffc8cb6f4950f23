"""The feature extractor and the front end: same numbers offline and live."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.fft

from ser_live.audio_io import load_audio
from ser_live.dsp import DCT2, mel_filterbank
from ser_live.features import (
    DEFAULT_SETTINGS,
    frame_features,
    log_mel_spectrum,
    normalise_window,
)
from ser_live.frontend import FrontEnd
from ser_live.vad import VoiceActivityDetector


def direct_librosa(window: np.ndarray) -> np.ndarray:
    """The features of one window, computed here straight from librosa's documented calls."""
    s = DEFAULT_SETTINGS
    # Frame i: pitch from samples [hop i, hop i + 800), the rest from the middle 512 of them.
    n = s.frames_in(len(window))
    middle = window[144 : 144 + (n - 1) * s.hop_length + 512]
    common = dict(n_fft=s.n_fft, hop_length=s.hop_length, center=False)
    mel = librosa.feature.melspectrogram(
        y=middle, sr=16000, n_mels=s.n_mels, fmin=s.fmin, fmax=s.fmax, **common
    )
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=None), n_mfcc=s.n_mfcc)
    zcr = librosa.feature.zero_crossing_rate(
        middle, frame_length=s.n_fft, hop_length=s.hop_length, center=False
    )
    rms = librosa.feature.rms(y=middle, frame_length=s.n_fft, hop_length=s.hop_length, center=False)
    f0 = librosa.yin(
        window, fmin=60, fmax=500, sr=16000, frame_length=800, hop_length=s.hop_length, center=False
    )[:n]
    semitones = 12 * np.log2(f0 / 55.0)
    feats = np.concatenate([mfcc, zcr, 20 * np.log10(np.maximum(rms, 1e-5)), semitones[None]]).T
    # Per-window normalisation, written out: centre the MFCCs and the dB level, not pitch.
    feats[:, : s.n_mfcc] -= feats[:, : s.n_mfcc].mean(axis=0)
    feats[:, s.n_mfcc + 1] -= feats[:, s.n_mfcc + 1].mean()
    return feats


def test_streamed_windows_equal_direct_librosa(speech):
    frontend = FrontEnd(2.0, 0.5)
    windows = []
    for start in range(0, len(speech), 1234):  # an awkward chunk size on purpose
        windows += frontend.feed(speech[start : start + 1234])
    assert len(windows) == (len(speech) - 32000) // 8000 + 1
    for w in windows:
        a = round(w.start_s * 16000)
        expected = direct_librosa(speech[a : a + 32000])
        assert w.features.shape == expected.shape == (DEFAULT_SETTINGS.frames_in(32000), 43)
        np.testing.assert_allclose(w.features[:, :-1], expected[:, :-1], rtol=1e-4, atol=2e-3)
        # YIN's parabolic refinement is float32 arithmetic: a few cents apart at most.
        np.testing.assert_allclose(w.features[:, -1], expected[:, -1], atol=0.05)


@pytest.mark.parametrize(
    "counts", [(150, 177), (1, 2, 3, 4, 5, 6, 7, 8, 9), (13, 16, 17, 31, 33, 64)]
)
def test_frames_do_not_depend_on_neighbours(speech, counts):
    """Frames computed in runs of any length equal the frames computed at once, bit for bit:
    the runs put each frame in a different SIMD lane, FFT batch and reduction block."""
    s = DEFAULT_SETTINGS
    whole = frame_features(speech)
    parts, first = [], 0
    while first < len(whole):
        for count in counts:
            count = min(count, len(whole) - first)
            if count == 0:
                break
            lo = first * s.hop_length
            parts.append(
                frame_features(speech[lo : lo + (count - 1) * s.hop_length + s.frame_length])
            )
            assert len(parts[-1]) == count
            first += count
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_features_match_librosa_on_every_frame(speech):
    """The NumPy/SciPy runtime path against librosa, frame by frame, unnormalised."""
    s = DEFAULT_SETTINGS
    n = s.frames_in(len(speech))
    middle = speech[144 : 144 + (n - 1) * s.hop_length + 512]
    common = dict(n_fft=s.n_fft, hop_length=s.hop_length, center=False)
    mel = librosa.feature.melspectrogram(
        y=middle, sr=16000, n_mels=s.n_mels, fmin=s.fmin, fmax=s.fmax, **common
    )
    log_mel = librosa.power_to_db(mel, top_db=None)
    np.testing.assert_allclose(log_mel_spectrum(speech), log_mel.T, atol=2e-3)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=s.n_mfcc)
    ours = frame_features(speech)
    np.testing.assert_allclose(ours[:, : s.n_mfcc], mfcc.T, rtol=1e-4, atol=2e-3)
    zcr = librosa.feature.zero_crossing_rate(
        middle, frame_length=512, hop_length=s.hop_length, center=False
    )
    np.testing.assert_array_equal(ours[:, s.n_mfcc], zcr[0])
    f0 = librosa.yin(
        speech[: (n - 1) * s.hop_length + 800],
        fmin=60,
        fmax=500,
        sr=16000,
        frame_length=800,
        hop_length=s.hop_length,
        center=False,
    )
    np.testing.assert_allclose(ours[:, -1], 12 * np.log2(np.clip(f0, 60, 500) / 55), atol=0.05)


def test_mel_filterbank_is_librosas():
    ours = mel_filterbank(16000, 512, 64, 50.0, 8000.0)
    np.testing.assert_array_equal(
        ours, librosa.filters.mel(sr=16000, n_fft=512, n_mels=64, fmin=50, fmax=8000)
    )


@pytest.mark.parametrize("n", [2, 40, 64])
def test_dct_is_scipys(n):
    x = np.random.default_rng(n).standard_normal((37, 64)).astype(np.float32) * 30
    np.testing.assert_allclose(
        DCT2(64, n)(x), scipy.fft.dct(x, type=2, norm="ortho")[:, :n], atol=1e-4
    )


def test_runtime_does_not_import_librosa_or_scipy():
    """Neither librosa's numba nor SciPy's import cost (about 0.4 s a process) at runtime."""
    code = (
        "import sys, numpy as np; from ser_live.engine import Engine; "
        "from ser_live.model import load_model; e = Engine(load_model()); e.warm_up(); "
        "e.feed(np.zeros(40000, np.float32)); "
        "sys.exit(bool({'librosa', 'numba', 'scipy'} & set(sys.modules)))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_per_window_normalisation_cancels_gain(speech):
    # As from any microphone: speech over a faint noise floor, then 10 dB quieter.
    rng = np.random.default_rng(0)
    window = speech[8000:40000] + rng.standard_normal(32000).astype(np.float32) * 10 ** (-50 / 20)
    loud = normalise_window(frame_features(window))
    quiet = normalise_window(frame_features(window * 10 ** (-10 / 20)))
    np.testing.assert_allclose(quiet[:, :40], loud[:, :40], atol=1e-3)
    np.testing.assert_allclose(quiet[:, 41], loud[:, 41], atol=1e-3)
    np.testing.assert_allclose(quiet[:, 40], loud[:, 40], atol=1e-6)  # ZCR ignores gain
    np.testing.assert_allclose(quiet[:, 42], loud[:, 42], atol=1e-3)  # and so does pitch


@pytest.mark.parametrize("f0", [90.0, 220.0, 415.0])
def test_pitch_feature_follows_a_voice_like_tone(f0):
    # A harmonic-rich tone (a sawtooth's first 8 harmonics) with a faint noise floor.
    t = np.arange(16000) / 16000
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 9)) * 0.1
    tone = tone + np.random.default_rng(0).standard_normal(16000) * 1e-4
    semitones = frame_features(tone.astype(np.float32))[:, DEFAULT_SETTINGS.n_mfcc + 2]
    np.testing.assert_allclose(semitones, 12 * np.log2(f0 / 55.0), atol=0.2)


def test_vad_finds_speech_and_not_silence(speech):
    vad = VoiceActivityDetector(aggressiveness=2)
    decisions = vad.process(speech)
    assert 0.3 < decisions.mean() < 0.95  # RAVDESS clips have silence at both ends
    vad.reset()
    rng = np.random.default_rng(0)
    hiss = (rng.standard_normal(48000) * 10 ** (-70 / 20)).astype(np.float32)
    assert not vad.process(hiss).any()


QUIET_CLIP = Path(__file__).parent / "fixtures" / "quiet" / "03-01-04-01-01-01-09.flac"


@pytest.mark.parametrize("target", [None, -36.0])
def test_vad_is_chunk_invariant(speech, target):
    for audio in (speech, load_audio(QUIET_CLIP)):
        whole = VoiceActivityDetector(level_target_db=target).process(audio)
        vad = VoiceActivityDetector(level_target_db=target)
        parts = [vad.process(audio[i : i + 1000]) for i in range(0, len(audio), 1000)]
        np.testing.assert_array_equal(whole, np.concatenate(parts))
        assert vad.fresh().process(audio).tolist() == whole.tolist()


def test_raising_quiet_input_hears_quiet_speech_but_never_steady_noise():
    """The raise brings the loudest recent frame to -36 dBFS: below where webrtcvad starts
    calling steady noise speech (about -33 dBFS for pink noise), so noise at any level up
    to there stays silence, while a quiet actor (loudest frame near -50 dBFS) is heard."""
    quiet = load_audio(QUIET_CLIP)
    assert VoiceActivityDetector().process(quiet).mean() < 0.05
    assert VoiceActivityDetector(level_target_db=-36.0).process(quiet).mean() > 0.15
    rng = np.random.default_rng(0)
    white = rng.standard_normal(16000 * 5)
    spectrum = np.fft.rfft(rng.standard_normal(16000 * 5))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))  # 1/f: pink
    pink = np.fft.irfft(spectrum, 16000 * 5)
    for noise in (white, pink):
        for level_db in (-64, -60, -50, -40, -36):
            steady = (noise / noise.std() * 10 ** (level_db / 20)).astype(np.float32)
            decisions = VoiceActivityDetector(level_target_db=-36.0).process(steady)
            assert decisions[20:].mean() < 0.02, level_db  # after webrtcvad's first frames


def test_vad_rejects_bad_aggressiveness():
    with pytest.raises(ValueError):
        VoiceActivityDetector(aggressiveness=4)
