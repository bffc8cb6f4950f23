"""A quick screen of a training idea, before the leave-one-corpus-out run that measures it.

One float conv1d network (the shipped recipe's, ``training.models.build_cnn``) is trained
on the cached windows of some corpora and scored after every epoch on the clean windows of
others: a clip is the mean of its windows' probabilities, closed-set UAR over that corpus's
labels, as ``training.loco`` scores. It scores the training pipeline's own windows (each
clip placed in room tone) in float, not the int8 model through the engine, so its numbers
are close to the yardstick's but not the same: a screen says which ideas deserve a
``training.loco`` run (its five held-out fits took 17 minutes on 2 cores with the windows
cached), not what a model scores. One screen takes about 6 minutes on one core, so two
run side by side.

A single network's cross-corpus UAR swings by 0.03 to 0.07 from one epoch to the next (one
emotion's recall by 0.3 on nEMO and Korean while the training loss falls smoothly), so
the summary is the mean over the second half of the epochs and the UAR of those epochs'
averaged predictions (a snapshot ensemble). Read differences under about 0.03 as noise.

    python -m training.screen ../shared/datasets --name baseline
    python -m training.screen ../shared/datasets --name plus-nemo --train ravdess,tess,nemo \
        --eval korean,emospeech --partial-labels
    python -m training.screen ../shared/datasets --name dann --adversary speaker
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ser_live import EMOTIONS
from ser_live.features import DEFAULT_SETTINGS, Standardiser
from training import log
from training.config import TrainConfig
from training.corpora import CORPORA, find_utterances

ROOT = Path(__file__).resolve().parent.parent
PITCH = DEFAULT_SETTINGS.feature_names.index("f0_semitones")


def group_weights(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """A weight per window giving every (group, emotion) pair the same total (mean 1):
    with speakers as the groups, TESS's two voices weigh what two RAVDESS actors do."""
    keys = np.char.add(np.char.add(groups.astype(str), "|"), labels.astype(str))
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse]
    return (weights / weights.mean()).astype(np.float32)


def gradient_reversal(weight: float):
    """A layer that passes its input forward and sends back ``-weight`` times the gradient
    (Ganin and Lempitsky 2015): the layers before it learn to defeat the head after it."""
    import keras
    import tensorflow as tf

    class GradientReversal(keras.layers.Layer):
        def call(self, x):
            @tf.custom_gradient
            def reverse(v):
                return tf.identity(v), lambda dy: -weight * dy

            return reverse(x)

    return GradientReversal(name="gradient_reversal")


def with_adversary(model, n_domains: int, weight: float):
    """``model``'s emotion output beside a domain classifier on its last hidden layer,
    behind gradient reversal, as one output: the emotion probabilities, then the domain
    logits (``adversarial_loss`` splits them)."""
    import keras
    from keras import layers

    hidden = [layer for layer in model.layers if isinstance(layer, layers.Dense)][-2].output
    d = gradient_reversal(weight)(hidden)
    d = layers.Dense(64, activation="relu", name="domain_hidden")(d)
    d = layers.Dense(n_domains, name="domain_logits")(d)
    both = layers.Concatenate(name="emotion_and_domain")([model.output, d])
    return keras.Model(model.input, both)


def adversarial_loss(n_emotion_columns: int, emotion_loss):
    """The emotion loss on the first columns of target and output, plus cross-entropy of
    the domain logits against the (mixed) domain targets after them."""
    from keras import ops

    n = len(EMOTIONS)

    def loss(y_true, y_pred):
        domain = ops.log_softmax(y_pred[:, n:], axis=-1)
        domain_ce = -ops.sum(y_true[:, n_emotion_columns:] * domain, axis=1)
        return emotion_loss(y_true[:, :n_emotion_columns], y_pred[:, :n]) + domain_ce

    return loss


def clip_scores(probabilities: np.ndarray, clip: np.ndarray, utterances, corpora) -> dict:
    """Closed-set scores per corpus from window probabilities (a clip: their mean)."""
    from training.loco import closed_set_scores

    out = {}
    for corpus in corpora:
        rows = np.flatnonzero([utterances[c].corpus == corpus for c in clip])
        clips, inverse = np.unique(clip[rows], return_inverse=True)
        sums = np.zeros((len(clips), len(EMOTIONS)))
        np.add.at(sums, inverse, probabilities[rows])
        true = [utterances[c].emotion for c in clips]
        labels = [e for e in EMOTIONS if e in set(true)]
        entry = closed_set_scores(true, list(sums), labels)
        out[corpus] = {"uar": round(entry["uar"], 4), "recall": entry["recall"]}
    return out


def screen(args: argparse.Namespace) -> dict:
    import keras

    from training.loco import label_sets
    from training.models import build_cnn
    from training.neural import _setup_tf, partial_label_loss, training_batches
    from training.pipeline import subset
    from training.speaker_norm import normalise_by_group, speaker_groups
    from training.windows import every_nth_window, extract_windows

    cfg = TrainConfig(seed=args.seed)
    utterances = subset(find_utterances(args.data), args.max_clips_per_speaker)
    data = extract_windows(utterances, cfg, ROOT / "training" / "cache")
    clip, copy = data["clip"], data["copy"]
    corpus = np.array([u.corpus for u in utterances])[clip]
    train = np.isin(corpus, args.train) & every_nth_window(clip, copy, args.window_stride)
    test = np.isin(corpus, args.eval) & (copy == 0)
    x_train, x_test = data["x"][train], data["x"][test]
    del data
    if args.speaker_normalise:  # each voice relative to itself (training.speaker_norm)
        speaker = np.array([u.speaker for u in utterances])[clip]
        for x, rows in ((x_train, train), (x_test, test)):
            normalise_by_group(x, speaker_groups(speaker[rows], copy[rows]))
    if args.relative_pitch:  # pitch as semitones from the window's mean: no voice height
        for x in (x_train, x_test):
            x[:, :, PITCH] -= x[:, :, PITCH].mean(axis=1, keepdims=True)
    standardiser = Standardiser.fit(x_train)
    x_train, x_test = standardiser(x_train), standardiser(x_test)
    dropped = [DEFAULT_SETTINGS.feature_names.index(name) for name in args.drop]
    x_train[:, :, dropped] = 0.0  # the standardised mean: the network learns nothing there
    x_test[:, :, dropped] = 0.0
    labels = np.array([u.label for u in utterances])[clip[train]]
    speakers = np.array([u.speaker for u in utterances])[clip[train]]
    weights = group_weights(labels, speakers) if args.weights == "speaker" else None
    sets = label_sets(utterances)[clip[train]] if args.partial_labels else None
    extra = None
    _setup_tf(args.seed)
    model = build_cnn(x_train.shape[1], x_train.shape[2], len(EMOTIONS), cfg.l2, cfg.dropout)
    emotion_loss = partial_label_loss if sets is not None else keras.losses.categorical_crossentropy
    trained, loss = model, emotion_loss
    if args.adversary:
        groups = speakers if args.adversary == "speaker" else corpus[train]
        _, domain = np.unique(groups, return_inverse=True)
        extra = np.eye(domain.max() + 1, dtype=np.float32)[domain]
        trained = with_adversary(model, extra.shape[1], args.adversary_weight)
        loss = adversarial_loss(len(EMOTIONS) * (2 if sets is not None else 1), emotion_loss)
    trained.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=loss)
    test_clip = clip[test]
    history: list[dict] = []
    snapshots: list[np.ndarray] = []
    started = time.monotonic()

    class Score(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            probabilities = model.predict(x_test, batch_size=512, verbose=0)
            snapshots.append(probabilities)
            scores = clip_scores(probabilities, test_clip, utterances, args.eval)
            row = {"epoch": epoch + 1, "loss": round(float((logs or {})["loss"]), 4)}
            row.update({c: s["uar"] for c, s in scores.items()})
            row["mean"] = round(float(np.mean([s["uar"] for s in scores.values()])), 4)
            history.append(row)
            shown = ", ".join(f"{c} {s['uar']:.3f}" for c, s in scores.items())
            log(f"{args.name} epoch {epoch + 1}: {shown}; mean {row['mean']:.3f}")

    epochs = args.epochs
    schedule = keras.callbacks.LearningRateScheduler(
        lambda epoch, lr: cfg.learning_rate * 0.5 ** (epoch // max(1, epochs // 3))
    )
    trained.fit(
        training_batches(x_train, labels, cfg, weights, sets, extra),
        epochs=epochs,
        callbacks=[Score(), schedule],
        verbose=0,
    )
    late = history[len(history) // 2 :]
    averaged = clip_scores(
        np.mean(snapshots[len(snapshots) // 2 :], axis=0), test_clip, utterances, args.eval
    )
    summary = {
        "name": args.name,
        "settings": {k: v for k, v in vars(args).items() if k not in ("data", "out")},
        "train_windows": len(x_train),
        "minutes": round((time.monotonic() - started) / 60, 1),
        "late_epochs_mean": {
            c: round(float(np.mean([r[c] for r in late])), 4) for c in [*args.eval, "mean"]
        },
        "late_epochs_spread": {
            c: round(float(np.max([r[c] for r in late]) - np.min([r[c] for r in late])), 4)
            for c in args.eval
        },
        "snapshot_average": averaged,
        "snapshot_average_mean": round(float(np.mean([s["uar"] for s in averaged.values()])), 4),
        "epochs": history,
    }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.screen", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("data", nargs="+", type=Path, help="folders holding the corpora")
    parser.add_argument("--name", default="screen", help="names the result file")
    parser.add_argument("--train", default="ravdess,tess", help="corpora to train on")
    parser.add_argument("--eval", default="nemo,korean,emospeech", help="corpora to score")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--window-stride", type=int, default=2, help="every Nth window")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument(
        "--drop", default="", help="features the network does not see, e.g. f0_semitones"
    )
    parser.add_argument(
        "--relative-pitch", action="store_true", help="pitch relative to the window's mean"
    )
    parser.add_argument(
        "--speaker-normalise",
        action="store_true",
        help="z-score each speaker's windows with their own statistics (train and test)",
    )
    parser.add_argument("--weights", choices=("class", "speaker"), default="class")
    parser.add_argument("--partial-labels", action="store_true")
    parser.add_argument(
        "--adversary", choices=("speaker", "corpus"), help="domain-adversarial training"
    )
    parser.add_argument("--adversary-weight", type=float, default=0.3)
    parser.add_argument("--max-clips-per-speaker", type=int, help="a small subset (tests)")
    parser.add_argument("--out", type=Path, help="default: training/runs/screen-<name>.json")
    args = parser.parse_args(argv)
    args.train, args.eval = args.train.split(","), args.eval.split(",")
    args.drop = [name for name in args.drop.split(",") if name]
    problems = [c for c in args.train + args.eval if c not in CORPORA]
    problems += [n for n in args.drop if n not in DEFAULT_SETTINGS.feature_names]
    if problems:
        parser.error(f"unknown corpus or feature: {', '.join(problems)}")
    if set(args.train) & set(args.eval):
        parser.error("a corpus cannot be both trained on and scored")
    for folder in args.data:
        if not folder.is_dir():
            parser.error(f"no such folder: {folder}")
    summary = screen(args)
    out = args.out or ROOT / "training" / "runs" / f"screen-{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    late = summary["late_epochs_mean"]
    log(
        f"{args.name}: second-half epochs "
        + ", ".join(f"{c} {v:.3f}" for c, v in late.items())
        + f"; their averaged predictions {summary['snapshot_average_mean']:.3f} ({out})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
