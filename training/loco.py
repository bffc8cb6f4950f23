"""Leave-one-corpus-out: how the model does on a corpus, language and microphone it never heard.

For each corpus: train on the others, export the int8 model with its sidecar, and score
every clip of the held-out corpus exactly as ``ser-live analyze --summary`` does (the
engine on the file: the mean of its speech windows' probabilities, short clips padded).
The score is closed-set over the labels the corpus has (the argmax among them) and every
clip counts: a clip the analysis refuses or finds no speech in counts as wrong. The
headline is the mean unweighted average recall (UAR) over the corpora.

``--baseline MODEL`` scores an existing model the same way on every corpus (the corpora
it was trained on are marked: those are not held out). ``--install`` also trains the
shipped model on every corpus (a few speakers of each kept for early stopping) and
installs it.

    python -m training.loco ../shared/datasets --baseline models/ser_cnn_int8.tflite
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ser_live import EMOTIONS
from ser_live.features import Standardiser
from ser_live.model import DEFAULT_MODEL
from training import log
from training.config import TrainConfig
from training.corpora import CORPORA, LANGUAGES, Utterance, find_utterances, write_manifest
from training.speaker_norm import GroupStats

ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = DEFAULT_MODEL.name
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


def label_sets(utterances: list[Utterance]) -> np.ndarray:
    """Per clip, the emotions its corpus has: ``(n_clips, len(EMOTIONS))`` booleans."""
    has: dict[str, set[int]] = {}
    for u in utterances:
        has.setdefault(u.corpus, set()).add(u.label)
    return np.array([[i in has[u.corpus] for i in range(len(EMOTIONS))] for u in utterances])


def closed_set_scores(
    true: list[str], probabilities: list[np.ndarray | None], labels: list[str]
) -> dict:
    """UAR, accuracy, per-class recall and confusion over ``labels`` alone; a clip without
    probabilities (refused, or no speech) is wrong."""
    index = [EMOTIONS.index(label) for label in labels]
    predicted = [
        None if p is None else labels[int(np.argmax(np.asarray(p)[index]))] for p in probabilities
    ]
    recall = {}
    for label in labels:
        mine = [pred for t, pred in zip(true, predicted, strict=True) if t == label]
        recall[label] = sum(pred == label for pred in mine) / len(mine) if mine else float("nan")
    confusion = [
        [sum(t == a and pred == b for t, pred in zip(true, predicted, strict=True)) for b in labels]
        for a in labels
    ]
    present = [r for r in recall.values() if r == r]
    return {
        "clips": len(true),
        "labels": labels,
        "uar": float(np.mean(present)) if present else float("nan"),
        "accuracy": float(np.mean([t == p for t, p in zip(true, predicted, strict=True)])),
        "chance": 1.0 / len(labels),
        "recall": recall,
        "confusion": confusion,
        "no_verdict": sum(p is None for p in predicted),
    }


def clip_probabilities(model: Path, utterances: list[Utterance]) -> list[np.ndarray | None]:
    """Every clip of ``utterances`` through the engine, as ``analyze --summary`` does: the
    mean probabilities of its speech windows (None for a clip with no verdict)."""
    from ser_live.analysis import EngineOptions, Task, analyze_many

    results = analyze_many([Task(Path(u.path)) for u in utterances], EngineOptions(model))
    return [None if r.error else r.speech_probabilities for r in results]


#: The calibrated protocols: each known speaker's clips as one voice ("mixed"), or each
#: speaker's clips of one emotion as one voice ("one-emotion": a caller who stays angry).
PROTOCOLS = ("mixed", "one-emotion")


def calibrated_sessions(
    utterances: list[Utterance], indices: Iterable[int], seed: int, protocol: str = "mixed"
) -> tuple[list[list[int]], list[int]]:
    """How a calibrated protocol hears the clips ``indices``: each known speaker's clips
    (``"one-emotion"``: each known speaker's clips of one emotion) as one session, in a
    seeded order (``training.utterance_head.sessions``), and the clips of no known speaker
    (``Utterance.voice_known``), each alone."""
    from training.utterance_head import sessions

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}")
    indices = list(indices)
    known = [i for i in indices if utterances[i].voice_known]
    unknown = [i for i in indices if not utterances[i].voice_known]
    return sessions(utterances, known, seed, one_emotion=protocol == "one-emotion"), unknown


def session_probabilities(
    model: Path, utterances: list[Utterance], seed: int = 0, protocol: str = "mixed"
) -> list[np.ndarray | None]:
    """Every clip as a calibrated live session hears it: each session's clips (see
    ``calibrated_sessions``), in a seeded random order, through one engine whose speaker
    calibration carries on from clip to clip, as ``ser-live analyze --voice-per-folder``
    hears a folder of one speaker's recordings listed in that order. A clip whose speaker
    is not known (``Utterance.voice_known``) has no voice to calibrate to: it is heard
    alone, as ``analyze`` hears a file."""
    from ser_live.analysis import EngineOptions, Task, analyze_many

    known_sessions, unknown = calibrated_sessions(
        utterances, range(len(utterances)), seed, protocol
    )
    tasks = [
        Task(Path(utterances[i].path), voice=f"session {k}")
        for k, session in enumerate(known_sessions)
        for i in session
    ]
    order = [i for session in known_sessions for i in session]
    out: list[np.ndarray | None] = [None] * len(utterances)
    results = analyze_many(tasks, EngineOptions(model, calibrate=True))
    for i, result in zip(order, results, strict=True):
        out[i] = None if result.error else result.speech_probabilities
    if unknown:
        alone = clip_probabilities(model, [utterances[i] for i in unknown])
        for i, probabilities in zip(unknown, alone, strict=True):
            out[i] = probabilities
    return out


def score_model(
    model: Path, utterances: list[Utterance], calibrated: bool = False, seen: bool = False
) -> dict:
    """Scores of ``model`` on every clip of ``utterances`` (``calibrated``: one calibrated
    session per speaker); ``seen``: the model (or its member) trained on these clips, so
    they are not held out."""
    probabilities = (session_probabilities if calibrated else clip_probabilities)(model, utterances)
    return {**scores(utterances, probabilities), "seen": seen}


def scores(utterances: list[Utterance], probabilities: list[np.ndarray | None]) -> dict:
    """Closed-set scores over the clips' own labels, and a prediction row per clip."""
    labels = [e for e in EMOTIONS if any(u.emotion == e for u in utterances)]
    out = closed_set_scores([u.emotion for u in utterances], probabilities, labels)
    out["predictions"] = [
        [u.path, u.emotion, *([""] * len(EMOTIONS) if p is None else [f"{v:.4f}" for v in p])]
        for u, p in zip(utterances, probabilities, strict=True)
    ]
    return out


@dataclass
class PendingModel:
    """A model whose fits are queued: where it goes and what it was trained on."""

    out_dir: Path
    train_mask: np.ndarray
    standardiser: Standardiser
    futures: list
    population: Standardiser | None = None  # speaker-normalised: the raw windows' statistics
    validation_speakers: set[str] = field(default_factory=set)  # kept for early stopping


@dataclass
class Trainer:
    """Queues a model's fits on the shared scheduler, and exports it when they are done."""

    cfg: TrainConfig
    utterances: list[Utterance]
    data: dict[str, np.ndarray]
    windows_file: Path
    scheduler: object
    #: A model (with its sidecar) every exported model carries as its member: its
    #: probabilities are averaged with the new network's (``ModelSpec.members``).
    member: Path | None = None
    #: The windows were speaker-normalised (``training.speaker_norm``) with these statistics.
    speaker_stats: GroupStats | None = None
    #: Every clip's window summaries as the engine hears them: each exported model gets an
    #: utterance head trained on its training clips (``training.utterance_head``).
    head_summaries: list | None = None

    def queue(
        self, name: str, train_mask: np.ndarray, val_mask: np.ndarray | None, out_dir: Path
    ) -> PendingModel:
        from training.jobs import FitJob
        from training.pipeline import member_kind

        x, clip = self.data["x"], self.data["clip"]
        labels = np.array([u.label for u in self.utterances])[clip]
        standardiser = Standardiser.fit(x[train_mask])
        sets = label_sets(self.utterances)[clip] if self.cfg.partial_labels else None
        out_dir.mkdir(parents=True, exist_ok=True)
        futures = []
        for member in range(self.cfg.cnn_members):
            job = FitJob(
                name=f"{name} member {member + 1}",
                kind=member_kind(self.cfg, member),
                cfg=replace(self.cfg, seed=self.cfg.seed + member),
                windows=self.windows_file,
                standardiser=standardiser,
                train=np.flatnonzero(train_mask),
                y_train=labels[train_mask],
                checkpoint=out_dir / f"member{member + 1}.keras",
                val=None if val_mask is None else np.flatnonzero(val_mask),
                y_val=None if val_mask is None else labels[val_mask],
                label_sets=None if sets is None else sets[train_mask],
                val_label_sets=None if sets is None or val_mask is None else sets[val_mask],
            )
            futures.append(self.scheduler.submit(job, priority=0))
        population = (
            None if self.speaker_stats is None else self.speaker_stats.population(train_mask)
        )
        validation = (
            set()
            if val_mask is None
            else {self.utterances[c].speaker for c in np.unique(clip[val_mask])}
        )
        return PendingModel(out_dir, train_mask, standardiser, futures, population, validation)

    def export(self, pending: PendingModel, metrics: dict) -> tuple[Path, list[int]]:
        """Wait for the fits, average them into one int8 model, write it with its sidecar."""
        import keras

        from training.export import calibration_windows, to_int8_tflite, write_model
        from training.neural import average_of
        from training.pipeline import model_spec

        done = [f.result() for f in pending.futures]
        # compile=False: a partial-label fit's loss is a plain function, not needed here.
        models = [keras.models.load_model(r.job.checkpoint, compile=False) for r in done]
        x, train_mask = self.data["x"], pending.train_mask
        rows = calibration_windows(np.flatnonzero(train_mask), self.cfg.seed)
        int8 = to_int8_tflite(average_of(models), pending.standardiser(x[rows]))
        trained_on = [self.utterances[c] for c in np.unique(self.data["clip"][train_mask])]
        epochs = {r.job.kind: r.best_epoch for r in done}
        spec = model_spec(
            self.cfg,
            pending.standardiser,
            x.shape[1:],
            int(train_mask.sum()),
            trained_on,
            epochs,
            metrics,
            pending.population,
        )
        spec.voice_shifts = []  # scored without: the engine's default path
        if self.member is not None:
            for source in (self.member, self.member.with_suffix(".json")):
                shutil.copy(source, pending.out_dir / source.name)
            spec.members = [self.member.name]
        write_model(pending.out_dir / MODEL_NAME, int8, spec.to_json())
        if self.head_summaries is not None:
            from training.utterance_head import attach, fit_head

            # Every clip of the speakers the network heard, those it kept for early
            # stopping too (the head needs none): the final model's head is then the one
            # ``python -m training.utterance_head`` fits on all the data.
            heard = {u.speaker for u in trained_on} | pending.validation_speakers
            clips = [i for i, u in enumerate(self.utterances) if u.speaker in heard]
            head = fit_head(
                self.head_summaries, self.utterances, clips, self.cfg.seed, self.cfg.hop_s
            )
            attach(pending.out_dir / MODEL_NAME, head, [self.utterances[i] for i in clips])
        return pending.out_dir / MODEL_NAME, [r.best_epoch for r in done]


#: The report's rows: each clip alone (as ``analyze --summary``), and with ``--calibrated``
#: one calibrated session per speaker.
ROWS = ("baseline", "baseline_calibrated", "loco", "loco_calibrated")


def markdown(report: dict) -> str:
    lines = [
        "# Leave-one-corpus-out",
        "",
        "Closed-set UAR over each held-out corpus's own labels, every clip counted "
        "(a clip with no verdict is wrong); clips scored by the engine as "
        "`ser-live analyze --summary` scores them. Calibrated rows: each speaker's clips "
        "as one calibrated session, as `analyze --summary --voice-per-folder` hears a "
        "folder of one speaker's recordings; a clip of no known speaker (EmoSpeech's "
        '"unknown user") alone.',
        "",
    ]
    rows = [r for r in ROWS if r in report]
    if not rows:
        return "\n".join(lines + folds_markdown(report)) + "\n"
    lines.append("The mean is over the corpora each model did not train on.")
    lines.append("")
    head = "| model | " + " | ".join(report["corpora"]) + " | mean |"
    lines += [head, "| --- " * (len(report["corpora"]) + 2) + "|"]
    for row in rows:
        cells = []
        for corpus in report["corpora"]:
            entry = report[row].get(corpus)
            if entry is None:
                cells.append("–")
                continue
            seen = " (trained on it)" if entry.get("seen") else ""
            cells.append(f"{entry['uar']:.3f}{seen}")
        mean = report.get(f"{row}_mean_held_out", report[f"{row}_mean"])
        name = report.get(f"{row}_name", row)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean:.3f} |")
    lines += [
        "",
        "| corpus | language | labels | clips | chance |",
        "| --- | --- | --- | --- | --- |",
    ]
    any_row = report[rows[0]]
    for corpus in report["corpora"]:
        entry = any_row.get(corpus)
        if entry:
            lines.append(
                f"| {corpus} | {LANGUAGES[corpus]} | {', '.join(entry['labels'])} | "
                f"{entry['clips']} | {entry['chance']:.3f} |"
            )
    for row in rows:
        lines += ["", f"## Per-class recall: {report.get(row + '_name', row)}", ""]
        for corpus in report["corpora"]:
            entry = report[row].get(corpus)
            if entry:
                recalls = ", ".join(f"{k} {v:.2f}" for k, v in entry["recall"].items())
                lines.append(f"- {corpus}: {recalls} (no verdict: {entry['no_verdict']})")
    return "\n".join(lines + folds_markdown(report)) + "\n"


def folds_markdown(report: dict) -> list[str]:
    folds = report.get("folds")
    if not folds:
        return []
    recalls = ", ".join(f"{k} {v:.2f}" for k, v in folds["recall"].items())
    return [
        "",
        f"## Second figure: {folds['corpus']} speakers held out ({folds['folds']} folds)",
        "",
        f"Each fold trained on every training corpus except 1/{folds['folds']} of "
        f"{folds['corpus']}'s speakers, and scored on those speakers' clips.",
        "",
        f"- UAR {folds['uar_mean']:.3f} ± {folds['uar_std']:.3f} "
        f"(folds: {', '.join(f'{u:.3f}' for u in folds['uar_per_fold'])}; chance "
        f"{folds['chance']:.3f}; {folds['clips']} clips)",
        f"- recall: {recalls}",
    ]


def install(model: Path) -> None:
    """The model, its members and their sidecars into ``models/``."""
    from ser_live.model import ModelSpec

    names = [model.name, *ModelSpec.read(model.with_suffix(".json")).members]
    for name in names:
        for source in (model.parent / name, (model.parent / name).with_suffix(".json")):
            shutil.copy(source, ROOT / "models" / source.name)
    log(f"installed models/{model.name} ({model.stat().st_size / 1024:.0f} KiB) with {names[1:]}")


def mean_uar(entries: dict, held_out_only: bool) -> float:
    values = [e["uar"] for e in entries.values() if not (held_out_only and e.get("seen"))]
    return float(np.mean(values)) if values else float("nan")


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
    parser.add_argument("--config", type=Path, help="a config.json to start from")
    parser.add_argument("--epochs", type=int, help="most epochs per fit (early stopping decides)")
    parser.add_argument("--augment", type=int, help="augmented copies per training clip")
    parser.add_argument("--members", type=int, help="networks averaged per model")
    parser.add_argument(
        "--partial-labels",
        action="store_true",
        help="take each window's loss over the emotions its corpus has (see TrainConfig)",
    )
    parser.add_argument(
        "--speaker-normalise",
        action="store_true",
        help="train on windows z-scored with each speaker's own statistics; the model "
        "then always hears a voice through speaker calibration (see TrainConfig)",
    )
    parser.add_argument(
        "--utterance-head",
        action="store_true",
        help="give every model an utterance head trained on its training clips "
        "(ser_live.utterance): each phrase heard against the voice's other phrases",
    )
    parser.add_argument(
        "--score-only",
        help="comma-separated corpora that are scored but never trained on (default: the "
        "config's score_only_corpora; '' for none)",
    )
    parser.add_argument("--max-clips-per-speaker", type=int, help="a small subset (tests)")
    parser.add_argument(
        "--copies",
        type=int,
        help="train on the clean copy and this many augmented ones (default: all extracted)",
    )
    parser.add_argument(
        "--window-stride",
        type=int,
        default=1,
        help="train on every Nth window of a clip (neighbours overlap by 75%%; default 1)",
    )
    parser.add_argument(
        "--speaker-folds",
        metavar="CORPUS:K",
        help="the second figure: K fits, each trained on every corpus but 1/K of CORPUS's "
        "speakers, scored on those speakers' clips (e.g. ravdess:4)",
    )
    parser.add_argument(
        "--no-loco",
        action="store_true",
        help="skip the held-out-corpus fits (with --install alone: just the shipped model)",
    )
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
        help="also score every model as one calibrated session per speaker "
        "(ser_live.calibration), beside each clip alone",
    )
    parser.add_argument("--baseline-only", action="store_true", help="score --baseline only")
    parser.add_argument(
        "--install", action="store_true", help="train on every corpus and install the model"
    )
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
    if args.baseline_only and not args.baseline:
        parser.error("--baseline-only needs --baseline MODEL")
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
    if args.speaker_normalise:
        cfg.speaker_normalise = True
    if args.score_only is not None:
        cfg.score_only_corpora = corpus_list(parser, "--score-only", args.score_only)
    for name, value in (
        ("epochs", args.epochs),
        ("n_augment", args.augment),
        ("cnn_members", args.members),
        ("max_clips_per_speaker", args.max_clips_per_speaker),
    ):
        if value is not None:
            setattr(cfg, name, value)
    run_dir = args.run_dir or ROOT / "training" / "runs" / time.strftime("loco-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.json")

    from training.pipeline import subset

    utterances = subset(find_utterances(args.data), cfg.max_clips_per_speaker)
    corpora = [c for c in CORPORA if any(u.corpus == c for u in utterances)]
    write_manifest(utterances, run_dir / "manifest.csv")
    log(
        f"{len(utterances)} clips: "
        + ", ".join(f"{c} {sum(u.corpus == c for u in utterances)}" for c in corpora)
    )
    of = {c: [u for u in utterances if u.corpus == c] for c in corpora}
    report: dict = {"corpora": corpora}

    if args.baseline:
        from ser_live.model import load_model

        seen = set(load_model(args.baseline).spec.training.get("corpora", []))
        report["baseline"] = {}
        report["baseline_name"] = f"baseline: {args.baseline.name}"
        for corpus in corpora:
            entry = score_model(args.baseline, of[corpus], seen=corpus in seen)
            report["baseline"][corpus] = entry
            log(
                f"baseline on {corpus}: UAR {entry['uar']:.3f}"
                + (" (seen)" if entry["seen"] else "")
            )
        report["baseline_mean"] = mean_uar(report["baseline"], held_out_only=False)
        report["baseline_mean_held_out"] = mean_uar(report["baseline"], held_out_only=True)
        if args.calibrated:
            row = report["baseline_calibrated"] = {}
            report["baseline_calibrated_name"] = report["baseline_name"] + ", calibrated"
            for corpus in corpora:
                row[corpus] = score_model(
                    args.baseline, of[corpus], calibrated=True, seen=corpus in seen
                )
                log(f"baseline on {corpus}, calibrated: UAR {row[corpus]['uar']:.3f}")
            report["baseline_calibrated_mean"] = mean_uar(row, held_out_only=False)
            report["baseline_calibrated_mean_held_out"] = mean_uar(row, held_out_only=True)

    if not args.baseline_only:
        train_all(
            args, cfg, utterances, corpora, of, run_dir, report, folds, member_corpora, hold_out
        )

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
    from training.speaker_norm import normalise_by_group, speaker_groups
    from training.windows import every_nth_window, extract_windows

    data = extract_windows(utterances, cfg, Path(__file__).resolve().parent / "cache")
    x, clip, copy = data["x"], data["clip"], data["copy"]
    win_corpus = np.array([u.corpus for u in utterances])[clip]
    win_speaker = np.array([u.speaker for u in utterances])[clip]
    # Fewer, less redundant training windows, for a run that must fit a time budget.
    usable = every_nth_window(clip, copy, args.window_stride)
    if args.copies is not None:
        usable &= copy <= args.copies
    log(f"windows: {len(x)} ({int((copy == 0).sum())} clean)")
    speaker_stats = None
    if cfg.speaker_normalise:
        speaker_stats = normalise_by_group(x, speaker_groups(win_speaker, copy))
        log("windows speaker-normalised")
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
                speaker_stats,
                head_summaries,
            )
            pending: dict[str, PendingModel] = {}
            # The shipped model (all corpora, a few speakers kept for early stopping) is
            # queued with the held-out fits, so that it does not wait for all of them. Held
            # out, a corpus that is only scored leaves the training set whole: that fit is
            # the shipped model, trained once.
            trainable = usable & ~np.isin(win_corpus, cfg.score_only_corpora)

            def masks(held: np.ndarray, val: set[str]) -> tuple[np.ndarray, np.ndarray | None]:
                """Training windows (neither held out nor validation) and the validation
                speakers' clean windows (None if there are none)."""
                is_val = np.isin(win_speaker, list(val))
                val_mask = is_val & (copy == 0) & trainable
                return trainable & ~held & ~is_val, val_mask if val_mask.any() else None

            held_out = (
                [] if args.no_loco else [c for c in corpora if hold_out is None or c in hold_out]
            )
            for corpus in [*held_out, *(["final"] if args.install else [])]:
                train_mask, val_mask = masks(
                    win_corpus == corpus, validation_speakers(utterances, corpus)
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
                    train_mask, val_mask = masks(held, val)
                    name = f"{fold_corpus}-fold{i + 1}"
                    fold_pending.append(
                        (test_speakers, trainer.queue(name, train_mask, val_mask, run_dir / name))
                    )
            for corpus in corpora:
                if corpus not in pending:
                    continue
                model, epochs = trainer.export(pending[corpus], {})
                # A corpus the member heard is not held out.
                entry = score_model(model, of[corpus], seen=corpus in member_corpora)
                report["loco"][corpus] = entry
                log(f"without {corpus}: UAR {entry['uar']:.3f} on {corpus} (best epochs {epochs})")
                if args.calibrated:
                    entry = score_model(
                        model, of[corpus], calibrated=True, seen=corpus in member_corpora
                    )
                    report.setdefault("loco_calibrated", {})[corpus] = entry
                    log(f"without {corpus}, calibrated: UAR {entry['uar']:.3f} on {corpus}")
            if report["loco"]:
                report["loco_mean"] = mean_uar(report["loco"], held_out_only=True)
                log(f"LOCO mean UAR {report['loco_mean']:.3f}")
                if "loco_calibrated" in report:
                    report["loco_calibrated_name"] = report["loco_name"] + ", calibrated"
                    report["loco_calibrated_mean"] = mean_uar(
                        report["loco_calibrated"], held_out_only=True
                    )
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
