"""The training pipeline: loaders, splits, augmentation, and a whole run on the fixtures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ser_live import EMOTIONS
from tests.conftest import CORPUS, ROOT
from training.config import TrainConfig
from training.corpora import CORPORA, find_utterances, parse
from training.environment import training_libraries


def test_loaders_read_every_corpus_in_wav_flac_and_opus():
    utts = find_utterances([CORPUS])
    assert len(utts) == 19
    assert {u.corpus for u in utts} == set(CORPORA)
    assert {Path(u.path).suffix for u in utts} == {".flac", ".wav", ".opus"}
    by_name = {Path(u.path).stem: u for u in utts}
    assert (by_name["EB0_anger_1"].emotion, by_name["EB0_anger_1"].speaker) == ("angry", "nemo-EB0")
    assert by_name["WR0_sadness_1"].emotion == "sad"
    # 201-300 are sad, whatever the database's README says (see KOREAN_RANGES).
    assert (by_name["neo00001"].emotion, by_name["neo00201"].emotion) == ("neutral", "sad")
    assert by_name["neo00201"].speaker == "korean-neo"
    calm = next(u for u in utts if u.corpus == "emospeech" and u.source_label == "calm")
    assert calm.emotion == "neutral" and calm.speaker == "emospeech-d14a028c"
    angry = next(u for u in utts if u.path.endswith("03-01-05-02-01-01-01.flac"))
    assert (angry.emotion, angry.speaker, angry.gender, angry.intensity) == (
        "angry",
        "ravdess-01",
        "male",
        "strong",
    )
    female = next(u for u in utts if u.speaker == "ravdess-02")
    assert female.gender == "female"


@pytest.mark.parametrize(
    ("name", "emotion", "speaker"),
    [
        ("03-01-02-01-01-01-07.wav", "neutral", "ravdess-07"),  # calm is neutral
        ("03-01-08-02-02-02-12.wav", "surprised", "ravdess-12"),
        ("YAF_chair_ps.wav", "surprised", "tess-YAF"),  # pleasant surprise
        ("OAF_Fear/OAF_back_fear.wav", "fearful", "tess-OAF"),
        ("OAF_neutral/OA_bite_neutral.wav", "neutral", "tess-OAF"),  # the corpus's typo
        ("samples/SB0_surprised_12.wav", "surprised", "nemo-SB0"),
        ("samples/MK0_fear_3.flac", "fearful", "nemo-MK0"),
        ("Emotional/plain-to-emotional/emb/wav/emb00150.wav", "happy", "korean-emb"),
        ("Emotional/emotional-to-emotional/nea/wav/nea00400.wav", "angry", "korean-nea"),
        (
            "Roads/help-street-fearful-20190710134644-" + "ab" * 28 + ".wav",
            "fearful",
            "emospeech-abababab",
        ),
        (
            "Misc/unknown-safe-calm-1561964985.0197-" + "0f" * 28 + ".wav",
            "neutral",
            "emospeech-0f0f0f0f",
        ),
        ("webservice/no-safe-happy-??-" + "12" * 28 + ".wav", "happy", "emospeech-12121212"),
    ],
)
def test_label_mapping(name, emotion, speaker):
    utt = parse(Path(name))
    assert utt is not None and utt.emotion == emotion and utt.speaker == speaker


def test_a_clip_of_no_known_speaker_is_heard_alone_in_a_calibrated_session(tmp_path):
    """EmoSpeech's "unknown user" is many people: calibrating to them as one voice is
    not what a user could do, so the calibrated protocol hears such a clip alone."""
    from tests.conftest import calibrated_as
    from training.scoring import clip_probabilities, session_probabilities

    clips = find_utterances([CORPUS / "emospeech"])
    assert [u.voice_known for u in clips] == [False, True]  # House/bacho…, webservice/go…
    # The voice trusted at once (the shipped sidecar hears a voice of one phrase as alone).
    model = calibrated_as(tmp_path / "trusting.tflite", variety=None)
    heard, alone = session_probabilities(model, clips), clip_probabilities(model, clips)
    np.testing.assert_array_equal(heard[0], alone[0])
    assert np.abs(heard[1] - alone[1]).max() > 1e-3  # calibrated, with the utterance head


@pytest.mark.parametrize(
    "name",
    [
        "02-01-05-01-01-01-01.wav",
        "03-02-05-01-01-01-01.wav",
        "readme.wav",
        "XYZ_word_angry.wav",
        "samples/EB0_disgust_1.wav",  # nEMO has no disgust
        "Emotional/x/neo/wav/neo00401.wav",  # beyond the Korean sample's four ranges
        "neo/neo00001.wav",  # not in a wav/ folder of its speaker
        "House/bacho-safe-None-20190712144030-" + "ab" * 28 + ".wav",  # no emotion
        "House/background-safe-calm-2019-x.wav",
    ],
)
def test_other_files_are_ignored(name):
    assert parse(Path(name)) is None


def test_augmented_windows_are_deterministic(tmp_path):
    from training.windows import extract_windows

    utts = find_utterances([CORPUS / "ravdess" / "Actor_01"])
    cfg = TrainConfig(n_augment=1, workers=1)
    first = extract_windows(utts, cfg)
    second = extract_windows(utts, cfg)
    np.testing.assert_array_equal(first["x"], second["x"])
    clean, augmented = first["x"][first["copy"] == 0], first["x"][first["copy"] == 1]
    assert len(clean) and len(augmented)
    assert not np.array_equal(clean[: len(augmented)], augmented[: len(clean)])


def test_a_thin_emotion_gets_new_voices_up_to_the_cap():
    from training.windows import thin_class_copies

    # neutral 100 clips, happy 50, sad 20, the rest none (a fit that lacks them).
    labels = np.repeat([0, 1, 2], [100, 50, 20])
    assert thin_class_copies(labels, 2, 4).tolist() == [0, 2, 4, 0, 0, 0, 0]
    assert thin_class_copies(labels, 2, 0).tolist() == [0] * 7
    assert thin_class_copies(np.repeat([0, 1], 10), 2, 4).tolist() == [0] * 7


def test_new_voices_add_copies_and_leave_the_others_as_they_were():
    from training.windows import extract_windows

    utts = find_utterances([CORPUS / "ravdess" / "Actor_01"])[:3]
    cfg = TrainConfig(n_augment=1, workers=1)
    plain = extract_windows(utts, cfg)
    voices = extract_windows(utts, cfg, new_voices=np.array([0, 2, 0]))
    assert sorted(set(voices["copy"][voices["clip"] == 1])) == [0, 1, 2, 3]
    assert set(voices["copy"][voices["clip"] != 1]) == {0, 1}
    old = voices["copy"] <= cfg.n_augment
    np.testing.assert_array_equal(voices["x"][old], plain["x"])
    new = voices["x"][voices["copy"] == 2]
    clean = voices["x"][(voices["clip"] == 1) & (voices["copy"] == 0)]
    assert len(new) and not np.array_equal(new[: len(clean)], clean[: len(new)])


def test_augmentation_puts_quiet_speech_where_the_engine_hears_it():
    from ser_live.audio_io import load_audio
    from training.augment import SPEECH_LEVEL_DB, Augmenter, set_speech_level, speech_level_db
    from training.windows import make_frontend, place_in_room_tone

    cfg = TrainConfig()
    path = next(u.path for u in find_utterances([CORPUS / "ravdess"]))
    clip = place_in_room_tone(load_audio(path), cfg, np.random.default_rng(0))
    # 50 dB below the recording: far under the VAD's floor, as a blind gain could leave it.
    whisper = clip * 10 ** (-50 / 20)
    frontend = make_frontend(cfg)
    assert not any(w.speech_ratio >= cfg.min_speech_ratio for w in frontend.feed(whisper))
    augment = Augmenter()
    for seed in range(4):
        out = augment(whisper, seed)
        assert SPEECH_LEVEL_DB[0] - 0.5 <= speech_level_db(out) <= SPEECH_LEVEL_DB[1] + 0.5
        frontend.reset()
        assert any(w.speech_ratio >= cfg.min_speech_ratio for w in frontend.feed(out))
    # Digital silence has no level to set: it stays silence, not NaN.
    assert not set_speech_level(np.zeros(16000, np.float32), -20.0).any()


def test_mp3_round_trip_keeps_length_and_timing_but_not_the_samples():
    from ser_live.audio_io import load_audio
    from training.augment import codec_round_trip

    clip = load_audio(next(u.path for u in find_utterances([CORPUS / "tess"])))
    coded = codec_round_trip(clip, "MP3", "MPEG_LAYER_III", 0.99)
    assert coded.shape == clip.shape and coded.dtype == np.float32
    assert not np.allclose(coded, clip, atol=1e-3)
    # Still the same speech at the same time: the codec's delay is compensated.
    assert np.corrcoef(coded, clip)[0, 1] > 0.8


def test_augmented_copies_without_speech_give_no_window():
    from training.windows import clip_windows, make_frontend, room_tone

    cfg = TrainConfig()
    silence = room_tone(3 * 16000, np.random.default_rng(0))
    frontend = make_frontend(cfg)
    assert len(clip_windows(silence, cfg, frontend)) == 1  # a clean clip is always scored
    assert len(clip_windows(silence, cfg, frontend, fallback=False)) == 0


def python_m(module: str, *args) -> subprocess.CompletedProcess:
    """``python -m module args...`` from the repository root, output captured."""
    command = [sys.executable, "-m", module, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT)


def test_training_batches_mix_and_mask_but_keep_each_window_mostly_itself():
    from training.neural import training_batches

    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 50, 12)).astype(np.float32) + 5.0  # no zeros by chance
    y = np.arange(200) % len(EMOTIONS)

    plain = training_batches(x, y, TrainConfig(spec_augment=False, mixup_alpha=0.0))
    batch, targets, weights = plain[0]
    idx = plain.order[: len(batch)]
    np.testing.assert_array_equal(batch, x[idx])
    np.testing.assert_array_equal(targets.argmax(axis=1), y[idx])

    masked = training_batches(x, y, TrainConfig(spec_augment=True, mixup_alpha=0.0))
    batch, _, _ = masked[0]
    idx = masked.order[: len(batch)]
    blanked = batch == 0  # SpecAugment masks blank time spans and feature bands
    assert blanked.any() and np.array_equal(batch[~blanked], x[idx][~blanked])

    mixed = training_batches(x, y, TrainConfig(spec_augment=False, mixup_alpha=0.4))
    batch, targets, weights = mixed[0]
    idx = mixed.order[: len(batch)]
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)
    assert (targets[np.arange(len(idx)), y[idx]] >= 0.5).all()
    assert (targets.max(axis=1) < 1.0).any()  # some windows really were blended
    assert not np.allclose(batch, x[idx])
    assert weights.shape == (len(idx),) and (weights > 0).all()


def test_partial_labels_leave_a_corpus_s_missing_emotions_out_of_its_loss():
    """A window from a corpus without sad: its loss is the same whatever the network says
    about sad, and its blended targets carry the union of both windows' label sets."""
    from training.neural import partial_label_loss, training_batches
    from training.scoring import label_sets

    n = len(EMOTIONS)
    has = np.ones(n, dtype=np.float32)
    no_sad = has.copy()
    no_sad[EMOTIONS.index("sad")] = 0
    target = np.eye(n, dtype=np.float32)[EMOTIONS.index("angry")]
    outputs = np.full((2, n), 0.1, dtype=np.float32)
    outputs[1, EMOTIONS.index("sad")] = 0.9  # much surer of sad, the rest as before
    outputs /= outputs.sum(axis=1, keepdims=True)
    y_true = np.stack([np.concatenate([target, no_sad])] * 2)
    partial = np.asarray(partial_label_loss(y_true, outputs))
    assert partial[0] == pytest.approx(partial[1], rel=1e-5)
    y_all = np.stack([np.concatenate([target, has])] * 2)
    full = np.asarray(partial_label_loss(y_all, outputs))
    assert full[1] > full[0] + 0.5  # with every emotion allowed, sad's share costs

    clips = find_utterances([CORPUS])
    sets = label_sets(clips)
    for clip, row in zip(clips, sets, strict=True):
        corpus_labels = {u.emotion for u in clips if u.corpus == clip.corpus}
        assert {EMOTIONS[i] for i in np.flatnonzero(row)} == corpus_labels

    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 20, 6)).astype(np.float32)
    y = np.arange(100) % n
    window_sets = np.ones((100, n), dtype=bool)
    window_sets[::2, EMOTIONS.index("sad")] = False
    batches = training_batches(x, y, TrainConfig(spec_augment=False), label_sets=window_sets)
    _, targets, _ = batches[0]
    idx = batches.order[: len(targets)]
    assert targets.shape == (len(idx), 2 * n)
    assert (targets[:, n:] >= window_sets[idx]).all()  # a blend keeps its own set at least


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-folder"], "no such folder: no-such-folder"),
        ([str(CORPUS), "--no-loco"], "--no-loco needs --speaker-folds or --install"),
        (["robustness", str(CORPUS), str(CORPUS)], "not a finished leave-one-corpus-out run"),
        (
            ["robustness", str(CORPUS), str(CORPUS), "--conditions", "clean,underwater"],
            "unknown condition: underwater",
        ),
    ],
)
def test_command_line_refuses_bad_arguments_in_one_line(args, message, tmp_path):
    if args[0] == "robustness":
        proc = python_m("training.loco_robustness", *args[1:])
    else:
        proc = python_m("training.loco", *args, "--run-dir", tmp_path / "run")
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_averaged_members_are_one_model_giving_the_mean_of_their_probabilities():
    import keras

    from training.models import build_cnn
    from training.neural import average_of

    members = []
    for seed in (1, 2, 3):
        keras.utils.set_random_seed(seed)
        members.append(build_cnn(40, 12, len(EMOTIONS), 1e-4, 0.4, filters=(8, 8, 8, 8)))
    x = np.random.default_rng(0).standard_normal((5, 40, 12)).astype(np.float32)
    each = [m.predict(x, verbose=0) for m in members]
    assert not np.allclose(each[0], each[1])  # the members really differ

    ensemble = average_of(members)
    assert len(ensemble.inputs) == 1 and ensemble.outputs[0].shape[-1] == len(EMOTIONS)
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), np.mean(each, axis=0), atol=1e-6)
    assert average_of(members[:1]) is members[0]


def tiny_fit_jobs(folder: Path, seeds: tuple[int, ...]) -> tuple[list, np.ndarray]:
    """Quick fits of a small conv1d network on random windows, one per seed (and the
    windows they validate on)."""
    from ser_live.features import Standardiser
    from training.jobs import FitJob

    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 40, 12)).astype(np.float32)
    y = np.arange(120) % len(EMOTIONS)
    folder.mkdir()
    np.save(folder / "windows.npy", x)
    cfg = TrainConfig(epochs=2, batch_size=16, cnn_filters=[8, 8, 8, 8])
    jobs = [
        FitJob(
            name=f"member {seed}",
            kind="cnn",
            cfg=replace(cfg, seed=seed),
            windows=folder / "windows.npy",
            standardiser=Standardiser.fit(x[:80]),
            train=np.arange(80),
            y_train=y[:80],
            checkpoint=folder / f"{seed}.keras",
            val=np.arange(80, 120),
            y_val=y[80:],
        )
        for seed in seeds
    ]
    return jobs, x[80:]


def test_fits_do_not_depend_on_how_many_run_side_by_side(tmp_path):
    import keras

    from training.jobs import fit, fit_pool

    outputs = {}
    for workers in (1, 2):
        jobs, x_val = tiny_fit_jobs(tmp_path / f"w{workers}", (1, 2))
        with fit_pool(workers) as pool:
            done = [f.result() for f in [pool.submit(fit, j) for j in jobs]]
        outputs[workers] = [
            keras.models.load_model(r.job.checkpoint).predict(x_val, verbose=0) for r in done
        ]
        assert [r.job.name for r in done] == ["member 1", "member 2"]
        assert all(len(r.history["loss"]) == 2 for r in done)
    assert not np.allclose(outputs[1][0], outputs[1][1])  # two seeds, two different models
    for one, two in zip(outputs[1], outputs[2], strict=True):
        np.testing.assert_array_equal(one, two)


def test_the_scheduler_runs_a_job_as_soon_as_what_it_waits_for_is_done(tmp_path):
    from training.jobs import FitScheduler

    first, waiting, dependent = tiny_fit_jobs(tmp_path / "jobs", (1, 2, 3))[0]
    finished: list[str] = []
    with FitScheduler(workers=1) as scheduler:

        def submit(job, priority: int, **kwargs):
            future = scheduler.submit(job, priority, **kwargs)
            future.add_done_callback(lambda f: finished.append(f.result().job.name))
            return future

        futures = [submit(first, priority=1)]
        for _ in range(600):  # until the only worker has it
            if futures[0].running():
                break
            time.sleep(0.05)
        futures.append(submit(waiting, priority=0))
        # Built from the first fit's result, and queued before the worker it frees takes
        # the job that has been waiting all along.
        futures.append(
            submit(
                dependent,
                priority=-1,
                after=[futures[0]],
                prepare=lambda job, results: replace(job, name=f"after {results[0].job.name}"),
            )
        )
    assert finished == ["member 1", "after member 1", "member 2"]
    assert all(f.result().job.checkpoint.exists() for f in futures)


@pytest.mark.parametrize(("bands", "time_pool"), [(64, 4), (32, 8)])  # 40 and 80 ms steps
def test_conv2d_network_sees_the_log_mel_spectrum_the_mfccs_came_from(bands, time_pool):
    import keras

    from ser_live.audio_io import load_audio
    from ser_live.features import DEFAULT_SETTINGS as S
    from ser_live.features import (
        Standardiser,
        frame_features,
        log_mel_spectrum,
        normalise_window,
    )
    from training.models import build_cnn2d

    samples = load_audio(CORPUS / "ravdess" / "Actor_01" / "03-01-05-02-01-01-01.flac")
    frames = normalise_window(frame_features(samples[: 2 * S.sample_rate]))
    standardiser = Standardiser.fit(frames[np.newaxis])
    model = build_cnn2d(
        *frames.shape,
        len(EMOTIONS),
        1e-4,
        0.4,
        feature_std=standardiser.std,
        bands=bands,
        time_pool=time_pool,
    )
    spectrum = keras.Model(model.inputs, model.get_layer("inverse_dct").output)
    seen = spectrum.predict(standardiser(frames)[np.newaxis], verbose=0)[0]

    # The log-mel spectrum the MFCCs came from, per-band mean removed, averaged over the
    # network's time steps and bands.
    log_mel = log_mel_spectrum(samples[: 2 * S.sample_rate])
    log_mel -= log_mel.mean(axis=0)
    steps = len(frames) // time_pool
    expected = log_mel[: steps * time_pool].reshape(steps, time_pool, bands, S.n_mels // bands)
    expected = expected.mean(axis=(1, 3)) / 10.0
    assert seen.shape == expected.shape
    # Only the 40 lowest cepstral coefficients come through: a smoothed spectrum.
    assert np.corrcoef(seen.ravel(), expected.ravel())[0, 1] > 0.99
    assert np.abs(seen - expected).mean() < 0.1 * np.abs(expected).mean()


def test_an_average_with_a_conv2d_member_survives_saving_and_int8_export(tmp_path):
    import keras

    from training.export import tflite_predict, to_int8_tflite
    from training.models import build_cnn, build_cnn2d
    from training.neural import average_of

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 196, 43)).astype(np.float32)
    std = rng.uniform(0.5, 3.0, 43).astype(np.float32)
    conv2d = build_cnn2d(196, 43, len(EMOTIONS), 1e-4, 0.4, feature_std=std)
    conv2d.save(tmp_path / "member.keras")
    loaded = keras.models.load_model(tmp_path / "member.keras")
    # The fixed inverse-DCT layer comes back as it was built, not re-initialised.
    np.testing.assert_array_equal(
        loaded.get_layer("inverse_dct").get_weights()[0],
        conv2d.get_layer("inverse_dct").get_weights()[0],
    )
    np.testing.assert_allclose(loaded.predict(x, verbose=0), conv2d.predict(x, verbose=0))

    both = average_of([build_cnn(196, 43, len(EMOTIONS), 1e-4, 0.4), loaded])
    float_probs = both.predict(x, verbose=0)
    int8_probs = tflite_predict(to_int8_tflite(both, x[:32]), x)
    assert int8_probs.shape == float_probs.shape
    assert np.abs(int8_probs - float_probs).max() < 0.05


def loco_on_fixtures(run_dir: Path, epochs: int, *options) -> subprocess.CompletedProcess:
    """``training.loco`` on the fixture corpora: one network, one augmented copy; its
    windows cached beside the run, not in the checkout."""
    return python_m(
        "training.loco",
        CORPUS,
        "--run-dir",
        run_dir,
        "--cache-dir",
        run_dir.parent / "cache",
        "--epochs",
        epochs,
        "--augment",
        1,
        "--members",
        1,
        *options,
    )


@pytest.mark.slow
def test_leave_one_corpus_out_on_fixtures(tmp_path):
    """Each corpus held out in turn, scored by the engine on its files, a baseline, and
    the speaker folds of one corpus."""
    from ser_live.model import load_model

    run_dir = tmp_path / "loco"
    baseline = ROOT / "models" / "ser_cnn_int8.tflite"
    proc = loco_on_fixtures(
        run_dir,
        2,
        "--baseline",
        baseline,
        "--speaker-folds",
        "ravdess:2",
        "--partial-labels",
        "--calibrated",
        "--new-voices",
        "2",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "new voices without ravdess: {" in proc.stdout + proc.stderr
    report = json.loads((run_dir / "loco.json").read_text())
    # The second figure: RAVDESS actors held out, every clip scored by the fold without it.
    folds = report["folds"]
    assert folds["corpus"] == "ravdess" and folds["folds"] == 2 and folds["clips"] == 8
    assert len(folds["uar_per_fold"]) == 2 and 0 <= folds["uar_mean"] <= 1
    for i in (1, 2):
        spec = load_model(run_dir / f"ravdess-fold{i}" / "ser_cnn_int8.tflite").spec
        assert "ravdess" in spec.training["corpora"]  # the other actors trained it
    assert (
        "## Second figure: ravdess speakers held out (2 folds)" in (run_dir / "loco.md").read_text()
    )
    assert report["corpora"] == list(CORPORA)
    expected_clips = {"ravdess": 8, "tess": 4, "nemo": 3, "korean": 2, "emospeech": 2}
    rows = ["baseline", "baseline_calibrated", "baseline_one_emotion"]
    for row in [*rows, "loco", "loco_calibrated", "loco_one_emotion"]:
        assert set(report[row]) == set(CORPORA), row
        for corpus, entry in report[row].items():
            assert entry["clips"] == expected_clips[corpus]
            assert entry["chance"] == pytest.approx(1 / len(entry["labels"]))
            assert 0 <= entry["uar"] <= 1
            assert sum(map(sum, entry["confusion"])) + entry["no_verdict"] >= entry["clips"]
    # The corpora the shipped model was trained on are marked as seen.
    trained_on = set(load_model(baseline).spec.training["corpora"])
    assert trained_on and {c for c, e in report["baseline"].items() if e["seen"]} == trained_on
    # Each held-out model is a working model with a sidecar, trained without its corpus.

    for corpus in CORPORA:
        spec = load_model(run_dir / f"without-{corpus}" / "ser_cnn_int8.tflite").spec
        assert set(spec.training["corpora"]) == set(CORPORA) - {corpus}
        # What it was trained with, as installed here: enough to pin a rerun to it.
        assert spec.training["libraries"]["numpy"] == np.__version__
        assert (
            "tensorflow-cpu" in spec.training["libraries"]
            or "tensorflow" in (spec.training["libraries"])
        )
    assert report["libraries"] == training_libraries()
    rows = (run_dir / "predictions_loco.csv").read_text().splitlines()
    assert len(rows) == 1 + sum(expected_clips.values())
    assert "| korean | Korean | neutral, sad | 2 | 0.500 |" in (run_dir / "loco.md").read_text()
    md = (run_dir / "loco.md").read_text()
    assert "| baseline: ser_cnn_int8.tflite, calibrated, one-emotion sessions |" in md
    calibrated = (run_dir / "predictions_baseline_calibrated.csv").read_text().splitlines()
    assert len(calibrated) == 1 + sum(expected_clips.values())

    # The runtime defaults chosen on the yardstick: today's default reproduces the run's
    # rows through the same engine, and each corpus's setting was chosen without it.
    proc = python_m("training.yardstick", run_dir, CORPUS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    yardstick = json.loads((run_dir / "yardstick.json").read_text())
    for corpus in CORPORA:
        today = yardstick["rows"]["today"][corpus]
        for hearing, row in (("alone", "loco"), ("mixed", "loco_calibrated")):
            assert today[hearing]["uar"] == pytest.approx(report[row][corpus]["uar"])
        assert today["one-emotion"]["uar"] == pytest.approx(
            report["loco_one_emotion"][corpus]["uar"]
        )
        assert corpus in yardstick["nested_choice"]
    today_alone = {c: yardstick["rows"]["today"][c]["alone"] for c in CORPORA}
    assert "## Per class: recall, today's default → new" in (run_dir / "yardstick.md").read_text()
    # A recipe against itself: the same rows, nothing gained or lost.
    proc = python_m(
        "training.recipes", run_dir / "yardstick.json", run_dir / "yardstick.json", "--names", "a,b"
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Largest loss on one corpus: +0.0 points\n" in proc.stdout
    assert proc.stdout.count("| chosen |") == 3
    # A bounded calibration trusted as the voice varies: its own reports; each clip alone
    # (never calibrated; no second opinion at today's weight, 0) as before; compared as
    # one more choice.
    bounded_run = ["--max-shift", "0.5", "--variety", "0.06", "--gates", "0.6"]
    proc = python_m("training.yardstick", run_dir, CORPUS, *bounded_run, "--without-second-opinion")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    bounded = json.loads((run_dir / "yardstick_shift0.5_variety0.06.json").read_text())
    assert bounded["max_shift"] == 0.5 and bounded["variety"] == 0.06
    assert bounded["settings_grid"]["gates"] == [None, 0.6, "off"]
    for corpus in CORPORA:
        assert bounded["rows"]["today"][corpus]["alone"] == today_alone[corpus]
    proc = python_m(
        "training.recipes",
        run_dir / "yardstick.json",
        run_dir / "yardstick_shift0.5_variety0.06.json",
        "--names",
        "free,bounded",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Largest loss on one corpus:" in proc.stdout
    # Heard again with the second opinion, the verdicts kept from the run without it are
    # not reused.
    kept = run_dir / "yardstick_shift0.5_variety0.06-work" / "ravdess" / "heard.npz"
    with np.load(kept) as data:
        assert str(data["second_opinion"]) == ""
    proc = python_m("training.yardstick", run_dir, CORPUS, *bounded_run)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with np.load(kept) as data:
        assert str(data["second_opinion"]).endswith("dusha_ser.onnx")
    proc = python_m("training.yardstick", run_dir, CORPUS, "--max-shift", "0.5", "--install")
    assert proc.returncode == 2 and "install with training.recipes" in proc.stderr
    # Calibration of only the features that tell voices apart: measured for each held-out
    # network on its own training corpora, then heard as an experiment, those features
    # in each heard copy's sidecar.
    from training.identity_dims import dims_at

    proc = python_m("training.identity_dims", run_dir, CORPUS, "--cache-dir", tmp_path / "cache")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    identity_run = ["--identity-dims", "1", "--gates", "0.6", "--without-second-opinion"]
    proc = python_m("training.yardstick", run_dir, CORPUS, *identity_run)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    identity = json.loads((run_dir / "yardstick_identity1.0.json").read_text())
    assert identity["identity_dims"] == 1.0
    for corpus in CORPORA:
        assert identity["rows"]["today"][corpus]["alone"] == today_alone[corpus]
        ratio = json.loads((run_dir / f"without-{corpus}" / "identity_dims.json").read_text())
        assert len(ratio["ratio"]) == 43 and min(ratio["ratio"]) >= 0
        heard_as = run_dir / "yardstick_identity1.0-work" / corpus / "gate-0.6"
        spec = json.loads((heard_as / "ser_cnn_int8.json").read_text())
        calibration = spec["normalisation"]["speaker_calibration"]
        assert calibration["dims"] == dims_at(ratio["ratio"], 1.0)
        assert calibration["reference"]["min_probability"] == 0.6

    # The held-out models through recording channels: the clean channel scores as the run
    # did, each clip alone and as calibrated sessions.
    for flag, row, stem in (
        ([], "loco", "robustness"),
        (["--calibrated"], "loco_calibrated", "robustness_calibrated"),
    ):
        proc = python_m(
            "training.loco_robustness", run_dir, CORPUS, "--conditions", "clean,call", *flag
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        channels = json.loads((run_dir / f"{stem}.json").read_text())["conditions"]
        assert list(channels) == ["clean", "call"]
        for corpus in CORPORA:
            assert channels["clean"]["corpora"][corpus]["uar"] == pytest.approx(
                report[row][corpus]["uar"]
            )
            assert 0 <= channels["call"]["corpora"][corpus]["uar"] <= 1
        assert "| call: " in (run_dir / f"{stem}.md").read_text()


@pytest.mark.slow
def test_leave_one_corpus_out_with_a_member_marks_what_the_member_heard(tmp_path):
    """``--member``: every model carries the member (the shipped pair's recipe), and the
    corpora the member was trained on are not counted as held out; ``--hold-out`` fits
    only the corpora it names (here one the member heard, to see it marked).
    ``--utterance-head``: each model's head trained on that model's training clips."""
    from ser_live.model import load_model

    member = ROOT / "models" / "ser_cnn_rt_int8.tflite"
    run_dir = tmp_path / "loco"
    held = ["ravdess", "nemo", "korean", "emospeech"]
    proc = loco_on_fixtures(
        run_dir,
        1,
        "--member",
        member,
        "--hold-out",
        ",".join(held),
        "--utterance-head",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((run_dir / "loco.json").read_text())
    heard = set(load_model(member).spec.training["corpora"])
    assert heard == {"ravdess", "tess"}
    assert sorted(report["loco"]) == sorted(held)
    assert not (run_dir / "without-tess").exists()
    assert {c for c, e in report["loco"].items() if e["seen"]} == {"ravdess"}
    held_out = [e["uar"] for c, e in report["loco"].items() if c not in heard]
    assert report["loco_mean"] == pytest.approx(np.mean(held_out))
    for corpus in held:
        pair = load_model(run_dir / f"without-{corpus}" / "ser_cnn_int8.tflite")
        assert [n.path.name for n in pair.networks] == ["ser_cnn_int8.tflite", member.name]
        assert set(pair.spec.training["corpora"]) == set(CORPORA) - {corpus}
        # The utterance head heard the training corpora's clips only.
        assert pair.spec.utterance_head["trained_on"] == sorted(set(CORPORA) - {corpus})
    assert "+ utterance head" in (run_dir / "loco.md").read_text()


def test_leave_one_corpus_out_refuses_an_unknown_corpus_to_hold_out():
    proc = python_m("training.loco", CORPUS, "--hold-out", "nemo,klingon")
    assert proc.returncode == 2
    assert "--hold-out: unknown corpus: klingon" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_leave_one_corpus_out_refuses_speaker_folds_the_member_heard():
    member = ROOT / "models" / "ser_cnn_rt_int8.tflite"
    proc = python_m("training.loco", CORPUS, "--member", member, "--speaker-folds", "ravdess:2")
    assert proc.returncode == 2
    assert "the --member model was trained on those speakers" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_one_emotion_sessions_are_one_speaker_s_clips_of_one_emotion():
    """The lasting-emotion protocol: each known speaker's clips of one emotion are one
    voice; the mixed one hears each speaker's clips together; unknown voices alone."""
    from training.scoring import calibrated_sessions

    clips = find_utterances([CORPUS])
    everything = range(len(clips))
    mixed, alone = calibrated_sessions(clips, everything, 0, "mixed")
    one, alone_too = calibrated_sessions(clips, everything, 0, "one-emotion")
    assert alone == alone_too and all(not clips[i].voice_known for i in alone)
    for sessions in (mixed, one):
        assert sorted(i for s in sessions for i in s) == sorted(set(everything) - set(alone))
    assert all(len({clips[i].speaker for i in s}) == 1 for s in mixed + one)
    assert all(len({clips[i].emotion for i in s}) == 1 for s in one)
    assert any(len({clips[i].emotion for i in s}) > 1 for s in mixed)  # a real difference
    assert len(one) > len(mixed)


def test_calibration_learns_only_from_speech_heard_as_its_reference(tmp_path, speech):
    """With a reference gate, a voice's statistics (and its phrases, for the utterance
    head) learn only from speech the networks hear as neutral surely enough."""
    from ser_live.engine import Engine
    from ser_live.model import load_model
    from tests.conftest import copy_model
    from training.yardstick import set_gate

    model = copy_model(tmp_path / "gated.tflite")
    heard = {}
    for gate in (None, 0.0, 1.0):
        set_gate(model.with_suffix(".json"), gate)
        engine = Engine(load_model(model), calibrate=True)
        engine.feed(speech)
        engine.finish()
        heard[gate] = (engine.calibration.frames_heard, engine._utterances.voice.phrases_heard)
    assert heard[None][0] > 0 and heard[0.0] == heard[None]  # every window passes at 0
    assert heard[1.0] == (0, 0)  # nothing is ever heard as neutral with certainty


def test_a_verdict_at_any_second_opinion_weight_is_its_fusion_terms(tmp_path):
    """The yardstick scores every weight from one pass: ``A + w T`` is what the engine
    gives at weight ``w``."""
    from ser_live.analysis import EngineOptions, analyze_file
    from ser_live.second_opinion import DEFAULT_SECOND_OPINION, DUSHA_LABELS
    from tests.conftest import SPEECH_CLIP
    from training.yardstick import fusion_terms

    onnx = shutil.copy(DEFAULT_SECOND_OPINION, tmp_path / "dusha.onnx")
    sidecar = json.loads(DEFAULT_SECOND_OPINION.with_suffix(".json").read_text())
    shared = [EMOTIONS.index(e) for e in DUSHA_LABELS]
    terms = None
    for weight in (0.0, 0.3, 0.8):
        (tmp_path / "dusha.json").write_text(json.dumps({**sidecar, "weight": weight}))
        engine = EngineOptions(second_opinion=onnx).build()
        result = analyze_file(SPEECH_CLIP, engine)
        terms = terms or fusion_terms(result)
        a, t = terms
        expected = a.copy()
        expected[shared] += weight * t
        np.testing.assert_allclose(result.speech_probabilities, expected, atol=1e-6)
    assert np.abs(terms[1]).max() > 1e-3  # the second opinion does move the verdict


def test_a_sidecar_records_the_train_extra_and_what_it_needs_not_the_other_extras():
    """The versions a fit computes with: the [train] extra's libraries and theirs (numba
    comes through librosa), not the test tools or the other extras."""
    from importlib.metadata import version

    libraries = training_libraries()
    for name in ("librosa", "audiomentations", "numba", "soxr", "keras", "numpy"):
        assert libraries[name] == version(name), name
    assert {"pytest", "ray", "streamlit", "pip", "setuptools"}.isdisjoint(libraries)


def test_the_pins_are_read_and_compared_by_name():
    from training.environment import differences, read_constraints

    pins = read_constraints(ROOT / "training" / "constraints.txt")
    assert pins["numpy"] and pins["tensorflow-cpu"]
    installed = {**pins, "numpy": "0.0", "librosa": None}
    installed.pop("librosa")
    assert differences(pins, installed) == [
        f"librosa {pins['librosa']} -> missing",
        f"numpy {pins['numpy']} -> 0.0",
    ]


def test_make_test_installs_the_training_libraries_at_their_pins():
    """CI runs the suite with the versions make loco trains with (training/constraints.txt)."""
    proc = subprocess.run(
        [sys.executable, "-m", "training.environment", "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_identity_dims_are_the_features_voices_move_more_than_emotions():
    """Three speakers, each with three emotions: feature 0 set by the voice, feature 1 by
    the emotion, feature 2 by both alike; the voice-to-emotion ratio tells them apart."""
    from training.corpora import Utterance
    from training.identity_dims import dims_at, identity_ratio

    rng = np.random.default_rng(0)
    voices, moods = [-3.0, 0.0, 3.0], {"neutral": -1.0, "angry": 0.0, "sad": 1.0}
    utterances, windows, clips = [], [], []
    for v, voice in enumerate(voices):
        for emotion, mood in moods.items():
            for _ in range(4):
                clip = len(utterances)
                utterances.append(
                    Utterance(f"{clip}.wav", "ravdess", f"s{v}", "", emotion, "", emotion)
                )
                frames = rng.normal(size=(3, 20, 3)) * 0.1
                frames[..., 0] += voice
                frames[..., 1] += 3 * mood
                frames[..., 2] += voice + 3 * mood
                windows.append(frames)
                clips += [clip] * 3
    ratio = identity_ratio(utterances, np.concatenate(windows), np.array(clips), np.ones(3))
    assert ratio[0] > 10 and ratio[1] < 0.1 and 0.3 < ratio[2] < 3
    assert dims_at(ratio, 5.0) == [0]


def test_the_default_never_hears_the_second_opinion_and_calibration_may_be_off():
    """On a table where the second opinion gains most and every calibration lets a
    lasting emotion fade on one corpus: the default is calibration off, no second
    opinion; ``--calibrate`` gets the gate whose worst one-emotion loss is smallest."""
    from training.yardstick import WEIGHTS, choose, choose_gate

    def cell(alone, mixed, one):
        return {"alone": alone, "mixed": mixed, "one-emotion": one}

    corpora = ["a", "b"]
    calibrated = {
        None: {"a": cell(0.30, 0.40, 0.20), "b": cell(0.40, 0.50, 0.30)},
        0.6: {"a": cell(0.30, 0.35, 0.31), "b": cell(0.40, 0.44, 0.38)},
        0.4: {"a": cell(0.30, 0.37, 0.32), "b": cell(0.40, 0.45, 0.36)},
    }
    table = {}
    for w in WEIGHTS:
        gain = 0.1 * w
        for gate, by_corpus in calibrated.items():
            table[(gate, w)] = {
                c: {h: v + gain for h, v in cells.items()} for c, cells in by_corpus.items()
            }
        table[("off", w)] = {c: cell(*(calibrated[None][c]["alone"] + gain,) * 3) for c in corpora}
    assert choose(table, corpora) == ("off", 0.0)
    assert choose_gate(table, corpora) == 0.6  # b loses 0.02 at 0.6, 0.04 at 0.4
    assert choose(table, ["a"]) == (0.4, 0.0)  # on a alone, 0.4 keeps it and mixes best


def test_the_opt_in_weight_is_heard_with_the_live_default_calibration():
    """Each clip alone the second opinion gains most at 0.3, but, fused with the live
    default's calibration, 0.3 fades corpus b's lasting emotion: the opt-in weight is 0.2
    where the live default calibrates, 0.3 where it does not. A run heard without the
    second opinion says so, and ``training.recipes`` then keeps the baseline's weight."""
    from training.recipes import opt_in_weight
    from training.yardstick import (
        WEIGHTS,
        choose_opt_in,
        describe,
        heard_second_opinion,
        settings_table,
    )

    def cell(alone, mixed, one):
        return {"alone": alone, "mixed": mixed, "one-emotion": one}

    corpora = ["a", "b"]
    alone = {0.0: 0.30, 0.2: 0.33, 0.3: 0.34, 0.4: 0.30, 0.5: 0.25, 0.6: 0.2}
    fades_b = {0.3: 0.05, 0.4: 0.1, 0.5: 0.1, 0.6: 0.1}  # under its own alone at these

    def result(heard: bool) -> dict:
        table = {}
        for w in WEIGHTS:
            a = alone[w] if heard else alone[0.0]
            fade = fades_b.get(w, 0.0) if heard else 0.0
            table[describe(("off", w))] = {c: cell(a, a, a) for c in corpora}
            table[describe((None, w))] = {
                "a": cell(a, a + 0.05, a + 0.01),
                "b": cell(a, a + 0.05, a + 0.01 - fade),
            }
        return {"corpora": corpora, "settings_grid": {"gates": [None, "off"]}, "table": table}

    heard = result(True)
    table = settings_table(heard)
    assert heard_second_opinion(heard) and not heard_second_opinion(result(False))
    assert choose_opt_in(table, corpora, "off") == 0.3
    assert choose_opt_in(table, corpora, None) == 0.2
    assert choose_opt_in(table, ["a"], None) == 0.3  # a alone keeps it at 0.3
    choice = {"run": "bounded", "setting": [None, 0.0]}
    base = {**result(False), "opt_in_weight": 0.4}
    assert opt_in_weight({"base": base, "bounded": heard}, choice) == 0.2
    assert opt_in_weight({"base": base, "bounded": result(False)}, choice) == 0.4
    calibration_off = {**choice, "setting": ["off", 0.0]}
    assert opt_in_weight({"base": base, "bounded": heard}, calibration_off) == 0.3


def test_a_bounded_calibration_that_keeps_a_lasting_emotion_is_installed_with_its_bound(
    tmp_path,
):
    """Two runs of one network set, free and bounded (and trusted as its voice varies):
    where only the bounded one keeps a lasting emotion on every corpus, it is the default,
    installed with its bound and trust and live; the sidecar it writes is one the runtime
    takes."""
    from ser_live.model import load_model
    from training.recipes import calibration_choice, same_networks
    from training.yardstick import VARIETY_PRIOR, WEIGHTS, Variant, describe, install

    def cell(alone, mixed, one):
        return {"alone": alone, "mixed": mixed, "one-emotion": one}

    corpora = ["a", "b"]

    def run(all_speech: dict, calm: dict, max_shift, variety=None) -> dict:
        cells = {None: all_speech, 0.6: calm, "off": {c: cell(0.3, 0.3, 0.3) for c in corpora}}
        return {
            "corpora": corpora,
            "max_shift": max_shift,
            "variety": variety,
            "settings_grid": {"gates": list(cells)},
            "table": {describe((g, w)): by for g, by in cells.items() for w in WEIGHTS},
            "rows": {"today": {c: {"alone": {"uar": 0.3}} for c in corpora}},
            "opt_in_weight": 0.3,
        }

    free = run(
        {"a": cell(0.3, 0.45, 0.20), "b": cell(0.3, 0.45, 0.20)},
        {"a": cell(0.3, 0.35, 0.31), "b": cell(0.3, 0.35, 0.28)},  # b loses 0.02
        None,
    )
    bounded = run(
        {"a": cell(0.3, 0.40, 0.30), "b": cell(0.3, 0.40, 0.295)},  # within 0.01
        {"a": cell(0.3, 0.34, 0.31), "b": cell(0.3, 0.34, 0.28)},
        0.5,
        0.06,
    )
    results = {"free": free, "bounded": bounded}
    assert same_networks(results)
    choice = calibration_choice(results)
    assert choice == {
        "run": "bounded",
        "setting": [None, 0.0],
        "calibrate_gate": None,
        "max_shift": 0.5,
        "variety": 0.06,
    }
    # Without the bounded run, nothing keeps it: calibration off live, --calibrate the gate.
    assert calibration_choice({"free": free})["setting"] == ["off", 0.0]
    assert calibration_choice({"free": free})["calibrate_gate"] == 0.6

    # The shipped pair heard under both: where the bounded one fades a lasting emotion on
    # the pair's corpus, it is no default; where it keeps it, it is.
    def pair(one_emotion: float, max_shift, variety=None) -> dict:
        cells = {
            None: {"p": cell(0.3, 0.4, one_emotion)},
            0.6: {"p": cell(0.3, 0.35, one_emotion)},
            "off": {"p": cell(0.3, 0.3, 0.3)},
        }
        return {
            "corpora": ["p"],
            "max_shift": max_shift,
            "variety": variety,
            "settings_grid": {"gates": list(cells)},
            "table": {describe((g, w)): by for g, by in cells.items() for w in WEIGHTS},
        }

    fading = [pair(0.25, None), pair(0.28, 0.5, 0.06)]
    assert calibration_choice(results, fading)["setting"] == ["off", 0.0]
    keeping = [pair(0.25, None), pair(0.30, 0.5, 0.06)]
    assert calibration_choice(results, keeping) == choice
    assert calibration_choice(results, keeping[:1])["setting"] == ["off", 0.0]  # not heard
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models", models, ignore=shutil.ignore_patterns("card", "*.md"))
    second_opinion = models / "dusha_ser.onnx"
    variant = Variant(choice["max_shift"], variety=choice["variety"])
    install(choice["setting"], choice["calibrate_gate"], 0.3, second_opinion, variant, models)
    calibration = json.loads((models / "ser_cnn_int8.json").read_text())["normalisation"][
        "speaker_calibration"
    ]
    assert calibration["max_shift"] == 0.5 and calibration["live_default"] is True
    assert calibration["variety"] == {"full_at": 0.06, "prior_windows": VARIETY_PRIOR}
    assert "reference" not in calibration
    assert load_model(models / "ser_cnn_int8.tflite").spec.calibrates_live
    assert json.loads(second_opinion.with_suffix(".json").read_text())["weight"] == 0.3
