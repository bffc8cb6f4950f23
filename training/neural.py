"""Training one Keras model on windows, and averaging several into one network."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ser_live import EMOTIONS
from training.config import TrainConfig
from training.models import NEURAL_MODELS


def _setup_tf(seed: int) -> None:
    import keras
    import tensorflow as tf

    # Layer names are numbered per process; a fresh count for every fit keeps a saved
    # model's names (which the exported graph carries) independent of what its worker
    # built before, so the same run gives the same model file byte for byte.
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _class_weights(labels: np.ndarray) -> np.ndarray:
    """A weight per window that gives each emotion the same total weight (mean 1)."""
    counts = np.bincount(labels, minlength=len(EMOTIONS)).astype(float)
    per_class = counts.sum() / (len(EMOTIONS) * np.maximum(counts, 1))
    return per_class[labels].astype(np.float32)


def train_neural(
    kind: str,
    cfg: TrainConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    checkpoint: Path,
    epochs: int | None = None,
    name: str = "",
    feature_std: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    label_sets: np.ndarray | None = None,
    val_label_sets: np.ndarray | None = None,
):
    """Train one neural model; with validation data, keep the best epoch.

    ``label_sets`` (one row of ``len(EMOTIONS)`` booleans per training window, and
    ``val_label_sets`` per validation window): the emotions each window's corpus has. The
    loss then compares the label with the output renormalised over those emotions alone
    (``partial_label_loss``), so a corpus that lacks an emotion never teaches the network
    that its recordings are "not that emotion".

    Returns the model, its history and the best epoch (the last one without validation).
    The model of the best epoch (or the last) is also saved at ``checkpoint``.
    """
    import keras

    _setup_tf(cfg.seed)
    model = NEURAL_MODELS[kind](
        x_train.shape[1],
        x_train.shape[2],
        len(EMOTIONS),
        cfg.l2,
        cfg.dropout,
        filters=tuple(cfg.cnn2d_filters if kind == "cnn2d" else cfg.cnn_filters),
        pooling=cfg.cnn_pooling,
        feature_std=feature_std,
        bands=cfg.cnn2d_bands,
        time_pool=cfg.cnn2d_time_pool,
    )
    if label_sets is None:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
        metrics = ["accuracy"]
    else:  # targets carry the label sets (see training_batches); accuracy cannot read them
        loss, metrics = partial_label_loss, []
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=loss, metrics=metrics)
    callbacks: list = [_epoch_log(name or kind)]
    validation = None
    if x_val is not None and len(x_val):
        val_targets = one_hot(y_val)
        if label_sets is not None:
            sets = np.ones_like(val_targets) if val_label_sets is None else val_label_sets
            val_targets = np.concatenate([val_targets, sets.astype(np.float32)], axis=1)
        validation = (x_val, val_targets)
        callbacks += [
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=cfg.patience, restore_best_weights=True
            ),
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=3, min_lr=1e-5
            ),
            keras.callbacks.ModelCheckpoint(
                str(checkpoint), monitor="val_loss", save_best_only=True
            ),
        ]
    else:  # the final model: a fixed schedule found by cross-validation
        callbacks.append(
            keras.callbacks.LearningRateScheduler(
                lambda epoch, lr: (
                    cfg.learning_rate * (0.5 ** (epoch // max(1, (epochs or cfg.epochs) // 3)))
                )
            )
        )
    history = model.fit(
        training_batches(x_train, y_train, cfg, weights, label_sets),
        validation_data=validation,
        epochs=epochs or cfg.epochs,
        callbacks=callbacks,
        verbose=0,
    )
    if validation is None:
        model.save(str(checkpoint))
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    best_epoch = int(np.argmin(hist["val_loss"])) + 1 if "val_loss" in hist else len(hist["loss"])
    return model, hist, best_epoch


def _epoch_log(name: str):
    """One line per epoch, named, so that the logs of parallel jobs can be told apart."""
    import keras

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            shown = " ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items() if "loss" in k)
            print(f"[{time.strftime('%H:%M:%S')}] {name} epoch {epoch + 1}: {shown}", flush=True)

    return EpochLog()


def average_of(members: list):
    """One Keras model whose output is the mean of the members' class probabilities.

    The members share the input, so the exported graph reads each window once and the
    runtime sees one model with one probability vector, as before.
    """
    import keras

    if len(members) == 1:
        return members[0]
    inputs = keras.Input(members[0].inputs[0].shape[1:], name="features")
    outputs = [
        keras.Model(m.inputs[0], m.outputs[0], name=f"member{i + 1}")(inputs)
        for i, m in enumerate(members)
    ]
    return keras.Model(
        inputs, keras.layers.Average(name="probabilities")(outputs), name="ser_cnn_ensemble"
    )


def partial_label_loss(y_true, y_pred):
    """Cross-entropy against the output renormalised over the window's label set.

    ``y_true`` is the target distribution followed by the label set (``2 * len(EMOTIONS)``
    columns). Renormalising the softmax over a subset is the softmax of that subset's
    logits, so an emotion outside the set gets no gradient from this window.
    """
    from keras import ops

    n = len(EMOTIONS)
    target, allowed = y_true[:, :n], y_true[:, n:]
    kept = y_pred * allowed
    within = kept / ops.maximum(ops.sum(kept, axis=1, keepdims=True), 1e-7)
    return -ops.sum(target * ops.log(ops.maximum(within, 1e-7)), axis=1)


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(len(EMOTIONS), dtype=np.float32)[labels]


def training_batches(
    x: np.ndarray,
    y: np.ndarray,
    cfg: TrainConfig,
    weights: np.ndarray | None = None,
    label_sets: np.ndarray | None = None,
    extra_targets: np.ndarray | None = None,
):
    """Shuffled, class-weighted training batches, with SpecAugment masks and mixup if set.

    Masks: each window loses up to two time spans of up to 20 frames and one band of up to
    8 features (set to 0, the standardised mean): the model cannot lean on any one moment or
    coefficient, which is what a new speaker or microphone changes. Mixup blends each window
    (and its label and weight) with another window of the batch. With ``label_sets`` the
    targets carry each window's label set after its label (a blend: the union of both
    windows' sets), for ``partial_label_loss``. ``extra_targets`` (a row per window, e.g.
    a one-hot domain for an adversary) come last, blended like the labels.
    """
    import keras

    class_weights = _class_weights(y) if weights is None else np.asarray(weights, np.float32)
    batch_size = cfg.batch_size

    class _Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(cfg.seed)
            self.order = self.rng.permutation(len(x))
            self.sample_weight = class_weights
            self.targets = one_hot(y)
            self.label_sets = None if label_sets is None else label_sets.astype(np.float32)
            self.extra = None if extra_targets is None else extra_targets.astype(np.float32)

        def __len__(self) -> int:
            return int(np.ceil(len(x) / batch_size))

        def __getitem__(self, index: int):
            idx = self.order[index * batch_size : (index + 1) * batch_size]
            batch = x[idx].copy()
            targets = self.targets[idx]
            weights = self.sample_weight[idx]
            n_frames, n_feats = batch.shape[1:]
            if cfg.spec_augment:
                for window in batch:
                    for _ in range(self.rng.integers(0, 3)):
                        width = self.rng.integers(1, 21)
                        start = self.rng.integers(0, n_frames - width)
                        window[start : start + width] = 0.0
                    width = self.rng.integers(0, 9)
                    start = self.rng.integers(0, n_feats - width)
                    window[:, start : start + width] = 0.0
            if cfg.mixup_alpha > 0:
                lam = self.rng.beta(cfg.mixup_alpha, cfg.mixup_alpha, len(idx)).astype(np.float32)
                lam = np.maximum(lam, 1 - lam)  # each window stays mostly itself
                partner = self.rng.permutation(len(idx))
                batch = lam[:, None, None] * batch + (1 - lam[:, None, None]) * batch[partner]
                targets = lam[:, None] * targets + (1 - lam[:, None]) * targets[partner]
                weights = lam * weights + (1 - lam) * weights[partner]
            if self.label_sets is not None:
                sets = self.label_sets[idx]
                if cfg.mixup_alpha > 0:
                    sets = np.maximum(sets, sets[partner])
                targets = np.concatenate([targets, sets], axis=1)
            if self.extra is not None:
                extra = self.extra[idx]
                if cfg.mixup_alpha > 0:
                    extra = lam[:, None] * extra + (1 - lam[:, None]) * extra[partner]
                targets = np.concatenate([targets, extra], axis=1)
            return batch, targets, weights

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(len(x))

    return _Batches()
