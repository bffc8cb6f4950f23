"""Speech for the benchmarks: RAVDESS/TESS beside the checkout if present, else the fixtures."""

from __future__ import annotations

import multiprocessing
import resource
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ser_live.audio_io import load_audio

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT.parent / "shared" / "datasets"
FIXTURES = ROOT / "tests" / "fixtures" / "corpus"


def speech_clips(limit: int = 400) -> list[Path]:
    root = CORPORA if CORPORA.is_dir() else FIXTURES
    clips = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    step = max(1, len(clips) // limit)
    return clips[::step][:limit]


def speech_stream(seconds: float, seed: int = 0) -> np.ndarray:
    """At least ``seconds`` of speech clips, each followed by 0-1.5 s of faint room tone."""
    rng = np.random.default_rng(seed)
    clips = [load_audio(p) for p in speech_clips()]
    parts, total = [], 0
    while total < seconds * 16000:
        clip = clips[int(rng.integers(len(clips)))]
        gap = (rng.standard_normal(int(rng.uniform(0, 1.5) * 16000)) * 10 ** (-65 / 20)).astype(
            np.float32
        )
        parts += [clip, gap]
        total += len(clip) + len(gap)
    return np.concatenate(parts)


def speech_stream_apart(seconds: float, seed: int = 0) -> np.ndarray:
    """``speech_stream`` made by a child process, for a benchmark that reads its own
    memory: the clips and the temporaries that build the stream stay out of this
    process's heap, which glibc does not always give back (the hour's memory at its start
    read 104 or 176 MB, by timing alone, when this process built it)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.npy"
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            pool.submit(_save_speech_stream, path, seconds, seed).result()
        return np.load(path)


def _save_speech_stream(path: Path, seconds: float, seed: int) -> None:
    np.save(path, speech_stream(seconds, seed))


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc), else the peak."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
