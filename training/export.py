"""Full-integer int8 TFLite export, and the sidecar that goes with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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
    """Probabilities from a TFLite model for standardised windows, batch of one at a time."""
    from ser_live.model import interpreter_class

    interp = interpreter_class()(model_content=model_bytes, num_threads=2)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]
    result = np.zeros((len(windows), out["shape"][-1]), dtype=np.float32)
    for i, window in enumerate(windows):
        x = window[np.newaxis]
        if inp["dtype"] == np.int8:
            x = np.clip(np.round(x / in_scale + in_zero), -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], x.astype(inp["dtype"]))
        interp.invoke()
        y = interp.get_tensor(out["index"])[0]
        if out["dtype"] == np.int8:
            y = (y.astype(np.float32) - out_zero) * out_scale
        result[i] = y
    return result


def write_model(path: Path, model_bytes: bytes, sidecar_json: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model_bytes)
    path.with_suffix(".json").write_text(sidecar_json)
