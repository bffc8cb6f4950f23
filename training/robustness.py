"""How a run's models hold up on recording setups they were not tested on.

``python -m training.robustness RUN_DIR DATA...`` takes each cross-validation fold's own
CNNs (speakers they never heard), passes that fold's test clips through one fixed
channel at a time (a phone line, VoIP and MP3 codecs, noise, reverberation, a quiet
microphone) and scores them as the run scored the clean clips. Writes
``robustness.json`` and ``robustness.md`` into the run folder.

The codecs are real encoders (libsndfile's Opus and MP3). Opus was never part of training
augmentation, so it is an out-of-training check; MP3 is (one training copy in five goes
through the same encoder at 15-41 kbit/s), so its row says what that augmentation bought,
not how an unseen codec fares. The clean condition must reproduce the run's own RAVDESS
scores exactly; it is the check that this script scores as the run did.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soxr
from scipy.signal import butter, sosfilt
from tqdm import tqdm

from ser_live import SAMPLE_RATE
from ser_live.audio_io import load_audio
from ser_live.features import Standardiser
from ser_live.voice_shifts import VoiceShifter
from training.augment import codec_round_trip, reverberate, room_tail
from training.config import TrainConfig
from training.corpora import Utterance, find_utterances
from training.metrics import scores
from training.shifted import windows_and_copies, with_shifts
from training.windows import (
    clip_seed,
    extract_windows,
    make_frontend,
    one_blas_thread,
    place_in_room_tone,
)

#: TESS clips scored per held-out speaker (every n-th clip, all emotions alike): RAVDESS is
#: scored whole, TESS is the second opinion and 1400 words a speaker take long to encode.
TESS_CLIPS_PER_SPEAKER = 350


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def _phone_line(x: np.ndarray) -> np.ndarray:
    narrow = soxr.resample(x, SAMPLE_RATE, 8000)
    band = sosfilt(butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos"), narrow)
    return soxr.resample(band.astype(np.float32), 8000, SAMPLE_RATE)


def _pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    return np.fft.irfft(spectrum, n)


def _noise(x: np.ndarray, speech_rms: float, snr_db: float, rng) -> np.ndarray:
    noise = _pink_noise(len(x), rng)
    return x + noise * (speech_rms / rms(noise) * 10 ** (-snr_db / 20))


def _reverb(x: np.ndarray, rt60: float, rng) -> np.ndarray:
    ir = room_tail(rt60, rng)
    ir[0] = 2.0
    return reverberate(x, ir)


#: name -> (what it is, the channel: (placed clip, the clip's own speech RMS, rng) -> audio)
CONDITIONS: dict[str, tuple[str, Callable]] = {
    "clean": ("the test clips as recorded", lambda x, s, r: x),
    "louder 10 dB": ("10 dB louder, clipped at full scale", lambda x, s, r: x * 10**0.5),
    "quieter 10 dB": ("10 dB quieter", lambda x, s, r: x * 10**-0.5),
    "quieter 30 dB": ("30 dB quieter: below the VAD's floor", lambda x, s, r: x * 10**-1.5),
    "phone line": ("8 kHz, 300-3400 Hz band", lambda x, s, r: _phone_line(x)),
    "opus 12 kbps": (
        "Opus VoIP codec at about 12 kbit/s",
        lambda x, s, r: codec_round_trip(x, "OGG", "OPUS", 0.98),
    ),
    "mp3 20 kbps": (
        "MP3 at about 20 kbit/s",
        lambda x, s, r: codec_round_trip(x, "MP3", "MPEG_LAYER_III", 0.9),
    ),
    "noise 10 dB": ("pink noise at 10 dB SNR", lambda x, s, r: _noise(x, s, 10.0, r)),
    "reverb 0.6 s": ("a reverberant room, RT60 0.6 s", lambda x, s, r: _reverb(x, 0.6, r)),
    "call": (
        "pink noise at 20 dB SNR, then a phone line, then Opus at 12 kbit/s",
        lambda x, s, r: codec_round_trip(_phone_line(_noise(x, s, 20.0, r)), "OGG", "OPUS", 0.98),
    ),
}

_worker: dict = {}


def _init_worker(cfg: TrainConfig) -> None:
    one_blas_thread()
    _worker["cfg"] = cfg
    _worker["frontend"] = make_frontend(cfg)
    _worker["shifter"] = VoiceShifter(cfg.voice_shifts, _worker["frontend"].window_samples)


def _windows(task: tuple[int, str, int, str]) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """The clean copy's windows as training made them, through ``condition`` first, with
    their voice-shifted copies (and which window each copy belongs to)."""
    index, path, seed, condition = task
    cfg = _worker["cfg"]
    rng = np.random.default_rng(seed)
    clip = load_audio(path)
    placed = place_in_room_tone(clip, cfg, rng)  # same draws as the run's clean copy
    channel = CONDITIONS[condition][1]
    heard = np.clip(channel(placed, rms(clip), rng), -1.0, 1.0).astype(np.float32)
    kept, copies, owners = windows_and_copies(heard, cfg, _worker["frontend"], _worker["shifter"])
    x = np.stack([w.features for w in kept]) if kept else copies[:0]
    return index, x, copies, owners


def evaluate(run_dir: Path, data_dirs: list[Path], conditions: list[str]) -> dict:
    import keras
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # predict() on windows of each fold's own count

    from training.pipeline import clip_probabilities, fold_speakers, subset

    cfg = TrainConfig.load(run_dir / "config.json")
    report = json.loads((run_dir / "report.json").read_text())
    utterances = subset(find_utterances(data_dirs), cfg.max_clips_per_speaker)
    speakers = np.array([u.speaker for u in utterances])
    labels = np.array([u.label for u in utterances])

    # Each fold's standardiser, refitted exactly as the run fitted it.
    data = extract_windows(utterances, cfg, Path(__file__).resolve().parent / "cache")
    win_speaker = speakers[data["clip"]]
    folds = []
    for k, actors in enumerate(report["folds"]):
        test, val = fold_speakers(k, actors, utterances)
        train = ~np.isin(win_speaker, list(test | val))
        folds.append((k, test, Standardiser.fit(data["x"][train])))
    del data

    models = {
        k: [
            keras.models.load_model(m) for m in sorted(run_dir.glob(f"fold{k + 1}/cnn_best*.keras"))
        ]
        for k, _, _ in folds
    }
    clips = {k: _test_clips(utterances, test) for k, test, _ in folds}
    scored = sorted({i for ids in clips.values() for i in ids})
    out: dict[str, dict] = {}
    with mp.get_context("spawn").Pool(cfg.workers, _init_worker, (cfg,)) as pool:
        for condition in conditions:
            tasks = [(i, utterances[i].path, clip_seed(cfg, i, copy=0), condition) for i in scored]
            windows, copies = {}, {}
            for i, x, shifted, owners in tqdm(
                pool.imap_unordered(_windows, tasks, chunksize=8), total=len(tasks), desc=condition
            ):
                windows[i], copies[i] = x, (shifted, owners)
            result = {"description": CONDITIONS[condition][0], "clips_without_speech": 0}
            for k, _, standardiser in folds:
                ids = [i for i in clips[k] if len(windows[i])]
                x = standardiser(np.concatenate([windows[i] for i in ids]))
                owner = np.concatenate([np.full(len(windows[i]), i) for i in ids])
                offsets = np.cumsum([0] + [len(windows[i]) for i in ids])[:-1]
                x_copies = standardiser(np.concatenate([copies[i][0] for i in ids]))
                copy_owner = np.concatenate(
                    [copies[i][1] + offset for i, offset in zip(ids, offsets, strict=True)]
                )
                window_probs = np.mean(
                    [
                        with_shifts(
                            lambda a, m=m: m.predict(a, batch_size=256, verbose=0),
                            x,
                            x_copies,
                            copy_owner,
                        )
                        for m in models[k]
                    ],
                    axis=0,
                )
                owners, probs = clip_probabilities(window_probs, owner)
                clip_pred = dict(zip(owners.tolist(), probs.argmax(axis=1).tolist(), strict=True))
                result["clips_without_speech"] += len(clips[k]) - len(ids)
                for corpus in ("ravdess", "tess"):
                    fold_ids = [i for i in clips[k] if utterances[i].corpus == corpus]
                    if fold_ids:  # a clip left with no speech window counts as wrong (-1)
                        pred = np.array([clip_pred.get(i, -1) for i in fold_ids])
                        uar = scores(labels[fold_ids], pred)["uar"]
                        result.setdefault(f"{corpus}_uar_per_fold", []).append(uar)
            for corpus in ("ravdess", "tess"):
                values = result.get(f"{corpus}_uar_per_fold")
                result[f"{corpus}_uar_mean"] = float(np.mean(values)) if values else None
            out[condition] = result
    return {"members_per_fold": len(models[0]), "conditions": out}


def _test_clips(utterances: list[Utterance], test_speakers: set[str]) -> list[int]:
    """The fold's test clips: all of its RAVDESS actors', every n-th clip of its TESS one."""
    out = []
    for speaker in sorted(test_speakers):
        ids = [i for i, u in enumerate(utterances) if u.speaker == speaker]
        if speaker.startswith("tess"):
            step = max(1, len(ids) // TESS_CLIPS_PER_SPEAKER)
            ids = ids[::step][:TESS_CLIPS_PER_SPEAKER]
        out += ids
    return out


def _cell(value: float | None, clean: float | None) -> str:
    if value is None:
        return "–"
    if clean is None:
        return f"{value:.3f}"
    return f"{value:.3f} ({100 * (value - clean):+.1f} pt)"


def markdown(result: dict) -> str:
    conditions = result["conditions"]
    clean = conditions.get("clean", {})
    lines = [
        "# Robustness to recording setups",
        "",
        "Each fold's own CNNs (float, averaged, with the run's voice shifts) on that fold's "
        "test speakers, whom training never heard, with the test audio passed through one "
        "channel. RAVDESS: every clip of "
        f"the fold's actors; TESS: {TESS_CLIPS_PER_SPEAKER} clips of the held-out speaker. "
        "In brackets: the change from clean.",
        "",
        "| channel | RAVDESS UAR | held-out TESS speaker UAR | clips with no speech window |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in conditions.items():
        base = {} if name == "clean" else clean
        lines.append(
            f"| {name}: {r['description']} "
            f"| {_cell(r['ravdess_uar_mean'], base.get('ravdess_uar_mean'))} "
            f"| {_cell(r['tess_uar_mean'], base.get('tess_uar_mean'))} "
            f"| {r['clips_without_speech']} |"
        )
    return "\n".join(lines) + "\n"


def add_conditions_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--conditions",
        default=",".join(CONDITIONS),
        help=f"comma-separated subset of: {', '.join(CONDITIONS)}",
    )


def chosen_conditions(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The ``--conditions`` asked for; a one-line usage error for one that does not exist."""
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        parser.error(f"unknown condition: {', '.join(unknown)}")
    return conditions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.robustness",
        description="Score a run's cross-validation models on their test speakers through "
        "phone-line, codec, noise, reverberation and level changes.",
    )
    parser.add_argument("run_dir", type=Path, help="a finished run folder (not --cv-only)")
    parser.add_argument("data", nargs="+", type=Path, help="the data folders the run used")
    add_conditions_option(parser)
    args = parser.parse_args(argv)
    conditions = chosen_conditions(parser, args)
    if not (args.run_dir / "report.json").is_file():
        parser.error(f"not a finished training run: {args.run_dir}")
    result = evaluate(args.run_dir, args.data, conditions)
    (args.run_dir / "robustness.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.run_dir / "robustness.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
