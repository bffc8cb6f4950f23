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
from tests.conftest import SPEECH_CLIP, null_sink, pulse_ready, run_cli, write_audio

P_COLS = [f"p_{e}" for e in EMOTIONS]


@pytest.fixture(scope="module")
def pulse_sink():
    """A null sink of this test module's own, so nothing else playing can leak in."""
    if not pulse_ready():
        pytest.skip(
            "PulseAudio null sink unavailable (apt-get install pulseaudio libasound2-plugins)"
        )
    with null_sink(f"ser_live_test_{os.getpid()}") as (name, _):
        yield name


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
    while not (live_csv.exists() and "started:" in live_csv.read_text()):
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
    phrases = [r for r in rows if r["kind"] == "phrase"]
    assert phrases  # the played clip closes at least one phrase, logged and printed
    alerts = [r for r in rows if r["note"].startswith("alert: ")]  # the default rules
    assert sum(" ALERT " in line for line in out.splitlines()) == len(alerts)
    printed = [line for line in out.splitlines() if " ALERT " not in line]
    assert sum(" phrase " in line for line in printed) == len(phrases)
    assert len(printed) == len(windows) + len(phrases)
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
        # Listen's default (the shipped sidecar's live_default): the file as one voice.
        "--calibrate",
    )
    assert proc.returncode == 0, proc.stderr
    offline = read_csv(summary)[0]
    offline_speech = [r for r in read_csv(tmp_path / "timeline.csv") if r["speech"] == "1"]
    # Like for like: the live windows against analyze's timeline, and the live phrases
    # against analyze's summary, which is made of phrases.
    live_windows, offline_windows = mean_probabilities(speech), mean_probabilities(offline_speech)
    assert live_windows.argmax() == offline_windows.argmax()
    assert np.abs(live_windows - offline_windows).sum() < 0.3
    lengths = [float(r["end_s"]) - float(r["start_s"]) for r in phrases]
    live_phrases = np.average([[float(r[c]) for c in P_COLS] for r in phrases], 0, lengths)
    offline_probs = np.array([float(offline[c]) for c in P_COLS])
    assert EMOTIONS[int(live_phrases.argmax())] == offline["emotion"]
    assert np.abs(live_phrases - offline_probs).sum() < 0.3
    # The sink resamples to 44.1 kHz and PortAudio's stream starts at another phase of the
    # window grid: the number of speech windows may differ by one or two, no more.
    assert abs(len(speech) - len(offline_speech)) <= 2


OTHER_CLIP = SPEECH_CLIP.parent.parent / "Actor_02" / "03-01-04-02-01-01-02.flac"


@pytest.fixture
def other_sink():
    """A second null sink: the other party of a call, whose monitor the other side records.
    The test unloads it mid-session; whatever is left is unloaded at the end."""
    if not pulse_ready():
        pytest.skip("PulseAudio unavailable (apt-get install pulseaudio pulseaudio-utils)")
    with null_sink(f"ser_live_other_{os.getpid()}", "customer-line") as sink:
        yield sink


def analyze_summary(clip: Path, tmp_path: Path) -> dict:
    summary = tmp_path / f"{clip.stem}.csv"
    # As listen --calibrate hears each side.
    proc = run_cli("analyze", str(clip), "--summary", str(summary), "--calibrate")
    assert proc.returncode == 0, proc.stderr
    return read_csv(summary)[0]


def test_two_sides_each_hear_their_own_speech_and_one_survives_the_other(
    pulse_sink, other_sink, tmp_path
):
    """Your side on PortAudio's "pulse" device, the other side on a second sink's monitor
    (a PulseAudio source by name): each timeline finds its own recording, agrees with
    ``analyze`` on it, and when the other sink is removed mid-call your side carries on."""
    from ser_live.audio_io import load_audio

    other, other_module = other_sink
    # The customer says the sad sentence twice: a few more windows, so that the mean the
    # live side heard does not hang on where the window grid falls in one short clip.
    customer_wav = write_audio(tmp_path / "customer.wav", np.tile(load_audio(OTHER_CLIP), 2))
    live_csv = tmp_path / "call.csv"
    exe = str(Path(sys.executable).parent / "ser-live")
    env = {**os.environ, "PULSE_SOURCE": f"{pulse_sink}.monitor"}
    command = [exe, "listen", "--device", "pulse", "--other-device", f"pulse:{other}.monitor"]
    command += ["--speaker", "agent", "--other-speaker", "customer"]
    command += ["--duration", "18", "--csv", str(live_csv), "--calibrate"]
    rules = tmp_path / "rules.toml"  # the agent's clip is an angry actor
    rules.write_text(
        '[[rule]]\nname = "agent angry"\nside = "agent"\nemotion = "angry"\n'
        "min_probability = 0.3\nfor_s = 1\n"
    )
    command += ["--alerts", str(rules)]
    listen = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 60
    while not (live_csv.exists() and live_csv.read_text().count("started:") == 2):
        assert listen.poll() is None, listen.stderr.read()
        assert time.monotonic() < deadline, "listen did not start both sides"
        time.sleep(0.1)
    time.sleep(1.0)
    subprocess.run(["paplay", "--device", pulse_sink, str(SPEECH_CLIP)], check=True, timeout=30)
    subprocess.run(["paplay", "--device", other, str(customer_wav)], check=True, timeout=30)
    time.sleep(1.0)
    subprocess.run(["pactl", "unload-module", other_module], check=True)  # the call ends
    out, err = listen.communicate(timeout=60)
    assert listen.returncode == 1, err  # a side was lost: said, and the exit status says so
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("ser-live: error:")]
    assert errors == ["ser-live: error: customer: input 'Monitor of customer-line' is gone"]

    rows = read_csv(live_csv)
    windows = {
        s: [r for r in rows if r["kind"] == "window" and r["speaker"] == s]
        for s in ("agent", "customer")
    }
    speech = {s: [r for r in w if r["speech"] == "1"] for s, w in windows.items()}
    assert speech["agent"] and speech["customer"]
    # Each side's speech is its own: the agent's clip played first, the customer's after.
    agent_last = max(float(r["end_s"]) for r in speech["agent"])
    customer_first = min(float(r["end_s"]) for r in speech["customer"])
    assert agent_last < customer_first + 1.0
    assert all(float(r["start_s"]) > 3.0 for r in speech["customer"])  # silent before
    # Each side's phrases (the lost side's last one too) agree with analyze on its recording.
    phrases = [r for r in rows if r["kind"] == "phrase"]
    assert {r["speaker"] for r in phrases} == {"agent", "customer"}
    for side, clip in (("agent", SPEECH_CLIP), ("customer", customer_wav)):
        offline = analyze_summary(clip, tmp_path)
        own = [r for r in phrases if r["speaker"] == side]
        lengths = [float(r["end_s"]) - float(r["start_s"]) for r in own]
        live = np.average([[float(r[c]) for c in P_COLS] for r in own], 0, lengths)
        assert EMOTIONS[int(live.argmax())] == offline["emotion"], side
        assert np.abs(live - np.array([float(offline[c]) for c in P_COLS])).sum() < 0.35, side
    # The customer's side was lost and said so; the agent's went on to the end.
    lost = [r for r in rows if r["speaker"] == "customer" and r["note"].startswith("error:")]
    assert len(lost) == 1 and "is gone" in lost[0]["note"]
    lost_at = float(lost[0]["end_s"])
    assert max(float(r["end_s"]) for r in windows["agent"]) == pytest.approx(18.0)
    assert max(float(r["end_s"]) for r in windows["customer"]) <= lost_at + 0.5 < 18.0
    assert rows[-1]["speaker"] == "agent" and rows[-1]["note"].startswith("stopped")
    # The rule fired once, for the agent, while the angry clip played: printed and logged.
    alerts = [r for r in rows if r["note"].startswith("alert: ")]
    assert [(r["speaker"], r["note"]) for r in alerts] == [("agent", "alert: agent angry")]
    assert agent_last - 4.5 < float(alerts[0]["end_s"]) <= agent_last + 0.5
    assert [line.split()[1:4] for line in out.splitlines() if " ALERT " in line] == [
        ["agent", "ALERT", "agent"]
    ]
    printed = [line for line in out.splitlines() if " ALERT " not in line]
    assert len(printed) == len(windows["agent"]) + len(windows["customer"]) + len(phrases)
    cue_rows = read_csv(tmp_path / "call-cues.csv")
    assert {r["side"] for r in cue_rows} == {"agent", "customer"}


def test_an_alert_marker_survives_a_killed_listen(pulse_sink, tmp_path):
    """The alert's marker row is written the moment the rule fires: a process killed
    right after leaves it whole in the log."""
    live_csv, rules = tmp_path / "live.csv", tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "angry"\nemotion = "angry"\nmin_probability = 0.3\nfor_s = 1\n'
    )
    exe = str(Path(sys.executable).parent / "ser-live")
    env = {**os.environ, "PULSE_SOURCE": f"{pulse_sink}.monitor"}
    command = [exe, "listen", "--device", "pulse", "--csv", str(live_csv)]
    listen = subprocess.Popen(
        [*command, "--alerts", str(rules)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not (live_csv.exists() and "started:" in live_csv.read_text()):
            assert listen.poll() is None, listen.stderr.read()
            assert time.monotonic() < deadline, "listen did not start"
            time.sleep(0.1)
        player = subprocess.Popen(["paplay", "--device", pulse_sink, str(SPEECH_CLIP)])
        deadline = time.monotonic() + 60
        while "alert: angry" not in live_csv.read_text():
            assert time.monotonic() < deadline, "the rule did not fire"
            time.sleep(0.05)
        listen.kill()  # SIGKILL: no clean-up of any kind
        player.wait(timeout=30)
    finally:
        listen.kill()
        listen.communicate(timeout=30)
    rows = read_csv(live_csv)
    (alert,) = [r for r in rows if r["note"] == "alert: angry"]
    assert alert["kind"] == "marker" and float(alert["end_s"]) > 1.0
