"""A real PortAudio device: a PulseAudio null sink whose monitor ``ser-live listen`` records.

``make test`` starts the sound server (tests/audio_env.sh). In CI a missing server is a
failure, not a skip.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ser_live import EMOTIONS
from tests.conftest import SPEECH_CLIP, pulse_ready, run_cli

P_COLS = [f"p_{e}" for e in EMOTIONS]


@pytest.fixture(scope="module")
def pulse_sink():
    """A null sink of this test module's own, so nothing else playing can leak in."""
    if not pulse_ready():
        pytest.skip(
            "PulseAudio null sink unavailable (apt-get install pulseaudio libasound2-plugins)"
        )
    name = f"ser_live_test_{os.getpid()}"
    module = subprocess.run(
        ["pactl", "load-module", "module-null-sink", f"sink_name={name}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    yield name
    subprocess.run(["pactl", "unload-module", module], check=False)


def test_devices_lists_the_sink(pulse_sink):
    proc = run_cli("devices")
    assert proc.returncode == 0, proc.stderr
    assert "pulse" in proc.stdout
    sources = subprocess.run(["pactl", "list", "short", "sources"], capture_output=True, text=True)
    assert f"{pulse_sink}.monitor" in sources.stdout


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def mean_probabilities(rows: list[dict]) -> np.ndarray:
    return np.mean([[float(r[c]) for c in P_COLS] for r in rows], axis=0)


def test_listen_captures_played_speech_and_agrees_with_analyze(pulse_sink, tmp_path):
    live_csv = tmp_path / "live.csv"
    exe = str(Path(sys.executable).parent / "ser-live")
    # PortAudio's "pulse" device records the source libpulse is told to use.
    env = {**os.environ, "PULSE_SOURCE": f"{pulse_sink}.monitor"}
    listen = subprocess.Popen(
        [exe, "listen", "--device", "pulse", "--duration", "9", "--csv", str(live_csv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # Wait until the device delivers audio (the log's "started" row), then play into the sink.
    deadline = time.monotonic() + 60
    while not (live_csv.exists() and live_csv.read_text().count("\n") >= 2):
        assert listen.poll() is None, listen.stderr.read()
        assert time.monotonic() < deadline, "listen did not start"
        time.sleep(0.1)
    time.sleep(1.0)
    subprocess.run(["paplay", "--device", pulse_sink, str(SPEECH_CLIP)], check=True, timeout=30)
    out, err = listen.communicate(timeout=60)
    assert listen.returncode == 0, err
    assert "Traceback" not in err

    rows = read_csv(live_csv)
    windows = [r for r in rows if r["kind"] == "window"]
    assert rows[0]["kind"] == "event" and rows[-1]["kind"] == "event"
    assert len(windows) == 15  # 9 s of audio: windows end at 2.0, 2.5, ..., 9.0 s
    assert len(out.splitlines()) == len(windows)
    speech = [r for r in windows if r["speech"] == "1"]
    silence = [r for r in windows if r["speech"] == "0"]
    assert speech and silence  # the clip is 4 s long, framed by the sink's silence
    first_speech = float(speech[0]["end_s"])
    assert first_speech > 2.0  # the clip started after a second of silence

    summary = tmp_path / "summary.csv"
    proc = run_cli(
        "analyze",
        str(SPEECH_CLIP),
        "--summary",
        str(summary),
        "--timeline",
        str(tmp_path / "timeline.csv"),
    )
    assert proc.returncode == 0, proc.stderr
    offline = read_csv(summary)[0]
    offline_speech = [r for r in read_csv(tmp_path / "timeline.csv") if r["speech"] == "1"]
    live_probs = mean_probabilities(speech)
    offline_probs = np.array([float(offline[c]) for c in P_COLS])
    assert EMOTIONS[int(live_probs.argmax())] == offline["emotion"]
    assert np.abs(live_probs - offline_probs).sum() < 0.3
    # The sink resamples to 44.1 kHz and PortAudio's stream starts at another phase of the
    # window grid: the number of speech windows may differ by one or two, no more.
    assert abs(len(speech) - len(offline_speech)) <= 2
