"""The shipped CNN and the models it is compared with, on identical inputs."""

from __future__ import annotations

import numpy as np


def build_cnn(
    n_frames: int,
    n_features: int,
    n_classes: int,
    l2: float,
    dropout: float,
    filters: tuple[int, ...] = (64, 96, 128, 128),
    pooling: str = "avgmax",
):
    """A compact Conv1D network over the feature sequence (about 150 k parameters).

    The input is averaged down to 20 ms steps first: emotion lives in prosody and voice
    quality that change over tens of milliseconds, and it quarters the compute.
    """
    import keras
    from keras import layers

    reg = keras.regularizers.l2(l2)
    inputs = keras.Input((n_frames, n_features), name="features")
    x = layers.AveragePooling1D(2)(inputs)
    blocks = zip(filters, (5, 5, 3, 3), (True, True, True, False), strict=True)
    for width, kernel, pool in blocks:
        x = layers.Conv1D(width, kernel, padding="same", use_bias=False, kernel_regularizer=reg)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.SpatialDropout1D(0.1)(x)
        if pool:
            x = layers.MaxPooling1D(2)(x)
    if pooling == "attention":  # a learnt weight per time step: which moments carry emotion
        weights = layers.Softmax(axis=1)(layers.Dense(1)(x))
        attended = layers.Dot(axes=1)([weights, x])
        x = layers.Concatenate()([layers.Flatten()(attended), layers.GlobalMaxPooling1D()(x)])
    else:
        x = layers.Concatenate()(
            [layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)]
        )
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(64, activation="relu", kernel_regularizer=reg)(x)
    x = layers.Dropout(dropout / 2)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="ser_cnn")


def build_lstm(n_frames: int, n_features: int, n_classes: int, l2: float, dropout: float, **_):
    """Recurrent comparison: a bidirectional LSTM over 40 ms steps."""
    import keras
    from keras import layers

    reg = keras.regularizers.l2(l2)
    inputs = keras.Input((n_frames, n_features), name="features")
    x = layers.AveragePooling1D(4)(inputs)
    x = layers.Bidirectional(layers.LSTM(64, kernel_regularizer=reg))(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(64, activation="relu", kernel_regularizer=reg)(x)
    outputs = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="ser_lstm")


NEURAL_MODELS = {"cnn": build_cnn, "lstm": build_lstm}


def utterance_statistics(windows: np.ndarray) -> np.ndarray:
    """Per-window statistics for the classic baseline: mean, std, min, max of each feature."""
    return np.concatenate(
        [windows.mean(axis=1), windows.std(axis=1), windows.min(axis=1), windows.max(axis=1)],
        axis=1,
    )


def build_svm(seed: int):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    return make_pipeline(
        StandardScaler(), SVC(C=3.0, gamma="scale", probability=True, random_state=seed)
    )
