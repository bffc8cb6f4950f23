"""prepare → windows → speaker-independent cross-validation → final model → int8 export.

Every run writes ``training/runs/<name>/``: config.json, manifest.csv, exploratory plots,
report.json and report.md, confusion matrices, learning curves, per-utterance predictions,
and the exported model with its sidecar.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ser_live import EMOTIONS, SAMPLE_RATE, __version__
from ser_live.features import DEFAULT_SETTINGS, Standardiser
from ser_live.model import ModelSpec
from training.config import TrainConfig
from training.corpora import Utterance, find_utterances, write_manifest
from training.export import calibration_windows, tflite_predict, to_int8_tflite, write_model
from training.metrics import plot_confusion, plot_curves, scores
from training.models import NEURAL_MODELS, build_svm, utterance_statistics
from training.windows import extract_windows

MODEL_NAME = "ser_cnn_int8.tflite"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------- data


def subset(utterances: list[Utterance], per_speaker: int | None) -> list[Utterance]:
    """At most ``per_speaker`` clips of each speaker, spread evenly over the emotions."""
    if per_speaker is None:
        return utterances
    out: list[Utterance] = []
    by_speaker: dict[str, list[Utterance]] = {}
    for u in utterances:
        by_speaker.setdefault(u.speaker, []).append(u)
    for clips in by_speaker.values():
        by_emotion: dict[str, list[Utterance]] = {}
        for u in clips:
            by_emotion.setdefault(u.emotion, []).append(u)
        rounds = [
            clips_e[i]
            for i in range(max(map(len, by_emotion.values())))
            for clips_e in by_emotion.values()
            if i < len(clips_e)
        ]
        out.extend(rounds[:per_speaker])
    return sorted(out, key=lambda u: u.path)


def ravdess_folds(utterances: list[Utterance], n_folds: int) -> list[list[str]]:
    """Folds of RAVDESS actors, each with as many women as men (actors interleaved)."""
    actors = sorted({u.speaker for u in utterances if u.corpus == "ravdess"})
    male = [a for a in actors if int(a.split("-")[1]) % 2]
    female = [a for a in actors if not int(a.split("-")[1]) % 2]
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    for i, actor in enumerate(male):
        folds[i % n_folds].append(actor)
    for i, actor in enumerate(female):
        folds[i % n_folds].append(actor)
    return [sorted(f) for f in folds if f]


# ----------------------------------------------------------------------------- training


def _setup_tf(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _class_weights(labels: np.ndarray) -> dict[int, float]:
    counts = np.bincount(labels, minlength=len(EMOTIONS)).astype(float)
    weights = counts.sum() / (len(EMOTIONS) * np.maximum(counts, 1))
    return {i: float(w) for i, w in enumerate(weights)}


def train_neural(
    kind: str,
    cfg: TrainConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    checkpoint: Path,
    epochs: int | None = None,
):
    """Train one neural model; with validation data, keep the best epoch."""
    import keras

    _setup_tf(cfg.seed)
    model = NEURAL_MODELS[kind](  # the LSTM ignores the CNN's filter widths
        x_train.shape[1],
        x_train.shape[2],
        len(EMOTIONS),
        cfg.l2,
        cfg.dropout,
        filters=tuple(cfg.cnn_filters),
        pooling=cfg.cnn_pooling,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=["accuracy"],
    )
    callbacks = []
    validation = None
    if x_val is not None and len(x_val):
        validation = (x_val, one_hot(y_val))
        callbacks = [
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
        callbacks = [
            keras.callbacks.LearningRateScheduler(
                lambda epoch, lr: (
                    cfg.learning_rate * (0.5 ** (epoch // max(1, (epochs or cfg.epochs) // 3)))
                )
            )
        ]
    history = model.fit(
        training_batches(x_train, y_train, cfg),
        validation_data=validation,
        epochs=epochs or cfg.epochs,
        callbacks=callbacks,
        verbose=2,
    )
    if validation is None:
        model.save(str(checkpoint))
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    best_epoch = int(np.argmin(hist["val_loss"])) + 1 if "val_loss" in hist else len(hist["loss"])
    return model, hist, best_epoch


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(len(EMOTIONS), dtype=np.float32)[labels]


def training_batches(x: np.ndarray, y: np.ndarray, cfg: TrainConfig):
    """Shuffled, class-weighted training batches, with SpecAugment masks and mixup if set.

    Masks: each window loses up to two time spans of up to 20 frames and one band of up to
    8 features (set to 0, the standardised mean): the model cannot lean on any one moment or
    coefficient, which is what a new speaker or microphone changes. Mixup blends each window
    (and its label and weight) with another window of the batch.
    """
    import keras

    class_weights = _class_weights(y)
    batch_size = cfg.batch_size

    class _Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(cfg.seed)
            self.order = self.rng.permutation(len(x))
            self.sample_weight = np.array([class_weights[int(c)] for c in y], dtype=np.float32)
            self.targets = one_hot(y)

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
            return batch, targets, weights

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(len(x))

    return _Batches()


def clip_probabilities(
    window_probs: np.ndarray, clip_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean window probabilities per clip (as the CLI's file summary computes them)."""
    clips = np.unique(clip_ids)
    probs = np.stack([window_probs[clip_ids == c].mean(axis=0) for c in clips])
    return clips, probs


def clip_statistics(x: np.ndarray, clip: np.ndarray, copy: np.ndarray, mask: np.ndarray):
    """Utterance statistics for the classic baseline: one row per (clip, copy)."""
    keys = sorted(set(zip(clip[mask].tolist(), copy[mask].tolist(), strict=True)))
    rows, clips = [], []
    for c, k in keys:
        frames = x[(clip == c) & (copy == k)].reshape(-1, x.shape[-1])
        rows.append(utterance_statistics(frames[np.newaxis])[0])
        clips.append(c)
    return np.stack(rows), np.asarray(clips)


# ----------------------------------------------------------------------------- steps


def run(
    data_dirs: list[Path],
    run_dir: Path,
    cfg: TrainConfig,
    install_to: Path | None,
    final: bool = True,
) -> dict:
    """One whole run; ``final=False`` stops after cross-validation (for experiments)."""
    started = time.time()
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.json")
    utterances = subset(find_utterances(data_dirs), cfg.max_clips_per_speaker)
    if not utterances:
        raise SystemExit(f"no RAVDESS or TESS clips found under {', '.join(map(str, data_dirs))}")
    write_manifest(utterances, run_dir / "manifest.csv")
    log(f"prepare: {len(utterances)} clips from {len({u.speaker for u in utterances})} speakers")
    from training.plots import exploratory_plots

    exploratory_plots(utterances, run_dir)

    cache_dir = Path(__file__).resolve().parent / "cache"
    data = extract_windows(utterances, cfg, cache_dir)
    x, clip, copy = data["x"], data["clip"], data["copy"]
    labels = np.array([u.label for u in utterances])
    speakers = np.array([u.speaker for u in utterances])
    y = labels[clip]
    win_speaker = speakers[clip]
    log(f"windows: {len(x)} ({int((copy == 0).sum())} clean), shape {x.shape[1:]}")

    folds = ravdess_folds(utterances, cfg.folds)
    tess_speakers = sorted({u.speaker for u in utterances if u.corpus == "tess"})
    results: dict[str, list[dict]] = {m: [] for m in [*cfg.models, "cnn_int8"]}
    histories: dict[str, dict] = {}
    best_epochs: list[int] = []
    prediction_rows: list[list] = []

    for k, test_actors in enumerate(folds):
        held_tess = [tess_speakers[k % len(tess_speakers)]] if len(tess_speakers) > 1 else []
        test_speakers = set(test_actors) | set(held_tess)
        remaining = [
            a
            for a in sorted({s for s in speakers if s.startswith("ravdess")})
            if a not in test_speakers
        ]
        val_speakers = set(
            ravdess_folds([u for u in utterances if u.speaker in remaining], 8)[0][:2]
        )
        train_mask = ~np.isin(win_speaker, list(test_speakers | val_speakers))
        val_mask = np.isin(win_speaker, list(val_speakers)) & (copy == 0)
        test_mask = np.isin(win_speaker, list(test_speakers)) & (copy == 0)
        log(
            f"fold {k + 1}/{len(folds)}: test {sorted(test_speakers)}, "
            f"validation {sorted(val_speakers)}, {int(train_mask.sum())} training windows"
        )
        standardiser = Standardiser.fit(x[train_mask])
        xs = {
            name: standardiser(x[m])
            for name, m in (("train", train_mask), ("val", val_mask), ("test", test_mask))
        }
        fold_dir = run_dir / f"fold{k + 1}"
        fold_dir.mkdir(exist_ok=True)

        def evaluate(
            name: str, window_probs: np.ndarray, fold: int = k, mask: np.ndarray = test_mask
        ) -> None:
            clips, probs = clip_probabilities(window_probs, clip[mask])
            _evaluate_clips(results, prediction_rows, utterances, labels, fold, name, clips, probs)
            rav = np.char.startswith(win_speaker[mask], "ravdess")
            results[name][-1]["window_uar_ravdess"] = scores(
                y[mask][rav], window_probs.argmax(axis=1)[rav]
            )["uar"]

        for name in cfg.models:
            t0 = time.time()
            if name == "svm":
                train_stats, train_clips = clip_statistics(x, clip, copy, train_mask)
                model = build_svm(cfg.seed).fit(train_stats, labels[train_clips])
                test_stats, test_clips = clip_statistics(x, clip, copy, test_mask)
                onehot = np.eye(len(EMOTIONS))[model.predict(test_stats)]
                _evaluate_clips(
                    results, prediction_rows, utterances, labels, k, "svm", test_clips, onehot
                )
            else:
                model, hist, best = train_neural(
                    name,
                    cfg,
                    xs["train"],
                    y[train_mask],
                    xs["val"],
                    y[val_mask],
                    fold_dir / f"{name}_best.keras",
                )
                histories[f"{name} fold {k + 1}"] = hist
                evaluate(name, model.predict(xs["test"], batch_size=256, verbose=0))
                if name == "cnn":
                    best_epochs.append(best)
                    int8 = to_int8_tflite(model, calibration_windows(xs["train"], cfg.seed))
                    evaluate("cnn_int8", tflite_predict(int8, xs["test"]))
            log(
                f"fold {k + 1} {name}: RAVDESS UAR {results[name][-1]['ravdess']['uar']:.3f} "
                f"({time.time() - t0:.0f} s)"
            )
        if "cnn" in cfg.models:
            int8_uar = results["cnn_int8"][-1]["ravdess"]["uar"]
            log(f"fold {k + 1} cnn_int8: RAVDESS UAR {int8_uar:.3f}")

    # ------------------------------------------------------------------ final model
    summary = summarise(results)
    int8, final_epochs = b"", None
    if final:
        final_epochs = max(3, int(np.median(best_epochs))) if best_epochs else cfg.epochs
        log(f"final model: all {len(set(speakers))} speakers, {final_epochs} epochs")
        standardiser = Standardiser.fit(x)
        x_all = standardiser(x)
        model, hist, _ = train_neural(
            "cnn", cfg, x_all, y, None, None, run_dir / "final_cnn.keras", final_epochs
        )
        histories["final cnn"] = hist
        int8 = to_int8_tflite(model, calibration_windows(x_all, cfg.seed))

        spec = model_spec(cfg, standardiser, x.shape[1:], len(x), utterances, final_epochs, summary)
        write_model(run_dir / MODEL_NAME, int8, spec.to_json())
        if install_to is not None:
            write_model(install_to / MODEL_NAME, int8, spec.to_json())
            log(f"installed {install_to / MODEL_NAME} ({len(int8) / 1024:.0f} KiB)")

    # ------------------------------------------------------------------ report
    with open(run_dir / "predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "fold",
                "model",
                "path",
                "corpus",
                "speaker",
                "true",
                "pred",
                *[f"p_{e}" for e in EMOTIONS],
            ]
        )
        writer.writerows(prediction_rows)
    for name, entries in results.items():
        if entries:
            total = np.sum([e["ravdess"]["confusion"] for e in entries], axis=0).tolist()
            plot_confusion(
                total,
                f"{name}: held-out RAVDESS actors, all folds "
                f"(UAR {summary[name]['ravdess_uar_mean']:.3f})",
                run_dir / f"confusion_{name}.png",
            )
    plot_curves(histories, run_dir / "curves.png")
    report = {
        "seconds": round(time.time() - started),
        "model_bytes": len(int8),
        "folds": [sorted(f) for f in folds],
        "summary": summary,
        "results": results,
        "final_epochs": final_epochs,
    }
    (run_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (run_dir / "report.md").write_text(markdown_report(report, cfg))
    if install_to is not None:  # the model card shows these
        card = install_to / "card"
        card.mkdir(exist_ok=True)
        for name in (
            "report.md",
            "report.json",
            "confusion_cnn.png",
            "curves.png",
            "class_counts.png",
        ):
            if (run_dir / name).exists():
                shutil.copy(run_dir / name, card / name)
    log(
        f"done in {report['seconds']} s: "
        + ", ".join(
            f"{m} UAR {s['ravdess_uar_mean']:.3f}"
            for m, s in summary.items()
            if isinstance(s, dict)
        )
    )
    return report


def model_spec(
    cfg: TrainConfig,
    standardiser: Standardiser,
    input_shape: tuple[int, ...],
    n_windows: int,
    utterances: list[Utterance],
    epochs: int,
    summary: dict,
) -> ModelSpec:
    """The sidecar: everything the runtime needs to feed the model as it was trained."""
    return ModelSpec(
        labels=list(EMOTIONS),
        sample_rate=SAMPLE_RATE,
        window_s=cfg.window_s,
        hop_s=cfg.hop_s,
        min_speech_ratio=cfg.min_speech_ratio,
        vad={
            "aggressiveness": cfg.vad_aggressiveness,
            "hangover_frames": cfg.vad_hangover_frames,
            "min_level_db": cfg.vad_min_level_db,
        },
        features=DEFAULT_SETTINGS.to_dict(),
        normalisation={"per_window": "cepstral-mean-and-level", "global": standardiser.to_dict()},
        input_shape=list(input_shape),
        model_version=dt.date.today().isoformat(),
        training={
            "ser_live_version": __version__,
            "corpora": sorted({u.corpus for u in utterances}),
            "clips": len(utterances),
            "speakers": len({u.speaker for u in utterances}),
            "windows": n_windows,
            "epochs": epochs,
            "config": asdict(cfg),
        },
        metrics=summary,
        licence="CC BY-NC-SA 4.0 (trained on RAVDESS, CC BY-NC-SA 4.0, and TESS, CC BY-NC-ND 4.0)",
    )


def _evaluate_clips(results, prediction_rows, utterances, labels, fold, name, clips, probs) -> None:
    pred = probs.argmax(axis=1)
    entry = {"fold": fold + 1}
    for corpus in ("ravdess", "tess"):
        sel = np.array([utterances[c].corpus == corpus for c in clips])
        if sel.any():
            entry[corpus] = scores(labels[clips[sel]], pred[sel])
    results[name].append(entry)
    for c, p in zip(clips, probs, strict=True):
        u = utterances[c]
        prediction_rows.append(
            [
                fold + 1,
                name,
                u.path,
                u.corpus,
                u.speaker,
                u.emotion,
                EMOTIONS[int(p.argmax())],
                *[f"{v:.4f}" for v in p],
            ]
        )


def summarise(results: dict[str, list[dict]]) -> dict:
    summary = {}
    for name, entries in results.items():
        if not entries:
            continue
        rav = [e["ravdess"] for e in entries]
        summary[name] = {
            "ravdess_uar_mean": float(np.mean([r["uar"] for r in rav])),
            "ravdess_uar_std": float(np.std([r["uar"] for r in rav])),
            "ravdess_accuracy_mean": float(np.mean([r["accuracy"] for r in rav])),
            "ravdess_macro_f1_mean": float(np.mean([r["macro_f1"] for r in rav])),
            "ravdess_uar_per_fold": [round(r["uar"], 4) for r in rav],
        }
        tess = [e["tess"] for e in entries if "tess" in e]
        if tess:
            summary[name]["tess_heldout_speaker_uar_mean"] = float(
                np.mean([t["uar"] for t in tess])
            )
        win = [e["window_uar_ravdess"] for e in entries if "window_uar_ravdess" in e]
        if win:
            summary[name]["ravdess_window_uar_mean"] = float(np.mean(win))
    if "cnn" in summary and "cnn_int8" in summary:
        summary["int8_uar_drop_points"] = 100 * (
            summary["cnn"]["ravdess_uar_mean"] - summary["cnn_int8"]["ravdess_uar_mean"]
        )
    return summary


def markdown_report(report: dict, cfg: TrainConfig) -> str:
    s = report["summary"]
    lines = [
        "# Training report",
        "",
        f"Speaker-independent {len(report['folds'])}-fold cross-validation over RAVDESS actors "
        "(each fold holds out its actors and one TESS speaker; two more RAVDESS actors are held "
        "out of training for early stopping). Clip-level scores: the mean of the clip's window "
        "probabilities, as `ser-live analyze --summary` computes them.",
        "",
        "| model | RAVDESS UAR (mean ± sd) | accuracy | macro-F1 | window UAR "
        "| held-out TESS speaker UAR |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in s.items():
        if not isinstance(m, dict):
            continue
        lines.append(
            f"| {name} | {m['ravdess_uar_mean']:.3f} ± {m['ravdess_uar_std']:.3f} | "
            f"{m['ravdess_accuracy_mean']:.3f} | {m['ravdess_macro_f1_mean']:.3f} | "
            f"{m.get('ravdess_window_uar_mean', float('nan')):.3f} | "
            f"{m.get('tess_heldout_speaker_uar_mean', float('nan')):.3f} |"
        )
    if "int8_uar_drop_points" in s:
        lines += ["", f"int8 vs float CNN: UAR drop {s['int8_uar_drop_points']:.2f} points."]
    lines += [
        "",
        f"Folds (test actors): {report['folds']}",
        "",
        f"Final model: {report['final_epochs']} epochs on all speakers; "
        f"{report['model_bytes'] / 1024:.0f} KiB; run took {report['seconds']} s."
        if report["final_epochs"]
        else f"Cross-validation only (no final model); run took {report['seconds']} s.",
        "",
    ]
    return "\n".join(lines)
