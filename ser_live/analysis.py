"""Analysing recordings: each file replayed through the live path (``run_source``).

A batch is spread over this process and worker processes (``analyze_many``), one engine
each; every file is analysed by one engine from start to end, so its results are the same
as in one process, and they come back in the order the files were given. Files of one
voice (``Task.voice``, given in a row) are analysed in turn by one engine, its speaker
calibration carrying on from file to file, as one live session would hear them.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ser_live.audio_io import AUDIO_SUFFIXES
from ser_live.cues import Activity
from ser_live.engine import Engine, Update
from ser_live.errors import AudioFileError, SerLiveError
from ser_live.second_opinion import PhraseVerdict
from ser_live.session import run_source
from ser_live.sources import ArraySource, AudioSource, FileSource

ANALYSIS_BLOCK_S = 10.0


@dataclass
class FileResult:
    path: str
    channel: int | None
    duration_s: float = 0.0
    speech_s: float = 0.0
    updates: list[Update] = field(default_factory=list)
    phrases: list[PhraseVerdict] = field(default_factory=list)
    error: str | None = None
    activity: Activity | None = None  # who spoke when (the conversation cues)

    @property
    def speech_probabilities(self) -> np.ndarray | None:
        """Mean of the raw probabilities of the speech windows, each fused with its
        phrase's second opinion where there is one; None without speech."""
        if any(p.theirs is not None for p in self.phrases):
            weights = [p.n_windows for p in self.phrases]
            fused = [p.probabilities for p in self.phrases]
            return np.average(fused, axis=0, weights=weights).astype(np.float32)
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
    keep_calibration: bool = False,
) -> FileResult:
    """Analyse one file (one channel, or the down-mix); errors land in ``result.error``.
    ``keep_calibration``: the file is the same voice as the engine's last one."""
    # Long blocks: the front end computes a block's frames in one go (see FrontEnd.feed).
    return analyze_source(
        lambda: FileSource(path, channel=channel, block_s=ANALYSIS_BLOCK_S),
        str(path),
        engine,
        channel,
        on_update,
        keep_calibration,
    )


def analyze_samples(
    samples: np.ndarray, name: str, engine: Engine, keep_calibration: bool = False
) -> FileResult:
    """Analyse 16 kHz mono audio held in memory exactly as a file of it is analysed."""
    return analyze_source(
        lambda: ArraySource(samples, name, block_s=ANALYSIS_BLOCK_S),
        name,
        engine,
        keep_calibration=keep_calibration,
    )


def analyze_source(
    open_source: Callable[[], AudioSource],
    name: str,
    engine: Engine,
    channel: int | None = None,
    on_update=None,
    keep_calibration: bool = False,
) -> FileResult:
    """A source from start to end through ``engine`` (opened here, so that an unreadable
    one becomes the result's error)."""
    result = FileResult(name, channel)
    engine.reset(keep_calibration=keep_calibration)
    engine.activity.reset()

    def collect(update: Update) -> None:
        result.updates.append(update)
        if on_update is not None:
            on_update(update)

    try:
        run_source(open_source(), engine, collect, on_phrase=result.phrases.append)
        result.duration_s = engine.stream_s
        result.speech_s = engine.speech_s
        result.activity = engine.activity.snapshot()
        if not result.updates:
            raise AudioFileError(f"{name}: no audio in the file")
    except SerLiveError as exc:
        result.error = str(exc)
    except Exception as exc:
        result.error = f"{name}: internal error ({type(exc).__name__}: {exc})"
    return result


def channel_count(path: str | Path) -> int:
    import soundfile as sf

    try:
        return sf.info(str(path)).channels
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return 1  # the analysis itself reports why the file is unreadable


@dataclass(frozen=True)
class EngineOptions:
    """What a worker process needs to build the same engine as the caller's."""

    model: Path | None = None
    smoothing: int = 3
    vad_aggressiveness: int | None = None
    voice_shifts: bool = False
    calibrate: bool | None = False  # None: as the model's sidecar says for live use
    second_opinion: Path | None = None  # its .onnx file; None: without one
    background_phrases: bool = False  # the second opinion on a thread of its own (live)

    def build(self) -> Engine:
        from ser_live.model import load_model
        from ser_live.second_opinion import load_second_opinion

        classifier = load_model(self.model)
        return Engine(
            classifier,
            smoothing=self.smoothing,
            vad_aggressiveness=self.vad_aggressiveness,
            voice_shifts=self.voice_shifts,
            calibrate=(
                classifier.spec.calibrates_live if self.calibrate is None else self.calibrate
            ),
            second_opinion=(
                None if self.second_opinion is None else load_second_opinion(self.second_opinion)
            ),
            background_phrases=self.background_phrases,
        )


@dataclass(frozen=True)
class Task:
    path: Path
    channel: int | None = None
    # Tasks in a row with the same voice are one speaker's recordings: one engine hears
    # them in turn, its calibration carrying on (None: a voice of its own).
    voice: str | None = None


def voice_runs(tasks: list[Task]) -> list[list[Task]]:
    """``tasks`` cut into runs that one engine must hear in turn: each task alone, but
    consecutive tasks of one voice together."""
    runs: list[list[Task]] = []
    for task in tasks:
        if runs and task.voice is not None and runs[-1][-1].voice == task.voice:
            runs[-1].append(task)
        else:
            runs.append([task])
    return runs


def by_voice(tasks: list[Task]) -> list[Task]:
    """``tasks`` with each voice's together, at its first task's place, in their order."""
    order: dict[object, list[Task]] = {}
    for k, task in enumerate(tasks):
        order.setdefault(k if task.voice is None else task.voice, []).append(task)
    return [task for run in order.values() for task in run]


def analyze_run(run: list[Task], engine: Engine) -> list[FileResult]:
    """One voice's tasks in turn, the calibration carrying on from each to the next."""
    return [
        analyze_file(task.path, engine, task.channel, keep_calibration=k > 0)
        for k, task in enumerate(run)
    ]


_worker_engine: list[Engine] = []


def _start_worker(options: EngineOptions) -> None:
    _worker_engine.append(options.build())


def _run_tasks(run: list[Task]) -> list[FileResult]:
    return analyze_run(run, _worker_engine[0])


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def analyze_many(
    tasks: list[Task],
    options: EngineOptions,
    jobs: int | None = None,
    engine: Engine | None = None,
) -> Iterator[FileResult]:
    """Results of ``tasks`` in their order, ``jobs`` at a time (default: one per core).

    This process analyses too, with ``engine`` (or one built from ``options``), taking
    tasks from the end of the list while ``jobs - 1`` worker processes take them from the
    front: it works while the workers start (each pays about 0.75 s to import and load
    the model), and no core is left idle. A run of one voice's tasks (``voice_runs``) is
    one unit of work.
    """
    runs = voice_runs(tasks)
    jobs = min(jobs or default_jobs(), len(runs))
    engine = engine or options.build()
    if jobs <= 1:
        for run in runs:
            yield from analyze_run(run, engine)
        return
    # spawn, not fork: a forked copy of a process that holds an interpreter and threads
    # can deadlock.
    context = mp.get_context("spawn")
    with ProcessPoolExecutor(
        jobs - 1, mp_context=context, initializer=_start_worker, initargs=(options,)
    ) as pool:
        waiting = deque(range(len(runs)))  # not started; the pool takes the front
        running: dict[int, Future] = {}
        done: dict[int, list[FileResult]] = {}
        for index in range(len(runs)):
            while index not in done:
                while len(running) < 2 * (jobs - 1) and len(waiting) > 1:
                    first = waiting.popleft()
                    running[first] = pool.submit(_run_tasks, runs[first])
                if waiting and not (index in running and running[index].done()):
                    last = waiting.pop()
                    done[last] = analyze_run(runs[last], engine)
                else:  # nothing left for this process, or the next result is ready
                    done[index] = running.pop(index).result()
            yield from done.pop(index)
