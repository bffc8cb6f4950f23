"""The utterance head: phrases against the voice's other phrases, in the engine and trained."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ser_live import EMOTIONS
from ser_live.engine import Engine
from ser_live.errors import ModelError
from ser_live.model import Classifier, load_model
from ser_live.utterance import (
    MAX_PHRASE_WINDOWS,
    PhraseStats,
    UtteranceHead,
    UtteranceTracker,
    VoicePhrases,
    WindowFrames,
)
from tests.conftest import CORPUS, copy_model, learning_from_all
from training.corpora import CORPORA

N_SUMMARY = 88  # the 43 frame features' spread and spread of change, and two means


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


def with_head(classifier: Classifier, head: UtteranceHead | dict | None) -> Classifier:
    """The shipped networks with ``head`` (None: the networks alone)."""
    data = head.to_dict() if isinstance(head, UtteranceHead) else head
    # The head learns the voice from every phrase (the reference gate: test_training.py).
    classifier = learning_from_all(classifier)
    return Classifier(classifier.path, replace(classifier.spec, utterance_head=data))


def test_a_voice_starts_at_the_population_and_moves_to_its_own_phrases():
    rng = np.random.default_rng(0)
    mean, std = rng.standard_normal(4), rng.uniform(0.5, 2.0, 4)
    voice = VoicePhrases(mean, std, prior_weight=5)
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


def test_a_bounded_voice_moves_its_phrase_statistics_no_further_than_its_bound():
    rng = np.random.default_rng(3)
    mean, std = rng.standard_normal(4), rng.uniform(0.5, 2.0, 4)
    voice = VoicePhrases(mean, std, prior_weight=5)
    # A voice that keeps one manner for 500 phrases: 3 spreads high, a third as varied.
    own_mean, own_std = mean + 3 * std, std / 3
    for _ in range(500):
        voice.add(own_mean + own_std * rng.standard_normal(4))
    # Free, its manner is its voice; bounded at 0.5, the statistics stop half a spread
    # from the population's mean and at a spread 1.5 times smaller: its average phrase
    # stays (3 - 0.5) * 1.5 = 3.75 above.
    np.testing.assert_allclose(voice.zscore(own_mean), 0, atol=0.15)
    np.testing.assert_allclose(voice.zscore(own_mean, max_shift=0.5), 3.75, atol=0.1)
    # A voice within the bound is heard as without it.
    near = VoicePhrases(mean, std, prior_weight=5)
    for _ in range(500):
        near.add(mean + 0.2 * std + std * rng.standard_normal(4))
    phrase = mean + std
    np.testing.assert_allclose(near.zscore(phrase, max_shift=0.5), near.zscore(phrase))
    # Untrusted (a voice whose speech has not varied: ser_live.verdict_variety), the
    # phrase is heard against the population; bounded first, then shrunk.
    np.testing.assert_allclose(voice.zscore(own_mean, trust=0.0), 3.0, atol=0.05)
    np.testing.assert_allclose(voice.zscore(own_mean, max_shift=0.5, trust=0.0), 3.0, atol=0.05)
    # Half trusted: the statistics half the way from the population's to the voice's (the
    # spread on a log scale).
    shrunk_mean = mean + 0.5 * (voice.mean - mean)
    shrunk_std = std * np.sqrt(voice.std / std)
    np.testing.assert_allclose(
        voice.zscore(own_mean, trust=0.5), (own_mean - shrunk_mean) / shrunk_std, atol=0.05
    )


def grid_windows(frames: np.ndarray, per_window: int, hop: int) -> list:
    """``WindowFrames`` of windows of ``per_window`` frames every ``hop`` frames, as the
    front end makes them (10 ms frames, 0.5 s hop: ``hop`` frames a hop)."""
    out = []
    for first in range(0, len(frames) - per_window + 1, hop):
        f = frames[first : first + per_window]
        out.append(
            WindowFrames(first * 0.01, PhraseStats.of(f), PhraseStats.of(f, per_window - hop))
        )
    return out


def test_a_phrase_is_its_windows_frames_each_once_and_a_long_one_is_cut():
    rng = np.random.default_rng(2)
    frames = rng.standard_normal((50 * (MAX_PHRASE_WINDOWS + 6), 43)) * 3 + 1
    windows = grid_windows(frames, 196, 50)
    tracker = UtteranceTracker(random_head(1), learn_voice=True, hop_s=0.5)
    for i, window in enumerate(windows[:MAX_PHRASE_WINDOWS]):
        tracker.listen(window)
        heard = frames[: 196 + 50 * i]  # the frames heard so far, each once
        # The summary: the mean zero-crossing rate and pitch, every feature's spread, and
        # the spreads of the steps between neighbouring frames.
        means = heard.mean(axis=0)[[40, 42]]
        steps = np.diff(heard, axis=0)
        by_hand = np.concatenate([means, heard.std(axis=0), steps.std(axis=0)])
        np.testing.assert_allclose(tracker.phrase_summary(), by_hand, rtol=1e-9, atol=1e-9)
    assert tracker.voice.phrases_heard == 0  # no pause yet
    tracker.listen(windows[MAX_PHRASE_WINDOWS])  # one too many: a new phrase starts
    assert tracker.voice.phrases_heard == 1
    np.testing.assert_allclose(
        tracker.phrase_summary(), windows[MAX_PHRASE_WINDOWS].whole.summary()
    )
    tracker.listen(windows[MAX_PHRASE_WINDOWS + 2])  # after a gap: all of its frames
    gap = windows[MAX_PHRASE_WINDOWS].whole + windows[MAX_PHRASE_WINDOWS + 2].whole
    np.testing.assert_allclose(tracker.phrase_summary(), gap.summary())
    tracker.end_phrase()
    assert tracker.voice.phrases_heard == 2 and tracker.phrase_summary() is None
    frozen = UtteranceTracker(random_head(1), learn_voice=False, hop_s=0.5)  # calibration off
    for window in windows:
        frozen.listen(window)
    frozen.end_phrase()
    assert frozen.voice.phrases_heard == 0


def test_the_engine_averages_the_head_with_the_networks(classifier, speech):
    """Calibrating, each speech window's probabilities are ``(1 - weight)`` the
    networks' and ``weight`` the head's softmax of the phrase so far, z-scored by the
    population prior with the phrase counted in (the voice's first phrase)."""
    head = random_head(3, weight=0.3)
    plain = Engine(with_head(classifier, None), calibrate=True).feed(speech)
    headed = Engine(with_head(classifier, head), calibrate=True).feed(speech)
    assert [u.speech for u in headed] == [u.speech for u in plain]
    speech_updates = [(a, b) for a, b in zip(headed, plain, strict=True) if a.speech]
    assert len(speech_updates) >= 2
    n = head.prior_phrases
    replay = UtteranceTracker(head, learn_voice=False, hop_s=0.5)
    for a, b in speech_updates:
        replay.listen(a.frames)
        phrase = replay.phrase_summary()
        mean = (n * head.population_mean + phrase) / (n + 1)
        square = n * (head.population_std**2 + head.population_mean**2) + phrase**2
        z = (phrase - mean) / np.sqrt(square / (n + 1) - mean**2)
        logits = head.coef @ z + head.intercept
        softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        expected = 0.7 * b.raw_probabilities + 0.3 * softmax
        np.testing.assert_allclose(a.raw_probabilities, expected, atol=1e-5)
    assert all(u.frames is None for u in headed if not u.speech)


def test_only_a_calibrating_engine_runs_the_head_and_it_learns_the_voice(classifier, speech):
    headed = with_head(classifier, random_head(4))

    def two_recordings(engine: Engine) -> tuple[list, list]:
        first = engine.feed(speech) + engine.finish()
        engine.reset(keep_calibration=True)  # the same speaker's next recording
        return first, engine.feed(speech) + engine.finish()

    def raw(updates: list) -> list:
        return [u.raw_probabilities is None or u.raw_probabilities.tolist() for u in updates]

    # Without calibration: the networks alone, exactly.
    not_calibrating = Engine(headed)
    assert not_calibrating._utterances is None
    assert raw(not_calibrating.feed(speech)) == raw(
        Engine(with_head(classifier, None)).feed(speech)
    )
    calibrating = Engine(headed, calibrate=True)
    first, second = two_recordings(calibrating)
    assert calibrating._utterances.voice.phrases_heard >= 1
    assert raw(first) != raw(second)  # the second recording is heard against the first
    calibrating.reset()  # a new voice: the head forgets this one
    assert calibrating._utterances.voice.phrases_heard == 0
    assert raw(calibrating.feed(speech) + calibrating.finish()) == raw(first)


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


def test_the_shipped_model_hears_each_phrase_against_the_voice(classifier):
    head = classifier.spec.utterance_head
    assert head is not None and head["trained_on"] == sorted(CORPORA)
    assert Engine(classifier, calibrate=True)._utterances is not None


def phrase_heard(classifier, audio: np.ndarray) -> tuple[np.ndarray, list]:
    """The head's probabilities for the stream's last phrase, and the updates."""
    engine = Engine(classifier, calibrate=True)
    updates = engine.feed(audio) + engine.finish()
    head = UtteranceHead.from_dict(classifier.spec.utterance_head)
    replay = UtteranceTracker(head, False, 0.5)
    heard = [replay.hear(u.frames) for u in updates if u.frames is not None]
    return heard[-1], updates


def test_what_the_head_hears_does_not_depend_on_the_input_gain(classifier, speech):
    """A summary leaves out the means a gain moves (cepstra and the dB level), so the same
    speech 10 dB quieter gets nearly the same verdict from the head, and from the engine."""
    loud, loud_updates = phrase_heard(classifier, speech)
    quiet, quiet_updates = phrase_heard(classifier, speech * np.float32(10 ** (-10 / 20)))
    assert np.abs(loud - quiet).max() < 0.05
    assert [u.speech for u in loud_updates] == [u.speech for u in quiet_updates]
    pairs = [(a, b) for a, b in zip(loud_updates, quiet_updates, strict=True) if a.speech]
    assert pairs
    for a, b in pairs:
        np.testing.assert_allclose(a.raw_probabilities, b.raw_probabilities, atol=0.03)


def test_a_phrase_sounds_the_same_wherever_the_window_grid_falls(classifier, speech):
    """Each 10 ms frame counts once: the same phrase a quarter or a third of a second
    later on the grid gets nearly the same verdict from the head."""
    first, _ = phrase_heard(classifier, speech)
    for lead_s in (0.1, 0.25, 0.33):
        lead = np.zeros(round(lead_s * 16000), dtype=np.float32)
        later, _ = phrase_heard(classifier, np.concatenate([lead, speech]))
        assert np.abs(later - first).max() < 0.05
