"""Which features tell voices apart more than they tell emotions apart: the only ones
speaker calibration should move (``speaker_calibration.dims``).

Calibration maps a voice's per-feature mean and spread onto the training population's.
On a feature that mostly says *who* speaks (a voice's pitch, its microphone), that removes
the voice and keeps the emotion; on one that mostly says *how* (the level's spread, the
spectrum's movement), it removes the emotion too when a voice keeps one emotion for long.
This measures, for each feature, both effects on clean speech of a network's training
corpora, in the units calibration works in:

- a clip's statistics: each feature's mean over its windows' frames, in the population's
  spreads (the network's standardiser), and the log of its spread;
- **voice effect**: the variance over speakers of each speaker's emotion-balanced average
  (speakers with clips of two emotions or more, so that the average is not one emotion);
- **emotion effect**: over the same speakers, the mean variance over their emotions of
  their per-emotion averages.

``ratio = voice effect / emotion effect``, the mean's and the spread's parts added.
``python -m training.identity_dims RUN DATA`` writes it for each held-out network of a
``training.loco`` run (``RUN/without-C/identity_dims.json``, from the other corpora
only), and ``training.yardstick --identity-dims T`` hears calibration of the features
whose ratio is at least ``T``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from training import log
from training.config import CACHE_DIR, TrainConfig
from training.corpora import UNKNOWN_SPEAKERS, Utterance, find_utterances
from training.trainer import MODEL_NAME

REPORT = "identity_dims.json"


def clip_statistics(
    x: np.ndarray, clip: np.ndarray, n_clips: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each clip's per-feature frame mean and log frame spread over its windows
    (``x``: ``(windows, frames, features)``), and which clips have any window."""
    n_features = x.shape[-1]
    frames = x.reshape(len(x), -1, n_features).astype(np.float64)
    count = np.bincount(clip, minlength=n_clips) * frames.shape[1]
    total = np.zeros((n_clips, n_features))
    squares = np.zeros((n_clips, n_features))
    np.add.at(total, clip, frames.sum(axis=1))
    np.add.at(squares, clip, np.square(frames).sum(axis=1))
    has = count > 0
    n = np.maximum(count, 1)[:, None]
    mean = total / n
    spread = np.sqrt(np.maximum(squares / n - mean**2, 1e-12))
    return mean, np.log(spread), has


def effects(values: np.ndarray, speakers: list[str], emotions: list[str]) -> tuple:
    """Voice and emotion effect (module docstring) of per-clip ``values`` ``(clips, d)``."""
    by_voice: dict[str, dict[str, list[int]]] = {}
    for i, (speaker, emotion) in enumerate(zip(speakers, emotions, strict=True)):
        by_voice.setdefault(speaker, {}).setdefault(emotion, []).append(i)
    balanced, within = [], []
    for per_emotion in by_voice.values():
        if len(per_emotion) < 2:
            continue
        means = np.array([values[idx].mean(axis=0) for idx in per_emotion.values()])
        balanced.append(means.mean(axis=0))
        within.append(means.var(axis=0))
    if len(balanced) < 2:
        raise ValueError("needs two speakers with clips of two emotions or more")
    return np.var(balanced, axis=0), np.mean(within, axis=0)


def identity_ratio(
    utterances: list[Utterance], x: np.ndarray, clip: np.ndarray, population_std: np.ndarray
) -> np.ndarray:
    """Per feature: how much more voices than emotions move what calibration maps."""
    mean, log_spread, has = clip_statistics(x, clip, len(utterances))
    keep = [i for i, u in enumerate(utterances) if has[i] and u.speaker not in UNKNOWN_SPEAKERS]
    speakers = [utterances[i].speaker for i in keep]
    emotions = [utterances[i].emotion for i in keep]
    voice_m, emotion_m = effects(mean[keep] / population_std, speakers, emotions)
    voice_s, emotion_s = effects(log_spread[keep], speakers, emotions)
    return (voice_m + voice_s) / np.maximum(emotion_m + emotion_s, 1e-12)


def dims_at(ratio: list[float] | np.ndarray, threshold: float) -> list[int]:
    """The features calibration moves at ``threshold``."""
    return [int(d) for d in np.flatnonzero(np.asarray(ratio) >= threshold)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.identity_dims", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_dir", type=Path, help="a finished training.loco run")
    parser.add_argument("data", nargs="+", type=Path, help="folders holding the corpora")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=CACHE_DIR,
        help="where the clean windows are cached (default: training/cache)",
    )
    args = parser.parse_args(argv)
    from ser_live.model import load_model
    from training.spec import subset
    from training.windows import extract_windows

    networks = sorted(args.run_dir.glob(f"without-*/{MODEL_NAME}"))
    if not networks:
        parser.error(f"no held-out networks in {args.run_dir}")
    cfg = replace(TrainConfig.load(args.run_dir / "config.json"), n_augment=0)
    utterances = subset(find_utterances(args.data), cfg.max_clips_per_speaker)
    data = extract_windows(utterances, cfg, args.cache_dir)  # clean copies only
    corpus_of = np.array([u.corpus for u in utterances])
    for network in networks:
        held_out = network.parent.name.removeprefix("without-")
        spec = load_model(network).spec
        keep = np.flatnonzero(corpus_of != held_out)
        index = np.full(len(utterances), -1)
        index[keep] = np.arange(len(keep))
        rows = index[data["clip"]] >= 0
        ratio = identity_ratio(
            [utterances[i] for i in keep],
            data["x"][rows],
            index[data["clip"][rows]],
            spec.standardiser.std.astype(np.float64),
        )
        report = {"held_out": held_out, "ratio": [round(float(r), 4) for r in ratio]}
        (network.parent / REPORT).write_text(json.dumps(report) + "\n")
        log(f"without {held_out}: ratio >= 1 on {dims_at(ratio, 1.0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
