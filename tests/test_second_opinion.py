"""The phrase-level second opinion (the Dusha network): its input, its fusion with ours, its
place in the engine, and the app without it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ser_live import EMOTIONS
from ser_live.errors import ModelError
from tests.conftest import CORPUS, SPEECH_CLIP, run_cli, write_audio


@pytest.fixture(scope="module")
def opinion():
    from ser_live.second_opinion import load_second_opinion

    return load_second_opinion()


def fixture_clips():
    return sorted(CORPUS.rglob("*.flac"))[:3] + sorted(CORPUS.rglob("*.opus"))[:2]


@pytest.mark.parametrize("clip", fixture_clips(), ids=lambda p: p.name)
def test_its_input_is_its_training_recipe(clip):
    """The mel spectrogram in decibels relative to the loudest bin, as the original
    training code made it with librosa (centred with reflect padding, 80 dB floor)."""
    import librosa

    from ser_live.audio_io import load_audio
    from ser_live.second_opinion import DushaFeatures

    y = load_audio(clip)
    power = librosa.feature.melspectrogram(
        y=y, sr=16000, n_fft=320, hop_length=160, n_mels=64, pad_mode="reflect"
    )
    expected = librosa.power_to_db(power, ref=np.max)
    mine = DushaFeatures()(y)
    assert mine.shape == expected.shape
    np.testing.assert_allclose(mine, expected, atol=0.01)  # decibels


def test_fusion_mixes_the_four_shared_emotions_and_keeps_the_others():
    from ser_live.second_opinion import DUSHA_LABELS, fuse

    ours = np.array([0.15, 0.15, 0.1, 0.15, 0.2, 0.15, 0.1], dtype=np.float32)  # seven
    theirs = np.array([0.7, 0.1, 0.1, 0.1], dtype=np.float32)  # angry, sad, neutral, happy
    fused = fuse(ours, theirs, 0.5)
    assert fused.sum() == pytest.approx(1.0, abs=1e-6)
    for emotion in ("fearful", "disgust", "surprised"):  # Dusha has no say in these
        assert fused[EMOTIONS.index(emotion)] == pytest.approx(ours[EMOTIONS.index(emotion)])
    shared = [EMOTIONS.index(e) for e in DUSHA_LABELS]
    mass = ours[shared].sum()
    expected = mass * (0.5 * ours[shared] / mass + 0.5 * theirs)
    np.testing.assert_allclose(fused[shared], expected, atol=1e-6)
    assert EMOTIONS[int(np.argmax(fused))] == "angry"  # Dusha's sure anger wins here
    np.testing.assert_allclose(fuse(ours, theirs, 0.0), ours, atol=1e-7)
    # Linear in ours: a file's summary (the mean of its windows, each fused with its
    # phrase's opinion) is its phrases' fused means weighted by their windows.
    other = np.roll(ours, 2)
    np.testing.assert_allclose(
        fuse((ours + other) / 2, theirs, 0.3),
        (fuse(ours, theirs, 0.3) + fuse(other, theirs, 0.3)) / 2,
        atol=1e-6,
    )


def test_the_engine_hears_each_phrase_once_and_fuses_it(classifier, opinion):
    from ser_live.analysis import analyze_file
    from ser_live.audio_io import load_audio
    from ser_live.engine import Engine
    from ser_live.second_opinion import fuse

    engine = Engine(classifier, second_opinion=opinion)
    result = analyze_file(SPEECH_CLIP, engine)
    speech = [u for u in result.updates if u.raw_probabilities is not None]
    assert len(result.phrases) == 1  # one sentence: one phrase, every speech window in it
    phrase = result.phrases[0]
    assert phrase.n_windows == len(speech)
    assert phrase.start_s == speech[0].start_s and phrase.end_s == speech[-1].end_s
    np.testing.assert_allclose(
        phrase.ours, np.mean([u.raw_probabilities for u in speech], axis=0), atol=1e-6
    )
    # Dusha heard exactly the phrase's audio.
    audio = load_audio(SPEECH_CLIP)[round(phrase.start_s * 16000) : round(phrase.end_s * 16000)]
    np.testing.assert_allclose(phrase.theirs, opinion.probabilities(audio), atol=1e-6)
    np.testing.assert_allclose(
        phrase.probabilities, fuse(phrase.ours, phrase.theirs, opinion.weight), atol=1e-6
    )
    np.testing.assert_allclose(result.speech_probabilities, phrase.probabilities, atol=1e-6)
    # The windows themselves are the networks' alone, as without a second opinion.
    alone = analyze_file(SPEECH_CLIP, Engine(classifier))
    assert not any(p.theirs is not None for p in alone.phrases)
    for a, b in zip(alone.updates, result.updates, strict=True):
        assert (a.raw_probabilities is None) == (b.raw_probabilities is None)
        if a.raw_probabilities is not None:
            np.testing.assert_array_equal(a.raw_probabilities, b.raw_probabilities)


def test_two_phrases_get_two_verdicts_in_order_live_and_from_files(classifier, opinion, speech):
    """A pause splits phrases; live (the opinion on its own thread) and from a file (in
    line) give the same verdicts."""
    from ser_live.engine import Engine

    pause = np.zeros(16000 * 2, dtype=np.float32)
    stream = np.concatenate([pause, speech, pause, speech[::-1].copy(), pause])
    verdicts = {}
    for background in (False, True):
        engine = Engine(classifier, second_opinion=opinion, background_phrases=background)
        got = []
        for start in range(0, len(stream), 1600):  # 0.1 s blocks, as a microphone gives
            engine.feed(stream[start : start + 1600])
            got += engine.take_phrases()
        engine.finish()
        got += engine.take_phrases(wait=True)
        engine.close()
        verdicts[background] = got
    assert len(verdicts[False]) == 2
    assert verdicts[False][0].end_s < verdicts[False][1].start_s
    for a, b in zip(verdicts[False], verdicts[True], strict=True):
        assert (a.start_s, a.end_s, a.n_windows) == (b.start_s, b.end_s, b.n_windows)
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)


def test_two_sides_sharing_one_opinion_get_what_each_gets_alone(classifier, opinion, speech):
    """The app's two sides share one second opinion, each side's engine on its own
    thread: their verdicts are those each engine gives alone."""
    import threading

    from ser_live.engine import Engine

    pause = np.zeros(16000, dtype=np.float32)
    streams = [
        np.concatenate([pause, speech, pause, speech[::-1].copy(), pause]),
        np.concatenate([pause, speech[::-1].copy(), pause, pause, speech, pause]),
    ]

    def hear(stream: np.ndarray) -> list:
        engine = Engine(classifier.clone(), second_opinion=opinion, background_phrases=True)
        got = []
        for start in range(0, len(stream), 1600):
            engine.feed(stream[start : start + 1600])
            got += engine.take_phrases()
        engine.finish()
        got += engine.take_phrases(wait=True)
        engine.close()
        return got

    alone = [hear(stream) for stream in streams]
    together: list = [None, None]

    def side(i: int) -> None:
        together[i] = hear(streams[i])

    threads = [threading.Thread(target=side, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for mine, shared in zip(alone, together, strict=True):
        assert len(mine) == 2 and len(shared) == 2
        for a, b in zip(mine, shared, strict=True):
            assert (a.start_s, a.end_s) == (b.start_s, b.end_s)
            assert a.theirs is not None and b.theirs is not None
            np.testing.assert_allclose(a.theirs, b.theirs, atol=1e-6)
            np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)


def test_a_sidecar_that_does_not_match_is_refused(tmp_path):
    from ser_live.second_opinion import DEFAULT_SECOND_OPINION, load_second_opinion

    onnx = shutil.copy(DEFAULT_SECOND_OPINION, tmp_path / "dusha.onnx")
    sidecar = json.loads(DEFAULT_SECOND_OPINION.with_suffix(".json").read_text())
    for change, words in (
        ({"features": {**sidecar["features"], "n_mels": 80}}, "feature settings"),
        ({"sha256": "0" * 64}, "SHA-256"),
        ({"labels": ["happy", "sad", "neutral", "angry"]}, "labels"),
    ):
        (tmp_path / "dusha.json").write_text(json.dumps({**sidecar, **change}))
        with pytest.raises(ModelError, match=words):
            load_second_opinion(onnx)
    (tmp_path / "dusha.json").unlink()
    with pytest.raises(ModelError, match="sidecar missing"):
        load_second_opinion(onnx)


def test_without_its_file_the_app_says_so_once_and_runs_without_it(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for k, clip in enumerate(sorted((CORPUS / "ravdess" / "Actor_01").glob("*.flac"))[:2]):
        shutil.copy(clip, clips / f"{k}.flac")
    summary, plain = tmp_path / "s.csv", tmp_path / "plain.csv"
    missing = tmp_path / "nowhere" / "dusha_ser.onnx"
    args = ["analyze", str(clips), "--jobs", "2", "--no-progress"]
    proc = run_cli(*args, "--summary", str(summary), "--second-opinion", str(missing))
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if "second opinion" in line]
    assert len(said) == 1 and "not found" in said[0], proc.stderr
    proc = run_cli(*args, "--summary", str(plain))  # the default: our networks alone
    assert proc.returncode == 0 and "second opinion" not in proc.stderr, proc.stderr
    assert summary.read_text() == plain.read_text()
    proc = run_cli(*args, "--summary", str(tmp_path / "with.csv"), "--second-opinion")
    assert proc.returncode == 0 and "second opinion" not in proc.stderr, proc.stderr
    assert (tmp_path / "with.csv").read_text() != plain.read_text()  # it was heard


def test_a_silent_file_gets_no_phrase(classifier, opinion, tmp_path):
    from ser_live.analysis import analyze_file
    from ser_live.engine import Engine

    path = write_audio(tmp_path / "silent.wav", np.zeros(16000 * 3, dtype=np.float32))
    result = analyze_file(path, Engine(classifier, second_opinion=opinion))
    assert result.phrases == [] and result.speech_probabilities is None
