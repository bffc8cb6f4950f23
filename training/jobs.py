"""Neural fits run side by side in worker processes, one CPU thread each.

The models are small: TensorFlow gains nothing from a second thread on one of them (an
epoch took as long on one thread as on two, measured on 2 cores), so running two fits at
once, one thread each, nearly doubles throughput. A fit seeds itself and runs on one
thread, so its result does not depend on how many workers there are or which job shares
the machine with it.

The main process writes all windows once to a ``.npy`` file; each job names its windows by
index and its worker memory-maps the file, so no large array crosses a process boundary.
Workers save their model to the job's checkpoint; the main process loads it to evaluate.
Nothing else is shared: the main process only submits jobs and reads their results.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser_live.features import Standardiser
from training.config import TrainConfig


@dataclass(frozen=True)
class FitJob:
    name: str  # shown in the log, e.g. "fold 2 cnn member 3"
    kind: str  # "cnn" or "lstm"
    cfg: TrainConfig  # with the member's own seed
    windows: Path  # .npy of every window, unnormalised
    standardiser: Standardiser
    train: np.ndarray  # indices of the training windows
    y_train: np.ndarray
    checkpoint: Path
    val: np.ndarray | None = None  # indices of the early-stopping windows
    y_val: np.ndarray | None = None
    epochs: int | None = None  # a fixed schedule (no validation)


@dataclass(frozen=True)
class FitResult:
    job: FitJob
    history: dict[str, list[float]]
    best_epoch: int


def _one_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def fit(job: FitJob) -> FitResult:
    from training.neural import train_neural

    windows = np.load(job.windows, mmap_mode="r")
    x_val = job.standardiser(windows[job.val]) if job.val is not None else None
    _, history, best = train_neural(
        job.kind,
        job.cfg,
        job.standardiser(windows[job.train]),
        job.y_train,
        x_val,
        job.y_val,
        job.checkpoint,
        job.epochs,
        name=job.name,
        feature_std=job.standardiser.std,
    )
    return FitResult(job, history, best)


def fit_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` single-threaded processes for ``pool.submit(fit, job)``."""
    return ProcessPoolExecutor(
        max_workers=max(1, workers),
        mp_context=mp.get_context("spawn"),  # TensorFlow does not survive a fork
        initializer=_one_thread,
    )
