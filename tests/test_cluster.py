"""``analyze --ray``, ``--resume`` and ``--manifest``: on a real local Ray cluster that
the tests start (``ray start --head`` on 127.0.0.1, 2 CPUs) and stop, against plain
runs of the same files."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from conftest import CORPUS, IN_CI, assert_one_line_error, run_cli

from ser_live import SAMPLE_RATE
from ser_live.analysis import find_audio_files
from ser_live.audio_io import load_audio

if not IN_CI:  # CI installs the [cluster] extra (make test): there, no Ray is a failure
    pytest.importorskip("ray", reason="the [cluster] extra; make test installs it")

BIN = Path(sys.executable).parent
CLIPS = sorted(find_audio_files([CORPUS]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session(pid: int | str) -> int | None:
    """The session id of process ``pid`` (None once it has ended, zombies included: a
    container's init may never reap them)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, _ppid, _group, session = stat[stat.rindex(")") + 2 :].split()[:4]
    return None if state in "ZX" else int(session)


def _processes_of(session: int) -> list[int]:
    """The pids of the processes in ``session``."""
    pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [pid for pid in pids if _session(pid) == session]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray head on 127.0.0.1 with 2 CPUs for this module: its GCS address (``gcs``),
    its Ray Client address (``client``) and the session its processes share
    (``session``).

    The head starts in a session of its own, and only that session's processes are
    stopped and searched for actors: ``ray stop`` would stop every Ray cluster on the
    host, another test run's or the user's own included."""
    port, client_port = _free_port(), _free_port()
    # Ray Client's per-client server gets 30 s to start; under a CPU hog that is too short
    # (docs/cluster.md).
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "120",
    }
    ray = str(BIN / "ray")
    start = [ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}"]
    start += [f"--ray-client-server-port={client_port}"]
    start += ["--num-cpus=2", "--include-dashboard=false", "--object-store-memory=100000000"]
    head = subprocess.Popen(
        start,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    out, _ = head.communicate(timeout=180)
    try:
        assert head.returncode == 0, out
        yield SimpleNamespace(
            gcs=f"127.0.0.1:{port}", client=f"ray://127.0.0.1:{client_port}", session=head.pid
        )
    finally:
        _wait_for(lambda: _kill_all(head.pid), 60, "the test cluster to stop")


def _kill_all(session: int) -> bool:
    """Kill every process of ``session``; whether none was left to kill."""
    pids = _processes_of(session)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return not pids


def _archive(folder: Path, n_files: int, clips_per_file: int) -> Path:
    """``n_files`` recordings of real speech: fixture clips one after another with
    pauses, each file a different run of clips."""
    folder.mkdir(parents=True, exist_ok=True)
    pause = np.zeros(SAMPLE_RATE // 2, np.float32)
    clips = [load_audio(path) for path in CLIPS]
    for k in range(n_files):
        pieces = [clips[(k + j) % len(clips)] for j in range(clips_per_file)]
        audio = np.concatenate([p for clip in pieces for p in (clip, pause)])
        sf.write(folder / f"call_{k:03d}.flac", audio, SAMPLE_RATE)
    return folder


def _stereo_call(path: Path) -> Path:
    a, b = load_audio(CLIPS[0]), load_audio(CLIPS[5])
    n = len(a) + len(b) + SAMPLE_RATE
    left, right = np.zeros(n, np.float32), np.zeros(n, np.float32)
    left[: len(a)] = a
    right[len(a) + SAMPLE_RATE // 2 : len(a) + SAMPLE_RATE // 2 + len(b)] = b
    sf.write(path, np.column_stack([left, right]), SAMPLE_RATE, subtype="PCM_16")
    return path


def _outputs(folder: Path, stem: str) -> list[str]:
    names = ("timeline", "summary", "cues")
    return [f"--{name}={folder / f'{stem}_{name}.csv'}" for name in names]


def _read(folder: Path, stem: str) -> dict[str, str]:
    return {
        name: (folder / f"{stem}_{name}.csv").read_text()
        for name in ("timeline", "summary", "cues")
    }


def _start_cli(*args: str) -> subprocess.Popen:
    exe = shutil.which("ser-live", path=str(BIN)) or "ser-live"
    return subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(path: Path) -> int:
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_a_ray_run_gives_what_a_plain_run_gives(cluster, tmp_path):
    """Every option a plain run takes, through the cluster: the same rows, to the digit."""
    files = _archive(tmp_path / "archive", 3, 2)
    call = _stereo_call(files / "stereo_call.wav")
    for options in (
        ["--channels=split"],
        ["--calibrate"],
        ["--voice-per-folder", "--channels=split"],
    ):
        inputs = [str(files), str(CORPUS / "ravdess"), str(call)]
        plain = run_cli("analyze", *inputs, *options, *_outputs(tmp_path, "plain"))
        assert plain.returncode == 0, plain.stderr
        on_ray = run_cli(
            "analyze", *inputs, *options, *_outputs(tmp_path, "ray"), f"--ray={cluster.gcs}"
        )
        assert on_ray.returncode == 0, on_ray.stderr
        assert _read(tmp_path, "ray") == _read(tmp_path, "plain"), options
        assert _rows(tmp_path / "ray_summary.csv") >= 12


def test_a_remote_cluster_through_ray_client(cluster, tmp_path):
    """``--ray ray://HOST:PORT``, as from a laptop to a cluster's head."""
    plain = run_cli("analyze", str(CORPUS), *_outputs(tmp_path, "plain"))
    assert plain.returncode == 0, plain.stderr
    remote = run_cli("analyze", str(CORPUS), *_outputs(tmp_path, "ray"), f"--ray={cluster.client}")
    assert remote.returncode == 0, remote.stderr
    assert _read(tmp_path, "ray") == _read(tmp_path, "plain")


def test_a_ray_client_address_where_nothing_listens_is_said_at_once(tmp_path):
    """A wrong ``ray://`` port: one line naming it, not Ray's half minute of tries."""
    port = _free_port()
    proc = run_cli("analyze", str(CLIPS[0]), f"--ray=ray://127.0.0.1:{port}")
    assert proc.returncode == 1
    assert_one_line_error(proc)
    # Said before Ray Client's own tries (5 + 10 + 15 s), which end "connection timeout".
    assert f"nothing listens at 127.0.0.1:{port}" in proc.stderr


def test_a_private_local_instance_and_a_bad_file(tmp_path):
    """``--ray local`` starts its own Ray; a file that is not audio gives an error row
    and the others finish."""
    folder = tmp_path / "archive"
    folder.mkdir()
    for clip in CLIPS[:3]:
        shutil.copy(clip, folder / clip.name)
    (folder / "broken.wav").write_bytes(b"RIFF not really a wave file")
    proc = run_cli("analyze", str(folder), *_outputs(tmp_path, "ray"), "--ray=local", "--jobs=1")
    assert proc.returncode == 3, proc.stderr  # one failed, the rest analysed
    assert_one_line_error(proc)
    rows = (tmp_path / "ray_summary.csv").read_text().splitlines()[1:]
    assert len(rows) == 4
    broken = [row for row in rows if "broken.wav" in row]
    assert len(broken) == 1 and broken[0].split(",")[-1]  # its error cell says why
    assert sum(row.split(",")[-1] == "" for row in rows) == 3


def _raylet(cluster) -> int:
    """The pid of the test cluster's raylet, the parent of its worker processes."""
    for pid in _processes_of(cluster.session):
        with contextlib.suppress(OSError):
            if b"/raylet/raylet" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    raise AssertionError("the test cluster has no raylet")


def _analyser_processes(cluster, raylet: int | None = None) -> list[int]:
    """The pids of the test cluster's Ray actors analysing a unit of work right now.

    Only the raylet's children are read (pass ``raylet`` to skip finding it), not all of
    /proc: a poll loop stays quick on a host crowded with processes."""
    raylet = _raylet(cluster) if raylet is None else raylet
    children: list[str] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{raylet}/task").iterdir():
            with contextlib.suppress(OSError):
                children += (task / "children").read_text().split()
    busy = []
    for pid in children:
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"ray::_Analyser.analyse"):
            busy.append(int(pid))
    return busy


def test_a_killed_worker_loses_no_file_and_counts_none_twice(cluster, tmp_path):
    files = _archive(tmp_path / "archive", 16, 6)
    plain = run_cli("analyze", str(files), *_outputs(tmp_path, "plain"))
    assert plain.returncode == 0, plain.stderr
    run = _start_cli("analyze", str(files), *_outputs(tmp_path, "ray"), f"--ray={cluster.gcs}")
    _wait_for(lambda: _analyser_processes(cluster) or run.poll() is not None, 120, "a busy actor")
    killed = _analyser_processes(cluster)
    if not killed:
        _, stderr = run.communicate(timeout=60)
        raise AssertionError(f"the run ended before an actor was seen at work: {stderr}")
    os.kill(killed[0], signal.SIGKILL)
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    assert _read(tmp_path, "ray") == _read(tmp_path, "plain")


def _holding(cluster, path: Path, raylet: int) -> list[int]:
    """The pids of the test cluster's Ray actors that have ``path`` open."""
    pids = []
    for pid in _analyser_processes(cluster, raylet):
        try:
            if any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir()):
                pids.append(pid)
        except OSError:  # gone meanwhile
            continue
    return pids


def _slow_to_read(path: Path, seconds: int) -> None:
    """Digital silence at 192 kHz on 8 channels: about 1.6 kB of FLAC per second that
    takes seconds of one core to decode, mix down and resample (5.9 s for ten minutes
    here), so an actor holds the file open far longer than the test takes to find it."""
    rate, channels = 192_000, 8
    second = np.zeros((rate, channels), np.int16)
    with sf.SoundFile(path, "w", rate, channels, format="FLAC", subtype="PCM_16") as out:
        for _ in range(seconds):
            out.write(second)


def test_a_file_that_kills_its_worker_every_time_costs_only_its_own_row(cluster, tmp_path):
    """A batch whose worker dies on every try is tried again one run at a time: the one
    file that kills its worker ends as an error row, the others of its batch are analysed
    once each, and nothing is lost.

    The killer: minutes of 8-channel 192 kHz digital silence, a few hundred kB of FLAC
    that shares a batch with short clips and takes seconds of analysis while its actor
    holds it open. The test kills whichever actor holds it, on every try."""
    from ser_live.analysis import Task, voice_runs
    from ser_live.cluster import UNIT_RETRIES, batches

    killer = tmp_path / "killer.flac"
    _slow_to_read(killer, 400)
    clips = [str(clip) for clip in CLIPS[:4]]
    inputs = [*clips[:2], str(killer), *clips[2:]]
    # The premise: the killer and the clips travel as one batch.
    assert len(batches(voice_runs([Task(Path(path)) for path in inputs]))) == 1
    plain = run_cli("analyze", *clips, *_outputs(tmp_path, "plain"))
    assert plain.returncode == 0, plain.stderr
    raylet = _raylet(cluster)
    run = _start_cli("analyze", *inputs, *_outputs(tmp_path, "ray"), f"--ray={cluster.gcs}")
    kills, deadline = 0, time.monotonic() + 600
    while run.poll() is None:
        assert time.monotonic() < deadline, "the run did not finish"
        holders = _holding(cluster, killer, raylet)
        for pid in holders:
            os.kill(pid, signal.SIGKILL)
        if holders:
            kills += 1
            _wait_for(
                lambda: not _holding(cluster, killer, raylet), 60, "the killed actor to let go"
            )
        time.sleep(0.005)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 3, stderr  # one file failed, the others were analysed
    # Ray's own tries of the whole batch, then the killer's run alone as many times.
    assert kills == 2 * (UNIT_RETRIES + 1)
    ray_rows = (tmp_path / "ray_summary.csv").read_text().splitlines()
    lost = [row for row in ray_rows if "killer.flac" in row]
    assert len(lost) == 1 and f"lost on the cluster after {UNIT_RETRIES + 1} tries" in lost[0]
    others = [row for row in ray_rows if "killer.flac" not in row]
    assert others == (tmp_path / "plain_summary.csv").read_text().splitlines()
    assert _read(tmp_path, "ray")["timeline"] == _read(tmp_path, "plain")["timeline"]


@pytest.mark.parametrize("where", ["plain", "ray"])
def test_an_interrupted_run_resumed_gives_the_uninterrupted_outputs(cluster, tmp_path, where):
    files = _archive(tmp_path / "archive", 40, 3)
    call = _stereo_call(files / "stereo_call.wav")
    base = ["analyze", str(files), str(call), "--channels=split"]
    whole = run_cli(*base, *_outputs(tmp_path, "whole"))
    assert whole.returncode == 0, whole.stderr
    via = [f"--ray={cluster.gcs}"] if where == "ray" else ["--jobs=2"]
    run = _start_cli(*base, *_outputs(tmp_path, "cut"), *via)
    summary = tmp_path / "cut_summary.csv"
    _wait_for(lambda: _rows(summary) >= 3 or run.poll() is not None, 120, "the first rows")
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert "--resume" in stderr
    cut = _read(tmp_path, "cut")
    total = _rows(tmp_path / "whole_summary.csv")
    assert 3 <= cut["summary"].count("\n") - 1 < total, "interrupted before the end"
    # Whatever was written is whole files: each summary row's file has all its rows.
    for name, text in cut.items():
        whole_text = _read(tmp_path, "whole")[name]
        assert whole_text.startswith(text), name
    resumed = run_cli(*base, *_outputs(tmp_path, "cut"), *via, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert _read(tmp_path, "cut") == _read(tmp_path, "whole")


def test_resume_drops_a_half_written_row_and_retries_failed_files(tmp_path):
    folder = tmp_path / "archive"
    folder.mkdir()
    for clip in CLIPS[:4]:
        shutil.copy(clip, folder / clip.name)
    outputs = [f"--summary={tmp_path / 's.csv'}", f"--timeline={tmp_path / 't.csv'}"]
    assert run_cli("analyze", str(folder), *outputs).returncode == 0
    whole = (tmp_path / "s.csv").read_text(), (tmp_path / "t.csv").read_text()
    # A hard kill mid-row, and a file that failed for a reason since mended.
    text = whole[0].splitlines(keepends=True)
    first = text[1].split(",")[0]
    failed = f"{first},{','.join([''] * 11)},{first}: a network share went away\n"
    (tmp_path / "s.csv").write_text(text[0] + failed + "".join(text[2:])[:-15])
    proc = run_cli("analyze", str(folder), *outputs, "--resume")
    assert proc.returncode == 0, proc.stderr
    rows = sorted((tmp_path / "s.csv").read_text().splitlines())
    assert rows == sorted(whole[0].splitlines())
    assert sorted((tmp_path / "t.csv").read_text().splitlines()) == sorted(whole[1].splitlines())


def test_resume_needs_a_summary_with_the_same_columns(tmp_path):
    proc = run_cli("analyze", str(CLIPS[0]), "--resume")
    assert proc.returncode == 1 and "--summary" in proc.stderr
    assert_one_line_error(proc)
    summary = tmp_path / "s.csv"
    summary.write_text("file,something,else\n")
    proc = run_cli("analyze", str(CLIPS[0]), "--resume", f"--summary={summary}")
    assert proc.returncode == 1 and "other columns" in proc.stderr
    assert_one_line_error(proc)


def test_a_manifest_lists_the_files(tmp_path):
    folder = tmp_path / "calls"
    folder.mkdir()
    for clip in CLIPS[:3]:
        shutil.copy(clip, folder / clip.name)
    text = tmp_path / "list.txt"
    text.write_text(f"# the archive\ncalls/{CLIPS[0].name}\n\n{folder / CLIPS[1].name}\n")
    table = tmp_path / "list.csv"
    table.write_text(f"id,path\n7,calls/{CLIPS[2].name}\n")
    summary = tmp_path / "s.csv"
    proc = run_cli("analyze", f"--manifest={text}", f"--manifest={table}", f"--summary={summary}")
    assert proc.returncode == 0, proc.stderr
    names = [Path(row.split(",")[0]).name for row in summary.read_text().splitlines()[1:]]
    assert names == [CLIPS[0].name, CLIPS[1].name, CLIPS[2].name]
    bad = tmp_path / "bad.csv"
    bad.write_text("file\nx.wav\n")
    proc = run_cli("analyze", f"--manifest={bad}")
    assert proc.returncode == 1 and "'path' column" in proc.stderr
    assert_one_line_error(proc)


def test_without_ray_the_option_says_what_to_install(tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed
        "from ser_live.cli import main\n"
        f"sys.exit(main(['analyze', {str(CLIPS[0])!r}, '--ray=local']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert_one_line_error(proc)
    assert "pip install 'ser-live[cluster]'" in proc.stderr
