"""Scoring a model on clips as users hear them, every clip through the engine: alone (as
``analyze`` scores a file), or as calibrated sessions (``PROTOCOLS``): each known
speaker's clips as one voice ("mixed"), or each speaker's clips of one emotion as one
voice ("one-emotion"). Closed-set over the clips' labels; no verdict counts as wrong.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ser_live import EMOTIONS
from training.corpora import Utterance

if TYPE_CHECKING:
    from ser_live.analysis import FileResult


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


def heard(
    model: Path,
    utterances: list[Utterance],
    protocol: str = "alone",
    second_opinion: Path | None = None,
    seed: int = 0,
) -> list[FileResult]:
    """Every clip through the engine, in ``utterances``' order: ``"alone"`` as ``analyze``
    hears a file, or as a calibrated protocol hears it (``PROTOCOLS``): each session's
    clips (``calibrated_sessions``) in a seeded random order through one engine whose
    speaker calibration carries on from clip to clip, as ``ser-live analyze
    --voice-per-folder`` hears a folder of one speaker's recordings listed in that order.
    A clip whose speaker is not known (``Utterance.voice_known``) has no voice to
    calibrate to: it is heard alone. ``second_opinion``: its verdicts of each phrase are
    fused in, as ``analyze`` does by default."""
    from ser_live.analysis import EngineOptions, Task, analyze_many

    if protocol == "alone":
        sessions, unknown = [], list(range(len(utterances)))
    else:
        sessions, unknown = calibrated_sessions(utterances, range(len(utterances)), seed, protocol)
    out: list = [None] * len(utterances)
    if sessions:
        tasks = [
            Task(Path(utterances[i].path), voice=f"session {k}")
            for k, session in enumerate(sessions)
            for i in session
        ]
        order = [i for session in sessions for i in session]
        options = EngineOptions(model, calibrate=True, second_opinion=second_opinion)
        for i, result in zip(order, analyze_many(tasks, options), strict=True):
            out[i] = result
    if unknown:
        options = EngineOptions(model, second_opinion=second_opinion)
        tasks = [Task(Path(utterances[i].path)) for i in unknown]
        for i, result in zip(unknown, analyze_many(tasks, options), strict=True):
            out[i] = result
    return out


def summaries(results: list[FileResult]) -> list[np.ndarray | None]:
    """Each clip's verdict as ``analyze --summary`` gives it (None: no verdict)."""
    return [None if r.error else r.speech_probabilities for r in results]


def clip_probabilities(
    model: Path, utterances: list[Utterance], second_opinion: Path | None = None
) -> list[np.ndarray | None]:
    """Every clip alone through the engine, as ``analyze --summary`` scores a file."""
    return summaries(heard(model, utterances, "alone", second_opinion))


def session_probabilities(
    model: Path,
    utterances: list[Utterance],
    seed: int = 0,
    protocol: str = "mixed",
    second_opinion: Path | None = None,
) -> list[np.ndarray | None]:
    """Every clip as a calibrated protocol hears it (``heard``)."""
    return summaries(heard(model, utterances, protocol, second_opinion, seed))


def score_model(
    model: Path,
    utterances: list[Utterance],
    protocol: str = "alone",
    seen: bool = False,
    second_opinion: Path | None = None,
) -> dict:
    """Scores of ``model`` on every clip of ``utterances``, each clip ``"alone"`` or as
    calibrated sessions of a ``PROTOCOLS`` protocol; ``seen``: the model (or its member)
    trained on these clips, so they are not held out."""
    probabilities = summaries(heard(model, utterances, protocol, second_opinion))
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


def mean_uar(entries: dict, held_out_only: bool) -> float:
    values = [e["uar"] for e in entries.values() if not (held_out_only and e.get("seen"))]
    return float(np.mean(values)) if values else float("nan")
