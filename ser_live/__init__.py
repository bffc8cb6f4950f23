"""ser-live: real-time speech emotion recognition."""

import os

__version__ = "0.1.0"


#: NumPy's BLAS on one thread per process, as the command line runs it (set before NumPy
#: loads; a user's own setting wins). Every engine runs on one core (``analyze`` starts
#: one process per core), so a BLAS pool per process only oversubscribes the cores; live,
#: the second opinion's mel matrix product on a pool of two threads took the core the
#: windows are heard on (p99 per window 12.5-13.4 ms against 7.0-7.3 ms,
#: docs/benchmarks.md). Not for ``training``: a BLAS's thread count can change its sums in
#: the last bits, so its networks.
ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def one_blas_thread() -> None:
    """``ONE_BLAS_THREAD`` into this process's environment, where the user set none."""
    for name, value in ONE_BLAS_THREAD.items():
        os.environ.setdefault(name, value)


#: The emotions ser-live reports, in the order of the model's outputs.
EMOTIONS: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)

#: Every stage of the engine works on 16 kHz mono float32 audio.
SAMPLE_RATE = 16_000
