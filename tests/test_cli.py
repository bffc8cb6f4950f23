"""The command line, as a user runs it: output files, formats and bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ser_live
from ser_live import EMOTIONS
from tests.conftest import (
    CORPUS,
    SPEECH_CLIP,
    assert_one_line_error,
    calibrated_as,
    copy_model,
    run_cli,
    truncated_flac,
    write_audio,
)

P_COLS = [f"p_{e}" for e in EMOTIONS]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("command", [[], ["devices"], ["listen"], ["analyze"], ["gui"]])
def test_help(command):
    proc = run_cli(*command, "--help")
    assert proc.returncode == 0
    assert "usage: ser-live" in proc.stdout


def test_analyze_writes_timeline_and_summary(tmp_path):
    timeline, summary = tmp_path / "t.csv", tmp_path / "s.csv"
    proc = run_cli("analyze", str(CORPUS), "--timeline", str(timeline), "--summary", str(summary))
    # Two TESS words are shorter than one window: analysed too, as one padded window.
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(summary)
    assert len(rows) == 19  # folders are searched recursively, WAV, FLAC and Opus alike
    assert list(rows[0]) == [
        "file",
        "duration_s",
        "speech_s",
        "emotion",
        "confidence",
        *P_COLS,
        "error",
    ]
    assert all(row["error"] == "" and row["emotion"] in EMOTIONS for row in rows)
    for row in rows:
        probs = np.array([float(row[c]) for c in P_COLS])
        assert abs(probs.sum() - 1) < 1e-3
        assert row["emotion"] == EMOTIONS[int(probs.argmax())]
        assert 0 < float(row["speech_s"]) <= float(row["duration_s"])
    windows = read_csv(timeline)
    assert list(windows[0]) == [
        "file",
        "start_s",
        "end_s",
        "speech",
        "emotion",
        "confidence",
        *P_COLS,
    ]
    clip_rows = [w for w in windows if w["file"].endswith(SPEECH_CLIP.name)]
    assert [float(w["start_s"]) for w in clip_rows] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert all(float(w["end_s"]) - float(w["start_s"]) == 2.0 for w in clip_rows)
    assert any(w["speech"] == "1" for w in clip_rows)
    for w in windows:
        assert (w["emotion"] == "") == (w["speech"] == "0")


def test_voice_shifts_score_the_same_windows_with_copies(tmp_path):
    from ser_live.model import DEFAULT_MODEL

    model = tmp_path / "model.tflite"  # the shipped model, its sidecar asking for shifts
    copy_model(model)
    sidecar = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    sidecar["voice_shifts"] = [-2.0, -1.0, 1.0, 2.0]
    model.with_suffix(".json").write_text(json.dumps(sidecar))
    shifted, plain = tmp_path / "shifted.csv", tmp_path / "plain.csv"
    proc = run_cli("analyze", str(SPEECH_CLIP), "--timeline", str(plain), "--model", str(model))
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(
        "analyze",
        str(SPEECH_CLIP),
        "--timeline",
        str(shifted),
        "--voice-shifts",
        "--model",
        str(model),
    )
    assert proc.returncode == 0, proc.stderr
    with_copies, alone = read_csv(shifted), read_csv(plain)
    assert [(w["start_s"], w["speech"]) for w in with_copies] == [
        (w["start_s"], w["speech"]) for w in alone
    ]
    differs = [
        max(abs(float(a[c]) - float(b[c])) for c in P_COLS)
        for a, b in zip(with_copies, alone, strict=True)
        if a["speech"] == "1"
    ]
    assert differs and min(differs) > 1e-4
    # A model measured without shifts (its sidecar lists none) refuses them, in one line.
    sidecar["voice_shifts"] = []
    model.with_suffix(".json").write_text(json.dumps(sidecar))
    proc = run_cli("analyze", str(SPEECH_CLIP), "--voice-shifts", "--model", str(model))
    assert proc.returncode == 1
    assert_one_line_error(proc)
    assert "voice shifts" in proc.stderr


def test_calibrate_hears_a_file_relative_to_its_voice_and_needs_a_measured_model(tmp_path):
    # The voice trusted from its first window (the shipped sidecar waits until the voice
    # has varied between phrases: tests/test_engine.py).
    trusting = calibrated_as(tmp_path / "trusting.tflite", variety=None)
    plain, calibrated = tmp_path / "plain.csv", tmp_path / "calibrated.csv"
    proc = run_cli("analyze", str(SPEECH_CLIP), "--timeline", str(plain))
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(
        "analyze",
        str(SPEECH_CLIP),
        "--timeline",
        str(calibrated),
        "--calibrate",
        "--model",
        str(trusting),
    )
    assert proc.returncode == 0, proc.stderr
    alone, heard = read_csv(plain), read_csv(calibrated)
    assert [(w["start_s"], w["speech"]) for w in heard] == [
        (w["start_s"], w["speech"]) for w in alone
    ]
    assert any(
        max(abs(float(a[c]) - float(b[c])) for c in P_COLS) > 1e-3
        for a, b in zip(heard, alone, strict=True)
        if a["speech"] == "1"
    )
    from ser_live.model import DEFAULT_MODEL

    model = tmp_path / "model.tflite"  # the shipped model, its sidecar without calibration
    copy_model(model)
    sidecar = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    del sidecar["normalisation"]["speaker_calibration"]
    model.with_suffix(".json").write_text(json.dumps(sidecar))
    proc = run_cli("analyze", str(SPEECH_CLIP), "--calibrate", "--model", str(model))
    assert proc.returncode == 1
    assert_one_line_error(proc)
    assert "calibration" in proc.stderr
    assert "--no-calibrate" in run_cli("listen", "--help").stdout


def test_voice_per_folder_carries_each_speakers_voice_on_from_file_to_file(tmp_path):
    from ser_live.analysis import EngineOptions, Task, analyze_file, analyze_run

    actor_1 = sorted((CORPUS / "ravdess" / "Actor_01").glob("*.flac"))
    actor_2 = sorted((CORPUS / "ravdess" / "Actor_02").glob("*.flac"))
    listed = [actor_1[0], actor_2[0], actor_1[1], actor_2[1]]  # the folders interleaved
    summary = tmp_path / "s.csv"
    # Learning only from speech heard as calm, trusted at once (the last release's).
    calm = {"reference": {"emotions": ["neutral"], "min_probability": 0.6}, "variety": None}
    model = calibrated_as(tmp_path / "calm.tflite", **calm, max_shift=None)
    args = ["analyze", *map(str, listed), "--summary", str(summary), "--voice-per-folder"]
    args += ["--model", str(model)]
    proc = run_cli(*args, "--jobs", "2")
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(summary)
    assert [row["file"] for row in rows] == [str(p) for p in actor_1 + actor_2]  # by folder

    # Each folder is one voice, heard in turn by one calibrating engine (its own process).
    engine = EngineOptions(model, calibrate=True).build()
    heard = [r for a in (actor_1, actor_2) for r in analyze_run([Task(p) for p in a], engine)]
    for row, result in zip(rows, heard, strict=True):
        expected = result.speech_probabilities
        assert np.allclose([float(row[c]) for c in P_COLS], expected, atol=2e-4), row["file"]
    # The second file of a folder is heard against the voice of the first where the first
    # was calm (actor 2's is neutral), and as alone where it was not (actor 1's is happy):
    # calibration learns the voice only from speech heard as calm.
    for second, learnt in ((actor_2[1], True), (actor_1[1], False)):
        alone = analyze_file(second, engine).speech_probabilities
        carried = next(r for r in heard if r.path == str(second)).speech_probabilities
        assert (np.abs(alone - carried).max() > 1e-3) == learnt, second
    # One process hears the same as two.
    proc = run_cli(*args, "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    assert read_csv(summary) == rows


def test_voice_per_folder_groups_links_by_the_folder_that_holds_them(tmp_path):
    """A folder of links a user arranged per speaker is that speaker, wherever the files
    really are: the same results as the same folder of real files."""
    import shutil

    actor_1 = sorted((CORPUS / "ravdess" / "Actor_01").glob("*.flac"))[:2]
    actor_2 = sorted((CORPUS / "ravdess" / "Actor_02").glob("*.flac"))[:1]
    files = [actor_1[0], actor_2[0], actor_1[1]]  # one "speaker" made of two real folders
    linked, copied = tmp_path / "linked", tmp_path / "copied"
    for folder in (linked, copied):
        folder.mkdir()
    for k, source in enumerate(files):
        (linked / f"{k}.flac").symlink_to(source.resolve())
        shutil.copy(source, copied / f"{k}.flac")
    out = {}
    for folder in (linked, copied):
        summary = tmp_path / f"{folder.name}.csv"
        proc = run_cli("analyze", str(folder), "--summary", str(summary), "--voice-per-folder")
        assert proc.returncode == 0, proc.stderr
        out[folder.name] = [[row[c] for c in P_COLS] for row in read_csv(summary)]
    assert out["linked"] == out["copied"]


def test_bad_files_in_a_batch_are_reported_and_the_rest_analysed(tmp_path, speech):
    good = tmp_path / "good"
    good.mkdir()
    bad = {
        "empty.wav": b"",
        "text.wav": b"this is not audio at all\n" * 100,
        "random.flac": np.random.default_rng(0).bytes(20000),
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    truncated_flac(tmp_path / "truncated.flac", np.tile(speech, 2))
    # Float recordings with non-finite samples: an error for that file alone.
    for name, value in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        damaged = speech.copy()
        damaged[20000:20010] = value
        write_audio(tmp_path / name, damaged, subtype="FLOAT")
    # Odd but valid audio: analysed.
    write_audio(good / "short.wav", speech[24000:40000])
    write_audio(good / "denormal.wav", speech * np.float32(1e-39), subtype="FLOAT")
    write_audio(good / "dc_offset.wav", speech * 0.5 + 0.4, subtype="FLOAT")
    write_audio(good / "clipped.wav", np.clip(speech * 20, -1, 1))
    write_audio(tmp_path / "silent.wav", np.zeros(16000 * 4, dtype=np.float32))
    # Every rate from 8 to 96 kHz and 1 to 8 channels is accepted.
    import librosa

    for rate, channels in ((8000, 1), (22050, 2), (44100, 6), (96000, 8)):
        y = librosa.resample(speech, orig_sr=16000, target_sr=rate)
        write_audio(good / f"r{rate}_c{channels}.wav", np.tile(y[:, None], (1, channels)), rate)
    summary = tmp_path / "summary.csv"
    missing = tmp_path / "missing.wav"
    proc = run_cli("analyze", str(tmp_path), str(missing), "--summary", str(summary))
    assert proc.returncode == 3, proc.stderr  # some files failed, the rest were analysed
    assert_one_line_error(proc)
    rows = {Path(r["file"]).name: r for r in read_csv(summary)}
    for name in (
        "empty.wav",
        "text.wav",
        "random.flac",
        "missing.wav",
        "truncated.flac",
        "nan.wav",
        "inf.wav",
    ):
        assert rows[name]["error"], name
        assert name in proc.stderr
    assert "NaN or infinite samples" in rows["nan.wav"]["error"]
    assert "NaN or infinite samples" in rows["inf.wav"]["error"]
    for name in ("short.wav", "dc_offset.wav", "clipped.wav"):
        assert rows[name]["error"] == "" and rows[name]["emotion"] in EMOTIONS, rows[name]
    # 1e-39 full scale is -780 dBFS: far below any microphone's floor, so no speech.
    assert rows["denormal.wav"]["error"] == "" and rows["denormal.wav"]["emotion"] == ""
    assert rows["silent.wav"]["error"] == "" and rows["silent.wav"]["emotion"] == ""
    assert float(rows["silent.wav"]["speech_s"]) == 0
    verdicts = set()
    for name in ("r8000_c1.wav", "r22050_c2.wav", "r44100_c6.wav", "r96000_c8.wav"):
        assert rows[name]["error"] == "", rows[name]
        assert float(rows[name]["duration_s"]) == pytest.approx(len(speech) / 16000, abs=0.05)
        verdicts.add(rows[name]["emotion"])
    assert "truncated or corrupt audio" in rows["truncated.flac"]["error"]
    # Resampled copies of one recording mostly agree (8 kHz loses the top band).
    assert len(verdicts) <= 2


def test_all_bad_is_a_failure(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"nope")
    proc = run_cli("analyze", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"))
    assert proc.returncode == 1
    assert_one_line_error(proc)
    proc = run_cli("analyze", str(tmp_path / "empty_dir_that_is_missing"))
    assert proc.returncode == 1
    assert_one_line_error(proc)


def test_split_channels_analyses_each_side(tmp_path, speech):
    rng = np.random.default_rng(2)
    quiet = rng.standard_normal(len(speech)).astype(np.float32) * 1e-4
    call = write_audio(tmp_path / "call.wav", np.stack([speech, quiet], axis=1))
    summary, timeline = tmp_path / "s.csv", tmp_path / "t.csv"
    proc = run_cli(
        "analyze",
        str(call),
        "--channels",
        "split",
        "--summary",
        str(summary),
        "--timeline",
        str(timeline),
    )
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(summary)
    assert [r["channel"] for r in rows] == ["1", "2"]
    assert rows[0]["emotion"] in EMOTIONS and float(rows[0]["speech_s"]) > 1
    assert rows[1]["emotion"] == "" and float(rows[1]["speech_s"]) == 0
    assert {r["channel"] for r in read_csv(timeline)} == {"1", "2"}


def test_missing_device_is_one_line(tmp_path):
    proc = run_cli("listen", "--device", "no-such-device-anywhere", "--duration", "1")
    assert proc.returncode == 1
    assert_one_line_error(proc)
    proc = run_cli("listen", "--device", "999", "--duration", "1")
    assert proc.returncode == 1
    assert_one_line_error(proc)


def test_unwritable_output_is_one_line(tmp_path):
    proc = run_cli("analyze", str(SPEECH_CLIP), "--summary", str(tmp_path / "no" / "dir" / "s.csv"))
    assert proc.returncode == 1
    assert_one_line_error(proc)


def test_compressed_formats_are_analysed_alike(tmp_path, speech):
    import soundfile as sf

    summary = tmp_path / "s.csv"
    for name, fmt, subtype in (
        ("clip.ogg", "OGG", "VORBIS"),
        ("clip.opus", "OGG", "OPUS"),
        ("clip.mp3", "MP3", "MPEG_LAYER_III"),
    ):
        sf.write(tmp_path / name, speech, 16000, format=fmt, subtype=subtype)
    proc = run_cli("analyze", str(tmp_path), str(SPEECH_CLIP), "--summary", str(summary))
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(summary)
    assert len(rows) == 4 and all(r["error"] == "" for r in rows)
    assert len({r["emotion"] for r in rows}) == 1  # lossy coding does not change the verdict


def test_formula_like_file_names_are_neutralised(tmp_path, speech):
    folder = tmp_path / "calls"
    folder.mkdir()
    names = ["=HYPERLINK(x).wav", "+1.wav", "-cmd.wav", "@SUM(A1).wav"]
    for name in names:
        write_audio(folder / name, speech)
    summary, timeline = tmp_path / "s.csv", tmp_path / "t.csv"
    proc = run_cli("analyze", str(folder), "--summary", str(summary), "--timeline", str(timeline))
    assert proc.returncode == 0, proc.stderr
    # Paths start with the folder, so look at the names: make a path start with one, too.
    proc = run_cli("analyze", "=HYPERLINK(x).wav", "--summary", str(summary), cwd=folder)
    assert proc.returncode == 0, proc.stderr
    (row,) = read_csv(summary)
    assert row["file"] == "'=HYPERLINK(x).wav"
    for row in read_csv(timeline):
        assert not row["file"].startswith(("=", "+", "-", "@"))
        assert float(row["start_s"]) >= 0  # numbers are left as numbers


def test_analysis_spread_over_processes_gives_the_same_rows_in_the_same_order(tmp_path):
    one, three = tmp_path / "one.csv", tmp_path / "three.csv"
    for path, jobs in ((one, "1"), (three, "3")):
        proc = run_cli("analyze", str(CORPUS), "--timeline", str(path), "--jobs", jobs)
        assert proc.returncode == 0, proc.stderr
    assert one.read_text() == three.read_text()
    in_order = list(dict.fromkeys(row["file"] for row in read_csv(one)))
    assert in_order == sorted(in_order) and len(in_order) == 19  # the order they were found


@pytest.mark.parametrize(("users", "expected"), [(None, 1), ("2", 2)])
def test_the_command_line_gives_blas_one_thread_unless_the_user_says(users, expected):
    """Each engine runs on one core; a BLAS pool per process would take the core the live
    windows are heard on (ser_live.ONE_BLAS_THREAD)."""
    env = {k: v for k, v in os.environ.items() if k not in ser_live.ONE_BLAS_THREAD}
    if users is not None:
        env["OPENBLAS_NUM_THREADS"] = users
    code = (
        "import ser_live.cli, numpy, threadpoolctl; "
        "print(max(p['num_threads'] for p in threadpoolctl.threadpool_info() "
        "if p['user_api'] == 'blas'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == min(expected, os.cpu_count() or 1)


def test_listen_calibrates_by_default_only_where_the_models_sidecar_says(tmp_path):
    """The shipped model's live_default is true (models/README.md); a model that says
    false is not calibrated unless told to; a value that is not a boolean is refused."""
    from ser_live.analysis import EngineOptions
    from ser_live.errors import ModelError

    assert EngineOptions(calibrate=None).build().calibration is not None
    model = copy_model(tmp_path / "model.tflite")
    sidecar = json.loads(model.with_suffix(".json").read_text())
    for value, calibrated in ((True, True), (False, False)):
        sidecar["normalisation"]["speaker_calibration"]["live_default"] = value
        model.with_suffix(".json").write_text(json.dumps(sidecar))
        assert (EngineOptions(model, calibrate=None).build().calibration is not None) is calibrated
        assert EngineOptions(model, calibrate=True).build().calibration is not None
    sidecar["normalisation"]["speaker_calibration"]["live_default"] = "yes"
    model.with_suffix(".json").write_text(json.dumps(sidecar))
    with pytest.raises(ModelError, match="live_default"):
        EngineOptions(model, calibrate=None).build()
