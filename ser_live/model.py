"""The emotion model: its sidecar (what it expects) and the LiteRT interpreter that runs it.

A model is a ``.tflite`` file with a ``.json`` sidecar beside it. The sidecar records the
labels, sample rate, window and hop, feature settings and normalisation the model was
trained with; ``load_model`` refuses a model whose sidecar disagrees with this code, since
such a model would run and quietly give wrong answers.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ser_live import EMOTIONS, SAMPLE_RATE
from ser_live.calibration import reference_problem
from ser_live.errors import ModelError
from ser_live.features import DEFAULT_SETTINGS, Standardiser
from ser_live.utterance import head_problem, summary_size
from ser_live.voice_shifts import shifts_problem

SIDECAR_FORMAT = "ser-live-model"
SIDECAR_VERSION = 1
# ``ser_live/models`` links to the top-level ``models/`` in a checkout; a wheel carries the files.
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "ser_cnn_int8.tflite"


def read_sidecar(path: Path, kind: str, sidecar_format: str) -> dict:
    """A sidecar's JSON object, refused unless it names ``sidecar_format``; ``kind`` names
    the sidecar in the errors."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{kind} sidecar missing: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{kind} sidecar unreadable: {path} ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != sidecar_format:
        raise ModelError(f"{path}: not a ser-live {kind} sidecar")
    return data


@dataclass
class ModelSpec:
    """The sidecar of a model."""

    labels: list[str]
    sample_rate: int
    window_s: float
    hop_s: float
    min_speech_ratio: float
    vad: dict
    features: dict
    normalisation: dict
    input_shape: list[int]
    # Semitones each window is also heard shifted by, the copies' outputs averaged
    # (``ser_live.voice_shifts``); empty in models from before the shifts.
    voice_shifts: list[float] = field(default_factory=list)
    # Further models (file names beside this one, each with its own sidecar) whose
    # probabilities are averaged with this model's: networks trained on other data, or
    # standardised with other statistics, than one graph can hold. Empty: this model alone.
    members: list[str] = field(default_factory=list)
    # A regression on the phrase heard against the voice's other phrases, averaged with
    # the networks (``ser_live.utterance``); None: the networks alone.
    utterance_head: dict | None = None
    model_version: str = "dev"
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    licence: str = ""

    @property
    def standardiser(self) -> Standardiser:
        return Standardiser.from_dict(self.normalisation["global"])

    @property
    def calibrates_live(self) -> bool:
        """Whether ``listen`` and the app calibrate to each voice unless told
        (``speaker_calibration.live_default``; models from before it: whenever they can).
        The shipped model says no: on the yardstick every calibration let one corpus's
        lasting emotion fade (models/README.md)."""
        setup = (self.normalisation or {}).get("speaker_calibration")
        return bool(setup) and setup.get("live_default", True) is True

    def to_json(self) -> str:
        data = {"format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION, **self.__dict__}
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def read(cls, path: Path) -> ModelSpec:
        data = read_sidecar(path, "model", SIDECAR_FORMAT)
        if data.get("format_version") != SIDECAR_VERSION:
            raise ModelError(
                f"{path}: sidecar format {data.get('format_version')} is not supported "
                f"(this ser-live reads format {SIDECAR_VERSION})"
            )
        known = set(cls.__dataclass_fields__)
        try:
            spec = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ModelError(f"{path}: incomplete sidecar ({exc})") from None
        spec.check(path)
        return spec

    def check(self, path: Path | str = "sidecar") -> None:
        """Raise ``ModelError`` unless this model fits this code."""
        problems = []
        if list(self.labels) != list(EMOTIONS):
            problems.append(f"labels {self.labels} differ from {list(EMOTIONS)}")
        if self.sample_rate != SAMPLE_RATE:
            problems.append(f"sample rate {self.sample_rate} is not {SAMPLE_RATE}")
        if self.features != DEFAULT_SETTINGS.to_dict():
            diff = {
                k: v for k, v in self.features.items() if DEFAULT_SETTINGS.to_dict().get(k) != v
            } or self.features
            problems.append(f"feature settings {diff} differ from this code's")
        settings = DEFAULT_SETTINGS
        expected_frames = settings.frames_in(round(self.window_s * SAMPLE_RATE))
        if list(self.input_shape) != [expected_frames, settings.n_features]:
            problems.append(
                f"input shape {self.input_shape} does not fit a {self.window_s} s window "
                f"({expected_frames} frames of {settings.n_features} features)"
            )
        hop = round(self.hop_s * SAMPLE_RATE)
        if hop <= 0 or hop % settings.hop_length:
            problems.append(f"hop {self.hop_s} s is not a whole number of feature frames")
        norm = self.normalisation or {}
        if norm.get("per_window") != "cepstral-mean-and-level":
            problems.append(f"per-window normalisation {norm.get('per_window')!r} is unknown")
        calibration = norm.get("speaker_calibration")
        if calibration is not None and not (
            isinstance(calibration, dict)
            and isinstance(calibration.get("prior_frames"), int | float)
            and calibration["prior_frames"] > 0
        ):
            problems.append(f"speaker calibration {calibration!r} needs positive prior_frames")
        elif calibration is not None and (
            problem := reference_problem(calibration, list(EMOTIONS), settings.n_features)
        ):
            problems.append(problem)
        elif calibration is not None and calibration.get("speaker_normalised"):
            population = calibration.get("population") or {}
            if not all(
                len(population.get(key, [])) == settings.n_features for key in ("mean", "std")
            ):
                problems.append(
                    "a speaker-normalised model needs its population statistics "
                    "(speaker_calibration.population) for every feature"
                )
        glob = norm.get("global") or {}
        if (
            len(glob.get("mean", [])) != settings.n_features
            or len(glob.get("std", [])) != settings.n_features
        ):
            problems.append("global normalisation statistics are missing or the wrong size")
        if not isinstance(self.members, list) or not all(
            isinstance(m, str) and m and "/" not in m and "\\" not in m for m in self.members
        ):
            problems.append(f"members {self.members!r} are not file names beside the model")
        if not isinstance(self.voice_shifts, list):
            problems.append(f"voice shifts {self.voice_shifts!r} are not a list")
        elif problem := shifts_problem(self.voice_shifts):
            problems.append(problem)
        if self.utterance_head is not None and (
            problem := head_problem(
                self.utterance_head, len(EMOTIONS), summary_size(settings.n_features)
            )
        ):
            problems.append(problem)
        if problems:
            raise ModelError(f"model does not match this ser-live ({path}): " + "; ".join(problems))


@contextlib.contextmanager
def _quiet_native_stderr():
    """Hide the interpreter's native INFO banner ("Created TensorFlow Lite XNNPACK delegate").

    Failures still surface: they are raised as Python exceptions, with their messages.
    """
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def sidecar_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def interpreter_class():
    """LiteRT first; ``tflite_runtime`` and then full TensorFlow where it is absent."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        import tensorflow as tf

        return tf.lite.Interpreter
    except ImportError:
        raise ModelError("no TFLite interpreter installed: pip install ai-edge-litert") from None


class TFLiteRunner:
    """One window in, raw float outputs out, through an allocated TFLite interpreter.

    Quantises the input and dequantises the output with the tensors' own scale and zero
    point. Shared by the app's ``Classifier`` and training's int8 evaluation.
    """

    def __init__(self, interpreter) -> None:
        self.interpreter = interpreter
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        self.input_shape = [int(v) for v in inp["shape"][1:]]
        self.n_outputs = int(out["shape"][-1])
        self.quantized = inp["dtype"] == np.int8
        self._in_index, self._in_dtype = inp["index"], inp["dtype"]
        self._in_scale, self._in_zero = inp["quantization"]
        self._out_index, self._out_dtype = out["index"], out["dtype"]
        self._out_scale, self._out_zero = out["quantization"]

    def __call__(self, window: np.ndarray) -> np.ndarray:
        x = window[np.newaxis]
        if self._in_dtype == np.int8:
            x = np.clip(np.round(x / self._in_scale + self._in_zero), -128, 127).astype(np.int8)
        else:
            x = x.astype(self._in_dtype)
        self.interpreter.set_tensor(self._in_index, x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self._out_index)[0]
        if self._out_dtype == np.int8:
            return (y.astype(np.float32) - self._out_zero) * self._out_scale
        return y.astype(np.float32)


class Classifier:
    """Runs the int8 (or float) TFLite model on one window of features, with its members.

    A model whose sidecar lists ``members`` averages its probabilities with theirs; each
    network standardises the window with its own statistics. Not thread-safe: one thread
    owns a Classifier (the engine's worker) and its members.
    """

    def __init__(self, model_path: Path, spec: ModelSpec, nested: bool = False) -> None:
        self.path = model_path
        self.spec = spec
        self._standardise = spec.standardiser
        try:
            with _quiet_native_stderr():
                self._interp = interpreter_class()(model_path=str(model_path), num_threads=1)
                self._interp.allocate_tensors()
        except ModelError:
            raise
        except (ValueError, RuntimeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
            raise ModelError(f"model file unreadable: {model_path} ({reason})") from None
        self._run = TFLiteRunner(self._interp)
        if self._run.input_shape != list(spec.input_shape):
            raise ModelError(
                f"{model_path}: input shape {self._run.input_shape} differs from its sidecar's "
                f"{spec.input_shape}"
            )
        if self._run.n_outputs != len(spec.labels):
            raise ModelError(
                f"{model_path}: {self._run.n_outputs} outputs for {len(spec.labels)} labels"
            )
        self.members = [self._member(name, nested) for name in spec.members]
        self.quantized = all(n._run.quantized for n in self.networks)

    def _member(self, name: str, nested: bool) -> Classifier:
        path = self.path.parent / name
        if nested:
            raise ModelError(f"{self.path}: a member model cannot have members of its own")
        if not path.exists():
            raise ModelError(f"{self.path}: member model not found: {path}")
        member = Classifier(path, ModelSpec.read(sidecar_path(path)), nested=True)
        for key in ("labels", "window_s", "hop_s", "min_speech_ratio", "vad", "input_shape"):
            if getattr(member.spec, key) != getattr(self.spec, key):
                raise ModelError(
                    f"{self.path}: member {name} has another {key} "
                    f"({getattr(member.spec, key)!r}, not {getattr(self.spec, key)!r})"
                )
        return member

    @property
    def networks(self) -> list[Classifier]:
        """This model and its members, each with its own input statistics (``spec``)."""
        return [self, *self.members]

    def clone(self) -> Classifier:
        """Another interpreter of the same model, for another thread (each side of a call
        runs its engine on a worker of its own)."""
        return Classifier(self.path, self.spec)

    def warm_up(self) -> None:
        with _quiet_native_stderr():  # XNNPACK may announce itself on the first invoke
            self.predict(np.zeros(self.spec.input_shape, dtype=np.float32))

    def predict(self, window_features: np.ndarray) -> np.ndarray:
        """Class probabilities (float32, sum 1) for one per-window-normalised window: the
        mean of every network's."""
        return self.predict_each([window_features] * len(self.networks))

    def predict_each(self, windows: list[np.ndarray]) -> np.ndarray:
        """The mean probabilities of the networks, each given its own version of the
        window (``networks`` order; speaker calibration maps a window onto each network's
        own training population)."""
        probs = [n._own_probabilities(w) for n, w in zip(self.networks, windows, strict=True)]
        return probs[0] if len(probs) == 1 else np.mean(probs, axis=0, dtype=np.float32)

    def _own_probabilities(self, window_features: np.ndarray) -> np.ndarray:
        y = self._run(self._standardise(window_features))
        y = np.maximum(y.astype(np.float32), 0.0)
        total = float(y.sum())
        return y / total if total > 0 else np.full(len(y), 1.0 / len(y), dtype=np.float32)


def calibrates_live(model_path: str | Path | None = None) -> bool:
    """``ModelSpec.calibrates_live`` from the sidecar alone (no interpreter), for a
    default to show before the model loads; False where the sidecar is unreadable (the
    load then says why)."""
    path = Path(model_path) if model_path else DEFAULT_MODEL
    try:
        return ModelSpec.read(path.with_suffix(".json")).calibrates_live
    except ModelError:
        return False


def load_model(model_path: str | Path | None = None) -> Classifier:
    """Load and check a model and its sidecar; raise ``ModelError`` with one line if unfit."""
    path = Path(model_path) if model_path else DEFAULT_MODEL
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    spec = ModelSpec.read(sidecar_path(path))
    return Classifier(path, spec)
