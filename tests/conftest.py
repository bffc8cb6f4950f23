from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

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


def write_audio(
    path: Path, samples: np.ndarray, rate: int = 16_000, subtype: str | None = None
) -> Path:
    sf.write(str(path), samples, rate, subtype=subtype)
    return path


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed command line as a user would."""
    exe = shutil.which("ser-live", path=str(Path(sys.executable).parent)) or "ser-live"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def assert_one_line_error(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ser-live: error:")]
    assert errors, proc.stderr
