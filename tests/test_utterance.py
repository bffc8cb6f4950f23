"""The utterance head: phrases against the voice's other phrases, in the engine and trained."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ser_live import EMOTIONS
from ser_live.engine import Engine
from ser_live.errors import ModelError
from ser_live.model import Classifier, load_model
from ser_live.utterance import MAX_PHRASE_WINDOWS, UtteranceHead, UtteranceTracker, VoicePhrases
from tests.conftest import CORPUS, copy_model

N_SUMMARY = 129  # each of the 43 frame features' mean, spread and spread of change


def random_head(seed: int, weight: float = 0.5) -> UtteranceHead:
    """A head of random numbers, as its sidecar gives it back (rounded)."""
    rng = np.random.default_rng(seed)
    head = UtteranceHead(
        coef=rng.standard_normal((len(EMOTIONS), N_SUMMARY)) * 0.5,
        intercept=rng.standard_normal(len(EMOTIONS)),
        population_mean=rng.standard_normal(N_SUMMARY) * 5,
        population_std=rng.uniform(0.5, 3.0, N_SUMMARY),
        prior_phrases=5.0,
        weight=weight,
    )
    return UtteranceHead.from_dict(head.to_dict())


def with_head(classifier: Classifier, head: UtteranceHead | dict) -> Classifier:
    data = head.to_dict() if isinstance(head, UtteranceHead) else head
    return Classifier(classifier.path, replace(classifier.spec, utterance_head=data))


def test_a_voice_starts_at_the_population_and_moves_to_its_own_phrases():
    rng = np.random.default_rng(0)
    mean, std = rng.standard_normal(4), rng.uniform(0.5, 2.0, 4)
    voice = VoicePhrases(mean, std, prior_phrases=5)
    # A phrase at the population's mean is average for a voice not heard yet.
    np.testing.assert_allclose(voice.zscore(mean), 0, atol=1e-9)
    # A voice 3 spreads above the population: its first phrase stands out, counted in.
    own_mean, own_std = mean + 3 * std, 0.5 * std
    assert (voice.zscore(own_mean) > 1).all()
    for _ in range(500):
        voice.add(own_mean + own_std * rng.standard_normal(4))
    assert voice.phrases_heard == 500
    # Now the voice's own average phrase is unremarkable, and one of its own spreads
    # above it is about one spread above.
    np.testing.assert_allclose(voice.zscore(own_mean), 0, atol=0.15)
    np.testing.assert_allclose(voice.zscore(own_mean + own_std), 1, atol=0.15)
    voice.reset()
    assert voice.phrases_heard == 0
    np.testing.assert_allclose(voice.zscore(mean), 0, atol=1e-9)


def test_a_phrase_is_the_mean_of_its_windows_and_a_long_one_is_cut():
    head = random_head(1)
    tracker = UtteranceTracker(head, learn_voice=True)
    rng = np.random.default_rng(2)
    windows = rng.standard_normal((MAX_PHRASE_WINDOWS + 3, N_SUMMARY))
    for i, w in enumerate(windows[:MAX_PHRASE_WINDOWS]):
        tracker.listen(w)
        np.testing.assert_allclose(tracker.phrase_summary(), windows[: i + 1].mean(axis=0))
    assert tracker.voice.phrases_heard == 0  # no pause yet
    tracker.listen(windows[MAX_PHRASE_WINDOWS])  # one too many: a new phrase starts
    assert tracker.voice.phrases_heard == 1
    np.testing.assert_allclose(tracker.phrase_summary(), windows[MAX_PHRASE_WINDOWS])
    tracker.end_phrase()
    assert tracker.voice.phrases_heard == 2 and tracker.phrase_summary() is None
    frozen = UtteranceTracker(head, learn_voice=False)  # calibration off
    for w in windows:
        frozen.listen(w)
    frozen.end_phrase()
    assert frozen.voice.phrases_heard == 0


def test_the_engine_averages_the_head_with_the_networks(classifier, speech):
    """Each speech window's probabilities are ``(1 - weight)`` the networks' and
    ``weight`` the head's softmax of the phrase so far, z-scored by the population prior
    with the phrase counted in (calibration off)."""
    head = random_head(3, weight=0.3)
    plain = Engine(classifier).feed(speech)
    headed = Engine(with_head(classifier, head)).feed(speech)
    assert [u.speech for u in headed] == [u.speech for u in plain]
    speech_updates = [(a, b) for a, b in zip(headed, plain, strict=True) if a.speech]
    assert len(speech_updates) >= 2
    n = head.prior_phrases
    for i, (a, b) in enumerate(speech_updates):
        phrase = np.mean([u.summary for u, _ in speech_updates[: i + 1]], axis=0)
        mean = (n * head.population_mean + phrase) / (n + 1)
        square = n * (head.population_std**2 + head.population_mean**2) + phrase**2
        z = (phrase - mean) / np.sqrt(square / (n + 1) - mean**2)
        logits = head.coef @ z + head.intercept
        softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        expected = 0.7 * b.raw_probabilities + 0.3 * softmax
        np.testing.assert_allclose(a.raw_probabilities, expected, atol=1e-5)
    assert all(u.summary is None for u in headed if not u.speech)


def test_only_a_calibrating_engine_lets_the_voice_move_the_head(classifier, speech):
    headed = with_head(classifier, random_head(4))

    def two_recordings(engine: Engine) -> tuple[list, list]:
        first = engine.feed(speech) + engine.finish()
        engine.reset(keep_calibration=True)  # the same speaker's next recording
        return first, engine.feed(speech) + engine.finish()

    frozen = Engine(headed)
    first, second = two_recordings(frozen)
    assert frozen._utterances.voice.phrases_heard == 0
    assert [u.raw_probabilities is None or u.raw_probabilities.tolist() for u in first] == [
        u.raw_probabilities is None or u.raw_probabilities.tolist() for u in second
    ]
    calibrating = Engine(headed, calibrate=True)
    first_cal, second_cal = two_recordings(calibrating)
    assert calibrating._utterances.voice.phrases_heard >= 1
    for a, b in zip(first, first_cal, strict=True):  # the first phrase: prior alone, and
        if a.speech:  # the networks calibrated, so only close
            assert np.abs(a.raw_probabilities - b.raw_probabilities).max() < 0.5
    assert any(
        not np.allclose(a.raw_probabilities, b.raw_probabilities)
        for a, b in zip(first_cal, second_cal, strict=True)
        if a.speech
    )
    calibrating.reset()  # a new voice: the head forgets this one
    assert calibrating._utterances.voice.phrases_heard == 0


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(coef=d["coef"][:3]), "does not fit 7 labels"),
        (lambda d: d.update(weight=0.0), "weight in"),
        (lambda d: d.pop("population"), "lacks its"),
    ],
)
def test_a_head_that_does_not_fit_is_refused(classifier, change, message):
    data = random_head(5).to_dict()
    change(data)
    with pytest.raises(ModelError, match=message):
        replace(classifier.spec, utterance_head=data).check()


def test_row_weights_give_every_corpus_and_emotion_within_it_the_same_total():
    from training.corpora import find_utterances
    from training.utterance_head import row_weights

    utterances = find_utterances([CORPUS])
    rng = np.random.default_rng(6)
    clips = np.repeat(np.arange(len(utterances)), rng.integers(1, 5, len(utterances)))
    weights = row_weights(clips, utterances)
    corpus = np.array([utterances[c].corpus for c in clips])
    emotion = np.array([utterances[c].emotion for c in clips])
    totals = {c: weights[corpus == c].sum() for c in set(corpus)}
    np.testing.assert_allclose(list(totals.values()), next(iter(totals.values())))
    for c in totals:
        per_emotion = [
            weights[(corpus == c) & (emotion == e)].sum() for e in set(emotion[corpus == c])
        ]
        np.testing.assert_allclose(per_emotion, per_emotion[0])
    per_clip = np.bincount(clips, weights)
    for c in range(len(utterances)):
        same = [
            d
            for d in range(len(utterances))
            if (utterances[d].corpus, utterances[d].emotion)
            == (utterances[c].corpus, utterances[c].emotion)
        ]
        np.testing.assert_allclose(per_clip[same], per_clip[c])


@pytest.mark.slow
def test_a_head_trained_on_the_fixture_corpora_goes_into_the_sidecar_and_runs(tmp_path):
    """``python -m training.utterance_head``: the clips heard through the engine, the head
    fitted and written into a copy of the shipped model, which then loads and analyses."""
    from tests.test_training import python_m

    model = copy_model(tmp_path / "ser_cnn_int8.tflite")
    proc = python_m("training.utterance_head", CORPUS, "--model", model, "--exclude", "korean")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    loaded = load_model(model)
    head = loaded.spec.utterance_head
    assert head["trained_on"] == ["emospeech", "nemo", "ravdess", "tess"]
    assert head["clips"] == 17  # every fixture clip but Korean's two
    engine = Engine(loaded, calibrate=True)
    clip = next((CORPUS / "korean").rglob("*.opus"))
    from ser_live.analysis import analyze_file

    result = analyze_file(clip, engine)
    assert result.error is None and result.speech_probabilities is not None
    np.testing.assert_allclose(result.speech_probabilities.sum(), 1, rtol=1e-5)


def test_the_head_command_refuses_bad_arguments_in_one_line(tmp_path):
    from tests.test_training import python_m

    proc = python_m("training.utterance_head", tmp_path / "nowhere", "--model", "x.tflite")
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("no such folder: " + str(tmp_path / "nowhere"))
    assert "Traceback" not in proc.stderr
