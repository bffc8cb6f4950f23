"""Clips to training windows, through the live engine's own front end."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
from importlib.metadata import version
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from ser_live import EMOTIONS, SAMPLE_RATE
from ser_live.audio_io import load_audio
from ser_live.features import DEFAULT_SETTINGS
from ser_live.frontend import FrontEnd, Window, room_tone
from ser_live.vad import VoiceActivityDetector
from training.augment import Augmenter
from training.config import TrainConfig
from training.corpora import Utterance


def make_frontend(cfg: TrainConfig) -> FrontEnd:
    vad = VoiceActivityDetector(
        cfg.vad_aggressiveness,
        cfg.vad_hangover_frames,
        cfg.vad_min_level_db,
        cfg.vad_level_target_db,
    )
    return FrontEnd(cfg.window_s, cfg.hop_s, DEFAULT_SETTINGS, vad, silence_features=True)


def place_in_room_tone(
    samples: np.ndarray, cfg: TrainConfig, rng: np.random.Generator
) -> np.ndarray:
    """Put the clip at a random offset inside faint noise, at least one window long.

    Live, speech is surrounded by room tone, and windows fall at any phase of an utterance;
    this gives short clips (TESS words) whole windows and shifts every clip by a random
    part of the hop. The floor is faint noise, not digital silence, as from any microphone.
    """
    lead = int(rng.integers(0, round(cfg.hop_s * SAMPLE_RATE)))
    total = max(len(samples), round((cfg.window_s + cfg.hop_s) * SAMPLE_RATE)) + lead
    out = room_tone(total, rng)
    start = lead + (total - lead - len(samples)) // 2
    out[start : start + len(samples)] += samples
    return out


def clip_window_objects(
    samples: np.ndarray, cfg: TrainConfig, frontend: FrontEnd, fallback: bool = True
) -> list[Window]:
    """The windows of a clip the live engine would classify (enough speech).

    With none, ``fallback`` keeps the most speech-like window, so that every clean clip
    is scored; an augmented copy gets no window, rather than a near-silent one labelled
    with an emotion.
    """
    frontend.reset()
    windows = frontend.feed(samples)
    keep = [w for w in windows if w.speech_ratio >= cfg.min_speech_ratio]
    if not keep and fallback and windows:
        keep = [max(windows, key=lambda w: w.speech_ratio)]
    return keep


def clip_windows(
    samples: np.ndarray, cfg: TrainConfig, frontend: FrontEnd, fallback: bool = True
) -> np.ndarray:
    """The features of ``clip_window_objects``, one row per window."""
    keep = clip_window_objects(samples, cfg, frontend, fallback)
    if not keep:
        return np.zeros((0, frontend.frames_per_window, DEFAULT_SETTINGS.n_features), np.float32)
    return np.stack([w.features for w in keep])


def clip_seed(cfg: TrainConfig, index: int, copy: int) -> int:
    """The seed of copy ``copy`` (0: clean) of the ``index``-th clip: its placement and
    augmentation draws."""
    return cfg.seed * 1_000_003 + index * 101 + copy


_worker: dict = {}


def one_blas_thread() -> None:
    """For a pool worker: with the pool filling the cores, OpenBLAS's own threads fought
    the other workers and made each feature extraction four times slower."""
    threadpool_limits(1)


def _init_worker(cfg: TrainConfig) -> None:
    one_blas_thread()
    _worker["cfg"] = cfg
    _worker["frontend"] = make_frontend(cfg)
    _worker["augment"] = Augmenter()
    _worker["new_voice"] = Augmenter(new_voice=True)


def _process(task: tuple[int, str, int, int]) -> tuple[int, int, np.ndarray]:
    index, path, copy, seed = task
    cfg = _worker["cfg"]
    rng = np.random.default_rng(seed)
    samples = place_in_room_tone(load_audio(path), cfg, rng)
    if copy > 0:
        augment = _worker["augment" if copy <= cfg.n_augment else "new_voice"]
        samples = augment(samples, seed)
        short = round(cfg.window_s * SAMPLE_RATE) - len(samples)
        if short > 0:  # a faster time stretch can leave less than one window
            samples = np.concatenate([samples, room_tone(short, rng)])
    return index, copy, clip_windows(samples, cfg, _worker["frontend"], fallback=copy == 0)


#: The code that turns a clip into windows: a change to any of it invalidates the cache.
WINDOW_SOURCES = [
    Path(__file__).resolve().parent / name for name in ("windows.py", "augment.py")
] + [
    Path(__file__).resolve().parent.parent / "ser_live" / name
    for name in ("audio_io.py", "vad.py", "dsp.py", "features.py", "frontend.py")
]

WINDOW_LIBRARIES = ("numpy", "scipy", "soxr", "soundfile", "webrtcvad-wheels", "audiomentations")


def cache_key(
    cfg: TrainConfig, utterances: list[Utterance], n_copies: int, extra: list[int]
) -> str:
    payload = {
        "features": DEFAULT_SETTINGS.to_dict(),
        "window": [cfg.window_s, cfg.hop_s, cfg.min_speech_ratio],
        "vad": [
            cfg.vad_aggressiveness,
            cfg.vad_hangover_frames,
            cfg.vad_min_level_db,
            cfg.vad_level_target_db,
        ],
        "seed": cfg.seed,
        "copies": n_copies,
        "new_voices": extra,
        "clips": [u.path for u in utterances],
        "code": {p.name: p.read_text() for p in WINDOW_SOURCES},
        "libraries": {name: version(name) for name in WINDOW_LIBRARIES},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def thin_class_copies(labels: np.ndarray, n_augment: int, most: int) -> np.ndarray:
    """Extra copies (new voices) per emotion for a training set whose clean clips have
    ``labels``: enough that an emotion with fewer clips than the commonest one has about
    as many clips and copies, ``n_augment * (largest / own - 1)`` rounded, at most ``most``.

    The loss already gives every emotion the same total weight; these copies give a thin
    emotion more voices to spread that weight over, instead of a few speakers' clips
    weighted up (disgust: 592 clips by 26 speakers, against 2,172 neutral by over 130).
    """
    counts = np.bincount(labels, minlength=len(EMOTIONS)).astype(float)
    ratio = np.where(counts > 0, counts.max() / np.maximum(counts, 1.0), 1.0)
    return np.minimum(np.rint(n_augment * (ratio - 1.0)), most).astype(int)


def extract_windows(
    utterances: list[Utterance],
    cfg: TrainConfig,
    cache_dir: Path | None = None,
    new_voices: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Windows of every clip: the clean copy (copy 0), ``cfg.n_augment`` augmented ones
    and ``new_voices[i]`` more of clip ``i`` as new voices (copies ``n_augment + 1`` on,
    ``Augmenter(new_voice=True)``).

    Returns arrays ``x`` (windows), ``clip`` (index into ``utterances``) and ``copy``.
    Deterministic given the seed: each (clip, copy) has its own seed.
    """
    n_copies = 1 + cfg.n_augment
    extra = [0] * len(utterances) if new_voices is None else [int(n) for n in new_voices]
    cache = None
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        key = cache_key(cfg, utterances, n_copies, extra)
        cache = cache_dir / f"windows-{key}.npz"
        if cache.exists():
            with np.load(cache) as data:
                return {k: data[k] for k in data.files}
    tasks = [
        (i, utt.path, copy, clip_seed(cfg, i, copy))
        for i, utt in enumerate(utterances)
        for copy in range(n_copies + extra[i])
    ]
    results: dict[tuple[int, int], np.ndarray] = {}
    ctx = mp.get_context("spawn")
    with ctx.Pool(cfg.workers, initializer=_init_worker, initargs=(cfg,)) as pool:
        for index, copy, x in tqdm(
            pool.imap_unordered(_process, tasks, chunksize=16),
            total=len(tasks),
            desc="windows",
            unit="clip",
        ):
            results[(index, copy)] = x
    xs, clips, copies = [], [], []
    for (index, copy), x in sorted(results.items()):
        xs.append(x)
        clips.append(np.full(len(x), index, dtype=np.int32))
        copies.append(np.full(len(x), copy, dtype=np.int8))
    out = {
        "x": np.concatenate(xs).astype(np.float32),
        "clip": np.concatenate(clips),
        "copy": np.concatenate(copies),
    }
    if cache is not None:
        np.savez(cache, **out)
    return out


def every_nth_window(clip: np.ndarray, copy: np.ndarray, stride: int) -> np.ndarray:
    """A mask of every ``stride``-th window of each (clip, copy), counting from its first:
    fewer, less redundant training windows (neighbours overlap by 75%). Relies on
    ``extract_windows``'s order, sorted by clip and then copy."""
    group = clip.astype(np.int64) * 64 + copy
    in_group = np.arange(len(clip)) - np.searchsorted(group, group)
    return in_group % stride == 0
