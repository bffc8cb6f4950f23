"""Neural fits side by side in worker processes, one CPU thread each, most urgent first.

The models are small: a second thread gains nothing, two fits at once nearly double the
throughput, and a fit's result depends neither on the workers nor on their order. Windows
go to workers as one memory-mapped ``.npy``. Thread rules: ``submit`` from any thread; one
dispatcher thread takes jobs off the priority queue when a worker slot is free; the pool's
callback thread completes each future (its callbacks may queue dependent jobs) and frees
the slot. The queue, the slot semaphore, the futures and the dependents' counters (under
their lock) are the only shared state.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing as mp
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser_live.features import Standardiser
from training.config import TrainConfig


@dataclass(frozen=True)
class FitJob:
    name: str  # shown in the log, e.g. "fold 2 cnn member 3"
    kind: str  # a NEURAL_MODELS key: "cnn" or "cnn2d"
    cfg: TrainConfig  # with the member's own seed
    windows: Path  # .npy of every window, unnormalised
    standardiser: Standardiser
    train: np.ndarray  # indices of the training windows
    y_train: np.ndarray
    checkpoint: Path
    val: np.ndarray | None = None  # indices of the early-stopping windows
    y_val: np.ndarray | None = None
    epochs: int | None = None  # a fixed schedule (no validation)
    # Per training window; None: class-balanced (each emotion the same total weight).
    weights: np.ndarray | None = None
    # Per training / validation window, the emotions its corpus has (None: all of them);
    # see training.neural.partial_label_loss.
    label_sets: np.ndarray | None = None
    val_label_sets: np.ndarray | None = None


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
        weights=job.weights,
        label_sets=job.label_sets,
        val_label_sets=job.val_label_sets,
    )
    return FitResult(job, history, best)


def fit_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` single-threaded processes for ``pool.submit(fit, job)``."""
    return ProcessPoolExecutor(
        max_workers=max(1, workers),
        mp_context=mp.get_context("spawn"),  # TensorFlow does not survive a fork
        initializer=_one_thread,
    )


class FitScheduler:
    """Runs ``fit(job)`` on ``workers`` single-threaded processes, the waiting job with the
    lowest ``priority`` first (ties in submission order). A job may wait for others
    (``after``): it joins the queue, built from their results by ``prepare``, the moment
    the last of them is done, before that one's worker takes its next job. A context
    manager: a normal exit waits for every submitted job, an error cancels the waiting ones.
    """

    def __init__(self, workers: int) -> None:
        self._pool = fit_pool(workers)
        self._free = threading.Semaphore(max(1, workers))
        self._waiting: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._submitted: list[Future] = []
        self._dispatcher = threading.Thread(target=self._dispatch, name="fit-dispatch", daemon=True)
        self._dispatcher.start()

    def submit(
        self,
        job: FitJob,
        priority: float = 0,
        after: list[Future] | None = None,
        prepare: Callable[[FitJob, list[FitResult]], FitJob] | None = None,
    ) -> Future:
        future: Future = Future()
        self._submitted.append(future)
        if not after:
            self._enqueue(priority, job if prepare is None else prepare(job, []), future)
            return future
        remaining = [len(after)]
        count_lock = threading.Lock()

        def one_done(_: Future) -> None:
            with count_lock:
                remaining[0] -= 1
                if remaining[0] or future.cancelled():
                    return
            try:
                results = [f.result() for f in after]
                ready = job if prepare is None else prepare(job, results)
            except BaseException as error:  # a fit it needed failed or was cancelled
                future.set_exception(error)
                return
            self._enqueue(priority, ready, future)

        for f in after:
            f.add_done_callback(one_done)
        return future

    def _enqueue(self, priority: float, job: FitJob | None, future: Future | None) -> None:
        self._waiting.put((priority, next(self._order), job, future))

    def _dispatch(self) -> None:
        while True:
            self._free.acquire()
            _, _, job, future = self._waiting.get()
            if job is None:  # closing: everything before it has been handed out
                return
            if not future.set_running_or_notify_cancel():
                self._free.release()
                continue
            running = self._pool.submit(fit, job)
            running.add_done_callback(lambda done, future=future: self._finish(done, future))

    def _finish(self, done: Future, future: Future) -> None:
        # The future first: its callbacks queue the jobs that were waiting for it, and only
        # then is the worker free to take the most urgent job.
        error = done.exception()
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(done.result())
        self._free.release()

    def __enter__(self) -> FitScheduler:
        return self

    def __exit__(self, error_type, *_) -> None:
        if error_type is None:
            wait(self._submitted)
        else:  # nothing more will read the results: drop what waits
            for future in self._submitted:
                future.cancel()
        self._enqueue(math.inf, None, None)
        self._dispatcher.join()
        self._pool.shutdown(wait=True)
