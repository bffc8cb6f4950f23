"""Analysing recordings: each file replayed through the live path (``run_source``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ser_live.audio_io import AUDIO_SUFFIXES
from ser_live.engine import Engine, Update
from ser_live.errors import AudioFileError, SerLiveError
from ser_live.session import run_source
from ser_live.sources import FileSource


@dataclass
class FileResult:
    path: str
    channel: int | None
    duration_s: float = 0.0
    speech_s: float = 0.0
    updates: list[Update] = field(default_factory=list)
    error: str | None = None

    @property
    def speech_probabilities(self) -> np.ndarray | None:
        """Mean of the raw probabilities of the speech windows; None without speech."""
        raw = [u.raw_probabilities for u in self.updates if u.raw_probabilities is not None]
        return np.mean(raw, axis=0) if raw else None


def find_audio_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files as given, and the audio files in folders (recursively, sorted)."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES
            )
        else:
            yield p


def analyze_file(
    path: str | Path,
    engine: Engine,
    channel: int | None = None,
    on_update=None,
) -> FileResult:
    """Analyse one file (one channel, or the down-mix); errors land in ``result.error``."""
    result = FileResult(str(path), channel)
    engine.reset()

    def collect(update: Update) -> None:
        result.updates.append(update)
        if on_update is not None:
            on_update(update)

    try:
        source = FileSource(path, channel=channel)
        run_source(source, engine, collect)
        result.duration_s = engine.stream_s
        result.speech_s = engine.speech_s
        if not result.updates:
            raise AudioFileError(f"{path}: no audio in the file")
    except SerLiveError as exc:
        result.error = str(exc)
    except Exception as exc:
        result.error = f"{path}: internal error ({type(exc).__name__}: {exc})"
    return result


def channel_count(path: str | Path) -> int:
    import soundfile as sf

    try:
        return sf.info(str(path)).channels
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return 1  # the analysis itself reports why the file is unreadable
