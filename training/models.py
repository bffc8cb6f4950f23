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
    **_,
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


def build_cnn2d(
    n_frames: int,
    n_features: int,
    n_classes: int,
    l2: float,
    dropout: float,
    filters: tuple[int, ...] = (16, 32, 48, 64),
    feature_std: np.ndarray | None = None,
    bands: int = 64,
    time_pool: int = 4,
    **_,
):
    """A Conv2D network over the log-mel spectrum, beside a Conv1D over ZCR, level and pitch.

    Same input as ``build_cnn`` (standardised MFCC frames), so the runtime and the sidecar
    do not change: a fixed layer undoes the standardisation and the DCT, giving back the
    cepstrally smoothed log-mel spectrum (per-band mean removed, as the per-window
    normalisation removed the cepstral mean). 2-D kernels slide along frequency, so a
    formant or harmonic pattern is recognised wherever a voice puts it.

    At 64 bands and 40 ms steps (``cnn2d_bands``, ``cnn2d_time_pool`` in the training
    config) a training step costs about twice the conv1d network's. 32 bands and 80 ms
    steps, as cheap as conv1d, lost what the full resolution gained (see models/README.md).
    """
    import keras
    from keras import layers
    from scipy.fft import dct

    from ser_live.features import DEFAULT_SETTINGS  # the MFCCs' own settings

    n_mels, n_mfcc = DEFAULT_SETTINGS.n_mels, DEFAULT_SETTINGS.n_mfcc
    reg = keras.regularizers.l2(l2)
    std = np.ones(n_features, np.float32) if feature_std is None else feature_std
    basis = dct(np.eye(n_mels), type=2, norm="ortho", axis=0)[:n_mfcc]  # (n_mfcc, n_mels)
    # Neighbouring mel bands averaged down to ``bands`` (the 40 coefficients are smooth).
    basis = basis.reshape(n_mfcc, bands, n_mels // bands).mean(axis=2)
    to_mel = (std[:n_mfcc, None] * basis).astype(np.float32) / 10.0  # dB / 10

    inputs = keras.Input((n_frames, n_features), name="features")
    x = layers.AveragePooling1D(time_pool)(inputs)
    # Fixed linear maps (no Lambda layers, so a saved model loads anywhere).
    to_spec = layers.Dense(bands, use_bias=False, trainable=False, name="inverse_dct")
    to_other = layers.Dense(n_features - n_mfcc, use_bias=False, trainable=False, name="prosody")
    spec, other = to_spec(x), to_other(x)
    to_spec.set_weights([np.concatenate([to_mel, np.zeros((n_features - n_mfcc, bands))])])
    to_other.set_weights([np.eye(n_features, dtype=np.float32)[:, n_mfcc:]])
    spec = layers.Reshape((-1, bands, 1))(spec)
    for width in filters:
        spec = layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_regularizer=reg)(spec)
        # Pooled before normalisation and ReLU: the same maximum for any positive BN scale,
        # but BN and ReLU run on a quarter of the map. Training steps took 42 ms instead of
        # 76 (one thread, batch 64), which is what brings a full retrain under the hour.
        spec = layers.MaxPooling2D(2)(spec)
        spec = layers.BatchNormalization()(spec)
        spec = layers.ReLU()(spec)
    spec = layers.SpatialDropout2D(0.1)(spec)
    spec = layers.Concatenate()(
        [layers.GlobalAveragePooling2D()(spec), layers.GlobalMaxPooling2D()(spec)]
    )
    o = layers.Conv1D(32, 5, padding="same", activation="relu", kernel_regularizer=reg)(other)
    o = layers.Concatenate()([layers.GlobalAveragePooling1D()(o), layers.GlobalMaxPooling1D()(o)])
    z = layers.Concatenate()([spec, o])
    z = layers.Dropout(dropout)(z)
    z = layers.Dense(64, activation="relu", kernel_regularizer=reg)(z)
    z = layers.Dropout(dropout / 2)(z)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(z)
    return keras.Model(inputs, outputs, name="ser_cnn2d")


NEURAL_MODELS = {"cnn": build_cnn, "cnn2d": build_cnn2d}
#: The kind (``NEURAL_MODELS``) of each averaged CNN architecture of ``TrainConfig``.
CNN_ARCHITECTURES = {"conv1d": "cnn", "conv2d": "cnn2d"}
