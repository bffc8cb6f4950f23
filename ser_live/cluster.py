"""Analysing an archive on a Ray cluster (``analyze --ray``).

Ray does the distributing: one actor per worker CPU builds the engine once and analyses
units of work (one file, one channel of a stereo call, or one voice's files in turn, as
``analysis.voice_runs`` cuts them) with the very function a plain run uses
(``analysis.analyze_run``), so results are the same to the bit on the same CPU kind.
Short units travel to an actor in batches (``batches``): per Ray task, the driver and
the actor spend about what a short clip's analysis costs.

Fault tolerance is Ray's: an actor whose process dies is restarted (its constructor
loads the model again) and the batch it held is retried on it, up to ``UNIT_RETRIES``
times. A batch that still fails is tried again one unit at a time, each on an actor that
holds nothing else, so that only the unit that kills its worker ends as an error row; no
file is lost. The driver takes each batch's result once, by its index, so none is
counted twice.

Memory stays bounded: at most ``IN_FLIGHT_PER_WORKER`` batches per actor are submitted,
and results are handed on in the order of the tasks (a plain run's order) from a
reorder buffer that the same window bounds; an archive never sits in the driver.

Threads: everything here runs on the caller's thread; the actors are other processes.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from ser_live import __version__
from ser_live.analysis import EngineOptions, FileResult, Task, analyze_run, voice_runs
from ser_live.errors import SerLiveError

RAY_MISSING = "--ray needs Ray: pip install 'ser-live[cluster]'"
UNIT_RETRIES = 2  # a unit whose actor dies is tried this many more times
IN_FLIGHT_PER_WORKER = 2  # one running and one queued: no actor waits on the driver
# Short clips go to an actor several at a time: one Ray task costs about a millisecond of
# the driver's and the actor's time, a 3-second clip about ten.
BATCH_BYTES = 1_000_000  # about 30 s of 16-bit audio, minutes of compressed
BATCH_FILES = 32
LOCAL_OBJECT_STORE_BYTES = 128 * 1024**2  # results are small; Ray's default takes 30% of RAM


class _Analyser:
    """A Ray actor: one engine, loaded once, analysing one unit of work at a time."""

    def __init__(self, options: EngineOptions) -> None:
        self.engine = options.build()

    def version(self) -> str:
        return __version__

    def analyse(self, batch: list[list[Task]]) -> list[FileResult]:
        return [result for run in batch for result in analyze_run(run, self.engine)]


def _import_ray():
    try:
        import ray
    except ImportError:
        raise SerLiveError(RAY_MISSING) from None
    return ray


#: Ray Client's port where a ``ray://`` address names none.
DEFAULT_CLIENT_PORT = 10001
#: Ray Client's errors where a head that takes connections did not get this client's
#: server process running: its start failed, the process exited just as the head looked
#: at it (the head's psutil finds it a zombie), or it did not answer in time (a busy head;
#: where nothing listens, a wrong address, said at once before Ray's half minute of tries).
CLIENT_SERVER_NOT_READY = (
    "Starting Ray client server failed",
    "psutil.ZombieProcess",
    "ray client connection timeout",
)
#: How often to ask a head for a client server before giving up.
CLIENT_START_ATTEMPTS = 3


def connect(address: str, workers: int | None = None) -> None:
    """Join (or, for ``local``, start) a Ray cluster.

    ``local``: a private instance for this run, ``workers`` CPUs (default: this machine's);
    ``auto``: the cluster ``ray start`` runs on this machine; ``ray://HOST:PORT``: a remote
    one through Ray Client; ``HOST:PORT``: a cluster's GCS address.
    """
    # Ray reads these once, as it is imported.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    _send_token_if_any()
    ray = _import_ray()
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    try:
        if address == "local":
            ray.init(
                address="local",
                num_cpus=workers,
                include_dashboard=False,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                **quiet,
            )
        elif address.startswith("ray://"):
            _join_through_ray_client(ray, address, quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        lines = _lines(exc)
        reason = lines[0] if lines else type(exc).__name__
        if len(lines) > 1 and reason.endswith(":"):  # Ray Client: a header, then a traceback
            reason = f"{reason} {lines[-1]}"
        raise SerLiveError(f"--ray {address}: cannot join the cluster ({reason})") from None


def _join_through_ray_client(ray, address: str, quiet: dict) -> None:
    """``ray.init`` through Ray Client, again where the head failed to start the server
    process it starts for each client or did not have it answer in time: on a loaded head
    that start can fail once (its process exits while it starts: "Starting Ray client
    server failed", seen in 2 of 13 runs of tests/test_cluster.py beside a CPU hog; or the
    head finds it a zombie, 2 of 18 beside a training run; or it answers too late, 1 of
    6) and work the next time. Where nothing listens at the address, it says so at once."""
    parts = urlsplit(address)
    host, port = parts.hostname or "", parts.port or DEFAULT_CLIENT_PORT
    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError:
        raise ConnectionError(f"nothing listens at {host}:{port}") from None
    for attempt in range(1, CLIENT_START_ATTEMPTS + 1):
        try:
            with warnings.catch_warnings():  # its advice on ports, for a port that answered
                warnings.filterwarnings("ignore", message="Ray Client connection timed out")
                ray.init(address=address, **quiet)
            return
        except ConnectionError as exc:
            not_ready = any(sign in str(exc) for sign in CLIENT_SERVER_NOT_READY)
            if attempt == CLIENT_START_ATTEMPTS or not not_ready:
                raise
            ray.shutdown()


def _send_token_if_any() -> None:
    """Token mode where a Ray token is at hand and no mode is set: ``ray start`` (Ray
    2.52 on) turns token authentication on when it finds a token, but a driver that
    joins by address sends its token only in token mode. A cluster without
    authentication ignores the token."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def disconnect() -> None:
    ray = _import_ray()
    if ray.is_initialized():
        ray.shutdown()


def _start_actors(ray, options: EngineOptions, count: int) -> list:
    actor_class = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=UNIT_RETRIES)(_Analyser)
    actors = [actor_class.remote(options) for _ in range(count)]
    try:
        versions = ray.get([actor.version.remote() for actor in actors])
    except ray.exceptions.RayError as exc:
        raise SerLiveError(
            f"the Ray workers cannot run ser-live ({_last_line(exc)}); install "
            f"ser-live[cluster] {__version__} on every node"
        ) from None
    other = sorted({v for v in versions if v != __version__})
    if other:
        raise SerLiveError(
            f"the Ray workers run ser-live {', '.join(other)}, this is {__version__}: "
            "install the same version on every node"
        )
    return actors


def _lines(exc: BaseException) -> list[str]:
    return [line.strip() for line in str(exc).splitlines() if line.strip()]


def _last_line(exc: BaseException) -> str:
    lines = _lines(exc)
    if len(lines) > 1 and lines[-1].startswith("The actor never ran"):
        return " ".join(lines[-2:])  # the line before says why it never ran
    return lines[-1] if lines else type(exc).__name__


def batches(runs: list[list[Task]]) -> list[list[list[Task]]]:
    """Consecutive units of work gathered into batches of about ``BATCH_BYTES`` of files
    (at most ``BATCH_FILES``); a long recording is a batch of its own."""
    out: list[list[list[Task]]] = []
    size = count = 0
    for run in runs:
        run_size = sum(_file_size(task.path) for task in run)
        if out and size + run_size <= BATCH_BYTES and count + len(run) <= BATCH_FILES:
            out[-1].append(run)
            size += run_size
            count += len(run)
        else:
            out.append([run])
            size, count = run_size, len(run)
    return out


def _file_size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0  # the analysis reports why


def analyze_on_ray(
    tasks: list[Task], options: EngineOptions, workers: int | None = None
) -> Iterator[FileResult]:
    """Results of ``tasks`` in their order, analysed by ``workers`` actors (default: one
    per CPU of the cluster ``connect`` joined)."""
    ray = _import_ray()
    units = batches(voice_runs(tasks))
    if not units:
        return
    count = min(workers or max(1, int(ray.cluster_resources().get("CPU", 1))), len(units))
    actors = _start_actors(ray, options, count)
    load = {index: 0 for index in range(count)}  # jobs submitted to each actor, not back
    # A job: (unit index, None) for the whole batch, or (unit, k) for its k-th run alone,
    # once the batch as a whole failed.
    retry: deque[tuple[int, int]] = deque()
    # ref -> (unit, k, actor, its share of the actor's load)
    in_flight: dict[object, tuple[int, int | None, int, int]] = {}
    parts: dict[int, dict[int, list[FileResult]]] = {}  # a split batch's runs back so far
    finished: dict[int, list[FileResult]] = {}
    window = IN_FLIGHT_PER_WORKER * count
    next_unit = next_out = 0
    try:
        while next_out < len(units):
            while retry or (next_unit < len(units) and next_unit < next_out + window):
                actor = min(load, key=load.__getitem__)
                if load[actor] >= IN_FLIGHT_PER_WORKER:
                    break
                if retry:
                    # A run tried alone goes to an idle actor and holds it: a death of
                    # that worker is then the run's own, never one it queued behind.
                    if load[actor]:
                        break
                    unit, k = retry.popleft()
                    job, weight = [units[unit][k]], IN_FLIGHT_PER_WORKER
                else:
                    unit, k, job, weight = next_unit, None, units[next_unit], 1
                    next_unit += 1
                in_flight[actors[actor].analyse.remote(job)] = (unit, k, actor, weight)
                load[actor] += weight
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                unit, k, actor, weight = in_flight.pop(ref)
                load[actor] -= weight
                try:
                    results = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    if k is None and len(units[unit]) > 1:  # find the run that fails
                        parts[unit] = {}
                        retry.extend((unit, j) for j in range(len(units[unit])))
                        continue
                    reason = f"lost on the cluster after {UNIT_RETRIES + 1} tries"
                    job = units[unit] if k is None else [units[unit][k]]
                    results = [
                        FileResult(
                            str(t.path), t.channel, error=f"{t.path}: {reason}: {_last_line(exc)}"
                        )
                        for run in job
                        for t in run
                    ]
                if k is None:
                    finished[unit] = results
                    continue
                parts[unit][k] = results
                if len(parts[unit]) == len(units[unit]):
                    split = parts.pop(unit)
                    finished[unit] = [r for j in range(len(split)) for r in split[j]]
            while next_out in finished:
                yield from finished.pop(next_out)
                next_out += 1
    finally:  # also on Ctrl-C and on an early close: the actors' work is not wanted
        for actor in actors:
            ray.kill(actor)
