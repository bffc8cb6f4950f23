"""The shipped model and its sidecar; models that do not fit this code are refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ser_live import EMOTIONS
from ser_live.errors import ModelError
from ser_live.features import DEFAULT_SETTINGS
from ser_live.model import DEFAULT_MODEL, ModelSpec, load_model
from tests.conftest import assert_one_line_error, copy_model, run_cli


def test_shipped_model_is_int8_small_and_matches_the_code(classifier):
    assert DEFAULT_MODEL.stat().st_size < 1024 * 1024
    assert classifier.quantized
    spec = classifier.spec
    assert spec.labels == list(EMOTIONS)
    assert spec.features == DEFAULT_SETTINGS.to_dict()
    assert spec.input_shape == [DEFAULT_SETTINGS.frames_in(32000), DEFAULT_SETTINGS.n_features]
    assert "NC" in spec.licence  # the corpora are non-commercial, so is the model


def test_an_installed_package_carries_the_model(tmp_path):
    """`pip install .` (not editable) must find the model too, not only a checkout."""
    root = Path(__file__).resolve().parent.parent
    # Built from a copy: setuptools builds in the source tree and would leave build/ there.
    source = tmp_path / "source"
    skip = (".git", ".venv", "build", "*.egg-info", "__pycache__", "runs", "cache", ".*_cache")
    shutil.copytree(root, source, symlinks=True, ignore=shutil.ignore_patterns(*skip))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("ser_live-*.whl")
    with zipfile.ZipFile(wheel) as z:
        members = ModelSpec.read(DEFAULT_MODEL.with_suffix(".json")).members
        assert members  # the shipped model averages two networks' probabilities
        names = [DEFAULT_MODEL.name, *members]
        for name in [n for m in names for n in (m, Path(m).with_suffix(".json").name)]:
            packaged = z.read(f"ser_live/{DEFAULT_MODEL.parent.name}/{name}")
            assert packaged == (root / "models" / name).read_bytes()
    assert DEFAULT_MODEL.parent.name == "models"
    assert DEFAULT_MODEL.parent.parent == root / "ser_live"


def test_prediction_is_a_distribution(classifier, speech):
    from ser_live.features import frame_features, normalise_window

    probs = classifier.predict(normalise_window(frame_features(speech[8000:40000])))
    assert probs.shape == (len(EMOTIONS),)
    assert probs.min() >= 0 and abs(probs.sum() - 1) < 1e-5


@pytest.fixture
def model_copy(tmp_path) -> Path:
    target = tmp_path / "model.tflite"
    copy_model(target)
    return target


def edit_sidecar(model: Path, change) -> None:
    path = model.with_suffix(".json")
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(labels=list(reversed(d["labels"]))), "labels"),
        (lambda d: d["features"].update(n_mfcc=20), "feature settings"),
        (lambda d: d["features"].update(version=0), "feature settings"),
        (lambda d: d.update(sample_rate=8000), "sample rate"),
        (lambda d: d.update(window_s=3.0), "input shape"),
        (lambda d: d.update(hop_s=0.123), "hop"),
        (lambda d: d["normalisation"].update(per_window="none"), "normalisation"),
        (lambda d: d["normalisation"]["global"].update(mean=[0.0]), "normalisation"),
        (
            lambda d: d["normalisation"]["speaker_calibration"].update(max_shift=-1.0),
            "max_shift needs a positive number",
        ),
        (
            lambda d: d["normalisation"]["speaker_calibration"].update(dims=[0, 43]),
            "dims needs distinct feature indices",
        ),
        (
            lambda d: d["normalisation"]["speaker_calibration"].update(
                variety={"full_at": 0.0, "prior_windows": 20}
            ),
            "variety needs a positive full_at",
        ),
        (
            lambda d: d["normalisation"]["speaker_calibration"].update(variety={"full": 1}),
            "variety needs full_at and prior_windows",
        ),
        (lambda d: d.update(format_version=99), "format"),
        (lambda d: d.pop("features"), "incomplete"),
    ],
)
def test_a_sidecar_that_disagrees_is_refused(model_copy, change, message):
    edit_sidecar(model_copy, change)
    with pytest.raises(ModelError, match=message):
        load_model(model_copy)


def test_missing_or_corrupt_files_are_refused(model_copy):
    model_copy.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        load_model(model_copy)
    model_copy.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match="sidecar missing"):
        load_model(model_copy)
    with pytest.raises(ModelError, match="not found"):
        load_model(model_copy.with_name("nothing.tflite"))


def test_corrupt_model_file_is_refused(model_copy):
    model_copy.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ModelError, match="unreadable"):
        load_model(model_copy)


def test_cli_reports_a_bad_model_in_one_line(model_copy):
    edit_sidecar(model_copy, lambda d: d["features"].update(n_mels=40))
    proc = run_cli("analyze", "--model", str(model_copy), "tests/fixtures/corpus")
    assert proc.returncode == 1
    assert_one_line_error(proc)
    assert "feature settings" in proc.stderr


def test_a_clone_is_another_interpreter_with_the_same_answers(classifier, speech):
    from ser_live.features import frame_features, normalise_window

    window = normalise_window(frame_features(speech[:32000]))
    twin = classifier.clone()
    assert twin is not classifier and twin._interp is not classifier._interp
    assert twin.spec == classifier.spec
    np.testing.assert_array_equal(twin.predict(window), classifier.predict(window))


def test_a_model_with_a_member_gives_the_mean_of_both_networks(tmp_path, speech):
    from ser_live.engine import Engine
    from ser_live.features import frame_features, normalise_window

    copy_model(tmp_path / "model.tflite")
    spec = json.loads((tmp_path / "model.json").read_text())
    spec["utterance_head"] = None  # the networks alone (the head: tests/test_utterance.py)
    # Calibration learning from every window, as each network alone would: the reference
    # gate judges by the pair's own verdict (tests/test_training.py tests it).
    for key in ("reference", "max_shift", "variety"):
        spec["normalisation"]["speaker_calibration"].pop(key, None)
    (tmp_path / "model.json").write_text(json.dumps(spec))
    ensemble = load_model(tmp_path / "model.tflite")
    (member_name,) = ensemble.spec.members
    alone = tmp_path / "alone.tflite"
    shutil.copy(tmp_path / "model.tflite", alone)
    spec["members"] = []
    alone.with_suffix(".json").write_text(json.dumps(spec))
    first, second = load_model(alone), load_model(tmp_path / member_name)
    assert [n.path.name for n in ensemble.networks] == ["model.tflite", member_name]
    window = normalise_window(frame_features(speech[8000:40000]))
    expected = (first.predict(window) + second.predict(window)) / 2
    np.testing.assert_allclose(ensemble.predict(window), expected, atol=1e-6)
    # Calibrated, each network hears the voice mapped onto its own training population:
    # the pair gives the mean of the two calibrated alone, window by window.
    updates = [
        [u.raw_probabilities for u in Engine(m, calibrate=True).feed(speech) if u.speech]
        for m in (ensemble, first, second)
    ]
    assert len(updates[0]) > 2
    for both, one, two in zip(*updates, strict=True):
        np.testing.assert_allclose(both, (one + two) / 2, atol=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(hop_s=1.0), "has another hop_s"),
        (lambda d: d["vad"].update(aggressiveness=3), "has another vad"),
        (lambda d: d.update(members=["model.tflite"]), "cannot have members of its own"),
    ],
)
def test_a_member_that_does_not_fit_is_refused(tmp_path, change, message):
    model = copy_model(tmp_path / "model.tflite")
    (member,) = ModelSpec.read(model.with_suffix(".json")).members
    edit_sidecar(tmp_path / member, change)
    with pytest.raises(ModelError, match=message):
        load_model(model)


def test_a_missing_member_or_one_outside_the_folder_is_refused(tmp_path):
    model = copy_model(tmp_path / "model.tflite")
    (member,) = ModelSpec.read(model.with_suffix(".json")).members
    (tmp_path / member).unlink()
    with pytest.raises(ModelError, match="member model not found"):
        load_model(model)
    edit_sidecar(model, lambda d: d.update(members=["../elsewhere.tflite"]))
    with pytest.raises(ModelError, match="not file names beside the model"):
        load_model(model)
