"""Full-integer int8 TFLite export, and the sidecar that goes with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def calibration_windows(windows: np.ndarray, seed: int, n: int = 400) -> np.ndarray:
    """A seeded random sample of ``n`` training windows for the int8 calibration."""
    rng = np.random.default_rng(seed)
    return windows[rng.choice(len(windows), min(n, len(windows)), replace=False)]


def to_int8_tflite(model, representative: np.ndarray) -> bytes:
    """Quantise ``model`` to int8 weights, activations, input and output.

    ``representative`` holds standardised windows, as the runtime feeds them, from which
    the converter calibrates the activation ranges.
    """
    import tempfile

    import tensorflow as tf

    # Keras 3: convert through a SavedModel; a traced function keeps unfrozen variables.
    with tempfile.TemporaryDirectory() as saved:
        model.export(saved, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        return _quantise(converter, representative)


def _quantise(converter, representative: np.ndarray) -> bytes:
    import tensorflow as tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def samples():
        for window in representative:
            yield [window[np.newaxis].astype(np.float32)]

    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def tflite_predict(model_bytes: bytes, windows: np.ndarray) -> np.ndarray:
    """Raw outputs of a TFLite model for standardised windows, through the runtime's code."""
    from ser_live.model import TFLiteRunner, interpreter_class

    interp = interpreter_class()(model_content=model_bytes, num_threads=2)
    interp.allocate_tensors()
    run = TFLiteRunner(interp)
    return np.stack([run(window) for window in windows])


def write_model(path: Path, model_bytes: bytes, sidecar_json: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model_bytes)
    path.with_suffix(".json").write_text(sidecar_json)
