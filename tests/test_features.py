"""The feature extractor and the front end: same numbers offline and live."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from ser_live.features import DEFAULT_SETTINGS, frame_features, normalise_window
from ser_live.frontend import FrontEnd
from ser_live.vad import VoiceActivityDetector


def direct_librosa(window: np.ndarray) -> np.ndarray:
    """The features of one window, computed here straight from librosa's documented calls."""
    s = DEFAULT_SETTINGS
    # Frame i: pitch from samples [160 i, 160 i + 800), the rest from the middle 512 of them.
    n = (len(window) - 800) // 160 + 1
    middle = window[144 : 144 + (n - 1) * 160 + 512]
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
        window, fmin=60, fmax=500, sr=16000, frame_length=800, hop_length=160, center=False
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
        assert w.features.shape == expected.shape == (196, 43)
        np.testing.assert_allclose(w.features[:, :-1], expected[:, :-1], rtol=1e-4, atol=2e-3)
        # YIN's parabolic refinement is float32 arithmetic: a few cents apart at most.
        np.testing.assert_allclose(w.features[:, -1], expected[:, -1], atol=0.05)


def test_frames_do_not_depend_on_neighbours(speech):
    whole = frame_features(speech)
    split = 150
    parts = np.concatenate(
        [frame_features(speech[: (split - 1) * 160 + 800]), frame_features(speech[split * 160 :])]
    )
    np.testing.assert_array_equal(whole, parts)


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


def test_vad_is_chunk_invariant(speech):
    whole = VoiceActivityDetector().process(speech)
    vad = VoiceActivityDetector()
    parts = np.concatenate([vad.process(speech[i : i + 1000]) for i in range(0, len(speech), 1000)])
    np.testing.assert_array_equal(whole, parts)


def test_vad_rejects_bad_aggressiveness():
    with pytest.raises(ValueError):
        VoiceActivityDetector(aggressiveness=4)
