"""How a leave-one-corpus-out run's held-out models hold up through recording channels.

``python -m training.loco_robustness RUN_DIR DATA... [--calibrated]`` passes every clip of
each held-out corpus through one channel at a time (phone line, codecs, noise, a room,
level: ``training.channels``) and scores it as the run did. The clean condition
reproduces the run's own scores. Writes ``robustness[_calibrated].{json,md}`` in the run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.channels import CONDITIONS, add_conditions_option, chosen_conditions, rms
from training.config import TrainConfig
from training.corpora import Utterance, find_utterances
from training.windows import one_blas_thread

MODEL_NAME = "ser_cnn_int8.tflite"

#: (the clip's index, its path, the seed of its channel's noise and room)
Clip = tuple[int, str, int]

_engines: dict = {}


def _hear(task: tuple[str, bool, str, list[Clip]]) -> list[tuple[int, np.ndarray | None]]:
    """A run of clips (one speaker's when calibrated, else one clip) through the channel
    ``condition`` and one engine, the calibration carrying on within the run, each
    analysed as ``ser-live analyze`` analyses a file of it (``analyze_samples``); each
    clip's summary probabilities (None: no verdict)."""
    from ser_live.analysis import EngineOptions, analyze_samples
    from ser_live.audio_io import load_audio
    from ser_live.errors import SerLiveError

    model, calibrate, condition, clips = task
    key = (model, calibrate)
    if key not in _engines:
        _engines[key] = EngineOptions(Path(model), calibrate=calibrate).build()
    engine = _engines[key]
    channel = CONDITIONS[condition][1]
    out = []
    for k, (index, path, seed) in enumerate(clips):
        try:
            clip = load_audio(path)
        except SerLiveError:
            out.append((index, None))
            continue
        heard = channel(clip, rms(clip), np.random.default_rng(seed))
        heard = np.clip(heard, -1.0, 1.0).astype(np.float32)
        result = analyze_samples(heard, path, engine, keep_calibration=k > 0)
        out.append((index, None if result.error else result.speech_probabilities))
    return out


def runs_of(
    utterances: list[Utterance], indices: list[int], calibrated: bool, seed: int
) -> list[tuple[bool, list[Clip]]]:
    """The clips ``indices`` as the run heard them, each run with whether its engine
    calibrates: each clip alone, or (``calibrated``) as ``training.loco``'s calibrated
    protocol hears them (``calibrated_sessions``)."""
    from training.scoring import calibrated_sessions

    if calibrated:
        known_sessions, unknown = calibrated_sessions(utterances, indices, 0)
    else:
        known_sessions, unknown = [], indices
    runs = [(True, s) for s in known_sessions] + [(False, [i]) for i in unknown]
    return [(c, [(i, str(utterances[i].path), seed + i) for i in run]) for c, run in runs]


def evaluate(run_dir: Path, data_dirs: list[Path], conditions: list[str], calibrated: bool) -> dict:
    from training.scoring import scores

    cfg = TrainConfig.load(run_dir / "config.json")
    utterances = find_utterances(data_dirs)
    held_out = sorted(
        d.name.removeprefix("without-")
        for d in run_dir.glob("without-*")
        if (d / MODEL_NAME).is_file()
    )
    out: dict[str, dict] = {}
    with mp.get_context("spawn").Pool(cfg.workers, one_blas_thread) as pool:
        for condition in conditions:
            result: dict = {"description": CONDITIONS[condition][0], "corpora": {}}
            for corpus in held_out:
                indices = [i for i, u in enumerate(utterances) if u.corpus == corpus]
                if not indices:
                    continue
                model = str(run_dir / f"without-{corpus}" / MODEL_NAME)
                tasks = [
                    (model, calibrate, condition, run)
                    for calibrate, run in runs_of(utterances, indices, calibrated, cfg.seed)
                ]
                heard: dict[int, np.ndarray | None] = {}
                for part in tqdm(
                    pool.imap_unordered(_hear, tasks, chunksize=4),
                    total=len(tasks),
                    desc=f"{condition}: {corpus}",
                    leave=False,
                ):
                    heard.update(part)
                s = scores([utterances[i] for i in indices], [heard[i] for i in indices])
                result["corpora"][corpus] = {k: s[k] for k in ("uar", "recall", "no_verdict")}
            out[condition] = result
    return {"run": run_dir.name, "calibrated": calibrated, "conditions": out}


def _cell(value: float, clean: float | None) -> str:
    return f"{value:.3f}" if clean is None else f"{value:.3f} ({100 * (value - clean):+.1f})"


def markdown(result: dict) -> str:
    conditions = result["conditions"]
    corpora = list(next(iter(conditions.values()))["corpora"])
    clean = conditions.get("clean", {}).get("corpora", {})
    clean_mean = np.mean([clean[c]["uar"] for c in corpora]) if clean else None
    how = (
        "each speaker's clips as one calibrated session"
        if result["calibrated"]
        else "each clip alone, as `ser-live analyze --summary` scores a file"
    )
    lines = [
        "# Robustness of the held-out models to recording channels",
        "",
        f"Run `{result['run']}`: each corpus scored by the model trained without it, every "
        f"clip passed through one channel, {how}. Closed-set UAR over the corpus's labels "
        "(a clip without a verdict counts as wrong); in brackets, points from clean.",
        "",
        "| channel | " + " | ".join(corpora) + " | mean | clips without a verdict |",
        "| --- | " + " | ".join("---" for _ in corpora) + " | --- | --- |",
    ]
    for name, r in conditions.items():
        cells = [
            _cell(r["corpora"][c]["uar"], None if name == "clean" else clean[c]["uar"])
            for c in corpora
        ]
        mean = float(np.mean([r["corpora"][c]["uar"] for c in corpora]))
        silent = sum(r["corpora"][c]["no_verdict"] for c in corpora)
        base = None if name == "clean" else clean_mean
        lines.append(
            f"| {name}: {r['description']} | "
            + " | ".join(cells)
            + f" | {_cell(mean, base)} | {silent} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.loco_robustness", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_dir", type=Path, help="a finished training.loco run folder")
    parser.add_argument("data", nargs="+", type=Path, help="the folders holding the corpora")
    add_conditions_option(parser)
    parser.add_argument(
        "--calibrated", action="store_true", help="one calibrated session per speaker"
    )
    args = parser.parse_args(argv)
    conditions = chosen_conditions(parser, args)
    if not list(args.run_dir.glob(f"without-*/{MODEL_NAME}")):
        parser.error(f"not a finished leave-one-corpus-out run: {args.run_dir}")
    result = evaluate(args.run_dir, args.data, conditions, args.calibrated)
    stem = "robustness_calibrated" if args.calibrated else "robustness"
    (args.run_dir / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.run_dir / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
