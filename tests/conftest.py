from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# A suite started in the background (nohup, `cmd &` in a script) inherits SIGINT ignored,
# and so would every command the tests start and then stop with Ctrl-C: an ignored signal
# stays ignored across exec, while a handled one is reset to the default there.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "fixtures" / "corpus"
RAVDESS = CORPUS / "ravdess"
#: The clip the device and CLI tests play: RAVDESS actor 1, angry, strong.
SPEECH_CLIP = RAVDESS / "Actor_01" / "03-01-05-02-01-01-01.flac"
IN_CI = os.environ.get("CI") == "true"


@pytest.fixture(scope="session")
def classifier():
    from ser_live.model import load_model

    return load_model()


@pytest.fixture
def engine(classifier):
    from ser_live.engine import Engine

    return Engine(classifier, smoothing=3)


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    from ser_live.audio_io import load_audio

    return load_audio(SPEECH_CLIP)


def pulse_ready() -> bool:
    """Start the PulseAudio null sink (tests/audio_env.sh); in CI, failing to is a failure."""
    ok = (
        shutil.which("pactl") is not None
        and subprocess.run(
            ["bash", str(ROOT / "tests" / "audio_env.sh")], capture_output=True, timeout=60
        ).returncode
        == 0
    )
    if not ok and IN_CI:
        pytest.fail(
            "PulseAudio null sink unavailable (apt-get install pulseaudio libasound2-plugins)"
        )
    return ok


@contextlib.contextmanager
def null_sink(name: str, description: str | None = None):
    """A PulseAudio null sink for the block: yields (sink name, module id). Its monitor,
    ``<name>.monitor``, records whatever is played into it. Unloaded at the end unless
    the block already did (a device pulled mid-session)."""
    command = ["pactl", "load-module", "module-null-sink", f"sink_name={name}"]
    if description:
        command.append(f"sink_properties=device.description={description}")
    module = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield name, module
    finally:
        subprocess.run(["pactl", "unload-module", module], check=False, capture_output=True)


class PrivatePulseServer:
    """A PulseAudio server of a test's own (own socket, own null sink), to kill at will:
    the way to pull a device out from under a session without touching anyone else's."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.env = {"PULSE_RUNTIME_PATH": str(directory), "PULSE_STATE_PATH": str(directory)}
        subprocess.run(
            [
                "pulseaudio",
                "-n",
                "--daemonize=yes",
                "--exit-idle-time=-1",
                "--system=no",
                "--disallow-exit",
                "--use-pid-file=yes",
                "--load=module-null-sink sink_name=private_sink",
                f"--load=module-native-protocol-unix socket={directory}/native",
            ],
            env={**os.environ, **self.env},
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.server = f"unix:{directory}/native"
        for _ in range(100):  # until it answers, not just until its socket exists
            answer = subprocess.run(
                ["pactl", "--server", self.server, "info"], capture_output=True, timeout=10
            )
            if answer.returncode == 0 and (directory / "pid").exists():
                break
            time.sleep(0.1)
        else:
            self.kill()
            raise RuntimeError(f"private PulseAudio server at {self.server} did not answer")

    def kill(self) -> None:
        pid_file = self.directory / "pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)


@pytest.fixture
def private_pulse(tmp_path):
    """Starts private PulseAudio servers on demand (``private_pulse("name")``) and kills
    whichever are still running when the test ends, failed or not."""
    servers: list[PrivatePulseServer] = []

    def start(name: str) -> PrivatePulseServer:
        servers.append(PrivatePulseServer(tmp_path / name))
        return servers[-1]

    yield start
    for server in servers:
        server.kill()


def write_audio(
    path: Path, samples: np.ndarray, rate: int = 16_000, subtype: str | None = None
) -> Path:
    sf.write(str(path), samples, rate, subtype=subtype)
    return path


def truncated_flac(path: Path, samples: np.ndarray, keep: float = 2 / 3) -> Path:
    """A FLAC file cut off after ``keep`` of its bytes, as by a full disk or a crash."""
    write_audio(path, samples)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def run_cli(*args: str, timeout: float = 300, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the installed command line as a user would."""
    exe = shutil.which("ser-live", path=str(Path(sys.executable).parent)) or "ser-live"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def assert_one_line_error(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ser-live: error:")]
    assert errors, proc.stderr


def copy_model(target: Path) -> Path:
    """The shipped model as ``target``, with its sidecar and the member models it names."""
    from ser_live.model import DEFAULT_MODEL, ModelSpec

    shutil.copy(DEFAULT_MODEL, target)
    shutil.copy(DEFAULT_MODEL.with_suffix(".json"), target.with_suffix(".json"))
    for name in ModelSpec.read(DEFAULT_MODEL.with_suffix(".json")).members:
        member = DEFAULT_MODEL.parent / name
        shutil.copy(member, target.parent / name)
        shutil.copy(member.with_suffix(".json"), (target.parent / name).with_suffix(".json"))
    return target


def calibrated_as(target: Path, **calibration) -> Path:
    """The shipped model as ``target`` (``copy_model``) with its sidecar's speaker
    calibration changed: each key given set to its value, or removed where given None."""
    import json

    copy_model(target)
    sidecar = target.with_suffix(".json")
    spec = json.loads(sidecar.read_text())
    setup = spec["normalisation"]["speaker_calibration"]
    for key, value in calibration.items():
        if value is None:
            setup.pop(key, None)
        else:
            setup[key] = value
    sidecar.write_text(json.dumps(spec))
    return target


def learning_from_all(classifier):
    """The shipped networks with a calibration that learns freely from all speech, trusted
    at once and unbounded: for tests of the calibration's own mechanics (the gate, the
    bound and the trust have their own)."""
    import copy
    from dataclasses import replace

    from ser_live.model import Classifier

    normalisation = copy.deepcopy(classifier.spec.normalisation)
    for key in ("reference", "max_shift", "variety"):  # learning freely, trusted at once
        normalisation["speaker_calibration"].pop(key, None)
    return Classifier(classifier.path, replace(classifier.spec, normalisation=normalisation))
