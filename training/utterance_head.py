"""Training the utterance head (``ser_live.utterance``) and writing it into a model's sidecar.

Its rows are what the engine gives it: each clip analysed as ``ser-live analyze`` does, its
windows' frame statistics heard by the engine's own ``UtteranceTracker``, each training
speaker's clips in a seeded order as one calibrated voice. Every window of a phrase is a
row, weighted so that each corpus, and each emotion within it, counts the same.

    python -m training.utterance_head ../shared/datasets --model models/ser_cnn_int8.tflite
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ser_live import EMOTIONS
from ser_live.features import DEFAULT_SETTINGS
from ser_live.utterance import UtteranceHead, UtteranceTracker, WindowFrames, summary_size
from training import log
from training.config import TrainConfig
from training.corpora import Utterance, find_utterances

#: The voice prior's weight, in phrases: the population's statistics count as this many of
#: the voice's own (a probe with clips held out by corpus: 5 against 2, 10 and 20 was best).
PRIOR_PHRASES = 5.0
#: The head's share of a speech window's probabilities; the networks have the rest.
HEAD_WEIGHT = 0.5
#: Inverse L2 strength of the regression.
REGULARISATION_C = 0.1
#: A label the training corpora lack gets this logit offset: never predicted.
ABSENT_LOGIT = -30.0


Heard = list[WindowFrames] | None  # a clip's classified windows, as the head hears them


def clip_summaries(utterances: list[Utterance]) -> list[Heard]:
    """Each clip's classified windows' frame statistics, in order, as the engine hears the
    clip; None for a clip with no verdict."""
    from ser_live.analysis import EngineOptions, Task, analyze_many

    out: list[Heard] = []
    # Calibrating: the engine then gives each window its frames' statistics.
    options = EngineOptions(calibrate=True)
    for result in analyze_many([Task(Path(u.path)) for u in utterances], options):
        rows = [u.frames for u in result.updates if u.frames is not None]
        out.append(None if result.error or not rows else rows)
    return out


def blank_head(mean: np.ndarray, std: np.ndarray) -> UtteranceHead:
    """A head that answers nothing, with a voice prior: for hearing phrases."""
    n_labels, n_summary = len(EMOTIONS), len(mean)
    return UtteranceHead(
        np.zeros((n_labels, n_summary)), np.zeros(n_labels), mean, std, PRIOR_PHRASES, 1.0
    )


def phrase_summary(windows: list[WindowFrames], hop_s: float) -> np.ndarray:
    """The summary of a clip's last phrase once the engine has heard all of it."""
    n = summary_size(DEFAULT_SETTINGS.n_features)
    tracker = UtteranceTracker(blank_head(np.zeros(n), np.ones(n)), False, hop_s)
    for window in windows:
        tracker.listen(window)
    return tracker.phrase_summary()


def sessions(
    utterances: list[Utterance], indices: list[int], seed: int, one_emotion: bool = False
) -> list[list[int]]:
    """``indices`` by speaker (sorted), each speaker's clips in a seeded order: the order
    ``training.loco.session_probabilities`` hears them in. ``one_emotion``: a session per
    speaker and emotion, a voice that keeps one emotion throughout."""
    rng = np.random.default_rng(seed)
    by_voice: dict[tuple[str, ...], list[int]] = {}
    for i in indices:
        u = utterances[i]
        key = (u.corpus, u.speaker, u.emotion) if one_emotion else (u.corpus, u.speaker)
        by_voice.setdefault(key, []).append(i)
    return [list(rng.permutation(by_voice[key])) for key in sorted(by_voice)]


def voice_prior(
    summaries: list[Heard], utterances: list[Utterance], indices: list[int], hop_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """The population's phrase statistics: the mean clip summary, and the spread of a
    speaker's clip summaries around that speaker's mean, averaged over speakers."""
    clip_means: dict[tuple[str, str], list[np.ndarray]] = {}
    for i in indices:
        if summaries[i] is not None:
            key = (utterances[i].corpus, utterances[i].speaker)
            clip_means.setdefault(key, []).append(phrase_summary(summaries[i], hop_s))
    everything = np.concatenate([np.stack(v) for v in clip_means.values()])
    within = np.mean([np.stack(v).var(axis=0) for v in clip_means.values() if len(v) > 1], axis=0)
    return everything.mean(axis=0), np.sqrt(np.maximum(within, 1e-8))


def heard_rows(
    summaries: list[Heard],
    order: list[list[int]],
    prior: UtteranceHead,
    hop_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """What the head hears of each clip's windows, sessions in ``order``: the z-scored
    phrase summaries ``(n_rows, n)`` and each row's clip index."""
    rows, clips = [], []
    for session in order:
        tracker = UtteranceTracker(prior, True, hop_s)
        for clip in session:
            windows = summaries[clip]
            if windows is None:
                continue
            for window in windows:
                rows.append(tracker.listen(window))
                clips.append(clip)
            tracker.end_phrase()
    return np.array(rows), np.array(clips)


def row_weights(clips: np.ndarray, utterances: list[Utterance]) -> np.ndarray:
    """Each corpus counts the same, each of its emotions the same, each clip the same
    within its emotion, whatever its number of windows."""
    per_clip = np.bincount(clips)
    counts: dict[tuple[str, str], int] = {}
    for c in np.unique(clips):
        key = (utterances[c].corpus, utterances[c].emotion)
        counts[key] = counts.get(key, 0) + 1
    labels_of: dict[str, int] = {}
    for corpus, _ in counts:
        labels_of[corpus] = labels_of.get(corpus, 0) + 1
    weights = np.array(
        [
            1.0
            / (
                per_clip[c]
                * counts[(utterances[c].corpus, utterances[c].emotion)]
                * labels_of[utterances[c].corpus]
            )
            for c in clips
        ]
    )
    return weights * len(weights) / weights.sum()


def fit_head(
    summaries: list[Heard],
    utterances: list[Utterance],
    indices: list[int],
    seed: int,
    hop_s: float,
    weight: float = HEAD_WEIGHT,
    c: float = REGULARISATION_C,
) -> UtteranceHead:
    """A head trained on the clips ``indices`` (their speakers heard as sessions);
    ``hop_s``: the engine's window hop."""
    from sklearn.linear_model import LogisticRegression

    indices = [i for i in indices if summaries[i] is not None]  # no verdict: nothing heard
    mean, std = voice_prior(summaries, utterances, indices, hop_s)
    n_labels, n_summary = len(EMOTIONS), len(mean)
    x, clips = heard_rows(
        summaries, sessions(utterances, indices, seed), blank_head(mean, std), hop_s
    )
    y = np.array([utterances[i].label for i in clips])
    regression = LogisticRegression(C=c, max_iter=5000)
    regression.fit(x, y, sample_weight=row_weights(clips, utterances))
    coef = np.zeros((n_labels, n_summary))
    intercept = np.full(n_labels, ABSENT_LOGIT)
    coef[regression.classes_] = regression.coef_
    intercept[regression.classes_] = regression.intercept_
    return UtteranceHead(coef, intercept, mean, std, PRIOR_PHRASES, weight)


def attach(model: Path, head: UtteranceHead, trained_on: list[Utterance]) -> None:
    """Write ``head`` into ``model``'s sidecar (replacing any it had)."""
    from ser_live.model import ModelSpec, sidecar_path

    path = sidecar_path(model)
    spec = ModelSpec.read(path)
    spec.utterance_head = {
        **head.to_dict(),
        "trained_on": sorted({u.corpus for u in trained_on}),
        "clips": len(trained_on),
    }
    spec.check(path)
    # Written beside and moved into place: an interrupted write leaves the old sidecar.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(spec.to_json())
    partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.utterance_head", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("data", nargs="+", type=Path, help="folders holding the corpora")
    parser.add_argument("--model", type=Path, required=True, help="the model to give a head")
    parser.add_argument("--exclude", default="", help="comma-separated corpora not to train on")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    for folder in args.data:
        if not folder.is_dir():
            print(f"{parser.prog}: error: no such folder: {folder}", file=sys.stderr)
            return 2
    if not args.model.exists():
        print(f"{parser.prog}: error: model not found: {args.model}", file=sys.stderr)
        return 2
    excluded = {c for c in args.exclude.split(",") if c}
    utterances = [u for u in find_utterances(args.data) if u.corpus not in excluded]
    log(f"{len(utterances)} clips; hearing them through the engine")
    summaries = clip_summaries(utterances)
    hop_s = TrainConfig().hop_s
    head = fit_head(summaries, utterances, list(range(len(utterances))), args.seed, hop_s)
    attach(args.model, head, utterances)
    log(f"utterance head written into {args.model.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
