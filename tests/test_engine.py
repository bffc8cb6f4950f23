"""The engine: chunk-size invariance, determinism, reset, silence and smoothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ser_live import EMOTIONS
from ser_live.engine import Engine, Smoother
from tests.conftest import calibrated_as, learning_from_all


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


def speech_part(speech: np.ndarray, seconds: float) -> np.ndarray:
    """The loudest ``seconds`` of the clip."""
    n = round(seconds * 16000)
    start = int(np.argmax(np.convolve(speech.astype(np.float64) ** 2, np.ones(n), "valid")))
    return speech[start : start + n]


@pytest.mark.parametrize("seconds", [0.4, 1.0, 1.9])
def test_a_clip_shorter_than_a_window_gets_an_emotion(engine, speech, seconds):
    clip = speech_part(speech, seconds)
    assert engine.feed(clip) == []
    (update,) = engine.finish()
    assert update.speech and update.emotion in EMOTIONS
    assert abs(float(update.raw_probabilities.sum()) - 1) < 1e-3
    assert (update.start_s, update.end_s) == (0.0, pytest.approx(seconds))
    assert engine.finish() == []  # said once
    engine.reset()
    engine.feed(clip)
    assert signature(engine.finish()) == signature([update])  # the same padding every time


@pytest.mark.parametrize("seconds", [0.4, 1.9])
def test_a_short_clip_without_speech_gets_none(engine, seconds):
    rng = np.random.default_rng(2)
    hum = (rng.standard_normal(round(seconds * 16000)) * 10 ** (-50 / 20)).astype(np.float32)
    hum += 0.2  # a DC offset is not speech either
    engine.feed(hum)
    (update,) = engine.finish()
    assert not update.speech and update.emotion is None


def test_a_short_phrase_in_a_long_stream_gets_one_emotion(engine, speech):
    word = speech_part(speech, 0.5)
    rng = np.random.default_rng(3)
    stream = (rng.standard_normal(16000 * 8) * 10 ** (-70 / 20)).astype(np.float32)
    stream[3 * 16000 + 1234 : 3 * 16000 + 1234 + len(word)] += word
    updates = feed_in_chunks(engine, stream, 320) + engine.finish()
    assert [u.start_s for u in updates] == [0.5 * i for i in range(13)]  # each window once
    (said,) = [u for u in updates if u.speech]
    assert said.emotion in EMOTIONS and said.start_s < 3.1 < 3.6 < said.end_s
    assert all(u.speech_ratio == 0 for u in updates if not (u.start_s < 3.6 and u.end_s > 3.0))


QUIET_CLIP = Path(__file__).parent / "fixtures" / "quiet" / "03-01-04-01-01-01-09.flac"


def test_a_quiet_recording_of_speech_gets_an_emotion(classifier):
    """RAVDESS actor 9, loudest frame near -50 dBFS: webrtcvad alone hears too little
    speech for a verdict; raised for the VAD (the sidecar's level target), it has one."""
    from ser_live.audio_io import load_audio

    audio = load_audio(QUIET_CLIP)
    assert classifier.spec.vad["level_target_db"] == -36.0

    def verdicts(engine: Engine) -> list:
        return [u for u in engine.feed(audio) + engine.finish() if u.speech]

    assert verdicts(Engine(classifier))  # the shipped settings
    unraised = Engine(classifier)
    unraised.vad.level_target_db = None
    assert not verdicts(unraised)  # without the raise: "no speech"


def test_calibration_starts_from_the_population_and_moves_to_the_voice():
    from ser_live.calibration import SpeakerCalibration

    rng = np.random.default_rng(0)
    mean, std = rng.standard_normal(5), rng.uniform(0.5, 2.0, 5)
    calibration = SpeakerCalibration(mean, std, prior_frames=2000)
    window = rng.standard_normal((196, 5)).astype(np.float32)
    np.testing.assert_allclose(calibration.map(window), window, atol=1e-5)  # no voice yet
    voice_mean, voice_std = mean + 3.0, std * 0.5  # higher and flatter than the population
    for _ in range(1000):  # the prior's 2000 frames are 1% of what it has heard
        calibration.update(voice_mean + voice_std * rng.standard_normal((196, 5)))
    heard = voice_mean + voice_std * rng.standard_normal((196 * 50, 5))
    mapped = calibration.map(heard)
    assert (np.abs(mapped.mean(axis=0) - mean) < 0.1 * std).all()
    np.testing.assert_allclose(mapped.std(axis=0), std, rtol=0.1)
    calibration.reset()
    assert calibration.frames_heard == 0
    np.testing.assert_allclose(calibration.map(window), window, atol=1e-5)


def test_a_bounded_calibration_moves_a_voice_no_further_than_its_bound():
    from ser_live.calibration import SpeakerCalibration

    rng = np.random.default_rng(1)
    mean, std = rng.standard_normal(5), rng.uniform(0.5, 2.0, 5)
    bounded = SpeakerCalibration(mean, std, prior_frames=2000, max_shift=0.5)
    free = SpeakerCalibration(mean, std, prior_frames=2000)
    for shift, spread, within in ((0.2, 1.2, True), (3.0, 0.5, False)):
        voice_mean, voice_std = mean + shift * std, std * spread
        bounded.reset()
        free.reset()
        for _ in range(1000):
            window = voice_mean + voice_std * rng.standard_normal((196, 5))
            bounded.update(window)
            free.update(window)
        heard = voice_mean + voice_std * rng.standard_normal((196 * 50, 5))
        if within:  # mapped as without a bound
            np.testing.assert_allclose(bounded.map(heard), free.map(heard), atol=1e-5)
            continue
        # 3 spreads higher and half as varied: the map takes off only 0.5 spreads, and
        # widens by at most 1.5, so the voice stays 3.75 spreads high, 0.75 as varied.
        mapped = bounded.map(heard)
        np.testing.assert_allclose((mapped.mean(axis=0) - mean) / std, 3.75, atol=0.1)
        np.testing.assert_allclose(mapped.std(axis=0) / std, 0.75, rtol=0.05)


def test_the_models_bound_holds_every_network_of_the_pair(tmp_path):
    """A bound in the model's sidecar holds its member network's calibration too (the
    member's own sidecar, written for it alone, has none), and the utterance head's."""
    import json

    from ser_live.model import load_model
    from tests.conftest import copy_model

    model = copy_model(tmp_path / "model.tflite")
    sidecar = model.with_suffix(".json")
    spec = json.loads(sidecar.read_text())
    spec["normalisation"]["speaker_calibration"]["max_shift"] = 0.5
    sidecar.write_text(json.dumps(spec))
    classifier = load_model(model)
    assert len(classifier.networks) == 2
    engine = Engine(classifier, calibrate=True)
    assert [c.max_shift for c in engine._calibrations] == [0.5, 0.5]
    assert engine._utterances.max_shift == 0.5
    # The shipped sidecar's bound, 0.5, holds both too; without one, none anywhere.
    engine = Engine(load_model(), calibrate=True)
    assert [c.max_shift for c in engine._calibrations] == [0.5, 0.5]
    free = calibrated_as(tmp_path / "free.tflite", max_shift=None)
    engine = Engine(load_model(free), calibrate=True)
    assert [c.max_shift for c in engine._calibrations] == [None, None]


def test_variety_is_earned_by_phrases_that_differ_not_by_one_lasting_emotion():
    from ser_live.verdict_variety import VerdictVariety

    def heard(phrases, prior_windows=20.0):
        variety = VerdictVariety(full_at=0.1, prior_windows=prior_windows)
        for phrase in phrases:
            for verdict in phrase:
                variety.add(verdict)
            variety.end_phrase()
        return variety

    sure = np.eye(len(EMOTIONS))
    rng = np.random.default_rng(5)
    # Forty phrases, each wavering between two emotions window to window, but every
    # phrase like the others: one lasting mood earns no trust, however long.
    lasting = [[sure[k % 2] for k in range(6)] for _ in range(40)]
    assert heard(lasting).variety < 1e-9
    assert heard(lasting).trust < 1e-9
    # Phrases heard as different emotions earn it, fully once heard long enough.
    varied = [[sure[j % 3]] * 6 for j in range(40)]
    assert heard(varied).trust == 1.0
    # The same three phrases earn less the fewer windows they have against the prior's.
    short = [[sure[j]] * 2 for j in range(3)]
    assert heard(short).variety == pytest.approx(heard(short, prior_windows=0.0).variety * 6 / 26)
    # Halfway: verdicts that differ by phrase by half as much, half the variety.
    half = [[0.5 * sure[j % 3] + 0.5 * sure[6]] * 6 for j in range(40)]
    assert heard(half).variety == pytest.approx(heard(varied).variety / 4)
    # A phrase still being heard counts; a new voice starts from nothing.
    open_phrase = VerdictVariety(full_at=0.1, prior_windows=0.0)
    for verdict in rng.permutation(np.repeat(sure[:2], 10, axis=0)):
        open_phrase.add(verdict)
    assert open_phrase.variety == 0.0  # one phrase: nothing between phrases yet
    open_phrase.end_phrase()
    for _ in range(20):
        open_phrase.add(sure[2])
    assert open_phrase.variety > 0.1
    open_phrase.reset()
    assert open_phrase.windows_heard == 0 and open_phrase.trust == 0.0


def test_a_shrunk_calibration_follows_the_voice_only_as_far_as_it_is_trusted():
    from ser_live.calibration import SpeakerCalibration

    rng = np.random.default_rng(6)
    mean, std = rng.standard_normal(5), rng.uniform(0.5, 2.0, 5)
    calibration = SpeakerCalibration(mean, std, prior_frames=0.001)
    voice_mean, voice_std = mean + 2.0 * std, 0.25 * std
    calibration.update(voice_mean + voice_std * rng.standard_normal((196 * 200, 5)))
    heard = voice_mean + voice_std * rng.standard_normal((196 * 50, 5))
    calibration.trust = 0.0  # as the population hears it
    np.testing.assert_allclose(calibration.map(heard), heard, atol=1e-4)
    # Half trusted: the voice, 2 spreads high and a quarter as varied, is heard as 1 spread
    # high and half as varied, so the map takes off one spread and widens it by 2: it
    # stays (2 - 1) x 2 spreads high, half as varied.
    calibration.trust = 0.5
    mapped = calibration.map(heard)
    np.testing.assert_allclose((mapped.mean(axis=0) - mean) / std, 2.0, atol=0.05)
    np.testing.assert_allclose(mapped.std(axis=0) / std, 0.5, rtol=0.05)
    # An explicit trust wins over the calibration's own.
    np.testing.assert_allclose(calibration.map(heard, trust=0.0), heard, atol=1e-4)
    calibration.trust = 1.0
    np.testing.assert_allclose(calibration.map(heard).mean(axis=0), mean, atol=0.05)


def test_the_models_variety_sets_the_trust_of_every_network_and_the_head(tmp_path):
    """A sidecar's ``speaker_calibration.variety``: nothing heard, nothing trusted; the
    trust the voice's verdicts (heard without calibration) earn holds every network and the
    utterance head; a new voice starts again from none."""
    import json

    from ser_live.analysis import analyze_file
    from ser_live.model import load_model
    from tests.conftest import copy_model

    model = copy_model(tmp_path / "model.tflite")
    sidecar = model.with_suffix(".json")
    spec = json.loads(sidecar.read_text())
    spec["normalisation"]["speaker_calibration"]["variety"] = {
        "full_at": 0.001,
        "prior_windows": 4,
    }
    sidecar.write_text(json.dumps(spec))
    engine = Engine(load_model(model), calibrate=True)
    trusts = lambda: [c.trust for c in engine._calibrations] + [engine._utterances.trust]  # noqa: E731
    assert trusts() == [0.0, 0.0, 0.0]
    # One speaker in two emotions (fixtures/README.md), one phrase each.
    clips = sorted((Path(__file__).parent / "fixtures/corpus/ravdess/Actor_04").glob("*.flac"))
    windows = 0
    for k, clip in enumerate(clips):
        windows += sum(u.speech for u in analyze_file(clip, engine, keep_calibration=k > 0).updates)
        assert engine._variety.windows_heard == windows > 0
    assert trusts() == [engine._variety.trust] * 3 and engine._variety.trust > 0.0
    engine.reset()
    assert trusts() == [0.0, 0.0, 0.0]
    # Never trusted, a calibrating engine hears a voice as an engine without calibration
    # does (the map the identity, the utterance head silent).
    spec["normalisation"]["speaker_calibration"]["variety"]["full_at"] = 1e9
    sidecar.write_text(json.dumps(spec))
    untrusted = Engine(load_model(model), calibrate=True)
    plain = Engine(load_model(model))
    for k, clip in enumerate(clips):
        heard = analyze_file(clip, untrusted, keep_calibration=k > 0).updates
        as_alone = analyze_file(clip, plain).updates
        assert [u.speech for u in heard] == [u.speech for u in as_alone]
        for a, b in zip(heard, as_alone, strict=True):
            if a.speech:
                np.testing.assert_allclose(a.raw_probabilities, b.raw_probabilities, atol=1e-4)
    # Without the key, calibration is trusted as before.
    engine = Engine(
        load_model(calibrated_as(tmp_path / "trusting.tflite", variety=None)), calibrate=True
    )
    assert engine._variety is None
    assert [c.trust for c in engine._calibrations] == [1.0, 1.0]


def test_calibration_of_some_features_leaves_the_others_as_the_population_hears_them():
    from ser_live.calibration import SpeakerCalibration

    rng = np.random.default_rng(2)
    mean, std = rng.standard_normal(5), rng.uniform(0.5, 2.0, 5)
    some = SpeakerCalibration(mean, std, prior_frames=2000, dims=[0, 3])
    every = SpeakerCalibration(mean, std, prior_frames=2000)
    voice_mean, voice_std = mean + 2.0 * std, 0.5 * std
    for _ in range(1000):
        window = voice_mean + voice_std * rng.standard_normal((196, 5))
        some.update(window)
        every.update(window)
    heard = voice_mean + voice_std * rng.standard_normal((196 * 50, 5))
    mapped, free = some.map(heard), every.map(heard)
    np.testing.assert_allclose(mapped[:, [0, 3]], free[:, [0, 3]], atol=1e-5)
    np.testing.assert_allclose(mapped[:, [1, 2, 4]], heard[:, [1, 2, 4]], atol=1e-4)
    # The others still stand 2 spreads high: an emotion that moved them stays visible.
    np.testing.assert_allclose(
        (mapped.mean(axis=0)[[1, 2, 4]] - mean[[1, 2, 4]]) / std[[1, 2, 4]], 2.0, atol=0.1
    )


def test_a_calibrated_engine_hears_speech_only_and_resets_per_voice(classifier, speech):
    classifier = learning_from_all(classifier)  # the gate: test_training.py
    plain = Engine(classifier)
    calibrated = Engine(classifier, calibrate=True)
    rng = np.random.default_rng(4)
    hiss = (rng.standard_normal(16000 * 4) * 10 ** (-70 / 20)).astype(np.float32)
    calibrated.feed(hiss)
    assert calibrated.calibration.frames_heard == 0  # silence is not the voice
    calibrated.reset()
    with_calibration = feed_in_chunks(calibrated, speech, 4096) + calibrated.finish()
    without = feed_in_chunks(plain, speech, 4096) + plain.finish()
    heard = calibrated.calibration.frames_heard
    assert heard == 196 * sum(u.speech for u in with_calibration) > 0
    assert [u.speech for u in with_calibration] == [u.speech for u in without]
    assert any(
        not np.allclose(a.raw_probabilities, b.raw_probabilities)
        for a, b in zip(with_calibration, without, strict=True)
        if a.speech
    )
    calibrated.reset(keep_calibration=True)  # the same speaker's next recording
    assert calibrated.calibration.frames_heard == heard
    again = feed_in_chunks(calibrated, speech, 160) + calibrated.finish()
    assert signature(again) != signature(with_calibration)  # heard with more of the voice
    calibrated.reset()
    assert signature(feed_in_chunks(calibrated, speech, 160) + calibrated.finish()) == signature(
        with_calibration
    )  # a new voice: as at first, whatever the chunks


def test_calibration_needs_a_model_measured_with_it(classifier):
    from dataclasses import replace

    from ser_live.errors import ModelError

    spec = replace(classifier.spec, normalisation={**classifier.spec.normalisation})
    del spec.normalisation["speaker_calibration"]
    old = copy_classifier(classifier, spec)
    Engine(old)  # fine without calibration
    with pytest.raises(ModelError, match="drop --calibrate"):
        Engine(old, calibrate=True)


def copy_classifier(classifier, spec):
    from ser_live.model import Classifier

    return Classifier(classifier.path, spec)


def speaker_normalised_copy(classifier, population: dict | None):
    """The classifier's first network as if trained on speaker-normalised windows whose
    statistics before normalisation were ``population`` (its global standardisation made
    the identity, so that the calibration's map does all of it)."""
    from dataclasses import replace

    n = classifier.spec.input_shape[1]
    calibration = {"prior_frames": 2000, "speaker_normalised": True}
    if population is not None:
        calibration["population"] = population
    norm = {
        **classifier.spec.normalisation,
        "global": {"mean": [0.0] * n, "std": [1.0] * n},
        "speaker_calibration": calibration,
    }
    return replace(classifier.spec, normalisation=norm)


def test_a_speaker_normalised_network_hears_the_population_until_it_calibrates(classifier, speech):
    """Such a network always hears a voice through its calibration: without ``calibrate``
    frozen at the prior (the training population), which here gives back the plain
    network's input exactly; with it, the voice's own statistics take over."""
    spec = speaker_normalised_copy(classifier, classifier.spec.normalisation["global"])
    spec.check()
    frozen = Engine(copy_classifier(classifier, spec))
    assert frozen.calibration is None  # not calibrating: nothing learns the voice
    plain = feed_in_chunks(Engine(classifier), speech, 4096)
    heard = feed_in_chunks(frozen, speech, 4096)
    assert [u.speech for u in heard] == [u.speech for u in plain] and any(u.speech for u in plain)
    for a, b in zip(heard, plain, strict=True):
        if a.speech:
            np.testing.assert_allclose(a.raw_probabilities, b.raw_probabilities, atol=0.02)
    calibrating = Engine(copy_classifier(classifier, spec), calibrate=True)
    learnt = feed_in_chunks(calibrating, speech, 4096)
    assert calibrating.calibration.frames_heard > 0
    assert any(
        not np.allclose(a.raw_probabilities, b.raw_probabilities, atol=0.02)
        for a, b in zip(learnt, heard, strict=True)
        if a.speech
    )


def test_a_speaker_normalised_sidecar_needs_its_population(classifier):
    from ser_live.errors import ModelError

    with pytest.raises(ModelError, match="population statistics"):
        speaker_normalised_copy(classifier, None).check()


def test_calibration_to_a_unit_target_z_scores_the_voice():
    from ser_live.calibration import SpeakerCalibration

    rng = np.random.default_rng(1)
    mean, std = rng.standard_normal(4), rng.uniform(0.5, 2.0, 4)
    calibration = SpeakerCalibration(mean, std, 2000, np.zeros(4), np.ones(4))
    window = (mean + std * rng.standard_normal((196, 4))).astype(np.float32)
    np.testing.assert_allclose(calibration.map(window), (window - mean) / std, atol=1e-5)
    voice_mean, voice_std = mean - 2.0, std * 1.5
    for _ in range(1000):
        calibration.update(voice_mean + voice_std * rng.standard_normal((196, 4)))
    mapped = calibration.map(voice_mean + voice_std * rng.standard_normal((196 * 50, 4)))
    assert (np.abs(mapped.mean(axis=0)) < 0.1).all()
    np.testing.assert_allclose(mapped.std(axis=0), 1.0, rtol=0.1)
