"""Command line of the training pipeline: ``python -m training --help``."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from training.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train ser-live's emotion model on RAVDESS, TESS, nEMO, the Korean sample "
        "and Indian EmoSpeech (original layouts; WAV, FLAC or Opus), report speaker-independent "
        "scores on held-out RAVDESS actors and export the int8 model. Leave-one-corpus-out: "
        "python -m training.loco.",
    )
    parser.add_argument(
        "data",
        nargs="+",
        type=Path,
        help="folders holding the corpora (RAVDESS Actor_* folders, TESS speaker folders, "
        "nEMO samples/, the Korean Dataset/, EmoSpeech place folders), or their parent",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="where this run writes (default: training/runs/<date-time>)",
    )
    parser.add_argument("--config", type=Path, help="a config.json to start from")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--augment", type=int, help="augmented copies per training clip")
    parser.add_argument("--models", help="comma-separated subset of cnn,lstm,svm")
    parser.add_argument(
        "--max-clips-per-speaker",
        type=int,
        help="use a small balanced subset (quick checks, tests)",
    )
    parser.add_argument(
        "--install",
        action="store_true",
        help="also write the model, sidecar and model-card figures to models/",
    )
    parser.add_argument(
        "--cv-only",
        action="store_true",
        help="stop after the speaker-independent cross-validation (no final model)",
    )
    args = parser.parse_args(argv)

    cfg = TrainConfig.load(args.config) if args.config else TrainConfig()
    for name, value in (
        ("seed", args.seed),
        ("epochs", args.epochs),
        ("n_augment", args.augment),
        ("max_clips_per_speaker", args.max_clips_per_speaker),
    ):
        if value is not None:
            setattr(cfg, name, value)
    if args.cv_only and args.install:
        parser.error("--cv-only trains no model to --install")
    if args.models:
        cfg.models = [m.strip() for m in args.models.split(",") if m.strip()]
    from training.models import CNN_ARCHITECTURES, REPORTED_MODELS

    for model in cfg.models:
        if model not in REPORTED_MODELS:
            parser.error(f"unknown model: {model} (choose from {', '.join(REPORTED_MODELS)})")
    for architecture in cfg.cnn_architectures:
        if architecture not in CNN_ARCHITECTURES:
            parser.error(
                f"unknown CNN architecture: {architecture} "
                f"(choose from {', '.join(CNN_ARCHITECTURES)})"
            )
    for folder in args.data:
        if not folder.is_dir():
            print(f"python -m training: error: no such folder: {folder}", file=sys.stderr)
            return 2
    run_dir = args.run_dir or ROOT / "training" / "runs" / dt.datetime.now().strftime(
        "%Y%m%d-%H%M%S"
    )

    from training.pipeline import run

    run(args.data, run_dir, cfg, ROOT / "models" if args.install else None, not args.cv_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
