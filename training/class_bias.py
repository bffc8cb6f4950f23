"""An experiment on the yardstick's kept verdicts: per-class offsets on the log
probabilities (a learnt logit adjustment), chosen leave-one-corpus-out.

``python -m training.class_bias RUN_DIR DATA`` reads what ``training.yardstick`` kept
(``RUN_DIR/yardstick/CORPUS/heard.npz``: every held-out clip's verdict under each
calibration gate and way of hearing). For each corpus it fits one offset per emotion on
the *other* corpora (coordinate ascent on their mean UAR, each over its own labels), then
scores that corpus once with them, beside no offsets. Balanced losses make the training
prior flat, so the textbook adjustment (minus the log training prior) is zero here; what
is left to learn is how the networks' scale of each emotion carries to unknown corpora.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ser_live import EMOTIONS
from training.corpora import find_utterances
from training.yardstick import HEARINGS

#: The offsets tried for each emotion, in natural-log units (a factor of 0.22 to 4.5).
STEPS = np.arange(-1.5, 1.51, 0.25)
PASSES = 3


def uar(log_p: np.ndarray, truth: np.ndarray, labels: list[int], bias: np.ndarray) -> float:
    """UAR over ``labels`` (emotion indices) of verdicts ``log_p + bias``; NaN rows (no
    verdict) are wrong."""
    scores = log_p[:, labels] + bias[labels]
    predicted = np.asarray(labels)[np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=1)]
    predicted[np.isnan(scores).any(axis=1)] = -1
    return float(np.mean([np.mean(predicted[truth == k] == k) for k in labels]))


def fit(data: list[tuple[np.ndarray, np.ndarray, list[int]]]) -> np.ndarray:
    """Offsets (the first emotion's fixed at 0) that maximise the mean UAR over ``data``."""
    bias = np.zeros(len(EMOTIONS))

    def mean(b: np.ndarray) -> float:
        return float(np.mean([uar(p, t, labels, b) for p, t, labels in data]))

    best = mean(bias)
    for _ in range(PASSES):
        improved = False
        for k in range(1, len(EMOTIONS)):
            for step in STEPS:
                trial = bias.copy()
                trial[k] = step
                value = mean(trial)
                if value > best + 1e-9:
                    best, bias, improved = value, trial, True
        if not improved:
            break
    return bias


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.class_bias")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("data", nargs="+", type=Path)
    parser.add_argument("--gate", default="0.6", help="the calibration gate's verdicts (0.6)")
    args = parser.parse_args(argv)
    kept = sorted((args.run_dir / "yardstick").glob("*/heard.npz"))
    if not kept:
        parser.error(f"no yardstick verdicts under {args.run_dir}/yardstick")
    utterances = find_utterances(args.data)
    corpora: dict[str, dict] = {}
    for path in kept:
        corpus = path.parent.name
        clips = {u.path: u.emotion for u in utterances if u.corpus == corpus}
        with np.load(path) as data:
            truth = np.array([EMOTIONS.index(clips[p]) for p in data["paths"]])
            heard = {h: np.log(np.maximum(data[f"{args.gate}|{h}|a"], 1e-9)) for h in HEARINGS}
        corpora[corpus] = {
            "truth": truth,
            "labels": sorted(set(truth.tolist())),
            "heard": heard,
        }
    rows = {}
    for held_out in corpora:
        others = [c for c in corpora if c != held_out]
        bias = fit(
            [
                (corpora[c]["heard"]["alone"], corpora[c]["truth"], corpora[c]["labels"])
                for c in others
            ]
        )
        mine = corpora[held_out]
        rows[held_out] = {
            "bias": dict(zip(EMOTIONS, np.round(bias, 2).tolist(), strict=True)),
            **{
                h: {
                    "without": uar(mine["heard"][h], mine["truth"], mine["labels"], np.zeros(7)),
                    "with": uar(mine["heard"][h], mine["truth"], mine["labels"], bias),
                }
                for h in HEARINGS
            },
        }
    lines = [
        "| corpus | offsets (log, fitted without it) | "
        + " | ".join(f"{h}: without → with" for h in HEARINGS)
        + " |",
        "| --- | --- | " + " | ".join("---" for _ in HEARINGS) + " |",
    ]
    for corpus, row in rows.items():
        offsets = ", ".join(f"{e} {v:+.2f}" for e, v in row["bias"].items() if v)
        cells = " | ".join(f"{row[h]['without']:.3f} → {row[h]['with']:.3f}" for h in HEARINGS)
        lines.append(f"| {corpus} | {offsets or 'none'} | {cells} |")
    means = " | ".join(
        f"{np.mean([r[h]['without'] for r in rows.values()]):.3f} → "
        f"{np.mean([r[h]['with'] for r in rows.values()]):.3f}"
        for h in HEARINGS
    )
    lines.append(f"| mean | | {means} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (args.run_dir / "class_bias.md").write_text(text)
    (args.run_dir / "class_bias.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
