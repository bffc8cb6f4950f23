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
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ser_live import EMOTIONS, SAMPLE_RATE, __version__
from ser_live.calibration import PRIOR_FRAMES
from ser_live.features import DEFAULT_SETTINGS, Standardiser
from ser_live.model import ModelSpec
from training import log
from training.config import TrainConfig
from training.corpora import Utterance, find_utterances, write_manifest
from training.export import calibration_windows, tflite_predict, to_int8_tflite, write_model
from training.jobs import FitJob, FitScheduler
from training.metrics import plot_confusion, plot_curves, scores
from training.models import CNN_ARCHITECTURES, NEURAL_MODELS, build_svm, utterance_statistics
from training.neural import average_of
from training.shifted import extract_shifted, with_shifts
from training.windows import extract_windows

MODEL_NAME = "ser_cnn_int8.tflite"
#: Neural model kinds by the time one fit takes (see ``training.jobs``).
SLOWEST_FIRST = ("cnn2d", "cnn", "lstm")


def urgency(job: FitJob) -> int:
    """A fold fit's scheduling priority: the slower its kind, the sooner it starts."""
    return SLOWEST_FIRST.index(job.kind)


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


def fold_speakers(
    k: int, test_actors: list[str], utterances: list[Utterance]
) -> tuple[set[str], set[str]]:
    """Fold ``k``'s test speakers (its actors and one TESS speaker) and the two actors of
    the training side held out for early stopping."""
    tess = sorted({u.speaker for u in utterances if u.corpus == "tess"})
    test = set(test_actors) | ({tess[k % len(tess)]} if len(tess) > 1 else set())
    remaining = [u for u in utterances if u.corpus == "ravdess" and u.speaker not in test]
    return test, set(ravdess_folds(remaining, 8)[0][:2])


# ----------------------------------------------------------------------------- training


def member_jobs(
    name: str,
    kind: str,
    cfg: TrainConfig,
    seeds: list[int],
    windows: Path,
    standardiser: Standardiser,
    train_mask: np.ndarray,
    y: np.ndarray,
    checkpoint_stem: Path,
    val_mask: np.ndarray | None = None,
) -> list[FitJob]:
    """One fit per seed of the same model on the same windows (the members to average);
    a CNN member takes its architecture from ``cfg.cnn_architectures``."""
    several = len(seeds) > 1
    kinds = [member_kind(cfg, m) if kind == "cnn" else kind for m in range(len(seeds))]
    return [
        FitJob(
            name=f"{name} member {m + 1}" if several else name,
            kind=kinds[m],
            cfg=replace(cfg, seed=seed),
            windows=windows,
            standardiser=standardiser,
            train=np.flatnonzero(train_mask),
            y_train=y[train_mask],
            checkpoint=checkpoint_stem.with_name(
                checkpoint_stem.name + (f"_member{m + 1}" if several else "") + ".keras"
            ),
            val=None if val_mask is None else np.flatnonzero(val_mask),
            y_val=None if val_mask is None else y[val_mask],
        )
        for m, seed in enumerate(seeds)
    ]


def member_kind(cfg: TrainConfig, member: int) -> str:
    """The model kind (see ``NEURAL_MODELS``) of network ``member`` of the average."""
    return CNN_ARCHITECTURES[cfg.cnn_architectures[member % len(cfg.cnn_architectures)]]


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
    shifted = extract_shifted(utterances, cfg, data, cache_dir)
    if cfg.voice_shifts:
        log(f"voice shifts {cfg.voice_shifts} semitones: {len(shifted['x'])} copies to score")

    folds = ravdess_folds(utterances, cfg.folds)
    neural = [m for m in cfg.models if m in NEURAL_MODELS]
    members = [cfg.seed + m for m in range(cfg.cnn_members)]  # one seed per averaged CNN
    results: dict[str, list[dict]] = {m: [] for m in [*cfg.models, "cnn_int8"]}
    if "cnn" in cfg.models and cfg.voice_shifts:  # what the shifts add
        results["cnn_no_shifts"] = []
    if "cnn" in cfg.models and len(members) > 1:  # what each network alone scores
        for m in range(len(members)):
            results[f"cnn_member{m + 1}"] = []
    histories: dict[str, dict] = {}
    prediction_rows: list[list] = []
    int8 = b""

    windows_file = run_dir / "windows.npy"  # the workers memory-map it (see training.jobs)
    np.save(windows_file, x)
    try:
        with FitScheduler(cfg.workers) as scheduler:
            # Every neural fit of every fold is queued at once, the slowest kinds first so
            # that no long fit starts last while the other worker idles ...
            fold_runs, fold_jobs = [], []
            for k, test_actors in enumerate(folds):
                test_speakers, val_speakers = fold_speakers(k, test_actors, utterances)
                train_mask = ~np.isin(win_speaker, list(test_speakers | val_speakers))
                val_mask = np.isin(win_speaker, list(val_speakers)) & (copy == 0)
                test_mask = np.isin(win_speaker, list(test_speakers)) & (copy == 0)
                log(
                    f"fold {k + 1}/{len(folds)}: test {sorted(test_speakers)}, "
                    f"validation {sorted(val_speakers)}, {int(train_mask.sum())} training windows"
                )
                standardiser = Standardiser.fit(x[train_mask])
                fold_dir = run_dir / f"fold{k + 1}"
                fold_dir.mkdir(exist_ok=True)
                fits = {
                    name: member_jobs(
                        f"fold {k + 1} {name}",
                        name,
                        cfg,
                        members if name == "cnn" else [cfg.seed],
                        windows_file,
                        standardiser,
                        train_mask,
                        y,
                        fold_dir / f"{name}_best",
                        val_mask,
                    )
                    for name in neural
                }
                fold_jobs += [job for jobs in fits.values() for job in jobs]
                fold_runs.append((k, train_mask, test_mask, standardiser, fits))
            submitted = {  # in priority order too: the first may start before the rest are in
                job.checkpoint: scheduler.submit(job, priority=urgency(job))
                for job in sorted(fold_jobs, key=urgency)
            }
            for *_, fits in fold_runs:  # each model's jobs -> their futures
                for name, jobs in fits.items():
                    fits[name] = [submitted[job.checkpoint] for job in jobs]

            # ... while the classic baseline trains here ...
            if "svm" in cfg.models:
                for k, train_mask, test_mask, _, _ in fold_runs:
                    t0 = time.time()
                    train_stats, train_clips = clip_statistics(x, clip, copy, train_mask)
                    model = build_svm().fit(train_stats, labels[train_clips])
                    test_stats, test_clips = clip_statistics(x, clip, copy, test_mask)
                    onehot = np.eye(len(EMOTIONS))[model.predict(test_stats)]
                    _evaluate_clips(
                        results, prediction_rows, utterances, labels, k, "svm", test_clips, onehot
                    )
                    log(
                        f"fold {k + 1} svm: RAVDESS UAR {results['svm'][-1]['ravdess']['uar']:.3f} "
                        f"({time.time() - t0:.0f} s)"
                    )

            # ... and each final network goes ahead of the waiting fold fits as soon as
            # every fold's network of its architecture is done: it trains for the median
            # of their best epochs.
            final_fits: list = []
            final_epochs = {}
            if final:
                final_standardiser = Standardiser.fit(x)
                final_jobs = member_jobs(
                    "final cnn",
                    "cnn",
                    cfg,
                    members,
                    windows_file,
                    final_standardiser,
                    np.ones(len(x), dtype=bool),
                    y,
                    run_dir / "final_cnn",
                )
                # Keys in a fixed order for the report and sidecar; each value is set when
                # that architecture's final networks are queued.
                final_epochs = {kind: cfg.epochs for kind in sorted({j.kind for j in final_jobs})}

                def with_median_epochs(job: FitJob, fold_fits: list) -> FitJob:
                    best = [r.best_epoch for r in fold_fits]
                    final_epochs[job.kind] = max(3, int(np.median(best))) if best else cfg.epochs
                    log(f"{job.name} ({job.kind}): all speakers, {final_epochs[job.kind]} epochs")
                    return replace(job, epochs=final_epochs[job.kind])

                final_fits = [
                    scheduler.submit(
                        job,
                        priority=-1,
                        after=[submitted[j.checkpoint] for j in fold_jobs if j.kind == job.kind],
                        prepare=with_median_epochs,
                    )
                    for job in final_jobs
                ]

            import keras

            for k, train_mask, test_mask, standardiser, fits in fold_runs:
                x_test = standardiser(x[test_mask])
                test_rows = np.flatnonzero(test_mask)
                of_test = np.isin(shifted["row"], test_rows)
                x_copies = standardiser(shifted["x"][of_test])
                owner = np.searchsorted(test_rows, shifted["row"][of_test])

                def scored(predict, copies=x_copies, owner=owner, x_test=x_test) -> np.ndarray:
                    """Window probabilities as the engine gives them: with the shifts."""
                    return with_shifts(predict, x_test, copies, owner)

                def evaluate(
                    name: str, window_probs: np.ndarray, fold: int = k, mask: np.ndarray = test_mask
                ) -> None:
                    clips, probs = clip_probabilities(window_probs, clip[mask])
                    _evaluate_clips(
                        results, prediction_rows, utterances, labels, fold, name, clips, probs
                    )
                    rav = np.char.startswith(win_speaker[mask], "ravdess")
                    results[name][-1]["window_uar_ravdess"] = scores(
                        y[mask][rav], window_probs.argmax(axis=1)[rav]
                    )["uar"]
                    uar = results[name][-1]["ravdess"]["uar"]
                    log(f"fold {fold + 1} {name}: RAVDESS UAR {uar:.3f}")

                for name in neural:
                    done = [f.result() for f in fits[name]]
                    histories[f"{name} fold {k + 1}"] = done[0].history
                    models = [keras.models.load_model(r.job.checkpoint) for r in done]
                    member_probs = [
                        scored(lambda a, m=m: m.predict(a, batch_size=256, verbose=0))
                        for m in models
                    ]
                    evaluate(name, np.mean(member_probs, axis=0))
                    if name == "cnn":
                        if cfg.voice_shifts:
                            plain = [m.predict(x_test, batch_size=256, verbose=0) for m in models]
                            evaluate("cnn_no_shifts", np.mean(plain, axis=0))
                        if len(member_probs) > 1:
                            for m, probs in enumerate(member_probs):
                                evaluate(f"cnn_member{m + 1}", probs)
                        calibration = standardiser(
                            x[calibration_windows(np.flatnonzero(train_mask), cfg.seed)]
                        )
                        fold_int8 = to_int8_tflite(average_of(models), calibration)
                        evaluate("cnn_int8", scored(lambda a, f=fold_int8: tflite_predict(f, a)))

            # ---------------------------------------------------------- final model
            summary = summarise(results)
            if final:
                done = [f.result() for f in final_fits]
                log(f"final model: {len(done)} member(s), {final_epochs} epochs")
                histories["final cnn"] = done[0].history
                ensemble = average_of([keras.models.load_model(r.job.checkpoint) for r in done])
                calibration = final_standardiser(
                    x[calibration_windows(np.arange(len(x)), cfg.seed)]
                )
                int8 = to_int8_tflite(ensemble, calibration)

                spec = model_spec(
                    cfg, final_standardiser, x.shape[1:], len(x), utterances, final_epochs, summary
                )
                write_model(run_dir / MODEL_NAME, int8, spec.to_json())
                if install_to is not None:
                    write_model(install_to / MODEL_NAME, int8, spec.to_json())
                    log(f"installed {install_to / MODEL_NAME} ({len(int8) / 1024:.0f} KiB)")
    finally:
        windows_file.unlink(missing_ok=True)

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


#: The licence of each corpus; a model trained on them inherits the non-commercial terms.
CORPUS_LICENCES = {
    "ravdess": "RAVDESS, CC BY-NC-SA 4.0",
    "tess": "TESS, CC BY-NC-ND 4.0",
    "nemo": "nEMO, CC BY-NC-SA 4.0",
    "korean": "emotiontts open db sample, CC BY-NC-SA (research only)",
    "emospeech": "Indian EmoSpeech, CC BY-NC-SA 4.0",
}


def training_licence(corpora: list[str]) -> str:
    return (
        "CC BY-NC-SA 4.0, non-commercial use only (trained on "
        + "; ".join(CORPUS_LICENCES[c] for c in corpora)
        + ")"
    )


def model_spec(
    cfg: TrainConfig,
    standardiser: Standardiser,
    input_shape: tuple[int, ...],
    n_windows: int,
    utterances: list[Utterance],
    epochs: dict[str, int],
    summary: dict,
    population: Standardiser | None = None,
) -> ModelSpec:
    """The sidecar: everything the runtime needs to feed the model as it was trained.
    ``population``: for a network trained on speaker-normalised windows, its training
    windows' statistics before that normalisation (the calibration's prior)."""
    calibration: dict = {"prior_frames": PRIOR_FRAMES}
    if population is not None:
        calibration.update(speaker_normalised=True, population=population.to_dict())
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
            "level_target_db": cfg.vad_level_target_db,
        },
        features=DEFAULT_SETTINGS.to_dict(),
        normalisation={
            "per_window": "cepstral-mean-and-level",
            "speaker_calibration": calibration,
            "global": standardiser.to_dict(),
        },
        input_shape=list(input_shape),
        voice_shifts=list(cfg.voice_shifts),
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
        licence=training_licence(sorted({u.corpus for u in utterances})),
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
        "Final model on all speakers: "
        + ", ".join(f"{kind} {n} epochs" for kind, n in report["final_epochs"].items())
        + f"; {report['model_bytes'] / 1024:.0f} KiB; run took {report['seconds']} s."
        if report["final_epochs"]
        else f"Cross-validation only (no final model); run took {report['seconds']} s.",
        "",
    ]
    return "\n".join(lines)
