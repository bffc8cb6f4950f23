"""Leave-one-corpus-out: for each corpus, train on the others, export the int8 model with
its sidecar, and score every clip of the held-out corpus through the engine, as ``ser-live
analyze`` does (``training.scoring``); a clip without a verdict counts as wrong. The
headline is the mean unweighted average recall over the corpora. ``--baseline MODEL``
scores an existing model the same way; ``--install`` also trains the shipped model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ser_live import EMOTIONS
from training import log
from training.config import CACHE_DIR, TrainConfig
from training.corpora import CORPORA, Utterance, find_utterances, write_manifest
from training.environment import differences, read_constraints, training_libraries
from training.report import ROWS, markdown
from training.scoring import PROTOCOLS, clip_probabilities, mean_uar, score_model, scores
from training.trainer import ROOT, PendingModel, Trainer, install

#: Speakers per training corpus kept out of a fit for early stopping.
VALIDATION_SPEAKERS = {"ravdess": 2, "nemo": 1, "korean": 2}


def validation_speakers(utterances: list[Utterance], held_out: str) -> set[str]:
    """Speakers of the training side kept for early stopping (none of ``held_out``)."""
    out: set[str] = set()
    for corpus, n in VALIDATION_SPEAKERS.items():
        if corpus == held_out:
            continue
        speakers = sorted({u.speaker for u in utterances if u.corpus == corpus})
        if len(speakers) > 2 * n:
            out.update(speakers[:: max(1, len(speakers) // n)][:n])
    return out


def corpus_list(parser: argparse.ArgumentParser, option: str, text: str) -> list[str]:
    """A comma-separated list of corpus names; an unknown name is a usage error."""
    names = [c for c in text.split(",") if c]
    unknown = [c for c in names if c not in CORPORA]
    if unknown:
        parser.error(f"{option}: unknown corpus: {', '.join(unknown)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.loco", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("data", nargs="+", type=Path, help="folders holding the corpora")
    parser.add_argument("--run-dir", type=Path, help="default: training/runs/loco-<date-time>")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=CACHE_DIR,
        help="where the windows are cached (default: training/cache)",
    )
    parser.add_argument("--config", type=Path, help="a config.json to start from")
    parser.add_argument("--epochs", type=int, help="most epochs per fit (early stopping decides)")
    parser.add_argument("--augment", type=int, help="augmented copies per training clip")
    parser.add_argument(
        "--new-voices",
        type=int,
        metavar="N",
        help="up to N more copies, each a new voice, of the clips of a thin emotion",
    )
    parser.add_argument("--members", type=int, help="networks averaged per model")
    parser.add_argument("--partial-labels", action="store_true", help="per-corpus labels")
    parser.add_argument("--utterance-head", action="store_true", help="fit each model's head")
    parser.add_argument("--max-clips-per-speaker", type=int, help="a small subset (tests)")
    parser.add_argument("--window-stride", type=int, default=1, help="every Nth window of a clip")
    parser.add_argument(
        "--speaker-folds",
        metavar="CORPUS:K",
        help="the second figure: K fits, each trained on every corpus but 1/K of CORPUS's "
        "speakers, scored on those speakers' clips (e.g. ravdess:4)",
    )
    parser.add_argument("--no-loco", action="store_true", help="no held-out-corpus fits")
    parser.add_argument(
        "--hold-out",
        help="comma-separated corpora to hold out in turn (default: every corpus; with "
        "--member, those it heard cannot be scored held out and are worth skipping)",
    )
    parser.add_argument("--baseline", type=Path, help="also score this model on every corpus")
    parser.add_argument(
        "--member",
        type=Path,
        help="a model every trained model carries as its member, their probabilities "
        "averaged (a corpus it was trained on is not held out)",
    )
    parser.add_argument(
        "--calibrated",
        action="store_true",
        help="also score every model as calibrated sessions (ser_live.calibration), "
        "beside each clip alone: one per known speaker, and one per speaker and emotion",
    )
    parser.add_argument(
        "--second-opinion",
        type=Path,
        metavar="ONNX",
        help="score with this phrase-level second opinion fused in, as analyze does by "
        "default (ser_live.second_opinion)",
    )
    parser.add_argument("--install", action="store_true", help="train the shipped model")
    args = parser.parse_args(argv)
    for folder in args.data:
        if not folder.is_dir():
            print(f"python -m training.loco: error: no such folder: {folder}", file=sys.stderr)
            return 2
    member_corpora: set[str] = set()  # the --member model heard these: not held out
    if args.member is not None:
        from ser_live.errors import ModelError
        from ser_live.model import load_model

        try:
            member_corpora = set(load_model(args.member).spec.training.get("corpora", []))
        except ModelError as exc:
            parser.error(f"--member: {exc}")
        if args.speaker_folds and args.speaker_folds.partition(":")[0] in member_corpora:
            parser.error("--speaker-folds: the --member model was trained on those speakers")
    hold_out = None
    if args.hold_out is not None:
        hold_out = corpus_list(parser, "--hold-out", args.hold_out)
        if not hold_out:
            parser.error("--hold-out: no corpus given")
        if args.no_loco:
            parser.error("--hold-out and --no-loco contradict each other")
    folds = None
    if args.speaker_folds:
        corpus, _, k = args.speaker_folds.partition(":")
        if corpus not in CORPORA or not k.isdigit() or int(k) < 2:
            parser.error("--speaker-folds takes CORPUS:K, a corpus name and K >= 2")
        folds = (corpus, int(k))
    if args.no_loco and not (folds or args.install):
        parser.error("--no-loco needs --speaker-folds or --install")
    cfg = TrainConfig.load(args.config) if args.config else TrainConfig()
    if args.partial_labels:
        cfg.partial_labels = True
    for name, value in (
        ("epochs", args.epochs),
        ("n_augment", args.augment),
        ("new_voice_copies", args.new_voices),
        ("cnn_members", args.members),
        ("max_clips_per_speaker", args.max_clips_per_speaker),
    ):
        if value is not None:
            setattr(cfg, name, value)
    run_dir = args.run_dir or ROOT / "training" / "runs" / time.strftime("loco-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.json")

    from training.spec import subset

    utterances = subset(find_utterances(args.data), cfg.max_clips_per_speaker)
    corpora = [c for c in CORPORA if any(u.corpus == c for u in utterances)]
    write_manifest(utterances, run_dir / "manifest.csv")
    log(
        f"{len(utterances)} clips: "
        + ", ".join(f"{c} {sum(u.corpus == c for u in utterances)}" for c in corpora)
    )
    of = {c: [u for u in utterances if u.corpus == c] for c in corpora}
    # The versions the networks come from; a rerun elsewhere reproduces them only with
    # the same (make loco installs training/constraints.txt's).
    report: dict = {"corpora": corpora, "libraries": training_libraries()}
    if unpinned := differences(read_constraints(), report["libraries"]):
        log(
            "this environment differs from training/constraints.txt, so the networks will "
            "differ from the model card's: " + "; ".join(unpinned)
        )

    if args.baseline:
        from ser_live.model import load_model

        seen = set(load_model(args.baseline).spec.training.get("corpora", []))
        report["baseline_name"] = f"baseline: {args.baseline.name}"
        for corpus in corpora:
            for row, entry in score_rows(args, args.baseline, of[corpus], corpus in seen):
                report.setdefault(f"baseline{row}", {})[corpus] = entry
                log(f"baseline{row} on {corpus}: UAR {entry['uar']:.3f}")
        for row in ROW_SUFFIXES:
            if f"baseline{row}" in report:
                entries = report[f"baseline{row}"]
                report[f"baseline{row}_mean"] = mean_uar(entries, held_out_only=False)
                report[f"baseline{row}_mean_held_out"] = mean_uar(entries, held_out_only=True)

    train_all(args, cfg, utterances, corpora, of, run_dir, report, folds, member_corpora, hold_out)

    predictions = {}
    for row in ROWS:
        for entry in report.get(row, {}).values():
            predictions.setdefault(row, []).extend(entry.pop("predictions"))
    if "folds" in report:
        predictions["folds"] = report["folds"].pop("predictions")
    for row, rows in predictions.items():
        with open(run_dir / f"predictions_{row}.csv", "w") as f:
            f.write("path,true," + ",".join(f"p_{e}" for e in EMOTIONS) + "\n")
            f.writelines(",".join(r) + "\n" for r in rows)
    (run_dir / "loco.json").write_text(json.dumps(report, indent=1) + "\n")
    (run_dir / "loco.md").write_text(markdown(report))
    log(f"report: {run_dir / 'loco.md'}")
    if args.install and "loco" in report:  # a model card only from a whole report
        card = ROOT / "models" / "card"
        card.mkdir(exist_ok=True)
        for name in ("loco.md", "loco.json"):
            (card / name).write_bytes((run_dir / name).read_bytes())
    return 0


#: Report rows per model: each clip alone, then the calibrated protocols.
ROW_SUFFIXES = {"": "alone", "_calibrated": "mixed", "_one_emotion": "one-emotion"}
assert set(ROW_SUFFIXES.values()) == {"alone", *PROTOCOLS}


def score_rows(args, model: Path, clips: list[Utterance], seen: bool) -> list[tuple[str, dict]]:
    """``model`` scored on ``clips`` each clip alone and, with ``--calibrated``, by each
    calibrated protocol: (row suffix, scores) pairs."""
    wanted = ROW_SUFFIXES if args.calibrated else {"": "alone"}
    return [
        (row, score_model(model, clips, protocol, seen, args.second_opinion))
        for row, protocol in wanted.items()
    ]


def score_folds(trainer, fold_pending, corpus: str, utterances: list[Utterance]) -> dict:
    """Each fold's model on its own held-out speakers' clips; UAR per fold, and recall and
    confusion over every clip of the corpus (each scored by the fold that held it out)."""
    all_clips, all_probabilities, uars = [], [], []
    for i, (test_speakers, pending) in enumerate(fold_pending):
        model, epochs = trainer.export(pending, {})
        clips = [u for u in utterances if u.corpus == corpus and u.speaker in test_speakers]
        probabilities = clip_probabilities(model, clips)
        uars.append(scores(clips, probabilities)["uar"])
        log(f"{corpus} fold {i + 1}: UAR {uars[-1]:.3f} (best epochs {epochs})")
        all_clips += clips
        all_probabilities += probabilities
    pooled = scores(all_clips, all_probabilities)
    pooled.update(
        corpus=corpus,
        folds=len(fold_pending),
        uar_per_fold=[round(u, 4) for u in uars],
        uar_mean=float(np.mean(uars)),
        uar_std=float(np.std(uars)),
    )
    log(f"{corpus} speaker folds: UAR {pooled['uar_mean']:.3f} ± {pooled['uar_std']:.3f}")
    return pooled


def speaker_folds(utterances: list[Utterance], corpus: str, k: int) -> list[set[str]]:
    """``corpus``'s speakers in ``k`` folds, every ``k``-th speaker in sorted order (RAVDESS:
    odd actors are male, even female, so each fold gets both)."""
    speakers = sorted({u.speaker for u in utterances if u.corpus == corpus})
    return [set(speakers[i::k]) for i in range(k)]


def train_all(
    args,
    cfg,
    utterances,
    corpora,
    of,
    run_dir,
    report,
    folds=None,
    member_corpora=frozenset(),
    hold_out=None,
) -> None:
    from training.jobs import FitScheduler
    from training.windows import every_nth_window, extract_windows, thin_class_copies

    clip_labels = np.array([u.label for u in utterances])
    clip_corpus = np.array([u.corpus for u in utterances])
    held_out = [] if args.no_loco else [c for c in corpora if hold_out is None or c in hold_out]
    # Each fit's new voices per emotion, from its own training corpora's clips: the fits
    # without a corpus, and those on all of them (the final model, the speaker folds).
    new_voices = {
        corpus: thin_class_copies(
            clip_labels[clip_corpus != corpus], cfg.n_augment, cfg.new_voice_copies
        )
        for corpus in [*held_out, *(["final"] if args.install or folds else [])]
    }
    wanted = np.max([n[clip_labels] for n in new_voices.values()], axis=0)
    for corpus, n in new_voices.items():
        if n.any():
            log(f"new voices without {corpus}: {dict(zip(EMOTIONS, n.tolist(), strict=True))}")
    data = extract_windows(utterances, cfg, args.cache_dir, wanted)
    x, clip, copy = data["x"], data["clip"], data["copy"]
    win_corpus = np.array([u.corpus for u in utterances])[clip]
    win_speaker = np.array([u.speaker for u in utterances])[clip]
    # Fewer, less redundant training windows, for a run that must fit a time budget.
    usable = every_nth_window(clip, copy, args.window_stride)
    log(f"windows: {len(x)} ({int((copy == 0).sum())} clean)")
    head_summaries = None
    if args.utterance_head:
        from training.utterance_head import clip_summaries

        log("hearing every clip through the engine for the utterance heads")
        head_summaries = clip_summaries(utterances)
    np.save(run_dir / "windows.npy", x)
    report["loco"] = {}
    report["loco_name"] = (
        f"LOCO: {'+'.join(cfg.cnn_architectures[: cfg.cnn_members])}"
        + (" + utterance head" if args.utterance_head else "")
        + (f" with {args.member.name}" if args.member else "")
    )
    try:
        with FitScheduler(cfg.workers) as scheduler:
            trainer = Trainer(
                cfg,
                utterances,
                data,
                run_dir / "windows.npy",
                scheduler,
                args.member,
                head_summaries,
            )
            pending: dict[str, PendingModel] = {}
            # The shipped model (all corpora, a few speakers kept for early stopping) is
            # queued with the held-out fits, so that it does not wait for all of them.
            trainable = usable

            def masks(
                held: np.ndarray, val: set[str], fit: str
            ) -> tuple[np.ndarray, np.ndarray | None]:
                """Training windows (neither held out nor validation, and only the new
                voices the fit ``fit`` wants) and the validation speakers' clean windows
                (None if there are none)."""
                is_val = np.isin(win_speaker, list(val))
                val_mask = is_val & (copy == 0) & trainable
                voices = copy <= cfg.n_augment + new_voices[fit][clip_labels[clip]]
                train_mask = trainable & voices & ~held & ~is_val
                return train_mask, val_mask if val_mask.any() else None

            for corpus in [*held_out, *(["final"] if args.install else [])]:
                train_mask, val_mask = masks(
                    win_corpus == corpus, validation_speakers(utterances, corpus), corpus
                )
                same = [p for p in pending.values() if np.array_equal(p.train_mask, train_mask)]
                if same:
                    pending[corpus] = same[0]
                elif train_mask.any():
                    name = "final" if corpus == "final" else f"without-{corpus}"
                    pending[corpus] = trainer.queue(name, train_mask, val_mask, run_dir / name)
            fold_pending = []
            if folds:  # the second figure: speakers of one corpus held out, the rest in
                fold_corpus, k = folds
                val = validation_speakers(utterances, fold_corpus)  # none of fold_corpus's
                for i, test_speakers in enumerate(speaker_folds(utterances, fold_corpus, k)):
                    held = np.isin(win_speaker, list(test_speakers))
                    train_mask, val_mask = masks(held, val, "final")
                    name = f"{fold_corpus}-fold{i + 1}"
                    fold_pending.append(
                        (test_speakers, trainer.queue(name, train_mask, val_mask, run_dir / name))
                    )
            for corpus in corpora:
                if corpus not in pending:
                    continue
                model, epochs = trainer.export(pending[corpus], {})
                log(f"without {corpus}: best epochs {epochs}")
                # A corpus the member heard is not held out.
                for row, entry in score_rows(args, model, of[corpus], corpus in member_corpora):
                    report.setdefault(f"loco{row}", {})[corpus] = entry
                    log(f"without {corpus}{row}: UAR {entry['uar']:.3f} on {corpus}")
            if report["loco"]:
                for row in ROW_SUFFIXES:
                    if f"loco{row}" in report:
                        report[f"loco{row}_mean"] = mean_uar(report[f"loco{row}"], True)
                log(f"LOCO mean UAR {report['loco_mean']:.3f}")
            else:
                del report["loco"]
            if fold_pending:
                report["folds"] = score_folds(trainer, fold_pending, folds[0], utterances)
            if "final" in pending:
                metrics = {}
                if "loco" in report:
                    metrics["loco_uar"] = {c: round(e["uar"], 4) for c, e in report["loco"].items()}
                    metrics["loco_mean_uar"] = round(report["loco_mean"], 4)
                if "folds" in report:
                    metrics[f"{report['folds']['corpus']}_speaker_folds_uar"] = round(
                        report["folds"]["uar_mean"], 4
                    )
                model, epochs = trainer.export(pending["final"], metrics)
                log(f"final model: best epochs {epochs}, {model}")
                report["final_best_epochs"] = epochs
                install(model)
    finally:
        (run_dir / "windows.npy").unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
