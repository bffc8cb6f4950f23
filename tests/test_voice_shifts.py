"""Test-time voice shifts: copies really move the voice, are cut from the audio around
their window, and the engine averages them the same whatever the chunk size."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ser_live import SAMPLE_RATE
from ser_live.engine import Engine
from ser_live.errors import ModelError
from ser_live.features import DEFAULT_SETTINGS, frame_features
from ser_live.model import DEFAULT_MODEL, load_model
from ser_live.voice_shifts import StreamTail, VoiceShifter, speed_factor
from tests.conftest import copy_model

WINDOW = 2 * SAMPLE_RATE
F0_COLUMN = DEFAULT_SETTINGS.feature_names.index("f0_semitones")


def voiced(seconds: float, f0: float = 180.0) -> np.ndarray:
    """A steady vowel-like tone: a fundamental and its harmonics."""
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 8))
    return (0.1 * tone).astype(np.float32)


def test_each_copy_moves_the_pitch_by_its_semitones():
    shifter = VoiceShifter([-2, -1, 1, 2], WINDOW)
    audio = voiced(3.0)
    copies = shifter(audio, start=len(audio) - WINDOW)
    assert copies.shape == (4, DEFAULT_SETTINGS.frames_in(WINDOW), DEFAULT_SETTINGS.n_features)
    heard = np.median(copies[:, :, F0_COLUMN], axis=1)
    original = np.median(frame_features(audio[-WINDOW:])[:, F0_COLUMN])
    np.testing.assert_allclose(heard - original, [-2, -1, 1, 2], atol=0.15)


def test_the_first_window_cuts_its_faster_copies_from_after_its_start():
    shifter = VoiceShifter([-2, -1, 1, 2], WINDOW)
    assert shifter.context_samples == round(WINDOW * speed_factor(2))
    audio = voiced(2.0, f0=150.0)
    audio[-1000:] = 0  # the copies that end with the window hear this; not the first one's
    later = np.concatenate([np.zeros(WINDOW), audio, voiced(0.5, f0=150.0)])
    first = np.concatenate([audio, voiced(0.5, f0=150.0)])
    assert not shifter.ready(0, WINDOW) and shifter.ready(0, shifter.context_samples)
    assert shifter.ready(WINDOW, 2 * WINDOW)
    np.testing.assert_array_equal(shifter(first, 0)[:2], shifter(later, WINDOW)[:2])  # slower
    assert not np.allclose(shifter(first, 0)[2:], shifter(later, WINDOW)[2:])  # faster


def test_a_copy_that_cannot_be_cut_is_left_out_with_its_mirror_image():
    shifter = VoiceShifter([-2, -1, 1, 2], WINDOW)
    # A stream that ends with its first window: no faster copy, so no slower one either.
    assert len(shifter(voiced(2.0), 0)) == 0
    # Room for the +1 copy after the start, not for the +2 one: the pair ±1 is kept.
    enough_for_one = voiced(WINDOW * speed_factor(1.5) / SAMPLE_RATE)
    heard = np.median(shifter(enough_for_one, 0)[:, :, F0_COLUMN], axis=1)
    original = np.median(frame_features(enough_for_one[:WINDOW])[:, F0_COLUMN])
    np.testing.assert_allclose(heard - original, [-1, 1], atol=0.15)


@pytest.mark.parametrize("bad", [[0], [4], [-3.5]])
def test_shifts_out_of_range_are_refused(bad):
    with pytest.raises(ValueError, match="semitones"):
        VoiceShifter(bad, WINDOW)


def test_stream_tail_holds_samples_by_stream_position():
    tail = StreamTail()
    tail.feed(np.arange(3, dtype=np.float32))
    tail.feed(np.arange(3, 10, dtype=np.float32))
    np.testing.assert_array_equal(tail.span(0, 3), [0, 1, 2])
    tail.forget_before(5)
    assert (tail.first, tail.end) == (5, 10)
    np.testing.assert_array_equal(tail.span(6, 8), [6, 7])
    with pytest.raises(ValueError):
        tail.span(4, 6)  # sample 4 is gone
    with pytest.raises(ValueError):
        tail.span(9, 11)  # sample 10 not fed yet


@pytest.fixture
def shifted_model(tmp_path):
    """The shipped model with a sidecar that asks for voice shifts."""
    target = tmp_path / "model.tflite"
    copy_model(target)
    sidecar = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    sidecar["voice_shifts"] = [-2.0, -1.0, 1.0, 2.0]
    sidecar["utterance_head"] = None  # the networks' copies alone; the head: test_utterance.py
    target.with_suffix(".json").write_text(json.dumps(sidecar))
    return load_model(target)


def probabilities(engine: Engine, samples: np.ndarray, chunk: int) -> list:
    updates = []
    for start in range(0, len(samples), chunk):
        updates += engine.feed(samples[start : start + chunk])
    return [None if u.raw_probabilities is None else u.raw_probabilities.tolist() for u in updates]


@pytest.mark.parametrize("chunk", [1000, 7919, 10**9])
def test_engine_averages_the_copies_whatever_the_chunk_size(shifted_model, speech, chunk):
    reference = probabilities(Engine(shifted_model, voice_shifts=True), speech, 8000)
    assert probabilities(Engine(shifted_model, voice_shifts=True), speech, chunk) == reference


def test_engine_average_is_the_windows_and_its_copies(shifted_model, speech):
    plain = Engine(shifted_model, voice_shifts=False)
    shifted = Engine(shifted_model, voice_shifts=True)
    assert shifted.shifter is not None and plain.shifter is None
    classify, shifter = shifted_model.predict, shifted.shifter
    windows = Engine(shifted_model, voice_shifts=False).frontend.feed(speech)
    changed = 0
    for window, p_plain, p_shifted in zip(
        windows,
        probabilities(plain, speech, 10**9),
        probabilities(shifted, speech, 10**9),
        strict=True,
    ):
        if p_plain is None:
            assert p_shifted is None
            continue
        copies = shifter(speech, round(window.start_s * SAMPLE_RATE))
        assert len(copies) == 4
        expected = np.mean([classify(window.features), *map(classify, copies)], axis=0)
        np.testing.assert_allclose(p_shifted, expected, atol=1e-6)
        changed += not np.allclose(p_plain, p_shifted, atol=1e-3)
    assert changed > 0  # the copies change the answer


def test_the_first_window_waits_for_its_copies_and_finish_flushes_it(shifted_model, speech):
    engine = Engine(shifted_model, voice_shifts=True)
    assert engine.feed(speech[:WINDOW]) == []  # complete, but its copies need more audio
    assert len(engine.feed(speech[WINDOW : engine.shifter.context_samples])) == 1
    # A stream that ends 0.1 s after its first window: finish() gives it, with no copies.
    short = speech[: WINDOW + 1600]
    engine.reset()
    assert engine.feed(short) == []
    (update,) = engine.finish()
    plain = Engine(shifted_model, voice_shifts=False).feed(short)[0]
    assert update.speech and plain.speech
    np.testing.assert_array_equal(update.raw_probabilities, plain.raw_probabilities)
    assert engine.finish() == []


def test_a_sidecar_with_bad_voice_shifts_is_refused(tmp_path):
    target = tmp_path / "model.tflite"
    copy_model(target)
    sidecar = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    sidecar["voice_shifts"] = [12]
    target.with_suffix(".json").write_text(json.dumps(sidecar))
    with pytest.raises(ModelError, match="voice shifts"):
        load_model(target)
