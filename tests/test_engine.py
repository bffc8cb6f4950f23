"""The engine: chunk-size invariance, determinism, reset, silence and smoothing."""

from __future__ import annotations

import numpy as np
import pytest

from ser_live import EMOTIONS
from ser_live.engine import Engine, Smoother


def feed_in_chunks(engine: Engine, samples: np.ndarray, chunk: int):
    updates = []
    for start in range(0, len(samples), chunk):
        updates += engine.feed(samples[start : start + chunk])
    return updates


def signature(updates):
    return [
        (
            u.start_s,
            u.speech,
            u.speech_ratio,
            None if u.probabilities is None else u.probabilities.tolist(),
        )
        for u in updates
    ]


@pytest.mark.parametrize("chunk", [1, 160, 479, 4096, 10**9])
def test_same_result_whatever_the_chunk_size(classifier, speech, chunk):
    reference = signature(feed_in_chunks(Engine(classifier), speech, 8000))
    assert signature(feed_in_chunks(Engine(classifier), speech, chunk)) == reference


def test_results_are_deterministic(classifier, speech):
    first = signature(Engine(classifier).feed(speech))
    assert signature(Engine(classifier).feed(speech)) == first


def test_reset_resets(classifier, speech):
    engine = Engine(classifier)
    engine.feed(speech[::-1].copy())  # different audio first
    engine.feed(speech[:12345])
    engine.reset()
    assert engine.stream_s == 0
    assert signature(engine.feed(speech)) == signature(Engine(classifier).feed(speech))


def test_speech_gives_probabilities(engine, speech):
    updates = engine.feed(speech)
    speech_updates = [u for u in updates if u.speech]
    assert speech_updates
    for u in speech_updates:
        assert u.emotion in EMOTIONS
        assert abs(float(u.probabilities.sum()) - 1) < 1e-3
        assert u.confidence == pytest.approx(float(u.probabilities.max()))


def test_silence_gives_no_emotion(engine):
    rng = np.random.default_rng(1)
    room_tone = (rng.standard_normal(16000 * 6) * 10 ** (-65 / 20)).astype(np.float32)
    updates = engine.feed(room_tone)
    assert len(updates) == 9
    assert all(not u.speech and u.emotion is None and u.probabilities is None for u in updates)


def test_smoother_averages_and_silence_restarts():
    smooth = Smoother(2)
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    np.testing.assert_allclose(smooth(a), a)
    np.testing.assert_allclose(smooth(b), [0.5, 0.5])
    assert smooth(None) is None
    np.testing.assert_allclose(smooth(b), b)


def test_window_and_hop_come_from_the_sidecar(classifier):
    engine = Engine(classifier)
    assert engine.window_s == classifier.spec.window_s
    assert engine.hop_s == classifier.spec.hop_s
