"""The voice-shifted copies of every clean window, for scoring as the engine scores.

The engine averages each window's output with its copies' (``ser_live.voice_shifts``).
Cross-validation does the same: this replays each clip's clean copy exactly as
``training.windows`` placed it, finds the same windows, and cuts their copies from the
audio around each window, through the same ``VoiceShifter`` the engine uses. The
copies are only ever scored, never trained on. Cached beside the windows.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ser_live import SAMPLE_RATE
from ser_live.audio_io import load_audio
from ser_live.frontend import FrontEnd, Window
from ser_live.voice_shifts import VoiceShifter
from training.config import TrainConfig
from training.corpora import Utterance
from training.windows import (
    cache_key,
    clip_seed,
    clip_window_objects,
    make_frontend,
    one_blas_thread,
    place_in_room_tone,
)

_worker: dict = {}


def _init_worker(cfg: TrainConfig) -> None:
    one_blas_thread()
    _worker["cfg"] = cfg
    _worker["frontend"] = make_frontend(cfg)
    _worker["shifter"] = VoiceShifter(
        cfg.voice_shifts, _worker["frontend"].window_samples, _worker["frontend"].settings
    )


def _digest(features: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(features, dtype=np.float32).tobytes()).hexdigest()


def windows_and_copies(
    samples: np.ndarray, cfg: TrainConfig, frontend: FrontEnd, shifter: VoiceShifter
) -> tuple[list[Window], np.ndarray, np.ndarray]:
    """A clean clip's windows (as training keeps them), their copies, and which window
    each copy belongs to."""
    kept = clip_window_objects(samples, cfg, frontend)
    copies = [np.zeros((0, frontend.frames_per_window, frontend.settings.n_features), np.float32)]
    owners: list[int] = []
    for n, window in enumerate(kept):
        copies.append(shifter(samples, round(window.start_s * SAMPLE_RATE)))
        owners += [n] * len(copies[-1])
    return kept, np.concatenate(copies), np.asarray(owners, dtype=np.int32)


def _process(task: tuple[int, str, int]) -> tuple[int, np.ndarray, np.ndarray, list[str]]:
    """One clip's copies, which of its clean windows each belongs to, and the windows'
    digests (to check they are the windows the cache holds)."""
    index, path, seed = task
    cfg = _worker["cfg"]
    samples = place_in_room_tone(load_audio(path), cfg, np.random.default_rng(seed))
    kept, x, owners = windows_and_copies(samples, cfg, _worker["frontend"], _worker["shifter"])
    return index, x, owners, [_digest(w.features) for w in kept]


def extract_shifted(
    utterances: list[Utterance],
    cfg: TrainConfig,
    windows: dict[str, np.ndarray],
    cache_dir: Path | None = None,
) -> dict[str, np.ndarray]:
    """The copies of every clean window in ``windows`` (from ``extract_windows``).

    Returns ``x`` (copies) and ``row`` (the row of ``windows["x"]`` each copy belongs to).
    A window at the very start of a clip may have fewer copies (see ``voice_shifts``).
    """
    empty = {"x": np.zeros((0, *windows["x"].shape[1:]), np.float32), "row": np.zeros(0, int)}
    if not cfg.voice_shifts:
        return empty
    cache = None
    if cache_dir is not None:
        key = {
            "windows": cache_key(cfg, utterances, 1 + cfg.n_augment),
            "shifts": cfg.voice_shifts,
            "code": {
                p.name: p.read_text()
                for p in (Path(__file__), Path(__file__).parents[1] / "ser_live/voice_shifts.py")
            },
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        cache = cache_dir / f"shifted-{digest}.npz"
        if cache.exists():
            with np.load(cache) as data:
                return {k: data[k] for k in data.files}
    clean_rows = {
        i: np.flatnonzero((windows["clip"] == i) & (windows["copy"] == 0))
        for i in range(len(utterances))
    }
    tasks = [(i, u.path, clip_seed(cfg, i, copy=0)) for i, u in enumerate(utterances)]
    xs, rows = [empty["x"]], [empty["row"]]
    with mp.get_context("spawn").Pool(cfg.workers, _init_worker, (cfg,)) as pool:
        for index, x, owners, digests in tqdm(
            pool.imap_unordered(_process, tasks, chunksize=16),
            total=len(tasks),
            desc="voice shifts",
            unit="clip",
        ):
            own = clean_rows[index]
            if digests != [_digest(windows["x"][r]) for r in own]:
                raise RuntimeError(
                    f"{utterances[index].path}: its windows differ from the cached ones"
                )
            xs.append(x)
            rows.append(own[owners])
    order = np.argsort(np.concatenate(rows), kind="stable")
    out = {"x": np.concatenate(xs)[order], "row": np.concatenate(rows)[order]}
    if cache is not None:
        np.savez(cache, **out)
    return out


def with_shifts(predict, clean: np.ndarray, copies: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Each window's probabilities averaged with its copies' (as the engine averages them).

    ``predict`` maps standardised windows to probabilities; ``owner`` gives the index in
    ``clean`` of each of ``copies``.
    """
    total = predict(clean).astype(np.float64)
    counts = np.ones(len(clean))
    if len(copies):
        np.add.at(total, owner, predict(copies))
        np.add.at(counts, owner, 1)
    return (total / counts[:, None]).astype(np.float32)
